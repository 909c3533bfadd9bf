//! `sdop run` as a real process against the local AWS: watch and converge, edits, bad edits,
//! pruning, the train → package → deploy chain, kill -9 mid-rollout, two daemons with a lease,
//! SIGTERM. Every test ends with a leak audit.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::daemon::{
    leak_audit, mutations_by, reference_hmac_sha256, Daemon, WebhookSink,
};
use crate::support::local_aws::LocalAws;

const ROLE: &str = "arn:aws:iam::123456789012:role/sdop-test";
const API: &str = "https://api-id.execute-api.us-east-1.amazonaws.com/prod";
const WAIT: Duration = Duration::from_secs(60);

fn write(dir: &Path, file: &str, text: &str) {
    // As editors do: write a temp file, then rename it over the manifest.
    let tmp = dir.join(format!(".{file}.swp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn bucket(name: &str, bucket: &str, extra: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: {name}}}\nspec:\n  bucketName: {bucket}\n  region: us-east-1\n{extra}")
}

fn repository(name: &str, repo: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {{name: {name}}}\nspec:\n  repositoryName: {repo}\n  region: us-east-1\n")
}

fn endpoint(env_value: &str) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-base
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-it-assets/model.tar.gz"}}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: {ROLE}
  environment: {{MODE: "{env_value}", api_endpoint: "{API}"}}
"#
    )
}

