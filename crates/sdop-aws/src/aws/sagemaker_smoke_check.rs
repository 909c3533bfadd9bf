//! `sagemaker:smoke-check`: one asynchronous invocation of an endpoint after a rollout, and
//! its result (see `kinds::smoke_check`). Named by its payload object, `BUCKET/KEY`; the
//! object's metadata records the resource, the payload's hash and, once InvokeEndpointAsync
//! accepted it, where the result and a failure appear. A payload without that record was never
//! invoked (or a kill came between the two calls): it reads as absent, so the check is made
//! again. The result decides the state: in the output path and passing, Ready; failing, or a
//! failure file, or nothing within the timeout, Failed; else Progressing.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};

use super::adapters::{Adapter, ObjectContext};
use super::s3_object::split;
use super::{classify, head_s3_object};
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::kinds::smoke_check::{config_of, inference_id, AWS_TYPE};
use crate::manifest::ResourceId;

pub struct SmokeCheckAdapter;

const META_RESOURCE: &str = "sdop-resource";
const META_PAYLOAD: &str = "sdop-payload-hash";
const META_OUTPUT: &str = "sdop-output-location";
const META_FAILURE: &str = "sdop-failure-location";
const META_TIMEOUT: &str = "sdop-timeout-seconds";
const META_ENDPOINT: &str = "sdop-endpoint";
const QUOTED_BYTES: usize = 300;

/// The bucket and key of an `s3://BUCKET/KEY` URI.
pub(super) fn s3_parts(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/')
}

fn text<'a>(object: &'a DesiredObject, input: &str) -> Option<&'a str> {
    object.inputs.get(input).and_then(Value::as_str)
}

/// Reads an S3 object named by an `s3://` URI; `None` when it is not there.
async fn fetch(ctx: &ObjectContext<'_>, uri: &str) -> Result<Option<Vec<u8>>> {
    let Some((bucket, key)) = s3_parts(uri) else {
        return Err(Error::Terminal(format!("{uri:?} is not an s3:// URI")));
    };
    Ok(
        match crate::aws::get_s3_object(ctx.clients, bucket, key).await? {
            None => None,
            Some(crate::aws::S3Read::Body(bytes)) => Some(bytes),
            // The check's verdict on it: an answer too large is a failed check, not an error.
            Some(crate::aws::S3Read::TooLarge(_)) => {
                Some(br#"{"error": "result larger than sdop reads"}"#.to_vec())
            }
        },
    )
}

fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BYTES)]);
    text.trim().to_string()
}

/// Whether a result is what the WebUI image answers to a good request: JSON with a non-empty
/// `images` list and no `error` (fork `modules/api/models.py` `TextToImageResponse`; master
/// answers failures as `{"error": ...}`). A payload of the user's own that is not
/// text-to-image passes with any JSON result without `error`.
pub fn judge_result(payload: Option<&Value>, result: &[u8]) -> std::result::Result<(), String> {
    let parsed: Value = serde_json::from_slice(result)
        .map_err(|_| format!("the result is not JSON: {}", quoted(result)))?;
    if let Some(error) = parsed.get("error") {
        return Err(format!("the image answered an error: {error}"));
    }
    let text_to_image = payload
        .and_then(|p| p.get("task"))
        .and_then(Value::as_str)
        .is_none_or(|t| t == "text-to-image");
    if text_to_image {
        let images = parsed.get("images").and_then(Value::as_array);
        if !images.is_some_and(|i| {
            i.iter()
                .any(|image| image.as_str().is_some_and(|s| !s.is_empty()))
        }) {
            return Err(format!("the result has no images: {}", quoted(result)));
        }
    }
    Ok(())
}

