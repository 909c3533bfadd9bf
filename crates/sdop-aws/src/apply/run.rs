//! Passes over the graph: each wave's resources reconcile in parallel; later waves see the
//! statuses earlier ones produced. Retryable errors back off with jitter (backon) per
//! resource; terminal ones mark the resource Failed until its spec changes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tracing::Instrument;

use super::cloud::AwsCloud;
use crate::aws::Clients;
use crate::engine::execute::{self, Mode, PassOutcome, Report};
use crate::engine::policy;
use crate::error::{Error, Result};
use crate::manifest::{Loaded, ResourceId};
use crate::state::{Phase, ResourceStatus, StateStore};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Keep going until every resource is Ready (or settled), polling what is in progress.
    pub wait: bool,
    pub timeout: Duration,
    pub prune: bool,
    /// Allow pruning more than `prune::MAX_PRUNE_SHARE` of what sdop owns.
    pub force: bool,
    /// First poll interval while waiting; grows to `max_poll`.
    pub min_poll: Duration,
    pub max_poll: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            wait: false,
            timeout: Duration::from_secs(3600),
            prune: false,
            force: false,
            min_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApplySummary {
    pub phases: BTreeMap<ResourceId, Phase>,
    pub timed_out: bool,
    pub pruned: Vec<ResourceId>,
}

impl ApplySummary {
    /// True when every resource is Ready and nothing timed out.
    pub fn converged(&self) -> bool {
        !self.timed_out && self.phases.values().all(|p| *p == Phase::Ready)
    }

    /// True when some resource needs a person (Failed, Degraded, Conflict, or blocked by one).
    pub fn has_problems(&self) -> bool {
        self.timed_out
            || self
                .phases
                .values()
                .any(|p| matches!(p, Phase::Failed | Phase::Degraded | Phase::Conflict))
    }
}

/// Reconciles one resource with backoff on retryable errors and persists its status.
async fn reconcile_one(
    cloud: &AwsCloud,
    store: &StateStore,
    loaded: &Loaded,
    index: usize,
    report: Report<'_>,
) -> Result<(ResourceStatus, Option<PassOutcome>)> {
    let manifest = &loaded.manifests[index];
    let mut dependencies = Vec::new();
    for &dep in loaded.graph.dependencies(index) {
        let id = &loaded.manifests[dep].id;
        dependencies.push(store.load(id)?.unwrap_or_else(|| ResourceStatus::new(id)));
    }
    let mut loaded_status = store
        .load(&manifest.id)?
        .unwrap_or_else(|| ResourceStatus::new(&manifest.id));
    loaded_status.manifest_valid_again();
    let status = Mutex::new(loaded_status);
    let persist = |current: &ResourceStatus| store.save(current);
    let attempt = || async {
        let mut current = status.lock().expect("status lock").clone();
        let outcome = execute::pass(
            cloud,
            manifest,
            &dependencies,
            &mut current,
            Mode::Apply,
            report,
            &persist,
        )
        .await;
        // Keep what a failed attempt recorded (objects created before the error).
        *status.lock().expect("status lock") = current;
        outcome
    };
    let outcome = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(4)
                .with_jitter(),
        )
        // The one policy: what backs off is retried (a few times here: apply is one-shot),
        // unless its call was already retried by its caller (a multipart upload's parts).
        .when(policy::retry_pass_now)
        .notify(|e: &Error, after: Duration| {
            report(format!("~ {} retrying in {after:.1?}: {e}", manifest.id))
        })
        .await;
    let mut status = status.into_inner().expect("status lock");
    let result = match outcome {
        Ok(result) => Some(result),
        Err(err) => {
            policy::record_error(&mut status, &manifest.failure_key(), &err, report);
            None
        }
    };
    store.save(&status)?;
    Ok((status, result))
}

/// The first and the longest wait before a resource whose pass failed with a retryable error
/// is tried again within one apply.
const RETRY_FIRST_DELAY: Duration = Duration::from_secs(2);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(300);

/// Converges `loaded` (which must be valid). Returns the final phase of every resource.
pub async fn apply(
    loaded: &Loaded,
    clients: &Clients,
    store: &StateStore,
    options: &ApplyOptions,
    report: Report<'_>,
) -> Result<ApplySummary> {
    let started = Instant::now();
    // One sweep per pass over the graph: its reads share listings (crate::aws::sweep).
    let cloud = AwsCloud::sweeping(clients.clone());
    let waves = loaded.graph.waves();
    let mut poll = options.min_poll;
    let mut summary = ApplySummary::default();
    // A resource whose last pass failed with a retryable error (AWS throttling or down, an
    // upload failing) waits a doubling delay before its next pass, instead of a pass at every
    // poll: a long outage does not repeat the work (and the bytes) every few seconds.
    let mut retry_at: BTreeMap<ResourceId, (Instant, Duration)> = BTreeMap::new();
    loop {
        cloud.next_sweep();
        let mut mutated = false;
        let mut changed_phase = false;
        let mut blocked = std::collections::BTreeSet::new();
        for wave in &waves {
            let now = Instant::now();
            let due: Vec<usize> = wave
                .iter()
                .copied()
                .filter(|&i| {
                    retry_at
                        .get(&loaded.manifests[i].id)
                        .is_none_or(|(at, _)| now >= *at)
                })
                .collect();
            let passes = futures::future::join_all(
                due.iter()
                    .map(|&i| {
                        reconcile_one(&cloud, store, loaded, i, report).instrument(
                            tracing::debug_span!(target: "sdop::aws", "pass", resource = %loaded.manifests[i].id),
                        )
                    }),
            )
            .await;
            for pass in passes {
                let (status, result) = pass?;
                let id = status.id();
                if result.is_none() && status.phase == Phase::Pending {
                    let delay = retry_at.get(&id).map_or(RETRY_FIRST_DELAY, |(_, last)| {
                        (*last * 2).min(RETRY_MAX_DELAY)
                    });
                    report(format!(
                        "~ {id} next attempt in {delay:?} (retryable error: {})",
                        status.message
                    ));
                    retry_at.insert(id, (Instant::now() + delay, delay));
                } else {
                    retry_at.remove(&id);
                }
                if let Some(result) = &result {
                    mutated |= result.mutated;
                    if result.blocked(&status) {
                        blocked.insert(status.id());
                    }
                }
                changed_phase |=
                    summary.phases.insert(status.id(), status.phase) != Some(status.phase);
            }
        }
        let settled = summary
            .phases
            .iter()
            .all(|(id, p)| p.is_settled() || blocked.contains(id));
        if settled {
            break;
        }
        if !options.wait && !mutated && !changed_phase {
            break;
        }
        if started.elapsed() >= options.timeout {
            summary.timed_out = true;
            report(format!(
                "timed out after {:?} waiting for convergence",
                options.timeout
            ));
            break;
        }
        if !mutated {
            tokio::time::sleep(poll.min(options.timeout.saturating_sub(started.elapsed()))).await;
            poll = (poll * 3 / 2).min(options.max_poll);
        } else {
            poll = options.min_poll;
        }
    }
    if options.prune {
        summary.pruned = super::prune::prune(loaded, clients, store, options, report).await?;
    }
    Ok(summary)
}
