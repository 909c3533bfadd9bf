//! Resource kinds. Each kind is one file implementing [`Kind`]; [`REGISTRY`] lists them.
//!
//! A kind says, purely: which spec it accepts (serde + JSON Schema), which field rules apply,
//! which other resources it references, which status outputs it exposes, and which AWS objects
//! it should consist of for given outputs of its references. The engine does the rest.

pub mod autoscaling;
pub mod bucket;
pub mod dataset;
pub mod deployment;
pub mod dreambooth_job;
pub mod endpoint;
pub mod iam;
pub mod image_repository;
pub mod model_archive;
pub mod model_promotion;
pub mod smoke_check;
pub mod stack;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::model::aws_rules::{StringShape, TagRules, OWNERSHIP_TAG_COUNT};
use crate::model::object::DesiredObject;
use crate::model::outputs::Outputs;
use crate::model::resource::{Metadata, ResourceId, RENAMED_KINDS};

/// Every registered kind. Adding a kind: a new file with a `Kind` impl, and one line here.
pub static REGISTRY: &[&dyn KindHandler] = &[
    &Registered::<bucket::Bucket>(PhantomData),
    &Registered::<image_repository::ImageRepository>(PhantomData),
    &Registered::<stack::Stack>(PhantomData),
    &Registered::<model_archive::ModelArchive>(PhantomData),
    &Registered::<endpoint::Endpoint>(PhantomData),
    &Registered::<dreambooth_job::DreamboothJob>(PhantomData),
    &Registered::<dataset::Dataset>(PhantomData),
    &Registered::<model_promotion::ModelPromotion>(PhantomData),
];

/// Looks a kind up by its name as written in manifests (`kind: Endpoint`).
pub fn handler(kind: &str) -> Option<&'static dyn KindHandler> {
    REGISTRY.iter().copied().find(|h| h.kind() == kind)
}

pub fn kind_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|h| h.kind()).collect()
}

/// What a manifest (or a command) still naming a renamed kind is told, instead of "unknown
/// kind"; `None`: `kind` is no earlier name ([`RENAMED_KINDS`]). Case aside, as the commands
/// take kinds.
pub fn renamed_kind(kind: &str) -> Option<String> {
    let (earlier, current) = RENAMED_KINDS
        .iter()
        .find(|(earlier, _)| earlier.eq_ignore_ascii_case(kind))?;
    let what = if *current == model_archive::ModelArchive::KIND {
        " (an S3 model archive, model.tar.gz); SageMaker Model Registry versions are kind ModelPromotion"
    } else {
        ""
    };
    Some(format!("kind {earlier} was renamed to {current}{what}"))
}

/// Spec keys renamed with their kind, `(earlier, current, what the current one names)`: a
/// spec that still has the earlier key, where the current one is expected, is told so
/// instead of "unknown field" (`manifest::load`).
pub const RENAMED_KEYS: [(&str, &str, &str); 1] = [(
    "modelPackage",
    "modelArchive",
    "the name of a ModelArchive, an S3 model archive",
)];

