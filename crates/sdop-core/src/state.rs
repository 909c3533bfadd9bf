//! Resource status, persisted crash-safely, in one of two places:
//!
//! - a **state directory** (the default): one JSON file per resource, written to a temporary
//!   file, fsynced, then renamed over the old one (atomic on POSIX), so a crash leaves either
//!   the old or the new status, never half of one. Readable with `cat`/`jq`; the writer lock
//!   is an advisory file lock.
//! - a **shared state** in S3 (`--state s3://BUCKET/PREFIX`, `daemon::shared_state`, a
//!   [`StatusBackend`] from a layer above): one object per resource written with conditional
//!   writes, and the daemon's lease as the writer lock, so several daemons and CI applies
//!   share one inventory.

use crate::model::object::{AwsType, RolloutTarget};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorClass, Result};
use crate::model::resource::ResourceId;
use crate::model::DeletionPolicy;

/// Events kept per resource.
const MAX_EVENTS: usize = 50;

pub use crate::model::Phase;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub last_transition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub class: ErrorClass,
    pub message: String,
    pub at: String,
}

/// An AWS object sdop created for a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRecord {
    #[serde(deserialize_with = "earlier::aws_type")]
    pub aws_type: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    pub kind: String,
    pub name: String,
    pub phase: Phase,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub observed_spec_hash: Option<String>,
    /// The failure key (the spec and the files it reads) of an attempt that failed
    /// terminally: not retried until it changes, or a retry is requested.
    #[serde(default)]
    pub failed_spec_hash: Option<String>,
    /// When `sdop reconcile` asked for a retry of what failed; cleared by the pass that
    /// carries it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested_at: Option<String>,
    /// A rollout AWS (or a failed smoke check) rolled back: not retried until the spec changes.
    #[serde(default, deserialize_with = "earlier::rollout")]
    pub failed_rollout: Option<RolloutTarget>,
    /// The in-place change an update was started towards.
    #[serde(default, deserialize_with = "earlier::rollout")]
    pub rollout_target: Option<RolloutTarget>,
    /// What the object a smoke check verifies was before the rollout (to roll back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<crate::model::object::RollbackTarget>,
    /// In-place updates made but not yet seen converged. The same update planned again before
    /// that means AWS does not keep the value: reported, not repeated in a loop.
    #[serde(default, deserialize_with = "earlier::rollouts")]
    pub unconfirmed_updates: Vec<RolloutTarget>,
    #[serde(default)]
    pub objects: Vec<ObjectRecord>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub last_error: Option<LastError>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The region of its AWS objects when not the operator's (so pruning deletes there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub events: VecDeque<Event>,
    /// Append-only: what the resource served or decided, when, and on what grounds (a
    /// production endpoint's model versions, a promotion's approvals and rollbacks). Never
    /// trimmed, unlike `events`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Event>,
}

/// Condition recording whether the resource's manifest currently parses and validates.
pub const MANIFEST_CONDITION: &str = "ManifestValid";

