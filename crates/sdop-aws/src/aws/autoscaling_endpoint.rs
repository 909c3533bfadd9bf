//! `application-autoscaling:endpoint-scaling`: an asynchronous endpoint's autoscaling as the
//! SageMaker developer guide sets it up (see `kinds::autoscaling`): the scalable target (tagged
//! as sdop's), the target-tracking policy on the backlog per instance, and, when it may scale
//! to zero, the step policy and the CloudWatch alarm on `HasBacklogWithoutCapacity` that scale
//! it out again. Read, created, updated and deleted together; the scalable target's tags say
//! whose it is (policies cannot be tagged; the alarm is tagged too).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_applicationautoscaling::types::{
    AdjustmentType, CustomizedMetricSpecification, MetricAggregationType, MetricDimension,
    MetricStatistic, PolicyType, ScalableDimension, ScalableTarget, ScalingPolicy,
    ServiceNamespace, StepAdjustment, StepScalingPolicyConfiguration,
    TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};
use serde_json::Value;

use super::adapters::{Adapter, ObjectContext};
use super::sweep::{all_pages, next_token};
use super::{classify, is_not_found, ownership_tags, read_ownership};
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject, Ownership};
use crate::error::{Error, Result};
use crate::kinds::autoscaling::{
    backlog_alarm, endpoint_of, step_policy, target_tracking_policy, AWS_TYPE,
};
use crate::model::contracts::ScalingFields;

pub struct EndpointScalingAdapter;

/// The guide's metric names (AWS/SageMaker, dimension EndpointName).
const NAMESPACE: &str = "AWS/SageMaker";
const BACKLOG_PER_INSTANCE: &str = "ApproximateBacklogSizePerInstance";
const BACKLOG_WITHOUT_CAPACITY: &str = "HasBacklogWithoutCapacity";
/// The guide's step policy: +1 instance, 300 s cooldown; its alarm: Average over 60 s, 2 of 2
/// periods at >= 1, missing data treated as missing.
const STEP_COOLDOWN: i32 = 300;
const ALARM_PERIOD: i32 = 60;
const ALARM_EVALUATION_PERIODS: i32 = 2;
const ALARM_THRESHOLD: f64 = 1.0;

fn dimension() -> ScalableDimension {
    ScalableDimension::SageMakerVariantDesiredInstanceCount
}

fn endpoint(name: &str) -> Result<&str> {
    endpoint_of(name).ok_or_else(|| {
        Error::Terminal(format!(
            "{name:?} is not endpoint/NAME/variant/{}",
            crate::kinds::autoscaling::VARIANT
        ))
    })
}

/// A policy setting the kind always gives (`None` only on what is read back).
fn required<T>(value: Option<T>, field: &str) -> Result<T> {
    value.ok_or_else(|| Error::Terminal(format!("{AWS_TYPE}: {field} is not set")))
}

/// The tag that records the instance type the variant was registered with.
const TAG_INSTANCE_TYPE: &str = "sdop.io/instance-type";

fn tags_of(object: &DesiredObject, ctx: &ObjectContext<'_>) -> Result<BTreeMap<String, String>> {
    let fields = ScalingFields::of(object)?;
    let mut tags = ownership_tags(ctx.resource, ctx.spec_hash, &fields.tags);
    if let Some(instance_type) = fields.instance_type {
        tags.insert(TAG_INSTANCE_TYPE.into(), instance_type);
    }
    Ok(tags)
}

