//! `s3:model-archive`: the output of a `ModelArchive`, a `model.tar.gz` object or an
//! uncompressed prefix (with a marker object). Its identity (a hash of the inputs) is stored
//! in S3 metadata; the object is rebuilt only when the identity changes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::{classify, head_s3_object, is_not_found};
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectKey, ObjectName, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::manifest::ResourceId;
use crate::package::listing::{self, SourceSpec};
use crate::package::{targz, uncompressed, Entry, Progress};

pub struct ModelArchiveAdapter;

// The metadata of the archives in S3 (and of an uncompressed prefix's marker), named as they
// were when the kind was `ModelPackage`: renamed, sdop would take its own archives for
// foreign ones. An owner recorded as `ModelPackage/NAME` reads as `ModelArchive/NAME`
// (`ResourceId::parse_recorded`).
const META_IDENTITY: &str = "sdop-identity";
const META_RESOURCE: &str = "sdop-resource";

/// `bucket/key` of the output, and whether it is a prefix (uncompressed).
fn location(name: &str) -> Result<(&str, &str, bool)> {
    let (bucket, key) = name
        .split_once('/')
        .ok_or_else(|| Error::Terminal(format!("{name:?} is not BUCKET/KEY")))?;
    Ok((bucket, key, key.ends_with('/') || key.is_empty()))
}

/// Where an archive of `identity` lives: the output's directory plus the identity, so a new
/// archive never overwrites one a model uses (`b/assets/model.tar.gz` →
/// `b/assets/<identity>/model.tar.gz`; `b/base/` → `b/base/<identity>/`).
pub fn content_address(output: &str, identity: &str) -> String {
    let id = &identity[..identity.len().min(16)];
    match output.strip_suffix('/') {
        Some(prefix) => format!("{prefix}/{id}/"),
        None => match output.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{id}/{file}"),
            None => format!("{id}/{output}"),
        },
    }
}

fn head_key(key: &str, prefix: bool) -> String {
    if prefix {
        uncompressed::marker_key(key)
    } else {
        key.to_string()
    }
}

/// Shows a progress bar while packaging when stderr is a terminal (indicatif hides it
/// otherwise), and logs the outcome.
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

#[async_trait]
impl Adapter for ModelArchiveAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        crate::kinds::model_archive::AWS_TYPE
    }

    async fn resolve(
        &self,
        ctx: &ObjectContext<'_>,
        mut object: DesiredObject,
    ) -> Result<DesiredObject> {
        let Some(sources) = object.inputs.get("sources") else {
            return Ok(object);
        };
        let sources: Vec<SourceSpec> = serde_json::from_value(sources.clone())
            .map_err(|e| Error::Terminal(format!("archive sources: {e}")))?;
        let entries = listing::list(ctx.clients, &sources).await?;
        if entries.is_empty() {
            return Err(Error::Terminal(
                "the archive's sources contain no files".into(),
            ));
        }
        let format = object
            .inputs
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("tar.gz")
            .to_string();
        let level = object
            .inputs
            .get("compressionLevel")
            .and_then(Value::as_u64)
            .unwrap_or(crate::package::DEFAULT_COMPRESSION_LEVEL as u64) as u32;
        let identity = listing::identity(&entries, &format, level);
        if let Some(output) = object.inputs.get("output").and_then(Value::as_str) {
            object.name = ObjectName::Known(content_address(output, &identity));
        }
        object
            .fields
            .insert("packageIdentity".into(), Some(json!(identity)));
        object.inputs.insert("entries".into(), json!(entries));
        Ok(object)
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (bucket, key, prefix) = location(name)?;
        let Some(head) = head_s3_object(ctx.clients, bucket, &head_key(key, prefix)).await? else {
            return Ok(None);
        };
        let meta = head.metadata().cloned().unwrap_or_default();
        let ownership = match meta
            .get(META_RESOURCE)
            .and_then(|r| ResourceId::parse_recorded(r))
        {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let identity = meta.get(META_IDENTITY).cloned().unwrap_or_default();
        let mut observed = ObservedObject::new(
            ObjectKey::new(self.aws_type(), name),
            [("packageIdentity".to_string(), json!(identity))].into(),
            ownership,
        );
        observed.outputs.insert("identity".into(), identity);
        observed
            .outputs
            .insert("s3Uri".into(), format!("s3://{name}"));
        observed.outputs.insert(
            "sizeBytes".into(),
            head.content_length().unwrap_or(0).to_string(),
        );
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object.name.known().unwrap_or_default();
        let (bucket, key, prefix) = location(name)?;
        let entries: Vec<Entry> = object
            .inputs
            .get("entries")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .ok_or_else(|| Error::Terminal("archive entries were not resolved".into()))?;
        let identity = object
            .get("packageIdentity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let metadata: BTreeMap<String, String> = [
            (META_IDENTITY.to_string(), identity.to_string()),
            (META_RESOURCE.to_string(), ctx.resource.to_string()),
        ]
        .into();
        let progress = Progress::default();
        let total: u64 = entries.iter().map(|e| e.size).sum();
        let started = Instant::now();
        let bar = progress_bar(total, &format!("packaging {}", ctx.resource));
        let work = async {
            if prefix {
                uncompressed::build(ctx.clients, &entries, bucket, key, &metadata, &progress).await
            } else {
                let level = object
                    .inputs
                    .get("compressionLevel")
                    .and_then(Value::as_u64)
                    .unwrap_or(crate::package::DEFAULT_COMPRESSION_LEVEL as u64)
                    as u32;
                targz::build(
                    ctx.clients,
                    &entries,
                    level,
                    bucket,
                    key,
                    &metadata,
                    &progress,
                )
                .await
            }
        };
        tokio::pin!(work);
        let written = loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    bar.set_position(progress.done.load(Ordering::Relaxed).min(total));
                }
            }
        };
        bar.finish_and_clear();
        let written = written?;
        tracing::info!(resource = %ctx.resource, input_bytes = total, written_bytes = written, seconds = started.elapsed().as_secs_f64(), "archive built");
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
        let (bucket, key, prefix) = location(name)?;
        let s3 = &ctx.clients.s3;
        if prefix {
            let mut pages = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(key)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
                for object in page.contents() {
                    s3.delete_object()
                        .bucket(bucket)
                        .key(object.key().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| classify("s3:DeleteObject", e))?;
                }
            }
        }
        absent_if(
            s3.delete_object()
                .bucket(bucket)
                .key(head_key(key, prefix))
                .send()
                .await
                .map_err(|e| classify("s3:DeleteObject", e)),
            |err| is_not_found(err, &["NoSuchKey", "NoSuchBucket"]),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_addresses() {
        use super::content_address;
        assert_eq!(
            content_address("b/assets/jpstyle/model.tar.gz", "0123456789abcdef0123"),
            "b/assets/jpstyle/0123456789abcdef/model.tar.gz"
        );
        assert_eq!(
            content_address("b/base/", "0123456789abcdef0123"),
            "b/base/0123456789abcdef/"
        );
    }
}
