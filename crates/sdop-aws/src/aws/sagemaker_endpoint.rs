//! The three SageMaker objects behind an `Endpoint`: Model and EndpointConfig (immutable,
//! content-hash names, so never compared field by field) and the Endpoint itself, whose
//! config is switched with `UpdateEndpoint`. An update AWS rolled back (InService on the old
//! config with `FailureReason`) reads as Degraded.

use std::collections::BTreeMap;

use crate::kinds::deployment::Deployment;
use async_trait::async_trait;
use aws_sdk_sagemaker::types::{
    AsyncInferenceClientConfig, AsyncInferenceConfig, AsyncInferenceOutputConfig,
    ContainerDefinition, DeploymentConfig, EndpointStatus, ModelCompressionType, ModelDataSource,
    ProductionVariant, ProductionVariantInstanceType, S3ModelDataSource, S3ModelDataType, Tag,
    VpcConfig,
};
use serde_json::Value;

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::sweep::{all_pages, next_token};
use super::{classify, ownership_tags, read_ownership};
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::kinds::endpoint::{ENDPOINT, ENDPOINT_CONFIG, MODEL};
use crate::model::contracts::EndpointFields;

pub struct ModelAdapter;
pub struct EndpointConfigAdapter;
pub struct EndpointAdapter;

/// The `vpcConfig` field (subnets, security groups) of a model or training job, if set.
pub fn vpc_config(object: &DesiredObject) -> Option<VpcConfig> {
    let vpc = object.get("vpcConfig").filter(|v| !v.is_null())?;
    let list =
        |key: &str| -> Vec<String> { serde_json::from_value(vpc[key].clone()).unwrap_or_default() };
    Some(
        VpcConfig::builder()
            .set_subnets(Some(list("subnets")))
            .set_security_group_ids(Some(list("securityGroupIds")))
            .build(),
    )
}

/// SageMaker says "Could not find ..." (ValidationException) for a missing object.
pub(super) fn is_missing(err: &Error) -> bool {
    matches!(err, Error::Aws { code: Some(code), message, .. }
        if (code == "ValidationException" || code == "ResourceNotFound")
            && (message.contains("Could not find") || message.contains("not found") || message.contains("does not exist")))
}

