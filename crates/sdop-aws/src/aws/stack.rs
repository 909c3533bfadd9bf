//! `cloudformation:stack`: create or update from a TemplateURL; "No updates are to be
//! performed" is success; status maps to readiness; failures carry the first failed
//! resource's reason from the stack events, followed into the nested stack that failed. The
//! template fingerprint rides in a stack tag.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackEvent, StackStatus, Tag};

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

/// How deep `first_failure` follows nested stacks (the all-in-one-ai templates nest one level).
const NESTING_MAX: usize = 5;

/// One stack event, the fields a failure is told with.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    stack_id: String,
    stack_name: String,
    logical: String,
    physical: String,
    resource_type: String,
    status: String,
    reason: String,
}

impl Event {
    fn of(event: &StackEvent) -> Self {
        let text = |v: Option<&str>| v.unwrap_or_default().to_string();
        Event {
            stack_id: text(event.stack_id()),
            stack_name: text(event.stack_name()),
            logical: text(event.logical_resource_id()),
            physical: text(event.physical_resource_id()),
            resource_type: text(event.resource_type()),
            status: event
                .resource_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            reason: text(event.resource_status_reason()),
        }
    }

    /// The stack's own event (its status), not one of its resources': CloudFormation gives it
    /// the stack's ID as physical ID.
    fn is_the_stacks(&self) -> bool {
        self.physical == self.stack_id
    }

    /// The stack's own event that starts an operation (create, update, delete, import).
    fn starts_an_operation(&self) -> bool {
        self.is_the_stacks()
            && matches!(
                self.status.as_str(),
                "CREATE_IN_PROGRESS"
                    | "UPDATE_IN_PROGRESS"
                    | "DELETE_IN_PROGRESS"
                    | "IMPORT_IN_PROGRESS"
            )
    }

    /// A failure that only follows another: resources cancelled because one failed, and the
    /// summary naming the failed ones ("The following resource(s) failed to create: [X]").
    fn is_a_cascade(&self) -> bool {
        self.reason.starts_with("Resource creation cancelled")
            || self.reason.starts_with("Resource update cancelled")
            || self
                .reason
                .starts_with("The following resource(s) failed to")
    }

    /// The nested stack this event is about (its stack ID), when it is a nested stack resource
    /// of its stack: the physical ID, or the ARN of "Embedded stack ARN was not successfully
    /// created/updated" when the event has none.
    fn nested_stack(&self) -> Option<String> {
        if self.resource_type != "AWS::CloudFormation::Stack" || self.is_the_stacks() {
            return None;
        }
        if self.physical.starts_with("arn:") {
            return Some(self.physical.clone());
        }
        let rest = self.reason.strip_prefix("Embedded stack ")?;
        rest.split_whitespace()
            .next()
            .filter(|arn| arn.starts_with("arn:"))
            .map(str::to_string)
    }

    fn describe(&self) -> String {
        let reason = if self.reason.is_empty() {
            "(no reason given)"
        } else {
            &self.reason
        };
        if self.is_the_stacks() {
            format!("stack {} {}: {reason}", self.stack_name, self.status)
        } else {
            format!(
                "resource {} ({}) {}: {reason}",
                self.logical, self.resource_type, self.status
            )
        }
    }
}

/// Finds the first real failure in a stack's events, read newest first (as DescribeStackEvents
/// returns them, page after page): among the events of the newest operation that has a failure,
/// the oldest `*_FAILED` one that is not a cascade of another; a cascade only if there is
/// nothing else. A nested stack deleted by its parent's rollback has the deletion as its newest
/// operation, the failure in the create before it.
#[derive(Default)]
struct FirstFailure {
    real: Option<Event>,
    cascade: Option<Event>,
}

impl FirstFailure {
    /// Takes the next (older) event; true once the answer is known.
    fn push(&mut self, event: Event) -> bool {
        if event.starts_an_operation() {
            return self.real.is_some() || self.cascade.is_some();
        }
        if event.status.ends_with("_FAILED") {
            if event.is_a_cascade() {
                self.cascade = Some(event);
            } else {
                self.real = Some(event);
            }
        }
        false
    }

