//! The AWS objects a resource consists of: desired (derived from a spec) and observed (read
//! back from AWS), with ownership and lifecycle state. Shared by kinds, engine and adapters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resource::ResourceId;

/// Every AWS object type a kind may consist of. Matched exhaustively wherever a type decides
/// something (the AWS adapter of each, in `aws::adapters`): a new type that is not handled
/// everywhere is a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsType {
    S3Bucket,
    EcrRepository,
    /// A file sdop uploads (stack templates and artifacts, a Dataset's files).
    S3Object,
    CloudFormationStack,
    /// A `model.tar.gz` or uncompressed model prefix sdop packs (a `ModelArchive`'s output).
    S3ModelArchive,
    SageMakerModel,
    SageMakerEndpointConfig,
    SageMakerEndpoint,
    /// A record in the all-in-one-ai endpoint registry (DynamoDB).
    DynamoDbEndpointRegistration,
    /// One asynchronous invocation that checks a rollout.
    SageMakerSmokeCheck,
    /// An endpoint's scalable target and its scaling policy (Application Auto Scaling).
    EndpointScaling,
    SageMakerTrainingJob,
    ModelPackageGroup,
    ModelPackageVersion,
    ModelEvaluation,
    EvidenceBundle,
    ModelApproval,
}

impl AwsType {
    pub const ALL: [AwsType; 17] = [
        AwsType::S3Bucket,
        AwsType::EcrRepository,
        AwsType::S3Object,
        AwsType::CloudFormationStack,
        AwsType::S3ModelArchive,
        AwsType::SageMakerModel,
        AwsType::SageMakerEndpointConfig,
        AwsType::SageMakerEndpoint,
        AwsType::DynamoDbEndpointRegistration,
        AwsType::SageMakerSmokeCheck,
        AwsType::EndpointScaling,
        AwsType::SageMakerTrainingJob,
        AwsType::ModelPackageGroup,
        AwsType::ModelPackageVersion,
        AwsType::ModelEvaluation,
        AwsType::EvidenceBundle,
        AwsType::ModelApproval,
    ];

