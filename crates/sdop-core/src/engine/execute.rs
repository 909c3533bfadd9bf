//! The one executor: a pass over one resource is observe (resolve its inputs, derive its desired
//! objects, read them through the [`Cloud`] seam), [`decide`] (pure), and, in apply mode, act
//! on the actions that are due, then look again. `sdop plan` is the same pass in plan mode;
//! `sdop apply` and the daemon drive it in apply mode.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use super::cloud::{Cloud, ReadRequest, Scope};
use super::decide::{self, decide, Decision, Dependency, Inputs, Memory, Next};
use super::plan::{
    Action, AwsType, DesiredObject, ObjectKey, ObjectState, ObservedObject, Operation, Ownership,
};
use crate::error::{Error, ErrorClass, Result};
use crate::kinds::DesiredContext;
use crate::manifest::Manifest;
use crate::model::outputs::Outputs;
use crate::state::{Phase, ResourceStatus};

/// A line of progress for the user (`+ Endpoint/base sagemaker:model sd-base-1a2b created`).
pub type Report<'a> = &'a (dyn Fn(String) + Send + Sync);

/// Saves the status before each mutating call, so what the call is about to do (a create's
/// intent, a rollout's target) survives a kill -9 during it.
pub type Persist<'a> = &'a (dyn Fn(&ResourceStatus) -> Result<()> + Send + Sync);

/// For plan mode and tests: nothing is saved.
pub fn persist_nothing(_: &ResourceStatus) -> Result<()> {
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Observe and decide; never act.
    Plan,
    /// Observe, decide and act on what is due.
    Apply,
    /// As Apply, but every resource is suspended: its status says what drifted, and nothing
    /// is done (the daemon's `--observe-only`).
    Observe,
}

/// Observe-decide-act rounds per pass at most (create, then settle, then clean up).
const MAX_ROUNDS: usize = 4;

/// What a pass did and what comes next.
#[derive(Debug, Clone, PartialEq)]
pub struct PassOutcome {
    /// Plan mode: every action the decision lists (due or deferred). Apply mode: the actions
    /// that were carried out.
    pub actions: Vec<Action>,
    pub mutated: bool,
    pub next: Next,
    /// The always-on billable capacity the resource's desired objects run, with its region
    /// (an endpoint's instances): what it costs per hour once applied.
    pub capacity: Option<(String, crate::cost::Capacity)>,
}

impl PassOutcome {
    /// Waiting on a dependency that will not become Ready by itself (Failed, Conflict, Degraded).
    pub fn blocked(&self, status: &ResourceStatus) -> bool {
        is_blocked(status)
    }
}

/// Pending on something that will not change by itself: a dependency that is Failed,
/// Conflict, Degraded or blocked in turn, or its own suspension.
fn is_blocked(status: &ResourceStatus) -> bool {
    status.phase == Phase::Pending
        && [
            decide::Reason::BlockedByDependency.as_str(),
            decide::Reason::Suspended.as_str(),
            decide::Reason::AwaitingApproval.as_str(),
        ]
        .contains(&reason_of(status))
}

fn reason_of(status: &ResourceStatus) -> &str {
    status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("", |c| c.reason.as_str())
}

/// The typed memory of a status.
pub fn memory_of(status: &ResourceStatus) -> Memory {
    Memory {
        phase: status.phase,
        observed_spec_hash: status.observed_spec_hash.clone(),
        failed_spec_hash: status.failed_spec_hash.clone(),
        failed_rollout: status.failed_rollout.clone(),
        retry_requested: status.retry_requested_at.is_some(),
        rollout_target: status.rollout_target.clone(),
        rollback_to: status.rollback_to.clone(),
        unconfirmed_updates: status.unconfirmed_updates.clone(),
        objects: status
            .objects
            .iter()
            .filter_map(|r| AwsType::parse(&r.aws_type).map(|t| ObjectKey::new(t, r.name.clone())))
            .collect(),
        outputs: status.outputs.clone(),
    }
}

