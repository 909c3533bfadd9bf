//! `sagemaker:training-job`: a DreamBooth finetune. Named from the spec's content hash, so a
//! restart never starts it twice and a finished job is never re-run for the same spec.
//! SageMaker cannot delete training jobs: delete stops one that is still running.
//! A Completed job must have written the checkpoint its config implies: train.py drops the
//! exit status of the WebUI's training run, so a job whose training failed also ends
//! Completed, and the missing checkpoint is the only sign (reported as Failed).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, DataSource, OutputDataConfig, ResourceConfig,
    S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, Tag, TrainingInputMode,
    TrainingInstanceType, TrainingJobStatus,
};
use serde_json::Value;

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::sagemaker_endpoint::{is_missing, ownership, vpc_config};
use super::{classify, head_s3_object, ownership_tags};
use crate::contract::training;
use crate::engine::plan::{DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject};
use crate::error::{Error, Result};
use crate::kinds::dreambooth_job::AWS_TYPE;
use crate::rules;

pub struct TrainingJobAdapter;

fn channel(name: &str, uri: &str) -> Result<Channel> {
    Ok(Channel::builder()
        .channel_name(name)
        .data_source(
            DataSource::builder()
                .s3_data_source(
                    S3DataSource::builder()
                        .s3_data_type(S3DataType::S3Prefix)
                        .s3_uri(uri)
                        .s3_data_distribution_type(S3DataDistribution::FullyReplicated)
                        .build(),
                )
                .build(),
        )
        .build())
}

/// The checkpoint (and `.yaml`) a Completed job must have uploaded under `prefix` (where the
/// job was told to upload): outputs when present, the reason it failed when not.
async fn checkpoint_outputs(
    ctx: &ObjectContext<'_>,
    desired: &DesiredObject,
    prefix: &str,
    outputs: &mut BTreeMap<String, String>,
) -> Result<Option<String>> {
    let text = |name: &str| desired.inputs.get(name).and_then(Value::as_str);
    let Some(checkpoint) = text("expectedCheckpoint") else {
        return Ok(None);
    };
    let uri = rules::s3_uri(prefix).map_err(Error::Terminal)?;
    let mut missing = Vec::new();
    for (output, file) in [
        ("latestCheckpoint", Some(checkpoint)),
        ("latestCheckpointYaml", text("expectedCheckpointYaml")),
    ] {
        let Some(file) = file else { continue };
        let key = format!("{}{file}", uri.key);
        if head_s3_object(ctx.clients, &uri.bucket, &key)
            .await?
            .is_some()
        {
            outputs.insert(output.into(), format!("s3://{}/{key}", uri.bucket));
        } else {
            missing.push(format!("s3://{}/{key}", uri.bucket));
        }
    }
    Ok((!missing.is_empty()).then(|| {
        format!(
            "training job Completed but did not write {}: the WebUI's training run failed inside the container (train.py ignores its exit status); see the job's CloudWatch log stream",
            missing.join(" and ")
        )
    }))
}

fn channel_map(object: &DesiredObject) -> BTreeMap<String, String> {
    object
        .get("channels")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default()
}

