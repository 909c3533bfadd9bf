//! A multipart upload fed from an `AsyncRead`: parts are read one at a time and uploaded in
//! parallel (bounded), so memory stays flat whatever the size. Completion is atomic in S3:
//! the object appears at its key only when `CompleteMultipartUpload` succeeds. Any failure
//! aborts the upload, leaving no parts and no object behind.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Progress, PARALLEL_PARTS, PART_SIZE};
use crate::aws::{classify, Clients};
use crate::error::{Error, Result};

/// Multipart uploads started and not yet completed or aborted: a daemon shutting down aborts
/// the ones it interrupts (a dropped upload future cannot abort itself).
#[derive(Debug, Default)]
pub struct ActiveUploads {
    uploads: std::sync::Mutex<BTreeMap<String, (String, String)>>,
}

impl ActiveUploads {
    pub(crate) fn start(&self, upload_id: &str, bucket: &str, key: &str) {
        self.uploads
            .lock()
            .expect("uploads lock")
            .insert(upload_id.into(), (bucket.into(), key.into()));
    }

    pub(crate) fn end(&self, upload_id: &str) {
        self.uploads.lock().expect("uploads lock").remove(upload_id);
    }

    pub fn len(&self) -> usize {
        self.uploads.lock().expect("uploads lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, upload_id: &str) -> bool {
        self.uploads
            .lock()
            .expect("uploads lock")
            .contains_key(upload_id)
    }

    /// Aborts every upload still registered; returns how many.
    pub async fn abort_all(&self, clients: &Clients) -> usize {
        let pending: Vec<_> = std::mem::take(&mut *self.uploads.lock().expect("uploads lock"))
            .into_iter()
            .collect();
        for (upload_id, (bucket, key)) in &pending {
            tracing::info!(
                bucket,
                key,
                upload_id,
                "aborting interrupted multipart upload"
            );
            abort(clients, bucket, key, upload_id).await;
        }
        pending.len()
    }
}

/// Uploads everything `reader` yields to `bucket/key` with `metadata`; returns bytes written.
/// `producer` reports whether the stream ended because it was complete: only then is the
/// upload completed (a writer that failed half-way also closes the stream).
pub async fn upload<R: AsyncRead + Unpin>(
    clients: &Clients,
    bucket: &str,
    key: &str,
    metadata: &BTreeMap<String, String>,
    reader: R,
    progress: &Progress,
    producer: tokio::sync::oneshot::Receiver<Result<()>>,
) -> Result<u64> {
    abort_leftovers(clients, bucket, key).await?;
    let created = clients
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata.clone().into_iter().collect()))
        .send()
        .await
        .map_err(|e| classify("s3:CreateMultipartUpload", e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    clients.uploads.start(&upload_id, bucket, key);
    let result = upload_started(clients, bucket, key, &upload_id, reader, progress, producer).await;
    clients.uploads.end(&upload_id);
    result
}

async fn upload_started<R: AsyncRead + Unpin>(
    clients: &Clients,
    bucket: &str,
    key: &str,
    upload_id: &str,
    reader: R,
    progress: &Progress,
    producer: tokio::sync::oneshot::Receiver<Result<()>>,
) -> Result<u64> {
    let upload_id = upload_id.to_string();
    let uploaded = match upload_parts(clients, bucket, key, &upload_id, reader, progress).await {
        Ok(done) => match producer.await {
            Ok(Ok(())) => Ok(done),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(Error::Terminal(
                "the package writer stopped without a result".into(),
            )),
        },
        Err(err) => Err(err),
    };
    match uploaded {
        Ok((parts, bytes)) => {
            let completed = clients
                .s3
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await;
            match completed {
                Ok(_) => Ok(bytes),
                Err(err) => {
                    abort(clients, bucket, key, &upload_id).await;
                    Err(classify("s3:CompleteMultipartUpload", err))
                }
            }
        }
        Err(err) => {
            abort(clients, bucket, key, &upload_id).await;
            Err(err)
        }
    }
}

/// Multipart uploads to `bucket/key` that this process did not start are leftovers of an sdop
/// killed mid-upload (package keys are content-addressed and sdop's own, so nobody else writes
/// there): aborted before a new upload starts, so a restart leaves no billed parts behind. An
/// upload killed before its ID was known to anyone is caught here too; the buckets sdop creates
/// also abort incomplete uploads after 7 days (lifecycle rule).
pub async fn abort_leftovers(clients: &Clients, bucket: &str, key: &str) -> Result<usize> {
    let listed = clients
        .s3
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .map_err(|e| classify("s3:ListMultipartUploads", e))?;
    let mut aborted = 0;
    for upload in listed.uploads() {
        let (Some(found_key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
            continue;
        };
        if found_key != key || clients.uploads.contains(upload_id) {
            continue;
        }
        tracing::info!(
            bucket,
            key,
            upload_id,
            "aborting a multipart upload an earlier run left open"
        );
        if abort(clients, bucket, key, upload_id).await {
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Aborts an upload, retrying throttling and 5xx with backoff (an upload left open is billed
/// storage). Already gone (`NoSuchUpload`) is success. Returns false when it could not be
/// aborted (logged; the next upload to the key, or the bucket's lifecycle rule, sweeps it).
pub async fn abort(clients: &Clients, bucket: &str, key: &str, upload_id: &str) -> bool {
    use backon::{ExponentialBuilder, Retryable};
    let attempt = || async {
        match clients
            .s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match classify("s3:AbortMultipartUpload", err) {
                gone if crate::aws::is_not_found(&gone, &["NoSuchUpload"]) => Ok(()),
                other => Err(other),
            },
        }
    };
    let outcome = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(200))
                .with_max_delay(std::time::Duration::from_secs(2))
                .with_max_times(5)
                .with_jitter(),
        )
        .when(|e: &Error| e.class() == crate::error::ErrorClass::Retryable)
        .await;
    match outcome {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(bucket, key, upload_id, error = %err, "could not abort multipart upload");
            false
        }
    }
}

async fn upload_parts<R: AsyncRead + Unpin>(
    clients: &Clients,
    bucket: &str,
    key: &str,
    upload_id: &str,
    mut reader: R,
    progress: &Progress,
) -> Result<(Vec<CompletedPart>, u64)> {
    let permits = Arc::new(Semaphore::new(PARALLEL_PARTS));
    let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
    let mut parts = Vec::new();
    let mut total = 0u64;
    let mut number = 0i32;
    loop {
        // Wait for a slot before reading the next part: bounds memory and applies backpressure.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        while let Some(done) = tasks.try_join_next() {
            parts.push(done.map_err(|e| Error::Terminal(format!("upload task failed: {e}")))??);
        }
        let mut buffer = Vec::with_capacity(PART_SIZE);
        let read = (&mut reader)
            .take(PART_SIZE as u64)
            .read_to_end(&mut buffer)
            .await;
        read.map_err(|e| Error::Terminal(format!("reading package stream: {e}")))?;
        if buffer.is_empty() && number > 0 {
            break;
        }
        number += 1;
        total += buffer.len() as u64;
        let last = buffer.len() < PART_SIZE;
        let (s3, bucket, key, upload_id) = (
            clients.s3.clone(),
            bucket.to_string(),
            key.to_string(),
            upload_id.to_string(),
        );
        let len = buffer.len() as u64;
        let part_number = number;
        tasks.spawn(async move {
            let out = s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(buffer))
                .send()
                .await
                .map_err(|e| classify("s3:UploadPart", e))?;
            drop(permit);
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        progress.done.fetch_add(len, Ordering::Relaxed);
        if last {
            break;
        }
    }
    while let Some(done) = tasks.join_next().await {
        parts.push(done.map_err(|e| Error::Terminal(format!("upload task failed: {e}")))??);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok((parts, total))
}
