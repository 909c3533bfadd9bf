//! Which S3 objects the status page may show for a `ModelPromotion` (pure): only what its
//! status recorded. The `evidence` output names the candidate's `evidence.json`
//! (`s3://BUCKET/PREFIX/CANDIDATE/evidence.json`); the contact sheet is the `contactSheet`
//! output and each case's image is `cases[n].key` of that record, each kept only when it lies
//! in the same bucket, under the same `PREFIX/CANDIDATE/`. A request names a resource (looked
//! up among the statuses) and at most an index into the record's cases: no part of its path
//! is ever sent to S3.

use crate::state::ResourceStatus;

/// The objects a promotion's status recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The region of the promotion's objects when not the daemon's.
    pub region: Option<String>,
    pub bucket: String,
    /// `PREFIX/CANDIDATE/evidence.json`.
    pub evidence_key: String,
    /// `PREFIX/CANDIDATE/`: every image of the bundle is under it.
    pub prefix: String,
    /// The contact sheet's key, when the status names one in the bundle.
    pub contact_sheet: Option<String>,
}

/// `s3://BUCKET/KEY` as (bucket, key).
fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// A key of the bundle: under its prefix, with no `.`/`..` segment and no empty one.
fn in_bundle(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
    })
}

/// The evidence a status recorded; `Err` says why there is none to show.
pub fn recorded(status: &ResourceStatus) -> Result<Recorded, String> {
    if status.kind != crate::kinds::model_promotion::PROMOTION_KIND {
        return Err(format!("{}/{} has no evidence", status.kind, status.name));
    }
    let uri = status
        .outputs
        .get("evidence")
        .filter(|uri| !uri.is_empty())
        .ok_or_else(|| "no evidence recorded yet".to_string())?;
    let (bucket, evidence_key) = split_uri(uri)
        .filter(|(_, key)| key.ends_with("/evidence.json"))
        .ok_or_else(|| {
            format!("the recorded evidence {uri} is not s3://BUCKET/.../evidence.json")
        })?;
    let prefix = evidence_key
        .strip_suffix("evidence.json")
        .unwrap_or_default()
        .to_string();
    let contact_sheet = status
        .outputs
        .get("contactSheet")
        .and_then(|uri| split_uri(uri))
        .filter(|(b, key)| *b == bucket && in_bundle(&prefix, key))
        .map(|(_, key)| key.to_string());
    Ok(Recorded {
        region: status.region.clone(),
        bucket: bucket.to_string(),
        evidence_key: evidence_key.to_string(),
        prefix,
        contact_sheet,
    })
}

/// The key of case `index`'s image, as the record names it, if it is in the bundle.
pub fn case_key<'r>(
    recorded: &Recorded,
    record: &'r sdop_evidence::EvidenceRecord,
    index: usize,
) -> Option<&'r str> {
    record
        .cases
        .get(index)?
        .key
        .as_deref()
        .filter(|key| in_bundle(&recorded.prefix, key))
}

/// The case index of a request's last path segment, `N.png` (decimal digits only).
pub fn case_index(file: &str) -> Option<usize> {
    let digits = file.strip_suffix(".png")?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The record, from `evidence.json`'s bytes.
pub fn parse(body: &[u8]) -> Result<sdop_evidence::EvidenceRecord, String> {
    serde_json::from_slice(body).map_err(|e| format!("not an evidence record: {e}"))
}

/// One case judged by the record's image rules alone (decoded, not blank or black, of the
/// requested size): the latency and cost limits apply to the cases together, not to one.
pub fn case_verdict(
    record: &sdop_evidence::EvidenceRecord,
    case: &sdop_evidence::CaseRecord,
) -> sdop_evidence::Verdict {
    let thresholds = sdop_evidence::Thresholds {
        max_p95_latency_seconds: None,
        max_cost_per_image_usd: None,
        ..record.thresholds.clone()
    };
    sdop_evidence::judge(std::slice::from_ref(case), &thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ResourceId;

    fn promotion(outputs: &[(&str, &str)]) -> ResourceStatus {
        let mut status = ResourceStatus::new(&ResourceId::new("ModelPromotion", "portrait"));
        for (k, v) in outputs {
            status.outputs.insert(k.to_string(), v.to_string());
        }
        status
    }

    #[test]
    fn the_bundle_is_what_the_status_recorded() {
        let status = promotion(&[
            ("evidence", "s3://b/evidence/abc/evidence.json"),
            ("contactSheet", "s3://b/evidence/abc/contact-sheet.png"),
        ]);
        let bundle = recorded(&status).unwrap();
        assert_eq!(bundle.bucket, "b");
        assert_eq!(bundle.evidence_key, "evidence/abc/evidence.json");
        assert_eq!(bundle.prefix, "evidence/abc/");
        assert_eq!(
            bundle.contact_sheet.as_deref(),
            Some("evidence/abc/contact-sheet.png")
        );
        // A contact sheet elsewhere (another bucket, another prefix, a `..` segment) is not
        // shown.
        for sheet in [
            "s3://other/evidence/abc/contact-sheet.png",
            "s3://b/evidence/xyz/contact-sheet.png",
            "s3://b/evidence/abc/../xyz/contact-sheet.png",
            "s3://b/evidence/abc/",
        ] {
            let status = promotion(&[
                ("evidence", "s3://b/evidence/abc/evidence.json"),
                ("contactSheet", sheet),
            ]);
            assert_eq!(recorded(&status).unwrap().contact_sheet, None, "{sheet}");
        }
        assert!(recorded(&promotion(&[])).is_err());
        assert!(recorded(&promotion(&[("evidence", "s3://b/x.json")])).is_err());
        let mut endpoint = promotion(&[("evidence", "s3://b/evidence/abc/evidence.json")]);
        endpoint.kind = "Endpoint".into();
        assert!(recorded(&endpoint).is_err());
    }

    #[test]
    fn a_case_index_is_decimal_digits_and_png_only() {
        assert_eq!(case_index("0.png"), Some(0));
        assert_eq!(case_index("12.png"), Some(12));
        for bad in [
            "",
            ".png",
            "-1.png",
            "+1.png",
            "1",
            "1.PNG",
            "1.png.png",
            "..%2F1.png",
            "1e3.png",
            "9999999.png",
            " 1.png",
            "0x1.png",
        ] {
            assert_eq!(case_index(bad), None, "{bad:?}");
        }
    }
}
