//! A local file or directory a manifest names (a template, a checkpoint, a dataset), as
//! fingerprinted when the manifest was read (`crate::manifest::local` reads it).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalFile {
    /// The path resolved against the manifest's directory.
    pub resolved: PathBuf,
    pub is_dir: bool,
    /// Total bytes (all files, for a directory).
    pub size: u64,
    /// Hash of sizes, modification times and small files' contents.
    pub fingerprint: String,
    /// A small file's MD5 (hex), which is the ETag S3 reports for it once uploaded by one
    /// PutObject (unless the bucket encrypts with KMS): a listing then shows it unchanged
    /// without a HeadObject per file. `None` for a directory and for a large file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// A directory's files, sorted by path (empty for a file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<LocalEntry>,
    /// A small file's bytes as read for its fingerprint (a template), for checks that read
    /// it (`Kind::check_local`) without reading it again. `None` for a directory and for a
    /// file over `CONTENT_HASH_MAX_BYTES` (1 MiB), which is never read whole.
    #[serde(skip)]
    pub content: Option<Arc<[u8]>>,
}

/// One file of a local directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalEntry {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    pub resolved: PathBuf,
    pub size: u64,
    /// As [`LocalFile::fingerprint`], of this file alone.
    pub fingerprint: String,
    /// As [`LocalFile::content_md5`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
}