/// Writes a decision's memory back into the status (records of object types this build does
/// not know are kept as they are).
fn store_memory(status: &mut ResourceStatus, memory: &Memory) {
    status.observed_spec_hash = memory.observed_spec_hash.clone();
    status.failed_spec_hash = memory.failed_spec_hash.clone();
    status.failed_rollout = memory.failed_rollout.clone();
    if !memory.retry_requested {
        status.retry_requested_at = None;
    }
    status.rollout_target = memory.rollout_target.clone();
    status.rollback_to = memory.rollback_to.clone();
    status.unconfirmed_updates = memory.unconfirmed_updates.clone();
    status.outputs = memory.outputs.clone();
    status.objects.retain(|r| {
        AwsType::parse(&r.aws_type).is_none_or(|t| memory.owns(&ObjectKey::new(t, r.name.clone())))
    });
    for key in &memory.objects {
        status.record_object(key.aws_type, &key.name);
    }
}

/// Deletes a pruned resource's objects: the Delete actions its prune planned (newest object
/// first), each through the seam and recorded in the status as any Delete of a pass is, so a
/// kill between two calls leaves the rest recorded and the next prune deletes them (already
/// gone is success). Plan and apply run the same actions.
pub async fn delete_pruned(
    cloud: &dyn Cloud,
    status: &mut ResourceStatus,
    actions: &[Action],
    report: Report<'_>,
    persist: Persist<'_>,
) -> Result<()> {
    let id = status.id();
    let region = status.region.clone();
    let scope = Scope {
        resource: &id,
        spec_hash: "",
        region: region.as_deref(),
        owned_per_memory: true,
        recorded_outputs: None,
    };
    for action in actions {
        if action.resource != id || action.operation != Operation::Delete {
            return Err(Error::Terminal(format!(
                "a prune of {id} carries only its own deletions, not {:?} {}",
                action.operation, action.resource
            )));
        }
        act(cloud, scope, &[], action, status, report, persist).await?;
        persist(status)?;
    }
    Ok(())
}

