//! Prometheus metrics (prometheus-client), served at `/metrics`. A reconcile is measured by a
//! drop guard, so a pass that errors, panics or is cancelled at shutdown is still counted.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::aws::transport::{CallObserver, CallOutcome};
use crate::error::{Error, ErrorClass};
use crate::state::{Phase, ResourceStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcome {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiOutcome {
    pub api: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

/// A float gauge (dollars).
pub type DollarGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<KindOutcome, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram>,
    pub aws_calls: Family<ApiOutcome, Counter>,
    pub resources: Family<PhaseLabel, Gauge>,
    pub hourly_cost: Family<ResourceLabel, DollarGauge>,
    pub package_bytes: Counter,
    pub leader: Gauge,
    pub manifest_errors: Gauge,
    pub queue_depth: Gauge,
    pub in_flight: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sdop");
        let reconciles = Family::<KindOutcome, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
        });
        let aws_calls = Family::<ApiOutcome, Counter>::default();
        let resources = Family::<PhaseLabel, Gauge>::default();
        let hourly_cost = Family::<ResourceLabel, DollarGauge>::default();
        let package_bytes = Counter::default();
        let leader = Gauge::default();
        let manifest_errors = Gauge::default();
        let queue_depth = Gauge::default();
        let in_flight = Gauge::default();
        registry.register(
            "reconciles",
            "Reconcile passes by kind and outcome (ok, retryable_error, terminal_error, cancelled)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind and class (retryable, terminal)",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass",
            reconcile_duration.clone(),
        );
        registry.register(
            "aws_calls",
            "AWS HTTP attempts by API (service:Operation) and outcome",
            aws_calls.clone(),
        );
        registry.register("resources", "Resources by phase", resources.clone());
        registry.register(
            "hourly_cost_dollars",
            "On-demand list price per hour of each converged resource's always-on capacity (sdop's price table)",
            hourly_cost.clone(),
        );
        registry.register(
            "package_bytes",
            "Bytes of model archives uploaded (multipart parts)",
            package_bytes.clone(),
        );
        registry.register(
            "leader",
            "1 when this daemon may mutate AWS (holds the lease, or no lease is used)",
            leader.clone(),
        );
        registry.register(
            "manifest_errors",
            "Manifest problems in the last load",
            manifest_errors.clone(),
        );
        registry.register(
            "queue_depth",
            "Resources scheduled and not in flight",
            queue_depth.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            in_flight.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            aws_calls,
            resources,
            hourly_cost,
            package_bytes,
            leader,
            manifest_errors,
            queue_depth,
            in_flight,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Sets the hourly cost gauge from the statuses' `hourlyCost` outputs (priced ones only).
    pub fn set_hourly_costs<'a>(&self, statuses: impl Iterator<Item = &'a ResourceStatus>) {
        self.hourly_cost.clear();
        for status in statuses {
            let Some(Ok(dollars)) = status
                .outputs
                .get(crate::engine::execute::HOURLY_COST)
                .map(|c| c.parse::<f64>())
            else {
                continue;
            };
            self.hourly_cost
                .get_or_create(&ResourceLabel {
                    resource: status.id().to_string(),
                })
                .set(dollars);
        }
    }

    /// Sets the per-phase gauge from the current phases (every phase present, zero or not).
    pub fn set_phases<'a>(&self, phases: impl Iterator<Item = &'a Phase>) {
        let mut counts: BTreeMap<String, i64> = [
            Phase::Pending,
            Phase::Progressing,
            Phase::Ready,
            Phase::Degraded,
            Phase::Failed,
            Phase::Deleting,
            Phase::Conflict,
        ]
        .iter()
        .map(|p| (format!("{p:?}"), 0))
        .collect();
        for phase in phases {
            *counts.entry(format!("{phase:?}")).or_default() += 1;
        }
        for (phase, n) in counts {
            self.resources.get_or_create(&PhaseLabel { phase }).set(n);
        }
    }

    /// Starts measuring one reconcile of `kind`.
    pub fn reconcile_timer(&self, kind: &str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            kind: kind.to_string(),
            started: Instant::now(),
            outcome: "cancelled",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl CallObserver for Metrics {
    fn call(&self, api: &str, outcome: CallOutcome, upload_bytes: u64) {
        self.aws_calls
            .get_or_create(&ApiOutcome {
                api: api.to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
        if upload_bytes > 0 {
            self.package_bytes.inc_by(upload_bytes);
        }
    }
}

/// Records one reconcile's count and duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: String,
    started: Instant,
    outcome: &'static str,
}

impl ReconcileTimer<'_> {
    pub fn succeeded(&mut self) {
        self.outcome = "ok";
    }

    pub fn failed(&mut self, err: &Error) {
        let class = match err.class() {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Terminal => "terminal",
        };
        self.outcome = match err.class() {
            ErrorClass::Retryable => "retryable_error",
            ErrorClass::Terminal => "terminal_error",
        };
        self.metrics
            .reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: self.kind.clone(),
                class: class.into(),
            })
            .inc();
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let kind = KindLabel {
            kind: self.kind.clone(),
        };
        self.metrics
            .reconcile_duration
            .get_or_create(&kind)
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&KindOutcome {
                kind: self.kind.clone(),
                outcome: self.outcome.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_guard_counts_every_pass_and_the_exposition_has_every_family() {
        let metrics = Metrics::new();
        {
            let mut t = metrics.reconcile_timer("Endpoint");
            t.succeeded();
        }
        {
            let mut t = metrics.reconcile_timer("Endpoint");
            t.failed(&Error::Terminal("bad".into()));
        }
        {
            let _cancelled = metrics.reconcile_timer("Bucket");
        }
        metrics.call("sagemaker:DescribeEndpoint", CallOutcome::Ok, 0);
        metrics.call("s3:UploadPart", CallOutcome::Ok, 1024);
        metrics.set_phases([Phase::Ready, Phase::Ready, Phase::Failed].iter());
        let text = metrics.encode();
        for needle in [
            r#"sdop_reconciles_total{kind="Endpoint",outcome="ok"} 1"#,
            r#"sdop_reconciles_total{kind="Endpoint",outcome="terminal_error"} 1"#,
            r#"sdop_reconciles_total{kind="Bucket",outcome="cancelled"} 1"#,
            r#"sdop_reconcile_errors_total{kind="Endpoint",class="terminal"} 1"#,
            r#"sdop_reconcile_duration_seconds_count{kind="Endpoint"} 2"#,
            r#"sdop_aws_calls_total{api="sagemaker:DescribeEndpoint",outcome="ok"} 1"#,
            r#"sdop_package_bytes_total 1024"#,
            r#"sdop_resources{phase="Ready"} 2"#,
            r#"sdop_resources{phase="Conflict"} 0"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
