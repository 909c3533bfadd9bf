//! `sdop apply` against the local AWS: create, converged re-apply with zero mutations,
//! update, drift, conflict and adoption, rolled-back rollouts, prune, training jobs, throttling.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use sdop::apply::{apply, ApplyOptions};
use sdop::manifest::{load_paths, ResourceId};
use sdop::state::{Phase, StateStore};
use serde_json::json;

use crate::support::env::Env;

const ROLE: &str = "arn:aws:iam::123456789012:role/sdop-test";
const API: &str = "https://api-id.execute-api.us-east-1.amazonaws.com/prod";

/// `plan_then_apply`, which checks the plan against the calls apply made (`PRIMARY_CALLS`).
trait PlanThenApply {
    async fn plan_then_apply(&self) -> Vec<String>;
}

impl PlanThenApply for Env {
    /// Plans, applies with `--wait`, and checks the plan told the truth: the AWS calls the
    /// plan's actions stand for are exactly the mutating calls apply made (counted at the local
    /// AWS), and a plan right after is empty. Returns the plan's actions as lines.
    async fn plan_then_apply(&self) -> Vec<String> {
        let plan = self.plan().await;
        let mut promised: Vec<String> = plan.actions.iter().filter_map(primary_call).collect();
        self.aws.reset_calls();
        let (summary, lines) = self.apply().await;
        assert!(summary.converged(), "{lines:#?}");
        let mut made: Vec<String> = self
            .aws
            .mutating_calls()
            .into_iter()
            .filter(|api| PRIMARY_CALLS.contains(&api.as_str()))
            .collect();
        promised.sort();
        made.sort();
        assert_eq!(
            promised, made,
            "plan: {:#?}\napply: {lines:#?}",
            plan.actions
        );
        let after = self.plan().await;
        assert!(
            !after.has_changes(),
            "not empty after apply: {:#?}",
            after.actions
        );
        plan.actions
            .iter()
            .map(|a| format!("{:?} {} {}", a.operation, a.aws_type, a.name))
            .collect()
    }
}

/// The AWS calls that make or remove the objects a plan lists (the other mutating calls,
/// tagging and the like, are details of these).
const PRIMARY_CALLS: &[&str] = &[
    "sagemaker:CreateModel",
    "sagemaker:DeleteModel",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:DeleteEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
    "sagemaker:DeleteEndpoint",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
];

/// The call of [`PRIMARY_CALLS`] an action stands for.
fn primary_call(action: &sdop::engine::Action) -> Option<String> {
    use sdop::engine::Operation::{Create, Delete, Replace, Update};
    let api = match (action.operation, action.aws_type.as_str()) {
        (Create, "sagemaker:model") => "sagemaker:CreateModel",
        (Delete, "sagemaker:model") => "sagemaker:DeleteModel",
        (Create, "sagemaker:endpoint-config") => "sagemaker:CreateEndpointConfig",
        (Delete, "sagemaker:endpoint-config") => "sagemaker:DeleteEndpointConfig",
        (Create | Replace, "sagemaker:endpoint") => "sagemaker:CreateEndpoint",
        (Update, "sagemaker:endpoint") => "sagemaker:UpdateEndpoint",
        (Delete, "sagemaker:endpoint") => "sagemaker:DeleteEndpoint",
        (Create, "s3:bucket") => "s3:CreateBucket",
        (Delete, "s3:bucket") => "s3:DeleteBucket",
        (Create | Update, "application-autoscaling:endpoint-scaling") => {
            "application-autoscaling:RegisterScalableTarget"
        }
        (Delete, "application-autoscaling:endpoint-scaling") => {
            "application-autoscaling:DeregisterScalableTarget"
        }
        _ => return None,
    };
    Some(api.to_string())
}

pub(crate) fn bucket(name: &str, bucket: &str, extra: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: {name}}}\nspec:\n  bucketName: {bucket}\n  region: us-east-1\n{extra}")
}

pub(crate) fn endpoint(instance: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-base
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-it-assets/model.tar.gz"}}
  instanceType: {instance}
  executionRoleArn: {ROLE}
  environment: {{api_endpoint: "{API}"}}
{extra}"#
    )
}

async fn endpoint_config(sm: &aws_sdk_sagemaker::Client) -> String {
    sm.describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap()
        .endpoint_config_name()
        .unwrap()
        .to_string()
}

async fn config_names(sm: &aws_sdk_sagemaker::Client) -> Vec<String> {
    let mut names: Vec<String> = sm
        .list_endpoint_configs()
        .send()
        .await
        .unwrap()
        .endpoint_configs()
        .iter()
        .map(|c| c.endpoint_config_name().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn endpoint_lifecycle_create_converge_update_drift_prune() {
    let env = Env::new();
    env.write(
        "bucket.yaml",
        &bucket("assets", "sdop-it-assets", "  tags: {team: ml}\n"),
    );
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    let first_config = endpoint_config(&sm).await;

    // A converged re-apply reads at most a few objects and mutates nothing.
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged());
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with('+') && !l.starts_with('~')),
        "{lines:#?}"
    );
    let calls = env.aws.calls();
    assert_eq!(calls.mutations(), 0, "{:?}", calls.0);
    // One Tagging API listing for both resources' tags (and the bucket's region); the
    // bucket's public access block and encryption (every field it is sent, read back); one
    // ListEndpoints, whose LastModifiedTime says the endpoint is as last described
    // (tests/integration/reads.rs); the model and config are named by their content and
    // trusted by name. Before #23's shared reads: 6.
    assert!(calls.reads() <= 4, "{:?}", calls.0);

    // A spec change: new model and config, UpdateEndpoint, the previous config kept.
    env.write("endpoint.yaml", &endpoint("ml.g4dn.2xlarge", ""));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let second_config = endpoint_config(&sm).await;
    assert_ne!(first_config, second_config);
    assert_eq!(config_names(&sm).await, {
        let mut v = vec![first_config.clone(), second_config.clone()];
        v.sort();
        v
    });
    // Another change: the oldest config goes, once the new one serves.
    env.write("endpoint.yaml", &endpoint("ml.g4dn.4xlarge", ""));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let third_config = endpoint_config(&sm).await;
    let mut expected = vec![second_config.clone(), third_config.clone()];
    expected.sort();
    assert_eq!(config_names(&sm).await, expected);

    // Drift: the endpoint switched to the old config in the console; a bucket tag removed.
    sm.update_endpoint()
        .endpoint_name("sd-base")
        .endpoint_config_name(&second_config)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s3 = env.aws.s3().await;
    s3.delete_bucket_tagging()
        .bucket("sdop-it-assets")
        .send()
        .await
        .unwrap();
    // plan shows the drift first.
    let loaded = load_paths(&[PathBuf::from(env.manifests.path())]);
    let plan = sdop::apply::plan(&loaded, env.clients().await, &env.store())
        .await
        .unwrap();
    let drift: Vec<String> = plan
        .actions
        .iter()
        .map(|a| format!("{:?} {} {}", a.operation, a.aws_type, a.name))
        .collect();
    assert!(
        drift.contains(&"Update sagemaker:endpoint sd-base".to_string()),
        "{drift:?}"
    );
    assert!(
        drift.contains(&"Update s3:bucket sdop-it-assets".to_string()),
        "{drift:?}"
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("~ Endpoint/base sagemaker:endpoint sd-base updated")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("~ Bucket/assets s3:bucket")),
        "{lines:#?}"
    );
    assert_eq!(endpoint_config(&sm).await, third_config);
    let tags = s3
        .get_bucket_tagging()
        .bucket("sdop-it-assets")
        .send()
        .await
        .unwrap();
    assert!(tags
        .tag_set()
        .iter()
        .any(|t| t.key() == "team" && t.value() == "ml"));

    // A broken file: nothing is pruned.
    env.remove("endpoint.yaml");
    env.write(
        "broken.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Endpoint\nmetadata: {name: base\n",
    );
    let (result, _) = env
        .apply_with(ApplyOptions {
            prune: true,
            ..ApplyOptions::default()
        })
        .await;
    assert!(result.is_err());
    assert!(sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .is_ok());

    // Pruning a deleted manifest removes the endpoint (policy Delete) but keeps the bucket.
    env.remove("broken.yaml");
    env.write("other.yaml", &bucket("other", "sdop-it-other", ""));
    env.apply().await;
    let options = ApplyOptions {
        wait: true,
        prune: true,
        timeout: Duration::from_secs(30),
        ..ApplyOptions::default()
    };
    let (result, lines) = env.apply_with(options).await;
    let summary = result.unwrap();
    assert_eq!(
        summary.pruned,
        vec![ResourceId::new("Endpoint", "base")],
        "{lines:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gone = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("ValidationException"));
    assert!(
        sm.list_models().send().await.unwrap().models().is_empty(),
        "models leaked"
    );
    assert!(config_names(&sm).await.is_empty(), "configs leaked");
    // Pruning everything sdop owns needs --force; Retain buckets are only forgotten.
    env.remove("bucket.yaml");
    env.remove("other.yaml");
    let (result, _) = env
        .apply_with(ApplyOptions {
            prune: true,
            ..ApplyOptions::default()
        })
        .await;
    assert!(result.unwrap_err().to_string().contains("--force"));
    let (result, _) = env
        .apply_with(ApplyOptions {
            prune: true,
            force: true,
            ..ApplyOptions::default()
        })
        .await;
    assert_eq!(result.unwrap().pruned.len(), 2);
    s3.head_bucket()
        .bucket("sdop-it-assets")
        .send()
        .await
        .expect("Retain keeps the bucket");
}

