//! `sdop run`: the long-running daemon. It watches manifest directories, reconciles what
//! changed (and what depends on it) at once, follows what is in progress with adaptive polls,
//! resyncs everything periodically to correct drift, and can be operated: HTTP health, metrics
//! and status, structured logs, leader election, webhooks, clean shutdown.
//!
//! - [`controller`]: the control loop and the one requeue/error policy (`next_run`).
//! - [`worker`]: one reconcile pass of one resource (the engine's, as `sdop apply` runs it).
//! - [`desired`]: last-good specs across bad edits, and what a reload changed (pure).
//! - [`queue`]: one pass per resource at a time, a global limit, per-resource backoff (pure).
//! - [`poll`]: adaptive polling of what is in progress (pure).
//! - [`watch`]: notify + debouncer over the manifest paths.
//! - [`lease`]: S3 lease leader election; [`http`]: the listener; [`auth`]: its safety (reads
//!   only, a token off loopback); [`page`]: the status page; [`evidence`]: which S3 objects it
//!   may show; [`metrics`]; [`notifications`].

pub mod auth;
pub mod controller;
pub mod desired;
pub mod evidence;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod notifications;
pub mod page;
pub mod poll;
pub mod queue;
pub mod shared_state;
pub mod watch;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::aws::transport::{CallObserver, MutationGate, Transport};
use crate::aws::{Clients, Connection};
use crate::engine::execute::Mode;
use crate::error::{Error, Result};
use crate::state::StateLocation;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub paths: Vec<PathBuf>,
    pub connection: Connection,
    pub state: StateLocation,
    /// This host's state directory: where the daemon says it listens (`daemon.json`), with a
    /// shared state too.
    pub local_dir: PathBuf,
    pub listen: SocketAddr,
    /// The listener's bearer token file: required off loopback.
    pub auth_token_file: Option<PathBuf>,
    pub prune: bool,
    pub force: bool,
    pub resync: Duration,
    pub concurrency: usize,
    pub debounce: Duration,
    pub lease: Option<String>,
    pub lease_ttl: Duration,
    pub lease_renew: Duration,
    pub webhook: Option<String>,
    /// The webhook's HMAC secret, read at start (an unreadable or empty file stops it).
    pub webhook_secret_file: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    /// Read everything and report drift in the status, change nothing (no pruning either).
    pub observe_only: bool,
}

/// Where a running daemon says it listens, for `sdop get`.
pub const DAEMON_FILE: &str = "daemon.json";

