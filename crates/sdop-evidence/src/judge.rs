//! The promotion rules and the verdict, with the measured values in every reason.

use crate::measure::{LumaStats, BLACK_MAX_MEAN_LUMA, BLANK_MAX_LUMA_STDDEV};
use crate::record::{CaseRecord, Summary};
use serde::{Deserialize, Serialize};

/// The rules a candidate's evidence must pass, as a manifest states them. Every field has a
/// default: the three image rules on, no latency or cost limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Thresholds {
    /// Every case returned an image that decodes (a case that failed or timed out fails this).
    pub all_decode: bool,
    /// No image is blank (one colour) or black; see [`crate::BLANK_MAX_LUMA_STDDEV`] and
    /// [`crate::BLACK_MAX_MEAN_LUMA`].
    pub none_blank: bool,
    /// Every decoded image has the requested width and height.
    pub expected_size: bool,
    /// The cases' p95 latency ([`crate::percentile`]) at most this many seconds.
    pub max_p95_latency_seconds: Option<f64>,
    /// The mean cost per image ([`crate::cost_per_image_usd`]) at most this many US dollars.
    pub max_cost_per_image_usd: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            all_decode: true,
            none_blank: true,
            expected_size: true,
            max_p95_latency_seconds: None,
            max_cost_per_image_usd: None,
        }
    }
}

/// The outcome: passed when no rule failed. `reasons` says why not, one line per failed rule with
/// the values measured (what an approval description and a rejection quote); `notes` says what
/// the passing rules saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub passed: bool,
    pub reasons: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How many cases a reason names before "and N more".
const LISTED: usize = 5;
/// How many characters of a prompt a reason quotes.
const PROMPT_CHARS: usize = 40;

/// Applies the thresholds to the cases. No case at all fails: there is no evidence.
pub fn judge(cases: &[CaseRecord], thresholds: &Thresholds) -> Verdict {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    let n = cases.len();
    let decoded = cases.iter().filter(|c| c.measurement.decoded).count();
    if n == 0 {
        reasons.push("no cases evaluated: there is no evidence".to_string());
    }
    // A rule's failures become reasons; when it has none, its note (if any) is kept.
    let mut rule = |failed: Vec<String>, ok: Option<String>| {
        if failed.is_empty() {
            notes.extend(ok);
        } else {
            reasons.extend(failed);
        }
    };

    if thresholds.all_decode && n > 0 {
        let why = |c: &CaseRecord| {
            c.error
                .clone()
                .or_else(|| c.measurement.error.clone())
                .unwrap_or_else(|| "no image".to_string())
        };
        rule(
            failures(cases, |c| !c.measurement.decoded, "did not decode", why),
            Some(format!("all {n} images decoded")),
        );
    }

    if thresholds.none_blank && n > 0 {
        let luma = |c: &CaseRecord, f: fn(&LumaStats) -> f64| {
            c.measurement.luma.as_ref().map_or(f64::NAN, f)
        };
        let mut failed = failures(
            cases,
            |c| c.measurement.blank,
            &format!("blank (luma stddev <= {BLANK_MAX_LUMA_STDDEV:.1})"),
            |c| format!("stddev {:.1}", luma(c, |l| l.stddev)),
        );
        failed.extend(failures(
            cases,
            |c| c.measurement.black,
            &format!("black (mean luma <= {BLACK_MAX_MEAN_LUMA:.1})"),
            |c| format!("mean {:.1}", luma(c, |l| l.mean)),
        ));
        rule(
            failed,
            (decoded > 0).then(|| format!("none of {decoded} decoded images blank or black")),
        );
    }

    if thresholds.expected_size && n > 0 {
        let size = |c: &CaseRecord| {
            let got = c.measurement.width.zip(c.measurement.height);
            let got = got.map_or("?".to_string(), |(w, h)| format!("{w}x{h}"));
            format!("{got}, expected {}x{}", c.width, c.height)
        };
        rule(
            failures(
                cases,
                |c| c.measurement.expected_size == Some(false),
                "not the requested size",
                size,
            ),
            (decoded > 0).then(|| format!("all {decoded} decoded images of the requested size")),
        );
    }

    let summary = Summary::of(cases);
    if let Some(max) = thresholds.max_p95_latency_seconds {
        let (failed, ok) = within(
            "p95 latency",
            summary.p95_latency_seconds,
            "no case has a latency",
            max,
            |v| format!("{v:.1} s"),
            format!("{max} s"),
        );
        rule(failed, ok);
    }
    if let Some(max) = thresholds.max_cost_per_image_usd {
        let (failed, ok) = within(
            "cost per image",
            summary.cost_per_image_usd,
            "no price or no latency",
            max,
            |v| format!("${v:.4}"),
            format!("${max}"),
        );
        rule(failed, ok);
    }

    Verdict {
        passed: reasons.is_empty(),
        reasons,
        notes,
    }
}

