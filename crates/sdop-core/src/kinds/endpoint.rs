//! `Endpoint`: a SageMaker inference endpoint (workshop steps 7 and 12). One manifest becomes
//! a Model and an EndpointConfig (immutable, content-hash names) and an Endpoint that points
//! at the current config.

use crate::model::contracts::{EndpointDesired, RegistrationDesired};
use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model_archive::ModelArchive;
use super::{
    Checks, Claim, DeletionPolicy, DesiredContext, ImageRef, Kind, Reference, ValueSource,
    VpcConfig,
};
use crate::contract::ContainerContract;
use crate::model::aws_models;
use crate::model::aws_rules::TagRules;
use crate::model::naming::{content_hash, hashed_name};
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::model::resource::ResourceId;
use crate::rules;

pub struct Endpoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelDataRef {
    /// Name of a `ModelArchive`; a new archive identity rolls the endpoint out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_archive: Option<String>,
    /// An existing `model.tar.gz` (object) or uncompressed model prefix (ending in `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
    /// Name of a `ModelPromotion`: the endpoint serves its latest approved version (a
    /// production endpoint); a newly approved version rolls it out, a version rejected after
    /// approval rolls it back to the one approved before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_promotion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsyncInference {
    /// Where results go, e.g. `s3://BUCKET/stable-diffusion-webui/asyncinvoke/out/`.
    pub output_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_invocations_per_instance: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// The SageMaker endpoint name (at most 63 characters).
    pub endpoint_name: String,
    /// The inference image's upstream version (README "Container contract"); decides which
    /// environment the image needs.
    #[serde(default)]
    pub contract: ContainerContract,
    pub image: ImageRef,
    pub model_data: ModelDataRef,
    /// e.g. `ml.g4dn.2xlarge`.
    pub instance_type: String,
    #[serde(default = "one")]
    pub instance_count: u32,
    /// IAM role SageMaker assumes for the model.
    pub execution_role_arn: ValueSource,
    /// The Model's environment as the image reads it: `api_endpoint` (the all-in-one-ai API
    /// URL), `ckpt` (e.g. `valueFrom` a DreamboothJob's `modelCheckpointPath`),
    /// `embeddings_s3uri`, `hypernetwork_s3uri`, `generated_images_s3uri`. sdop adds
    /// `endpoint_name`. Values may be `{valueFrom: {resource, output}}`.
    #[serde(default)]
    pub environment: BTreeMap<String, ValueSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_inference: Option<AsyncInference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
    /// Record the endpoint in the all-in-one-ai endpoint registry, so the WebUI lists it for
    /// the `stable-diffusion-webui` industrial model (what the portal does after a deploy);
    /// the record is removed when the endpoint is pruned. Opt-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_registration: Option<WebuiRegistration>,
    /// Deployment guardrails for rollouts (UpdateEndpoint's `DeploymentConfig`): blue/green
    /// with all-at-once, canary or linear traffic shifting, or rolling, and auto-rollback on
    /// CloudWatch alarms. A rollback AWS makes is reported as `RolloutRolledBack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<super::deployment::Deployment>,
    /// Autoscaling of an asynchronous endpoint on its backlog, down to zero instances when
    /// `minInstances` is 0 (Application Auto Scaling; see `kinds::autoscaling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<super::autoscaling::Autoscaling>,
    /// After each rollout, one asynchronous invocation whose result must appear in the output
    /// path in time; a failed check rolls the endpoint back (see `kinds::smoke_check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_check: Option<super::smoke_check::SmokeCheck>,
    /// Seconds SageMaker waits for the container's health check (large models load slowly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_startup_health_check_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub tags: super::Tags,
    /// Endpoints bill by the hour: pruning deletes them unless this says `Retain`.
    #[serde(default = "delete")]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    #[serde(default)]
    pub adopt: bool,
}

/// Where and under which industrial model an endpoint is registered for the WebUI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebuiRegistration {
    /// The WebUI's industrial model id; default: looked up in `industrialModelTable` (the one
    /// with `model_algorithm` `stable-diffusion-webui`, which the WebUI creates at its first
    /// start; the endpoint waits for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industrial_model: Option<ValueSource>,
    /// The endpoint registry table (SSM `/all_in_one_ai/config/meta/endpoint_table`).
    #[serde(default = "endpoint_table")]
    pub table: String,
    #[serde(default = "industrial_model_table")]
    pub industrial_model_table: String,
}

