//! `sdop audit`: every AWS object carrying sdop's ownership that no state accounts for (an
//! endpoint, a running training job, a model, a config, a model archive left behind by a lost state
//! or a crash), and every open multipart upload, across the regions the manifests use, with
//! what it costs per hour. Reads only.

use std::collections::BTreeSet;

use crate::aws::audit::{self, Owned};
use crate::aws::Clients;
use crate::cost::Price;
use crate::error::Result;
use crate::kinds::bucket::BucketSpec;
use crate::kinds::model_archive::ModelArchiveSpec;
use crate::manifest::{Loaded, ResourceId};
use crate::state::{ResourceStatus, StateStore};

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub object: Owned,
    pub why: String,
    /// Per hour (training jobs: while they run); `Hourly(0.0)` for storage-only objects.
    pub hourly: Price,
}

/// Which of `found` no status accounts for, and why (pure).
pub fn unaccounted(
    found: Vec<Owned>,
    statuses: &[ResourceStatus],
    declared: &[ResourceId],
) -> Vec<Finding> {
    let recorded = |object: &Owned| {
        statuses.iter().any(|s| {
            s.objects.iter().any(|r| {
                r.aws_type == object.aws_type
                    && (r.name == object.name
                        // An uncompressed archive is recorded as its prefix.
                        || (r.name.ends_with('/') && object.name.starts_with(&r.name)))
            })
        })
    };
    found
        .into_iter()
        .filter(|object| object.owner.is_none() || !recorded(object))
        .map(|object| {
            let why = match &object.owner {
                None => "open multipart upload: its parts are billed until it is aborted".to_string(),
                Some(owner) if declared.contains(owner) => format!(
                    "tagged for {owner} (declared) but recorded in no state: a lost state, or an object superseded and forgotten"
                ),
                Some(owner) => format!("tagged for {owner}, which no manifest declares and no state records"),
            };
            let hourly = match &object.capacity {
                Some(c) => match crate::cost::hourly(&c.instance_type, c.instance_count, &object.region) {
                    Some(dollars) => Price::Hourly(dollars),
                    None => Price::Unknown(format!("no price for {} in {}", c.instance_type, object.region)),
                },
                None => Price::Hourly(0.0),
            };
            Finding { object, why, hourly }
        })
        .collect()
}

/// Lists what sdop owns where the manifests and the state point, and returns the leaks.
pub async fn audit(loaded: &Loaded, clients: &Clients, store: &StateStore) -> Result<Vec<Finding>> {
    let statuses = store.load_all()?;
    let declared: Vec<ResourceId> = loaded.manifests.iter().map(|m| m.id.clone()).collect();
    let mut regions: BTreeSet<String> = [clients.region.clone()].into();
    for manifest in &loaded.manifests {
        regions.extend(manifest.handler.region(manifest.spec.as_ref()));
    }
    regions.extend(statuses.iter().filter_map(|s| s.region.clone()));
    let mut buckets: BTreeSet<String> = BTreeSet::new();
    let mut archive_prefixes: BTreeSet<(String, String)> = BTreeSet::new();
    for manifest in &loaded.manifests {
        if let Some(bucket) = manifest.spec_as::<BucketSpec>() {
            buckets.insert(bucket.bucket_name.clone());
        }
        if let Some(archive) = manifest.spec_as::<ModelArchiveSpec>() {
            if let Ok(uri) = crate::rules::s3_uri(&archive.output) {
                let dir = match uri.key.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/"),
                    None => String::new(),
                };
                buckets.insert(uri.bucket.clone());
                archive_prefixes.insert((uri.bucket, dir));
            }
        }
    }
    let mut found = Vec::new();
    for region in &regions {
        let regional = clients.in_region(Some(region));
        found.extend(audit::sagemaker_objects(&regional).await?);
    }
    for (bucket, prefix) in &archive_prefixes {
        found.extend(audit::archive_objects(clients, bucket, prefix).await?);
    }
    for bucket in &buckets {
        found.extend(audit::open_uploads(clients, bucket).await?);
    }
    Ok(unaccounted(found, &statuses, &declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(aws_type: &'static str, name: &str, owner: Option<&str>) -> Owned {
        Owned {
            aws_type,
            name: name.into(),
            region: "us-east-1".into(),
            owner: owner.and_then(ResourceId::parse),
            capacity: None,
        }
    }

    #[test]
    fn only_what_no_state_records_is_a_finding() {
        let mut status = ResourceStatus::new(&ResourceId::new("Endpoint", "base"));
        status.record_object(crate::model::object::AwsType::SageMakerEndpoint, "sd-base");
        status.record_object(crate::model::object::AwsType::S3ModelArchive, "b/pkg/0123/");
        let found = vec![
            owned(
                crate::model::object::AwsType::SageMakerEndpoint.as_str(),
                "sd-base",
                Some("Endpoint/base"),
            ),
            owned(
                crate::model::object::AwsType::SageMakerEndpoint.as_str(),
                "sd-old",
                Some("Endpoint/base"),
            ),
            owned(
                crate::model::object::AwsType::SageMakerModel.as_str(),
                "m-x",
                Some("Endpoint/gone"),
            ),
            owned(
                crate::model::object::AwsType::S3ModelArchive.as_str(),
                "b/pkg/0123/v1.ckpt",
                Some("ModelArchive/p"),
            ),
            owned("s3:multipart-upload", "b/pkg/x (id)", None),
        ];
        let declared = [ResourceId::new("Endpoint", "base")];
        let findings = unaccounted(found, &[status], &declared);
        let names: Vec<&str> = findings.iter().map(|f| f.object.name.as_str()).collect();
        assert_eq!(names, ["sd-old", "m-x", "b/pkg/x (id)"]);
        assert!(findings[0]
            .why
            .contains("(declared) but recorded in no state"));
        assert!(findings[1].why.contains("no manifest declares"));
        assert!(findings[2].why.contains("open multipart upload"));
    }
}
