//! Issue #13's kill-point matrix: `sdop apply --wait` of the train → package → deploy chain
//! (examples/train-then-deploy) is killed with SIGKILL at every mutating AWS call a clean run
//! makes (taken from the local AWS's call log, not from sleeps): the call takes effect, its
//! answer never arrives. A restarted apply must converge, with no duplicate, no leaked object
//! and no open upload, and the plan after it must be empty.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::daemon::{leak_audit, sdop_bin};
use crate::support::local_aws::{repo_root, LocalAws};

const ENDPOINT: &str = "sdop-example-portrait";

fn configure(aws: &LocalAws) {
    aws.configure(json!({
        "training_seconds": 0.5, "endpoint_create_seconds": 0.3,
        "endpoint_update_seconds": 0.3, "endpoint_delete_seconds": 0.2
    }));
}

fn sdop(aws: &LocalAws, state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(sdop_bin());
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "AKIDKILLPOINTS")
        .env("AWS_SECRET_ACCESS_KEY", "local-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SDOP_STATE_DIR", state)
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    command
}

fn apply_to_the_end(aws: &LocalAws, state: &Path, example: &str) {
    let out = sdop(aws, state, &["apply", example, "--wait", "--timeout", "2m"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply after the kill: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = sdop(aws, state, &["plan", example]).output().unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "the plan after convergence is not empty:\n{}",
        String::from_utf8_lossy(&plan.stdout)
    );
}

/// A local AWS, and the mutating calls a clean apply of the chain makes there, in order.
fn clean_run(example: &str) -> (LocalAws, Vec<String>) {
    let aws = LocalAws::start();
    configure(&aws);
    let clean = tempfile::tempdir().unwrap();
    aws.reset_calls();
    apply_to_the_end(&aws, clean.path(), example);
    let calls = aws.mutating_calls();
    (aws, calls)
}

/// Every mutating call of `calls` as (API, its n-th occurrence): the kill points.
fn points_of(calls: &[String]) -> Vec<(String, usize)> {
    calls
        .iter()
        .enumerate()
        .map(|(i, api)| {
            (
                api.clone(),
                calls[..=i].iter().filter(|a| *a == api).count(),
            )
        })
        .collect()
}

/// Starts `sdop apply --wait` of `path`, kills it with SIGKILL once the `nth` call of `api`
/// took effect in AWS (its answer held), then applies again to the end.
fn kill_at_then_restart(aws: &LocalAws, state: &Path, path: &str, api: &str, nth: usize) {
    aws.arm_kill_point(api, nth);
    let child = sdop(aws, state, &["apply", path, "--wait", "--timeout", "2m"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !aws.kill_point_reached() {
        assert!(
            Instant::now() < deadline,
            "kill point {api} #{nth} never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(child);
    aws.release_kill_point();
    apply_to_the_end(aws, state, path);
}

fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_mutating_call_of_the_chain_then_restart_converges() {
    let example = repo_root().join("examples/train-then-deploy");
    let example = example.to_str().unwrap();
    let (aws, calls) = clean_run(example);
    let points = points_of(&calls);
    assert!(points.len() >= 10, "{calls:?}");

    let mut matrix = Vec::new();
    for (api, nth) in &points {
        aws.reset();
        configure(&aws);
        let state = tempfile::tempdir().unwrap();
        kill_at_then_restart(&aws, state.path(), example, api, *nth);
        let (models, configs) = leak_audit(&aws, &[ENDPOINT], &[]).await;
        assert_eq!(
            (models.len(), configs.len()),
            (1, 1),
            "duplicates after a kill at {api} #{nth}: {models:?} {configs:?}"
        );
        matrix.push(format!(
            "| {api} #{nth} | converged | 1 model, 1 config | none |"
        ));
    }
    eprintln!(
        "kill-point matrix ({} calls):\n| call killed at | restart | objects | leaks |\n| --- | --- | --- | --- |\n{}",
        matrix.len(),
        matrix.join("\n")
    );
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

/// The same matrix for a retrain and redeploy: the chain converged on 800 steps, then the
/// manifest asks for 900 (a new training job, its checkpoint packaged, a new model and config,
/// UpdateEndpoint). Killed at every mutating call of that second apply, a restart converges on
/// the new config with no duplicate and no leak; the first rollout's model and config stay,
/// kept for rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_mutating_call_of_a_retrain_and_redeploy_then_restart_converges() {
    let work = tempfile::tempdir().unwrap();
    let example = work.path().join("chain");
    copy_dir(&repo_root().join("examples/train-then-deploy"), &example);
    let manifest = example.join("train-then-deploy.yaml");
    let v1 = std::fs::read_to_string(&manifest).unwrap();
    assert!(v1.contains("maxTrainSteps: 800"));
    let v2 = v1.replace("maxTrainSteps: 800", "maxTrainSteps: 900");
    let path = example.to_str().unwrap().to_string();
    let converged_on_v1 = |aws: &LocalAws| {
        std::fs::write(&manifest, &v1).unwrap();
        let state = tempfile::tempdir().unwrap();
        apply_to_the_end(aws, state.path(), &path);
        std::fs::write(&manifest, &v2).unwrap();
        state
    };
    let aws = LocalAws::start();
    configure(&aws);
    let state = converged_on_v1(&aws);
    aws.reset_calls();
    apply_to_the_end(&aws, state.path(), &path);
    let calls = aws.mutating_calls();
    assert!(
        calls.contains(&"sagemaker:UpdateEndpoint".to_string()),
        "{calls:?}"
    );
    let mut matrix = Vec::new();
    for (api, nth) in points_of(&calls) {
        aws.reset();
        configure(&aws);
        let state = converged_on_v1(&aws);
        kill_at_then_restart(&aws, state.path(), &path, &api, nth);
        let (models, configs) = leak_audit(&aws, &[ENDPOINT], &[]).await;
        assert_eq!(
            (models.len(), configs.len()),
            (2, 2),
            "after a kill at {api} #{nth}: {models:?} {configs:?}"
        );
        matrix.push(format!(
            "| {api} #{nth} | converged | 2 models, 2 configs (1 kept for rollback) | none |"
        ));
    }
    eprintln!(
        "kill-point matrix, retrain and redeploy ({} calls):\n{}",
        matrix.len(),
        matrix.join("\n")
    );
}

/// Throttling and 500s on the mutating calls themselves (every 2nd call of each is throttled,
/// every 3rd answered 500): apply rides them out, converges, leaks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_500s_on_every_mutating_call_of_the_chain_are_ridden_out() {
    let example = repo_root().join("examples/train-then-deploy");
    let example = example.to_str().unwrap();
    let (aws, mut apis) = clean_run(example);
    apis.sort();
    apis.dedup();
    aws.reset();
    configure(&aws);
    let throttle: serde_json::Map<String, serde_json::Value> =
        apis.iter().map(|a| (a.clone(), json!(0.5))).collect();
    let error500: serde_json::Map<String, serde_json::Value> =
        apis.iter().map(|a| (a.clone(), json!(0.34))).collect();
    aws.faults(json!({"throttle": throttle, "error500": error500}));
    let state = tempfile::tempdir().unwrap();
    apply_to_the_end(&aws, state.path(), example);
    let faulted: u64 = apis
        .iter()
        .map(|api| {
            aws.calls().0["by_api"][api]["faulted"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        faulted >= apis.len() as u64,
        "faults were injected: {faulted}"
    );
    aws.clear_faults();
    let (models, configs) = leak_audit(&aws, &[ENDPOINT], &[]).await;
    assert_eq!((models.len(), configs.len()), (1, 1));
}

/// Issue #14 item 6: `sdop iam-policy` for the chain's manifests allows every call a full
/// apply of the chain makes (each API's IAM action, from the local AWS's call log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_iam_policy_allows_every_call_the_chain_makes() {
    let example = repo_root().join("examples/train-then-deploy");
    let out = Command::new(sdop_bin())
        .args(["iam-policy", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let aws = LocalAws::start();
    configure(&aws);
    let state = tempfile::tempdir().unwrap();
    aws.reset_calls();
    apply_to_the_end(&aws, state.path(), example.to_str().unwrap());
    let mut apis = aws.call_log();
    apis.sort();
    apis.dedup();
    let missing: Vec<String> = apis
        .iter()
        .filter_map(|api| sdop::kinds::iam::iam_action(api))
        .filter(|action| !sdop::kinds::iam::allows_action(&policy, action))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the policy: {missing:?}\n{policy:#}"
    );
    assert!(apis.len() >= 20, "{apis:?}");
}