/// Registers (or re-registers) the target and puts its policies and alarm; the target's ARN.
async fn put_all(
    ctx: &ObjectContext<'_>,
    object: &DesiredObject,
    tag: bool,
) -> Result<Option<String>> {
    let name = object
        .name
        .known()
        .ok_or_else(|| Error::Terminal("scalable target name not known yet".into()))?;
    let endpoint_name = endpoint(name)?;
    let fields = ScalingFields::of(object)?;
    let tags = tags_of(object, ctx)?;
    let register = ctx
        .clients
        .autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_id(name)
        .scalable_dimension(dimension())
        .min_capacity(fields.min_capacity)
        .max_capacity(fields.max_capacity);
    let register = if tag {
        register.set_tags(Some(tags.clone().into_iter().collect::<HashMap<_, _>>()))
    } else {
        register
    };
    let registered = register
        .send()
        .await
        .map_err(|e| classify("application-autoscaling:RegisterScalableTarget", e))?;
    let arn = registered.scalable_target_arn().map(str::to_string);

    let metric = CustomizedMetricSpecification::builder()
        .metric_name(BACKLOG_PER_INSTANCE)
        .namespace(NAMESPACE)
        .dimensions(
            MetricDimension::builder()
                .name("EndpointName")
                .value(endpoint_name)
                .build()
                .map_err(build_error)?,
        )
        .statistic(MetricStatistic::Average)
        .build();
    let tracking = TargetTrackingScalingPolicyConfiguration::builder()
        .target_value(required(
            fields.target_backlog_per_instance,
            "targetBacklogPerInstance",
        )?)
        .customized_metric_specification(metric)
        .scale_in_cooldown(required(
            fields.scale_in_cooldown_seconds,
            "scaleInCooldownSeconds",
        )?)
        .scale_out_cooldown(required(
            fields.scale_out_cooldown_seconds,
            "scaleOutCooldownSeconds",
        )?)
        .build()
        .map_err(build_error)?;
    ctx.clients
        .autoscaling
        .put_scaling_policy()
        .policy_name(target_tracking_policy(endpoint_name))
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_id(name)
        .scalable_dimension(dimension())
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(tracking)
        .send()
        .await
        .map_err(|e| classify("application-autoscaling:PutScalingPolicy", e))?;

    if fields.scale_out_from_zero {
        let step = StepScalingPolicyConfiguration::builder()
            .adjustment_type(AdjustmentType::ChangeInCapacity)
            .metric_aggregation_type(MetricAggregationType::Average)
            .cooldown(STEP_COOLDOWN)
            .step_adjustments(
                StepAdjustment::builder()
                    .metric_interval_lower_bound(0.0)
                    .scaling_adjustment(1)
                    .build()
                    .map_err(build_error)?,
            )
            .build();
        let policy = ctx
            .clients
            .autoscaling
            .put_scaling_policy()
            .policy_name(step_policy(endpoint_name))
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(name)
            .scalable_dimension(dimension())
            .policy_type(PolicyType::StepScaling)
            .step_scaling_policy_configuration(step)
            .send()
            .await
            .map_err(|e| classify("application-autoscaling:PutScalingPolicy", e))?;
        let policy_arn = policy.policy_arn().to_string();
        let alarm = ctx
            .clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(backlog_alarm(endpoint_name))
            .alarm_description(format!(
                "sdop {}: scales {endpoint_name} out from zero instances when requests wait",
                ctx.resource
            ))
            .namespace(NAMESPACE)
            .metric_name(BACKLOG_WITHOUT_CAPACITY)
            .dimensions(
                Dimension::builder()
                    .name("EndpointName")
                    .value(endpoint_name)
                    .build(),
            )
            .statistic(Statistic::Average)
            .period(ALARM_PERIOD)
            .evaluation_periods(ALARM_EVALUATION_PERIODS)
            .datapoints_to_alarm(ALARM_EVALUATION_PERIODS)
            .threshold(ALARM_THRESHOLD)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .treat_missing_data("missing")
            .alarm_actions(policy_arn);
        let alarm = tags.iter().fold(alarm, |a, (k, v)| {
            a.tags(Tag::builder().key(k).value(v).build())
        });
        alarm
            .send()
            .await
            .map_err(|e| classify("cloudwatch:PutMetricAlarm", e))?;
    } else {
        delete_scale_out_from_zero(ctx, name, endpoint_name).await?;
    }
    Ok(arn)
}

fn build_error(err: aws_smithy_types::error::operation::BuildError) -> Error {
    Error::Terminal(format!("{AWS_TYPE}: {err}"))
}

/// Removes the step policy and its alarm (already gone is success).
async fn delete_scale_out_from_zero(
    ctx: &ObjectContext<'_>,
    name: &str,
    endpoint_name: &str,
) -> Result<()> {
    ctx.clients
        .cloudwatch
        .delete_alarms()
        .alarm_names(backlog_alarm(endpoint_name))
        .send()
        .await
        .map_err(|e| classify("cloudwatch:DeleteAlarms", e))?;
    delete_policy(ctx, name, &step_policy(endpoint_name)).await
}

