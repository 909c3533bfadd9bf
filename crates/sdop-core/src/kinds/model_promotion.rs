//! `ModelPromotion`: every model a staging Endpoint serves (a finetune's new package) becomes a
//! version in a SageMaker Model Registry model package group, is evaluated on that staging
//! endpoint (a fixed prompt set with fixed seeds), gets an evidence bundle in S3 (the images,
//! a contact sheet beside the production version's images, the measurements as JSON) and is
//! approved by rule (`approval: automatic`) or by a person (a commit listing the version in
//! `approvedVersions`, `sdop approve`, or the SageMaker console). Its outputs name the latest
//! approved version's model data and checkpoint, which a production Endpoint serves
//! (`modelData: {modelPromotion: NAME}`); a version moved from Approved to Rejected moves the
//! outputs back to the previous approved one, so production rolls back.
//!
//! Not to be confused with `ModelArchive` (the S3 `model.tar.gz` sdop builds): SageMaker calls a
//! registry version a "model package".
//!
//! The AWS objects (each named so that a restart finds what a killed run made):
//! - `sagemaker:model-package-group` GROUP: the group, owned by sdop's tags; read every pass,
//!   with the group's versions, so a decision taken in the console is read back.
//! - `sagemaker:model-package-version` GROUP/CANDIDATE: the candidate's version. AWS assigns the
//!   version number, so sdop names it by the candidate's content id (a hash of the image, model
//!   data and environment the staging endpoint serves), written into the version's description
//!   and sent as CreateModelPackage's idempotency token: a version is registered once.
//! - `sagemaker:model-evaluation` BUCKET/PREFIX/CANDIDATE/: the prompts sent to the staging
//!   endpoint (InvokeEndpointAsync, one request per prompt and seed) and their results.
//! - `s3:evidence-bundle` BUCKET/PREFIX/CANDIDATE/evidence.json: the images, the contact sheet
//!   and the measurements, written once every result is in; the verdict against the thresholds.
//! - `sagemaker:model-approval` GROUP/CANDIDATE/approval: the decision for the candidate
//!   (UpdateModelPackage), and GROUP/version-N/approval for each version the manifest approves
//!   or rejects by number. A decision already taken (by anyone) is never undone.
//!
//! AWS pages relied on: CreateModelPackage, UpdateModelPackage, ListModelPackages,
//! DescribeModelPackage, CreateModelPackageGroup, DeleteModelPackageGroup (SageMaker API
//! reference) and "Update the Approval Status of a Model" (SageMaker developer guide,
//! https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-approve.html).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::endpoint::Endpoint;
use super::{Checks, Claim, DeletionPolicy, DesiredContext, Kind, Reference};
use crate::model::contracts::ModelPackageGroupDesired;
use crate::model::naming::content_hash;
use crate::model::object::{AwsType, DesiredObject, Mutability, ObjectName};
use crate::model::resource::ResourceId;
use crate::rules;

pub struct ModelPromotion;

/// `Kind::KIND` of this kind, for the engine's messages.
pub const PROMOTION_KIND: &str = "ModelPromotion";

pub const GROUP: AwsType = AwsType::ModelPackageGroup;
pub const VERSION: AwsType = AwsType::ModelPackageVersion;
pub const EVALUATION: AwsType = AwsType::ModelEvaluation;
pub const EVIDENCE: AwsType = AwsType::EvidenceBundle;
pub const APPROVAL: AwsType = AwsType::ModelApproval;

