//! Issue #13's kill-point matrix: `sdop apply --wait` of the train → package → deploy chain
//! (examples/train-then-deploy) is killed with SIGKILL at every mutating AWS call a clean run
//! makes (taken from the local AWS's call log, not from sleeps): the call takes effect, its
//! answer never arrives. A restarted apply must converge, with no duplicate, no leaked object
//! and no open upload, and the plan after it must be empty. Issue #24 adds the same for the
//! calls a ModelPromotion and its production endpoint add (examples/promote-with-evidence).

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

/// A local AWS (set up by `configure`), and the mutating calls a clean apply of the chain
/// makes there, in order.
fn clean_run(example: &str, configure: fn(&LocalAws)) -> (LocalAws, Vec<String>) {
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
    kill_at(aws, state, path, api, nth);
    apply_to_the_end(aws, state, path);
}

/// Starts `sdop apply --wait` of `path` and kills it with SIGKILL once the `nth` call of `api`
/// took effect in AWS (its answer held).
fn kill_at(aws: &LocalAws, state: &Path, path: &str, api: &str, nth: usize) {
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
}

fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_mutating_call_of_the_chain_then_restart_converges() {
    let example = repo_root().join("examples/train-then-deploy");
    let example = example.to_str().unwrap();
    let (aws, calls) = clean_run(example, configure);
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

/// The model package group of examples/promote-with-evidence, and its two endpoints.
const GROUP: &str = "sdop-example-portrait-auto";
const STAGING: &str = "sdop-example-portrait-auto-staging";
const PRODUCTION: &str = "sdop-example-portrait-auto";
const PROMOTE_BUCKET: &str = "sdop-example-promote";

/// As [`configure`], with asynchronous results in 0.3 s: an endpoint that answers within
/// S3's Last-Modified grain (a second) must still have its latency measured.
fn configure_promotion(aws: &LocalAws) {
    configure(aws);
    aws.configure(json!({"invocation_seconds": 0.3}));
}

/// The promotion converged once: its group holds exactly one version (read with the AWS SDK,
/// not through sdop), Approved, whose evidence bundle is whole (evidence.json, a PNG contact
/// sheet), and every case measured. `after` says which kill point this is. Its evidence.json.
async fn one_approved_version_with_its_evidence(aws: &LocalAws, after: &str) -> serde_json::Value {
    let listed = aws
        .sagemaker()
        .await
        .list_model_packages()
        .model_package_group_name(GROUP)
        .max_results(100)
        .send()
        .await
        .unwrap();
    let versions = listed.model_package_summary_list();
    let shown: Vec<String> = versions
        .iter()
        .map(|v| {
            format!(
                "{:?} {:?} {:?}",
                v.model_package_version(),
                v.model_approval_status(),
                v.model_package_description()
            )
        })
        .collect();
    assert_eq!(versions.len(), 1, "versions after {after}: {shown:?}");
    let version = &versions[0];
    assert_eq!(
        version.model_approval_status().map(|s| s.as_str()),
        Some("Approved"),
        "after {after}: {shown:?}"
    );
    let candidate = version
        .model_package_description()
        .and_then(|d| d.strip_prefix("sdop candidate "))
        .and_then(|d| d.split(':').next())
        .unwrap_or_else(|| panic!("after {after}: not sdop's version: {shown:?}"))
        .to_string();
    let s3 = aws.s3().await;
    let read = |key: String| {
        let s3 = s3.clone();
        async move {
            let got = s3
                .get_object()
                .bucket(PROMOTE_BUCKET)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("after {after}: s3://{PROMOTE_BUCKET}/{key}: {e:?}"));
            got.body.collect().await.unwrap().into_bytes().to_vec()
        }
    };
    let prefix = format!("sdop/evidence/{GROUP}/{candidate}/");
    let evidence: serde_json::Value =
        serde_json::from_slice(&read(format!("{prefix}evidence.json")).await).unwrap();
    assert_eq!(
        evidence["verdict"]["passed"], true,
        "after {after}: {evidence:#}"
    );
    // Measured, every case: an image and its latency (a result a killed run's request left
    // behind is not taken for this request's).
    for case in evidence["cases"].as_array().into_iter().flatten() {
        assert!(
            case["key"].is_string() && case["latencySeconds"].as_f64().is_some_and(|l| l >= 0.0),
            "after {after}: a case without an image or a latency: {case:#}"
        );
    }
    assert_eq!(
        evidence["cases"].as_array().map(Vec::len),
        Some(6),
        "after {after}"
    );
    let sheet = read(format!("{prefix}contact-sheet.png")).await;
    assert!(
        sheet.starts_with(b"\x89PNG\r\n\x1a\n"),
        "after {after}: the contact sheet is not a PNG"
    );
    evidence
}

