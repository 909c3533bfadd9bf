//! A `ModelPromotion`'s evaluation of a candidate on its staging endpoint and the evidence it
//! leaves (see `kinds::model_promotion`). Both live under the candidate's evidence prefix
//! `s3://BUCKET/PREFIX/CANDIDATE/`:
//!
//! - `sagemaker:model-evaluation` (the prefix): one request object per case under
//!   `requests/`, sent with InvokeEndpointAsync (a deterministic InferenceId per evaluation and
//!   case, so the result is at `OUTPUT-PATH/INFERENCE-ID.out` and a failure at
//!   `FAILURE-PATH/INFERENCE-ID-error.out`: SageMaker developer guide, "Check prediction
//!   results", https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-check-predictions.html),
//!   then `evaluation.json`, the record of what was sent, where the results appear and when
//!   each request went out. Without that record nothing was sent, or a kill came between: the
//!   requests are sent again (same ids, same result keys; a result older than its request is
//!   the killed run's and is waited past, see [`outcome`]). Every result in (or failed, or out
//!   of time): Ready.
//! - `s3:evidence-bundle` (`evidence.json`): written once every result is in: each image as
//!   `images/case-N.png`, the contact sheet `contact-sheet.png` (the production version's
//!   images of the same prompts and seeds beside the candidate's), and the measurements and
//!   the verdict as `evidence.json`, written last (its presence means the bundle is whole).
//!   Measured values are kept for passes and failures.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::adapters::{Adapter, ObjectContext};
use super::s3_object::split;
use super::sagemaker_smoke_check::s3_parts;
use super::{classify, head_s3_object};
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::kinds::model_promotion::{Case, EVALUATION, EVIDENCE};
use crate::manifest::ResourceId;

pub struct EvaluationAdapter;
pub struct EvidenceAdapter;

const META_RESOURCE: &str = "sdop-resource";
const META_HASH: &str = "sdop-cases-hash";

/// `sha256:HEX` of bytes: the evidence digest written into approvals.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An S3 object's bytes; `None` when it is not there.
pub async fn get_object(
    clients: &super::Clients,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    match super::get_s3_object(clients, bucket, key).await? {
        None => Ok(None),
        Some(super::S3Read::Body(bytes)) => Ok(Some(bytes)),
        // A record or an image sdop judges: never judged from part of it.
        Some(super::S3Read::TooLarge(size)) => Err(Error::Terminal(format!(
            "s3://{bucket}/{key} is {size} bytes, larger than sdop reads ({} bytes)",
            super::MAX_READ_BYTES
        ))),
    }
}

async fn put_object(
    ctx: &ObjectContext<'_>,
    bucket: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
    metadata: &[(&str, String)],
) -> Result<()> {
    let mut request = ctx
        .clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .metadata(META_RESOURCE, ctx.resource.to_string());
    for (k, v) in metadata {
        request = request.metadata(*k, v.clone());
    }
    request
        .send()
        .await
        .map_err(|e| classify("s3:PutObject", e))?;
    Ok(())
}

/// `evaluation.json`: what was sent and where each result appears.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRecord {
    pub resource: String,
    pub endpoint_name: String,
    pub endpoint_config_name: String,
    pub cases_hash: String,
    pub timeout_seconds: u64,
    pub requests: Vec<SentRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentRequest {
    pub case: Case,
    pub input: String,
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Seconds since the Unix epoch when InvokeEndpointAsync accepted it.
    pub sent_at: f64,
}

