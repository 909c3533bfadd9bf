//! The daemon's HTTP listener (axum): the status page (`/`, `/resources/{kind}/{name}`, the
//! evidence images under `/evidence/`; rendered by [`super::page`]), `/healthz`, `/readyz`,
//! `/metrics`, and a JSON status API (`/api/v1/status`, `/api/v1/status/{kind}/{name}`) that
//! `sdop get` reads, and `/api/v1/plan`: what an apply of the watched manifests would do now,
//! read-only (a standby serves it too: it only reads AWS and the state).
//!
//! Every route only reads: any method but GET and HEAD is refused (405), and with
//! `--auth-token-file` every route but `/healthz` needs the token ([`super::auth`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::auth::{self, Token};
use super::metrics::Metrics;
use super::{evidence, page};
use crate::engine::Plan;
use crate::error::Result;
use crate::manifest::ResourceId;
use crate::state::ResourceStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Starting,
    /// May mutate AWS (holds the lease, or no lease is used).
    Leader,
    /// Another daemon holds the lease: watching, not mutating.
    Standby,
    ShuttingDown,
}

/// What the daemon shows about itself and its resources.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub role: Role,
    /// Every declared resource has been reconciled at least once since this daemon led.
    pub synced: bool,
    pub holder: String,
    pub manifest_paths: Vec<String>,
    /// Manifest problems of the last load (`FILE:LINE:COL: Kind/name: message`).
    pub diagnostics: Vec<String>,
    /// Resources running on their last good spec, with why.
    pub stale: BTreeMap<String, String>,
    pub last_load: String,
    #[serde(skip)]
    pub statuses: BTreeMap<ResourceId, ResourceStatus>,
    /// The declared resources in the graph's order (dependencies first), as last loaded.
    #[serde(skip)]
    pub declared: Vec<Declared>,
}

/// A declared resource: where its manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub id: ResourceId,
    pub file: PathBuf,
    /// The line its document starts on.
    pub line: usize,
    /// An Endpoint serving `modelData.modelPromotion`: that promotion's name.
    pub promotion: Option<String>,
    /// A DreamboothJob's checkpoint as its spec names it now (the status's may be the last
    /// run's while a new one trains).
    pub expected_checkpoint: Option<String>,
}