pub fn now() -> String {
    // RFC 3339 in UTC, to the second (as the AWS SDK's DateTime format writes it).
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl ResourceStatus {
    pub fn new(id: &ResourceId) -> Self {
        let at = now();
        ResourceStatus {
            kind: id.kind.clone(),
            name: id.name.clone(),
            phase: Phase::Pending,
            message: String::new(),
            conditions: Vec::new(),
            observed_spec_hash: None,
            failed_spec_hash: None,
            retry_requested_at: None,
            failed_rollout: None,
            rollout_target: None,
            rollback_to: None,
            unconfirmed_updates: Vec::new(),
            objects: Vec::new(),
            outputs: BTreeMap::new(),
            last_error: None,
            deletion_policy: DeletionPolicy::Retain,
            region: None,
            created_at: at.clone(),
            updated_at: at,
            events: VecDeque::new(),
            history: Vec::new(),
        }
    }

    pub fn id(&self) -> ResourceId {
        ResourceId::new(self.kind.clone(), self.name.clone())
    }

    /// Appends to the history (and to the events).
    pub fn remember(&mut self, message: impl Into<String>) {
        let message = message.into();
        self.event(message.clone());
        self.history.push(Event { at: now(), message });
    }

    pub fn event(&mut self, message: impl Into<String>) {
        self.events.push_back(Event {
            at: now(),
            message: message.into(),
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Sets the phase and its `Ready` condition; records a transition time on change.
    pub fn set_phase(&mut self, phase: Phase, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let ready = phase == Phase::Ready;
        let changed = self
            .conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .is_none_or(|c| c.status != ready || c.reason != reason);
        if changed {
            self.conditions.retain(|c| c.kind != "Ready");
            self.conditions.push(Condition {
                kind: "Ready".into(),
                status: ready,
                reason: reason.into(),
                message: message.clone(),
                last_transition: now(),
            });
        }
        self.phase = phase;
        self.message = message;
        self.updated_at = now();
    }

    /// Sets a condition other than `Ready`; returns true when its status or reason changed.
    /// Marks the manifest valid again (the condition is set once it was invalid), saying so
    /// in the events.
    pub fn manifest_valid_again(&mut self) {
        let was_invalid = self
            .conditions
            .iter()
            .any(|c| c.kind == MANIFEST_CONDITION && !c.status);
        if was_invalid && self.set_condition(MANIFEST_CONDITION, true, "Valid", "") {
            self.event("manifest valid again");
        }
    }

    pub fn set_condition(&mut self, kind: &str, ok: bool, reason: &str, message: &str) -> bool {
        if let Some(c) = self.conditions.iter_mut().find(|c| c.kind == kind) {
            let changed = c.status != ok || c.reason != reason;
            if changed {
                c.last_transition = now();
            }
            c.status = ok;
            c.reason = reason.into();
            c.message = message.into();
            return changed;
        }
        self.conditions.push(Condition {
            kind: kind.into(),
            status: ok,
            reason: reason.into(),
            message: message.into(),
            last_transition: now(),
        });
        true
    }

    pub fn record_object(&mut self, aws_type: AwsType, name: &str) {
        if !self.owns(aws_type, name) {
            self.objects.push(ObjectRecord {
                aws_type: aws_type.as_str().into(),
                name: name.into(),
                created_at: now(),
            });
        }
    }

    pub fn forget_object(&mut self, aws_type: AwsType, name: &str) {
        self.objects
            .retain(|o| !(o.aws_type == aws_type.as_str() && o.name == name));
    }

    pub fn owns(&self, aws_type: AwsType, name: &str) -> bool {
        self.objects
            .iter()
            .any(|o| o.aws_type == aws_type.as_str() && o.name == name)
    }

    pub fn set_error(&mut self, err: &Error) {
        self.last_error = Some(LastError {
            class: err.class(),
            message: err.to_string(),
            at: now(),
        });
    }
}

/// Where the user said statuses are kept (`--state-dir DIR` or `--state s3://BUCKET/PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Dir(PathBuf),
    Shared(String),
}

/// Where statuses are kept: a state directory or a shared state in S3.
#[derive(Debug, Clone)]
pub struct StateStore {
    backend: std::sync::Arc<dyn StatusBackend>,
    /// Statuses found stored under an earlier name of their kind (`ModelPackage/x`, written
    /// before the kind was renamed): the next save or removal of the resource, under its
    /// current name, removes them.
    earlier_copies: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<ResourceId>>>,
}

/// What keeps statuses: one read, all reads, a crash-safe save, a removal, and the one
/// writer's lock.
pub trait StatusBackend: std::fmt::Debug + Send + Sync + 'static {
    fn load(&self, id: &ResourceId) -> Result<Option<ResourceStatus>>;
    /// Every stored status, sorted by kind and name.
    fn load_all(&self) -> Result<Vec<ResourceStatus>>;
    fn save(&self, status: &ResourceStatus) -> Result<()>;
    fn remove(&self, id: &ResourceId) -> Result<()>;
    fn lock(
        &self,
        holder: &str,
        wait: std::time::Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<StateLock>;
    /// The state directory, when this is one.
    fn dir(&self) -> Option<&Path> {
        None
    }
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A state directory.
#[derive(Debug, Clone)]
struct StateDir {
    dir: PathBuf,
}

/// The one writer's hold on the state, released when dropped: for a state directory an
/// advisory lock on `<dir>/.lock` (flock), which the kernel releases when the process dies
/// (kill -9 included), the file naming its holder; for a shared state, its lease.
pub struct StateLock(#[allow(dead_code)] Box<dyn Send>);

impl std::fmt::Debug for StateLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateLock")
    }
}

impl StateLock {
    pub fn new(hold: impl Send + 'static) -> StateLock {
        StateLock(Box::new(hold))
    }
}

/// How long a second writer waits for the lock before it refuses.
pub const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(200);

impl StateStore {
    /// A state directory, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating state directory {}", dir.display()), e))?;
        Ok(StateStore::with_backend(StateDir { dir }))
    }

    /// A state directory to read, not created: a missing one holds no status (`get`, `plan`
    /// and `audit` create nothing). A save still creates what it writes into.
    pub fn existing(dir: impl Into<PathBuf>) -> Self {
        StateStore::with_backend(StateDir { dir: dir.into() })
    }

    pub fn with_backend(backend: impl StatusBackend) -> Self {
        StateStore {
            backend: std::sync::Arc::new(backend),
            earlier_copies: Default::default(),
        }
    }

    /// The state directory, when the state is one.
    pub fn dir(&self) -> Option<&Path> {
        self.backend.dir()
    }

    /// The backend, for a layer above that knows its type (the daemon's shared state).
    pub fn backend(&self) -> &dyn std::any::Any {
        self.backend.as_any()
    }

    /// Takes the writer lock, waiting up to `wait` for another writer (`holder` says who this
    /// one is: `sdop apply (pid 42)`). `waiting` is told once who holds it.
    pub fn lock(
        &self,
        holder: &str,
        wait: std::time::Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<StateLock> {
        self.backend.lock(holder, wait, waiting)
    }

    /// The status of `id` (named by the current or an earlier name of its kind), also when an
    /// earlier sdop stored it under an earlier name of its kind
    /// ([`crate::model::resource::RENAMED_KINDS`]): it is read as the current kind.
    pub fn load(&self, id: &ResourceId) -> Result<Option<ResourceStatus>> {
        let id = id.clone().current();
        if let Some(status) = self.backend.load(&id)? {
            return Ok(Some(status));
        }
        for earlier in id.earlier() {
            if let Some(mut status) = self.backend.load(&earlier)? {
                status.kind = id.kind.clone();
                self.earlier_copies().insert(earlier);
                return Ok(Some(status));
            }
        }
        Ok(None)
    }

    /// Every stored status, sorted by kind and name. One stored under an earlier name of its
    /// kind reads as the current kind; where both are stored (a crash between the save under
    /// the current name and the removal of the earlier copy), the current one, written later,
    /// stands.
    pub fn load_all(&self) -> Result<Vec<ResourceStatus>> {
        let mut all = self.backend.load_all()?;
        let stored: std::collections::BTreeSet<ResourceId> =
            all.iter().map(ResourceStatus::id).collect();
        let mut earlier_copies = self.earlier_copies();
        all.retain_mut(|status| {
            let stored_as = status.id();
            let current = stored_as.clone().current();
            if current == stored_as {
                return true;
            }
            earlier_copies.insert(stored_as);
            status.kind = current.kind.clone();
            !stored.contains(&current)
        });
        drop(earlier_copies);
        all.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(all)
    }

    /// Saves crash-safely (a shared state: only while this process holds its lease), under
    /// the current name of its kind; then removes a copy found under an earlier name.
    pub fn save(&self, status: &ResourceStatus) -> Result<()> {
        let id = status.id().current();
        if id.kind == status.kind {
            self.backend.save(status)?;
        } else {
            let mut renamed = status.clone();
            renamed.kind = id.kind.clone();
            self.backend.save(&renamed)?;
        }
        self.remove_earlier_copies(&id)
    }

    pub fn remove(&self, id: &ResourceId) -> Result<()> {
        let id = id.clone().current();
        self.backend.remove(&id)?;
        self.remove_earlier_copies(&id)
    }

    fn earlier_copies(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<ResourceId>> {
        self.earlier_copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remove_earlier_copies(&self, id: &ResourceId) -> Result<()> {
        for earlier in id.earlier() {
            if self.earlier_copies().contains(&earlier) {
                self.backend.remove(&earlier)?;
                self.earlier_copies().remove(&earlier);
            }
        }
        Ok(())
    }

    /// `--state-dir` default: `$SDOP_STATE_DIR`, else `$XDG_STATE_HOME/sdop`, else `~/.local/state/sdop`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SDOP_STATE_DIR") {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return Path::new(&dir).join("sdop");
        }
        match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".local/state/sdop"),
            None => PathBuf::from(".sdop-state"),
        }
    }
}

impl StateDir {
    fn path(&self, id: &ResourceId) -> PathBuf {
        self.dir.join(&id.kind).join(format!("{}.json", id.name))
    }
}

impl StatusBackend for StateDir {
    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn lock(
        &self,
        holder: &str,
        wait: std::time::Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<StateLock> {
        let path = self.dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let other = std::fs::read_to_string(&path).unwrap_or_default();
                    let other = if other.trim().is_empty() {
                        "another sdop".to_string()
                    } else {
                        other.trim().to_string()
                    };
                    if started.elapsed() >= wait {
                        return Err(Error::Terminal(format!(
                            "the state directory {} is in use by {other}: one writer at a time (stop it, or wait for it to finish)",
                            self.dir.display()
                        )));
                    }
                    if !told {
                        waiting(&other);
                        told = true;
                    }
                    std::thread::sleep(LOCK_POLL.min(wait.saturating_sub(started.elapsed())));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e))
                }
            }
        }
        let stamp = format!("{holder} since {}\n", now());
        file.set_len(0)
            .and_then(|()| {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(0))?;
                file.write_all(stamp.as_bytes())
            })
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(StateLock::new(file))
    }

    fn load(&self, id: &ResourceId) -> Result<Option<ResourceStatus>> {
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Terminal(format!("corrupt status file {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn load_all(&self) -> Result<Vec<ResourceStatus>> {
        let mut all = Vec::new();
        let Ok(kinds) = std::fs::read_dir(&self.dir) else {
            return Ok(all);
        };
        for kind in kinds.flatten() {
            let Ok(files) = std::fs::read_dir(kind.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "json") {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    let status: ResourceStatus = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::Terminal(format!("corrupt status file {}: {e}", path.display()))
                    })?;
                    all.push(status);
                }
            }
        }
        all.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(all)
    }

    /// Atomic replace: temp file in the same directory, fsync, rename, fsync the directory.
    fn save(&self, status: &ResourceStatus) -> Result<()> {
        let path = self.path(&status.id());
        let dir = path.parent().expect("status path has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = dir.join(format!(".{}.json.tmp-{}", status.name, std::process::id()));
        let body = serde_json::to_vec_pretty(status).map_err(|e| Error::Terminal(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    fn remove(&self, id: &ResourceId) -> Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing status", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_and_the_second_is_told_who() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let held = store
            .lock("sdop run (pid 1)", std::time::Duration::ZERO, &|_| {})
            .unwrap();
        let told = std::sync::Mutex::new(String::new());
        let refused = store
            .lock(
                "sdop apply (pid 2)",
                std::time::Duration::from_millis(300),
                &|who| *told.lock().unwrap() = who.to_string(),
            )
            .unwrap_err()
            .to_string();
        assert!(refused.contains("in use by sdop run (pid 1)"), "{refused}");
        assert!(told.lock().unwrap().starts_with("sdop run (pid 1)"));
        drop(held);
        store
            .lock("sdop apply (pid 2)", std::time::Duration::ZERO, &|_| {})
            .unwrap();
    }

    #[test]
    fn save_load_roundtrip_and_events_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let id = ResourceId::new("Endpoint", "base");
        let mut status = ResourceStatus::new(&id);
        for i in 0..80 {
            status.event(format!("e{i}"));
        }
        status.set_phase(Phase::Ready, "Converged", "all objects ready");
        store.save(&status).unwrap();
        let loaded = store.load(&id).unwrap().unwrap();
        assert_eq!(loaded.phase, Phase::Ready);
        assert_eq!(loaded.events.len(), MAX_EVENTS);
        assert_eq!(store.load_all().unwrap().len(), 1);
        store.remove(&id).unwrap();
        assert!(store.load(&id).unwrap().is_none());
    }

    /// A state directory written before `ModelPackage` became `ModelArchive` (and
    /// `s3:model-package` became `s3:model-archive`): its statuses are the renamed kind's,
    /// they own what they recorded, and the next save moves them under the current name.
    #[test]
    fn a_status_stored_under_a_renamed_kind_is_read_and_moved_as_the_current_kind() {
        let dir = tempfile::tempdir().unwrap();
        let earlier_dir = dir.path().join("ModelPackage");
        std::fs::create_dir_all(&earlier_dir).unwrap();
        let earlier = serde_json::json!({
            "kind": "ModelPackage", "name": "base", "phase": "Ready",
            "objects": [{"awsType": "s3:model-package", "name": "b/m/0123/model.tar.gz",
                         "createdAt": "2026-01-01T00:00:00Z"}],
            "outputs": {"s3Uri": "s3://b/m/0123/model.tar.gz"},
            "deletionPolicy": "Delete"
        });
        std::fs::write(earlier_dir.join("base.json"), earlier.to_string()).unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let id = ResourceId::new("ModelArchive", "base");

        let all = store.load_all().unwrap();
        assert_eq!(
            all.iter().map(ResourceStatus::id).collect::<Vec<_>>(),
            std::slice::from_ref(&id)
        );
        let status = store
            .load(&id)
            .unwrap()
            .expect("read under the earlier name");
        assert_eq!(status.id(), id);
        assert!(status.owns(AwsType::S3ModelArchive, "b/m/0123/model.tar.gz"));
        assert_eq!(status.deletion_policy, DeletionPolicy::Delete);
        // Asked for by the earlier name (a diagnostic's resource), the same status.
        let by_earlier = store
            .load(&ResourceId::new("ModelPackage", "base"))
            .unwrap();
        assert_eq!(by_earlier.map(|s| s.id()), Some(id.clone()));

        store.save(&status).unwrap();
        assert!(dir.path().join("ModelArchive/base.json").is_file());
        assert!(!earlier_dir.join("base.json").exists());
        let saved = std::fs::read_to_string(dir.path().join("ModelArchive/base.json")).unwrap();
        assert!(saved.contains("s3:model-archive") && !saved.contains("model-package"));
        assert_eq!(store.load_all().unwrap().len(), 1);

        // A crash between the save and the removal leaves both: the current one stands, and
        // the next save removes the earlier copy.
        let mut stale = earlier.clone();
        stale["outputs"] = serde_json::json!({"s3Uri": "s3://b/m/old/model.tar.gz"});
        std::fs::write(earlier_dir.join("base.json"), stale.to_string()).unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].outputs["s3Uri"], "s3://b/m/0123/model.tar.gz");
        store.save(&all[0]).unwrap();
        assert!(!earlier_dir.join("base.json").exists());
        store.remove(&id).unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }
}