/// How long a candidate's content id is (hex digits of its hash).
const CANDIDATE_ID_LEN: usize = 12;
/// The description of every version sdop registers starts so; the content id follows.
pub const DESCRIPTION_MARK: &str = "sdop candidate ";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalMode {
    /// A version whose evidence passes is approved by sdop; one whose evidence fails is
    /// rejected.
    Automatic,
    /// A version whose evidence passes waits for a person: listed in `approvedVersions` (a
    /// commit), `sdop approve`, or the SageMaker console. Failing evidence still rejects it.
    #[default]
    Manual,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Automatic => "automatic",
            ApprovalMode::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Staging {
    /// The `Endpoint` (by name) that serves each candidate: its model data comes from the
    /// finetune's `ModelArchive`. It may scale to zero between evaluations.
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Prompt {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negative_prompt: String,
}

/// What the evidence must show for a version to pass (each rule's measured values are kept,
/// passed or failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Thresholds {
    /// Every request returned an image that decodes as PNG.
    #[serde(default = "yes")]
    pub all_decode: bool,
    /// No image is blank or black (one colour: pixel statistics).
    #[serde(default = "yes")]
    pub none_blank: bool,
    /// Every image has the requested width and height.
    #[serde(default = "yes")]
    pub expected_size: bool,
    /// The 95th percentile of the time from request to result, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_latency_seconds: Option<f64>,
    /// USD per image at the staging instance's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_per_image_usd: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            all_decode: true,
            none_blank: true,
            expected_size: true,
            max_p95_latency_seconds: None,
            max_cost_per_image_usd: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Evaluation {
    /// The prompts, each sent with every seed. Default: three prompts in the workshop's style
    /// with `instanceToken` in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<Prompt>,
    /// The finetune's instance token (e.g. `jpstyle girl`), for the default prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_token: Option<String>,
    /// Fixed seeds, so the candidate and the production version draw the same cases.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u32>,
    #[serde(default = "default_size")]
    pub width: u32,
    #[serde(default = "default_size")]
    pub height: u32,
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// Seconds every result may take (a scaled-to-zero endpoint starts an instance first).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// For the plan's cost estimate only: seconds of instance time one image takes.
    #[serde(default = "default_seconds_per_image")]
    pub expected_seconds_per_image: u32,
    #[serde(default)]
    pub thresholds: Thresholds,
}

impl Default for Evaluation {
    fn default() -> Self {
        Evaluation {
            prompts: Vec::new(),
            instance_token: None,
            seeds: default_seeds(),
            width: default_size(),
            height: default_size(),
            steps: default_steps(),
            timeout_seconds: default_timeout(),
            expected_seconds_per_image: default_seconds_per_image(),
            thresholds: Thresholds::default(),
        }
    }
}

fn default_seeds() -> Vec<u32> {
    vec![1, 2]
}
fn default_size() -> u32 {
    512
}
fn default_steps() -> u32 {
    20
}
fn default_timeout() -> u32 {
    1800
}
fn default_seconds_per_image() -> u32 {
    20
}

/// InvokeEndpointAsync's InvocationTimeoutSeconds is at most 3600.
const MAX_TIMEOUT_SECONDS: u32 = 3600;
/// The WebUI's txt2img accepts sizes in steps of 8 up to 2048 (fork `modules/ui.py` sliders).
const MAX_SIZE: u32 = 2048;
/// A bound on what one evaluation sends (and costs).
const MAX_CASES: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelPromotionSpec {
    /// The SageMaker Model Registry model package group (one per model line).
    pub model_package_group_name: String,
    pub staging: Staging,
    /// The `DreamboothJob` whose checkpoint the candidates are (by name): its training job is
    /// recorded on each version as lineage (`CustomerMetadataProperties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dreambooth_job: Option<String>,
    #[serde(default)]
    pub evaluation: Evaluation,
    #[serde(default)]
    pub approval: ApprovalMode,
    /// Versions approved by commit (version numbers as the registry shows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_versions: Vec<u32>,
    /// Versions rejected by commit: production goes back to the latest approved one before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_versions: Vec<u32>,
    /// Where the evidence bundles go (a prefix ending in `/`). Default: the staging
    /// endpoint's async output bucket, under `sdop/evidence/GROUP/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_s3_uri: Option<String>,
    #[serde(default)]
    pub tags: super::Tags,
    /// The registry is the record of what was approved: `Retain` (default) keeps the group,
    /// its versions and the evidence when the manifest is pruned (and a group no longer named
    /// when `modelPackageGroupName` changes); `Delete` deletes sdop's versions, the group and
    /// the evidence.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default)]
    pub adopt: bool,
}

/// One evaluation request: a prompt with a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negative_prompt: String,
    pub seed: u32,
    pub width: u32,
    pub height: u32,
    /// The request body (the WebUI fork's `/invocations` text-to-image request).
    pub payload: Value,
}

/// The default prompts, in the workshop's style (its step 12 prompts the finetune with its
/// instance token at the model's size).
pub fn default_prompts(token: &str) -> Vec<Prompt> {
    [
        format!("photo of {token}"),
        format!("photo of {token}, upper body, looking at viewer, soft light"),
        format!("photo of {token} in a garden with cherry blossoms"),
    ]
    .into_iter()
    .map(|prompt| Prompt {
        prompt,
        negative_prompt: "lowres, blurry".into(),
    })
    .collect()
}

impl Evaluation {
    fn prompts(&self) -> Vec<Prompt> {
        if self.prompts.is_empty() {
            default_prompts(self.instance_token.as_deref().unwrap_or("person"))
        } else {
            self.prompts.clone()
        }
    }

    /// Every (prompt, seed) request, in a fixed order.
    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for prompt in self.prompts() {
            for &seed in &self.seeds {
                cases.push(Case {
                    payload: payload(&prompt, seed, self),
                    prompt: prompt.prompt.clone(),
                    negative_prompt: prompt.negative_prompt.clone(),
                    seed,
                    width: self.width,
                    height: self.height,
                });
            }
        }
        cases
    }
}

