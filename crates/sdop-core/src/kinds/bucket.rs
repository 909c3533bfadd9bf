//! `Bucket`: an S3 bucket (workshop step 2, `aws s3 mb`), private and encrypted by default.

use crate::model::contracts::BucketDesired;
use crate::model::object::AwsType;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Checks, Claim, DeletionPolicy, DesiredContext, Kind, Reference};
use crate::model::aws_rules::TagRules;
use crate::model::object::{DesiredObject, Mutability, ObjectName};
use crate::rules;

pub struct Bucket;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BucketSpec {
    /// The S3 bucket name (globally unique; S3 naming rules apply).
    pub bucket_name: String,
    /// Region to create the bucket in, e.g. `us-east-1`.
    pub region: String,
    /// Tags on the bucket, besides sdop's ownership tags.
    #[serde(default)]
    pub tags: super::Tags,
    /// What pruning does when the manifest is deleted: `Retain` (default) or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `true`: sdop reads the resource and reports drift, and changes nothing (as Flux's
    /// `spec.suspend`); `false` (default) resumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Take over an existing bucket that sdop did not create.
    #[serde(default)]
    pub adopt: bool,
    /// A bucket sdop creates gets a lifecycle rule that aborts multipart uploads left
    /// incomplete for this many days (S3 bills their parts until aborted; a killed upload of a
    /// multi-GB model archive is one). `0`: no rule. Set only when sdop creates the bucket (S3
    /// replaces a bucket's whole lifecycle configuration, so an existing one is never touched).
    #[serde(default = "default_abort_days")]
    pub abort_incomplete_uploads_after_days: u32,
}

fn default_abort_days() -> u32 {
    7
}

pub const AWS_TYPE: AwsType = AwsType::S3Bucket;

impl Kind for Bucket {
    const KIND: &'static str = "Bucket";
    const OUTPUTS: &'static [&'static str] = &["bucketName", "region", "arn"];
    type Spec = BucketSpec;

    fn check(spec: &BucketSpec, checks: &mut Checks) {
        checks.check("spec.bucketName", rules::bucket_name(&spec.bucket_name));
        checks.check("spec.region", rules::region(&spec.region));
        checks.tags("spec.tags", &spec.tags, &[TagRules::S3]);
    }

    fn references(spec: &BucketSpec) -> Vec<Reference> {
        super::tag_references(&spec.tags, "spec.tags")
    }

    fn claims(spec: &BucketSpec) -> Vec<(&'static str, Claim)> {
        vec![("spec.bucketName", Claim::S3Bucket(spec.bucket_name.clone()))]
    }

    fn spec_outputs(spec: &BucketSpec) -> BTreeMap<String, String> {
        [
            ("bucketName".to_string(), spec.bucket_name.clone()),
            ("region".to_string(), spec.region.clone()),
            (
                "arn".to_string(),
                format!("arn:aws:s3:::{}", spec.bucket_name),
            ),
        ]
        .into()
    }

    fn permissions(spec: &BucketSpec) -> (Vec<super::iam::Grant>, Vec<String>) {
        (
            vec![super::iam::Grant::new(
                &[
                    "s3:CreateBucket",
                    "s3:DeleteBucket",
                    "s3:PutBucketTagging",
                    "s3:PutBucketPublicAccessBlock",
                    "s3:PutEncryptionConfiguration",
                    "s3:PutLifecycleConfiguration",
                    // Every field sent is read back.
                    "s3:GetBucketLocation",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:GetEncryptionConfiguration",
                ],
                vec![format!("arn:aws:s3:::{}", spec.bucket_name)],
            )],
            vec![spec.bucket_name.clone()],
        )
    }

    fn facts(spec: &BucketSpec) -> super::SpecFacts {
        super::SpecFacts {
            adopt: spec.adopt,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
        }
    }

    fn desired(spec: &BucketSpec, ctx: &DesiredContext) -> Vec<DesiredObject> {
        vec![DesiredObject::new(
            AWS_TYPE,
            ObjectName::Known(spec.bucket_name.clone()),
            Mutability::InPlace,
        )
        .input(
            "abortIncompleteUploadsAfterDays",
            json!(spec.abort_incomplete_uploads_after_days),
        )
        .contract(BucketDesired {
            region: Some(spec.region.clone()),
            tags: super::resolve_tags(&spec.tags, ctx.outputs),
            // sdop's ownership tags present: a bucket whose create was interrupted after
            // CreateBucket (a throttled PutBucketTagging, a crash) is finished by an update.
            ownership_tagged: Some(true),
            public_access_blocked: Some(true),
            encryption: Some("AES256".into()),
        })]
    }
}