/// One pass over one resource. `dependencies` are the statuses of what it references (owned
/// or borrowed).
pub async fn pass<D: Borrow<ResourceStatus> + Sync>(
    cloud: &dyn Cloud,
    manifest: &Manifest,
    dependencies: &[D],
    status: &mut ResourceStatus,
    mode: Mode,
    report: Report<'_>,
    persist: Persist<'_>,
) -> Result<PassOutcome> {
    let id = &manifest.id;
    let spec = manifest.spec.as_ref();
    let facts = manifest.handler.facts(spec);
    status.deletion_policy = facts.deletion_policy;
    status.region = manifest.handler.region(spec);
    let region = status.region.clone();
    let recorded_outputs = status.outputs.clone();
    let scope = Scope {
        resource: id,
        spec_hash: &manifest.spec_hash,
        region: region.as_deref(),
        owned_per_memory: false,
        recorded_outputs: Some(&recorded_outputs),
    };
    let dependencies: Vec<&ResourceStatus> = dependencies.iter().map(Borrow::borrow).collect();
    let deps: Vec<Dependency> = dependencies
        .iter()
        .map(|d| Dependency {
            id: d.id(),
            phase: d.phase,
            message: d.message.clone(),
            blocked: is_blocked(d),
        })
        .collect();
    let dependencies_ready = deps.iter().all(|d| d.phase == Phase::Ready);
    let spec_outputs = manifest.handler.spec_outputs(spec);

    // Inputs: what the references give, and the desired objects derived from them.
    let mut outputs = Outputs::default();
    for dep in &dependencies {
        outputs.insert(dep.id(), dep.outputs.clone());
    }
    outputs.insert(id.clone(), spec_outputs.clone());
    if dependencies_ready || mode != Mode::Apply {
        for (value_id, values) in cloud
            .external_values(scope, &manifest.ssm_parameters)
            .await?
        {
            outputs.insert(value_id, values);
        }
    }
    let ctx = DesiredContext {
        id,
        metadata: &manifest.metadata,
        spec_hash: &manifest.spec_hash,
        outputs: &outputs,
        local_files: &manifest.local_files,
    };
    let mut desired = Vec::new();
    for object in manifest.handler.desired(spec, &ctx) {
        if !dependencies_ready && mode == Mode::Apply {
            desired.push(object);
            continue;
        }
        let memory_owns = object
            .name
            .known()
            .is_some_and(|n| status.owns(object.aws_type, n));
        let unresolved = object.clone();
        match cloud
            .resolve(
                Scope {
                    owned_per_memory: memory_owns,
                    ..scope
                },
                object,
            )
            .await
        {
            Ok(resolved) => desired.push(resolved),
            // A source not there yet: known after apply in a plan, a wait in apply.
            Err(Error::Waiting(_)) if mode != Mode::Apply => desired.push(unresolved),
            Err(err) => return Err(err),
        }
    }

    let price_region = region
        .clone()
        .or_else(|| cloud.default_region())
        .unwrap_or_else(|| "(region unknown)".to_string());
    let capacity = desired
        .iter()
        .filter_map(|d| d.capacity.clone())
        .find(|c| !c.while_running)
        .map(|c| (price_region.clone(), c));
    let mut carried_out: Vec<Action> = Vec::new();
    let mut next = Next::WhenWoken;
    for _round in 0..MAX_ROUNDS {
        let observed = if dependencies_ready || mode != Mode::Apply {
            observe(cloud, scope, &desired, status).await?
        } else {
            Vec::new()
        };
        let memory = memory_of(status);
        let mut decision = decide(&Inputs {
            resource: id,
            spec_hash: &manifest.spec_hash,
            failure_key: &manifest.failure_key(),
            facts,
            dependencies: &deps,
            desired: &desired,
            observed: &observed,
            memory: &memory,
            spec_outputs: &spec_outputs,
            suspended: if mode == Mode::Observe {
                Some(decide::Suspension::ObserveOnly)
            } else if facts.suspend {
                Some(decide::Suspension::Spec)
            } else {
                None
            },
        });
        super::billing::attach_costs(
            &mut decision.actions,
            &desired,
            &memory.outputs,
            &price_region,
        );
        next = decision.next;
        if mode == Mode::Plan {
            // Nothing is recorded: a plan's status is thrown away.
            return Ok(PassOutcome {
                actions: decision.actions,
                mutated: false,
                next,
                capacity,
            });
        }
        let before = status.outputs.clone();
        record(status, &decision, report);
        record_hourly_cost(status, capacity.as_ref());
        if status.phase == Phase::Ready {
            for line in manifest
                .handler
                .history(spec, &before, &status.outputs, &outputs)
            {
                report(format!("= {id} {line}"));
                status.remember(line);
            }
        }
        let due: Vec<Action> = decision
            .due()
            .filter(|a| a.operation != Operation::Conflict)
            .filter(|a| !carried_out.contains(a))
            .cloned()
            .collect();
        if due.is_empty() {
            break;
        }
        for action in &due {
            act(cloud, scope, &desired, action, status, report, persist).await?;
            carried_out.push(action.clone());
        }
        if decision.next != Next::ActThenLook {
            break;
        }
        next = Next::Poll;
    }
    let mutated = !carried_out.is_empty();
    Ok(PassOutcome {
        actions: carried_out,
        mutated,
        next,
        capacity,
    })
}

