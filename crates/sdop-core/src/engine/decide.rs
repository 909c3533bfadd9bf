//! The decision: one resource's whole next step as a pure function of typed inputs (what its
//! spec says, its dependencies' phases, its desired objects, what AWS shows, what earlier passes
//! remember) to a typed [`Decision`]: every action with its reason, the phase and reason, the
//! new memory and what to do next. No I/O, no clock. `sdop plan`, `sdop apply` and the daemon
//! all run it through the one executor ([`super::execute`]); plan lists the actions, apply runs
//! the ones that are due now.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use super::plan::{
    self, Action, AwsType, DesiredObject, ObjectKey, ObjectState, ObservedObject, Operation,
    Ownership,
};
use crate::manifest::ResourceId;
use crate::model::object::RolloutTarget;
use crate::state::Phase;

/// Facts of the spec that steer decisions: the kind's, one type for the kinds and the engine
/// (typed, never read from JSON).
pub use crate::kinds::SpecFacts;

/// A dependency as this resource sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub id: ResourceId,
    pub phase: Phase,
    pub message: String,
    /// It is itself blocked by something that will not become Ready by itself (a Failed
    /// resource further up): whatever reads it is blocked at once, not left waiting.
    pub blocked: bool,
}

/// What earlier passes recorded for the resource (persisted in its status).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Memory {
    pub phase: Phase,
    pub observed_spec_hash: Option<String>,
    /// The failure key ([`Inputs::failure_key`]) of an attempt that failed terminally: not
    /// retried until the spec or a file it reads changes, or a retry is requested.
    pub failed_spec_hash: Option<String>,
    /// A rollout AWS rolled back: not retried until the spec changes.
    pub failed_rollout: Option<RolloutTarget>,
    /// Someone asked for a retry of what failed (`sdop reconcile KIND/NAME`).
    pub retry_requested: bool,
    /// The in-place change last started (to recognise AWS rolling it back).
    pub rollout_target: Option<RolloutTarget>,
    /// What the object a check verifies was before the rollout started (to roll back to).
    pub rollback_to: Option<plan::RollbackTarget>,
    /// In-place changes made but not yet seen converged.
    pub unconfirmed_updates: Vec<RolloutTarget>,
    /// Objects sdop created or adopted for the resource, oldest first.
    pub objects: Vec<ObjectKey>,
    pub outputs: BTreeMap<String, String>,
}

impl Memory {
    pub fn owns(&self, key: &ObjectKey) -> bool {
        self.objects.contains(key)
    }

    pub fn record(&mut self, key: &ObjectKey) {
        if !self.owns(key) {
            self.objects.push(key.clone());
        }
    }
}

/// Everything [`decide`] reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub resource: &'a ResourceId,
    pub spec_hash: &'a str,
    /// The spec and the files it reads (`Manifest::failure_key`): what a terminal failure is
    /// remembered by.
    pub failure_key: &'a str,
    pub facts: SpecFacts,
    pub dependencies: &'a [Dependency],
    pub desired: &'a [DesiredObject],
    /// What AWS shows under the desired objects' names (absent: does not exist).
    pub observed: &'a [ObservedObject],
    pub memory: &'a Memory,
    /// Outputs the spec alone gives (a bucket's name).
    pub spec_outputs: &'a BTreeMap<String, String>,
    /// Why nothing may be done (the plan is still made and shown), if so.
    pub suspended: Option<Suspension>,
}

/// Why a resource is read and reported but not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspension {
    /// `spec.suspend: true` in its manifest.
    Spec,
    /// The daemon runs with `--observe-only`.
    ObserveOnly,
}

impl Suspension {
    pub fn describe(self) -> &'static str {
        match self {
            Suspension::Spec => "spec.suspend: true; set it to false to resume",
            Suspension::ObserveOnly => {
                "the daemon runs with --observe-only; restart it without to resume"
            }
        }
    }
}

/// Why the resource is in its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Converged,
    WaitingForDependency,
    BlockedByDependency,
    WaitingForOutputs,
    NotOwned,
    Applying,
    Progressing,
    Degraded,
    RolloutRolledBack,
    SmokeCheckFailed,
    DriftPersists,
    Failed,
    /// `spec.suspend: true`, or the daemon's observe-only mode: nothing is done.
    Suspended,
    /// A value it needs waits for a person (no approved model version yet): nothing changes
    /// by itself.
    AwaitingApproval,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Converged => "Converged",
            Reason::WaitingForDependency => "WaitingForDependency",
            Reason::BlockedByDependency => "BlockedByDependency",
            Reason::WaitingForOutputs => "WaitingForOutputs",
            Reason::NotOwned => "NotOwned",
            Reason::Applying => "Applying",
            Reason::Progressing => "Progressing",
            Reason::Degraded => "Degraded",
            Reason::RolloutRolledBack => "RolloutRolledBack",
            Reason::SmokeCheckFailed => "SmokeCheckFailed",
            Reason::DriftPersists => "DriftPersists",
            Reason::Failed => "Failed",
            Reason::Suspended => "Suspended",
            Reason::AwaitingApproval => "AwaitingApproval",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub phase: Phase,
    pub reason: Reason,
    pub message: String,
}

/// A line worth telling: `loud` ones go to the user's terminal and the log as well as the
/// resource's events (a rollback, a conflict, a failure).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub loud: bool,
    pub line: String,
}

/// What to do after this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run the due actions, then look again at once (their results decide the phase).
    ActThenLook,
    /// Something is in progress in AWS: poll.
    Poll,
    /// Waiting on values or on a retry: back off.
    Backoff,
    /// Nothing happens until something changes (a file, a dependency, the resync).
    WhenWoken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Every action, due now (`deferred: None`) or later (with why it waits).
    pub actions: Vec<Action>,
    /// `None`: the recorded phase stands (a failure not retried until the spec changes).
    pub status: Option<StatusChange>,
    pub memory: Memory,
    pub notices: Vec<Notice>,
    pub next: Next,
}

impl Decision {
    /// Actions to run in this pass.
    pub fn due(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.deferred.is_none())
    }
}

/// What an in-place update is trying to reach, e.g.
/// `sagemaker:endpoint sd-base endpointConfigName="sd-base-1a2b"`.
pub fn rollout_target(action: &Action) -> RolloutTarget {
    RolloutTarget::new(action.aws_type, &action.name, &action.changes)
}

/// Forgets a remembered failure, a rolled-back rollout included (what it rolled back to and
/// the updates not confirmed), so the next decision tries again from what AWS shows.
fn forget_failure(memory: &mut Memory) {
    memory.failed_spec_hash = None;
    if let Some(target) = memory.failed_rollout.take() {
        memory.unconfirmed_updates.retain(|u| *u != target);
        if memory.rollout_target.as_ref() == Some(&target) {
            memory.rollout_target = None;
        }
    }
}

fn defer_all(actions: &mut [Action], why: &str) {
    for action in actions.iter_mut() {
        action.deferred.get_or_insert_with(|| why.to_string());
    }
}

fn status(phase: Phase, reason: Reason, message: impl Into<String>) -> Option<StatusChange> {
    Some(StatusChange {
        phase,
        reason,
        message: message.into(),
    })
}

/// The one decision of a pass (pure): named gates, in order, each of which may end the
/// decision (`ControlFlow::Break`) or let the next one look; what passes them all is decided
/// from what AWS shows ([`Draft::phase_from_aws`]). The table tests below are its spec.
pub fn decide(input: &Inputs) -> Decision {
    let mut draft = Draft::new(input);
    match draft.gates() {
        ControlFlow::Break(decision) => decision,
        ControlFlow::Continue(()) => draft.phase_from_aws(),
    }
}

/// What a decision builds up as its gates run.
struct Draft<'i, 'a> {
    input: &'i Inputs<'a>,
    /// What AWS shows, with ownership as sdop knows it.
    observed: Vec<ObservedObject>,
    actions: Vec<Action>,
    /// Objects the resource recorded and no longer wants.
    superseded: Vec<ObjectKey>,
    memory: Memory,
    notices: Vec<Notice>,
    /// This pass retries after a remembered failure (a retry was requested, or the spec or a
    /// file it reads changed).
    retrying: bool,
    /// Some objects wait for values not known yet while the others go on: why.
    waiting_for_values: Option<String>,
}

impl<'i, 'a> Draft<'i, 'a> {
    fn new(input: &'i Inputs<'a>) -> Self {
        Draft {
            input,
            observed: Vec::new(),
            actions: Vec::new(),
            superseded: Vec::new(),
            memory: input.memory.clone(),
            notices: Vec::new(),
            retrying: false,
            waiting_for_values: None,
        }
    }

