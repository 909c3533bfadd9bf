//! The status page (`GET /`) and a resource's page (`GET /resources/KIND/NAME`), rendered on
//! the server with maud: the templates are Rust, checked when sdop compiles, every value
//! escaped. Pure functions of what the handlers gathered (the daemon's view, the cached plan,
//! the git commits, a promotion's evidence record), so they are tested and benchmarked
//! without AWS. No JavaScript but two inline `onload`/`onerror` attributes that mark an image
//! loaded or not (the browser test reads them); the page refreshes itself with a meta refresh
//! while something is in progress.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::evidence;
use super::http::{Declared, Role, View};
use crate::engine::execute::HOURLY_COST;
use crate::manifest::ResourceId;
use crate::state::{Phase, ResourceStatus};

/// How often a page showing something in progress reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// The inline handlers of an evidence image (their hashes are in the Content-Security-Policy).
pub const IMAGE_ONLOAD: &str = "this.dataset.loaded='1'";
pub const IMAGE_ONERROR: &str = "this.dataset.failed='1'";

const CSS: &str = r#"
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--card:#f6f8fa;
--ok:#1a7f37;--run:#0969da;--wait:#9a6700;--bad:#cf222e;--odd:#8250df}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:78rem;margin:0 auto;padding:.75rem 1rem 3rem}
a{color:var(--run);text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:1.35rem;margin:.25rem 0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86em}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.banner{border-radius:8px;padding:.7rem 1rem;margin:.5rem 0;font-weight:600;color:#fff}
.banner small{font-weight:400;opacity:.9;display:block}
.b-ok{background:var(--ok)}.b-run{background:var(--run)}.b-wait{background:var(--wait)}.b-bad{background:var(--bad)}
.counts{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0;padding:0;list-style:none}
.counts li{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.2rem .55rem;font-size:.9em}
.attention{list-style:none;padding:0;margin:0}
.attention li{border-left:4px solid var(--bad);background:var(--card);padding:.4rem .6rem;margin:.35rem 0;overflow-wrap:anywhere;white-space:pre-wrap}
.attention li.a-wait{border-color:var(--wait)}
.res{border:1px solid var(--line);border-left:5px solid var(--muted);border-radius:6px;padding:.55rem .75rem;margin:.5rem 0;background:var(--bg)}
.res header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.2rem .6rem}
.res .name{font-weight:600;font-size:1.02rem}.kind{color:var(--muted);font-weight:400}
.msg{margin:.35rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
.err{color:var(--bad)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.35rem 0 0;font-size:.92em}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere;white-space:pre-wrap}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.82em;font-weight:600;color:#fff;background:var(--muted)}
.p-Ready{border-left-color:var(--ok)}.p-Progressing{border-left-color:var(--run)}.p-Pending{border-left-color:var(--wait)}
.p-Failed{border-left-color:var(--bad)}.p-Degraded{border-left-color:var(--bad)}.p-Conflict{border-left-color:var(--odd)}
.badge.p-Ready{background:var(--ok)}.badge.p-Progressing{background:var(--run)}.badge.p-Pending{background:var(--wait)}
.badge.p-Failed,.badge.p-Degraded{background:var(--bad)}.badge.p-Conflict{background:var(--odd)}
.reason{color:var(--muted);font-size:.9em}
.drift{color:var(--wait);font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.92em}td,th{border-bottom:1px solid var(--line);padding:.25rem .4rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
ol.log{list-style:none;padding:0;margin:0;font-size:.92em}ol.log li{padding:.2rem 0;border-bottom:1px dotted var(--line);white-space:pre-wrap;overflow-wrap:anywhere}
ol.log time{color:var(--muted);margin-right:.5rem}
.sheet-grid{display:flex;gap:.6rem;align-items:stretch}
.sheet-img{flex:0 1 auto;max-width:68%}.sheet-img img{display:block;max-width:100%;height:auto;border:1px solid var(--line)}
.sheet-rows{position:relative;flex:1 1 8rem;font-size:.85em;overflow-wrap:anywhere}.sheet-rows div{position:absolute;left:0;right:0;padding-top:.15rem}
.swatch{display:inline-block;width:1.6em;height:.7em;border-radius:2px;vertical-align:middle;margin-left:.4rem}
.cases{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.8rem}
.case{margin:0;border:1px solid var(--line);border-radius:6px;padding:.5rem;background:var(--card)}
.case img{width:100%;height:auto;display:block;background:#ddd}
.pass{color:var(--ok);font-weight:600}.fail{color:var(--bad);font-weight:600}
img[data-failed]{outline:3px solid var(--bad)}
footer{margin-top:2rem;color:var(--muted);font-size:.85em}
@media (max-width:40rem){body{font-size:14px}main{padding:.5rem .6rem 2rem}dl.facts{grid-template-columns:1fr}dl.facts dt{margin-top:.25rem}}
"#;

/// What a plan says about drift: the pending actions of each resource, as of a moment.
#[derive(Debug, Clone)]
pub enum Drift {
    /// No plan yet, or it failed: why.
    NotKnown(String),
    Known {
        /// RFC 3339, as statuses write their times.
        at: String,
        pending: BTreeMap<ResourceId, usize>,
    },
}

/// What the status page shows.
pub struct Index<'a> {
    pub view: &'a View,
    /// A manifest file's last commit, `HASH\tSUBJECT`.
    pub commits: &'a HashMap<PathBuf, String>,
    pub drift: &'a Drift,
    pub now: SystemTime,
}

/// The resource's pending plan, as `sdop plan` prints it.
pub enum PlanPart {
    Lines {
        at: String,
        text: String,
    },
    Failed(String),
    /// No manifest declares it: nothing is planned for it.
    NotDeclared,
}

/// A promotion's evidence, read from the record its status names.
pub type EvidencePart = Result<(evidence::Recorded, sdop_evidence::EvidenceRecord), String>;

/// What a resource's page shows.
pub struct Detail<'a> {
    pub view: &'a View,
    pub status: &'a ResourceStatus,
    pub commit: Option<&'a str>,
    pub plan: PlanPart,
    pub evidence: Option<EvidencePart>,
    pub now: SystemTime,
}