fn epoch(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Reads a candidate's `evaluation.json` (`prefix` ends with `/`).
pub async fn read_evaluation(
    clients: &super::Clients,
    bucket: &str,
    prefix: &str,
) -> Result<Option<EvaluationRecord>> {
    let key = format!("{prefix}evaluation.json");
    let Some(body) = get_object(clients, bucket, &key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| Error::Terminal(format!("s3://{bucket}/{key} is not sdop's record: {e}")))
}

/// Where a case's result is: its output object (with when it appeared), its failure, or
/// nothing yet.
pub enum Outcome {
    Result { modified: Option<SystemTime> },
    Failure(String),
    Pending,
}

/// S3's Last-Modified is in whole seconds: an object written within the second its request
/// was sent reads as up to this much older than the request.
const LAST_MODIFIED_GRAIN: Duration = Duration::from_secs(1);

fn last_modified(
    head: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Option<SystemTime> {
    head.last_modified()
        .and_then(|t| SystemTime::try_from(*t).ok())
}

/// The request's result or failure, ignoring one older than the request. A kill between the
/// requests and `evaluation.json` makes the restart send every request again, with the same
/// inference ids, so to the same result keys: what the killed run's requests left there is
/// not this request's answer, which overwrites it. Taken for it, such a result predates its
/// request, its latency is unknown, and a `maxP95LatencySeconds` rule rejected a good
/// candidate (a decision sdop never undoes) whenever the resent requests waited longer than
/// the restart took (a queue, a scale-out from zero); so it reads as pending until replaced.
/// (An answer to a killed run's request that lands after the resend is the same request's, and
/// is taken.)
pub async fn outcome(clients: &super::Clients, request: &SentRequest) -> Result<Outcome> {
    let sent = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(request.sent_at);
    let stale =
        |modified: Option<SystemTime>| modified.is_some_and(|m| m + LAST_MODIFIED_GRAIN < sent);
    if let Some((bucket, key)) = s3_parts(&request.output) {
        if let Some(head) = head_s3_object(clients, bucket, key).await? {
            let modified = last_modified(&head);
            if !stale(modified) {
                return Ok(Outcome::Result { modified });
            }
        }
    }
    if let Some((bucket, key)) = request.failure.as_deref().and_then(s3_parts) {
        let head = head_s3_object(clients, bucket, key).await?;
        if head.is_some_and(|head| !stale(last_modified(&head))) {
            if let Some(body) = get_object(clients, bucket, key).await? {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
                return Ok(Outcome::Failure(format!(
                    "the request failed: {}",
                    text.trim()
                )));
            }
        }
    }
    Ok(Outcome::Pending)
}

#[async_trait]
impl Adapter for EvaluationAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        EVALUATION
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (bucket, prefix) = split(name)?;
        let Some(record) = read_evaluation(ctx.clients, bucket, prefix).await? else {
            return Ok(None);
        };
        let ownership = match ResourceId::parse(&record.resource) {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let mut observed = ObservedObject::new(
            ObjectKey::new(EVALUATION, name),
            BTreeMap::from([(
                "casesHash".to_string(),
                Value::from(record.cases_hash.clone()),
            )]),
            ownership,
        );
        let mut done = 0;
        let mut oldest = SystemTime::now();
        for request in &record.requests {
            match outcome(ctx.clients, request).await? {
                Outcome::Pending => {
                    let sent = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(request.sent_at);
                    oldest = oldest.min(sent);
                    let waited = SystemTime::now().duration_since(sent).unwrap_or_default();
                    if waited > Duration::from_secs(record.timeout_seconds) {
                        done += 1;
                    }
                }
                _ => done += 1,
            }
        }
        let total = record.requests.len();
        if done < total {
            let waited = SystemTime::now()
                .duration_since(oldest)
                .unwrap_or_default()
                .as_secs();
            observed.state = ObjectState::Progressing(format!(
                "evaluation on {}: {done} of {total} results in ({waited} of {} s)",
                record.endpoint_name, record.timeout_seconds
            ));
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("evaluation name not known yet".into()))?;
        let (bucket, prefix) = split(name)?;
        let text = |key: &str| {
            object
                .inputs
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Terminal(format!("{EVALUATION} {name}: no {key}")))
        };
        let endpoint = text("endpointName")?;
        let output_path = text("outputPath")?;
        let failure_path = text("failurePath").ok();
        let candidate = text("candidate")?;
        let timeout = object
            .inputs
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(1800);
        let cases: Vec<Case> = object
            .inputs
            .get("cases")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .ok_or_else(|| Error::Terminal(format!("{EVALUATION} {name}: no cases")))?;
        let cases_hash = object
            .get("casesHash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let with_slash = |p: &str| {
            if p.ends_with('/') {
                p.to_string()
            } else {
                format!("{p}/")
            }
        };
        // The inference ids are this evaluation's own (its name, so its evidence prefix, and
        // its cases), not only the candidate's: a candidate evaluated again under another
        // prefix (evidenceS3Uri) shared the earlier evaluation's result keys, so it read that
        // evaluation's results as its own and, deleted, would delete them. Deterministic, so a
        // request sent again after a kill keeps its id and result key.
        let run = &crate::model::naming::content_hash(&(name, &cases_hash))[..8];
        let mut requests = Vec::new();
        for (index, case) in cases.iter().enumerate() {
            let key = format!("{prefix}requests/case-{index}.json");
            put_object(
                ctx,
                bucket,
                &key,
                "application/json",
                case.payload.to_string().into_bytes(),
                &[],
            )
            .await?;
            let id = format!("sdop-eval-{candidate}-{run}-{index}");
            let invoked = ctx
                .clients
                .sagemaker_runtime
                .invoke_endpoint_async()
                .endpoint_name(endpoint)
                .input_location(format!("s3://{bucket}/{key}"))
                .content_type("application/json")
                .accept("application/json")
                .inference_id(&id)
                .invocation_timeout_seconds(timeout.min(3600) as i32)
                .send()
                .await
                .map_err(|e| classify("sagemaker:InvokeEndpointAsync", e))?;
            requests.push(SentRequest {
                case: case.clone(),
                input: format!("s3://{bucket}/{key}"),
                output: invoked
                    .output_location()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}{id}.out", with_slash(output_path))),
                failure: invoked
                    .failure_location()
                    .map(str::to_string)
                    .or_else(|| failure_path.map(|p| format!("{}{id}-error.out", with_slash(p)))),
                sent_at: epoch(SystemTime::now()),
            });
        }
        let record = EvaluationRecord {
            resource: ctx.resource.to_string(),
            endpoint_name: endpoint.to_string(),
            endpoint_config_name: text("endpointConfigName").unwrap_or_default().to_string(),
            cases_hash: cases_hash.clone(),
            timeout_seconds: timeout,
            requests,
        };
        let body = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Terminal(format!("evaluation record: {e}")))?;
        put_object(
            ctx,
            bucket,
            &format!("{prefix}evaluation.json"),
            "application/json",
            body,
            &[(META_HASH, cases_hash)],
        )
        .await?;
        Ok(ObjectState::Progressing(format!(
            "{} requests sent to {endpoint}",
            cases.len()
        )))
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        self.create(ctx, object).await
    }

    /// Deletes the requests, the record and the results it names.
    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let (bucket, prefix) = split(name)?;
        let Some(record) = read_evaluation(ctx.clients, bucket, prefix).await? else {
            return Ok(());
        };
        for request in &record.requests {
            for uri in [
                Some(&request.input),
                Some(&request.output),
                request.failure.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                if let Some((b, k)) = s3_parts(uri) {
                    super::delete_s3_object(ctx.clients, b, k).await?;
                }
            }
        }
        super::delete_s3_object(ctx.clients, bucket, &format!("{prefix}evaluation.json")).await
    }
}

