//! Issue #24: every finetune registered in the Model Registry, evaluated on a staging endpoint,
//! promoted by rule or by a person, with its evidence kept; the production endpoint serves the
//! latest approved version and goes back when that one is rejected. Run against the local AWS
//! (examples/promote-with-evidence); every fact is read back with the AWS SDK, not through sdop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aws_sdk_sagemaker::types::{ModelApprovalStatus, ModelPackageType};
use serde_json::{json, Value};

use crate::support::daemon::{leak_audit, sdop_bin};
use crate::support::local_aws::{repo_root, LocalAws};

const GROUP: &str = "sdop-example-portrait-auto";
const STAGING: &str = "sdop-example-portrait-auto-staging";
const PRODUCTION: &str = "sdop-example-portrait-auto";
const BUCKET: &str = "sdop-example-promote";

fn configure(aws: &LocalAws) {
    aws.configure(json!({
        "training_seconds": 0.5, "endpoint_create_seconds": 0.3,
        "endpoint_update_seconds": 0.3, "endpoint_delete_seconds": 0.2,
        "invocation_seconds": 0.2
    }));
}

/// The promotion example in a directory of its own (the manifest is edited by the tests), with
/// train-then-deploy's placeholders beside it where its paths expect them.
struct Chain {
    _work: tempfile::TempDir,
    dir: PathBuf,
    manifest: PathBuf,
    state: tempfile::TempDir,
}

impl Chain {
    fn new(approval: &str) -> Chain {
        let work = tempfile::tempdir().unwrap();
        let examples = repo_root().join("examples");
        copy_dir(
            &examples.join("train-then-deploy"),
            &work.path().join("train-then-deploy"),
        );
        let dir = work.path().join("promote");
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("promote.yaml");
        let text = std::fs::read_to_string(
            examples.join("promote-with-evidence/promote-with-evidence.yaml"),
        )
        .unwrap();
        assert!(text.contains("approval: automatic") && text.contains("maxTrainSteps: 800"));
        std::fs::write(
            &manifest,
            text.replace(
                "\n  approval: automatic\n",
                &format!("\n  approval: {approval}\n"),
            ),
        )
        .unwrap();
        Chain {
            _work: work,
            dir,
            manifest,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.manifest).unwrap();
        assert!(text.contains(from), "{from:?} not in the manifest");
        std::fs::write(&self.manifest, text.replacen(from, to, 1)).unwrap();
    }

