//! Parse + validate + plan of generated manifests against an in-memory observed state.
//!
//! `cargo bench --bench plan_1000` (optionally `-- 1000 2000 4000` for other sizes).
//! Prints wall and CPU time per phase and the peak RSS, so "under 1 s CPU for 1,000" and
//! "memory proportional to input" can be read off one run.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use sdop::engine::cloud::InMemory;
use sdop::engine::plan::{ObjectKey, ObservedObject, Ownership};
use sdop::engine::plan_all;
use sdop::manifest::load::load_str;
use sdop::manifest::ResourceId;
use sdop::state::{Phase, ResourceStatus};

type Recorded = HashMap<ResourceId, ResourceStatus>;

const ROLE: &str = "arn:aws:iam::123456789012:role/sdop-bench";

/// Ten manifests of mixed kinds with references, per group.
fn group(g: usize) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {{name: b{g}}}
spec: {{bucketName: sdop-bench-{g}, region: us-east-1, tags: {{team: ml}}}}
---
apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {{name: b{g}x}}
spec: {{bucketName: sdop-bench-{g}-x, region: us-east-1, deletionPolicy: Delete}}
---
apiVersion: sdop/v1alpha1
kind: ImageRepository
metadata: {{name: r{g}}}
spec: {{repositoryName: sd/inference-{g}, imageTag: latest}}
---
apiVersion: sdop/v1alpha1
kind: Stack
metadata: {{name: s{g}}}
spec:
  stackName: webui-{g}
  template: {{url: "https://sdop-bench-{g}.s3.us-east-1.amazonaws.com/templates/main.yaml"}}
  parameters:
    S3Bucket: {{valueFrom: {{resource: Bucket/b{g}, output: bucketName}}}}
    S3Key: ""
    AvailabilityZones: [us-east-1a, us-east-1b]
  capabilities: [CAPABILITY_IAM]
---
apiVersion: sdop/v1alpha1
kind: ModelArchive
metadata: {{name: base{g}}}
spec:
  output: s3://sdop-bench-{g}/base/
  format: uncompressed
  sources:
    - {{s3: "s3://sdop-bench-{g}/ckpt/v1-5-pruned.ckpt", path: Stable-diffusion/}}
---
apiVersion: sdop/v1alpha1
kind: DreamboothJob
metadata: {{name: j{g}}}
spec:
  trainingJobName: jp-{g}
  image: {{repository: r{g}}}
  instanceType: ml.g4dn.2xlarge
  roleArn: {ROLE}
  sourceCheckpoint: {{modelArchive: base{g}, file: Stable-diffusion/v1-5-pruned.ckpt}}
  modelName: jp-style-{g}
  maxTrainSteps: 2500
  concepts:
    - {{datasetS3Uri: "s3://sdop-bench-{g}/dataset/", instanceToken: jpstyle girl, classToken: girl}}
  checkpointS3Uri: s3://sdop-bench-{g}/models/
---
apiVersion: sdop/v1alpha1
kind: ModelArchive
metadata: {{name: tuned{g}}}
spec:
  output: s3://sdop-bench-{g}/tuned/model.tar.gz
  sources:
    - {{dreamboothJob: j{g}, path: Stable-diffusion/}}
---
apiVersion: sdop/v1alpha1
kind: ModelArchive
metadata: {{name: extra{g}}}
spec:
  output: s3://sdop-bench-{g}-x/extra/model.tar.gz
  sources:
    - {{s3: "s3://sdop-bench-{g}/controlnet/", path: ControlNet/}}
---
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: e{g}a}}
spec:
  endpointName: sd-tuned-{g}
  image: {{repository: r{g}}}
  modelData: {{modelArchive: tuned{g}}}
  instanceType: ml.g4dn.2xlarge
  executionRoleArn: {ROLE}
  environment: {{api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}}
  asyncInference: {{outputPath: "s3://sdop-bench-{g}/asyncinvoke/out/"}}
---
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: e{g}b}}
spec:
  endpointName: sd-base-{g}
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-bench-{g}-x/extra/model.tar.gz"}}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: {ROLE}
  environment: {{api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}}
