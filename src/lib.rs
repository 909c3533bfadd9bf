//! sdop: a declarative operator for Stable Diffusion deployments on AWS.
//!
//! Layout (read top-down):
//! - [`manifest`]: reading YAML from disk into typed, validated manifests with precise diagnostics.
//! - [`kinds`]: one file per resource kind, each implementing [`kinds::Kind`].
//! - [`engine`]: the resource graph, content-hash naming, the observer seam, and the pure planner.
//! - [`apply`]: one-shot convergence (`sdop apply`); [`daemon`]: the long-running `sdop run`.
//! - [`cli`]: the `sdop` command line (thin wrapper over the library).
//! - [`error`]: the one error type and its retry classification.

pub mod apply;
pub mod aws;
pub mod cli;
pub mod contract;
pub mod daemon;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod kinds;
pub mod manifest;
pub mod package;
pub mod rules;
pub mod schema;
pub mod state;

pub use error::{Error, ErrorClass};
