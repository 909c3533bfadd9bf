//! `DreamboothJob`: a DreamBooth finetune as a SageMaker training job (workshop step 10),
//! shaped as the all-in-one-ai training container expects (`train.py`, `train-task`,
//! `train-args`, channels `concepts` and `models`). The job name carries the spec's content
//! hash: a restart never starts it twice, and a spec change starts a new job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model_package::ModelPackage;
use super::{Checks, Claim, DesiredContext, ImageRef, Kind, Reference};
use crate::engine::naming::{content_hash, hashed_name};
use crate::engine::plan::{DesiredObject, Mutability, ObjectName};
use crate::manifest::ResourceId;
use crate::rules;

pub struct DreamboothJob;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceCheckpoint {
    /// A checkpoint object in S3 (`.ckpt`/`.safetensors`; a `.yaml` beside it is included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
    /// An `uncompressed` `ModelPackage` to take the checkpoint from...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_package: Option<String>,
    /// ...and the checkpoint's path inside it, e.g. `Stable-diffusion/v2-1_768-ema-pruned.ckpt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Concept {
    /// Training images, e.g. `s3://sagemaker-us-east-1-123456789012/dataset/`.
    pub dataset_s3_uri: String,
    /// The new token, e.g. `jpstyle girl`.
    pub instance_token: String,
    /// The class it belongs to, e.g. `girl`.
    pub class_token: String,
    /// Defaults to `photo of <instanceToken>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_prompt: Option<String>,
    /// Defaults to `photo of <classToken>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_class_images: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DreamboothJobSpec {
    /// Base of the training job name; sdop appends `-<spec hash>`.
    pub training_job_name: String,
    pub image: ImageRef,
    /// e.g. `ml.g4dn.2xlarge`.
    pub instance_type: String,
    #[serde(default = "one")]
    pub instance_count: u32,
    pub role_arn: String,
    pub source_checkpoint: SourceCheckpoint,
    /// Name of the new model; checkpoints are `<modelName>_<steps>.ckpt`.
    pub model_name: String,
    /// 512 (SD 1.x) or 768 (SD 2.x, which also writes a `.yaml` beside the checkpoint).
    #[serde(default = "default_resolution")]
    pub resolution: u32,
    pub max_train_steps: u32,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    #[serde(default = "one")]
    pub train_batch_size: u32,
    pub concepts: Vec<Concept>,
    /// Where the container uploads checkpoints (`sd-models-s3uri`), a prefix ending in `/`.
    pub checkpoint_s3_uri: String,
    /// SageMaker's own output path; defaults to `s3://<checkpoint bucket>/sdop/training-output/`
    /// (outside the checkpoint prefix, so it never looks like a checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_s3_uri: Option<String>,
    #[serde(default = "default_max_runtime")]
    pub max_runtime_seconds: u32,
    /// Extra hyperparameters passed through unchanged.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Pruning the manifest: `Delete` (default) stops the job if it is still running (SageMaker
    /// keeps finished jobs; they cannot be deleted); `Retain` lets it run.
    #[serde(default = "stop_on_delete")]
    pub deletion_policy: super::DeletionPolicy,
    #[serde(default)]
    pub adopt: bool,
}

fn stop_on_delete() -> super::DeletionPolicy {
    super::DeletionPolicy::Delete
}

fn one() -> u32 {
    1
}
fn default_resolution() -> u32 {
    512
}
fn default_learning_rate() -> f64 {
    2e-6
}
fn default_max_runtime() -> u32 {
    86_400
}

pub const AWS_TYPE: &str = "sagemaker:training-job";

/// Checkpoints the training container can start from.
fn checkpoint_file(path: &str) -> Result<(), String> {
    if path.ends_with(".ckpt") || path.ends_with(".safetensors") {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a checkpoint (expected a .ckpt or .safetensors file)"
        ))
    }
}

impl DreamboothJobSpec {
    /// The models channel: the checkpoint's S3 prefix without extension, so that the `.yaml`
    /// beside an SD 2.x checkpoint comes along.
    fn models_channel(&self, ctx: &DesiredContext) -> Option<String> {
        let uri = match (
            &self.source_checkpoint.s3_uri,
            &self.source_checkpoint.model_package,
        ) {
            (Some(uri), _) => uri.clone(),
            (None, Some(package)) => {
                let base = ctx
                    .outputs
                    .get(&ResourceId::new(ModelPackage::KIND, package), "s3Uri")?;
                format!(
                    "{base}{}",
                    self.source_checkpoint.file.as_deref().unwrap_or_default()
                )
            }
            (None, None) => return None,
        };
        Some(match uri.rsplit_once('.') {
            Some((stem, ext)) if !ext.contains('/') => stem.to_string(),
            _ => uri,
        })
    }