/// The first image of a WebUI text-to-image result (`images`: base64 PNGs, fork
/// `modules/api/models.py` TextToImageResponse), or why there is none.
fn first_image(result: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let quoted = || String::from_utf8_lossy(&result[..result.len().min(300)]).to_string();
    let parsed: Value = serde_json::from_slice(result)
        .map_err(|_| format!("the result is not JSON: {}", quoted()))?;
    if let Some(error) = parsed.get("error") {
        return Err(format!("the image answered an error: {error}"));
    }
    let image = parsed
        .get("images")
        .and_then(Value::as_array)
        .and_then(|images| images.first())
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the result has no images: {}", quoted()))?;
    sdop_evidence::decode_base64_image(image).map_err(|e| format!("the image is not base64: {e}"))
}

fn evidence_case(case: &Case) -> sdop_evidence::Case {
    sdop_evidence::Case {
        prompt: case.prompt.clone(),
        negative_prompt: (!case.negative_prompt.is_empty()).then(|| case.negative_prompt.clone()),
        seed: u64::from(case.seed),
        width: case.width,
        height: case.height,
    }
}

/// The production version's evidence to compare with: the latest approved version other than
/// this candidate, its record and the bucket its images are in.
async fn baseline(
    clients: &super::Clients,
    group: &str,
    root: &str,
    candidate: &str,
) -> Result<Option<(i32, String, sdop_evidence::EvidenceRecord)>> {
    let versions = super::model_registry::list_versions(clients, group).await?;
    let Some(version) = versions
        .iter()
        .rev()
        .find(|v| v.approval == "Approved" && v.candidate() != Some(candidate))
    else {
        return Ok(None);
    };
    let Some(id) = version.candidate() else {
        return Ok(None);
    };
    let (bucket, prefix) = split(root)?;
    let Some(body) = get_object(clients, bucket, &format!("{prefix}{id}/evidence.json")).await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&body)
        .ok()
        .map(|record| (version.number, id.to_string(), record)))
}

