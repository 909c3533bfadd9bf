//! What sdop owns in AWS, listed (for `sdop audit`): every SageMaker endpoint, endpoint config,
//! model and running training job carrying sdop's ownership tags in a region, the model archive
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

/// `(name, arn)` of every object a SageMaker list call pages through.
type Listed = Vec<(String, String)>;

/// The objects among `listed` whose tags name an sdop owner.
async fn owned_among(
    clients: &Clients,
    aws_type: &'static str,
    listed: Listed,
) -> Result<Vec<Owned>> {
    let mut found = Vec::new();
    for (name, arn) in listed {
        if let Some(owner) = owner_of(clients, &arn).await? {
            found.push(Owned {
                aws_type,
                name,
                region: clients.region.clone(),
                owner: Some(owner),
                capacity: None,
            });
        }
    }
    Ok(found)
}

/// SageMaker objects sdop's tags claim in `clients`' region (every page of each list).
pub async fn sagemaker_objects(clients: &Clients) -> Result<Vec<Owned>> {
    let sm = &clients.sagemaker;
    let mut listed: Listed = Vec::new();
    let mut pages = sm.list_endpoints().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("sagemaker:ListEndpoints", e))?;
        listed.extend(page.endpoints().iter().filter_map(|e| {
            Some((
                e.endpoint_name()?.to_string(),
                e.endpoint_arn()?.to_string(),
            ))
        }));
    }
    let mut found = Vec::new();
    for mut endpoint in
        owned_among(clients, crate::kinds::endpoint::ENDPOINT.as_str(), listed).await?
    {
        let described = sm
            .describe_endpoint()
            .endpoint_name(&endpoint.name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DescribeEndpoint", e))?;
        if let Some(config) = described.endpoint_config_name() {
            endpoint.capacity = config_capacity(clients, config).await?;
        }
        found.push(endpoint);
    }

    let mut listed: Listed = Vec::new();
    let mut pages = sm.list_endpoint_configs().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("sagemaker:ListEndpointConfigs", e))?;
        listed.extend(page.endpoint_configs().iter().filter_map(|c| {
            Some((
                c.endpoint_config_name()?.to_string(),
                c.endpoint_config_arn()?.to_string(),
            ))
        }));
    }
    found.extend(
        owned_among(
            clients,
            crate::kinds::endpoint::ENDPOINT_CONFIG.as_str(),
            listed,
        )
        .await?,
    );

    let mut listed: Listed = Vec::new();
    let mut pages = sm.list_models().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("sagemaker:ListModels", e))?;
        listed.extend(
            page.models()
                .iter()
                .filter_map(|m| Some((m.model_name()?.to_string(), m.model_arn()?.to_string()))),
        );
    }
    found.extend(owned_among(clients, crate::kinds::endpoint::MODEL.as_str(), listed).await?);

    let mut listed: Listed = Vec::new();
    let mut pages = sm
        .list_training_jobs()
        .status_equals(TrainingJobStatus::InProgress)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("sagemaker:ListTrainingJobs", e))?;
        listed.extend(page.training_job_summaries().iter().filter_map(|j| {
            Some((
                j.training_job_name()?.to_string(),
                j.training_job_arn()?.to_string(),
            ))
        }));
    }
    for mut job in owned_among(
        clients,
        crate::kinds::dreambooth_job::AWS_TYPE.as_str(),
        listed,
    )
    .await?
    {
        let described = sm
            .describe_training_job()
            .training_job_name(&job.name)
            .send()
            .await
            .map_err(|e| classify("sagemaker:DescribeTrainingJob", e))?;
        job.capacity = described.resource_config().and_then(|r| {
            Some(Capacity {
                instance_type: r.instance_type()?.as_str().to_string(),
                instance_count: u32::try_from(r.instance_count()?).ok()?,
                while_running: true,
            })
        });
        found.push(job);
    }
    Ok(found)
}

/// Model archive objects under `bucket/prefix` that carry sdop's owner metadata, one per
/// content-addressed archive (`<prefix><identity>/...`), named as sdop records them.
pub async fn archive_objects(clients: &Clients, bucket: &str, prefix: &str) -> Result<Vec<Owned>> {
    let mut keys = Vec::new();
    let mut pages = clients
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page.map_err(|e| classify("s3:ListObjectsV2", e)) {
            Ok(page) => keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            ),
            Err(err) if super::is_not_found(&err, &["NoSuchBucket"]) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        }
    }
    let mut found: Vec<Owned> = Vec::new();
    for key in keys {
        let Some(head) = super::head_s3_object(clients, bucket, &key).await? else {
            continue;
        };
        let owner = head
            .metadata()
            .and_then(|m| m.get("sdop-resource"))
            .and_then(|r| ResourceId::parse_recorded(r));
        if owner.is_none() {
            continue;
        }
        found.push(Owned {
            aws_type: crate::kinds::model_archive::AWS_TYPE.as_str(),
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
    let mut found = Vec::new();
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let listed = clients
            .s3
            .list_multipart_uploads()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await;
        let listed = match listed.map_err(|e| classify("s3:ListMultipartUploads", e)) {
            Ok(listed) => listed,
            Err(err) if super::is_not_found(&err, &["NoSuchBucket"]) => return Ok(found),
            Err(err) => return Err(err),
        };
        found.extend(listed.uploads().iter().map(|u| Owned {
            aws_type: "s3:multipart-upload",
            name: format!(
                "{bucket}/{} ({})",
                u.key().unwrap_or_default(),
                u.upload_id().unwrap_or_default()
            ),
            region: clients.region.clone(),
            owner: None,
            capacity: None,
        }));
        // Truncated listings continue after the markers S3 returns.
        if listed.is_truncated() != Some(true) {
            return Ok(found);
        }
        key_marker = listed.next_key_marker().map(str::to_string);
        id_marker = listed.next_upload_id_marker().map(str::to_string);
    }
}
