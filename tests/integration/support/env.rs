//! A test's manifests, state directory and local AWS, and the library's apply and plan over
//! them (shared by the apply and liveness tests).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sdop::apply::{apply, ApplyOptions, ApplySummary};
use sdop::aws::Clients;
use sdop::manifest::{load_paths, ResourceId};
use sdop::state::{Phase, StateStore};
use serde_json::json;

use super::local_aws::LocalAws;

pub struct Env {
    pub aws: LocalAws,
    pub manifests: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let aws = LocalAws::start();
        aws.configure(json!({
            "endpoint_create_seconds": 0.3, "endpoint_update_seconds": 0.3, "endpoint_delete_seconds": 0.2,
            "training_seconds": 0.5, "stack_seconds": 0.3
        }));
        Env {
            aws,
            manifests: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.manifests.path().join(file), text).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifests.path().join(file)).unwrap();
    }

    pub async fn clients(&self) -> Clients {
        Clients::from_config(
            &self.aws.sdk_config().await,
            Some(self.aws.endpoint.clone()),
        )
    }

    pub fn store(&self) -> StateStore {
        StateStore::open(self.state.path()).unwrap()
    }

    pub async fn apply_with(
        &self,
        options: ApplyOptions,
    ) -> (Result<ApplySummary, sdop::Error>, Vec<String>) {
        let loaded = load_paths(&[PathBuf::from(self.manifests.path())]);
        let lines = Mutex::new(Vec::new());
        let report = |line: String| lines.lock().unwrap().push(line);
        let clients = self.clients().await;
        let result = if loaded.is_valid() {
            apply(&loaded, &clients, &self.store(), &options, &report).await
        } else {
            // An invalid set is neither applied nor pruned here (the CLI applies its valid
            // subset without pruning; tests/integration/cli.rs covers that).
            Err(sdop::Error::Invalid(loaded.diagnostics))
        };
        (result, lines.into_inner().unwrap())
    }

    pub async fn apply(&self) -> (ApplySummary, Vec<String>) {
        let options = ApplyOptions {
            wait: true,
            timeout: Duration::from_secs(60),
            min_poll: Duration::from_millis(100),
            max_poll: Duration::from_millis(500),
            ..ApplyOptions::default()
        };
        let (result, lines) = self.apply_with(options).await;
        (
            result.unwrap_or_else(|e| panic!("apply failed: {e}\n{lines:#?}")),
            lines,
        )
    }

    pub async fn plan(&self) -> sdop::engine::Plan {
        let loaded = load_paths(&[PathBuf::from(self.manifests.path())]);
        sdop::apply::plan(&loaded, self.clients().await, &self.store())
            .await
            .unwrap()
    }

    pub fn phase(&self, kind: &str, name: &str) -> Phase {
        self.store()
            .load(&ResourceId::new(kind, name))
            .unwrap()
            .expect("status")
            .phase
    }
}
