//! `Stack`: a CloudFormation stack (workshop step 4). A local template (and the nested
//! templates it points at) is uploaded to S3 first, as the workshop's build script does, with
//! the other artifacts the templates read (the Lambda code zips under `codes/`).

use crate::model::contracts::{ObjectDesired, StackDesired};
use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Checks, Claim, DeletionPolicy, DesiredContext, Kind, LocalRoot, OutputRef, Reference,
    ValueSource,
};
use crate::model::aws_rules::TagRules;
use crate::model::local_file::LocalFile;
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::rules;

pub struct Stack;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateSource {
    /// A local template file, relative to this manifest's directory (or to `checkout`).
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

/// A local directory uploaded file by file to the template bucket, e.g. the Lambda code zips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArtifactDirectory {
    /// The local directory, relative to this manifest's directory (or to `checkout`); read
    /// recursively, hidden files and editor temp files skipped.
    pub directory: String,
    /// Key prefix in `upload.bucket`, e.g. `codes/`: each file goes to `<prefix><its path
    /// in the directory>`. Empty or ending in '/'.
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
    /// A local checkout of the templates' repository (e.g. `all-in-one-ai`, a clone of
    /// github.com/xieyongliang/all-in-one-ai), relative to this manifest's directory. When set,
    /// `template.file`, `extraTemplateFiles` and `artifacts[].directory` are relative to it,
    /// and YAML files under it are never read as manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<String>,
    pub template: TemplateSource,
    /// Where local template files are uploaded; required with `template.file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<TemplateUpload>,
    /// More local template files (nested stacks), uploaded beside the main one under their
    /// file names.
    #[serde(default)]
    pub extra_template_files: Vec<String>,
    /// Local directories uploaded to `upload.bucket` before the stack is created or updated,
    /// one owned object per file, only changed files moved: the all-in-one-ai LAMBDA stack
    /// loads every function from `${S3Key}codes/<name>.zip` (upstream
    /// deployment/build_and_deploy.sh copies `backend/build/codes` there), and a missing zip
    /// fails it. They are not part of the template's fingerprint: CloudFormation does not
    /// redeploy Lambda code for an unchanged template, so a changed zip is uploaded but
    /// reaches the functions only through upstream's `deployment/update_lambda.sh`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactDirectory>,
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
    pub tags: super::Tags,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default)]
    pub adopt: bool,
}

pub const AWS_TYPE: AwsType = AwsType::CloudFormationStack;

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
pub const TEMPLATE_OBJECT: AwsType = AwsType::S3Object;

/// One owned `s3:object` per file of a local directory, at `BUCKET/<prefix><relative path>`,
/// compared by content fingerprint (only changed files are uploaded).
pub fn directory_objects(bucket: &str, prefix: &str, local: &LocalFile) -> Vec<DesiredObject> {
    local
        .entries
        .iter()
        .map(|entry| {
            DesiredObject::new(
                TEMPLATE_OBJECT,
                ObjectName::Known(format!("{bucket}/{prefix}{}", entry.path)),
                Mutability::InPlace,
            )
            .contract(ObjectDesired {
                content_fingerprint: Some(Some(entry.fingerprint.clone())),
            })
            .input("path", json!(entry.resolved))
            .listable(prefix, entry.content_md5.as_deref())
        })
        .collect()
}

impl StackSpec {
    /// A local path as written, joined to `checkout` when set: the key of `local_files`.
    fn local(&self, path: &str) -> String {
        match &self.checkout {
            Some(checkout) => std::path::Path::new(checkout)
                .join(path)
                .to_string_lossy()
                .into_owned(),
            None => path.to_string(),
        }
    }