fn reason(status: &ResourceStatus) -> &str {
    status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("", |c| c.reason.as_str())
}

fn phase(status: &ResourceStatus) -> String {
    format!("{:?}", status.phase)
}

/// A path segment of a link, percent-encoded but for unreserved characters.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn resource_link(id: &ResourceId) -> String {
    format!("/resources/{}/{}", segment(&id.kind), segment(&id.name))
}

fn evidence_link(id: &ResourceId, leaf: &str) -> String {
    format!(
        "/evidence/{}/{}/{leaf}",
        segment(&id.kind),
        segment(&id.name)
    )
}

fn hourly_cost(status: &ResourceStatus) -> Option<f64> {
    status
        .outputs
        .get(HOURLY_COST)
        .and_then(|c| c.parse::<f64>().ok())
}

/// Whether nothing more happens by itself: a resource waiting for a person or suspended is
/// Pending but settled.
fn in_progress(status: &ResourceStatus) -> bool {
    match status.phase {
        Phase::Progressing | Phase::Deleting => true,
        Phase::Pending => !matches!(reason(status), "Suspended" | "AwaitingApproval"),
        _ => false,
    }
}

/// Starting, or a leader that has not reconciled everything once yet (a standby never does).
fn first_pass(view: &View) -> bool {
    view.role == Role::Starting || (view.role == Role::Leader && !view.synced)
}

/// Whether the page should reload itself.
pub fn refreshing<'s>(view: &View, statuses: impl IntoIterator<Item = &'s ResourceStatus>) -> bool {
    first_pass(view) || statuses.into_iter().any(in_progress)
}

/// The version a promotion's outputs wait on a person for.
fn awaiting(status: &ResourceStatus) -> Option<String> {
    let version = status
        .outputs
        .get("awaitingApproval")
        .filter(|v| !v.is_empty())
        .cloned();
    match version {
        Some(v) => Some(v),
        None if reason(status) == "AwaitingApproval" => Some(String::new()),
        None => None,
    }
}