    /// The name in plans, status and state files (`service:thing`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AwsType::S3Bucket => "s3:bucket",
            AwsType::EcrRepository => "ecr:repository",
            AwsType::S3Object => "s3:object",
            AwsType::CloudFormationStack => "cloudformation:stack",
            AwsType::S3ModelArchive => "s3:model-archive",
            AwsType::SageMakerModel => "sagemaker:model",
            AwsType::SageMakerEndpointConfig => "sagemaker:endpoint-config",
            AwsType::SageMakerEndpoint => "sagemaker:endpoint",
            AwsType::DynamoDbEndpointRegistration => "dynamodb:endpoint-registration",
            AwsType::SageMakerSmokeCheck => "sagemaker:smoke-check",
            AwsType::EndpointScaling => "application-autoscaling:endpoint-scaling",
            AwsType::SageMakerTrainingJob => "sagemaker:training-job",
            AwsType::ModelPackageGroup => "sagemaker:model-package-group",
            AwsType::ModelPackageVersion => "sagemaker:model-package-version",
            AwsType::ModelEvaluation => "sagemaker:model-evaluation",
            AwsType::EvidenceBundle => "s3:evidence-bundle",
            AwsType::ModelApproval => "sagemaker:model-approval",
        }
    }

    /// A store of data sdop does not write (a bucket's objects, a repository's images): one
    /// that a manifest stops naming (renamed) is kept and forgotten under deletionPolicy
    /// Retain, never deleted with what it holds. A model package group is one too: it holds
    /// the registry's history (every version and who approved it on what evidence, console
    /// decisions included); without it, renaming `modelPackageGroupName` deleted the old
    /// group with all its versions under the default Retain (found by the liveness test).
    pub const fn holds_data(self) -> bool {
        matches!(
            self,
            AwsType::S3Bucket | AwsType::EcrRepository | AwsType::ModelPackageGroup
        )
    }

    /// A record of what happened (a registered version, an evaluation, its evidence, a
    /// decision): kept when a newer one supersedes it, deleted only with its resource (prune
    /// under deletionPolicy Delete). Production may serve an older approved version, and
    /// the registry is the history of what was approved on what evidence.
    pub const fn is_record(self) -> bool {
        matches!(
            self,
            AwsType::ModelPackageVersion
                | AwsType::ModelEvaluation
                | AwsType::EvidenceBundle
                | AwsType::ModelApproval
        )
    }

    /// Outputs a content-named object of this type gives when read: one trusted by its name
    /// without being read (a converged re-apply) is read after all when the resource's
    /// recorded outputs lack them (a status an earlier sdop wrote before it read them, e.g. a
    /// Model's environment, which a ModelPromotion reads from its staging endpoint).
    pub const fn outputs_when_read(self) -> &'static [&'static str] {
        match self {
            AwsType::SageMakerModel => &["modelData", "image", "modelEnvironment"],
            _ => &[],
        }
    }

    /// What a sibling that waits for this one waits for, in the plan's `[after ...]`.
    pub const fn ready_phrase(self) -> &'static str {
        match self {
            AwsType::ModelEvaluation => "has every result",
            AwsType::EvidenceBundle => "is written and judged (passing evidence approves or waits for a person; failing evidence rejects)",
            AwsType::ModelPackageVersion | AwsType::ModelPackageGroup => "is registered",
            _ => "is in service",
        }
    }

    /// The type of a name read back from state (`None`: not one this build knows). A
    /// renamed type's earlier name ([`AwsType::EARLIER_NAMES`]) reads as the type.
    pub fn parse(name: &str) -> Option<AwsType> {
        AwsType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .or_else(|| {
                AwsType::EARLIER_NAMES
                    .iter()
                    .find(|(earlier, _)| *earlier == name)
                    .map(|(_, t)| *t)
            })
    }

    /// Names an earlier sdop wrote into state files for a type since renamed: the objects a
    /// status recorded under them are the same objects (`s3:model-package` was the archive
    /// of the kind then called `ModelPackage`, now `ModelArchive`). Kept so a state written
    /// by that version still owns, prunes and deletes what it made.
    pub const EARLIER_NAMES: [(&'static str, AwsType); 1] =
        [("s3:model-package", AwsType::S3ModelArchive)];
}

impl std::fmt::Display for AwsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AwsType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Ordered by name, as plans and state list objects.
impl Ord for AwsType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for AwsType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An AWS object type and name, e.g. `sagemaker:model` / `sd-base-1a2b3c4d5e`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub aws_type: AwsType,
    pub name: String,
}

impl ObjectKey {
    pub fn new(aws_type: AwsType, name: impl Into<String>) -> Self {
        ObjectKey {
            aws_type,
            name: name.into(),
        }
    }
}

/// A name that may depend on values not known before apply (a digest, an archive's identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ObjectName {
    Known(String),
    /// Known after apply; holds the human part of the name for display.
    AfterApply {
        base: String,
    },
}

impl ObjectName {
    pub fn known(&self) -> Option<&str> {
        match self {
            ObjectName::Known(name) => Some(name),
            ObjectName::AfterApply { .. } => None,
        }
    }

    pub fn display(&self) -> String {
        match self {
            ObjectName::Known(name) => name.clone(),
            ObjectName::AfterApply { base } => format!("{base}-(known after apply)"),
        }
    }
}

/// How a differing field is converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Updated in place (tags, endpoint config of an endpoint, stack parameters).
    InPlace,
    /// Immutable in AWS: a change means a new object (new derived name) replaces the old one.
    Replace,
}

