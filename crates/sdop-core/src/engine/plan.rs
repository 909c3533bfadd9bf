//! The planner: a pure function from desired and observed AWS objects to actions with reasons.
//!
//! No I/O, no clock: every decision here is unit-tested with plain values.

use serde::Serialize;

pub use crate::model::object::{
    AwsType, DesiredObject, FieldChange, Mutability, ObjectKey, ObjectName, ObjectState,
    ObservedObject, Ownership, RollbackTarget,
};
use crate::model::resource::ResourceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Create,
    Update,
    /// An in-place change back to what served before a rollout its check failed.
    Rollback,
    Replace,
    Delete,
    /// An existing object without sdop's tags that `adopt: true` takes over (updated when it
    /// differs, recorded as sdop's from then on).
    Adopt,
    /// A same-named object sdop does not own: nothing will be done to it.
    Conflict,
}

impl Operation {
    /// The Terraform-style marker.
    pub fn symbol(self) -> &'static str {
        match self {
            Operation::Create => "+",
            Operation::Update => "~",
            Operation::Rollback => "<-",
            Operation::Replace => "-/+",
            Operation::Delete => "-",
            Operation::Adopt => "<=",
            Operation::Conflict => "!",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub resource: ResourceId,
    pub operation: Operation,
    pub aws_type: AwsType,
    pub name: String,
    pub reason: String,
    pub changes: Vec<FieldChange>,
    /// Why this action waits (for a dependency, an object still changing, the new objects to
    /// serve); `None`: due now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    /// The hourly cost of billable capacity it creates, changes or removes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::CostChange>,
    /// Why a Delete deletes (what apply reports), typed so nothing parses `reason` back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion: Option<Deletion>,
    /// What it costs once (an evaluation's instance time), described with the region's price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_off: Option<String>,
}

/// Why an object is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "cause")]
pub enum Deletion {
    /// No longer part of the desired state (once the new objects serve).
    Superseded,
    /// Deleted first and created again after, as a sibling changes (a scalable target before
    /// its endpoint's instance type changes).
    OutOfTheWay { aws_type: AwsType, name: String },
    /// Its resource is pruned: no manifest declares it (deletionPolicy Delete).
    Pruned,
}

impl std::fmt::Display for Deletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deletion::Superseded => f.write_str("superseded"),
            Deletion::OutOfTheWay { aws_type, name } => {
                write!(f, "first, as {aws_type} {name} changes")
            }
            Deletion::Pruned => f.write_str("pruned"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The always-on billable capacity of every resource planned, once applied.
    pub capacity: Vec<PlannedCapacity>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedCapacity {
    pub resource: ResourceId,
    pub region: String,
    pub capacity: crate::cost::Capacity,
}

/// Dollars per hour, with what could not be priced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyCost {
    pub dollars: f64,
    pub unknown: Vec<String>,
}

impl Plan {
    /// What the planned resources' always-on capacity costs per hour once applied.
    pub fn hourly_after(&self) -> HourlyCost {
        let mut total = HourlyCost::default();
        for planned in &self.capacity {
            let c = &planned.capacity;
            match crate::cost::hourly(&c.instance_type, c.instance_count, &planned.region) {
                Some(dollars) => total.dollars += dollars,
                // Worded as the action's own (`hourly_delta`), so a list of both says it once.
                None => total.unknown.push(format!(
                    "{}: no price for {} in {} in sdop's price table",
                    planned.resource, c.instance_type, planned.region
                )),
            }
        }
        total
    }

    /// How much the actions change the hourly cost (always-on capacity; training jobs are
    /// listed with their rate while they run, not summed).
    pub fn hourly_delta(&self) -> HourlyCost {
        let mut total = HourlyCost::default();
        for action in &self.actions {
            let Some(cost) = &action.cost else { continue };
            if cost.after.as_ref().is_some_and(|c| c.while_running) {
                continue;
            }
            match cost.delta() {
                crate::cost::Price::Hourly(d) => total.dollars += d,
                crate::cost::Price::Unknown(why) => {
                    total.unknown.push(format!("{}: {why}", action.resource))
                }
            }
        }
        total
    }

    /// True when applying would change something (conflicts are not changes).
    /// `sdop plan -o json` (and the daemon's `/api/v1/plan`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "changes": self.has_changes(),
            "actions": self.actions,
            "hourlyCost": {
                "delta": self.hourly_delta(),
                "afterApply": self.hourly_after(),
            },
        })
    }

    pub fn has_changes(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.operation != Operation::Conflict)
    }
}