    /// Ends the decision with `actions`, `status` and what comes next.
    fn decision(
        &mut self,
        actions: Vec<Action>,
        status: Option<StatusChange>,
        next: Next,
    ) -> ControlFlow<Decision> {
        ControlFlow::Break(self.finish(actions, status, next))
    }

    fn finish(
        &mut self,
        actions: Vec<Action>,
        status: Option<StatusChange>,
        next: Next,
    ) -> Decision {
        Decision {
            actions,
            status,
            memory: std::mem::take(&mut self.memory),
            notices: std::mem::take(&mut self.notices),
            next,
        }
    }

    fn notice(&mut self, loud: bool, line: impl Into<String>) {
        self.notices.push(Notice {
            loud,
            line: line.into(),
        });
    }

    fn state_of(&self, aws_type: AwsType, name: &str) -> Option<&ObjectState> {
        state_in(&self.observed, aws_type, name)
    }

    /// The gates, in order.
    fn gates(&mut self) -> ControlFlow<Decision> {
        self.failed_spec_waits_for_a_change()?;
        self.diff();
        self.replace_failed_on_retry();
        self.suspended()?;
        self.dependencies_ready()?;
        self.values_known()?;
        self.no_conflict()?;
        self.remember_and_confirm();
        self.failed_check_rolls_back()?;
        self.guards()?;
        self.due_actions_run()
    }

    /// A terminal failure is not retried until the spec or a file it reads changes (which
    /// forgets it), or someone asks for a retry (an image pushed again, a quota raised: causes
    /// outside the spec).
    fn failed_spec_waits_for_a_change(&mut self) -> ControlFlow<Decision> {
        let input = self.input;
        let failure_key = input.failure_key;
        // A request is kept until a pass can act on it: not while suspended or while what the
        // resource reads is not Ready (nothing would be read or done).
        let can_act =
            input.suspended.is_none() && input.dependencies.iter().all(|d| d.phase == Phase::Ready);
        let memory = &mut self.memory;
        if memory.retry_requested && can_act {
            if memory.failed_spec_hash.is_some() || memory.failed_rollout.is_some() {
                // Kept until no failed object is left to replace (`replace_failed_on_retry`):
                // a kill -9 between the decision and the replacement does not lose it.
                forget_failure(memory);
                self.retrying = true;
                self.notice(false, "retry requested: retrying after the earlier failure");
            } else {
                memory.retry_requested = false;
            }
        }
        let memory = &mut self.memory;
        // Failures recorded before the failure key existed carry the spec hash: still this
        // attempt's.
        let same_attempt = |failed: &str| failed == failure_key || failed == input.spec_hash;
        if memory.observed_spec_hash.as_deref() != Some(input.spec_hash)
            && memory
                .failed_spec_hash
                .as_deref()
                .is_some_and(|failed| !same_attempt(failed))
        {
            forget_failure(memory);
            self.retrying = true;
            self.notice(
                false,
                "spec or a file it reads changed: retrying after the earlier failure",
            );
        }
        if self
            .memory
            .failed_spec_hash
            .as_deref()
            .is_some_and(same_attempt)
        {
            return self.decision(Vec::new(), None, Next::WhenWoken);
        }
        ControlFlow::Continue(())
    }

    /// Ownership as sdop knows it (its memory says it created an object whose tags someone
    /// removed; `adopt: true` takes over an untagged one), the field diff, objects being
    /// deleted outside sdop, what must get out of the way, and what is superseded.
    fn diff(&mut self) {
        let input = self.input;
        let memory = &self.memory;
        self.observed = input
            .observed
            .iter()
            .cloned()
            .map(|mut found| {
                if found.ownership == Ownership::Foreign {
                    if memory.owns(&found.key) {
                        found.ownership = Ownership::Owned {
                            resource: input.resource.clone(),
                        };
                    } else if input.facts.adopt {
                        found.ownership = Ownership::Adopted;
                    }
                }
                found
            })
            .collect();
        let mut actions = plan::plan_resource(input.resource, input.desired, &self.observed);
        // An object being deleted outside sdop comes back once it is gone.
        for found in &self.observed {
            if let ObjectState::Deleting(what) = &found.state {
                let why = format!("being deleted outside sdop ({what}): recreated once it is gone");
                actions.retain(|a| !(a.aws_type == found.key.aws_type && a.name == found.key.name));
                if let Some(want) = input.desired.iter().find(|d| {
                    d.aws_type == found.key.aws_type && d.name.known() == Some(&found.key.name)
                }) {
                    let mut create = plan::create_action(input.resource, want, why.clone());
                    create.deferred = Some(format!(
                        "after {} {} is gone",
                        found.key.aws_type, found.key.name
                    ));
                    actions.push(create);
                }
            }
        }
        get_out_of_the_way(&mut actions, input.desired);
        // A data store the manifest no longer names (a renamed bucket or repository) is kept
        // and forgotten under deletionPolicy Retain, not deleted with its data.
        let retain = input.facts.deletion_policy == crate::model::DeletionPolicy::Retain;
        let (kept, doomed): (Vec<ObjectKey>, Vec<ObjectKey>) =
            superseded(input.desired, &self.memory)
                .into_iter()
                .partition(|key| retain && key.aws_type.holds_data());
        for key in kept {
            self.memory.objects.retain(|o| o != &key);
            self.notice(
                true,
                format!(
                    "{} {} is no longer this resource's: kept and forgotten (deletionPolicy Retain); delete it by hand when it holds nothing needed",
                    key.aws_type, key.name
                ),
            );
        }
        self.superseded = doomed;
        self.actions = actions;
    }

    /// A retry replaces what AWS left Failed and accepts no update of: an endpoint whose
    /// creation failed (SageMaker updates only an InService endpoint) and a stack whose
    /// creation rolled back (`ROLLBACK_COMPLETE`: CloudFormation only deletes it). Without a
    /// retry such an object keeps the resource Failed.
    fn replace_failed_on_retry(&mut self) {
        if !self.retrying {
            return;
        }
        let input = self.input;
        let mut replacing = false;
        for found in &self.observed {
            let ObjectState::Failed(reason) = &found.state else {
                continue;
            };
            // Only what AWS can do nothing else with: a Failed endpoint, a stack whose first
            // create rolled back. A stack in UPDATE_ROLLBACK_FAILED or DELETE_FAILED still
            // holds its resources and data: never deleted by a retry.
            let replaceable = match found.key.aws_type {
                AwsType::SageMakerEndpoint => true,
                AwsType::CloudFormationStack => reason.starts_with("ROLLBACK_COMPLETE"),
                _ => false,
            };
            let ours = matches!(&found.ownership, Ownership::Owned { resource } if resource == input.resource);
            let Some(want) = input.desired.iter().find(|d| {
                d.aws_type == found.key.aws_type && d.name.known() == Some(found.key.name.as_str())
            }) else {
                continue;
            };
            if !replaceable || !ours {
                continue;
            }
            self.actions
                .retain(|a| !(a.aws_type == found.key.aws_type && a.name == found.key.name));
            let mut replace = plan::create_action(
                input.resource,
                want,
                format!("retry: AWS left it failed ({reason}); deleted and created again"),
            );
            replace.operation = Operation::Replace;
            self.actions.push(replace);
            replacing = true;
        }
        // A requested retry is carried out once nothing it must replace is left.
        if !replacing {
            self.memory.retry_requested = false;
        }
    }

    /// A suspended resource is read and its drift shown (the plan's actions, deferred), and
    /// nothing is done. With nothing to do it keeps its phase (a Ready one stays Ready, so
    /// what reads it goes on); with changes it is Pending, and what reads it is blocked.
    fn suspended(&mut self) -> ControlFlow<Decision> {
        let Some(suspension) = self.input.suspended else {
            return ControlFlow::Continue(());
        };
        defer_all(&mut self.actions, "when resumed");
        let changes = self
            .actions
            .iter()
            .filter(|a| a.operation != Operation::Conflict)
            .count();
        if changes == 0 {
            // Nothing to change: the phase is what AWS shows (a suspended resource still
            // becomes Ready, fails or progresses as AWS says), and nothing superseded goes.
            let mut decision = self.phase_from_aws();
            defer_all(&mut decision.actions, "when resumed");
            if let Some(change) = &mut decision.status {
                change.reason = Reason::Suspended;
                change.message =
                    format!("suspended ({}): {}", suspension.describe(), change.message);
            }
            return ControlFlow::Break(decision);
        }
        let actions = std::mem::take(&mut self.actions);
        let message = format!(
            "suspended ({}): {changes} change(s) not applied (sdop plan shows them)",
            suspension.describe()
        );
        let status = status(Phase::Pending, Reason::Suspended, message);
        self.decision(actions, status, Next::WhenWoken)
    }

