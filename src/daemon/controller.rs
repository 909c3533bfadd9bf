//! The daemon's control loop: one task owns the desired state, the work queue and the in-flight
//! reconciles, and reacts to file changes, finished passes, timers, leadership and signals.
//! Workers run in parallel (bounded); what to do after a pass is decided in one place,
//! [`next_run`], a pure function of the pass's outcome.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use super::desired::{changes, dependents_of, merge_last_good, with_dependents, Desired};
use super::http::{Role, View};
use super::lease::LeaderGate;
use super::notifications::{events_of, Notification, Webhook};
use super::poll::{change_key, next_poll, Expectations};
use super::queue::WorkQueue;
use super::watch::Watcher;
use super::worker::{self, Job, Outcome, WorkerContext};
use crate::apply::ApplyOptions;
use crate::engine::execute::PassOutcome;
use crate::engine::policy;
use crate::error::Result;
use crate::manifest::{load_paths, Loaded, ResourceId};
use crate::state::{Phase, ResourceStatus};

/// What to do with a resource after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// Look again after this long (in progress, or backing off after an error).
    After(Duration),
    /// Nothing to do until something wakes it: a file change, a dependency, the resync.
    WhenWoken,
}

/// The daemon's requeue (pure): the engine's one policy (`engine::policy::after_pass`, which
/// `sdop apply` follows too), with the daemon's durations. `poll` is the adaptive interval for
/// something in progress; `backoff` the resource's next error backoff.
pub fn next_run(
    result: &Result<PassOutcome>,
    poll: Duration,
    backoff: impl FnOnce() -> Duration,
) -> NextRun {
    match policy::after_pass(result) {
        policy::After::Poll => NextRun::After(poll),
        policy::After::Backoff => NextRun::After(backoff()),
        // A dependency's own progress, a file change or the resync wakes it.
        policy::After::WhenWoken => NextRun::WhenWoken,
    }
}

pub struct Settings {
    pub paths: Vec<PathBuf>,
    pub concurrency: usize,
    pub resync: Duration,
    pub prune: bool,
    pub force: bool,
    pub shutdown_timeout: Duration,
    pub holder: String,
    /// On a shared state: how often a standby reads what the leader recorded.
    pub refresh_standby: Option<Duration>,
}

pub struct Controller {
    settings: Settings,
    ctx: Arc<WorkerContext>,
    view: Arc<RwLock<View>>,
    gate: Option<Arc<LeaderGate>>,
    webhook: Option<Webhook>,
    desired: Desired,
    index: HashMap<ResourceId, usize>,
    queue: WorkQueue,
    tasks: JoinSet<Outcome>,
    slots: HashMap<ResourceId, Arc<tokio::sync::Mutex<Option<ResourceStatus>>>>,
    /// Since when, and in what kind of change, each resource has been in progress.
    progress: HashMap<ResourceId, (Instant, String)>,
    expectations: Expectations,
    /// Declared resources not reconciled yet since this daemon started leading.
    unsynced: BTreeSet<ResourceId>,
    last_diagnostics: Vec<String>,
    prune_wanted: bool,
    pruning: Option<tokio::task::JoinHandle<Result<Vec<ResourceId>>>>,
}

impl Controller {
    pub fn new(
        settings: Settings,
        ctx: Arc<WorkerContext>,
        view: Arc<RwLock<View>>,
        gate: Option<Arc<LeaderGate>>,
        webhook: Option<Webhook>,
    ) -> Result<Controller> {
        let statuses = ctx.store.load_all()?;
        {
            let mut v = view.write().expect("view lock");
            v.statuses = statuses.into_iter().map(|s| (s.id(), s)).collect();
        }
        Ok(Controller {
            settings,
            ctx,
            view,
            gate,
            webhook,
            desired: Desired::default(),
            index: HashMap::new(),
            queue: WorkQueue::default(),
            tasks: JoinSet::new(),
            slots: HashMap::new(),
            progress: HashMap::new(),
            expectations: Expectations::default(),
            unsynced: BTreeSet::new(),
            last_diagnostics: Vec::new(),
            prune_wanted: false,
            pruning: None,
        })
    }

