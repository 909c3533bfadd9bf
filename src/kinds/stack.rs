//! `Stack`: a CloudFormation stack (workshop step 4). A local template (and the nested
//! templates it points at) is uploaded to S3 first, as the workshop's build script does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Checks, Claim, DeletionPolicy, DesiredContext, Kind, OutputRef, Reference, ValueSource,
};
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::rules;

pub struct Stack;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateSource {
    /// A local template file, relative to this manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A template already in S3 (`https://BUCKET.s3.REGION.amazonaws.com/KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateUpload {
    /// Bucket for local templates (an sdop `Bucket`'s name orders the stack after it).
    pub bucket: String,
    /// Key prefix, e.g. `templates/` (nested stacks' TemplateURLs point here).
    #[serde(default)]
    pub prefix: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[allow(clippy::enum_variant_names)]
pub enum Capability {
    #[serde(rename = "CAPABILITY_IAM")]
    CapabilityIam,
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    CapabilityNamedIam,
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    CapabilityAutoExpand,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StackSpec {
    pub stack_name: String,
    pub template: TemplateSource,
    /// Where local template files are uploaded; required with `template.file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<TemplateUpload>,
    /// More local template files (nested stacks), uploaded beside the main one under their
    /// file names.
    #[serde(default)]
    pub extra_template_files: Vec<String>,
    /// Stack parameters: a string, or `{valueFrom: {resource: Kind/name, output: NAME}}`.
    #[serde(default)]
    pub parameters: BTreeMap<String, ValueSource>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Outputs that must exist before the stack is created, e.g. the digests of the images its
    /// ECS services run (`{resource: ImageRepository/sd-webui, output: imageUri}`): without
    /// them the services never stabilise and the stack rolls back after hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_for: Vec<OutputRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default)]
    pub adopt: bool,
}

pub const AWS_TYPE: &str = "cloudformation:stack";

/// Capabilities as AWS names, sorted (AWS reports them as a set).
fn sorted_capabilities(capabilities: &[Capability]) -> Vec<String> {
    let mut names: Vec<String> = capabilities
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}
pub const TEMPLATE_OBJECT: &str = "s3:object";

impl StackSpec {
    fn local_templates(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        if let Some(file) = &self.template.file {
            files.push(("spec.template.file".to_string(), file.clone()));
        }
        for (i, file) in self.extra_template_files.iter().enumerate() {
            files.push((format!("spec.extraTemplateFiles[{i}]"), file.clone()));
        }
        files
    }

    fn upload_key(&self, file: &str) -> Option<String> {
        let upload = self.upload.as_ref()?;
        let name = std::path::Path::new(file)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        Some(format!("{}/{}{}", upload.bucket, upload.prefix, name))
    }
}

impl Kind for Stack {
    const KIND: &'static str = "Stack";
    const OUTPUTS: &'static [&'static str] =
        &["stackName", "stackId", "status", "outputs.*", "nested.*"];
    type Spec = StackSpec;

    fn check(spec: &StackSpec, checks: &mut Checks) {
        checks.check("spec.stackName", rules::stack_name(&spec.stack_name));
        match (&spec.template.file, &spec.template.url) {
            (Some(_), None) => {
                if spec.upload.is_none() {
                    checks.error(
                        "spec.template.file",
                        "a local template needs `upload: {bucket, prefix}` to say where it goes",
                    );
                }
            }
            (None, Some(url)) => {
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    checks.error(
                        "spec.template.url",
                        format!("{url:?} is not an http(s) URL of a template in S3"),
                    );
                }
            }
            _ => checks.error("spec.template", "set exactly one of `file` or `url`"),
        }
        if let Some(upload) = &spec.upload {
            checks.check("spec.upload.bucket", rules::bucket_name(&upload.bucket));
            if !(upload.prefix.is_empty() || upload.prefix.ends_with('/'))
                || upload.prefix.starts_with('/')
            {
                checks.error(
                    "spec.upload.prefix",
                    format!(
                        "prefix {:?} must be empty or end with '/' (and not start with '/')",
                        upload.prefix
                    ),
                );
            }
        }
        if !spec.extra_template_files.is_empty() && spec.upload.is_none() {
            checks.error(
                "spec.extraTemplateFiles",
                "extra template files need `upload: {bucket, prefix}`",
            );
        }
        for (i, wait) in spec.wait_for.iter().enumerate() {
            ValueSource::From {
                value_from: wait.clone(),
            }
            .check(&format!("spec.waitFor[{i}]"), checks);
        }
        for (name, value) in &spec.parameters {
            value.check(&format!("spec.parameters.{name}"), checks);
        }
        if let Some(region) = &spec.region {
            checks.check("spec.region", rules::region(region));
        }
        checks.tags("spec.tags", &spec.tags);
    }

