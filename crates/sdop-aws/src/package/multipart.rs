//! A multipart upload fed from an `AsyncRead`: parts are read one at a time and uploaded in
//! parallel (bounded), so memory stays flat whatever the size. Completion is atomic in S3:
//! the object appears at its key only when `CompleteMultipartUpload` succeeds. Any failure
//! aborts the upload, leaving no parts and no object behind.
//!
//! Retries. A failed part is sent again on its own, from its buffer (kept until the part
//! succeeds), with backoff (backon), as the one error policy says
//! ([`crate::engine::policy::after_error`]): a throttle, a 5xx or a dropped connection backs
//! off and retries; anything terminal stops the upload at once. The SDK's own retry layer
//! (standard mode: 3 attempts of every call, configured in [`crate::aws::Clients`]) is turned
//! off for `UploadPart`, so a part's attempts are exactly the ones counted here, not 3 per
//! attempt. What retries may send is bounded per upload ([`RetryBudget`]): one part plus 1.5
//! times the bytes of the parts that succeeded, so one upload sends at most 2.5 times the
//! package plus one part whatever fails, and, when every part fails, little more than each
//! part once. Only an upload that is gone (`NoSuchUpload`: aborted or completed by someone
//! else) is started again from the beginning ([`restarting`]); a part that used up its
//! attempts or the budget fails the upload (aborted), and `sdop apply` does not repeat that
//! pass at once ([`crate::engine::policy::retry_pass_now`]): the next pass does.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use backon::BackoffBuilder;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Progress, PARALLEL_PARTS, PART_SIZE};
use crate::aws::{classify, Clients};
use crate::engine::policy;
use crate::error::{Error, Result};

/// Attempts of one part (the first one included).
pub const PART_ATTEMPTS: usize = 6;
/// Times an upload that is gone (`NoSuchUpload`) is started again from the beginning.
pub const UPLOAD_RESTARTS: usize = 2;

/// Backoff between a part's attempts: 200 ms doubling to 5 s, with jitter.
fn part_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_max_times(PART_ATTEMPTS - 1)
        .with_jitter()
}

/// What the retries of one upload may still send, in bytes: one part to start with, plus 1.5
/// times each part that succeeded. A retry takes its part's bytes first; when there are not
/// enough, it waits while other parts are being sent (their success adds some), and gives up
/// when none is. Retries of one upload thus send at most `PART_SIZE + 1.5 × package`, and
/// when every call fails, about one part after the first attempts.
#[derive(Debug)]
pub struct RetryBudget {
    state: std::sync::Mutex<BudgetState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct BudgetState {
    bytes: u64,
    sending: usize,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(PART_SIZE as u64)
    }
}

impl RetryBudget {
    pub fn new(bytes: u64) -> RetryBudget {
        RetryBudget {
            state: std::sync::Mutex::new(BudgetState { bytes, sending: 0 }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Bytes retries may still send.
    pub fn available(&self) -> u64 {
        self.state.lock().expect("budget lock").bytes
    }

    /// Marks an attempt of `len` bytes as being sent until the guard is dropped; `succeeded`
    /// on the guard adds 1.5 × `len` to the budget.
    pub fn sending(&self, len: u64) -> Sending<'_> {
        self.state.lock().expect("budget lock").sending += 1;
        Sending {
            budget: self,
            len,
            succeeded: false,
        }
    }

    /// Takes `len` bytes for a retry, waiting while other attempts are in flight; false when
    /// there are not enough and nothing is being sent that could add some.
    pub async fn take(&self, len: u64) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.state.lock().expect("budget lock");
                if state.bytes >= len {
                    state.bytes -= len;
                    return true;
                }
                if state.sending == 0 {
                    return false;
                }
            }
            changed.await;
        }
    }
}

/// An attempt in flight (see [`RetryBudget::sending`]).
pub struct Sending<'a> {
    budget: &'a RetryBudget,
    len: u64,
    succeeded: bool,
}

impl Sending<'_> {
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.budget.state.lock().expect("budget lock");
            state.sending -= 1;
            if self.succeeded {
                state.bytes += self.len + self.len / 2;
            }
        }
        self.budget.changed.notify_waiters();
    }
}

/// True when an error says the multipart upload is gone (aborted or completed meanwhile).
pub fn upload_gone(err: &Error) -> bool {
    crate::aws::is_not_found(err, &["NoSuchUpload"])
}