    /// Nothing is done before what this resource reads is Ready.
    fn dependencies_ready(&mut self) -> ControlFlow<Decision> {
        let Some(dep) = self
            .input
            .dependencies
            .iter()
            .find(|d| d.phase != Phase::Ready)
        else {
            return ControlFlow::Continue(());
        };
        let why = if dep.message.is_empty() {
            format!("{:?}", dep.phase)
        } else {
            format!("{:?}: {}", dep.phase, dep.message)
        };
        let reason = if dep.phase.is_settled() || dep.blocked {
            Reason::BlockedByDependency
        } else {
            Reason::WaitingForDependency
        };
        let mut actions = std::mem::take(&mut self.actions);
        // A promotion's outputs change only when a version is approved: say so.
        let after = if dep.id.kind == crate::kinds::model_promotion::PROMOTION_KIND {
            format!("after {} approves a version (its evidence passes)", dep.id)
        } else {
            format!("after {} is ready", dep.id)
        };
        defer_all(&mut actions, &after);
        let status = status(
            Phase::Pending,
            reason,
            format!("waiting for {} ({why})", dep.id),
        );
        self.decision(actions, status, Next::WhenWoken)
    }

    /// An object is acted on only once every value it needs is known; the objects that do
    /// not need the missing values go on (an endpoint serves while its WebUI registration
    /// waits for the industrial model the WebUI creates at its first start). The resource is
    /// not Ready before every object is.
    fn values_known(&mut self) -> ControlFlow<Decision> {
        let input = self.input;
        let unknown: Vec<&DesiredObject> = input
            .desired
            .iter()
            .filter(|d| d.name.known().is_none() || !d.fully_known())
            .collect();
        let Some(first) = unknown.first() else {
            return ControlFlow::Continue(());
        };
        let fields: Vec<&str> = first.unknown().collect();
        let message = format!(
            "{} needs values not available yet from its references ({})",
            first.aws_type,
            fields.join(", ")
        );
        // What waits: the objects with unknown values, and what waits for them in turn.
        let mut waiting: Vec<(AwsType, String)> = unknown
            .iter()
            .map(|d| (d.aws_type, d.name.display()))
            .collect();
        loop {
            let more: Vec<(AwsType, String)> = input
                .desired
                .iter()
                .filter(|d| {
                    d.after_ready
                        .as_ref()
                        .is_some_and(|(t, n)| waiting.iter().any(|(wt, wn)| wt == t && wn == n))
                })
                .map(|d| (d.aws_type, d.name.display()))
                .filter(|key| !waiting.contains(key))
                .collect();
            if more.is_empty() {
                break;
            }
            waiting.extend(more);
        }
        let why = "after the values it reads are known";
        for action in &mut self.actions {
            if waiting
                .iter()
                .any(|(t, n)| *t == action.aws_type && *n == action.name)
            {
                action.deferred.get_or_insert_with(|| why.to_string());
            }
        }
        let others_to_do = self.actions.iter().any(|a| a.deferred.is_none());
        let others_to_watch = input.desired.iter().any(|d| {
            !waiting
                .iter()
                .any(|(t, n)| *t == d.aws_type && *n == d.name.display())
        });
        if !others_to_do && !others_to_watch {
            let mut actions = std::mem::take(&mut self.actions);
            defer_all(&mut actions, why);
            // A value a person must provide first (an approval) is not waited for by polling.
            if let Some(awaiting) = unknown.iter().find_map(|d| d.awaiting.as_ref()) {
                let status = status(Phase::Pending, Reason::AwaitingApproval, awaiting.clone());
                return self.decision(actions, status, Next::WhenWoken);
            }
            let status = status(Phase::Pending, Reason::WaitingForOutputs, message);
            return self.decision(actions, status, Next::Backoff);
        }
        self.waiting_for_values = Some(message);
        ControlFlow::Continue(())
    }

    /// An object sdop does not own stops everything (and is never touched).
    fn no_conflict(&mut self) -> ControlFlow<Decision> {
        let Some(conflict) = self
            .actions
            .iter()
            .find(|a| a.operation == Operation::Conflict)
        else {
            return ControlFlow::Continue(());
        };
        let message = format!(
            "{} {}: {}",
            conflict.aws_type, conflict.name, conflict.reason
        );
        if self.memory.phase != Phase::Conflict {
            self.notice(true, format!("conflict: {message}"));
        }
        let mut actions = std::mem::take(&mut self.actions);
        actions.retain(|a| a.operation == Operation::Conflict);
        let status = status(Phase::Conflict, Reason::NotOwned, message);
        self.decision(actions, status, Next::WhenWoken)
    }

    /// What sdop manages from now on (every desired object that exists and is its own), and
    /// the updates confirmed by their objects seen converged.
    fn remember_and_confirm(&mut self) {
        let input = self.input;
        for found in &self.observed {
            if matches!(&found.ownership, Ownership::Owned { resource } if resource == input.resource)
                || found.ownership == Ownership::Adopted
            {
                self.memory.record(&found.key);
            }
        }
        for want in input.desired {
            let name = want.name.known().unwrap_or_default();
            let settled = !matches!(
                self.state_of(want.aws_type, name),
                Some(ObjectState::Progressing(_) | ObjectState::Deleting(_)) | None
            );
            let planned = self
                .actions
                .iter()
                .any(|a| a.aws_type == want.aws_type && a.name == name);
            if settled && !planned {
                self.memory
                    .unconfirmed_updates
                    .retain(|u| !u.is_of(want.aws_type, name));
            }
        }
    }

    /// A failed check of a rollout rolls it back (once); after that the rollout is not
    /// retried until the spec changes.
    fn failed_check_rolls_back(&mut self) -> ControlFlow<Decision> {
        match roll_back_failed_check(
            self.input,
            &self.observed,
            &mut self.memory,
            &mut self.notices,
        ) {
            Some(decision) => ControlFlow::Break(decision),
            None => ControlFlow::Continue(()),
        }
    }

    /// Per due action: objects waiting for a sibling wait; in-progress objects finish first;
    /// a change AWS rolled back or does not keep is reported, not repeated in a loop; a
    /// verified rollout remembers what to roll back to.
    fn guards(&mut self) -> ControlFlow<Decision> {
        let input = self.input;
        // Objects whose sibling changes now (created, updated, replaced) wait for it.
        let changing_now: Vec<(AwsType, String)> = self
            .actions
            .iter()
            .filter(|a| a.deferred.is_none() && a.operation != Operation::Delete)
            .map(|a| (a.aws_type, a.name.clone()))
            .collect();
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.iter_mut() {
            if action.deferred.is_some() {
                continue;
            }
            let state_of = |t: AwsType, n: &str| state_in(&self.observed, t, n);
            if let Some(why) = waits_for_sibling(action, input.desired, &changing_now, &state_of) {
                action.deferred = Some(why);
                continue;
            }
            match self.state_of(action.aws_type, &action.name) {
                Some(ObjectState::Progressing(what)) => {
                    action.deferred = Some(format!(
                        "after {} {} finishes ({what})",
                        action.aws_type, action.name
                    ));
                    continue;
                }
                Some(ObjectState::Degraded(reason)) if action.operation == Operation::Update => {
                    let reason = reason.clone();
                    let target = rollout_target(action);
                    if self.memory.rollout_target.as_ref() == Some(&target)
                        || self.memory.failed_rollout.as_ref() == Some(&target)
                    {
                        if self.memory.failed_rollout.as_ref() != Some(&target) {
                            self.memory.failed_rollout = Some(target.clone());
                            self.notice(
                                true,
                                format!("ROLLOUT ROLLED BACK by AWS: {target}: {reason}"),
                            );
                        }
                        let status = status(
                            Phase::Degraded,
                            Reason::RolloutRolledBack,
                            format!("rollout {target} was rolled back by AWS: {reason}"),
                        );
                        return self.decision(Vec::new(), status, Next::WhenWoken);
                    }
                }
                _ => {}
            }
            if action.operation != Operation::Update {
                continue;
            }
            let target = rollout_target(action);
            if self.memory.unconfirmed_updates.contains(&target) {
                let message = format!(
                    "AWS does not keep this change (drift persists after the update): {target}"
                );
                if self.memory.phase != Phase::Degraded {
                    self.notice(true, message.clone());
                }
                let status = status(Phase::Degraded, Reason::DriftPersists, message);
                return self.decision(Vec::new(), status, Next::WhenWoken);
            }
            if self.memory.failed_rollout.as_ref() == Some(&target) {
                let status = status(
                    Phase::Degraded,
                    Reason::RolloutRolledBack,
                    format!("rollout {target} was rolled back by AWS; not retried until the spec changes, or `sdop reconcile {}` after fixing the cause elsewhere", input.resource),
                );
                return self.decision(Vec::new(), status, Next::WhenWoken);
            }
            if is_verified(input.desired, action.aws_type, &action.name) {
                self.memory.rollback_to = action
                    .changes
                    .iter()
                    .map(|c| c.before.clone().map(|v| (c.field.clone(), v)))
                    .collect::<Option<BTreeMap<String, serde_json::Value>>>()
                    .map(|fields| plan::RollbackTarget {
                        aws_type: action.aws_type.to_string(),
                        name: action.name.clone(),
                        fields,
                    });
            }
            self.memory.rollout_target = Some(target);
        }
        self.actions = actions;
        ControlFlow::Continue(())
    }

