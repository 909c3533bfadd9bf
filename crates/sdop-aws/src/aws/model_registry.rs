//! The SageMaker Model Registry objects of a `ModelPromotion` (see `kinds::model_promotion`):
//! the model package group, the candidate's version and the decisions on versions.
//!
//! - `sagemaker:model-package-group`: DescribeModelPackageGroup, its tags, and every version
//!   (ListModelPackages), so the latest approved one, whoever approved it (sdop, a commit,
//!   `sdop approve`, the console), is what production serves: outputs `approved*`.
//! - `sagemaker:model-package-version` GROUP/CANDIDATE: found by the candidate id that sdop
//!   writes into the description (AWS assigns the version number); CreateModelPackage also gets
//!   an idempotency token derived from the group and the candidate (`ClientToken`), so a
//!   create repeated after a kill registers nothing twice.
//! - `sagemaker:model-approval`: UpdateModelPackage's `ModelApprovalStatus` and
//!   `ApprovalDescription` (who, why, the evidence digest). A version already decided (by
//!   anyone) reads as done: a decision is never undone by sdop, and deleting the object
//!   changes nothing in AWS.
//!
//! Sources: SageMaker API reference, CreateModelPackage (ClientToken, ModelApprovalStatus
//! "PendingManualApproval" for a versioned package), ListModelPackages
//! (ModelPackageSummary: version, ARN, description, approval status), UpdateModelPackage
//! (ApprovalDescription), DeleteModelPackageGroup (a group is deleted once its versions are);
//! developer guide "Update the Approval Status of a Model"
//! (https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-approve.html).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sagemaker::types::{
    InferenceSpecification, ModelApprovalStatus, ModelPackageContainerDefinition,
    ModelPackageGroupStatus, ModelPackageSortBy, ModelPackageType, SortOrder,
};
use serde_json::Value;

use super::adapters::{Adapter, ObjectContext};
use super::sagemaker_endpoint::{is_missing, retag, tags, tags_for_read};
use super::{absent_if, classify, read_ownership};
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::kinds::model_promotion::{
    parse_candidate_name, parse_version_approval, APPROVAL, DESCRIPTION_MARK, GROUP, VERSION,
};
use crate::model::contracts::ModelPackageGroupFields;

pub struct GroupAdapter;
pub struct VersionAdapter;
pub struct ApprovalAdapter;

/// One version of a group, as ListModelPackages shows it.
#[derive(Debug, Clone)]
pub struct VersionSummary {
    pub number: i32,
    pub arn: String,
    pub description: String,
    /// `Approved`, `Rejected`, `PendingManualApproval`.
    pub approval: String,
    /// `Pending`, `InProgress`, `Completed`, `Failed`, `Deleting`.
    pub status: String,
}

impl VersionSummary {
    /// The candidate id sdop wrote into the description, if sdop registered it.
    pub fn candidate(&self) -> Option<&str> {
        let rest = self.description.strip_prefix(DESCRIPTION_MARK)?;
        Some(rest.split(':').next().unwrap_or(rest).trim())
    }
}

