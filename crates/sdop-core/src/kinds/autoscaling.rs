//! Autoscaling of an asynchronous Endpoint, to zero instances when idle, as the SageMaker
//! developer guide sets it up ("Autoscale an asynchronous endpoint",
//! https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html):
//! - the variant registered as an Application Auto Scaling scalable target
//!   (`endpoint/NAME/variant/AllTraffic`, `sagemaker:variant:DesiredInstanceCount`), MinCapacity 0
//!   allowed because asynchronous inference scales to zero;
//! - a target-tracking policy on `ApproximateBacklogSizePerInstance` (AWS/SageMaker, dimension
//!   EndpointName, Average; the guide's TargetValue 5, the all-in-one-ai notebook's cooldowns:
//!   scale in 600 s, scale out 300 s);
//! - with MinCapacity 0, a step-scaling policy (ChangeInCapacity +1 from lower bound 0, Average,
//!   Cooldown 300) and the CloudWatch alarm that fires it on `HasBacklogWithoutCapacity`
//!   (Average, Period 60, 2 of 2 evaluation periods, >= 1, missing data missing): without it
//!   an endpoint at zero instances only scales out once the backlog exceeds the target.
//!
//! One AWS object (`application-autoscaling:endpoint-scaling`): the target, its policies and the
//! alarm go together and go away together. It waits for the endpoint to be InService.

use crate::model::contracts::ScalingDesired;
use crate::model::object::AwsType;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Checks;
use crate::model::object::{DesiredObject, Mutability, ObjectName};

pub const AWS_TYPE: AwsType = AwsType::EndpointScaling;

