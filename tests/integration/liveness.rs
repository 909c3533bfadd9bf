//! Every field live (issue #22), tested generically against the local AWS and read back with the
//! AWS SDK directly, never through sdop.
//!
//! - **Edits.** Every leaf of every spec of the fixture is edited in turn (the leaves are walked
//!   from the manifests, so a field added to the fixture is covered without a new row): the
//!   plan must show a change of that resource, `apply --wait` must change what the SDK reads back
//!   from AWS, and the plan after must be empty. The only rows to remember are the leaves that
//!   never reach AWS ([`NOT_SENT`]) and those AWS cannot change in place ([`REFUSED_IN_PLACE`]),
//!   each with its reason; a leaf listed there must indeed not reach AWS, or the test fails.
//!   Leaves that name another resource ([`REFERENCES`]) or must change with another
//!   ([`COUPLED`]) are covered elsewhere, as their rows say.
//! - **Drift.** Every attribute someone can change behind sdop's back (tags, repository and
//!   bucket settings, scaling limits, a model package group's tags) is changed with the SDK:
//!   the plan shows it and apply puts back exactly what the SDK read before.
//!
//! The ModelPromotion's AWS is the registry (its group's tags, each version's number, approval
//! status and description) and its evidence bundles in S3 (what `evaluation.json` sent where,
//! what `evidence.json` judged against which thresholds), all read with the SDK.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_applicationautoscaling::types::ServiceNamespace;
use sdop::apply::{apply, ApplyOptions};
use sdop::manifest::load_paths;
use serde_json::{json, Value};

use crate::support::env::Env;

const BUCKET: &str = r#"apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {name: assets}
spec:
  bucketName: sdop-live-assets
  region: us-east-1
  tags: {team: ml}
"#;

const REPOSITORY: &str = r#"apiVersion: sdop/v1alpha1
kind: ImageRepository
metadata: {name: inference}
spec:
  repositoryName: sd-live-inference
  imageTag: latest
  scanOnPush: true
  imageTagMutability: MUTABLE
  tags: {team: ml}
"#;

const ENDPOINT: &str = r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: live}
spec:
  endpointName: sd-live
  contract: all-in-one-ai/2023-03-08
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-live-assets/models/model.tar.gz"}
  instanceType: ml.g4dn.xlarge
  instanceCount: 1
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment:
    api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"
    # The WebUI fork lists it before every text-to-image request (the evaluations').
    embeddings_s3uri: s3://sdop-live-assets/embeddings/
  asyncInference:
    outputPath: s3://sdop-live-assets/out/
    failurePath: s3://sdop-live-assets/failure/
    maxConcurrentInvocationsPerInstance: 1
  containerStartupHealthCheckTimeoutSeconds: 600
  autoscaling: {minInstances: 0, maxInstances: 2}
  tags: {team: ml}
"#;

const STACK: &str = r#"apiVersion: sdop/v1alpha1
kind: Stack
metadata: {name: webui}
spec:
  stackName: sd-live-webui
  template: {url: "https://sdop-live-templates.s3.us-east-1.amazonaws.com/main.json"}
  parameters: {Owner: ml}
  capabilities: [CAPABILITY_IAM]
  tags: {team: ml}
"#;

/// The templates the Stack may name (uploaded by the test, not by sdop): the second has one
/// more output, so an edit of the URL changes what CloudFormation runs.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "main.json",
        r#"{"Parameters": {"Owner": {"Type": "String"}}, "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"Owner": {"Value": {"Ref": "Owner"}}}}"#,
    ),
    (
        "main2.json",
        r#"{"Parameters": {"Owner": {"Type": "String"}}, "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"Owner": {"Value": {"Ref": "Owner"}}, "Second": {"Value": "2"}}}"#,
    ),
];

const DATASET: &str = r#"apiVersion: sdop/v1alpha1
kind: Dataset
metadata: {name: images}
spec:
  directory: images
  s3Uri: s3://sdop-live-assets/dataset/
"#;

const PACKAGE: &str = r#"apiVersion: sdop/v1alpha1
kind: ModelArchive
metadata: {name: base}
spec:
  output: s3://sdop-live-assets/packages/model.tar.gz
  format: tar.gz
  compressionLevel: 1
  sources:
    - local: weights/model.ckpt
      path: Stable-diffusion/
"#;

