//! `sdop apply`: converge every resource in graph order (independent ones in parallel),
//! persist status, optionally wait for readiness and prune what is no longer declared.
//!
//! - [`reconcile`]: one resource, one pass: observe, plan (pure), act, record.
//! - [`run`]: passes over the graph until converged (or, without `--wait`, until stable).
//! - [`prune`]: guarded deletion of resources whose manifests are gone.

pub mod cloud;
pub mod prune;
pub mod reconcile;
pub mod run;

pub use run::{apply, ApplyOptions, ApplySummary};
