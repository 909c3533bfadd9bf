//! `sdop schema`: one JSON Schema for every kind, for editors (yaml-language-server).

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::kinds::REGISTRY;
use crate::manifest::{Metadata, API_VERSION};

pub fn manifest_schema() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let metadata = generator.subschema_for::<Metadata>();
    let variants: Vec<Value> = REGISTRY
        .iter()
        .map(|handler| {
            let spec = handler.spec_schema(&mut generator);
            json!({
                "title": handler.kind(),
                "type": "object",
                "additionalProperties": false,
                "required": ["apiVersion", "kind", "metadata", "spec"],
                "properties": {
                    "apiVersion": {"const": API_VERSION},
                    "kind": {"const": handler.kind()},
                    "metadata": metadata,
                    "spec": spec,
                },
            })
        })
        .collect();
    let definitions: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://sdop.dev/schema/sdop-v1alpha1.json",
        "title": "sdop manifest (sdop/v1alpha1)",
        "oneOf": variants,
        "definitions": definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_covers_every_kind_and_rejects_unknown_fields() {
        let schema = manifest_schema();
        let kinds: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["properties"]["kind"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Bucket",
                "ImageRepository",
                "Stack",
                "ModelArchive",
                "Endpoint",
                "DreamboothJob",
                "Dataset",
                "ModelPromotion"
            ]
        );
        assert_eq!(
            schema["definitions"]["EndpointSpec"]["additionalProperties"],
            json!(false)
        );
        assert!(schema["definitions"]["EndpointSpec"]["properties"]["instanceType"].is_object());
    }
}