/// Issue #24: the promotion's own kill points. examples/promote-with-evidence (train →
/// archive → staging endpoint → ModelPromotion, approval automatic → production endpoint) is
/// applied once cleanly; the calls from its first CreateModelPackageGroup on are the ones the
/// promotion adds (the registry, the evaluation's requests, the evidence bundle, the decision,
/// and the production endpoint's first rollout, which reads the approved version): the chain
/// before them is train-then-deploy's, whose matrix is above. Killed at each (the n-th call of
/// its API over the whole run, as `points_of` counts), a restart converges with an empty plan,
/// the group holds exactly one version, Approved, with its evidence whole, and each endpoint
/// has one model and one config, no upload left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_new_mutating_call_of_a_promotion_then_restart_converges() {
    let started = Instant::now();
    let example = repo_root().join("examples/promote-with-evidence");
    let example = example.to_str().unwrap();
    let (aws, calls) = clean_run(example, configure_promotion);
    one_approved_version_with_its_evidence(&aws, "the clean run").await;
    let all = points_of(&calls);
    let first = all
        .iter()
        .position(|(api, _)| api == "sagemaker:CreateModelPackageGroup")
        .unwrap_or_else(|| panic!("no CreateModelPackageGroup: {calls:?}"));
    let points = &all[first..];
    for wanted in [
        "sagemaker:CreateModelPackage",
        "sagemaker:InvokeEndpointAsync",
        "sagemaker:UpdateModelPackage",
        "sagemaker:CreateEndpoint",
    ] {
        assert!(
            points.iter().any(|(api, _)| api == wanted),
            "{wanted} not among {points:?}"
        );
    }

    let mut matrix = Vec::new();
    for (api, nth) in points {
        aws.reset();
        configure_promotion(&aws);
        let state = tempfile::tempdir().unwrap();
        kill_at_then_restart(&aws, state.path(), example, api, *nth);
        let at = format!("a kill at {api} #{nth}");
        one_approved_version_with_its_evidence(&aws, &at).await;
        let (models, configs) = leak_audit(&aws, &[STAGING, PRODUCTION], &[]).await;
        for names in [&models, &configs] {
            let staging = names
                .iter()
                .filter(|n| n.starts_with(&format!("{STAGING}-")))
                .count();
            assert_eq!(
                (names.len(), staging),
                (2, 1),
                "after {at}: one model and one config per endpoint: {models:?} {configs:?}"
            );
        }
        matrix.push(format!(
            "| {api} #{nth} | converged | 1 version, Approved, evidence whole | 1 model, 1 config each | none |"
        ));
    }
    eprintln!(
        "kill-point matrix, promotion ({} calls, {:.0} s):\n| call killed at | restart | registry | endpoints | leaks |\n| --- | --- | --- | --- | --- |\n{}",
        matrix.len(),
        started.elapsed().as_secs_f64(),
        matrix.join("\n")
    );
}