pub(super) fn tags(ctx: &ObjectContext<'_>, object: &DesiredObject) -> Vec<Tag> {
    let user: BTreeMap<String, String> = object
        .get("tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    ownership_tags(ctx.resource, ctx.spec_hash, &user)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Puts a SageMaker resource's tags as the spec says: AddTags upserts, and a tag the spec no
/// longer has is deleted (sdop's ownership tags never are).
pub(super) async fn retag(
    ctx: &ObjectContext<'_>,
    object: &DesiredObject,
    arn: &str,
    change: &FieldChange,
) -> Result<()> {
    let sagemaker = &ctx.clients.sagemaker;
    let removed = super::removed_tag_keys(change);
    if !removed.is_empty() {
        sagemaker
            .delete_tags()
            .resource_arn(arn)
            .set_tag_keys(Some(removed))
            .send()
            .await
            .map_err(|e| classify("sagemaker:DeleteTags", e))?;
    }
    sagemaker
        .add_tags()
        .resource_arn(arn)
        .set_tags(Some(tags(ctx, object)))
        .send()
        .await
        .map_err(|e| classify("sagemaker:AddTags", e))?;
    Ok(())
}

/// UpdateEndpoint's `DeploymentConfig` from the manifest's guardrails.
fn deployment_config(d: &Deployment) -> DeploymentConfig {
    use crate::kinds::deployment::{CapacityUnit, TrafficShift};
    use aws_sdk_sagemaker::types::{
        Alarm, AutoRollbackConfig, BlueGreenUpdatePolicy, CapacitySize, CapacitySizeType,
        RollingUpdatePolicy, TrafficRoutingConfig, TrafficRoutingConfigType,
    };
    let size = |s: &crate::kinds::deployment::CapacitySize| {
        CapacitySize::builder()
            .r#type(match s.unit {
                CapacityUnit::InstanceCount => CapacitySizeType::InstanceCount,
                CapacityUnit::CapacityPercent => CapacitySizeType::CapacityPercent,
            })
            .value(i32::try_from(s.value).unwrap_or(i32::MAX))
            .build()
    };
    let seconds = |s: u32| i32::try_from(s).unwrap_or(i32::MAX);
    let mut config = DeploymentConfig::builder();
    if let Some(bg) = &d.blue_green {
        let routing = &bg.traffic_routing;
        let mut traffic = TrafficRoutingConfig::builder()
            .r#type(match routing.shift {
                TrafficShift::AllAtOnce => TrafficRoutingConfigType::AllAtOnce,
                TrafficShift::Canary => TrafficRoutingConfigType::Canary,
                TrafficShift::Linear => TrafficRoutingConfigType::Linear,
            })
            .wait_interval_in_seconds(seconds(routing.wait_interval_seconds));
        if let Some(canary) = &routing.canary_size {
            traffic = traffic.canary_size(size(canary));
        }
        if let Some(step) = &routing.linear_step_size {
            traffic = traffic.linear_step_size(size(step));
        }
        let mut policy =
            BlueGreenUpdatePolicy::builder().traffic_routing_configuration(traffic.build());
        if let Some(wait) = bg.termination_wait_seconds {
            policy = policy.termination_wait_in_seconds(seconds(wait));
        }
        if let Some(max) = bg.maximum_execution_timeout_seconds {
            policy = policy.maximum_execution_timeout_in_seconds(seconds(max));
        }
        config = config.blue_green_update_policy(policy.build());
    }
    if let Some(rolling) = &d.rolling {
        let mut policy = RollingUpdatePolicy::builder()
            .maximum_batch_size(size(&rolling.maximum_batch_size))
            .wait_interval_in_seconds(seconds(rolling.wait_interval_seconds));
        if let Some(max) = rolling.maximum_execution_timeout_seconds {
            policy = policy.maximum_execution_timeout_in_seconds(seconds(max));
        }
        if let Some(back) = &rolling.rollback_maximum_batch_size {
            policy = policy.rollback_maximum_batch_size(size(back));
        }
        config = config.rolling_update_policy(policy.build());
    }
    if !d.auto_rollback_alarms.is_empty() {
        let alarms = d
            .auto_rollback_alarms
            .iter()
            .map(|name| Alarm::builder().alarm_name(name).build())
            .collect();
        config = config.auto_rollback_configuration(
            AutoRollbackConfig::builder()
                .set_alarms(Some(alarms))
                .build(),
        );
    }
    config.build()
}

/// A SageMaker resource's tags (ListTags).
pub(super) async fn sagemaker_tags(
    clients: &super::Clients,
    arn: &str,
) -> Result<BTreeMap<String, String>> {
    let out = clients
        .sagemaker
        .list_tags()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListTags", e))?;
    Ok(out
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// A SageMaker object's tags for a read: from the sweep's Tagging API listing when it has
/// them (confirmed by the cloud seam), else ListTags.
pub(super) async fn tags_for_read(
    ctx: &ObjectContext<'_>,
    arn: &str,
) -> Result<BTreeMap<String, String>> {
    match ctx.shared_tags(arn).await? {
        Some(tags) => Ok(tags),
        None => sagemaker_tags(ctx.clients, arn).await,
    }
}

/// Ownership of an ARN: trusted from sdop's state, else read from its tags (one more call).
pub(super) async fn ownership(
    ctx: &ObjectContext<'_>,
    arn: &str,
) -> Result<(Ownership, Option<BTreeMap<String, String>>)> {
    if ctx.owned_per_state {
        return Ok((
            Ownership::Owned {
                resource: ctx.resource.clone(),
            },
            None,
        ));
    }
    let tags = tags_for_read(ctx, arn).await?;
    let (owner, user) = read_ownership(&tags);
    Ok(match owner {
        Some(owner) => (Ownership::Owned { resource: owner }, Some(user)),
        _ => (Ownership::Foreign, Some(user)),
    })
}

fn known_name(object: &DesiredObject) -> Result<&str> {
    object
        .name
        .known()
        .ok_or_else(|| Error::Terminal(format!("{} name not known yet", object.aws_type)))
}

/// A text field the call needs: missing or not text is an error, never `""` sent to AWS.
fn required<'a>(object: &'a DesiredObject, name: &str) -> Result<&'a str> {
    object.get(name).and_then(Value::as_str).ok_or_else(|| {
        Error::Terminal(format!(
            "{} {}: {name} is missing or not text",
            object.aws_type,
            object.name.display()
        ))
    })
}

