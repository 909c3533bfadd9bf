//! One resource, one pass: resolve what it references, derive its desired AWS objects, read
//! them, plan (pure), act through the adapters, and record the outcome in its status.
//! Level-triggered and restart-safe: everything is re-read every pass; names are content
//! hashes, so an interrupted create is found, not repeated.

use std::collections::BTreeMap;

use crate::aws::adapters::{adapter, ObjectContext};
use crate::aws::Clients;
use crate::engine::plan::{self, DesiredObject, ObjectState, ObservedObject, Operation, Ownership};
use crate::engine::resolve::Outputs;
use crate::error::{Error, ErrorClass, Result};
use crate::kinds::{DeletionPolicy, DesiredContext};
use crate::manifest::Manifest;
use crate::state::{Phase, ResourceStatus};

/// A line of progress for the user (`+ Endpoint/base sagemaker:model sd-base-1a2b created`).
pub type Report<'a> = &'a (dyn Fn(String) + Send + Sync);

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassResult {
    pub mutated: bool,
    /// Waiting on a dependency that will not become Ready by itself (Failed, Conflict, Degraded).
    pub blocked: bool,
}

fn deletion_policy(manifest: &Manifest) -> DeletionPolicy {
    serde_json::from_value(manifest.spec_json["deletionPolicy"].clone()).unwrap_or_default()
}

fn adopt(manifest: &Manifest) -> bool {
    manifest.spec_json["adopt"].as_bool().unwrap_or(false)
}