/// Reads every desired object. Content-named objects sdop created for this very spec and last
/// saw Ready are not read again: their name proves their content (a converged re-apply stays
/// cheap).
async fn observe(
    cloud: &dyn Cloud,
    scope: Scope<'_>,
    desired: &[DesiredObject],
    status: &ResourceStatus,
) -> Result<Vec<ObservedObject>> {
    let converged_before = status.phase == Phase::Ready
        && status.observed_spec_hash.as_deref() == Some(scope.spec_hash);
    // Objects trusted by name keep their place among those read (the order of `desired`).
    let mut trusted: Vec<Option<ObservedObject>> = Vec::new();
    let mut keys = Vec::new();
    for object in desired {
        let Some(name) = object.name.known() else {
            continue;
        };
        let key = ObjectKey::new(object.aws_type, name);
        let owned = status.owns(object.aws_type, name);
        let outputs_recorded = object
            .aws_type
            .outputs_when_read()
            .iter()
            .all(|key| status.outputs.contains_key(*key));
        if object.content_named && converged_before && owned && outputs_recorded {
            trusted.push(Some(ObservedObject::new(
                key,
                BTreeMap::new(),
                Ownership::Owned {
                    resource: scope.resource.clone(),
                },
            )));
            continue;
        }
        trusted.push(None);
        keys.push((key, object, owned));
    }
    let requests: Vec<ReadRequest> = keys
        .iter()
        .map(|(key, desired, owned)| ReadRequest {
            key,
            desired,
            owned_per_memory: *owned,
        })
        .collect();
    let mut read = cloud.read_all(scope, &requests).await?.into_iter();
    if read.len() != requests.len() {
        return Err(Error::Terminal(format!(
            "internal: {} reads answered for {} requests",
            read.len(),
            requests.len()
        )));
    }
    Ok(trusted
        .into_iter()
        .filter_map(|slot| match slot {
            Some(found) => Some(found),
            None => read.next().flatten(),
        })
        .collect())
}

/// Output `hourlyCost` of a converged resource that runs always-on capacity: USD per hour at
/// the price table's list price, or `unknown` (read by `sdop get` and the daemon's metric).
fn record_hourly_cost(
    status: &mut ResourceStatus,
    capacity: Option<&(String, crate::cost::Capacity)>,
) {
    let Some((region, capacity)) = capacity else {
        return;
    };
    if status.phase != Phase::Ready {
        return;
    }
    // What runs now when AWS says (an autoscaled endpoint at 0 costs nothing), else the spec's.
    let count = status
        .outputs
        .get(crate::model::outputs::CURRENT_INSTANCE_COUNT)
        .and_then(|c| c.parse().ok())
        .unwrap_or(capacity.instance_count);
    let price = crate::cost::hourly(&capacity.instance_type, count, region)
        .map_or_else(|| "unknown".to_string(), |dollars| format!("{dollars:.4}"));
    status.outputs.insert(HOURLY_COST.to_string(), price);
}

/// The status output with a resource's hourly cost.
pub const HOURLY_COST: &str = "hourlyCost";

/// Writes a decision into the status: memory, phase, notices.
fn record(status: &mut ResourceStatus, decision: &Decision, report: Report<'_>) {
    let id = status.id();
    store_memory(status, &decision.memory);
    for notice in &decision.notices {
        if notice.loud {
            let marker = match decision.status.as_ref().map(|s| s.phase) {
                Some(Phase::Ready) => "=",
                Some(Phase::Failed) => "x",
                _ => "!",
            };
            report(format!("{marker} {id} {}", notice.line));
        }
        status.event(notice.line.clone());
    }
    if let Some(change) = &decision.status {
        // A Failed message says how it is retried; `lastError` keeps AWS's reason alone.
        let message = if change.phase == Phase::Failed {
            format!(
                "{}{}",
                change.message,
                super::policy::retry_hint(&status.id())
            )
        } else {
            change.message.clone()
        };
        status.set_phase(change.phase, change.reason.as_str(), message);
        match change.phase {
            Phase::Ready => status.last_error = None,
            // AWS says the object failed (an endpoint whose container did not start, a training
            // job's error): that is the error, in full, with when it was first seen.
            Phase::Failed
                if status
                    .last_error
                    .as_ref()
                    .is_none_or(|e| e.message != change.message) =>
            {
                status.last_error = Some(crate::state::LastError {
                    class: crate::error::ErrorClass::Terminal,
                    message: change.message.clone(),
                    at: crate::state::now(),
                });
            }
            _ => {}
        }
    }
}

