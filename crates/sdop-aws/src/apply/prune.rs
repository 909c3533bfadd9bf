//! Pruning: resources sdop has status for but no manifest declares. Guarded: nothing is pruned
//! when any manifest failed to load (a broken file is never read as "deleted"), and more than
//! `MAX_PRUNE_SHARE` of what sdop owns (or all of it) needs `--force`. `deletionPolicy: Retain`
//! keeps the AWS objects and only forgets them.

use super::run::ApplyOptions;
use crate::aws::adapters::{adapter, ObjectContext};
use crate::aws::Clients;
use crate::engine::execute::Report;
use crate::error::{Error, Result};
use crate::kinds::DeletionPolicy;
use crate::manifest::{Loaded, ResourceId};
use crate::model::object::AwsType;
use crate::state::{Phase, StateStore};

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

/// What `apply --prune` would do, as plan actions (pure over the state): a Delete of every
/// object a pruned resource recorded (deletionPolicy Delete, newest first), nothing for Retain
/// (listed in the plan's notes as forgotten). `Err` is the guard's refusal, as apply gives it.
pub fn planned_prune(
    loaded: &Loaded,
    statuses: &[crate::state::ResourceStatus],
    force: bool,
) -> Result<(Vec<crate::engine::Action>, Vec<ResourceId>), String> {
    let declared: Vec<ResourceId> = loaded.manifests.iter().map(|m| m.id.clone()).collect();
    let owned: Vec<ResourceId> = statuses.iter().map(|s| s.id()).collect();
    let candidates = prune_candidates(&declared, &owned, !loaded.failed_files.is_empty(), force)?;
    let mut actions = Vec::new();
    let mut forgotten = Vec::new();
    for status in statuses.iter().filter(|s| candidates.contains(&s.id())) {
        if status.deletion_policy == DeletionPolicy::Retain {
            forgotten.push(status.id());
            continue;
        }
        for record in status.objects.iter().rev() {
            let Some(aws_type) = AwsType::parse(&record.aws_type) else {
                continue;
            };
            actions.push(crate::engine::Action {
                resource: status.id(),
                operation: crate::engine::Operation::Delete,
                aws_type,
                name: record.name.clone(),
                reason: "pruned: no manifest declares this resource (deletionPolicy Delete)".into(),
                changes: Vec::new(),
                deferred: None,
                cost: None,
            });
        }
    }
    Ok((actions, forgotten))
}

pub async fn prune(
    loaded: &Loaded,
    clients: &Clients,
    store: &StateStore,
    options: &ApplyOptions,
    report: Report<'_>,
) -> Result<Vec<ResourceId>> {
    let declared: Vec<ResourceId> = loaded.manifests.iter().map(|m| m.id.clone()).collect();
    let statuses = store.load_all()?;
    let owned: Vec<ResourceId> = statuses.iter().map(|s| s.id()).collect();
    let candidates = match prune_candidates(
        &declared,
        &owned,
        !loaded.failed_files.is_empty(),
        options.force,
    ) {
        Ok(candidates) => candidates,
        Err(refusal) => {
            report(format!("! prune: {refusal}"));
            return Err(Error::Terminal(refusal));
        }
    };
    let mut pruned = Vec::new();
    for mut status in statuses
        .into_iter()
        .filter(|s| candidates.contains(&s.id()))
    {
        let id = status.id();
        if status.deletion_policy == DeletionPolicy::Retain {
            report(format!(
                "- {id} forgotten (deletionPolicy Retain: its AWS objects are kept)"
            ));
            store.remove(&id)?;
            pruned.push(id);
            continue;
        }
        status.set_phase(
            Phase::Deleting,
            "Pruning",
            "manifest removed; deleting its AWS objects",
        );
        store.save(&status)?;
        let regional = clients.in_region(status.region.as_deref());
        // Newest first: an endpoint before its config before its model.
        for record in status.objects.clone().iter().rev() {
            // A type this build does not know (state from a newer sdop) is left alone.
            let Some(adapter) = AwsType::parse(&record.aws_type).map(adapter) else {
                continue;
            };
            let ctx = ObjectContext {
                clients: &regional,
                resource: &id,
                spec_hash: "",
                owned_per_state: true,
            };
            adapter.delete(&ctx, &record.name).await?;
            report(format!(
                "- {id} {} {} deleted",
                record.aws_type, record.name
            ));
            status.objects.retain(|o| o != record);
            store.save(&status)?;
        }
        store.remove(&id)?;
        pruned.push(id);
    }
    Ok(pruned)
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