#[async_trait]
impl Adapter for ModelAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        MODEL
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let Some(model) = absent_if(
            ctx.clients
                .sagemaker
                .describe_model()
                .model_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeModel", e)),
            is_missing,
        )?
        else {
            return Ok(None);
        };
        let arn = model.model_arn().unwrap_or_default().to_string();
        let (ownership, _) = ownership(ctx, &arn).await?;
        let mut observed =
            ObservedObject::new(ObjectKey::new(MODEL, name), BTreeMap::new(), ownership);
        observed
            .outputs
            .insert("modelName".into(), name.to_string());
        observed.outputs.insert("modelArn".into(), arn);
        if let Some(container) = model.primary_container() {
            let data = container.model_data_url().or_else(|| {
                container
                    .model_data_source()
                    .and_then(|d| d.s3_data_source())
                    .and_then(|s| s.s3_uri())
            });
            if let Some(data) = data {
                observed
                    .outputs
                    .insert("modelData".into(), data.to_string());
            }
            if let Some(image) = container.image() {
                observed.outputs.insert("image".into(), image.to_string());
            }
            // What a ModelPromotion registers as the candidate's environment (sorted).
            let environment: std::collections::BTreeMap<&String, &String> =
                container.environment().into_iter().flatten().collect();
            observed.outputs.insert(
                "modelEnvironment".into(),
                serde_json::to_string(&environment).unwrap_or_default(),
            );
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = known_name(object)?;
        let data = object.get("modelData").cloned().unwrap_or(Value::Null);
        let uri = data["s3Uri"].as_str().ok_or_else(|| {
            Error::Terminal(format!(
                "sagemaker:model {name}: modelData.s3Uri is missing"
            ))
        })?;
        let mut container = ContainerDefinition::builder().image(required(object, "image")?);
        if data["compression"] == "None" {
            container = container.model_data_source(
                ModelDataSource::builder()
                    .s3_data_source(
                        S3ModelDataSource::builder()
                            .s3_uri(uri)
                            .s3_data_type(S3ModelDataType::S3Prefix)
                            .compression_type(ModelCompressionType::None)
                            .build(),
                    )
                    .build(),
            );
        } else {
            container = container.model_data_url(uri);
        }
        let environment: BTreeMap<String, String> = object
            .get("environment")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        for (k, v) in environment {
            container = container.environment(k, v);
        }
        let mut request = ctx
            .clients
            .sagemaker
            .create_model()
            .model_name(name)
            .execution_role_arn(required(object, "executionRoleArn")?)
            .primary_container(container.build())
            .set_tags(Some(tags(ctx, object)));
        if let Some(vpc) = vpc_config(object) {
            request = request.vpc_config(vpc);
        }
        request
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateModel", e))?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // Content-named and immutable: a change is a new name, never an update.
        let _ = (ctx, object);
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .sagemaker
                .delete_model()
                .model_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DeleteModel", e)),
            is_missing,
        )
        .map(|_| ())
    }
}

