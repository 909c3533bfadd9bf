//! `sdop apply`: converge every resource in graph order (independent ones in parallel),
//! persist status, optionally wait for readiness and prune what is no longer declared.
//!
//! - one resource, one pass: the engine's executor (`crate::engine::execute`) in apply mode,
//!   over [`cloud::AwsCloud`].
//! - [`run`]: passes over the graph until converged (or, without `--wait`, until stable).
//! - [`prune`]: guarded deletion of resources whose manifests are gone.

pub mod approve;
pub mod audit;
pub mod cloud;
pub mod prune;
pub mod run;

pub use run::{apply, ApplyOptions, ApplySummary};

/// `sdop plan` against AWS: the executor's pass in plan mode over everything sdop recorded.
pub async fn plan(
    loaded: &crate::manifest::Loaded,
    clients: crate::aws::Clients,
    store: &crate::state::StateStore,
) -> crate::error::Result<crate::engine::Plan> {
    let aws = cloud::AwsCloud::sweeping(clients);
    let recorded = store
        .load_all()?
        .into_iter()
        .map(|status| (status.id(), status))
        .collect();
    crate::engine::plan_all(&loaded.manifests, &loaded.graph, &aws, &recorded).await
}

/// The IAM policy the operator needs for exactly `loaded` (`sdop iam-policy`): every kind's own
/// permissions, S3 on every bucket the specs name, SSM reads of every parameter they read.
pub fn iam_policy(loaded: &crate::manifest::Loaded) -> serde_json::Value {
    let resources: Vec<_> = loaded
        .manifests
        .iter()
        .map(|m| {
            let (grants, buckets) = m.handler.permissions(m.spec.as_ref());
            (grants, m.s3_buckets.as_slice(), &m.ssm_parameters, buckets)
        })
        .collect();
    crate::kinds::iam::policy(&resources)
}