    fn references(spec: &StackSpec) -> Vec<Reference> {
        spec.wait_for
            .iter()
            .enumerate()
            .filter_map(|(i, wait)| {
                ValueSource::From {
                    value_from: wait.clone(),
                }
                .reference(&format!("spec.waitFor[{i}]"))
            })
            .chain(
                spec.parameters.iter().filter_map(|(name, value)| {
                    value.reference(&format!("spec.parameters.{name}"))
                }),
            )
            .collect()
    }

    fn claims(spec: &StackSpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.stackName",
            Claim::Unique(format!("CloudFormation stack {:?}", spec.stack_name)),
        )]
    }

    fn uses(spec: &StackSpec) -> Vec<Claim> {
        spec.upload
            .iter()
            .map(|u| Claim::S3Bucket(u.bucket.clone()))
            .collect()
    }

    fn spec_outputs(spec: &StackSpec) -> BTreeMap<String, String> {
        [("stackName".to_string(), spec.stack_name.clone())].into()
    }

    fn local_paths(spec: &StackSpec) -> Vec<(String, String)> {
        spec.local_templates()
    }

    fn region(spec: &StackSpec) -> Option<String> {
        spec.region.clone()
    }

    fn same_region(spec: &StackSpec) -> Vec<(&'static str, Claim, &'static str)> {
        spec.upload
            .iter()
            .map(|upload| {
                (
                    "spec.upload.bucket",
                    Claim::S3Bucket(upload.bucket.clone()),
                    // The all-in-one-ai main template builds its nested TemplateURLs as
                    // https://${S3Bucket}.s3.${AWS::Region}.amazonaws.com/...
                    "the nested templates' TemplateURLs name the stack's region as the bucket's S3 host",
                )
            })
            .collect()
    }

    fn facts(spec: &StackSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
        }
    }

    fn desired(spec: &StackSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let mut objects = Vec::new();
        let mut fingerprints = Vec::new();
        for (_, file) in spec.local_templates() {
            let Some(key) = spec.upload_key(&file) else {
                continue;
            };
            let local = ctx.local_files.get(&file);
            fingerprints.push(local.map(|f| f.fingerprint.clone()));
            let mut object =
                DesiredObject::new(TEMPLATE_OBJECT, ObjectName::Known(key), Mutability::InPlace)
                    .field("contentFingerprint", local.map(|f| json!(f.fingerprint)));
            if let Some(local) = local {
                object = object.input("path", json!(local.resolved));
            }
            objects.push(object);
        }
        let template_url = match (&spec.template.url, &spec.template.file) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(file)) => spec.upload_key(file).map(|key| format!("s3://{key}")),
            (None, None) => None,
        };
        let parameters: Option<BTreeMap<String, String>> = spec
            .parameters
            .iter()
            .map(|(name, value)| value.resolve(ctx.outputs).map(|v| (name.clone(), v)))
            .collect();
        let wait_for: Option<Vec<String>> = spec
            .wait_for
            .iter()
            .map(|wait| {
                ValueSource::From {
                    value_from: wait.clone(),
                }
                .resolve(ctx.outputs)
            })
            .collect();
        // One fingerprint over every local template: a nested template's change updates the stack.
        let template_fingerprint: Option<serde_json::Value> = if fingerprints.is_empty() {
            Some(json!(null))
        } else {
            fingerprints
                .into_iter()
                .collect::<Option<Vec<String>>>()
                .map(|all| json!(crate::model::naming::content_hash(&all)[..16]))
        };
        objects.push(
            DesiredObject::new(
                AWS_TYPE,
                ObjectName::Known(spec.stack_name.clone()),
                Mutability::InPlace,
            )
            .field("template", template_url.map(|u| json!(u)))
            .field("templateFingerprint", template_fingerprint)
            .field("parameters", parameters.map(|p| json!(p)))
            .field(
                "capabilities",
                Some(json!(sorted_capabilities(&spec.capabilities))),
            )
            .field("tags", Some(json!(spec.tags)))
            // Not sent to CloudFormation: unknown until every output waited for exists, which
            // holds the create back (and is not compared, so a new digest updates nothing).
            .field("waitFor", wait_for.map(|w| json!(w))),
        );
        objects
    }
}