/// A resource kind. Everything here is pure: no I/O, no clock.
pub trait Kind: Send + Sync + 'static {
    /// The `kind:` value in manifests.
    const KIND: &'static str;
    /// How often the daemon reads a converged resource again on its own, for decisions taken
    /// outside sdop that it must follow (a version approved or rejected in the SageMaker
    /// console). `None`: a file change, a dependency or the resync wakes it.
    const WATCH: Option<std::time::Duration> = None;
    /// Status outputs other manifests may reference with `valueFrom` (a trailing `.*` means any
    /// sub-key, e.g. a stack's `outputs.*`).
    const OUTPUTS: &'static [&'static str];
    type Spec: DeserializeOwned + Serialize + schemars::JsonSchema + Debug + Send + Sync + 'static;

    /// Field rules beyond what the types enforce (AWS names, URIs, ARNs).
    fn check(spec: &Self::Spec, checks: &mut Checks);
    /// Resources this one reads from; the engine orders and waits on them.
    fn references(spec: &Self::Spec) -> Vec<Reference>;
    /// AWS names this resource owns, with the spec path that sets them. Two manifests may not
    /// claim the same one; an `S3Bucket` claim also orders users of the bucket after it.
    fn claims(_spec: &Self::Spec) -> Vec<(&'static str, Claim)> {
        Vec::new()
    }
    /// Claimed names this resource uses without a reference (a bucket given by name); the
    /// engine orders it after their owner if a manifest owns them. S3 URIs are found
    /// automatically.
    fn uses(_spec: &Self::Spec) -> Vec<Claim> {
        Vec::new()
    }
    /// Outputs known from the spec alone (a bucket's name), available before apply.
    fn spec_outputs(_spec: &Self::Spec) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Local files the spec names, as `(spec path, file path as written)`. The loader resolves
    /// them against the manifest's directory, reports missing ones, and fingerprints them.
    fn local_paths(_spec: &Self::Spec) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The local directory every local path lives under (a checkout), if any. The loader
    /// reports a missing one once, with its hint, instead of one error per path, and reads
    /// the YAML files under it as data (templates), never as manifests.
    fn local_root(_spec: &Self::Spec) -> Option<LocalRoot> {
        None
    }
    /// How to get a local path (as written in `local_paths`) that cannot be read, appended to
    /// the loader's error.
    fn local_path_hint(_spec: &Self::Spec, _written: &str) -> Option<String> {
        None
    }
    /// Checks of the spec against the local files it names (a stack's parameters against its
    /// template's `Parameters`), keyed by the path as written in `local_paths`; the loader
    /// runs them once it has read the files. A small file's bytes are in
    /// [`LocalFile::content`](crate::model::local_file::LocalFile::content), as read for its
    /// fingerprint; a large one has none and is not read again.
    fn check_local(
        _spec: &Self::Spec,
        _local_files: &BTreeMap<String, crate::model::local_file::LocalFile>,
        _checks: &mut Checks,
    ) {
    }
    /// The AWS objects this resource should consist of.
    fn desired(spec: &Self::Spec, ctx: &DesiredContext) -> Vec<DesiredObject>;
    /// The region its AWS objects live in, when not the operator's (`spec.region`).
    fn region(_spec: &Self::Spec) -> Option<String> {
        None
    }
    /// Claimed names (buckets) that must be in this resource's region, with the spec path that
    /// names them and why; the engine checks them against their owners' `region` output.
    fn same_region(_spec: &Self::Spec) -> Vec<(&'static str, Claim, &'static str)> {
        Vec::new()
    }
    /// What the spec says about taking over and letting go of AWS objects (every kind says it).
    fn facts(spec: &Self::Spec) -> SpecFacts;
    /// The IAM permissions the operator needs for this resource, beyond S3 on the buckets its
    /// spec names and SSM reads of the parameters it reads (`sdop iam-policy`; every kind says
    /// it). Returns the grants and any bucket named other than by an `s3://` URI.
    fn permissions(spec: &Self::Spec) -> (Vec<iam::Grant>, Vec<String>);
    /// What a converged pass changed that belongs in the resource's append-only history
    /// (`ResourceStatus::history`), from its outputs before and after and its references'
    /// outputs: a production endpoint's model version, a promotion's decisions.
    fn history(
        _spec: &Self::Spec,
        _before: &BTreeMap<String, String>,
        _after: &BTreeMap<String, String>,
        _references: &Outputs,
    ) -> Vec<String> {
        Vec::new()
    }
}

/// The spec's say on ownership, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecFacts {
    /// `adopt: true`: an existing object without sdop's tags is taken over, not a conflict.
    pub adopt: bool,
    pub deletion_policy: DeletionPolicy,
    /// `suspend: true`: read and report drift, change nothing (as Flux's `spec.suspend`).
    pub suspend: bool,
}

/// The claim on an S3 key prefix a resource writes its objects under (a Stack's uploads, a
/// Dataset): one writer per prefix.
pub fn s3_prefix_claim(bucket: &str, prefix: &str) -> Claim {
    Claim::Unique(format!("S3 prefix s3://{bucket}/{prefix}"))
}