impl Declared {
    /// Every manifest of `loaded`, in its graph's order (dependencies first; resources in a
    /// cycle, which have no place in it, last).
    pub fn all(loaded: &crate::manifest::Loaded) -> Vec<Declared> {
        let order = loaded.graph.order();
        let mut indices: Vec<usize> = order.to_vec();
        let placed: std::collections::HashSet<usize> = order.iter().copied().collect();
        indices.extend((0..loaded.manifests.len()).filter(|i| !placed.contains(i)));
        indices
            .into_iter()
            .filter_map(|i| loaded.manifests.get(i))
            .map(|m| Declared {
                id: m.id.clone(),
                file: m.origin.file.clone(),
                line: m.origin.document.line,
                promotion: (m.id.kind == "Endpoint")
                    .then(|| {
                        m.spec_json()["modelData"]["modelPromotion"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .flatten(),
                expected_checkpoint: m
                    .handler
                    .spec_outputs(m.spec.as_ref())
                    .remove("expectedCheckpoint"),
            })
            .collect()
    }
}

impl View {
    pub fn new(holder: String, manifest_paths: Vec<String>) -> View {
        View {
            role: Role::Starting,
            synced: false,
            holder,
            manifest_paths,
            diagnostics: Vec::new(),
            stale: BTreeMap::new(),
            last_load: String::new(),
            statuses: BTreeMap::new(),
            declared: Vec::new(),
        }
    }
}

/// What the listener reads beyond the view: a plan of the watched manifests, and S3 objects
/// (a promotion's evidence). The daemon's is [`Planner`]; tests use their own.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// What an apply of the watched manifests would do now, and the manifests left out as
    /// invalid (`FILE:LINE:COL: ...`).
    async fn plan(&self) -> Result<(Plan, Vec<String>)>;
    /// An S3 object's bytes (`None`: not there), in `region` when not the daemon's.
    async fn object(
        &self,
        region: Option<&str>,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>>;
}

/// What `/api/v1/plan` and the pages plan with: the manifests on disk, the daemon's clients
/// and state.
pub struct Planner {
    pub paths: Vec<PathBuf>,
    pub clients: crate::aws::Clients,
    pub store: crate::state::StateStore,
}

#[async_trait::async_trait]
impl Backend for Planner {
    async fn plan(&self) -> Result<(Plan, Vec<String>)> {
        let loaded = crate::manifest::load_paths(&self.paths);
        let diagnostics: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        let loaded = loaded.valid_subset();
        let plan = crate::apply::plan(&loaded, self.clients.clone(), &self.store).await?;
        Ok((plan, diagnostics))
    }

    async fn object(
        &self,
        region: Option<&str>,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        crate::aws::model_evaluation::get_object(&self.clients.in_region(region), bucket, key).await
    }
}

/// How old a plan a resource's page shows may be.
const PLAN_TTL: Duration = Duration::from_secs(10);
/// How old the plan the status page reads drift from may be before it is made again (in the
/// background: the page never waits for AWS).
const DRIFT_TTL: Duration = Duration::from_secs(30);
/// How long a manifest file's last commit and an evidence record are kept.
const COMMIT_TTL: Duration = Duration::from_secs(60);
const EVIDENCE_TTL: Duration = Duration::from_secs(60);
/// How long `git log` may take for one file.
const GIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A plan the pages showed, and when it was made.
#[derive(Clone)]
pub struct Planned {
    made: Instant,
    /// RFC 3339, as statuses write their times.
    pub at: String,
    pub result: std::result::Result<Arc<Plan>, String>,
}

/// What the pages keep between requests.
#[derive(Default)]
pub struct Caches {
    plan: Mutex<Option<Planned>>,
    planning: tokio::sync::Mutex<()>,
    drift_scheduled: AtomicBool,
    commits: Mutex<HashMap<PathBuf, (Instant, Option<String>)>>,
    evidence: Mutex<HashMap<(String, String), (Instant, page::EvidencePart)>>,
}

impl Caches {
    fn latest_plan(&self) -> Option<Planned> {
        self.plan.lock().expect("plan cache").clone()
    }

    /// A plan at most `max_age` old: the cached one, else made now (one at a time).
    async fn plan(&self, backend: &dyn Backend, max_age: Duration) -> Planned {
        let fresh = |p: &Option<Planned>| p.clone().filter(|p| p.made.elapsed() <= max_age);
        if let Some(planned) = fresh(&self.latest_plan()) {
            return planned;
        }
        let _one = self.planning.lock().await;
        if let Some(planned) = fresh(&self.latest_plan()) {
            return planned;
        }
        let result = backend
            .plan()
            .await
            .map(|(plan, _)| Arc::new(plan))
            .map_err(|e| e.to_string());
        let planned = Planned {
            made: Instant::now(),
            at: crate::state::now(),
            result,
        };
        *self.plan.lock().expect("plan cache") = Some(planned.clone());
        planned
    }

    /// Drift as the latest plan shows it; a plan older than [`DRIFT_TTL`] (or none) is made
    /// again in the background.
    fn drift(self: &Arc<Self>, backend: &Arc<dyn Backend>) -> page::Drift {
        let latest = self.latest_plan();
        if latest.as_ref().is_none_or(|p| p.made.elapsed() > DRIFT_TTL)
            && !self.drift_scheduled.swap(true, Ordering::SeqCst)
        {
            let caches = self.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                caches.plan(backend.as_ref(), DRIFT_TTL).await;
                caches.drift_scheduled.store(false, Ordering::SeqCst);
            });
        }
        match latest {
            None => page::Drift::NotKnown("a plan is being made; reload in a moment".into()),
            Some(Planned {
                result: Err(why), ..
            }) => page::Drift::NotKnown(format!("the last plan failed: {why}")),
            Some(Planned {
                at,
                result: Ok(plan),
                ..
            }) => {
                let mut pending: BTreeMap<ResourceId, usize> = BTreeMap::new();
                for action in &plan.actions {
                    *pending.entry(action.resource.clone()).or_default() += 1;
                }
                page::Drift::Known { at, pending }
            }
        }
    }

    /// Each file's last commit (`HASH\tSUBJECT`), when it is in a git work tree.
    async fn commits(&self, files: &[PathBuf]) -> HashMap<PathBuf, String> {
        let stale: Vec<PathBuf> = {
            let cache = self.commits.lock().expect("commit cache");
            files
                .iter()
                .filter(|f| {
                    cache
                        .get(*f)
                        .is_none_or(|(at, _)| at.elapsed() > COMMIT_TTL)
                })
                .cloned()
                .collect()
        };
        let looked_up = futures::future::join_all(stale.iter().map(|f| last_commit(f))).await;
        let mut cache = self.commits.lock().expect("commit cache");
        for (file, commit) in stale.into_iter().zip(looked_up) {
            cache.insert(file, (Instant::now(), commit));
        }
        files
            .iter()
            .filter_map(|f| Some((f.clone(), cache.get(f)?.1.clone()?)))
            .collect()
    }

    /// The evidence record `recorded` names, read at most every [`EVIDENCE_TTL`].
    async fn evidence(
        &self,
        backend: &dyn Backend,
        recorded: &evidence::Recorded,
    ) -> page::EvidencePart {
        let key = (recorded.bucket.clone(), recorded.evidence_key.clone());
        if let Some((at, part)) = self.evidence.lock().expect("evidence cache").get(&key) {
            if at.elapsed() <= EVIDENCE_TTL {
                return part.clone();
            }
        }
        let part = match backend
            .object(
                recorded.region.as_deref(),
                &recorded.bucket,
                &recorded.evidence_key,
            )
            .await
        {
            Ok(Some(body)) => evidence::parse(&body).map(|record| (recorded.clone(), record)),
            Ok(None) => Err(format!(
                "s3://{}/{} is not there",
                recorded.bucket, recorded.evidence_key
            )),
            Err(err) => Err(err.to_string()),
        };
        self.evidence
            .lock()
            .expect("evidence cache")
            .insert(key, (Instant::now(), part.clone()));
        part
    }
}

/// `git log -1 --format=%h%x09%s -- FILE` in the file's directory; `None` outside a git work
/// tree, for a file never committed, or without git.
async fn last_commit(file: &std::path::Path) -> Option<String> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = file.file_name()?;
    let run = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%h%x09%s", "--"])
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GIT_TIMEOUT, run).await.ok()?.ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