const JOB: &str = r#"apiVersion: sdop/v1alpha1
kind: DreamboothJob
metadata: {name: jpstyle}
spec:
  trainingJobName: jpstyle
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-training:latest"}
  instanceType: ml.g4dn.2xlarge
  roleArn: arn:aws:iam::123456789012:role/sdop-test
  sourceCheckpoint: {s3Uri: "s3://sdop-live-train-inputs/checkpoints/v2-1_768-ema-pruned.ckpt"}
  modelName: jp-style-model
  resolution: 768
  maxTrainSteps: 2500
  concepts:
    - {datasetS3Uri: "s3://sdop-live-train-inputs/dataset/", instanceToken: jpstyle girl, classToken: girl}
  checkpointS3Uri: s3://sdop-live-assets/models/Stable-diffusion/
"#;

/// Every model the staging Endpoint (`Endpoint/live`, async) serves is registered, evaluated
/// there and approved by rule; `Endpoint/production` serves the latest approved version.
const PROMOTION: &str = r#"apiVersion: sdop/v1alpha1
kind: ModelPromotion
metadata: {name: live}
spec:
  modelPackageGroupName: sd-live-models
  staging: {endpoint: live}
  evaluation:
    prompts:
      - {prompt: photo of jpstyle girl, negativePrompt: lowres}
    seeds: [7, 8]
    width: 512
    height: 512
    steps: 20
    timeoutSeconds: 600
    expectedSecondsPerImage: 20
    thresholds:
      allDecode: true
      noneBlank: true
      expectedSize: true
      maxP95LatencySeconds: 600
      maxCostPerImageUsd: 0.5
  approval: automatic
  evidenceS3Uri: s3://sdop-live-assets/evidence/
  tags: {team: ml}
"#;

const PRODUCTION: &str = r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: production}
spec:
  endpointName: sd-live-production
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {modelPromotion: live}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
  tags: {team: ml}
"#;

/// Local files the fixture names, and the others its edits may name.
const FILES: &[(&str, &str)] = &[
    ("images/a.jpg", "image a"),
    ("images/b.jpg", "image b"),
    ("images2/a.jpg", "image a, another set"),
    ("weights/model.ckpt", "weights"),
    ("weights/model2.ckpt", "other weights"),
];

const FIXTURE: &[(&str, &str)] = &[
    ("bucket.yaml", BUCKET),
    ("repository.yaml", REPOSITORY),
    ("endpoint.yaml", ENDPOINT),
    ("stack.yaml", STACK),
    ("dataset.yaml", DATASET),
    ("package.yaml", PACKAGE),
    ("job.yaml", JOB),
    ("promotion.yaml", PROMOTION),
    ("production.yaml", PRODUCTION),
];

/// Spec leaves that reach no AWS attribute, with why.
const NOT_SENT: &[(&str, &str, &str)] = &[
    (
        "*",
        "spec.deletionPolicy",
        "what pruning does with the resource",
    ),
    (
        "*",
        "spec.adopt",
        "whether an existing untagged object is taken over",
    ),
    (
        "ImageRepository",
        "spec.imageTag",
        "which tag's digest is read (the imageUri output)",
    ),
    (
        "Endpoint",
        "spec.contract",
        "which upstream version's rules validate the environment (the image is spec.image)",
    ),
    (
        "ModelPromotion",
        "spec.evaluation.expectedSecondsPerImage",
        "only the plan's cost estimate of an evaluation (staging instance time per image)",
    ),
    (
        "ModelPromotion",
        "spec.evaluation.timeoutSeconds",
        "how long an evaluation's requests may take (InvokeEndpointAsync's InvocationTimeoutSeconds): sent with the next evaluation's requests; one already sent or finished is not sent again for it",
    ),
    (
        "ModelPromotion",
        "spec.approval",
        "how the next candidate is decided: a version already decided keeps its decision (sdop never undoes one)",
    ),
];

/// Spec leaves whose every other value needs another leaf changed with it, with why and the
/// test that covers such a change.
const COUPLED: &[(&str, &str, &str)] = &[(
    "ModelArchive",
    "spec.format",
    "the format decides the output's form (an object for tar.gz, a prefix for uncompressed), so it changes with spec.output: tests/integration/package.rs",
)];

/// Spec leaves that name another resource of the fixture: any other value needs another such
/// resource in the manifests, with why and what covers it.
const REFERENCES: &[(&str, &str, &str)] = &[
    (
        "ModelPromotion",
        "spec.staging.endpoint",
        "the staging Endpoint; a new candidate on it (an edit of its image, model data or environment here) is registered, evaluated and promoted",
    ),
    (
        "Endpoint",
        "spec.modelData.modelPromotion",
        "the ModelPromotion whose approved version production serves; a newly approved version rolling out is covered by the staging edits and tests/integration/promotion.rs",
    ),
];