/// What statuses written by an earlier sdop hold. The rollout memory, before it was typed,
/// was text (`sagemaker:endpoint NAME field=value`): such entries are read as absent, so an
/// in-flight rollout's memory is forgotten once on upgrade (at worst one more update is tried
/// before a rollback or persisting drift is recognised again). An object type since renamed
/// is read under its current name.
mod earlier {
    use serde::{Deserialize, Deserializer};

    use crate::model::object::RolloutTarget;

    pub fn rollout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RolloutTarget>, D::Error> {
        let value = Option::<serde_json::Value>::deserialize(d)?;
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// An object type recorded under an earlier name of the type (`s3:model-package`) reads
    /// as its current name, so the status still owns, prunes and deletes the object.
    pub fn aws_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let name = String::deserialize(d)?;
        Ok(crate::model::object::AwsType::parse(&name).map_or(name, |t| t.as_str().to_string()))
    }

    pub fn rollouts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RolloutTarget>, D::Error> {
        let values = Vec::<serde_json::Value>::deserialize(d)?;
        Ok(values
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn text_from_an_earlier_sdop_is_read_as_absent() {
            let status: crate::state::ResourceStatus = serde_json::from_value(serde_json::json!({
                "kind": "Endpoint", "name": "e", "phase": "Ready",
                "rolloutTarget": "sagemaker:endpoint e endpointConfigName=\"c\"",
                "unconfirmedUpdates": ["sagemaker:endpoint e tags={}"],
                "updatedAt": "2026-12-05T00:00:00Z"
            }))
            .unwrap();
            assert_eq!(status.rollout_target, None);
            assert!(status.unconfirmed_updates.is_empty());
        }
    }
}
