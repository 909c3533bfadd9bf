//! Pins the local AWS's behaviour with the real aws-sdk-rust clients: lifecycles, update and
//! rolled-back update, stop, duplicate names, tag upsert, checkpoint output, throttling, 500s,
//! the call counter.

use std::time::{Duration, Instant};

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, ContainerDefinition, DataSource, EndpointStatus,
    OutputDataConfig, ProductionVariant, ProductionVariantInstanceType, ResourceConfig,
    S3DataSource, S3DataType, StoppingCondition, Tag, TrainingInputMode, TrainingInstanceType,
    TrainingJobStatus,
};
use serde_json::{json, Value};

use crate::support::local_aws::{self, LocalAws};

const ROLE: &str = "arn:aws:iam::123456789012:role/sdop-test";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest";

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn model_and_config(sm: &aws_sdk_sagemaker::Client, name: &str) {
    sm.create_model()
        .model_name(name)
        .execution_role_arn(ROLE)
        .primary_container(
            ContainerDefinition::builder()
                .image(IMAGE)
                .model_data_url("s3://bucket/model.tar.gz")
                .environment(
                    "api_endpoint",
                    "https://api-id.execute-api.us-east-1.amazonaws.com/prod",
                )
                .build(),
        )
        .send()
        .await
        .expect("CreateModel");
    sm.create_endpoint_config()
        .endpoint_config_name(name)
        .production_variants(
            ProductionVariant::builder()
                .variant_name("AllTraffic")
                .model_name(name)
                .instance_type(ProductionVariantInstanceType::MlG4Dn2Xlarge)
                .initial_instance_count(1)
                .build(),
        )
        .send()
        .await
        .expect("CreateEndpointConfig");
}

async fn endpoint_state(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
) -> (EndpointStatus, String, Option<String>) {
    let d = sm
        .describe_endpoint()
        .endpoint_name(name)
        .send()
        .await
        .expect("DescribeEndpoint");
    (
        d.endpoint_status().cloned().expect("status"),
        d.endpoint_config_name().unwrap_or_default().to_string(),
        d.failure_reason().map(str::to_string),
    )
}

#[test]
fn missing_virtualenv_names_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let message = local_aws::check_installed(dir.path()).unwrap_err();
    assert!(
        message.contains("deploy/local-aws/up --install-only"),
        "{message}"
    );
}

