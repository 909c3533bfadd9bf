//! The engine's [`Cloud`] seam over real AWS: each call goes to the adapter of the object's
//! type, with clients of the resource's region (built once per region and kept).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::aws::adapters::{adapter, ObjectContext};
use crate::aws::sweep::Sweep;
use crate::aws::{s3_object, Clients};
use crate::manifest::ResourceId;
use crate::model::object::AwsType;

/// Keys in one page of ListObjectsV2.
const LISTING_PAGE: usize = 1000;
use crate::engine::cloud::{BoxFuture, Cloud, Created, ExternalValues, ReadRequest, Scope};
use crate::engine::plan::{
    plan_resource, DesiredObject, FieldChange, ObjectKey, ObjectState, ObservedObject, Ownership,
};
use crate::error::Result;

pub struct AwsCloud {
    clients: Clients,
    regional: Mutex<HashMap<String, Clients>>,
    /// Listings shared by the reads of one sweep (`sdop apply`, `sdop plan`); `None` in the
    /// daemon, whose resources are reconciled one by one.
    sweep: Option<Sweep>,
}

impl AwsCloud {
    /// Every read on its own (the daemon).
    pub fn new(clients: Clients) -> Self {
        AwsCloud {
            clients,
            regional: Mutex::new(HashMap::new()),
            sweep: None,
        }
    }

    /// Reads share listings until the next [`AwsCloud::next_sweep`] or change (one-shot
    /// commands, which pass over the whole graph at once).
    pub fn sweeping(clients: Clients) -> Self {
        AwsCloud {
            sweep: Some(Sweep::default()),
            ..AwsCloud::new(clients)
        }
    }

    /// Starts a new sweep: what the last one listed is asked again.
    pub fn next_sweep(&self) {
        self.forget_listings();
    }

    /// After any change sdop makes: no read answers from before it.
    fn forget_listings(&self) {
        if let Some(sweep) = &self.sweep {
            sweep.forget();
        }
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Clients for `region` (the operator's when `None`).
    pub fn clients_in(&self, region: Option<&str>) -> Clients {
        let Some(region) = region else {
            return self.clients.clone();
        };
        let mut cache = self.regional.lock().expect("regional clients lock");
        cache
            .entry(region.to_string())
            .or_insert_with(|| self.clients.in_region(Some(region)))
            .clone()
    }
}

/// The adapter context of one call.
fn context<'a>(
    clients: &'a Clients,
    scope: &Scope<'a>,
    sweep: Option<&'a Sweep>,
) -> ObjectContext<'a> {
    ObjectContext {
        clients,
        resource: scope.resource,
        spec_hash: scope.spec_hash,
        owned_per_state: scope.owned_per_memory,
        recorded_outputs: scope.recorded_outputs,
        sweep,
        used_shared_tags: AtomicBool::new(false),
    }
}

/// A read made with the Tagging API's tags is kept only when it shows the object owned by
/// `resource` and exactly as desired: anything else (a difference to act on, a foreign or
/// missing owner) might be the listing's lag, so it is read again on its own.
fn confirms(
    resource: &ResourceId,
    desired: &DesiredObject,
    found: &Option<ObservedObject>,
) -> bool {
    let Some(found) = found else {
        return false;
    };
    found.ownership
        == (Ownership::Owned {
            resource: resource.clone(),
        })
        && plan_resource(
            resource,
            std::slice::from_ref(desired),
            std::slice::from_ref(found),
        )
        .is_empty()
}

