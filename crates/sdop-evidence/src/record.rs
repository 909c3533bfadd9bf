//! The evaluation's JSON record: per case what was asked and what was measured, a summary, the
//! verdict, and a digest that an approval can quote.

use crate::judge::{judge, Thresholds, Verdict};
use crate::measure::{measure, sha256_hex, ImageMeasurement};
use crate::sheet::SheetLayout;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One case of the prompt set, as sent: fixed prompt, fixed seed, so the candidate and the
/// production version are compared on the same inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// A fixed seed (never the WebUI's -1, "random"), hence unsigned.
    pub seed: u64,
    pub width: u32,
    pub height: u32,
}

/// One case of an evaluation: what was asked and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseRecord {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub seed: u64,
    /// The size requested.
    pub width: u32,
    pub height: u32,
    /// The S3 key of the image kept in the evidence bundle; None when there is no image.
    pub key: Option<String>,
    /// From the invocation to the result, as the caller timed it. sdop-aws measures from
    /// InvokeEndpointAsync's acceptance to the result object's S3 Last-Modified (whole
    /// seconds), so it includes the endpoint's queue and any scale-out from zero.
    pub latency_seconds: Option<f64>,
    /// [`cost_per_image_usd`] of this case's latency, when the price and the latency are known.
    pub cost_usd: Option<f64>,
    pub measurement: ImageMeasurement,
    /// Why there is no image (the invocation failed, or timed out); None when one came back,
    /// decodable or not (a decode error is in the measurement).
    pub error: Option<String>,
    /// Each registered scorer's score of this image (see [`crate::Scorers`]); empty when none is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
    /// Each scorer that failed on this image, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub score_errors: BTreeMap<String, String>,
}

impl CaseRecord {
    /// A case whose invocation returned an image: measured against the requested size.
    pub fn with_image(
        case: Case,
        png: &[u8],
        key: Option<String>,
        latency_seconds: Option<f64>,
        price_per_hour_usd: Option<f64>,
    ) -> Self {
        let measurement = measure(png, Some((case.width, case.height)));
        Self::new(
            case,
            key,
            latency_seconds,
            price_per_hour_usd,
            measurement,
            None,
        )
    }

    /// A case with no image (the invocation failed or timed out), and why. Its latency, when
    /// known, still costs: the instance worked on it.
    pub fn without_image(
        case: Case,
        error: impl Into<String>,
        latency_seconds: Option<f64>,
        price_per_hour_usd: Option<f64>,
    ) -> Self {
        let measurement = ImageMeasurement::absent();
        let error = Some(error.into());
        Self::new(
            case,
            None,
            latency_seconds,
            price_per_hour_usd,
            measurement,
            error,
        )
    }

    fn new(
        case: Case,
        key: Option<String>,
        latency_seconds: Option<f64>,
        price_per_hour_usd: Option<f64>,
        measurement: ImageMeasurement,
        error: Option<String>,
    ) -> Self {
        let cost_usd = price_per_hour_usd
            .zip(latency_seconds)
            .map(|(price, latency)| cost_per_image_usd(price, latency));
        CaseRecord {
            prompt: case.prompt,
            negative_prompt: case.negative_prompt,
            seed: case.seed,
            width: case.width,
            height: case.height,
            key,
            latency_seconds,
            cost_usd,
            measurement,
            error,
            scores: BTreeMap::new(),
            score_errors: BTreeMap::new(),
        }
    }
}

/// The cases at a glance, computed from them by [`Summary::of`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Cases evaluated (images requested).
    pub images: usize,
    pub decoded: usize,
    pub blank: usize,
    pub black: usize,
    /// Decoded images not of the requested size.
    pub wrong_size: usize,
    /// [`percentile`] 50 and 95 of the cases' latencies (those that have one, failed cases
    /// included: their time was spent too).
    pub p50_latency_seconds: Option<f64>,
    pub p95_latency_seconds: Option<f64>,
    /// The mean of the cases' [`CaseRecord::cost_usd`].
    pub cost_per_image_usd: Option<f64>,
}

impl Summary {
    pub fn of(cases: &[CaseRecord]) -> Self {
        let count =
            |f: fn(&ImageMeasurement) -> bool| cases.iter().filter(|c| f(&c.measurement)).count();
        let latencies: Vec<f64> = cases.iter().filter_map(|c| c.latency_seconds).collect();
        let costs: Vec<f64> = cases.iter().filter_map(|c| c.cost_usd).collect();
        Summary {
            images: cases.len(),
            decoded: count(|m| m.decoded),
            blank: count(|m| m.blank),
            black: count(|m| m.black),
            wrong_size: count(|m| m.expected_size == Some(false)),
            p50_latency_seconds: percentile(&latencies, 50.0),
            p95_latency_seconds: percentile(&latencies, 95.0),
            cost_per_image_usd: (!costs.is_empty())
                .then(|| costs.iter().sum::<f64>() / costs.len() as f64),
        }
    }
}

