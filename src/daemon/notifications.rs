//! Notifications: what a reconcile pass means to a person (pure, from the status before and
//! after the pass), logged always and posted as JSON to `--notify-webhook` when set; signed
//! with `--webhook-secret-file` (an HMAC-SHA256 of the body, as GitHub signs its webhooks).

use std::time::Duration;

use serde::Serialize;

use crate::state::{Phase, ResourceStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventKind {
    #[serde(rename = "rollout.started")]
    RolloutStarted,
    #[serde(rename = "rollout.succeeded")]
    RolloutSucceeded,
    #[serde(rename = "rollout.failed")]
    RolloutFailed,
    #[serde(rename = "training.completed")]
    TrainingCompleted,
    #[serde(rename = "training.failed")]
    TrainingFailed,
    #[serde(rename = "drift.corrected")]
    DriftCorrected,
    #[serde(rename = "conflict.found")]
    ConflictFound,
    /// A model version became the approved one production serves.
    #[serde(rename = "promotion.approved")]
    PromotionApproved,
    /// A candidate version was rejected (by its evidence or by a person).
    #[serde(rename = "promotion.rejected")]
    PromotionRejected,
    /// The approved version went back to an earlier one (the later one was rejected after
    /// approval): production rolls back.
    #[serde(rename = "promotion.rolledBack")]
    PromotionRolledBack,
    /// A version passed its evaluation and waits for a person to approve it.
    #[serde(rename = "promotion.awaitingApproval")]
    PromotionAwaitingApproval,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub event: EventKind,
    pub resource: String,
    pub phase: Phase,
    pub message: String,
    pub at: String,
    /// Which sdop said it (the lease holder identity, or the host name).
    pub daemon: String,
}

/// What changed in one pass of a resource. `spec_hash` is its manifest's; `mutated` says the
/// pass changed AWS.
pub fn events_of(
    before: &ResourceStatus,
    after: &ResourceStatus,
    spec_hash: &str,
    mutated: bool,
) -> Vec<EventKind> {
    let mut events = Vec::new();
    let entered = |phase: Phase| after.phase == phase && before.phase != phase;
    let converged_before =
        before.phase == Phase::Ready && before.observed_spec_hash.as_deref() == Some(spec_hash);
    // New content-named objects (a model, an endpoint config) mean new desired content: a new
    // spec, or a new package after a retrain. Without them a mutation only restores drift.
    let created_objects = after.objects.iter().any(|o| {
        !before
            .objects
            .iter()
            .any(|b| b.aws_type == o.aws_type && b.name == o.name)
    });
    let new_content = !converged_before || created_objects;
    match after.kind.as_str() {
        "Endpoint" => {
            // A rollout: the endpoint changes towards new content and is not serving it yet
            // (going back after a failed smoke check is not one).
            let rolling_back = after.conditions.iter().any(|c| {
                c.kind == "Ready"
                    && c.reason == crate::engine::decide::Reason::SmokeCheckFailed.as_str()
            });
            if mutated && new_content && after.phase == Phase::Progressing && !rolling_back {
                events.push(EventKind::RolloutStarted);
            }
            if entered(Phase::Ready) && before.phase != Phase::Pending {
                events.push(EventKind::RolloutSucceeded);
            }
            if entered(Phase::Degraded) || entered(Phase::Failed) {
                events.push(EventKind::RolloutFailed);
            }
        }
        "ModelPromotion" => {
            let output = |status: &ResourceStatus, key: &str| {
                status.outputs.get(key).cloned().unwrap_or_default()
            };
            let (old, new) = (
                output(before, "approvedVersion"),
                output(after, "approvedVersion"),
            );
            let number = |v: &str| v.parse::<u64>().unwrap_or(0);
            if old != new {
                if !old.is_empty() && number(&new) < number(&old) {
                    events.push(EventKind::PromotionRolledBack);
                } else {
                    events.push(EventKind::PromotionApproved);
                }
            }
            let decided = |status: &ResourceStatus| {
                (
                    output(status, "candidateVersion"),
                    output(status, "candidateDecision"),
                )
            };
            if decided(before) != decided(after) && output(after, "candidateDecision") == "Rejected"
            {
                events.push(EventKind::PromotionRejected);
            }
            let awaiting = output(after, "awaitingApproval");
            if !awaiting.is_empty() && output(before, "awaitingApproval") != awaiting {
                events.push(EventKind::PromotionAwaitingApproval);
            }
        }
        "DreamboothJob" => {
            if entered(Phase::Ready) && before.phase == Phase::Progressing {
                events.push(EventKind::TrainingCompleted);
            }
            if entered(Phase::Failed) {
                events.push(EventKind::TrainingFailed);
            }
        }
        _ => {}
    }
    if mutated && !new_content {
        events.push(EventKind::DriftCorrected);
    }
    if entered(Phase::Conflict) {
        events.push(EventKind::ConflictFound);
    }
    events
}

/// The header carrying the body's signature: `sha256=` and the lowercase hex HMAC-SHA256 of
/// the exact request body keyed with the secret. GitHub's `X-Hub-Signature-256` scheme (and the
/// value format of Flux's `generic-hmac` `X-Signature`).
pub const SIGNATURE_HEADER: &str = "X-Sdop-Signature-256";

/// The webhook secret: never printed (its `Debug` is redacted), never logged or sent.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The `X-Sdop-Signature-256` value of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(body);
        format!(
            "sha256={}",
            crate::model::naming::hex(&mac.finalize().into_bytes())
        )
    }
}