fn condition(resource: &Value, kind: &str) -> Option<Value> {
    resource["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

async fn bucket_tags(aws: &LocalAws, bucket: &str) -> Vec<(String, String)> {
    let out = aws
        .s3()
        .await
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}

/// Waits until the bucket carries `key=value` (an edit reached AWS).
async fn wait_for_tag(aws: &LocalAws, bucket: &str, key: &str, value: &str, daemon: &Daemon) {
    let deadline = Instant::now() + WAIT;
    let want = (key.to_string(), value.to_string());
    while !bucket_tags(aws, bucket).await.contains(&want) {
        assert!(
            Instant::now() < deadline,
            "{key}={value} never reached {bucket}:\n{}",
            crate::support::daemon::tail(&daemon.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_converges_edits_survives_bad_edits_and_prunes() {
    let aws = LocalAws::start();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = dir.path();
    let daemon = Daemon::start(
        &aws,
        &[m],
        &state.path().join("a"),
        "AKIDDAEMONA",
        &["--prune"],
    );
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);

    // Write manifests: converged without any command.
    write(
        m,
        "bucket.yaml",
        &bucket("assets", "sdop-run-assets", "  deletionPolicy: Delete\n"),
    );
    write(m, "repo.yaml", &repository("inference", "sd-inference"));
    daemon.wait_ready(&["Bucket/assets", "ImageRepository/inference"], WAIT);
    assert!(aws.bucket_exists("sdop-run-assets").await);
    daemon.wait_for("readyz 200", WAIT, |_| {
        daemon.get("/readyz").unwrap().0 == 200
    });

    // Edit: the change reaches AWS.
    write(
        m,
        "bucket.yaml",
        &bucket(
            "assets",
            "sdop-run-assets",
            "  deletionPolicy: Delete\n  tags: {team: diffusion}\n",
        ),
    );
    wait_for_tag(&aws, "sdop-run-assets", "team", "diffusion", &daemon).await;

    // Break a file: its resource keeps its last good spec, with the error in its status and in
    // the daemon's diagnostics; nothing is deleted.
    write(
        m,
        "repo.yaml",
        "apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {name: inference\nspec: [\n",
    );
    let status = daemon.wait_for("the broken file reported", WAIT, |s| {
        s["resources"].as_array().unwrap().iter().any(|r| {
            r["name"] == "inference"
                && condition(r, "ManifestValid").is_some_and(|c| c["status"] == false)
        })
    });
    let diagnostics = status["daemon"]["diagnostics"].to_string();
    assert!(diagnostics.contains("repo.yaml:"), "{diagnostics}");
    let repo = daemon.resource("ImageRepository/inference").unwrap();
    let message = condition(&repo, "ManifestValid").unwrap()["message"].to_string();
    assert!(
        message.contains("repo.yaml:") && message.contains("last good spec"),
        "{message}"
    );
    assert_eq!(
        repo["phase"], "Ready",
        "still served from its last good spec"
    );
    // `sdop get` (issue #23) shows it as invalid, not as "all AWS objects match the manifest",
    // says it asked the daemon, and lists the daemon's manifest problems.
    let out = std::process::Command::new(crate::support::daemon::sdop_bin())
        .arg("get")
        .env("SDOP_STATE_DIR", &daemon.state)
        .output()
        .unwrap();
    let (table, said) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{said}");
    let line = table
        .lines()
        .find(|l| l.starts_with("ImageRepository/inference"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("manifest invalid, running on its last good spec: ")
            && line.contains("repo.yaml:"),
        "{table}"
    );
    assert!(
        said.starts_with(&format!("status from the daemon at {}", daemon.url))
            && said.contains("invalid manifests, as the daemon last read them")
            && said.contains("repo.yaml:"),
        "{said}"
    );
    let ecr = aws.ecr().await;
    let repos = ecr.describe_repositories().send().await.unwrap();
    assert_eq!(repos.repositories().len(), 1, "nothing deleted");
    assert!(daemon.logs().contains("invalid manifest: "), "logged");
    // A broken file blocks pruning, and the other resources go on: delete nothing, edit the bucket.
    write(
        m,
        "bucket.yaml",
        &bucket(
            "assets",
            "sdop-run-assets",
            "  deletionPolicy: Delete\n  tags: {team: images}\n",
        ),
    );
    wait_for_tag(&aws, "sdop-run-assets", "team", "images", &daemon).await;

    // Fix it: resumes.
    write(m, "repo.yaml", &repository("inference", "sd-inference"));
    daemon.wait_for("the fixed file resumed", WAIT, |s| {
        s["daemon"]["diagnostics"].as_array().unwrap().is_empty()
            && s["resources"].as_array().unwrap().iter().any(|r| {
                r["name"] == "inference"
                    && condition(r, "ManifestValid").is_some_and(|c| c["status"] == true)
            })
    });

    // Delete a file with pruning on: its resource is deleted (deletionPolicy Delete).
    std::fs::remove_file(m.join("bucket.yaml")).unwrap();
    let deadline = Instant::now() + WAIT;
    while aws.bucket_exists("sdop-run-assets").await {
        assert!(Instant::now() < deadline, "not pruned:\n{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.wait_for("the pruned status removed", WAIT, |s| {
        !s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "Bucket")
    });
    assert_eq!(daemon.phase("ImageRepository/inference"), "Ready");

    // Metrics cover reconciles, AWS calls and phases.
    let (code, metrics) = daemon.get("/metrics").unwrap();
    assert_eq!(code, 200);
    for family in [
        "sdop_reconciles_total{kind=\"Bucket\",outcome=\"ok\"}",
        "sdop_reconcile_duration_seconds_bucket",
        "sdop_aws_calls_total{api=\"s3:CreateBucket\",outcome=\"ok\"} 1",
        "sdop_resources{phase=\"Ready\"} 1",
        "sdop_leader 1",
    ] {
        assert!(metrics.contains(family), "missing {family}:\n{metrics}");
    }
    leak_audit(&aws, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_follows_the_train_then_deploy_chain_without_any_command() {
    let aws = LocalAws::start();
    aws.configure(json!({"training_seconds": 1.0, "endpoint_create_seconds": 0.5, "endpoint_update_seconds": 0.5}));
    let state = tempfile::tempdir().unwrap();
    let example = crate::support::local_aws::repo_root().join("examples/train-then-deploy");
    let hook = WebhookSink::start();
    let daemon = Daemon::start(
        &aws,
        &[&example],
        &state.path().join("a"),
        "AKIDCHAIN",
        &["--notify-webhook", &hook.url],
    );
    let status = daemon.wait_ready(
        &[
            "Bucket/example-train",
            "ModelArchive/portrait-base",
            "Dataset/portrait",
            "DreamboothJob/portrait",
            "ModelArchive/portrait",
            "Endpoint/portrait",
        ],
        Duration::from_secs(120),
    );
    let endpoint = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Endpoint")
        .unwrap()
        .clone();
    assert!(
        endpoint["outputs"].to_string().contains("portrait"),
        "{endpoint:#}"
    );
    // The events tell the story.
    let logs = daemon.logs();
    for event in ["TrainingCompleted", "RolloutStarted", "RolloutSucceeded"] {
        assert!(
            logs.contains(event),
            "no {event} in logs:\n{}",
            crate::support::daemon::tail(&logs, 40)
        );
    }
    // And the webhook hears it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = [
        "training.completed DreamboothJob/portrait",
        "rollout.started Endpoint/portrait",
        "rollout.succeeded Endpoint/portrait",
    ];
    while !expected
        .iter()
        .all(|e| hook.events().iter().any(|h| h == e))
    {
        assert!(Instant::now() < deadline, "webhook got {:?}", hook.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its hourly cost is exported (ml.g4dn.2xlarge x1 in the example, sdop's price table).
    let (_, metrics) = daemon.get("/metrics").unwrap();
    assert!(
        metrics.contains("sdop_hourly_cost_dollars{resource=\"Endpoint/portrait\"} 0.94"),
        "{metrics}"
    );
    let (models, configs) = leak_audit(&aws, &["sdop-example-portrait"], &[]).await;
    assert_eq!(
        (models.len(), configs.len()),
        (1, 1),
        "{models:?} {configs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_rollout_then_restart_converges_without_duplicates() {
    let aws = LocalAws::start();
    aws.configure(json!({"endpoint_create_seconds": 0.5, "endpoint_update_seconds": 3.0}));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = dir.path();
    write(m, "endpoint.yaml", &endpoint("v1"));
    let mut daemon = Daemon::start(&aws, &[m], &state.path().join("a"), "AKIDKILL", &[]);
    daemon.wait_ready(&["Endpoint/base"], WAIT);

    // Roll out v2 and kill -9 as soon as AWS accepted the UpdateEndpoint.
    aws.reset_calls();
    write(m, "endpoint.yaml", &endpoint("v2"));
    let deadline = Instant::now() + WAIT;
    while aws.calls().of("sagemaker:UpdateEndpoint") == 0 {
        assert!(Instant::now() < deadline, "no rollout:\n{}", daemon.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill9();
    let sm = aws.sagemaker().await;
    let during = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    assert_eq!(
        during.endpoint_status().unwrap().as_str(),
        "Updating",
        "killed mid-rollout"
    );

    // Restart on the same state: converges, with no duplicate models, configs or endpoints.
    let daemon = Daemon::start(&aws, &[m], &state.path().join("a"), "AKIDKILL", &[]);
    let deadline = Instant::now() + WAIT;
    loop {
        let live = sm
            .describe_endpoint()
            .endpoint_name("sd-base")
            .send()
            .await
            .unwrap();
        if live.endpoint_status().unwrap().as_str() == "InService"
            && daemon.phase("Endpoint/base") == "Ready"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        aws.calls().of("sagemaker:CreateModel"),
        1,
        "one model for v2, never twice"
    );
    assert_eq!(aws.calls().of("sagemaker:CreateEndpointConfig"), 1);
    let (models, configs) = leak_audit(&aws, &["sd-base"], &[]).await;
    // v2's model and config, and v1's kept for rollback: no more.
    assert_eq!(models.len(), 2, "{models:?}");
    assert_eq!(configs.len(), 2, "{configs:?}");
    let live = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    let serving = live.endpoint_config_name().unwrap().to_string();
    let config = sm
        .describe_endpoint_config()
        .endpoint_config_name(&serving)
        .send()
        .await
        .unwrap();
    let model = config.production_variants()[0]
        .model_name()
        .unwrap()
        .to_string();
    let env = sm.describe_model().model_name(&model).send().await.unwrap();
    assert_eq!(
        env.primary_container().unwrap().environment().unwrap()["MODE"],
        "v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_elect_one_leader_and_the_other_takes_over_after_the_ttl() {
    let aws = LocalAws::start();
    aws.s3()
        .await
        .create_bucket()
        .bucket("sdop-lease")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = dir.path();
    write(m, "bucket.yaml", &bucket("assets", "sdop-lease-assets", ""));
    write(m, "repo.yaml", &repository("inference", "sd-inference"));
    let lease = [
        "--lease",
        "s3://sdop-lease/sdop/leader.json",
        "--lease-ttl",
        "3s",
        "--lease-renew",
        "1s",
    ];
    let mut a = Daemon::start(&aws, &[m], &state.path().join("a"), "AKIDLEASEA", &lease);
    let mut b = Daemon::start(&aws, &[m], &state.path().join("b"), "AKIDLEASEB", &lease);
    let leader_of = |d: &Daemon| d.status()["daemon"]["role"] == "leader";
    let deadline = Instant::now() + WAIT;
    let (leader, standby) = loop {
        match (leader_of(&a), leader_of(&b)) {
            (true, false) => break (&mut a, &mut b),
            (false, true) => break (&mut b, &mut a),
            (true, true) => panic!("two leaders"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no leader:\n{}\n{}",
            a.logs(),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    leader.wait_ready(&["Bucket/assets", "ImageRepository/inference"], WAIT);
    assert_eq!(
        standby.get("/readyz").unwrap(),
        (200, "ready: standby\n".into())
    );
    // An edit: only the leader acts on it.
    write(
        m,
        "bucket.yaml",
        &bucket("assets", "sdop-lease-assets", "  tags: {team: a}\n"),
    );
    wait_for_tag(&aws, "sdop-lease-assets", "team", "a", leader).await;
    assert!(mutations_by(&aws, &leader.caller) > 0);
    assert_eq!(
        mutations_by(&aws, &standby.caller),
        0,
        "the standby never mutates: {:#}",
        aws.calls().0["by_caller"]
    );

    // Kill the leader: the standby takes over once the lease has not been renewed for its TTL.
    leader.kill9();
    let killed = Instant::now();
    write(
        m,
        "bucket.yaml",
        &bucket("assets", "sdop-lease-assets", "  tags: {team: b}\n"),
    );
    wait_for_tag(&aws, "sdop-lease-assets", "team", "b", standby).await;
    let took = killed.elapsed();
    assert!(
        // The last renewal came at most one renew interval (1 s) before the kill, and the
        // standby waits a full TTL (3 s) after first seeing it: never much under 2 s.
        took >= Duration::from_millis(1500),
        "took over before the TTL could expire: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "takeover too slow: {took:?}"
    );
    assert!(mutations_by(&aws, &standby.caller) > 0);
    assert!(standby.logs().contains("became leader"));
    standby.wait_ready(&["Bucket/assets", "ImageRepository/inference"], WAIT);
    leak_audit(&aws, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_the_bound_and_persists_status() {
    let aws = LocalAws::start();
    // A long endpoint creation keeps the daemon busy polling when the signal comes.
    aws.configure(json!({"endpoint_create_seconds": 8.0}));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = dir.path();
    write(m, "endpoint.yaml", &endpoint("v1"));
    write(m, "bucket.yaml", &bucket("assets", "sdop-term-assets", ""));
    let state_a = state.path().join("a");
    let mut daemon = Daemon::start(
        &aws,
        &[m],
        &state_a,
        "AKIDTERM",
        &["--shutdown-timeout", "2s"],
    );
    daemon.wait_for("the endpoint in progress", WAIT, |s| {
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "Endpoint" && r["phase"] == "Progressing")
    });
    let signalled = Instant::now();
    daemon.signal("TERM");
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", daemon.logs());
    assert!(
        took < Duration::from_secs(4),
        "bound 2s (+ cleanup): took {took:?}"
    );
    assert!(
        !state_a.join("daemon.json").exists(),
        "the daemon file is removed"
    );
    let saved = std::fs::read_to_string(state_a.join("Endpoint/base.json")).unwrap();
    assert!(saved.contains("\"Progressing\""), "{saved}");
    assert!(daemon.logs().contains("sdop daemon stopped"));
    // `sdop get` falls back to the state directory when no daemon runs.
    let out = std::process::Command::new(crate::support::daemon::sdop_bin())
        .args(["get", "-o", "json"])
        .env("SDOP_STATE_DIR", &state_a)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // The endpoint it was creating is declared: not a leak; it finishes on the next start.
    let daemon = Daemon::start(&aws, &[m], &state_a, "AKIDTERM", &[]);
    daemon.wait_ready(&["Endpoint/base", "Bucket/assets"], WAIT);
    // `sdop get` asks the running daemon.
    let out = std::process::Command::new(crate::support::daemon::sdop_bin())
        .args(["get", "Endpoint/base"])
        .env("SDOP_STATE_DIR", &state_a)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Ready"));
    leak_audit(&aws, &["sd-base"], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_completes_without_its_checkpoint_is_failed_and_announced() {
    let aws = LocalAws::start();
    aws.configure(json!({"training_seconds": 0.5}));
    aws.seed_training_inputs("sdop-it-inputs").await;
    // Inside the container the WebUI's training dies; train.py still exits 0.
    aws.faults(json!({"complete_without_checkpoint": ["*"]}));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.yaml",
        &format!(
            r#"apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {{name: out}}
spec: {{bucketName: sdop-it-out, region: us-east-1}}
---
apiVersion: sdop/v1alpha1
kind: DreamboothJob
metadata: {{name: jpstyle}}
spec:
  trainingJobName: jpstyle
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd-training:latest"}}
  instanceType: ml.g4dn.2xlarge
  roleArn: {ROLE}
  sourceCheckpoint: {{s3Uri: "s3://sdop-it-inputs/checkpoints/v2-1_768-ema-pruned.ckpt"}}
  modelName: jp-style-model
  resolution: 768
  maxTrainSteps: 100
  concepts:
    - {{datasetS3Uri: "s3://sdop-it-inputs/dataset/", instanceToken: jpstyle girl, classToken: girl}}
  checkpointS3Uri: s3://sdop-it-out/models/Stable-diffusion/
"#
        ),
    );
    let hook = WebhookSink::start();
    let daemon = Daemon::start(
        &aws,
        &[dir.path()],
        &state.path().join("a"),
        "AKIDNOCKPT",
        &["--notify-webhook", &hook.url],
    );
    let status = daemon.wait_for("DreamboothJob Failed", WAIT, |status| {
        status["resources"].as_array().is_some_and(|all| {
            all.iter()
                .any(|r| r["kind"] == "DreamboothJob" && r["phase"] == "Failed")
        })
    });
    let job = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "DreamboothJob")
        .unwrap()
        .to_string();
    assert!(
        job.contains("jp-style-model_100.ckpt") && job.contains("Completed"),
        "{job}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hook
        .events()
        .iter()
        .any(|e| e == "training.failed DreamboothJob/jpstyle")
    {
        assert!(Instant::now() < deadline, "webhook got {:?}", hook.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    // No --webhook-secret-file: the notifications are not signed.
    for delivery in hook.deliveries() {
        assert_eq!(
            delivery.header("X-Sdop-Signature-256"),
            None,
            "{delivery:?}"
        );
    }
}

/// Issue #23: with `--webhook-secret-file`, every notification carries
/// `X-Sdop-Signature-256: sha256=HEX`, the HMAC-SHA256 of its exact body keyed with the file's
/// content less its trailing newline; the secret shows in no log, status, metric or body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_signed_with_the_secret_file_which_is_never_shown() {
    let aws = LocalAws::start();
    // A bucket sdop does not own: conflict.found on the first pass.
    aws.s3()
        .await
        .create_bucket()
        .bucket("sdop-signed-foreign")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bucket.yaml",
        &bucket("foreign", "sdop-signed-foreign", ""),
    );
    let secret = "7f3e9a-webhook-signing-secret";
    let secret_file = state.path().join("webhook-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let hook = WebhookSink::start();
    let daemon = Daemon::start(
        &aws,
        &[dir.path()],
        &state.path().join("a"),
        "AKIDSIGNED",
        &[
            "--notify-webhook",
            &hook.url,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + WAIT;
    while !hook
        .events()
        .iter()
        .any(|e| e == "conflict.found Bucket/foreign")
    {
        assert!(Instant::now() < deadline, "webhook got {:?}", hook.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    let deliveries = hook.deliveries();
    for delivery in &deliveries {
        let expected = format!(
            "sha256={}",
            reference_hmac_sha256(secret.as_bytes(), &delivery.body)
        );
        assert_eq!(
            delivery.header("X-Sdop-Signature-256"),
            Some(expected.as_str()),
            "{delivery:?}"
        );
        assert_eq!(delivery.header("Content-Type"), Some("application/json"));
        assert!(
            !String::from_utf8_lossy(&delivery.body).contains(secret),
            "{delivery:?}"
        );
    }
    let (_, metrics) = daemon.get("/metrics").unwrap();
    let status = daemon.status().to_string();
    for (what, text) in [
        ("logs", daemon.logs()),
        ("status", status),
        ("metrics", metrics),
    ] {
        assert!(
            !text.contains(secret),
            "the secret is in the {what}:\n{text}"
        );
    }
}

/// Issue #13: one writer at a time. An apply beside a running daemon on the same state waits
/// for its lock, then refuses naming the daemon; a second daemon refuses at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_beside_a_running_daemon_refuses_naming_it() {
    let aws = LocalAws::start();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = dir.path();
    write(m, "bucket.yaml", &bucket("assets", "sdop-lock-assets", ""));
    let daemon = Daemon::start(&aws, &[m], state.path(), "AKIDLOCK", &[]);
    daemon.wait_ready(&["Bucket/assets"], WAIT);
    let out = std::process::Command::new(crate::support::daemon::sdop_bin())
        .arg("apply")
        .arg(m)
        .args(["--lock-timeout", "1s"])
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDLOCKAPPLY")
        .env("AWS_SECRET_ACCESS_KEY", "local-secret")
        .env("AWS_REGION", "us-east-1")
        .env("SDOP_STATE_DIR", state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("waiting for the state lock, held by sdop run"),
        "{stderr}"
    );
    assert!(stderr.contains("is in use by sdop run"), "{stderr}");
    assert_eq!(
        mutations_by(&aws, "AKIDLOCKAPPLY"),
        0,
        "the refused apply changed AWS"
    );
    let second = std::process::Command::new(crate::support::daemon::sdop_bin())
        .arg("run")
        .arg(m)
        .args(["--listen", "127.0.0.1:0"])
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDLOCK2")
        .env("AWS_SECRET_ACCESS_KEY", "local-secret")
        .env("AWS_REGION", "us-east-1")
        .env("SDOP_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("is in use by sdop run"));
    drop(daemon);
}

fn checked_endpoint(instance: &str) -> String {
    format!(
        r#"apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {{name: out}}
spec: {{bucketName: sdop-it-out, region: us-east-1}}
---
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-base
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-it-out/model.tar.gz"}}
  instanceType: {instance}
  executionRoleArn: {ROLE}
  environment:
    api_endpoint: "{API}"
    embeddings_s3uri: s3://sdop-it-out/embeddings/
  asyncInference: {{outputPath: "s3://sdop-it-out/out/", failurePath: "s3://sdop-it-out/failed/"}}
  smokeCheck: {{timeoutSeconds: 30}}
"#
    )
}

/// Issue #14 item 2: under the daemon, a rollout whose smoke check fails is rolled back,
/// Degraded with the reason, and the webhook hears `rollout.failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_smoke_check_under_the_daemon_rolls_back_and_is_announced() {
    let aws = LocalAws::start();
    aws.configure(json!({"endpoint_create_seconds": 0.3, "endpoint_update_seconds": 0.3, "invocation_seconds": 0.3}));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "endpoint.yaml",
        &checked_endpoint("ml.g4dn.xlarge"),
    );
    let hook = WebhookSink::start();
    let daemon = Daemon::start(
        &aws,
        &[dir.path()],
        &state.path().join("a"),
        "AKIDSMOKE",
        &["--notify-webhook", &hook.url],
    );
    daemon.wait_ready(&["Bucket/out", "Endpoint/base"], WAIT);
    aws.configure(json!({"invocation_outcome": "error"}));
    write(
        dir.path(),
        "endpoint.yaml",
        &checked_endpoint("ml.g4dn.2xlarge"),
    );
    let status = daemon.wait_for("Endpoint Degraded", WAIT, |status| {
        status["resources"].as_array().is_some_and(|all| {
            all.iter()
                .any(|r| r["kind"] == "Endpoint" && r["phase"] == "Degraded")
        })
    });
    let endpoint = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Endpoint")
        .unwrap()
        .to_string();
    assert!(endpoint.contains("smoke check"), "{endpoint}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hook
        .events()
        .iter()
        .any(|e| e == "rollout.failed Endpoint/base")
    {
        assert!(Instant::now() < deadline, "webhook got {:?}", hook.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    let sm = aws.sagemaker().await;
    let serving = sm
        .describe_endpoint()
        .endpoint_name("sd-base")
        .send()
        .await
        .unwrap();
    let config = sm
        .describe_endpoint_config()
        .endpoint_config_name(serving.endpoint_config_name().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        config.production_variants()[0]
            .instance_type()
            .map(|t| t.as_str()),
        Some("ml.g4dn.xlarge"),
        "rolled back to the config it served"
    );
}

/// Issue #23: `sdop run --observe-only` reads every resource and reports what it would change,
/// and changes nothing in AWS.
#[test]
fn observe_only_reports_drift_and_changes_nothing() {
    let aws = LocalAws::start();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bucket.yaml",
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: data}\nspec: {bucketName: sdop-it-observe, region: us-east-1}\n",
    );
    let daemon = Daemon::start(
        &aws,
        &[dir.path()],
        &state.path().join("a"),
        "AKIDOBSERVE",
        &["--observe-only"],
    );
    let status = daemon.wait_for("the bucket reported", Duration::from_secs(30), |status| {
        status["resources"].as_array().unwrap().iter().any(|r| {
            r["name"] == "data" && r["message"].as_str().unwrap_or("").contains("suspended")
        })
    });
    let bucket = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "data")
        .unwrap()
        .clone();
    assert_eq!(bucket["phase"], "Pending", "{bucket:#}");
    assert!(
        bucket["message"]
            .as_str()
            .unwrap()
            .contains("--observe-only"),
        "{bucket:#}"
    );
    assert_eq!(mutations_by(&aws, "AKIDOBSERVE"), 0, "{}", daemon.logs());
}

/// Issue #23: `sdop reconcile KIND/NAME` beside a running daemon (which holds the state's
/// writer lock) records the request, and the daemon's next pass of the resource (here its
/// resync) retries it: the failed endpoint is created again and serves.
#[test]
fn reconcile_beside_a_running_daemon_is_carried_out_by_its_next_pass() {
    let aws = LocalAws::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(aws.s3());
    let model = runtime.block_on(crate::emulator::upload_package(
        &s3,
        "daemon/model.tar.gz",
        &["README.md"],
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("a");
    write(
        dir.path(),
        "endpoint.yaml",
        &format!(
            "apiVersion: sdop/v1alpha1\nkind: Endpoint\nmetadata: {{name: base}}\nspec:\n  endpointName: sd-daemon-retry\n  image: {{uri: \"123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest\"}}\n  modelData: {{s3Uri: \"{model}\"}}\n  instanceType: ml.g4dn.xlarge\n  executionRoleArn: {ROLE}\n  environment: {{api_endpoint: \"{API}\"}}\n"
        ),
    );
    let daemon = Daemon::start(
        &aws,
        &[dir.path()],
        &state_dir,
        "AKIDRETRY",
        &["--resync", "2s"],
    );
    daemon.wait_for("the endpoint failed", WAIT, |status| {
        status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "base" && r["phase"] == "Failed")
    });
    runtime.block_on(crate::emulator::upload_package(
        &s3,
        "daemon/model.tar.gz",
        &["Stable-diffusion/v1-5-pruned.ckpt"],
    ));
    let out = std::process::Command::new(crate::support::daemon::sdop_bin())
        .args(["reconcile", "Endpoint/base"])
        .env("SDOP_STATE_DIR", &state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.wait_ready(&["Endpoint/base"], WAIT);
}
