//! The IAM permissions a resource needs the operator to have (`sdop iam-policy`). Each kind says
//! its own ([`super::Kind::permissions`]); S3 access to every bucket a spec names and SSM reads
//! of every parameter it reads are added for all kinds ([`policy`]). Action names are the
//! Service Authorization Reference's, which differ from some API names (S3's PutBucketEncryption
//! is `s3:PutEncryptionConfiguration`): [`iam_action`] maps the APIs sdop calls.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::ValueSource;

/// Actions on resources (ARN patterns), with an optional condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub actions: Vec<&'static str>,
    pub resources: Vec<String>,
    pub condition: Option<Value>,
}

impl Grant {
    pub fn new(actions: &[&'static str], resources: Vec<String>) -> Self {
        Grant {
            actions: actions.to_vec(),
            resources,
            condition: None,
        }
    }
}

pub const S3_BUCKET_ACTIONS: &[&str] = &[
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketTagging",
];
pub const S3_OBJECT_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];

/// `arn:aws:sagemaker:REGION:*:KIND/NAME` (region `*` when the spec names none).
pub fn sagemaker_arn(region: Option<&str>, kind: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:{}:*:{kind}/{name}",
        region.unwrap_or("*")
    )
}

/// iam:PassRole on the role SageMaker assumes: the ARN when written, else any role, only to
/// SageMaker.
pub fn pass_role(role: &ValueSource) -> Grant {
    let role = match role {
        ValueSource::Literal(arn) => arn.clone(),
        _ => "*".to_string(),
    };
    Grant {
        actions: vec!["iam:PassRole"],
        resources: vec![role],
        condition: Some(
            json!({"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
        ),
    }
}

/// Every bucket an `s3://` URI in `spec` names.
/// What one resource needs: its kind's grants, the buckets its spec names, the SSM parameters
/// it reads, and the buckets its kind adds.
pub type ResourcePermissions<'a> = (Vec<Grant>, &'a [String], &'a BTreeSet<String>, Vec<String>);

/// The policy document for these resources: one statement per distinct set of actions and
/// condition, resources merged, sorted (stable output for review). Each resource gives its
/// own grants, the buckets its spec names ([`super::s3_buckets`]), the SSM parameters it reads
/// ([`super::ssm_parameters`]) and buckets its kind adds.
pub fn policy(resources: &[ResourcePermissions<'_>]) -> Value {
    let mut grants: Vec<Grant> = Vec::new();
    let mut buckets = BTreeSet::new();
    let mut parameters = BTreeSet::new();
    for (own, named, reads, extra_buckets) in resources {
        grants.extend(own.iter().cloned());
        buckets.extend(named.iter().cloned());
        buckets.extend(extra_buckets.iter().cloned());
        parameters.extend(reads.iter().cloned());
    }
    if !buckets.is_empty() {
        grants.push(Grant::new(
            S3_BUCKET_ACTIONS,
            buckets
                .iter()
                .map(|b| format!("arn:aws:s3:::{b}"))
                .collect(),
        ));
        grants.push(Grant::new(
            S3_OBJECT_ACTIONS,
            buckets
                .iter()
                .map(|b| format!("arn:aws:s3:::{b}/*"))
                .collect(),
        ));
    }
    if !resources.is_empty() {
        // Every sweep of apply and plan reads the tags of all it owns with one Resource
        // Groups Tagging API GetResources, which takes no resource ARN (crate::aws::sweep in
        // sdop-aws; without it each object's tags are read with its service's call).
        grants.push(Grant::new(&["tag:GetResources"], vec!["*".into()]));
    }
    if !parameters.is_empty() {
        grants.push(Grant::new(
            &["ssm:GetParameter"],
            parameters
                .iter()
                .map(|p| format!("arn:aws:ssm:*:*:parameter/{}", p.trim_start_matches('/')))
                .collect(),
        ));
    }
    let mut merged: BTreeMap<(Vec<&str>, String), BTreeSet<String>> = BTreeMap::new();
    for grant in grants {
        let mut actions = grant.actions.clone();
        actions.sort();
        actions.dedup();
        let condition = grant.condition.map(|c| c.to_string()).unwrap_or_default();
        merged
            .entry((actions, condition))
            .or_default()
            .extend(grant.resources);
    }
    let statements: Vec<Value> = merged
        .into_iter()
        .map(|((actions, condition), resources)| {
            let mut statement = json!({
                "Effect": "Allow",
                "Action": actions,
                "Resource": resources.into_iter().collect::<Vec<_>>(),
            });
            if !condition.is_empty() {
                statement["Condition"] = serde_json::from_str(&condition).unwrap_or(Value::Null);
            }
            statement
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The IAM action an API call needs (`None`: none, e.g. sts:GetCallerIdentity).
pub fn iam_action(api: &str) -> Option<String> {
    let mapped = match api {
        "sts:GetCallerIdentity" => return None,
        "s3:HeadObject" => "s3:GetObject",
        "s3:HeadBucket" | "s3:ListObjectsV2" | "s3:ListObjects" => "s3:ListBucket",
        "s3:PutBucketEncryption" => "s3:PutEncryptionConfiguration",
        "s3:GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "s3:PutPublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        "s3:GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock",
        "s3:DeletePublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketLifecycleConfiguration" => "s3:PutLifecycleConfiguration",
        "s3:GetBucketLifecycleConfiguration" => "s3:GetLifecycleConfiguration",
        "s3:CreateMultipartUpload"
        | "s3:UploadPart"
        | "s3:UploadPartCopy"
        | "s3:CompleteMultipartUpload"
        | "s3:CopyObject" => "s3:PutObject",
        "s3:ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "s3:ListParts" => "s3:ListMultipartUploadParts",
        "s3:DeleteObjects" => "s3:DeleteObject",
        "s3:DeleteBucketTagging" => "s3:PutBucketTagging",
        other => other,
    };
    // CloudWatch signs as `monitoring`; its IAM prefix is `cloudwatch`.
    if let Some(action) = mapped.strip_prefix("monitoring:") {
        return Some(format!("cloudwatch:{action}"));
    }
    Some(mapped.to_string())
}

/// True when `policy` allows `action` on some resource.
pub fn allows_action(policy: &Value, action: &str) -> bool {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["Action"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a.as_str() == Some(action))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_from_uris_and_merged_statements() {
        let spec = json!({"output": "s3://b1/pkg/model.tar.gz", "sources": [{"s3": "s3://b2/ckpt/"}],
                          "role": {"valueFrom": {"ssmParameter": "/all_in_one_ai/config/meta/sagemaker_role_arn"}}});
        let grants = vec![Grant::new(
            &["sagemaker:CreateModel"],
            vec![sagemaker_arn(None, "model", "sd-*")],
        )];
        let policy = policy(&[(
            grants,
            &crate::kinds::s3_buckets(&spec),
            &crate::kinds::ssm_parameters(&spec),
            vec![],
        )]);
        let text = policy.to_string();
        for needle in [
            "arn:aws:s3:::b1/*",
            "arn:aws:s3:::b2",
            "arn:aws:sagemaker:*:*:model/sd-*",
            "arn:aws:ssm:*:*:parameter/all_in_one_ai/config/meta/sagemaker_role_arn",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(allows_action(&policy, "s3:PutObject"));
        assert_eq!(
            iam_action("s3:PutBucketEncryption").as_deref(),
            Some("s3:PutEncryptionConfiguration")
        );
    }
}