/// The model version an Endpoint serves: from its history (what it last rolled out), else the
/// version its ModelPromotion approved; for another model, the model data it serves.
pub fn live_model(
    status: &ResourceStatus,
    declared: Option<&Declared>,
    statuses: &BTreeMap<ResourceId, ResourceStatus>,
) -> Option<String> {
    if status.kind != "Endpoint" {
        return None;
    }
    let promotion = declared.and_then(|d| d.promotion.as_deref());
    if let Some(name) = promotion {
        let id = ResourceId::new(crate::kinds::model_promotion::PROMOTION_KIND, name);
        let marker = format!("{id} version ");
        let served = status.history.iter().rev().find_map(|event| {
            let rest = &event.message[event.message.find(&marker)? + marker.len()..];
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!number.is_empty())
                .then(|| format!("version {number} of {id} (served since {})", event.at))
        });
        if served.is_some() {
            return served;
        }
        let approved = statuses
            .get(&id)
            .and_then(|p| p.outputs.get("approvedVersion"))
            .filter(|v| !v.is_empty());
        return Some(match approved {
            Some(v) => format!("version {v} of {id} (approved; not yet served)"),
            None => format!("none yet: {id} has approved no version"),
        });
    }
    status
        .outputs
        .get("modelData")
        .filter(|m| !m.is_empty())
        .cloned()
}

/// A training job's, a rollout's or an evaluation's progress, from the status sdop recorded
/// (a resource waiting for another shows nothing here: its message says for what).
pub fn progress(
    status: &ResourceStatus,
    declared: Option<&Declared>,
    now: SystemTime,
) -> Option<String> {
    if status.phase != Phase::Progressing {
        return None;
    }
    let since = status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .and_then(|c| humantime::parse_rfc3339(&c.last_transition).ok())
        .and_then(|at| now.duration_since(at).ok())
        .map(|d| {
            format!(
                "for {}",
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
            )
        })
        .unwrap_or_default();
    match status.kind.as_str() {
        "DreamboothJob" => {
            // SageMaker's status and secondary status: `InProgress (Training)`.
            let secondary = status.message.find("InProgress (").and_then(|at| {
                let rest = &status.message[at + "InProgress (".len()..];
                rest.find(')').map(|end| rest[..end].to_string())
            });
            let mut line = format!(
                "training: {} {since}",
                secondary.as_deref().unwrap_or("in progress")
            );
            let expected = declared
                .and_then(|d| d.expected_checkpoint.as_ref())
                .or_else(|| status.outputs.get("expectedCheckpoint"));
            if let Some(checkpoint) = expected {
                line.push_str(&format!("; expected checkpoint {checkpoint}"));
            }
            Some(line)
        }
        "Endpoint" => {
            let smoke = status
                .events
                .iter()
                .rev()
                .find(|e| e.message.contains("smoke check"))
                .map(|e| format!("; last smoke check event: {}", e.message));
            Some(format!(
                "rollout in progress {since}{}",
                smoke.unwrap_or_default()
            ))
        }
        "ModelPromotion" => Some(format!("evaluation in progress {since}")),
        _ => None,
    }
}

/// The declared resources in the graph's order, then statuses no manifest declares.
fn ordered(view: &View) -> Vec<(&ResourceStatus, Option<&Declared>)> {
    let mut seen: HashSet<&ResourceId> = HashSet::new();
    let mut rows = Vec::with_capacity(view.statuses.len());
    for declared in &view.declared {
        if let Some(status) = view.statuses.get(&declared.id) {
            seen.insert(&declared.id);
            rows.push((status, Some(declared)));
        }
    }
    for (id, status) in &view.statuses {
        if !seen.contains(id) {
            rows.push((status, None));
        }
    }
    rows
}

/// A resource with pending changes in the plan while its status says Ready, if the plan was
/// made after its last pass (an earlier plan may show what that pass did since).
fn drifted(drift: &Drift, status: &ResourceStatus) -> Option<usize> {
    match drift {
        Drift::Known { at, pending } if status.phase == Phase::Ready => pending
            .get(&status.id())
            .copied()
            .filter(|_| status.updated_at.as_str() <= at.as_str()),
        _ => None,
    }
}

/// A manifest file as the page shows it: from the watched path's last component down
/// (`promote/promote.yaml` under a watched `/srv/examples/promote`), else as loaded.
fn shown_path(view: &View, file: &std::path::Path) -> String {
    view.manifest_paths
        .iter()
        .map(std::path::Path::new)
        .filter(|watched| file.starts_with(watched))
        .max_by_key(|watched| watched.as_os_str().len())
        .and_then(|watched| file.strip_prefix(watched.parent()?).ok())
        .filter(|shown| !shown.as_os_str().is_empty())
        .unwrap_or(file)
        .display()
        .to_string()
}

fn manifest_invalid(status: &ResourceStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.kind == crate::state::MANIFEST_CONDITION && !c.status)
        .map(|c| c.message.as_str())
}