#[tokio::test]
async fn a_rolled_back_rollout_is_degraded_and_not_retried() {
    let env = Env::new();
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    env.apply().await;
    let sm = env.aws.sagemaker().await;
    let before = endpoint_config(&sm).await;
    env.aws.faults(json!({"fail_next_update_endpoint": "The primary container for production variant AllTraffic did not pass the ping health check"}));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.2xlarge", ""));
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Endpoint", "base")],
        Phase::Degraded,
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ROLLED BACK") && l.contains("ping health check")),
        "{lines:#?}"
    );
    assert_eq!(endpoint_config(&sm).await, before);
    env.aws.reset_calls();
    let (summary, _) = env.apply().await;
    assert!(summary.has_problems());
    assert_eq!(
        env.aws.calls().of("sagemaker:UpdateEndpoint"),
        0,
        "retried a rolled-back rollout"
    );
    let status = env
        .store()
        .load(&ResourceId::new("Endpoint", "base"))
        .unwrap()
        .unwrap();
    assert!(
        status.message.contains("ping health check"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn foreign_resources_conflict_unless_adopted() {
    let env = Env::new();
    let s3 = env.aws.s3().await;
    s3.create_bucket()
        .bucket("sdop-it-foreign")
        .send()
        .await
        .unwrap();
    env.write(
        "bucket.yaml",
        &bucket("foreign", "sdop-it-foreign", "  tags: {team: ml}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Bucket", "foreign")],
        Phase::Conflict,
        "{lines:#?}"
    );
    assert!(
        s3.get_bucket_tagging()
            .bucket("sdop-it-foreign")
            .send()
            .await
            .is_err(),
        "foreign bucket was modified"
    );
    env.write(
        "bucket.yaml",
        &bucket(
            "foreign",
            "sdop-it-foreign",
            "  tags: {team: ml}\n  adopt: true\n",
        ),
    );
    let (summary, _) = env.apply().await;
    assert!(summary.converged());
    assert_eq!(env.phase("Bucket", "foreign"), Phase::Ready);
}

fn dreambooth(steps: u32) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: DreamboothJob
metadata: {{name: jpstyle}}
spec:
  trainingJobName: jpstyle
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-training:latest"}}
  instanceType: ml.g4dn.2xlarge
  roleArn: {ROLE}
  sourceCheckpoint: {{s3Uri: "s3://sdop-it-train-inputs/checkpoints/v2-1_768-ema-pruned.ckpt"}}
  modelName: jp-style-model
  resolution: 768
  maxTrainSteps: {steps}
  concepts:
    - {{datasetS3Uri: "s3://sdop-it-train-inputs/dataset/", instanceToken: jpstyle girl, classToken: girl}}
  checkpointS3Uri: s3://sdop-it-train/models/Stable-diffusion/
"#
    )
}

/// A bucket and a DreamBooth job of 2,500 steps, its inputs seeded; jobs train for `seconds`.
async fn training_env(seconds: f64) -> Env {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("train", "sdop-it-train", ""));
    env.write("job.yaml", &dreambooth(2500));
    env.aws.seed_training_inputs("sdop-it-train-inputs").await;
    env.aws.configure(json!({"training_seconds": seconds}));
    env
}

/// Issue #13: a retrain of one model and step count (here a new learning rate) writes
/// `<model>_<steps>.ckpt` again; under the job's own prefix it never replaces the checkpoint
/// the earlier job wrote (which a package, and through it a model kept for rollback, may hold).
#[tokio::test]
async fn a_retrain_of_one_model_and_step_count_keeps_the_earlier_checkpoint() {
    let env = training_env(0.5).await;
    let id = ResourceId::new("DreamboothJob", "jpstyle");
    let converge = || async {
        for _ in 0..5 {
            let (summary, lines) = env.apply().await;
            if summary.converged() {
                return env.store().load(&id).unwrap().unwrap();
            }
            assert!(summary.phases[&id] != Phase::Failed, "{lines:#?}");
        }
        panic!("the job did not converge");
    };
    let first = converge().await.outputs;
    let s3 = env.aws.s3().await;
    let etag_of = |uri: &str| {
        let (bucket, key) = uri.trim_start_matches("s3://").split_once('/').unwrap();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map(|h| h.e_tag().unwrap_or_default().to_string())
                .ok()
        }
    };
    let first_etag = etag_of(&first["latestCheckpoint"])
        .await
        .expect("first checkpoint");
    env.write(
        "job.yaml",
        &dreambooth(2500).replace(
            "maxTrainSteps: 2500",
            "maxTrainSteps: 2500\n  learningRate: 0.000005",
        ),
    );
    let second = converge().await.outputs;
    assert_ne!(first["trainingJobName"], second["trainingJobName"]);
    let file = |uri: &str| uri.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        file(&first["latestCheckpoint"]),
        file(&second["latestCheckpoint"])
    );
    assert_ne!(first["latestCheckpoint"], second["latestCheckpoint"]);
    assert_eq!(
        etag_of(&first["latestCheckpoint"]).await.as_deref(),
        Some(first_etag.as_str()),
        "the retrain overwrote the earlier job's checkpoint"
    );
    assert!(etag_of(&second["latestCheckpoint"]).await.is_some());
    for outputs in [&first, &second] {
        assert!(etag_of(&outputs["latestCheckpointYaml"]).await.is_some());
    }
}

#[tokio::test]
async fn training_runs_once_per_spec_even_after_losing_state() {
    let env = training_env(1.5).await;
    // Start, then forget everything sdop knew (a crash right after CreateTrainingJob).
    let (result, _) = env.apply_with(ApplyOptions::default()).await;
    result.unwrap();
    std::fs::remove_dir_all(env.state.path()).unwrap();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    let jobs = sm.list_training_jobs().send().await.unwrap();
    assert_eq!(
        jobs.training_job_summaries().len(),
        1,
        "a restart started the job twice"
    );
    let status = env
        .store()
        .load(&ResourceId::new("DreamboothJob", "jpstyle"))
        .unwrap()
        .unwrap();
    // Under the job's own prefix: `<checkpointS3Uri><job name>/`.
    let job = &status.outputs["trainingJobName"];
    assert_eq!(
        status.outputs.get("latestCheckpoint").map(String::as_str),
        Some(
            format!("s3://sdop-it-train/models/Stable-diffusion/{job}/jp-style-model_2500.ckpt")
                .as_str()
        )
    );
    assert_eq!(
        status.outputs["checkpointS3Uri"],
        format!("s3://sdop-it-train/models/Stable-diffusion/{job}/")
    );
    assert!(status.outputs.contains_key("latestCheckpointYaml"));
    // A spec change trains again; the same spec never does.
    env.write("job.yaml", &dreambooth(3000));
    env.apply().await;
    env.apply().await;
    assert_eq!(
        sm.list_training_jobs()
            .send()
            .await
            .unwrap()
            .training_job_summaries()
            .len(),
        2
    );
    let status = env
        .store()
        .load(&ResourceId::new("DreamboothJob", "jpstyle"))
        .unwrap()
        .unwrap();
    assert!(status.outputs["latestCheckpoint"].ends_with("jp-style-model_3000.ckpt"));
    // A failed job fails the resource with the reason, and is not retried for the same spec.
    env.aws
        .faults(json!({"fail_training_jobs": {"*": "AlgorithmError: CUDA out of memory"}}));
    env.write("job.yaml", &dreambooth(3500));
    let (summary, _) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("DreamboothJob", "jpstyle")],
        Phase::Failed
    );
    let status = env
        .store()
        .load(&ResourceId::new("DreamboothJob", "jpstyle"))
        .unwrap()
        .unwrap();
    assert!(
        status.message.contains("CUDA out of memory"),
        "{}",
        status.message
    );
    env.aws.reset_calls();
    env.apply().await;
    assert_eq!(env.aws.calls().of("sagemaker:CreateTrainingJob"), 0);
}

