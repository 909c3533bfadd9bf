//! The engine: graph of references, content-hash naming, the pure decision, the one executor
//! and the seam it acts through.
//!
//! One pass over a resource ([`execute::pass`]): the statuses of its references give the
//! values it reads ([`resolve::Outputs`]) → the kind's desired AWS objects → what the
//! [`cloud::Cloud`] seam observes under their names → [`decide::decide`] (pure: actions, phase,
//! memory, what next) → in apply mode, the due actions through the same seam. `sdop plan` is
//! [`plan_all`]: that pass in plan mode for every resource in graph order.

pub mod billing;
pub mod cloud;
pub mod decide;
pub mod execute;
pub mod plan;
pub mod policy;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::Result;
use crate::manifest::{Manifest, ResourceId};
use crate::state::ResourceStatus;

pub use plan::{Action, Operation, Plan};

/// Plans every resource in graph order: the executor's pass in plan mode, over the statuses
/// sdop recorded (`statuses`, as loaded from the state). Reads only; never mutates.
pub async fn plan_all(
    manifests: &[Manifest],
    graph: &crate::manifest::graph::Graph,
    cloud: &dyn cloud::Cloud,
    statuses: &HashMap<ResourceId, ResourceStatus>,
) -> Result<Plan> {
    // Borrowed where recorded: a plan reads the statuses, it never keeps them.
    // A resource this plan creates or replaces objects of will have new outputs (a new
    // archive identity, a new training job): what reads them sees them as not known yet, so
    // the plan shows its own changes as "(known after apply)" after that resource, as apply
    // will make them, instead of "no changes" from the outputs recorded before.
    let mut changing: HashMap<ResourceId, ResourceStatus> = HashMap::new();
    fn status_of<'s>(
        id: &ResourceId,
        changing: &'s HashMap<ResourceId, ResourceStatus>,
        statuses: &'s HashMap<ResourceId, ResourceStatus>,
    ) -> Cow<'s, ResourceStatus> {
        match changing.get(id).or_else(|| statuses.get(id)) {
            Some(status) => Cow::Borrowed(status),
            None => Cow::Owned(ResourceStatus::new(id)),
        }
    }
    let quiet = |_: String| {};
    let mut actions = Vec::new();
    let mut capacity = Vec::new();
    for &index in graph.order() {
        let manifest = &manifests[index];
        let dependencies: Vec<Cow<ResourceStatus>> = graph
            .dependencies(index)
            .iter()
            .map(|&dep| status_of(&manifests[dep].id, &changing, statuses))
            .collect();
        let recorded = statuses.get(&manifest.id);
        let mut status = status_of(&manifest.id, &HashMap::new(), statuses).into_owned();
        let outcome = execute::pass(
            cloud,
            manifest,
            &dependencies,
            &mut status,
            execute::Mode::Plan,
            &quiet,
            &execute::persist_nothing,
        )
        .await?;
        drop(dependencies);
        let renews = outcome
            .actions
            .iter()
            .any(|a| matches!(a.operation, Operation::Create | Operation::Replace));
        if let (true, Some(recorded)) = (renews, recorded) {
            let mut next = recorded.clone();
            next.outputs = manifest.handler.spec_outputs(manifest.spec.as_ref());
            next.phase = crate::state::Phase::Progressing;
            next.message = "changes planned".into();
            changing.insert(manifest.id.clone(), next);
        }
        actions.extend(outcome.actions);
        if let Some((region, planned)) = outcome.capacity {
            capacity.push(plan::PlannedCapacity {
                resource: manifest.id.clone(),
                region,
                capacity: planned,
            });
        }
    }
    Ok(Plan { actions, capacity })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::load::load_str;

    #[tokio::test]
    async fn offline_plan_creates_everything_in_dependency_order() {
        let loaded = load_str(
            "t.yaml",
            r#"
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: base}
spec:
  endpointName: sd-base
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-assets/model.tar.gz"}
  instanceType: ml.g4dn.2xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sm
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
---
apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {name: assets}
spec: {bucketName: sdop-assets, region: us-east-1}
"#,
        );
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let plan = plan_all(
            &loaded.manifests,
            &loaded.graph,
            &cloud::Offline::default(),
            &HashMap::new(),
        )
        .await
        .unwrap();
        assert!(plan
            .actions
            .iter()
            .all(|a| a.operation == Operation::Create));
        let first = &plan.actions[0];
        assert_eq!(first.resource.to_string(), "Bucket/assets");
        assert_eq!(
            plan.actions.last().unwrap().aws_type,
            crate::model::object::AwsType::SageMakerEndpoint
        );
    }
}