    /// The superseded objects' deletions, due or waiting for `why`.
    fn deletions(&self, why: Option<&str>) -> Vec<Action> {
        self.superseded
            .iter()
            .map(|key| Action {
                resource: self.input.resource.clone(),
                operation: Operation::Delete,
                aws_type: key.aws_type,
                name: key.name.clone(),
                reason: "superseded: no longer part of the desired state".into(),
                changes: Vec::new(),
                deferred: why.map(str::to_string),
                cost: None,
                deletion: Some(plan::Deletion::Superseded),
                one_off: None,
            })
            .collect()
    }

    /// Actions due now run; the superseded objects go after the new ones serve.
    fn due_actions_run(&mut self) -> ControlFlow<Decision> {
        let due = self.actions.iter().filter(|a| a.deferred.is_none()).count();
        if due == 0 {
            return ControlFlow::Continue(());
        }
        let mut actions = std::mem::take(&mut self.actions);
        actions.extend(self.deletions(Some("after the new objects serve")));
        let status = status(
            Phase::Progressing,
            Reason::Applying,
            format!("applying {due} change(s)"),
        );
        self.decision(actions, status, Next::ActThenLook)
    }

    /// Nothing to do now: the phase is what AWS shows. Ready records the outputs, and what the
    /// new objects superseded goes now that they serve.
    fn phase_from_aws(&mut self) -> Decision {
        let failure_key = self.input.failure_key;
        let mut actions = std::mem::take(&mut self.actions);
        let states: Vec<ObjectState> = self.observed.iter().map(|o| o.state.clone()).collect();
        if let Some(reason) = states.iter().find_map(|s| match s {
            ObjectState::Failed(reason) => Some(reason.clone()),
            _ => None,
        }) {
            if self.memory.phase != Phase::Failed {
                self.notice(
                    true,
                    format!(
                        "failed: {reason}{}",
                        super::policy::retry_hint(self.input.resource)
                    ),
                );
            }
            self.memory.failed_spec_hash = Some(failure_key.to_string());
            let status = status(Phase::Failed, Reason::Failed, reason);
            return self.finish(actions, status, Next::WhenWoken);
        }
        if let Some(reason) = states.iter().find_map(|s| match s {
            ObjectState::Progressing(reason) | ObjectState::Deleting(reason) => {
                Some(reason.clone())
            }
            _ => None,
        }) {
            actions.extend(self.deletions(Some("after the new objects serve")));
            let status = status(Phase::Progressing, Reason::Progressing, reason);
            return self.finish(actions, status, Next::Poll);
        }
        if let Some(reason) = states.iter().find_map(|s| match s {
            ObjectState::Degraded(reason) => Some(reason.clone()),
            _ => None,
        }) {
            let status = status(Phase::Degraded, Reason::Degraded, reason);
            return self.finish(actions, status, Next::WhenWoken);
        }
        let mut outputs = self.memory.outputs.clone();
        outputs.extend(self.input.spec_outputs.clone());
        for found in &self.observed {
            outputs.extend(found.outputs.clone());
        }
        self.memory.outputs = outputs;
        if let Some(waiting) = self.waiting_for_values.take() {
            // The rest is done and settled; not Ready (nor converged) before the objects that
            // wait for values are, and nothing superseded goes yet.
            actions.extend(self.deletions(Some("after the values it reads are known")));
            let status = status(
                Phase::Pending,
                Reason::WaitingForOutputs,
                format!("the other AWS objects match the manifest; {waiting}"),
            );
            return self.finish(actions, status, Next::Backoff);
        }
        self.memory.rollout_target = None;
        self.memory.rollback_to = None;
        self.memory.observed_spec_hash = Some(self.input.spec_hash.to_string());
        if self.memory.phase != Phase::Ready {
            self.notice(true, "ready");
        }
        actions.extend(self.deletions(None));
        // A note an object reads (a version waiting for a person) belongs in the message.
        let note = self
            .observed
            .iter()
            .filter_map(|o| o.outputs.get(crate::model::outputs::NOTE))
            .find(|n| !n.is_empty());
        let status = status(
            Phase::Ready,
            Reason::Converged,
            match note {
                Some(note) => format!("all AWS objects match the manifest; {note}"),
                None => "all AWS objects match the manifest".to_string(),
            },
        );
        self.finish(actions, status, Next::WhenWoken)
    }
}

fn state_in<'o>(
    observed: &'o [ObservedObject],
    aws_type: AwsType,
    name: &str,
) -> Option<&'o ObjectState> {
    observed
        .iter()
        .find(|o| o.key.aws_type == aws_type && o.key.name == name)
        .map(|o| &o.state)
}

/// An object that waits for a sibling and must be replaced while something it waits for
/// (transitively) is about to change goes first: deleted now, at the front (the executor runs
/// due actions in order), and created again once its sibling serves. (A variant registered for
/// autoscaling must be deregistered before its instance type changes.)
fn get_out_of_the_way(actions: &mut Vec<Action>, desired: &[DesiredObject]) {
    let sibling_of = |aws_type: AwsType, name: &str| {
        desired
            .iter()
            .find(|d| d.aws_type == aws_type && d.name.known() == Some(name))
            .and_then(|d| d.after_ready.clone())
    };
    let changing = |aws_type: AwsType, name: &str| {
        actions.iter().any(|a| {
            a.aws_type == aws_type
                && a.name == name
                && !matches!(a.operation, Operation::Delete | Operation::Conflict)
        })
    };
    let mut first = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        if action.operation != Operation::Replace || action.deferred.is_some() {
            continue;
        }
        let mut next = sibling_of(action.aws_type, &action.name);
        let mut hops = 0;
        while let Some((aws_type, name)) = next {
            if changing(aws_type, &name) {
                first.push((i, aws_type, name));
                break;
            }
            hops += 1;
            next = if hops < 8 {
                sibling_of(aws_type, &name)
            } else {
                None
            };
        }
    }
    for (i, sibling_type, sibling) in first.into_iter().rev() {
        let replace = actions.remove(i);
        let delete = Action {
            operation: Operation::Delete,
            reason: format!(
                "{}; first, as {sibling_type} {sibling} changes",
                replace.reason
            ),
            changes: Vec::new(),
            cost: None,
            deletion: Some(plan::Deletion::OutOfTheWay {
                aws_type: sibling_type,
                name: sibling.clone(),
            }),
            ..replace.clone()
        };
        let create = Action {
            operation: Operation::Create,
            ..replace
        };
        actions.insert(0, delete);
        actions.push(create);
    }
}

/// Whether a desired object checks the rollout of `aws_type` `name`.
fn is_verified(desired: &[DesiredObject], aws_type: AwsType, name: &str) -> bool {
    desired.iter().any(|d| {
        d.verifies
            && d.after_ready
                .as_ref()
                .is_some_and(|(t, n)| *t == aws_type && n == name)
    })
}