#[tokio::test]
async fn stack_from_a_local_template_and_image_repository_digests() {
    let env = Env::new();
    std::fs::write(
        env.manifests.path().join("main.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  S3Bucket: {Type: String}\n  Stage: {Type: String}\nResources:\n  Topic: {Type: AWS::SNS::Topic}\nOutputs:\n  WebUIPortalUrl: {Value: !Sub 'https://${S3Bucket}.${Stage}.example'}\n",
    )
    .unwrap();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-stack", ""));
    let stack = |stage: &str| {
        format!(
            "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {{name: webui}}\nspec:\n  stackName: webui\n  template: {{file: main.template}}\n  upload: {{bucket: sdop-it-stack, prefix: templates/}}\n  parameters:\n    S3Bucket: {{valueFrom: {{resource: Bucket/assets, output: bucketName}}}}\n    Stage: {stage}\n"
        )
    };
    env.write("stack.yaml", &stack("dev"));
    env.write(
        "repo.yaml",
        "apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {name: inference}\nspec: {repositoryName: sd-inference}\n",
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let status = env
        .store()
        .load(&ResourceId::new("Stack", "webui"))
        .unwrap()
        .unwrap();
    assert_eq!(
        status.outputs["outputs.WebUIPortalUrl"],
        "https://sdop-it-stack.dev.example"
    );
    env.write("stack.yaml", &stack("prod"));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("~ Stack/webui cloudformation:stack webui updated")),
        "{lines:#?}"
    );
    let status = env
        .store()
        .load(&ResourceId::new("Stack", "webui"))
        .unwrap()
        .unwrap();
    assert_eq!(
        status.outputs["outputs.WebUIPortalUrl"],
        "https://sdop-it-stack.prod.example"
    );

    // No image under the tag yet: no digest. After a push the digest-pinned URI appears.
    let repo = env
        .store()
        .load(&ResourceId::new("ImageRepository", "inference"))
        .unwrap()
        .unwrap();
    assert!(!repo.outputs.contains_key("imageUri"));
    let ecr = env.aws.ecr().await;
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"},"layers":[]}"#;
    ecr.put_image()
        .repository_name("sd-inference")
        .image_tag("latest")
        .image_manifest(manifest)
        .send()
        .await
        .unwrap();
    env.apply().await;
    let repo = env
        .store()
        .load(&ResourceId::new("ImageRepository", "inference"))
        .unwrap()
        .unwrap();
    assert!(
        repo.outputs["imageUri"].contains("/sd-inference@sha256:"),
        "{:?}",
        repo.outputs
    );
}

#[tokio::test]
async fn converges_through_20_percent_throttling_without_leaks() {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-assets", ""));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    env.aws
        .faults(json!({"throttle": {"sagemaker:*": 0.2, "s3:*": 0.2}}));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    env.aws.clear_faults();
    assert_eq!(
        sm.list_models().send().await.unwrap().models().len(),
        1,
        "leaked models"
    );
    assert_eq!(config_names(&sm).await.len(), 1, "leaked configs");
}

#[tokio::test]
async fn nested_stack_outputs_feed_the_endpoint_and_a_change_rolls_it_out() {
    let env = Env::new();
    let dir = env.manifests.path();
    std::fs::write(
        dir.join("main.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  S3Bucket: {Type: String}\n  Stage: {Type: String}\nResources:\n  LAMBDA:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: !Sub 'https://${S3Bucket}.s3.${AWS::Region}.amazonaws.com/templates/lambda.template'\n      Parameters: {Stage: !Ref Stage}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lambda.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  Stage: {Type: String}\nResources:\n  Topic: {Type: AWS::SNS::Topic}\nOutputs:\n  ApiGatewayProdEndpoint: {Value: !Sub 'https://api-${Stage}.example/Prod'}\n  SageMakerRole: {Value: 'arn:aws:iam::123456789012:role/from-stack'}\n  PrivateSubnet1: {Value: subnet-0fromstack}\n  DefaultSecurityGroup: {Value: sg-0fromstack}\n",
    )
    .unwrap();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-nested", ""));
    let stack = |stage: &str| {
        format!(
            "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {{name: webui}}\nspec:\n  stackName: webui\n  template: {{file: main.template}}\n  extraTemplateFiles: [lambda.template]\n  upload: {{bucket: sdop-it-nested, prefix: templates/}}\n  parameters:\n    S3Bucket: {{valueFrom: {{resource: Bucket/assets, output: bucketName}}}}\n    Stage: {stage}\n"
        )
    };
    env.write("stack.yaml", &stack("dev"));
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "").replace(
            &format!("environment: {{api_endpoint: \"{API}\"}}"),
            "environment: {api_endpoint: {valueFrom: {resource: Stack/webui, output: nested.LAMBDA.ApiGatewayProdEndpoint}}}\n  vpcConfig: {subnets: [{valueFrom: {resource: Stack/webui, output: nested.LAMBDA.PrivateSubnet1}}], securityGroupIds: [{valueFrom: {resource: Stack/webui, output: nested.LAMBDA.DefaultSecurityGroup}}]}",
        )
        .replace(
            &format!("executionRoleArn: {ROLE}"),
            "executionRoleArn: {valueFrom: {resource: Stack/webui, output: nested.LAMBDA.SageMakerRole}}",
        ),
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let stack_status = env
        .store()
        .load(&ResourceId::new("Stack", "webui"))
        .unwrap()
        .unwrap();
    assert_eq!(
        stack_status.outputs["nested.LAMBDA.ApiGatewayProdEndpoint"],
        "https://api-dev.example/Prod"
    );
    let sm = env.aws.sagemaker().await;
    let served_api = |sm: aws_sdk_sagemaker::Client| async move {
        let config = sm
            .describe_endpoint()
            .endpoint_name("sd-base")
            .send()
            .await
            .unwrap()
            .endpoint_config_name()
            .unwrap()
            .to_string();
        let model = sm
            .describe_endpoint_config()
            .endpoint_config_name(config)
            .send()
            .await
            .unwrap()
            .production_variants()[0]
            .model_name()
            .unwrap()
            .to_string();
        sm.describe_model()
            .model_name(model)
            .send()
            .await
            .unwrap()
            .primary_container()
            .unwrap()
            .environment()
            .unwrap()["api_endpoint"]
            .clone()
    };
    assert_eq!(served_api(sm.clone()).await, "https://api-dev.example/Prod");
    // The role and the VPC come from the stack too.
    let models = sm.list_models().send().await.unwrap();
    let model = sm
        .describe_model()
        .model_name(models.models()[0].model_name().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        model.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/from-stack")
    );
    let vpc = model.vpc_config().unwrap();
    assert_eq!(
        (vpc.subnets(), vpc.security_group_ids()),
        (
            &["subnet-0fromstack".to_string()][..],
            &["sg-0fromstack".to_string()][..]
        )
    );

    // Converged, the root unchanged: the nested outputs recorded are used, with one
    // DescribeStacks of the root and no ListStackResources or nested DescribeStacks.
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(
        (
            calls.of("cloudformation:DescribeStacks"),
            calls.of("cloudformation:ListStackResources")
        ),
        (1, 0)
    );

    // The value changes upstream (the stack's nested output): the root's update makes the
    // nested outputs read again, and the endpoint rolls out.
    env.write("stack.yaml", &stack("prod"));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(
        served_api(sm.clone()).await,
        "https://api-prod.example/Prod",
        "{lines:#?}"
    );
}

/// A nested stack's resource fails (a Lambda layer whose code zip is not in S3, as a missing
/// `codes/*.zip` fails the all-in-one-ai LAMBDA stack): the root stack's own events only say
/// "Embedded stack ... was not successfully created"; the Stack's status names the nested
/// stack, the resource and AWS's reason, read from the nested stack's events after the
/// rollback deleted it.
#[tokio::test]
async fn a_nested_stacks_failure_names_the_nested_stack_the_resource_and_the_reason() {
    let env = Env::new();
    let dir = env.manifests.path();
    std::fs::write(
        dir.join("main.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  S3Bucket: {Type: String}\nResources:\n  Topic: {Type: AWS::SNS::Topic}\n  LAMBDA:\n    Type: AWS::CloudFormation::Stack\n    DependsOn: Topic\n    Properties:\n      TemplateURL: !Sub 'https://${S3Bucket}.s3.${AWS::Region}.amazonaws.com/templates/lambda.template'\n      Parameters: {S3Bucket: !Ref S3Bucket}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lambda.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  S3Bucket: {Type: String}\nResources:\n  HelperLayer:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: all_in_one_ai_helper\n      CompatibleRuntimes: [python3.9]\n      Content: {S3Bucket: !Ref S3Bucket, S3Key: codes/all_in_one_ai_helper.zip}\n",
    )
    .unwrap();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-nested-fail", ""));
    env.write(
        "stack.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {name: webui}\nspec:\n  stackName: webui\n  template: {file: main.template}\n  extraTemplateFiles: [lambda.template]\n  upload: {bucket: sdop-it-nested-fail, prefix: templates/}\n  parameters:\n    S3Bucket: {valueFrom: {resource: Bucket/assets, output: bucketName}}\n",
    );
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Stack", "webui")],
        Phase::Failed,
        "{lines:#?}"
    );
    let status = env
        .store()
        .load(&ResourceId::new("Stack", "webui"))
        .unwrap()
        .unwrap();
    let message = &status.message;
    assert!(
        message.starts_with("ROLLBACK_COMPLETE: nested stack LAMBDA (webui-LAMBDA-"),
        "{message}"
    );
    assert!(
        message.contains(
            "): resource HelperLayer (AWS::Lambda::LayerVersion) CREATE_FAILED: Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist. (s3://sdop-it-nested-fail/codes/all_in_one_ai_helper.zip)"
        ),
        "{message}"
    );
    // The nested stack is gone (deleted by the rollback): its events were read by its ARN.
    let cfn = env.aws.cloudformation().await;
    let listed = cfn.list_stacks().send().await.unwrap();
    let nested = listed
        .stack_summaries()
        .iter()
        .find(|s| {
            s.stack_name()
                .unwrap_or_default()
                .starts_with("webui-LAMBDA-")
        })
        .expect("the nested stack");
    assert_eq!(nested.stack_status().unwrap().as_str(), "DELETE_COMPLETE");
    assert!(
        message.contains(&format!("({})", nested.stack_name().unwrap())),
        "{message}"
    );
}

