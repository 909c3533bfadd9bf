//! sdop's AWS side: one adapter per AWS object type behind the engine's seam ([`aws`]), model
//! packaging ([`package`]), and one-shot convergence, `sdop apply` and `sdop plan` ([`apply`]).
//! The core's modules are re-exported so paths read the same in every crate.

pub use sdop_core::{
    contract, cost, diagnostics, engine, error, kinds, manifest, model, rules, schema, state,
    unique_keys, Error, ErrorClass,
};

pub mod apply;
pub mod aws;
pub mod package;