/// Reads `--webhook-secret-file`: the whole file, less one trailing newline (`\n` or `\r\n`,
/// as `echo` or an editor leaves it). Unreadable or empty is an error naming the path and the
/// fix; the content is never part of an error.
pub fn read_secret(path: &std::path::Path) -> crate::error::Result<Secret> {
    const FIX: &str = "write the secret the receiver checks signatures with into it, e.g. `openssl rand -hex 32 > FILE` (readable by sdop only: chmod 600), or drop --webhook-secret-file to send unsigned notifications";
    read_secret_file(path, "--webhook-secret-file", "the webhook secret", FIX).map(Secret)
}

/// A secret file's content less one trailing newline; unreadable or empty is an error naming
/// `flag`, the path and `fix`, never the content.
pub fn read_secret_file(
    path: &std::path::Path,
    flag: &str,
    what: &str,
    fix: &str,
) -> crate::error::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        crate::error::Error::Terminal(format!(
            "{flag} {}: cannot read {what} ({e}); {fix}",
            path.display()
        ))
    })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(crate::error::Error::Terminal(format!(
            "{flag} {}: the file is empty (a trailing newline does not count); {fix}",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Posts notifications to a webhook, one at a time from a bounded queue, off the async
/// runtime; a slow or failing receiver never holds up reconciling (events are dropped with a
/// warning when 1,000 are queued). With a secret, each POST carries [`SIGNATURE_HEADER`].
#[derive(Clone)]
pub struct Webhook {
    queue: tokio::sync::mpsc::Sender<Notification>,
}

/// Checks a webhook URL without echoing it (webhook URLs often carry a secret token).
pub fn check_url(url: &str) -> crate::error::Result<()> {
    let parsed: axum::http::Uri = url
        .parse()
        .map_err(|_| crate::error::Error::Terminal("--notify-webhook: not a valid URL".into()))?;
    match (parsed.scheme_str(), parsed.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(crate::error::Error::Terminal(
            "--notify-webhook: expected an http:// or https:// URL with a host".into(),
        )),
    }
}

/// An error's text with the webhook URL (and its path, where tokens live) taken out.
fn redacted(error: &str, url: &str) -> String {
    let mut text = error.replace(url, "<webhook URL>");
    if let Ok(uri) = url.parse::<axum::http::Uri>() {
        if let Some(pq) = uri.path_and_query().filter(|p| p.as_str().len() > 1) {
            text = text.replace(pq.as_str(), "/<redacted>");
        }
    }
    text
}

impl Webhook {
    pub fn start(url: String, secret: Option<Secret>) -> Webhook {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Notification>(1000);
        tokio::spawn(async move {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(true)
                .build()
                .into();
            while let Some(notification) = rx.recv().await {
                // Serialized once: the signature covers exactly the bytes sent.
                let body = match serde_json::to_vec(&notification) {
                    Ok(body) => body,
                    Err(err) => {
                        tracing::warn!(error = %err, "notification not serializable: dropped");
                        continue;
                    }
                };
                let signature = secret.as_ref().map(|s| s.sign(&body));
                let (agent, target) = (agent.clone(), url.clone());
                let sent = tokio::task::spawn_blocking(move || {
                    let mut request = agent
                        .post(&target)
                        .header("Content-Type", "application/json");
                    if let Some(signature) = signature {
                        request = request.header(SIGNATURE_HEADER, signature);
                    }
                    request.send(&body[..]).map(|_| ())
                })
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(
                        error = %redacted(&err.to_string(), &url),
                        "notification webhook failed"
                    ),
                    Err(err) => tracing::warn!(error = %err, "notification webhook task failed"),
                }
            }
        });
        Webhook { queue }
    }

    pub fn send(&self, notification: Notification) {
        if self.queue.try_send(notification).is_err() {
            tracing::warn!("notification webhook queue full: event dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ResourceId;

    fn status(kind: &str, phase: Phase, observed: Option<&str>) -> ResourceStatus {
        let mut s = ResourceStatus::new(&ResourceId::new(kind, "x"));
        s.phase = phase;
        s.observed_spec_hash = observed.map(str::to_string);
        s
    }

    #[test]
    fn promotions_rejections_rollbacks_and_waits_for_approval_are_announced() {
        let with = |pairs: &[(&str, &str)]| {
            let mut s = status("ModelPromotion", Phase::Ready, Some("h"));
            for (k, v) in pairs {
                s.outputs.insert(k.to_string(), v.to_string());
            }
            s
        };
        let v1 = with(&[
            ("approvedVersion", "1"),
            ("candidateVersion", "1"),
            ("candidateDecision", "Approved"),
        ]);
        assert_eq!(
            events_of(&with(&[]), &v1, "h", false),
            [EventKind::PromotionApproved]
        );
        let v2_rejected = with(&[
            ("approvedVersion", "1"),
            ("candidateVersion", "2"),
            ("candidateDecision", "Rejected"),
        ]);
        assert_eq!(
            events_of(&v1, &v2_rejected, "h", false),
            [EventKind::PromotionRejected]
        );
        assert!(events_of(&v2_rejected, &v2_rejected, "h", false).is_empty());
        let v3 = with(&[("approvedVersion", "3")]);
        let back = with(&[("approvedVersion", "2")]);
        assert_eq!(
            events_of(&v3, &back, "h", false),
            [EventKind::PromotionRolledBack]
        );
        let waiting = with(&[("approvedVersion", "2"), ("awaitingApproval", "4")]);
        assert_eq!(
            events_of(&back, &waiting, "h", false),
            [EventKind::PromotionAwaitingApproval]
        );
        assert_eq!(
            serde_json::to_value(EventKind::PromotionRolledBack).unwrap(),
            "promotion.rolledBack"
        );
    }

    #[test]
    fn endpoint_rollout_lifecycle() {
        let ready_old = status("Endpoint", Phase::Ready, Some("old"));
        let progressing = status("Endpoint", Phase::Progressing, Some("old"));
        assert_eq!(
            events_of(&ready_old, &progressing, "new", true),
            [EventKind::RolloutStarted]
        );
        let ready_new = status("Endpoint", Phase::Ready, Some("new"));
        assert_eq!(
            events_of(&progressing, &ready_new, "new", false),
            [EventKind::RolloutSucceeded]
        );
        let degraded = status("Endpoint", Phase::Degraded, Some("old"));
        assert_eq!(
            events_of(&progressing, &degraded, "new", false),
            [EventKind::RolloutFailed]
        );
        // Nothing new: nothing said.
        assert!(events_of(&ready_new, &ready_new, "new", false).is_empty());
    }

    #[test]
    fn a_retrained_package_rolls_out_and_restoring_a_config_is_drift() {
        // Same spec, new package: a new model and config are created and the endpoint updates.
        let mut before = status("Endpoint", Phase::Ready, Some("h"));
        before.record_object(
            crate::model::object::AwsType::SageMakerEndpointConfig,
            "sd-1",
        );
        let mut after = before.clone();
        after.phase = Phase::Progressing;
        after.record_object(
            crate::model::object::AwsType::SageMakerEndpointConfig,
            "sd-2",
        );
        assert_eq!(
            events_of(&before, &after, "h", true),
            [EventKind::RolloutStarted]
        );
        // Someone switched the endpoint to another config: restoring it creates nothing.
        let mut restoring = before.clone();
        restoring.phase = Phase::Progressing;
        assert_eq!(
            events_of(&before, &restoring, "h", true),
            [EventKind::DriftCorrected]
        );
    }

    #[test]
    fn a_smoke_check_rollback_is_announced_once_it_is_rolled_back() {
        // Rolling out, the check fails and the endpoint rolls back (Progressing), then it
        // serves the old config again (Degraded): one rollout.failed, when it is Degraded.
        let checking = status("Endpoint", Phase::Progressing, Some("old"));
        let mut rolling_back = checking.clone();
        rolling_back.set_phase(Phase::Progressing, "SmokeCheckFailed", "smoke check failed");
        let mut degraded = rolling_back.clone();
        degraded.set_phase(Phase::Degraded, "SmokeCheckFailed", "smoke check failed");
        assert!(events_of(&checking, &rolling_back, "new", true).is_empty());
        assert_eq!(
            events_of(&rolling_back, &degraded, "new", false),
            [EventKind::RolloutFailed]
        );
    }

    #[test]
    fn training_outcomes() {
        let running = status("DreamboothJob", Phase::Progressing, None);
        let done = status("DreamboothJob", Phase::Ready, Some("h"));
        assert_eq!(
            events_of(&running, &done, "h", false),
            [EventKind::TrainingCompleted]
        );
        let failed = status("DreamboothJob", Phase::Failed, None);
        assert_eq!(
            events_of(&running, &failed, "h", false),
            [EventKind::TrainingFailed]
        );
    }

    #[test]
    fn drift_and_conflict() {
        let ready = status("Bucket", Phase::Ready, Some("h"));
        assert_eq!(
            events_of(&ready, &ready, "h", true),
            [EventKind::DriftCorrected]
        );
        let conflict = status("Bucket", Phase::Conflict, None);
        let pending = status("Bucket", Phase::Pending, None);
        assert_eq!(
            events_of(&pending, &conflict, "h", false),
            [EventKind::ConflictFound]
        );
        assert!(events_of(&conflict, &conflict, "h", false).is_empty());
        // A first create is not drift.
        assert!(events_of(&pending, &ready, "h", true).is_empty());
    }

    #[test]
    fn webhook_urls_are_checked_and_never_echoed() {
        let url = "https://hooks.example.com/services/T000/B000/SECRETTOKEN";
        assert!(check_url(url).is_ok());
        for bad in ["hooks.example.com/x", "ftp://h/x", "not a url"] {
            let err = check_url(bad).unwrap_err().to_string();
            assert!(!err.contains(bad), "{err}");
        }
        let text = redacted(&format!("bad uri: {url} is missing host"), url);
        assert!(!text.contains("SECRETTOKEN"), "{text}");
        let text = redacted("io: connect to /services/T000/B000/SECRETTOKEN failed", url);
        assert!(!text.contains("SECRETTOKEN"), "{text}");
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body_in_github_format() {
        // RFC 4231, test case 2.
        let secret = Secret(b"Jefe".to_vec());
        assert_eq!(
            secret.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231, test case 6: a key longer than a block is hashed first.
        let long = Secret(vec![0xaa; 131]);
        assert_eq!(
            long.sign(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // A one-byte change of the body changes the signature.
        assert_ne!(
            long.sign(b"{\"event\":\"x\"}"),
            long.sign(b"{\"event\":\"y\"}")
        );
        assert_eq!(format!("{long:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn the_secret_file_loses_one_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let read = |name: &str, content: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            read_secret(&path).map(|s| s.0)
        };
        assert_eq!(read("a", b"s3cret\n").unwrap(), b"s3cret");
        assert_eq!(read("b", b"s3cret\r\n").unwrap(), b"s3cret");
        assert_eq!(read("c", b"s3cret").unwrap(), b"s3cret");
        assert_eq!(read("d", b"s3cret\n\n").unwrap(), b"s3cret\n");
        assert_eq!(read("e", b" s3cret \n").unwrap(), b" s3cret ");
        for (name, content) in [("empty", &b""[..]), ("newline", b"\n"), ("crlf", b"\r\n")] {
            let err = read(name, content).unwrap_err().to_string();
            let path = dir.path().join(name).display().to_string();
            assert!(
                err.contains(&path) && err.contains("is empty") && err.contains("openssl rand"),
                "{err}"
            );
        }
        let missing = dir.path().join("missing");
        let err = read_secret(&missing).unwrap_err().to_string();
        assert!(
            err.contains(&missing.display().to_string())
                && err.contains("cannot read the webhook secret")
                && err.contains("No such file"),
            "{err}"
        );
    }

    /// Accepts one HTTP request on `listener`; returns its headers (names lowercased) and body.
    fn receive_one(listener: &std::net::TcpListener) -> (Vec<(String, String)>, Vec<u8>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = Vec::new();
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        assert!(request_line.starts_with("POST /hook "), "{request_line}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a content-length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .unwrap();
        (headers, body)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn notification() -> Notification {
        Notification {
            event: EventKind::ConflictFound,
            resource: "Bucket/assets".into(),
            phase: Phase::Conflict,
            message: "not owned by sdop: caf\u{e9} \"quoted\"".into(),
            at: "2026-01-01T00:00:00Z".into(),
            daemon: "host-1".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signed_post_carries_the_hmac_of_the_exact_body_and_an_unsigned_one_none() {
        let secret_text = "webhook-s3cret-value";
        for signed in [true, false] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            let secret = signed.then(|| Secret(secret_text.as_bytes().to_vec()));
            let receiver = std::thread::spawn(move || receive_one(&listener));
            let webhook = Webhook::start(url, secret);
            webhook.send(notification());
            let (headers, body) = tokio::task::spawn_blocking(move || receiver.join().unwrap())
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["event"], "conflict.found");
            assert_eq!(json["message"], "not owned by sdop: caf\u{e9} \"quoted\"");
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
            assert!(!String::from_utf8_lossy(&body).contains(secret_text));
            let signature = header(&headers, SIGNATURE_HEADER);
            if signed {
                // The signature of the bytes received (the signer is checked against RFC 4231
                // above; the integration test recomputes it independently).
                let expected = Secret(secret_text.as_bytes().to_vec()).sign(&body);
                assert_eq!(signature, Some(expected.as_str()), "{headers:?}");
            } else {
                assert_eq!(signature, None, "{headers:?}");
            }
            assert!(
                headers.iter().all(|(_, v)| !v.contains(secret_text)),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn json_shape() {
        let n = Notification {
            event: EventKind::RolloutStarted,
            resource: "Endpoint/sd-base".into(),
            phase: Phase::Progressing,
            message: "Updating".into(),
            at: "2026-01-01T00:00:00Z".into(),
            daemon: "host-1".into(),
        };
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["event"], "rollout.started");
        assert_eq!(json["resource"], "Endpoint/sd-base");
        assert_eq!(json["phase"], "Progressing");
    }
}
