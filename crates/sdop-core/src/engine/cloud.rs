//! The one seam between the engine and AWS, with the narrow per-object contract (after ACK):
//! read one (not found is `Ok(None)`, not an error), create, update with a delta, delete.
//! `sdop plan`, `sdop apply` and the daemon all go through it ([`super::execute`]); the AWS
//! implementation is `crate::apply::cloud::AwsCloud`, [`Offline`] observes nothing and
//! [`InMemory`] is a whole cloud in a map, for tests and benchmarks.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::Result;
use crate::manifest::ResourceId;

use super::plan::{DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a create returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The object's state right after (not trusted: the next round reads it).
    pub state: ObjectState,
    /// The name AWS assigned (a SageMaker Model Registry version's ARN), which sdop records
    /// instead of the desired one; `None` when the desired name is the object's.
    pub assigned_name: Option<String>,
}

impl Created {
    /// An object under the name sdop chose.
    pub fn named_by_sdop(state: ObjectState) -> Self {
        Created {
            state,
            assigned_name: None,
        }
    }
}

/// Values from outside any resource, as outputs: `(SSMParameter/<name>, {value})`.
pub type ExternalValues = Vec<(ResourceId, BTreeMap<String, String>)>;

/// For whom and where a call is made.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub resource: &'a ResourceId,
    pub spec_hash: &'a str,
    /// The resource's region when not the operator's.
    pub region: Option<&'a str>,
    /// sdop's memory says it created this object for this resource: an implementation may
    /// skip the extra call that reads ownership tags.
    pub owned_per_memory: bool,
    /// The outputs the resource recorded when it was last read (a stack's nested outputs and
    /// the root's last update they were read at), if any.
    pub recorded_outputs: Option<&'a BTreeMap<String, String>>,
}

/// One object a round reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest<'a> {
    pub key: &'a ObjectKey,
    pub desired: &'a DesiredObject,
    /// sdop's memory says it created this object for the scope's resource.
    pub owned_per_memory: bool,
}

pub trait Cloud: Send + Sync {
    /// The region of resources that name none (the operator's), for prices.
    fn default_region(&self) -> Option<String> {
        None
    }
    /// Completes a desired object with facts only AWS has (an archive's source ETags).
    /// `Err(Waiting)` when a source is not there yet.
    fn resolve<'a>(
        &'a self,
        _scope: Scope<'a>,
        object: DesiredObject,
    ) -> BoxFuture<'a, Result<DesiredObject>> {
        Box::pin(async move { Ok(object) })
    }
    /// Values read from outside any resource (the SSM parameters a spec reads), as outputs.
    fn external_values<'a>(
        &'a self,
        _scope: Scope<'a>,
        _parameters: &'a std::collections::BTreeSet<String>,
    ) -> BoxFuture<'a, Result<ExternalValues>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Reads one object (`desired` says what to look for, e.g. an image tag). Not found is
    /// `Ok(None)`.
    fn read<'a>(
        &'a self,
        scope: Scope<'a>,
        key: &'a ObjectKey,
        desired: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>>;
    /// Reads a round's objects, in order (one result per request). An implementation may read
    /// several with one call (the AWS one lists an S3 prefix instead of a HeadObject per file);
    /// by default each is read on its own.
    fn read_all<'a>(
        &'a self,
        scope: Scope<'a>,
        requests: &'a [ReadRequest<'a>],
    ) -> BoxFuture<'a, Result<Vec<Option<ObservedObject>>>> {
        Box::pin(async move {
            let mut found = Vec::with_capacity(requests.len());
            for request in requests {
                let scope = Scope {
                    owned_per_memory: request.owned_per_memory,
                    ..scope
                };
                found.push(self.read(scope, request.key, request.desired).await?);
            }
            Ok(found)
        })
    }
    /// Creates the object, tagged as owned by `scope.resource`: its state right after, and the
    /// name AWS assigned when AWS names it.
    fn create<'a>(
        &'a self,
        scope: Scope<'a>,
        object: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Created>>;
    /// Converges the changed fields of an existing object.
    fn update<'a>(
        &'a self,
        scope: Scope<'a>,
        object: &'a DesiredObject,
        changes: &'a [FieldChange],
    ) -> BoxFuture<'a, Result<ObjectState>>;
    /// Deletes the object (stops a training job). Already gone is success.
    fn delete<'a>(&'a self, scope: Scope<'a>, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>>;
}

/// Observes nothing, so every object is a create: `sdop plan --offline`, CI without
/// credentials. It never acts. `region` (from `--region` or the environment) prices the plan.
#[derive(Debug, Clone, Default)]
pub struct Offline {
    pub region: Option<String>,
}

fn refuse<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T>> {
    Box::pin(async {
        Err(crate::error::Error::Terminal(
            "offline: sdop acts on AWS only with credentials".into(),
        ))
    })
}

impl Cloud for Offline {
    fn default_region(&self) -> Option<String> {
        self.region.clone()
    }
    fn read<'a>(
        &'a self,
        _scope: Scope<'a>,
        _key: &'a ObjectKey,
        _desired: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        Box::pin(async { Ok(None) })
    }
    fn create<'a>(&'a self, _: Scope<'a>, _: &'a DesiredObject) -> BoxFuture<'a, Result<Created>> {
        refuse()
    }
    fn update<'a>(
        &'a self,
        _: Scope<'a>,
        _: &'a DesiredObject,
        _: &'a [FieldChange],
    ) -> BoxFuture<'a, Result<ObjectState>> {
        refuse()
    }
    fn delete<'a>(&'a self, _: Scope<'a>, _: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        refuse()
    }
}

