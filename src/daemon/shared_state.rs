//! The shared state (`--state s3://BUCKET/PREFIX`): every status is one S3 object,
//! `PREFIX/status/KIND/NAME.json`, and the writer lock is the daemon's lease,
//! `PREFIX/lease.json`. Several daemons and CI applies then see one inventory: a new leader
//! knows (and cleans up) what the old one recorded, and a standby reads what the leader writes.
//!
//! - **Conditional writes.** A status is written with `If-Match` on the ETag this process last
//!   read or wrote (`If-None-Match: *` when it knows the object is absent), so a write never
//!   replaces a status another writer saved since: that write fails as a retryable
//!   `PreconditionFailed`, and this process refuses to write that status again until it has
//!   read it afresh (nothing stale is "written last").
//! - **No write without the lease.** Writes go only while [`SharedState`]'s gate is open:
//!   the apply's lock ([`SharedState::lock`]) or the daemon's elector opens it, and it closes
//!   by itself a margin before the lease could expire.
//! - **Synchronous callers.** The executor persists a status before each mutating call from a
//!   synchronous callback, and the rest of sdop reads statuses synchronously. The S3 calls run
//!   on this store's own one-thread runtime; callers block on the answer (as they block on the
//!   fsync of a state directory), from any thread or runtime.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use super::lease::{self, Elector, LeaderGate, LeaseConfig, Step};
use crate::aws::transport::MutationGate;
use crate::aws::{absent_if, classify, is_not_found, read_s3_body, Clients, Connection};
use crate::error::{Error, Result};
use crate::model::resource::ResourceId;
use crate::state::{ResourceStatus, StateLocation, StateLock, StateStore, StatusBackend};

/// How long an apply's hold on the shared state lasts without renewal, and how often it renews
/// (the daemon's defaults).
pub const APPLY_LEASE_TTL: Duration = Duration::from_secs(30);
pub const APPLY_LEASE_RENEW: Duration = Duration::from_secs(10);

/// How often a waiting apply reads the lease: each read is a GetObject, and a holder changes
/// it only once per renewal, so the directory lock's 200 ms would be needless calls.
const LEASE_POLL: Duration = Duration::from_secs(1);

/// `s3://BUCKET/PREFIX` of a shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLocation {
    pub bucket: String,
    /// Without a trailing slash; may be empty.
    pub prefix: String,
}

impl SharedLocation {
    pub fn parse(uri: &str) -> Result<SharedLocation> {
        let bad = || {
            Error::Terminal(format!(
                "--state {uri:?}: expected s3://BUCKET/PREFIX (a state directory is --state-dir)"
            ))
        };
        let rest = uri.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || prefix.contains("//") {
            return Err(bad());
        }
        Ok(SharedLocation {
            bucket: bucket.into(),
            prefix: prefix.trim_end_matches('/').into(),
        })
    }

    fn key(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}/{leaf}", self.prefix)
        }
    }

    pub fn status_prefix(&self) -> String {
        self.key("status/")
    }

    pub fn status_key(&self, id: &ResourceId) -> String {
        self.key(&format!("status/{}/{}.json", id.kind, id.name))
    }

    pub fn lease_key(&self) -> String {
        self.key("lease.json")
    }

    /// The lease a daemon on this state elects its leader with.
    pub fn lease_uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lease_key())
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What this process knows of a status object's version.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    Absent,
    Etag(String),
    /// A write was refused because another writer changed it: read it again first.
    Stale,
}

/// Opens while this process holds the lease (an apply's lock or the daemon's election).
#[derive(Default)]
struct WriteGate(Mutex<Option<Arc<dyn MutationGate>>>);

impl WriteGate {
    fn set(&self, gate: Arc<dyn MutationGate>) {
        *self.0.lock().expect("gate lock") = Some(gate);
    }
    fn is_open(&self) -> bool {
        self.0
            .lock()
            .expect("gate lock")
            .as_ref()
            .is_some_and(|g| g.may_mutate())
    }
}