fn head(title: &str, refresh: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            @if refresh {
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
            }
            title { (title) }
            style { (PreEscaped(CSS)) }
        }
    }
}

fn footer(view: &View, refresh: bool) -> Markup {
    html! {
        footer {
            "sdop daemon " (view.holder) " · " (role(view.role))
            " · manifests " (view.manifest_paths.join(", "))
            " · last loaded " (view.last_load)
            @if refresh { " · this page reloads every " (REFRESH_SECONDS) " s while something is in progress" }
            " · " a href="/api/v1/status" { "status JSON" } " · " a href="/api/v1/plan" { "plan JSON" }
            " · " a href="/metrics" { "metrics" }
        }
    }
}

fn role(role: Role) -> &'static str {
    match role {
        Role::Starting => "starting",
        Role::Leader => "leader",
        Role::Standby => "standby (another daemon leads; this one only reads)",
        Role::ShuttingDown => "shutting down",
    }
}

/// `GET /`.
pub fn index(page: &Index) -> Markup {
    let view = page.view;
    let rows = ordered(view);
    let refresh = refreshing(view, view.statuses.values());
    let count = |p: Phase| view.statuses.values().filter(|s| s.phase == p).count();
    let broken = count(Phase::Failed) + count(Phase::Degraded) + count(Phase::Conflict);
    let running = view.statuses.values().filter(|s| in_progress(s)).count();
    let total_cost: f64 = view.statuses.values().filter_map(hourly_cost).sum();
    let mut kinds: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for status in view.statuses.values() {
        *kinds
            .entry(status.kind.as_str())
            .or_default()
            .entry(phase(status))
            .or_default() += 1;
    }
    // Needs attention: (css class, what, resource, text).
    let mut attention: Vec<(&str, String, Option<ResourceId>, String)> = Vec::new();
    for (status, _) in &rows {
        let id = status.id();
        if matches!(
            status.phase,
            Phase::Failed | Phase::Degraded | Phase::Conflict
        ) {
            let mut text = status.message.clone();
            if let Some(err) = &status.last_error {
                if !text.contains(&err.message) {
                    text.push_str(&format!("\nlast error ({}): {}", err.at, err.message));
                }
            }
            attention.push(("a-bad", phase(status), Some(id.clone()), text));
        }
        if let Some(n) = drifted(page.drift, status) {
            attention.push((
                "a-wait",
                "Drifted".into(),
                Some(id.clone()),
                format!("Ready, but the plan has {n} pending change(s): see its page"),
            ));
        }
        if reason(status) == "Suspended" {
            attention.push((
                "a-wait",
                "Suspended".into(),
                Some(id.clone()),
                status.message.clone(),
            ));
        }
        if let Some(version) = awaiting(status) {
            let text = if version.is_empty() {
                status.message.clone()
            } else {
                format!(
                    "version {version} passed its evaluation and waits for a person: list it in approvedVersions (a commit), or `sdop approve {id} {version} --reason ...`"
                )
            };
            attention.push(("a-wait", "Awaiting approval".into(), Some(id.clone()), text));
        }
    }
    for problem in &view.diagnostics {
        attention.push(("a-bad", "Invalid manifest".into(), None, problem.clone()));
    }
    let (banner_class, banner) = if broken + view.diagnostics.len() > 0 {
        (
            "b-bad",
            format!(
                "{} problem(s): {} failed or degraded, {} invalid manifest(s)",
                broken + view.diagnostics.len(),
                broken,
                view.diagnostics.len()
            ),
        )
    } else if running > 0 || first_pass(view) {
        ("b-run", format!("{running} resource(s) in progress"))
    } else if !attention.is_empty() {
        (
            "b-wait",
            format!("Reconciled; {} item(s) need a person", attention.len()),
        )
    } else {
        (
            "b-ok",
            format!("Healthy: all {} resource(s) Ready", view.statuses.len()),
        )
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("sdop status", refresh))
            body {
                main {
                    h1 { "sdop" }
                    div.banner.(banner_class) data-health=(banner_class) {
                        (banner)
                        small {
                            (view.statuses.len()) " resources · " (role(view.role))
                            @if first_pass(view) { " · first pass running" }
                            " · endpoints $" (format!("{total_cost:.2}")) "/h"
                        }
                    }
                    ul.counts {
                        @for (kind, phases) in &kinds {
                            li {
                                b { (kind) } " " (phases.values().sum::<usize>())
                                @for (p, n) in phases { " · " (n) " " (p) }
                            }
                        }
                    }
                    h2 { "Needs attention" }
                    @if attention.is_empty() {
                        p { "Nothing." }
                    } @else {
                        ul.attention {
                            @for (class, what, id, text) in &attention {
                                li class=(class) data-attention=(what) {
                                    b { (what) }
                                    @if let Some(id) = id { " " a href=(resource_link(id)) { (id) } }
                                    ": " (text)
                                }
                            }
                        }
                    }
                    p.reason {
                        @match page.drift {
                            Drift::Known { at, .. } => { "Drift: from the plan of " (at) ", refreshed in the background at most every 30 s while this page is viewed." }
                            Drift::NotKnown(why) => { "Drift: not known yet (" (why) ")." }
                        }
                        " The daemon has no cost guard (--max-hourly-cost is apply's): the total above is for reading."
                    }
                    h2 { "Resources, in dependency order" }
                    @if rows.is_empty() {
                        p { "No resource has a status yet." }
                    }
                    @for (status, declared) in &rows {
                        (summary(&Summary {
                            view,
                            status,
                            declared: *declared,
                            commit: declared.and_then(|d| page.commits.get(&d.file)).map(String::as_str),
                            drift: drifted(page.drift, status),
                            now: page.now,
                            full: false,
                        }))
                    }
                    (footer(view, refresh))
                }
            }
        }
    }
}