/// Every version of a group, oldest first (none when the group does not exist).
pub async fn list_versions(clients: &super::Clients, group: &str) -> Result<Vec<VersionSummary>> {
    let mut versions = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let Some(page) = list_page(clients, group, token.take()).await? else {
            break;
        };
        for summary in page.model_package_summary_list() {
            versions.push(VersionSummary {
                number: summary.model_package_version().unwrap_or(0),
                arn: summary.model_package_arn().unwrap_or_default().to_string(),
                description: summary
                    .model_package_description()
                    .unwrap_or_default()
                    .to_string(),
                approval: summary
                    .model_approval_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                status: summary
                    .model_package_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    versions.sort_by_key(|v| v.number);
    Ok(versions)
}

/// A group's versions for a read: one ListModelPackages a sweep, shared by the group's read,
/// its candidate's and its approvals' (all of one resource, read in the same round).
async fn versions_for_read(ctx: &ObjectContext<'_>, group: &str) -> Result<Vec<VersionSummary>> {
    let clients = ctx.clients;
    match ctx
        .shared(&format!("sagemaker:ListModelPackages {group}"), || {
            list_versions(clients, group)
        })
        .await?
    {
        Some(versions) => Ok(versions.as_ref().clone()),
        None => list_versions(clients, group).await,
    }
}

/// One page of a group's versions; `None` when the group does not exist.
async fn list_page(
    clients: &super::Clients,
    group: &str,
    token: Option<String>,
) -> Result<Option<aws_sdk_sagemaker::operation::list_model_packages::ListModelPackagesOutput>> {
    let listed = clients
        .sagemaker
        .list_model_packages()
        .model_package_group_name(group)
        .model_package_type(ModelPackageType::Versioned)
        .sort_by(ModelPackageSortBy::CreationTime)
        .sort_order(SortOrder::Ascending)
        .max_results(100)
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListModelPackages", e));
    match listed {
        Err(err) if is_missing(&err) => Ok(None),
        other => other.map(Some),
    }
}

/// The latest approved version (highest number), if any.
pub fn latest_approved(versions: &[VersionSummary]) -> Option<&VersionSummary> {
    versions.iter().rev().find(|v| v.approval == "Approved")
}

fn text<'a>(object: &'a DesiredObject, input: &str) -> Option<&'a str> {
    object.inputs.get(input).and_then(Value::as_str)
}

fn known_name(object: &DesiredObject) -> Result<&str> {
    object
        .name
        .known()
        .ok_or_else(|| Error::Terminal(format!("{} name not known yet", object.aws_type)))
}

#[async_trait]
impl Adapter for GroupAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        GROUP
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        // A group's one spec field is its tags. In a sweep, the Tagging API's listing shows
        // it with them (under an ARN ending in `model-package-group/NAME`; SageMaker may
        // lowercase names in ARNs). Used only for a group this resource already read under
        // that ARN, and only ever to confirm (crate::aws::sweep): a group the listing shows
        // that is gone or changed is described on its own.
        let suffix = format!(":model-package-group/{}", name.to_ascii_lowercase());
        let recorded_arn = ctx
            .recorded_outputs
            .and_then(|o| o.get("modelPackageGroupArn"))
            .filter(|arn| !arn.is_empty());
        let listed = match recorded_arn {
            Some(recorded) => {
                ctx.shared_tagged(|arn| {
                    arn == recorded && arn.to_ascii_lowercase().ends_with(&suffix)
                })
                .await?
            }
            None => None,
        };
        let (arn, tags, state) = match listed {
            Some((arn, tags)) => (arn, tags, ObjectState::Ready),
            None => {
                let Some(group) = absent_if(
                    ctx.clients
                        .sagemaker
                        .describe_model_package_group()
                        .model_package_group_name(name)
                        .send()
                        .await
                        .map_err(|e| classify("sagemaker:DescribeModelPackageGroup", e)),
                    is_missing,
                )?
                else {
                    return Ok(None);
                };
                let arn = group
                    .model_package_group_arn()
                    .unwrap_or_default()
                    .to_string();
                // The tags are a spec field: read on every pass.
                let tags = tags_for_read(ctx, &arn).await?;
                let state = match group.model_package_group_status() {
                    Some(ModelPackageGroupStatus::Completed) => ObjectState::Ready,
                    Some(ModelPackageGroupStatus::Failed) => {
                        ObjectState::Failed(format!("model package group {name} Failed"))
                    }
                    Some(ModelPackageGroupStatus::Deleting) => {
                        ObjectState::Deleting("Deleting".into())
                    }
                    Some(ModelPackageGroupStatus::DeleteFailed) => {
                        ObjectState::Degraded(format!("deleting model package group {name} failed"))
                    }
                    Some(status) => ObjectState::Progressing(status.as_str().to_string()),
                    None => ObjectState::Ready,
                };
                (arn, tags, state)
            }
        };
        let (owner, user_tags) = read_ownership(&tags);
        let ownership = match owner {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let mut observed = ModelPackageGroupFields { tags: user_tags }.observed(name, ownership);
        observed.state = state;
        let outputs = &mut observed.outputs;
        outputs.insert("modelPackageGroupName".into(), name.to_string());
        outputs.insert("modelPackageGroupArn".into(), arn);
        // The versions and their decisions, read back every pass (a console decision too).
        let versions = versions_for_read(ctx, name).await?;
        outputs.insert(
            "versions".into(),
            versions
                .iter()
                .map(|v| format!("{} {}", v.number, v.approval))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let mut approved = BTreeMap::from([
            ("approvedVersion", String::new()),
            ("approvedModelPackageArn", String::new()),
            ("approvedModelData", String::new()),
            ("approvedCheckpoint", String::new()),
            ("approvedImage", String::new()),
            ("approvedBy", String::new()),
        ]);
        if let Some(latest) = latest_approved(&versions) {
            let described = ctx
                .clients
                .sagemaker
                .describe_model_package()
                .model_package_name(&latest.arn)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeModelPackage", e))?;
            let container = described
                .inference_specification()
                .and_then(|spec| spec.containers().first());
            let data = container.and_then(|c| {
                c.model_data_url().map(str::to_string).or_else(|| {
                    c.model_data_source()
                        .and_then(|d| d.s3_data_source())
                        .and_then(|s| s.s3_uri())
                        .map(str::to_string)
                })
            });
            approved.insert("approvedVersion", latest.number.to_string());
            approved.insert("approvedModelPackageArn", latest.arn.clone());
            approved.insert("approvedModelData", data.unwrap_or_default());
            approved.insert(
                "approvedCheckpoint",
                container
                    .and_then(|c| c.environment())
                    .and_then(|e| e.get("ckpt"))
                    .cloned()
                    .unwrap_or_default(),
            );
            approved.insert(
                "approvedImage",
                container
                    .and_then(|c| c.image())
                    .unwrap_or_default()
                    .to_string(),
            );
            approved.insert(
                "approvedBy",
                described
                    .approval_description()
                    .unwrap_or("(no approval description)")
                    .to_string(),
            );
        }
        for (key, value) in approved {
            outputs.insert(key.to_string(), value);
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = known_name(object)?;
        let mut request = ctx
            .clients
            .sagemaker
            .create_model_package_group()
            .model_package_group_name(name)
            .set_tags(Some(tags(ctx, object)));
        if let Some(description) = text(object, "description") {
            request = request.model_package_group_description(description);
        }
        request
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateModelPackageGroup", e))?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState> {
        let name = known_name(object)?;
        let Some(change) = changes.iter().find(|c| c.field == "tags") else {
            return Ok(ObjectState::Ready);
        };
        let sagemaker = &ctx.clients.sagemaker;
        let arn = sagemaker
            .describe_model_package_group()
            .model_package_group_name(name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DescribeModelPackageGroup", e))?
            .model_package_group_arn()
            .map(str::to_string)
            .ok_or_else(|| Error::Terminal(format!("model package group {name} has no ARN")))?;
        retag(ctx, object, &arn, change).await?;
        Ok(ObjectState::Ready)
    }

    /// Deletes the versions sdop registered (their description says so), then the group. A
    /// version someone else registered in it stays, and AWS then refuses to delete the group:
    /// that error says what is left.
    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        for version in list_versions(ctx.clients, name).await? {
            if version.candidate().is_none() {
                continue;
            }
            delete_version(ctx, &version.arn).await?;
        }
        let deleted = ctx
            .clients
            .sagemaker
            .delete_model_package_group()
            .model_package_group_name(name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DeleteModelPackageGroup", e));
        match deleted {
            Err(err) if is_missing(&err) => Ok(()),
            Err(err) => Err(err),
            Ok(_) => Ok(()),
        }
    }
}

async fn delete_version(ctx: &ObjectContext<'_>, arn: &str) -> Result<()> {
    let deleted = ctx
        .clients
        .sagemaker
        .delete_model_package()
        .model_package_name(arn)
        .send()
        .await
        .map_err(|e| classify("sagemaker:DeleteModelPackage", e));
    match deleted {
        Err(err) if is_missing(&err) => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Ok(()),
    }
}

/// Whose a version is: sdop's state, else its `sdop.io/resource` metadata (versions take no
/// tags).
async fn version_ownership(ctx: &ObjectContext<'_>, arn: &str) -> Result<Ownership> {
    if ctx.owned_per_state {
        return Ok(Ownership::Owned {
            resource: ctx.resource.clone(),
        });
    }
    let described = ctx
        .clients
        .sagemaker
        .describe_model_package()
        .model_package_name(arn)
        .send()
        .await
        .map_err(|e| classify("sagemaker:DescribeModelPackage", e))?;
    Ok(
        match described
            .customer_metadata_properties()
            .and_then(|m| m.get("sdop.io/resource"))
            .and_then(|r| crate::manifest::ResourceId::parse(r))
        {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        },
    )
}

/// CreateModelPackage's idempotency token for a candidate of a group (at most 36 of
/// `[a-zA-Z0-9-]`, botocore's `ClientToken`).
pub fn client_token(group: &str, candidate: &str) -> String {
    let hash = crate::model::naming::content_hash(&(group, candidate));
    format!("sdop-{}", &hash[..31])
}

#[async_trait]
impl Adapter for VersionAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        VERSION
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let Some((group, candidate)) = parse_candidate_name(name) else {
            return Err(Error::Terminal(format!("{name:?} is not GROUP/CANDIDATE")));
        };
        let versions = versions_for_read(ctx, group).await?;
        let Some(version) = versions.iter().find(|v| v.candidate() == Some(candidate)) else {
            return Ok(None);
        };
        let ownership = version_ownership(ctx, &version.arn).await?;
        let mut observed =
            ObservedObject::new(ObjectKey::new(VERSION, name), BTreeMap::new(), ownership);
        observed.state = match version.status.as_str() {
            "Completed" => ObjectState::Ready,
            "Failed" => ObjectState::Failed(format!(
                "model package {} (version {}) Failed",
                version.arn, version.number
            )),
            "Deleting" => ObjectState::Deleting("Deleting".into()),
            other => ObjectState::Progressing(format!("version {}: {other}", version.number)),
        };
        observed
            .outputs
            .insert("candidate".into(), candidate.to_string());
        observed
            .outputs
            .insert("candidateVersion".into(), version.number.to_string());
        observed
            .outputs
            .insert("candidateDecision".into(), version.approval.clone());
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = known_name(object)?;
        let (group, candidate) = parse_candidate_name(name)
            .ok_or_else(|| Error::Terminal(format!("{name:?} is not GROUP/CANDIDATE")))?;
        let field = |key: &str| {
            object
                .get(key)
                .cloned()
                .ok_or_else(|| Error::Terminal(format!("{VERSION} {name}: {key} not known")))
        };
        let model_data = field("modelData")?;
        let model_data = model_data.as_str().unwrap_or_default();
        let environment: BTreeMap<String, String> =
            serde_json::from_value(field("environment")?).unwrap_or_default();
        let mut container = ModelPackageContainerDefinition::builder()
            .image(field("image")?.as_str().unwrap_or_default())
            .set_environment(Some(environment.into_iter().collect()));
        container = if model_data.ends_with('/') {
            use aws_sdk_sagemaker::types::{
                ModelCompressionType, ModelDataSource, S3ModelDataSource, S3ModelDataType,
            };
            container.model_data_source(
                ModelDataSource::builder()
                    .s3_data_source(
                        S3ModelDataSource::builder()
                            .s3_uri(model_data)
                            .s3_data_type(S3ModelDataType::S3Prefix)
                            .compression_type(ModelCompressionType::None)
                            .build(),
                    )
                    .build(),
            )
        } else {
            container.model_data_url(model_data)
        };
        let inference = InferenceSpecification::builder()
            .containers(container.build())
            .supported_content_types("application/json")
            .supported_response_mime_types("application/json")
            .build();
        let mut metadata = BTreeMap::from([
            ("sdop.io/candidate".to_string(), candidate.to_string()),
            ("sdop.io/resource".to_string(), ctx.resource.to_string()),
        ]);
        if let Some(job) = text(object, "trainingJobName") {
            metadata.insert("sdop.io/training-job".into(), job.to_string());
        }
        ctx.clients
            .sagemaker
            .create_model_package()
            .model_package_group_name(group)
            .model_package_description(text(object, "description").unwrap_or(DESCRIPTION_MARK))
            .inference_specification(inference)
            .model_approval_status(ModelApprovalStatus::PendingManualApproval)
            // AWS refuses tags on a version ("Tags are not supported in Model Package
            // versions"): whose it is rides in its metadata, and the group carries the tags.
            .set_customer_metadata_properties(Some(metadata.into_iter().collect()))
            .client_token(client_token(group, candidate))
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateModelPackage", e))?;
        Ok(ObjectState::Progressing("registered".into()))
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // Content-named: a different candidate is another version.
        self.create(ctx, object).await
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let Some((group, candidate)) = parse_candidate_name(name) else {
            return Ok(());
        };
        for version in list_versions(ctx.clients, group).await? {
            if version.candidate() == Some(candidate) {
                delete_version(ctx, &version.arn).await?;
            }
        }
        Ok(())
    }
}

/// The evidence verdict of a candidate, read from its `evidence.json`: `None` when not written.
pub async fn evidence_verdict(
    clients: &super::Clients,
    evidence_root: &str,
    candidate: &str,
) -> Result<Option<Verdict>> {
    let Some((bucket, prefix)) = evidence_root.split_once('/') else {
        return Ok(None);
    };
    let key = format!("{prefix}{candidate}/evidence.json");
    let Some(body) = super::model_evaluation::get_object(clients, bucket, &key).await? else {
        return Ok(None);
    };
    let record: Value = serde_json::from_slice(&body).map_err(|e| {
        Error::Terminal(format!(
            "s3://{bucket}/{key} is not an evidence record: {e}"
        ))
    })?;
    let passed = record["verdict"]["passed"].as_bool().unwrap_or(false);
    Ok(Some(Verdict {
        passed,
        reasons: record["verdict"][if passed { "notes" } else { "reasons" }]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        digest: super::model_evaluation::digest_of(&body),
        uri: format!("s3://{bucket}/{key}"),
    }))
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub passed: bool,
    /// The failed rules with their measured values; when it passed, the rules' notes.
    pub reasons: Vec<String>,
    pub digest: String,
    pub uri: String,
}

impl Verdict {
    fn summary(&self) -> String {
        format!(
            "evidence {} {} ({}): {}",
            self.digest,
            if self.passed { "passed" } else { "failed" },
            self.uri,
            self.reasons.join("; ")
        )
    }
}

/// ApprovalDescription is at most 1024 characters (botocore `ApprovalDescription`).
pub fn approval_description(text: &str) -> String {
    if text.chars().count() <= 1024 {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(1020).collect();
    cut.push_str(" ...");
    cut
}

/// Sets a version's decision.
pub async fn decide_version(
    clients: &super::Clients,
    arn: &str,
    approved: bool,
    description: &str,
) -> Result<()> {
    clients
        .sagemaker
        .update_model_package()
        .model_package_arn(arn)
        .model_approval_status(if approved {
            ModelApprovalStatus::Approved
        } else {
            ModelApprovalStatus::Rejected
        })
        .approval_description(approval_description(description))
        .send()
        .await
        .map_err(|e| classify("sagemaker:UpdateModelPackage", e))?;
    Ok(())
}

/// What the approval object of a version should do now.
enum Step {
    /// Decided already (by anyone): done.
    Decided(String),
    /// Decided otherwise than the manifest says (in the console, with `sdop approve`, after
    /// the commit): kept, and the manifest's stale line pointed out.
    Contradicted(String),
    /// Waiting for a person.
    Awaiting(String),
    /// To decide now.
    Decide {
        approved: bool,
        description: String,
    },
    /// Not possible yet (no version, no evidence).
    NotYet,
    /// Its version approval object decides it: the manifest lists the version (a person's
    /// commit wins over the evidence).
    ByCommit,
    Missing(String),
}

fn approved_list(object: &DesiredObject, key: &str) -> Vec<i32> {
    object
        .inputs
        .get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_i64)
                .map(|n| n as i32)
                .collect()
        })
        .unwrap_or_default()
}