/// A local directory a spec's local paths live under: see [`Kind::local_root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRoot {
    /// The spec path that names it, e.g. `spec.checkout`.
    pub path: &'static str,
    /// As written, relative to the manifest's directory.
    pub directory: String,
    /// How to get it when it is missing; `{directory}` stands for its resolved path.
    pub hint: String,
}

/// What `desired` may read: the resource itself and the outputs of what it references.
pub struct DesiredContext<'a> {
    pub id: &'a ResourceId,
    pub metadata: &'a Metadata,
    pub spec_hash: &'a str,
    pub outputs: &'a Outputs,
    /// Fingerprints of the local files named by the spec, keyed by the path as written.
    pub local_files: &'a BTreeMap<String, crate::model::local_file::LocalFile>,
}

/// A name-based link from one manifest to another, found at `path` in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Dotted spec path, e.g. `spec.modelData.modelArchive`.
    pub path: String,
    pub target: ResourceId,
    /// Output read through this reference (`valueFrom`), checked against the target's OUTPUTS.
    pub output: Option<String>,
    /// A spec output the target must have, e.g. `("format", "uncompressed")`.
    pub require: Option<(&'static str, &'static str)>,
}

impl Reference {
    pub fn to(path: impl Into<String>, kind: &str, name: &str) -> Self {
        Reference {
            path: path.into(),
            target: ResourceId::new(kind, name),
            output: None,
            require: None,
        }
    }

    /// Requires the target's spec output `output` to be `value`.
    pub fn requiring(mut self, output: &'static str, value: &'static str) -> Self {
        self.require = Some((output, value));
        self
    }
}

/// An AWS name a manifest owns. `S3Bucket` is also a soft link: users of the bucket are
/// ordered after the manifest that claims it (an unclaimed bucket is external and fine).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    S3Bucket(String),
    /// Any other unique AWS name, described for messages: `SageMaker endpoint "sd-base"`.
    Unique(String),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::S3Bucket(name) => write!(f, "S3 bucket {name:?}"),
            Claim::Unique(what) => f.write_str(what),
        }
    }
}

/// Collects field-rule violations by spec path.
#[derive(Debug, Default)]
pub struct Checks {
    pub problems: Vec<(String, String)>,
}

impl Checks {
    pub fn check<T>(&mut self, path: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.problems.push((path.into(), message));
                None
            }
        }
    }

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push((path.into(), message.into()));
    }

    /// A resource's tags, against sdop's reserved prefixes and the rules of every service
    /// they are sent to (`services`: SageMaker's pattern, CloudFormation's non-empty values...).
    /// A value read from elsewhere is checked once known, by AWS.
    pub fn tags(&mut self, path: &str, tags: &Tags, services: &[TagRules]) {
        for service in services {
            // sdop adds its ownership tags to every request.
            self.check(
                path,
                service.count().check(
                    "the tags (with sdop's ownership tags)",
                    tags.len() + OWNERSHIP_TAG_COUNT,
                ),
            );
        }
        for (key, value) in tags {
            let at = format!("{path}.{key}");
            let literal = match value {
                ValueSource::Literal(text) => Some(text.as_str()),
                from => {
                    from.check(&at, self);
                    None
                }
            };
            if self
                .check(at.clone(), crate::rules::tag(key, literal.unwrap_or("")))
                .is_none()
            {
                continue;
            }
            for service in services {
                let (key_shape, value_shape) = service.key_and_value();
                let checked = key_shape
                    .check("tag key", key)
                    .and_then(|()| match literal {
                        Some(text) => value_shape.check(&format!("tag {key:?}: value"), text),
                        None => Ok(()),
                    });
                if self.check(at.clone(), checked).is_none() {
                    break;
                }
            }
        }
    }

    /// A value AWS's model constrains (see `model::aws_rules`).
    pub fn aws(&mut self, path: impl Into<String>, what: &str, shape: &StringShape, value: &str) {
        self.check(path, shape.check(what, value));
    }
}

