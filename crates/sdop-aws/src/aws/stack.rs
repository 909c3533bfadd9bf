//! `cloudformation:stack`: create or update from a TemplateURL; "No updates are to be
//! performed" is success; status maps to readiness; failures carry the first failed
//! resource's reason from the stack events. The template fingerprint rides in a stack tag.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus, Tag};

use super::absent_if;
use super::adapters::{Adapter, ObjectContext};
use super::{classify, ownership_tags, read_ownership};
use crate::engine::plan::{DesiredObject, FieldChange, ObjectState, ObservedObject, Ownership};
use crate::error::{Error, Result};
use crate::model::contracts::StackFields;

pub struct StackAdapter;

const TAG_TEMPLATE: &str = "sdop.io/template-fingerprint";
/// The names of the parameters sdop passed, comma-separated (CloudFormation parameter names
/// are alphanumeric). DescribeStacks also reports the parameters left to their template
/// defaults (the all-in-one-ai main template has a dozen: CustomIdentifier, CIDR, ...), which
/// are not drift; only these are compared.
const TAG_PARAMETERS: &str = "sdop.io/parameters";
/// Output: when the stack last changed (its LastUpdatedTime, else its CreationTime).
const OUTPUT_CHANGED_AT: &str = "lastChangedTime";
/// Output: the `lastChangedTime` at which the nested stacks' outputs were read.
const OUTPUT_NESTED_READ: &str = "nestedOutputsReadAt";
/// The TAG_PARAMETERS value of a stack sdop passed no parameters.
const NO_PARAMETERS: &str = "-";
/// AWS's limit on a tag value; with more parameter names than fit, every parameter is compared.
const TAG_VALUE_MAX: usize = 256;

fn is_missing(err: &Error) -> bool {
    matches!(err, Error::Aws { message, .. } if message.contains("does not exist"))
}

/// The first failure in the stack's events (oldest first), as `LogicalId: reason`.
/// Outputs of the stack's nested stacks (`AWS::CloudFormation::Stack` resources), as
/// `nested.<LogicalId>.<OutputKey>`: the all-in-one-ai templates keep the API URL, subnets,
/// security group and role in their LAMBDA, VPC and IAM stacks, not in the main one.
async fn nested_outputs(
    ctx: &ObjectContext<'_>,
    name: &str,
    outputs: &mut BTreeMap<String, String>,
) -> Result<()> {
    let mut pages = ctx
        .clients
        .cloudformation
        .list_stack_resources()
        .stack_name(name)
        .into_paginator()
        .send();
    let mut nested = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("cloudformation:ListStackResources", e))?;
        for resource in page.stack_resource_summaries() {
            if resource.resource_type() == Some("AWS::CloudFormation::Stack") {
                if let (Some(logical), Some(physical)) = (
                    resource.logical_resource_id(),
                    resource.physical_resource_id(),
                ) {
                    nested.push((logical.to_string(), physical.to_string()));
                }
            }
        }
    }
    for (logical, physical) in nested {
        let described = ctx
            .clients
            .cloudformation
            .describe_stacks()
            .stack_name(&physical)
            .send()
            .await
            .map_err(|e| classify("cloudformation:DescribeStacks", e))?;
        for output in described.stacks().iter().flat_map(|s| s.outputs()) {
            if let (Some(k), Some(v)) = (output.output_key(), output.output_value()) {
                outputs.insert(format!("nested.{logical}.{k}"), v.to_string());
            }
        }
    }
    Ok(())
}

async fn first_failure(ctx: &ObjectContext<'_>, name: &str) -> String {
    let events = ctx
        .clients
        .cloudformation
        .describe_stack_events()
        .stack_name(name)
        .send()
        .await;
    let Ok(events) = events else {
        return "stack failed (events unavailable)".into();
    };
    events
        .stack_events()
        .iter()
        .rev()
        .find(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_status_reason().unwrap_or("failed")
            )
        })
        .unwrap_or_else(|| "stack failed; no failed resource event".into())
}

