//! What a decision's actions do to the hourly bill (pure): each create, change or delete of an
//! object that runs billable capacity gets its [`CostChange`], from the capacity the desired
//! object declares and the capacity the resource last converged on (its status outputs
//! `instanceType` and `instanceCount`).

use std::collections::BTreeMap;

use super::plan::{Action, DesiredObject, Operation};
use crate::cost::{Capacity, CostChange};

/// The capacity a resource's status records as converged (`None`: none recorded).
pub fn recorded_capacity(outputs: &BTreeMap<String, String>) -> Option<Capacity> {
    Some(Capacity {
        instance_type: outputs.get("instanceType")?.clone(),
        instance_count: outputs.get("instanceCount")?.parse().ok()?,
        while_running: false,
    })
}

/// Sets `cost` on every action that changes billable capacity.
pub fn attach_costs(
    actions: &mut [Action],
    desired: &[DesiredObject],
    recorded: &BTreeMap<String, String>,
    region: &str,
) {
    for action in actions.iter_mut() {
        let want = desired
            .iter()
            .find(|d| d.aws_type == action.aws_type && d.name.display() == action.name);
        if let Some(one_off) = want.and_then(|d| d.one_off.as_ref()) {
            if action.operation == Operation::Create {
                action.one_off = Some(one_off.describe(region));
            }
        }
        if let Some(scaled) = want.and_then(|d| d.autoscaled.clone()) {
            if matches!(
                action.operation,
                Operation::Create | Operation::Update | Operation::Replace
            ) {
                action.cost = Some(CostChange {
                    region: region.to_string(),
                    before: None,
                    after: None,
                    autoscaled: Some(scaled),
                });
            }
            continue;
        }
        let Some(capacity) = want.and_then(|d| d.capacity.clone()) else {
            continue;
        };
        let before = match action.operation {
            Operation::Create => None,
            Operation::Delete => Some(capacity.clone()),
            _ => recorded_capacity(recorded),
        };
        let after = match action.operation {
            Operation::Delete | Operation::Conflict => None,
            _ => Some(capacity),
        };
        // A rollback goes back to capacity the recorded state does not describe: not priced.
        if matches!(action.operation, Operation::Conflict | Operation::Rollback) || before == after
        {
            continue;
        }
        action.cost = Some(CostChange {
            region: region.to_string(),
            before,
            after,
            autoscaled: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::{create_action, Mutability, ObjectName};
    use crate::model::resource::ResourceId;

    fn endpoint(instance_type: &str) -> DesiredObject {
        DesiredObject::new(
            crate::model::object::AwsType::SageMakerEndpoint,
            ObjectName::Known("sd".into()),
            Mutability::InPlace,
        )
        .capacity(Capacity {
            instance_type: instance_type.into(),
            instance_count: 1,
            while_running: false,
        })
    }

    #[test]
    fn a_create_adds_capacity_and_an_update_changes_it() {
        let id = ResourceId::new("Endpoint", "sd");
        let want = [endpoint("ml.g4dn.2xlarge")];
        let mut actions = vec![create_action(&id, &want[0], "does not exist".into())];
        attach_costs(&mut actions, &want, &BTreeMap::new(), "us-east-1");
        let cost = actions[0].cost.as_ref().unwrap();
        assert!(
            cost.describe().starts_with("+$0.94/h"),
            "{}",
            cost.describe()
        );

        let mut update = actions[0].clone();
        update.operation = Operation::Update;
        update.cost = None;
        let recorded = [
            ("instanceType".to_string(), "ml.g4dn.xlarge".to_string()),
            ("instanceCount".to_string(), "1".to_string()),
        ]
        .into();
        let mut actions = vec![update];
        attach_costs(&mut actions, &want, &recorded, "us-east-1");
        assert!(actions[0]
            .cost
            .as_ref()
            .unwrap()
            .describe()
            .starts_with("+$0.20/h"));
    }
}
