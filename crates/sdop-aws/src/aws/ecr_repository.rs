//! `ecr:repository`: create, tags, scan-on-push, tag mutability; the followed tag resolved to
//! a digest, so consumers deploy `REPO@sha256:...` (a new push to the tag rolls out).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability, Tag};

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::sweep::{all_pages, next_token};
use super::{classify, is_not_found, ownership_tags, read_ownership};
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject, Ownership};
use crate::error::{Error, Result};
use crate::model::contracts::RepositoryFields;

pub struct RepositoryAdapter;

/// Pages of DescribeRepositories (1,000 repositories each) a sweep reads at most.
const REPOSITORY_PAGES: usize = 3;

/// Every repository of the registry by name, for a sweep; `None` when there are more than
/// [`REPOSITORY_PAGES`] pages of them (each is then described on its own).
async fn all_repositories(
    clients: &super::Clients,
) -> Result<Option<BTreeMap<String, aws_sdk_ecr::types::Repository>>> {
    let repositories = all_pages(REPOSITORY_PAGES, |token| async move {
        let page = clients
            .ecr
            .describe_repositories()
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| classify("ecr:DescribeRepositories", e))?;
        Ok((page.repositories().to_vec(), next_token(page.next_token())))
    })
    .await?;
    Ok(repositories.map(|all| {
        all.into_iter()
            .filter_map(|repo| Some((repo.repository_name.clone()?, repo)))
            .collect()
    }))
}

