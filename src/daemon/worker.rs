//! One reconcile of one resource in the daemon: load its status and its dependencies'
//! (rebuilt from the state directory every pass, so a restart anywhere is safe), run the
//! engine's pass once, record the outcome and persist it. Errors are not retried here: the
//! queue backs off (see [`super::controller::next_run`]).

use std::sync::Arc;

use crate::apply::cloud::AwsCloud;
use crate::aws::Clients;
use crate::engine::execute::{self, Mode, PassOutcome};
use crate::engine::policy::record_error;
use crate::error::Result;
use crate::manifest::{Manifest, ResourceId};
use crate::state::{ResourceStatus, StateStore};

use super::metrics::Metrics;

/// What the worker needs from the daemon, shared by every pass.
pub struct WorkerContext {
    pub clients: Clients,
    /// The engine's seam over `clients`, shared by every pass.
    pub cloud: AwsCloud,
    pub store: StateStore,
    pub metrics: Arc<Metrics>,
    /// `Mode::Apply`, or `Mode::Observe` under `--observe-only`.
    pub mode: Mode,
}

pub struct Job {
    pub manifest: Manifest,
    pub dependencies: Vec<ResourceId>,
    /// Set when the manifest is invalid now and this pass runs on its last good spec.
    pub stale: Option<String>,
    /// Holds the status while the pass runs: if the pass is cancelled (shutdown), what it
    /// recorded so far is still here to be saved.
    pub slot: Arc<tokio::sync::Mutex<Option<ResourceStatus>>>,
}

pub struct Outcome {
    pub id: ResourceId,
    pub spec_hash: String,
    pub before: ResourceStatus,
    pub after: ResourceStatus,
    pub result: Result<PassOutcome>,
}

pub use crate::state::MANIFEST_CONDITION;

pub async fn run(ctx: Arc<WorkerContext>, job: Job) -> Outcome {
    let manifest = &job.manifest;
    let id = manifest.id.clone();
    let mut timer = ctx.metrics.reconcile_timer(&id.kind);
    let report = |line: String| tracing::info!(resource = %id, "{line}");
    let loaded = load(&ctx, &job);
    let (dependencies, before) = match loaded {
        Ok(found) => found,
        Err(err) => {
            timer.failed(&err);
            let before = ResourceStatus::new(&id);
            return Outcome {
                id,
                spec_hash: manifest.spec_hash.clone(),
                after: before.clone(),
                before,
                result: Err(err),
            };
        }
    };
    let mut slot = job.slot.lock().await;
    let status = slot.insert(before.clone());
    match &job.stale {
        Some(problem) => {
            if status.set_condition(MANIFEST_CONDITION, false, "InvalidManifest", problem) {
                status.event(problem.clone());
            }
        }
        None => {
            if status.set_condition(MANIFEST_CONDITION, true, "Valid", "")
                && before
                    .conditions
                    .iter()
                    .any(|c| c.kind == MANIFEST_CONDITION)
            {
                status.event("manifest valid again");
            }
        }
    }
    let persist = |current: &ResourceStatus| ctx.store.save(current);
    let mut result = execute::pass(
        &ctx.cloud,
        manifest,
        &dependencies,
        status,
        ctx.mode,
        &report,
        &persist,
    )
    .await;
    match &result {
        Ok(_) => timer.succeeded(),
        Err(err) => {
            timer.failed(err);
            record_error(status, &manifest.failure_key(), err, &report);
        }
    }
    if let Err(err) = ctx.store.save(status) {
        tracing::error!(resource = %id, error = %err, "cannot persist status");
        if result.is_ok() {
            result = Err(err);
        }
    }
    let after = slot.take().expect("status set above");
    Outcome {
        id,
        spec_hash: manifest.spec_hash.clone(),
        before,
        after,
        result,
    }
}

fn load(ctx: &WorkerContext, job: &Job) -> Result<(Vec<ResourceStatus>, ResourceStatus)> {
    let mut dependencies = Vec::new();
    for dep in &job.dependencies {
        dependencies.push(
            ctx.store
                .load(dep)?
                .unwrap_or_else(|| ResourceStatus::new(dep)),
        );
    }
    let own = ctx
        .store
        .load(&job.manifest.id)?
        .unwrap_or_else(|| ResourceStatus::new(&job.manifest.id));
    Ok((dependencies, own))
}
