//! Leader election with one S3 object (`--lease s3://bucket/key`). Created with
//! `If-None-Match: *`; renewed, and taken over once expired, with `If-Match` on its ETag, so
//! exactly one daemon wins any race. Expiry is judged on this daemon's own clock: a lease whose
//! ETag has not changed for its TTL is expired (no trust in other hosts' clocks). The leader
//! stops mutating a margin before its lease could expire if renewals fail, so two leaders never
//! overlap.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use crate::aws::transport::MutationGate;
use crate::aws::{classify, is_not_found};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub bucket: String,
    pub key: String,
    pub ttl: Duration,
    pub renew: Duration,
    /// This daemon's identity in the lease (host, pid, random suffix).
    pub holder: String,
}

impl LeaseConfig {
    /// Parses `s3://bucket/key` and checks the timing (renew at most a third of the TTL).
    pub fn new(uri: &str, ttl: Duration, renew: Duration, holder: String) -> Result<LeaseConfig> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Terminal(format!("--lease {uri:?}: expected s3://BUCKET/KEY")))?;
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty() && !k.ends_with('/'))
            .ok_or_else(|| Error::Terminal(format!("--lease {uri:?}: expected s3://BUCKET/KEY")))?;
        if renew.is_zero() || renew * 3 > ttl {
            return Err(Error::Terminal(format!(
                "--lease-renew ({renew:?}) must be at most a third of --lease-ttl ({ttl:?})"
            )));
        }
        Ok(LeaseConfig {
            bucket: bucket.into(),
            key: key.into(),
            ttl,
            renew,
            holder,
        })
    }

    /// How long before a lease could expire its holder stops mutating.
    pub fn margin(&self) -> Duration {
        self.ttl / 5
    }
}

/// The lease object's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    pub holder: String,
    pub ttl_seconds: f64,
    pub renewed_at: String,
}

/// What a read of the lease object found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Absent,
    Held {
        etag: String,
        record: Option<LeaseRecord>,
    },
}

/// What to do next (see [`Elector::decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it: create it, if still absent.
    Create,
    /// It has not changed for its TTL: take it over, if still unchanged.
    TakeOver { etag: String },
    /// Someone else holds a live lease.
    Wait,
}

/// A standby's memory between reads: which ETag it saw first, and when (own clock).
#[derive(Debug, Default)]
pub struct Elector {
    seen: Option<(String, Instant)>,
}

impl Elector {
    /// Decides from one observation (pure in `now`). `default_ttl` applies when the lease body
    /// is unreadable.
    pub fn decide(&mut self, observed: &Observed, now: Instant, default_ttl: Duration) -> Step {
        match observed {
            Observed::Absent => {
                self.seen = None;
                Step::Create
            }
            Observed::Held { etag, record } => {
                let ttl = record
                    .as_ref()
                    .and_then(|r| Duration::try_from_secs_f64(r.ttl_seconds).ok())
                    .unwrap_or(default_ttl);
                match &self.seen {
                    Some((seen, since)) if seen == etag => {
                        if now.saturating_duration_since(*since) >= ttl {
                            Step::TakeOver { etag: etag.clone() }
                        } else {
                            Step::Wait
                        }
                    }
                    _ => {
                        self.seen = Some((etag.clone(), now));
                        Step::Wait
                    }
                }
            }
        }
    }
}

/// The leader gate every mutating AWS call checks (see `aws::transport`).
#[derive(Debug, Default)]
pub struct LeaderGate {
    until: Mutex<Option<Instant>>,
}

impl LeaderGate {
    pub fn lead_until(&self, until: Option<Instant>) {
        *self.until.lock().expect("gate lock") = until;
    }

    pub fn is_leader(&self) -> bool {
        self.until
            .lock()
            .expect("gate lock")
            .is_some_and(|until| Instant::now() < until)
    }
}

impl MutationGate for LeaderGate {
    fn may_mutate(&self) -> bool {
        self.is_leader()
    }
}

