//! `DreamboothJob`: a DreamBooth finetune as a SageMaker training job (workshop step 10),
//! shaped as the pinned all-in-one-ai training image expects ([`crate::contract::training`]):
//! the friendly spec fields become a DreamBooth config object (written to S3 and mounted as
//! the `config` channel), `train-args` with the full key set, one channel per concept and the
//! `models` channel. The job name carries the content hash of all of it: a restart never
//! starts it twice, and a spec change starts a new job.

use crate::model::contracts::ObjectDesired;
use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model_archive::ModelArchive;
use super::stack::TEMPLATE_OBJECT;
use super::{Checks, Claim, DesiredContext, ImageRef, Kind, Reference, ValueSource, VpcConfig};
use crate::contract::training::{
    self, concept_channel, hyperparameter_value, ConceptSettings, DreamboothSettings,
    TRAIN_PY_ARGUMENTS,
};
use crate::contract::{inference, ContainerContract};
use crate::model::aws_models;
use crate::model::aws_rules::TagRules;
use crate::model::naming::{content_hash, hashed_name};
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::model::resource::ResourceId;
use crate::rules;

pub struct DreamboothJob;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceCheckpoint {
    /// A checkpoint object in S3 (`.ckpt`/`.safetensors`; a `.yaml` beside it is included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
    /// An `uncompressed` `ModelArchive` to take the checkpoint from...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_archive: Option<String>,
    /// ...and the checkpoint's path inside it, e.g. `Stable-diffusion/v2-1_768-ema-pruned.ckpt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Concept {
    /// Training images already in S3, e.g. `s3://sagemaker-us-east-1-123456789012/dataset/`;
    /// mounted as the job's channel `concepts` (then `concepts2`, `concepts3`)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_s3_uri: Option<String>,
    /// ...or the name of a `Dataset` that uploads them from a local directory (the job waits
    /// for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
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
    /// The training image's upstream version (README "Container contract").
    #[serde(default)]
    pub contract: ContainerContract,
    pub image: ImageRef,
    /// e.g. `ml.g4dn.2xlarge`.
    pub instance_type: String,
    #[serde(default = "one")]
    pub instance_count: u32,
    /// The SageMaker execution role (literal, or `valueFrom` the stack's IAM role).
    pub role_arn: ValueSource,
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
    /// Where checkpoints go, a prefix ending in `/`: each job uploads under its own
    /// `<checkpointS3Uri><job name>/` (its `sd-models-s3uri`; status output `checkpointS3Uri`).
    pub checkpoint_s3_uri: String,
    /// SageMaker's own output path; defaults to `s3://<checkpoint bucket>/sdop/training-output/`
    /// (outside the checkpoint prefix, so it never looks like a checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_s3_uri: Option<String>,
    #[serde(default = "default_max_runtime")]
    pub max_runtime_seconds: u32,
    /// Where the container uploads the DreamBooth model folder, under `<this><job name>/` (its
    /// `db-models-s3uri`); defaults to `s3://<checkpoint bucket>/stable-diffusion-webui/dreambooth/`
    /// (the backend's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_models_s3_uri: Option<String>,
    /// The all-in-one-ai API URL (`api-endpoint`); train.py needs a value. Defaults to the
    /// notebook's stand-in `noapi`, which this training image accepts (it calls the API only
    /// for a `username` or a config missing from the `config` channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<ValueSource>,
    /// The WebUI user to train as (`username`); the image then loads that user's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Subnets and security groups (upstream trains in the stack's private subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
    /// Other train.py options sdop does not set itself (`embeddings-s3uri`,
    /// `hypernetwork-s3uri`); any other key is refused: train.py exits on it. A value may be
    /// `{valueFrom: ...}` (another resource's output, an SSM parameter).
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, ValueSource>,
    #[serde(default)]
    pub tags: super::Tags,
    /// Pruning the manifest: `Delete` (default) stops the job if it is still running (SageMaker
    /// keeps finished jobs; they cannot be deleted); `Retain` lets it run.
    #[serde(default = "stop_on_delete")]
    pub deletion_policy: super::DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
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

pub const AWS_TYPE: AwsType = AwsType::SageMakerTrainingJob;

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

/// train.py options sdop sets from the spec (a manifest may not set them by hand).
const SET_BY_SDOP: &[(&str, &str)] = &[
    ("train-task", "always dreambooth"),
    ("train-args", "the spec's model fields"),
    ("sd-models-s3uri", "spec.checkpointS3Uri"),
    ("db-models-s3uri", "spec.dbModelsS3Uri"),
    ("ckpt", "spec.sourceCheckpoint"),
    ("api-endpoint", "spec.apiEndpoint"),
    ("username", "spec.username"),
    ("dreambooth-config-id", "the config sdop writes"),
];

/// Where a concept's images are: its S3 prefix, or its `Dataset`'s (known from its spec).
fn concept_uri(concept: &Concept, ctx: &DesiredContext) -> Option<String> {
    match (&concept.dataset_s3_uri, &concept.dataset) {
        (Some(uri), _) => Some(uri.clone()),
        (None, Some(dataset)) => ctx.outputs.get(
            &ResourceId::new(super::dataset::Dataset::KIND, dataset),
            "s3Uri",
        ),
        (None, None) => None,
    }
}

impl DreamboothJobSpec {
    /// The models channel: the checkpoint's S3 prefix without extension, so that the `.yaml`
    /// beside an SD 2.x checkpoint comes along (as upstream's trainer builds it).
    fn models_channel(&self, ctx: &DesiredContext) -> Option<String> {
        let uri = match (
            &self.source_checkpoint.s3_uri,
            &self.source_checkpoint.model_archive,
        ) {
            (Some(uri), _) => uri.clone(),
            (None, Some(archive)) => {
                let base = ctx
                    .outputs
                    .get(&ResourceId::new(ModelArchive::KIND, archive), "s3Uri")?;
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

    /// The source checkpoint's file name, as it lands in the `models` channel.
    fn source_file(&self) -> String {
        self.source_checkpoint
            .s3_uri
            .as_deref()
            .or(self.source_checkpoint.file.as_deref())
            .and_then(|s| s.rsplit('/').next())
            .unwrap_or_default()
            .to_string()
    }

    /// The friendly fields, as the contract maps them.
    pub fn settings(&self) -> DreamboothSettings {
        DreamboothSettings {
            model_name: self.model_name.clone(),
            source_file: self.source_file(),
            v2: self.resolution == 768,
            resolution: self.resolution,
            max_train_steps: self.max_train_steps,
            learning_rate: self.learning_rate,
            train_batch_size: self.train_batch_size,
            concepts: self
                .concepts
                .iter()
                .map(|c| ConceptSettings {
                    instance_prompt: c
                        .instance_prompt
                        .clone()
                        .unwrap_or_else(|| format!("photo of {}", c.instance_token)),
                    class_prompt: c
                        .class_prompt
                        .clone()
                        .unwrap_or_else(|| format!("photo of {}", c.class_token)),
                    instance_token: c.instance_token.clone(),
                    class_token: c.class_token.clone(),
                    num_class_images: c.num_class_images.unwrap_or(0),
                })
                .collect(),
        }
    }

    fn checkpoint_bucket(&self) -> String {
        self.checkpoint_s3_uri
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn db_models_uri(&self) -> String {
        self.db_models_s3_uri.clone().unwrap_or_else(|| {
            format!(
                "s3://{}/stable-diffusion-webui/dreambooth/",
                self.checkpoint_bucket()
            )
        })
    }

    /// `train-args` as the pinned webui.py reads it.
    pub fn train_args(&self) -> serde_json::Value {
        self.contract.training().train_args(&self.settings())
    }

    /// The checkpoint (and `.yaml`) file names the job writes.
    pub fn expected_checkpoint(&self) -> (String, Option<String>) {
        self.contract.training().checkpoint_files(&self.settings())
    }
}

impl Kind for DreamboothJob {
    const KIND: &'static str = "DreamboothJob";
    const OUTPUTS: &'static [&'static str] = &[
        "trainingJobName",
        "trainingJobArn",
        "checkpointS3Uri",
        "expectedCheckpoint",
        "expectedCheckpointYaml",
        "modelCheckpointPath",
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
        // sdop's rule (ml.FAMILY.SIZE with a price) first; AWS's enum when that holds.
        if checks
            .check(
                "spec.instanceType",
                rules::instance_type(&spec.instance_type),
            )
            .is_some()
        {
            checks.aws(
                "spec.instanceType",
                "training instance type",
                &aws_models::SAGEMAKER_TRAINING_INSTANCE_TYPE,
                &spec.instance_type,
            );
        }
        if spec.instance_count == 0 {
            checks.error("spec.instanceCount", "instanceCount must be at least 1");
        }
        super::check_role_arn("spec.roleArn", &spec.role_arn, checks);
        let source = &spec.source_checkpoint;
        match (&source.s3_uri, &source.model_archive, &source.file) {
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
                    checks.error("spec.sourceCheckpoint.file", format!("{file:?} must be a relative path inside the archive, without '.', '..' or empty segments"));
                }
            }
            (None, Some(_), None) => checks.error(
                "spec.sourceCheckpoint",
                "`modelArchive` needs `file`, the checkpoint's path in the archive",
            ),
            _ => checks.error(
                "spec.sourceCheckpoint",
                "set either `s3Uri`, or `modelArchive` with `file`",
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
        let training = spec.contract.training();
        if spec.concepts.len() > training.max_concepts {
            checks.error(
                "spec.concepts",
                format!(
                    "contract {} holds at most {} concepts (the positional DreamBooth config has c1_ to c{}_ fields)",
                    spec.contract.name(),
                    training.max_concepts,
                    training.max_concepts
                ),
            );
        }
        if spec.train_batch_size == 0 {
            checks.error("spec.trainBatchSize", "trainBatchSize must be at least 1");
        }
        checks.check(
            "spec.sourceCheckpoint",
            training::single_quoted_shell_text(&spec.source_file()),
        );
        for (key, value) in &spec.hyperparameters {
            let at = format!("spec.hyperparameters.{key}");
            if let ValueSource::Literal(text) = value {
                checks.aws(
                    &at,
                    "hyperparameter value",
                    &aws_models::SAGEMAKER_HYPER_PARAMETER_VALUE,
                    text,
                );
            }
            if let Some((_, from)) = SET_BY_SDOP.iter().find(|(k, _)| k == key) {
                checks.error(at, format!("{key:?} is set by sdop from {from}"));
            } else if !TRAIN_PY_ARGUMENTS.contains(&key.as_str()) {
                checks.error(
                    at,
                    format!(
                        "train.py (contract {}) accepts only --{}; argparse exits with 'unrecognized arguments' on --{key}",
                        spec.contract.name(),
                        TRAIN_PY_ARGUMENTS.join(", --")
                    ),
                );
            } else if let ValueSource::Literal(text) = value {
                checks.check(at, training::unquoted_shell_word(text));
            } else {
                value.check(&at, checks);
            }
        }
        if let Some(ValueSource::Literal(api)) = &spec.api_endpoint {
            checks.check("spec.apiEndpoint", training::unquoted_shell_word(api));
        }
        if let Some(api) = &spec.api_endpoint {
            api.check("spec.apiEndpoint", checks);
        }
        if let Some(user) = &spec.username {
            checks.check("spec.username", training::unquoted_shell_word(user));
        }
        if let Some(uri) = &spec.db_models_s3_uri {
            checks.check("spec.dbModelsS3Uri", rules::s3_prefix_uri(uri));
        }
        for (path, uri) in [("spec.checkpointS3Uri", &spec.checkpoint_s3_uri)]
            .into_iter()
            .chain(
                spec.db_models_s3_uri
                    .iter()
                    .map(|u| ("spec.dbModelsS3Uri", u)),
            )
        {
            checks.check(path, training::unquoted_shell_word(uri));
        }
        if let Some(vpc) = &spec.vpc_config {
            vpc.check("spec.vpcConfig", checks);
        }
        for (i, concept) in spec.concepts.iter().enumerate() {
            match (&concept.dataset_s3_uri, &concept.dataset) {
                (Some(uri), None) => {
                    checks.check(
                        format!("spec.concepts[{i}].datasetS3Uri"),
                        rules::s3_prefix_uri(uri),
                    );
                }
                (None, Some(_)) => {}
                _ => checks.error(
                    format!("spec.concepts[{i}]"),
                    "set exactly one of `datasetS3Uri` or `dataset`",
                ),
            }
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
        checks.tags("spec.tags", &spec.tags, &[TagRules::SageMaker]);
    }

    fn references(spec: &DreamboothJobSpec) -> Vec<Reference> {
        let mut refs: Vec<Reference> = spec.image.reference("spec.image").into_iter().collect();
        if let Some(archive) = &spec.source_checkpoint.model_archive {
            refs.push(
                Reference::to(
                    "spec.sourceCheckpoint.modelArchive",
                    ModelArchive::KIND,
                    archive,
                )
                .requiring("format", "uncompressed"),
            );
        }
        refs.extend(
            spec.api_endpoint
                .as_ref()
                .and_then(|api| api.reference("spec.apiEndpoint")),
        );
        refs.extend(spec.role_arn.reference("spec.roleArn"));
        refs.extend(
            spec.hyperparameters
                .iter()
                .filter_map(|(key, value)| value.reference(&format!("spec.hyperparameters.{key}"))),
        );
        if let Some(vpc) = &spec.vpc_config {
            refs.extend(vpc.references("spec.vpcConfig"));
        }
        for (i, concept) in spec.concepts.iter().enumerate() {
            if let Some(dataset) = &concept.dataset {
                refs.push(Reference::to(
                    format!("spec.concepts[{i}].dataset"),
                    super::dataset::Dataset::KIND,
                    dataset,
                ));
            }
        }
        refs.extend(super::tag_references(&spec.tags, "spec.tags"));
        refs
    }

    fn claims(spec: &DreamboothJobSpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.trainingJobName",
            Claim::Unique(format!("training job name {:?}", spec.training_job_name)),
        )]
    }

    fn spec_outputs(spec: &DreamboothJobSpec) -> BTreeMap<String, String> {
        let (checkpoint, yaml) = spec.expected_checkpoint();
        // `checkpointS3Uri` is the job's own prefix, known once the job is named (read back).
        let mut outputs: BTreeMap<String, String> = [
            (
                "modelCheckpointPath".to_string(),
                format!("{}Stable-diffusion/{checkpoint}", inference::MODEL_DIR),
            ),
            ("expectedCheckpoint".to_string(), checkpoint),
        ]
        .into();
        if let Some(yaml) = yaml {
            outputs.insert("expectedCheckpointYaml".into(), yaml);
        }
        outputs
    }

    fn permissions(spec: &DreamboothJobSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        (
            vec![
                super::iam::Grant::new(
                    &[
                        "sagemaker:CreateTrainingJob",
                        "sagemaker:DescribeTrainingJob",
                        "sagemaker:StopTrainingJob",
                        "sagemaker:AddTags",
                        "sagemaker:ListTags",
                    ],
                    // Jobs are named `<trainingJobName>-<content hash>`.
                    vec![super::iam::sagemaker_arn(
                        None,
                        "training-job",
                        &format!("{}-*", spec.training_job_name),
                    )],
                ),
                super::iam::pass_role(&spec.role_arn),
            ],
            Vec::new(),
        )
    }

    fn facts(spec: &DreamboothJobSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &DreamboothJobSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let training = spec.contract.training();
        let settings = spec.settings();
        // The DreamBooth config object, content-addressed: its id names the file the image
        // opens (`/opt/ml/input/data/config/{id}.json`).
        let config = training.dreambooth_config(&settings);
        let config_id = training.config_id(&config);
        let bucket = spec.checkpoint_bucket();
        let config_key = format!("sdop/dreambooth-config/{config_id}.json");
        let config_object = DesiredObject::new(
            TEMPLATE_OBJECT,
            ObjectName::Known(format!("{bucket}/{config_key}")),
            Mutability::InPlace,
        )
        .contract(ObjectDesired {
            content_fingerprint: Some(Some(config_id.to_string())),
        })
        .input("body", json!(config.to_string()))
        .input("contentType", json!("application/json"));

        let api_endpoint = match &spec.api_endpoint {
            Some(api) => api.resolve(ctx.outputs),
            None => Some(inference::NOTEBOOK_STAND_IN.to_string()),
        };
        // A value from elsewhere not known yet leaves the job waiting (known after apply).
        let mut hyperparameters: BTreeMap<String, Option<String>> = spec
            .hyperparameters
            .iter()
            .map(|(k, v)| (k.clone(), v.resolve(ctx.outputs)))
            .collect();
        let mut set = |key: &str, value: Option<String>| {
            hyperparameters.insert(key.to_string(), value);
        };
        set("train-task", Some("dreambooth".into()));
        // JSON text of the object; hyperparameter_value below encodes it once more.
        set("train-args", Some(spec.train_args().to_string()));
        set("sd-models-s3uri", Some(spec.checkpoint_s3_uri.clone()));
        set("db-models-s3uri", Some(spec.db_models_uri()));
        set(
            "ckpt",
            Some(format!(
                "{}{}/{}",
                training::CHANNEL_ROOT,
                training::MODELS_CHANNEL,
                settings.source_file
            )),
        );
        set("dreambooth-config-id", Some(config_id.clone()));
        set("api-endpoint", api_endpoint);
        if let Some(user) = &spec.username {
            set("username", Some(user.clone()));
        }
        let hyperparameters: Option<BTreeMap<String, String>> = hyperparameters
            .into_iter()
            .map(|(k, v)| v.map(|v| (k, hyperparameter_value(&v))))
            .collect();
        let concepts: Option<BTreeMap<String, String>> = spec
            .concepts
            .iter()
            .enumerate()
            .map(|(i, c)| concept_uri(c, ctx).map(|uri| (concept_channel(i), uri)))
            .collect();
        let models = spec.models_channel(ctx);
        let output = spec
            .output_s3_uri
            .clone()
            .unwrap_or_else(|| format!("s3://{bucket}/sdop/training-output/"));
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
        .field(
            "roleArn",
            spec.role_arn.resolve(ctx.outputs).map(|r| json!(r)),
        )
        .field("hyperparameters", hyperparameters.map(|h| json!(h)))
        .field(
            "channels",
            models.zip(concepts).map(|(models, mut channels)| {
                channels.insert(training::MODELS_CHANNEL.into(), models);
                channels.insert(
                    training::CONFIG_CHANNEL.into(),
                    format!("s3://{bucket}/{config_key}"),
                );
                json!(channels)
            }),
        )
        .field("outputS3Uri", Some(json!(output)))
        .field("maxRuntimeSeconds", Some(json!(spec.max_runtime_seconds)))
        .field("vpcConfig", super::vpc_field(&spec.vpc_config, ctx.outputs));
        // Training jobs keep the tags they were created with: the job waits for every value.
        let tags = super::resolve_tags(&spec.tags, ctx.outputs);
        let name = if job.fully_known() && tags.is_some() {
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
        // Each job uploads under a prefix of its own, `<checkpointS3Uri><job name>/` (and its
        // DreamBooth folder under `<dbModelsS3Uri><job name>/`), so two jobs of one model and
        // step count never write one key. The name is hashed over the base prefixes: the
        // per-job part is the name itself, never an input of its own hash.
        let mut job = job;
        let checkpoint_prefix = match name.known() {
            Some(job_name) => {
                let prefix = training::job_prefix(&spec.checkpoint_s3_uri, job_name);
                if let Some(Some(serde_json::Value::Object(hp))) =
                    job.fields.get_mut("hyperparameters")
                {
                    hp.insert(
                        "sd-models-s3uri".into(),
                        json!(hyperparameter_value(&prefix)),
                    );
                    hp.insert(
                        "db-models-s3uri".into(),
                        json!(hyperparameter_value(&training::job_prefix(
                            &spec.db_models_uri(),
                            job_name
                        ))),
                    );
                }
                prefix
            }
            None => spec.checkpoint_s3_uri.clone(),
        };
        let (checkpoint, yaml) = spec.expected_checkpoint();
        let job = job
            .capacity(crate::cost::Capacity {
                instance_type: spec.instance_type.clone(),
                instance_count: spec.instance_count,
                while_running: true,
            })
            .input("checkpointS3Uri", json!(checkpoint_prefix))
            .input("expectedCheckpoint", json!(checkpoint))
            .input("expectedCheckpointYaml", json!(yaml))
            .input("tags", json!(tags.unwrap_or_default()));
        vec![
            // Its key is its content address: an owned object of that name has this content.
            DesiredObject {
                content_named: true,
                ..config_object
            },
            DesiredObject {
                name,
                content_named: true,
                ..job
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outputs::Outputs;
    use crate::model::resource::Metadata;

    const SPEC: &str = r#"
trainingJobName: jpstyle
image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-training:latest"}
instanceType: ml.g4dn.2xlarge
roleArn: arn:aws:iam::123456789012:role/sdop
sourceCheckpoint: {s3Uri: "s3://inputs/checkpoints/v2-1_768-ema-pruned.ckpt"}
modelName: jp-style-model
resolution: 768
maxTrainSteps: 2500
concepts:
  - {datasetS3Uri: "s3://inputs/dataset/", instanceToken: jpstyle girl, classToken: girl}
checkpointS3Uri: s3://out/models/Stable-diffusion/
"#;

    fn job_of(spec: &DreamboothJobSpec) -> DesiredObject {
        let id = ResourceId::new(DreamboothJob::KIND, "jpstyle");
        let metadata = Metadata {
            name: "jpstyle".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let outputs = Outputs::default();
        let local_files = BTreeMap::new();
        let ctx = DesiredContext {
            id: &id,
            metadata: &metadata,
            spec_hash: "h",
            outputs: &outputs,
            local_files: &local_files,
        };
        DreamboothJob::desired(spec, &ctx)
            .into_iter()
            .find(|o| o.aws_type == AWS_TYPE)
            .unwrap()
    }

    fn hyperparameter(job: &DesiredObject, key: &str) -> String {
        training::hyperparameter_text(job.get("hyperparameters").unwrap()[key].as_str().unwrap())
    }

    #[test]
    fn two_jobs_of_one_model_and_step_count_upload_under_their_own_prefixes() {
        let first: DreamboothJobSpec = yaml_serde::from_str(SPEC).unwrap();
        let mut second = first.clone();
        second.learning_rate *= 2.0;
        let (a, b) = (job_of(&first), job_of(&second));
        let (name_a, name_b) = (a.name.known().unwrap(), b.name.known().unwrap());
        assert_ne!(name_a, name_b);
        // Same model and steps: the same file name, under two prefixes.
        assert_eq!(first.expected_checkpoint(), second.expected_checkpoint());
        for (job, name) in [(&a, name_a), (&b, name_b)] {
            let prefix = format!("s3://out/models/Stable-diffusion/{name}/");
            assert_eq!(hyperparameter(job, "sd-models-s3uri"), prefix);
            assert_eq!(job.inputs["checkpointS3Uri"], json!(prefix));
            assert_eq!(
                hyperparameter(job, "db-models-s3uri"),
                format!("s3://out/stable-diffusion-webui/dreambooth/{name}/")
            );
        }
        // The name does not depend on itself: derived again, it is the same.
        assert_eq!(job_of(&first).name, a.name);
        // The base prefix is part of the hash: moving it starts a new job.
        let mut moved = first.clone();
        moved.checkpoint_s3_uri = "s3://out/other/".into();
        assert_ne!(job_of(&moved).name, a.name);
    }

    #[test]
    fn stored_hyperparameters_read_back_as_train_py_gets_them() {
        let sent = hyperparameter_value("s3://out/models/job-1/");
        assert_eq!(
            training::hyperparameter_text(&sent),
            "s3://out/models/job-1/"
        );
        // A value stored raw (not JSON) is what the toolkit passes when json.loads fails.
        assert_eq!(training::hyperparameter_text("s3://raw/"), "s3://raw/");
    }
}