async fn step(
    ctx: &ObjectContext<'_>,
    name: &str,
    object: Option<&DesiredObject>,
) -> Result<(Step, Option<VersionSummary>)> {
    let by_commit = |decision: &str| {
        format!(
            "{decision} by commit: {} lists it in spec.{}",
            ctx.resource,
            if decision == "Approved" {
                "approvedVersions"
            } else {
                "rejectedVersions"
            }
        )
    };
    if let Some((group, number)) = parse_version_approval(name) {
        let versions = versions_for_read(ctx, group).await?;
        let Some(version) = versions.iter().find(|v| v.number == number as i32).cloned() else {
            let numbers: Vec<String> = versions.iter().map(|v| v.number.to_string()).collect();
            return Ok((
                Step::Missing(format!(
                    "version {number} does not exist in model package group {group} (versions: {}); fix spec.approvedVersions or spec.rejectedVersions",
                    if numbers.is_empty() { "none".into() } else { numbers.join(", ") }
                )),
                None,
            ));
        };
        let wanted = object
            .and_then(|o| text(o, "decision"))
            .unwrap_or("Approved")
            .to_string();
        let step = if version.approval == wanted {
            Step::Decided(wanted)
        } else if version.approval == "PendingManualApproval" || object.is_none() {
            let mut description = by_commit(&wanted);
            let root = object.and_then(|o| text(o, "evidenceRoot"));
            if let (Some(root), Some(candidate)) = (root, version.candidate()) {
                if let Some(verdict) = evidence_verdict(ctx.clients, root, candidate).await? {
                    description = format!("{description}; {}", verdict.summary());
                }
            }
            Step::Decide {
                approved: wanted == "Approved",
                description: format!("sdop: {description}"),
            }
        } else {
            Step::Contradicted(format!(
                "version {number} is {} in the registry, but {} says {wanted}: a decision already taken is not undone by sdop; change the manifest, or the decision in the console or with `sdop approve`",
                version.approval, ctx.resource
            ))
        };
        return Ok((step, Some(version)));
    }
    let Some((group, candidate)) = parse_candidate_name(name) else {
        return Err(Error::Terminal(format!("{name:?} names no version")));
    };
    let versions = versions_for_read(ctx, group).await?;
    let Some(version) = versions
        .iter()
        .find(|v| v.candidate() == Some(candidate))
        .cloned()
    else {
        return Ok((Step::NotYet, None));
    };
    if version.approval != "PendingManualApproval" {
        return Ok((Step::Decided(version.approval.clone()), Some(version)));
    }
    let Some(object) = object else {
        return Ok((Step::NotYet, Some(version)));
    };
    let listed = approved_list(object, "approvedVersions").contains(&version.number)
        || approved_list(object, "rejectedVersions").contains(&version.number);
    if listed {
        return Ok((Step::ByCommit, Some(version)));
    }
    let Some(root) = text(object, "evidenceRoot") else {
        return Ok((Step::NotYet, Some(version)));
    };
    let Some(verdict) = evidence_verdict(ctx.clients, root, candidate).await? else {
        return Ok((Step::NotYet, Some(version)));
    };
    let automatic = text(object, "approval") == Some("automatic");
    let step = if !verdict.passed {
        Step::Decide {
            approved: false,
            description: format!("sdop: Rejected by rule: {}", verdict.summary()),
        }
    } else if automatic {
        Step::Decide {
            approved: true,
            description: format!(
                "sdop: Approved by rule (approval: automatic): {}",
                verdict.summary()
            ),
        }
    } else {
        Step::Awaiting(format!(
            "version {} passed its evaluation ({}) and waits for approval: list it in spec.approvedVersions, run `sdop approve {} {} --reason ...`, or approve it in the SageMaker console",
            version.number, verdict.uri, ctx.resource, version.number
        ))
    };
    Ok((step, Some(version)))
}