    fn is_leader(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.is_leader())
    }

    /// Runs until `stop` fires, then shuts down within the configured bound.
    pub async fn run(
        mut self,
        mut files: mpsc::UnboundedReceiver<Vec<PathBuf>>,
        mut watcher: Watcher,
        mut leadership: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.reload(&[]);
        let mut resync_at = Instant::now() + jittered(self.settings.resync);
        self.set_role();
        if self.is_leader() {
            self.wake_all();
        }
        let mut leadership_open = true;
        // `new` has just loaded the statuses: the first refresh is one interval away.
        let mut refresh_at = Instant::now() + self.settings.refresh_standby.unwrap_or_default();
        loop {
            self.dispatch();
            self.publish();
            let next_due = self.queue.next_due();
            let pruning = self.pruning.is_some();
            let refreshing = self.settings.refresh_standby.is_some() && !self.is_leader();
            tokio::select! {
                _ = stop.changed() => break,
                _ = sleep_until(refresh_at.into()), if refreshing => {
                    self.refresh_statuses();
                    refresh_at = Instant::now() + self.settings.refresh_standby.unwrap_or_default();
                }
                Some(mut touched) = files.recv() => {
                    // Take everything that queued up: one reload for a burst of saves.
                    while let Ok(more) = files.try_recv() {
                        touched.extend(more);
                    }
                    tracing::debug!(files = touched.len(), "manifests changed");
                    self.reload(&touched);
                    watcher.rewatch();
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(outcome) => self.finished(outcome),
                    Err(err) => tracing::error!(error = %err, "reconcile task failed"),
                },
                _ = sleep_until(next_due.unwrap_or_else(far_future).into()), if next_due.is_some() => {}
                _ = sleep_until(resync_at.into()) => {
                    tracing::info!("periodic resync");
                    self.reload(&[]);
                    watcher.rewatch();
                    self.wake_all();
                    resync_at = Instant::now() + jittered(self.settings.resync);
                }
                changed = leadership.changed(), if leadership_open => {
                    if changed.is_err() {
                        // No elector (or it stopped): leadership no longer changes.
                        leadership_open = false;
                        continue;
                    }
                    self.set_role();
                    if self.is_leader() {
                        tracing::info!("leading: reconciling everything");
                        if self.settings.refresh_standby.is_some() {
                            // What the last leader recorded is this one's inventory now.
                            self.refresh_statuses();
                        }
                        self.wake_all();
                    } else {
                        tracing::warn!("standby: not mutating AWS");
                    }
                }
                pruned = async { self.pruning.as_mut().expect("guarded").await }, if pruning => {
                    self.pruning = None;
                    match pruned {
                        Ok(Ok(ids)) => {
                            let mut view = self.view.write().expect("view lock");
                            for id in ids {
                                view.statuses.remove(&id);
                            }
                        }
                        Ok(Err(err)) => tracing::warn!(error = %err, "prune did not run"),
                        Err(err) => tracing::error!(error = %err, "prune task failed"),
                    }
                }
            }
        }
        self.shutdown().await;
    }

    /// Reads the manifests again; wakes what changed and its dependents.
    fn reload(&mut self, touched: &[PathBuf]) {
        let fresh = load_paths(&self.settings.paths);
        let rendered: Vec<String> = fresh.diagnostics.iter().map(|d| d.to_string()).collect();
        if rendered != self.last_diagnostics {
            for line in &rendered {
                tracing::error!("invalid manifest: {line}");
            }
            if rendered.is_empty() && !self.last_diagnostics.is_empty() {
                tracing::info!("all manifests valid again");
            }
            self.last_diagnostics = rendered.clone();
        }
        let previous_stale = std::mem::take(&mut self.desired.stale);
        let next = merge_last_good(fresh, &self.desired.loaded);
        let mut delta = changes(&self.desired.loaded, &next.loaded, touched);
        // Entering or leaving the last-good state changes the status even if the spec did not.
        for id in previous_stale.keys().chain(next.stale.keys()) {
            if previous_stale.get(id) != next.stale.get(id) {
                delta.changed.insert(id.clone());
            }
        }
        self.desired = next;
        self.index = self
            .desired
            .loaded
            .manifests
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let now = Instant::now();
        for id in with_dependents(&self.desired.loaded, &delta.changed) {
            self.queue.wake(&id, now);
        }
        for id in &delta.removed {
            self.queue.forget(id);
            self.unsynced.remove(id);
            self.progress.remove(id);
            if self.settings.prune {
                tracing::info!(resource = %id, "manifest removed: pruning");
                self.prune_wanted = true;
            } else {
                tracing::warn!(resource = %id, "manifest removed: no longer reconciled; its AWS objects are kept (pruning is off)");
            }
        }
        self.ctx
            .metrics
            .manifest_errors
            .set(self.desired.loaded.diagnostics.len() as i64);
        let mut view = self.view.write().expect("view lock");
        view.diagnostics = self.last_diagnostics.clone();
        view.stale = self
            .desired
            .stale
            .iter()
            .map(|(id, why)| (id.to_string(), why.clone()))
            .collect();
        view.last_load = crate::state::now();
        view.declared = super::http::Declared::all(&self.desired.loaded);
    }

    /// Shows the statuses the shared state holds (written by whichever daemon leads).
    fn refresh_statuses(&mut self) {
        match self.ctx.store.load_all() {
            Ok(statuses) => {
                self.view.write().expect("view lock").statuses =
                    statuses.into_iter().map(|s| (s.id(), s)).collect();
            }
            Err(err) => tracing::warn!(error = %err, "reading the shared state failed"),
        }
    }

    fn wake_all(&mut self) {
        let now = Instant::now();
        for m in &self.desired.loaded.manifests {
            self.queue.wake(&m.id, now);
            self.unsynced.insert(m.id.clone());
        }
        // Anything removed while standing by (or before a restart) is pruned now.
        self.prune_wanted |= self.settings.prune;
    }

    fn set_role(&mut self) {
        let leader = self.is_leader();
        self.ctx.metrics.leader.set(leader as i64);
        self.view.write().expect("view lock").role =
            if leader { Role::Leader } else { Role::Standby };
    }

    /// Starts what is due, within the concurrency limit, if this daemon may mutate.
    fn dispatch(&mut self) {
        if !self.is_leader() {
            if self.gate.is_some() && self.view.read().expect("view lock").role == Role::Leader {
                // The lease lapsed between elector rounds: stop at once.
                self.set_role();
            }
            return;
        }
        let now = Instant::now();
        for id in self.queue.take_due(now, self.settings.concurrency) {
            let Some(&index) = self.index.get(&id) else {
                self.queue.finished(&id, now);
                continue;
            };
            let manifest = self.desired.loaded.manifests[index].clone();
            let dependencies = self
                .desired
                .loaded
                .graph
                .dependencies(index)
                .iter()
                .map(|&d| self.desired.loaded.manifests[d].id.clone())
                .collect();
            let slot = Arc::new(tokio::sync::Mutex::new(None));
            self.slots.insert(id.clone(), slot.clone());
            let job = Job {
                manifest,
                dependencies,
                stale: self.desired.stale.get(&id).cloned(),
                slot,
            };
            self.tasks.spawn(worker::run(self.ctx.clone(), job));
        }
        if self.prune_wanted && self.pruning.is_none() && self.queue.in_flight() == 0 {
            self.prune_wanted = false;
            self.start_prune();
        }
    }

    fn start_prune(&mut self) {
        let loaded = Loaded {
            manifests: self.desired.loaded.manifests.clone(),
            diagnostics: Vec::new(),
            failed_files: self.desired.loaded.failed_files.clone(),
            graph: self.desired.loaded.graph.clone(),
        };
        let ctx = self.ctx.clone();
        let options = ApplyOptions {
            prune: true,
            force: self.settings.force,
            ..ApplyOptions::default()
        };
        self.pruning = Some(tokio::spawn(async move {
            let report = |line: String| tracing::info!("{line}");
            crate::apply::prune::prune(&loaded, &ctx.clients, &ctx.store, &options, &report).await
        }));
    }

    fn finished(&mut self, outcome: Outcome) {
        let now = Instant::now();
        let id = outcome.id.clone();
        self.queue.finished(&id, now);
        self.slots.remove(&id);
        self.unsynced.remove(&id);
        let (before, after) = (&outcome.before, &outcome.after);
        if let Err(err) = &outcome.result {
            tracing::warn!(resource = %id, class = ?err.class(), error = %err, "reconcile failed");
        }
        let mutated = outcome.result.as_ref().is_ok_and(|r| r.mutated);
        // What the pass added to the resource's history says it best (a promotion, a
        // rollback and why); else its message.
        let remembered = after
            .history
            .get(before.history.len()..)
            .filter(|new| !new.is_empty() && after.history.len() > before.history.len())
            .map(|new| {
                new.iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        let message = remembered.unwrap_or_else(|| after.message.clone());
        for event in events_of(before, after, &outcome.spec_hash, mutated) {
            let notification = Notification {
                event,
                resource: id.to_string(),
                phase: after.phase,
                message: message.clone(),
                at: crate::state::now(),
                daemon: self.settings.holder.clone(),
            };
            tracing::info!(resource = %id, event = ?event, phase = ?after.phase, "{message}");
            if let Some(webhook) = &self.webhook {
                webhook.send(notification);
            }
        }
        if before.phase != after.phase || before.outputs != after.outputs {
            for dependent in dependents_of(&self.desired.loaded, &id) {
                self.queue.wake(&dependent, now);
            }
        }
        // Adaptive polling of what is in progress, learning how long changes take.
        let in_progress = matches!(after.phase, Phase::Progressing | Phase::Deleting);
        let poll = if in_progress {
            let key = change_key(&id.kind, &after.message);
            let (since, key) = self
                .progress
                .entry(id.clone())
                .or_insert_with(|| (now, key))
                .clone();
            next_poll(now - since, self.expectations.expected(&key))
        } else {
            if let Some((since, key)) = self.progress.remove(&id) {
                if after.phase == Phase::Ready {
                    self.expectations.observe(&key, now - since);
                }
            }
            Duration::ZERO
        };
        if outcome.result.is_ok() && after.phase != Phase::Pending {
            self.queue.succeeded(&id);
        }
        let declared = self.index.contains_key(&id);
        let next = next_run(&outcome.result, poll, || {
            self.queue.backoff(&id, fastrand::f64())
        });
        // A kind that follows decisions taken outside sdop is read again on its own.
        let watch = self
            .index
            .get(&id)
            .and_then(|&i| self.desired.loaded.manifests.get(i))
            .and_then(|m| m.handler.watch());
        let next = match (next, watch) {
            (NextRun::WhenWoken, Some(every)) if after.phase == Phase::Ready => {
                NextRun::After(every)
            }
            (next, _) => next,
        };
        if let (NextRun::After(delay), true) = (next, declared) {
            self.queue.schedule(&id, now + delay);
        }
        self.view
            .write()
            .expect("view lock")
            .statuses
            .insert(id, outcome.after);
    }

    /// Metrics and readiness from the current state.
    fn publish(&self) {
        let metrics = &self.ctx.metrics;
        metrics.queue_depth.set(self.queue.depth() as i64);
        metrics.in_flight.set(self.queue.in_flight() as i64);
        let mut view = self.view.write().expect("view lock");
        metrics.set_phases(view.statuses.values().map(|s| &s.phase));
        metrics.set_hourly_costs(view.statuses.values());
        view.synced = self.unsynced.is_empty();
    }

    /// Stop taking work; let passes in flight finish within the bound; then cancel the rest,
    /// abort their multipart uploads and persist what they had recorded.
    async fn shutdown(mut self) {
        self.view.write().expect("view lock").role = Role::ShuttingDown;
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        if !self.tasks.is_empty() {
            tracing::info!(in_flight = self.tasks.len(), bound = ?self.settings.shutdown_timeout, "shutting down: waiting for reconciles in flight");
        }
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(done) = self.tasks.join_next() => {
                    if let Ok(outcome) = done {
                        self.finished(outcome);
                    }
                }
                _ = sleep_until(deadline.into()) => break,
            }
        }
        if !self.tasks.is_empty() {
            tracing::warn!(
                cancelled = self.tasks.len(),
                "shutdown bound reached: cancelling reconciles in flight"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        let aborted = self.ctx.clients.uploads.abort_all(&self.ctx.clients).await;
        if aborted > 0 {
            tracing::info!(aborted, "aborted interrupted multipart uploads");
        }
        if let Some(pruning) = self.pruning.take() {
            pruning.abort();
        }
        for (id, slot) in self.slots.drain() {
            if let Some(mut status) = slot.lock().await.take() {
                status.event("interrupted by shutdown; resumes on the next start");
                if let Err(err) = self.ctx.store.save(&status) {
                    tracing::error!(resource = %id, error = %err, "cannot persist status");
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// `period` ± 10%, so several daemons (or resources) do not resync in lockstep.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::decide::Next;
    use crate::error::Error;

    const POLL: Duration = Duration::from_millis(700);
    const BACKOFF: Duration = Duration::from_secs(4);

    fn decide(result: Result<PassOutcome>) -> NextRun {
        next_run(&result, POLL, || BACKOFF)
    }

    fn next(next: Next) -> Result<PassOutcome> {
        Ok(PassOutcome {
            actions: Vec::new(),
            mutated: false,
            next,
            capacity: None,
        })
    }

    #[test]
    fn the_decision_says_what_next() {
        assert_eq!(decide(next(Next::Poll)), NextRun::After(POLL));
        assert_eq!(decide(next(Next::ActThenLook)), NextRun::After(POLL));
        assert_eq!(decide(next(Next::Backoff)), NextRun::After(BACKOFF));
        assert_eq!(decide(next(Next::WhenWoken)), NextRun::WhenWoken);
    }

    #[test]
    fn errors_by_class() {
        let throttled = Error::Aws {
            operation: "DescribeEndpoint".into(),
            code: Some("ThrottlingException".into()),
            message: "Rate exceeded".into(),
            retryable: true,
        };
        assert_eq!(decide(Err(throttled)), NextRun::After(BACKOFF));
        assert_eq!(
            decide(Err(Error::Terminal("bad".into()))),
            NextRun::WhenWoken
        );
    }

    #[test]
    fn resync_is_jittered_within_ten_percent() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(600));
            assert!(
                j >= Duration::from_secs(540) && j <= Duration::from_secs(660),
                "{j:?}"
            );
        }
    }
}