/// A check that failed (`verifies`, observed Failed): with what the checked object was before
/// the rollout, a rollback to it (Degraded, loud); when the rollback was made already, Degraded
/// until the spec changes. `None`: no failed check, or nothing to roll back to (the first
/// create: the failure is the resource's, as any failed object's).
fn roll_back_failed_check(
    input: &Inputs,
    observed: &[ObservedObject],
    memory: &mut Memory,
    notices: &mut Vec<Notice>,
) -> Option<Decision> {
    let (check, reason) = input.desired.iter().filter(|d| d.verifies).find_map(|d| {
        observed.iter().find_map(|o| match &o.state {
            ObjectState::Failed(reason)
                if o.key.aws_type == d.aws_type && d.name.known() == Some(o.key.name.as_str()) =>
            {
                Some((d, reason.clone()))
            }
            _ => None,
        })
    })?;
    let (checked_type, checked_name) = check.after_ready.as_ref()?;
    let checked_state = observed
        .iter()
        .find(|o| o.key.aws_type == *checked_type && o.key.name == *checked_name)
        .map(|o| &o.state);
    let check_name = check.name.display();
    let back = memory
        .rollback_to
        .clone()
        .filter(|b| b.aws_type == checked_type.as_str() && b.name == *checked_name);
    match (back, memory.rollout_target.clone()) {
        (Some(back), Some(target)) => {
            memory.rollback_to = None;
            memory.failed_rollout = Some(target.clone());
            let changes: Vec<plan::FieldChange> = back
                .fields
                .iter()
                .map(|(field, before)| plan::FieldChange {
                    field: field.clone(),
                    before: None,
                    after: Some(before.clone()),
                })
                .collect();
            let message = format!(
                "smoke check {check_name} failed: {reason}; rolling {checked_type} {checked_name} back"
            );
            notices.push(Notice {
                loud: true,
                line: format!("SMOKE CHECK FAILED, ROLLING BACK: {target}: {reason}"),
            });
            Some(Decision {
                actions: vec![Action {
                    resource: input.resource.clone(),
                    operation: Operation::Rollback,
                    aws_type: *checked_type,
                    name: checked_name.clone(),
                    reason: format!("smoke check {check_name} failed: {reason}"),
                    changes,
                    deferred: None,
                    cost: None,
                    deletion: None,
                    one_off: None,
                }],
                // Progressing while it rolls back (so `apply --wait` waits for it); Degraded
                // once the old config serves again.
                status: status(Phase::Progressing, Reason::SmokeCheckFailed, message),
                memory: memory.clone(),
                notices: std::mem::take(notices),
                next: Next::ActThenLook,
            })
        }
        (None, _) if memory.failed_rollout.is_some() => {
            let rolling_back = matches!(checked_state, Some(ObjectState::Progressing(_)));
            Some(Decision {
                actions: Vec::new(),
                status: status(
                    if rolling_back {
                        Phase::Progressing
                    } else {
                        Phase::Degraded
                    },
                    Reason::SmokeCheckFailed,
                    format!(
                        "smoke check {check_name} failed: {reason}; {checked_type} {checked_name} {}; not retried until the spec changes, or `sdop reconcile {}` after fixing the cause elsewhere",
                        if rolling_back { "is rolling back" } else { "was rolled back" },
                        input.resource
                    ),
                ),
                memory: memory.clone(),
                notices: std::mem::take(notices),
                next: if rolling_back { Next::Poll } else { Next::WhenWoken },
            })
        }
        _ => None,
    }
}

/// Why a create or change of an object waits for the sibling it names (`after_ready`): the
/// sibling is missing, still changing in AWS, or changed by this very decision. `None`: it may go.
fn waits_for_sibling<'a>(
    action: &Action,
    desired: &[DesiredObject],
    changing_now: &[(AwsType, String)],
    state_of: &impl Fn(AwsType, &str) -> Option<&'a ObjectState>,
) -> Option<String> {
    if action.operation == Operation::Delete {
        return None;
    }
    let (sibling_type, sibling) = desired
        .iter()
        .find(|d| d.aws_type == action.aws_type && d.name.known() == Some(action.name.as_str()))?
        .after_ready
        .as_ref()?;
    let changing = changing_now
        .iter()
        .any(|(t, n)| t == sibling_type && n == sibling);
    let settled = matches!(
        state_of(*sibling_type, sibling),
        Some(ObjectState::Ready | ObjectState::Degraded(_))
    );
    (changing || !settled).then(|| {
        format!(
            "after {sibling_type} {sibling} {}",
            sibling_type.ready_phrase()
        )
    })
}

/// Objects the resource recorded that it no longer wants, to delete. The newest superseded
/// one of each immutable type is kept for rollback.
fn superseded(desired: &[DesiredObject], memory: &Memory) -> Vec<ObjectKey> {
    let wanted = |key: &ObjectKey| {
        desired
            .iter()
            .any(|d| d.aws_type == key.aws_type && d.name.known() == Some(key.name.as_str()))
    };
    let mut kept_types: Vec<AwsType> = Vec::new();
    let mut doomed = Vec::new();
    // Records (registry versions, evaluations, evidence, decisions) stay with the resource.
    for key in memory
        .objects
        .iter()
        .rev()
        .filter(|k| !wanted(k) && !k.aws_type.is_record())
    {
        let immutable = desired
            .iter()
            .any(|d| d.aws_type == key.aws_type && d.mutability == plan::Mutability::Replace);
        if immutable && !kept_types.contains(&key.aws_type) {
            kept_types.push(key.aws_type);
            continue;
        }
        doomed.push(key.clone());
    }
    doomed
}

#[cfg(test)]
mod tests {
    //! The integration scenarios as plain values: each case is desired + observed + memory in,
    //! the decision out.
    use super::*;
    use crate::engine::plan::{Mutability, ObjectName};
    use serde_json::json;

    const MODEL: AwsType = AwsType::SageMakerModel;
    const CONFIG: AwsType = AwsType::SageMakerEndpointConfig;
    const ENDPOINT: AwsType = AwsType::SageMakerEndpoint;

    fn id() -> ResourceId {
        ResourceId::new("Endpoint", "base")
    }

    /// The objects of rollout `n`: model `m<n>`, config `c<n>`, the endpoint on `c<n>`.
    fn desired(n: u32) -> Vec<DesiredObject> {
        vec![
            DesiredObject::new(
                MODEL,
                ObjectName::Known(format!("m{n}")),
                Mutability::Replace,
            )
            .field("image", Some(json!("img"))),
            DesiredObject::new(
                CONFIG,
                ObjectName::Known(format!("c{n}")),
                Mutability::Replace,
            )
            .field("model", Some(json!(format!("m{n}")))),
            DesiredObject::new(
                ENDPOINT,
                ObjectName::Known("sd-base".into()),
                Mutability::InPlace,
            )
            .field("endpointConfigName", Some(json!(format!("c{n}")))),
        ]
    }

    /// The rollout of the endpoint onto config `config`.
    fn target(config: &str) -> RolloutTarget {
        RolloutTarget {
            aws_type: "sagemaker:endpoint".into(),
            name: "sd-base".into(),
            fields: [("endpointConfigName".to_string(), format!("{config:?}"))].into(),
        }
    }

    fn seen(aws_type: AwsType, name: &str, fields: &[(&str, &str)]) -> ObservedObject {
        ObservedObject::new(
            ObjectKey::new(aws_type, name),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
            Ownership::Owned { resource: id() },
        )
    }

    /// AWS as after rollout `n` converged.
    fn serving(n: u32) -> Vec<ObservedObject> {
        vec![
            seen(MODEL, &format!("m{n}"), &[("image", "img")]),
            seen(CONFIG, &format!("c{n}"), &[("model", &format!("m{n}"))]),
            seen(
                ENDPOINT,
                "sd-base",
                &[("endpointConfigName", &format!("c{n}"))],
            ),
        ]
    }

    fn memory_after(rollouts: &[u32]) -> Memory {
        let mut memory = Memory {
            phase: Phase::Ready,
            observed_spec_hash: Some("old-spec".into()),
            ..Memory::default()
        };
        for n in rollouts {
            memory.record(&ObjectKey::new(MODEL, format!("m{n}")));
            memory.record(&ObjectKey::new(CONFIG, format!("c{n}")));
            memory.record(&ObjectKey::new(ENDPOINT, "sd-base"));
        }
        memory
    }

    struct Case {
        facts: SpecFacts,
        dependencies: Vec<Dependency>,
        desired: Vec<DesiredObject>,
        observed: Vec<ObservedObject>,
        memory: Memory,
    }

    impl Case {
        fn new(desired: Vec<DesiredObject>, observed: Vec<ObservedObject>, memory: Memory) -> Self {
            Case {
                facts: SpecFacts::default(),
                dependencies: Vec::new(),
                desired,
                observed,
                memory,
            }
        }