/// Reconciles `manifest` once. `dependencies` are the statuses of what it references.
pub async fn reconcile(
    clients: &Clients,
    manifest: &Manifest,
    dependencies: &[ResourceStatus],
    status: &mut ResourceStatus,
    report: Report<'_>,
) -> Result<PassResult> {
    let id = &manifest.id;
    status.deletion_policy = deletion_policy(manifest);
    // A resource in another region is converged with clients of that region.
    status.region = manifest.handler.region(manifest.spec.as_ref());
    let regional = clients.in_region(status.region.as_deref());
    let clients = &regional;
    if status.observed_spec_hash.as_deref() != Some(&manifest.spec_hash)
        && status.failed_spec_hash.is_some()
        && status.failed_spec_hash.as_deref() != Some(&manifest.spec_hash)
    {
        status.failed_spec_hash = None;
        status.failed_rollout = None;
        status.event("spec changed: retrying after the earlier failure");
    }
    if status.failed_spec_hash.as_deref() == Some(&manifest.spec_hash) {
        return Ok(PassResult::default());
    }

    // Wait for what this resource references; a failed dependency is named at once.
    for dep in dependencies {
        if dep.phase != Phase::Ready {
            let why = if dep.message.is_empty() {
                format!("{:?}", dep.phase)
            } else {
                format!("{:?}: {}", dep.phase, dep.message)
            };
            let blocked = dep.phase.is_settled();
            let reason = if blocked {
                "BlockedByDependency"
            } else {
                "WaitingForDependency"
            };
            status.set_phase(
                Phase::Pending,
                reason,
                format!("waiting for {} ({why})", dep.id()),
            );
            return Ok(PassResult {
                mutated: false,
                blocked,
            });
        }
    }
    let mut outputs = Outputs::default();
    for dep in dependencies {
        outputs.insert(dep.id(), dep.outputs.clone());
    }
    outputs.insert(
        id.clone(),
        manifest.handler.spec_outputs(manifest.spec.as_ref()),
    );
    for (value_id, values) in crate::aws::ssm_outputs(clients, &manifest.spec_json).await? {
        outputs.insert(value_id, values);
    }
    let ctx = DesiredContext {
        id,
        metadata: &manifest.metadata,
        spec_hash: &manifest.spec_hash,
        outputs: &outputs,
        local_files: &manifest.local_files,
    };
    let mut desired = Vec::new();
    for object in manifest.handler.desired(manifest.spec.as_ref(), &ctx) {
        let Some(adapter) = adapter(object.aws_type) else {
            return Err(Error::Terminal(format!(
                "sdop cannot converge {} objects",
                object.aws_type
            )));
        };
        let octx = ObjectContext {
            clients,
            resource: id,
            spec_hash: &manifest.spec_hash,
            owned_per_state: object
                .name
                .known()
                .is_some_and(|n| status.owns(object.aws_type, n)),
        };
        desired.push(adapter.resolve(&octx, object).await?);
    }
    if let Some(unknown) = desired
        .iter()
        .find(|d| d.name.known().is_none() || !d.fully_known())
    {
        let fields: Vec<&str> = unknown
            .fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        status.set_phase(
            Phase::Pending,
            "WaitingForOutputs",
            format!(
                "{} needs values not available yet from its references ({})",
                unknown.aws_type,
                fields.join(", ")
            ),
        );
        return Ok(PassResult::default());
    }

    // Observe. Content-named objects that sdop created for this very spec, last seen Ready,
    // are not read again: their name proves their content (a converged re-apply stays cheap).
    let converged_before = status.phase == Phase::Ready
        && status.observed_spec_hash.as_deref() == Some(&manifest.spec_hash);
    let mut observed = Vec::new();
    for object in &desired {
        let name = object.name.known().unwrap_or_default();
        if object.content_named && converged_before && status.owns(object.aws_type, name) {
            observed.push(ObservedObject::new(
                plan::ObjectKey::new(object.aws_type, name),
                BTreeMap::new(),
                Ownership::Owned {
                    resource: id.clone(),
                },
            ));
            continue;
        }
        let adapter = adapter(object.aws_type).ok_or_else(|| {
            Error::Terminal(format!(
                "sdop cannot converge {} objects yet",
                object.aws_type
            ))
        })?;
        let octx = ObjectContext {
            clients,
            resource: id,
            spec_hash: &manifest.spec_hash,
            owned_per_state: status.owns(object.aws_type, name),
        };
        if let Some(mut found) = adapter.read(&octx, name, Some(object)).await? {
            if found.ownership == Ownership::Foreign {
                if octx.owned_per_state {
                    // sdop created it (its state says so) and someone removed the tags: restore.
                    found.ownership = Ownership::Owned {
                        resource: id.clone(),
                    };
                } else if adopt(manifest) {
                    found.ownership = Ownership::Adopted;
                }
            }
            observed.push(found);
        }
    }

    // Plan (pure) and act.
    let actions = plan::plan_resource(id, &desired, &observed);
    if let Some(conflict) = actions.iter().find(|a| a.operation == Operation::Conflict) {
        let message = format!(
            "{} {}: {}",
            conflict.aws_type, conflict.name, conflict.reason
        );
        if status.phase != Phase::Conflict {
            report(format!("! {id} {message}"));
            status.event(format!("conflict: {message}"));
        }
        status.set_phase(Phase::Conflict, "NotOwned", message);
        return Ok(PassResult::default());
    }
    let mut states: BTreeMap<(&str, String), ObjectState> = observed
        .iter()
        .map(|o| ((o.key.aws_type, o.key.name.clone()), o.state.clone()))
        .collect();
    let mut result = PassResult::default();
    // Objects seen converged confirm the updates made to them.
    for object in &desired {
        let name = object.name.known().unwrap_or_default();
        let settled = !matches!(
            states.get(&(object.aws_type, name.to_string())),
            Some(ObjectState::Progressing(_)) | None
        );
        let planned = actions
            .iter()
            .any(|a| a.aws_type == object.aws_type && a.name == name);
        if settled && !planned {
            let prefix = format!("{} {name} ", object.aws_type);
            status
                .unconfirmed_updates
                .retain(|u| !u.starts_with(&prefix));
        }
    }
    for action in &actions {
        let object = desired
            .iter()
            .find(|d| d.aws_type == action.aws_type && d.name.known() == Some(action.name.as_str()))
            .expect("actions come from desired objects");
        let key = (action.aws_type, action.name.clone());
        // An object in the middle of a change (Creating, Updating) is left to finish first.
        if matches!(states.get(&key), Some(ObjectState::Progressing(_))) {
            continue;
        }
        // An update AWS rolled back is reported, not retried in a loop.
        if action.operation == Operation::Update {
            let target = rollout_target(object, action);
            if let Some(ObjectState::Degraded(reason)) = states.get(&key) {
                if status.rollout_target.as_deref() == Some(target.as_str())
                    || status.failed_rollout.as_deref() == Some(target.as_str())
                {
                    if status.failed_rollout.as_deref() != Some(target.as_str()) {
                        status.failed_rollout = Some(target.clone());
                        let message = format!("ROLLOUT ROLLED BACK by AWS: {target}: {reason}");
                        report(format!("! {id} {message}"));
                        status.event(message);
                    }
                    status.set_phase(
                        Phase::Degraded,
                        "RolloutRolledBack",
                        format!("rollout {target} was rolled back by AWS: {reason}"),
                    );
                    return Ok(result);
                }
            }
            if status.unconfirmed_updates.contains(&target) {
                let message = format!(
                    "AWS does not keep this change (drift persists after the update): {target}"
                );
                if status.phase != Phase::Degraded {
                    report(format!("! {id} {message}"));
                    status.event(message.clone());
                }
                status.set_phase(Phase::Degraded, "DriftPersists", message);
                return Ok(result);
            }
            if status.failed_rollout.as_deref() == Some(target.as_str()) {
                status.set_phase(Phase::Degraded, "RolloutRolledBack", format!("rollout {target} was rolled back by AWS; not retried until the spec changes"));
                return Ok(result);
            }
            status.rollout_target = Some(target);
        }
        let adapter = adapter(action.aws_type).expect("checked while observing");
        let octx = ObjectContext {
            clients,
            resource: id,
            spec_hash: &manifest.spec_hash,
            owned_per_state: status.owns(action.aws_type, &action.name),
        };
        let state = match action.operation {
            Operation::Create => {
                // The intent first: when the create itself succeeds and a later call of it
                // fails (a throttled PutBucketTagging), the next attempt knows the object is
                // sdop's and finishes it, instead of reporting it as foreign.
                let recorded_before = status.owns(action.aws_type, &action.name);
                status.record_object(action.aws_type, &action.name);
                match adapter.create(&octx, object).await {
                    Ok(state) => state,
                    Err(err) => {
                        // A refusal (not a transient failure) created nothing of sdop's.
                        if err.class() == ErrorClass::Terminal && !recorded_before {
                            status.forget_object(action.aws_type, &action.name);
                        }
                        return Err(err);
                    }
                }
            }
            Operation::Update => {
                let state = adapter.update(&octx, object, &action.changes).await?;
                status
                    .unconfirmed_updates
                    .push(rollout_target(object, action));
                state
            }
            Operation::Replace => adapter.update(&octx, object, &action.changes).await?,
            Operation::Delete | Operation::Conflict => continue,
        };
        let verb = match action.operation {
            Operation::Create => "created",
            Operation::Update => "updated",
            _ => "replaced",
        };
        let detail: Vec<String> = action
            .changes
            .iter()
            .filter(|_| action.operation != Operation::Create)
            .map(|c| {
                format!(
                    "{}: {} -> {}",
                    c.field,
                    c.before.as_ref().map_or("-".into(), |v| v.to_string()),
                    c.after.as_ref().map_or("?".into(), |v| v.to_string())
                )
            })
            .collect();
        let line = format!(
            "{} {id} {} {} {verb}{}",
            action.operation.symbol(),
            action.aws_type,
            action.name,
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", detail.join("; "))
            }
        );
        report(line.clone());
        status.event(line);
        states.insert(key, state);
        result.mutated = true;
    }
    // A pass that changed objects re-reads them once for their state and outputs.
    if result.mutated && states.values().all(|s| *s == ObjectState::Ready) {
        observed.clear();
        for object in &desired {
            let name = object.name.known().unwrap_or_default();
            let adapter = adapter(object.aws_type).expect("checked while observing");
            let octx = ObjectContext {
                clients,
                resource: id,
                spec_hash: &manifest.spec_hash,
                owned_per_state: true,
            };
            if let Some(found) = adapter.read(&octx, name, Some(object)).await? {
                states.insert(
                    (found.key.aws_type, found.key.name.clone()),
                    found.state.clone(),
                );
                observed.push(found);
            }
        }
    }
    for object in &desired {
        status.record_object(object.aws_type, object.name.known().unwrap_or_default());
    }
    settle(
        manifest, &desired, &observed, &states, status, clients, report,
    )
    .await?;
    Ok(result)
}