#[derive(Clone)]
pub struct HttpState {
    pub view: Arc<RwLock<View>>,
    pub metrics: Arc<Metrics>,
    pub backend: Arc<dyn Backend>,
    /// `--auth-token-file`'s token: every route but `/healthz` needs it.
    pub token: Option<Arc<Token>>,
    pub caches: Arc<Caches>,
}

impl HttpState {
    pub fn new(
        view: Arc<RwLock<View>>,
        metrics: Arc<Metrics>,
        backend: Arc<dyn Backend>,
        token: Option<Token>,
    ) -> HttpState {
        HttpState {
            view,
            metrics,
            backend,
            token: token.map(Arc::new),
            caches: Arc::new(Caches::default()),
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/resources/{kind}/{name}", get(detail))
        .route(
            "/evidence/{kind}/{name}/contact-sheet.png",
            get(contact_sheet),
        )
        .route("/evidence/{kind}/{name}/case/{file}", get(case_image))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_all))
        .route("/api/v1/status/{kind}/{name}", get(status_one))
        .route("/api/v1/plan", get(plan))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            state.token.clone(),
            auth::require_token,
        ))
        // Outermost: a write is refused before anything else looks at it.
        .layer(axum::middleware::from_fn(auth::only_reads))
        .with_state(state)
}

/// An HTML page with the headers every page has: nothing cached, no referrer (a `?token=`
/// never leaves), a Content-Security-Policy that allows this page's own images and styles and
/// its two inline image handlers, nothing else.
fn html_page(markup: maud::Markup) -> Response {
    static POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-hashes' {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            page::script_hashes()
        )
    });
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(policy) = HeaderValue::from_str(&POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

fn not_found(what: impl std::fmt::Display) -> Response {
    (StatusCode::NOT_FOUND, format!("not found: {what}\n")).into_response()
}

/// The status of KIND/NAME (the kind in any case).
fn find<'v>(view: &'v View, kind: &str, name: &str) -> Option<&'v ResourceStatus> {
    view.statuses
        .iter()
        .find(|(id, _)| id.kind.eq_ignore_ascii_case(kind) && id.name == name)
        .map(|(_, status)| status)
}

async fn index(State(state): State<HttpState>) -> Response {
    let mut files: Vec<PathBuf> = {
        let view = state.view.read().expect("view lock");
        view.declared.iter().map(|d| d.file.clone()).collect()
    };
    files.sort();
    files.dedup();
    let commits = state.caches.commits(&files).await;
    let drift = state.caches.drift(&state.backend);
    let view = state.view.read().expect("view lock");
    html_page(page::index(&page::Index {
        view: &view,
        commits: &commits,
        drift: &drift,
        now: SystemTime::now(),
    }))
}