/// This daemon's identity: host, pid and a random suffix.
fn holder_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Runs the daemon until SIGTERM or SIGINT; returns after a clean shutdown.
pub async fn run(options: RunOptions) -> Result<()> {
    let holder = holder_identity();
    let token = auth::check_listen(options.listen, options.auth_token_file.as_deref())?;
    if let Some(url) = &options.webhook {
        notifications::check_url(url)?;
    }
    let webhook_secret = options
        .webhook_secret_file
        .as_deref()
        .map(notifications::read_secret)
        .transpose()?;
    let store = shared_state::open(&options.state, &options.connection)?;
    // The daemon is the state's one writer while it runs: an apply beside it waits, then
    // refuses, naming it. A state directory has its file lock; a shared state's lock is its
    // lease, which the daemons elect their leader with.
    let _writer = match store.dir() {
        Some(_) => Some(store.lock(
            &format!("sdop run (pid {}, {holder})", std::process::id()),
            std::time::Duration::ZERO,
            &|_| {},
        )?),
        None => None,
    };
    let lease_uri = match (shared_state::of(&store), &options.lease) {
        (Some(shared), Some(uri)) if *uri != shared.location().lease_uri() => {
            return Err(Error::Terminal(format!(
                "--lease {uri}: a shared state's daemons elect their leader with its own lease, {}; drop --lease",
                shared.location().lease_uri()
            )))
        }
        (Some(shared), _) => Some(shared.location().lease_uri()),
        (None, lease) => lease.clone(),
    };
    let lease = match &lease_uri {
        Some(uri) => Some(lease::LeaseConfig::new(
            uri,
            options.lease_ttl,
            options.lease_renew,
            holder.clone(),
        )?),
        None => None,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let gate = lease
        .as_ref()
        .map(|_| Arc::new(lease::LeaderGate::default()));
    if let (Some(shared), Some(gate)) = (shared_state::of(&store), &gate) {
        // Only the leader writes the shared state.
        shared.write_while(gate.clone());
    }
    // A standby on a shared state shows what the leader records, read this often.
    let refresh_standby = shared_state::of(&store).map(|_| options.lease_renew);
    let transport = Transport::new(
        gate.clone().map(|g| g as Arc<dyn MutationGate>),
        Some(metrics.clone() as Arc<dyn CallObserver>),
    );
    let clients = Clients::connect_through(&options.connection, Some(&transport)).await?;

    let view = Arc::new(RwLock::new(http::View::new(
        holder.clone(),
        options
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    )));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| listen_error(options.listen, e))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listen address", e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router = http::router(http::HttpState::new(
        view.clone(),
        metrics.clone(),
        Arc::new(http::Planner {
            paths: options.paths.clone(),
            clients: clients.clone(),
            store: store.clone(),
        }),
        token,
    ));
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
    });
    std::fs::create_dir_all(&options.local_dir)
        .map_err(|e| Error::io(format!("creating {}", options.local_dir.display()), e))?;
    write_daemon_file(
        &options.local_dir,
        address,
        options.auth_token_file.as_deref(),
    )?;
    tracing::info!(listen = %address, holder = %holder, paths = ?options.paths, "sdop daemon started");

    let (leader_tx, leader_rx) = tokio::sync::watch::channel(gate.is_none());
    // The elector stops only after the controller has shut down: passes finishing within the
    // bound, and the aborts of interrupted uploads, still need the lease.
    let (elector_stop, elector_stopped) = tokio::sync::watch::channel(false);
    let elector = match (lease, &gate) {
        (Some(config), Some(gate)) => {
            // The lease itself goes through its own, ungated clients.
            let lease_clients = Clients::connect(&options.connection).await?;
            Some(tokio::spawn(lease::run(
                lease_clients.s3,
                config,
                gate.clone(),
                leader_tx,
                elector_stopped,
            )))
        }
        _ => None,
    };

    let (watcher, files) = watch::Watcher::start(&options.paths, options.debounce)?;
    let webhook = options
        .webhook
        .clone()
        .map(|url| notifications::Webhook::start(url, webhook_secret));
    if options.observe_only {
        tracing::info!(
            "observe-only: every resource is read and its drift reported; nothing is changed"
        );
    }
    let ctx = Arc::new(worker::WorkerContext {
        cloud: crate::apply::cloud::AwsCloud::new(clients.clone()),
        clients,
        store,
        metrics,
        mode: if options.observe_only {
            Mode::Observe
        } else {
            Mode::Apply
        },
    });
    let controller = controller::Controller::new(
        controller::Settings {
            paths: options.paths.clone(),
            concurrency: options.concurrency.max(1),
            resync: options.resync,
            prune: options.prune,
            force: options.force,
            shutdown_timeout: options.shutdown_timeout,
            holder,
            refresh_standby,
        },
        ctx,
        view,
        gate,
        webhook,
    )?;
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        let _ = stop_tx.send(true);
    });
    controller.run(files, watcher, leader_rx, stop_rx).await;
    let _ = elector_stop.send(true);
    if let Some(elector) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    signals.abort();
    let _ = std::fs::remove_file(options.local_dir.join(DAEMON_FILE));
    tracing::info!("sdop daemon stopped");
    Ok(())
}

/// Why `--listen` failed, and what to do about the common case.
fn listen_error(address: SocketAddr, err: std::io::Error) -> Error {
    if err.kind() == std::io::ErrorKind::AddrInUse {
        Error::Terminal(format!(
            "cannot listen on {address}: address already in use (another sdop run, or another \
             program): stop it, or pass --listen with a free address (port 0 picks one)"
        ))
    } else {
        Error::io(format!("listening on {address}"), err)
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `daemon.json`: where this daemon listens and, with a token, the token's file (its path,
/// never its content), so `sdop get` can authenticate when that file is readable to it.
fn write_daemon_file(
    state_dir: &Path,
    address: SocketAddr,
    token_file: Option<&Path>,
) -> Result<()> {
    let mut body = serde_json::json!({
        "url": format!("http://{address}"),
        "pid": std::process::id(),
    });
    if let Some(file) = token_file {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        body["authTokenFile"] = serde_json::json!(file.display().to_string());
    }
    let path = state_dir.join(DAEMON_FILE);
    let tmp = state_dir.join(format!(".{DAEMON_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, body.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The URL of the daemon using `state_dir`, if one says it runs, with its token file if it
/// has one.
pub fn daemon_url(state_dir: &Path) -> Option<(String, Option<PathBuf>)> {
    let text = std::fs::read_to_string(state_dir.join(DAEMON_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = value["url"].as_str()?.to_string();
    Some((url, value["authTokenFile"].as_str().map(PathBuf::from)))
}