/// A resource's own tags (besides sdop's ownership tags); a value may be `{valueFrom: ...}`.
pub type Tags = BTreeMap<String, ValueSource>;

/// The resources tag values are read from.
pub fn tag_references(tags: &Tags, path: &str) -> Vec<Reference> {
    tags.iter()
        .filter_map(|(key, value)| value.reference(&format!("{path}.{key}")))
        .collect()
}

/// The tags with every value known, or `None` (known after apply).
pub fn resolve_tags(tags: &Tags, outputs: &Outputs) -> Option<BTreeMap<String, String>> {
    tags.iter()
        .map(|(key, value)| value.resolve(outputs).map(|v| (key.clone(), v)))
        .collect()
}

/// A manifest value that is literal, read from another resource's status output, or read
/// from an SSM parameter (all-in-one-ai publishes its API URL, role and images under
/// `/all_in_one_ai/config/meta/`). Literals may be written as strings, numbers, booleans or
/// lists (joined with commas, as CloudFormation's `List<...>` parameters expect); null is the
/// empty string.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ValueSource {
    Literal(String),
    From {
        #[serde(rename = "valueFrom")]
        value_from: OutputRef,
    },
    Ssm {
        #[serde(rename = "valueFrom")]
        value_from: SsmRef,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmRef {
    /// The parameter's name, e.g. `/all_in_one_ai/config/meta/api_endpoint`.
    #[serde(rename = "ssmParameter")]
    pub ssm_parameter: String,
}

/// Where an SSM parameter's value sits in [`Outputs`] once read (output `value`).
pub fn ssm_parameter_id(name: &str) -> ResourceId {
    ResourceId::new("SSMParameter", name)
}

/// The buckets of the `s3://` URIs anywhere in a spec's JSON, each once, in order of appearance.
pub fn s3_buckets(spec: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack = vec![spec];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) => {
                if let Some(rest) = text.strip_prefix("s3://") {
                    let bucket = rest.split('/').next().unwrap_or_default();
                    if !bucket.is_empty() && !found.iter().any(|b| b == bucket) {
                        found.push(bucket.to_string());
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
            serde_json::Value::Object(map) => stack.extend(map.values().rev()),
            _ => {}
        }
    }
    found
}

/// Every SSM parameter a spec reads (`{valueFrom: {ssmParameter: NAME}}` anywhere in it).
pub fn ssm_parameters(spec: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut stack = vec![spec];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(name) = map
                    .get("valueFrom")
                    .and_then(|v| v.get("ssmParameter"))
                    .and_then(|n| n.as_str())
                {
                    names.insert(name.to_string());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputRef {
    /// `Kind/name` of the resource to read from, e.g. `Bucket/assets`.
    pub resource: String,
    /// The output to read, e.g. `bucketName` or `outputs.WebUIPortalUrl`.
    pub output: String,
}

/// Accepts scalars as strings, so `8080` and `true` mean what they say.
struct ScalarString(String);

struct ScalarVisitor;

impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
    type Value = String;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(ScalarString)
    }
}

struct ValueSourceVisitor;

impl<'de> serde::de::Visitor<'de> for ValueSourceVisitor {
    type Value = ValueSource;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(
            "a string, number, boolean, list, or {valueFrom: {resource: Kind/name, output: NAME}}",
        )
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(v.to_string()))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(v.to_string()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(v.to_string()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(v.to_string()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(v.to_string()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<ValueSource, E> {
        Ok(ValueSource::Literal(String::new()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ValueSource, A::Error> {
        let mut items = Vec::new();
        while let Some(ScalarString(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(ValueSource::Literal(items.join(",")))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ValueSource, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(serde::de::Error::custom(
                "empty mapping: expected {valueFrom: {resource, output}}",
            ));
        };
        if key != "valueFrom" {
            return Err(serde::de::Error::unknown_field(&key, &["valueFrom"]));
        }
        let source: ValueFromRef = map.next_value()?;
        if let Some(extra) = map.next_key::<String>()? {
            return Err(serde::de::Error::unknown_field(&extra, &[]));
        }
        let source = source.0;
        Ok(source)
    }
}

/// The mapping under `valueFrom`: `{resource, output}` or `{ssmParameter}`; an unknown key
/// is reported where it is written.
struct ValueFromRef(ValueSource);

/// The keys under `valueFrom`, as an identifier: an unknown key fails where it is written.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ValueFromField {
    Resource,
    Output,
    SsmParameter,
}

impl<'de> Deserialize<'de> for ValueFromRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ValueFromRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{resource: Kind/name, output: NAME} or {ssmParameter: NAME}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ValueFromRef, A::Error> {
                let (mut resource, mut output, mut ssm) = (None, None, None);
                while let Some(key) = map.next_key::<ValueFromField>()? {
                    let slot = match key {
                        ValueFromField::Resource => &mut resource,
                        ValueFromField::Output => &mut output,
                        ValueFromField::SsmParameter => &mut ssm,
                    };
                    let ScalarString(value) = map.next_value()?;
                    *slot = Some(value);
                }
                match (resource, output, ssm) {
                    (Some(resource), Some(output), None) => Ok(ValueFromRef(ValueSource::From {
                        value_from: OutputRef { resource, output },
                    })),
                    (None, None, Some(ssm_parameter)) => Ok(ValueFromRef(ValueSource::Ssm {
                        value_from: SsmRef { ssm_parameter },
                    })),
                    _ => Err(serde::de::Error::custom(
                        "valueFrom takes {resource: Kind/name, output: NAME} or {ssmParameter: NAME}",
                    )),
                }
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl<'de> Deserialize<'de> for ValueSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueSourceVisitor)
    }
}

impl ValueSource {
    /// The reference this value introduces, if any (an unparseable `resource` is a check error).
    pub fn reference(&self, path: &str) -> Option<Reference> {
        match self {
            ValueSource::Literal(_) | ValueSource::Ssm { .. } => None,
            ValueSource::From { value_from } => {
                ResourceId::parse(&value_from.resource).map(|target| Reference {
                    path: format!("{path}.valueFrom.resource"),
                    target,
                    output: Some(value_from.output.clone()),
                    require: None,
                })
            }
        }
    }

    pub fn check(&self, path: &str, checks: &mut Checks) {
        if let ValueSource::Ssm { value_from } = self {
            if !crate::rules::ssm_parameter_name(&value_from.ssm_parameter) {
                checks.error(
                    format!("{path}.valueFrom.ssmParameter"),
                    format!(
                        "{:?} is not an SSM parameter name (letters, digits, _.-/, e.g. /all_in_one_ai/config/meta/api_endpoint)",
                        value_from.ssm_parameter
                    ),
                );
            }
        }
        if let ValueSource::From { value_from } = self {
            if ResourceId::parse(&value_from.resource).is_none() {
                checks.error(
                    format!("{path}.valueFrom.resource"),
                    format!(
                        "{:?} is not a resource reference (expected Kind/name, e.g. Bucket/assets)",
                        value_from.resource
                    ),
                );
            }
        }
    }

    /// The value now: literal, a known output, or `None` (known after apply).
    pub fn resolve(&self, outputs: &Outputs) -> Option<String> {
        match self {
            ValueSource::Literal(text) => Some(text.clone()),
            ValueSource::From { value_from } => ResourceId::parse(&value_from.resource)
                .and_then(|id| outputs.get(&id, &value_from.output)),
            ValueSource::Ssm { value_from } => {
                outputs.get(&ssm_parameter_id(&value_from.ssm_parameter), "value")
            }
        }
    }
}

/// Subnets and security groups a SageMaker model or training job runs in (the all-in-one-ai
/// portal and trainer use the stack's private subnets and its security group: its API admits
/// only the stack's NAT addresses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VpcConfig {
    /// Subnet IDs, literal or `valueFrom` (e.g. the stack's nested VPC outputs).
    pub subnets: Vec<ValueSource>,
    pub security_group_ids: Vec<ValueSource>,
}

impl VpcConfig {
    pub fn check(&self, path: &str, checks: &mut Checks) {
        for (field, prefix, values) in [
            ("subnets", "subnet-", &self.subnets),
            ("securityGroupIds", "sg-", &self.security_group_ids),
        ] {
            if values.is_empty() {
                checks.error(
                    format!("{path}.{field}"),
                    format!("{field} must be one or more {prefix}... IDs"),
                );
            }
            for (i, value) in values.iter().enumerate() {
                let at = format!("{path}.{field}[{i}]");
                value.check(&at, checks);
                if let ValueSource::Literal(id) = value {
                    if !id.starts_with(prefix) {
                        checks.error(at, format!("{id:?} is not a {prefix}... ID"));
                    }
                }
            }
        }
    }

    pub fn references(&self, path: &str) -> Vec<Reference> {
        [
            ("subnets", &self.subnets),
            ("securityGroupIds", &self.security_group_ids),
        ]
        .into_iter()
        .flat_map(|(field, values)| {
            values
                .iter()
                .enumerate()
                .filter_map(move |(i, v)| v.reference(&format!("{path}.{field}[{i}]")))
        })
        .collect()
    }

    /// `{"subnets": [...], "securityGroupIds": [...]}` once every value is known.
    pub fn resolve(&self, outputs: &Outputs) -> Option<serde_json::Value> {
        let all = |values: &[ValueSource]| -> Option<Vec<String>> {
            values.iter().map(|v| v.resolve(outputs)).collect()
        };
        Some(serde_json::json!({
            "subnets": all(&self.subnets)?,
            "securityGroupIds": all(&self.security_group_ids)?,
        }))
    }
}

/// A role ARN, literal (checked) or `valueFrom` (e.g. the stack's IAM role output).
pub fn check_role_arn(path: &str, value: &ValueSource, checks: &mut Checks) {
    value.check(path, checks);
    if let ValueSource::Literal(arn) = value {
        checks.check(path, crate::rules::iam_role_arn(arn));
    }
}

/// A model's or training job's `vpcConfig` field: null when unset, unknown until resolved.
pub fn vpc_field(vpc: &Option<VpcConfig>, outputs: &Outputs) -> Option<serde_json::Value> {
    match vpc {
        None => Some(serde_json::Value::Null),
        Some(vpc) => vpc.resolve(outputs),
    }
}

/// The type-erased face of a [`Kind`], so the engine can hold all kinds in one list.
pub trait KindHandler: Send + Sync {
    fn kind(&self) -> &'static str;
    fn outputs(&self) -> &'static [&'static str];
    fn watch(&self) -> Option<std::time::Duration>;
    /// Parses one YAML document as this kind, strictly. Errors carry yaml_serde positions.
    fn parse(&self, document: &str) -> Result<Arc<dyn Any + Send + Sync>, yaml_serde::Error>;
    /// As [`KindHandler::parse`], from a document already parsed (errors carry no position).
    fn parse_tree(
        &self,
        document: &yaml_serde::Value,
    ) -> Result<Arc<dyn Any + Send + Sync>, yaml_serde::Error>;
    /// Parses a whole document (envelope and spec) as this kind straight from its text, with no
    /// tree between, refusing a key repeated in any mapping (the loader's fast path).
    fn parse_document(&self, document: &str) -> Result<ParsedDocument, yaml_serde::Error>;
    fn to_json(&self, spec: &dyn Any) -> serde_json::Value;
    fn check(&self, spec: &dyn Any, checks: &mut Checks);
    fn references(&self, spec: &dyn Any) -> Vec<Reference>;
    fn claims(&self, spec: &dyn Any) -> Vec<(&'static str, Claim)>;
    fn uses(&self, spec: &dyn Any) -> Vec<Claim>;
    fn spec_outputs(&self, spec: &dyn Any) -> BTreeMap<String, String>;
    fn local_paths(&self, spec: &dyn Any) -> Vec<(String, String)>;
    fn local_root(&self, spec: &dyn Any) -> Option<LocalRoot>;
    fn local_path_hint(&self, spec: &dyn Any, written: &str) -> Option<String>;
    fn check_local(
        &self,
        spec: &dyn Any,
        local_files: &BTreeMap<String, crate::model::local_file::LocalFile>,
        checks: &mut Checks,
    );
    fn desired(&self, spec: &dyn Any, ctx: &DesiredContext) -> Vec<DesiredObject>;
    fn region(&self, spec: &dyn Any) -> Option<String>;
    fn same_region(&self, spec: &dyn Any) -> Vec<(&'static str, Claim, &'static str)>;
    fn facts(&self, spec: &dyn Any) -> SpecFacts;
    fn permissions(&self, spec: &dyn Any) -> (Vec<iam::Grant>, Vec<String>);
    fn history(
        &self,
        spec: &dyn Any,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        references: &Outputs,
    ) -> Vec<String>;
    fn spec_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

/// Adapts a [`Kind`] to [`KindHandler`].
pub struct Registered<K>(PhantomData<K>);

/// The document shape used for the typed parse: the envelope was already checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedDocument<S> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(rename = "metadata")]
    _metadata: IgnoredAny,
    spec: S,
}

/// A document read whole by [`KindHandler::parse_document`]: the envelope as written (still to
/// be checked) and the typed spec.
pub struct ParsedDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Arc<dyn Any + Send + Sync>,
}

/// The document shape of the one-pass parse.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WholeDocument<S> {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: S,
}

impl<K: Kind> Registered<K> {
    fn typed(spec: &dyn Any) -> &K::Spec {
        spec.downcast_ref::<K::Spec>()
            .unwrap_or_else(|| panic!("spec given to {} handler is not its own type", K::KIND))
    }
}

impl<K: Kind> KindHandler for Registered<K> {
    fn kind(&self) -> &'static str {
        K::KIND
    }
    fn outputs(&self) -> &'static [&'static str] {
        K::OUTPUTS
    }
    fn watch(&self) -> Option<std::time::Duration> {
        K::WATCH
    }
    fn parse(&self, document: &str) -> Result<Arc<dyn Any + Send + Sync>, yaml_serde::Error> {
        let doc: TypedDocument<K::Spec> = yaml_serde::from_str(document)?;
        Ok(Arc::new(doc.spec))
    }
    fn parse_tree(
        &self,
        document: &yaml_serde::Value,
    ) -> Result<Arc<dyn Any + Send + Sync>, yaml_serde::Error> {
        let doc = TypedDocument::<K::Spec>::deserialize(document)?;
        Ok(Arc::new(doc.spec))
    }
    fn parse_document(&self, document: &str) -> Result<ParsedDocument, yaml_serde::Error> {
        let doc: WholeDocument<K::Spec> =
            crate::unique_keys::deserialize(yaml_serde::Deserializer::from_str(document))?;
        Ok(ParsedDocument {
            api_version: doc.api_version,
            kind: doc.kind,
            metadata: doc.metadata,
            spec: Arc::new(doc.spec),
        })
    }
    fn to_json(&self, spec: &dyn Any) -> serde_json::Value {
        serde_json::to_value(Self::typed(spec)).unwrap_or(serde_json::Value::Null)
    }
    fn check(&self, spec: &dyn Any, checks: &mut Checks) {
        K::check(Self::typed(spec), checks)
    }
    fn references(&self, spec: &dyn Any) -> Vec<Reference> {
        K::references(Self::typed(spec))
    }
    fn claims(&self, spec: &dyn Any) -> Vec<(&'static str, Claim)> {
        K::claims(Self::typed(spec))
    }
    fn uses(&self, spec: &dyn Any) -> Vec<Claim> {
        K::uses(Self::typed(spec))
    }
    fn spec_outputs(&self, spec: &dyn Any) -> BTreeMap<String, String> {
        K::spec_outputs(Self::typed(spec))
    }
    fn local_paths(&self, spec: &dyn Any) -> Vec<(String, String)> {
        K::local_paths(Self::typed(spec))
    }
    fn local_root(&self, spec: &dyn Any) -> Option<LocalRoot> {
        K::local_root(Self::typed(spec))
    }
    fn local_path_hint(&self, spec: &dyn Any, written: &str) -> Option<String> {
        K::local_path_hint(Self::typed(spec), written)
    }
    fn check_local(
        &self,
        spec: &dyn Any,
        local_files: &BTreeMap<String, crate::model::local_file::LocalFile>,
        checks: &mut Checks,
    ) {
        K::check_local(Self::typed(spec), local_files, checks)
    }
    fn desired(&self, spec: &dyn Any, ctx: &DesiredContext) -> Vec<DesiredObject> {
        K::desired(Self::typed(spec), ctx)
    }
    fn region(&self, spec: &dyn Any) -> Option<String> {
        K::region(Self::typed(spec))
    }
    fn same_region(&self, spec: &dyn Any) -> Vec<(&'static str, Claim, &'static str)> {
        K::same_region(Self::typed(spec))
    }
    fn facts(&self, spec: &dyn Any) -> SpecFacts {
        K::facts(Self::typed(spec))
    }
    fn permissions(&self, spec: &dyn Any) -> (Vec<iam::Grant>, Vec<String>) {
        K::permissions(Self::typed(spec))
    }
    fn history(
        &self,
        spec: &dyn Any,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        references: &Outputs,
    ) -> Vec<String> {
        K::history(Self::typed(spec), before, after, references)
    }
    fn spec_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K::Spec>()
    }
}

