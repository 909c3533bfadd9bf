//! What sdop owns in AWS, listed (for `sdop audit`): every SageMaker endpoint, endpoint config,
//! model and running training job carrying sdop's ownership tags in a region, the package
//! objects under given S3 prefixes that carry sdop's metadata, and every open multipart upload
//! in given buckets. Reads only.

use aws_sdk_sagemaker::types::TrainingJobStatus;

use super::{classify, read_ownership, Clients};
use crate::cost::Capacity;
use crate::error::Result;
use crate::model::resource::ResourceId;

/// One object found, with the owner its tags name and the capacity it bills for.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub aws_type: &'static str,
    pub name: String,
    pub region: String,
    /// `None`: no sdop tags (an open upload has none: any is billed).
    pub owner: Option<ResourceId>,
    pub capacity: Option<Capacity>,
}

async fn owner_of(clients: &Clients, arn: &str) -> Result<Option<ResourceId>> {
    let tags = super::sagemaker_endpoint::sagemaker_tags(clients, arn).await?;
    Ok(read_ownership(&tags).0)
}

/// The instance type and count of an endpoint config's first variant.
async fn config_capacity(clients: &Clients, config: &str) -> Result<Option<Capacity>> {
    let out = clients
        .sagemaker
        .describe_endpoint_config()
        .endpoint_config_name(config)
        .send()
        .await
        .map_err(|e| classify("sagemaker:DescribeEndpointConfig", e))?;
    Ok(out.production_variants().first().and_then(|v| {
        Some(Capacity {
            instance_type: v.instance_type()?.as_str().to_string(),
            instance_count: u32::try_from(v.initial_instance_count()?).ok()?,
            while_running: false,
        })
    }))
}

/// SageMaker objects sdop's tags claim in `clients`' region.
pub async fn sagemaker_objects(clients: &Clients) -> Result<Vec<Owned>> {
    let sm = &clients.sagemaker;
    let region = clients.region.clone();
    let mut found = Vec::new();
    let endpoints = sm
        .list_endpoints()
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListEndpoints", e))?;
    for endpoint in endpoints.endpoints() {
        let (Some(name), Some(arn)) = (endpoint.endpoint_name(), endpoint.endpoint_arn()) else {
            continue;
        };
        let Some(owner) = owner_of(clients, arn).await? else {
            continue;
        };
        let described = sm
            .describe_endpoint()
            .endpoint_name(name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DescribeEndpoint", e))?;
        let capacity = match described.endpoint_config_name() {
            Some(config) => config_capacity(clients, config).await?,
            None => None,
        };
        found.push(Owned {
            aws_type: crate::kinds::endpoint::ENDPOINT,
            name: name.to_string(),
            region: region.clone(),
            owner: Some(owner),
            capacity,
        });
    }
    let configs = sm
        .list_endpoint_configs()
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListEndpointConfigs", e))?;
    for config in configs.endpoint_configs() {
        let (Some(name), Some(arn)) = (config.endpoint_config_name(), config.endpoint_config_arn())
        else {
            continue;
        };
        if let Some(owner) = owner_of(clients, arn).await? {
            found.push(Owned {
                aws_type: crate::kinds::endpoint::ENDPOINT_CONFIG,
                name: name.to_string(),
                region: region.clone(),
                owner: Some(owner),
                capacity: None,
            });
        }
    }
    let models = sm
        .list_models()
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListModels", e))?;
    for model in models.models() {
        let (Some(name), Some(arn)) = (model.model_name(), model.model_arn()) else {
            continue;
        };
        if let Some(owner) = owner_of(clients, arn).await? {
            found.push(Owned {
                aws_type: crate::kinds::endpoint::MODEL,
                name: name.to_string(),
                region: region.clone(),
                owner: Some(owner),
                capacity: None,
            });
        }
    }
    let jobs = sm
        .list_training_jobs()
        .status_equals(TrainingJobStatus::InProgress)
        .max_results(100)
        .send()
        .await
        .map_err(|e| classify("sagemaker:ListTrainingJobs", e))?;
    for job in jobs.training_job_summaries() {
        let (Some(name), Some(arn)) = (job.training_job_name(), job.training_job_arn()) else {
            continue;
        };
        let Some(owner) = owner_of(clients, arn).await? else {
            continue;
        };
        let described = sm
            .describe_training_job()
            .training_job_name(name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DescribeTrainingJob", e))?;
        let capacity = described.resource_config().and_then(|r| {
            Some(Capacity {
                instance_type: r.instance_type()?.as_str().to_string(),
                instance_count: u32::try_from(r.instance_count()?).ok()?,
                while_running: true,
            })
        });
        found.push(Owned {
            aws_type: crate::kinds::dreambooth_job::AWS_TYPE,
            name: name.to_string(),
            region: region.clone(),
            owner: Some(owner),
            capacity,
        });
    }
    Ok(found)
}

/// Package objects under `bucket/prefix` that carry sdop's owner metadata, one per
/// content-addressed package (`<prefix><identity>/...`), named as sdop records them.
pub async fn package_objects(clients: &Clients, bucket: &str, prefix: &str) -> Result<Vec<Owned>> {
    let listed = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(err) => {
            let err = classify("s3:ListObjectsV2", err);
            if super::is_not_found(&err, &["NoSuchBucket"]) {
                return Ok(Vec::new());
            }
            return Err(err);
        }
    };
    let mut found: Vec<Owned> = Vec::new();
    for object in listed.contents() {
        let Some(key) = object.key() else { continue };
        let Some(head) = super::head_s3_object(clients, bucket, key).await? else {
            continue;
        };
        let owner = head
            .metadata()
            .and_then(|m| m.get("sdop-resource"))
            .and_then(|r| ResourceId::parse(r));
        if owner.is_none() {
            continue;
        }
        found.push(Owned {
            aws_type: crate::kinds::model_package::AWS_TYPE,
            name: format!("{bucket}/{key}"),
            region: clients.region.clone(),
            owner,
            capacity: None,
        });
    }
    Ok(found)
}

/// Every open multipart upload in `bucket` (billed storage until aborted).
pub async fn open_uploads(clients: &Clients, bucket: &str) -> Result<Vec<Owned>> {
    let listed = clients
        .s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(err) => {
            let err = classify("s3:ListMultipartUploads", err);
            if super::is_not_found(&err, &["NoSuchBucket"]) {
                return Ok(Vec::new());
            }
            return Err(err);
        }
    };
    Ok(listed
        .uploads()
        .iter()
        .map(|u| Owned {
            aws_type: "s3:multipart-upload",
            name: format!(
                "{bucket}/{} ({})",
                u.key().unwrap_or_default(),
                u.upload_id().unwrap_or_default()
            ),
            region: clients.region.clone(),
            owner: None,
            capacity: None,
        })
        .collect())
}