/// Carries out one due action and records what it changed.
async fn act(
    cloud: &dyn Cloud,
    scope: Scope<'_>,
    desired: &[DesiredObject],
    action: &Action,
    status: &mut ResourceStatus,
    report: Report<'_>,
    persist: Persist<'_>,
) -> Result<()> {
    let id = status.id();
    let key_type = action.aws_type;
    let key = ObjectKey::new(key_type, action.name.clone());
    let scope = Scope {
        owned_per_memory: status.owns(key_type, &action.name),
        ..scope
    };
    let object = desired
        .iter()
        .find(|d| d.aws_type == key_type && d.name.known() == Some(action.name.as_str()));
    // What each call returns as the object's state is not trusted: the next round reads it.
    match (action.operation, object) {
        (Operation::Delete, _) => {
            persist(status)?;
            cloud.delete(scope, &key).await?;
            status.forget_object(key_type, &action.name);
        }
        (Operation::Create, Some(object)) => {
            create(cloud, scope, object, status, persist).await?;
        }
        (Operation::Replace, Some(object)) => {
            // Immutable in AWS: the old object goes, the new one is created under its name.
            persist(status)?;
            cloud.delete(scope, &key).await?;
            create(cloud, scope, object, status, persist).await?;
        }
        (Operation::Update, Some(object)) => {
            persist(status)?;
            cloud.update(scope, object, &action.changes).await?;
            status
                .unconfirmed_updates
                .push(decide::rollout_target(action));
        }
        (Operation::Rollback, Some(object)) => {
            persist(status)?;
            cloud
                .update(scope, &object.rolled_back(&action.changes), &action.changes)
                .await?;
        }
        (Operation::Adopt, Some(object)) => {
            status.record_object(key_type, &action.name);
            persist(status)?;
            if !action.changes.is_empty() {
                cloud.update(scope, object, &action.changes).await?;
            }
        }
        (Operation::Conflict, _) => return Ok(()),
        (_, None) => {
            return Err(Error::Terminal(format!(
                "{} {}: no desired object for a {:?}",
                key_type, action.name, action.operation
            )))
        }
    }
    let verb = match action.operation {
        Operation::Create => "created",
        Operation::Update => "updated",
        Operation::Rollback => "rolled back",
        Operation::Replace => "replaced",
        Operation::Delete => "deleted",
        Operation::Adopt => "adopted",
        Operation::Conflict => "left alone",
    };
    let detail: Vec<String> = action
        .changes
        .iter()
        .filter(|_| !matches!(action.operation, Operation::Create | Operation::Delete))
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c.field,
                c.before.as_ref().map_or("-".into(), |v| v.to_string()),
                c.after.as_ref().map_or("?".into(), |v| v.to_string())
            )
        })
        .collect();
    let why = if let Some(deletion) = &action.deletion {
        format!(" ({deletion})")
    } else if detail.is_empty() {
        String::new()
    } else {
        format!(" ({})", detail.join("; "))
    };
    let line = format!(
        "{} {id} {} {} {verb}{why}",
        action.operation.symbol(),
        key_type,
        action.name,
    );
    report(line.clone());
    status.event(line);
    Ok(())
}