    /// `(spec path, path as written)` of every local template, main first.
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

/// A key prefix as `upload.prefix` takes it: empty or ending in '/', not starting with '/'.
fn check_prefix(path: &str, prefix: &str, checks: &mut Checks) {
    if !(prefix.is_empty() || prefix.ends_with('/')) || prefix.starts_with('/') {
        checks.error(
            path,
            format!("prefix {prefix:?} must be empty or end with '/' (and not start with '/')"),
        );
    }
}

/// Every upload (templates under `upload.prefix`, each artifact directory under its prefix)
/// has a key space of its own: no prefix is a prefix of another, and no two template files
/// share a file name (their key).
fn check_keys(spec: &StackSpec, checks: &mut Checks) {
    let Some(upload) = &spec.upload else {
        return;
    };
    let mut prefixes = vec![("spec.upload.prefix".to_string(), upload.prefix.as_str())];
    for (i, artifact) in spec.artifacts.iter().enumerate() {
        let path = format!("spec.artifacts[{i}].prefix");
        for (other_path, other) in &prefixes {
            if artifact.prefix.starts_with(other) || other.starts_with(artifact.prefix.as_str()) {
                checks.error(
                    path.clone(),
                    format!(
                        "prefix {:?} overlaps {other_path} ({other:?}): two uploads could \
                         write the same key",
                        artifact.prefix
                    ),
                );
            }
        }
        prefixes.push((path, artifact.prefix.as_str()));
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (path, file) in spec.local_templates() {
        let Some(key) = spec.upload_key(&file) else {
            continue;
        };
        if let Some(first) = names.get(&key) {
            checks.error(
                path,
                format!(
                    "{file:?} has the same file name as {first}, so both would be uploaded to \
                     s3://{key}"
                ),
            );
        } else {
            names.insert(key, path);
        }
    }
}

/// A template's `Parameters` section, all this check reads of it: each declared parameter and
/// whether it has a `Default`. The rest of the template (its `Resources` with `!Ref`, `!Sub`,
/// `!GetAtt`...) is skipped, short tags included.
#[derive(Deserialize)]
struct TemplateParameters {
    #[serde(rename = "Parameters", default)]
    parameters: Option<BTreeMap<String, ParameterDeclaration>>,
}

#[derive(Deserialize)]
struct ParameterDeclaration {
    #[serde(rename = "Default", default)]
    default: Option<serde::de::IgnoredAny>,
}

/// The parameters a template declares, with whether each has a `Default`. CloudFormation takes
/// a template as JSON or YAML, the YAML with its short tags (`!Ref`...).
fn template_parameters(content: &[u8]) -> Result<BTreeMap<String, bool>, String> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let json = content
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let template: TemplateParameters = if json {
        serde_json::from_slice(content).map_err(|e| e.to_string())?
    } else {
        yaml_serde::from_slice(content).map_err(|e| e.to_string())?
    };
    Ok(template
        .parameters
        .unwrap_or_default()
        .into_iter()
        .map(|(name, declaration)| (name, declaration.default.is_some()))
        .collect())
}

/// The stack's parameters against its local main template's `Parameters`: CloudFormation
/// refuses CreateStack with a parameter the template does not declare ("Parameters: [X] do not
/// exist in the template") and without one it declares with no `Default` ("Parameters: [X]
/// must have values").
fn check_parameters(spec: &StackSpec, content: &[u8], checks: &mut Checks) {
    let Some(file) = &spec.template.file else {
        return;
    };
    let declared = match template_parameters(content) {
        Ok(declared) => declared,
        Err(message) => {
            checks.error(
                "spec.template.file",
                format!(
                    "template {file:?} cannot be read as YAML or JSON ({message}), so neither \
                     can CloudFormation: fix the template"
                ),
            );
            return;
        }
    };
    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
    for name in spec.parameters.keys() {
        if declared.contains_key(name) {
            continue;
        }
        let message = if names.is_empty() {
            format!(
                "template {file:?} declares no Parameters, and CloudFormation refuses any \
                 (\"Parameter values specified for a template which does not require them.\"): \
                 remove spec.parameters, or declare {name} in the template"
            )
        } else {
            let close = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(name))
                .map(|n| format!("; did you mean {n}?"))
                .unwrap_or_default();
            format!(
                "parameter {name} is not declared in the Parameters of template {file:?} (it \
                 declares {}), and CloudFormation refuses it (\"Parameters: [{name}] do not \
                 exist in the template\"): remove it, or correct its name{close}",
                names.join(", ")
            )
        };
        checks.error(format!("spec.parameters.{name}"), message);
    }
    let missing: Vec<&str> = declared
        .iter()
        .filter(|(name, has_default)| !**has_default && !spec.parameters.contains_key(*name))
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        let path = if spec.parameters.is_empty() {
            "spec.template.file"
        } else {
            "spec.parameters"
        };
        let list = missing.join(", ");
        checks.error(
            path,
            format!(
                "template {file:?} requires {} {list} (declared without a Default), which \
                 spec.parameters does not set, and CloudFormation refuses the stack without \
                 {} (\"Parameters: [{list}] must have values\"): add {} under spec.parameters \
                 (\"\" if empty is meant)",
                if missing.len() == 1 {
                    "parameter"
                } else {
                    "parameters"
                },
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "them" },
            ),
        );
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
            check_prefix("spec.upload.prefix", &upload.prefix, checks);
        }
        if !spec.extra_template_files.is_empty() && spec.upload.is_none() {
            checks.error(
                "spec.extraTemplateFiles",
                "extra template files need `upload: {bucket, prefix}`",
            );
        }
        if !spec.artifacts.is_empty() && spec.upload.is_none() {
            checks.error(
                "spec.artifacts",
                "artifacts need `upload: {bucket, prefix}` (their bucket)",
            );
        }
        for (i, artifact) in spec.artifacts.iter().enumerate() {
            if artifact.directory.trim().is_empty() {
                checks.error(
                    format!("spec.artifacts[{i}].directory"),
                    "directory must name a local directory",
                );
            }
            check_prefix(
                &format!("spec.artifacts[{i}].prefix"),
                &artifact.prefix,
                checks,
            );
        }
        check_keys(spec, checks);
        if let Some(checkout) = &spec.checkout {
            if checkout.trim().is_empty() {
                checks.error("spec.checkout", "checkout must name a local directory");
            }
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
        checks.tags("spec.tags", &spec.tags, &[TagRules::CloudFormation]);
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
            .chain(super::tag_references(&spec.tags, "spec.tags"))
            .collect()
    }

    fn claims(spec: &StackSpec) -> Vec<(&'static str, Claim)> {
        let mut claims = vec![(
            "spec.stackName",
            Claim::Unique(format!("CloudFormation stack {:?}", spec.stack_name)),
        )];
        // The prefixes it uploads to are its own: two resources writing one key would each
        // take the other's object for theirs (and prune it).
        if let Some(upload) = &spec.upload {
            claims.push((
                "spec.upload.prefix",
                super::s3_prefix_claim(&upload.bucket, &upload.prefix),
            ));
            for artifact in &spec.artifacts {
                claims.push((
                    "spec.artifacts",
                    super::s3_prefix_claim(&upload.bucket, &artifact.prefix),
                ));
            }
        }
        claims
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
        let templates = spec
            .local_templates()
            .into_iter()
            .map(|(path, file)| (path, spec.local(&file)));
        let artifacts = spec.artifacts.iter().enumerate().map(|(i, artifact)| {
            (
                format!("spec.artifacts[{i}].directory"),
                spec.local(&artifact.directory),
            )
        });
        templates.chain(artifacts).collect()
    }

    fn check_local(
        spec: &StackSpec,
        local_files: &BTreeMap<String, LocalFile>,
        checks: &mut Checks,
    ) {
        // A missing template is reported by the loader; one over 1 MiB (never read whole) is
        // left to CloudFormation.
        let content = spec
            .template
            .file
            .as_ref()
            .and_then(|file| local_files.get(&spec.local(file)))
            .and_then(|local| local.content.as_deref());
        if let Some(content) = content {
            check_parameters(spec, content, checks);
        }
    }

    fn local_root(spec: &StackSpec) -> Option<LocalRoot> {
        let checkout = spec.checkout.clone()?;
        Some(LocalRoot {
            path: "spec.checkout",
            hint: "clone the all-in-one-ai repository there, `git clone \
                   https://github.com/xieyongliang/all-in-one-ai {directory}`, or symlink your \
                   checkout there; then run its `backend/build.sh` once (it builds the Lambda \
                   code zips in backend/build/codes)"
                .to_string(),
            directory: checkout,
        })
    }

    fn local_path_hint(spec: &StackSpec, written: &str) -> Option<String> {
        let checkout = spec.checkout.as_ref()?;
        if spec
            .artifacts
            .iter()
            .any(|artifact| spec.local(&artifact.directory) == written)
        {
            // Upstream deployment/build_and_deploy.sh runs backend/build.sh before it copies
            // backend/build/codes to ${s3uri}/codes.
            Some(format!(
                "build it first: the checkout's `backend/build.sh` (run in {checkout}/backend) \
                 writes the Lambda code zips to backend/build/codes"
            ))
        } else {
            Some(format!(
                "is {checkout:?} a checkout of github.com/xieyongliang/all-in-one-ai with this \
                 file (deployment/templates/ of a commit that has all-in-one-ai-webui-main.yaml)?"
            ))
        }
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

    fn permissions(spec: &StackSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        let region = spec.region.as_deref().unwrap_or("*");
        (
            vec![super::iam::Grant::new(
                &[
                    "cloudformation:CreateStack",
                    "cloudformation:UpdateStack",
                    "cloudformation:DeleteStack",
                    "cloudformation:DescribeStacks",
                    "cloudformation:DescribeStackEvents",
                    "cloudformation:ListStackResources",
                    "cloudformation:TagResource",
                ],
                // The stack, and its nested stacks (named `<stack>-<Logical>-<random>`).
                vec![
                    format!(
                        "arn:aws:cloudformation:{region}:*:stack/{}/*",
                        spec.stack_name
                    ),
                    format!(
                        "arn:aws:cloudformation:{region}:*:stack/{}-*/*",
                        spec.stack_name
                    ),
                ],
            )],
            spec.upload.iter().map(|u| u.bucket.clone()).collect(),
        )
    }

    fn facts(spec: &StackSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &StackSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let mut objects = Vec::new();
        // The artifacts first: every object is in place before the stack is created (a pass
        // acts on the desired objects in order), as upstream's build_and_deploy.sh uploads
        // codes/ before the templates.
        if let Some(upload) = &spec.upload {
            for artifact in &spec.artifacts {
                let Some(local) = ctx.local_files.get(&spec.local(&artifact.directory)) else {
                    continue;
                };
                objects.extend(directory_objects(&upload.bucket, &artifact.prefix, local));
            }
        }
        let mut fingerprints = Vec::new();
        let upload_prefix = spec
            .upload
            .as_ref()
            .map(|u| u.prefix.clone())
            .unwrap_or_default();
        for (_, file) in spec.local_templates() {
            let Some(key) = spec.upload_key(&file) else {
                continue;
            };
            let local = ctx.local_files.get(&spec.local(&file));
            fingerprints.push(local.map(|f| f.fingerprint.clone()));
            let mut object =
                DesiredObject::new(TEMPLATE_OBJECT, ObjectName::Known(key), Mutability::InPlace)
                    .contract(ObjectDesired {
                        content_fingerprint: local.map(|f| Some(f.fingerprint.clone())),
                    });
            if let Some(local) = local {
                object = object
                    .input("path", json!(local.resolved))
                    .listable(&upload_prefix, local.content_md5.as_deref());
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
        // One fingerprint over every local template: a nested template's change updates the
        // stack. CloudFormation does not report a stack's template URL, so a template given by
        // URL is fingerprinted by its URL (read back from the stack's tag, like the files').
        let template_fingerprint: Option<Option<String>> = if fingerprints.is_empty() {
            Some(
                spec.template
                    .url
                    .as_ref()
                    .map(|url| crate::model::naming::content_hash(url)[..16].to_string()),
            )
        } else {
            fingerprints
                .into_iter()
                .collect::<Option<Vec<String>>>()
                .map(|all| Some(crate::model::naming::content_hash(&all)[..16].to_string()))
        };
        objects.push(
            DesiredObject::new(
                AWS_TYPE,
                ObjectName::Known(spec.stack_name.clone()),
                Mutability::InPlace,
            )
            .contract(StackDesired {
                template_fingerprint,
                parameters,
                capabilities: Some(sorted_capabilities(&spec.capabilities)),
                tags: super::resolve_tags(&spec.tags, ctx.outputs),
            })
            .unobservable("template", template_url.map(|u| json!(u)))
            // Not sent to CloudFormation: unknown until every output waited for exists, which
            // holds the create back (and is not compared, so a new digest updates nothing).
            .unobservable("waitFor", wait_for.map(|w| json!(w))),
        );
        objects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cloud::Offline;
    use crate::manifest::load::load_paths;

    fn spec(yaml: &str) -> StackSpec {
        let base = "stackName: webui\ntemplate: {file: main.yaml}\n";
        yaml_serde::from_str(&format!("{base}{yaml}")).unwrap()
    }

    fn problems(spec: &StackSpec) -> Vec<(String, String)> {
        let mut checks = Checks::default();
        Stack::check(spec, &mut checks);
        checks.problems
    }

    fn paths(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(path, _)| path.as_str()).collect()
    }

    const UPLOAD: &str = "upload: {bucket: assets, prefix: templates/}\n";

    fn local_problems(spec: &StackSpec, content: Option<&str>) -> Vec<(String, String)> {
        let file = LocalFile {
            resolved: "main.yaml".into(),
            is_dir: false,
            size: 0,
            fingerprint: String::new(),
            content_md5: None,
            entries: Vec::new(),
            content: content.map(|c| std::sync::Arc::from(c.as_bytes())),
        };
        let mut checks = Checks::default();
        Stack::check_local(spec, &[("main.yaml".to_string(), file)].into(), &mut checks);
        checks.problems
    }

    #[test]
    fn a_templates_parameters_are_read_past_its_short_tags_from_yaml_or_json() {
        let yaml = "Parameters:\n  S3Bucket: {Type: String}\n  S3Key: {Type: String, Default: ''}\n  Zones: {Type: CommaDelimitedList, Default: !Ref AWS::NoValue}\nConditions:\n  HasKey: !Not [!Equals [!Ref S3Key, '']]\nResources:\n  VPC:\n    Type: AWS::CloudFormation::Stack\n    Properties:\n      TemplateURL: !Sub 'https://${S3Bucket}.s3.amazonaws.com/vpc.yaml'\n      Parameters: {Key: !If [HasKey, !Ref S3Key, !GetAtt X.Y]}\n";
        assert_eq!(
            template_parameters(yaml.as_bytes()).unwrap(),
            [
                ("S3Bucket".to_string(), false),
                ("S3Key".to_string(), true),
                ("Zones".to_string(), true)
            ]
            .into()
        );
        let json = "\u{feff}{\n\t\"Parameters\": {\"S3Bucket\": {\"Type\": \"String\"}},\n\t\"Resources\": {}\n}";
        assert_eq!(
            template_parameters(json.as_bytes()).unwrap(),
            [("S3Bucket".to_string(), false)].into()
        );
        assert_eq!(
            template_parameters(b"Resources: {T: {Type: AWS::SNS::Topic}}").unwrap(),
            BTreeMap::new()
        );
        assert!(template_parameters(b"Parameters: [unclosed").is_err());
    }

    #[test]
    fn parameters_are_checked_against_the_local_template() {
        let template = "Parameters:\n  S3Bucket: {Type: String}\n  S3Key: {Type: String, Default: ''}\nResources: {}\n";
        let ok = spec(&format!("{UPLOAD}parameters: {{S3Bucket: b}}\n"));
        assert_eq!(local_problems(&ok, Some(template)), []);

        let undeclared = spec(&format!("{UPLOAD}parameters: {{S3Bucket: b, s3key: x}}\n"));
        let problems = local_problems(&undeclared, Some(template));
        assert_eq!(paths(&problems), ["spec.parameters.s3key"]);
        assert!(
            problems[0].1.contains("did you mean S3Key?"),
            "{problems:?}"
        );

        let missing = spec(&format!("{UPLOAD}parameters: {{S3Key: x}}\n"));
        let problems = local_problems(&missing, Some(template));
        assert_eq!(paths(&problems), ["spec.parameters"]);
        assert!(
            problems[0]
                .1
                .contains("\"Parameters: [S3Bucket] must have values\""),
            "{problems:?}"
        );
        let none = spec(UPLOAD);
        assert_eq!(
            paths(&local_problems(&none, Some(template))),
            ["spec.template.file"]
        );

        // No Parameters section: any parameter is refused.
        let problems = local_problems(&ok, Some("Resources: {}\n"));
        assert_eq!(paths(&problems), ["spec.parameters.S3Bucket"]);
        assert!(
            problems[0].1.contains("declares no Parameters"),
            "{problems:?}"
        );

        // A template over 1 MiB was not read: not checked; nor is an unreadable one passed.
        assert_eq!(local_problems(&undeclared, None), []);
        assert_eq!(
            paths(&local_problems(&ok, Some("Parameters: [unclosed"))),
            ["spec.template.file"]
        );
    }

    #[test]
    fn artifacts_need_upload_and_a_key_space_of_their_own() {
        let ok = spec(&format!(
            "{UPLOAD}artifacts: [{{directory: codes, prefix: codes/}}, {{directory: x, prefix: extra/}}]\n"
        ));
        assert_eq!(problems(&ok), []);

        let no_upload = spec("artifacts: [{directory: codes, prefix: codes/}]\n");
        assert!(paths(&problems(&no_upload)).contains(&"spec.artifacts"));

        for (prefix, other) in [
            ("templates/", "spec.upload.prefix"),
            ("templates/codes/", "spec.upload.prefix"),
            ("codes/", "spec.artifacts[0].prefix"),
            ("codes/sub/", "spec.artifacts[0].prefix"),
            ("", "spec.upload.prefix"),
        ] {
            let overlapping = spec(&format!(
                "{UPLOAD}artifacts: [{{directory: a, prefix: codes/}}, {{directory: b, prefix: \"{prefix}\"}}]\n"
            ));
            let found = problems(&overlapping);
            assert!(
                found
                    .iter()
                    .any(|(path, message)| path == "spec.artifacts[1].prefix"
                        && message.contains(other)),
                "{prefix:?}: {found:?}"
            );
        }
        // `templates` and `templates-old/` share characters but no key.
        let disjoint = spec(&format!(
            "{UPLOAD}artifacts: [{{directory: a, prefix: templates-old/}}]\n"
        ));
        assert_eq!(problems(&disjoint), []);

        for bad in ["codes", "/codes/"] {
            let bad_prefix = spec(&format!(
                "{UPLOAD}artifacts: [{{directory: a, prefix: \"{bad}\"}}]\n"
            ));
            assert_eq!(
                paths(&problems(&bad_prefix)),
                ["spec.artifacts[0].prefix"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn two_templates_with_one_file_name_would_share_a_key() {
        let same = spec(&format!(
            "{UPLOAD}extraTemplateFiles: [nested/a.yaml, other/a.yaml, nested/main.yaml]\n"
        ));
        let found = problems(&same);
        assert_eq!(
            paths(&found),
            ["spec.extraTemplateFiles[1]", "spec.extraTemplateFiles[2]"]
        );
        assert!(
            found[0].1.contains("s3://assets/templates/a.yaml"),
            "{found:?}"
        );
        assert!(found[1].1.contains("spec.template.file"), "{found:?}");
    }

    fn write(path: &std::path::Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    async fn plan(loaded: &crate::manifest::load::Loaded) -> Vec<crate::engine::Action> {
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        crate::engine::plan_all(
            &loaded.manifests,
            &loaded.graph,
            &Offline::default(),
            &std::collections::HashMap::new(),
        )
        .await
        .unwrap()
        .actions
    }

    fn field(action: &crate::engine::Action, name: &str) -> Option<serde_json::Value> {
        let change = action.changes.iter().find(|c| c.field == name)?;
        change.after.clone()
    }

    #[tokio::test]
    async fn a_checkout_holds_the_templates_and_artifacts_uploaded_before_the_stack() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("aio");
        write(&checkout.join("deploy/main.yaml"), "Resources: {}\n");
        write(&checkout.join("deploy/nested.yaml"), "Resources: {}\n");
        // A YAML file of the checkout that no manifest names: data, not a broken manifest.
        write(&checkout.join("other/unrelated.yaml"), "just: data\n");
        write(&checkout.join("build/codes/a.zip"), "a");
        write(&checkout.join("build/codes/sub/b.zip"), "b");
        write(
            &dir.path().join("stack.yaml"),
            "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {name: webui}\nspec:\n  stackName: webui\n  checkout: aio\n  template: {file: deploy/main.yaml}\n  extraTemplateFiles: [deploy/nested.yaml]\n  upload: {bucket: assets, prefix: templates/}\n  artifacts: [{directory: build/codes, prefix: codes/}]\n",
        );
        let loaded = load_paths(&[dir.path().to_path_buf()]);
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        let manifest = &loaded.manifests[0];
        let local_keys: Vec<&str> = manifest.local_files.keys().map(String::as_str).collect();
        assert_eq!(
            local_keys,
            [
                "aio/build/codes",
                "aio/deploy/main.yaml",
                "aio/deploy/nested.yaml"
            ]
        );
        assert_eq!(
            manifest.local_files["aio/build/codes"].entries[1].resolved,
            checkout.join("build/codes/sub/b.zip")
        );
        let actions = plan(&loaded).await;
        let names: Vec<(AwsType, &str)> = actions
            .iter()
            .map(|a| (a.aws_type, a.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (TEMPLATE_OBJECT, "assets/codes/a.zip"),
                (TEMPLATE_OBJECT, "assets/codes/sub/b.zip"),
                (TEMPLATE_OBJECT, "assets/templates/main.yaml"),
                (TEMPLATE_OBJECT, "assets/templates/nested.yaml"),
                (AWS_TYPE, "webui"),
            ]
        );
        assert_eq!(
            field(&actions[4], "template"),
            Some(json!("s3://assets/templates/main.yaml"))
        );

        // A changed zip changes its object, not the stack's template fingerprint.
        let fingerprint = field(&actions[4], "templateFingerprint");
        assert!(fingerprint.as_ref().is_some_and(|f| f.is_string()));
        write(&checkout.join("build/codes/a.zip"), "a2");
        let again = plan(&load_paths(&[dir.path().to_path_buf()])).await;
        assert_ne!(
            field(&again[0], "contentFingerprint"),
            field(&actions[0], "contentFingerprint")
        );
        assert_eq!(
            field(&again[1], "contentFingerprint"),
            field(&actions[1], "contentFingerprint")
        );
        assert_eq!(field(&again[4], "templateFingerprint"), fingerprint);
    }

    fn messages(dir: &std::path::Path) -> Vec<String> {
        load_paths(&[dir.to_path_buf()])
            .diagnostics
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn a_missing_checkout_is_one_error_saying_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let stack = "apiVersion: sdop/v1alpha1\nkind: Stack\nmetadata: {name: webui}\nspec:\n  stackName: webui\n  checkout: aio\n  template: {file: deploy/main.yaml}\n  upload: {bucket: assets, prefix: templates/}\n  artifacts: [{directory: backend/build/codes, prefix: codes/}]\n";
        write(&dir.path().join("stack.yaml"), stack);
        let messages = self::messages(dir.path());
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("local directory \"aio\"")
                && messages[0]
                    .contains("git clone https://github.com/xieyongliang/all-in-one-ai /")
                && messages[0].contains("backend/build.sh"),
            "{messages:?}"
        );

        // The checkout is there but not built: the artifact's error says how to build it.
        write(&dir.path().join("aio/deploy/main.yaml"), "Resources: {}\n");
        let messages = self::messages(dir.path());
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("\"aio/backend/build/codes\"")
                && messages[0].contains("backend/build.sh"),
            "{messages:?}"
        );
    }
}
