//! Expanding package sources into entries (with ETags and sizes), and the package identity.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Entry, EntrySource};
use crate::aws::{classify, Clients};
use crate::error::{Error, Result};
use crate::model::naming::content_hash;
use crate::rules;

/// A source as the `ModelArchive` kind passes it to the adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Folder in the archive, ending in `/` or not.
    pub path: String,
    #[serde(default)]
    pub s3: Option<String>,
    /// Resolved local path.
    #[serde(default)]
    pub local: Option<String>,
    /// When set, a missing `s3` object is fine (a checkpoint's optional `.yaml`).
    #[serde(default)]
    pub optional: bool,
}

fn join(folder: &str, name: &str) -> String {
    let folder = folder.trim_end_matches('/');
    if folder.is_empty() {
        name.to_string()
    } else {
        format!("{folder}/{name}")
    }
}

/// The "directory" of an S3 key: everything up to its last `/`.
fn directory_of(key: &str) -> String {
    key.rfind('/')
        .map_or(String::new(), |i| key[..=i].to_string())
}

/// Objects by key (size, ETag) of each directory holding two or more single-object sources
/// (a checkpoint and its `.yaml`): one ListObjectsV2 instead of a HeadObject each. A
/// directory with more than one page of keys is left out (its objects are read one by one).
async fn list_shared_directories(
    clients: &Clients,
    sources: &[SourceSpec],
) -> Result<
    std::collections::BTreeMap<(String, String), std::collections::BTreeMap<String, (u64, String)>>,
> {
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for uri in sources.iter().filter_map(|s| s.s3.as_deref()) {
        let uri = rules::s3_uri(uri).map_err(Error::Terminal)?;
        if !uri.is_prefix() {
            *counts
                .entry((uri.bucket.clone(), directory_of(&uri.key)))
                .or_default() += 1;
        }
    }
    let mut listed = std::collections::BTreeMap::new();
    for ((bucket, directory), count) in counts {
        if count < 2 {
            continue;
        }
        let page = match clients
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&directory)
            .delimiter("/")
            .send()
            .await
            .map_err(|e| classify("s3:ListObjectsV2", e))
        {
            Ok(page) => page,
            // Read one by one, which says what is missing.
            Err(err) if crate::aws::is_not_found(&err, &["NoSuchBucket"]) => continue,
            Err(err) => return Err(err),
        };
        if page.is_truncated() == Some(true) {
            continue;
        }
        let objects = page
            .contents()
            .iter()
            .filter_map(|o| {
                Some((
                    o.key()?.to_string(),
                    (
                        o.size().unwrap_or(0) as u64,
                        o.e_tag().unwrap_or_default().to_string(),
                    ),
                ))
            })
            .collect();
        listed.insert((bucket, directory), objects);
    }
    Ok(listed)
}

/// Lists every entry of the package, in a stable order.
pub async fn list(clients: &Clients, sources: &[SourceSpec]) -> Result<Vec<Entry>> {
    let directories = list_shared_directories(clients, sources).await?;
    let mut entries = Vec::new();
    for source in sources {
        if let Some(uri) = &source.s3 {
            let uri = rules::s3_uri(uri).map_err(Error::Terminal)?;
            let directory = directories.get(&(uri.bucket.clone(), directory_of(&uri.key)));
            if let (false, Some(listed)) = (uri.is_prefix(), directory) {
                // Settled by its directory's listing, as a HeadObject would (S3 lists what
                // was written, strongly consistent).
                match listed.get(&uri.key) {
                    Some((size, etag)) => entries.push(Entry {
                        path: join(&source.path, uri.key.rsplit('/').next().unwrap_or_default()),
                        source: EntrySource::S3 {
                            bucket: uri.bucket.clone(),
                            key: uri.key.clone(),
                        },
                        size: *size,
                        version: etag.clone(),
                    }),
                    None if source.optional => {}
                    None => {
                        return Err(Error::Waiting(format!(
                            "source s3://{}/{} (it does not exist yet)",
                            uri.bucket, uri.key
                        )))
                    }
                }
            } else if uri.is_prefix() {
                let mut pages = clients
                    .s3
                    .list_objects_v2()
                    .bucket(&uri.bucket)
                    .prefix(&uri.key)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
                    for object in page.contents() {
                        let key = object.key().unwrap_or_default();
                        if key.ends_with('/') {
                            continue;
                        }
                        entries.push(Entry {
                            path: join(&source.path, &key[uri.key.len()..]),
                            source: EntrySource::S3 {
                                bucket: uri.bucket.clone(),
                                key: key.to_string(),
                            },
                            size: object.size().unwrap_or(0) as u64,
                            version: object.e_tag().unwrap_or_default().to_string(),
                        });
                    }
                }
            } else {
                match clients
                    .s3
                    .head_object()
                    .bucket(&uri.bucket)
                    .key(&uri.key)
                    .send()
                    .await
                {
                    Ok(head) => entries.push(Entry {
                        path: join(&source.path, uri.key.rsplit('/').next().unwrap_or_default()),
                        source: EntrySource::S3 {
                            bucket: uri.bucket.clone(),
                            key: uri.key.clone(),
                        },
                        size: head.content_length().unwrap_or(0) as u64,
                        version: head.e_tag().unwrap_or_default().to_string(),
                    }),
                    Err(err) => {
                        let err = classify("s3:HeadObject", err);
                        let missing = crate::aws::is_not_found(&err, &["NotFound", "NoSuchKey"]);
                        if missing && source.optional {
                            continue;
                        }
                        if missing {
                            // Often uploaded later (prepare.sh): wait for it rather than fail.
                            return Err(Error::Waiting(format!(
                                "source s3://{}/{} (it does not exist yet)",
                                uri.bucket, uri.key
                            )));
                        }
                        return Err(err);
                    }
                }
            }
        }
        if let Some(local) = &source.local {
            let root = std::path::PathBuf::from(local);
            let meta =
                std::fs::metadata(&root).map_err(|e| Error::io(format!("reading {local}"), e))?;
            let mut files = Vec::new();
            if meta.is_dir() {
                collect(&root, &mut files).map_err(|e| Error::io(format!("listing {local}"), e))?;
                files.sort();
            } else {
                files.push(root.clone());
            }
            for file in files {
                let meta = std::fs::metadata(&file)
                    .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
                let name = if meta.is_file() && root == file {
                    file.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    file.strip_prefix(&root)
                        .unwrap_or(&file)
                        .to_string_lossy()
                        .into_owned()
                };
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                entries.push(Entry {
                    path: join(&source.path, &name),
                    source: EntrySource::Local { file: file.clone() },
                    size: meta.len(),
                    version: format!("size={} mtime={modified}", meta.len()),
                });
            }
        }
    }
    Ok(entries)
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if crate::manifest::discover::is_ignored_name(&name) {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The identity of a package: its entries (place, size, version) and settings.
pub fn identity(entries: &[Entry], format: &str, level: u32) -> String {
    let inputs: Vec<_> = entries
        .iter()
        .map(|e| json!([e.path, e.size, e.version]))
        .collect();
    content_hash(&json!({"entries": inputs, "format": format, "level": level}))[..32].to_string()
}