/// A resource as its card on the status page (`full: false`) or the head of its own page.
struct Summary<'a> {
    view: &'a View,
    status: &'a ResourceStatus,
    declared: Option<&'a Declared>,
    /// Its manifest's last commit, `HASH\tSUBJECT`.
    commit: Option<&'a str>,
    /// Its pending changes when drifted.
    drift: Option<usize>,
    now: SystemTime,
    full: bool,
}

fn summary(s: &Summary) -> Markup {
    let status = s.status;
    let id = status.id();
    let reason = reason(status);
    html! {
        article class={ "res p-" (phase(status)) } data-resource=(id) data-phase=(phase(status)) {
            header {
                @if s.full {
                    h1.name { span.kind { (status.kind) "/" } (status.name) }
                } @else {
                    a.name href=(resource_link(&id)) { span.kind { (status.kind) "/" } (status.name) }
                }
                span class={ "badge p-" (phase(status)) } { (phase(status)) }
                @if !reason.is_empty() { span.reason { (reason) } }
                @if let Some(n) = s.drift {
                    span.drift { "drifted: " (n) " pending change(s)" }
                }
            }
            @if !status.message.is_empty() {
                p.msg.err[matches!(status.phase, Phase::Failed | Phase::Degraded)] { (status.message) }
            }
            dl.facts {
                @if let Some(problem) = manifest_invalid(status) {
                    dt.err { "manifest" } dd.err { (problem) }
                }
                @if let Some(err) = &status.last_error {
                    // On a card, only when the message does not say it already.
                    @if s.full || !status.message.contains(&err.message) {
                        dt { "last error" } dd.err { (err.message) " (" (format!("{:?}", err.class)) ", " (err.at) ")" }
                    }
                }
                @if let Some(line) = progress(status, s.declared, s.now) {
                    dt { "progress" } dd { (line) }
                }
                @if let Some(model) = live_model(status, s.declared, &s.view.statuses) {
                    dt { "live model" } dd { (model) }
                }
                @if status.kind == crate::kinds::model_promotion::PROMOTION_KIND {
                    (promotion_facts(status))
                }
                @if let Some(cost) = hourly_cost(status) {
                    dt { "cost" } dd { "$" (format!("{cost:.2}")) "/h" }
                }
                dt { "reconciled" } dd { (status.updated_at) }
                @if s.full {
                    dt { "created" } dd { (status.created_at) }
                    @if let Some(region) = &status.region { dt { "region" } dd { (region) } }
                }
                @if let Some(d) = s.declared {
                    dt { "manifest" }
                    dd.mono {
                        (shown_path(s.view, &d.file)) ":" (d.line)
                        @if let Some(commit) = s.commit { " · " (commit.replacen('\t', " ", 1)) }
                    }
                } @else {
                    dt { "manifest" } dd { "none declares it now (kept, not reconciled)" }
                }
            }
        }
    }
}