fn endpoint_table() -> String {
    "all_in_one_ai_endpoint".into()
}

fn industrial_model_table() -> String {
    "all_in_one_ai_industrial_model".into()
}

fn one() -> u32 {
    1
}

fn delete() -> DeletionPolicy {
    DeletionPolicy::Delete
}

pub const MODEL: AwsType = AwsType::SageMakerModel;
pub const ENDPOINT_CONFIG: AwsType = AwsType::SageMakerEndpointConfig;
pub const ENDPOINT: AwsType = AwsType::SageMakerEndpoint;
pub const REGISTRATION: AwsType = AwsType::DynamoDbEndpointRegistration;

/// A name derived from content when every field is known, else "known after apply".
fn derived_name(base: &str, object: &DesiredObject) -> ObjectName {
    if object.fully_known() {
        ObjectName::Known(hashed_name(
            base,
            &content_hash(&object.fields),
            rules::SAGEMAKER_NAME_MAX,
        ))
    } else {
        ObjectName::AfterApply {
            base: base.to_string(),
        }
    }
}

/// The Model's environment once every `valueFrom` is known (`None` until then). A value read
/// from another resource that the image would crash on yields no environment (a resource
/// stuck waiting is better than an endpoint that never passes its health check); the check is
/// the same as validation's for literals.
fn environment(spec: &EndpointSpec, ctx: &DesiredContext) -> Option<BTreeMap<String, String>> {
    let resolved: Option<BTreeMap<String, String>> = spec
        .environment
        .iter()
        .map(|(k, v)| v.resolve(ctx.outputs).map(|v| (k.clone(), v)))
        .collect();
    let resolved = resolved?;
    let inference = spec.contract.inference();
    let as_checked = resolved
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    if !inference
        .environment_problems(spec.contract.name(), &as_checked, &spec.endpoint_name)
        .is_empty()
    {
        return None;
    }
    Some(inference.model_environment(resolved, &spec.endpoint_name))
}

/// Why a production endpoint has nothing to serve yet: its ModelPromotion has read the
/// registry (it is converged) and no version is approved.
fn awaiting_approval(spec: &EndpointSpec, ctx: &DesiredContext) -> Option<String> {
    let promotion = spec.model_data.model_promotion.as_ref()?;
    let id = ResourceId::new(super::model_promotion::ModelPromotion::KIND, promotion);
    if !ctx.outputs.get(&id, "approvedVersion")?.is_empty() {
        return None;
    }
    let waiting = ctx
        .outputs
        .get(&id, "awaitingApproval")
        .filter(|v| !v.is_empty());
    Some(match waiting {
        Some(version) => format!(
            "{id} has no approved version yet: version {version} passed its evaluation and waits for approval (spec.approvedVersions, `sdop approve {id} {version} --reason ...`, or the SageMaker console)"
        ),
        None => format!(
            "{id} has no approved version yet (versions: {}); nothing to serve until one is approved",
            ctx.outputs.get(&id, "versions").filter(|v| !v.is_empty()).unwrap_or_else(|| "none".into())
        ),
    })
}

/// The registry record: named once the industrial model is known (given, or looked up by the
/// adapter).
fn registration_object(
    registration: &WebuiRegistration,
    endpoint_name: &str,
    ctx: &DesiredContext,
) -> DesiredObject {
    let model = registration
        .industrial_model
        .as_ref()
        .and_then(|m| m.resolve(ctx.outputs));
    let name = match &model {
        Some(id) => ObjectName::Known(format!("{}/{endpoint_name}/{id}", registration.table)),
        None => ObjectName::AfterApply {
            base: format!("{}/{endpoint_name}/", registration.table),
        },
    };
    let object = DesiredObject::new(REGISTRATION, name, Mutability::InPlace)
        .contract(RegistrationDesired {
            industrial_model: model,
        })
        .input("table", json!(registration.table))
        .input("endpointName", json!(endpoint_name));
    match &registration.industrial_model {
        // Given: no look-up.
        Some(_) => object,
        None => object.input(
            "industrialModelTable",
            json!(registration.industrial_model_table),
        ),
    }
}