/// A cloud in memory: objects keep the fields they were created or updated with, owned by the
/// resource that created them. Counts every mutating call (the tests' "AWS call log"), and can
/// fail one, before or after it took effect (a crash window: the executor's tests).
#[derive(Default)]
pub struct InMemory {
    objects: Mutex<BTreeMap<ObjectKey, ObservedObject>>,
    /// Every mutating call made, as `Create sagemaker:model NAME`.
    pub calls: Mutex<Vec<String>>,
    /// The mutating call (counted from 1 over the cloud's life) that fails, and when.
    fault: Mutex<Option<(usize, CrashWindow)>>,
    /// Creates are named by the cloud, as `<desired name>/1` (a registry version).
    pub assigns_versions: std::sync::atomic::AtomicBool,
}

/// Where a failed call fails: before AWS did anything, or after AWS did it and before the
/// caller heard (a kill -9 right after the request went out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashWindow {
    BeforeTheCall,
    AfterTheCall,
}

impl InMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectKey, ObservedObject>> {
        self.objects.lock().expect("in-memory cloud lock")
    }

    pub fn put(&self, object: ObservedObject) {
        self.lock().insert(object.key.clone(), object);
    }

    pub fn get(&self, key: &ObjectKey) -> Option<ObservedObject> {
        self.lock().get(key).cloned()
    }

    /// Changes an object in place, as AWS or a person would (drift, a rollback, a deletion).
    pub fn modify(&self, key: &ObjectKey, change: impl FnOnce(&mut ObservedObject)) {
        if let Some(object) = self.lock().get_mut(key) {
            change(object);
        }
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }

    pub fn keys(&self) -> Vec<ObjectKey> {
        self.lock().keys().cloned().collect()
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().expect("in-memory call log"))
    }

    /// Fails the `nth` mutating call from now (1 = the next), in `window`.
    pub fn fail_call(&self, nth: usize, window: CrashWindow) {
        let made = self.calls.lock().expect("in-memory call log").len();
        *self.fault.lock().expect("in-memory fault") = Some((made + nth, window));
    }

    /// Logs a mutating call; `Some(window)` when this call is the one that fails.
    fn log(&self, line: String) -> Option<CrashWindow> {
        let mut calls = self.calls.lock().expect("in-memory call log");
        calls.push(line);
        let mut fault = self.fault.lock().expect("in-memory fault");
        match *fault {
            Some((nth, window)) if nth == calls.len() => {
                *fault = None;
                Some(window)
            }
            _ => None,
        }
    }
}

/// The error a failed in-memory call returns: a connection reset (retryable), as a kill would
/// leave it.
fn crashed<T>(call: &str) -> Result<T> {
    Err(crate::error::Error::Aws {
        operation: call.to_string(),
        code: None,
        message: "connection reset (in-memory crash window)".into(),
        retryable: true,
    })
}

impl InMemory {
    /// Runs `effect` unless the call fails before it; fails after it when the window says so.
    fn mutate(&self, line: String, effect: impl FnOnce()) -> Result<()> {
        match self.log(line.clone()) {
            Some(CrashWindow::BeforeTheCall) => crashed(&line),
            Some(CrashWindow::AfterTheCall) => {
                effect();
                crashed(&line)
            }
            None => {
                effect();
                Ok(())
            }
        }
    }
}

fn observed_from(scope: Scope<'_>, object: &DesiredObject) -> Option<ObservedObject> {
    let name = object.name.known()?;
    let fields = object
        .fields
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    Some(ObservedObject::new(
        ObjectKey::new(object.aws_type, name),
        fields,
        Ownership::Owned {
            resource: scope.resource.clone(),
        },
    ))
}

impl Cloud for InMemory {
    fn read<'a>(
        &'a self,
        _scope: Scope<'a>,
        key: &'a ObjectKey,
        _desired: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        let found = self.get(key);
        Box::pin(async move { Ok(found) })
    }
    fn create<'a>(
        &'a self,
        scope: Scope<'a>,
        object: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Created>> {
        Box::pin(async move {
            let mut created = observed_from(scope, object).ok_or_else(|| {
                crate::error::Error::Terminal("create of an object whose name is unknown".into())
            })?;
            let assigned = self
                .assigns_versions
                .load(std::sync::atomic::Ordering::Relaxed)
                .then(|| format!("{}/1", created.key.name));
            if let Some(name) = &assigned {
                created.key.name = name.clone();
            }
            let line = format!("Create {} {}", created.key.aws_type, created.key.name);
            self.mutate(line, || self.put(created))?;
            Ok(Created {
                state: ObjectState::Ready,
                assigned_name: assigned,
            })
        })
    }
    fn update<'a>(
        &'a self,
        _scope: Scope<'a>,
        object: &'a DesiredObject,
        changes: &'a [FieldChange],
    ) -> BoxFuture<'a, Result<ObjectState>> {
        Box::pin(async move {
            let name = object.name.known().unwrap_or_default();
            let key = ObjectKey::new(object.aws_type, name);
            self.mutate(format!("Update {} {name}", object.aws_type), || {
                self.modify(&key, |found| {
                    for change in changes {
                        if let Some(after) = &change.after {
                            found.fields.insert(change.field.clone(), after.clone());
                        }
                    }
                })
            })?;
            Ok(ObjectState::Ready)
        })
    }
    fn delete<'a>(&'a self, _scope: Scope<'a>, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.mutate(format!("Delete {} {}", key.aws_type, key.name), || {
                self.remove(key)
            })
        })
    }
}
