//! What the all-in-one-ai inference image reads from the Model's environment (sources: README
//! "Container contract"):
//! - `serve` (all-in-one-ai `sagemaker/stable-diffusion-webui/serve`) reads `ckpt`,
//!   `embeddings_s3uri`, `hypernetwork_s3uri` and starts `webui.sh --api --listen` (the
//!   `webui()` path) over `/opt/ml/model/Stable-diffusion`.
//! - Fork 9f7dec70 `modules/shared.py`, at import (not `--train`): `os.environ['api_endpoint']`
//!   then `requests.get(f'{api_endpoint}/sd/industrialmodel')`: a missing variable is a
//!   KeyError, a value without `http(s)://` a requests MissingSchema; either kills the server.
//!   With `endpoint_name` set, `webui()` reads `api_endpoint` again (webui.py:217-220).
//! - Fork 47dd0bbc reads `api_endpoint` at import only with `--pureui` (never in SageMaker) and
//!   per request in `modules/api/api.py` when the request carries a `username`.

use std::collections::BTreeMap;

/// Environment variables the portal (`all_in_one_ai_deploy`) and the notebook set.
pub const API_ENDPOINT: &str = "api_endpoint";
pub const ENDPOINT_NAME: &str = "endpoint_name";
pub const CKPT: &str = "ckpt";
/// Where SageMaker extracts the model data (`serve`'s checkpoints live under it).
pub const MODEL_DIR: &str = "/opt/ml/model/";
/// The upstream notebook's stand-in (`stable-diffusion-webui.ipynb`: `'api_endpoint': 'noapi'`).
pub const NOTEBOOK_STAND_IN: &str = "noapi";

pub struct InferenceContract {
    /// The image calls `{api_endpoint}/sd/industrialmodel` at start: it must be an http(s) URL.
    pub api_endpoint_at_import: bool,
}

pub static API_AT_IMPORT: InferenceContract = InferenceContract {
    api_endpoint_at_import: true,
};
pub static API_PER_REQUEST: InferenceContract = InferenceContract {
    api_endpoint_at_import: false,
};

/// A value the image accepts as its API URL (requests: a scheme and a host).
pub fn is_http_url(value: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        value
            .strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    })
}

impl InferenceContract {
    /// The stand-in sdop sets when the manifest gives no `api_endpoint`, if this version
    /// accepts one.
    pub fn api_endpoint_stand_in(&self) -> Option<&'static str> {
        (!self.api_endpoint_at_import).then_some(NOTEBOOK_STAND_IN)
    }

    /// Problems with a literal environment (values read through `valueFrom` are `None`: checked
    /// once known, by [`Self::environment_problems`] at derive time).
    pub fn environment_problems(
        &self,
        contract_name: &str,
        environment: &BTreeMap<String, Option<String>>,
        endpoint_name: &str,
    ) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match environment.get(API_ENDPOINT) {
            None if self.api_endpoint_at_import => problems.push((
                API_ENDPOINT.to_string(),
                format!(
                    "contract {contract_name}: the inference image reads os.environ['api_endpoint'] at start and calls {{api_endpoint}}/sd/industrialmodel; set it to the all-in-one-ai API URL (the WebUI stack's ApiGatewayProdEndpoint), or pin spec.contract: all-in-one-ai/2023-03-01, which starts without one"
                ),
            )),
            Some(Some(value)) if self.api_endpoint_at_import && !is_http_url(value) => problems
                .push((
                    API_ENDPOINT.to_string(),
                    format!(
                        "contract {contract_name}: {value:?} is not an http(s) URL; the image's requests.get('{value}/sd/industrialmodel') at start would fail (MissingSchema) and the endpoint would never pass its health check"
                    ),
                )),
            _ => {}
        }
        if let Some(Some(value)) = environment.get(ENDPOINT_NAME) {
            if value != endpoint_name {
                problems.push((
                    ENDPOINT_NAME.to_string(),
                    format!("{value:?} is not this endpoint's name ({endpoint_name:?}); the image registers its models under endpoint_name, so the WebUI would route to another endpoint (leave it out: sdop sets it)"),
                ));
            }
        }
        if let Some(Some(value)) = environment.get(CKPT) {
            let file = value.strip_prefix(MODEL_DIR).unwrap_or_default();
            if file.is_empty() || !(file.ends_with(".ckpt") || file.ends_with(".safetensors")) {
                problems.push((
                    CKPT.to_string(),
                    format!("{value:?} must be a .ckpt or .safetensors file under {MODEL_DIR} (where SageMaker extracts the model data), e.g. /opt/ml/model/Stable-diffusion/v1-5-pruned.ckpt"),
                ));
            }
        }
        problems
    }

    /// The environment the Model gets: the manifest's values plus what the image needs and the
    /// portal sets (`endpoint_name`, the stand-in `api_endpoint` where accepted).
    pub fn model_environment(
        &self,
        mut environment: BTreeMap<String, String>,
        endpoint_name: &str,
    ) -> BTreeMap<String, String> {
        environment
            .entry(ENDPOINT_NAME.to_string())
            .or_insert_with(|| endpoint_name.to_string());
        if let Some(stand_in) = self.api_endpoint_stand_in() {
            environment
                .entry(API_ENDPOINT.to_string())
                .or_insert_with(|| stand_in.to_string());
        }
        environment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn api_at_import_needs_an_http_url() {
        let c = &API_AT_IMPORT;
        assert_eq!(c.environment_problems("x", &env(&[]), "e").len(), 1);
        let bad = c.environment_problems("x", &env(&[("api_endpoint", "noapi")]), "e");
        assert!(bad[0].1.contains("MissingSchema"), "{bad:?}");
        assert!(c
            .environment_problems("x", &env(&[("api_endpoint", "https://a.b/prod")]), "e")
            .is_empty());
        // Known after apply: checked when known.
        let mut later = BTreeMap::new();
        later.insert("api_endpoint".to_string(), None);
        assert!(c.environment_problems("x", &later, "e").is_empty());
    }

    #[test]
    fn per_request_accepts_the_notebook_stand_in() {
        let c = &API_PER_REQUEST;
        assert!(c.environment_problems("x", &env(&[]), "e").is_empty());
        let model = c.model_environment(BTreeMap::new(), "ep");
        assert_eq!(model["api_endpoint"], "noapi");
        assert_eq!(model["endpoint_name"], "ep");
        assert!(!API_AT_IMPORT
            .model_environment(BTreeMap::new(), "ep")
            .contains_key("api_endpoint"));
    }

    #[test]
    fn ckpt_and_endpoint_name() {
        let c = &API_PER_REQUEST;
        let p = c.environment_problems(
            "x",
            &env(&[("ckpt", "v1-5.ckpt"), ("endpoint_name", "other")]),
            "e",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(c
            .environment_problems(
                "x",
                &env(&[("ckpt", "/opt/ml/model/Stable-diffusion/a_2500.ckpt")]),
                "e"
            )
            .is_empty());
    }
}