impl Cloud for AwsCloud {
    fn default_region(&self) -> Option<String> {
        Some(self.clients.region.clone())
    }
    fn resolve<'a>(
        &'a self,
        scope: Scope<'a>,
        object: DesiredObject,
    ) -> BoxFuture<'a, Result<DesiredObject>> {
        Box::pin(async move {
            let adapter = adapter(object.aws_type);
            let clients = self.clients_in(scope.region);
            adapter
                .resolve(&context(&clients, &scope, self.sweep.as_ref()), object)
                .await
        })
    }

    fn external_values<'a>(
        &'a self,
        scope: Scope<'a>,
        parameters: &'a std::collections::BTreeSet<String>,
    ) -> BoxFuture<'a, Result<ExternalValues>> {
        Box::pin(async move {
            let clients = self.clients_in(scope.region);
            crate::aws::ssm_outputs(&clients, parameters).await
        })
    }

    fn read<'a>(
        &'a self,
        scope: Scope<'a>,
        key: &'a ObjectKey,
        desired: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Option<ObservedObject>>> {
        Box::pin(async move {
            let adapter = adapter(key.aws_type);
            let clients = self.clients_in(scope.region);
            let ctx = context(&clients, &scope, self.sweep.as_ref());
            let found = adapter.read(&ctx, &key.name, Some(desired)).await?;
            if ctx.used_shared_tags.load(Ordering::SeqCst)
                && !confirms(scope.resource, desired, &found)
            {
                let alone = context(&clients, &scope, None);
                return adapter.read(&alone, &key.name, Some(desired)).await;
            }
            Ok(found)
        })
    }

    /// Listable S3 objects (a directory's files, a stack's templates) that share a bucket and
    /// prefix are read with one ListObjectsV2 (up to 1,000 keys a page) instead of one
    /// HeadObject each; what the listing cannot settle, and every other object, is read one
    /// by one.
    fn read_all<'a>(
        &'a self,
        scope: Scope<'a>,
        requests: &'a [ReadRequest<'a>],
    ) -> BoxFuture<'a, Result<Vec<Option<ObservedObject>>>> {
        Box::pin(async move {
            let clients = self.clients_in(scope.region);
            let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
            for (i, request) in requests.iter().enumerate() {
                let (AwsType::S3Object, Some(listable)) =
                    (request.key.aws_type, &request.desired.listable)
                else {
                    continue;
                };
                if let Ok((bucket, key)) = s3_object::split(&request.key.name) {
                    if key.starts_with(listable.prefix.as_str()) {
                        groups
                            .entry((bucket, listable.prefix.as_str()))
                            .or_default()
                            .push(i);
                    }
                }
            }
            let mut settled: Vec<Option<Option<ObservedObject>>> = vec![None; requests.len()];
            for ((bucket, prefix), members) in groups {
                // One object: its HeadObject costs no more than a listing and says more.
                if members.len() < 2 {
                    continue;
                }
                let max_pages = members.len() / LISTING_PAGE + 2;
                let listing = s3_object::list_prefix(&clients, bucket, prefix, max_pages).await?;
                for i in members {
                    let request = &requests[i];
                    let key = &request.key.name[bucket.len() + 1..];
                    settled[i] = s3_object::listed_unchanged(
                        &listing.lookup(key),
                        request.desired,
                        request.owned_per_memory,
                        scope.resource,
                        &request.key.name,
                    );
                }
            }
            let mut found = Vec::with_capacity(requests.len());
            for (request, settled) in requests.iter().zip(settled) {
                match settled {
                    Some(observed) => found.push(observed),
                    None => {
                        let scope = Scope {
                            owned_per_memory: request.owned_per_memory,
                            ..scope
                        };
                        found.push(self.read(scope, request.key, request.desired).await?);
                    }
                }
            }
            Ok(found)
        })
    }

    fn create<'a>(
        &'a self,
        scope: Scope<'a>,
        object: &'a DesiredObject,
    ) -> BoxFuture<'a, Result<Created>> {
        Box::pin(async move {
            let adapter = adapter(object.aws_type);
            let clients = self.clients_in(scope.region);
            let ctx = context(&clients, &scope, None);
            // Every type sdop creates today is named by sdop; an adapter of an AWS-named one
            // (a Model Registry version) returns the name AWS assigned.
            let created = match adapter.create(&ctx, object).await {
                // Another writer (an apply elsewhere, an earlier run) created it first: a
                // content-derived name means the same content, so sdop's own is success.
                Err(err) if crate::aws::already_exists(&err) => {
                    let name = object.name.known().unwrap_or_default();
                    let by_tags = ObjectContext {
                        owned_per_state: false,
                        ..ctx
                    };
                    match adapter.read(&by_tags, name, Some(object)).await? {
                        Some(found)
                            if found.ownership
                                == (Ownership::Owned {
                                    resource: scope.resource.clone(),
                                }) =>
                        {
                            Ok(found.state)
                        }
                        _ => Err(err),
                    }
                }
                outcome => outcome,
            };
            self.forget_listings();
            created.map(Created::named_by_sdop)
        })
    }

    fn update<'a>(
        &'a self,
        scope: Scope<'a>,
        object: &'a DesiredObject,
        changes: &'a [FieldChange],
    ) -> BoxFuture<'a, Result<ObjectState>> {
        Box::pin(async move {
            let adapter = adapter(object.aws_type);
            let clients = self.clients_in(scope.region);
            let updated = adapter
                .update(&context(&clients, &scope, None), object, changes)
                .await;
            self.forget_listings();
            updated
        })
    }

    fn delete<'a>(&'a self, scope: Scope<'a>, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let adapter = adapter(key.aws_type);
            let clients = self.clients_in(scope.region);
            let deleted = adapter
                .delete(&context(&clients, &scope, None), &key.name)
                .await;
            self.forget_listings();
            deleted
        })
    }
}
