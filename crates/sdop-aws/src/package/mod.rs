//! Building a model archive without local disk: S3 objects and local files are streamed
//! through tar and gzip straight into a parallel S3 multipart upload ([`targz`]), or laid out
//! under an S3 prefix with server-side copies ([`uncompressed`]).
//!
//! The package's identity is a hash of its inputs (each source's S3 ETag and size, or a local
//! file's fingerprint, plus its place in the archive and the format settings). It is stored
//! with the output, so unchanged inputs mean no rebuild and zero bytes moved.

pub mod listing;
pub mod multipart;
pub mod targz;
pub mod uncompressed;

use serde::{Deserialize, Serialize};

/// Default gzip level (the kind owns it: it is part of a package's identity).
pub use crate::kinds::model_archive::DEFAULT_COMPRESSION_LEVEL;

/// Part size of multipart uploads and copies.
pub const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts uploaded at once; memory is bounded by about `(PARALLEL_PARTS + 2) * PART_SIZE`.
pub const PARALLEL_PARTS: usize = 6;

/// One file of the package: where it comes from and where it goes in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// Path in the archive (or under the output prefix), e.g. `Stable-diffusion/v1-5-pruned.ckpt`.
    pub path: String,
    pub source: EntrySource,
    pub size: u64,
    /// S3 ETag, or a local file's fingerprint.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntrySource {
    S3 { bucket: String, key: String },
    Local { file: std::path::PathBuf },
}

/// Progress of a packaging run (bytes handed to S3), shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: std::sync::atomic::AtomicU64,
}