#[async_trait]
impl Adapter for TrainingJobAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let Some(job) = absent_if(
            ctx.clients
                .sagemaker
                .describe_training_job()
                .training_job_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeTrainingJob", e)),
            is_missing,
        )?
        else {
            return Ok(None);
        };
        let arn = job.training_job_arn().unwrap_or_default().to_string();
        let (ownership, _) = ownership(ctx, &arn).await?;
        let mut observed =
            ObservedObject::new(ObjectKey::new(AWS_TYPE, name), BTreeMap::new(), ownership);
        let reason = job
            .failure_reason()
            .unwrap_or("no reason given")
            .to_string();
        let secondary = job
            .secondary_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        observed.state = match job.training_job_status() {
            Some(TrainingJobStatus::Completed) => ObjectState::Ready,
            Some(TrainingJobStatus::Failed) => {
                ObjectState::Failed(format!("training failed: {reason}"))
            }
            Some(TrainingJobStatus::Stopped) => {
                ObjectState::Failed("training job was stopped".into())
            }
            Some(status) => ObjectState::Progressing(format!("{} ({secondary})", status.as_str())),
            None => ObjectState::Progressing("unknown".into()),
        };
        observed
            .outputs
            .insert("trainingJobName".into(), name.to_string());
        observed.outputs.insert("trainingJobArn".into(), arn);
        // Where this job uploads: its own `sd-models-s3uri` as SageMaker keeps it (a job
        // named before per-job prefixes keeps the shared one), else the desired prefix.
        let prefix = job
            .hyper_parameters()
            .and_then(|h| h.get("sd-models-s3uri"))
            .map(|stored| training::hyperparameter_text(stored))
            .or_else(|| {
                desired
                    .and_then(|d| d.inputs.get("checkpointS3Uri"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if let Some(prefix) = &prefix {
            observed
                .outputs
                .insert("checkpointS3Uri".into(), prefix.clone());
        }
        if observed.state == ObjectState::Ready {
            if let (Some(desired), Some(prefix)) = (desired, &prefix) {
                if let Some(reason) =
                    checkpoint_outputs(ctx, desired, prefix, &mut observed.outputs).await?
                {
                    observed.state = ObjectState::Failed(reason);
                }
            }
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("training job name not known yet".into()))?;
        let text = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut input = Vec::new();
        for (channel_name, uri) in channel_map(object) {
            input.push(channel(&channel_name, &uri)?);
        }
        let hyperparameters: BTreeMap<String, String> = object
            .get("hyperparameters")
            .and_then(|h| serde_json::from_value(h.clone()).ok())
            .unwrap_or_default();
        let user_tags: BTreeMap<String, String> = object
            .inputs
            .get("tags")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default();
        let tags: Vec<Tag> = ownership_tags(ctx.resource, ctx.spec_hash, &user_tags)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        ctx.clients
            .sagemaker
            .create_training_job()
            .training_job_name(name)
            .set_vpc_config(vpc_config(object))
            .role_arn(text("roleArn"))
            .algorithm_specification(
                AlgorithmSpecification::builder()
                    .training_image(text("image"))
                    .training_input_mode(TrainingInputMode::File)
                    .build(),
            )
            .set_input_data_config(Some(input))
            .output_data_config(
                OutputDataConfig::builder()
                    .s3_output_path(text("outputS3Uri"))
                    .build(),
            )
            .resource_config(
                ResourceConfig::builder()
                    .instance_type(TrainingInstanceType::from(text("instanceType").as_str()))
                    .instance_count(
                        object
                            .get("instanceCount")
                            .and_then(Value::as_i64)
                            .unwrap_or(1) as i32,
                    )
                    .volume_size_in_gb(100)
                    .build(),
            )
            .stopping_condition(
                StoppingCondition::builder()
                    .max_runtime_in_seconds(
                        object
                            .get("maxRuntimeSeconds")
                            .and_then(Value::as_i64)
                            .unwrap_or(86_400) as i32,
                    )
                    .build(),
            )
            .set_hyper_parameters(Some(hyperparameters.into_iter().collect()))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateTrainingJob", e))?;
        Ok(ObjectState::Progressing("InProgress".into()))
    }

    async fn update(
        &self,
        _ctx: &ObjectContext<'_>,
        _object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // Content-named: a changed spec is a new job, never an update of this one.
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let running = match ctx
            .clients
            .sagemaker
            .describe_training_job()
            .training_job_name(name)
            .send()
            .await
        {
            Ok(job) => job.training_job_status() == Some(&TrainingJobStatus::InProgress),
            Err(err) => {
                let err = classify("sagemaker:DescribeTrainingJob", err);
                return if is_missing(&err) { Ok(()) } else { Err(err) };
            }
        };
        if running {
            ctx.clients
                .sagemaker
                .stop_training_job()
                .training_job_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:StopTrainingJob", e))?;
        }
        Ok(())
    }
}