/// What was evaluated, where: the record's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The version evaluated (its registry version or content id).
    pub candidate: String,
    /// The version it is compared with (production's), when there is one.
    pub baseline: Option<String>,
    /// The staging endpoint that served the candidate.
    pub endpoint: String,
    pub instance_type: String,
    pub price_per_hour_usd: Option<f64>,
}

/// The contact sheet kept with the record: where it is stored and which cell is which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SheetRecord {
    pub key: Option<String>,
    pub layout: SheetLayout,
}

/// The evidence of one evaluation, as kept in S3 beside its images. Measured values are kept for
/// passes and failures alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceRecord {
    /// What was evaluated, where; its fields are the record's first (`candidate`, `baseline`,
    /// `endpoint`, `instanceType`, `pricePerHourUsd`).
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub cases: Vec<CaseRecord>,
    pub summary: Summary,
    /// The mean of each scorer's scores over the cases it scored; empty while no scorer is
    /// registered (none is shipped: see [`crate::Scorer`]).
    pub scores: BTreeMap<String, f64>,
    /// The rules the verdict applied.
    pub thresholds: Thresholds,
    pub verdict: Verdict,
    /// Set by the caller once the sheet is rendered and stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_sheet: Option<SheetRecord>,
}

impl EvidenceRecord {
    /// The record of these cases (already scored, if scorers are registered), with the summary,
    /// the mean scores and the verdict computed from them. The summary, scores and verdict are
    /// computed here once: change the cases afterwards and they no longer match.
    pub fn new(evaluation: Evaluation, cases: Vec<CaseRecord>, thresholds: Thresholds) -> Self {
        let summary = Summary::of(&cases);
        let verdict = judge(&cases, &thresholds);
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for (name, score) in cases.iter().flat_map(|c| &c.scores) {
            let entry = sums.entry(name.clone()).or_insert((0.0, 0));
            entry.0 += score;
            entry.1 += 1;
        }
        let scores = sums
            .into_iter()
            .map(|(name, (sum, n))| (name, sum / n as f64))
            .collect();
        EvidenceRecord {
            evaluation,
            cases,
            summary,
            scores,
            thresholds,
            verdict,
            contact_sheet: None,
        }
    }
}

/// `sha256:` + the hex SHA-256 of the record's canonical JSON: compact, object keys sorted at
/// every level, numbers as serde_json writes them (shortest round-trip form). The same record
/// gives the same digest on every run and machine. (An approval quotes the SHA-256 of `evidence.json` as stored, which anyone can check with `sha256sum`; this digest identifies the record's content whatever its formatting.)
pub fn digest(record: &EvidenceRecord) -> String {
    let value = serde_json::to_value(record)
        .expect("an EvidenceRecord always serialises: every map in it has String keys");
    sha256_hex(canonical(value).to_string().as_bytes())
}

/// The value with every object's keys in sorted order (serde_json keeps insertion order in this
/// workspace, `preserve_order`, so the order is rebuilt explicitly).
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The nearest-rank percentile: the smallest value such that at least `p` percent of the values
/// are at or below it, i.e. the value of rank ceil(p/100 * n) in ascending order (rank 1 for
/// p = 0). Always one of the values, never an interpolation: "p95 latency 41.2 s" is a latency
/// that was measured. NaN values are ignored; None when no value is left or `p` is outside
/// 0..=100.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if !(0.0..=100.0).contains(&p) {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // p * n first, then / 100: exact for whole percentages, so p95 of 20 values is rank 19.
    let rank = (p * n as f64 / 100.0).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// What one image costs: the instance's price per hour times the seconds it worked on the image,
