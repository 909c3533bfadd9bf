//! sdop's core: what a resource is, its kinds, its manifests, and the engine that decides and
//! acts through one seam. No AWS SDK: the AWS side (`sdop-aws`) implements the seam, and the
//! `sdop` crate puts the command line and the daemon on top; the compiler keeps each crate to
//! what it depends on.
//!
//! Layout, bottom-up (each layer uses only those below it; `layers` below checks it):
//! - [`model`]: resource identity, desired and observed AWS objects, outputs, names, phases, and
//!   AWS's own rules for the values sent ([`model::aws_rules`], from AWS's API models).
//! - [`kinds`]: one file per resource kind, each implementing [`kinds::Kind`]; [`state`]: status.
//! - [`manifest`]: reading YAML from disk into typed, validated manifests and their graph.
//! - [`engine`]: the pure decision, the one executor and the seam it acts through.
//! - [`contract`]: the all-in-one-ai containers' contract; [`cost`]: prices; [`rules`]: field
//!   rules; [`diagnostics`]: positions and messages; [`schema`]: the JSON Schema of manifests.
//! - [`error`]: the one error type and its retry classification.
//! - [`unique_keys`]: a serde wrapper refusing repeated YAML keys (a leaf: uses nothing of sdop).

pub mod contract;
pub mod cost;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod kinds;
pub mod manifest;
pub mod model;
pub mod rules;
pub mod schema;
pub mod state;
pub mod unique_keys;

pub use error::{Error, ErrorClass};

#[cfg(test)]
mod layers {
    //! The layers inside this crate, checked: each module uses only those below it
    //! (docs/architecture.md). `model` → `kinds`, `state` → `manifest` → `engine`. The crates
    //! above (`sdop-aws`, `sdop`) are kept out by the compiler: this crate does not depend on
    //! them.

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
