//! sdop: a declarative operator for Stable Diffusion deployments on AWS.
//!
//! A workspace of four crates (docs/architecture.md), bottom-up; a crate uses only those below
//! it, which the compiler enforces:
//! - `sdop-core`: the model, the kinds, manifests, the engine (the pure decision, the executor,
//!   the seam), state, errors. No AWS SDK.
//! - `sdop-evidence`: what an evaluation measures (images, contact sheet, record, verdict),
//!   pure. No AWS SDK, no I/O.
//! - `sdop-aws`: the AWS adapters behind the seam, packaging, one-shot apply and plan.
//! - `sdop` (this crate): [`daemon`] (`sdop run`) and [`cli`] (the command line), and the
//!   binary. Every module of the crates below is re-exported here under its own name.

pub use sdop_aws::{apply, aws, package};
pub use sdop_core::{
    contract, cost, diagnostics, engine, error, kinds, manifest, model, rules, schema, state,
    unique_keys, Error, ErrorClass,
};

pub mod cli;
pub mod daemon;

/// mimalloc instead of the system allocator, for every binary of the crate (sdop, the
/// benches, the tests): loading and planning make many small short-lived allocations, and
/// glibc's malloc/free took about 40% of the planner's CPU time (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