        fn decide(&self) -> Decision {
            decide(&Inputs {
                resource: &id(),
                spec_hash: "spec",
                failure_key: "spec",
                suspended: if self.facts.suspend {
                    Some(Suspension::Spec)
                } else {
                    None
                },
                facts: self.facts,
                dependencies: &self.dependencies,
                desired: &self.desired,
                observed: &self.observed,
                memory: &self.memory,
                spec_outputs: &BTreeMap::new(),
            })
        }
    }

    /// A renamed bucket (or repository, or model package group): the old one holds data, so
    /// under Retain it is kept and forgotten, and only under Delete is it deleted.
    #[test]
    fn a_renamed_data_store_is_kept_under_retain_and_deleted_only_under_delete() {
        for store in [
            AwsType::S3Bucket,
            AwsType::EcrRepository,
            AwsType::ModelPackageGroup,
        ] {
            let object = |name: &str| {
                DesiredObject::new(store, ObjectName::Known(name.into()), Mutability::InPlace)
                    .field("tags", Some(json!({})))
            };
            let mut memory = Memory {
                phase: Phase::Ready,
                observed_spec_hash: Some("old-spec".into()),
                ..Memory::default()
            };
            memory.record(&ObjectKey::new(store, "old"));
            memory.record(&ObjectKey::new(store, "new"));
            let observed = vec![seen(store, "new", &[])];
            let mut case = Case::new(
                vec![object("new")],
                observed
                    .into_iter()
                    .map(|mut o| {
                        o.fields.insert("tags".into(), json!({}));
                        o
                    })
                    .collect(),
                memory,
            );
            let kept = case.decide();
            assert!(kept.actions.is_empty(), "{:?}", lines(&kept));
            assert!(!kept.memory.owns(&ObjectKey::new(store, "old")));
            assert!(kept
                .notices
                .iter()
                .any(|n| n.loud && n.line.contains(&format!("{store} old is no longer"))));
            case.facts.deletion_policy = crate::model::DeletionPolicy::Delete;
            assert_eq!(lines(&case.decide()), [format!("Delete {store} old")]);
        }
    }

    /// Registry versions, evaluations, evidence and decisions are the record of what was
    /// approved: a newer candidate does not delete the older ones (production may serve one).
    #[test]
    fn records_superseded_by_a_newer_candidate_are_kept() {
        let record = |aws_type: AwsType, name: &str| {
            let mut object = DesiredObject::new(
                aws_type,
                ObjectName::Known(name.into()),
                Mutability::Replace,
            );
            object.content_named = true;
            object
        };
        let mut memory = Memory {
            phase: Phase::Ready,
            observed_spec_hash: Some("spec".into()),
            ..Memory::default()
        };
        for (aws_type, name) in [
            (AwsType::ModelPackageVersion, "g/old"),
            (AwsType::ModelEvaluation, "b/e/old/"),
            (AwsType::EvidenceBundle, "b/e/old/evidence.json"),
            (AwsType::ModelApproval, "g/old/approval"),
            (AwsType::ModelPackageVersion, "g/new"),
        ] {
            memory.record(&ObjectKey::new(aws_type, name));
        }
        let case = Case::new(
            vec![record(AwsType::ModelPackageVersion, "g/new")],
            vec![seen(AwsType::ModelPackageVersion, "g/new", &[])],
            memory,
        );
        let decision = case.decide();
        assert!(decision.actions.is_empty(), "{:?}", lines(&decision));
        assert_eq!(decision.memory.objects.len(), 5, "nothing forgotten either");
    }

    /// A value only a person can provide (an approval) is waited for without polling, and
    /// the message says how to provide it.
    #[test]
    fn a_value_waiting_for_an_approval_is_awaited_not_polled() {
        let mut model = DesiredObject::new(
            AwsType::SageMakerModel,
            ObjectName::AfterApply {
                base: "sd-prod".into(),
            },
            Mutability::Replace,
        )
        .field("modelData", None);
        model.awaiting = Some("ModelPromotion/p has no approved version yet".into());
        let decision = Case::new(vec![model], Vec::new(), Memory::default()).decide();
        assert_eq!(phase(&decision), (Phase::Pending, Reason::AwaitingApproval));
        assert_eq!(decision.next, Next::WhenWoken);
        assert!(decision
            .status
            .as_ref()
            .is_some_and(|s| s.message.contains("no approved version")));
        assert!(decision.actions.iter().all(|a| a.deferred.is_some()));
    }

    /// `Create sagemaker:model m1` for due actions, with ` (later)` for deferred ones.
    fn lines(decision: &Decision) -> Vec<String> {
        decision
            .actions
            .iter()
            .map(|a| {
                format!(
                    "{:?} {} {}{}",
                    a.operation,
                    a.aws_type,
                    a.name,
                    if a.deferred.is_some() { " (later)" } else { "" }
                )
            })
            .collect()
    }

    fn phase(decision: &Decision) -> (Phase, Reason) {
        let status = decision.status.as_ref().expect("a phase");
        (status.phase, status.reason)
    }

    #[test]
    fn nothing_exists_everything_is_created_now() {
        let decision = Case::new(desired(1), vec![], Memory::default()).decide();
        assert_eq!(
            lines(&decision),
            [
                "Create sagemaker:model m1",
                "Create sagemaker:endpoint-config c1",
                "Create sagemaker:endpoint sd-base"
            ]
        );
        assert_eq!(phase(&decision), (Phase::Progressing, Reason::Applying));
        assert_eq!(decision.next, Next::ActThenLook);
    }

    #[test]
    fn converged_is_ready_with_nothing_to_do() {
        let decision = Case::new(desired(1), serving(1), memory_after(&[1])).decide();
        assert!(decision.actions.is_empty(), "{:?}", lines(&decision));
        assert_eq!(phase(&decision), (Phase::Ready, Reason::Converged));
        assert_eq!(decision.memory.observed_spec_hash.as_deref(), Some("spec"));
        assert_eq!(decision.next, Next::WhenWoken);
    }

    #[test]
    fn a_second_rollout_lists_the_deletions_that_follow_it() {
        // Rollouts 0 and 1 happened; the spec now wants rollout 2.
        let mut observed = serving(1);
        observed.extend(serving(0).into_iter().take(2));
        let decision = Case::new(desired(2), observed, memory_after(&[0, 1])).decide();
        assert_eq!(
            lines(&decision),
            [
                "Create sagemaker:model m2",
                "Create sagemaker:endpoint-config c2",
                "Update sagemaker:endpoint sd-base",
                // The newest superseded model and config (m1, c1) stay for rollback.
                "Delete sagemaker:endpoint-config c0 (later)",
                "Delete sagemaker:model m0 (later)",
            ]
        );
        // Once the new config serves, the deletions are due and the resource is Ready.
        let mut memory = decision.memory.clone();
        memory.record(&ObjectKey::new(MODEL, "m2"));
        memory.record(&ObjectKey::new(CONFIG, "c2"));
        let settled = Case::new(desired(2), serving(2), memory).decide();
        assert_eq!(
            lines(&settled),
            [
                "Delete sagemaker:endpoint-config c0",
                "Delete sagemaker:model m0"
            ]
        );
        assert_eq!(phase(&settled), (Phase::Ready, Reason::Converged));
    }

    #[test]
    fn a_foreign_object_is_a_conflict_unless_adopted() {
        let mut foreign = serving(1);
        for object in &mut foreign {
            object.ownership = Ownership::Foreign;
        }
        let mut case = Case::new(desired(1), foreign, Memory::default());
        let decision = case.decide();
        assert_eq!(phase(&decision), (Phase::Conflict, Reason::NotOwned));
        assert!(decision
            .actions
            .iter()
            .all(|a| a.operation == Operation::Conflict));
        assert!(decision
            .notices
            .iter()
            .any(|n| n.loud && n.line.starts_with("conflict")));

        case.facts.adopt = true;
        let adopted = case.decide();
        assert_eq!(
            lines(&adopted),
            [
                "Adopt sagemaker:model m1",
                "Adopt sagemaker:endpoint-config c1",
                "Adopt sagemaker:endpoint sd-base"
            ]
        );
        assert_eq!(adopted.next, Next::ActThenLook);
    }