#[async_trait]
impl Adapter for EvidenceAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        EVIDENCE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (bucket, key) = split(name)?;
        let Some(head) = head_s3_object(ctx.clients, bucket, key).await? else {
            return Ok(None);
        };
        let Some(body) = get_object(ctx.clients, bucket, key).await? else {
            return Ok(None);
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let ownership = match meta.get(META_RESOURCE).and_then(|r| ResourceId::parse(r)) {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let record: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::Terminal(format!("s3://{bucket}/{key}: not an evidence record: {e}"))
        })?;
        // As the manifest writes them: a limit not set is absent, not null.
        let mut thresholds = record["thresholds"].clone();
        if let Some(map) = thresholds.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let mut observed = ObservedObject::new(
            ObjectKey::new(EVIDENCE, name),
            BTreeMap::from([
                ("thresholds".to_string(), thresholds),
                ("casesHash".to_string(), record["casesHash"].clone()),
            ]),
            ownership,
        );
        let reasons: Vec<&str> = record["verdict"]["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let passed = record["verdict"]["passed"].as_bool().unwrap_or(false);
        let outputs = &mut observed.outputs;
        outputs.insert("evidence".into(), format!("s3://{bucket}/{key}"));
        outputs.insert("evidenceDigest".into(), digest_of(&body));
        outputs.insert(
            "verdict".into(),
            if passed {
                "passed".to_string()
            } else {
                format!("failed: {}", reasons.join("; "))
            },
        );
        if let Some(sheet) = record["contactSheet"]["key"].as_str() {
            outputs.insert("contactSheet".into(), format!("s3://{bucket}/{sheet}"));
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("evidence name not known yet".into()))?;
        let (bucket, key) = split(name)?;
        let prefix = key
            .strip_suffix("evidence.json")
            .ok_or_else(|| Error::Terminal(format!("{name:?} is not .../evidence.json")))?;
        let input = |k: &str| {
            object
                .inputs
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let Some(evaluation) = read_evaluation(ctx.clients, bucket, prefix).await? else {
            return Err(Error::Waiting(format!(
                "s3://{bucket}/{prefix}evaluation.json: the evaluation has not sent its requests yet"
            )));
        };
        // The staging instance's list price in the region the evaluation ran in.
        let price = crate::cost::hourly(input("instanceType"), 1, &ctx.clients.region);
        let thresholds: sdop_evidence::Thresholds = object
            .inputs
            .get("thresholds")
            .map(|t| serde_json::from_value(t.clone()))
            .transpose()
            .map_err(|e| Error::Terminal(format!("thresholds: {e}")))?
            .unwrap_or_default();
        let mut cases = Vec::new();
        let mut images: Vec<Option<Vec<u8>>> = Vec::new();
        for (index, request) in evaluation.requests.iter().enumerate() {
            let case = evidence_case(&request.case);
            let sent = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(request.sent_at);
            match outcome(ctx.clients, request).await? {
                Outcome::Result { modified } => {
                    // `outcome` took it as this request's answer: one that reads as older than
                    // its request came within Last-Modified's grain (whole seconds), 0 s by it
                    // (unknown, it failed a `maxP95LatencySeconds` rule for an endpoint that
                    // answers in under a second).
                    let latency = modified.map(|m| {
                        m.duration_since(sent)
                            .unwrap_or(Duration::ZERO)
                            .as_secs_f64()
                    });
                    let (b, k) = s3_parts(&request.output).unwrap_or_default();
                    let body = get_object(ctx.clients, b, k).await?.unwrap_or_default();
                    match first_image(&body) {
                        Ok(png) => {
                            let image_key = format!("{prefix}images/case-{index}.png");
                            put_object(ctx, bucket, &image_key, "image/png", png.clone(), &[])
                                .await?;
                            cases.push(sdop_evidence::CaseRecord::with_image(
                                case,
                                &png,
                                Some(image_key),
                                latency,
                                price,
                            ));
                            images.push(Some(png));
                        }
                        Err(why) => {
                            cases.push(sdop_evidence::CaseRecord::without_image(
                                case, why, latency, price,
                            ));
                            images.push(None);
                        }
                    }
                }
                Outcome::Failure(why) => {
                    cases.push(sdop_evidence::CaseRecord::without_image(
                        case, why, None, price,
                    ));
                    images.push(None);
                }
                Outcome::Pending => {
                    cases.push(sdop_evidence::CaseRecord::without_image(
                        case,
                        format!("no result within {} s", evaluation.timeout_seconds),
                        None,
                        price,
                    ));
                    images.push(None);
                }
            }
        }
        let candidate = input("candidate");
        let base = baseline(
            ctx.clients,
            input("group"),
            input("evidenceRoot"),
            candidate,
        )
        .await?;
        let mut columns = Vec::new();
        if let Some((number, _, _)) = &base {
            columns.push(format!("production version {number}"));
        }
        columns.push(format!("candidate {candidate}"));
        let mut sheet_images: Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> = Vec::new();
        for (case, image) in cases.iter().zip(&images) {
            let production = match &base {
                Some((_, id, record)) => {
                    let key = record
                        .cases
                        .iter()
                        .find(|c| c.prompt == case.prompt && c.seed == case.seed)
                        .and_then(|c| c.key.clone());
                    match key {
                        Some(k) => get_object(ctx.clients, bucket, &k).await?,
                        None => {
                            tracing::debug!(baseline = %id, prompt = %case.prompt, "no baseline image");
                            None
                        }
                    }
                }
                None => None,
            };
            sheet_images.push((production, image.clone()));
        }
        let mut sheet = sdop_evidence::ContactSheet::new(columns);
        for (case, (production, candidate_png)) in cases.iter().zip(&sheet_images) {
            let mut cells: Vec<Option<&[u8]>> = Vec::new();
            if base.is_some() {
                cells.push(production.as_deref());
            }
            cells.push(candidate_png.as_deref());
            sheet
                .add_row(&case.prompt, case.seed, cells)
                .map_err(|e| Error::Terminal(format!("contact sheet: {e}")))?;
        }
        let rendered = sheet
            .render()
            .map_err(|e| Error::Terminal(format!("contact sheet: {e}")))?;
        let sheet_key = format!("{prefix}contact-sheet.png");
        put_object(ctx, bucket, &sheet_key, "image/png", rendered.png, &[]).await?;
        let mut record = sdop_evidence::EvidenceRecord::new(
            sdop_evidence::Evaluation {
                candidate: candidate.to_string(),
                baseline: base
                    .as_ref()
                    .map(|(number, id, _)| format!("version {number} ({id})")),
                endpoint: evaluation.endpoint_name.clone(),
                instance_type: input("instanceType").to_string(),
                price_per_hour_usd: price,
            },
            cases,
            thresholds,
        );
        record.contact_sheet = Some(sdop_evidence::SheetRecord {
            key: Some(sheet_key),
            layout: rendered.layout,
        });
        let mut record = serde_json::to_value(&record)
            .map_err(|e| Error::Terminal(format!("evidence record: {e}")))?;
        // The evaluation it judges (its requests), so new prompts or seeds read as a change.
        record["casesHash"] = Value::from(evaluation.cases_hash.clone());
        let body = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Terminal(format!("evidence record: {e}")))?;
        // Last: its presence means the bundle is whole.
        put_object(ctx, bucket, key, "application/json", body, &[]).await?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // Judged again (new thresholds): the bundle is rewritten.
        self.create(ctx, object).await
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let (bucket, key) = split(name)?;
        let Some(body) = get_object(ctx.clients, bucket, key).await? else {
            return Ok(());
        };
        if let Ok(record) = serde_json::from_slice::<Value>(&body) {
            let keys = record["cases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["key"].as_str())
                .chain(record["contactSheet"]["key"].as_str())
                .map(str::to_string)
                .collect::<Vec<_>>();
            for k in keys {
                super::delete_s3_object(ctx.clients, bucket, &k).await?;
            }
        }
        super::delete_s3_object(ctx.clients, bucket, key).await
    }
}