#[async_trait]
impl Adapter for ApprovalAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        APPROVAL
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (step, version) = step(ctx, name, desired).await?;
        let owned = Ownership::Owned {
            resource: ctx.resource.clone(),
        };
        let mut observed =
            ObservedObject::new(ObjectKey::new(APPROVAL, name), BTreeMap::new(), owned);
        let candidate = parse_version_approval(name).is_none();
        match step {
            Step::Decided(decision) => {
                if candidate {
                    observed
                        .outputs
                        .insert("candidateDecision".into(), decision);
                    observed
                        .outputs
                        .insert("awaitingApproval".into(), String::new());
                    observed
                        .outputs
                        .insert(crate::model::outputs::NOTE.into(), String::new());
                }
            }
            // The person who decided last wins: production follows the registry (a version
            // rejected after approval rolls it back) and the stale manifest is pointed out.
            Step::Contradicted(why) => {
                observed
                    .outputs
                    .insert(crate::model::outputs::NOTE.into(), why);
            }
            Step::Awaiting(why) => {
                observed.outputs.insert(
                    "awaitingApproval".into(),
                    version.map(|v| v.number.to_string()).unwrap_or_default(),
                );
                observed
                    .outputs
                    .insert(crate::model::outputs::NOTE.into(), why);
            }
            Step::Missing(why) => observed.state = ObjectState::Failed(why),
            Step::ByCommit => {}
            Step::Decide { .. } | Step::NotYet => return Ok(None),
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = known_name(object)?;
        match step(ctx, name, Some(object)).await? {
            (
                Step::Decide {
                    approved,
                    description,
                },
                Some(version),
            ) => {
                decide_version(ctx.clients, &version.arn, approved, &description).await?;
                Ok(ObjectState::Ready)
            }
            (Step::Missing(why), _) => Err(Error::Terminal(why)),
            (Step::NotYet, _) => Err(Error::Waiting(format!(
                "{name}: the version or its evidence is not there yet"
            ))),
            _ => Ok(ObjectState::Ready),
        }
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        self.create(ctx, object).await
    }

    /// A decision stays in the registry (it is the record of what was approved).
    async fn delete(&self, _ctx: &ObjectContext<'_>, _name: &str) -> Result<()> {
        Ok(())
    }
}
