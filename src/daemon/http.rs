//! The daemon's HTTP listener (axum): `/healthz`, `/readyz`, `/metrics`, and a JSON status API
//! (`/api/v1/status`, `/api/v1/status/{kind}/{name}`) that `sdop get` reads, and
//! `/api/v1/plan`: what an apply of the watched manifests would do now, read-only (a standby
//! serves it too: it only reads AWS and the state).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::metrics::Metrics;
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
        }
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub view: Arc<RwLock<View>>,
    pub metrics: Arc<Metrics>,
    pub planner: Arc<Planner>,
}

/// What `/api/v1/plan` plans with: the manifests on disk, the daemon's clients and state.
pub struct Planner {
    pub paths: Vec<std::path::PathBuf>,
    pub clients: crate::aws::Clients,
    pub store: crate::state::StateStore,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status_all))
        .route("/api/v1/status/{kind}/{name}", get(status_one))
        .route("/api/v1/plan", get(plan))
        .with_state(state)
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
    let planner = &state.planner;
    let loaded = crate::manifest::load_paths(&planner.paths);
    let diagnostics: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    let loaded = loaded.valid_subset();
    match crate::apply::plan(&loaded, planner.clients.clone(), &planner.store).await {
        Ok(plan) => {
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
    match view
        .statuses
        .iter()
        .find(|(id, _)| id.kind.eq_ignore_ascii_case(&kind) && id.name == name)
    {
        Some((_, status)) => Json(status).into_response(),
        None => (StatusCode::NOT_FOUND, format!("not found: {kind}/{name}\n")).into_response(),
    }
}