/// Runs `attempt` (one whole multipart upload, from the first byte) and runs it again, up to
/// [`UPLOAD_RESTARTS`] times, only when the upload is gone (`NoSuchUpload`): every other
/// failure is the caller's to handle. `attempt` must produce the same bytes each time.
pub async fn restarting<F, Fut>(bucket: &str, key: &str, mut attempt: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut restarts = 0;
    loop {
        match attempt().await {
            Err(err) if upload_gone(&err) && restarts < UPLOAD_RESTARTS => {
                restarts += 1;
                tracing::warn!(bucket, key, restarts, error = %err, "the multipart upload is gone: starting it again");
            }
            other => return other,
        }
    }
}

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
    let budget = Arc::new(RetryBudget::default());
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
        let len = buffer.len() as u64;
        let part = Part {
            s3: clients.s3.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            number,
            body: bytes::Bytes::from(buffer),
        };
        let budget = budget.clone();
        tasks.spawn(async move {
            let done = part.send(&budget).await;
            drop(permit);
            done
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

/// One part of an upload, with its bytes (kept until the part is in S3).
struct Part {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    number: i32,
    body: bytes::Bytes,
}

impl Part {
    /// One UploadPart call, without the SDK's retries (the attempts are counted here).
    async fn attempt(&self, budget: &RetryBudget) -> Result<CompletedPart> {
        let sending = budget.sending(self.body.len() as u64);
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .body(ByteStream::from(self.body.clone()))
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| classify("s3:UploadPart", e))?;
        sending.succeeded();
        Ok(CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }

    /// Sends the part, again after a retryable failure (backoff, at most [`PART_ATTEMPTS`]
    /// attempts, each retry paid from `budget`).
    async fn send(&self, budget: &RetryBudget) -> Result<CompletedPart> {
        let mut delays = part_backoff().build();
        let mut attempts = 1;
        loop {
            let err = match self.attempt(budget).await {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            if policy::after_error(&err) != policy::After::Backoff {
                return Err(err);
            }
            let Some(delay) = delays.next() else {
                return Err(self.gave_up(err, attempts, "every attempt failed"));
            };
            tracing::info!(bucket = %self.bucket, key = %self.key, part = self.number, attempts, ?delay, error = %err, "retrying a part of a multipart upload");
            tokio::time::sleep(delay).await;
            if !budget.take(self.body.len() as u64).await {
                return Err(self.gave_up(
                    err,
                    attempts,
                    "the upload's retries have sent all they may (1.5 times the parts that succeeded, plus one part)",
                ));
            }
            attempts += 1;
        }
    }

    /// The last error of a part that is not retried any more, saying where and what next.
    fn gave_up(&self, err: Error, attempts: usize, why: &str) -> Error {
        match err {
            Error::Aws {
                operation,
                code,
                message,
                retryable,
            } => Error::Aws {
                operation,
                code,
                message: format!(
                    "{message} (part {} of s3://{}/{} after {attempts} attempt(s): {why}; the upload was aborted, the next pass starts it again)",
                    self.number, self.bucket, self.key
                ),
                retryable,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_take_from_the_budget_and_successes_add_one_and_a_half_times_their_bytes() {
        let budget = RetryBudget::new(100);
        assert!(budget.take(60).await);
        // 40 left, nothing in flight: a retry of 50 bytes gives up at once.
        assert!(!budget.take(50).await);
        budget.sending(10).succeeded();
        assert_eq!(budget.available(), 55);
        // A failed attempt adds nothing.
        drop(budget.sending(10));
        assert_eq!(budget.available(), 55);
    }

    #[tokio::test]
    async fn a_retry_waits_for_attempts_in_flight_and_gives_up_when_they_all_failed() {
        let budget = Arc::new(RetryBudget::new(0));
        // Waits while a part is in flight; its success pays for the retry.
        let sending = budget.sending(20);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(30).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "gave up while a part was in flight");
        sending.succeeded();
        assert!(waiting.await.unwrap());
        assert_eq!(budget.available(), 0);
        // Waits again; the attempt in flight fails: nothing more can come, it gives up.
        let sending = budget.sending(20);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(30).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(sending);
        assert!(!waiting.await.unwrap());
    }

    #[test]
    fn only_a_gone_upload_is_restarted() {
        let aws = |code: &str, retryable| Error::Aws {
            operation: "s3:UploadPart".into(),
            code: Some(code.into()),
            message: "m".into(),
            retryable,
        };
        assert!(upload_gone(&aws("NoSuchUpload", false)));
        assert!(!upload_gone(&aws("InternalError", true)));
        assert!(!upload_gone(&aws("AccessDenied", false)));
    }

    #[tokio::test]
    async fn restarting_runs_the_upload_again_only_while_it_is_gone() {
        let gone = || Error::Aws {
            operation: "s3:UploadPart".into(),
            code: Some("NoSuchUpload".into()),
            message: "m".into(),
            retryable: false,
        };
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let outcome = restarting("b", "k", || async {
            match runs.fetch_add(1, Ordering::SeqCst) {
                0 => Err(gone()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!((outcome.unwrap(), runs.load(Ordering::SeqCst)), (7, 2));
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let outcome = restarting("b", "k", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err::<u64, _>(gone())
        })
        .await;
        assert!(outcome.is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1 + UPLOAD_RESTARTS);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let outcome = restarting("b", "k", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err::<u64, _>(Error::Terminal("x".into()))
        })
        .await;
        assert!(outcome.is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
