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

    fn read<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        Box::pin(async move {
            let Some(adapter) = adapter(key.aws_type) else {
                return Ok(None);
            };
            // Ownership is read from tags here: plan trusts nothing it did not see.
            let resource = ResourceId::new("", "");
            let ctx = ObjectContext {
                clients: &self.clients,
                resource: &resource,
                spec_hash: "",
                owned_per_state: false,
            };
            adapter.read(&ctx, &key.name, None).await
        })
    }

    fn owned_by<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Vec<ObservedObject>>> {
        Box::pin(async move {
            let Some(status) = self.store.load(resource)? else {
                return Ok(Vec::new());
            };
            Ok(status
                .objects
                .iter()
                .filter_map(|o| {
                    let aws_type = crate::aws::adapters::adapter(&o.aws_type)?.aws_type();
                    Some(ObservedObject::new(
                        ObjectKey::new(aws_type, o.name.clone()),
                        BTreeMap::new(),
                        Ownership::Owned {
                            resource: resource.clone(),
                        },
                    ))
                })
                .collect())
        })
    }

    fn outputs<'a>(
        &'a self,
        resource: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>>> {
        Box::pin(async move { Ok(self.store.load(resource)?.map(|s| s.outputs)) })
    }
}