/// Application Auto Scaling's integers are 32-bit; validation keeps these far below.
fn saturating(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The one production variant sdop's endpoint configs have.
pub const VARIANT: &str = "AllTraffic";

/// The guide's TargetValue for ApproximateBacklogSizePerInstance.
const DEFAULT_TARGET_BACKLOG: f64 = 5.0;
/// The all-in-one-ai notebook's cooldowns (stable-diffusion-webui.ipynb, the autoscaling cell).
const DEFAULT_SCALE_IN_COOLDOWN: u32 = 600;
const DEFAULT_SCALE_OUT_COOLDOWN: u32 = 300;
/// sdop's bound on a cooldown (a day): longer is a typo, not a policy.
const MAX_COOLDOWN: u32 = 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest instances. 0 lets an idle asynchronous endpoint scale to zero (it then bills
    /// nothing while idle, and the first request waits for an instance to start).
    pub min_instances: u32,
    /// Most instances.
    pub max_instances: u32,
    /// Queued requests per instance the target-tracking policy keeps (default 5).
    #[serde(default = "default_target_backlog")]
    pub target_backlog_per_instance: f64,
    #[serde(default = "default_scale_in_cooldown")]
    pub scale_in_cooldown_seconds: u32,
    #[serde(default = "default_scale_out_cooldown")]
    pub scale_out_cooldown_seconds: u32,
}

fn default_target_backlog() -> f64 {
    DEFAULT_TARGET_BACKLOG
}
fn default_scale_in_cooldown() -> u32 {
    DEFAULT_SCALE_IN_COOLDOWN
}
fn default_scale_out_cooldown() -> u32 {
    DEFAULT_SCALE_OUT_COOLDOWN
}

impl Autoscaling {
    /// `is_async`: the endpoint has `asyncInference` (the backlog metrics exist only for
    /// asynchronous endpoints, and only they may scale to zero).
    pub fn check(&self, path: &str, is_async: bool, instance_count: u32, checks: &mut Checks) {
        if !is_async {
            checks.error(
                path,
                "autoscaling needs `asyncInference`: it scales on the asynchronous backlog (ApproximateBacklogSizePerInstance), which only asynchronous endpoints publish",
            );
        }
        if self.max_instances == 0 {
            checks.error(
                format!("{path}.maxInstances"),
                "maxInstances must be at least 1",
            );
        }
        if self.min_instances > self.max_instances {
            checks.error(
                format!("{path}.minInstances"),
                format!(
                    "minInstances ({}) is above maxInstances ({})",
                    self.min_instances, self.max_instances
                ),
            );
        }
        if instance_count > self.max_instances {
            checks.error(
                "spec.instanceCount",
                format!(
                    "instanceCount ({instance_count}) is above autoscaling.maxInstances ({})",
                    self.max_instances
                ),
            );
        }
        if !(self.target_backlog_per_instance.is_finite() && self.target_backlog_per_instance > 0.0)
        {
            checks.error(
                format!("{path}.targetBacklogPerInstance"),
                "targetBacklogPerInstance must be a number above 0",
            );
        }
        for (field, value) in [
            ("scaleInCooldownSeconds", self.scale_in_cooldown_seconds),
            ("scaleOutCooldownSeconds", self.scale_out_cooldown_seconds),
        ] {
            if value > MAX_COOLDOWN {
                checks.error(
                    format!("{path}.{field}"),
                    format!("{field} is at most {MAX_COOLDOWN} seconds"),
                );
            }
        }
    }

    /// Scaling out from zero needs the step policy and its alarm.
    pub fn scales_from_zero(&self) -> bool {
        self.min_instances == 0
    }

    /// The desired object: named by the scalable target's resource id. `instance_type` is the
    /// variant's: SageMaker refuses an UpdateEndpoint that changes the instance type of a
    /// variant registered for autoscaling ("If the update would change the instance type for
    /// any model that is a target for auto scaling, the update fails",
    /// https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html), so a new
    /// instance type replaces the registration: deregistered before the update, registered
    /// again after. `after` is what it waits for: the endpoint, or the rollout's smoke check
    /// (a rollback to another instance type then needs no deregistration).
    pub fn desired(
        &self,
        endpoint_name: &str,
        instance_type: &str,
        tags: Option<crate::model::contracts::Tags>,
        after: (AwsType, String),
    ) -> DesiredObject {
        let mut object = DesiredObject::new(
            AWS_TYPE,
            ObjectName::Known(resource_id(endpoint_name)),
            Mutability::InPlace,
        )
        .contract(ScalingDesired {
            min_capacity: Some(saturating(self.min_instances)),
            max_capacity: Some(saturating(self.max_instances)),
            target_backlog_per_instance: Some(Some(self.target_backlog_per_instance)),
            scale_in_cooldown_seconds: Some(Some(saturating(self.scale_in_cooldown_seconds))),
            scale_out_cooldown_seconds: Some(Some(saturating(self.scale_out_cooldown_seconds))),
            scale_out_from_zero: Some(self.scales_from_zero()),
            instance_type: Some(Some(instance_type.to_string())),
            tags,
        })
        .input("endpointName", json!(endpoint_name))
        .after_ready(after.0, &after.1);
        object.replaced_on = &["instanceType"];
        object.autoscaled = Some(crate::cost::Autoscaled {
            instance_type: instance_type.to_string(),
            min: self.min_instances,
            max: self.max_instances,
        });
        object
    }
}

/// `endpoint/NAME/variant/AllTraffic`: the scalable target's ResourceId.
pub fn resource_id(endpoint_name: &str) -> String {
    format!("endpoint/{endpoint_name}/variant/{VARIANT}")
}

/// The endpoint a scalable target's ResourceId names.
pub fn endpoint_of(resource_id: &str) -> Option<&str> {
    resource_id
        .strip_prefix("endpoint/")?
        .strip_suffix(&format!("/variant/{VARIANT}"))
}

/// Policy and alarm names, derived from the endpoint's (deterministic, so a create after a
/// crash finds what the first one made).
pub fn target_tracking_policy(endpoint_name: &str) -> String {
    format!("sdop-{endpoint_name}-backlog-per-instance")
}
pub fn step_policy(endpoint_name: &str) -> String {
    format!("sdop-{endpoint_name}-scale-out-from-zero")
}
pub fn backlog_alarm(endpoint_name: &str) -> String {
    format!("sdop-{endpoint_name}-has-backlog-without-capacity")
}

/// What the operator needs to set this up: Application Auto Scaling on the endpoint's target
/// (its ARN carries a random id, and the Describe calls take no resource), the alarm, and what
/// Application Auto Scaling itself needs from the caller for a SageMaker variant
/// (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-prerequisites.html:
/// DescribeEndpoint(Config), UpdateEndpointWeightsAndCapacities, CloudWatch alarms, and the
/// service-linked role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint).
pub fn grants(endpoint_name: &str) -> Vec<super::iam::Grant> {
    let mut linked_role = super::iam::Grant::new(
        &["iam:CreateServiceLinkedRole"],
        vec!["arn:aws:iam::*:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint".into()],
    );
    linked_role.condition = Some(json!({
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }));
    vec![
        super::iam::Grant::new(
            &[
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:DescribeScalingPolicies",
                "application-autoscaling:TagResource",
                "application-autoscaling:UntagResource",
                "application-autoscaling:ListTagsForResource",
            ],
            vec!["*".into()],
        ),
        super::iam::Grant::new(
            &[
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:ListTagsForResource",
            ],
            vec![format!(
                "arn:aws:cloudwatch:*:*:alarm:{}",
                backlog_alarm(endpoint_name)
            )],
        ),
        super::iam::Grant::new(&["cloudwatch:DescribeAlarms"], vec!["*".into()]),
        super::iam::Grant::new(
            &["sagemaker:UpdateEndpointWeightsAndCapacities"],
            vec![super::iam::sagemaker_arn(None, "endpoint", endpoint_name)],
        ),
        linked_role,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(min: u32, max: u32) -> Autoscaling {
        Autoscaling {
            min_instances: min,
            max_instances: max,
            target_backlog_per_instance: 5.0,
            scale_in_cooldown_seconds: 600,
            scale_out_cooldown_seconds: 300,
        }
    }

    #[test]
    fn scale_to_zero_needs_an_async_endpoint_and_sane_bounds() {
        let mut checks = Checks::default();
        scaling(0, 2).check("spec.autoscaling", true, 1, &mut checks);
        assert!(checks.problems.is_empty(), "{:?}", checks.problems);

        let mut checks = Checks::default();
        scaling(0, 2).check("spec.autoscaling", false, 1, &mut checks);
        assert!(checks.problems[0].1.contains("asyncInference"));

        let mut checks = Checks::default();
        scaling(3, 2).check("spec.autoscaling", true, 4, &mut checks);
        let paths: Vec<&str> = checks.problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.autoscaling.minInstances", "spec.instanceCount"]
        );
    }

    #[test]
    fn names_are_the_endpoints() {
        assert_eq!(resource_id("sd-a"), "endpoint/sd-a/variant/AllTraffic");
        assert_eq!(
            endpoint_of("endpoint/sd-a/variant/AllTraffic"),
            Some("sd-a")
        );
        assert_eq!(endpoint_of("endpoint/sd-a/variant/Other"), None);
        let endpoint = (super::super::endpoint::ENDPOINT, "sd-a".to_string());
        let object = scaling(0, 2).desired("sd-a", "ml.g4dn.xlarge", None, endpoint.clone());
        assert_eq!(object.get("scaleOutFromZero"), Some(&json!(true)));
        assert_eq!(object.after_ready, Some(endpoint));
        assert_eq!(object.replaced_on, ["instanceType"]);
    }
}