/// The notebook's text-to-image request (as the smoke check's, `kinds::smoke_check`), with the
/// case's prompt, seed and size.
fn payload(prompt: &Prompt, seed: u32, evaluation: &Evaluation) -> Value {
    json!({
        "task": "text-to-image",
        "username": "",
        "txt2img_payload": {
            "prompt": prompt.prompt,
            "negative_prompt": prompt.negative_prompt,
            "steps": evaluation.steps,
            "width": evaluation.width,
            "height": evaluation.height,
            "sampler_index": "Euler a",
            "batch_size": 1,
            "n_iter": 1,
            "cfg_scale": 7,
            "seed": seed,
            "script_args": "[0, false, false, false, \"\", 1, \"\", 0, \"\", true, false, false]"
        }
    })
}

/// What a candidate is: what the staging endpoint serves (its Model's image, model data and
/// environment, less the endpoint's own name).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub image: String,
    pub model_data: String,
    pub environment: BTreeMap<String, String>,
}

impl Candidate {
    /// Read from the staging Endpoint's outputs; `None` until it serves.
    pub fn of_staging(ctx: &DesiredContext, staging: &ResourceId) -> Option<Candidate> {
        let get = |key: &str| {
            ctx.outputs
                .get(staging, key)
                .filter(|value| !value.is_empty())
        };
        let mut environment: BTreeMap<String, String> =
            serde_json::from_str(&get("modelEnvironment")?).ok()?;
        // The endpoint's own name: the same model served elsewhere is the same candidate.
        environment.remove("endpoint_name");
        Some(Candidate {
            image: get("image")?,
            model_data: get("modelData")?,
            environment,
        })
    }

    /// The content id: what names the version, its evaluation and evidence.
    pub fn id(&self) -> String {
        content_hash(self)[..CANDIDATE_ID_LEN].to_string()
    }
}

/// The evidence root: the spec's, or the staging endpoint's async output bucket.
fn evidence_root(spec: &ModelPromotionSpec, ctx: &DesiredContext) -> Option<(String, String)> {
    let uri = match &spec.evidence_s3_uri {
        Some(uri) => uri.clone(),
        None => {
            let staging = ResourceId::new(Endpoint::KIND, &spec.staging.endpoint);
            let output = ctx.outputs.get(&staging, "asyncOutputPath")?;
            let bucket = rules::s3_uri(&output).ok()?.bucket;
            format!(
                "s3://{bucket}/sdop/evidence/{}/",
                spec.model_package_group_name
            )
        }
    };
    let parsed = rules::s3_prefix_uri(&uri).ok()?;
    Some((parsed.bucket, parsed.key))
}

/// The name of the approval object of version `number` (approved or rejected by commit).
pub fn version_approval_name(group: &str, number: u32) -> String {
    format!("{group}/version-{number}/approval")
}

/// The group and the version number of a version approval's name.
pub fn parse_version_approval(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_suffix("/approval")?;
    let (group, version) = rest.rsplit_once("/version-")?;
    Some((group, version.parse().ok()?))
}

/// The group and the candidate id of a candidate object's name (`GROUP/ID` or
/// `GROUP/ID/approval`).
pub fn parse_candidate_name(name: &str) -> Option<(&str, &str)> {
    let name = name.strip_suffix("/approval").unwrap_or(name);
    name.rsplit_once('/')
}