    /// `train-args` as the all-in-one-ai DreamBooth extension reads it.
    pub fn train_args(&self) -> serde_json::Value {
        let concepts: Vec<serde_json::Value> = self
            .concepts
            .iter()
            .map(|c| {
                json!({
                    "instance_data_dir": "/opt/ml/input/data/concepts/",
                    "instance_token": c.instance_token,
                    "class_token": c.class_token,
                    "instance_prompt": c.instance_prompt.clone().unwrap_or_else(|| format!("photo of {}", c.instance_token)),
                    "class_prompt": c.class_prompt.clone().unwrap_or_else(|| format!("photo of {}", c.class_token)),
                    "num_class_images": c.num_class_images.unwrap_or(0),
                })
            })
            .collect();
        json!({
            "train_dreambooth_settings": {
                "db_create_new_db_model": true,
                "db_new_model_name": self.model_name,
                "db_new_model_src": self.source_checkpoint.s3_uri.clone()
                    .or_else(|| self.source_checkpoint.file.clone())
                    .and_then(|s| s.rsplit('/').next().map(str::to_string)),
                "db_512_model": self.resolution == 512,
                "db_max_train_steps": self.max_train_steps,
                "db_learning_rate": self.learning_rate,
                "db_train_batch_size": self.train_batch_size,
                "db_concepts": concepts,
            }
        })
    }
}