/// Runs the election until `stop` fires; on stop, a leader releases the lease so a standby
/// takes over at once. `changed` is told every change of leadership.
pub async fn run(
    s3: aws_sdk_s3::Client,
    config: LeaseConfig,
    gate: std::sync::Arc<LeaderGate>,
    changed: tokio::sync::watch::Sender<bool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut elector = Elector::default();
    let mut held: Option<String> = None;
    loop {
        let started = Instant::now();
        let outcome = match &held {
            Some(etag) => put(&s3, &config, Condition::Match(etag)).await,
            None => match read(&s3, &config).await {
                Ok(observed) => match elector.decide(&observed, started, config.ttl) {
                    Step::Create => put(&s3, &config, Condition::Absent).await,
                    Step::TakeOver { etag } => put(&s3, &config, Condition::Match(&etag)).await,
                    Step::Wait => Ok(None),
                },
                Err(err) => Err(err),
            },
        };
        match outcome {
            Ok(Some(etag)) => {
                if held.is_none() {
                    tracing::info!(holder = %config.holder, lease = %format!("s3://{}/{}", config.bucket, config.key), "became leader");
                }
                held = Some(etag);
                gate.lead_until(Some(started + config.ttl - config.margin()));
            }
            Ok(None) => {
                if held.take().is_some() {
                    tracing::warn!("lost the lease to another daemon: standing by");
                }
                gate.lead_until(None);
            }
            Err(err) => {
                // Keep the lease as long as it is safe; the gate closes by itself in time.
                tracing::warn!(error = %err, leader = held.is_some(), "lease round failed");
            }
        }
        let leading = gate.is_leader();
        changed.send_if_modified(|was| std::mem::replace(was, leading) != leading);
        let pause = tokio::time::sleep(config.renew.saturating_sub(started.elapsed()));
        tokio::select! {
            _ = pause => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(etag) = held {
        gate.lead_until(None);
        changed.send_replace(false);
        release(&s3, &config, &etag).await;
    }
}

/// Deletes the lease if it is still the one this process wrote, so a standby (or the next
/// writer) takes over at once instead of after the TTL.
pub(crate) async fn release(s3: &aws_sdk_s3::Client, config: &LeaseConfig, etag: &str) {
    match s3
        .delete_object()
        .bucket(&config.bucket)
        .key(&config.key)
        .if_match(etag)
        .send()
        .await
    {
        Ok(_) => tracing::info!("released the lease"),
        Err(err) => {
            tracing::warn!(error = %classify("s3:DeleteObject", err), "could not release the lease; it expires after its TTL")
        }
    }
}

pub(crate) enum Condition<'a> {
    Absent,
    Match(&'a str),
}

/// Writes the lease under a condition: `Ok(Some(etag))` when it took, `Ok(None)` when the
/// condition did not hold (someone else won).
pub(crate) async fn put(
    s3: &aws_sdk_s3::Client,
    config: &LeaseConfig,
    condition: Condition<'_>,
) -> Result<Option<String>> {
    let record = LeaseRecord {
        holder: config.holder.clone(),
        ttl_seconds: config.ttl.as_secs_f64(),
        renewed_at: crate::state::now(),
    };
    let body = serde_json::to_vec(&record).map_err(|e| Error::Terminal(e.to_string()))?;
    let request = s3
        .put_object()
        .bucket(&config.bucket)
        .key(&config.key)
        .content_type("application/json")
        .body(ByteStream::from(body));
    let request = match condition {
        Condition::Absent => request.if_none_match("*"),
        Condition::Match(etag) => request.if_match(etag),
    };
    match request.send().await {
        Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
        Err(err) => {
            let err = classify("s3:PutObject", err);
            if is_not_found(
                &err,
                &[
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                    "NoSuchKey",
                ],
            ) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

pub(crate) async fn read(s3: &aws_sdk_s3::Client, config: &LeaseConfig) -> Result<Observed> {
    match s3
        .get_object()
        .bucket(&config.bucket)
        .key(&config.key)
        .send()
        .await
    {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_string();
            let bytes = out
                .body
                .collect()
                .await
                .map(|b| b.into_bytes())
                .unwrap_or_default();
            Ok(Observed::Held {
                etag,
                record: serde_json::from_slice(&bytes).ok(),
            })
        }
        Err(err) => {
            let err = classify("s3:GetObject", err);
            if is_not_found(&err, &["NoSuchKey", "NotFound"]) {
                Ok(Observed::Absent)
            } else {
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(etag: &str, ttl: f64) -> Observed {
        Observed::Held {
            etag: etag.into(),
            record: Some(LeaseRecord {
                holder: "other".into(),
                ttl_seconds: ttl,
                renewed_at: String::new(),
            }),
        }
    }

    #[test]
    fn absent_is_created_and_a_live_lease_is_left_alone() {
        let now = Instant::now();
        let mut e = Elector::default();
        assert_eq!(
            e.decide(&Observed::Absent, now, Duration::from_secs(30)),
            Step::Create
        );
        assert_eq!(
            e.decide(&held("a", 30.0), now, Duration::from_secs(30)),
            Step::Wait
        );
        // Renewed (new ETag) before its TTL: the clock starts again.
        let t1 = now + Duration::from_secs(20);
        assert_eq!(
            e.decide(&held("b", 30.0), t1, Duration::from_secs(30)),
            Step::Wait
        );
        let t2 = now + Duration::from_secs(40);
        assert_eq!(
            e.decide(&held("b", 30.0), t2, Duration::from_secs(30)),
            Step::Wait
        );
    }

    #[test]
    fn an_unchanged_lease_expires_after_its_own_ttl_on_our_clock() {
        let now = Instant::now();
        let mut e = Elector::default();
        assert_eq!(
            e.decide(&held("a", 3.0), now, Duration::from_secs(30)),
            Step::Wait
        );
        assert_eq!(
            e.decide(
                &held("a", 3.0),
                now + Duration::from_millis(2999),
                Duration::from_secs(30)
            ),
            Step::Wait
        );
        assert_eq!(
            e.decide(
                &held("a", 3.0),
                now + Duration::from_secs(3),
                Duration::from_secs(30)
            ),
            Step::TakeOver { etag: "a".into() }
        );
        // An unreadable body falls back to our TTL.
        let mut e = Elector::default();
        let garbled = Observed::Held {
            etag: "x".into(),
            record: None,
        };
        e.decide(&garbled, now, Duration::from_secs(10));
        assert_eq!(
            e.decide(
                &garbled,
                now + Duration::from_secs(9),
                Duration::from_secs(10)
            ),
            Step::Wait
        );
        assert!(matches!(
            e.decide(
                &garbled,
                now + Duration::from_secs(10),
                Duration::from_secs(10)
            ),
            Step::TakeOver { .. }
        ));
    }

    #[test]
    fn config_is_checked() {
        let ok = LeaseConfig::new(
            "s3://b/sdop/leader.json",
            Duration::from_secs(30),
            Duration::from_secs(10),
            "h".into(),
        )
        .unwrap();
        assert_eq!(
            (ok.bucket.as_str(), ok.key.as_str()),
            ("b", "sdop/leader.json")
        );
        assert_eq!(ok.margin(), Duration::from_secs(6));
        for bad in ["b/k", "s3://b", "s3://b/", "s3:///k", "s3://b/dir/"] {
            assert!(
                LeaseConfig::new(
                    bad,
                    Duration::from_secs(30),
                    Duration::from_secs(10),
                    "h".into()
                )
                .is_err(),
                "{bad}"
            );
        }
        assert!(LeaseConfig::new(
            "s3://b/k",
            Duration::from_secs(30),
            Duration::from_secs(11),
            "h".into()
        )
        .is_err());
    }

    #[test]
    fn the_gate_closes_by_itself() {
        let gate = LeaderGate::default();
        assert!(!gate.may_mutate());
        gate.lead_until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(gate.may_mutate());
        gate.lead_until(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!gate.may_mutate());
    }
}