/// One AWS object a resource should consist of. `None` field values are known after apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredObject {
    pub aws_type: AwsType,
    pub name: ObjectName,
    pub mutability: Mutability,
    /// Compared with what AWS reports; a difference is a change.
    pub fields: BTreeMap<String, Option<Value>>,
    /// Needed to create or update the object but not compared (a local file's path).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
    /// Values AWS does not report back (a stack's template URL) or that only order the work (the
    /// outputs a stack waits for): they must be known before the object is acted on (`None`
    /// waits, like a field), and are never compared. Whatever of them AWS keeps must be covered
    /// by a compared field (the stack's template fingerprint tag covers its URL).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unobservable: BTreeMap<String, Option<Value>>,
    /// The name is a hash of the fields: an existing object of that name has this content.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub content_named: bool,
    /// The billable capacity this object runs (an endpoint's instances, a training job's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::cost::Capacity>,
    /// A sibling object (type, name) that must exist and be settled before this one is created
    /// or changed (a scalable target needs its endpoint InService).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_ready: Option<(AwsType, String)>,
    /// The object checks the rollout of its `after_ready` sibling (a smoke check): when it
    /// fails, the sibling is rolled back to the values it had before the rollout.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub verifies: bool,
    /// Fields of a mutable object that cannot change in place: a change replaces it (and an
    /// object that waits for a sibling then goes before the sibling changes).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub replaced_on: &'static [&'static str],
    /// Capacity this object scales between (an endpoint's autoscaling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaled: Option<crate::cost::Autoscaled>,
    /// An S3 object that one listing of its prefix can show unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listable: Option<Listable>,
    /// What creating it costs once (an evaluation's instance time): shown in the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_off: Option<crate::cost::OneOff>,
    /// Why a value it needs is unknown when only a person can provide it (a production
    /// endpoint before any model version is approved): the resource waits without polling
    /// (`AwaitingApproval`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<String>,
}

/// An S3 object whose siblings share a key prefix (a directory's files, a stack's templates):
/// one ListObjectsV2 of the prefix reads them all instead of one HeadObject each. The listing
/// shows an object's ETag, which is the MD5 of its bytes when one PutObject wrote it (and the
/// bucket does not encrypt with KMS); the owner and the fingerprint ride in its metadata, which
/// only a HeadObject shows, so a listed object whose ETag is not `md5`, or that sdop's memory
/// does not say it wrote, is still read with a HeadObject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listable {
    /// `BUCKET/` is not part of it: the key prefix, e.g. `dataset/jpstyle/`.
    pub prefix: String,
    /// Lowercase hex MD5 of the content sdop uploads.
    pub md5: String,
}

impl DesiredObject {
    pub fn new(aws_type: AwsType, name: ObjectName, mutability: Mutability) -> Self {
        DesiredObject {
            aws_type,
            name,
            mutability,
            fields: BTreeMap::new(),
            inputs: BTreeMap::new(),
            unobservable: BTreeMap::new(),
            content_named: false,
            capacity: None,
            after_ready: None,
            verifies: false,
            replaced_on: &[],
            autoscaled: None,
            listable: None,
            one_off: None,
            awaiting: None,
        }
    }

    /// Says a listing of `prefix` can show the object unchanged when its ETag is `md5`.
    pub fn listable(mut self, prefix: &str, md5: Option<&str>) -> Self {
        self.listable = md5.map(|md5| Listable {
            prefix: prefix.to_string(),
            md5: md5.to_string(),
        });
        self
    }

    /// The object as a rollback sends it: the changes' values in place of the desired ones, and
    /// no inputs (they say how a rollout goes, e.g. its guardrails; a rollback is the plain
    /// change back).
    pub fn rolled_back(&self, changes: &[FieldChange]) -> DesiredObject {
        let mut object = self.clone();
        for change in changes {
            object
                .fields
                .insert(change.field.clone(), change.after.clone());
        }
        object.inputs.clear();
        object
    }

    /// Says the object is acted on only once `aws_type` `name` (of the same resource) exists
    /// and is settled.
    pub fn after_ready(mut self, aws_type: AwsType, name: &str) -> Self {
        self.after_ready = Some((aws_type, name.to_string()));
        self
    }

    /// Says what capacity the object bills for.
    pub fn capacity(mut self, capacity: crate::cost::Capacity) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Adds an input: used by the AWS adapter, never diffed.
    pub fn input(mut self, name: &str, value: Value) -> Self {
        self.inputs.insert(name.to_string(), value);
        self
    }