/// Spec leaves AWS cannot change in place: the plan shows the change and apply refuses it with
/// the reason (a replacement would delete the data).
const REFUSED_IN_PLACE: &[(&str, &str, &str)] = &[("Bucket", "spec.region", "cannot move to")];

fn listed<'a>(table: &'a [(&str, &str, &'a str)], kind: &str, path: &str) -> Option<&'a str> {
    table
        .iter()
        .find(|(k, p, _)| (*k == "*" || *k == kind) && *p == path)
        .map(|(_, _, why)| *why)
}

/// Every scalar leaf under `spec`, as (dotted path, value).
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                leaves(&format!("{prefix}.{key}"), child, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), child, out);
            }
        }
        scalar => out.push((prefix.to_string(), scalar.clone())),
    }
}

/// Other values for a leaf, tried in order until validation accepts one.
fn edits(value: &Value) -> Vec<Value> {
    match value {
        Value::Bool(b) => vec![json!(!b)],
        Value::Number(n) if n.as_i64().is_none() => {
            let x = n.as_f64().expect("a number");
            vec![json!(x * 2.0), json!(x + 1.0)]
        }
        Value::Number(n) => {
            let n = n.as_i64().expect("integer leaf");
            // SD 2.x and 1.x resolutions first: no other value is valid.
            let resolution = match n {
                768 => vec![json!(512)],
                512 => vec![json!(768)],
                _ => Vec::new(),
            };
            [resolution, vec![json!(n + 1), json!(n * 2), json!(n - 1)]].concat()
        }
        Value::String(s) => {
            let mut out = Vec::new();
            // Enum-like values AWS or the contract define.
            for pair in [
                ("MUTABLE", "IMMUTABLE"),
                ("ml.g4dn.xlarge", "ml.g4dn.2xlarge"),
                ("ml.g4dn.2xlarge", "ml.g4dn.xlarge"),
                ("all-in-one-ai/2023-03-08", "all-in-one-ai/2023-03-01"),
                ("us-east-1", "us-west-2"),
                ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"),
                ("automatic", "manual"),
            ] {
                if s == pair.0 {
                    out.push(json!(pair.1));
                }
            }
            // A sibling file, object or prefix: model.tar.gz -> model2.tar.gz, out/ -> out2/,
            // images -> images2.
            if let Some(dir) = s.strip_suffix('/') {
                out.push(json!(format!("{dir}2/")));
            }
            let (head, last) = s.rsplit_once('/').unwrap_or(("", s));
            if let Some((stem, ext)) = last.split_once('.') {
                let sep = if head.is_empty() { "" } else { "/" };
                out.push(json!(format!("{head}{sep}{stem}2.{ext}")));
            }
            out.push(json!(format!("{s}2")));
            out.push(json!(format!("{s}-2")));
            out.push(json!(format!("{s}x")));
            out
        }
        other => panic!("no edit for {other}"),
    }
}

/// Where two snapshots differ, as `path: before -> after`.
fn differences(path: &str, a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    differences(
                        &format!("{path}.{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    )
                })
                .collect()
        }
        _ if a == b => Vec::new(),
        _ => vec![format!("{path}: {a} -> {b}")],
    }
}

/// Sets the leaf at `path` (`spec.a.b[2].c`, as [`leaves`] names it).
fn set(spec: &mut Value, path: &str, value: Value) {
    let mut at = spec;
    for part in path.trim_start_matches("spec.").split('.') {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        at = &mut at[key];
        if let Some(i) = index {
            at = &mut at[i];
        }
    }
    *at = value;
}

/// A SageMaker resource's tags as `key=value`, less the spec hash (sdop's own bookkeeping).
async fn sagemaker_tags(sm: &aws_sdk_sagemaker::Client, arn: &str) -> Vec<String> {
    sm.list_tags()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .filter(|t| t.key() != Some("sdop.io/spec-hash"))
        .map(|t| format!("{}={}", t.key().unwrap(), t.value().unwrap()))
        .collect()
}

/// The checks' view of the shared `Env`: the plan as lines, apply as a result, and what AWS
/// holds read with the SDK.
trait Liveness {
    async fn plan_lines(&self) -> Vec<String>;
    async fn try_apply(&self) -> Result<(), String>;
    async fn snapshot(&self) -> Value;
}

