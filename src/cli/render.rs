//! Terraform-like rendering of a plan.

use std::fmt::Write;

use crate::engine::plan::{FieldChange, Operation, Plan};

fn value(v: &Option<serde_json::Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "(known after apply)".to_string(),
    }
}

fn change_line(out: &mut String, operation: Operation, change: &FieldChange) {
    let _ = match (operation, &change.before) {
        (Operation::Create, _) | (_, None) => {
            writeln!(out, "      {}: {}", change.field, value(&change.after))
        }
        (_, Some(before)) => writeln!(
            out,
            "      {}: {} -> {}",
            change.field,
            before,
            value(&change.after)
        ),
    };
}

pub fn plan_text(plan: &Plan, note: &str) -> String {
    let mut out = String::new();
    let count = |op| plan.actions.iter().filter(|a| a.operation == op).count();
    let mut current = None;
    for action in &plan.actions {
        if current != Some(&action.resource) {
            let _ = writeln!(out, "{}", action.resource);
            current = Some(&action.resource);
        }
        let _ = writeln!(
            out,
            "  {:>3} {} {}  ({}){}",
            action.operation.symbol(),
            action.aws_type,
            action.name,
            action.reason,
            action
                .deferred
                .as_ref()
                .map_or(String::new(), |when| format!(" [{when}]"))
        );
        if let Some(cost) = &action.cost {
            let _ = writeln!(out, "      cost: {}", cost.describe());
        }
        for change in &action.changes {
            // An unset optional field (null) on a new object is noise.
            if action.operation == Operation::Create
                && change.after == Some(serde_json::Value::Null)
            {
                continue;
            }
            change_line(&mut out, action.operation, change);
        }
    }
    if !plan.actions.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to update, {} to replace, {} to delete, {} to adopt, {} conflict(s).",
        count(Operation::Create),
        count(Operation::Update),
        count(Operation::Replace),
        count(Operation::Delete),
        count(Operation::Adopt),
        count(Operation::Conflict)
    );
    let _ = writeln!(out, "{}", cost_line(plan));
    if !note.is_empty() {
        let _ = writeln!(out, "Note: {note}.");
    }
    out
}

/// `Cost: +$0.94/h by this plan; $1.88/h for the endpoints planned, once applied (...)`.
pub fn cost_line(plan: &Plan) -> String {
    let delta = plan.hourly_delta();
    let after = plan.hourly_after();
    let mut line = format!(
        "Cost: {}/h by this plan; ${:.2}/h for the endpoints planned, once applied (on-demand list prices, {} table recorded {})",
        crate::cost::dollars_signed(delta.dollars),
        after.dollars,
        crate::cost::PRICES.regions.keys().cloned().collect::<Vec<_>>().join(", "),
        crate::cost::PRICES.recorded
    );
    let mut unknown = delta.unknown;
    unknown.extend(after.unknown);
    unknown.sort();
    unknown.dedup();
    if !unknown.is_empty() {
        line.push_str(&format!(
            "; not counted, price unknown: {}",
            unknown.join("; ")
        ));
    }
    line.push('.');
    line
}

/// `sdop get` as a table: one line per resource.
pub fn status_table(statuses: &[crate::state::ResourceStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<12} {:<20} {:>8} MESSAGE",
        "RESOURCE", "PHASE", "UPDATED", "COST/H"
    );
    for status in statuses {
        let mut message = status.message.clone();
        if message.chars().count() > 100 {
            message = message.chars().take(97).collect::<String>() + "...";
        }
        let cost = match status
            .outputs
            .get(crate::engine::execute::HOURLY_COST)
            .map(|c| c.parse::<f64>())
        {
            Some(Ok(dollars)) => format!("${dollars:.2}"),
            Some(Err(_)) => "unknown".to_string(),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<34} {:<12} {:<20} {:>8} {}",
            format!("{}/{}", status.kind, status.name),
            format!("{:?}", status.phase),
            status.updated_at,
            cost,
            message
        );
    }
    out
}

/// `sdop audit` as a table, with the hourly total of what it found.
pub fn audit_table(findings: &[crate::apply::audit::Finding]) -> String {
    use crate::cost::Price;
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "audit: nothing sdop owns is unaccounted for, and no multipart upload is open."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{:<28} {:<56} {:<10} {:>9} WHY",
        "TYPE", "NAME", "REGION", "COST/H"
    );
    let mut total = 0.0;
    for finding in findings {
        let cost = match &finding.hourly {
            Price::Hourly(d) => {
                total += d;
                format!("${d:.2}")
            }
            Price::Unknown(_) => "unknown".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<28} {:<56} {:<10} {:>9} {}",
            finding.object.aws_type, finding.object.name, finding.object.region, cost, finding.why
        );
    }
    let _ = writeln!(
        out,
        "\naudit: {} object(s) unaccounted for, ${total:.2}/h.",
        findings.len()
    );
    out
}
