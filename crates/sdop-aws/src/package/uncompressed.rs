//! `format: uncompressed`: the files laid out under an S3 prefix for SageMaker's
//! `ModelDataSource` (`CompressionType: None`). S3 sources are copied server-side (CopyObject,
//! or UploadPartCopy above 5 GiB): no bytes pass through sdop. Local files are uploaded.
//! A marker object written last carries the identity, so a half-done layout never reads as done.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{multipart, Entry, EntrySource, Progress};
use crate::aws::{classify, Clients};
use crate::error::{Error, Result};

/// CopyObject's limit; larger objects are copied in parts.
const COPY_OBJECT_MAX: u64 = 5 * 1024 * 1024 * 1024;
const COPY_PART: u64 = 512 * 1024 * 1024;

/// The marker beside the prefix: `s3://b/models/base/` → `models/base.sdop-package.json`
/// (named before the kind became `ModelArchive`, and kept: the prefixes in S3 have it).
pub fn marker_key(prefix: &str) -> String {
    format!("{}.sdop-package.json", prefix.trim_end_matches('/'))
}

fn copy_source(bucket: &str, key: &str) -> String {
    // CopySource is "bucket/key", URL-encoded.
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{bucket}/{encoded}")
}

async fn copy_large(
    clients: &Clients,
    from: (&str, &str),
    to: (&str, &str),
    size: u64,
) -> Result<()> {
    let s3 = &clients.s3;
    multipart::abort_leftovers(clients, to.0, to.1).await?;
    let created = s3
        .create_multipart_upload()
        .bucket(to.0)
        .key(to.1)
        .send()
        .await
        .map_err(|e| classify("s3:CreateMultipartUpload", e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    clients.uploads.start(&upload_id, to.0, to.1);
    let copied = copy_parts(clients, from, to, size, &upload_id).await;
    clients.uploads.end(&upload_id);
    copied
}

async fn copy_parts(
    clients: &Clients,
    from: (&str, &str),
    to: (&str, &str),
    size: u64,
    upload_id: &str,
) -> Result<()> {
    let s3 = &clients.s3;
    let upload_id = upload_id.to_string();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < size {
        let end = (start + COPY_PART).min(size) - 1;
        let part = s3
            .upload_part_copy()
            .bucket(to.0)
            .key(to.1)
            .upload_id(&upload_id)
            .part_number(number)
            .copy_source(copy_source(from.0, from.1))
            .copy_source_range(format!("bytes={start}-{end}"))
            .send()
            .await;
        match part {
            Ok(out) => parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(
                        out.copy_part_result()
                            .and_then(|r| r.e_tag())
                            .map(str::to_string),
                    )
                    .build(),
            ),
            Err(err) => {
                multipart::abort(clients, to.0, to.1, &upload_id).await;
                return Err(classify("s3:UploadPartCopy", err));
            }
        }
        start = end + 1;
        number += 1;
    }
    if let Err(err) = s3
        .complete_multipart_upload()
        .bucket(to.0)
        .key(to.1)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
    {
        multipart::abort(clients, to.0, to.1, &upload_id).await;
        return Err(classify("s3:CompleteMultipartUpload", err));
    }
    Ok(())
}

/// Lays `entries` out under `bucket/prefix`, removes files of an earlier layout, then writes
/// the marker with `metadata`. Returns the bytes that passed through sdop (local files only).
pub async fn build(
    clients: &Clients,
    entries: &[Entry],
    bucket: &str,
    prefix: &str,
    metadata: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<u64> {
    let s3 = &clients.s3;
    let mut through_sdop = 0;
    for entry in entries {
        let key = format!("{prefix}{}", entry.path);
        match &entry.source {
            EntrySource::S3 {
                bucket: from_bucket,
                key: from_key,
            } if entry.size <= COPY_OBJECT_MAX => {
                s3.copy_object()
                    .bucket(bucket)
                    .key(&key)
                    .copy_source(copy_source(from_bucket, from_key))
                    .send()
                    .await
                    .map_err(|e| classify("s3:CopyObject", e))?;
            }
            EntrySource::S3 {
                bucket: from_bucket,
                key: from_key,
            } => {
                copy_large(clients, (from_bucket, from_key), (bucket, &key), entry.size).await?;
            }
            EntrySource::Local { file } => {
                through_sdop += multipart::restarting(bucket, &key, || async {
                    let file = tokio::fs::File::open(file)
                        .await
                        .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let _ = tx.send(Ok(()));
                    multipart::upload(clients, bucket, &key, &BTreeMap::new(), file, progress, rx)
                        .await
                })
                .await?;
            }
        }
    }
    // Remove what an earlier version of this package left under the prefix.
    let wanted: Vec<String> = entries
        .iter()
        .map(|e| format!("{prefix}{}", e.path))
        .collect();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            if !wanted.iter().any(|w| w == key) {
                s3.delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| classify("s3:DeleteObject", e))?;
            }
        }
    }
    let listing = serde_json::to_vec_pretty(entries).unwrap_or_default();
    s3.put_object()
        .bucket(bucket)
        .key(marker_key(prefix))
        .body(ByteStream::from(listing))
        .set_metadata(Some(metadata.clone().into_iter().collect()))
        .send()
        .await
        .map_err(|e| classify("s3:PutObject", e))?;
    Ok(through_sdop)
}
