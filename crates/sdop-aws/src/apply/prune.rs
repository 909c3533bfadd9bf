//! Pruning: resources sdop has status for but no manifest declares. Guarded: nothing is pruned
//! when any manifest failed to load (a broken file is never read as "deleted"), and more than
//! `MAX_PRUNE_SHARE` of what sdop owns (or all of it) needs `--force`. `deletionPolicy: Retain`
//! keeps the AWS objects and only forgets them.

use super::run::ApplyOptions;
use crate::aws::Clients;
use crate::engine::execute::{delete_pruned, Report};
use crate::engine::Action;
use crate::error::{Error, Result};
use crate::kinds::DeletionPolicy;
use crate::manifest::{Loaded, ResourceId};
use crate::model::object::AwsType;
use crate::state::{Phase, ResourceStatus, StateStore};

/// Largest share of owned resources one prune may remove without `--force`.
pub const MAX_PRUNE_SHARE: f64 = 0.5;

/// Decides which resources may be pruned (pure): `Err` explains a refusal.
pub fn prune_candidates(
    declared: &[ResourceId],
    owned: &[ResourceId],
    load_failed: bool,
    force: bool,
) -> Result<Vec<ResourceId>, String> {
    let orphans: Vec<ResourceId> = owned
        .iter()
        .filter(|id| !declared.contains(id))
        .cloned()
        .collect();
    if orphans.is_empty() {
        return Ok(orphans);
    }
    if load_failed {
        return Err(format!("not pruning {} resource(s): some manifests failed to load, so a missing resource may only be unreadable", orphans.len()));
    }
    let share = orphans.len() as f64 / owned.len() as f64;
    if !force && (orphans.len() == owned.len() || share > MAX_PRUNE_SHARE) {
        return Err(format!(
            "refusing to prune {} of {} owned resource(s) ({:.0}% > {:.0}%) without --force",
            orphans.len(),
            owned.len(),
            share * 100.0,
            MAX_PRUNE_SHARE * 100.0
        ));
    }
    Ok(orphans)
}

/// What a prune does (pure over the state), for `plan --prune` and `apply --prune` alike.
#[derive(Debug, Default)]
pub struct PlannedPrune {
    /// A Delete of every object a pruned resource recorded (deletionPolicy Delete, newest
    /// first).
    pub actions: Vec<Action>,
    /// The deletionPolicy Delete resources pruned (their objects are `actions`).
    pub deleted: Vec<ResourceId>,
    /// The deletionPolicy Retain resources forgotten: their AWS objects are kept.
    pub forgotten: Vec<ResourceId>,
}

/// What `apply --prune` would do. `Err` is the guard's refusal, as apply gives it.
pub fn planned_prune(
    loaded: &Loaded,
    statuses: &[crate::state::ResourceStatus],
    force: bool,
) -> Result<PlannedPrune, String> {
    let declared: Vec<ResourceId> = loaded.manifests.iter().map(|m| m.id.clone()).collect();
    let owned: Vec<ResourceId> = statuses.iter().map(|s| s.id()).collect();
    let candidates = prune_candidates(&declared, &owned, !loaded.failed_files.is_empty(), force)?;
    let mut planned = PlannedPrune::default();
    for status in statuses.iter().filter(|s| candidates.contains(&s.id())) {
        if status.deletion_policy == DeletionPolicy::Retain {
            planned.forgotten.push(status.id());
            continue;
        }
        planned.deleted.push(status.id());
        for record in status.objects.iter().rev() {
            let Some(aws_type) = AwsType::parse(&record.aws_type) else {
                continue;
            };
            planned.actions.push(Action {
                resource: status.id(),
                operation: crate::engine::Operation::Delete,
                aws_type,
                name: record.name.clone(),
                reason: "pruned: no manifest declares this resource (deletionPolicy Delete)".into(),
                changes: Vec::new(),
                deferred: None,
                cost: None,
                deletion: Some(crate::engine::plan::Deletion::Pruned),
                one_off: None,
            });
        }
    }
    Ok(planned)
}

