//! The built `sdop` binary: exit codes and output of validate, plan and schema.

use std::process::Command;

fn sdop(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sdop"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run sdop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// manifests/ reads two things from the build box: an all-in-one-ai checkout at
/// manifests/all-in-one-ai and the checkpoints at manifests/checkpoints. Real ones if the
/// developer put them there, else the stand-ins the demo uses (each script refreshes its
/// stand-in in place, is safe to run in parallel and never overwrites real files).
fn with_checkout() {
    stand_in("scripts/stand-in-checkout.py", "manifests/all-in-one-ai");
    stand_in("scripts/stand-in-checkpoints.py", "manifests/checkpoints");
}

fn stand_in(script: &str, dest: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join(dest);
    if target.exists() && !target.join(".sdop-stand-in").exists() {
        return;
    }
    let out = Command::new("python3")
        .args([script, dest])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("run python3 {script}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_manifests_and_examples_validate() {
    with_checkout();
    let (code, stdout, stderr) = sdop(&["validate", "manifests/"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("manifest(s) valid"));
    // Each example is a deployment of its own: two may name their resources alike.
    for example in std::fs::read_dir("examples").unwrap().flatten() {
        if example.path().is_dir() {
            let path = example.path().to_string_lossy().to_string();
            let (code, stdout, stderr) = sdop(&["validate", &path]);
            assert_eq!(code, 0, "{path}: {stdout}{stderr}");
        }
    }
}

#[test]
fn plan_of_the_workshop_exits_2_with_a_readable_plan() {
    with_checkout();
    let (code, stdout, stderr) = sdop(&["plan", "--offline", "manifests/"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("+ s3:bucket"), "{stdout}");
    assert!(stdout.contains("+ sagemaker:endpoint "), "{stdout}");
    assert!(stdout.contains("Plan: "), "{stdout}");
    let (code, json, _) = sdop(&["plan", "--offline", "manifests/", "-o", "json"]);
    assert_eq!(code, 2);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["changes"], true);
    assert!(parsed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["operation"] == "create"));
}

#[test]
fn plan_of_invalid_manifests_exits_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: b}\nspec: {bucketName: Bad_Name, region: us-east-1}\n").unwrap();
    let (code, _, stderr) = sdop(&["plan", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.yaml:4:8: Bucket/b: S3 bucket name \"Bad_Name\""),
        "{stderr}"
    );
}

#[test]
fn schema_is_json_with_every_kind() {
    let (code, stdout, _) = sdop(&["schema"]);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        schema["oneOf"].as_array().unwrap().len(),
        sdop::kinds::REGISTRY.len()
    );
}

