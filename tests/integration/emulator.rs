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
use serde_json::json;

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

fn training_job(
    sm: &aws_sdk_sagemaker::Client,
    name: &str,
    prefix: &str,
    steps: u32,
    sd2: bool,
) -> aws_sdk_sagemaker::operation::create_training_job::builders::CreateTrainingJobFluentBuilder {
    let train_args = json!({"train_dreambooth_settings": {
        "db_new_model_name": "jp-style-model", "db_max_train_steps": steps, "db_512_model": !sd2}});
    sm.create_training_job()
        .training_job_name(name)
        .role_arn(ROLE)
        .algorithm_specification(
            AlgorithmSpecification::builder()
                .training_image(IMAGE)
                .training_input_mode(TrainingInputMode::File)
                .build(),
        )
        .input_data_config(
            Channel::builder()
                .channel_name("concepts")
                .data_source(
                    DataSource::builder()
                        .s3_data_source(
                            S3DataSource::builder()
                                .s3_data_type(S3DataType::S3Prefix)
                                .s3_uri("s3://sdop-test/dataset/")
                                .build(),
                        )
                        .build(),
                )
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
        )
        .hyper_parameters("train-task", "dreambooth")
        .hyper_parameters("train-args", train_args.to_string())
        .hyper_parameters("sd-models-s3uri", prefix)
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
    s3.create_bucket().bucket("sdop-test").send().await.unwrap();
    let prefix = "s3://sdop-test/stable-diffusion-webui/models/Stable-diffusion/";

    let started = Instant::now();
    training_job(&sm, "jp-2500", prefix, 2500, true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        job_status(&sm, "jp-2500").await.0,
        TrainingJobStatus::InProgress
    );
    let dup = training_job(&sm, "jp-2500", prefix, 2500, true)
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
    training_job(&sm, "jp-stop", prefix, 100, false)
        .send()
        .await
        .unwrap();
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
    training_job(&sm, "jp-fail", prefix, 300, false)
        .send()
        .await
        .unwrap();
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
    assert!(keys
        .contents()
        .iter()
        .all(|o| !o.key().unwrap().contains("_100.") && !o.key().unwrap().contains("_300.")));
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