/// A one-thread runtime the store's S3 calls run on; dropped without blocking.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn start() -> Result<IoRuntime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sdop-state")
            .enable_all()
            .build()
            .map(|rt| IoRuntime(Some(rt)))
            .map_err(|e| Error::io("starting the shared state's runtime", e))
    }

    /// Runs `work` there and waits for it, from any thread (inside another runtime too).
    fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.0.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().expect("the shared state's runtime stopped")
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.0.as_ref().expect("runtime").spawn(work);
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub struct SharedState {
    location: SharedLocation,
    s3: aws_sdk_s3::Client,
    known: Mutex<HashMap<String, Known>>,
    gate: WriteGate,
    io: IoRuntime,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("location", &self.location.uri())
            .finish()
    }
}

impl SharedState {
    /// Connects and checks that the bucket is there (sdop does not create its own state bucket).
    pub fn open(location: SharedLocation, connection: &Connection) -> Result<SharedState> {
        let io = IoRuntime::start()?;
        let connection = connection.clone();
        let bucket = location.bucket.clone();
        let s3 = io.run(async move {
            let s3 = Clients::connect(&connection).await?.s3;
            match s3.head_bucket().bucket(&bucket).send().await {
                Ok(_) => Ok(s3),
                Err(err) => {
                    let err = classify("s3:HeadBucket", err);
                    if is_not_found(&err, &["NoSuchBucket", "NotFound"]) {
                        Err(Error::Terminal(format!(
                            "the state bucket {bucket} does not exist: create it first (sdop never creates or deletes the bucket holding its own state)"
                        )))
                    } else {
                        Err(err)
                    }
                }
            }
        })?;
        Ok(SharedState {
            location,
            s3,
            known: Mutex::new(HashMap::new()),
            gate: WriteGate::default(),
            io,
        })
    }

    pub fn with_client(location: SharedLocation, s3: aws_sdk_s3::Client) -> Result<SharedState> {
        Ok(SharedState {
            location,
            s3,
            known: Mutex::new(HashMap::new()),
            gate: WriteGate::default(),
            io: IoRuntime::start()?,
        })
    }

    pub fn location(&self) -> &SharedLocation {
        &self.location
    }

    /// Lets writes through while `gate` is open (the daemon's leader gate).
    pub fn write_while(&self, gate: Arc<dyn MutationGate>) {
        self.gate.set(gate);
    }

    fn remember(&self, key: &str, known: Known) {
        self.known
            .lock()
            .expect("known lock")
            .insert(key.to_string(), known);
    }

    fn load_one(&self, id: &ResourceId) -> Result<Option<ResourceStatus>> {
        let key = self.location.status_key(id);
        let found = self.io.run(get(
            self.s3.clone(),
            self.location.bucket.clone(),
            key.clone(),
        ))?;
        Ok(match found {
            Some((etag, status)) => {
                self.remember(&key, Known::Etag(etag));
                Some(status)
            }
            None => {
                self.remember(&key, Known::Absent);
                None
            }
        })
    }

