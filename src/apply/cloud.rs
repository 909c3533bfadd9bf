//! `plan` against real AWS: the engine's [`Cloud`] seam implemented with the adapters and
//! sdop's state (for ownership records and last known outputs).

use std::collections::BTreeMap;

use crate::aws::adapters::{adapter, ObjectContext};
use crate::aws::Clients;
use crate::engine::cloud::{BoxFuture, Cloud};
use crate::engine::plan::{DesiredObject, ObjectKey, ObservedObject, Ownership};
use crate::error::Result;
use crate::manifest::ResourceId;
use crate::state::StateStore;

pub struct AwsCloud {
    pub clients: Clients,
    pub store: StateStore,
}

impl Cloud for AwsCloud {
    fn external_values<'a>(
        &'a self,
        spec: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<crate::engine::cloud::ExternalValues>> {
        Box::pin(crate::aws::ssm_outputs(&self.clients, spec))
    }

    fn resolve<'a>(
        &'a self,
        resource: &'a ResourceId,
        object: DesiredObject,
    ) -> BoxFuture<'a, Result<DesiredObject>> {
        Box::pin(async move {
            let Some(adapter) = adapter(object.aws_type) else {
                return Ok(object);
            };
            let ctx = ObjectContext {
                clients: &self.clients,
                resource,
                spec_hash: "",
                owned_per_state: false,
            };
            match adapter.resolve(&ctx, object.clone()).await {
                Ok(resolved) => Ok(resolved),
                // A source not uploaded yet: the plan shows the value as known after apply.
                Err(crate::error::Error::Waiting(_)) => Ok(object),
                Err(err) => Err(err),
            }
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a ObjectKey,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        Box::pin(async move {
            let Some(adapter) = adapter(key.aws_type) else {
                return Ok(None);
            };
            // Ownership is read from tags here: plan trusts nothing it did not see.
            let resource = ResourceId::new("", "");
            let clients = self.clients.in_region(region);
            let ctx = ObjectContext {
                clients: &clients,
                resource: &resource,
                spec_hash: "",
                owned_per_state: false,
            };
            let found = adapter.read(&ctx, &key.name, None).await?;
            // Tags removed out of band on an object sdop created: its state still says whose.
            Ok(found.map(|mut object| {
                if object.ownership == Ownership::Foreign {
                    if let Some(owner) = self.recorded_owner(key) {
                        object.ownership = Ownership::Owned { resource: owner };
                    }
                }
                object
            }))
        })
    }

    /// Superseded objects are cleaned up by apply once the new ones serve (keeping the newest
    /// for rollback); plan does not list them, so it never shows a deletion apply would skip.
    fn owned_by<'a>(
        &'a self,
        _resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Vec<ObservedObject>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn outputs<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>>> {
        Box::pin(async move { Ok(self.store.load(resource)?.map(|s| s.outputs)) })
    }
}

impl AwsCloud {
    fn recorded_owner(&self, key: &ObjectKey) -> Option<ResourceId> {
        self.store
            .load_all()
            .ok()?
            .into_iter()
            .find(|status| status.owns(key.aws_type, &key.name))
            .map(|status| status.id())
    }
}