    #[test]
    fn tags_removed_from_an_object_sdop_created_do_not_make_it_foreign() {
        let mut observed = serving(1);
        observed[0].ownership = Ownership::Foreign;
        let decision = Case::new(desired(1), observed, memory_after(&[1])).decide();
        assert!(decision.actions.is_empty(), "{:?}", lines(&decision));
        assert_eq!(phase(&decision), (Phase::Ready, Reason::Converged));
    }

    #[test]
    fn a_rollout_aws_rolled_back_is_reported_once_and_not_retried() {
        let mut observed = serving(1);
        observed.extend(serving(2).into_iter().take(2));
        observed[2].state = ObjectState::Degraded("health check failed".into());
        let mut memory = memory_after(&[1, 2]);
        memory.rollout_target = Some(target("c2"));
        let decision = Case::new(desired(2), observed.clone(), memory).decide();
        assert!(decision.actions.is_empty(), "{:?}", lines(&decision));
        assert_eq!(
            phase(&decision),
            (Phase::Degraded, Reason::RolloutRolledBack)
        );
        assert!(decision
            .notices
            .iter()
            .any(|n| n.loud && n.line.contains("ROLLED BACK")));
        // The next pass: still Degraded, said once.
        let again = Case::new(desired(2), observed, decision.memory).decide();
        assert!(again.actions.is_empty());
        assert!(again.notices.is_empty());
        assert_eq!(phase(&again), (Phase::Degraded, Reason::RolloutRolledBack));
    }

    #[test]
    fn drift_aws_does_not_keep_is_reported_not_repeated() {
        let mut memory = memory_after(&[1]);
        memory.unconfirmed_updates.push(target("c1"));
        let mut observed = serving(1);
        observed[2] = seen(ENDPOINT, "sd-base", &[("endpointConfigName", "c0")]);
        let decision = Case::new(desired(1), observed, memory).decide();
        assert!(decision.actions.is_empty());
        assert_eq!(phase(&decision), (Phase::Degraded, Reason::DriftPersists));
    }

    #[test]
    fn a_terminal_failure_waits_for_a_spec_change() {
        let mut memory = memory_after(&[1]);
        memory.phase = Phase::Failed;
        memory.failed_spec_hash = Some("spec".into());
        let decision = Case::new(desired(1), vec![], memory.clone()).decide();
        assert!(decision.actions.is_empty());
        assert_eq!(decision.status, None);
        // Another spec: retried.
        memory.failed_spec_hash = Some("older-spec".into());
        let retried = Case::new(desired(1), vec![], memory).decide();
        assert_eq!(retried.memory.failed_spec_hash, None);
        assert_eq!(retried.due().count(), 3);
    }

    /// A failure whose cause is outside the spec (an image pushed again, a quota raised) is
    /// retried when someone asks (`sdop reconcile`), once: the request is then forgotten.
    #[test]
    fn a_requested_retry_forgets_the_failure_once() {
        let mut memory = memory_after(&[1]);
        memory.phase = Phase::Failed;
        memory.failed_spec_hash = Some("spec".into());
        memory.retry_requested = true;
        let retried = Case::new(desired(1), vec![], memory).decide();
        assert_eq!(retried.memory.failed_spec_hash, None);
        assert!(!retried.memory.retry_requested);
        assert_eq!(retried.due().count(), 3);
        assert!(retried
            .notices
            .iter()
            .any(|n| n.line.contains("retry requested")));
    }

    /// A retry of an endpoint AWS left Failed (SageMaker does not update it) replaces it:
    /// deleted and created again; without a retry it keeps the resource Failed.
    #[test]
    fn a_retry_replaces_an_endpoint_aws_left_failed() {
        let mut observed = serving(1);
        observed[2].state = ObjectState::Failed("endpoint failed".into());
        let mut memory = memory_after(&[1]);
        memory.phase = Phase::Failed;
        memory.failed_spec_hash = Some("spec".into());
        let waiting = Case::new(desired(1), observed.clone(), memory.clone()).decide();
        assert!(waiting.actions.is_empty());
        memory.retry_requested = true;
        let retried = Case::new(desired(1), observed.clone(), memory.clone()).decide();
        assert_eq!(lines(&retried), ["Replace sagemaker:endpoint sd-base"]);
        assert_eq!(phase(&retried), (Phase::Progressing, Reason::Applying));
        // The request is kept until the endpoint is replaced: a kill -9 before the delete
        // retries again; once it is deleting, the request is done.
        assert!(retried.memory.retry_requested);
        let mut deleting = observed;
        deleting[2].state = ObjectState::Deleting("Deleting".into());
        let after = Case::new(desired(1), deleting, retried.memory).decide();
        assert!(!after.memory.retry_requested);
    }

    /// Suspended: the plan is made (drift shown, deferred) and nothing is due; with nothing
    /// to do a Ready resource stays Ready (what reads it goes on), with changes it is Pending
    /// and says how to resume.
    #[test]
    fn a_suspended_resource_shows_its_drift_and_does_nothing() {
        let mut case = Case::new(desired(1), vec![], Memory::default());
        case.facts.suspend = true;
        let decision = case.decide();
        assert_eq!(decision.actions.len(), 3);
        assert_eq!(decision.due().count(), 0);
        let (phase_now, reason) = phase(&decision);
        assert_eq!((phase_now, reason), (Phase::Pending, Reason::Suspended));
        assert!(decision
            .status
            .unwrap()
            .message
            .contains("3 change(s) not applied"));
        let mut converged = Case::new(desired(1), serving(1), memory_after(&[1]));
        converged.facts.suspend = true;
        let decision = converged.decide();
        assert!(decision.actions.is_empty());
        assert_eq!(phase(&decision), (Phase::Ready, Reason::Suspended));
    }

    #[test]
    fn an_endpoint_deleted_out_of_band_is_not_converged() {
        let mut observed = serving(1);
        observed[2].state = ObjectState::Deleting("Deleting".into());
        let decision = Case::new(desired(1), observed, memory_after(&[1])).decide();
        assert_eq!(
            lines(&decision),
            ["Create sagemaker:endpoint sd-base (later)"]
        );
        assert_eq!(phase(&decision), (Phase::Progressing, Reason::Progressing));
        assert_eq!(decision.next, Next::Poll);
    }

    #[test]
    fn dependencies_gate_everything() {
        let mut case = Case::new(desired(1), vec![], Memory::default());
        case.dependencies.push(Dependency {
            id: ResourceId::new("ModelArchive", "base"),
            phase: Phase::Progressing,
            message: String::new(),
            blocked: false,
        });
        let decision = case.decide();
        assert_eq!(decision.due().count(), 0);
        assert_eq!(decision.actions.len(), 3);
        assert_eq!(
            phase(&decision),
            (Phase::Pending, Reason::WaitingForDependency)
        );
        case.dependencies[0].phase = Phase::Failed;
        assert_eq!(
            phase(&case.decide()),
            (Phase::Pending, Reason::BlockedByDependency)
        );
        // Blocked further up (the archive waits for a Failed job): blocked too, at once.
        case.dependencies[0].phase = Phase::Pending;
        case.dependencies[0].blocked = true;
        assert_eq!(
            phase(&case.decide()),
            (Phase::Pending, Reason::BlockedByDependency)
        );
    }

    #[test]
    fn unknown_values_wait_and_back_off() {
        let mut objects = desired(1);
        objects[0] = DesiredObject::new(
            MODEL,
            ObjectName::AfterApply { base: "m".into() },
            Mutability::Replace,
        )
        .field("image", None);
        // The config names the model, the endpoint the config: unknown in turn.
        objects[1] = objects[1].clone().field("model", None);
        objects[2] = objects[2].clone().field("endpointConfigName", None);
        let decision = Case::new(objects, vec![], Memory::default()).decide();
        assert_eq!(decision.due().count(), 0);
        assert_eq!(
            phase(&decision),
            (Phase::Pending, Reason::WaitingForOutputs)
        );
        assert_eq!(decision.next, Next::Backoff);
    }

