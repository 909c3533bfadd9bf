//! The shared model, at the bottom of the layers: what a resource is (identity, metadata), the
//! AWS objects it consists of, the values resources pass each other, deterministic names, and
//! the lifecycle words (phase, deletion policy). Everything above (kinds, manifest, state,
//! engine, aws) builds on this module; it depends on nothing of sdop's but errors.

// Generated (scripts/gen-aws-models.py), compared byte for byte with the generator's output.
#[rustfmt::skip]
pub mod aws_models;
pub mod aws_rules;
pub mod contracts;
pub mod local_file;
pub mod naming;
pub mod object;
pub mod outputs;
pub mod resource;

use serde::{Deserialize, Serialize};

/// What happens to the AWS resource when its manifest is deleted and pruning is on.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Keep the AWS resource; sdop only forgets it.
    #[default]
    Retain,
    /// Delete the AWS resource.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Phase {
    #[default]
    Pending,
    Progressing,
    Ready,
    Degraded,
    Failed,
    Deleting,
    Conflict,
}

impl Phase {
    /// Nothing more will happen without a change or a retry after backoff.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Phase::Ready | Phase::Degraded | Phase::Failed | Phase::Conflict
        )
    }
}