#[test]
fn apply_goes_on_with_valid_manifests_when_one_is_broken_and_get_reports_status() {
    let aws = crate::support::local_aws::LocalAws::start();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: good}\nspec: {bucketName: sdop-cli-good, region: us-east-1}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: broken\n",
    )
    .unwrap();
    let run = |args: &[&str]| against_local_aws(&aws, state.path(), args);
    let (code, stdout, stderr) = run(&["apply", dir.path().to_str().unwrap(), "--wait", "--prune"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("broken.yaml:3:"), "{stderr}");
    assert!(stderr.contains("not pruning"), "{stderr}");
    assert!(
        stdout.contains("+ Bucket/good s3:bucket sdop-cli-good created"),
        "{stdout}"
    );
    let (code, json, _) = run(&["get", "bucket/good", "-o", "json"]);
    assert_eq!(code, 0);
    let statuses: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(statuses[0]["phase"], "Ready");
    assert_eq!(statuses[0]["outputs"]["bucketName"], "sdop-cli-good");
    let (code, stdout, _) = run(&["plan", dir.path().join("good.yaml").to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
}

/// `sdop` with a clean environment plus `env` (no credentials, region or profile of the host).
/// Runs the sdop binary against `aws` with its state in `state`: (exit code, stdout, stderr).
fn against_local_aws(
    aws: &crate::support::local_aws::LocalAws,
    state: &std::path::Path,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sdop"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("SDOP_STATE_DIR", state)
        .output()
        .expect("run sdop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sdop_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sdop"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("SDOP_STATE_DIR", home.path().join("state"))
        // No instance metadata service here: fail fast where the SDK would probe it.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run sdop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn what_no_retry_fixes_is_one_line_and_exit_1() {
    let apply = ["apply", "examples/minimal-endpoint/"];
    let started = std::time::Instant::now();
    for (env, expected) in [
        (vec![], "no AWS region: pass --region or set AWS_REGION"),
        (
            vec![("AWS_REGION", "us-east-1")],
            "no AWS credentials: set AWS_ACCESS_KEY_ID",
        ),
        (
            vec![
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ],
            "nothing answers at --endpoint-url http://127.0.0.1:9",
        ),
    ] {
        let (code, stdout, stderr) = sdop_env(&apply, &env);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "no colour codes: {stderr:?}");
        assert!(!stderr.contains("secret"), "{stderr}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn unknown_kind_broken_pipe_and_no_manifests() {
    let (code, _, stderr) = sdop_env(&["get", "Endpont"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown kind \"Endpont\""), "{stderr}");
    assert!(stderr.contains("Endpoint"), "{stderr}");
    // A renamed kind: what it is called now, not "unknown".
    for args in [
        &["get", "ModelPackage"][..],
        &["reconcile", "ModelPackage/base"][..],
    ] {
        let (code, _, stderr) = sdop_env(args, &[]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("kind ModelPackage was renamed to ModelArchive"),
            "{stderr}"
        );
    }

    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = sdop_env(&["validate", empty.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no manifests found in"), "{stderr}");

    // `sdop schema | head`: the reader is gone before sdop writes; sdop exits quietly.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_sdop"))
        .arg("schema")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue #14 item 4: every plan says what it costs; `apply --max-hourly-cost` refuses a plan
/// above the limit without --force; `sdop get` shows each endpoint's hourly cost.
#[test]
fn plans_are_priced_and_apply_refuses_a_plan_above_the_cost_limit() {
    let aws = crate::support::local_aws::LocalAws::start();
    aws.configure(
        serde_json::json!({"endpoint_create_seconds": 0.3, "endpoint_update_seconds": 0.3}),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let endpoint = |instance: &str| {
        format!(
            r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-base
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "s3://sdop-cli-cost/model.tar.gz"}}
  instanceType: {instance}
  instanceCount: 2
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {{api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}}
"#
        )
    };
    std::fs::write(
        dir.path().join("endpoint.yaml"),
        endpoint("ml.g4dn.2xlarge"),
    )
    .unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let run = |args: &[&str]| against_local_aws(&aws, state.path(), args);
    let (code, stdout, _) = run(&["plan", &path]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("cost: +$1.88/h, none -> ml.g4dn.2xlarge x2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Cost: +$1.88/h by this plan; $1.88/h for the endpoints planned"),
        "{stdout}"
    );
    // Above the limit: refused, nothing created.
    let (code, stdout, stderr) = run(&["apply", &path, "--wait", "--max-hourly-cost", "1.50"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "refusing to apply: the endpoints would cost $1.88/h (--max-hourly-cost 1.50)"
        ),
        "{stderr}"
    );
    assert_eq!(aws.calls().mutations(), 0);
    // Within it: applied; get shows the cost.
    let (code, stdout, stderr) = run(&["apply", &path, "--wait", "--max-hourly-cost", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (_, table, _) = run(&["get", "Endpoint/base"]);
    assert!(
        table.contains("COST/H") && table.contains("$1.88"),
        "{table}"
    );
    // A change of instance type: the plan shows the difference.
    std::fs::write(dir.path().join("endpoint.yaml"), endpoint("ml.g4dn.xlarge")).unwrap();
    let (code, stdout, _) = run(&["plan", &path]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("cost: -$0.41/h, ml.g4dn.2xlarge x2 -> ml.g4dn.xlarge x2"),
        "{stdout}"
    );
    // --force overrides the limit.
    let (code, _, stderr) = run(&[
        "apply",
        &path,
        "--wait",
        "--max-hourly-cost",
        "0.5",
        "--force",
    ]);
    assert_eq!(code, 0, "{stderr}");
}

/// Issue #14 item 5: `sdop audit` finds what sdop owns that no state accounts for (here: the
/// state is lost after a converge) and open multipart uploads, with the hourly cost; exit 1.
#[tokio::test]
async fn audit_lists_what_no_state_accounts_for_with_its_cost() {
    let aws = crate::support::local_aws::LocalAws::start();
    aws.configure(serde_json::json!({"endpoint_create_seconds": 0.3}));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        r#"apiVersion: sdop/v1alpha1
kind: Bucket
metadata: {name: assets}
spec: {bucketName: sdop-cli-audit, region: us-east-1}
---
apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: base}
spec:
  endpointName: sd-audit
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-cli-audit/model.tar.gz"}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
"#,
    )
    .unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let (code, stdout, stderr) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, _) = against_local_aws(&aws, state.path(), &["audit", &path]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("nothing sdop owns is unaccounted for"),
        "{stdout}"
    );
    // The state is lost, and an upload is left open.
    let lost = tempfile::tempdir().unwrap();
    aws.s3()
        .await
        .create_multipart_upload()
        .bucket("sdop-cli-audit")
        .key("left/behind.tar.gz")
        .send()
        .await
        .unwrap();
    let (code, stdout, _) = against_local_aws(&aws, lost.path(), &["audit", &path]);
    assert_eq!(code, 1, "{stdout}");
    for needle in [
        "sagemaker:endpoint",
        "sd-audit",
        "$0.74",
        "sagemaker:endpoint-config",
        "sagemaker:model",
        "tagged for Endpoint/base (declared) but recorded in no state",
        "s3:multipart-upload",
        "left/behind.tar.gz",
        "audit: 4 object(s) unaccounted for, $0.74/h.",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
}

/// Issue #12: `plan --prune` shows what `apply --prune` deletes, object by object.
#[test]
fn plan_prune_lists_the_deletions_apply_prune_makes() {
    let aws = crate::support::local_aws::LocalAws::start();
    aws.configure(
        serde_json::json!({"endpoint_create_seconds": 0.3, "endpoint_delete_seconds": 0.2}),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let bucket = "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: assets}\nspec: {bucketName: sdop-cli-prune, region: us-east-1}\n";
    std::fs::write(dir.path().join("bucket.yaml"), bucket).unwrap();
    std::fs::write(
        dir.path().join("endpoint.yaml"),
        r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: base}
spec:
  endpointName: sd-prune
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-cli-prune/model.tar.gz"}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
"#,
    )
    .unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let (code, out, err) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_file(dir.path().join("endpoint.yaml")).unwrap();
    let (code, plan, _) = against_local_aws(&aws, state.path(), &["plan", &path, "--prune"]);
    assert_eq!(code, 2, "{plan}");
    let planned: Vec<&str> = plan
        .lines()
        .filter(|l| l.trim_start().starts_with("- sagemaker:"))
        .collect();
    assert_eq!(planned.len(), 3, "{plan}");
    aws.reset_calls();
    let (code, out, err) =
        against_local_aws(&aws, state.path(), &["apply", &path, "--wait", "--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    let deletes = aws
        .mutating_calls()
        .into_iter()
        .filter(|api| api.starts_with("sagemaker:Delete"))
        .count();
    assert_eq!(deletes, planned.len(), "{out}");
    let (code, plan, _) = against_local_aws(&aws, state.path(), &["plan", &path, "--prune"]);
    assert_eq!(code, 0, "{plan}");
}

/// Issue #23: an unreadable or empty `--webhook-secret-file` (or `SDOP_WEBHOOK_SECRET_FILE`)
/// stops `sdop run` at once, naming the path and the fix, before it touches AWS or the state.
#[test]
fn run_refuses_an_unreadable_or_empty_webhook_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.path().join("missing-secret");
    let run = |secret_flag: Option<&std::path::Path>, env: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sdop"));
        command
            .args(["run", "examples/", "--listen", "127.0.0.1:0"])
            .args(["--notify-webhook", "http://127.0.0.1:9/hook"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SDOP_STATE_DIR", &state)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .env_remove("SDOP_WEBHOOK_SECRET_FILE");
        if let Some(path) = secret_flag {
            command.arg("--webhook-secret-file").arg(path);
        }
        if let Some(path) = env {
            command.env("SDOP_WEBHOOK_SECRET_FILE", path);
        }
        let out = command.output().expect("run sdop");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(Some(&missing), None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--webhook-secret-file {}: cannot read the webhook secret",
            missing.display()
        )) && stderr.contains("openssl rand -hex 32"),
        "{stderr}"
    );
    let (code, stderr) = run(None, Some(&empty));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--webhook-secret-file {}: the file is empty",
            empty.display()
        )),
        "{stderr}"
    );
    assert!(
        !state.exists(),
        "a refused start created its state directory"
    );
    // Without a webhook to sign, the flag is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_sdop"))
        .args(["run", "examples/", "--webhook-secret-file"])
        .arg(&empty)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SDOP_NOTIFY_WEBHOOK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--notify-webhook"), "{stderr}");
}

/// Issue #23: `plan` on a directory without manifests is the same error as `validate`'s (online
/// or offline), not an empty plan or a complaint about credentials.
#[test]
fn plan_of_a_directory_without_manifests_fails_as_validate_does() {
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let (code, _, said) = sdop_env(&["validate", path], &[]);
    assert_eq!(code, 1);
    assert!(
        said.contains(&format!("no manifests found in {path}")) && said.contains(".yaml"),
        "{said}"
    );
    for args in [
        vec!["plan", path],
        vec!["plan", "--offline", path],
        vec!["iam-policy", path],
    ] {
        let (code, stdout, stderr) = sdop_env(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr, said, "{args:?}");
        assert_eq!(stdout, "", "{args:?}");
    }
}

/// Issue #23: a path that does not exist is named without a made-up `0:0` position.
#[test]
fn a_missing_file_is_reported_without_a_position() {
    let (code, _, stderr) = sdop_env(&["validate", "nosuch.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr
            .starts_with("nosuch.yaml: cannot read: no such file or directory (check the path)\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(":0:0") && !stderr.contains("os error"),
        "{stderr}"
    );
    let (code, json, _) = sdop_env(&["validate", "nosuch.yaml", "-o", "json"], &[]);
    assert_eq!(code, 1);
    let found: serde_json::Value = serde_json::from_str(&json).unwrap();
    let problem = &found["diagnostics"][0];
    assert_eq!(problem["file"], "nosuch.yaml");
    assert_eq!(
        (&problem["line"], &problem["column"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    let (code, _, stderr) = sdop_env(&["plan", "--offline", "nosuch.yaml"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("\nnosuch.yaml: cannot read: no such file"),
        "{stderr}"
    );
}

/// Issue #23: flags an environment variable sets (AWS_REGION, AWS_ENDPOINT_URL,
/// SDOP_STATE_DIR) do not show in a usage line as if they were required.
#[test]
fn the_usage_line_shows_no_flag_set_by_the_environment() {
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_PROFILE", "p"),
    ];
    for (command, usage) in [
        ("plan", "Usage: sdop plan [OPTIONS] <PATHS>..."),
        ("run", "Usage: sdop run [OPTIONS] <PATHS>..."),
        ("apply", "Usage: sdop apply [OPTIONS] <PATHS>..."),
    ] {
        let (code, _, stderr) = sdop_env(&[command], &env);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("<PATHS>"), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("no usage line: {stderr}"));
        assert_eq!(line, usage, "{stderr}");
    }
    let (code, help, _) = sdop_env(&["plan", "--help"], &env);
    assert_eq!(code, 0);
    assert!(
        help.contains("Usage: sdop plan [OPTIONS] <PATHS>..."),
        "{help}"
    );
}

/// Issue #23: `sdop run` on a taken `--listen` address says so once (not the OS error twice),
/// with what to do.
#[test]
fn a_taken_listen_address_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("bucket.yaml"),
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: b}\nspec: {bucketName: sdop-taken, region: us-east-1}\n",
    )
    .unwrap();
    let (code, _, stderr) = sdop_env(
        &[
            "run",
            manifests.path().to_str().unwrap(),
            "--listen",
            &address,
        ],
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            // Something answers there (the taken port itself): the preflight passes.
            ("AWS_ENDPOINT_URL", &format!("http://{address}")),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("already in use").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot listen on {address}")) && stderr.contains("--listen"),
        "{stderr}"
    );
}

/// Issue #25: `sdop run` on an address that is not loopback refuses to start without
/// `--auth-token-file`, saying so, before it reads AWS or the state; the token file's content
/// is never echoed.
#[test]
fn a_listener_off_loopback_needs_a_token_file() {
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("bucket.yaml"),
        "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: b}\nspec: {bucketName: sdop-open, region: us-east-1}\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        // Nothing listens there: the refusal comes first.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("SDOP_STATE_DIR", state.path().to_str().unwrap()),
    ];
    let dir = manifests.path().to_str().unwrap();
    let (code, _, stderr) = sdop_env(&["run", dir, "--listen", "0.0.0.0:0"], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without --auth-token-file")
            && stderr.contains("Authorization: Bearer TOKEN"),
        "{stderr}"
    );
    assert!(!state.path().join("daemon.json").exists());
    // A token that cannot be sent in a header is refused without being shown.
    let token = state.path().join("token");
    std::fs::write(&token, "not a token\n").unwrap();
    let (code, _, stderr) = sdop_env(
        &[
            "run",
            dir,
            "--listen",
            "0.0.0.0:0",
            "--auth-token-file",
            token.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("printable ASCII") && !stderr.contains("not a token"),
        "{stderr}"
    );
}

/// Writes a status file into a state directory, as sdop saves one.
fn put_status(state: &std::path::Path, status: serde_json::Value) {
    let dir = state.join(status["kind"].as_str().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.json", status["name"].as_str().unwrap()));
    std::fs::write(file, serde_json::to_vec_pretty(&status).unwrap()).unwrap();
}

/// Issue #23: `sdop get` shows a message in full (a container's own error is past 100
/// characters), a resource whose manifest is invalid as such, with FILE:LINE:COL, and says
/// which state it read.
#[test]
fn get_shows_whole_messages_invalid_manifests_and_the_state_it_read() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let failure = "The primary container for production variant AllTraffic did not pass the ping health check. Please check CloudWatch logs for this endpoint. Container said: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB";
    put_status(
        &state,
        serde_json::json!({
            "kind": "Endpoint", "name": "sd-base", "phase": "Failed", "message": failure,
        }),
    );
    let problem = "manifest invalid, running on its last good spec: m/repo.yaml:3:7: ImageRepository/inference: unknown field `tagz`";
    put_status(
        &state,
        serde_json::json!({
            "kind": "ImageRepository", "name": "inference", "phase": "Ready",
            "message": "all AWS objects match the manifest",
            "conditions": [{"type": "ManifestValid", "status": false, "reason": "InvalidManifest",
                            "message": problem, "lastTransition": "2024-06-01T00:00:00Z"}],
        }),
    );
    let state_env = [("SDOP_STATE_DIR", state.to_str().unwrap())];
    let (code, table, stderr) = sdop_env(&["get"], &state_env);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains(failure), "cut: {table}");
    let inference = table
        .lines()
        .find(|l| l.starts_with("ImageRepository/inference"))
        .unwrap();
    assert!(inference.contains(problem), "{table}");
    assert_eq!(
        stderr,
        format!("status from the state directory {}\n", state.display())
    );
}

/// Issue #23: the read-only commands (`validate`, `plan`, `get`, `audit`) create no state
/// directory and no file; `get` says the state directory it was pointed at does not exist.
#[test]
fn read_only_commands_create_nothing() {
    let aws = crate::support::local_aws::LocalAws::start();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let example = "examples/minimal-endpoint/";
    let run = |args: &[&str]| {
        sdop_env(
            args,
            &[
                ("HOME", home.path().to_str().unwrap()),
                ("SDOP_STATE_DIR", state.to_str().unwrap()),
                ("AWS_ENDPOINT_URL", &aws.endpoint),
                ("AWS_ACCESS_KEY_ID", "local"),
                ("AWS_SECRET_ACCESS_KEY", "local"),
                ("AWS_REGION", "us-east-1"),
            ],
        )
    };
    for (args, expected) in [
        (vec!["validate", example], 0),
        (vec!["plan", example], 2),
        (vec!["plan", "--offline", example], 2),
        (vec!["audit", example], 0),
        (vec!["get", "-o", "json"], 0),
        (vec!["get"], 0),
    ] {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, expected, "{args:?}: {stdout}{stderr}");
        assert!(!state.exists(), "{args:?} created {}", state.display());
        let made: Vec<_> = std::fs::read_dir(home.path()).unwrap().flatten().collect();
        assert!(made.is_empty(), "{args:?} created {made:?}");
    }
    let (_, _, stderr) = run(&["get"]);
    assert!(
        stderr.contains(&format!(
            "status from the state directory {}, which does not exist",
            state.display()
        )),
        "{stderr}"
    );
}

/// Issue #23: `plan --offline` without a region (CI with no AWS settings) prices in the region
/// the manifests name; when they name several it says so, once, and `--region` decides.
#[test]
fn plan_offline_prices_in_the_region_the_manifests_name() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = |name: &str, region: &str| {
        format!("apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: {name}}}\nspec: {{bucketName: sdop-{name}, region: {region}}}\n")
    };
    std::fs::write(
        dir.path().join("bucket.yaml"),
        bucket("models", "us-east-1"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("endpoint.yaml"),
        r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {name: base}
spec:
  endpointName: sd-base
  image: {uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}
  modelData: {s3Uri: "s3://sdop-models/model.tar.gz"}
  instanceType: ml.g4dn.2xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}
"#,
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, plan, stderr) = sdop_env(&["plan", "--offline", path], &[]);
    assert_eq!(code, 2, "{plan}{stderr}");
    assert!(
        plan.contains("cost: +$0.94/h, none -> ml.g4dn.2xlarge x1")
            && plan.contains("Cost: +$0.94/h by this plan; $0.94/h for the endpoints planned"),
        "{plan}"
    );
    // Two regions named: which one the endpoint goes to is --region's (or AWS_REGION's) to say.
    std::fs::write(dir.path().join("logs.yaml"), bucket("logs", "us-west-2")).unwrap();
    let (code, plan, _) = sdop_env(&["plan", "--offline", path], &[]);
    assert_eq!(code, 2, "{plan}");
    assert!(
        plan.contains(
            "not priced: the manifests name several regions (us-east-1, us-west-2); pass --region"
        ),
        "{plan}"
    );
    let total = plan.lines().find(|l| l.starts_with("Cost: ")).unwrap();
    assert_eq!(total.matches("no price for").count(), 1, "{total}");
    let said_by_flag = ["plan", "--offline", path, "--region", "us-east-1"];
    let said_by_env = ["plan", "--offline", path];
    for (args, env) in [
        (&said_by_flag[..], &[][..]),
        (&said_by_env[..], &[("AWS_REGION", "us-east-1")][..]),
    ] {
        let (code, plan, _) = sdop_env(args, env);
        assert_eq!(code, 2, "{plan}");
        assert!(
            plan.contains("Cost: +$0.94/h by this plan"),
            "{args:?}: {plan}"
        );
    }
}

/// Issue #23: a Failed resource is not a dead end. An endpoint whose container finds no
/// checkpoint in its model data fails; fixing the data in S3 (outside the spec) is not seen by
/// `apply`, whose message says how to retry; `sdop reconcile Endpoint/base DIR --wait` deletes
/// the failed endpoint, creates it again, and it serves.
#[test]
fn reconcile_retries_a_failed_endpoint_once_its_cause_is_fixed_elsewhere() {
    let aws = crate::support::local_aws::LocalAws::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(aws.s3());
    let model = runtime.block_on(crate::emulator::upload_package(
        &s3,
        "base/model.tar.gz",
        &["README.md"],
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("endpoint.yaml"),
        format!(
            r#"apiVersion: sdop/v1alpha1
kind: Endpoint
metadata: {{name: base}}
spec:
  endpointName: sd-retry
  image: {{uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:latest"}}
  modelData: {{s3Uri: "{model}"}}
  instanceType: ml.g4dn.xlarge
  executionRoleArn: arn:aws:iam::123456789012:role/sdop-test
  environment: {{api_endpoint: "https://api-id.execute-api.us-east-1.amazonaws.com/prod"}}
"#
        ),
    )
    .unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let (code, stdout, stderr) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("No checkpoints found") && stdout.contains("sdop reconcile Endpoint/base"),
        "the failure and how to retry it: {stdout}"
    );
    // The checkpoint is put where the spec says, by hand: the spec does not change.
    runtime.block_on(crate::emulator::upload_package(
        &s3,
        "base/model.tar.gz",
        &["Stable-diffusion/v1-5-pruned.ckpt"],
    ));
    let (code, stdout, stderr) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(
        code, 1,
        "a remembered failure is not retried by itself: {stdout}{stderr}"
    );
    let (code, plan, stderr) = against_local_aws(&aws, state.path(), &["plan", &path]);
    assert_eq!(code, 0, "{plan}{stderr}");
    assert!(
        plan.contains("Failed: Endpoint/base: ") && plan.contains("sdop reconcile Endpoint/base"),
        "the plan says what is failed and how to retry it: {plan}"
    );
    let (code, stdout, stderr) = against_local_aws(
        &aws,
        state.path(),
        &[
            "reconcile",
            "endpoint/base",
            &path,
            "--wait",
            "--timeout",
            "2m",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("retry of Endpoint/base requested"),
        "{stdout}"
    );
    let sm = runtime.block_on(aws.sagemaker());
    let described = runtime
        .block_on(sm.describe_endpoint().endpoint_name("sd-retry").send())
        .unwrap();
    assert_eq!(
        described.endpoint_status().map(|s| s.as_str()),
        Some("InService")
    );
    // Nothing to retry for a resource sdop never applied.
    let (code, _, stderr) = against_local_aws(&aws, state.path(), &["reconcile", "Bucket/nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has not applied it yet"), "{stderr}");
}

/// Issue #23: without a daemon too, a resource whose manifest became invalid is shown as
/// such by `get` (it was not applied, with the problem's position), not as its last pass left
/// it; fixed, it is applied and shown as usual again.
#[test]
fn get_after_an_apply_shows_a_manifest_that_became_invalid() {
    let aws = crate::support::local_aws::LocalAws::start();
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = dir.path().join("bucket.yaml");
    let good = "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: data}\nspec:\n  bucketName: sdop-cli-invalid\n  region: us-east-1\n";
    std::fs::write(&file, good).unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let (code, out, err) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(&file, good.replace("  region:", "  regoin:")).unwrap();
    let (code, out, err) = against_local_aws(&aws, state.path(), &["apply", &path]);
    assert_eq!(code, 1, "{out}{err}");
    let (code, table, _) = against_local_aws(&aws, state.path(), &["get", "Bucket/data"]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("manifest invalid, not applied: ")
            && table.contains("bucket.yaml:6:3: Bucket/data: spec: unknown field `regoin`"),
        "{table}"
    );
    std::fs::write(&file, good).unwrap();
    let (code, out, err) = against_local_aws(&aws, state.path(), &["apply", &path, "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, table, _) = against_local_aws(&aws, state.path(), &["get", "Bucket/data"]);
    assert!(
        !table.contains("manifest invalid") && table.contains("all AWS objects match the manifest"),
        "{table}"
    );
}

/// Issue #23 (the newcomer's list): `sdop` alone prints the help, also with AWS_REGION and
/// SDOP_STATE_DIR set (flags the environment sets are not a command line).
#[test]
fn sdop_alone_prints_the_help_whatever_the_environment() {
    for env in [
        &[][..],
        &[("AWS_REGION", "us-east-1"), ("SDOP_STATE_DIR", "/tmp/x")][..],
    ] {
        let (code, stdout, stderr) = sdop_env(&[], env);
        assert_eq!(code, 2, "{env:?}: {stdout}{stderr}");
        assert!(
            stdout.contains("Usage: sdop") && stdout.contains("Commands:"),
            "{env:?}: {stdout}{stderr}"
        );
        assert!(
            !stderr.contains("requires a subcommand"),
            "{env:?}: {stderr}"
        );
    }
}