impl Liveness for Env {
    /// The plan's actions as `Operation Kind/name aws_type object: fields`.
    async fn plan_lines(&self) -> Vec<String> {
        let loaded = load_paths(&[PathBuf::from(self.manifests.path())]);
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        let plan = sdop::apply::plan(&loaded, self.clients().await, &self.store())
            .await
            .unwrap();
        plan.actions
            .iter()
            .map(|a| {
                let fields: Vec<&str> = a.changes.iter().map(|c| c.field.as_str()).collect();
                format!(
                    "{:?} {} {} {}: {}",
                    a.operation,
                    a.resource,
                    a.aws_type,
                    a.name,
                    fields.join(",")
                )
            })
            .collect()
    }

    async fn try_apply(&self) -> Result<(), String> {
        let loaded = load_paths(&[PathBuf::from(self.manifests.path())]);
        let options = ApplyOptions {
            wait: true,
            timeout: Duration::from_secs(60),
            min_poll: Duration::from_millis(100),
            max_poll: Duration::from_millis(400),
            ..ApplyOptions::default()
        };
        let lines = std::sync::Mutex::new(Vec::new());
        let report = |line: String| lines.lock().unwrap().push(line);
        let clients = self.clients().await;
        let result = apply(&loaded, &clients, &self.store(), &options, &report).await;
        let lines = lines.into_inner().unwrap();
        match result {
            Ok(summary) if summary.converged() => Ok(()),
            Ok(_) => Err(format!("not converged: {lines:#?}")),
            Err(e) => Err(format!("{e}\n{lines:#?}")),
        }
    }

