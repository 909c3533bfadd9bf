//! The planner: a pure function from desired and observed AWS objects to actions with reasons.
//!
//! No I/O, no clock: every decision here is unit-tested with plain values.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::ResourceId;

/// An AWS object type and name, e.g. `sagemaker:model` / `sd-base-1a2b3c4d5e`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    pub aws_type: &'static str,
    pub name: String,
}

impl ObjectKey {
    pub fn new(aws_type: &'static str, name: impl Into<String>) -> Self {
        ObjectKey {
            aws_type,
            name: name.into(),
        }
    }
}

/// A name that may depend on values not known before apply (a digest, a package identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ObjectName {
    Known(String),
    /// Known after apply; holds the human part of the name for display.
    AfterApply {
        base: String,
    },
}

impl ObjectName {
    pub fn known(&self) -> Option<&str> {
        match self {
            ObjectName::Known(name) => Some(name),
            ObjectName::AfterApply { .. } => None,
        }
    }

    pub fn display(&self) -> String {
        match self {
            ObjectName::Known(name) => name.clone(),
            ObjectName::AfterApply { base } => format!("{base}-(known after apply)"),
        }
    }
}

/// How a differing field is converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Updated in place (tags, endpoint config of an endpoint, stack parameters).
    InPlace,
    /// Immutable in AWS: a change means a new object (new derived name) replaces the old one.
    Replace,
}

/// One AWS object a resource should consist of. `None` field values are known after apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredObject {
    pub aws_type: &'static str,
    pub name: ObjectName,
    pub mutability: Mutability,
    /// Compared with what AWS reports; a difference is a change.
    pub fields: BTreeMap<String, Option<Value>>,
    /// Needed to create or update the object but not compared (a local file's path).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
    /// The name is a hash of the fields: an existing object of that name has this content.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub content_named: bool,
}

impl DesiredObject {
    pub fn new(aws_type: &'static str, name: ObjectName, mutability: Mutability) -> Self {
        DesiredObject {
            aws_type,
            name,
            mutability,
            fields: BTreeMap::new(),
            inputs: BTreeMap::new(),
            content_named: false,
        }
    }

    /// Adds an input: used by the AWS adapter, never diffed.
    pub fn input(mut self, name: &str, value: Value) -> Self {
        self.inputs.insert(name.to_string(), value);
        self
    }

    /// A known field's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).and_then(Option::as_ref)
    }

    /// Adds a field; `None` means known after apply.
    pub fn field(mut self, name: &str, value: Option<Value>) -> Self {
        self.fields.insert(name.to_string(), value);
        self
    }

    /// True when every field is known (so a derived name can be computed).
    pub fn fully_known(&self) -> bool {
        self.fields.values().all(Option::is_some)
    }
}

/// Who owns an AWS object, read from its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ownership {
    /// Tagged by sdop for `resource` (this one or another).
    Owned { resource: ResourceId },
    /// Exists without sdop's tags.
    Foreign,
    /// Adopted by a manifest that says `adopt: true`.
    Adopted,
}

/// Where an AWS object is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "camelCase")]
pub enum ObjectState {
    Ready,
    /// Creating, updating, training: check again later.
    Progressing(String),
    /// Serving, but not as asked (an update AWS rolled back).
    Degraded(String),
    /// Will not get better without a change (a failed training job, ROLLBACK_COMPLETE).
    Failed(String),
    /// Being deleted (by someone else: sdop deletes only what it no longer wants).
    Deleting(String),
}

/// An AWS object as read back from AWS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedObject {
    pub key: ObjectKey,
    pub fields: BTreeMap<String, Value>,
    pub ownership: Ownership,
    pub state: ObjectState,
    /// Facts other resources may read (ARNs, digests, stack outputs, checkpoints).
    pub outputs: BTreeMap<String, String>,
}