fn promotion_facts(status: &ResourceStatus) -> Markup {
    let get = |k: &str| status.outputs.get(k).filter(|v| !v.is_empty());
    html! {
        @if let Some(v) = get("approvedVersion") {
            dt { "approved" } dd { "version " (v) @if let Some(by) = get("approvedBy") { " (" (by) ")" } }
        }
        @if let Some(v) = get("candidateVersion") {
            dt { "candidate" } dd {
                "version " (v)
                @if let Some(d) = get("candidateDecision") { ": " (d) }
                @if let Some(verdict) = get("verdict") { " · evidence " (verdict) }
            }
        }
        @if let Some(v) = get("awaitingApproval") {
            dt { "awaiting" } dd.drift { "version " (v) " waits for approval" }
        }
    }
}

/// `GET /resources/KIND/NAME`.
pub fn detail(page: &Detail) -> Markup {
    let status = page.status;
    let view = page.view;
    let id = status.id();
    let declared = view.declared.iter().find(|d| d.id == id);
    let refresh = refreshing(view, [status]);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{id} · sdop"), refresh))
            body {
                main {
                    p { a href="/" { "← all resources" } }
                    (summary(&Summary {
                        view,
                        status,
                        declared,
                        commit: page.commit,
                        drift: None,
                        now: page.now,
                        full: true,
                    }))
                    h2 { "Pending plan" }
                    @match &page.plan {
                        PlanPart::Lines { at, text } => {
                            @if text.is_empty() {
                                p data-plan="empty" { "No changes (plan of " (at) ")." }
                            } @else {
                                p.reason { "What an apply would do now (plan of " (at) "), as `sdop plan` prints it:" }
                                pre data-plan="changes" { (text) }
                            }
                        }
                        PlanPart::Failed(why) => { p.err data-plan="failed" { "The plan failed: " (why) } }
                        PlanPart::NotDeclared => { p data-plan="none" { "No manifest declares it: nothing is planned for it." } }
                    }
                    @if let Some(evidence) = &page.evidence {
                        (evidence_section(&id, evidence))
                    }
                    h2 { "History" }
                    @if status.history.is_empty() {
                        p { "Nothing recorded yet (what it served or decided is kept here for good)." }
                    } @else {
                        ol.log data-list="history" {
                            @for event in status.history.iter().rev() {
                                li { time { (event.at) } (event.message) }
                            }
                        }
                    }
                    h2 { "Events" }
                    ol.log data-list="events" {
                        @for event in status.events.iter().rev() {
                            li { time { (event.at) } (event.message) }
                        }
                    }
                    h2 { "Outputs" }
                    @if status.outputs.is_empty() { p { "None yet." } }
                    dl.facts {
                        @for (key, value) in &status.outputs {
                            dt { (key) } dd.mono { (value) }
                        }
                    }
                    @if !status.conditions.is_empty() {
                        h2 { "Conditions" }
                        table {
                            tr { th { "type" } th { "status" } th { "reason" } th { "since" } th { "message" } }
                            @for c in &status.conditions {
                                tr { td { (c.kind) } td { (c.status) } td { (c.reason) } td { (c.last_transition) } td { (c.message) } }
                            }
                        }
                    }
                    @if !status.objects.is_empty() {
                        h2 { "AWS objects" }
                        table {
                            tr { th { "type" } th { "name" } th { "created" } }
                            @for o in &status.objects {
                                tr { td.mono { (o.aws_type) } td.mono { (o.name) } td { (o.created_at) } }
                            }
                        }
                    }
                    (footer(view, refresh))
                }
            }
        }
    }
}

/// `background:#rrggbb` for a column's colour as the layout records it; nothing else reaches
/// a style attribute.
fn colour(value: &str) -> Option<String> {
    let hex = value.strip_prefix('#')?;
    (hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("background:#{hex}"))
}

fn number(value: Option<f64>, unit: &str) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.2}{unit}"))
}

