//! Manifests: the Kubernetes-shaped YAML documents users commit, read from disk into typed specs.
//!
//! - [`discover`]: which files a path argument means.
//! - [`document`]: splitting a file into YAML documents, with a span index for precise positions.
//! - [`load`]: reading, parsing and validating everything, collecting every diagnostic at once.

pub mod discover;
pub mod document;
pub mod graph;
pub mod load;
pub mod local;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostics::Position;
use crate::kinds::KindHandler;

pub use crate::model::resource::{Metadata, ResourceId};
pub use load::{load_paths, Loaded};

/// The only apiVersion this build understands.
pub const API_VERSION: &str = "sdop/v1alpha1";

/// Where a manifest came from, and how to map a spec path to a position in its file.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    /// Position of the document's first line.
    pub document: Position,
    pub spans: Arc<document::Spans>,
}

impl Origin {
    /// Position of a dotted path such as `spec.sources[0].s3`, or of its nearest ancestor.
    pub fn position_of(&self, path: &str) -> Position {
        self.spans.position_of(path).unwrap_or(self.document)
    }
}

/// A parsed, field-validated manifest. The typed spec is held behind its kind's handler.
#[derive(Clone)]
pub struct Manifest {
    pub id: ResourceId,
    pub metadata: Metadata,
    pub handler: &'static dyn KindHandler,
    pub spec: Arc<dyn Any + Send + Sync>,
    /// Content hash of the spec's canonical JSON ([`Manifest::spec_json`]): the identity of
    /// this desired state.
    pub spec_hash: String,
    /// Buckets of the `s3://` URIs anywhere in the spec (their owners are dependencies).
    pub s3_buckets: Vec<String>,
    /// SSM parameters the spec reads (`{valueFrom: {ssmParameter: NAME}}` anywhere in it).
    pub ssm_parameters: std::collections::BTreeSet<String>,
    pub origin: Origin,
    /// Local files the spec names, by the path as written.
    pub local_files: BTreeMap<String, local::LocalFile>,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("id", &self.id)
            .field("spec", &self.spec_json())
            .field("file", &self.origin.file)
            .finish()
    }
}

impl Manifest {
    /// The spec as canonical JSON (serialized from the typed spec, defaults applied), made
    /// when asked: a manifest keeps only what was read off it at load.
    pub fn spec_json(&self) -> serde_json::Value {
        self.handler.to_json(self.spec.as_ref())
    }

    /// What a remembered failure is tied to: the spec and the content of every local file it
    /// reads (a template in the checkout, a dataset's files, a checkpoint). A terminal failure
    /// is retried when this changes, so fixing a template on disk retries the stack as an edit
    /// of its manifest does. Small files count by their MD5, large ones (checkpoints, which
    /// are not read to fingerprint them) by their size: never by modification time, which a
    /// fresh clone or a sync changes without any fix.
    pub fn failure_key(&self) -> String {
        if self.local_files.is_empty() {
            return self.spec_hash.clone();
        }
        let content = |md5: &Option<String>, size: u64| match md5 {
            Some(md5) => md5.clone(),
            None => format!("{size} bytes"),
        };
        let files: Vec<(&String, Vec<(String, String)>)> = self
            .local_files
            .iter()
            .map(|(path, file)| {
                let parts = if file.is_dir {
                    file.entries
                        .iter()
                        .map(|e| (e.path.clone(), content(&e.content_md5, e.size)))
                        .collect()
                } else {
                    vec![(String::new(), content(&file.content_md5, file.size))]
                };
                (path, parts)
            })
            .collect();
        crate::model::naming::content_hash(&(&self.spec_hash, files))
    }

    /// The typed spec, for code that knows the kind (kind files and tests).
    pub fn spec_as<S: 'static>(&self) -> Option<&S> {
        self.spec.downcast_ref::<S>()
    }
}
