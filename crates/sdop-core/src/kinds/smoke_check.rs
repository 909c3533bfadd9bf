//! The smoke check of an asynchronous Endpoint: after each rollout (and the first create), one
//! asynchronous invocation with the manifest's payload; the result must appear in the output
//! path within the timeout. A failed check rolls the endpoint back to the config it served
//! before (`engine::decide`), marks it Degraded and, in the daemon, sends a webhook.
//!
//! One AWS object (`sagemaker:smoke-check`) per endpoint config checked, named by where its
//! payload goes, `OUTPUT-BUCKET/sdop/smoke-check/ENDPOINT/CONFIG.json`, so each rollout is
//! checked once and a restart finds the check it started:
//! - the payload is put there; once the invocation is accepted, the object's metadata records
//!   where the result and a failure will appear (a payload without that record was never
//!   invoked, or a kill came between: the check is made again);
//! - InvokeEndpointAsync is called with that InputLocation, `ContentType: application/json`
//!   (the SageMaker SDK's AsyncPredictor sends none, so the check sets it) and a deterministic
//!   InferenceId, so the result lands at `OUTPUT-PATH/INFERENCE-ID.out` and a failure at
//!   `FAILURE-PATH/INFERENCE-ID-error.out` (SageMaker developer guide, "Check prediction
//!   results": https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-check-predictions.html).
//!
//! The default payload is the WebUI fork's `/invocations` text-to-image request as the
//! all-in-one-ai notebook sends it (`sagemaker/stable-diffusion-webui/stable-diffusion-webui.ipynb`),
//! shrunk to one step: `username: ""` (an omitted username sends the fork at 9f7dec70 into a
//! user lookup that fails), and `script_args` as a JSON string (`modules/processing.py`
//! `json.loads`s it; omitted, the run raises). A result passes when it is JSON with a non-empty
//! `images` list and no `error` (fork `modules/api/models.py` `TextToImageResponse`; master
//! answers failures as `{"error": ...}` with HTTP 200).

use crate::model::object::AwsType;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Checks;
use crate::model::naming::content_hash;
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::rules;

pub const AWS_TYPE: AwsType = AwsType::SageMakerSmokeCheck;

const DEFAULT_TIMEOUT_SECONDS: u32 = 900;
/// InvokeEndpointAsync's InvocationTimeoutSeconds is at most 3600; a check waits at most that.
const MAX_TIMEOUT_SECONDS: u32 = 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmokeCheck {
    /// The request body (JSON). Default: a one-step 512x512 text-to-image request in the
    /// WebUI image's `/invocations` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Seconds the result may take (default 900: a scaled-to-zero endpoint starts an
    /// instance first).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECONDS
}

/// The notebook's text-to-image request, at one step.
pub fn default_payload() -> Value {
    json!({
        "task": "text-to-image",
        "username": "",
        "txt2img_payload": {
            "prompt": "sdop smoke check",
            "negative_prompt": "",
            "steps": 1,
            "width": 512,
            "height": 512,
            "sampler_index": "Euler a",
            "batch_size": 1,
            "n_iter": 1,
            "cfg_scale": 7,
            "seed": -1,
            "script_args": "[0, false, false, false, \"\", 1, \"\", 0, \"\", true, false, false]"
        }
    })
}

impl SmokeCheck {
    pub fn check(&self, path: &str, output_path: Option<&str>, checks: &mut Checks) {
        if output_path.is_none() {
            checks.error(
                path,
                "smokeCheck needs `asyncInference`: the check is an asynchronous invocation whose result is read from the output path",
            );
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > MAX_TIMEOUT_SECONDS {
            checks.error(
                format!("{path}.timeoutSeconds"),
                format!("timeoutSeconds must be 1..={MAX_TIMEOUT_SECONDS}"),
            );
        }
        if let Some(payload) = &self.payload {
            if !(payload.is_object() || payload.is_array()) {
                checks.error(
                    format!("{path}.payload"),
                    "payload must be a JSON object or list (it is sent as application/json)",
                );
            }
        }
    }

    /// The check of `config_name` (unknown until the config's name is): waits for the endpoint
    /// to serve, then runs once.
    pub fn desired(
        &self,
        endpoint_name: &str,
        config_name: Option<&str>,
        output_path: &str,
        failure_path: Option<&str>,
    ) -> DesiredObject {
        let payload = self.payload.clone().unwrap_or_else(default_payload);
        let bucket = rules::s3_uri(output_path).ok().map(|u| u.bucket);
        let name = match (config_name, bucket) {
            (Some(config), Some(bucket)) => {
                ObjectName::Known(input_object(&bucket, endpoint_name, config))
            }
            _ => ObjectName::AfterApply {
                base: endpoint_name.to_string(),
            },
        };
        let mut object = DesiredObject::new(AWS_TYPE, name, Mutability::Replace)
            .field("payloadHash", Some(json!(content_hash(&payload))))
            .input("payload", payload)
            .input("endpointName", json!(endpoint_name))
            .input("outputPath", json!(with_slash(output_path)))
            .input("timeoutSeconds", json!(self.timeout_seconds))
            .after_ready(super::endpoint::ENDPOINT, endpoint_name);
        if let Some(path) = failure_path {
            object = object.input("failurePath", json!(with_slash(path)));
        }
        object.verifies = true;
        // Named by the config it checks: once passed for this spec, it stays passed (a
        // converged re-apply does not read it again; a new payload is a new spec).
        object.content_named = true;
        object
    }
}

fn with_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    }
}

/// `BUCKET/sdop/smoke-check/ENDPOINT/CONFIG.json`: where the check's payload goes, and its name.
pub fn input_object(bucket: &str, endpoint_name: &str, config_name: &str) -> String {
    format!("{bucket}/sdop/smoke-check/{endpoint_name}/{config_name}.json")
}

/// The endpoint config a check's name says it checks.
pub fn config_of(name: &str) -> Option<&str> {
    name.rsplit('/').next()?.strip_suffix(".json")
}

/// A deterministic InferenceId (at most 64 printable characters) for the check of a config.
pub fn inference_id(config_name: &str) -> String {
    format!("sdop-smoke-{}", &content_hash(config_name)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_named_by_the_config_it_checks() {
        let check = SmokeCheck {
            payload: None,
            timeout_seconds: 60,
        };
        let object = check.desired("sd-a", Some("sd-a-1234"), "s3://sdop-b/out", None);
        assert_eq!(
            object.name.known(),
            Some("sdop-b/sdop/smoke-check/sd-a/sd-a-1234.json")
        );
        assert_eq!(config_of(object.name.known().unwrap()), Some("sd-a-1234"));
        assert!(inference_id("sd-a-1234").len() <= 64);
        assert_eq!(object.inputs["outputPath"], json!("s3://sdop-b/out/"));
        assert!(object.verifies);
        assert_eq!(object.inputs["payload"]["username"], json!(""));
    }

    #[test]
    fn a_check_needs_an_async_endpoint() {
        let check = SmokeCheck {
            payload: Some(json!("text")),
            timeout_seconds: 0,
        };
        let mut checks = Checks::default();
        check.check("spec.smokeCheck", None, &mut checks);
        let paths: Vec<&str> = checks.problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.smokeCheck",
                "spec.smokeCheck.timeoutSeconds",
                "spec.smokeCheck.payload"
            ]
        );
    }
}