/// A limit on a summary value: `WHAT VALUE > MAX` as a reason when over it, or when the value is
/// unknown (a limit nothing was measured against is not met); else `WHAT VALUE <= MAX` as a note.
fn within(
    what: &str,
    value: Option<f64>,
    unknown: &str,
    max: f64,
    show: impl Fn(f64) -> String,
    shown_max: String,
) -> (Vec<String>, Option<String>) {
    match value {
        None => (
            vec![format!(
                "{what} unknown ({unknown}) and the limit is {shown_max}"
            )],
            None,
        ),
        Some(v) if exceeds(v, max) => (vec![format!("{what} {} > {shown_max}", show(v))], None),
        Some(v) => (
            Vec::new(),
            Some(format!("{what} {} <= {shown_max}", show(v))),
        ),
    }
}

/// Over the limit, or not a number (a NaN never passes a limit).
fn exceeds(value: f64, max: f64) -> bool {
    value.is_nan() || value > max
}

/// `K of N images WHAT: "prompt" seed 1 (detail), ...` for the cases that fail, or nothing when
/// none does.
fn failures(
    cases: &[CaseRecord],
    fails: impl Fn(&CaseRecord) -> bool,
    what: &str,
    detail: impl Fn(&CaseRecord) -> String,
) -> Vec<String> {
    let failed: Vec<&CaseRecord> = cases.iter().filter(|c| fails(c)).collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let (k, n) = (failed.len(), cases.len());
    vec![format!(
        "{k} of {n} images {what}: {}",
        list(&failed, detail)
    )]
}

/// `"prompt" seed 1 (detail), ...`, at most [`LISTED`] cases, then how many more.
fn list(cases: &[&CaseRecord], detail: impl Fn(&CaseRecord) -> String) -> String {
    let mut parts: Vec<String> = cases
        .iter()
        .take(LISTED)
        .map(|c| format!("{} seed {} ({})", quote(&c.prompt), c.seed, detail(c)))
        .collect();
    if cases.len() > LISTED {
        parts.push(format!("and {} more", cases.len() - LISTED));
    }
    parts.join(", ")
}