#[async_trait]
impl Adapter for EndpointConfigAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        ENDPOINT_CONFIG
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let Some(config) = absent_if(
            ctx.clients
                .sagemaker
                .describe_endpoint_config()
                .endpoint_config_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeEndpointConfig", e)),
            is_missing,
        )?
        else {
            return Ok(None);
        };
        let arn = config.endpoint_config_arn().unwrap_or_default().to_string();
        let (ownership, _) = ownership(ctx, &arn).await?;
        let mut observed = ObservedObject::new(
            ObjectKey::new(ENDPOINT_CONFIG, name),
            BTreeMap::new(),
            ownership,
        );
        observed
            .outputs
            .insert("endpointConfigName".into(), name.to_string());
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = known_name(object)?;
        let mut variant = ProductionVariant::builder()
            .variant_name("AllTraffic")
            .model_name(required(object, "modelName")?)
            .instance_type(ProductionVariantInstanceType::from(required(
                object,
                "instanceType",
            )?))
            .initial_instance_count(
                object
                    .get("instanceCount")
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::Terminal(format!(
                            "sagemaker:endpoint-config {name}: instanceCount is missing"
                        ))
                    })?,
            );
        if let Some(timeout) = object
            .get("containerStartupHealthCheckTimeoutSeconds")
            .and_then(Value::as_i64)
        {
            variant = variant.container_startup_health_check_timeout_in_seconds(timeout as i32);
        }
        let mut request = ctx
            .clients
            .sagemaker
            .create_endpoint_config()
            .endpoint_config_name(name)
            .production_variants(variant.build())
            .set_tags(Some(tags(ctx, object)));
        if let Some(async_inference) = object.get("asyncInference").filter(|v| !v.is_null()) {
            let mut output = AsyncInferenceOutputConfig::builder().s3_output_path(
                async_inference["outputPath"].as_str().ok_or_else(|| {
                    Error::Terminal(format!(
                        "sagemaker:endpoint-config {name}: asyncInference.outputPath is missing"
                    ))
                })?,
            );
            if let Some(path) = async_inference["failurePath"].as_str() {
                output = output.s3_failure_path(path);
            }
            let mut config = AsyncInferenceConfig::builder().output_config(output.build());
            if let Some(max) = async_inference["maxConcurrentInvocationsPerInstance"].as_i64() {
                config = config.client_config(
                    AsyncInferenceClientConfig::builder()
                        .max_concurrent_invocations_per_instance(max as i32)
                        .build(),
                );
            }
            request = request.async_inference_config(config.build());
        }
        request
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateEndpointConfig", e))?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        _ctx: &ObjectContext<'_>,
        _object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .sagemaker
                .delete_endpoint_config()
                .endpoint_config_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DeleteEndpointConfig", e)),
            is_missing,
        )
        .map(|_| ())
    }
}

/// Output: what sdop's last DescribeEndpoint saw of an endpoint InService ([`ReadMark`]).
const READ_MARK: &str = "endpointDescribed";

/// An endpoint as last described: `LASTMODIFIED CONFIG [COUNT]` (neither holds a space).
#[derive(Debug, Clone, PartialEq)]
struct ReadMark {
    last_modified: String,
    config: String,
    count: Option<i32>,
}

impl std::fmt::Display for ReadMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.last_modified, self.config)?;
        match self.count {
            Some(count) => write!(f, " {count}"),
            None => Ok(()),
        }
    }
}

impl ReadMark {
    fn parse(text: &str) -> Option<ReadMark> {
        let mut parts = text.split(' ');
        let (last_modified, config) = (parts.next()?, parts.next()?);
        let count = match parts.next() {
            Some(count) => Some(count.parse().ok()?),
            None => None,
        };
        (parts.next().is_none() && !last_modified.is_empty() && !config.is_empty()).then(|| {
            ReadMark {
                last_modified: last_modified.to_string(),
                config: config.to_string(),
                count,
            }
        })
    }
}

/// Pages of ListEndpoints (100 endpoints each) a sweep reads at most.
const ENDPOINT_PAGES: usize = 5;

/// Every endpoint of the region by name: (ARN, status, LastModifiedTime); `None` past
/// [`ENDPOINT_PAGES`] pages.
async fn all_endpoints(
    clients: &super::Clients,
) -> Result<Option<BTreeMap<String, (String, String, String)>>> {
    let summaries = all_pages(ENDPOINT_PAGES, |token| async move {
        let page = clients
            .sagemaker
            .list_endpoints()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify("sagemaker:ListEndpoints", e))?;
        Ok((page.endpoints().to_vec(), next_token(page.next_token())))
    })
    .await?;
    Ok(summaries.map(|all| {
        all.into_iter()
            .map(|summary| {
                (
                    summary.endpoint_name().unwrap_or_default().to_string(),
                    (
                        summary.endpoint_arn().unwrap_or_default().to_string(),
                        summary
                            .endpoint_status()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        summary
                            .last_modified_time()
                            .map(|t| t.to_string())
                            .unwrap_or_default(),
                    ),
                )
            })
            .collect()
    }))
}

