//! `s3:object`: a local file (stack templates) or a body sdop derived (DreamBooth configs)
//! uploaded to S3. The content fingerprint and the owner ride in the object's metadata, so an
//! unchanged object is never uploaded again.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::adapters::{Adapter, ObjectContext};
use super::{classify, head_s3_object};
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject, Ownership};
use crate::error::{Error, Result};
use crate::manifest::ResourceId;
use crate::model::contracts::ObjectFields;

pub struct TemplateObjectAdapter;

const META_FINGERPRINT: &str = "sdop-fingerprint";
const META_RESOURCE: &str = "sdop-resource";

/// `bucket/key` → (bucket, key): the name of an S3 object an adapter manages.
pub fn split(name: &str) -> Result<(&str, &str)> {
    name.split_once('/')
        .ok_or_else(|| Error::Terminal(format!("{name:?} is not BUCKET/KEY")))
}

#[async_trait]
impl Adapter for TemplateObjectAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        crate::kinds::stack::TEMPLATE_OBJECT
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (bucket, key) = split(name)?;
        let Some(head) = head_s3_object(ctx.clients, bucket, key).await? else {
            return Ok(None);
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let ownership = match meta
            .get(META_RESOURCE)
            .and_then(|r| ResourceId::parse_recorded(r))
        {
            Some(owner) => Ownership::Owned { resource: owner },
            _ => Ownership::Foreign,
        };
        Ok(Some(
            ObjectFields {
                content_fingerprint: meta.get(META_FINGERPRINT).cloned(),
            }
            .observed(name, ownership),
        ))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("object name unknown".into()))?;
        let (bucket, key) = split(name)?;
        let body = match (
            object.inputs.get("body").and_then(|b| b.as_str()),
            object.inputs.get("path").and_then(|p| p.as_str()),
        ) {
            (Some(text), _) => ByteStream::from(text.as_bytes().to_vec()),
            (None, Some(path)) => ByteStream::from_path(path)
                .await
                .map_err(|e| Error::Terminal(format!("cannot read {path}: {e}")))?,
            (None, None) => return Err(Error::Terminal(format!("no content for {name}"))),
        };
        let fingerprint = ObjectFields::of(object)?
            .content_fingerprint
            .ok_or_else(|| Error::Terminal(format!("{name}: no content fingerprint")))?;
        ctx.clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .set_content_type(
                object
                    .inputs
                    .get("contentType")
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
            )
            .metadata(META_FINGERPRINT, fingerprint)
            .metadata(META_RESOURCE, ctx.resource.to_string())
            .send()
            .await
            .map_err(|e| classify("s3:PutObject", e))?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        self.create(ctx, object).await
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let (bucket, key) = split(name)?;
        super::delete_s3_object(ctx.clients, bucket, key).await
    }
}

/// What one listing of a prefix says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// The listing covered the key and it is not there.
    Absent,
    /// There, with this ETag (quotes removed, lowercase).
    Present { etag: String },
    /// The listing stopped before the key (a prefix with more objects than it is worth
    /// listing): read it on its own.
    Unknown,
}

/// The keys under a prefix and their ETags, as far as the listing went.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    etags: std::collections::BTreeMap<String, String>,
    /// The last key of a listing that stopped early; `None` when it covered the prefix.
    stopped_after: Option<String>,
}

impl Listing {
    pub fn lookup(&self, key: &str) -> Listed {
        if let Some(etag) = self.etags.get(key) {
            return Listed::Present { etag: etag.clone() };
        }
        // S3 lists keys in UTF-8 binary order, which is how `str` compares.
        match &self.stopped_after {
            Some(last) if key > last.as_str() => Listed::Unknown,
            _ => Listed::Absent,
        }
    }
}

