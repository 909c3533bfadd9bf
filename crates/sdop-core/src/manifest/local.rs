//! Local files named by manifests (stack templates, checkpoints on the build EC2's disk),
//! resolved against the manifest's directory and fingerprinted cheaply.
//!
//! A fingerprint is size + modification time for every file (a 7 GB checkpoint is not read),
//! plus the SHA-256 of the content for small files (templates), so edits are always seen.
//! Small files also get their MD5, which S3 reports as the ETag of an object one PutObject
//! wrote: a listing of the prefix then shows a whole directory unchanged in one call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::model::local_file::{LocalEntry, LocalFile};
use md5::Md5;
use sha2::{Digest, Sha256};

/// Files up to this size are content-hashed.
pub const CONTENT_HASH_MAX_BYTES: u64 = 1024 * 1024;

fn hex(hasher: Sha256) -> String {
    crate::model::naming::hex(&hasher.finalize())
}

/// Resolves `written` against `base_dir` and fingerprints it.
pub fn inspect(base_dir: &Path, written: &str) -> Result<LocalFile, String> {
    let resolved = base_dir.join(written);
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| format!("local path {written:?} ({}): {e}", resolved.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0;
    let mut entries = Vec::new();
    let mut content_md5 = None;
    let mut content = None;
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(&resolved, &mut files)
            .map_err(|e| format!("cannot list {written:?}: {e}"))?;
        files.sort();
        for file in files {
            let rel: Vec<String> = file
                .strip_prefix(&resolved)
                .unwrap_or(&file)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            hasher.update(rel.as_bytes());
            // The directory's fingerprint sees the same bytes as before files had their own.
            let mut own = Sha256::new();
            let (bytes, content_md5, _) = fingerprint_file(&file, &mut [&mut hasher, &mut own])
                .map_err(|e| format!("cannot read {rel:?}: {e}"))?;
            let own = hex(own);
            size += bytes;
            entries.push(LocalEntry {
                path: rel,
                resolved: file,
                size: bytes,
                fingerprint: own,
                content_md5,
            });
        }
    } else {
        let (bytes, md5, small) = fingerprint_file(&resolved, &mut [&mut hasher])
            .map_err(|e| format!("cannot read {written:?}: {e}"))?;
        size = bytes;
        content_md5 = md5;
        content = small.map(Arc::from);
    }
    Ok(LocalFile {
        resolved,
        is_dir: meta.is_dir(),
        size,
        fingerprint: hex(hasher),
        content_md5,
        entries,
        content,
    })
}

/// Feeds the file to `hashers`; returns its size and, for a small file, its MD5 and content.
fn fingerprint_file(
    path: &Path,
    hashers: &mut [&mut Sha256],
) -> std::io::Result<(u64, Option<String>, Option<Vec<u8>>)> {
    let meta = std::fs::metadata(path)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let small = meta.len() <= CONTENT_HASH_MAX_BYTES;
    let content = if small {
        std::fs::read(path)?
    } else {
        modified.to_le_bytes().to_vec()
    };
    for hasher in hashers.iter_mut() {
        hasher.update(meta.len().to_le_bytes());
        hasher.update(&content);
    }
    if small {
        let md5 = crate::model::naming::hex(&Md5::digest(&content));
        Ok((meta.len(), Some(md5), Some(content)))
    } else {
        Ok((meta.len(), None, None))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if super::discover::is_ignored_name(&name) {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