async fn delete_policy(ctx: &ObjectContext<'_>, name: &str, policy: &str) -> Result<()> {
    let deleted = ctx
        .clients
        .autoscaling
        .delete_scaling_policy()
        .policy_name(policy)
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_id(name)
        .scalable_dimension(dimension())
        .send()
        .await;
    match deleted {
        Ok(_) => Ok(()),
        Err(err) => {
            let err = classify("application-autoscaling:DeleteScalingPolicy", err);
            // "No scaling policy found" is a ValidationException or ObjectNotFoundException.
            if is_not_found(&err, &["ObjectNotFoundException", "ValidationException"]) {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

/// What the policies say, as the desired object's fields.
/// The target-tracking policy's target and cooldowns; `None` each when the target was
/// registered but never given its policy (a kill between the calls): a difference, so the next
/// pass puts it.
fn policy_fields(
    policies: &[ScalingPolicy],
    endpoint_name: &str,
) -> (Option<f64>, Option<i32>, Option<i32>) {
    let tracking = policies
        .iter()
        .find(|p| p.policy_name() == target_tracking_policy(endpoint_name))
        .and_then(ScalingPolicy::target_tracking_scaling_policy_configuration);
    match tracking {
        Some(tracking) => (
            Some(tracking.target_value()),
            tracking.scale_in_cooldown(),
            tracking.scale_out_cooldown(),
        ),
        None => (None, None, None),
    }
}

/// Pages a sweep's listing of targets, policies or alarms reads at most (50 to 100 each);
/// past it the listing answers `None` and each endpoint's are read on their own.
const SHARED_PAGES: usize = 5;

/// SageMaker's scalable targets: `only`'s, or every one (a sweep's listing).
async fn sagemaker_targets(
    clients: &super::Clients,
    only: Option<&str>,
) -> Result<Option<Vec<ScalableTarget>>> {
    all_pages(SHARED_PAGES, |token| async move {
        let page = clients
            .autoscaling
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Sagemaker)
            .set_resource_ids(only.map(|id| vec![id.to_string()]))
            .scalable_dimension(dimension())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify("application-autoscaling:DescribeScalableTargets", e))?;
        Ok((
            page.scalable_targets().to_vec(),
            next_token(page.next_token()),
        ))
    })
    .await
}

/// SageMaker's scaling policies: `only` target's, or every one (a sweep's listing).
async fn sagemaker_policies(
    clients: &super::Clients,
    only: Option<&str>,
) -> Result<Option<Vec<ScalingPolicy>>> {
    all_pages(SHARED_PAGES, |token| async move {
        let page = clients
            .autoscaling
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Sagemaker)
            .set_resource_id(only.map(str::to_string))
            .scalable_dimension(dimension())
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify("application-autoscaling:DescribeScalingPolicies", e))?;
        Ok((
            page.scaling_policies().to_vec(),
            next_token(page.next_token()),
        ))
    })
    .await
}

/// The alarm named `only`, or every alarm whose name starts with `sdop-` (a sweep's listing).
async fn sdop_alarms(
    clients: &super::Clients,
    only: Option<&str>,
) -> Result<Option<Vec<MetricAlarm>>> {
    all_pages(SHARED_PAGES, |token| async move {
        let request = clients.cloudwatch.describe_alarms().set_next_token(token);
        let request = match only {
            Some(name) => request.alarm_names(name),
            None => request.alarm_name_prefix("sdop-").max_records(100),
        };
        let page = request
            .send()
            .await
            .map_err(|e| classify("cloudwatch:DescribeAlarms", e))?;
        Ok((page.metric_alarms().to_vec(), next_token(page.next_token())))
    })
    .await
}