    /// What AWS holds, read with the SDK: every attribute a spec field may reach.
    async fn snapshot(&self) -> Value {
        let s3 = self.aws.s3().await;
        let ecr = self.aws.ecr().await;
        let sm = self.aws.sagemaker().await;
        let aas = aws_sdk_applicationautoscaling::Client::new(&self.aws.sdk_config().await);
        let mut buckets = serde_json::Map::new();
        for bucket in s3.list_buckets().send().await.unwrap().buckets() {
            let name = bucket.name().unwrap();
            let tags: Vec<String> = match s3.get_bucket_tagging().bucket(name).send().await {
                Ok(out) => out
                    .tag_set()
                    .iter()
                    .map(|t| format!("{}={}", t.key(), t.value()))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let location = s3.get_bucket_location().bucket(name).send().await.unwrap();
            let pab = s3
                .get_public_access_block()
                .bucket(name)
                .send()
                .await
                .ok()
                .and_then(|o| o.public_access_block_configuration().cloned())
                .map(|c| format!("{c:?}"));
            let encryption = s3
                .get_bucket_encryption()
                .bucket(name)
                .send()
                .await
                .ok()
                .map(|o| format!("{:?}", o.server_side_encryption_configuration()));
            buckets.insert(
                name.to_string(),
                json!({"tags": tags, "location": format!("{:?}", location.location_constraint()),
                       "publicAccessBlock": pab, "encryption": encryption}),
            );
        }
        let mut repositories = serde_json::Map::new();
        for repo in ecr
            .describe_repositories()
            .send()
            .await
            .unwrap()
            .repositories()
        {
            let tags: Vec<String> = ecr
                .list_tags_for_resource()
                .resource_arn(repo.repository_arn().unwrap())
                .send()
                .await
                .unwrap()
                .tags()
                .iter()
                .map(|t| format!("{}={}", t.key(), t.value()))
                .collect();
            repositories.insert(
                repo.repository_name().unwrap().to_string(),
                json!({
                    "scanOnPush": repo.image_scanning_configuration().map(|c| c.scan_on_push()),
                    "mutability": repo.image_tag_mutability().map(|m| m.as_str().to_string()),
                    "tags": tags,
                }),
            );
        }
        let mut endpoints = serde_json::Map::new();
        for summary in sm.list_endpoints().send().await.unwrap().endpoints() {
            let name = summary.endpoint_name().unwrap();
            // One that is being deleted (a superseded name) is gone a moment later.
            let Ok(endpoint) = sm.describe_endpoint().endpoint_name(name).send().await else {
                continue;
            };
            if endpoint.endpoint_status()
                == Some(&aws_sdk_sagemaker::types::EndpointStatus::Deleting)
            {
                continue;
            }
            let config_name = endpoint.endpoint_config_name().unwrap();
            let config = sm
                .describe_endpoint_config()
                .endpoint_config_name(config_name)
                .send()
                .await
                .unwrap();
            let variant = &config.production_variants()[0];
            let model = sm
                .describe_model()
                .model_name(variant.model_name().unwrap())
                .send()
                .await
                .unwrap();
            let tags = sagemaker_tags(&sm, endpoint.endpoint_arn().unwrap()).await;
            let container = model.primary_container().unwrap();
            endpoints.insert(
                name.to_string(),
                json!({
                    "tags": tags,
                    "instanceType": variant.instance_type().map(|t| t.as_str().to_string()),
                    "instanceCount": variant.initial_instance_count(),
                    "startupTimeout": variant.container_startup_health_check_timeout_in_seconds(),
                    "async": format!("{:?}", config.async_inference_config()),
                    "image": container.image(),
                    "modelData": container.model_data_url(),
                    "environment": container.environment().map(|e| e.iter().collect::<std::collections::BTreeMap<_, _>>()),
                    "role": model.execution_role_arn(),
                }),
            );
        }
        let targets: Vec<String> = aas
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Sagemaker)
            .send()
            .await
            .unwrap()
            .scalable_targets()
            .iter()
            .map(|t| {
                format!(
                    "{} {:?}..{:?}",
                    t.resource_id(),
                    t.min_capacity(),
                    t.max_capacity()
                )
            })
            .collect();
        // The objects sdop uploads or packs, with their size and metadata.
        let mut objects = serde_json::Map::new();
        let listed = s3
            .list_objects_v2()
            .bucket("sdop-live-assets")
            .send()
            .await
            .unwrap();
        for object in listed.contents() {
            let key = object.key().unwrap();
            let head = s3
                .head_object()
                .bucket("sdop-live-assets")
                .key(key)
                .send()
                .await
                .unwrap();
            let metadata: std::collections::BTreeMap<_, _> = head
                .metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            objects.insert(
                key.to_string(),
                json!({"size": object.size(), "etag": object.e_tag(), "metadata": metadata}),
            );
        }
        // Each evidence bundle's essentials, by its prefix: what was sent where
        // (`evaluation.json`) and what it was judged on (`evidence.json`).
        let mut bundles = serde_json::Map::new();
        for object in listed.contents() {
            let key = object.key().unwrap();
            for file in ["evaluation.json", "evidence.json"] {
                let Some(prefix) = key.strip_suffix(file) else {
                    continue;
                };
                let body = s3
                    .get_object()
                    .bucket("sdop-live-assets")
                    .key(key)
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes();
                let record: Value = serde_json::from_slice(&body).unwrap();
                let essentials = if file == "evaluation.json" {
                    json!({
                        "endpoint": record["endpointName"],
                        "casesHash": record["casesHash"],
                        "timeoutSeconds": record["timeoutSeconds"],
                        "cases": record["requests"].as_array().unwrap().iter().map(|r| json!({
                            "prompt": r["case"]["prompt"],
                            "negativePrompt": r["case"]["negativePrompt"],
                            "seed": r["case"]["seed"],
                            "width": r["case"]["width"],
                            "height": r["case"]["height"],
                            "steps": r["case"]["payload"]["txt2img_payload"]["steps"],
                        })).collect::<Vec<_>>(),
                    })
                } else {
                    json!({
                        "endpoint": record["endpoint"],
                        "candidate": record["candidate"],
                        "casesHash": record["casesHash"],
                        "thresholds": record["thresholds"],
                        "passed": record["verdict"]["passed"],
                        "cases": record["cases"].as_array().unwrap().iter().map(|c| json!({
                            "prompt": c["prompt"],
                            "negativePrompt": c["negativePrompt"],
                            "seed": c["seed"],
                            "width": c["width"],
                            "height": c["height"],
                        })).collect::<Vec<_>>(),
                    })
                };
                let bundle = bundles
                    .entry(prefix.to_string())
                    .or_insert_with(|| json!({}));
                bundle[file.trim_end_matches(".json")] = essentials;
            }
        }
        // The Model Registry: each group's tags and versions.
        let mut groups = serde_json::Map::new();
        for group in sm
            .list_model_package_groups()
            .send()
            .await
            .unwrap()
            .model_package_group_summary_list()
        {
            let name = group.model_package_group_name().unwrap();
            let tags = sagemaker_tags(&sm, group.model_package_group_arn().unwrap()).await;
            let mut versions: Vec<(i32, Value)> = sm
                .list_model_packages()
                .model_package_group_name(name)
                .model_package_type(aws_sdk_sagemaker::types::ModelPackageType::Versioned)
                .send()
                .await
                .unwrap()
                .model_package_summary_list()
                .iter()
                .map(|v| {
                    let number = v.model_package_version().unwrap_or_default();
                    (
                        number,
                        json!({
                            "number": number,
                            "approval": v.model_approval_status().map(|a| a.as_str().to_string()),
                            "description": v.model_package_description(),
                        }),
                    )
                })
                .collect();
            versions.sort_by_key(|(number, _)| *number);
            groups.insert(
                name.to_string(),
                json!({"tags": tags, "versions": versions.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}),
            );
        }
        let mut jobs = serde_json::Map::new();
        for summary in sm
            .list_training_jobs()
            .send()
            .await
            .unwrap()
            .training_job_summaries()
        {
            let name = summary.training_job_name().unwrap_or_default();
            let job = sm
                .describe_training_job()
                .training_job_name(name)
                .send()
                .await
                .unwrap();
            let inputs: Vec<String> = job
                .input_data_config()
                .iter()
                .map(|c| {
                    format!(
                        "{:?}={:?}",
                        c.channel_name(),
                        c.data_source()
                            .and_then(|d| d.s3_data_source())
                            .map(|s| s.s3_uri())
                    )
                })
                .collect();
            jobs.insert(
                name.to_string(),
                json!({
                    "hyperparameters": job.hyper_parameters().map(|h| h.iter().collect::<std::collections::BTreeMap<_, _>>()),
                    "image": job.algorithm_specification().and_then(|a| a.training_image()),
                    "role": job.role_arn(),
                    "instanceType": job.resource_config().and_then(|r| r.instance_type()).map(|t| t.as_str().to_string()),
                    "output": job.output_data_config().map(|o| o.s3_output_path()),
                    "inputs": inputs,
                }),
            );
        }
        let cfn = self.aws.cloudformation().await;
        let mut stacks = serde_json::Map::new();
        for stack in cfn.describe_stacks().send().await.unwrap().stacks() {
            if stack.stack_status()
                == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)
            {
                continue;
            }
            let pairs = |items: Vec<(String, String)>| -> std::collections::BTreeMap<_, _> {
                items.into_iter().collect()
            };
            stacks.insert(
                stack.stack_name().unwrap().to_string(),
                json!({
                    "parameters": pairs(stack.parameters().iter().map(|p| (
                        p.parameter_key().unwrap_or_default().to_string(),
                        p.parameter_value().unwrap_or_default().to_string(),
                    )).collect()),
                    "outputs": pairs(stack.outputs().iter().map(|o| (
                        o.output_key().unwrap_or_default().to_string(),
                        o.output_value().unwrap_or_default().to_string(),
                    )).collect()),
                    "capabilities": stack.capabilities().iter().map(|c| c.as_str().to_string()).collect::<Vec<_>>(),
                    "tags": pairs(stack.tags().iter()
                        .filter(|t| t.key() != Some("sdop.io/spec-hash"))
                        .map(|t| (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )).collect()),
                }),
            );
        }
        json!({"buckets": buckets, "repositories": repositories, "endpoints": endpoints,
               "scalableTargets": targets, "stacks": stacks, "objects": objects,
               "trainingJobs": jobs, "modelPackageGroups": groups, "evidence": bundles})
    }
}

