//! The seam between the engine and AWS. The engine only reads through [`Cloud`]; the AWS
//! adapters implement it per object type (read one; not-found is `Ok(None)`, not an error).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::Result;
use crate::manifest::ResourceId;

use super::plan::{DesiredObject, ObjectKey, ObservedObject, Ownership};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Values from outside any resource, as outputs: `(SSMParameter/<name>, {value})`.
pub type ExternalValues = Vec<(ResourceId, BTreeMap<String, String>)>;

pub trait Cloud: Send + Sync {
    /// Completes a desired object with facts only AWS has (a package's source ETags).
    fn resolve<'a>(
        &'a self,
        _resource: &'a ResourceId,
        object: DesiredObject,
    ) -> BoxFuture<'a, Result<DesiredObject>> {
        Box::pin(async move { Ok(object) })
    }
    /// Reads one object, in `region` when not the operator's. Not found is `Ok(None)`.
    fn read<'a>(
        &'a self,
        key: &'a ObjectKey,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>>;
    /// Objects tagged as owned by `resource`, including superseded ones.
    fn owned_by<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Vec<ObservedObject>>>;
    /// Values read from outside any resource (SSM parameters) that `spec` reads, as outputs.
    fn external_values<'a>(
        &'a self,
        _spec: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<ExternalValues>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// The resource's status outputs as last observed (`None`: not yet created).
    fn outputs<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>>>;
}

/// Observes nothing: every object is a create. `sdop plan --offline` and CI without credentials.
pub struct Offline;

impl Cloud for Offline {
    fn read<'a>(
        &'a self,
        _key: &'a ObjectKey,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        Box::pin(async { Ok(None) })
    }
    fn owned_by<'a>(
        &'a self,
        _resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Vec<ObservedObject>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn outputs<'a>(
        &'a self,
        _resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>>> {
        Box::pin(async { Ok(None) })
    }
}

/// An in-memory cloud for engine tests and benchmarks.
#[derive(Default)]
pub struct InMemory {
    objects: Mutex<BTreeMap<ObjectKey, ObservedObject>>,
    outputs: Mutex<BTreeMap<ResourceId, BTreeMap<String, String>>>,
}

impl InMemory {
    pub fn put(&self, object: ObservedObject) {
        self.objects
            .lock()
            .expect("in-memory cloud lock")
            .insert(object.key.clone(), object);
    }

    pub fn set_outputs(&self, resource: ResourceId, outputs: BTreeMap<String, String>) {
        self.outputs
            .lock()
            .expect("in-memory cloud lock")
            .insert(resource, outputs);
    }
}

impl Cloud for InMemory {
    fn read<'a>(
        &'a self,
        key: &'a ObjectKey,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        let found = self
            .objects
            .lock()
            .expect("in-memory cloud lock")
            .get(key)
            .cloned();
        Box::pin(async move { Ok(found) })
    }
    fn owned_by<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Vec<ObservedObject>>> {
        let found = self
            .objects
            .lock()
            .expect("in-memory cloud lock")
            .values()
            .filter(|o| matches!(&o.ownership, Ownership::Owned { resource: r } if r == resource))
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }
    fn outputs<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>>> {
        let found = self
            .outputs
            .lock()
            .expect("in-memory cloud lock")
            .get(resource)
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}