    /// Issue #23, partial progress: an object whose values are not known yet (the WebUI
    /// registration, before the WebUI's first start creates its industrial model) waits, with
    /// what waits for it; the endpoint is created and serves meanwhile, and the resource is
    /// not Ready until the registration is made.
    #[test]
    fn only_the_objects_that_need_a_missing_value_wait() {
        let registration = DesiredObject::new(
            AwsType::DynamoDbEndpointRegistration,
            ObjectName::AfterApply {
                base: "table/sd-base/".into(),
            },
            Mutability::InPlace,
        )
        .field("industrialModel", None);
        let mut objects = desired(1);
        objects.push(registration);
        let decision = Case::new(objects.clone(), vec![], Memory::default()).decide();
        assert_eq!(
            lines(&decision),
            [
                "Create sagemaker:model m1",
                "Create sagemaker:endpoint-config c1",
                "Create sagemaker:endpoint sd-base",
                "Create dynamodb:endpoint-registration table/sd-base/-(known after apply) (later)",
            ]
        );
        // Everything else serves: still not Ready, and it looks again.
        let decision = Case::new(objects, serving(1), memory_after(&[1])).decide();
        assert_eq!(
            phase(&decision),
            (Phase::Pending, Reason::WaitingForOutputs)
        );
        assert!(decision
            .status
            .unwrap()
            .message
            .contains("the other AWS objects match the manifest"),);
        assert_eq!(decision.next, Next::Backoff);
        assert_eq!(
            decision.memory.observed_spec_hash.as_deref(),
            Some("old-spec")
        );
    }

    #[test]
    fn an_object_in_progress_finishes_before_it_is_changed() {
        let mut observed = serving(1);
        observed[2] = seen(ENDPOINT, "sd-base", &[("endpointConfigName", "c0")]);
        observed[2].state = ObjectState::Progressing("Updating".into());
        let decision = Case::new(desired(1), observed, memory_after(&[1])).decide();
        assert_eq!(
            lines(&decision),
            ["Update sagemaker:endpoint sd-base (later)"]
        );
        assert_eq!(phase(&decision), (Phase::Progressing, Reason::Progressing));
    }

    #[test]
    fn a_failed_object_fails_the_resource_until_the_spec_changes() {
        let mut observed = serving(1);
        observed[2].state = ObjectState::Failed("endpoint failed".into());
        let decision = Case::new(desired(1), observed, memory_after(&[1])).decide();
        assert_eq!(phase(&decision), (Phase::Failed, Reason::Failed));
        assert_eq!(decision.memory.failed_spec_hash.as_deref(), Some("spec"));
        assert!(decision.notices.iter().any(|n| n.loud));
    }

    const SCALING: AwsType = AwsType::EndpointScaling;
    const CHECK: AwsType = AwsType::SageMakerSmokeCheck;

    /// Rollout `n` with a smoke check of `c<n>` (or autoscaling) that waits for the endpoint.
    fn checked(n: u32) -> Vec<DesiredObject> {
        let mut objects = desired(n);
        let mut check = DesiredObject::new(
            CHECK,
            ObjectName::Known(format!("check-c{n}")),
            Mutability::Replace,
        )
        .field("payloadHash", Some(json!("p")))
        .after_ready(ENDPOINT, "sd-base");
        check.verifies = true;
        objects.push(check);
        objects
    }

    fn scaled(n: u32) -> Vec<DesiredObject> {
        let mut objects = desired(n);
        objects.push(
            DesiredObject::new(
                SCALING,
                ObjectName::Known("endpoint/sd-base/variant/AllTraffic".into()),
                Mutability::InPlace,
            )
            .field("minCapacity", Some(json!(0)))
            .after_ready(ENDPOINT, "sd-base"),
        );
        objects
    }

    #[test]
    fn autoscaling_waits_for_the_endpoint_to_serve() {
        // First create: the endpoint is created now, its scaling after it is InService.
        let decision = Case::new(scaled(1), vec![], Memory::default()).decide();
        assert_eq!(
            lines(&decision),
            [
                "Create sagemaker:model m1",
                "Create sagemaker:endpoint-config c1",
                "Create sagemaker:endpoint sd-base",
                "Create application-autoscaling:endpoint-scaling endpoint/sd-base/variant/AllTraffic (later)",
            ]
        );
        let scaling = decision.actions.last().unwrap();
        assert_eq!(
            scaling.deferred.as_deref(),
            Some("after sagemaker:endpoint sd-base is in service")
        );
        // Creating: still waits.
        let mut observed = serving(1);
        observed[2].state = ObjectState::Progressing("Creating".into());
        let decision = Case::new(scaled(1), observed, memory_after(&[1])).decide();
        assert_eq!(decision.due().count(), 0);
        assert_eq!(decision.next, Next::Poll);
        // InService: now.
        let decision = Case::new(scaled(1), serving(1), memory_after(&[1])).decide();
        assert_eq!(
            lines(&decision),
            ["Create application-autoscaling:endpoint-scaling endpoint/sd-base/variant/AllTraffic"]
        );
    }

    #[test]
    fn a_failed_smoke_check_rolls_the_rollout_back_once() {
        // Rollout 2 starts: what the endpoint was is remembered.
        let mut observed = serving(1);
        observed.push(seen(CHECK, "check-c1", &[("payloadHash", "p")]));
        let started = Case::new(checked(2), observed, memory_after(&[1])).decide();
        let back = started.memory.rollback_to.clone().expect("rollback target");
        assert_eq!(back.fields["endpointConfigName"], json!("c1"));
        assert!(
            lines(&started).contains(&"Create sagemaker:smoke-check check-c2 (later)".to_string())
        );

        // The endpoint serves c2; its check failed.
        let mut observed = serving(2);
        let mut failed = seen(CHECK, "check-c2", &[("payloadHash", "p")]);
        failed.state = ObjectState::Failed("the result has no images".into());
        observed.push(failed);
        let mut memory = started.memory.clone();
        memory.record(&ObjectKey::new(MODEL, "m2"));
        memory.record(&ObjectKey::new(CONFIG, "c2"));
        memory.record(&ObjectKey::new(CHECK, "check-c2"));
        let decision = Case::new(checked(2), observed.clone(), memory).decide();
        assert_eq!(lines(&decision), ["Rollback sagemaker:endpoint sd-base"]);
        assert_eq!(
            phase(&decision),
            (Phase::Progressing, Reason::SmokeCheckFailed),
            "rolling back"
        );
        assert_eq!(
            decision.actions[0].changes[0].after,
            Some(json!("c1")),
            "back to the config served before"
        );
        assert!(decision
            .notices
            .iter()
            .any(|n| n.loud && n.line.contains("SMOKE CHECK FAILED")));
        assert!(decision.memory.failed_rollout.is_some());
        assert_eq!(decision.memory.rollback_to, None);

        // Rolled back (the endpoint on c1 again): Degraded, nothing retried, said once.
        observed[2] = seen(ENDPOINT, "sd-base", &[("endpointConfigName", "c1")]);
        observed.extend(serving(1).into_iter().take(2));
        let after = Case::new(checked(2), observed, decision.memory).decide();
        assert!(
            after
                .actions
                .iter()
                .all(|a| a.deferred.is_some() || a.operation == Operation::Delete)
                && after.due().count() == 0,
            "{:?}",
            lines(&after)
        );
        assert_eq!(phase(&after), (Phase::Degraded, Reason::SmokeCheckFailed));
        assert!(after.notices.is_empty());
    }

    #[test]
    fn a_failed_smoke_check_of_the_first_create_is_a_failure() {
        let mut observed = serving(1);
        let mut failed = seen(CHECK, "check-c1", &[("payloadHash", "p")]);
        failed.state = ObjectState::Failed("no result within 60 s".into());
        observed.push(failed);
        let decision = Case::new(checked(1), observed, memory_after(&[1])).decide();
        assert!(decision.due().count() == 0);
        assert_eq!(phase(&decision), (Phase::Failed, Reason::Failed));
    }

    #[test]
    fn a_registration_that_must_be_replaced_goes_before_its_endpoint_changes() {
        let mut want = scaled(2);
        want[3] = want[3].clone().field("instanceType", Some(json!("big")));
        want[3].replaced_on = &["instanceType"];
        let mut observed = serving(1);
        observed.push(seen(
            SCALING,
            "endpoint/sd-base/variant/AllTraffic",
            &[("minCapacity", "0"), ("instanceType", "small")],
        ));
        observed[3].fields.insert("minCapacity".into(), json!(0));
        let decision = Case::new(want, observed, memory_after(&[1])).decide();
        assert_eq!(
            lines(&decision)[..4],
            [
                "Delete application-autoscaling:endpoint-scaling endpoint/sd-base/variant/AllTraffic",
                "Create sagemaker:model m2",
                "Create sagemaker:endpoint-config c2",
                "Update sagemaker:endpoint sd-base",
            ]
        );
        assert!(lines(&decision).contains(
            &"Create application-autoscaling:endpoint-scaling endpoint/sd-base/variant/AllTraffic (later)"
                .to_string()
        ));
    }
}