async fn detail(
    State(state): State<HttpState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let (id, file, recorded) = {
        let view = state.view.read().expect("view lock");
        let Some(status) = find(&view, &kind, &name) else {
            return not_found(format!("{kind}/{name}"));
        };
        let id = status.id();
        let file = view
            .declared
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.file.clone());
        let recorded = (id.kind == crate::kinds::model_promotion::PROMOTION_KIND)
            .then(|| evidence::recorded(status));
        (id, file, recorded)
    };
    let commit = match &file {
        Some(file) => state
            .caches
            .commits(std::slice::from_ref(file))
            .await
            .remove(file),
        None => None,
    };
    let plan = match &file {
        Some(_) => {
            let planned = state.caches.plan(state.backend.as_ref(), PLAN_TTL).await;
            match planned.result {
                Ok(plan) => {
                    let mut text = String::new();
                    for action in plan.actions.iter().filter(|a| a.resource == id) {
                        crate::cli::render::action_lines(&mut text, action, Some(""));
                    }
                    page::PlanPart::Lines {
                        at: planned.at,
                        text,
                    }
                }
                Err(why) => page::PlanPart::Failed(why),
            }
        }
        None => page::PlanPart::NotDeclared,
    };
    let evidence = match recorded {
        Some(Ok(recorded)) => Some(
            state
                .caches
                .evidence(state.backend.as_ref(), &recorded)
                .await,
        ),
        Some(Err(why)) => Some(Err(why)),
        None => None,
    };
    let view = state.view.read().expect("view lock");
    let Some(status) = view.statuses.get(&id) else {
        return not_found(&id);
    };
    html_page(page::detail(&page::Detail {
        view: &view,
        status,
        commit: commit.as_deref(),
        plan,
        evidence,
        now: SystemTime::now(),
    }))
}

/// What the status of KIND/NAME recorded of its evidence, or why there is none (a 404).
fn recorded_evidence(
    state: &HttpState,
    kind: &str,
    name: &str,
) -> std::result::Result<evidence::Recorded, String> {
    let view = state.view.read().expect("view lock");
    let status = find(&view, kind, name).ok_or_else(|| format!("{kind}/{name}"))?;
    evidence::recorded(status)
}

/// A PNG of the bundle, by the key the status (or its record) named.
async fn png(state: &HttpState, recorded: &evidence::Recorded, key: &str) -> Response {
    match state
        .backend
        .object(recorded.region.as_deref(), &recorded.bucket, key)
        .await
    {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => not_found(format!("s3://{}/{key}", recorded.bucket)),
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            format!("reading s3://{}/{key} failed: {err}\n", recorded.bucket),
        )
            .into_response(),
    }
}

async fn contact_sheet(
    State(state): State<HttpState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let recorded = match recorded_evidence(&state, &kind, &name) {
        Ok(recorded) => recorded,
        Err(why) => return not_found(why),
    };
    match &recorded.contact_sheet {
        Some(key) => png(&state, &recorded, key).await,
        None => not_found("no contact sheet recorded"),
    }
}

async fn case_image(
    State(state): State<HttpState>,
    Path((kind, name, file)): Path<(String, String, String)>,
) -> Response {
    let Some(index) = evidence::case_index(&file) else {
        return not_found("a case image is case/N.png");
    };
    let recorded = match recorded_evidence(&state, &kind, &name) {
        Ok(recorded) => recorded,
        Err(why) => return not_found(why),
    };
    let record = match state
        .caches
        .evidence(state.backend.as_ref(), &recorded)
        .await
    {
        Ok((_, record)) => record,
        Err(why) => return not_found(why),
    };
    match evidence::case_key(&recorded, &record, index) {
        Some(key) => png(&state, &recorded, key).await,
        None => not_found(format!("case {index} has no image in the evidence")),
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let view = state.view.read().expect("view lock");
    match (view.role, view.synced) {
        (Role::Leader, true) => (StatusCode::OK, "ready: leader, synced\n").into_response(),
        (Role::Standby, _) => (StatusCode::OK, "ready: standby\n").into_response(),
        (Role::Leader, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: first pass running\n",
        )
            .into_response(),
        (Role::Starting, _) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n").into_response()
        }
        (Role::ShuttingDown, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn status_all(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let view = state.view.read().expect("view lock");
    Json(serde_json::json!({
        "daemon": &*view,
        "resources": view.statuses.values().collect::<Vec<_>>(),
    }))
}

/// `sdop plan -o json` of the watched paths, as this daemon sees AWS and the state now.
async fn plan(State(state): State<HttpState>) -> Response {
    match state.backend.plan().await {
        Ok((plan, diagnostics)) => {
            let mut body = plan.to_json();
            body["diagnostics"] = serde_json::json!(diagnostics);
            Json(body).into_response()
        }
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("plan failed: {err}\n"),
        )
            .into_response(),
    }
}

async fn status_one(
    State(state): State<HttpState>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    let view = state.view.read().expect("view lock");
    match find(&view, &kind, &name) {
        Some(status) => Json(status).into_response(),
        None => not_found(format!("{kind}/{name}")),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