    /// A known field's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).and_then(Option::as_ref)
    }

    /// Adds a field; `None` means known after apply.
    pub fn field(mut self, name: &str, value: Option<Value>) -> Self {
        self.fields.insert(name.to_string(), value);
        self
    }

    /// Sets the compared fields from the type's contract (`model::contracts`).
    pub fn contract<C: super::contracts::DesiredContract>(mut self, desired: C) -> Self {
        assert_eq!(self.aws_type, C::AWS_TYPE, "a contract of another type");
        self.fields = desired.into_fields();
        self
    }

    /// Adds a value that is sent or waited for but never compared; `None` waits.
    pub fn unobservable(mut self, name: &str, value: Option<Value>) -> Self {
        self.unobservable.insert(name.to_string(), value);
        self
    }

    /// True when every field and unobservable value is known (so a derived name can be
    /// computed and the object acted on).
    pub fn fully_known(&self) -> bool {
        self.fields.values().all(Option::is_some) && self.unobservable.values().all(Option::is_some)
    }

    /// The names of the values not known yet.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .chain(&self.unobservable)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
    }
}

/// Who owns an AWS object, read from its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ownership {
    /// Tagged by sdop for `resource` (this one or another).
    Owned { resource: ResourceId },
    /// Exists without sdop's tags.
    Foreign,
    /// Adopted by a manifest that says `adopt: true`.
    Adopted,
}

/// Where an AWS object is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "camelCase")]
pub enum ObjectState {
    Ready,
    /// Creating, updating, training: check again later.
    Progressing(String),
    /// Serving, but not as asked (an update AWS rolled back).
    Degraded(String),
    /// Will not get better without a change (a failed training job, ROLLBACK_COMPLETE).
    Failed(String),
    /// Being deleted (by someone else: sdop deletes only what it no longer wants).
    Deleting(String),
}

/// An AWS object as read back from AWS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedObject {
    pub key: ObjectKey,
    pub fields: BTreeMap<String, Value>,
    pub ownership: Ownership,
    pub state: ObjectState,
    /// Facts other resources may read (ARNs, digests, stack outputs, checkpoints).
    pub outputs: BTreeMap<String, String>,
}

impl ObservedObject {
    pub fn new(key: ObjectKey, fields: BTreeMap<String, Value>, ownership: Ownership) -> Self {
        ObservedObject {
            key,
            fields,
            ownership,
            state: ObjectState::Ready,
            outputs: BTreeMap::new(),
        }
    }
}

/// An in-place change sdop started: the object and the value of each field it set. Remembered
/// to recognise AWS rolling the rollout back, or not keeping the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    pub aws_type: String,
    pub name: String,
    /// Each changed field and the value set, as JSON text (`?`: known after apply).
    pub fields: BTreeMap<String, String>,
}

impl RolloutTarget {
    /// What an update of `aws_type` `name` with `changes` is trying to reach.
    pub fn new(aws_type: AwsType, name: &str, changes: &[FieldChange]) -> Self {
        RolloutTarget {
            aws_type: aws_type.as_str().to_string(),
            name: name.to_string(),
            fields: changes
                .iter()
                .map(|c| {
                    (
                        c.field.clone(),
                        c.after.as_ref().map_or("?".into(), |v| v.to_string()),
                    )
                })
                .collect(),
        }
    }

    /// Whether it is a change of `aws_type` `name`.
    pub fn is_of(&self, aws_type: AwsType, name: &str) -> bool {
        self.aws_type == aws_type.as_str() && self.name == name
    }
}

/// As the plan and the events show it: `sagemaker:endpoint sd-base endpointConfigName="c2"`.
impl std::fmt::Display for RolloutTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.aws_type, self.name)?;
        for (field, value) in &self.fields {
            write!(f, " {field}={value}")?;
        }
        Ok(())
    }
}

/// What an object was before a rollout that a check verifies, to roll back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackTarget {
    pub aws_type: String,
    pub name: String,
    /// The fields the rollout changed, with their values before it.
    pub fields: BTreeMap<String, Value>,
}

/// `field: before -> after`; `after: None` means known after apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}