/// Issue #23: a taken port is said once, in one line that says what to do (werkzeug alone
/// printed `Address already in use` and then a sentence about it).
#[test]
fn a_taken_port_is_reported_once() {
    let root = local_aws::repo_root();
    local_aws::check_installed(&root).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(root.join("deploy/local-aws/up"))
        .args(["--port", &port, "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("already in use").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("pass another --port"),
        "{stderr}"
    );
}

#[tokio::test]
async fn endpoint_create_update_and_rolled_back_update() {
    let aws = LocalAws::start();
    aws.configure(json!({"endpoint_create_seconds": 1.0, "endpoint_update_seconds": 1.0}));
    let sm = aws.sagemaker().await;
    model_and_config(&sm, "cfg-a").await;
    model_and_config(&sm, "cfg-b").await;
    model_and_config(&sm, "cfg-c").await;

    let started = Instant::now();
    sm.create_endpoint()
        .endpoint_name("ep")
        .endpoint_config_name("cfg-a")
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint_state(&sm, "ep").await.0, EndpointStatus::Creating);
    wait_for("InService", Duration::from_secs(10), || async {
        endpoint_state(&sm, "ep").await.0 == EndpointStatus::InService
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // A good update: Updating while still on the old config, then InService on the new one.
    sm.update_endpoint()
        .endpoint_name("ep")
        .endpoint_config_name("cfg-b")
        .send()
        .await
        .unwrap();
    let (status, config, _) = endpoint_state(&sm, "ep").await;
    assert_eq!(
        (status, config.as_str()),
        (EndpointStatus::Updating, "cfg-a")
    );
    wait_for("update", Duration::from_secs(10), || async {
        endpoint_state(&sm, "ep").await == (EndpointStatus::InService, "cfg-b".to_string(), None)
    })
    .await;

    // An update AWS rolls back: accepted, then InService on the OLD config with a reason.
    aws.faults(
        json!({"fail_next_update_endpoint": "Model container failed the ping health check"}),
    );
    sm.update_endpoint()
        .endpoint_name("ep")
        .endpoint_config_name("cfg-c")
        .send()
        .await
        .unwrap();
    wait_for("rollback", Duration::from_secs(10), || async {
        endpoint_state(&sm, "ep").await.0 == EndpointStatus::InService
    })
    .await;
    let (_, config, reason) = endpoint_state(&sm, "ep").await;
    assert_eq!(config, "cfg-b");
    assert_eq!(
        reason.as_deref(),
        Some("Model container failed the ping health check")
    );

    // Delete: Deleting, then gone.
    aws.configure(json!({"endpoint_delete_seconds": 0.5}));
    sm.delete_endpoint()
        .endpoint_name("ep")
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint_state(&sm, "ep").await.0, EndpointStatus::Deleting);
    wait_for("deleted", Duration::from_secs(10), || async {
        sm.describe_endpoint()
            .endpoint_name("ep")
            .send()
            .await
            .is_err()
    })
    .await;
}

#[tokio::test]
async fn duplicate_names_are_rejected_and_tags_upsert() {
    let aws = LocalAws::start();
    let sm = aws.sagemaker().await;
    model_and_config(&sm, "dup").await;
    let err = sm
        .create_model()
        .model_name("dup")
        .execution_role_arn(ROLE)
        .primary_container(ContainerDefinition::builder().image(IMAGE).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("Cannot create already existing model"),
        "{err:?}"
    );

    let arn = sm
        .describe_model()
        .model_name("dup")
        .send()
        .await
        .unwrap()
        .model_arn()
        .unwrap()
        .to_string();
    for value in ["one", "two"] {
        sm.add_tags()
            .resource_arn(&arn)
            .tags(Tag::builder().key("sdop.io/spec-hash").value(value).build())
            .send()
            .await
            .unwrap();
    }
    let tags = sm.list_tags().resource_arn(&arn).send().await.unwrap();
    let found: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(found, [("sdop.io/spec-hash", "two")]);
}

/// A DreamBooth request as upstream's notebook (`stable-diffusion-webui-dreambooth.ipynb`)
/// builds it for the workshop's training image: every hyperparameter `json.dumps`-ed, train-args
/// twice; the positional config (extension 249de82 `DreamboothConfig`, 104 parameters) as
/// `config/<id>.json` in the `config` channel; the source checkpoint key without its extension
/// as `models`. Written from the upstream facts, independently of sdop's contract module.
struct Dreambooth {
    hyperparameters: Vec<(String, String)>,
    channels: Vec<(&'static str, String)>,
}

fn positional_config(steps: u32) -> Value {
    let mut config = vec![json!(""); 104];
    for (at, value) in [
        (11, json!(1)),                              // gradient_accumulation_steps
        (16, json!(2e-6)),                           // learning_rate
        (22, json!(steps)),                          // max_train_steps
        (26, json!(1)),                              // num_train_epochs
        (34, json!(0)),                              // save_embedding_every
        (42, json!(1)),                              // train_batch_size
        (56, json!("/opt/ml/input/data/concepts/")), // c1_instance_data_dir
    ] {
        config[at] = value;
    }
    Value::Array(config)
}

impl Dreambooth {
    fn new(prefix: &str) -> Self {
        let settings = json!({"train_dreambooth_settings": {
            "db_create_new_db_model": true, "db_lora_model_name": "", "db_lora_weight": 1,
            "db_lora_txt_weight": 1, "db_train_imagic_only": false, "db_use_subdir": false,
            "db_custom_model_name": "", "db_train_wizard_person": false,
            "db_train_wizard_object": false, "db_performance_wizard": false,
            "db_new_model_name": "jp-style-model", "db_new_model_src": "v2-1_768-ema-pruned.ckpt",
            "db_new_model_scheduler": "ddim", "db_create_from_hub": false, "db_new_model_url": "",
            "db_new_model_token": "", "db_new_model_extract_ema": false}});
        let once = |v: &str| Value::String(v.to_string()).to_string();
        Dreambooth {
            hyperparameters: vec![
                ("train-task".into(), once("dreambooth")),
                ("train-args".into(), once(&settings.to_string())),
                ("sd-models-s3uri".into(), once(prefix)),
                ("api-endpoint".into(), once("noapi")),
                ("dreambooth-config-id".into(), once("cfg")),
            ],
            channels: vec![
                ("concepts", "s3://sdop-test/dataset/".into()),
                (
                    "models",
                    "s3://sdop-test/checkpoints/v2-1_768-ema-pruned".into(),
                ),
                ("config", "s3://sdop-test/config/".into()),
            ],
        }
    }

    fn set(mut self, key: &str, raw: Option<String>) -> Self {
        self.hyperparameters.retain(|(k, _)| k != key);
        if let Some(raw) = raw {
            self.hyperparameters.push((key.into(), raw));
        }
        self
    }
}

/// Uploads what the user and the config writer put in S3 for [`Dreambooth`].
async fn seed_dreambooth(s3: &aws_sdk_s3::Client, steps: u32) {
    s3.create_bucket().bucket("sdop-test").send().await.unwrap();
    for (key, body) in [
        ("dataset/a.jpg".to_string(), b"img".to_vec()),
        ("dataset/b.png".to_string(), b"img".to_vec()),
        (
            "checkpoints/v2-1_768-ema-pruned.ckpt".to_string(),
            b"w".to_vec(),
        ),
        (
            "checkpoints/v2-1_768-ema-pruned.yaml".to_string(),
            b"model:".to_vec(),
        ),
        (
            "config/cfg.json".to_string(),
            positional_config(steps).to_string().into_bytes(),
        ),
    ] {
        s3.put_object()
            .bucket("sdop-test")
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
}

fn training_job(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
    request: &Dreambooth,
) -> aws_sdk_sagemaker::operation::create_training_job::builders::CreateTrainingJobFluentBuilder {
    let mut builder = sm
        .create_training_job()
        .training_job_name(name)
        .role_arn(ROLE)
        .algorithm_specification(
            AlgorithmSpecification::builder()
                .training_image(IMAGE)
                .training_input_mode(TrainingInputMode::File)
                .build(),
        )
        .output_data_config(
            OutputDataConfig::builder()
                .s3_output_path("s3://sdop-test/out/")
                .build(),
        )
        .resource_config(
            ResourceConfig::builder()
                .instance_type(TrainingInstanceType::MlG4Dn2Xlarge)
                .instance_count(1)
                .volume_size_in_gb(50)
                .build(),
        )
        .stopping_condition(
            StoppingCondition::builder()
                .max_runtime_in_seconds(3600)
                .build(),
        );
    for (channel, uri) in &request.channels {
        builder = builder.input_data_config(
            Channel::builder()
                .channel_name(*channel)
                .data_source(
                    DataSource::builder()
                        .s3_data_source(
                            S3DataSource::builder()
                                .s3_data_type(S3DataType::S3Prefix)
                                .s3_uri(uri)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
    }
    for (key, value) in &request.hyperparameters {
        builder = builder.hyper_parameters(key, value);
    }
    builder
}

async fn job_status(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
) -> (TrainingJobStatus, Option<String>) {
    let d = sm
        .describe_training_job()
        .training_job_name(name)
        .send()
        .await
        .unwrap();
    (
        d.training_job_status().cloned().unwrap(),
        d.failure_reason().map(str::to_string),
    )
}

#[tokio::test]
async fn training_jobs_complete_with_checkpoints_stop_and_fail() {
    let aws = LocalAws::start();
    aws.configure(
        json!({"training_seconds": 1.0, "training_stop_seconds": 0.5, "checkpoint_bytes": 4096}),
    );
    let sm = aws.sagemaker().await;
    let s3 = aws.s3().await;
    seed_dreambooth(&s3, 2500).await;
    let prefix = "s3://sdop-test/stable-diffusion-webui/models/Stable-diffusion/";
    let request = Dreambooth::new(prefix);

    let started = Instant::now();
    training_job(&sm, "jp-2500", &request).send().await.unwrap();
    assert_eq!(
        job_status(&sm, "jp-2500").await.0,
        TrainingJobStatus::InProgress
    );
    let dup = training_job(&sm, "jp-2500", &request)
        .send()
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some("ResourceInUse"));
    wait_for("Completed", Duration::from_secs(10), || async {
        job_status(&sm, "jp-2500").await.0 == TrainingJobStatus::Completed
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let listed = s3
        .list_objects_v2()
        .bucket("sdop-test")
        .prefix("stable-diffusion-webui/models/Stable-diffusion/")
        .send()
        .await
        .unwrap();
    let objects: Vec<(&str, i64)> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.size().unwrap()))
        .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(
        objects[0],
        (
            "stable-diffusion-webui/models/Stable-diffusion/jp-style-model_2500.ckpt",
            4096
        )
    );
    assert_eq!(
        objects[1].0,
        "stable-diffusion-webui/models/Stable-diffusion/jp-style-model_2500.yaml"
    );

    // Stop: Stopping, then Stopped, and no checkpoint.
    aws.configure(json!({"training_seconds": 30.0}));
    training_job(&sm, "jp-stop", &request).send().await.unwrap();
    sm.stop_training_job()
        .training_job_name("jp-stop")
        .send()
        .await
        .unwrap();
    assert_eq!(
        job_status(&sm, "jp-stop").await.0,
        TrainingJobStatus::Stopping
    );
    wait_for("Stopped", Duration::from_secs(10), || async {
        job_status(&sm, "jp-stop").await.0 == TrainingJobStatus::Stopped
    })
    .await;

    // An injected failure ends Failed with the reason, writing nothing.
    aws.configure(json!({"training_seconds": 0.5}));
    aws.faults(json!({"fail_training_jobs": {"jp-fail": "AlgorithmError: CUDA out of memory"}}));
    training_job(&sm, "jp-fail", &request).send().await.unwrap();
    wait_for("Failed", Duration::from_secs(10), || async {
        job_status(&sm, "jp-fail").await.0 == TrainingJobStatus::Failed
    })
    .await;
    assert_eq!(
        job_status(&sm, "jp-fail").await.1.as_deref(),
        Some("AlgorithmError: CUDA out of memory")
    );
    let keys = s3
        .list_objects_v2()
        .bucket("sdop-test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        keys.contents()
            .iter()
            .filter(|o| o.key().unwrap().contains("_2500."))
            .count(),
        2,
        "only the first job wrote checkpoints"
    );
}

/// Runs `request` to its end; (status, failure reason, whether a checkpoint was written, log).
async fn outcome(
    aws: &LocalAws,
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
    request: &Dreambooth,
) -> (TrainingJobStatus, Option<String>, bool, String) {
    let s3 = aws.s3().await;
    training_job(sm, name, request).send().await.unwrap();
    wait_for("the job's end", Duration::from_secs(10), || async {
        !matches!(job_status(sm, name).await.0, TrainingJobStatus::InProgress)
    })
    .await;
    let (status, reason) = job_status(sm, name).await;
    let written = s3
        .list_objects_v2()
        .bucket("sdop-test")
        .prefix(format!("models/{name}/"))
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0)
        > 0;
    let log = aws.containers()["logs"][name].to_string();
    (status, reason, written, log)
}

#[tokio::test]
async fn the_training_image_contract_fails_where_the_real_image_would() {
    let aws = LocalAws::start();
    aws.configure(json!({"training_seconds": 0.2}));
    let sm = aws.sagemaker().await;
    seed_dreambooth(&aws.s3().await, 800).await;
    let ok = |name: &str| Dreambooth::new(&format!("s3://sdop-test/models/{name}/"));
    let once = |v: &str| Value::String(v.to_string()).to_string();

    // The upstream-shaped request trains and uploads <model>_<steps>.ckpt + .yaml.
    let (status, _, written, log) = outcome(&aws, &sm, "good", &ok("good")).await;
    assert_eq!(
        (status, written),
        (TrainingJobStatus::Completed, true),
        "{log}"
    );
    assert!(log.contains("total steps: 800"), "{log}");

    // train.py's own argparse: an unknown hyperparameter fails the job (exit 2).
    let extra = ok("extra").set("max-steps", Some(once("5")));
    let (status, reason, _, _) = outcome(&aws, &sm, "extra", &extra).await;
    assert_eq!(status, TrainingJobStatus::Failed);
    assert!(reason
        .unwrap()
        .contains("unrecognized arguments: --max-steps"));

    // Everything after train.py started webui.sh ends Completed without a checkpoint.
    let settings = |patch: &dyn Fn(&mut Value)| {
        let mut s = json!({"train_dreambooth_settings": {
            "db_create_new_db_model": true, "db_lora_model_name": "", "db_lora_weight": 1,
            "db_lora_txt_weight": 1, "db_train_imagic_only": false, "db_use_subdir": false,
            "db_custom_model_name": "", "db_train_wizard_person": false,
            "db_train_wizard_object": false, "db_performance_wizard": false,
            "db_new_model_name": "jp-style-model", "db_new_model_src": "v2-1_768-ema-pruned.ckpt",
            "db_new_model_scheduler": "ddim", "db_create_from_hub": false, "db_new_model_url": "",
            "db_new_model_token": "", "db_new_model_extract_ema": false}});
        patch(&mut s);
        s
    };
    let cases: Vec<(&str, Dreambooth, &str)> = vec![
        (
            "encoded-once",
            ok("encoded-once").set("train-args", Some(settings(&|_| {}).to_string())),
            "",
        ),
        (
            "missing-key",
            ok("missing-key").set(
                "train-args",
                Some(once(
                    &settings(&|s| {
                        s["train_dreambooth_settings"]
                            .as_object_mut()
                            .unwrap()
                            .remove("db_use_subdir");
                    })
                    .to_string(),
                )),
            ),
            "KeyError: 'db_use_subdir'",
        ),
        (
            "empty-api",
            ok("empty-api").set("api-endpoint", Some(once(""))),
            "expected one argument",
        ),
        (
            "no-config",
            ok("no-config").set("dreambooth-config-id", Some(once("other"))),
            "MissingSchema",
        ),
        (
            "wrong-source",
            ok("wrong-source").set(
                "train-args",
                Some(once(
                    &settings(&|s| {
                        s["train_dreambooth_settings"]["db_new_model_src"] = json!("sd15.ckpt")
                    })
                    .to_string(),
                )),
            ),
            "Unable to find base checkpoint",
        ),
        (
            "subdir",
            ok("subdir").set(
                "train-args",
                Some(once(
                    &settings(&|s| s["train_dreambooth_settings"]["db_use_subdir"] = json!(true))
                        .to_string(),
                )),
            ),
            "total steps",
        ),
    ];
    for (name, request, expected) in cases {
        let (status, reason, written, log) = outcome(&aws, &sm, name, &request).await;
        assert_eq!(
            (status, reason, written),
            (TrainingJobStatus::Completed, None, false),
            "{name}: {log}"
        );
        assert!(log.contains(expected), "{name}: {log}");
    }
    // An empty concept directory.
    let mut empty = ok("empty-dataset");
    empty.channels[0].1 = "s3://sdop-test/nothing/".into();
    let (_, _, written, log) = outcome(&aws, &sm, "empty-dataset", &empty).await;
    assert!(!written && log.contains("holds no images"), "{log}");
    // The knob: Completed, no checkpoint.
    aws.faults(json!({"complete_without_checkpoint": ["knob"]}));
    let (status, _, written, _) = outcome(&aws, &sm, "knob", &ok("knob")).await;
    assert_eq!((status, written), (TrainingJobStatus::Completed, false));
}

/// A model.tar.gz with `files` (paths under /opt/ml/model/) in bucket `models`.
pub(crate) async fn upload_package(s3: &aws_sdk_s3::Client, key: &str, files: &[&str]) -> String {
    let _ = s3.create_bucket().bucket("models").send().await;
    let mut tar = tokio_tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tokio_tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, file, &b"w"[..]).await.unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().await.unwrap()).unwrap();
    s3.put_object()
        .bucket("models")
        .key(key)
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();
    format!("s3://models/{key}")
}

async fn inference_endpoint(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
    image: &str,
    model_data: &str,
    env: &[(&str, &str)],
) {
    let mut container = ContainerDefinition::builder()
        .image(image)
        .model_data_url(model_data);
    for (k, v) in env {
        container = container.environment(*k, *v);
    }
    sm.create_model()
        .model_name(name)
        .execution_role_arn(ROLE)
        .primary_container(container.build())
        .send()
        .await
        .unwrap();
    sm.create_endpoint_config()
        .endpoint_config_name(name)
        .production_variants(
            ProductionVariant::builder()
                .variant_name("AllTraffic")
                .model_name(name)
                .instance_type(ProductionVariantInstanceType::MlG4Dn2Xlarge)
                .initial_instance_count(1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    sm.create_endpoint()
        .endpoint_name(name)
        .endpoint_config_name(name)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_inference_image_contract_and_manifest_digests() {
    let aws = LocalAws::start();
    aws.configure(json!({"endpoint_create_seconds": 0.2}));
    let sm = aws.sagemaker().await;
    let s3 = aws.s3().await;
    let package = upload_package(
        &s3,
        "model.tar.gz",
        &["Stable-diffusion/v1-5-pruned.ckpt", "ControlNet/canny.pth"],
    )
    .await;
    let api = (
        "api_endpoint",
        "https://api-id.execute-api.us-east-1.amazonaws.com/prod",
    );
    let ckpt = ("ckpt", "/opt/ml/model/Stable-diffusion/v1-5-pruned.ckpt");
    // Fork 9f7dec70 (no revision annotation: the workshop's image).
    for (name, env, expected) in [
        ("no-api", vec![ckpt], Some("KeyError: 'api_endpoint'")),
        (
            "noapi",
            vec![("api_endpoint", "noapi")],
            Some("MissingSchema"),
        ),
        ("ok", vec![api, ckpt], None),
    ] {
        inference_endpoint(&sm, name, IMAGE, &package, &env).await;
        wait_for("the endpoint's start", Duration::from_secs(10), || async {
            endpoint_state(&sm, name).await.0 != EndpointStatus::Creating
        })
        .await;
        let (status, _, reason) = endpoint_state(&sm, name).await;
        match expected {
            Some(text) => {
                assert_eq!(status, EndpointStatus::Failed, "{name}");
                let reason = reason.unwrap();
                assert!(
                    reason.contains("ping health check") && reason.contains(text),
                    "{reason}"
                );
            }
            None => assert_eq!(status, EndpointStatus::InService, "{name}: {reason:?}"),
        }
    }
    assert_eq!(
        aws.containers()["loaded"]["ok"],
        "Stable-diffusion/v1-5-pruned.ckpt"
    );
    // No checkpoint in the package: the WebUI exits.
    let empty = upload_package(&s3, "empty.tar.gz", &["ControlNet/canny.pth"]).await;
    inference_endpoint(&sm, "empty", IMAGE, &empty, &[api]).await;
    wait_for("Failed", Duration::from_secs(10), || async {
        endpoint_state(&sm, "empty").await.0 == EndpointStatus::Failed
    })
    .await;

    // ECR: the digest is the sha256 of the manifest as pushed; a new push, a new digest.
    let ecr = aws.ecr().await;
    ecr.create_repository()
        .repository_name("sd-inference")
        .send()
        .await
        .unwrap();
    let manifest = |revision: &str| {
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1,
                "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000001"},
            "layers": [], "annotations": {"org.opencontainers.image.revision": revision}})
        .to_string()
    };
    let mut digests = Vec::new();
    for revision in ["9f7dec70", "47dd0bbc"] {
        let text = manifest(revision);
        let pushed = ecr
            .put_image()
            .repository_name("sd-inference")
            .image_tag("latest")
            .image_manifest(&text)
            .send()
            .await
            .unwrap();
        let digest = pushed
            .image()
            .unwrap()
            .image_id()
            .unwrap()
            .image_digest()
            .unwrap()
            .to_string();
        use sha2::Digest;
        assert_eq!(
            digest,
            format!("sha256:{:x}", sha2::Sha256::digest(text.as_bytes()))
        );
        digests.push(digest);
    }
    assert_ne!(digests[0], digests[1]);
    // An image of fork 47dd0bbc starts with the notebook's stand-in.
    let image = format!(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-inference@{}",
        digests[1]
    );
    inference_endpoint(
        &sm,
        "old-fork",
        &image,
        &package,
        &[("api_endpoint", "noapi")],
    )
    .await;
    wait_for("InService", Duration::from_secs(10), || async {
        endpoint_state(&sm, "old-fork").await.0 == EndpointStatus::InService
    })
    .await;
}

#[tokio::test]
async fn throttling_500s_and_the_call_counter() {
    let aws = LocalAws::start();
    let no_retries = aws_sdk_sagemaker::Client::new(&aws.sdk_config_with_attempts(1).await);
    let sm = aws.sagemaker().await;
    model_and_config(&sm, "m").await;
    aws.reset_calls();

    // Every 2nd ListModels is throttled as AWS does (HTTP 400, ThrottlingException).
    aws.faults(json!({"throttle": {"sagemaker:ListModels": 0.5}}));
    let mut throttled = 0;
    for _ in 0..10 {
        if let Err(err) = no_retries.list_models().send().await {
            assert_eq!(err.code(), Some("ThrottlingException"));
            assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
            throttled += 1;
        }
    }
    assert_eq!(throttled, 5);
    // The SDK's standard retries absorb it.
    for _ in 0..6 {
        sm.list_models()
            .send()
            .await
            .expect("retried past throttling");
    }

    aws.faults(json!({"error500": {"sagemaker:DescribeModel": 1.0}}));
    let err = no_retries
        .describe_model()
        .model_name("m")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    aws.clear_faults();
    no_retries
        .describe_model()
        .model_name("m")
        .send()
        .await
        .unwrap();

    let calls = aws.calls();
    assert_eq!(calls.mutations(), 0, "{:?}", calls.0);
    assert!(calls.of("sagemaker:ListModels") >= 16, "{:?}", calls.0);
    assert_eq!(calls.of("sagemaker:DescribeModel"), 2);
    aws.reset_calls();
    sm.delete_model().model_name("m").send().await.unwrap();
    let calls = aws.calls();
    assert_eq!((calls.reads(), calls.mutations()), (0, 1));
}

#[tokio::test]
async fn stack_create_lifecycle_from_an_s3_template() {
    let aws = LocalAws::start();
    aws.configure(json!({"stack_seconds": 1.0}));
    let s3 = aws.s3().await;
    let cfn = aws.cloudformation().await;
    s3.create_bucket()
        .bucket("sdop-templates")
        .send()
        .await
        .unwrap();
    let template = "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  S3Bucket: {Type: String}\nResources:\n  Topic: {Type: AWS::SNS::Topic}\nOutputs:\n  WebUIPortalUrl: {Value: !Sub 'https://${S3Bucket}.example'}\n";
    s3.put_object()
        .bucket("sdop-templates")
        .key("templates/main.yaml")
        .body(template.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    cfn.create_stack()
        .stack_name("webui")
        .template_url(format!(
            "http://localhost:{}/sdop-templates/templates/main.yaml",
            aws.port
        ))
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("S3Bucket")
                .parameter_value("assets")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let status = |cfn: aws_sdk_cloudformation::Client| async move {
        let out = cfn
            .describe_stacks()
            .stack_name("webui")
            .send()
            .await
            .unwrap();
        let stack = out.stacks()[0].clone();
        stack
    };
    assert_eq!(
        status(cfn.clone()).await.stack_status().unwrap().as_str(),
        "CREATE_IN_PROGRESS"
    );
    wait_for("CREATE_COMPLETE", Duration::from_secs(10), || async {
        status(cfn.clone()).await.stack_status().unwrap().as_str() == "CREATE_COMPLETE"
    })
    .await;
    let stack = status(cfn.clone()).await;
    let outputs: Vec<(&str, &str)> = stack
        .outputs()
        .iter()
        .map(|o| (o.output_key().unwrap(), o.output_value().unwrap()))
        .collect();
    assert_eq!(outputs, [("WebUIPortalUrl", "https://assets.example")]);
}

/// As AWS: a Lambda function whose code zip is not in S3 fails its nested stack and the stack
/// rolls back (all-in-one-ai-lambda.yaml loads every function from ${S3Key}codes/<name>.zip);
/// with the zips there, the same templates create.
#[tokio::test]
async fn a_missing_code_zip_fails_the_nested_lambda_stack() {
    let aws = LocalAws::start();
    aws.configure(json!({"stack_seconds": 0.0}));
    let s3 = aws.s3().await;
    let cfn = aws.cloudformation().await;
    let checkout = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("python3")
        .arg(local_aws::repo_root().join("scripts/stand-in-checkout.py"))
        .arg(checkout.path().join("aio"))
        .output()
        .expect("python3 scripts/stand-in-checkout.py");
    assert!(made.status.success(), "{made:?}");
    let bucket = "sdop-codes";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let put = |dir: &str, prefix: &str| {
        let s3 = s3.clone();
        let dir = checkout.path().join("aio").join(dir);
        let prefix = prefix.to_string();
        async move {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                s3.put_object()
                    .bucket(bucket)
                    .key(format!("{prefix}{name}"))
                    .body(std::fs::read(&path).unwrap().into())
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    put("deployment/templates", "templates/").await;
    let create = |cfn: aws_sdk_cloudformation::Client, name: &'static str| async move {
        let mut call = cfn.create_stack().stack_name(name).template_url(format!(
            "https://{bucket}.s3.us-east-1.amazonaws.com/templates/all-in-one-ai-webui-main.yaml"
        ));
        for (key, value) in [
            ("S3Bucket", bucket),
            ("S3Key", ""),
            ("AvailabilityZones", "us-east-1a,us-east-1b"),
            ("DomainName", ""),
            ("Certificate", ""),
            ("WebUIDomainName", ""),
            ("UserPool", ""),
            ("UserPoolClient", ""),
            ("UserPoolDomain", ""),
            ("CognitoRegion", ""),
        ] {
            call = call.parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key(key)
                    .parameter_value(value)
                    .build(),
            );
        }
        call.send().await.unwrap();
        let out = cfn.describe_stacks().stack_name(name).send().await.unwrap();
        out.stacks()[0].stack_status().unwrap().as_str().to_string()
    };
    assert_eq!(create(cfn.clone(), "without").await, "ROLLBACK_COMPLETE");
    // As on AWS, the root stack's events name the nested stack that failed ("Embedded stack
    // ARN was not successfully created"); the nested stack's own events (read by its ARN, it
    // was deleted by the rollback) have the resource and AWS's reason.
    let events = cfn
        .describe_stack_events()
        .stack_name("without")
        .send()
        .await
        .unwrap();
    let lambda = events
        .stack_events()
        .iter()
        .find(|e| {
            e.logical_resource_id() == Some("LAMBDA")
                && e.resource_status().map(|s| s.as_str()) == Some("CREATE_FAILED")
        })
        .unwrap_or_else(|| panic!("{events:?}"));
    let nested = lambda.physical_resource_id().unwrap();
    assert!(
        lambda
            .resource_status_reason()
            .unwrap()
            .starts_with(&format!(
                "Embedded stack {nested} was not successfully created: "
            )),
        "{lambda:?}"
    );
    let nested_events = cfn
        .describe_stack_events()
        .stack_name(nested)
        .send()
        .await
        .unwrap();
    assert!(
        nested_events.stack_events().iter().any(|e| e
            .resource_status()
            .is_some_and(|s| s.as_str() == "CREATE_FAILED")
            && e.resource_status_reason()
                .unwrap_or_default()
                .contains("NoSuchKey")),
        "{nested_events:?}"
    );
    // moto warns about the template's resource types it does not emulate: in the emulator's
    // log, not in the test output (#23).
    let log = aws.log();
    assert!(
        log.contains("No Moto CloudFormation support for AWS::SecretsManager::Secret"),
        "{log}"
    );
    cfn.delete_stack()
        .stack_name("without")
        .send()
        .await
        .unwrap();
    put("backend/build/codes", "codes/").await;
    assert_eq!(create(cfn.clone(), "with").await, "CREATE_COMPLETE");
}