impl Kind for DreamboothJob {
    const KIND: &'static str = "DreamboothJob";
    const OUTPUTS: &'static [&'static str] = &[
        "trainingJobName",
        "trainingJobArn",
        "checkpointS3Uri",
        "latestCheckpoint",
        "latestCheckpointYaml",
    ];
    type Spec = DreamboothJobSpec;

    fn check(spec: &DreamboothJobSpec, checks: &mut Checks) {
        checks.check(
            "spec.trainingJobName",
            rules::sagemaker_base_name(&spec.training_job_name),
        );
        spec.image.check("spec.image", checks);
        checks.check(
            "spec.instanceType",
            rules::instance_type(&spec.instance_type),
        );
        if spec.instance_count == 0 {
            checks.error("spec.instanceCount", "instanceCount must be at least 1");
        }
        checks.check("spec.roleArn", rules::iam_role_arn(&spec.role_arn));
        let source = &spec.source_checkpoint;
        match (&source.s3_uri, &source.model_package, &source.file) {
            (Some(uri), None, None) => {
                if checks
                    .check("spec.sourceCheckpoint.s3Uri", rules::s3_object_uri(uri))
                    .is_some()
                {
                    checks.check("spec.sourceCheckpoint.s3Uri", checkpoint_file(uri));
                }
            }
            (None, Some(_), Some(file)) => {
                checks.check("spec.sourceCheckpoint.file", checkpoint_file(file));
                if file.starts_with('/')
                    || file
                        .split('/')
                        .any(|p| p == ".." || p == "." || p.is_empty())
                {
                    checks.error("spec.sourceCheckpoint.file", format!("{file:?} must be a relative path inside the package, without '.', '..' or empty segments"));
                }
            }
            (None, Some(_), None) => checks.error(
                "spec.sourceCheckpoint",
                "`modelPackage` needs `file`, the checkpoint's path in the package",
            ),
            _ => checks.error(
                "spec.sourceCheckpoint",
                "set either `s3Uri`, or `modelPackage` with `file`",
            ),
        }
        if spec.model_name.is_empty()
            || !spec
                .model_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            checks.error(
                "spec.modelName",
                format!(
                    "model name {:?} must be letters, digits, '-' or '_'",
                    spec.model_name
                ),
            );
        }
        if ![512, 768].contains(&spec.resolution) {
            checks.error(
                "spec.resolution",
                format!(
                    "resolution {} must be 512 (SD 1.x) or 768 (SD 2.x)",
                    spec.resolution
                ),
            );
        }
        if spec.max_train_steps == 0 {
            checks.error("spec.maxTrainSteps", "maxTrainSteps must be at least 1");
        }
        if !(spec.learning_rate > 0.0 && spec.learning_rate < 1.0) {
            checks.error(
                "spec.learningRate",
                format!(
                    "learning rate {} must be between 0 and 1",
                    spec.learning_rate
                ),
            );
        }
        if spec.concepts.is_empty() {
            checks.error("spec.concepts", "at least one concept is required");
        }
        for (i, concept) in spec.concepts.iter().enumerate() {
            checks.check(
                format!("spec.concepts[{i}].datasetS3Uri"),
                rules::s3_prefix_uri(&concept.dataset_s3_uri),
            );
            if concept.instance_token.trim().is_empty() {
                checks.error(
                    format!("spec.concepts[{i}].instanceToken"),
                    "instanceToken must not be empty",
                );
            }
        }
        checks.check(
            "spec.checkpointS3Uri",
            rules::s3_prefix_uri(&spec.checkpoint_s3_uri),
        );
        if let Some(uri) = &spec.output_s3_uri {
            checks.check("spec.outputS3Uri", rules::s3_prefix_uri(uri));
        }
        if !(1..=28 * 86_400).contains(&spec.max_runtime_seconds) {
            checks.error(
                "spec.maxRuntimeSeconds",
                "maxRuntimeSeconds must be 1 to 2419200 (28 days)",
            );
        }
        checks.tags("spec.tags", &spec.tags);
    }

    fn references(spec: &DreamboothJobSpec) -> Vec<Reference> {
        let mut refs: Vec<Reference> = spec.image.reference("spec.image").into_iter().collect();
        if let Some(package) = &spec.source_checkpoint.model_package {
            refs.push(
                Reference::to(
                    "spec.sourceCheckpoint.modelPackage",
                    ModelPackage::KIND,
                    package,
                )
                .requiring("format", "uncompressed"),
            );
        }
        refs
    }

    fn claims(spec: &DreamboothJobSpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.trainingJobName",
            Claim::Unique(format!("training job name {:?}", spec.training_job_name)),
        )]
    }

    fn spec_outputs(spec: &DreamboothJobSpec) -> BTreeMap<String, String> {
        [(
            "checkpointS3Uri".to_string(),
            spec.checkpoint_s3_uri.clone(),
        )]
        .into()
    }

    fn desired(spec: &DreamboothJobSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let mut hyperparameters = spec.hyperparameters.clone();
        hyperparameters.insert("sagemaker_program".into(), "train.py".into());
        hyperparameters.insert("train-task".into(), "dreambooth".into());
        hyperparameters.insert("train-args".into(), spec.train_args().to_string());
        hyperparameters.insert("sd-models-s3uri".into(), spec.checkpoint_s3_uri.clone());
        let concepts: Vec<&str> = spec
            .concepts
            .iter()
            .map(|c| c.dataset_s3_uri.as_str())
            .collect();
        let output = spec.output_s3_uri.clone().unwrap_or_else(|| {
            let bucket = spec
                .checkpoint_s3_uri
                .trim_start_matches("s3://")
                .split('/')
                .next()
                .unwrap_or_default();
            format!("s3://{bucket}/sdop/training-output/")
        });
        let job = DesiredObject::new(
            AWS_TYPE,
            ObjectName::AfterApply {
                base: String::new(),
            },
            Mutability::Replace,
        )
        .field("image", spec.image.resolve(ctx.outputs).map(|i| json!(i)))
        .field("instanceType", Some(json!(spec.instance_type)))
        .field("instanceCount", Some(json!(spec.instance_count)))
        .field("roleArn", Some(json!(spec.role_arn)))
        .field("hyperparameters", Some(json!(hyperparameters)))
        .field(
            "channels",
            spec.models_channel(ctx)
                .map(|models| json!({"concepts": concepts, "models": models})),
        )
        .field("outputS3Uri", Some(json!(output)))
        .field("maxRuntimeSeconds", Some(json!(spec.max_runtime_seconds)));
        let name = if job.fully_known() {
            ObjectName::Known(hashed_name(
                &spec.training_job_name,
                &content_hash(&job.fields),
                rules::SAGEMAKER_NAME_MAX,
            ))
        } else {
            ObjectName::AfterApply {
                base: spec.training_job_name.clone(),
            }
        };
        let job = job
            .input("checkpointS3Uri", json!(spec.checkpoint_s3_uri))
            .input("modelName", json!(spec.model_name))
            .input("tags", json!(spec.tags));
        vec![DesiredObject {
            name,
            content_named: true,
            ..job
        }]
    }
}