/// The prompt in double quotes, cut to [`PROMPT_CHARS`] characters with an ellipsis.
fn quote(prompt: &str) -> String {
    let mut chars = prompt.chars();
    let head: String = chars.by_ref().take(PROMPT_CHARS).collect();
    if chars.next().is_some() {
        format!("\"{}...\"", head.trim_end())
    } else {
        format!("\"{head}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{case, gradient, uniform};

    fn good(seed: u64, latency: f64) -> CaseRecord {
        CaseRecord::with_image(
            case("photo of jpstyle girl", seed),
            &gradient(64, 64),
            None,
            Some(latency),
            Some(1.8),
        )
    }

    #[test]
    fn good_images_pass_with_notes() {
        let cases: Vec<CaseRecord> = (1..=6).map(|s| good(s, 10.0 + s as f64)).collect();
        let thresholds = Thresholds {
            max_p95_latency_seconds: Some(30.0),
            max_cost_per_image_usd: Some(0.01),
            ..Thresholds::default()
        };
        let v = judge(&cases, &thresholds);
        assert!(v.passed, "{v:?}");
        assert!(v.reasons.is_empty());
        assert_eq!(
            v.notes,
            [
                "all 6 images decoded",
                "none of 6 decoded images blank or black",
                "all 6 decoded images of the requested size",
                "p95 latency 16.0 s <= 30 s",
                "cost per image $0.0067 <= $0.01",
            ]
        );
    }

    #[test]
    fn blank_and_black_images_fail_with_their_values() {
        let mut cases: Vec<CaseRecord> = (1..=3).map(|s| good(s, 10.0)).collect();
        let grey = uniform(64, 64, [128, 128, 128]);
        let black = uniform(64, 64, [0, 0, 0]);
        cases.push(CaseRecord::with_image(
            case("photo of jpstyle girl", 4),
            &grey,
            None,
            None,
            None,
        ));
        cases.push(CaseRecord::with_image(
            case("jpstyle street", 5),
            &black,
            None,
            None,
            None,
        ));
        cases.push(CaseRecord::with_image(
            case("jpstyle cat", 6),
            &black,
            None,
            None,
            None,
        ));
        let v = judge(&cases, &Thresholds::default());
        assert!(!v.passed);
        assert_eq!(
            v.reasons,
            [
                "3 of 6 images blank (luma stddev <= 2.0): \"photo of jpstyle girl\" seed 4 (stddev 0.0), \"jpstyle street\" seed 5 (stddev 0.0), \"jpstyle cat\" seed 6 (stddev 0.0)",
                "2 of 6 images black (mean luma <= 8.0): \"jpstyle street\" seed 5 (mean 0.0), \"jpstyle cat\" seed 6 (mean 0.0)",
            ]
        );
        let off = Thresholds {
            none_blank: false,
            ..Thresholds::default()
        };
        assert!(judge(&cases, &off).passed);
    }

    #[test]
    fn a_case_without_an_image_fails_all_decode_with_its_error() {
        let cases = vec![
            good(1, 10.0),
            CaseRecord::without_image(case("jpstyle cat", 2), "timed out after 600 s", None, None),
            CaseRecord::with_image(case("jpstyle street", 3), b"garbage", None, Some(3.0), None),
        ];
        let v = judge(&cases, &Thresholds::default());
        assert!(!v.passed);
        assert_eq!(v.reasons.len(), 1, "{v:?}");
        assert!(
            v.reasons[0].starts_with("2 of 3 images did not decode: \"jpstyle cat\" seed 2 (timed out after 600 s), \"jpstyle street\" seed 3 ("),
            "{}",
            v.reasons[0]
        );
        assert!(
            v.notes
                .contains(&"none of 1 decoded images blank or black".to_string()),
            "{v:?}"
        );
    }

    #[test]
    fn a_wrong_size_fails_expected_size() {
        let big = gradient(96, 64);
        let cases = vec![
            good(1, 1.0),
            CaseRecord::with_image(case("jpstyle street", 2), &big, None, None, None),
        ];
        let v = judge(&cases, &Thresholds::default());
        assert_eq!(v.reasons, ["1 of 2 images not the requested size: \"jpstyle street\" seed 2 (96x64, expected 64x64)"]);
        assert!(
            judge(
                &cases,
                &Thresholds {
                    expected_size: false,
                    ..Thresholds::default()
                }
            )
            .passed
        );
    }

    #[test]
    fn latency_and_cost_limits_quote_the_measured_values() {
        let cases: Vec<CaseRecord> = [10.0, 12.0, 41.2]
            .iter()
            .enumerate()
            .map(|(i, l)| good(i as u64, *l))
            .collect();
        let thresholds = Thresholds {
            max_p95_latency_seconds: Some(30.0),
            max_cost_per_image_usd: Some(0.005),
            ..Thresholds::default()
        };
        let v = judge(&cases, &thresholds);
        assert_eq!(
            v.reasons,
            [
                "p95 latency 41.2 s > 30 s",
                "cost per image $0.0105 > $0.005"
            ]
        );

        let no_latency = vec![CaseRecord::with_image(
            case("p", 1),
            &gradient(64, 64),
            None,
            None,
            Some(1.8),
        )];
        let v = judge(&no_latency, &thresholds);
        assert_eq!(
            v.reasons,
            [
                "p95 latency unknown (no case has a latency) and the limit is 30 s",
                "cost per image unknown (no price or no latency) and the limit is $0.005",
            ]
        );
    }

    #[test]
    fn no_cases_is_no_evidence() {
        let v = judge(&[], &Thresholds::default());
        assert!(!v.passed);
        assert_eq!(v.reasons, ["no cases evaluated: there is no evidence"]);
    }

    #[test]
    fn long_lists_and_prompts_are_cut() {
        let black = uniform(64, 64, [0, 0, 0]);
        let long = "a very long prompt about a jpstyle girl in a garden at dusk, detailed";
        let cases: Vec<CaseRecord> = (1..=8)
            .map(|s| CaseRecord::with_image(case(long, s), &black, None, None, None))
            .collect();
        let v = judge(
            &cases,
            &Thresholds {
                none_blank: true,
                ..Thresholds::default()
            },
        );
        assert!(
            v.reasons[0].ends_with("seed 5 (stddev 0.0), and 3 more"),
            "{}",
            v.reasons[0]
        );
        assert!(
            v.reasons[0].contains("\"a very long prompt about a jpstyle girl...\" seed 1"),
            "{}",
            v.reasons[0]
        );
    }

    #[test]
    fn thresholds_default_and_read_in_camel_case() {
        let t: Thresholds = serde_json::from_str(r#"{"maxP95LatencySeconds": 30}"#).expect("json");
        assert_eq!(
            t,
            Thresholds {
                max_p95_latency_seconds: Some(30.0),
                ..Thresholds::default()
            }
        );
        assert!(serde_json::from_str::<Thresholds>(r#"{"noneBlack": true}"#).is_err());
    }
}