/// What an in-place update is trying to reach, e.g. `sagemaker:endpoint sd-base endpointConfigName="sd-base-1a2b"`.
fn rollout_target(object: &DesiredObject, action: &plan::Action) -> String {
    let fields: Vec<String> = action
        .changes
        .iter()
        .map(|c| {
            format!(
                "{}={}",
                c.field,
                c.after.as_ref().map_or("?".into(), |v| v.to_string())
            )
        })
        .collect();
    format!("{} {} {}", object.aws_type, action.name, fields.join(" "))
}

/// Phase from object states; on Ready: outputs, spec hash, and superseded objects removed.
async fn settle(
    manifest: &Manifest,
    desired: &[DesiredObject],
    observed: &[ObservedObject],
    states: &BTreeMap<(&str, String), ObjectState>,
    status: &mut ResourceStatus,
    clients: &Clients,
    report: Report<'_>,
) -> Result<()> {
    let id = &manifest.id;
    if let Some(reason) = states.values().find_map(|s| match s {
        ObjectState::Failed(reason) => Some(reason.clone()),
        _ => None,
    }) {
        if status.phase != Phase::Failed {
            report(format!("x {id} failed: {reason}"));
            status.event(format!("failed: {reason}"));
        }
        status.failed_spec_hash = Some(manifest.spec_hash.clone());
        status.set_phase(Phase::Failed, "Failed", reason);
        return Ok(());
    }
    if let Some(reason) = states.values().find_map(|s| match s {
        ObjectState::Progressing(reason) => Some(reason.clone()),
        _ => None,
    }) {
        status.set_phase(Phase::Progressing, "Progressing", reason);
        return Ok(());
    }
    if let Some(reason) = states.values().find_map(|s| match s {
        ObjectState::Degraded(reason) => Some(reason.clone()),
        _ => None,
    }) {
        status.set_phase(Phase::Degraded, "Degraded", reason);
        return Ok(());
    }
    // Outputs of objects not read this pass (see "Observe") carry over from the last pass.
    let mut outputs = status.outputs.clone();
    outputs.extend(manifest.handler.spec_outputs(manifest.spec.as_ref()));
    for object in observed {
        outputs.extend(object.outputs.clone());
    }
    status.outputs = outputs;
    status.rollout_target = None;
    remove_superseded(manifest, desired, status, clients, report).await?;
    if status.phase != Phase::Ready {
        report(format!("= {id} ready"));
        status.event("ready");
    }
    status.observed_spec_hash = Some(manifest.spec_hash.clone());
    status.last_error = None;
    status.set_phase(
        Phase::Ready,
        "Converged",
        "all AWS objects match the manifest",
    );
    Ok(())
}