    fn found(self) -> Option<Event> {
        self.real.or(self.cascade)
    }
}

/// The first real failure in the events of the stack `name` (a name, or a stack ID: a deleted
/// nested stack is found by its ID only), read page by page until it is known.
async fn failed_event(ctx: &ObjectContext<'_>, name: &str) -> Result<Option<Event>> {
    let mut pages = ctx
        .clients
        .cloudformation
        .describe_stack_events()
        .stack_name(name)
        .into_paginator()
        .send();
    let mut scan = FirstFailure::default();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("cloudformation:DescribeStackEvents", e))?;
        for event in page.stack_events() {
            if scan.push(Event::of(event)) {
                return Ok(scan.found());
            }
        }
    }
    Ok(scan.found())
}

/// Why the stack failed: its first real failed event; when that is a nested stack's, the
/// nested stack's own first failure, down to the resource that failed, e.g. `nested stack VPC
/// (all-in-one-ai-webui-VPC-ABC): resource DefaultSecurityGroup (AWS::EC2::SecurityGroup)
/// CREATE_FAILED: <AWS's reason>`. The root's events only say "Embedded stack ... was not
/// successfully created".
async fn first_failure(ctx: &ObjectContext<'_>, name: &str) -> String {
    let event = match failed_event(ctx, name).await {
        Ok(Some(event)) => event,
        Ok(None) => return "stack failed; no failed resource event".into(),
        Err(err) => return format!("stack failed (its events could not be read: {err})"),
    };
    let mut path = String::new();
    let mut event = event;
    for _ in 0..NESTING_MAX {
        let Some(nested_id) = event.nested_stack() else {
            break;
        };
        match failed_event(ctx, &nested_id).await {
            Ok(Some(inner)) => {
                let nested_name = if inner.stack_name.is_empty() {
                    nested_id
                        .split('/')
                        .nth(1)
                        .unwrap_or(&nested_id)
                        .to_string()
                } else {
                    inner.stack_name.clone()
                };
                path.push_str(&format!("nested stack {} ({nested_name}): ", event.logical));
                event = inner;
            }
            // No failure in the nested stack's events: what the parent says.
            Ok(None) => break,
            Err(err) => {
                return format!(
                    "{path}{} (the events of nested stack {nested_id} could not be read: {err})",
                    event.describe()
                )
            }
        }
    }
    format!("{path}{}", event.describe())
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

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/webui/1";
    const VPC: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/webui-VPC-ABC/2";

    fn stack_event(stack: &str, status: &str, reason: &str) -> Event {
        let name = stack.split('/').nth(1).unwrap().to_string();
        Event {
            stack_id: stack.into(),
            stack_name: name.clone(),
            logical: name,
            physical: stack.into(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            status: status.into(),
            reason: reason.into(),
        }
    }

    fn resource(stack: &str, logical: &str, kind: &str, status: &str, reason: &str) -> Event {
        Event {
            stack_id: stack.into(),
            stack_name: stack.split('/').nth(1).unwrap().into(),
            logical: logical.into(),
            physical: String::new(),
            resource_type: kind.into(),
            status: status.into(),
            reason: reason.into(),
        }
    }

    /// Events given oldest first (as they happen), read newest first (as AWS returns them).
    fn first(mut events: Vec<Event>) -> Option<Event> {
        events.reverse();
        let mut scan = FirstFailure::default();
        for event in events {
            if scan.push(event) {
                break;
            }
        }
        scan.found()
    }

    #[test]
    fn the_root_names_the_nested_stack_that_failed_and_the_nested_one_its_resource() {
        let embedded = format!(
            "Embedded stack {VPC} was not successfully created: The following resource(s) failed to create: [DefaultSecurityGroup]. "
        );
        let mut nested = resource(
            ROOT,
            "VPC",
            "AWS::CloudFormation::Stack",
            "CREATE_FAILED",
            &embedded,
        );
        nested.physical = VPC.into();
        let root = vec![
            stack_event(ROOT, "CREATE_IN_PROGRESS", "User Initiated"),
            resource(ROOT, "Topic", "AWS::SNS::Topic", "CREATE_COMPLETE", ""),
            nested.clone(),
            resource(ROOT, "IAM", "AWS::CloudFormation::Stack", "CREATE_FAILED", "Resource creation cancelled"),
            stack_event(
                ROOT,
                "ROLLBACK_IN_PROGRESS",
                "The following resource(s) failed to create: [VPC, IAM]. Rollback requested by user.",
            ),
            stack_event(ROOT, "ROLLBACK_COMPLETE", ""),
        ];
        let found = first(root).unwrap();
        assert_eq!(found, nested);
        assert_eq!(found.nested_stack().as_deref(), Some(VPC));

        // The nested stack was deleted by the parent's rollback: its newest operation is that
        // deletion, the failure is in the create before it.
        let sg = resource(
            VPC,
            "DefaultSecurityGroup",
            "AWS::EC2::SecurityGroup",
            "CREATE_FAILED",
            "Resource handler returned message: \"Invalid value 'x' for portRange\"",
        );
        let found = first(vec![
            stack_event(VPC, "CREATE_IN_PROGRESS", "User Initiated"),
            resource(VPC, "Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", ""),
            sg.clone(),
            stack_event(
                VPC,
                "ROLLBACK_IN_PROGRESS",
                "The following resource(s) failed to create: [DefaultSecurityGroup]. ",
            ),
            stack_event(VPC, "ROLLBACK_COMPLETE", ""),
            stack_event(VPC, "DELETE_IN_PROGRESS", "User Initiated"),
            stack_event(VPC, "DELETE_COMPLETE", ""),
        ])
        .unwrap();
        assert_eq!(found, sg);
        assert_eq!(found.nested_stack(), None);
        assert_eq!(
            found.describe(),
            "resource DefaultSecurityGroup (AWS::EC2::SecurityGroup) CREATE_FAILED: Resource handler returned message: \"Invalid value 'x' for portRange\""
        );
    }

    #[test]
    fn cascades_are_skipped_and_the_newest_failed_operation_counts() {
        let cancelled = resource(
            ROOT,
            "B",
            "AWS::SNS::Topic",
            "CREATE_FAILED",
            "Resource creation cancelled",
        );
        // Only cascades: the oldest of them, rather than nothing.
        assert_eq!(
            first(vec![
                stack_event(ROOT, "CREATE_IN_PROGRESS", "User Initiated"),
                cancelled.clone(),
            ]),
            Some(cancelled.clone())
        );
        // An update that failed after a create that failed long ago: the update's failure.
        let old = resource(ROOT, "A", "AWS::SNS::Topic", "CREATE_FAILED", "old reason");
        let new = resource(ROOT, "A", "AWS::SNS::Topic", "UPDATE_FAILED", "new reason");
        assert_eq!(
            first(vec![
                stack_event(ROOT, "CREATE_IN_PROGRESS", "User Initiated"),
                old,
                stack_event(ROOT, "CREATE_COMPLETE", ""),
                stack_event(ROOT, "UPDATE_IN_PROGRESS", "User Initiated"),
                new.clone(),
                resource(
                    ROOT,
                    "B",
                    "AWS::SNS::Topic",
                    "UPDATE_FAILED",
                    "Resource update cancelled"
                ),
                stack_event(
                    ROOT,
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to update: [A]. "
                ),
                stack_event(ROOT, "UPDATE_ROLLBACK_COMPLETE", ""),
            ]),
            Some(new)
        );
        assert_eq!(
            first(vec![stack_event(ROOT, "CREATE_IN_PROGRESS", "")]),
            None
        );
    }

    #[test]
    fn a_nested_stack_without_a_physical_id_is_found_in_its_reason() {
        let event = resource(
            ROOT,
            "VPC",
            "AWS::CloudFormation::Stack",
            "CREATE_FAILED",
            &format!("Embedded stack {VPC} was not successfully created: The following resource(s) failed to create: [X]. "),
        );
        assert_eq!(event.nested_stack().as_deref(), Some(VPC));
        let topic = resource(
            ROOT,
            "Topic",
            "AWS::SNS::Topic",
            "CREATE_FAILED",
            "Embedded stack arn:x was",
        );
        assert_eq!(topic.nested_stack(), None);
    }
}