/// The evaluation's one-off cost, for the plan: staging instance time for every image.
fn estimate(
    spec: &ModelPromotionSpec,
    cases: usize,
    instance_type: Option<String>,
) -> crate::cost::OneOff {
    crate::cost::OneOff {
        what: format!("evaluation: {cases} images on the staging endpoint"),
        instance_type,
        seconds: cases as u64 * u64::from(spec.evaluation.expected_seconds_per_image),
    }
}

impl Kind for ModelPromotion {
    const KIND: &'static str = PROMOTION_KIND;
    /// A decision taken in the console (approved, or rejected after approval: production
    /// rolls back) is read back within a minute, not at the next resync.
    const WATCH: Option<std::time::Duration> = Some(std::time::Duration::from_secs(60));
    const OUTPUTS: &'static [&'static str] = &[
        "modelPackageGroupName",
        "modelPackageGroupArn",
        "approvedVersion",
        "approvedModelPackageArn",
        "approvedModelData",
        "approvedCheckpoint",
        "approvedImage",
        "approvedBy",
        "candidate",
        "candidateVersion",
        "candidateDecision",
        "awaitingApproval",
        "evidence",
        "evidenceDigest",
        "verdict",
        "versions",
    ];
    type Spec = ModelPromotionSpec;

    fn check(spec: &ModelPromotionSpec, checks: &mut Checks) {
        checks.check(
            "spec.modelPackageGroupName",
            rules::sagemaker_name(&spec.model_package_group_name),
        );
        checks.check(
            "spec.staging.endpoint",
            rules::resource_name(&spec.staging.endpoint),
        );
        if let Some(uri) = &spec.evidence_s3_uri {
            checks.check("spec.evidenceS3Uri", rules::s3_prefix_uri(uri));
        }
        let evaluation = &spec.evaluation;
        if evaluation.seeds.is_empty() {
            checks.error("spec.evaluation.seeds", "seeds must list at least one seed");
        }
        for (field, value) in [("width", evaluation.width), ("height", evaluation.height)] {
            if value == 0 || value > MAX_SIZE || value % 8 != 0 {
                checks.error(
                    format!("spec.evaluation.{field}"),
                    format!("{field} must be a multiple of 8 from 8 to {MAX_SIZE} (the WebUI's txt2img sizes)"),
                );
            }
        }
        if evaluation.steps == 0 || evaluation.steps > 150 {
            checks.error(
                "spec.evaluation.steps",
                "steps must be 1..=150 (the WebUI's sampling steps)",
            );
        }
        if evaluation.timeout_seconds == 0 || evaluation.timeout_seconds > MAX_TIMEOUT_SECONDS {
            checks.error(
                "spec.evaluation.timeoutSeconds",
                format!("timeoutSeconds must be 1..={MAX_TIMEOUT_SECONDS} (InvokeEndpointAsync's InvocationTimeoutSeconds)"),
            );
        }
        if evaluation.prompts.is_empty() && evaluation.instance_token.is_none() {
            checks.error(
                "spec.evaluation",
                "say what to draw: `instanceToken` (the finetune's token, e.g. `jpstyle girl`, for the default prompts) or `prompts`",
            );
        }
        for (i, prompt) in evaluation.prompts.iter().enumerate() {
            if prompt.prompt.trim().is_empty() {
                checks.error(
                    format!("spec.evaluation.prompts[{i}].prompt"),
                    "a prompt must not be empty",
                );
            }
        }
        let cases = evaluation.prompts().len() * evaluation.seeds.len();
        if cases > MAX_CASES {
            checks.error(
                "spec.evaluation",
                format!(
                    "{cases} requests (prompts x seeds) is more than {MAX_CASES} per evaluation"
                ),
            );
        }
        for (path, threshold) in [
            (
                "spec.evaluation.thresholds.maxP95LatencySeconds",
                evaluation.thresholds.max_p95_latency_seconds,
            ),
            (
                "spec.evaluation.thresholds.maxCostPerImageUsd",
                evaluation.thresholds.max_cost_per_image_usd,
            ),
        ] {
            if threshold.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                checks.error(path, "must be a positive number");
            }
        }
        for (i, version) in spec.approved_versions.iter().enumerate() {
            if *version == 0 {
                checks.error(
                    format!("spec.approvedVersions[{i}]"),
                    "versions are numbered from 1",
                );
            }
            if spec.rejected_versions.contains(version) {
                checks.error(
                    format!("spec.approvedVersions[{i}]"),
                    format!("version {version} is both approved and rejected"),
                );
            }
        }
        for (i, version) in spec.rejected_versions.iter().enumerate() {
            if *version == 0 {
                checks.error(
                    format!("spec.rejectedVersions[{i}]"),
                    "versions are numbered from 1",
                );
            }
        }
        checks.tags(
            "spec.tags",
            &spec.tags,
            &[crate::model::aws_rules::TagRules::SageMaker],
        );
    }

    fn references(spec: &ModelPromotionSpec) -> Vec<Reference> {
        let mut references = vec![Reference::to(
            "spec.staging.endpoint",
            Endpoint::KIND,
            &spec.staging.endpoint,
        )];
        if let Some(job) = &spec.dreambooth_job {
            references.push(Reference::to(
                "spec.dreamboothJob",
                super::dreambooth_job::DreamboothJob::KIND,
                job,
            ));
        }
        references.extend(super::tag_references(&spec.tags, "spec.tags"));
        references
    }

    fn claims(spec: &ModelPromotionSpec) -> Vec<(&'static str, Claim)> {
        let mut claims = vec![(
            "spec.modelPackageGroupName",
            Claim::Unique(format!(
                "SageMaker model package group {:?}",
                spec.model_package_group_name
            )),
        )];
        if let Some(parsed) = spec
            .evidence_s3_uri
            .as_deref()
            .and_then(|uri| rules::s3_prefix_uri(uri).ok())
        {
            claims.push((
                "spec.evidenceS3Uri",
                super::s3_prefix_claim(&parsed.bucket, &parsed.key),
            ));
        }
        claims
    }

    fn spec_outputs(spec: &ModelPromotionSpec) -> BTreeMap<String, String> {
        [(
            "modelPackageGroupName".to_string(),
            spec.model_package_group_name.clone(),
        )]
        .into()
    }

    fn permissions(spec: &ModelPromotionSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        let group = &spec.model_package_group_name;
        let grants = vec![
            super::iam::Grant::new(
                &[
                    "sagemaker:CreateModelPackageGroup",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:DeleteModelPackageGroup",
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:UpdateModelPackage",
                    "sagemaker:DeleteModelPackage",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                    "sagemaker:DeleteTags",
                ],
                vec![
                    super::iam::sagemaker_arn(None, "model-package-group", group),
                    super::iam::sagemaker_arn(None, "model-package", &format!("{group}/*")),
                ],
            ),
            // ListModelPackages is not scoped to a resource (service authorization reference).
            super::iam::Grant::new(&["sagemaker:ListModelPackages"], vec!["*".into()]),
            super::iam::Grant::new(
                &["sagemaker:InvokeEndpointAsync"],
                vec![super::iam::sagemaker_arn(None, "endpoint", "*")],
            ),
        ];
        (grants, Vec::new())
    }

    fn facts(spec: &ModelPromotionSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    /// A candidate's decision, and every change of the approved version (what production
    /// serves): promoted, or rolled back when the version before it was rejected.
    fn history(
        _spec: &ModelPromotionSpec,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        _references: &crate::model::outputs::Outputs,
    ) -> Vec<String> {
        let get =
            |map: &BTreeMap<String, String>, key: &str| map.get(key).cloned().unwrap_or_default();
        let mut lines = Vec::new();
        let decision = get(after, "candidateDecision");
        let decided_now = (
            get(before, "candidateVersion"),
            get(before, "candidateDecision"),
        ) != (get(after, "candidateVersion"), decision.clone());
        if decided_now && !decision.is_empty() && decision != "PendingManualApproval" {
            lines.push(format!(
                "version {} {decision} (evidence {} {}: {})",
                get(after, "candidateVersion"),
                get(after, "evidenceDigest"),
                get(after, "evidence"),
                get(after, "verdict")
            ));
        }
        let (old, new) = (
            get(before, "approvedVersion"),
            get(after, "approvedVersion"),
        );
        if old != new {
            let number = |v: &str| v.parse::<u32>().unwrap_or(0);
            lines.push(if new.is_empty() {
                format!("no version is approved any more (version {old} was rejected): endpoints reading it keep what they serve")
            } else if !old.is_empty() && number(&new) < number(&old) {
                format!(
                    "ROLLED BACK: version {old} is no longer approved; production goes back to version {new} ({}; approved: {})",
                    get(after, "approvedModelData"),
                    get(after, "approvedBy")
                )
            } else {
                format!(
                    "promoted version {new} for production ({}; approved: {})",
                    get(after, "approvedModelData"),
                    get(after, "approvedBy")
                )
            });
        }
        lines
    }

    fn desired(spec: &ModelPromotionSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let group_name = &spec.model_package_group_name;
        let group = DesiredObject::new(
            GROUP,
            ObjectName::Known(group_name.clone()),
            Mutability::InPlace,
        )
        .contract(ModelPackageGroupDesired {
            tags: super::resolve_tags(&spec.tags, ctx.outputs),
        })
        .input(
            "description",
            json!(format!("Versions of {} (sdop)", ctx.id)),
        );
        let mut objects = vec![group];
        let decision_inputs = |object: DesiredObject| {
            object
                .input("approval", json!(spec.approval.as_str()))
                .input("approvedVersions", json!(spec.approved_versions))
                .input("rejectedVersions", json!(spec.rejected_versions))
                .input("group", json!(group_name))
        };
        for (list, decision) in [
            (&spec.approved_versions, "Approved"),
            (&spec.rejected_versions, "Rejected"),
        ] {
            for &number in list {
                objects.push(
                    decision_inputs(DesiredObject::new(
                        APPROVAL,
                        ObjectName::Known(version_approval_name(group_name, number)),
                        Mutability::Replace,
                    ))
                    .input("decision", json!(decision))
                    .input("version", json!(number))
                    .input(
                        "evidenceRoot",
                        json!(evidence_root(spec, ctx).map(|(b, p)| format!("{b}/{p}"))),
                    )
                    .after_ready(GROUP, group_name),
                );
            }
        }

        let staging = ResourceId::new(Endpoint::KIND, &spec.staging.endpoint);
        let candidate = Candidate::of_staging(ctx, &staging);
        let root = evidence_root(spec, ctx);
        let cases = spec.evaluation.cases();
        let instance_type = ctx.outputs.get(&staging, "instanceType");
        let (Some(candidate), Some((bucket, prefix))) = (candidate, root) else {
            // Known once the staging endpoint serves: shown as "known after apply".
            let base = format!("{group_name}/candidate");
            objects.push(
                DesiredObject::new(
                    VERSION,
                    ObjectName::AfterApply { base: base.clone() },
                    Mutability::Replace,
                )
                .field("modelData", None),
            );
            let mut evaluation = DesiredObject::new(
                EVALUATION,
                ObjectName::AfterApply { base: base.clone() },
                Mutability::Replace,
            )
            .field("cases", Some(json!(cases.len())))
            .field("staging", None);
            evaluation.one_off = Some(estimate(spec, cases.len(), instance_type.clone()));
            objects.push(evaluation);
            objects.push(
                DesiredObject::new(
                    EVIDENCE,
                    ObjectName::AfterApply { base: base.clone() },
                    Mutability::Replace,
                )
                .field("evidence", None),
            );
            objects.push(
                DesiredObject::new(
                    APPROVAL,
                    ObjectName::AfterApply { base },
                    Mutability::Replace,
                )
                .field("decision", None),
            );
            return objects;
        };
        let id = candidate.id();
        let version_name = format!("{group_name}/{id}");
        let evidence_prefix = format!("{prefix}{id}/");
        let mut version = DesiredObject::new(
            VERSION,
            ObjectName::Known(version_name.clone()),
            Mutability::Replace,
        )
        .field("image", Some(json!(candidate.image)))
        .field("modelData", Some(json!(candidate.model_data)))
        .field("environment", Some(json!(candidate.environment)))
        .input("candidate", json!(id))
        .input("group", json!(group_name))
        .input(
            "trainingJobName",
            json!(spec.dreambooth_job.as_ref().and_then(|job| ctx.outputs.get(
                &ResourceId::new(super::dreambooth_job::DreamboothJob::KIND, job),
                "trainingJobName"
            ))),
        )
        .input(
            "description",
            json!(format!(
                "{DESCRIPTION_MARK}{id}: served by Endpoint/{} and evaluated by {}",
                spec.staging.endpoint, ctx.id
            )),
        )
        .input(
            "tags",
            json!(super::resolve_tags(&spec.tags, ctx.outputs).unwrap_or_default()),
        )
        .after_ready(GROUP, group_name);
        version.content_named = true;
        let staging_name = ctx
            .outputs
            .get(&staging, "endpointName")
            .unwrap_or_default();
        let mut evaluation = DesiredObject::new(
            EVALUATION,
            ObjectName::Known(format!("{bucket}/{evidence_prefix}")),
            Mutability::Replace,
        )
        .field("cases", Some(json!(cases.len())))
        .field("staging", Some(json!(staging_name)))
        .field("casesHash", Some(json!(content_hash(&cases))))
        .input("cases", json!(cases))
        .input("endpointName", json!(staging_name))
        .input(
            "endpointConfigName",
            json!(ctx
                .outputs
                .get(&staging, "endpointConfigName")
                .unwrap_or_default()),
        )
        .input(
            "outputPath",
            json!(ctx
                .outputs
                .get(&staging, "asyncOutputPath")
                .unwrap_or_default()),
        )
        .input(
            "failurePath",
            json!(ctx
                .outputs
                .get(&staging, "asyncFailurePath")
                .unwrap_or_default()),
        )
        .input("timeoutSeconds", json!(spec.evaluation.timeout_seconds))
        .input("candidate", json!(id))
        .after_ready(VERSION, &version_name);
        evaluation.content_named = true;
        evaluation.one_off = Some(estimate(spec, cases.len(), instance_type.clone()));
        let evaluation_name = format!("{bucket}/{evidence_prefix}");
        let thresholds = json!(spec.evaluation.thresholds);
        let mut evidence = DesiredObject::new(
            EVIDENCE,
            ObjectName::Known(format!("{bucket}/{evidence_prefix}evidence.json")),
            Mutability::Replace,
        )
        .field("thresholds", Some(thresholds.clone()))
        // Judged on this evaluation: new prompts or seeds are new evidence.
        .field("casesHash", Some(json!(content_hash(&cases))))
        .input("thresholds", thresholds)
        .input("cases", json!(cases))
        .input("candidate", json!(id))
        .input("group", json!(group_name))
        .input("evidenceRoot", json!(format!("{bucket}/{prefix}")))
        .input("endpointName", json!(staging_name))
        .input(
            "instanceType",
            json!(instance_type.clone().unwrap_or_default()),
        )
        .after_ready(EVALUATION, &evaluation_name);
        evidence.content_named = true;
        let evidence_name = format!("{bucket}/{evidence_prefix}evidence.json");
        let approval = decision_inputs(DesiredObject::new(
            APPROVAL,
            ObjectName::Known(format!("{version_name}/approval")),
            Mutability::Replace,
        ))
        .input("candidate", json!(id))
        .input("evidenceRoot", json!(format!("{bucket}/{prefix}")))
        .input("evidence", json!(evidence_name))
        .after_ready(EVIDENCE, &evidence_name);
        objects.extend([version, evaluation, evidence, approval]);
        objects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_is_sent_with_every_seed_in_a_fixed_order() {
        let evaluation = Evaluation {
            instance_token: Some("jpstyle girl".into()),
            seeds: vec![7, 8],
            ..Evaluation::default()
        };
        let cases = evaluation.cases();
        assert_eq!(cases.len(), 6);
        assert_eq!(cases[0].prompt, "photo of jpstyle girl");
        assert_eq!((cases[0].seed, cases[1].seed), (7, 8));
        assert_eq!(cases[1].payload["txt2img_payload"]["seed"], 8);
        assert_eq!(cases, evaluation.cases());
    }

    fn spec() -> ModelPromotionSpec {
        ModelPromotionSpec {
            model_package_group_name: "sd-portrait".into(),
            staging: Staging {
                endpoint: "staging".into(),
            },
            dreambooth_job: None,
            evaluation: Evaluation {
                instance_token: Some("sks person".into()),
                ..Evaluation::default()
            },
            approval: ApprovalMode::Automatic,
            approved_versions: vec![2],
            rejected_versions: Vec::new(),
            evidence_s3_uri: None,
            tags: super::super::Tags::new(),
            deletion_policy: DeletionPolicy::Retain,
            suspend: false,
            adopt: false,
        }
    }

    fn desired_with(staging: &[(&str, &str)]) -> Vec<DesiredObject> {
        let id = ResourceId::new(ModelPromotion::KIND, "portrait");
        let mut outputs = crate::model::outputs::Outputs::default();
        outputs.insert(
            ResourceId::new(Endpoint::KIND, "staging"),
            staging
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let ctx = DesiredContext {
            id: &id,
            metadata: &Default::default(),
            spec_hash: "h",
            outputs: &outputs,
            local_files: &BTreeMap::new(),
        };
        ModelPromotion::desired(&spec(), &ctx)
    }

    /// What staging serves names the version, its evaluation, evidence and decision; the
    /// endpoint's own name is not part of it (the same model served elsewhere is the same
    /// candidate), and nothing is named before staging serves.
    #[test]
    fn the_candidate_is_what_staging_serves() {
        let serving = |endpoint: &str| {
            desired_with(&[
                ("image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:1"),
                ("modelData", "s3://sdop-b/assets/abc/model.tar.gz"),
                (
                    "modelEnvironment",
                    &format!(
                        r#"{{"ckpt": "/opt/ml/model/x.ckpt", "endpoint_name": "{endpoint}"}}"#
                    ),
                ),
                ("asyncOutputPath", "s3://sdop-b/out/"),
                ("endpointName", endpoint),
            ])
        };
        let objects = serving("sd-staging");
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{} {}", o.aws_type, o.name.display()))
            .collect();
        let id = names[2].rsplit('/').next().unwrap().to_string();
        assert_eq!(id.len(), CANDIDATE_ID_LEN, "{names:?}");
        assert_eq!(
            names,
            [
                "sagemaker:model-package-group sd-portrait".to_string(),
                "sagemaker:model-approval sd-portrait/version-2/approval".into(),
                format!("sagemaker:model-package-version sd-portrait/{id}"),
                format!("sagemaker:model-evaluation sdop-b/sdop/evidence/sd-portrait/{id}/"),
                format!("s3:evidence-bundle sdop-b/sdop/evidence/sd-portrait/{id}/evidence.json"),
                format!("sagemaker:model-approval sd-portrait/{id}/approval"),
            ]
        );
        let renamed = serving("sd-staging-2");
        assert_eq!(renamed[2].name, objects[2].name);
        assert_eq!(
            objects[2].get("environment"),
            Some(&json!({"ckpt": "/opt/ml/model/x.ckpt"}))
        );
        let nothing_yet = desired_with(&[("asyncOutputPath", "s3://sdop-b/out/")]);
        assert!(nothing_yet[2..].iter().all(|o| o.name.known().is_none()));
    }

    #[test]
    fn the_history_says_what_was_promoted_rejected_and_rolled_back() {
        let outputs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = crate::model::outputs::Outputs::default();
        let v1 = outputs(&[
            ("approvedVersion", "1"),
            ("candidateVersion", "1"),
            ("candidateDecision", "Approved"),
        ]);
        let lines = ModelPromotion::history(&spec(), &BTreeMap::new(), &v1, &none);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("version 1 Approved"));
        assert!(lines[1].starts_with("promoted version 1"));
        let v2_rejected = outputs(&[
            ("approvedVersion", "1"),
            ("candidateVersion", "2"),
            ("candidateDecision", "Rejected"),
            ("verdict", "failed: 6 of 6 images blank"),
        ]);
        let lines = ModelPromotion::history(&spec(), &v1, &v2_rejected, &none);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("version 2 Rejected") && lines[0].contains("blank"));
        assert!(ModelPromotion::history(&spec(), &v2_rejected, &v2_rejected, &none).is_empty());
        let v3 = outputs(&[("approvedVersion", "3")]);
        let back = outputs(&[("approvedVersion", "1")]);
        let lines = ModelPromotion::history(&spec(), &v3, &back, &none);
        assert!(lines[0].starts_with("ROLLED BACK: version 3"), "{lines:?}");
    }

    #[test]
    fn approval_names_parse_back() {
        assert_eq!(
            parse_version_approval(&version_approval_name("sdop-jp", 3)),
            Some(("sdop-jp", 3))
        );
        assert_eq!(
            parse_candidate_name("sdop-jp/0123456789ab/approval"),
            Some(("sdop-jp", "0123456789ab"))
        );
        assert_eq!(
            parse_version_approval("sdop-jp/0123456789ab/approval"),
            None
        );
    }
}