async fn converged_fixture() -> Env {
    let env = Env::new();
    // The evaluations' results (the staging endpoint's async inference) a moment after each
    // request, not the emulator's default second.
    env.aws.configure(json!({"invocation_seconds": 0.1}));
    // The job's inputs (the user's uploads), and those its edits may name.
    env.aws.seed_training_inputs("sdop-live-train-inputs").await;
    env.aws
        .seed_dataset("sdop-live-train-inputs", "dataset2/", 3)
        .await;
    let s3 = env.aws.s3().await;
    for (key, body) in [
        (
            "checkpoints/v2-1_768-ema-pruned2.ckpt",
            &b"other weights"[..],
        ),
        (
            "checkpoints/v2-1_768-ema-pruned2.yaml",
            b"model: {params: {parameterization: v}}",
        ),
    ] {
        s3.put_object()
            .bucket("sdop-live-train-inputs")
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }
    s3.create_bucket()
        .bucket("sdop-live-templates")
        .send()
        .await
        .unwrap();
    for (key, body) in TEMPLATES {
        s3.put_object()
            .bucket("sdop-live-templates")
            .key(*key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    for (file, text) in FILES {
        let path = env.manifests.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for (file, text) in FIXTURE {
        env.write(file, text);
    }
    env.try_apply().await.unwrap();
    assert_eq!(
        env.plan_lines().await,
        Vec::<String>::new(),
        "converged fixture"
    );
    env
}

/// The fixture's files whose leaves [`every_promotion_field_reaches_aws_and_is_read_back`]
/// edits: the staging Endpoint and the ModelPromotion, whose edits register, evaluate and
/// promote versions (the slowest leaves); the other test edits the rest. Two tests, each with
/// its own local AWS, so the halves run side by side.
const PROMOTION_FILES: &[&str] = &["endpoint.yaml", "promotion.yaml"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spec_field_reaches_aws_and_is_read_back() {
    every_field_of(|file| !PROMOTION_FILES.contains(&file)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_promotion_field_reaches_aws_and_is_read_back() {
    every_field_of(|file| PROMOTION_FILES.contains(&file)).await;
}

/// Edits every leaf of the fixture's files that `edited` selects (the whole fixture applied).
async fn every_field_of(edited: impl Fn(&str) -> bool) {
    let env = converged_fixture().await;
    let mut failures = Vec::new();
    let mut covered = 0;
    for (file, text) in FIXTURE.iter().filter(|(file, _)| edited(file)) {
        let document: Value = yaml_serde::from_str(text).unwrap();
        let kind = document["kind"].as_str().unwrap().to_string();
        let name = document["metadata"]["name"].as_str().unwrap().to_string();
        let resource = format!("{kind}/{name}");
        let mut spec_leaves = Vec::new();
        leaves("spec", &document["spec"], &mut spec_leaves);
        for (path, value) in spec_leaves {
            if listed(COUPLED, &kind, &path).is_some() || listed(REFERENCES, &kind, &path).is_some()
            {
                continue;
            }
            // The first edit validation accepts.
            let Some(edited) = edits(&value).into_iter().find_map(|candidate| {
                let mut doc = document.clone();
                set(&mut doc["spec"], &path, candidate);
                let text = yaml_serde::to_string(&doc).unwrap();
                env.write(file, &text);
                load_paths(&[PathBuf::from(env.manifests.path())])
                    .is_valid()
                    .then_some(text)
            }) else {
                failures.push(format!("{resource} {path}: no edit of {value} validates"));
                env.write(file, text);
                continue;
            };
            env.write(file, &edited);
            let plan = env.plan_lines().await;
            let touched = plan
                .iter()
                .any(|line| line.contains(&format!(" {resource} ")));
            let before = env.snapshot().await;
            let applied = env.try_apply().await;
            let after = env.snapshot().await;
            if let Some(why) = listed(NOT_SENT, &kind, &path) {
                if touched || before != after {
                    failures.push(format!(
                        "{resource} {path} is listed as not sent ({why}) but its edit changed AWS: {plan:?}"
                    ));
                }
            } else if let Some(message) = listed(REFUSED_IN_PLACE, &kind, &path) {
                match &applied {
                    Err(error) if touched && error.contains(message) => {}
                    other => failures.push(format!(
                        "{resource} {path}: expected the plan to show it and apply to refuse it ({message}), got plan {plan:?}, apply {other:?}"
                    )),
                }
            } else if !touched {
                failures.push(format!(
                    "{resource} {path}: edited, but the plan shows no change of {resource}: {plan:?}"
                ));
            } else if let Err(error) = applied {
                failures.push(format!("{resource} {path}: apply failed: {error}"));
            } else if before == after {
                failures.push(format!(
                    "{resource} {path}: the plan showed {plan:?}, but AWS reads back the same"
                ));
            } else {
                let again = env.plan_lines().await;
                if again.is_empty() {
                    covered += 1;
                } else {
                    failures.push(format!(
                        "{resource} {path}: the plan after apply is not empty: {again:?}"
                    ));
                }
            }
            // Back to the fixture, converged.
            env.write(file, text);
            if let Err(error) = env.try_apply().await {
                failures.push(format!("{resource} {path}: restoring failed: {error}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} field(s) not live ({covered} live):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_every_attribute_is_shown_and_undone() {
    let env = converged_fixture().await;
    let s3 = env.aws.s3().await;
    let ecr = env.aws.ecr().await;
    let sm = env.aws.sagemaker().await;
    let aas = aws_sdk_applicationautoscaling::Client::new(&env.aws.sdk_config().await);
    let repository_arn = ecr
        .describe_repositories()
        .repository_names("sd-live-inference")
        .send()
        .await
        .unwrap()
        .repositories()[0]
        .repository_arn()
        .unwrap()
        .to_string();
    let endpoint_arn = sm
        .describe_endpoint()
        .endpoint_name("sd-live")
        .send()
        .await
        .unwrap()
        .endpoint_arn()
        .unwrap()
        .to_string();
    let group_arn = sm
        .describe_model_package_group()
        .model_package_group_name("sd-live-models")
        .send()
        .await
        .unwrap()
        .model_package_group_arn()
        .unwrap()
        .to_string();
    let sagemaker_arn = |drift: &str| {
        if drift.starts_with("endpoint") {
            endpoint_arn.clone()
        } else {
            group_arn.clone()
        }
    };
    let converged = env.snapshot().await;
    let mut failures = Vec::new();
    for drift in [
        "bucket tag removed",
        "bucket public access unblocked",
        "bucket encryption removed",
        "repository tag removed",
        "repository tag added",
        "scan on push turned off",
        "tag mutability changed",
        "endpoint tag removed",
        "endpoint tag changed",
        "scaling limit raised",
        "stack tag changed",
        "model package group tag removed",
        "model package group tag changed",
    ] {
        match drift {
            "bucket tag removed" => {
                s3.delete_bucket_tagging()
                    .bucket("sdop-live-assets")
                    .send()
                    .await
                    .unwrap();
            }
            "bucket public access unblocked" => {
                s3.delete_public_access_block()
                    .bucket("sdop-live-assets")
                    .send()
                    .await
                    .unwrap();
            }
            "bucket encryption removed" => {
                s3.delete_bucket_encryption()
                    .bucket("sdop-live-assets")
                    .send()
                    .await
                    .unwrap();
            }
            "repository tag removed" => {
                ecr.untag_resource()
                    .resource_arn(&repository_arn)
                    .tag_keys("team")
                    .send()
                    .await
                    .unwrap();
            }
            "repository tag added" => {
                ecr.tag_resource()
                    .resource_arn(&repository_arn)
                    .tags(
                        aws_sdk_ecr::types::Tag::builder()
                            .key("cost-center")
                            .value("123")
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            "scan on push turned off" => {
                ecr.put_image_scanning_configuration()
                    .repository_name("sd-live-inference")
                    .image_scanning_configuration(
                        aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                            .scan_on_push(false)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            "tag mutability changed" => {
                ecr.put_image_tag_mutability()
                    .repository_name("sd-live-inference")
                    .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Immutable)
                    .send()
                    .await
                    .unwrap();
            }
            "endpoint tag removed" | "model package group tag removed" => {
                sm.delete_tags()
                    .resource_arn(sagemaker_arn(drift))
                    .tag_keys("team")
                    .send()
                    .await
                    .unwrap();
            }
            "endpoint tag changed" | "model package group tag changed" => {
                sm.add_tags()
                    .resource_arn(sagemaker_arn(drift))
                    .tags(
                        aws_sdk_sagemaker::types::Tag::builder()
                            .key("team")
                            .value("finance")
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
            }
            "scaling limit raised" => {
                aas.register_scalable_target()
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .resource_id("endpoint/sd-live/variant/AllTraffic")
                    .scalable_dimension(
                        aws_sdk_applicationautoscaling::types::ScalableDimension::SageMakerVariantDesiredInstanceCount,
                    )
                    .max_capacity(5)
                    .send()
                    .await
                    .unwrap();
            }
            "stack tag changed" => {
                // UpdateStack with the previous template and parameters, `team` changed.
                let cfn = env.aws.cloudformation().await;
                let tags: Vec<aws_sdk_cloudformation::types::Tag> = cfn
                    .describe_stacks()
                    .stack_name("sd-live-webui")
                    .send()
                    .await
                    .unwrap()
                    .stacks()[0]
                    .tags()
                    .iter()
                    .map(|t| {
                        let value = if t.key() == Some("team") {
                            Some("finance")
                        } else {
                            t.value()
                        };
                        aws_sdk_cloudformation::types::Tag::builder()
                            .set_key(t.key().map(str::to_string))
                            .set_value(value.map(str::to_string))
                            .build()
                    })
                    .collect();
                cfn.update_stack()
                    .stack_name("sd-live-webui")
                    .use_previous_template(true)
                    .parameters(
                        aws_sdk_cloudformation::types::Parameter::builder()
                            .parameter_key("Owner")
                            .use_previous_value(true)
                            .build(),
                    )
                    .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => unreachable!("{other}"),
        }
        let drifted = env.snapshot().await;
        if drifted == converged {
            failures.push(format!("{drift}: the SDK change did not change AWS"));
            continue;
        }
        let plan = env.plan_lines().await;
        if plan.is_empty() {
            failures.push(format!(
                "{drift}: the plan shows nothing; AWS differs in {}",
                differences("", &converged, &drifted).join("; ")
            ));
        }
        if let Err(error) = env.try_apply().await {
            failures.push(format!("{drift}: apply failed: {error}"));
        }
        let restored = env.snapshot().await;
        if restored != converged {
            failures.push(format!(
                "{drift}: not undone: {}",
                differences("", &converged, &restored).join("; ")
            ));
        }
        let again = env.plan_lines().await;
        if !again.is_empty() {
            failures.push(format!("{drift}: the plan after apply is {again:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