#[tokio::test]
async fn a_dataset_syncs_only_changes_and_never_touches_objects_it_did_not_write() {
    let env = Env::new();
    let images = env.manifests.path().join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    for (name, body) in [("a.jpg", "a1"), ("b.jpg", "b1"), ("sub/c.png", "c1")] {
        std::fs::write(images.join(name), body).unwrap();
    }
    env.write("bucket.yaml", &bucket("data", "sdop-it-data", ""));
    env.write(
        "dataset.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Dataset\nmetadata: {name: jpstyle}\nspec: {directory: images, s3Uri: \"s3://sdop-it-data/dataset/jpstyle/\"}\n",
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let s3 = env.aws.s3().await;
    // An object under the prefix that sdop did not write.
    s3.put_object()
        .bucket("sdop-it-data")
        .key("dataset/jpstyle/theirs.jpg")
        .body(b"not sdop's".to_vec().into())
        .send()
        .await
        .unwrap();
    let keys = |s3: aws_sdk_s3::Client| async move {
        let listed = s3
            .list_objects_v2()
            .bucket("sdop-it-data")
            .prefix("dataset/jpstyle/")
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .map(|o| {
                o.key()
                    .unwrap()
                    .trim_start_matches("dataset/jpstyle/")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(s3.clone()).await,
        ["a.jpg", "b.jpg", "sub/c.png", "theirs.jpg"]
    );

    // Unchanged: nothing is uploaded again, and the files are read with one listing of the
    // prefix (their ETags are their MD5s), not one HeadObject each.
    env.aws.reset_calls();
    let (summary, _) = env.apply().await;
    assert!(summary.converged());
    let calls = env.aws.calls();
    assert_eq!(calls.of("s3:PutObject"), 0);
    assert_eq!(
        (calls.of("s3:ListObjectsV2"), calls.of("s3:HeadObject")),
        (1, 0)
    );

    // Changed or deleted behind sdop's back: the listing shows it, the HeadObject of that one
    // file says it is still sdop's, and apply puts the file back.
    s3.put_object()
        .bucket("sdop-it-data")
        .key("dataset/jpstyle/a.jpg")
        .body(b"edited by hand".to_vec().into())
        .metadata("sdop-resource", "Dataset/jpstyle")
        .metadata("sdop-fingerprint", "stale")
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("sdop-it-data")
        .key("dataset/jpstyle/sub/c.png")
        .send()
        .await
        .unwrap();
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(
        (calls.of("s3:HeadObject"), calls.of("s3:PutObject")),
        (1, 2),
        "{lines:#?}"
    );
    for (key, want) in [("a.jpg", "a1"), ("sub/c.png", "c1")] {
        let body = s3
            .get_object()
            .bucket("sdop-it-data")
            .key(format!("dataset/jpstyle/{key}"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_eq!(&body[..], want.as_bytes(), "{key}");
    }

    // One file changed, one removed, one added: exactly those three calls.
    std::fs::write(images.join("a.jpg"), "a2").unwrap();
    std::fs::remove_file(images.join("b.jpg")).unwrap();
    std::fs::write(images.join("d.jpg"), "d1").unwrap();
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(
        (calls.of("s3:PutObject"), calls.of("s3:DeleteObject")),
        (2, 1),
        "{lines:#?}"
    );
    assert_eq!(
        keys(s3.clone()).await,
        ["a.jpg", "d.jpg", "sub/c.png", "theirs.jpg"]
    );
    let body = s3
        .get_object()
        .bucket("sdop-it-data")
        .key("dataset/jpstyle/a.jpg")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"a2");

    // A file whose key holds an object sdop did not write: a conflict, and it stays as it is.
    std::fs::write(images.join("theirs.jpg"), "mine").unwrap();
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Dataset", "jpstyle")],
        Phase::Conflict,
        "{lines:#?}"
    );
    let body = s3
        .get_object()
        .bucket("sdop-it-data")
        .key("dataset/jpstyle/theirs.jpg")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"not sdop's");
}

/// The stand-in all-in-one-ai checkout of scripts/demo (scripts/stand-in-checkout.py) deployed
/// as manifests/20-webui-stack.yaml deploys the real one: 9 templates and the code zips.
fn workshop_stack(bucket: &str) -> String {
    let nested: Vec<String> = [
        "vpc", "efs", "iam", "dynamodb", "lambda", "ssm", "web", "webui",
    ]
    .iter()
    .map(|n| format!("deployment/templates/all-in-one-ai-{n}.yaml"))
    .collect();
    format!(
        "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {{name: webui}}\nspec:\n  stackName: all-in-one-ai-webui\n  checkout: aio\n  template: {{file: deployment/templates/all-in-one-ai-webui-main.yaml}}\n  upload: {{bucket: {bucket}, prefix: templates/}}\n  extraTemplateFiles: [{}]\n  artifacts: [{{directory: backend/build/codes, prefix: codes/}}]\n  parameters:\n    S3Bucket: {{valueFrom: {{resource: Bucket/assets, output: bucketName}}}}\n    S3Key: \"\"\n    AvailabilityZones: \"us-east-1a,us-east-1b\"\n    DomainName: \"\"\n    Certificate: \"\"\n    WebUIDomainName: \"\"\n    UserPool: \"\"\n    UserPoolClient: \"\"\n    UserPoolDomain: \"\"\n    CognitoRegion: \"\"\n  capabilities: [CAPABILITY_IAM]\n",
        nested.join(", ")
    )
}

#[tokio::test]
async fn the_code_zips_are_uploaded_owned_and_before_the_stack_whose_lambda_reads_them() {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-codes", ""));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let script = crate::support::local_aws::repo_root().join("scripts/stand-in-checkout.py");
    let made = std::process::Command::new("python3")
        .arg(&script)
        .arg(env.manifests.path().join("aio"))
        .output()
        .expect("python3 scripts/stand-in-checkout.py");
    assert!(made.status.success(), "{made:?}");
    // An object sdop did not write, at the key of one of the zips.
    let s3 = env.aws.s3().await;
    let body = |s3: aws_sdk_s3::Client, key: &'static str| async move {
        let got = s3
            .get_object()
            .bucket("sdop-it-codes")
            .key(key)
            .send()
            .await
            .unwrap();
        got.body.collect().await.unwrap().into_bytes().to_vec()
    };
    s3.put_object()
        .bucket("sdop-it-codes")
        .key("codes/all_in_one_ai_helper.zip")
        .body(b"theirs".to_vec().into())
        .send()
        .await
        .unwrap();
    env.write("stack.yaml", &workshop_stack("sdop-it-codes"));
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Stack", "webui")],
        Phase::Conflict,
        "{lines:#?}"
    );
    let calls = env.aws.calls();
    assert_eq!(
        (
            calls.of("s3:PutObject"),
            calls.of("cloudformation:CreateStack")
        ),
        (0, 0),
        "{lines:#?}"
    );
    assert_eq!(
        body(s3.clone(), "codes/all_in_one_ai_helper.zip").await,
        b"theirs"
    );

    // Once the foreign object is gone: 2 zips and 9 templates, all before CreateStack.
    s3.delete_object()
        .bucket("sdop-it-codes")
        .key("codes/all_in_one_ai_helper.zip")
        .send()
        .await
        .unwrap();
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let log = env.aws.call_log();
    let create = log
        .iter()
        .position(|api| api == "cloudformation:CreateStack")
        .expect("CreateStack");
    let puts: Vec<usize> = (0..log.len())
        .filter(|&i| log[i] == "s3:PutObject")
        .collect();
    assert_eq!(puts.len(), 11, "{log:?}");
    assert!(puts.iter().all(|&i| i < create), "{log:?}");
    let zip = std::fs::read(
        env.manifests
            .path()
            .join("aio/backend/build/codes/all_in_one_ai_endpoint.zip"),
    )
    .unwrap();
    assert_eq!(
        body(s3.clone(), "codes/all_in_one_ai_endpoint.zip").await,
        zip
    );
    // The LAMBDA stack's function was created from its zip; the main stack's outputs and the
    // SSM parameters come from the nested stacks, as with the real templates.
    let status = env
        .store()
        .load(&ResourceId::new("Stack", "webui"))
        .unwrap()
        .unwrap();
    assert!(
        status.outputs["nested.LAMBDA.AllInOneAIEndpointFunctionArn"]
            .ends_with(":function:all_in_one_ai_endpoint"),
        "{:?}",
        status.outputs
    );
    assert_eq!(
        status.outputs["outputs.WebPortalUrl"],
        "http://stand-in-web.us-east-1.example.com"
    );
    let ssm = env.aws.ssm().await;
    let parameter = |name: &'static str| {
        let ssm = ssm.clone();
        async move {
            ssm.get_parameter()
                .name(name)
                .send()
                .await
                .unwrap()
                .parameter()
                .unwrap()
                .value()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(
        parameter("/all_in_one_ai/config/meta/api_endpoint").await,
        status.outputs["nested.LAMBDA.ApiGatewayProdEndpoint"]
    );
    assert_eq!(
        parameter("/all_in_one_ai/config/meta/sagemaker_role_arn").await,
        status.outputs["nested.IAM.SageMakerRole"]
    );

    // Converged: nothing is uploaded again.
    env.aws.reset_calls();
    let (summary, _) = env.apply().await;
    assert!(summary.converged());
    assert_eq!(env.aws.calls().mutations(), 0);

    // A changed zip is uploaded (only it); the template is unchanged, so is the stack.
    std::fs::write(
        env.manifests
            .path()
            .join("aio/backend/build/codes/all_in_one_ai_endpoint.zip"),
        b"PK new code",
    )
    .unwrap();
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let calls = env.aws.calls();
    assert_eq!(
        (
            calls.of("s3:PutObject"),
            calls.of("cloudformation:UpdateStack")
        ),
        (1, 0),
        "{lines:#?}"
    );
    assert_eq!(
        body(s3.clone(), "codes/all_in_one_ai_endpoint.zip").await,
        b"PK new code"
    );
}

#[tokio::test]
async fn a_stack_waits_for_the_images_its_services_run() {
    let env = Env::new();
    std::fs::write(
        env.manifests.path().join("main.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Topic: {Type: AWS::SNS::Topic}\n",
    )
    .unwrap();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-wait", ""));
    env.write(
        "repo.yaml",
        "apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {name: webui}\nspec: {repositoryName: sd-webui}\n",
    );
    env.write(
        "stack.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {name: webui}\nspec:\n  stackName: webui\n  template: {file: main.template}\n  upload: {bucket: sdop-it-wait, prefix: templates/}\n  waitFor: [{resource: ImageRepository/webui, output: imageUri}]\n",
    );
    let (result, _) = env.apply_with(ApplyOptions::default()).await;
    result.unwrap();
    assert_eq!(env.phase("Stack", "webui"), Phase::Pending);
    assert_eq!(env.aws.calls().of("cloudformation:CreateStack"), 0);
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000002"},"layers":[]}"#;
    env.aws
        .ecr()
        .await
        .put_image()
        .repository_name("sd-webui")
        .image_tag("latest")
        .image_manifest(manifest)
        .send()
        .await
        .unwrap();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(env.aws.calls().of("cloudformation:CreateStack"), 1);
}

/// The registry tables of all-in-one-ai-dynamodb.yaml and the WebUI's industrial model row.
async fn webui_registry(aws: &crate::support::local_aws::LocalAws, industrial_model: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ProvisionedThroughput,
        ScalarAttributeType,
    };
    let ddb = aws.dynamodb().await;
    for (table, hash, range) in [
        (
            "all_in_one_ai_endpoint",
            "endpoint_name",
            "industrial_model",
        ),
        (
            "all_in_one_ai_industrial_model",
            "model_id",
            "model_algorithm",
        ),
    ] {
        ddb.create_table()
            .table_name(table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(hash)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(range)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(hash)
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(range)
                    .key_type(KeyType::Range)
                    .build()
                    .unwrap(),
            )
            .provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(1)
                    .write_capacity_units(1)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    ddb.put_item()
        .table_name("all_in_one_ai_industrial_model")
        .item("model_id", AttributeValue::S(industrial_model.into()))
        .item(
            "model_algorithm",
            AttributeValue::S("stable-diffusion-webui".into()),
        )
        .send()
        .await
        .unwrap();
}

async fn registry_rows(aws: &crate::support::local_aws::LocalAws) -> Vec<(String, Option<String>)> {
    let items = aws
        .dynamodb()
        .await
        .scan()
        .table_name("all_in_one_ai_endpoint")
        .send()
        .await
        .unwrap();
    let mut rows: Vec<(String, Option<String>)> = items
        .items()
        .iter()
        .map(|item| {
            (
                format!(
                    "{}/{}",
                    item["endpoint_name"].as_s().unwrap(),
                    item["industrial_model"].as_s().unwrap()
                ),
                item.get("sdop_resource").map(|v| v.as_s().unwrap().clone()),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn endpoints_are_registered_for_the_webui_and_only_sdops_records_are_removed() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = Env::new();
    webui_registry(&env.aws, "im-1").await;
    // A record the portal wrote for another endpoint.
    env.aws
        .dynamodb()
        .await
        .put_item()
        .table_name("all_in_one_ai_endpoint")
        .item("endpoint_name", AttributeValue::S("portal-endpoint".into()))
        .item("industrial_model", AttributeValue::S("im-1".into()))
        .send()
        .await
        .unwrap();
    env.write("keep.yaml", &bucket("keep", "sdop-it-keep", ""));
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "  webuiRegistration: {}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(
        registry_rows(&env.aws).await,
        [
            ("portal-endpoint/im-1".to_string(), None),
            (
                "sd-base/im-1".to_string(),
                Some("Endpoint/base".to_string())
            )
        ]
    );
    let status = env
        .store()
        .load(&ResourceId::new("Endpoint", "base"))
        .unwrap()
        .unwrap();
    assert!(
        status.outputs["webuiRegistration"].contains("industrial model im-1"),
        "{:?}",
        status.outputs
    );

    // Pruned: the endpoint and sdop's record go; the portal's record stays.
    env.remove("endpoint.yaml");
    let (result, lines) = env
        .apply_with(ApplyOptions {
            wait: true,
            prune: true,
            force: true,
            timeout: Duration::from_secs(30),
            ..ApplyOptions::default()
        })
        .await;
    result.unwrap();
    assert_eq!(
        registry_rows(&env.aws).await,
        [("portal-endpoint/im-1".to_string(), None)],
        "{lines:#?}"
    );

    // A record at this endpoint's key that sdop did not write: a conflict, left as it is.
    env.aws
        .dynamodb()
        .await
        .put_item()
        .table_name("all_in_one_ai_endpoint")
        .item("endpoint_name", AttributeValue::S("sd-base".into()))
        .item("industrial_model", AttributeValue::S("im-1".into()))
        .send()
        .await
        .unwrap();
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "  webuiRegistration: {}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Endpoint", "base")],
        Phase::Conflict,
        "{lines:#?}"
    );
    assert!(registry_rows(&env.aws)
        .await
        .contains(&("sd-base/im-1".to_string(), None)));
}

#[tokio::test]
async fn an_ssm_parameter_feeds_the_endpoint_and_its_change_rolls_it_out() {
    let env = Env::new();
    const NAME: &str = "/all_in_one_ai/config/meta/api_endpoint";
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "").replace(
            &format!("environment: {{api_endpoint: \"{API}\"}}"),
            &format!("environment: {{api_endpoint: {{valueFrom: {{ssmParameter: {NAME}}}}}}}"),
        ),
    );
    // Not published yet: the endpoint waits, nothing is created.
    let (result, _) = env.apply_with(ApplyOptions::default()).await;
    result.unwrap();
    assert_eq!(env.phase("Endpoint", "base"), Phase::Pending);
    assert_eq!(env.aws.calls().of("sagemaker:CreateModel"), 0);

    let ssm = env.aws.ssm().await;
    let publish = |value: &'static str| {
        let ssm = ssm.clone();
        async move {
            ssm.put_parameter()
                .name(NAME)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .unwrap();
        }
    };
    let served_api = |sm: aws_sdk_sagemaker::Client| async move {
        let config = sm
            .describe_endpoint()
            .endpoint_name("sd-base")
            .send()
            .await
            .unwrap()
            .endpoint_config_name()
            .unwrap()
            .to_string();
        let model = sm
            .describe_endpoint_config()
            .endpoint_config_name(config)
            .send()
            .await
            .unwrap()
            .production_variants()[0]
            .model_name()
            .unwrap()
            .to_string();
        sm.describe_model()
            .model_name(model)
            .send()
            .await
            .unwrap()
            .primary_container()
            .unwrap()
            .environment()
            .unwrap()["api_endpoint"]
            .clone()
    };
    publish("https://api-1.example/Prod").await;
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    assert_eq!(served_api(sm.clone()).await, "https://api-1.example/Prod");

    // The parameter changes: the plan says so and the endpoint rolls out.
    publish("https://api-2.example/Prod").await;
    let loaded = load_paths(&[PathBuf::from(env.manifests.path())]);
    let plan = sdop::apply::plan(&loaded, env.clients().await, &env.store())
        .await
        .unwrap();
    let creates: Vec<&str> = plan
        .actions
        .iter()
        .filter(|a| a.operation == sdop::engine::Operation::Create)
        .map(|a| a.aws_type.as_str())
        .collect();
    assert_eq!(
        creates,
        ["sagemaker:model", "sagemaker:endpoint-config"],
        "{:#?}",
        plan.actions
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(served_api(sm.clone()).await, "https://api-2.example/Prod");
}