#[async_trait]
impl Adapter for SmokeCheckAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (bucket, key) = split(name)?;
        let Some(head) = head_s3_object(ctx.clients, bucket, key).await? else {
            return Ok(None);
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let Some(output) = meta.get(META_OUTPUT) else {
            // Put but never invoked: the check is made again.
            return Ok(None);
        };
        let ownership = match meta
            .get(META_RESOURCE)
            .and_then(|r| ResourceId::parse_recorded(r))
        {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let fields = meta
            .get(META_PAYLOAD)
            .map(|h| ("payloadHash".to_string(), json!(h)))
            .into_iter()
            .collect();
        let mut observed = ObservedObject::new(ObjectKey::new(AWS_TYPE, name), fields, ownership);
        let payload = desired.and_then(|d| d.inputs.get("payload"));
        observed.state = if let Some(result) = fetch(ctx, output).await? {
            match judge_result(payload, &result) {
                Ok(()) => {
                    observed
                        .outputs
                        .insert("smokeCheck".into(), format!("passed: {output}"));
                    ObjectState::Ready
                }
                Err(why) => ObjectState::Failed(why),
            }
        } else if let Some(failure) = match meta.get(META_FAILURE) {
            Some(uri) => fetch(ctx, uri).await?,
            None => None,
        } {
            ObjectState::Failed(format!("the invocation failed: {}", quoted(&failure)))
        } else {
            let timeout = meta
                .get(META_TIMEOUT)
                .and_then(|t| t.parse().ok())
                .unwrap_or(900u64);
            let invoked = head
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .unwrap_or_else(SystemTime::now);
            let waited = SystemTime::now()
                .duration_since(invoked)
                .unwrap_or(Duration::ZERO);
            if waited > Duration::from_secs(timeout) {
                ObjectState::Failed(format!("no result at {output} within {timeout} s"))
            } else {
                ObjectState::Progressing(format!(
                    "smoke check of {}: waiting for {output} ({} of {timeout} s)",
                    config_of(name).unwrap_or(name),
                    waited.as_secs()
                ))
            }
        };
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("smoke check name not known yet".into()))?;
        let (bucket, key) = split(name)?;
        let config = config_of(name)
            .ok_or_else(|| Error::Terminal(format!("{name:?} names no endpoint config")))?;
        let endpoint = text(object, "endpointName")
            .ok_or_else(|| Error::Terminal("smoke check without endpointName".into()))?;
        let output_path = text(object, "outputPath")
            .ok_or_else(|| Error::Terminal("smoke check without outputPath".into()))?;
        let timeout = object
            .inputs
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(900);
        let payload = object.inputs.get("payload").cloned().unwrap_or(Value::Null);
        let payload_hash = object
            .get("payloadHash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let put = |metadata: Vec<(&'static str, String)>| {
            let mut request = ctx
                .clients
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(payload.to_string().into_bytes()))
                .metadata(META_RESOURCE, ctx.resource.to_string())
                .metadata(META_PAYLOAD, payload_hash.clone())
                .metadata(META_ENDPOINT, endpoint)
                .metadata(META_TIMEOUT, timeout.to_string());
            for (k, v) in metadata {
                request = request.metadata(k, v);
            }
            request.send()
        };
        put(Vec::new())
            .await
            .map_err(|e| classify("s3:PutObject", e))?;
        let invoked = ctx
            .clients
            .sagemaker_runtime
            .invoke_endpoint_async()
            .endpoint_name(endpoint)
            .input_location(format!("s3://{bucket}/{key}"))
            .content_type("application/json")
            .accept("application/json")
            .inference_id(inference_id(config))
            .invocation_timeout_seconds(timeout.min(3600) as i32)
            .send()
            .await
            .map_err(|e| classify("sagemaker:InvokeEndpointAsync", e))?;
        // Where SageMaker says the result will be; the documented name as a fallback.
        let output = invoked
            .output_location()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{output_path}{}.out", inference_id(config)));
        let mut record = vec![(META_OUTPUT, output)];
        if let Some(failure) = invoked.failure_location().map(str::to_string).or_else(|| {
            text(object, "failurePath").map(|p| format!("{p}{}-error.out", inference_id(config)))
        }) {
            record.push((META_FAILURE, failure));
        }
        // The record that the invocation was accepted (the payload, put again with it).
        put(record).await.map_err(|e| classify("s3:PutObject", e))?;
        Ok(ObjectState::Progressing("invoked".into()))
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        self.create(ctx, object).await
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let (bucket, key) = split(name)?;
        let Some(head) = head_s3_object(ctx.clients, bucket, key).await? else {
            return Ok(());
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let mut doomed: Vec<(String, String)> = [META_OUTPUT, META_FAILURE]
            .iter()
            .filter_map(|m| meta.get(*m))
            .filter_map(|uri| s3_parts(uri).map(|(b, k)| (b.to_string(), k.to_string())))
            .collect();
        doomed.push((bucket.to_string(), key.to_string()));
        for (bucket, key) in doomed {
            super::delete_s3_object(ctx.clients, &bucket, &key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_passes_with_images_and_no_error() {
        let payload = crate::kinds::smoke_check::default_payload();
        assert!(judge_result(Some(&payload), br#"{"images": ["iVBOR"], "info": "{}"}"#).is_ok());
        assert!(judge_result(Some(&payload), br#"{"images": []}"#)
            .unwrap_err()
            .contains("no images"));
        assert!(
            judge_result(Some(&payload), br#"{"error": "CUDA out of memory"}"#)
                .unwrap_err()
                .contains("CUDA out of memory")
        );
        assert!(judge_result(Some(&payload), b"<html>")
            .unwrap_err()
            .contains("not JSON"));
        let own = json!({"task": "sd-models"});
        assert!(judge_result(Some(&own), br#"{"models": []}"#).is_ok());
    }
}