/// Objects this resource created that it no longer wants. The newest superseded one of each
/// immutable type is kept for rollback; older ones are deleted, only now that the new ones serve.
async fn remove_superseded(
    manifest: &Manifest,
    desired: &[DesiredObject],
    status: &mut ResourceStatus,
    clients: &Clients,
    report: Report<'_>,
) -> Result<()> {
    let id = &manifest.id;
    let wanted = |aws_type: &str, name: &str| {
        desired
            .iter()
            .any(|d| d.aws_type == aws_type && d.name.known() == Some(name))
    };
    let superseded: Vec<_> = status
        .objects
        .iter()
        .filter(|o| !wanted(&o.aws_type, &o.name))
        .cloned()
        .collect();
    let mut kept_types = Vec::new();
    for record in superseded.iter().rev() {
        let immutable = desired
            .iter()
            .any(|d| d.aws_type == record.aws_type && d.mutability == plan::Mutability::Replace);
        if immutable && !kept_types.contains(&record.aws_type) {
            kept_types.push(record.aws_type.clone());
            continue;
        }
        let Some(adapter) = adapter(&record.aws_type) else {
            continue;
        };
        let octx = ObjectContext {
            clients,
            resource: id,
            spec_hash: &manifest.spec_hash,
            owned_per_state: true,
        };
        adapter.delete(&octx, &record.name).await?;
        let line = format!(
            "- {id} {} {} deleted (superseded)",
            record.aws_type, record.name
        );
        report(line.clone());
        status.event(line);
        status
            .objects
            .retain(|o| !(o.aws_type == record.aws_type && o.name == record.name));
    }
    Ok(())
}
