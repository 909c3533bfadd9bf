//! `s3:bucket`: create (region-correct), tags, public access blocked, default encryption.
//! Read is one call (GetBucketTagging): existence, ownership and tag drift.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging,
};

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::{classify, is_not_found, ownership_tags, read_ownership};
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject, Ownership};
use crate::error::{Error, Result};
use crate::model::contracts::BucketFields;

pub struct BucketAdapter;

async fn put_tags(ctx: &ObjectContext<'_>, bucket: &str, object: &DesiredObject) -> Result<()> {
    let tags = ownership_tags(ctx.resource, ctx.spec_hash, &BucketFields::of(object)?.tags);
    let tag_set: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::Terminal(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let tagging = Tagging::builder()
        .set_tag_set(Some(tag_set))
        .build()
        .map_err(|e| Error::Terminal(e.to_string()))?;
    ctx.clients
        .s3
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .map_err(|e| classify("s3:PutBucketTagging", e))?;
    Ok(())
}

async fn harden(ctx: &ObjectContext<'_>, bucket: &str) -> Result<()> {
    let s3 = &ctx.clients.s3;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify("s3:PutPublicAccessBlock", e))?;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .map_err(|e| Error::Terminal(e.to_string()))?,
        )
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| Error::Terminal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| classify("s3:PutBucketEncryption", e))?;
    Ok(())
}

/// What [`harden`] and CreateBucket set, as S3 reports it.
struct BucketSettings {
    region: String,
    public_access_blocked: bool,
    /// The default encryption's algorithm (`AES256`), or `none`.
    encryption: String,
}

/// `region`: the bucket's region when already known (see the read), else GetBucketLocation.
async fn read_settings(
    ctx: &ObjectContext<'_>,
    bucket: &str,
    region: Option<String>,
) -> Result<BucketSettings> {
    let s3 = &ctx.clients.s3;
    let region = match region {
        Some(region) => region,
        None => {
            let location = s3
                .get_bucket_location()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| classify("s3:GetBucketLocation", e))?;
            // "Buckets in Region us-east-1 have a LocationConstraint of null"
            // (API_GetBucketLocation).
            location
                .location_constraint()
                .map(|c| c.as_str().to_string())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "us-east-1".to_string())
        }
    };
    let public_access_blocked = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(err) => {
            let err = classify("s3:GetPublicAccessBlock", err);
            if !is_not_found(&err, &["NoSuchPublicAccessBlockConfiguration"]) {
                return Err(err);
            }
            false
        }
    };
    let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_string())
            .unwrap_or_else(|| "none".into()),
        Err(err) => {
            let err = classify("s3:GetBucketEncryption", err);
            if !is_not_found(&err, &["ServerSideEncryptionConfigurationNotFoundError"]) {
                return Err(err);
            }
            "none".into()
        }
    };
    Ok(BucketSettings {
        region,
        public_access_blocked,
        encryption,
    })
}

/// The AbortIncompleteMultipartUpload lifecycle rule (S3 user guide, "Configuring a bucket
/// lifecycle configuration to delete incomplete multipart uploads"), for a bucket sdop creates.
async fn abort_incomplete_uploads(
    ctx: &ObjectContext<'_>,
    bucket: &str,
    object: &DesiredObject,
) -> Result<()> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
        LifecycleRule, LifecycleRuleFilter,
    };
    let days = object
        .inputs
        .get("abortIncompleteUploadsAfterDays")
        .and_then(|d| d.as_i64())
        .unwrap_or(0);
    if days <= 0 {
        return Ok(());
    }
    let rule = LifecycleRule::builder()
        .id("sdop-abort-incomplete-multipart-uploads")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(i32::try_from(days).unwrap_or(i32::MAX))
                .build(),
        )
        .build()
        .map_err(|e| Error::Terminal(e.to_string()))?;
    ctx.clients
        .s3
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| Error::Terminal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| classify("s3:PutBucketLifecycleConfiguration", e))?;
    Ok(())
}

#[async_trait]
impl Adapter for BucketAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        crate::kinds::bucket::AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let arn = format!("arn:aws:s3:::{name}");
        let shared = ctx.shared_tags(&arn).await?;
        let listed_here = shared.is_some();
        let tags = match shared {
            Some(tags) => tags,
            None => match ctx
                .clients
                .s3
                .get_bucket_tagging()
                .bucket(name)
                .send()
                .await
            {
                Ok(out) => out
                    .tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
                Err(err) => {
                    let err = classify("s3:GetBucketTagging", err);
                    if is_not_found(&err, &["NoSuchBucket", "NotFound"]) {
                        return Ok(None);
                    }
                    if !is_not_found(&err, &["NoSuchTagSet"]) {
                        return Err(err);
                    }
                    BTreeMap::new()
                }
            },
        };
        let (owner, user) = read_ownership(&tags);
        let tagged = owner.is_some();
        let ownership = match owner {
            Some(owner) => Ownership::Owned { resource: owner },
            _ => Ownership::Foreign,
        };
        // Every field sdop sends is read back, so a setting changed behind sdop's back (public
        // access unblocked, encryption removed) is shown by plan and put back by apply.
        // The Tagging API lists a bucket only in the region it is located in (API_GetResources:
        // resources "located in the specified ... Region"), so one it listed here is in this
        // region; like everything from that listing, this only confirms (crate::aws::sweep).
        let listed_region = listed_here.then(|| ctx.clients.region.clone());
        let settings = match read_settings(ctx, name, listed_region).await {
            // Listed by the Tagging API (which lags) but gone.
            Err(err) if is_not_found(&err, &["NoSuchBucket", "NotFound"]) => return Ok(None),
            settings => settings?,
        };
        let mut observed = BucketFields {
            region: settings.region,
            tags: user,
            ownership_tagged: tagged,
            public_access_blocked: settings.public_access_blocked,
            encryption: settings.encryption,
        }
        .observed(name, ownership);
        observed.outputs.insert("arn".into(), arn);
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("bucket name unknown".into()))?;
        let region = BucketFields::of(object)?.region;
        let mut request = ctx.clients.s3.create_bucket().bucket(name);
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        if let Err(err) = request.send().await {
            let err = classify("s3:CreateBucket", err);
            // Ours from an earlier, interrupted run: carry on and finish configuring it.
            if !is_not_found(&err, &["BucketAlreadyOwnedByYou"]) {
                return Err(err);
            }
        }
        put_tags(ctx, name, object).await?;
        harden(ctx, name).await?;
        abort_incomplete_uploads(ctx, name, object).await?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("bucket name unknown".into()))?;
        if let Some(change) = changes.iter().find(|c| c.field == "region") {
            // S3 has no call that moves a bucket, and replacing it would delete its data.
            return Err(Error::Terminal(format!(
                "bucket {name} is in {} and a bucket cannot move to {}: set spec.region back, or name a new bucket (spec.bucketName) and copy the data",
                change.before.as_ref().and_then(|v| v.as_str()).unwrap_or("another region"),
                change.after.as_ref().and_then(|v| v.as_str()).unwrap_or("another region"),
            )));
        }
        put_tags(ctx, name, object).await?;
        harden(ctx, name).await?;
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .s3
                .delete_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(|e| classify("s3:DeleteBucket", e)),
            |err| is_not_found(err, &["NoSuchBucket", "NotFound"]),
        )
        .map(|_| ())
    }
}