/// In a sweep: the endpoint as this resource last described it, when one ListEndpoints for
/// the whole region shows it InService under the same ARN and LastModifiedTime. Every change
/// to an endpoint goes through UpdateEndpoint or UpdateEndpointWeightsAndCapacities (what
/// Application Auto Scaling calls), and "SageMaker sets the endpoint status to Updating" for
/// either (API_UpdateEndpoint, API_UpdateEndpointWeightsAndCapacities), which moves its
/// LastModifiedTime; so an unchanged time means an unchanged config and instance count. Its
/// tags come from the sweep's Tagging API listing and are confirmed like any other's. `None`:
/// describe it.
async fn unchanged_since_read(
    ctx: &ObjectContext<'_>,
    name: &str,
) -> Result<Option<ObservedObject>> {
    let Some(recorded) = ctx.recorded_outputs else {
        return Ok(None);
    };
    let (Some(arn), Some(mark)) = (
        recorded.get("endpointArn"),
        recorded.get(READ_MARK).and_then(|m| ReadMark::parse(m)),
    ) else {
        return Ok(None);
    };
    let clients = ctx.clients;
    let Some(listed) = ctx
        .shared("sagemaker:ListEndpoints", || all_endpoints(clients))
        .await?
    else {
        return Ok(None);
    };
    let same = listed
        .as_ref()
        .as_ref()
        .and_then(|all| all.get(name))
        .is_some_and(|(listed_arn, status, listed_modified)| {
            listed_arn == arn && status == "InService" && *listed_modified == mark.last_modified
        });
    if !same {
        return Ok(None);
    }
    let Some(tags) = ctx.shared_tags(arn).await? else {
        return Ok(None);
    };
    let (owner, user_tags) = read_ownership(&tags);
    let ownership = match owner {
        Some(owner) => Ownership::Owned { resource: owner },
        None => Ownership::Foreign,
    };
    let mut observed = EndpointFields {
        endpoint_config_name: mark.config.clone(),
        tags: user_tags,
    }
    .observed(name, ownership);
    observed.state = ObjectState::Ready;
    let outputs = &mut observed.outputs;
    outputs.insert("endpointName".into(), name.to_string());
    outputs.insert("endpointArn".into(), arn.clone());
    outputs.insert("endpointConfigName".into(), mark.config.clone());
    if let Some(count) = mark.count {
        outputs.insert(
            crate::model::outputs::CURRENT_INSTANCE_COUNT.into(),
            count.to_string(),
        );
    }
    outputs.insert(READ_MARK.into(), mark.to_string());
    Ok(Some(observed))
}