#[tokio::test]
async fn region_is_honoured_per_resource() {
    let env = Env::new();
    std::fs::write(
        env.manifests.path().join("main.template"),
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Topic: {Type: AWS::SNS::Topic}\n",
    )
    .unwrap();
    env.write(
        "all.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: west}\nspec: {bucketName: sdop-it-west, region: us-west-2}\n---\napiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {name: west}\nspec: {repositoryName: sd-west, region: us-west-2}\n---\napiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {name: west}\nspec:\n  stackName: west\n  template: {file: main.template}\n  upload: {bucket: sdop-it-west, prefix: templates/}\n  region: us-west-2\n",
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let config = |region: &'static str| {
        let aws = &env.aws;
        async move {
            aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_types::region::Region::new(region))
                .endpoint_url(aws.endpoint.clone())
                .credentials_provider(aws_types::sdk_config::SharedCredentialsProvider::new(
                    aws_sdk_s3::config::Credentials::new("AKIDLOCALTEST", "x", None, None, "t"),
                ))
                .build()
        }
    };
    for (region, expected) in [("us-west-2", true), ("us-east-1", false)] {
        let config = config(region).await;
        let stacks = aws_sdk_cloudformation::Client::new(&config)
            .describe_stacks()
            .send()
            .await
            .unwrap();
        assert_eq!(
            stacks
                .stacks()
                .iter()
                .any(|s| s.stack_name() == Some("west")),
            expected,
            "stack in {region}"
        );
        let repos = aws_sdk_ecr::Client::new(&config)
            .describe_repositories()
            .send()
            .await
            .unwrap();
        assert_eq!(
            repos
                .repositories()
                .iter()
                .any(|r| r.repository_name() == Some("sd-west")),
            expected,
            "repository in {region}"
        );
    }
    // Converged: a re-apply reads the same region and changes nothing.
    env.aws.reset_calls();
    let (summary, _) = env.apply().await;
    assert!(summary.converged());
    assert_eq!(env.aws.calls().mutations(), 0);
}