pub use crate::model::DeletionPolicy;

/// An image reference: an sdop-managed ECR repository (digest-pinned) or a full image URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRef {
    /// Name of an `ImageRepository` manifest; the image is pinned to the digest of its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A full image URI (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG` or `@sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl ImageRef {
    pub fn check(&self, path: &str, checks: &mut Checks) {
        match (&self.repository, &self.uri) {
            (Some(_), None) => {}
            (None, Some(uri)) => {
                let ok = uri.contains('/')
                    && !uri.contains(char::is_whitespace)
                    && (uri.contains('@')
                        || uri.rsplit('/').next().is_some_and(|l| l.contains(':')));
                if !ok {
                    checks.error(
                        format!("{path}.uri"),
                        format!(
                            "{uri:?} is not an image URI with a tag or digest (REGISTRY/REPO:TAG)"
                        ),
                    );
                }
            }
            _ => checks.error(path, "set exactly one of `repository` or `uri`"),
        }
    }

    pub fn reference(&self, path: &str) -> Option<Reference> {
        self.repository.as_ref().map(|name| {
            Reference::to(
                format!("{path}.repository"),
                image_repository::ImageRepository::KIND,
                name,
            )
        })
    }

    /// The image URI to deploy: the repository's digest-pinned URI once known.
    pub fn resolve(&self, outputs: &Outputs) -> Option<String> {
        match (&self.repository, &self.uri) {
            (Some(name), _) => outputs.get(
                &ResourceId::new(image_repository::ImageRepository::KIND, name),
                "imageUri",
            ),
            (None, Some(uri)) => Some(uri.clone()),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_come_from_elsewhere_and_wait_until_known() {
        let tags: Tags = yaml_serde::from_str(
            "team: ml\nowner: {valueFrom: {resource: Stack/webui, output: outputs.Owner}}\n",
        )
        .unwrap();
        assert_eq!(tag_references(&tags, "spec.tags").len(), 1);
        let mut outputs = Outputs::default();
        assert_eq!(resolve_tags(&tags, &outputs), None);
        outputs.insert(
            ResourceId::new("Stack", "webui"),
            [("outputs.Owner".to_string(), "ops".to_string())].into(),
        );
        let resolved = resolve_tags(&tags, &outputs).unwrap();
        assert_eq!(
            (resolved["team"].as_str(), resolved["owner"].as_str()),
            ("ml", "ops")
        );
        let mut checks = Checks::default();
        checks.tags("spec.tags", &tags, &[TagRules::SageMaker]);
        assert!(checks.problems.is_empty(), "{:?}", checks.problems);
    }
}