/// A create records its intent first, saved before the call: when the create itself succeeds
/// and a later call of it fails (a throttled PutBucketTagging) or the process is killed, the
/// next attempt knows the object is sdop's and finishes it, instead of reporting it as
/// foreign. A refusal created nothing: forgotten.
async fn create(
    cloud: &dyn Cloud,
    scope: Scope<'_>,
    object: &DesiredObject,
    status: &mut ResourceStatus,
    persist: Persist<'_>,
) -> Result<ObjectState> {
    let name = object.name.known().unwrap_or_default();
    let recorded_before = status.owns(object.aws_type, name);
    status.record_object(object.aws_type, name);
    persist(status)?;
    match cloud.create(scope, object).await {
        Ok(created) => {
            // An object AWS named: recorded under its name, so sdop owns and finds it.
            if let Some(assigned) = created.assigned_name.filter(|a| a != name) {
                status.forget_object(object.aws_type, name);
                status.record_object(object.aws_type, &assigned);
                persist(status)?;
            }
            Ok(created.state)
        }
        Err(err) => {
            if err.class() == ErrorClass::Terminal && !recorded_before {
                status.forget_object(object.aws_type, name);
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resource::ResourceId;

    #[test]
    fn the_hourly_cost_is_what_runs_now() {
        let capacity = (
            "us-east-1".to_string(),
            crate::cost::Capacity {
                instance_type: "ml.g4dn.2xlarge".into(),
                instance_count: 1,
                while_running: false,
            },
        );
        let mut status = ResourceStatus::new(&ResourceId::new("Endpoint", "e"));
        status.phase = Phase::Ready;
        record_hourly_cost(&mut status, Some(&capacity));
        assert_eq!(status.outputs[HOURLY_COST], "0.9400");
        // Scaled to zero instances: nothing is billed now.
        status.outputs.insert(
            crate::model::outputs::CURRENT_INSTANCE_COUNT.into(),
            "0".into(),
        );
        record_hourly_cost(&mut status, Some(&capacity));
        assert_eq!(status.outputs[HOURLY_COST], "0.0000");
    }
}

#[cfg(test)]
mod pass_tests {
    //! The executor's pass against the in-memory cloud: converging, idempotence, and every
    //! crash window (each mutating call failed before and after it took effect, the process
    //! then restarting from what it had persisted).
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::engine::cloud::{CrashWindow, InMemory};
    use crate::manifest::load::{load_str, Loaded};
    use crate::manifest::ResourceId;

    const MANIFESTS: &str = r#"
apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {name: assets}
spec: {bucketName: sdop-assets, region: us-east-1, tags: {team: ml}}
---
apiVersion: sdop/v1alpha1
kind: ImageRepository
metadata: {name: inference}
spec: {repositoryName: sd-inference, tags: {team: ml}}
---
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: base}
spec:
  endpointName: sd-base
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-assets/model.tar.gz"}
  instanceType: ml.g4dn.2xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sm
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
  tags: {team: ml}
"#;

    /// What survives a crash: the statuses as last persisted.
    type Disk = Mutex<HashMap<ResourceId, ResourceStatus>>;

    /// One apply: a pass of every resource in graph order, each starting from what `disk`
    /// holds and persisting to it. The first error stops it, as a killed process would.
    async fn apply_once(loaded: &Loaded, cloud: &InMemory, disk: &Disk) -> Result<bool> {
        let mut mutated = false;
        for &index in loaded.graph.order() {
            let manifest = &loaded.manifests[index];
            let saved = |id: &ResourceId| {
                disk.lock()
                    .unwrap()
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| ResourceStatus::new(id))
            };
            let dependencies: Vec<ResourceStatus> = loaded
                .graph
                .dependencies(index)
                .iter()
                .map(|&d| saved(&loaded.manifests[d].id))
                .collect();
            let mut status = saved(&manifest.id);
            let persist = |s: &ResourceStatus| -> Result<()> {
                disk.lock().unwrap().insert(s.id(), s.clone());
                Ok(())
            };
            let outcome = pass(
                cloud,
                manifest,
                &dependencies,
                &mut status,
                Mode::Apply,
                &|_| {},
                &persist,
            )
            .await?;
            persist(&status)?;
            mutated |= outcome.mutated;
        }
        Ok(mutated)
    }

    /// Applies until a pass changes nothing (at most 6), then checks the plan is empty.
    async fn converge(loaded: &Loaded, cloud: &InMemory, disk: &Disk) {
        for _ in 0..6 {
            if !apply_once(loaded, cloud, disk).await.expect("apply") {
                break;
            }
        }
        let statuses = disk.lock().unwrap().clone();
        let plan = crate::engine::plan_all(&loaded.manifests, &loaded.graph, cloud, &statuses)
            .await
            .unwrap();
        assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
        for status in statuses.values() {
            assert_eq!(status.phase, Phase::Ready, "{status:#?}");
        }
    }

    fn loaded() -> Loaded {
        let loaded = load_str("t.yaml", MANIFESTS);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded
    }

    /// A create AWS names (a registry version): the executor records the name AWS assigned,
    /// in place of its intent under the desired one.
    #[tokio::test]
    async fn the_name_aws_assigns_is_recorded() {
        let loaded = load_str(
            "t.yaml",
            "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: assets}\nspec: {bucketName: sdop-assets, region: us-east-1}\n",
        );
        let cloud = InMemory::default();
        cloud
            .assigns_versions
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // What each save recorded: the intent under the desired name, then the assigned one.
        let saved = Mutex::new(Vec::new());
        let persist = |s: &ResourceStatus| -> Result<()> {
            let names: Vec<String> = s.objects.iter().map(|o| o.name.clone()).collect();
            saved.lock().unwrap().push(names);
            Ok(())
        };
        let manifest = &loaded.manifests[0];
        let mut status = ResourceStatus::new(&manifest.id);
        let no_dependencies: [ResourceStatus; 0] = [];
        // One round is enough: the create is its first action (what later rounds do with an
        // object AWS named is the next issue's, a Model Registry version).
        let _ = pass(
            &cloud,
            manifest,
            &no_dependencies,
            &mut status,
            Mode::Apply,
            &|_| {},
            &persist,
        )
        .await;
        let saved = saved.into_inner().unwrap();
        assert!(
            saved.contains(&vec!["sdop-assets".to_string()]),
            "{saved:?}"
        );
        assert!(
            saved.contains(&vec!["sdop-assets/1".to_string()]),
            "{saved:?}"
        );
        let intent = saved.iter().position(|n| n == &["sdop-assets"]).unwrap();
        let assigned = saved.iter().position(|n| n == &["sdop-assets/1"]).unwrap();
        assert!(intent < assigned, "{saved:?}");
    }

    /// Issue #23: a resource AWS failed (not an error of sdop's call) has its `lastError` set,
    /// with AWS's reason in full.
    #[tokio::test]
    async fn a_failure_aws_reports_is_the_last_error() {
        let loaded = loaded();
        let cloud = InMemory::default();
        let disk = Disk::default();
        converge(&loaded, &cloud, &disk).await;
        let endpoint = cloud
            .keys()
            .into_iter()
            .find(|k| k.aws_type == crate::model::object::AwsType::SageMakerEndpoint)
            .expect("an endpoint");
        let reason = format!(
            "The primary container for production variant AllTraffic did not pass the ping health check: {}",
            "a container's own error, longer than a table's column. ".repeat(4)
        );
        cloud.modify(&endpoint, |o| o.state = ObjectState::Failed(reason.clone()));
        apply_once(&loaded, &cloud, &disk).await.unwrap();
        let status = disk.lock().unwrap()[&ResourceId::new("Endpoint", "base")].clone();
        assert_eq!(status.phase, Phase::Failed, "{status:#?}");
        let error = status.last_error.expect("lastError set");
        assert_eq!(error.message, reason);
        assert_eq!(error.class, crate::error::ErrorClass::Terminal);
        // Seen again: the same error, still dated when it was first seen (an old date is put
        // in first, so an overwrite within the same second would show).
        let first_seen = "2020-01-01T00:00:00Z".to_string();
        disk.lock()
            .unwrap()
            .get_mut(&ResourceId::new("Endpoint", "base"))
            .unwrap()
            .last_error
            .as_mut()
            .unwrap()
            .at = first_seen.clone();
        apply_once(&loaded, &cloud, &disk).await.unwrap();
        let again = disk.lock().unwrap()[&ResourceId::new("Endpoint", "base")].clone();
        assert_eq!(again.last_error.unwrap().at, first_seen);
    }

    #[tokio::test]
    async fn a_pass_converges_and_a_second_changes_nothing() {
        let loaded = loaded();
        let cloud = InMemory::default();
        let disk = Disk::default();
        converge(&loaded, &cloud, &disk).await;
        let calls = cloud.take_calls();
        assert_eq!(
            calls.iter().filter(|c| c.starts_with("Create")).count(),
            5,
            "bucket, repository, model, config, endpoint: {calls:#?}"
        );
        assert!(!apply_once(&loaded, &cloud, &disk).await.unwrap());
        assert_eq!(cloud.take_calls(), Vec::<String>::new());
    }

    /// The same manifests after an edit that rolls the endpoint out: a new model and config,
    /// an UpdateEndpoint, the superseded ones deleted once the new ones serve.
    fn rolled_out(version: &str) -> Loaded {
        let loaded = load_str(
            "t.yaml",
            &MANIFESTS
                .replace("ml.g4dn.2xlarge", "ml.g4dn.xlarge")
                .replace("sd:latest", &format!("sd:{version}")),
        );
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded
    }

    #[tokio::test]
    async fn every_crash_window_of_the_first_apply_converges_with_no_duplicates_and_no_leaks() {
        crash_windows(&[], &loaded()).await;
    }

    #[tokio::test]
    async fn every_crash_window_of_a_rollout_converges_with_no_duplicates_and_no_leaks() {
        crash_windows(&[loaded()], &rolled_out("v2")).await;
    }

    /// The second rollout deletes the first generation (the newest superseded one is kept).
    #[tokio::test]
    async fn every_crash_window_of_a_rollout_that_deletes_converges_with_no_leaks() {
        crash_windows(&[loaded(), rolled_out("v2")], &rolled_out("v3")).await;
    }

    /// Fails each mutating call of converging on `loaded` (after converging on each of `start`
    /// in turn, from an empty cloud), before and after it took effect, then restarts from what was persisted: it
    /// converges to exactly the objects of a run without failures.
    async fn crash_windows(start: &[Loaded], loaded: &Loaded) {
        let begin = |cloud: InMemory, disk: Disk| async move {
            for earlier in start {
                converge(earlier, &cloud, &disk).await;
            }
            cloud.take_calls();
            (cloud, disk)
        };
        let (clean, disk) = begin(InMemory::default(), Disk::default()).await;
        converge(loaded, &clean, &disk).await;
        let calls = clean.take_calls().len();
        let objects = clean.keys();
        assert!(calls >= 3, "{calls}: {:#?}", clean.take_calls());
        for nth in 1..=calls {
            for window in [CrashWindow::BeforeTheCall, CrashWindow::AfterTheCall] {
                let (cloud, disk) = begin(InMemory::default(), Disk::default()).await;
                cloud.fail_call(nth, window);
                // The failed call stops that apply (the process dies); the next one starts
                // from what was persisted.
                let mut failed = false;
                for _ in 0..6 {
                    match apply_once(loaded, &cloud, &disk).await {
                        Err(_) => failed = true,
                        Ok(false) => break,
                        Ok(true) => {}
                    }
                }
                assert!(failed, "call {nth} ({window:?}) never failed");
                converge(loaded, &cloud, &disk).await;
                assert_eq!(cloud.keys(), objects, "call {nth} ({window:?})");
                let log = cloud.take_calls();
                let mut creates: Vec<&String> =
                    log.iter().filter(|c| c.starts_with("Create")).collect();
                let all = creates.len();
                creates.sort();
                creates.dedup();
                // The failed create, when it was one, is the only one made twice (its retry;
                // after the call, AWS's "already exists" of sdop's own is success).
                let repeats = all - creates.len();
                assert!(repeats <= 1, "call {nth} ({window:?}): {log:#?}");
            }
        }
    }
}