fn evidence_section(id: &ResourceId, evidence: &EvidencePart) -> Markup {
    html! {
        h2 { "Evidence" }
        @match evidence {
            Err(why) => { p data-evidence="none" { "No evidence to show: " (why) } }
            Ok((recorded, record)) => {
                p.mono { "s3://" (recorded.bucket) "/" (recorded.evidence_key) }
                p {
                    "Candidate " b { (record.evaluation.candidate) }
                    @if let Some(base) = &record.evaluation.baseline { " compared with production " (base) }
                    " on " (record.evaluation.endpoint) " (" (record.evaluation.instance_type)
                    @if let Some(p) = record.evaluation.price_per_hour_usd { ", $" (format!("{p:.3}")) "/h" }
                    ")."
                }
                p data-verdict=(if record.verdict.passed { "passed" } else { "failed" }) {
                    "Verdict: "
                    @if record.verdict.passed { span.pass { "passed" } } @else { span.fail { "failed" } }
                    @for reason in &record.verdict.reasons { br; span.err { (reason) } }
                    @for note in &record.verdict.notes { br; span.reason { (note) } }
                }
                p.reason {
                    (record.summary.images) " images, " (record.summary.decoded) " decoded, "
                    (record.summary.blank) " blank, " (record.summary.black) " black, "
                    (record.summary.wrong_size) " of the wrong size · latency p50 "
                    (number(record.summary.p50_latency_seconds, " s")) ", p95 "
                    (number(record.summary.p95_latency_seconds, " s")) " · cost per image $"
                    (number(record.summary.cost_per_image_usd, ""))
                }
                @if recorded.contact_sheet.is_some() {
                    @let layout = record.contact_sheet.as_ref().map(|s| &s.layout);
                    figure.sheet {
                        @if let Some(layout) = layout {
                            p.legend {
                                "Columns, left to right: "
                                @for column in &layout.columns {
                                    span.swatch style=[colour(&column.colour)] {} " " (column.label) " "
                                }
                            }
                        }
                        div.sheet-grid {
                            div.sheet-img {
                                img src=(evidence_link(id, "contact-sheet.png")) alt="contact sheet"
                                    data-image="contact-sheet" onload=(IMAGE_ONLOAD) onerror=(IMAGE_ONERROR);
                            }
                            @if let Some(layout) = layout {
                                div.sheet-rows {
                                    @for row in &layout.rows {
                                        div style={ "top:" (format!("{:.2}", f64::from(row.y) * 100.0 / f64::from(layout.height.max(1)))) "%" } {
                                            (row.prompt) br; span.reason { "seed " (row.seed) }
                                        }
                                    }
                                }
                            }
                        }
                        figcaption.reason { "Contact sheet: each prompt and seed in a row, production's image beside the candidate's." }
                    }
                }
                div.cases {
                    @for (n, case) in record.cases.iter().enumerate() {
                        @let verdict = evidence::case_verdict(record, case);
                        figure.case data-case=(n) data-case-verdict=(if verdict.passed { "passed" } else { "failed" }) {
                            @if evidence::case_key(recorded, record, n).is_some() {
                                img src=(evidence_link(id, &format!("case/{n}.png"))) alt=(case.prompt)
                                    width=(case.width) height=(case.height)
                                    data-image={ "case-" (n) } onload=(IMAGE_ONLOAD) onerror=(IMAGE_ONERROR);
                            } @else {
                                p.err { "no image" @if let Some(e) = &case.error { ": " (e) } }
                            }
                            figcaption {
                                b { (case.prompt) }
                                @if let Some(negative) = &case.negative_prompt { br; span.reason { "negative: " (negative) } }
                                br; "seed " (case.seed) " · " (case.width) "x" (case.height)
                                br; span.reason {
                                    @let m = &case.measurement;
                                    @if m.decoded {
                                        "decoded " (m.width.unwrap_or(0)) "x" (m.height.unwrap_or(0))
                                        @if let Some(l) = &m.luma { " · luma mean " (format!("{:.1}", l.mean)) ", stddev " (format!("{:.1}", l.stddev)) }
                                        @if m.blank { " · blank" } @if m.black { " · black" }
                                    } @else {
                                        "not decoded" @if let Some(e) = &m.error { ": " (e) }
                                    }
                                    " · " (m.bytes) " bytes · latency " (number(case.latency_seconds, " s"))
                                    @if let Some(c) = case.cost_usd { " · $" (format!("{c:.4}")) }
                                }
                                br;
                                @if verdict.passed { span.pass { "passed" } } @else {
                                    span.fail { "failed" } @for r in &verdict.reasons { br; span.err { (r) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The inline script attributes' hashes for the Content-Security-Policy (`'unsafe-hashes'`).
pub fn script_hashes() -> String {
    use base64::Engine;
    use sha2::Digest;
    [IMAGE_ONLOAD, IMAGE_ONERROR]
        .iter()
        .map(|s| {
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