/// A kill between the evaluation's requests and its record (evaluation.json) makes the
/// restart send them again, to the same result keys. When the killed run's results are in
/// before the restart and the resent requests wait longer (an endpoint's queue, a scale-out
/// from zero), those results must not be judged as the resent requests' answers: their
/// latency would be unknown (they predate the request) and `maxP95LatencySeconds` would reject
/// a good candidate. The restart judges the resent requests' own results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_the_evaluation_judges_the_resent_requests_results() {
    let example = repo_root().join("examples/promote-with-evidence");
    let example = example.to_str().unwrap();
    let (aws, calls) = clean_run(example, configure_promotion);
    // The evaluation's last request: the last InvokeEndpointAsync before the decision.
    let decision = calls
        .iter()
        .position(|api| api == "sagemaker:UpdateModelPackage")
        .unwrap_or_else(|| panic!("no decision: {calls:?}"));
    let nth = calls[..decision]
        .iter()
        .filter(|api| *api == "sagemaker:InvokeEndpointAsync")
        .count();
    aws.reset();
    configure_promotion(&aws);
    let state = tempfile::tempdir().unwrap();
    kill_at(
        &aws,
        state.path(),
        example,
        "sagemaker:InvokeEndpointAsync",
        nth,
    );
    // The killed run's results land (0.3 s each), then the resent requests take 4 s.
    std::thread::sleep(Duration::from_millis(1500));
    aws.configure(json!({"invocation_seconds": 4.0}));
    apply_to_the_end(&aws, state.path(), example);
    let evidence =
        one_approved_version_with_its_evidence(&aws, "a kill at the last evaluation request").await;
    // Measured from the resent requests (4 s each; Last-Modified's grain is a second).
    for case in evidence["cases"].as_array().into_iter().flatten() {
        let latency = case["latencySeconds"].as_f64().unwrap_or_default();
        assert!(latency >= 3.0, "{case:#}");
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
    let (aws, mut apis) = clean_run(example, configure);
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

/// `sdop iam-policy` of `example`, and every API a full apply of it makes against the local
/// AWS; asserts that the policy allows each API's IAM action (from the call log).
fn policy_allows_every_call(
    example: &Path,
    configure: fn(&LocalAws),
) -> (serde_json::Value, Vec<String>) {
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
    (policy, apis)
}

/// Issue #14 item 6: `sdop iam-policy` for the chain's manifests allows every call a full
/// apply of the chain makes (each API's IAM action, from the local AWS's call log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_iam_policy_allows_every_call_the_chain_makes() {
    let example = repo_root().join("examples/train-then-deploy");
    let (_, apis) = policy_allows_every_call(&example, configure);
    assert!(apis.len() >= 20, "{apis:?}");
}

/// Issue #24: the same for examples/promote-with-evidence (the registry, the evaluation's
/// requests, the evidence bundle, the decision, the production endpoint). Its evidence goes to
/// the staging endpoint's async output bucket (`evidenceS3Uri` defaulted): that bucket's
/// objects are in the policy, for reading the results and writing the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_iam_policy_allows_every_call_a_promotion_makes() {
    let example = repo_root().join("examples/promote-with-evidence");
    let (policy, apis) = policy_allows_every_call(&example, configure_promotion);
    for api in [
        "sagemaker:CreateModelPackageGroup",
        "sagemaker:CreateModelPackage",
        "sagemaker:ListModelPackages",
        "sagemaker:UpdateModelPackage",
        "sagemaker:InvokeEndpointAsync",
    ] {
        assert!(apis.iter().any(|a| a == api), "{api} not called: {apis:?}");
    }
    let evidence_objects = format!("arn:aws:s3:::{PROMOTE_BUCKET}/*");
    for action in ["s3:GetObject", "s3:PutObject"] {
        let allowed = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|statement| {
                let has = |key: &str, wanted: &str| {
                    statement[key]
                        .as_array()
                        .is_some_and(|list| list.iter().any(|v| v == wanted))
                };
                has("Action", action) && has("Resource", &evidence_objects)
            });
        assert!(allowed, "{action} on {evidence_objects}: {policy:#}");
    }
}