fn template_url(ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<String> {
    let template = object
        .unobservable
        .get("template")
        .and_then(Option::as_ref)
        .and_then(|t| t.as_str())
        .ok_or_else(|| Error::Terminal("template location unknown".into()))?;
    Ok(match template.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            ctx.clients.s3_object_url(bucket, key)
        }
        None => template.to_string(),
    })
}

fn stack_name(object: &DesiredObject) -> Result<&str> {
    object
        .name
        .known()
        .ok_or_else(|| Error::Terminal("stack name not known yet".into()))
}

fn parameters(fields: &StackFields) -> Vec<Parameter> {
    fields
        .parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

fn capabilities(fields: &StackFields) -> Vec<Capability> {
    fields
        .capabilities
        .iter()
        .map(|c| Capability::from(c.as_str()))
        .collect()
}

fn tags(ctx: &ObjectContext<'_>, fields: &StackFields) -> Vec<Tag> {
    let mut all = ownership_tags(ctx.resource, ctx.spec_hash, &fields.tags);
    if let Some(fingerprint) = &fields.template_fingerprint {
        all.insert(TAG_TEMPLATE.into(), fingerprint.clone());
    }
    let names: Vec<String> = fields.parameters.keys().cloned().collect();
    // CloudFormation refuses an empty tag value (API_Tag: "Minimum length of 1"): no parameters
    // is written as NO_PARAMETERS, which no parameter is named (they are alphanumeric).
    let names = if names.is_empty() {
        NO_PARAMETERS.to_string()
    } else {
        names.join(",")
    };
    if names.len() <= TAG_VALUE_MAX {
        all.insert(TAG_PARAMETERS.into(), names);
    }
    all.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[async_trait]
impl Adapter for StackAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        crate::kinds::stack::AWS_TYPE
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let Some(out) = absent_if(
            ctx.clients
                .cloudformation
                .describe_stacks()
                .stack_name(name)
                .send()
                .await
                .map_err(|e| classify("cloudformation:DescribeStacks", e)),
            is_missing,
        )?
        else {
            return Ok(None);
        };
        let Some(stack) = out.stacks().first() else {
            return Ok(None);
        };
        let status = stack
            .stack_status()
            .cloned()
            .unwrap_or(StackStatus::CreateInProgress);
        if status == StackStatus::DeleteComplete {
            return Ok(None);
        }
        let all_tags: BTreeMap<String, String> = stack
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let (owner, user) = read_ownership(&all_tags);
        let ownership = match owner {
            Some(owner) => Ownership::Owned { resource: owner },
            _ => Ownership::Foreign,
        };
        let passed: Option<Vec<&str>> = all_tags
            .get(TAG_PARAMETERS)
            .map(|names| names.split(',').filter(|n| !n.is_empty()).collect());
        let params: BTreeMap<String, String> = stack
            .parameters()
            .iter()
            .filter(|p| {
                passed
                    .as_ref()
                    .is_none_or(|passed| passed.contains(&p.parameter_key().unwrap_or_default()))
            })
            .map(|p| {
                (
                    p.parameter_key().unwrap_or_default().to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut caps: Vec<String> = stack
            .capabilities()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        caps.sort();
        let mut observed = StackFields {
            template_fingerprint: all_tags.get(TAG_TEMPLATE).cloned(),
            parameters: params,
            capabilities: caps,
            tags: user,
        }
        .observed(name, ownership);
        let text = status.as_str();
        observed.state = if status == StackStatus::DeleteInProgress {
            ObjectState::Deleting(text.to_string())
        } else if text.ends_with("_IN_PROGRESS") {
            ObjectState::Progressing(text.to_string())
        } else if matches!(
            status,
            StackStatus::CreateComplete | StackStatus::UpdateComplete
        ) {
            ObjectState::Ready
        } else if status == StackStatus::UpdateRollbackComplete {
            ObjectState::Degraded(format!(
                "update rolled back: {}",
                first_failure(ctx, name).await
            ))
        } else {
            ObjectState::Failed(format!("{text}: {}", first_failure(ctx, name).await))
        };
        observed
            .outputs
            .insert("stackName".into(), name.to_string());
        observed.outputs.insert(
            "stackId".into(),
            stack.stack_id().unwrap_or_default().to_string(),
        );
        observed.outputs.insert("status".into(), text.to_string());
        for output in stack.outputs() {
            if let (Some(k), Some(v)) = (output.output_key(), output.output_value()) {
                observed
                    .outputs
                    .insert(format!("outputs.{k}"), v.to_string());
            }
        }
        // When the stack last changed: CloudFormation reports LastUpdatedTime once updated,
        // CreationTime before.
        let changed_at = stack
            .last_updated_time()
            .or(stack.creation_time())
            .map(|t| t.to_string())
            .unwrap_or_default();
        observed
            .outputs
            .insert(OUTPUT_CHANGED_AT.into(), changed_at.clone());
        if observed.state == ObjectState::Ready {
            match ctx.recorded_outputs.filter(|recorded| {
                !changed_at.is_empty()
                    && recorded.get(OUTPUT_CHANGED_AT) == Some(&changed_at)
                    && recorded.get(OUTPUT_NESTED_READ) == Some(&changed_at)
            }) {
                // Nested stacks change with their root: AWS "strongly recommend[s] that
                // updates to nested stacks are run from the parent stack" (the
                // AWS::CloudFormation::Stack reference), which updates the root's
                // LastUpdatedTime. The root unchanged since the nested outputs were read, they
                // are the ones recorded: ListStackResources and a DescribeStacks per nested
                // stack (9 calls for all-in-one-ai) are not made again.
                Some(recorded) => observed.outputs.extend(
                    recorded
                        .iter()
                        .filter(|(k, _)| k.starts_with("nested.") || *k == OUTPUT_NESTED_READ)
                        .map(|(k, v)| (k.clone(), v.clone())),
                ),
                None => {
                    nested_outputs(ctx, name, &mut observed.outputs).await?;
                    observed
                        .outputs
                        .insert(OUTPUT_NESTED_READ.into(), changed_at);
                }
            }
        }
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = stack_name(object)?;
        let fields = StackFields::of(object)?;
        ctx.clients
            .cloudformation
            .create_stack()
            .stack_name(name)
            .template_url(template_url(ctx, object)?)
            .set_parameters(Some(parameters(&fields)))
            .set_capabilities(Some(capabilities(&fields)))
            .set_tags(Some(tags(ctx, &fields)))
            .send()
            .await
            .map_err(|e| classify("cloudformation:CreateStack", e))?;
        Ok(ObjectState::Progressing("CREATE_IN_PROGRESS".into()))
    }

    async fn update(
        &self,
        ctx: &ObjectContext<'_>,
        object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        let name = stack_name(object)?;
        let fields = StackFields::of(object)?;
        // A first create that rolled back cannot be updated: delete it, then create anew.
        if let Some(current) = self.read(ctx, name, None).await? {
            if matches!(&current.state, ObjectState::Failed(reason) if reason.starts_with("ROLLBACK_COMPLETE"))
            {
                self.delete(ctx, name).await?;
                return Ok(ObjectState::Progressing(
                    "deleting the stack left in ROLLBACK_COMPLETE before re-creating it".into(),
                ));
            }
        }
        let result = ctx
            .clients
            .cloudformation
            .update_stack()
            .stack_name(name)
            .template_url(template_url(ctx, object)?)
            .set_parameters(Some(parameters(&fields)))
            .set_capabilities(Some(capabilities(&fields)))
            .set_tags(Some(tags(ctx, &fields)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ObjectState::Progressing("UPDATE_IN_PROGRESS".into())),
            Err(err) => {
                let err = classify("cloudformation:UpdateStack", err);
                match &err {
                    Error::Aws { message, .. }
                        if message.contains("No updates are to be performed") =>
                    {
                        Ok(ObjectState::Ready)
                    }
                    _ => Err(err),
                }
            }
        }
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        absent_if(
            ctx.clients
                .cloudformation
                .delete_stack()
                .stack_name(name)
                .send()
                .await
                .map_err(|e| classify("cloudformation:DeleteStack", e)),
            is_missing,
        )
        .map(|_| ())
    }
}
