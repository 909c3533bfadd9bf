//! `Daemon`: a real `sdop run` process against a [`LocalAws`], with its own AWS access key
//! (so the emulator counts its calls apart from others'), state directory and log file; its
//! HTTP status API; SIGTERM and SIGKILL. Plus the leak audit every daemon test ends with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::local_aws::LocalAws;

pub struct Daemon {
    child: Option<Child>,
    pub url: String,
    pub state: PathBuf,
    pub log: PathBuf,
    pub caller: String,
}

pub fn sdop_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sdop"))
}

impl Daemon {
    /// Starts `sdop run PATHS ARGS` as `caller` and waits for its HTTP listener.
    pub fn start(
        aws: &LocalAws,
        paths: &[&Path],
        state: &Path,
        caller: &str,
        args: &[&str],
    ) -> Daemon {
        std::fs::create_dir_all(state).unwrap();
        let _ = std::fs::remove_file(state.join("daemon.json"));
        let log = state.with_extension(format!("{caller}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = Command::new(sdop_bin());
        command
            .arg("run")
            .args(paths)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("AWS_ENDPOINT_URL", &aws.endpoint)
            .env("AWS_ACCESS_KEY_ID", caller)
            .env("AWS_SECRET_ACCESS_KEY", "local-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SDOP_STATE_DIR", state)
            .env("RUST_LOG", "sdop=debug,info")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("start sdop run");
        let mut daemon = Daemon {
            child: Some(child),
            url: String::new(),
            state: state.to_path_buf(),
            log,
            caller: caller.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(state.join("daemon.json")) {
                let v: Value = serde_json::from_str(&text).unwrap();
                daemon.url = v["url"].as_str().unwrap().to_string();
                break;
            }
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sdop run exited at start ({status}):\n{}", daemon.logs());
            }
            assert!(
                Instant::now() < deadline,
                "sdop run did not start:\n{}",
                daemon.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(|e| e.to_string())?;
        let code = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((code, body))
    }

    /// The JSON status API: `{"daemon": {...}, "resources": [...]}`.
    pub fn status(&self) -> Value {
        let (_, body) = self
            .get("/api/v1/status")
            .unwrap_or_else(|e| panic!("status: {e}\n{}", self.logs()));
        serde_json::from_str(&body).unwrap()
    }

    /// The status of `Kind/name`, if the daemon has one.
    pub fn resource(&self, id: &str) -> Option<Value> {
        let (kind, name) = id.split_once('/').unwrap();
        self.status()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .cloned()
    }

    pub fn phase(&self, id: &str) -> String {
        self.resource(id)
            .map(|r| r["phase"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// Polls the status API until `ready` holds, or panics with the logs after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if ready(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; status:\n{status:#}\nlogs:\n{}",
                    tail(&self.logs(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every listed resource is Ready.
    pub fn wait_ready(&self, ids: &[&str], timeout: Duration) -> Value {
        self.wait_for(&format!("{ids:?} Ready"), timeout, |status| {
            ids.iter().all(|id| {
                status["resources"].as_array().unwrap().iter().any(|r| {
                    format!(
                        "{}/{}",
                        r["kind"].as_str().unwrap(),
                        r["name"].as_str().unwrap()
                    ) == *id
                        && r["phase"] == "Ready"
                })
            })
        })
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Calls a caller made that changed AWS, leaving out the lease object's own writes.
pub fn mutations_by(aws: &LocalAws, caller: &str) -> u64 {
    let calls = aws.calls().0;
    let Some(apis) = calls["by_caller"][caller]["by_api"].as_object() else {
        return 0;
    };
    apis.iter()
        .filter(|(api, _)| !matches!(api.as_str(), "s3:PutObject" | "s3:DeleteObject"))
        .map(|(_, c)| c["mutate"].as_u64().unwrap_or(0))
        .sum()
}

/// The leak audit: nothing billable that no manifest owns. Endpoints must be exactly
/// `endpoints`; no training job may still run unless listed in `running_jobs`; no multipart
/// upload may be left open in any bucket. Returns (models, endpoint configs) for duplicate checks.
pub async fn leak_audit(
    aws: &LocalAws,
    endpoints: &[&str],
    running_jobs: &[&str],
) -> (Vec<String>, Vec<String>) {
    let sm = aws.sagemaker().await;
    let mut found: Vec<String> = sm
        .list_endpoints()
        .send()
        .await
        .unwrap()
        .endpoints()
        .iter()
        .map(|e| e.endpoint_name().unwrap_or_default().to_string())
        .collect();
    found.sort();
    let mut want: Vec<String> = endpoints.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "leak audit: endpoints");
    let jobs = sm.list_training_jobs().send().await.unwrap();
    for job in jobs.training_job_summaries() {
        let running = matches!(
            job.training_job_status().map(|s| s.as_str()),
            Some("InProgress") | Some("Stopping")
        );
        let name = job.training_job_name().unwrap_or_default();
        assert!(
            !running || running_jobs.iter().any(|r| name.starts_with(r)),
            "leak audit: training job {name} still running"
        );
    }
    let s3 = aws.s3().await;
    for bucket in s3.list_buckets().send().await.unwrap().buckets() {
        let name = bucket.name().unwrap_or_default();
        let uploads = s3
            .list_multipart_uploads()
            .bucket(name)
            .send()
            .await
            .unwrap();
        assert!(
            uploads.uploads().is_empty(),
            "leak audit: open multipart uploads in {name}: {:?}",
            uploads.uploads()
        );
    }
    let mut models: Vec<String> = sm
        .list_models()
        .send()
        .await
        .unwrap()
        .models()
        .iter()
        .map(|m| m.model_name().unwrap_or_default().to_string())
        .collect();
    models.sort();
    let mut configs: Vec<String> = sm
        .list_endpoint_configs()
        .send()
        .await
        .unwrap()
        .endpoint_configs()
        .iter()
        .map(|c| c.endpoint_config_name().unwrap_or_default().to_string())
        .collect();
    configs.sort();
    (models, configs)
}

/// One POST a [`WebhookSink`] received: its headers (names lowercased) and exact body bytes.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback: collects what is POSTed to it.
pub struct WebhookSink {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut headers = Vec::new();
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        let name = name.trim().to_ascii_lowercase();
                        if name == "content-length" {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        headers.push((name, value.trim().to_string()));
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    sink.lock().unwrap().push(Delivery { headers, body });
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        WebhookSink { url, received }
    }

    /// Every POST received so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    /// The `event` fields received so far, in order.
    pub fn events(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|d| serde_json::from_slice::<Value>(&d.body).ok())
            .map(|v| {
                format!(
                    "{} {}",
                    v["event"].as_str().unwrap_or(""),
                    v["resource"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// HMAC-SHA256 written out from its definition (RFC 2104) on plain SHA-256, lowercase hex: the
/// tests check sdop's webhook signatures against it rather than against the crate sdop uses.
pub fn reference_hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}