/// Lists `prefix` of `bucket`, at most `max_pages` pages of 1,000 keys: a prefix full of
/// other objects is not worth more than the HeadObject calls it replaces.
pub async fn list_prefix(
    clients: &super::Clients,
    bucket: &str,
    prefix: &str,
    max_pages: usize,
) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut read = 0;
    while let Some(page) = pages.next().await {
        let page = match page.map_err(|e| classify("s3:ListObjectsV2", e)) {
            // No bucket yet (an empty account's plan, the bucket created in the same apply):
            // no object under the prefix either, as a HeadObject would say.
            Err(err) if super::is_not_found(&err, &["NoSuchBucket"]) => return Ok(listing),
            page => page?,
        };
        read += 1;
        let mut last = None;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let etag = object
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_ascii_lowercase();
            listing.etags.insert(key.to_string(), etag);
            last = Some(key.to_string());
        }
        if read >= max_pages && page.is_truncated() == Some(true) {
            listing.stopped_after = Some(last.unwrap_or_default());
            break;
        }
    }
    Ok(listing)
}

/// An object the listing shows as sdop wrote it: its ETag is the MD5 of the content sdop
/// uploads, and sdop's memory says it wrote it for this resource (the owner is in metadata
/// only a HeadObject shows). `None` when a HeadObject must decide.
pub fn listed_unchanged(
    listed: &Listed,
    desired: &DesiredObject,
    owned_per_memory: bool,
    resource: &ResourceId,
    name: &str,
) -> Option<Option<ObservedObject>> {
    match listed {
        Listed::Absent => Some(None),
        Listed::Present { etag } => {
            let listable = desired.listable.as_ref()?;
            if !owned_per_memory || *etag != listable.md5 {
                return None;
            }
            let fields = ObjectFields::of(desired).ok()?;
            Some(Some(fields.observed(
                name,
                Ownership::Owned {
                    resource: resource.clone(),
                },
            )))
        }
        Listed::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::{AwsType, Mutability, ObjectName};

    fn listing(keys: &[(&str, &str)], stopped_after: Option<&str>) -> Listing {
        Listing {
            etags: keys
                .iter()
                .map(|(k, e)| (k.to_string(), e.to_string()))
                .collect(),
            stopped_after: stopped_after.map(str::to_string),
        }
    }

    #[test]
    fn a_listing_knows_only_the_keys_it_covered() {
        let full = listing(&[("p/a", "e1")], None);
        assert_eq!(full.lookup("p/a"), Listed::Present { etag: "e1".into() });
        assert_eq!(full.lookup("p/z"), Listed::Absent);
        let cut = listing(&[("p/a", "e1"), ("p/m", "e2")], Some("p/m"));
        assert_eq!(cut.lookup("p/b"), Listed::Absent);
        assert_eq!(cut.lookup("p/n"), Listed::Unknown);
    }

    #[test]
    fn only_an_object_sdop_wrote_with_these_bytes_skips_its_head_object() {
        let resource = ResourceId::new("Dataset", "d");
        let desired = DesiredObject::new(
            AwsType::S3Object,
            ObjectName::Known("b/p/a".into()),
            Mutability::InPlace,
        )
        .contract(crate::model::contracts::ObjectDesired {
            content_fingerprint: Some(Some("fp".into())),
        })
        .listable("p/", Some("abc"));
        let same = Listed::Present { etag: "abc".into() };
        let other = Listed::Present { etag: "def".into() };
        let found = listed_unchanged(&same, &desired, true, &resource, "b/p/a")
            .expect("settled")
            .expect("present");
        assert_eq!(
            found.ownership,
            Ownership::Owned {
                resource: resource.clone()
            }
        );
        // Not in sdop's memory, other bytes, or past the listing: a HeadObject decides.
        assert_eq!(
            listed_unchanged(&same, &desired, false, &resource, "b/p/a"),
            None
        );
        assert_eq!(
            listed_unchanged(&other, &desired, true, &resource, "b/p/a"),
            None
        );
        assert_eq!(
            listed_unchanged(&Listed::Unknown, &desired, true, &resource, "b/p/a"),
            None
        );
        assert_eq!(
            listed_unchanged(&Listed::Absent, &desired, false, &resource, "b/p/a"),
            Some(None)
        );
    }
}