/// / 3600. An asynchronous endpoint takes one image per invocation and the instance is billed
/// while it works, so this is the marginal cost of an image; it leaves out the time the instance
/// is up and idle (between evaluations, or before scaling to zero), which the endpoint's hourly
/// cost shows instead.
pub fn cost_per_image_usd(price_per_hour_usd: f64, latency_seconds: f64) -> f64 {
    price_per_hour_usd * latency_seconds / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{case, gradient, uniform};

    fn record() -> EvidenceRecord {
        let price = Some(1.515);
        let cases = vec![
            CaseRecord::with_image(
                case("photo of jpstyle girl", 1),
                &gradient(64, 64),
                Some("e/1.png".into()),
                Some(12.0),
                price,
            ),
            CaseRecord::with_image(
                case("jpstyle street", 2),
                &uniform(64, 64, [0, 0, 0]),
                Some("e/2.png".into()),
                Some(14.0),
                price,
            ),
            CaseRecord::without_image(case("jpstyle cat", 3), "timed out after 600 s", None, price),
        ];
        let evaluation = Evaluation {
            candidate: "jpstyle/3".into(),
            baseline: Some("jpstyle/2".into()),
            endpoint: "sd-staging".into(),
            instance_type: "ml.g5.xlarge".into(),
            price_per_hour_usd: price,
        };
        EvidenceRecord::new(evaluation, cases, Thresholds::default())
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 95.0), Some(19.0));
        assert_eq!(percentile(&twenty, 50.0), Some(10.0));
        assert_eq!(percentile(&twenty, 100.0), Some(20.0));
        assert_eq!(percentile(&twenty, 0.0), Some(1.0));
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95.0));
        assert_eq!(percentile(&hundred, 99.5), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 95.0), Some(6.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[7.5], 50.0), Some(7.5));
        assert_eq!(percentile(&[7.5], 0.0), Some(7.5));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 2.0, 1.0], 100.0), Some(2.0));
        assert_eq!(percentile(&[1.0], 101.0), None);
        assert_eq!(percentile(&[1.0], -1.0), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
    }

    #[test]
    fn cost_is_price_times_seconds() {
        assert!((cost_per_image_usd(1.515, 12.0) - 0.00505).abs() < 1e-12);
        assert_eq!(cost_per_image_usd(3.6, 0.0), 0.0);
    }

    #[test]
    fn a_record_summarises_its_cases() {
        let r = record();
        let s = &r.summary;
        assert_eq!(
            (s.images, s.decoded, s.blank, s.black, s.wrong_size),
            (3, 2, 1, 1, 0)
        );
        assert_eq!(
            (s.p50_latency_seconds, s.p95_latency_seconds),
            (Some(12.0), Some(14.0))
        );
        let cost = s.cost_per_image_usd.expect("cost");
        assert!((cost - 1.515 * 13.0 / 3600.0).abs() < 1e-12);
        assert_eq!(r.cases[2].cost_usd, None, "no latency, no cost");
        assert!(!r.verdict.passed);
        assert!(r.scores.is_empty());
    }

    #[test]
    fn the_record_serialises_in_camel_case() {
        let json = serde_json::to_value(record()).expect("json");
        for key in [
            "candidate",
            "baseline",
            "endpoint",
            "instanceType",
            "pricePerHourUsd",
            "cases",
            "summary",
            "scores",
            "thresholds",
            "verdict",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        let case = &json["cases"][0];
        for key in [
            "prompt",
            "seed",
            "width",
            "height",
            "key",
            "latencySeconds",
            "costUsd",
            "measurement",
            "error",
        ] {
            assert!(case.get(key).is_some(), "{key} in {case}");
        }
        assert!(case.get("negativePrompt").is_none() && case.get("scores").is_none());
        assert_eq!(json["summary"]["wrongSize"], 0);
        assert!(json["summary"].get("p95LatencySeconds").is_some());
        assert_eq!(
            json["cases"][1]["measurement"]["luma"]["nearBlackFraction"],
            1.0
        );
        assert_eq!(json["thresholds"]["allDecode"], true);
        let back: EvidenceRecord = serde_json::from_value(json).expect("read back");
        assert_eq!(back, record());
    }

    #[test]
    fn the_digest_is_stable_and_follows_the_content() {
        let d = digest(&record());
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
        assert_eq!(digest(&record()), d);
        // Read back from JSON written in another key order: the same digest.
        let mut value = serde_json::to_value(record()).expect("json");
        if let Value::Object(map) = &mut value {
            let reversed: Map<String, Value> = std::mem::take(map).into_iter().rev().collect();
            *map = reversed;
        }
        let back: EvidenceRecord = serde_json::from_value(value).expect("read back");
        assert_eq!(digest(&back), d);
        let mut changed = record();
        changed.cases[0].latency_seconds = Some(12.5);
        assert_ne!(digest(&changed), d);
    }

    #[test]
    fn the_digest_of_a_fixed_record_is_pinned() {
        // No image bytes in it, so nothing depends on the PNG encoder: this digest changes only
        // when the record's format does, and then the change is deliberate.
        let cases = vec![CaseRecord::without_image(
            case("p", 1),
            "timed out",
            Some(600.0),
            Some(1.8),
        )];
        let evaluation = Evaluation {
            candidate: "c".into(),
            baseline: None,
            endpoint: "e".into(),
            instance_type: "ml.g5.xlarge".into(),
            price_per_hour_usd: Some(1.8),
        };
        let record = EvidenceRecord::new(evaluation, cases, Thresholds::default());
        assert_eq!(
            digest(&record),
            "sha256:7e65b912b1e4bbeec08b1559fc30513987fde993e281088dc300001d4c0958bc"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        assert_eq!(
            canonical(v).to_string(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
