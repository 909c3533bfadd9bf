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
    match after.kind.as_str() {
        "Endpoint" => {
            // A rollout: the endpoint changes towards a new spec (or a new package) and is not
            // serving it yet.
            if mutated && !converged_before && after.phase == Phase::Progressing {
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
    if mutated && converged_before {
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
                let (agent, url) = (agent.clone(), url.clone());
                let sent = tokio::task::spawn_blocking(move || {
                    agent.post(&url).send_json(&notification).map(|_| ())
                })
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(error = %err, "notification webhook failed"),
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
