//! Deployment guardrails of an Endpoint (SageMaker's `DeploymentConfig` on UpdateEndpoint):
//! blue/green with all-at-once, canary or linear traffic shifting, or a rolling update, and
//! auto-rollback on CloudWatch alarms. The rules are the SageMaker API reference's
//! (`DeploymentConfig`, `BlueGreenUpdatePolicy`, `TrafficRoutingConfig`, `RollingUpdatePolicy`,
//! `CapacitySize`) and the developer guide's ("Deployment guardrails", "Exclusions": a canary
//! is at most 50% of the new fleet; rolling updates exclude serverless and multi-variant
//! endpoints; Inf1 instances fall back to all at once).

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Deployment {
    /// Blue/green: a new fleet, traffic shifted to it, the old one terminated after a wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
    /// Rolling: the fleet replaced in batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<Rolling>,
    /// CloudWatch alarms that roll the update back when any goes into ALARM (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_rollback_alarms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueGreen {
    pub traffic_routing: TrafficRouting,
    /// Seconds the old fleet is kept after all traffic moved (0..3600; AWS default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_wait_seconds: Option<u32>,
    /// The whole deployment's limit in seconds (600..28800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_execution_timeout_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TrafficShift {
    AllAtOnce,
    Canary,
    Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficRouting {
    #[serde(rename = "type")]
    pub shift: TrafficShift,
    /// The baking period between steps, in seconds (0..3600).
    pub wait_interval_seconds: u32,
    /// Canary only: the first step's share of the new fleet (at most 50%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_size: Option<CapacitySize>,
    /// Linear only: each step's share of the new fleet (10% to 50%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_step_size: Option<CapacitySize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CapacityUnit {
    InstanceCount,
    CapacityPercent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapacitySize {
    #[serde(rename = "type")]
    pub unit: CapacityUnit,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rolling {
    pub maximum_batch_size: CapacitySize,
    /// Seconds between batches (0..3600).
    pub wait_interval_seconds: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_execution_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_maximum_batch_size: Option<CapacitySize>,
}

fn within(checks: &mut Checks, path: &str, value: Option<u32>, low: u32, high: u32) {
    if let Some(value) = value {
        if !(low..=high).contains(&value) {
            checks.error(path, format!("{value} is outside {low}..{high}"));
        }
    }
}

/// A share of the new fleet: a percentage within `low..=high`, or at least one instance and at
/// most that share of `instance_count`.
fn share(
    checks: &mut Checks,
    path: &str,
    size: &CapacitySize,
    instance_count: u32,
    low: u32,
    high: u32,
) {
    match size.unit {
        CapacityUnit::CapacityPercent => within(
            checks,
            &format!("{path}.value"),
            Some(size.value),
            low,
            high,
        ),
        CapacityUnit::InstanceCount => {
            if size.value == 0 || size.value * 100 > instance_count * high {
                checks.error(
                    format!("{path}.value"),
                    format!(
                        "{} instance(s) of {instance_count}: a step is at least 1 instance and at most {high}% of the new fleet",
                        size.value
                    ),
                );
            }
        }
    }
}

impl Deployment {
    pub fn check(&self, path: &str, instance_count: u32, instance_type: &str, checks: &mut Checks) {
        match (&self.blue_green, &self.rolling) {
            (Some(_), Some(_)) | (None, None) => {
                checks.error(path, "set exactly one of `blueGreen` or `rolling`");
            }
            _ => {}
        }
        if self.auto_rollback_alarms.len() > 10 {
            checks.error(format!("{path}.autoRollbackAlarms"), "at most 10 alarms");
        }
        if instance_type.starts_with("ml.inf1.") {
            checks.error(
                path,
                "Inf1 endpoints cannot use deployment guardrails (SageMaker falls back to all at once): remove `deployment`",
            );
        }
        if let Some(bg) = &self.blue_green {
            let at = format!("{path}.blueGreen");
            within(
                checks,
                &format!("{at}.terminationWaitSeconds"),
                bg.termination_wait_seconds,
                0,
                3600,
            );
            within(
                checks,
                &format!("{at}.maximumExecutionTimeoutSeconds"),
                bg.maximum_execution_timeout_seconds,
                600,
                28800,
            );
            let routing = &bg.traffic_routing;
            let at = format!("{at}.trafficRouting");
            within(
                checks,
                &format!("{at}.waitIntervalSeconds"),
                Some(routing.wait_interval_seconds),
                0,
                3600,
            );
            match (
                routing.shift,
                &routing.canary_size,
                &routing.linear_step_size,
            ) {
                (TrafficShift::Canary, Some(size), None) => share(
                    checks,
                    &format!("{at}.canarySize"),
                    size,
                    instance_count,
                    1,
                    50,
                ),
                (TrafficShift::Linear, None, Some(size)) => share(
                    checks,
                    &format!("{at}.linearStepSize"),
                    size,
                    instance_count,
                    10,
                    50,
                ),
                (TrafficShift::AllAtOnce, None, None) => {}
                (TrafficShift::Canary, _, _) => {
                    checks.error(&at, "Canary takes `canarySize` (and no `linearStepSize`)")
                }
                (TrafficShift::Linear, _, _) => {
                    checks.error(&at, "Linear takes `linearStepSize` (and no `canarySize`)")
                }
                (TrafficShift::AllAtOnce, _, _) => checks.error(
                    &at,
                    "AllAtOnce takes neither `canarySize` nor `linearStepSize`",
                ),
            }
        }
        if let Some(rolling) = &self.rolling {
            let at = format!("{path}.rolling");
            within(
                checks,
                &format!("{at}.waitIntervalSeconds"),
                Some(rolling.wait_interval_seconds),
                0,
                3600,
            );
            within(
                checks,
                &format!("{at}.maximumExecutionTimeoutSeconds"),
                rolling.maximum_execution_timeout_seconds,
                600,
                28800,
            );
            share(
                checks,
                &format!("{at}.maximumBatchSize"),
                &rolling.maximum_batch_size,
                instance_count,
                5,
                50,
            );
            if let Some(size) = &rolling.rollback_maximum_batch_size {
                share(
                    checks,
                    &format!("{at}.rollbackMaximumBatchSize"),
                    size,
                    instance_count,
                    1,
                    100,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(percent: u32) -> Deployment {
        Deployment {
            blue_green: Some(BlueGreen {
                traffic_routing: TrafficRouting {
                    shift: TrafficShift::Canary,
                    wait_interval_seconds: 300,
                    canary_size: Some(CapacitySize {
                        unit: CapacityUnit::CapacityPercent,
                        value: percent,
                    }),
                    linear_step_size: None,
                },
                termination_wait_seconds: Some(120),
                maximum_execution_timeout_seconds: Some(1800),
            }),
            rolling: None,
            auto_rollback_alarms: vec!["sd-base-errors".into()],
        }
    }

    fn problems(deployment: &Deployment, count: u32, instance_type: &str) -> Vec<String> {
        let mut checks = Checks::default();
        deployment.check("spec.deployment", count, instance_type, &mut checks);
        checks
            .problems
            .into_iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect()
    }

    #[test]
    fn aws_rules() {
        assert!(problems(&canary(10), 2, "ml.g4dn.xlarge").is_empty());
        assert_eq!(
            problems(&canary(60), 2, "ml.g4dn.xlarge"),
            ["spec.deployment.blueGreen.trafficRouting.canarySize.value: 60 is outside 1..50"]
        );
        assert!(problems(&canary(10), 1, "ml.inf1.xlarge")[0].contains("Inf1"));
        let mut both = canary(10);
        both.rolling = Some(Rolling {
            maximum_batch_size: CapacitySize {
                unit: CapacityUnit::InstanceCount,
                value: 3,
            },
            wait_interval_seconds: 60,
            maximum_execution_timeout_seconds: None,
            rollback_maximum_batch_size: None,
        });
        let found = problems(&both, 2, "ml.g4dn.xlarge");
        assert!(found.iter().any(|p| p.contains("exactly one")), "{found:?}");
        assert!(
            found.iter().any(|p| p.contains("3 instance(s) of 2")),
            "{found:?}"
        );
    }
}
