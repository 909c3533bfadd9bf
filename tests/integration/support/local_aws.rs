//! `LocalAws`: starts the extended moto server from `deploy/local-aws/up` on a free loopback
//! port, waits until it is ready, hands out configured SDK clients, exposes the emulator's
//! control API (durations, faults, call counter), and kills the server on drop.
//!
//! The server's stderr (moto's and werkzeug's warnings, its refusals) goes to a log file, not
//! into the test output: a test that fails prints the log's tail and keeps the file; a test
//! that passes removes it, as the Python self-checks do with theirs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that installs the emulator, for error messages.
pub const INSTALL_COMMAND: &str = "deploy/local-aws/up --install-only";

/// Fails with a message naming the install command when the virtualenv is missing.
pub fn check_installed(root: &Path) -> Result<(), String> {
    let python = root.join("deploy/local-aws/.venv/bin/python");
    if python.exists() {
        Ok(())
    } else {
        Err(format!(
            "the local AWS emulator is not installed ({} is missing): run `{INSTALL_COMMAND}` \
             from the repository root (it creates the virtualenv with the pinned moto from PyPI)",
            python.display()
        ))
    }
}

pub struct LocalAws {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    /// The server's stderr.
    log: Option<tempfile::NamedTempFile>,
}

/// The last `lines` lines of the file at `path`.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Counts of AWS calls that reached the emulator.
#[derive(Debug, Clone)]
pub struct CallCounts(pub Value);