#[async_trait]
impl Adapter for EndpointAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        ENDPOINT
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        if let Some(unchanged) = unchanged_since_read(ctx, name).await? {
            return Ok(Some(unchanged));
        }
        let Some(endpoint) = absent_if(
            ctx.clients
                .sagemaker
                .describe_endpoint()
                .endpoint_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeEndpoint", e)),
            is_missing,
        )?
        else {
            return Ok(None);
        };
        let arn = endpoint.endpoint_arn().unwrap_or_default().to_string();
        // The tags are a spec field: read on every pass (one ListTags), so a tag changed or
        // removed behind sdop's back is seen and put back. An endpoint that finishes deleting
        // between the two calls is gone.
        let tags = match tags_for_read(ctx, &arn).await {
            Err(err) if is_missing(&err) => return Ok(None),
            tags => tags?,
        };
        let (owner, user_tags) = read_ownership(&tags);
        let ownership = match owner {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let config = endpoint
            .endpoint_config_name()
            .unwrap_or_default()
            .to_string();
        let mut observed = EndpointFields {
            endpoint_config_name: config.clone(),
            tags: user_tags,
        }
        .observed(name, ownership);
        let reason = endpoint.failure_reason().map(str::to_string);
        observed.state = match endpoint.endpoint_status() {
            Some(EndpointStatus::InService) => match reason {
                Some(reason) => ObjectState::Degraded(reason),
                None => ObjectState::Ready,
            },
            Some(EndpointStatus::Failed) => {
                ObjectState::Failed(reason.unwrap_or_else(|| "endpoint failed".into()))
            }
            Some(EndpointStatus::Deleting) => ObjectState::Deleting("Deleting".into()),
            Some(status) => ObjectState::Progressing(status.as_str().to_string()),
            None => ObjectState::Progressing("unknown".into()),
        };
        observed
            .outputs
            .insert("endpointName".into(), name.to_string());
        observed.outputs.insert("endpointArn".into(), arn);
        observed
            .outputs
            .insert("endpointConfigName".into(), config.clone());
        // Kept only for an endpoint InService without a failure: what a sweep's ListEndpoints
        // compares to trust this read's config name and count next time, in one value (the
        // resource's outputs also hold its newest config's name under `endpointConfigName`).
        let count = endpoint
            .production_variants()
            .first()
            .and_then(|v| v.current_instance_count());
        if let (ObjectState::Ready, Some(modified)) =
            (&observed.state, endpoint.last_modified_time())
        {
            observed.outputs.insert(
                READ_MARK.into(),
                ReadMark {
                    last_modified: modified.to_string(),
                    config,
                    count,
                }
                .to_string(),
            );
        }
        // What runs now (autoscaling moves it, down to 0): what `sdop get` prices.
        if let Some(count) = count {
            observed.outputs.insert(
                crate::model::outputs::CURRENT_INSTANCE_COUNT.into(),
                count.to_string(),
            );
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        ctx.clients
            .sagemaker
            .create_endpoint()
            .endpoint_name(known_name(object)?)
            .endpoint_config_name(EndpointFields::of(object)?.endpoint_config_name)
            .set_tags(Some(tags(ctx, object)))
            .send()
            .await
            .map_err(|e| classify("sagemaker:CreateEndpoint", e))?;
        Ok(ObjectState::Progressing("Creating".into()))
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState> {
        let name = known_name(object)?;
        let sagemaker = &ctx.clients.sagemaker;
        let mut state = ObjectState::Ready;
        if let Some(change) = changes.iter().find(|c| c.field == "tags") {
            // The ARN as AWS reports it (it holds the account id).
            let arn = sagemaker
                .describe_endpoint()
                .endpoint_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DescribeEndpoint", e))?
                .endpoint_arn()
                .map(str::to_string)
                .ok_or_else(|| Error::Terminal(format!("endpoint {name} has no ARN")))?;
            retag(ctx, object, &arn, change).await?;
        }
        if changes.iter().any(|c| c.field == "endpointConfigName") {
            let guardrails = object
                .inputs
                .get("deployment")
                .map(|d| serde_json::from_value::<Deployment>(d.clone()))
                .transpose()
                .map_err(|e| Error::Terminal(format!("spec.deployment: {e}")))?
                .map(|d| deployment_config(&d));
            sagemaker
                .update_endpoint()
                .endpoint_name(name)
                .endpoint_config_name(EndpointFields::of(object)?.endpoint_config_name)
                .set_deployment_config(guardrails)
                .send()
                .await
                .map_err(|e| classify("sagemaker:UpdateEndpoint", e))?;
            state = ObjectState::Progressing("Updating".into());
        }
        Ok(state)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .sagemaker
                .delete_endpoint()
                .endpoint_name(name)
                .send()
                .await
                .map_err(|e| classify("sagemaker:DeleteEndpoint", e)),
            is_missing,
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::ReadMark;

    #[test]
    fn a_read_mark_reads_back_what_it_wrote_and_nothing_else() {
        for count in [Some(0), Some(3), None] {
            let mark = ReadMark {
                last_modified: "2026-12-06T08:00:00.123Z".into(),
                config: "sd-base-0123abcd".into(),
                count,
            };
            assert_eq!(ReadMark::parse(&mark.to_string()), Some(mark));
        }
        for bad in ["", "2026-12-06T08:00:00Z", "t c x", "t c 1 extra", " c 1"] {
            assert_eq!(ReadMark::parse(bad), None, "{bad:?}");
        }
    }
}