#[tokio::test]
async fn a_bucket_whose_tagging_was_throttled_is_finished_not_foreign() {
    let env = Env::new();
    env.write("bucket.yaml", &bucket("assets", "sdop-it-throttled", ""));
    // CreateBucket succeeds; every PutBucketTagging is throttled (past the SDK's retries).
    env.aws
        .faults(json!({"throttle": {"s3:PutBucketTagging": 1.0}}));
    let (result, lines) = env.apply_with(ApplyOptions::default()).await;
    result.unwrap();
    assert_eq!(
        env.phase("Bucket", "assets"),
        Phase::Pending,
        "{lines:#?} {:?}",
        env.aws.calls().0
    );
    assert!(env.aws.calls().of("s3:CreateBucket") >= 1);
    // The throttling passes: the bucket sdop created is tagged and Ready, not a Conflict.
    env.aws.clear_faults();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let tags = env
        .aws
        .s3()
        .await
        .get_bucket_tagging()
        .bucket("sdop-it-throttled")
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "sdop.io/resource" && t.value() == "Bucket/assets"),
        "{:?}",
        tags.tag_set()
    );
}

/// Issue #12's property: over the scenarios of these tests, every plan's actions are exactly
/// the mutating calls the following apply makes, and the plan after it is empty.
#[tokio::test]
async fn the_plan_is_what_apply_does_create_rollouts_adoption_out_of_band_deletion() {
    let env = Env::new();
    env.aws.configure(json!({"endpoint_delete_seconds": 1.5}));
    // Create from nothing.
    env.write("bucket.yaml", &bucket("assets", "sdop-it-assets", ""));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    let first = env.plan_then_apply().await;
    assert!(
        first.contains(&"Create sagemaker:endpoint sd-base".to_string()),
        "{first:#?}"
    );
    // Two rollouts of the instance type (a new config, the same model): the second one's plan
    // lists the deletion of the first config (the newest superseded one stays for rollback).
    env.write("endpoint.yaml", &endpoint("ml.g4dn.2xlarge", ""));
    let second = env.plan_then_apply().await;
    assert!(
        !second.iter().any(|l| l.starts_with("Delete")),
        "{second:#?}"
    );
    env.write("endpoint.yaml", &endpoint("ml.g4dn.4xlarge", ""));
    let third = env.plan_then_apply().await;
    assert_eq!(
        third
            .iter()
            .filter(|l| l.starts_with("Delete sagemaker:endpoint-config"))
            .count(),
        1,
        "{third:#?}"
    );
    // Adoption: the plan says adopt (not conflict) and apply adopts.
    env.aws
        .s3()
        .await
        .create_bucket()
        .bucket("sdop-it-foreign")
        .send()
        .await
        .unwrap();
    env.write(
        "foreign.yaml",
        &bucket("foreign", "sdop-it-foreign", "  adopt: true\n"),
    );
    let adopted = env.plan_then_apply().await;
    assert_eq!(adopted, ["Adopt s3:bucket sdop-it-foreign"]);
    // The endpoint deleted outside sdop: while it is Deleting the plan is not empty (it will be
    // recreated), and apply recreates it.
    env.aws
        .sagemaker()
        .await
        .delete_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    let recreated = env.plan_then_apply().await;
    assert_eq!(
        recreated,
        ["Create sagemaker:endpoint sd-base"],
        "{recreated:#?}"
    );
}

/// Issue #12: after a rollout AWS rolled back, plan proposes nothing apply would refuse.
#[tokio::test]
async fn after_a_rolled_back_rollout_the_plan_proposes_nothing() {
    let env = Env::new();
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    env.apply().await;
    env.aws
        .faults(json!({"fail_next_update_endpoint": "ping health check failed"}));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.2xlarge", ""));
    let (summary, lines) = env.apply().await;
    assert!(summary.has_problems(), "{lines:#?}");
    let plan = env.plan().await;
    assert!(!plan.has_changes(), "{:#?}", plan.actions);
}

/// Issue #13 item 3: a bucket sdop creates aborts incomplete multipart uploads after 7 days
/// (a manifest may turn it off with 0).
#[tokio::test]
async fn buckets_sdop_creates_abort_incomplete_uploads() {
    let env = Env::new();
    env.write("a.yaml", &bucket("a", "sdop-it-lifecycle", ""));
    env.write(
        "b.yaml",
        &bucket(
            "b",
            "sdop-it-no-lifecycle",
            "  abortIncompleteUploadsAfterDays: 0\n",
        ),
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let s3 = env.aws.s3().await;
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket("sdop-it-lifecycle")
        .send()
        .await
        .unwrap();
    let rule = &rules.rules()[0];
    assert_eq!(
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(7)
    );
    assert!(s3
        .get_bucket_lifecycle_configuration()
        .bucket("sdop-it-no-lifecycle")
        .send()
        .await
        .is_err());
}

/// Issue #13 item 2: two applies racing from different state directories (a CI job and a
/// person): the loser of each create finds sdop's own object under the content-derived name and
/// carries on; both converge, nothing is created twice.
#[tokio::test]
async fn two_applies_racing_both_converge_without_duplicates() {
    let env = Env::new();
    // Both read "not there" before either create lands.
    env.aws
        .faults(json!({"delay": {"sagemaker:CreateModel": 0.5}}));
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", ""));
    let loaded = load_paths(&[PathBuf::from(env.manifests.path())]);
    let other_state = tempfile::tempdir().unwrap();
    let other = StateStore::open(other_state.path()).unwrap();
    let (a, b) = (env.clients().await, env.clients().await);
    let options = ApplyOptions {
        wait: true,
        timeout: Duration::from_secs(60),
        min_poll: Duration::from_millis(100),
        max_poll: Duration::from_millis(500),
        ..ApplyOptions::default()
    };
    let lines = Mutex::new(Vec::new());
    let report = |line: String| lines.lock().unwrap().push(line);
    let store = env.store();
    let (first, second) = tokio::join!(
        apply(&loaded, &a, &store, &options, &report),
        apply(&loaded, &b, &other, &options, &report)
    );
    let lines = lines.into_inner().unwrap();
    assert!(first.unwrap().converged(), "{lines:#?}");
    assert!(second.unwrap().converged(), "{lines:#?}");
    // The race happened: both tried (the loser was told "already existing").
    assert_eq!(env.aws.calls().of("sagemaker:CreateModel"), 2, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with("x ")), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    let models = sm.list_models().send().await.unwrap();
    assert_eq!(models.models().len(), 1, "{lines:#?}");
    assert_eq!(config_names(&sm).await.len(), 1);
}

/// Issue #14 item 1: deployment guardrails. A canary rollout is sent as UpdateEndpoint's
/// DeploymentConfig and shifts traffic in the local AWS (50%, then 100%); with its auto-rollback
/// alarm in ALARM the next rollout is rolled back by AWS and reported as RolloutRolledBack.
#[tokio::test]
async fn a_canary_rollout_shifts_traffic_and_an_alarm_rolls_it_back() {
    let env = Env::new();
    let guardrails = "  instanceCount: 2\n  deployment:\n    blueGreen:\n      trafficRouting: {type: Canary, waitIntervalSeconds: 300, canarySize: {type: CapacityPercent, value: 50}}\n      terminationWaitSeconds: 120\n      maximumExecutionTimeoutSeconds: 1800\n    autoRollbackAlarms: [sd-base-errors]\n";
    env.aws.cloudwatch_alarm("sd-base-errors", "OK");
    env.write("endpoint.yaml", &endpoint("ml.g4dn.xlarge", guardrails));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    env.write("endpoint.yaml", &endpoint("ml.g4dn.2xlarge", guardrails));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let rollouts = env.aws.rollouts();
    let first = &rollouts["sd-base"][0];
    assert_eq!(first["steps"], json!(["50%", "100%"]), "{rollouts:#}");
    assert_eq!(first["outcome"], "completed", "{rollouts:#}");
    let sm = env.aws.sagemaker().await;
    let described = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    let sent = described
        .last_deployment_config()
        .and_then(|d| d.blue_green_update_policy())
        .and_then(|b| b.traffic_routing_configuration())
        .and_then(|t| t.r#type())
        .map(|t| t.as_str().to_string());
    assert_eq!(sent.as_deref(), Some("CANARY"));
    let served = endpoint_config(&sm).await;

    // The alarm fires: the next rollout is rolled back, loudly, and the old config serves.
    env.aws.cloudwatch_alarm("sd-base-errors", "ALARM");
    env.write("endpoint.yaml", &endpoint("ml.g4dn.4xlarge", guardrails));
    let (summary, lines) = env.apply().await;
    assert_eq!(
        summary.phases[&ResourceId::new("Endpoint", "base")],
        Phase::Degraded,
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ROLLOUT ROLLED BACK") && l.contains("sd-base-errors")),
        "{lines:#?}"
    );
    assert_eq!(endpoint_config(&sm).await, served);
    let rollouts = env.aws.rollouts();
    assert!(
        rollouts["sd-base"][1]["outcome"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rolled back"),
        "{rollouts:#}"
    );
}

/// An asynchronous endpoint whose WebUI image can answer a text-to-image request (the fork
/// lists `embeddings_s3uri` first; the emulator's container needs that bucket).
fn async_endpoint(instance: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-base
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-it-assets/model.tar.gz"}}
  instanceType: {instance}
  executionRoleArn: {ROLE}
  environment:
    api_endpoint: "{API}"
    embeddings_s3uri: s3://sdop-it-out/embeddings/
  asyncInference: {{outputPath: "s3://sdop-it-out/out/", failurePath: "s3://sdop-it-out/failed/"}}
{extra}"#
    )
}

const SCALABLE_TARGET: &str = "endpoint/sd-base/variant/AllTraffic";

async fn scalable_target(
    aas: &aws_sdk_applicationautoscaling::Client,
) -> Option<aws_sdk_applicationautoscaling::types::ScalableTarget> {
    aas.describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Sagemaker)
        .resource_ids(SCALABLE_TARGET)
        .send()
        .await
        .unwrap()
        .scalable_targets()
        .first()
        .cloned()
}

async fn target_tags(
    aas: &aws_sdk_applicationautoscaling::Client,
    target: &aws_sdk_applicationautoscaling::types::ScalableTarget,
) -> std::collections::HashMap<String, String> {
    aas.list_tags_for_resource()
        .resource_arn(target.scalable_target_arn().unwrap())
        .send()
        .await
        .unwrap()
        .tags()
        .cloned()
        .unwrap_or_default()
}

async fn scaling_policies(
    aas: &aws_sdk_applicationautoscaling::Client,
) -> Vec<aws_sdk_applicationautoscaling::types::ScalingPolicy> {
    aas.describe_scaling_policies()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Sagemaker)
        .resource_id(SCALABLE_TARGET)
        .send()
        .await
        .unwrap()
        .scaling_policies()
        .to_vec()
}