/// Prunes what `planned_prune` plans: the same Delete actions, carried out by the engine's
/// executor through the seam (`engine::execute::delete_pruned`), as every other deletion.
pub async fn prune(
    loaded: &Loaded,
    clients: &Clients,
    store: &StateStore,
    options: &ApplyOptions,
    report: Report<'_>,
) -> Result<Vec<ResourceId>> {
    let statuses = store.load_all()?;
    let planned = match planned_prune(loaded, &statuses, options.force) {
        Ok(planned) => planned,
        Err(refusal) => {
            report(format!("! prune: {refusal}"));
            return Err(Error::Terminal(refusal));
        }
    };
    let mut pruned = Vec::new();
    for id in planned.forgotten {
        report(format!(
            "- {id} forgotten (deletionPolicy Retain: its AWS objects are kept)"
        ));
        store.remove(&id)?;
        pruned.push(id);
    }
    let cloud = super::cloud::AwsCloud::new(clients.clone());
    let persist = |status: &ResourceStatus| store.save(status);
    for mut status in statuses
        .into_iter()
        .filter(|s| planned.deleted.contains(&s.id()))
    {
        let id = status.id();
        let mine: Vec<Action> = planned
            .actions
            .iter()
            .filter(|a| a.resource == id)
            .cloned()
            .collect();
        status.set_phase(
            Phase::Deleting,
            "Pruning",
            "manifest removed; deleting its AWS objects",
        );
        store.save(&status)?;
        delete_pruned(&cloud, &mut status, &mine, report, &persist).await?;
        if options.wait {
            let deleting: Vec<(Option<String>, ResourceId, Action)> = mine
                .iter()
                .filter(|a| deletes_in_background(a.aws_type))
                .map(|a| (status.region.clone(), id.clone(), a.clone()))
                .collect();
            if let Err(err) = wait_until_gone(&cloud, &deleting, options, report).await {
                // Not gone: the status keeps the objects, so the next `apply --prune` deletes
                // them again (and `sdop get` shows why).
                for (_, _, action) in &deleting {
                    status.record_object(action.aws_type, &action.name);
                }
                status.set_phase(Phase::Failed, "PruneIncomplete", err.to_string());
                store.save(&status)?;
                return Err(err);
            }
        }
        store.remove(&id)?;
        pruned.push(id);
    }
    Ok(pruned)
}

/// Types whose delete AWS carries out after the call returns (an endpoint is `Deleting`, a
/// stack `DELETE_IN_PROGRESS`): `apply --prune --wait` waits until they are gone.
fn deletes_in_background(aws_type: AwsType) -> bool {
    matches!(
        aws_type,
        AwsType::SageMakerEndpoint | AwsType::CloudFormationStack
    )
}

/// Polls the objects a prune deleted in the background until AWS no longer reports them, or
/// the apply's timeout.
async fn wait_until_gone(
    cloud: &super::cloud::AwsCloud,
    deleting: &[(Option<String>, ResourceId, Action)],
    options: &ApplyOptions,
    report: Report<'_>,
) -> Result<()> {
    use crate::engine::cloud::{Cloud, Scope};
    use crate::engine::plan::{ObjectKey, ObjectState};
    use crate::model::object::{DesiredObject, Mutability, ObjectName};
    let started = std::time::Instant::now();
    let mut poll = options.min_poll;
    loop {
        let mut left = Vec::new();
        for (region, resource, action) in deleting {
            let key = ObjectKey::new(action.aws_type, action.name.clone());
            let desired = DesiredObject::new(
                action.aws_type,
                ObjectName::Known(action.name.clone()),
                Mutability::InPlace,
            );
            let scope = Scope {
                resource,
                spec_hash: "",
                region: region.as_deref(),
                owned_per_memory: true,
                recorded_outputs: None,
            };
            match cloud.read(scope, &key, &desired).await? {
                None => {}
                // AWS gave up (a stack in DELETE_FAILED): waiting longer changes nothing.
                Some(found) => match found.state {
                    ObjectState::Failed(reason) => {
                        return Err(Error::Terminal(format!(
                            "AWS could not delete {} {}: {reason}; fix the cause, then run `sdop apply --prune` again to retry the delete",
                            action.aws_type, action.name
                        )));
                    }
                    state => left.push(format!("{} {} ({state:?})", action.aws_type, action.name)),
                },
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= options.timeout {
            return Err(Error::Terminal(format!(
                "after {:?} AWS is still deleting: {}; run `sdop apply --prune --wait` again to keep waiting, or check these in the AWS console",
                options.timeout,
                left.join(", ")
            )));
        }
        report(format!(
            "… waiting for AWS to finish deleting: {}",
            left.join(", ")
        ));
        tokio::time::sleep(poll.min(options.timeout.saturating_sub(started.elapsed()))).await;
        poll = (poll * 3 / 2).min(options.max_poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<ResourceId> {
        names
            .iter()
            .map(|n| ResourceId::new("Bucket", *n))
            .collect()
    }

    #[test]
    fn prune_is_guarded() {
        let owned = ids(&["a", "b", "c", "d"]);
        assert_eq!(
            prune_candidates(&ids(&["a", "b", "c"]), &owned, false, false).unwrap(),
            ids(&["d"])
        );
        assert!(
            prune_candidates(&ids(&["a", "b", "c"]), &owned, true, false)
                .unwrap_err()
                .contains("failed to load")
        );
        assert!(prune_candidates(&ids(&["a"]), &owned, false, false)
            .unwrap_err()
            .contains("--force"));
        assert!(prune_candidates(&[], &owned, false, false).is_err());
        assert_eq!(prune_candidates(&[], &owned, false, true).unwrap().len(), 4);
        assert!(prune_candidates(&owned, &owned, false, false)
            .unwrap()
            .is_empty());
    }
}