    fn sdop(&self, aws: &LocalAws, args: &[&str]) -> Output {
        Command::new(sdop_bin())
            .args(args)
            .env("AWS_ENDPOINT_URL", &aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", "AKIDPROMOTION")
            .env("AWS_SECRET_ACCESS_KEY", "local-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SDOP_STATE_DIR", self.state.path())
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `sdop apply --wait`; returns its exit code and output.
    fn apply(&self, aws: &LocalAws) -> (Option<i32>, String) {
        let out = self.sdop(
            aws,
            &[
                "apply",
                self.dir.to_str().unwrap(),
                "--wait",
                "--timeout",
                "3m",
            ],
        );
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    fn converge(&self, aws: &LocalAws) -> String {
        let (code, text) = self.apply(aws);
        assert_eq!(code, Some(0), "apply did not converge:\n{text}");
        let plan = self.sdop(aws, &["plan", self.dir.to_str().unwrap()]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "the plan after convergence is not empty:\n{}",
            String::from_utf8_lossy(&plan.stdout)
        );
        text
    }

    /// The status of `resource` as `sdop get -o json` shows it.
    fn status(&self, aws: &LocalAws, resource: &str) -> Value {
        let out = self.sdop(aws, &["get", resource, "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: Value = serde_json::from_slice(&out.stdout).unwrap();
        match value {
            Value::Array(mut list) => list.remove(0),
            other => other,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A registry version as the SDK reads it.
#[derive(Debug)]
struct Version {
    number: i32,
    approval: String,
    description: String,
    model_data: String,
    approval_description: String,
}

async fn versions(aws: &LocalAws) -> Vec<Version> {
    let sm = aws.sagemaker().await;
    let listed = sm
        .list_model_packages()
        .model_package_group_name(GROUP)
        .model_package_type(ModelPackageType::Versioned)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for summary in listed.model_package_summary_list() {
        let described = sm
            .describe_model_package()
            .model_package_name(summary.model_package_arn().unwrap())
            .send()
            .await
            .unwrap();
        out.push(Version {
            number: summary.model_package_version().unwrap(),
            approval: summary
                .model_approval_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            description: summary
                .model_package_description()
                .unwrap_or_default()
                .to_string(),
            model_data: described
                .inference_specification()
                .and_then(|s| s.containers().first())
                .and_then(|c| c.model_data_url())
                .unwrap_or_default()
                .to_string(),
            approval_description: described
                .approval_description()
                .unwrap_or_default()
                .to_string(),
        });
    }
    out.sort_by_key(|v| v.number);
    out
}

/// The model data the endpoint serves now (its config's model), read with the SDK.
async fn served(aws: &LocalAws, endpoint: &str) -> String {
    let sm = aws.sagemaker().await;
    let config = sm
        .describe_endpoint()
        .endpoint_name(endpoint)
        .send()
        .await
        .unwrap()
        .endpoint_config_name()
        .unwrap()
        .to_string();
    let model = sm
        .describe_endpoint_config()
        .endpoint_config_name(config)
        .send()
        .await
        .unwrap()
        .production_variants()[0]
        .model_name()
        .unwrap()
        .to_string();
    sm.describe_model()
        .model_name(model)
        .send()
        .await
        .unwrap()
        .primary_container()
        .and_then(|c| c.model_data_url())
        .unwrap()
        .to_string()
}

async fn s3_bytes(aws: &LocalAws, uri: &str) -> Vec<u8> {
    let (bucket, key) = uri.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    aws.s3()
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

/// Width and height of a PNG (its IHDR chunk), after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

async fn set_approval(aws: &LocalAws, number: i32, status: ModelApprovalStatus, why: &str) {
    let arn = format!("arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/{number}");
    aws.sagemaker()
        .await
        .update_model_package()
        .model_package_arn(arn)
        .model_approval_status(status)
        .approval_description(why)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_finetune_is_promoted_and_a_blank_one_rejected_while_production_keeps_serving() {
    let aws = LocalAws::start();
    configure(&aws);
    let chain = Chain::new("automatic");

    // Version 1: registered, evaluated on staging, approved by rule, served by production.
    let log = chain.converge(&aws);
    let v = versions(&aws).await;
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].approval, "Approved", "{v:?}");
    assert!(v[0].description.starts_with("sdop candidate "), "{v:?}");
    assert!(
        v[0].approval_description.contains("Approved by rule")
            && v[0].approval_description.contains("sha256:"),
        "{v:?}"
    );
    assert_eq!(served(&aws, PRODUCTION).await, v[0].model_data);
    assert_eq!(served(&aws, STAGING).await, v[0].model_data);
    let status = chain.status(&aws, "ModelPromotion/portrait-auto");
    let outputs = &status["outputs"];
    assert_eq!(outputs["approvedVersion"], "1", "{status:#}");
    assert_eq!(outputs["verdict"], "passed", "{status:#}");
    let evidence: Value =
        serde_json::from_slice(&s3_bytes(&aws, outputs["evidence"].as_str().unwrap()).await)
            .unwrap();
    assert_eq!(
        evidence["cases"].as_array().unwrap().len(),
        6,
        "{evidence:#}"
    );
    assert_eq!(evidence["summary"]["decoded"], 6, "{evidence:#}");
    for case in evidence["cases"].as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        let image = s3_bytes(&aws, &format!("s3://{BUCKET}/{key}")).await;
        assert_eq!(png_size(&image), (512, 512), "{case:#}");
        assert!(case["latencySeconds"].as_f64().is_some(), "{case:#}");
        assert!(case["costUsd"].as_f64().is_some(), "{case:#}");
    }
    let sheet_v1 = s3_bytes(&aws, outputs["contactSheet"].as_str().unwrap()).await;
    let (one_column, _) = png_size(&sheet_v1);
    assert!(log.contains("promoted version 1"), "{log}");

    // Version 2 draws black squares on staging: rejected with the measured reason; production
    // keeps serving version 1.
    aws.configure(json!({"blank_images": [STAGING]}));
    chain.edit("maxTrainSteps: 800", "maxTrainSteps: 900");
    chain.converge(&aws);
    let v = versions(&aws).await;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[1].approval, "Rejected", "{v:?}");
    assert!(
        v[1].approval_description.contains("blank"),
        "the measured reason is in the registry: {v:?}"
    );
    assert_ne!(v[0].model_data, v[1].model_data);
    assert_eq!(served(&aws, PRODUCTION).await, v[0].model_data);
    assert_eq!(served(&aws, STAGING).await, v[1].model_data);
    let status = chain.status(&aws, "ModelPromotion/portrait-auto");
    let outputs = &status["outputs"];
    assert_eq!(outputs["approvedVersion"], "1", "{status:#}");
    assert!(
        outputs["verdict"].as_str().unwrap().contains("blank"),
        "{status:#}"
    );
    let evidence: Value =
        serde_json::from_slice(&s3_bytes(&aws, outputs["evidence"].as_str().unwrap()).await)
            .unwrap();
    assert_eq!(evidence["verdict"]["passed"], false);
    assert_eq!(evidence["summary"]["blank"], 6, "{evidence:#}");
    assert!(evidence["baseline"].as_str().unwrap().contains("version 1"));
    // The contact sheet puts production's images beside the candidate's: two columns.
    let sheet_v2 = s3_bytes(&aws, outputs["contactSheet"].as_str().unwrap()).await;
    assert!(png_size(&sheet_v2).0 > one_column, "a second column");
    let history: Vec<&str> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        history.iter().any(|h| h.starts_with("version 2 Rejected")),
        "{history:#?}"
    );
    aws.configure(json!({"blank_images": []}));
    let (models, configs) = leak_audit(&aws, &[STAGING, PRODUCTION], &[]).await;
    assert!(models.len() >= 2 && configs.len() >= 2, "{models:?}");

    // Pruned under deletionPolicy Delete: sdop's versions, the group and the evidence go
    // (under the default, Retain, they stay as the record of what was approved).
    chain.edit(
        "\n  approval: automatic\n",
        "\n  approval: automatic\n  deletionPolicy: Delete\n",
    );
    chain.converge(&aws);
    let text = std::fs::read_to_string(&chain.manifest).unwrap();
    // The promotion and the production endpoint after it are the file's last documents.
    let promotion_at = text.find("kind: ModelPromotion").unwrap();
    let document_at = text[..promotion_at].rfind("\n---").unwrap();
    std::fs::write(&chain.manifest, &text[..document_at]).unwrap();
    let out = chain.sdop(
        &aws,
        &["apply", chain.dir.to_str().unwrap(), "--prune", "--wait"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let group = aws
        .sagemaker()
        .await
        .describe_model_package_group()
        .model_package_group_name(GROUP)
        .send()
        .await;
    assert!(group.is_err(), "the group is deleted: {group:?}");
    let left = aws
        .s3()
        .await
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("sdop/evidence/{GROUP}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "evidence left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_approval_by_commit_by_sdop_approve_and_in_the_console_and_a_rejection_rolls_back() {
    let aws = LocalAws::start();
    configure(&aws);
    let chain = Chain::new("manual");

    // Version 1 passes its evaluation and waits for a person: apply --wait returns at once,
    // production has nothing to serve yet and says how to approve.
    let (code, text) = chain.apply(&aws);
    assert_eq!(code, Some(1), "{text}");
    let v = versions(&aws).await;
    assert_eq!(
        (v.len(), v[0].approval.as_str()),
        (1, "PendingManualApproval"),
        "{v:?}"
    );
    let production = chain.status(&aws, "Endpoint/portrait-auto");
    assert_eq!(production["phase"], "Pending", "{production:#}");
    assert!(
        production["message"]
            .as_str()
            .unwrap()
            .contains("sdop approve ModelPromotion/portrait-auto 1"),
        "{production:#}"
    );
    let promotion = chain.status(&aws, "ModelPromotion/portrait-auto");
    assert_eq!(
        promotion["outputs"]["awaitingApproval"], "1",
        "{promotion:#}"
    );

    // By commit: the version listed in the manifest.
    chain.edit(
        "\n  approval: manual\n",
        "\n  approval: manual\n  approvedVersions: [1]\n",
    );
    chain.converge(&aws);
    let v = versions(&aws).await;
    assert_eq!(v[0].approval, "Approved");
    assert!(v[0].approval_description.contains("by commit"), "{v:?}");
    assert_eq!(served(&aws, PRODUCTION).await, v[0].model_data);

    // By `sdop approve`: who, why and the evidence digest go into the registry.
    chain.edit("maxTrainSteps: 800", "maxTrainSteps: 900");
    let (code, text) = chain.apply(&aws);
    assert_eq!(code, Some(0), "production still serves version 1: {text}");
    assert_eq!(versions(&aws).await[1].approval, "PendingManualApproval");
    let out = chain.sdop(
        &aws,
        &[
            "approve",
            "ModelPromotion/portrait-auto",
            "2",
            "--reason",
            "faces look right",
            "--by",
            "alice",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    chain.converge(&aws);
    let v = versions(&aws).await;
    assert_eq!(v[1].approval, "Approved");
    assert!(
        v[1].approval_description.contains("alice")
            && v[1].approval_description.contains("faces look right")
            && v[1].approval_description.contains("sha256:"),
        "{v:?}"
    );
    assert_eq!(served(&aws, PRODUCTION).await, v[1].model_data);
    // A version that does not exist is refused, naming those that do.
    let out = chain.sdop(
        &aws,
        &[
            "approve",
            "ModelPromotion/portrait-auto",
            "9",
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("versions: 1, 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In the console (UpdateModelPackage by someone else): read back and served.
    chain.edit("maxTrainSteps: 900", "maxTrainSteps: 1000");
    let (code, text) = chain.apply(&aws);
    assert_eq!(code, Some(0), "{text}");
    set_approval(&aws, 3, ModelApprovalStatus::Approved, "console: bob").await;
    chain.converge(&aws);
    let v = versions(&aws).await;
    assert_eq!(served(&aws, PRODUCTION).await, v[2].model_data);
    assert_eq!(
        chain.status(&aws, "ModelPromotion/portrait-auto")["outputs"]["approvedBy"],
        "console: bob"
    );

    // Approved -> Rejected in the console: production goes back to version 2, loudly.
    set_approval(
        &aws,
        3,
        ModelApprovalStatus::Rejected,
        "console: bob, artefacts",
    )
    .await;
    let text = chain.converge(&aws);
    assert_eq!(served(&aws, PRODUCTION).await, v[1].model_data);
    assert!(text.contains("ROLLED BACK"), "{text}");
    let promotion = chain.status(&aws, "ModelPromotion/portrait-auto");
    assert_eq!(
        promotion["outputs"]["approvedVersion"], "2",
        "{promotion:#}"
    );
    let history: Vec<&str> = promotion["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for expected in [
        "promoted version 1",
        "promoted version 2",
        "promoted version 3",
        "ROLLED BACK: version 3",
    ] {
        assert!(
            history.iter().any(|h| h.starts_with(expected)),
            "{expected:?} not in {history:#?}"
        );
    }
    // A version the manifest approves, rejected in the console: the person who decided last
    // wins (sdop does not approve it again) and the stale line of the manifest is pointed out.
    set_approval(&aws, 1, ModelApprovalStatus::Rejected, "console: bob, old").await;
    chain.converge(&aws);
    assert_eq!(versions(&aws).await[0].approval, "Rejected");
    let promotion = chain.status(&aws, "ModelPromotion/portrait-auto");
    assert_eq!(promotion["phase"], "Ready", "{promotion:#}");
    assert!(
        promotion["message"]
            .as_str()
            .unwrap()
            .contains("version 1 is Rejected in the registry"),
        "{promotion:#}"
    );
    let production = chain.status(&aws, "Endpoint/portrait-auto");
    let served_history = production["history"].as_array().unwrap();
    assert!(
        served_history.len() >= 4,
        "every model production served, in order: {production:#}"
    );
    assert!(served_history.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("version 2"));
}