async fn backlog_alarms(
    cw: &aws_sdk_cloudwatch::Client,
) -> Vec<aws_sdk_cloudwatch::types::MetricAlarm> {
    cw.describe_alarms()
        .alarm_names("sdop-sd-base-has-backlog-without-capacity")
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .to_vec()
}

/// Issue #14 item 3: autoscaling of an asynchronous endpoint down to zero, as the SageMaker
/// guide sets it up, created once the endpoint is InService, owned, changed in place, pruned.
#[tokio::test]
async fn an_async_endpoint_scales_to_zero_and_its_scaling_is_owned_changed_and_pruned() {
    let env = Env::new();
    let s3 = env.aws.s3().await;
    s3.create_bucket()
        .bucket("sdop-it-out")
        .send()
        .await
        .unwrap();
    let scaling = |min: u32, max: u32| {
        format!(
            "  autoscaling: {{minInstances: {min}, maxInstances: {max}}}\n  tags: {{team: ml}}\n"
        )
    };
    env.write(
        "endpoint.yaml",
        &async_endpoint("ml.g4dn.xlarge", &scaling(0, 2)),
    );
    let actions = env.plan_then_apply().await;
    assert!(
        actions.contains(&format!(
            "Create application-autoscaling:endpoint-scaling {SCALABLE_TARGET}"
        )),
        "{actions:#?}"
    );
    let config = env.aws.sdk_config().await;
    let aas = aws_sdk_applicationautoscaling::Client::new(&config);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let target = scalable_target(&aas).await.expect("registered");
    assert_eq!((target.min_capacity(), target.max_capacity()), (0, 2));
    let tags = target_tags(&aas, &target).await;
    assert_eq!(
        tags.get("sdop.io/managed-by").map(String::as_str),
        Some("sdop")
    );
    assert_eq!(
        tags.get("sdop.io/resource").map(String::as_str),
        Some("Endpoint/base")
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("ml"));
    let policies = scaling_policies(&aas).await;
    let tracking = policies
        .iter()
        .find_map(|p| p.target_tracking_scaling_policy_configuration())
        .expect("target tracking");
    assert_eq!(tracking.target_value(), 5.0);
    let metric = tracking.customized_metric_specification().unwrap();
    assert_eq!(
        metric.metric_name(),
        Some("ApproximateBacklogSizePerInstance")
    );
    assert_eq!(
        (tracking.scale_in_cooldown(), tracking.scale_out_cooldown()),
        (Some(600), Some(300))
    );
    let step = policies
        .iter()
        .find(|p| p.step_scaling_policy_configuration().is_some())
        .expect("step policy");
    let alarms = backlog_alarms(&cw).await;
    assert_eq!(alarms.len(), 1);
    let alarm = &alarms[0];
    assert_eq!(alarm.metric_name(), Some("HasBacklogWithoutCapacity"));
    assert_eq!(alarm.alarm_actions(), [step.policy_arn().to_string()]);
    assert_eq!(
        (
            alarm.period(),
            alarm.evaluation_periods(),
            alarm.threshold()
        ),
        (Some(60), Some(2), Some(1.0))
    );

    // Converged: nothing changes.
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(
        env.aws.calls().mutations(),
        0,
        "{:#?}",
        env.aws.mutating_calls()
    );

    // 1 to 3: changed in place; scaling out from zero is no longer needed, so it goes.
    env.write(
        "endpoint.yaml",
        &async_endpoint("ml.g4dn.xlarge", &scaling(1, 3)),
    );
    let actions = env.plan_then_apply().await;
    assert_eq!(
        actions,
        [format!(
            "Update application-autoscaling:endpoint-scaling {SCALABLE_TARGET}"
        )]
    );
    let target = scalable_target(&aas).await.expect("still registered");
    assert_eq!((target.min_capacity(), target.max_capacity()), (1, 3));
    let policies = scaling_policies(&aas).await;
    assert_eq!(policies.len(), 1, "{policies:#?}");
    assert!(backlog_alarms(&cw).await.is_empty());

    // A new instance type: SageMaker refuses to change it under a registered variant, so the
    // registration goes first and comes back once the endpoint serves the new config.
    env.write(
        "endpoint.yaml",
        &async_endpoint("ml.g4dn.2xlarge", &scaling(1, 3)),
    );
    let actions = env.plan_then_apply().await;
    assert_eq!(
        actions.first().map(String::as_str),
        Some(format!("Delete application-autoscaling:endpoint-scaling {SCALABLE_TARGET}").as_str()),
        "{actions:#?}"
    );
    assert!(actions.contains(&format!(
        "Create application-autoscaling:endpoint-scaling {SCALABLE_TARGET}"
    )));
    let target = scalable_target(&aas).await.expect("registered again");
    let tags = target_tags(&aas, &target).await;
    assert_eq!(
        tags.get("sdop.io/instance-type").map(String::as_str),
        Some("ml.g4dn.2xlarge")
    );

    // Pruned with the endpoint: deregistered first, then the endpoint goes.
    env.remove("endpoint.yaml");
    let (result, lines) = env
        .apply_with(ApplyOptions {
            prune: true,
            force: true,
            wait: true,
            timeout: Duration::from_secs(60),
            min_poll: Duration::from_millis(100),
            max_poll: Duration::from_millis(500),
        })
        .await;
    result.unwrap_or_else(|e| panic!("{e}: {lines:#?}"));
    assert!(scalable_target(&aas).await.is_none(), "{lines:#?}");
    assert!(scaling_policies(&aas).await.is_empty());
}