/// A create of `want`, every field (and every value sent that AWS does not report back) a
/// change from nothing.
pub fn create_action(resource: &ResourceId, want: &DesiredObject, reason: String) -> Action {
    Action {
        resource: resource.clone(),
        operation: Operation::Create,
        aws_type: want.aws_type,
        name: want.name.display(),
        reason,
        changes: want
            .fields
            .iter()
            .chain(&want.unobservable)
            .map(|(field, value)| FieldChange {
                field: field.clone(),
                before: None,
                after: value.clone(),
            })
            .collect(),
        deferred: None,
        cost: None,
        deletion: None,
        one_off: None,
    }
}

/// Diffs one resource's desired objects against what was observed under their names (pure).
/// Deletions of superseded objects are decided from the resource's memory, in
/// [`super::decide`].
pub fn plan_resource(
    resource: &ResourceId,
    desired: &[DesiredObject],
    observed: &[ObservedObject],
) -> Vec<Action> {
    // A resource has a handful of objects: a scan beats building a map for each one.
    let mut actions = Vec::new();
    for want in desired {
        let found = want.name.known().and_then(|name| {
            observed
                .iter()
                .find(|o| o.key.aws_type == want.aws_type && o.key.name == name)
        });
        let action = |operation, reason: String, changes| Action {
            resource: resource.clone(),
            operation,
            aws_type: want.aws_type,
            name: want.name.display(),
            reason,
            changes,
            deferred: None,
            cost: None,
            deletion: None,
            one_off: None,
        };
        let Some(found) = found else {
            let reason = match want.name {
                ObjectName::Known(_) => "does not exist".to_string(),
                ObjectName::AfterApply { .. } => {
                    "name depends on values known after apply".to_string()
                }
            };
            actions.push(create_action(resource, want, reason));
            continue;
        };
        match &found.ownership {
            Ownership::Foreign => {
                actions.push(action(
                    Operation::Conflict,
                    "exists but is not owned by sdop (no sdop ownership tags); set adopt: true to manage it".into(),
                    Vec::new(),
                ));
                continue;
            }
            Ownership::Owned { resource: owner } if owner != resource => {
                actions.push(action(
                    Operation::Conflict,
                    format!("exists and is owned by sdop resource {owner}, not this one"),
                    Vec::new(),
                ));
                continue;
            }
            _ => {}
        }
        let changes: Vec<FieldChange> = want
            .fields
            .iter()
            // A content-named object's name is a hash of its fields, so an object of that name
            // has them: they are not read back. Any other object's field that the adapter did
            // not read back is a difference (never a silent "no changes"); the liveness tests
            // hold every adapter to reading every field it is sent.
            .filter(|(field, value)| match (value, found.fields.get(*field)) {
                (_, None) => !want.content_named,
                (Some(value), Some(seen)) => seen != value,
                (None, Some(_)) => true,
            })
            .map(|(field, value)| FieldChange {
                field: field.clone(),
                before: found.fields.get(field).cloned(),
                after: value.clone(),
            })
            .collect();
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        if found.ownership == Ownership::Adopted {
            let reason = if changes.is_empty() {
                "exists without sdop's tags; adopt: true takes it over".to_string()
            } else {
                format!(
                    "exists without sdop's tags; adopt: true takes it over and changes {}",
                    fields.join(", ")
                )
            };
            actions.push(action(Operation::Adopt, reason, changes));
            continue;
        }
        if changes.is_empty() {
            continue;
        }
        let replaced_on: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| want.replaced_on.contains(f))
            .collect();
        match want.mutability {
            Mutability::InPlace if !replaced_on.is_empty() => actions.push(action(
                Operation::Replace,
                format!(
                    "{} cannot change in place: replaced",
                    replaced_on.join(", ")
                ),
                changes,
            )),
            Mutability::InPlace => actions.push(action(
                Operation::Update,
                format!(
                    "{} differ{}",
                    fields.join(", "),
                    if fields.len() == 1 { "s" } else { "" }
                ),
                changes,
            )),
            Mutability::Replace => actions.push(action(
                Operation::Replace,
                format!("immutable fields differ: {}", fields.join(", ")),
                changes,
            )),
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn id() -> ResourceId {
        ResourceId::new("Endpoint", "base")
    }

    fn endpoint(config: &str) -> DesiredObject {
        DesiredObject::new(
            crate::model::object::AwsType::SageMakerEndpoint,
            ObjectName::Known("sd-base".into()),
            Mutability::InPlace,
        )
        .field("endpointConfigName", Some(json!(config)))
    }

    fn observed(
        aws_type: AwsType,
        name: &str,
        fields: &[(&str, Value)],
        ownership: Ownership,
    ) -> ObservedObject {
        ObservedObject::new(
            ObjectKey::new(aws_type, name),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ownership,
        )
    }

    fn owned() -> Ownership {
        Ownership::Owned { resource: id() }
    }

    #[test]
    fn missing_object_is_created_with_its_fields() {
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[]);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].operation, Operation::Create);
        assert_eq!(actions[0].changes[0].after, Some(json!("cfg-1")));
        assert_eq!(actions[0].reason, "does not exist");
    }

    #[test]
    fn converged_object_plans_nothing() {
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[("endpointConfigName", json!("cfg-1"))],
            owned(),
        );
        assert!(plan_resource(&id(), &[endpoint("cfg-1")], &[seen]).is_empty());
    }

    #[test]
    fn drift_in_a_mutable_field_is_an_update_with_old_and_new() {
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[("endpointConfigName", json!("cfg-0"))],
            owned(),
        );
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[seen]);
        assert_eq!(actions[0].operation, Operation::Update);
        assert_eq!(actions[0].changes[0].before, Some(json!("cfg-0")));
        assert_eq!(actions[0].changes[0].after, Some(json!("cfg-1")));
    }

    #[test]
    fn a_field_not_read_back_is_a_difference_unless_the_name_is_its_content() {
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[],
            owned(),
        );
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], std::slice::from_ref(&seen));
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].operation, Operation::Update);
        assert_eq!(actions[0].changes[0].before, None);
        let content_named = DesiredObject {
            content_named: true,
            ..endpoint("cfg-1")
        };
        assert!(plan_resource(&id(), &[content_named], &[seen]).is_empty());
    }

    #[test]
    fn immutable_difference_is_a_replace() {
        let want = DesiredObject::new(
            crate::model::object::AwsType::S3Object,
            ObjectName::Known("b/k".into()),
            Mutability::Replace,
        )
        .field("identity", Some(json!("new")));
        let seen = observed(
            crate::model::object::AwsType::S3Object,
            "b/k",
            &[("identity", json!("old"))],
            owned(),
        );
        let actions = plan_resource(&id(), &[want], &[seen]);
        assert_eq!(actions[0].operation, Operation::Replace);
    }

    #[test]
    fn foreign_object_is_a_conflict_and_never_touched() {
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[("endpointConfigName", json!("x"))],
            Ownership::Foreign,
        );
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[seen]);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].operation, Operation::Conflict);
    }

    #[test]
    fn object_owned_by_another_resource_is_a_conflict() {
        let other = Ownership::Owned {
            resource: ResourceId::new("Endpoint", "other"),
        };
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[],
            other,
        );
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[seen]);
        assert_eq!(actions[0].operation, Operation::Conflict);
        assert!(actions[0].reason.contains("Endpoint/other"));
    }

    #[test]
    fn adopted_object_is_an_adoption_with_its_changes() {
        let seen = observed(
            crate::model::object::AwsType::SageMakerEndpoint,
            "sd-base",
            &[("endpointConfigName", json!("x"))],
            Ownership::Adopted,
        );
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[seen]);
        assert_eq!(actions[0].operation, Operation::Adopt);
        assert_eq!(actions[0].changes[0].after, Some(json!("cfg-1")));
    }

    #[test]
    fn unknown_values_show_as_known_after_apply() {
        let want = DesiredObject::new(
            crate::model::object::AwsType::SageMakerModel,
            ObjectName::AfterApply {
                base: "sd-base".into(),
            },
            Mutability::Replace,
        )
        .field("image", None);
        let actions = plan_resource(&id(), &[want], &[]);
        assert_eq!(actions[0].operation, Operation::Create);
        assert_eq!(actions[0].name, "sd-base-(known after apply)");
        assert_eq!(actions[0].changes[0].after, None);
    }
}
