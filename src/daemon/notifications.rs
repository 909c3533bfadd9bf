//! Notifications: what a reconcile pass means to a person (pure, from the status before and
//! after the pass), logged always and posted as JSON to `--notify-webhook` when set.

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

/// Posts notifications to a webhook, one at a time from a bounded queue, off the async
/// runtime; a slow or failing receiver never holds up reconciling (events are dropped with a
/// warning when 1,000 are queued).
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
    pub fn start(url: String) -> Webhook {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Notification>(1000);
        tokio::spawn(async move {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(true)
                .build()
                .into();
            while let Some(notification) = rx.recv().await {
                let (agent, target) = (agent.clone(), url.clone());
                let sent = tokio::task::spawn_blocking(move || {
                    agent.post(&target).send_json(&notification).map(|_| ())
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