/// Issue #14 item 2: a smoke check after every rollout; a failed one rolls the endpoint back to
/// the config it served, marks it Degraded and is not retried until the spec changes.
#[tokio::test]
async fn a_failed_smoke_check_rolls_the_endpoint_back() {
    let env = Env::new();
    let s3 = env.aws.s3().await;
    s3.create_bucket()
        .bucket("sdop-it-out")
        .send()
        .await
        .unwrap();
    let check = "  smokeCheck: {timeoutSeconds: 20}\n";
    env.write("endpoint.yaml", &async_endpoint("ml.g4dn.xlarge", check));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let sm = env.aws.sagemaker().await;
    let served = endpoint_config(&sm).await;
    let id = sdop::kinds::smoke_check::inference_id(&served);
    let result = s3
        .get_object()
        .bucket("sdop-it-out")
        .key(format!("out/{id}.out"))
        .send()
        .await
        .expect("the check's result in the output path");
    let body: serde_json::Value =
        serde_json::from_slice(&result.body.collect().await.unwrap().into_bytes()).unwrap();
    assert!(!body["images"].as_array().unwrap().is_empty(), "{body}");

    // The image fails every request: the new config's check fails, the endpoint goes back.
    env.aws.configure(json!({"invocation_outcome": "error"}));
    env.write("endpoint.yaml", &async_endpoint("ml.g4dn.2xlarge", check));
    let (summary, lines) = env.apply().await;
    let id_base = ResourceId::new("Endpoint", "base");
    assert_eq!(summary.phases[&id_base], Phase::Degraded, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("SMOKE CHECK FAILED")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("rolled back")),
        "{lines:#?}"
    );
    assert_eq!(
        endpoint_config(&sm).await,
        served,
        "serving the old config again"
    );
    let status = env.store().load(&id_base).unwrap().unwrap();
    assert!(status.message.contains("smoke check"), "{}", status.message);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.reason == "SmokeCheckFailed"),
        "{:?}",
        status.conditions
    );

    // The plan proposes nothing apply would not do, and nothing is retried until the spec changes.
    assert!(
        !env.plan().await.has_changes(),
        "{:#?}",
        env.plan().await.actions
    );
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert_eq!(summary.phases[&id_base], Phase::Degraded, "{lines:#?}");
    assert_eq!(
        env.aws.calls().mutations(),
        0,
        "{:#?}",
        env.aws.mutating_calls()
    );

    // A check that never answers times out the same way.
    env.aws.configure(json!({"invocation_outcome": "silent"}));
    env.write(
        "endpoint.yaml",
        &async_endpoint("ml.g4dn.4xlarge", "  smokeCheck: {timeoutSeconds: 2}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert_eq!(summary.phases[&id_base], Phase::Degraded, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("no result")), "{lines:#?}");
    assert_eq!(endpoint_config(&sm).await, served);

    // A good image again and a new spec: the rollout goes through and the old objects go.
    env.aws
        .configure(json!({"invocation_outcome": "container"}));
    env.write("endpoint.yaml", &async_endpoint("ml.g4dn.8xlarge", check));
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_ne!(endpoint_config(&sm).await, served);
}

/// Issue #23: a failure fails fast. A DreamBooth job that fails blocks the package made from
/// its checkpoint, which blocks the endpoint serving the package: the endpoint, two steps down,
/// is blocked at once (not left waiting for the package), and `apply --wait` returns instead
/// of waiting out its timeout.
#[tokio::test]
async fn everything_downstream_of_a_failure_is_blocked_at_once_and_apply_returns() {
    let env = training_env(0.3).await;
    // Inside the container the WebUI's training dies; train.py still exits 0.
    env.aws
        .faults(json!({"complete_without_checkpoint": ["*"]}));
    env.write(
        "package.yaml",
        "apiVersion: sdop/v1alpha1\nkind: ModelArchive\nmetadata: {name: jpstyle}\nspec:\n  output: s3://sdop-it-train/jpstyle/model.tar.gz\n  sources: [{dreamboothJob: jpstyle, path: Stable-diffusion/}]\n",
    );
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "").replace(
            "modelData: {s3Uri: \"s3://sdop-it-assets/model.tar.gz\"}",
            "modelData: {modelArchive: jpstyle}",
        ),
    );
    let options = ApplyOptions {
        wait: true,
        timeout: Duration::from_secs(120),
        min_poll: Duration::from_millis(100),
        max_poll: Duration::from_millis(500),
        ..ApplyOptions::default()
    };
    let started = std::time::Instant::now();
    let (summary, lines) = env.apply_with(options).await;
    let summary = summary.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "apply --wait took {:?}: {lines:#?}",
        started.elapsed()
    );
    assert!(!summary.timed_out, "{lines:#?}");
    assert_eq!(env.phase("DreamboothJob", "jpstyle"), Phase::Failed);
    for (kind, name) in [("ModelArchive", "jpstyle"), ("Endpoint", "base")] {
        let status = env
            .store()
            .load(&ResourceId::new(kind, name))
            .unwrap()
            .expect("status");
        let ready = status
            .conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .unwrap();
        assert_eq!(
            (status.phase, ready.reason.as_str()),
            (Phase::Pending, "BlockedByDependency"),
            "{kind}/{name}: {}",
            status.message
        );
    }
    assert!(summary.has_problems(), "{lines:#?}");
}

/// Issue #23: `suspend: true` reads the resource and shows its drift, and changes nothing;
/// resuming undoes the drift.
#[tokio::test]
async fn a_suspended_resource_reports_drift_and_changes_nothing_until_resumed() {
    let env = Env::new();
    env.write(
        "bucket.yaml",
        &bucket("data", "sdop-it-suspend", "  tags: {team: ml}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    let s3 = env.aws.s3().await;
    let team = |s3: aws_sdk_s3::Client| async move {
        s3.get_bucket_tagging()
            .bucket("sdop-it-suspend")
            .send()
            .await
            .unwrap()
            .tag_set()
            .iter()
            .find(|t| t.key() == "team")
            .map(|t| t.value().to_string())
    };
    // Drift behind sdop's back, then the manifest suspends the bucket.
    let mut tags: Vec<aws_sdk_s3::types::Tag> = s3
        .get_bucket_tagging()
        .bucket("sdop-it-suspend")
        .send()
        .await
        .unwrap()
        .tag_set()
        .to_vec();
    for tag in tags.iter_mut().filter(|t| t.key() == "team") {
        *tag = aws_sdk_s3::types::Tag::builder()
            .key("team")
            .value("hand-edited")
            .build()
            .unwrap();
    }
    s3.put_bucket_tagging()
        .bucket("sdop-it-suspend")
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    env.write(
        "bucket.yaml",
        &bucket(
            "data",
            "sdop-it-suspend",
            "  tags: {team: ml}\n  suspend: true\n",
        ),
    );
    let plan = env.plan().await;
    assert!(
        plan.actions
            .iter()
            .any(|a| a.deferred.as_deref() == Some("when resumed")),
        "the plan shows the drift, deferred: {:#?}",
        plan.actions
    );
    env.aws.reset_calls();
    let (summary, lines) = env.apply().await;
    assert!(!summary.timed_out, "a suspended resource is not waited for");
    assert_eq!(env.aws.mutating_calls(), Vec::<String>::new(), "{lines:#?}");
    assert_eq!(team(s3.clone()).await.as_deref(), Some("hand-edited"));
    let status = env
        .store()
        .load(&ResourceId::new("Bucket", "data"))
        .unwrap()
        .unwrap();
    assert_eq!(status.phase, Phase::Pending);
    assert!(
        status.message.contains("suspended (spec.suspend: true")
            && status.message.contains("1 change(s) not applied"),
        "{}",
        status.message
    );
    // Resumed: the drift is undone.
    env.write(
        "bucket.yaml",
        &bucket("data", "sdop-it-suspend", "  tags: {team: ml}\n"),
    );
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(team(s3).await.as_deref(), Some("ml"));
}

/// Issue #23, partial progress: before the WebUI's first start creates its industrial model,
/// the endpoint is created and serves; only its WebUI registration waits, and the resource is
/// Ready once the registration is made.
#[tokio::test]
async fn the_endpoint_serves_while_its_webui_registration_waits() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let env = Env::new();
    webui_registry(&env.aws, "im-1").await;
    let ddb = env.aws.dynamodb().await;
    // The tables exist (the stack made them) but the WebUI has not started yet.
    ddb.delete_item()
        .table_name("all_in_one_ai_industrial_model")
        .key("model_id", AttributeValue::S("im-1".into()))
        .key(
            "model_algorithm",
            AttributeValue::S("stable-diffusion-webui".into()),
        )
        .send()
        .await
        .unwrap();
    env.write(
        "endpoint.yaml",
        &endpoint("ml.g4dn.xlarge", "  webuiRegistration: {}\n"),
    );
    let (result, lines) = env
        .apply_with(ApplyOptions {
            wait: true,
            timeout: Duration::from_secs(15),
            min_poll: Duration::from_millis(100),
            max_poll: Duration::from_millis(500),
            ..ApplyOptions::default()
        })
        .await;
    let summary = result.unwrap();
    assert!(summary.timed_out, "the registration waits: {lines:#?}");
    let sm = env.aws.sagemaker().await;
    let described = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.endpoint_status().map(|s| s.as_str()),
        Some("InService"),
        "the endpoint serves meanwhile: {lines:#?}"
    );
    let status = env
        .store()
        .load(&ResourceId::new("Endpoint", "base"))
        .unwrap()
        .unwrap();
    assert_eq!(status.phase, Phase::Pending, "{}", status.message);
    assert!(
        status
            .message
            .contains("the other AWS objects match the manifest"),
        "{}",
        status.message
    );
    // The WebUI starts: the registration is made and the endpoint is Ready.
    ddb.put_item()
        .table_name("all_in_one_ai_industrial_model")
        .item("model_id", AttributeValue::S("im-1".into()))
        .item(
            "model_algorithm",
            AttributeValue::S("stable-diffusion-webui".into()),
        )
        .send()
        .await
        .unwrap();
    let (summary, lines) = env.apply().await;
    assert!(summary.converged(), "{lines:#?}");
    assert_eq!(
        registry_rows(&env.aws).await,
        [(
            "sd-base/im-1".to_string(),
            Some("Endpoint/base".to_string())
        )]
    );
}
