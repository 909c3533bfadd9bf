//! sdop: a declarative operator for Stable Diffusion deployments on AWS.
//!
//! Layout, bottom-up (each layer uses only those below it; `layers` below checks it):
//! - [`model`]: resource identity, desired and observed AWS objects, outputs, names, phases.
//! - [`kinds`]: one file per resource kind, each implementing [`kinds::Kind`]; [`state`]: status.
//! - [`manifest`]: reading YAML from disk into typed, validated manifests and their graph.
//! - [`engine`]: the pure decision, the one executor and the seam it acts through.
//! - [`aws`]: one adapter per AWS object type.
//! - [`apply`]: one-shot convergence (`sdop apply`, `sdop plan`); [`daemon`]: `sdop run`.
//! - [`cli`]: the `sdop` command line (thin wrapper over the library).
//! - [`error`]: the one error type and its retry classification.
//! - [`unique_keys`]: a serde wrapper refusing repeated YAML keys (a leaf: uses nothing of sdop).

pub mod apply;
pub mod aws;
pub mod cli;
pub mod contract;
pub mod cost;
pub mod daemon;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod kinds;
pub mod manifest;
pub mod model;
pub mod package;
pub mod rules;
pub mod schema;
pub mod state;
pub mod unique_keys;

pub use error::{Error, ErrorClass};

/// mimalloc instead of the system allocator, for every binary of the crate (sdop, the
/// benches, the tests): loading and planning make many small short-lived allocations, and
/// glibc's malloc/free took about 40% of the planner's CPU time (README "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod layers {
    //! The layers, checked: each module uses only those below it (README "Architecture").
    //! `model` → `kinds`, `state` → `manifest` → `engine` → `aws` → `apply` → `daemon` → `cli`.

    /// (directory or file under src/, modules it must not use)
    const RULES: &[(&str, &[&str])] = &[
        (
            "model",
            &[
                "kinds", "state", "manifest", "engine", "aws", "apply", "daemon", "cli", "contract",
            ],
        ),
        (
            "kinds",
            &[
                "state", "manifest", "engine", "aws", "apply", "daemon", "cli",
            ],
        ),
        (
            "contract",
            &[
                "state", "manifest", "engine", "aws", "apply", "daemon", "cli",
            ],
        ),
        (
            "state.rs",
            &["manifest", "engine", "aws", "apply", "daemon", "cli"],
        ),
        (
            "manifest",
            &["state", "engine", "aws", "apply", "daemon", "cli"],
        ),
        ("engine", &["aws", "apply", "daemon", "cli"]),
        ("aws", &["apply", "daemon", "cli"]),
        ("apply", &["daemon", "cli"]),
        ("daemon", &["cli"]),
        (
            "unique_keys.rs",
            &[
                "model", "kinds", "state", "manifest", "engine", "aws", "apply", "daemon", "cli",
            ],
        ),
    ];

    fn sources(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap().flatten() {
                sources(&entry.path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    #[test]
    fn no_module_uses_a_layer_above_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut problems = Vec::new();
        for (layer, forbidden) in RULES {
            let mut files = Vec::new();
            sources(&src.join(layer), &mut files);
            assert!(!files.is_empty(), "no sources for {layer}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                // Test modules (last in a file) may use anything: a kind's tests load manifests.
                let body = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (n, line) in body.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    for module in *forbidden {
                        if code.contains(&format!("crate::{module}::"))
                            || code.contains(&format!("crate::{module};"))
                            || code.contains(&format!("crate::{module}::{{"))
                        {
                            problems.push(format!(
                                "{}:{}: {layer} uses {module}",
                                file.display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