#[async_trait]
impl Adapter for EndpointScalingAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let endpoint_name = endpoint(name)?;
        let clients = ctx.clients;
        // In a sweep, one listing of the namespace's targets, one of its policies and one of
        // sdop's alarms answer for every endpoint; alone, each asks for this target only.
        let targets: Vec<ScalableTarget> = match ctx
            .shared(
                "application-autoscaling:DescribeScalableTargets sagemaker",
                || sagemaker_targets(clients, None),
            )
            .await?
        {
            Some(all) if all.is_some() => all.as_ref().clone().unwrap_or_default(),
            _ => sagemaker_targets(clients, Some(name))
                .await?
                .unwrap_or_default(),
        };
        let Some(target) = targets.iter().find(|t| t.resource_id() == name) else {
            return Ok(None);
        };
        let tags: BTreeMap<String, String> = match target.scalable_target_arn() {
            Some(arn) => match ctx.shared_tags(arn).await? {
                Some(tags) => tags,
                None => ctx
                    .clients
                    .autoscaling
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(|e| classify("application-autoscaling:ListTagsForResource", e))?
                    .tags()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            },
            None => BTreeMap::new(),
        };
        let (owner, user_tags) = read_ownership(&tags);
        let instance_type = tags.get(TAG_INSTANCE_TYPE).cloned();
        let ownership = match owner {
            Some(resource) => Ownership::Owned { resource },
            None => Ownership::Foreign,
        };
        let policies: Vec<ScalingPolicy> = match ctx
            .shared(
                "application-autoscaling:DescribeScalingPolicies sagemaker",
                || sagemaker_policies(clients, None),
            )
            .await?
        {
            Some(all) if all.is_some() => all.as_ref().clone().unwrap_or_default(),
            _ => sagemaker_policies(clients, Some(name))
                .await?
                .unwrap_or_default(),
        };
        // moto matches ResourceId as a substring, and a shared listing has every target's:
        // keep only this target's policies.
        let policies: Vec<ScalingPolicy> = policies
            .into_iter()
            .filter(|p| p.resource_id() == name)
            .collect();
        let (target_backlog, scale_in, scale_out) = policy_fields(&policies, endpoint_name);
        let step_arn = policies
            .iter()
            .find(|p| p.policy_name() == step_policy(endpoint_name))
            .map(|p| p.policy_arn().to_string());
        let alarms: Vec<MetricAlarm> = match ctx
            .shared("cloudwatch:DescribeAlarms sdop-", || {
                sdop_alarms(clients, None)
            })
            .await?
        {
            Some(all) if all.is_some() => all.as_ref().clone().unwrap_or_default(),
            _ => sdop_alarms(clients, Some(&backlog_alarm(endpoint_name)))
                .await?
                .unwrap_or_default(),
        };
        let alarms: Vec<&MetricAlarm> = alarms
            .iter()
            .filter(|a| a.alarm_name() == Some(backlog_alarm(endpoint_name).as_str()))
            .collect();
        // Scaling out from zero works only when the alarm exists and fires the step policy.
        let from_zero =
            step_arn.is_some_and(|arn| alarms.iter().any(|a| a.alarm_actions().contains(&arn)));
        let mut observed = ScalingFields {
            min_capacity: target.min_capacity(),
            max_capacity: target.max_capacity(),
            target_backlog_per_instance: target_backlog,
            scale_in_cooldown_seconds: scale_in,
            scale_out_cooldown_seconds: scale_out,
            scale_out_from_zero: from_zero,
            instance_type,
            tags: user_tags,
        }
        .observed(name, ownership);
        observed.outputs.insert(
            "autoscaling".into(),
            format!(
                "{} to {} instances{}",
                target.min_capacity(),
                target.max_capacity(),
                if from_zero {
                    ", out from zero on backlog"
                } else {
                    ""
                }
            ),
        );
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        put_all(ctx, object, true).await?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // RegisterScalableTarget updates a registered target in place but refuses Tags for
        // one ("use the TagResource API"): tags go through TagResource and UntagResource.
        let arn = put_all(ctx, object, false).await?;
        if let (Some(change), Some(arn)) = (changes.iter().find(|c| c.field == "tags"), arn) {
            let tags = tags_of(object, ctx)?;
            ctx.clients
                .autoscaling
                .tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(|e| classify("application-autoscaling:TagResource", e))?;
            let removed: Vec<String> = change
                .before
                .as_ref()
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter(|k| !tags.contains_key(*k))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if !removed.is_empty() {
                ctx.clients
                    .autoscaling
                    .untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await
                    .map_err(|e| classify("application-autoscaling:UntagResource", e))?;
            }
        }
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let endpoint_name = endpoint(name)?;
        delete_scale_out_from_zero(ctx, name, endpoint_name).await?;
        delete_policy(ctx, name, &target_tracking_policy(endpoint_name)).await?;
        let deregistered = ctx
            .clients
            .autoscaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(name)
            .scalable_dimension(dimension())
            .send()
            .await;
        match deregistered {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = classify("application-autoscaling:DeregisterScalableTarget", err);
                if is_not_found(&err, &["ObjectNotFoundException", "ValidationException"]) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}