impl Kind for Endpoint {
    const KIND: &'static str = "Endpoint";
    const OUTPUTS: &'static [&'static str] = &[
        "endpointName",
        "endpointArn",
        "endpointConfigName",
        "modelName",
        "webuiRegistration",
        "instanceType",
        "instanceCount",
        "hourlyCost",
        // What it serves now (its Model's, read back): a ModelPromotion's candidate.
        "modelData",
        "image",
        "modelEnvironment",
        "asyncOutputPath",
        "asyncFailurePath",
    ];
    type Spec = EndpointSpec;

    fn check(spec: &EndpointSpec, checks: &mut Checks) {
        checks.check(
            "spec.endpointName",
            rules::sagemaker_name(&spec.endpoint_name),
        );
        if let Some(deployment) = &spec.deployment {
            deployment.check(
                "spec.deployment",
                spec.instance_count,
                &spec.instance_type,
                checks,
            );
        }
        spec.image.check("spec.image", checks);
        match (
            &spec.model_data.model_archive,
            &spec.model_data.s3_uri,
            &spec.model_data.model_promotion,
        ) {
            (Some(_), None, None) | (None, None, Some(_)) => {}
            (None, Some(uri), None) => {
                if let Some(parsed) = checks.check("spec.modelData.s3Uri", rules::s3_uri(uri)) {
                    if parsed.key.is_empty()
                        || !(parsed.is_prefix() || parsed.key.ends_with(".tar.gz"))
                    {
                        checks.error(
                            "spec.modelData.s3Uri",
                            format!("{uri:?} must be a model.tar.gz object (ending .tar.gz) or an uncompressed model prefix (ending '/')"),
                        );
                    }
                }
            }
            _ => checks.error(
                "spec.modelData",
                "set exactly one of `modelArchive`, `modelPromotion` or `s3Uri`",
            ),
        }
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
                "endpoint instance type",
                &aws_models::SAGEMAKER_PRODUCTION_VARIANT_INSTANCE_TYPE,
                &spec.instance_type,
            );
        }
        if spec.instance_count == 0 {
            checks.error("spec.instanceCount", "instanceCount must be at least 1");
        }
        super::check_role_arn("spec.executionRoleArn", &spec.execution_role_arn, checks);
        if let Some(async_inference) = &spec.async_inference {
            checks.check(
                "spec.asyncInference.outputPath",
                rules::s3_uri(&async_inference.output_path),
            );
            if let Some(path) = &async_inference.failure_path {
                checks.check("spec.asyncInference.failurePath", rules::s3_uri(path));
            }
        }
        if let Some(autoscaling) = &spec.autoscaling {
            autoscaling.check(
                "spec.autoscaling",
                spec.async_inference.is_some(),
                spec.instance_count,
                checks,
            );
        }
        if let Some(smoke_check) = &spec.smoke_check {
            smoke_check.check(
                "spec.smokeCheck",
                spec.async_inference
                    .as_ref()
                    .map(|a| a.output_path.as_str()),
                checks,
            );
        }
        if let Some(vpc) = &spec.vpc_config {
            vpc.check("spec.vpcConfig", checks);
        }
        // The Model's environment (CreateModel's PrimaryContainer.Environment), with the
        // `endpoint_name` sdop adds.
        checks.check(
            "spec.environment",
            aws_models::SAGEMAKER_ENVIRONMENT_MAP.check(
                "the environment (with sdop's endpoint_name)",
                spec.environment.len()
                    + usize::from(!spec.environment.contains_key("endpoint_name")),
            ),
        );
        for (name, value) in &spec.environment {
            let at = format!("spec.environment.{name}");
            checks.aws(
                &at,
                "environment name",
                &aws_models::SAGEMAKER_ENVIRONMENT_KEY,
                name,
            );
            match value {
                ValueSource::Literal(text) => checks.aws(
                    &at,
                    "environment value",
                    &aws_models::SAGEMAKER_ENVIRONMENT_VALUE,
                    text,
                ),
                from => from.check(&at, checks),
            }
        }
        if let Some(max) = spec
            .async_inference
            .as_ref()
            .and_then(|a| a.max_concurrent_invocations_per_instance)
        {
            checks.check(
                "spec.asyncInference.maxConcurrentInvocationsPerInstance",
                aws_models::SAGEMAKER_MAX_CONCURRENT_INVOCATIONS_PER_INSTANCE
                    .check("maxConcurrentInvocationsPerInstance", i64::from(max)),
            );
        }
        if let Some(registration) = &spec.webui_registration {
            if let Some(model) = &registration.industrial_model {
                model.check("spec.webuiRegistration.industrialModel", checks);
            }
            for (path, table) in [
                ("spec.webuiRegistration.table", &registration.table),
                (
                    "spec.webuiRegistration.industrialModelTable",
                    &registration.industrial_model_table,
                ),
            ] {
                if table.is_empty() || table.contains('/') {
                    checks.error(path, format!("{table:?} is not a DynamoDB table name"));
                }
            }
        }
        let literal: BTreeMap<String, Option<String>> = spec
            .environment
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    ValueSource::Literal(text) => Some(text.clone()),
                    ValueSource::From { .. } | ValueSource::Ssm { .. } => None,
                };
                (k.clone(), text)
            })
            .collect();
        for (name, message) in spec.contract.inference().environment_problems(
            spec.contract.name(),
            &literal,
            &spec.endpoint_name,
        ) {
            checks.error(format!("spec.environment.{name}"), message);
        }
        if let Some(timeout) = spec.container_startup_health_check_timeout_seconds {
            checks.check(
                "spec.containerStartupHealthCheckTimeoutSeconds",
                aws_models::SAGEMAKER_PRODUCTION_VARIANT_CONTAINER_STARTUP_HEALTH_CHECK_TIMEOUT_IN_SECONDS
                    .check("containerStartupHealthCheckTimeoutSeconds", i64::from(timeout)),
            );
        }
        // The Model, EndpointConfig and Endpoint carry the tags, and the scalable target too.
        let services: &[TagRules] = if spec.autoscaling.is_some() {
            &[TagRules::SageMaker, TagRules::ApplicationAutoScaling]
        } else {
            &[TagRules::SageMaker]
        };
        checks.tags("spec.tags", &spec.tags, services);
    }

    fn references(spec: &EndpointSpec) -> Vec<Reference> {
        let mut refs: Vec<Reference> = spec.image.reference("spec.image").into_iter().collect();
        if let Some(archive) = &spec.model_data.model_archive {
            refs.push(Reference::to(
                "spec.modelData.modelArchive",
                ModelArchive::KIND,
                archive,
            ));
        }
        if let Some(promotion) = &spec.model_data.model_promotion {
            refs.push(Reference::to(
                "spec.modelData.modelPromotion",
                super::model_promotion::ModelPromotion::KIND,
                promotion,
            ));
        }
        refs.extend(spec.execution_role_arn.reference("spec.executionRoleArn"));
        if let Some(model) = spec
            .webui_registration
            .as_ref()
            .and_then(|r| r.industrial_model.as_ref())
        {
            refs.extend(model.reference("spec.webuiRegistration.industrialModel"));
        }
        if let Some(vpc) = &spec.vpc_config {
            refs.extend(vpc.references("spec.vpcConfig"));
        }
        refs.extend(
            spec.environment
                .iter()
                .filter_map(|(name, value)| value.reference(&format!("spec.environment.{name}"))),
        );
        refs.extend(super::tag_references(&spec.tags, "spec.tags"));
        refs
    }

    fn claims(spec: &EndpointSpec) -> Vec<(&'static str, Claim)> {
        vec![(
            "spec.endpointName",
            Claim::Unique(format!("SageMaker endpoint {:?}", spec.endpoint_name)),
        )]
    }

    fn spec_outputs(spec: &EndpointSpec) -> BTreeMap<String, String> {
        // The capacity it serves on, recorded in its status once converged: what it bills for.
        [
            ("endpointName".to_string(), spec.endpoint_name.clone()),
            ("instanceType".to_string(), spec.instance_type.clone()),
            ("instanceCount".to_string(), spec.instance_count.to_string()),
        ]
        .into_iter()
        .chain(spec.async_inference.iter().flat_map(|a| {
            [("asyncOutputPath".to_string(), a.output_path.clone())]
                .into_iter()
                .chain(
                    a.failure_path
                        .clone()
                        .map(|f| ("asyncFailurePath".to_string(), f)),
                )
        }))
        .collect()
    }

    fn permissions(spec: &EndpointSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        let name = &spec.endpoint_name;
        let mut grants = vec![
            super::iam::Grant::new(
                &[
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:DeleteModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DeleteEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DeleteEndpoint",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                    "sagemaker:DeleteTags",
                ],
                // Models and configs are named `<endpoint>-<content hash>`.
                vec![
                    super::iam::sagemaker_arn(None, "model", &format!("{name}-*")),
                    super::iam::sagemaker_arn(None, "endpoint-config", &format!("{name}-*")),
                    super::iam::sagemaker_arn(None, "endpoint", name),
                ],
            ),
            super::iam::pass_role(&spec.execution_role_arn),
            // A sweep lists every endpoint once (LastModifiedTime says which changed).
            super::iam::Grant::new(&["sagemaker:ListEndpoints"], vec!["*".into()]),
        ];
        if let Some(registration) = &spec.webui_registration {
            grants.push(super::iam::Grant::new(
                &[
                    "dynamodb:GetItem",
                    "dynamodb:Scan",
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                ],
                vec![format!("arn:aws:dynamodb:*:*:table/{}", registration.table)],
            ));
            grants.push(super::iam::Grant::new(
                &["dynamodb:Scan"],
                vec![format!(
                    "arn:aws:dynamodb:*:*:table/{}",
                    registration.industrial_model_table
                )],
            ));
        }
        if spec.autoscaling.is_some() {
            grants.extend(super::autoscaling::grants(name));
        }
        if spec.smoke_check.is_some() {
            grants.push(super::iam::Grant::new(
                &["sagemaker:InvokeEndpointAsync"],
                vec![super::iam::sagemaker_arn(None, "endpoint", name)],
            ));
        }
        (grants, Vec::new())
    }

    fn facts(spec: &EndpointSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    /// Which model the endpoint serves from when: each config it converged on, with its model
    /// data and, for a production endpoint, the promoted version.
    fn history(
        spec: &EndpointSpec,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
        references: &crate::model::outputs::Outputs,
    ) -> Vec<String> {
        let config = after.get("endpointConfigName");
        if config.is_none() || before.get("endpointConfigName") == config {
            return Vec::new();
        }
        let promoted = spec.model_data.model_promotion.as_ref().map(|name| {
            let id = ResourceId::new(super::model_promotion::ModelPromotion::KIND, name);
            format!(
                ", {id} version {} (approved: {})",
                references.get(&id, "approvedVersion").unwrap_or_default(),
                references.get(&id, "approvedBy").unwrap_or_default()
            )
        });
        vec![format!(
            "serving {} (model data {}{})",
            config.map_or("", String::as_str),
            after.get("modelData").map_or("?", String::as_str),
            promoted.unwrap_or_default()
        )]
    }

    fn desired(spec: &EndpointSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        let model_data: Option<Value> = match (
            &spec.model_data.model_archive,
            &spec.model_data.s3_uri,
        ) {
            (Some(archive), _) => {
                let id = ResourceId::new(ModelArchive::KIND, archive);
                match (
                    ctx.outputs.get(&id, "s3Uri"),
                    ctx.outputs.get(&id, "identity"),
                    ctx.outputs.get(&id, "format"),
                ) {
                    // `packageIdentity` keeps the name it had when the kind was
                    // `ModelPackage`: the model's name is a hash of these fields, so a new
                    // key would roll every endpoint out to an identical model.
                    (Some(uri), Some(identity), format) => Some(json!({
                        "s3Uri": uri,
                        "compression": if format.as_deref() == Some("uncompressed") { "None" } else { "Gzip" },
                        "packageIdentity": identity,
                    })),
                    _ => None,
                }
            }
            (None, Some(uri)) => Some(json!({
                "s3Uri": uri,
                "compression": if uri.ends_with('/') { "None" } else { "Gzip" },
            })),
            (None, None) => spec
                .model_data
                .model_promotion
                .as_ref()
                .and_then(|promotion| {
                    let id =
                        ResourceId::new(super::model_promotion::ModelPromotion::KIND, promotion);
                    // "" (no version approved, or none left): nothing to serve yet.
                    let approved = |key: &str| ctx.outputs.get(&id, key).filter(|v| !v.is_empty());
                    let uri = approved("approvedModelData")?;
                    Some(json!({
                        "s3Uri": uri,
                        "compression": if uri.ends_with('/') { "None" } else { "Gzip" },
                        "promotedVersion": format!("{id} version {}", approved("approvedVersion")?),
                    }))
                }),
        };
        let model = DesiredObject::new(
            MODEL,
            ObjectName::AfterApply {
                base: String::new(),
            },
            Mutability::Replace,
        )
        .field("image", spec.image.resolve(ctx.outputs).map(|i| json!(i)))
        .field("modelData", model_data)
        .field(
            "executionRoleArn",
            spec.execution_role_arn
                .resolve(ctx.outputs)
                .map(|r| json!(r)),
        )
        .field("environment", environment(spec, ctx).map(|e| json!(e)))
        .field("vpcConfig", super::vpc_field(&spec.vpc_config, ctx.outputs));
        let model = DesiredObject {
            name: derived_name(&spec.endpoint_name, &model),
            content_named: true,
            awaiting: awaiting_approval(spec, ctx),
            ..model
        };
        let config = DesiredObject::new(
            ENDPOINT_CONFIG,
            ObjectName::AfterApply {
                base: String::new(),
            },
            Mutability::Replace,
        )
        .field("modelName", model.name.known().map(|n| json!(n)))
        .field("instanceType", Some(json!(spec.instance_type)))
        .field("instanceCount", Some(json!(spec.instance_count)))
        .field("asyncInference", Some(json!(spec.async_inference)))
        .field(
            "containerStartupHealthCheckTimeoutSeconds",
            Some(json!(spec.container_startup_health_check_timeout_seconds)),
        );
        let config = DesiredObject {
            name: derived_name(&spec.endpoint_name, &config),
            content_named: true,
            ..config
        };
        let endpoint = DesiredObject::new(
            ENDPOINT,
            ObjectName::Known(spec.endpoint_name.clone()),
            Mutability::InPlace,
        )
        .contract(EndpointDesired {
            endpoint_config_name: config.name.known().map(str::to_string),
            tags: super::resolve_tags(&spec.tags, ctx.outputs),
        })
        .capacity(crate::cost::Capacity {
            instance_type: spec.instance_type.clone(),
            instance_count: spec.instance_count,
            while_running: false,
        });
        // How a rollout goes, not what the endpoint is: sent with UpdateEndpoint, not compared.
        let endpoint = match &spec.deployment {
            Some(deployment) => endpoint.input("deployment", json!(deployment)),
            None => endpoint,
        };
        let mut objects = vec![model, config, endpoint];
        if let Some(registration) = &spec.webui_registration {
            objects.push(registration_object(registration, &spec.endpoint_name, ctx));
        }
        if let (Some(check), Some(async_inference)) = (&spec.smoke_check, &spec.async_inference) {
            let config_name = objects[1].name.known().map(str::to_string);
            objects.push(check.desired(
                &spec.endpoint_name,
                config_name.as_deref(),
                &async_inference.output_path,
                async_inference.failure_path.as_deref(),
            ));
        }
        if let Some(autoscaling) = &spec.autoscaling {
            let tags = super::resolve_tags(&spec.tags, ctx.outputs);
            // After the rollout's smoke check passed, when there is one.
            let after = match objects.last() {
                Some(check) if check.verifies => (check.aws_type, check.name.display()),
                _ => (ENDPOINT, spec.endpoint_name.clone()),
            };
            objects.push(autoscaling.desired(
                &spec.endpoint_name,
                &spec.instance_type,
                tags,
                after,
            ));
        }
        objects
    }
}