impl ObservedObject {
    pub fn new(key: ObjectKey, fields: BTreeMap<String, Value>, ownership: Ownership) -> Self {
        ObservedObject {
            key,
            fields,
            ownership,
            state: ObjectState::Ready,
            outputs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Create,
    Update,
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
            Operation::Replace => "-/+",
            Operation::Delete => "-",
            Operation::Adopt => "<=",
            Operation::Conflict => "!",
        }
    }
}

/// `field: before -> after`; `after: None` means known after apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub resource: ResourceId,
    pub operation: Operation,
    pub aws_type: &'static str,
    pub name: String,
    pub reason: String,
    pub changes: Vec<FieldChange>,
    /// Why this action waits (for a dependency, an object still changing, the new objects to
    /// serve); `None`: due now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    /// True when applying would change something (conflicts are not changes).
    pub fn has_changes(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.operation != Operation::Conflict)
    }
}

/// A create of `want`, every field a change from nothing.
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
            .map(|(field, value)| FieldChange {
                field: field.clone(),
                before: None,
                after: value.clone(),
            })
            .collect(),
        deferred: None,
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
    let by_key: std::collections::HashMap<(&str, &str), &ObservedObject> = observed
        .iter()
        .map(|o| ((o.key.aws_type, o.key.name.as_str()), o))
        .collect();
    let mut actions = Vec::new();
    for want in desired {
        let found = want
            .name
            .known()
            .and_then(|name| by_key.get(&(want.aws_type, name)).copied());
        let action = |operation, reason: String, changes| Action {
            resource: resource.clone(),
            operation,
            aws_type: want.aws_type,
            name: want.name.display(),
            reason,
            changes,
            deferred: None,
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
            // A field the adapter cannot observe (absent) is not compared: immutable objects
            // named by content hash, or settings whose read would cost an extra call.
            .filter(|(field, value)| match (value, found.fields.get(*field)) {
                (_, None) => false,
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
        match want.mutability {
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
    use serde_json::json;

    fn id() -> ResourceId {
        ResourceId::new("Endpoint", "base")
    }

    fn endpoint(config: &str) -> DesiredObject {
        DesiredObject::new(
            "sagemaker:endpoint",
            ObjectName::Known("sd-base".into()),
            Mutability::InPlace,
        )
        .field("endpointConfigName", Some(json!(config)))
    }

    fn observed(
        aws_type: &'static str,
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
            "sagemaker:endpoint",
            "sd-base",
            &[("endpointConfigName", json!("cfg-1"))],
            owned(),
        );
        assert!(plan_resource(&id(), &[endpoint("cfg-1")], &[seen]).is_empty());
    }

    #[test]
    fn drift_in_a_mutable_field_is_an_update_with_old_and_new() {
        let seen = observed(
            "sagemaker:endpoint",
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
    fn unobserved_fields_are_not_compared() {
        let seen = observed("sagemaker:endpoint", "sd-base", &[], owned());
        assert!(plan_resource(&id(), &[endpoint("cfg-1")], &[seen]).is_empty());
    }

    #[test]
    fn immutable_difference_is_a_replace() {
        let want = DesiredObject::new(
            "s3:object",
            ObjectName::Known("b/k".into()),
            Mutability::Replace,
        )
        .field("identity", Some(json!("new")));
        let seen = observed("s3:object", "b/k", &[("identity", json!("old"))], owned());
        let actions = plan_resource(&id(), &[want], &[seen]);
        assert_eq!(actions[0].operation, Operation::Replace);
    }

    #[test]
    fn foreign_object_is_a_conflict_and_never_touched() {
        let seen = observed(
            "sagemaker:endpoint",
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
        let seen = observed("sagemaker:endpoint", "sd-base", &[], other);
        let actions = plan_resource(&id(), &[endpoint("cfg-1")], &[seen]);
        assert_eq!(actions[0].operation, Operation::Conflict);
        assert!(actions[0].reason.contains("Endpoint/other"));
    }

    #[test]
    fn adopted_object_is_an_adoption_with_its_changes() {
        let seen = observed(
            "sagemaker:endpoint",
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
            "sagemaker:model",
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
