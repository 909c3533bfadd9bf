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
pub(super) fn split(name: &str) -> Result<(&str, &str)> {
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
        let ownership = match meta.get(META_RESOURCE).and_then(|r| ResourceId::parse(r)) {
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
