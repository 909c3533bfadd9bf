//! `sdop approve KIND/NAME VERSION`: a person's decision on a registry version, taken as the
//! SageMaker console takes it (UpdateModelPackage), with who, why and the evidence digest in
//! `ApprovalDescription`. sdop reads it back like any console decision on its next pass; the
//! state is not written, so it needs no lock and works beside a running daemon.

use crate::aws::model_registry::{decide_version, evidence_verdict, list_versions};
use crate::aws::Clients;
use crate::error::{Error, Result};

/// What to decide.
pub struct Approval<'a> {
    /// `ModelPromotion/NAME`, for messages.
    pub resource: &'a str,
    pub group: &'a str,
    pub version: i32,
    pub approve: bool,
    pub by: &'a str,
    pub reason: &'a str,
    /// `BUCKET/PREFIX/` of the evidence bundles, when known.
    pub evidence_root: Option<&'a str>,
    /// Approve even when the evidence failed or is missing.
    pub force: bool,
}

/// Carries out `approval`; returns what was done, for the terminal.
pub async fn approve(clients: &Clients, approval: &Approval<'_>) -> Result<String> {
    let versions = list_versions(clients, approval.group).await?;
    let Some(version) = versions.iter().find(|v| v.number == approval.version) else {
        let numbers: Vec<String> = versions.iter().map(|v| v.number.to_string()).collect();
        return Err(Error::Terminal(format!(
            "{}: version {} does not exist in model package group {} (versions: {})",
            approval.resource,
            approval.version,
            approval.group,
            if numbers.is_empty() {
                "none".to_string()
            } else {
                numbers.join(", ")
            }
        )));
    };
    let verdict = match (approval.evidence_root, version.candidate()) {
        (Some(root), Some(candidate)) => evidence_verdict(clients, root, candidate).await?,
        _ => None,
    };
    if approval.approve && !approval.force {
        match &verdict {
            None => {
                return Err(Error::Terminal(format!(
                    "{}: version {} has no evidence yet (its evaluation has not finished); wait for it, or pass --force to approve without evidence",
                    approval.resource, approval.version
                )))
            }
            Some(v) if !v.passed => {
                return Err(Error::Terminal(format!(
                    "{}: version {} failed its evaluation ({}): {}; pass --force to approve it anyway",
                    approval.resource,
                    approval.version,
                    v.uri,
                    v.reasons.join("; ")
                )))
            }
            _ => {}
        }
    }
    let decision = if approval.approve {
        "Approved"
    } else {
        "Rejected"
    };
    let evidence = verdict.as_ref().map_or_else(
        || "no evidence".to_string(),
        |v| {
            format!(
                "evidence {} {} ({})",
                v.digest,
                if v.passed { "passed" } else { "failed" },
                v.uri
            )
        },
    );
    let description = format!(
        "sdop approve: {decision} by {}{}: {}; {evidence}",
        approval.by,
        if approval.force { " (--force)" } else { "" },
        approval.reason,
    );
    let before = version.approval.clone();
    decide_version(clients, &version.arn, approval.approve, &description).await?;
    Ok(format!(
        "{}: version {} {before} -> {decision} ({}); sdop reads the decision back on its next pass{}",
        approval.resource,
        approval.version,
        version.arn,
        if approval.approve {
            ", and production serves the latest approved version"
        } else if before == "Approved" {
            ": production goes back to the latest version approved before it"
        } else {
            ""
        }
    ))
}