    fn load_every(&self) -> Result<Vec<ResourceStatus>> {
        let s3 = self.s3.clone();
        let bucket = self.location.bucket.clone();
        let prefix = self.location.status_prefix();
        let found = self.io.run(async move {
            let mut keys = Vec::new();
            let mut pages = s3
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .filter(|k| k.ends_with(".json"))
                        .map(String::from),
                );
            }
            let reads = keys
                .into_iter()
                .map(|key| {
                    let (s3, bucket) = (s3.clone(), bucket.clone());
                    async move { get(s3, bucket, key.clone()).await.map(|f| (key, f)) }
                })
                .collect::<Vec<_>>();
            // A few reads at a time: a large inventory loads in a fraction of the sequential time.
            use futures::StreamExt;
            futures::stream::iter(reads)
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()
        })?;
        let mut all = Vec::new();
        for (key, read) in found {
            // Deleted between the listing and the read: not part of the inventory.
            if let Some((etag, status)) = read {
                self.remember(&key, Known::Etag(etag));
                all.push(status);
            }
        }
        all.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(all)
    }

    fn refuse_without_lease(&self, what: &str) -> Result<()> {
        if self.gate.is_open() {
            return Ok(());
        }
        Err(Error::Aws {
            operation: what.into(),
            code: Some("NotLeader".into()),
            message: format!(
                "this sdop does not hold the lease of the shared state {}: not writing it",
                self.location.uri()
            ),
            retryable: true,
        })
    }

    fn save_one(&self, status: &ResourceStatus) -> Result<()> {
        self.refuse_without_lease("s3:PutObject")?;
        let key = self.location.status_key(&status.id());
        let body = serde_json::to_vec_pretty(status).map_err(|e| Error::Terminal(e.to_string()))?;
        let known = self.known.lock().expect("known lock").get(&key).cloned();
        let (s3, bucket) = (self.s3.clone(), self.location.bucket.clone());
        let condition = match known {
            Some(Known::Stale) => {
                return Err(conflict(&self.location, &key));
            }
            Some(known) => known,
            // Never read by this process: learn its version first.
            None => match self.io.run(head(s3.clone(), bucket.clone(), key.clone()))? {
                Some(etag) => Known::Etag(etag),
                None => Known::Absent,
            },
        };
        let put_key = key.clone();
        let written = self.io.run(async move {
            let request = s3
                .put_object()
                .bucket(&bucket)
                .key(&put_key)
                .content_type("application/json")
                .body(ByteStream::from(body));
            let request = match &condition {
                Known::Etag(etag) => request.if_match(etag),
                _ => request.if_none_match("*"),
            };
            request.send().await
        });
        match written {
            Ok(out) => {
                self.remember(
                    &key,
                    Known::Etag(out.e_tag().unwrap_or_default().to_string()),
                );
                Ok(())
            }
            Err(err) => {
                let err = classify("s3:PutObject", err);
                if is_precondition_failed(&err) {
                    self.remember(&key, Known::Stale);
                    Err(conflict(&self.location, &key))
                } else {
                    Err(err)
                }
            }
        }
    }

    fn remove_one(&self, id: &ResourceId) -> Result<()> {
        self.refuse_without_lease("s3:DeleteObject")?;
        let key = self.location.status_key(id);
        let known = self.known.lock().expect("known lock").get(&key).cloned();
        if known == Some(Known::Stale) {
            return Err(conflict(&self.location, &key));
        }
        let (s3, bucket, delete_key) = (self.s3.clone(), self.location.bucket.clone(), key.clone());
        let deleted = self.io.run(async move {
            let request = s3.delete_object().bucket(&bucket).key(&delete_key);
            let request = match &known {
                Some(Known::Etag(etag)) => request.if_match(etag),
                _ => request,
            };
            request.send().await
        });
        match deleted {
            Ok(_) => {
                self.remember(&key, Known::Absent);
                Ok(())
            }
            Err(err) => {
                let err = classify("s3:DeleteObject", err);
                if missing_object(&err) {
                    self.remember(&key, Known::Absent);
                    Ok(())
                } else if is_precondition_failed(&err) {
                    self.remember(&key, Known::Stale);
                    Err(conflict(&self.location, &key))
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Takes the shared state's lease for a one-shot writer (`sdop apply`), waiting up to `wait`
    /// for its holder (a daemon, another apply) to release it or for it to expire on this
    /// process's clock. Renewed in the background while held; released when dropped.
    fn take_lease(
        &self,
        holder: &str,
        wait: Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<SharedLock> {
        let config = LeaseConfig::new(
            &self.location.lease_uri(),
            APPLY_LEASE_TTL,
            APPLY_LEASE_RENEW,
            holder.to_string(),
        )?;
        let started = Instant::now();
        let mut elector = Elector::default();
        let mut told = false;
        let (etag, taken_at) = loop {
            let round = Instant::now();
            let (s3, round_config) = (self.s3.clone(), config.clone());
            let taken = self.io.run(async move {
                let observed = lease::read(&s3, &round_config).await?;
                let step = elector.decide(&observed, round, round_config.ttl);
                let put = match &step {
                    Step::Create => {
                        lease::put(&s3, &round_config, lease::Condition::Absent).await?
                    }
                    Step::TakeOver { etag } => {
                        lease::put(&s3, &round_config, lease::Condition::Match(etag)).await?
                    }
                    Step::Wait => None,
                };
                Ok::<_, Error>((put, observed, elector))
            });
            let (put, observed, back) = taken?;
            elector = back;
            if let Some(etag) = put {
                break (etag, round);
            }
            let other = match &observed {
                lease::Observed::Held {
                    record: Some(record),
                    ..
                } => record.holder.clone(),
                _ => "another sdop".to_string(),
            };
            if started.elapsed() >= wait {
                return Err(Error::Terminal(format!(
                    "the shared state {} is in use by {other}: one writer at a time (stop it or wait for it; a holder that died lets go {}s after its last renewal)",
                    self.location.uri(),
                    APPLY_LEASE_TTL.as_secs()
                )));
            }
            if !told {
                waiting(&other);
                told = true;
            }
            std::thread::sleep(LEASE_POLL.min(wait.saturating_sub(started.elapsed())));
        };
        let gate = Arc::new(LeaderGate::default());
        gate.lead_until(Some(taken_at + config.ttl - config.margin()));
        self.gate.set(gate.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (released_tx, released) = std::sync::mpsc::sync_channel(1);
        let s3 = self.s3.clone();
        self.io.spawn(async move {
            hold(s3, config, etag, gate, stopped).await;
            let _ = released_tx.send(());
        });
        Ok(SharedLock { stop, released })
    }
}

impl StatusBackend for SharedState {
    fn load(&self, id: &ResourceId) -> Result<Option<ResourceStatus>> {
        self.load_one(id)
    }
    fn load_all(&self) -> Result<Vec<ResourceStatus>> {
        self.load_every()
    }
    fn save(&self, status: &ResourceStatus) -> Result<()> {
        self.save_one(status)
    }
    fn remove(&self, id: &ResourceId) -> Result<()> {
        self.remove_one(id)
    }
    fn lock(&self, holder: &str, wait: Duration, waiting: &dyn Fn(&str)) -> Result<StateLock> {
        self.take_lease(holder, wait, waiting).map(StateLock::new)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The store at `location`: a state directory, or a shared state (connected, its bucket
/// checked).
pub fn open(location: &StateLocation, connection: &Connection) -> Result<StateStore> {
    match location {
        StateLocation::Dir(dir) => StateStore::open(dir.clone()),
        StateLocation::Shared(uri) => Ok(StateStore::with_backend(SharedState::open(
            SharedLocation::parse(uri)?,
            connection,
        )?)),
    }
}

/// As [`open`], for a command that only reads: a state directory that does not exist is not
/// created (it holds no status).
pub fn open_to_read(location: &StateLocation, connection: &Connection) -> Result<StateStore> {
    match location {
        StateLocation::Dir(dir) => Ok(StateStore::existing(dir.clone())),
        StateLocation::Shared(_) => open(location, connection),
    }
}

/// A shared state reached through `s3` (a client configured elsewhere: tests, embedding).
pub fn open_with_client(uri: &str, s3: aws_sdk_s3::Client) -> Result<StateStore> {
    Ok(StateStore::with_backend(SharedState::with_client(
        SharedLocation::parse(uri)?,
        s3,
    )?))
}

/// The shared state behind `store`, if it is one.
pub fn of(store: &StateStore) -> Option<&SharedState> {
    store.backend().downcast_ref::<SharedState>()
}

/// Renews the apply's lease until told to stop (then releases it) or until it is lost.
async fn hold(
    s3: aws_sdk_s3::Client,
    config: LeaseConfig,
    mut etag: String,
    gate: Arc<LeaderGate>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.renew) => {}
            _ = stop.changed() => break,
        }
        let round = Instant::now();
        match lease::put(&s3, &config, lease::Condition::Match(&etag)).await {
            Ok(Some(renewed)) => {
                etag = renewed;
                gate.lead_until(Some(round + config.ttl - config.margin()));
            }
            Ok(None) => {
                tracing::error!("lost the shared state's lease to another writer: no more writes");
                gate.lead_until(None);
                return;
            }
            // The gate closes by itself in time if renewals keep failing.
            Err(err) => tracing::warn!(error = %err, "renewing the shared state's lease failed"),
        }
    }
    gate.lead_until(None);
    lease::release(&s3, &config, &etag).await;
}

/// The hold of an apply on a shared state: released when dropped.
pub struct SharedLock {
    stop: tokio::sync::watch::Sender<bool>,
    released: std::sync::mpsc::Receiver<()>,
}

impl std::fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLock")
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Released at once, so the next writer does not wait out the TTL.
        let _ = self.released.recv_timeout(Duration::from_secs(5));
    }
}

fn is_precondition_failed(err: &Error) -> bool {
    is_not_found(err, &["PreconditionFailed", "ConditionalRequestConflict"])
}

fn conflict(location: &SharedLocation, key: &str) -> Error {
    Error::Aws {
        operation: "s3:PutObject".into(),
        code: Some("PreconditionFailed".into()),
        message: format!(
            "s3://{}/{key} was written by another sdop since this one read it: not overwriting it (it is read again on the next pass)",
            location.bucket
        ),
        retryable: true,
    }
}

fn missing_object(err: &Error) -> bool {
    is_not_found(err, &["NoSuchKey", "NotFound"])
}

async fn head(s3: aws_sdk_s3::Client, bucket: String, key: String) -> Result<Option<String>> {
    let found = s3.head_object().bucket(&bucket).key(&key).send().await;
    let found = absent_if(
        found.map_err(|e| classify("s3:HeadObject", e)),
        missing_object,
    )?;
    Ok(found.map(|out| out.e_tag().unwrap_or_default().to_string()))
}

async fn get(
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
) -> Result<Option<(String, ResourceStatus)>> {
    let found = s3.get_object().bucket(&bucket).key(&key).send().await;
    let Some(out) = absent_if(
        found.map_err(|e| classify("s3:GetObject", e)),
        missing_object,
    )?
    else {
        return Ok(None);
    };
    let uri = format!("s3://{bucket}/{key}");
    let etag = out.e_tag().unwrap_or_default().to_string();
    let bytes = read_s3_body(out.body, &uri).await?;
    let status = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Terminal(format!("corrupt status object {uri}: {e}")))?;
    Ok(Some((etag, status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_name_their_objects() {
        let at = SharedLocation::parse("s3://team-state/sdop/prod/").unwrap();
        assert_eq!(
            (at.bucket.as_str(), at.prefix.as_str()),
            ("team-state", "sdop/prod")
        );
        let id = ResourceId::new("Endpoint", "base");
        assert_eq!(at.status_key(&id), "sdop/prod/status/Endpoint/base.json");
        assert_eq!(at.lease_uri(), "s3://team-state/sdop/prod/lease.json");
        let root = SharedLocation::parse("s3://team-state").unwrap();
        assert_eq!(root.status_key(&id), "status/Endpoint/base.json");
        assert_eq!(root.lease_key(), "lease.json");
        for bad in ["team-state/x", "s3:///x", "s3://b/a//c", "/var/lib/sdop"] {
            assert!(SharedLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_write_gate_is_closed_until_a_lease_opens_it() {
        let gate = WriteGate::default();
        assert!(!gate.is_open());
        let lease = Arc::new(LeaderGate::default());
        gate.set(lease.clone());
        assert!(!gate.is_open());
        lease.lead_until(Some(Instant::now() + Duration::from_secs(5)));
        assert!(gate.is_open());
        lease.lead_until(None);
        assert!(!gate.is_open());
    }
}
