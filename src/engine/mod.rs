//! The engine: graph of references, content-hash naming, the cloud seam, the pure planner.
//!
//! Flow of `sdop plan`: manifests → [`graph::Graph`] (order, dangling refs, cycles) →
//! for each resource in order: [`resolve::Outputs`] of its references → the kind's desired
//! AWS objects → what the [`cloud::Cloud`] observes → [`plan::plan_resource`] (pure).

pub mod cloud;
pub mod graph;
pub mod naming;
pub mod plan;
pub mod resolve;

use crate::error::Result;
use crate::kinds::DesiredContext;
use crate::manifest::Manifest;

pub use plan::{Action, Operation, Plan};

/// Observes every resource in graph order and plans it. Reads only; never mutates.
pub async fn plan_all(
    manifests: &[Manifest],
    graph: &graph::Graph,
    cloud: &dyn cloud::Cloud,
) -> Result<Plan> {
    let mut outputs = resolve::Outputs::default();
    let mut actions = Vec::new();
    for &index in graph.order() {
        let manifest = &manifests[index];
        let mut known = manifest.handler.spec_outputs(manifest.spec.as_ref());
        if let Some(observed) = cloud.outputs(&manifest.id).await? {
            known.extend(observed);
        }
        outputs.insert(manifest.id.clone(), known);
        for (id, values) in cloud.external_values(&manifest.spec_json).await? {
            outputs.insert(id, values);
        }
        let ctx = DesiredContext {
            id: &manifest.id,
            metadata: &manifest.metadata,
            spec_hash: &manifest.spec_hash,
            outputs: &outputs,
            local_files: &manifest.local_files,
        };
        let mut desired = Vec::new();
        for object in manifest.handler.desired(manifest.spec.as_ref(), &ctx) {
            desired.push(cloud.resolve(&manifest.id, object).await?);
        }
        let region = manifest.handler.region(manifest.spec.as_ref());
        let mut observed = Vec::new();
        for object in &desired {
            if let Some(name) = object.name.known() {
                let key = plan::ObjectKey::new(object.aws_type, name);
                if let Some(found) = cloud.read(&key, region.as_deref()).await? {
                    observed.push(found);
                }
            }
        }
        for owned in cloud.owned_by(&manifest.id).await? {
            if !observed.iter().any(|o| o.key == owned.key) {
                observed.push(owned);
            }
        }
        actions.extend(plan::plan_resource(&manifest.id, &desired, &observed));
    }
    Ok(Plan { actions })
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
        let plan = plan_all(&loaded.manifests, &loaded.graph, &cloud::Offline)
            .await
            .unwrap();
        assert!(plan
            .actions
            .iter()
            .all(|a| a.operation == Operation::Create));
        let first = &plan.actions[0];
        assert_eq!(first.resource.to_string(), "Bucket/assets");
        assert_eq!(plan.actions.last().unwrap().aws_type, "sagemaker:endpoint");
    }
}