"#
    )
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn peak_rss_mib() -> f64 {
    rss_mib("VmHWM:")
}

/// Resident memory now (`VmRSS`) or at its peak (`VmHWM`), MiB.
fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Recorded state: every resource Ready with its outputs (so nothing waits on a dependency).
fn recorded_state(loaded: &sdop::manifest::Loaded) -> Recorded {
    let mut recorded = Recorded::new();
    for m in &loaded.manifests {
        let g: usize =
            m.id.name
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse()
                .unwrap_or(0);
        let mut outputs = BTreeMap::new();
        match m.id.kind.as_str() {
            "ImageRepository" => {
                outputs.insert("imageUri".to_string(), format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/sd/inference-{g}@sha256:{g:064}"));
            }
            "ModelArchive" => {
                outputs.insert("identity".to_string(), format!("{g:016x}"));
            }
            "DreamboothJob" => {
                outputs.insert(
                    "latestCheckpoint".to_string(),
                    format!("s3://sdop-bench-{g}/models/jp-style-{g}_2500.ckpt"),
                );
            }
            _ => {}
        }
        let mut status = ResourceStatus::new(&m.id);
        status.set_phase(Phase::Ready, "Converged", "");
        status.outputs = outputs;
        recorded.insert(m.id.clone(), status);
    }
    recorded
}

/// Observed state: half the groups fully converged in AWS, the rest absent.
async fn converge_half(loaded: &sdop::manifest::Loaded, cloud: &InMemory, recorded: &Recorded) {
    // Plan once against the outputs, then record every desired object of even groups as existing.
    let plan = plan_all(&loaded.manifests, &loaded.graph, cloud, recorded)
        .await
        .expect("plan");
    for action in plan.actions {
        let g: usize = action
            .resource
            .name
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .unwrap_or(0);
        if g.is_multiple_of(2) && !action.name.contains("known after apply") {
            let fields = action
                .changes
                .iter()
                .filter_map(|c| c.after.clone().map(|v| (c.field.clone(), v)))
                .collect();
            let owner = ResourceId::new(action.resource.kind.clone(), action.resource.name.clone());
            cloud.put(ObservedObject::new(
                ObjectKey::new(action.aws_type, action.name.clone()),
                fields,
                Ownership::Owned { resource: owner },
            ));
        }
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 2000, 4000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12} {:>12}",
        "n",
        "input_KiB",
        "parse+val",
        "plan",
        "total_cpu",
        "wall",
        "actions",
        "rss_load_MiB",
        "peak_rss_MiB"
    );
    for n in sizes {
        let text: String = (0..n / 10).map(group).collect::<Vec<_>>().join("---\n");
        let cpu0 = cpu_seconds();
        let wall0 = Instant::now();
        let loaded = load_str("bench.yaml", &text);
        let parsed = wall0.elapsed();
        let cpu_load = cpu_seconds() - cpu0;
        let rss_after_load = rss_mib("VmRSS:");
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics.first());
        assert_eq!(loaded.manifests.len(), n);
        let cloud = InMemory::default();
        let recorded = recorded_state(&loaded);
        runtime.block_on(converge_half(&loaded, &cloud, &recorded));
        let cpu1 = cpu_seconds();
        let plan_start = Instant::now();
        let plan = runtime
            .block_on(plan_all(
                &loaded.manifests,
                &loaded.graph,
                &cloud,
                &recorded,
            ))
            .unwrap();
        let planned = plan_start.elapsed();
        let cpu = cpu_load + (cpu_seconds() - cpu1);
        println!(
            "{n:>6} {:>9} {:>9.3}s {:>9.3}s {:>9.2}s {:>9.3}s {:>9} {:>12.1} {:>12.1}",
            text.len() / 1024,
            parsed.as_secs_f64(),
            planned.as_secs_f64(),
            cpu,
            (parsed + planned).as_secs_f64(),
            plan.actions.len(),
            rss_after_load,
            peak_rss_mib()
        );
    }
}
