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

/// One action as `sdop plan` prints it: its line and its field changes.
/// `indent` goes before the operation's symbol, right-aligned in 3 columns for the terminal;
/// `None`: the symbol starts the line (a `diff` block colours it).
pub(crate) fn action_lines(
    out: &mut String,
    action: &crate::engine::plan::Action,
    indent: Option<&str>,
) {
    let symbol = match indent {
        Some(indent) => format!("{indent}{:>3}", action.operation.symbol()),
        None => action.operation.symbol().to_string(),
    };
    let _ = writeln!(
        out,
        "{symbol} {} {}  ({}){}",
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
    if let Some(once) = &action.one_off {
        let _ = writeln!(out, "      cost once: {once}");
    }
    for change in &action.changes {
        // An unset optional field (null) on a new object is noise.
        if action.operation == Operation::Create && change.after == Some(serde_json::Value::Null) {
            continue;
        }
        change_line(out, action.operation, change);
    }
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
        action_lines(&mut out, action, Some("  "));
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

/// The hidden marker of sdop's pull-request comment: a CI job finds the comment it posted
/// before by it and updates that one instead of adding another.
pub const MARKDOWN_MARKER: &str = "<!-- sdop-plan -->";
/// GitHub's limit on the body of an issue or pull-request comment, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_535;
/// Room kept for the line that says the plan was cut.
const CUT_NOTE_ROOM: usize = 400;

/// `sdop plan -o markdown`: a pull-request comment. The marker, a one-line summary (changes,
/// the cost change, candidates to evaluate and versions awaiting approval), then one
/// `<details>` block per resource with the same lines `sdop plan` prints, in a `diff` block.
/// Kept within `limit` characters: blocks that do not fit are left out whole, with a note
/// saying how many and how to see them.
pub fn plan_markdown(plan: &Plan, note: &str, awaiting: &[String], limit: usize) -> String {
    let count = |op| plan.actions.iter().filter(|a| a.operation == op).count();
    let candidates = plan
        .actions
        .iter()
        .filter(|a| {
            a.operation == Operation::Create
                && a.aws_type == crate::model::object::AwsType::ModelPackageVersion
        })
        .count();
    let mut summary = if plan.has_changes() {
        format!(
            "**sdop plan**: {} to create, {} to update, {} to replace, {} to delete",
            count(Operation::Create),
            count(Operation::Update),
            count(Operation::Replace),
            count(Operation::Delete)
        )
    } else {
        "**sdop plan**: no changes".to_string()
    };
    for (n, what) in [
        (count(Operation::Adopt), "to adopt"),
        (count(Operation::Conflict), "conflict(s)"),
    ] {
        if n > 0 {
            summary.push_str(&format!(", {n} {what}"));
        }
    }
    let delta = plan.hourly_delta();
    summary.push_str(&format!(
        " · cost {}/h ({}/h once applied)",
        crate::cost::dollars_signed(delta.dollars),
        format_args!("${:.2}", plan.hourly_after().dollars)
    ));
    if candidates > 0 {
        summary.push_str(&format!(
            " · {candidates} model version(s) to register and evaluate"
        ));
    }
    if !awaiting.is_empty() {
        summary.push_str(&format!(" · awaiting approval: {}", awaiting.join(", ")));
    }
    let mut blocks: Vec<String> = Vec::new();
    let mut start = 0;
    while start < plan.actions.len() {
        let resource = &plan.actions[start].resource;
        let end = plan.actions[start..]
            .iter()
            .position(|a| &a.resource != resource)
            .map_or(plan.actions.len(), |n| start + n);
        let actions = &plan.actions[start..end];
        let mut counts: Vec<String> = Vec::new();
        for op in [
            Operation::Create,
            Operation::Update,
            Operation::Replace,
            Operation::Delete,
            Operation::Adopt,
            Operation::Conflict,
            Operation::Rollback,
        ] {
            let n = actions.iter().filter(|a| a.operation == op).count();
            if n > 0 {
                counts.push(format!("{n} {}", to_do(op)));
            }
        }
        let mut lines = String::new();
        for action in actions {
            action_lines(&mut lines, action, None);
        }
        // A fence inside a value would end the code block early.
        let lines = lines.replace("```", "`\u{200b}``");
        blocks.push(format!(
            "<details><summary><code>{}</code>: {}</summary>\n\n```diff\n{lines}```\n\n</details>\n",
            html_escape(&resource.to_string()),
            counts.join(", ")
        ));
        start = end;
    }
    let mut footer = String::new();
    let _ = writeln!(footer, "\n{}", cost_line(plan));
    if !note.is_empty() {
        let _ = writeln!(footer, "\n_Note: {note}._");
    }
    let mut out = format!("{MARKDOWN_MARKER}\n{summary}\n\n");
    let budget = limit.saturating_sub(out.len() + footer.len() + CUT_NOTE_ROOM);
    let mut used = 0;
    let mut shown = 0;
    for block in &blocks {
        if used + block.len() > budget {
            break;
        }
        used += block.len();
        shown += 1;
        out.push_str(block);
    }
    if shown < blocks.len() {
        let _ = writeln!(
            out,
            "\n_{} more resource(s) not shown: a comment is limited to {limit} characters. Run `sdop plan` for the whole plan._",
            blocks.len() - shown
        );
    }
    out.push_str(&footer);
    out
}

fn to_do(op: Operation) -> &'static str {
    match op {
        Operation::Create => "to create",
        Operation::Update => "to update",
        Operation::Replace => "to replace",
        Operation::Delete => "to delete",
        Operation::Adopt => "to adopt",
        Operation::Conflict => "conflict(s)",
        Operation::Rollback => "to roll back",
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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

/// Where the MESSAGE column of [`status_table`] starts.
const MESSAGE_COLUMN: usize = 34 + 1 + 12 + 1 + 20 + 1 + 8 + 1;
/// The narrowest MESSAGE column a narrow terminal still gets.
const MIN_MESSAGE_WIDTH: usize = 40;

/// `sdop get` as a table: one line per resource. A message is never cut: with `width` (a
/// terminal's columns) it wraps under its column, else each of its lines is shown in full.
pub fn status_table(statuses: &[crate::state::ResourceStatus], width: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<12} {:<20} {:>8} MESSAGE",
        "RESOURCE", "PHASE", "UPDATED", "COST/H"
    );
    let message_width = width.map(|w| w.saturating_sub(MESSAGE_COLUMN).max(MIN_MESSAGE_WIDTH));
    for status in statuses {
        let cost = match status
            .outputs
            .get(crate::engine::execute::HOURLY_COST)
            .map(|c| c.parse::<f64>())
        {
            Some(Ok(dollars)) => format!("${dollars:.2}"),
            Some(Err(_)) => "unknown".to_string(),
            None => "-".to_string(),
        };
        let message = shown_message(status);
        let mut lines = wrap(&message, message_width).into_iter();
        let _ = writeln!(
            out,
            "{:<34} {:<12} {:<20} {:>8} {}",
            format!("{}/{}", status.kind, status.name),
            format!("{:?}", status.phase),
            status.updated_at,
            cost,
            lines.next().unwrap_or_default()
        );
        for line in lines {
            let _ = writeln!(out, "{:MESSAGE_COLUMN$}{line}", "");
        }
    }
    out
}

/// A resource's message; when its manifest is invalid now (the daemon runs it on its last
/// good spec), that first, with the problem's `FILE:LINE:COL`.
fn shown_message(status: &crate::state::ResourceStatus) -> String {
    let invalid = status
        .conditions
        .iter()
        .find(|c| c.kind == crate::daemon::worker::MANIFEST_CONDITION && !c.status);
    match invalid {
        Some(condition) if status.message.is_empty() => condition.message.clone(),
        Some(condition) => format!(
            "{} (last pass, on that spec: {})",
            condition.message, status.message
        ),
        None => status.message.clone(),
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can (a longer
/// word is broken); its own line breaks are kept. Without a width, only those.
fn wrap(text: &str, width: Option<usize>) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let Some(width) = width else {
            lines.push(paragraph.to_string());
            continue;
        };
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word: Vec<char> = word.chars().collect();
            let used = line.chars().count();
            if used > 0 && used + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            while line.chars().count() + word.len() > width {
                let room = width - line.chars().count();
                line.extend(word.drain(..room));
                lines.push(std::mem::take(&mut line));
            }
            line.extend(word);
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// Columns of the terminal standard output is, if it is one.
pub fn terminal_width() -> Option<usize> {
    console::Term::stdout()
        .size_checked()
        .map(|(_, columns)| usize::from(columns))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ResourceId;
    use crate::state::{Phase, ResourceStatus};

    fn failed(message: &str) -> ResourceStatus {
        let mut status = ResourceStatus::new(&ResourceId::new("Endpoint", "sd-base"));
        status.set_phase(Phase::Failed, "Failed", message);
        status
    }

    /// The message lines of a table: its first row's MESSAGE and the lines under it.
    fn message_lines(table: &str) -> Vec<String> {
        table
            .lines()
            .skip(1)
            .map(|l| l.chars().skip(MESSAGE_COLUMN).collect())
            .collect()
    }

    #[test]
    fn a_long_message_wraps_under_its_column_and_is_never_cut() {
        let message = format!(
            "The primary container for production variant AllTraffic did not pass the ping health check. {}Traceback: /opt/ml/code/serve.py line 42: CUDA out of memory",
            "word ".repeat(30)
        );
        let table = status_table(&[failed(&message)], Some(120));
        let lines = message_lines(&table);
        assert!(lines.len() > 2, "{table}");
        assert!(table.lines().all(|l| l.chars().count() <= 120), "{table}");
        for line in table.lines().skip(2) {
            assert!(line.starts_with(&" ".repeat(MESSAGE_COLUMN)), "{table}");
        }
        assert_eq!(lines.join(" "), message, "{table}");
        // Not a terminal: the whole message on its row.
        let table = status_table(&[failed(&message)], None);
        assert_eq!(message_lines(&table), vec![message.clone()], "{table}");
        assert!(!table.contains("..."), "{table}");
    }

    #[test]
    fn words_longer_than_the_column_are_broken_and_line_breaks_kept() {
        assert_eq!(
            wrap("s3://bucket/a/very/long/key first\nsecond line", Some(10)),
            vec![
                "s3://bucke",
                "t/a/very/l",
                "ong/key",
                "first",
                "second",
                "line"
            ]
        );
        assert_eq!(wrap("", Some(10)), vec![""]);
        assert_eq!(wrap("a\nb", None), vec!["a", "b"]);
    }

    #[test]
    fn an_invalid_manifest_is_shown_with_its_position() {
        let mut status = ResourceStatus::new(&ResourceId::new("ImageRepository", "inference"));
        status.set_phase(
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        );
        status.set_condition(
            crate::daemon::worker::MANIFEST_CONDITION,
            false,
            "InvalidManifest",
            "manifest invalid, running on its last good spec: m/repo.yaml:4:7: ImageRepository/inference: unknown field `tagz`",
        );
        let table = status_table(&[status.clone()], None);
        assert!(
            table.contains("Ready        ")
                && table.contains(" manifest invalid, running on its last good spec: m/repo.yaml:4:7: ImageRepository/inference: unknown field `tagz` (last pass, on that spec: all AWS objects match the manifest)"),
            "{table}"
        );
        // Valid again: the message alone.
        status.set_condition(crate::daemon::worker::MANIFEST_CONDITION, true, "Valid", "");
        let table = status_table(&[status], None);
        assert!(!table.contains("invalid"), "{table}");
    }

    fn planned(resources: usize, objects: usize) -> Plan {
        let mut actions = Vec::new();
        for r in 0..resources {
            let id = ResourceId::new("Endpoint", format!("sd-{r}"));
            for o in 0..objects {
                let want = crate::model::object::DesiredObject::new(
                    crate::model::object::AwsType::SageMakerModel,
                    crate::model::object::ObjectName::Known(format!("sd-{r}-model-{o}")),
                    crate::model::object::Mutability::Replace,
                )
                .field(
                    "image",
                    Some(serde_json::json!(
                        "123456789012.dkr.ecr.us-east-1.amazonaws.com/sd:1"
                    )),
                );
                actions.push(crate::engine::plan::create_action(
                    &id,
                    &want,
                    "does not exist".into(),
                ));
            }
        }
        Plan {
            actions,
            capacity: Vec::new(),
        }
    }

    #[test]
    fn a_markdown_plan_has_its_marker_summary_and_one_block_per_resource() {
        let plan = planned(2, 3);
        let md = plan_markdown(
            &plan,
            "",
            &["ModelPromotion/p version 3".into()],
            GITHUB_COMMENT_LIMIT,
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], MARKDOWN_MARKER);
        assert!(
            lines[1].starts_with("**sdop plan**: 6 to create, 0 to update, 0 to replace, 0 to delete · cost +$0.00/h")
                && lines[1].ends_with("awaiting approval: ModelPromotion/p version 3"),
            "{}",
            lines[1]
        );
        assert_eq!(md.matches("<details>").count(), 2, "{md}");
        assert_eq!(md.matches("</details>").count(), 2, "{md}");
        assert!(md.contains("<summary><code>Endpoint/sd-0</code>: 3 to create</summary>"));
        // The same lines as `sdop plan`, the symbol first so GitHub colours them.
        assert!(
            md.contains("```diff\n+ sagemaker:model sd-0-model-0  (does not exist)\n      image: "),
            "{md}"
        );
        let empty = plan_markdown(&planned(0, 0), "", &[], GITHUB_COMMENT_LIMIT);
        assert!(empty.contains("**sdop plan**: no changes"), "{empty}");
    }

    #[test]
    fn a_long_markdown_plan_is_cut_between_blocks_with_a_note() {
        let plan = planned(400, 20);
        let md = plan_markdown(&plan, "", &[], GITHUB_COMMENT_LIMIT);
        assert!(md.chars().count() <= GITHUB_COMMENT_LIMIT, "{}", md.len());
        let shown = md.matches("<details>").count();
        assert_eq!(md.matches("</details>").count(), shown, "never mid-block");
        assert!(shown > 0 && shown < 400, "{shown}");
        assert!(
            md.contains(&format!("_{} more resource(s) not shown", 400 - shown)),
            "{}",
            &md[md.len() - 600..]
        );
        assert!(md.contains("\nCost: "), "the cost line stays");
        // A smaller limit cuts earlier, still on a block boundary.
        let small = plan_markdown(&plan, "", &[], 5_000);
        assert!(small.len() <= 5_000);
        assert_eq!(
            small.matches("<details>").count(),
            small.matches("</details>").count()
        );
    }
}