fn tags_of(ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<Vec<Tag>> {
    ownership_tags(
        ctx.resource,
        ctx.spec_hash,
        &RepositoryFields::of(object)?.tags,
    )
    .into_iter()
    .map(|(k, v)| {
        Tag::builder()
            .key(k)
            .value(v)
            .build()
            .map_err(|e| Error::Terminal(e.to_string()))
    })
    .collect()
}

fn name_of(object: &DesiredObject) -> Result<&str> {
    object
        .name
        .known()
        .ok_or_else(|| Error::Terminal("repository name unknown".into()))
}

#[async_trait]
impl Adapter for RepositoryAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        crate::kinds::image_repository::AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let ecr = &ctx.clients.ecr;
        // Every pass reads the settings and the tags (spec fields: a change behind sdop's back
        // is seen and undone), then the followed tag's digest. In a sweep, one
        // DescribeRepositories of the whole registry answers for every repository.
        let clients = ctx.clients;
        let repo = match ctx
            .shared("ecr:DescribeRepositories", || all_repositories(clients))
            .await?
        {
            Some(listed) if listed.is_some() => listed
                .as_ref()
                .as_ref()
                .and_then(|all| all.get(name))
                .cloned(),
            _ => {
                let Some(described) = absent_if(
                    ecr.describe_repositories()
                        .repository_names(name)
                        .send()
                        .await
                        .map_err(|e| classify("ecr:DescribeRepositories", e)),
                    |err| is_not_found(err, &["RepositoryNotFoundException"]),
                )?
                else {
                    return Ok(None);
                };
                described.repositories().first().cloned()
            }
        };
        let Some(repo) = repo else {
            return Ok(None);
        };
        let arn = repo.repository_arn().unwrap_or_default().to_string();
        let uri = repo.repository_uri().unwrap_or_default().to_string();
        let tags = match ctx.shared_tags(&arn).await? {
            Some(tags) => tags,
            None => ecr
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .map_err(|e| classify("ecr:ListTagsForResource", e))?
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        };
        let (owner, user) = read_ownership(&tags);
        let ownership = match owner {
            Some(owner) => Ownership::Owned { resource: owner },
            _ => Ownership::Foreign,
        };
        let mut observed = RepositoryFields {
            scan_on_push: repo
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            image_tag_mutability: repo
                .image_tag_mutability()
                .map_or("MUTABLE", |m| m.as_str())
                .to_string(),
            tags: user,
        }
        .observed(name, ownership);
        observed
            .outputs
            .insert("repositoryName".into(), name.to_string());
        observed.outputs.insert("repositoryArn".into(), arn);
        if let Some(tag) = desired
            .and_then(|d| d.inputs.get("imageTag"))
            .and_then(|t| t.as_str())
        {
            if let Some(digest) = image_digest(ctx, name, tag).await? {
                observed
                    .outputs
                    .insert("imageUri".into(), format!("{uri}@{digest}"));
                observed.outputs.insert("imageDigest".into(), digest);
            }
        }
        observed.outputs.insert("repositoryUri".into(), uri);
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = name_of(object)?;
        let fields = RepositoryFields::of(object)?;
        ctx.clients
            .ecr
            .create_repository()
            .repository_name(name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(fields.scan_on_push)
                    .build(),
            )
            .image_tag_mutability(ImageTagMutability::from(
                fields.image_tag_mutability.as_str(),
            ))
            .set_tags(Some(tags_of(ctx, object)?))
            .send()
            .await
            .map_err(|e| classify("ecr:CreateRepository", e))?;
        Ok(ObjectState::Ready)
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        changes: &[FieldChange],
    ) -> Result<ObjectState> {
        let name = name_of(object)?;
        let ecr = &ctx.clients.ecr;
        let fields = RepositoryFields::of(object)?;
        for change in changes {
            match change.field.as_str() {
                "scanOnPush" => {
                    ecr.put_image_scanning_configuration()
                        .repository_name(name)
                        .image_scanning_configuration(
                            ImageScanningConfiguration::builder()
                                .scan_on_push(fields.scan_on_push)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| classify("ecr:PutImageScanningConfiguration", e))?;
                }
                "imageTagMutability" => {
                    ecr.put_image_tag_mutability()
                        .repository_name(name)
                        .image_tag_mutability(ImageTagMutability::from(
                            fields.image_tag_mutability.as_str(),
                        ))
                        .send()
                        .await
                        .map_err(|e| classify("ecr:PutImageTagMutability", e))?;
                }
                "tags" => {
                    let arn = self
                        .read(ctx, name, None)
                        .await?
                        .and_then(|o| o.outputs.get("repositoryArn").cloned())
                        .ok_or_else(|| {
                            Error::Terminal(format!("repository {name} disappeared while tagging"))
                        })?;
                    // TagResource upserts; a tag the spec no longer has is untagged.
                    let removed = super::removed_tag_keys(change);
                    if !removed.is_empty() {
                        ecr.untag_resource()
                            .resource_arn(&arn)
                            .set_tag_keys(Some(removed))
                            .send()
                            .await
                            .map_err(|e| classify("ecr:UntagResource", e))?;
                    }
                    ecr.tag_resource()
                        .resource_arn(arn)
                        .set_tags(Some(tags_of(ctx, object)?))
                        .send()
                        .await
                        .map_err(|e| classify("ecr:TagResource", e))?;
                }
                other => {
                    return Err(Error::Terminal(format!(
                        "ecr:repository has no update for field {other}"
                    )))
                }
            }
        }
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .ecr
                .delete_repository()
                .repository_name(name)
                .force(true)
                .send()
                .await
                .map_err(|e| classify("ecr:DeleteRepository", e)),
            |err| is_not_found(err, &["RepositoryNotFoundException"]),
        )
        .map(|_| ())
    }
}

/// The digest of `tag` in `repository`, or `None` when nothing was pushed under it yet.
pub async fn image_digest(
    ctx: &ObjectContext<'_>,
    repository: &str,
    tag: &str,
) -> Result<Option<String>> {
    match ctx
        .clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await
    {
        Ok(out) => Ok(out
            .image_details()
            .first()
            .and_then(|d| d.image_digest())
            .map(str::to_string)),
        Err(err) => {
            let err = classify("ecr:DescribeImages", err);
            if is_not_found(&err, &["ImageNotFoundException"]) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}