impl CallCounts {
    pub fn reads(&self) -> u64 {
        self.0["total"]["read"].as_u64().unwrap_or(0)
    }
    pub fn mutations(&self) -> u64 {
        self.0["total"]["mutate"].as_u64().unwrap_or(0)
    }
    /// Calls of one API, e.g. `sagemaker:CreateModel`.
    pub fn of(&self, api: &str) -> u64 {
        self.0["by_api"][api]["count"].as_u64().unwrap_or(0)
    }
    /// Bytes of the request bodies of one API's calls (faulted ones included), e.g. what
    /// `s3:UploadPart` sent.
    pub fn body_bytes(&self, api: &str) -> u64 {
        self.0["body_bytes"][api]["bytes"].as_u64().unwrap_or(0)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl LocalAws {
    /// Starts an isolated emulator. Panics with the install command if it is not installed.
    pub fn start() -> LocalAws {
        let root = repo_root();
        if let Err(message) = check_installed(&root) {
            panic!("{message}");
        }
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            match Self::spawn(&root, port) {
                Ok(aws) => return aws,
                Err(err) => last_error = err,
            }
        }
        panic!("local AWS did not start: {last_error}");
    }

    fn spawn(root: &Path, port: u16) -> Result<LocalAws, String> {
        let log = tempfile::Builder::new()
            .prefix(&format!("sdop-local-aws-{port}-"))
            .suffix(".log")
            .tempfile()
            .map_err(|e| format!("cannot create the local AWS log file: {e}"))?;
        let stderr = log
            .reopen()
            .map_err(|e| format!("cannot open {}: {e}", log.path().display()))?;
        let mut child = Command::new(root.join("deploy/local-aws/up"))
            .args(["--port", &port.to_string(), "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run deploy/local-aws/up: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        let log_path = log.path().to_path_buf();
        let aws = LocalAws {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            log: Some(log),
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => Ok(aws),
            Err(_) => Err(format!(
                "no ready line within {READY_TIMEOUT:?} on port {port}; its stderr:\n{}",
                log_tail(&log_path, 40)
            )),
        }
    }

    /// What the server wrote to stderr so far (warnings, refusals).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log.path()).ok())
            .unwrap_or_default()
    }

    /// SDK configuration for this emulator: static credentials, us-east-1, the SDK's standard
    /// retries (pass `max_attempts` 1 to see every injected fault).
    pub async fn sdk_config_with_attempts(&self, max_attempts: u32) -> SdkConfig {
        let credentials = aws_sdk_s3::config::Credentials::new(
            "AKIDLOCALTEST",
            "local-secret",
            None,
            None,
            "sdop-tests",
        );
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts))
            .load()
            .await
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with_attempts(3).await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub async fn bucket_exists(&self, bucket: &str) -> bool {
        self.s3()
            .await
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .is_ok()
    }

    pub async fn sagemaker(&self) -> aws_sdk_sagemaker::Client {
        aws_sdk_sagemaker::Client::new(&self.sdk_config().await)
    }

    pub async fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.sdk_config().await)
    }

    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config().await)
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }

    pub async fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config().await)
    }

    fn control_url(&self, path: &str) -> String {
        format!("{}/_sdop/{path}", self.endpoint)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        ureq::post(&self.control_url(path))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST /_sdop/{path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap_or(Value::Null)
    }

    /// Merges lifecycle durations / checkpoint size, e.g. `{"endpoint_create_seconds": 0.5}`.
    pub fn configure(&self, config: Value) -> Value {
        self.post("config", config)
    }

    /// Arms the kill point: the `nth` call of `api` takes effect and its answer is held.
    pub fn arm_kill_point(&self, api: &str, nth: usize) {
        self.post("kill-point", serde_json::json!({"api": api, "nth": nth}));
    }

    /// True once a call is held at the kill point.
    pub fn kill_point_reached(&self) -> bool {
        let state: Value = ureq::get(&self.control_url("kill-point"))
            .call()
            .expect("GET kill-point")
            .body_mut()
            .read_json()
            .expect("kill-point JSON");
        state["reached"] == true
    }

    /// Disarms the kill point and releases a held answer.
    pub fn release_kill_point(&self) {
        ureq::delete(&self.control_url("kill-point"))
            .call()
            .expect("DELETE kill-point");
    }

    /// Sets fault knobs, e.g. `{"throttle": {"sagemaker:DescribeEndpoint": 0.2}}`.
    pub fn faults(&self, faults: Value) -> Value {
        self.post("faults", faults)
    }

    pub fn clear_faults(&self) {
        ureq::delete(&self.control_url("faults"))
            .call()
            .expect("DELETE faults");
    }

    pub fn calls(&self) -> CallCounts {
        CallCounts(
            ureq::get(&self.control_url("calls"))
                .call()
                .expect("GET calls")
                .body_mut()
                .read_json()
                .expect("calls JSON"),
        )
    }

    fn call_entries(&self) -> Vec<Value> {
        let log: Value = ureq::get(&self.control_url("calls/log"))
            .call()
            .expect("GET calls/log")
            .body_mut()
            .read_json()
            .expect("calls log JSON");
        log["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Every mutating call that reached the emulator and was not faulted, oldest first, as
    /// `sagemaker:CreateModel`.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.call_entries()
            .iter()
            .filter(|c| c["read"] == false && c["faulted"] == false)
            .filter_map(|c| c["api"].as_str().map(str::to_string))
            .collect()
    }

    /// The APIs called since the last reset, in order (e.g. `s3:PutObject`).
    pub fn call_log(&self) -> Vec<String> {
        self.call_entries()
            .iter()
            .map(|c| c["api"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn reset_calls(&self) {
        ureq::delete(&self.control_url("calls"))
            .call()
            .expect("DELETE calls");
    }

    /// What the emulated containers did: `{"logs": {name: [line]}, "loaded": {endpoint: ckpt}}`.
    /// Rollouts as the local AWS shifted their traffic: `{endpoint: [{config, steps, alarms,
    /// outcome}]}`.
    pub fn rollouts(&self) -> Value {
        ureq::get(&self.control_url("rollouts"))
            .call()
            .expect("GET rollouts")
            .body_mut()
            .read_json()
            .expect("rollouts JSON")
    }

    /// Creates a CloudWatch alarm `name` in `state` (`OK`, `ALARM`) through the CloudWatch
    /// query API, as an alarm on the endpoint's errors would be.
    pub fn cloudwatch_alarm(&self, name: &str, state: &str) {
        let call = |form: &[(&str, &str)]| {
            ureq::post(&self.endpoint)
                .header(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0",
                )
                .send_form(form.iter().copied())
                .unwrap_or_else(|e| panic!("CloudWatch {form:?}: {e}"));
        };
        call(&[
            ("Action", "PutMetricAlarm"),
            ("Version", "2010-08-01"),
            ("AlarmName", name),
            ("MetricName", "Invocation5XXErrors"),
            ("Namespace", "AWS/SageMaker"),
            ("Statistic", "Sum"),
            ("Period", "60"),
            ("EvaluationPeriods", "1"),
            ("Threshold", "1"),
            ("ComparisonOperator", "GreaterThanOrEqualToThreshold"),
        ]);
        call(&[
            ("Action", "SetAlarmState"),
            ("Version", "2010-08-01"),
            ("AlarmName", name),
            ("StateValue", state),
            ("StateReason", "test"),
        ]);
    }

    pub fn containers(&self) -> Value {
        ureq::get(&self.control_url("containers"))
            .call()
            .expect("GET containers")
            .body_mut()
            .read_json()
            .expect("containers JSON")
    }

    /// Creates `bucket` (if needed) and `count` training images under `prefix`, as a user
    /// uploads a DreamBooth dataset before training.
    pub async fn seed_dataset(&self, bucket: &str, prefix: &str, count: usize) {
        let s3 = self.s3().await;
        let _ = s3.create_bucket().bucket(bucket).send().await;
        for i in 0..count {
            s3.put_object()
                .bucket(bucket)
                .key(format!("{prefix}image{i:02}.jpg"))
                .body(vec![i as u8; 512].into())
                .send()
                .await
                .expect("seed dataset image");
        }
    }

    /// The user's uploads before a DreamBooth job (workshop steps 5 and 9) in `bucket`: an SD
    /// 2.1 checkpoint with its .yaml under `checkpoints/`, three images under `dataset/`.
    pub async fn seed_training_inputs(&self, bucket: &str) {
        self.seed_dataset(bucket, "dataset/", 3).await;
        let s3 = self.s3().await;
        for (key, body) in [
            ("checkpoints/v2-1_768-ema-pruned.ckpt", &b"weights"[..]),
            (
                "checkpoints/v2-1_768-ema-pruned.yaml",
                b"model: {params: {parameterization: v}}",
            ),
        ] {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.to_vec().into())
                .send()
                .await
                .expect("seed checkpoint");
        }
    }

    /// Empties every service and clears faults, counters and durations.
    pub fn reset(&self) {
        self.post("reset", Value::Null);
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said and keeps the whole log.
        if std::thread::panicking() {
            if let Some(log) = self.log.take() {
                let path = log.path().to_path_buf();
                let kept = log.keep().map(|(_, p)| p).unwrap_or(path);
                eprintln!(
                    "local AWS stderr (last 60 lines; all of it in {}):\n{}",
                    kept.display(),
                    log_tail(&kept, 60)
                );
            }
        }
    }
}
