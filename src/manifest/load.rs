//! Loading manifests: read files with limits, split documents, parse the envelope, parse the
//! typed spec, run field rules, detect duplicates, build the graph. Every problem becomes a
//! [`Diagnostic`]; nothing stops at the first one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, Position};
use crate::engine::graph::{self, Graph};
use crate::engine::naming::content_hash;
use crate::kinds::{self, Checks};

use super::document::{self, Document};
use super::{discover, Manifest, Metadata, Origin, ResourceId, API_VERSION};

/// Largest manifest file sdop reads. Real manifests are kilobytes; this bounds time and memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Everything read from the given paths.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Manifests that parsed and passed their field rules.
    pub manifests: Vec<Manifest>,
    pub diagnostics: Vec<Diagnostic>,
    /// Files with any problem. Their resources must never be read as deleted (no pruning).
    pub failed_files: Vec<PathBuf>,
    pub graph: Graph,
}

impl Loaded {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// Reads every manifest under `paths` (files, or directories recursively).
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let (files, mut diagnostics) = discover::manifest_files(paths);
    let mut manifests = Vec::new();
    for file in &files {
        match read_text(file) {
            Ok(text) => load_text(file, &text, &mut manifests, &mut diagnostics),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    finish(manifests, diagnostics)
}

/// Loads manifests from a string, as if read from `file` (tests, benches, stdin).
pub fn load_str(file: impl AsRef<Path>, text: &str) -> Loaded {
    let mut manifests = Vec::new();
    let mut diagnostics = Vec::new();
    load_text(file.as_ref(), text, &mut manifests, &mut diagnostics);
    finish(manifests, diagnostics)
}

fn finish(manifests: Vec<Manifest>, mut diagnostics: Vec<Diagnostic>) -> Loaded {
    let manifests = drop_duplicates(manifests, &mut diagnostics);
    let (graph, graph_problems) = graph::build(&manifests);
    diagnostics.extend(graph_problems);
    diagnostics.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
    let mut failed_files: Vec<PathBuf> = diagnostics.iter().map(|d| d.file.clone()).collect();
    failed_files.sort();
    failed_files.dedup();
    Loaded {
        manifests,
        diagnostics,
        failed_files,
        graph,
    }
}

fn file_problem(file: &Path, position: Position, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        position,
        resource: None,
        message,
    }
}

/// Reads a file as UTF-8 text, refusing huge, binary and non-UTF-8 files.
fn read_text(file: &Path) -> Result<String, Diagnostic> {
    let at_start = Position { line: 1, column: 1 };
    let size = std::fs::metadata(file)
        .map_err(|e| file_problem(file, Position::default(), format!("cannot read: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(file_problem(
            file,
            at_start,
            format!(
                "file is {:.1} MiB; manifest files are limited to {} MiB",
                size as f64 / (1024.0 * 1024.0),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    let bytes = std::fs::read(file)
        .map_err(|e| file_problem(file, Position::default(), format!("cannot read: {e}")))?;
    text_from_bytes(bytes).map_err(|(position, message)| file_problem(file, position, message))
}

fn text_from_bytes(bytes: Vec<u8>) -> Result<String, (Position, String)> {
    let position_of = |bytes: &[u8], offset: usize| {
        let before = &bytes[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        Position {
            line,
            column: offset - line_start + 1,
        }
    };
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err((
            position_of(&bytes, offset),
            "binary file (contains NUL bytes), not a YAML manifest".to_string(),
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        (
            position_of(err.as_bytes(), offset),
            "file is not valid UTF-8".to_string(),
        )
    })
}

/// The envelope, parsed strictly before the kind-specific spec.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    metadata: Metadata,
    #[allow(dead_code)]
    spec: IgnoredAny,
}

/// Best-effort identity of a document whose envelope failed, to name it in messages.
#[derive(Deserialize)]
struct Identity {
    kind: Option<String>,
    metadata: Option<IdentityMetadata>,
}

#[derive(Deserialize)]
struct IdentityMetadata {
    name: Option<String>,
}

fn identity_of(text: &str) -> Option<String> {
    let ident: Identity = yaml_serde::from_str(text).ok()?;
    let name = ident.metadata.and_then(|m| m.name);
    match (ident.kind, name) {
        (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
        (Some(kind), None) => Some(kind),
        _ => None,
    }
}

fn load_text(file: &Path, text: &str, out: &mut Vec<Manifest>, diagnostics: &mut Vec<Diagnostic>) {
    let (documents, syntax_error) = document::split(text);
    if let Some(err) = syntax_error {
        diagnostics.push(file_problem(
            file,
            err.position,
            format!("YAML syntax error: {}", err.message),
        ));
    }
    for doc in documents {
        if doc.has_content {
            load_document(file, doc, out, diagnostics);
        }
    }
}

fn load_document(
    file: &Path,
    doc: Document<'_>,
    out: &mut Vec<Manifest>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let spans = Arc::new(doc.spans);
    let origin = Origin {
        file: file.to_path_buf(),
        document: doc.start,
        spans,
    };
    let yaml_problem = |err: &yaml_serde::Error, resource: Option<String>| Diagnostic {
        file: file.to_path_buf(),
        position: err
            .location()
            .map(|l| Position {
                line: doc.first_line - 1 + l.line(),
                column: l.column(),
            })
            .unwrap_or(doc.start),
        resource,
        message: clean_yaml_message(&err.to_string()),
    };
    let envelope: Envelope = match yaml_serde::from_str(doc.text) {
        Ok(envelope) => envelope,
        Err(err) => {
            diagnostics.push(yaml_problem(&err, identity_of(doc.text)));
            return;
        }
    };
    let id = ResourceId::new(envelope.kind.clone(), envelope.metadata.name.clone());
    let at = |path: &str, message: String| Diagnostic {
        file: file.to_path_buf(),
        position: origin.position_of(path),
        resource: Some(id.to_string()),
        message,
    };
    let mut envelope_ok = true;
    if envelope.api_version != API_VERSION {
        diagnostics.push(at(
            "apiVersion",
            format!(
                "unsupported apiVersion {:?} (expected {API_VERSION})",
                envelope.api_version
            ),
        ));
        envelope_ok = false;
    }
    if let Err(message) = crate::rules::resource_name(&envelope.metadata.name) {
        diagnostics.push(at("metadata.name", message));
        envelope_ok = false;
    }
    let Some(handler) = kinds::handler(&envelope.kind) else {
        diagnostics.push(at(
            "kind",
            format!(
                "unknown kind {:?} (known kinds: {})",
                envelope.kind,
                kinds::kind_names().join(", ")
            ),
        ));
        return;
    };
    let spec = match handler.parse(doc.text) {
        Ok(spec) => spec,
        Err(err) => {
            diagnostics.push(yaml_problem(&err, Some(id.to_string())));
            return;
        }
    };
    let mut checks = Checks::default();
    handler.check(spec.as_ref(), &mut checks);
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut local_files = std::collections::BTreeMap::new();
    for (path, written) in handler.local_paths(spec.as_ref()) {
        match super::local::inspect(base_dir, &written) {
            Ok(found) => {
                local_files.insert(written, found);
            }
            Err(message) => checks.error(path, message),
        }
    }
    if !checks.problems.is_empty() || !envelope_ok {
        for (path, message) in checks.problems {
            diagnostics.push(at(&path, message));
        }
        return;
    }
    let spec_json = handler.to_json(spec.as_ref());
    let spec_hash = content_hash(&spec_json);
    out.push(Manifest {
        id,
        metadata: envelope.metadata,
        handler,
        spec,
        spec_json,
        spec_hash,
        origin,
        local_files,
    });
}

/// Reports every duplicate `Kind/name` (naming both files) and keeps none of them: which one
/// is meant is ambiguous.
fn drop_duplicates(manifests: Vec<Manifest>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Manifest> {
    let mut seen: HashMap<ResourceId, Vec<usize>> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        seen.entry(m.id.clone()).or_default().push(i);
    }
    let mut dropped = vec![false; manifests.len()];
    for indices in seen.values().filter(|v| v.len() > 1) {
        for &i in indices {
            dropped[i] = true;
            let m = &manifests[i];
            let others: Vec<String> = indices
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| {
                    let o = &manifests[j];
                    let p = o.origin.position_of("metadata.name");
                    format!("{}:{}:{}", o.origin.file.display(), p.line, p.column)
                })
                .collect();
            diagnostics.push(Diagnostic {
                file: m.origin.file.clone(),
                position: m.origin.position_of("metadata.name"),
                resource: Some(m.id.to_string()),
                message: format!("duplicate {}: also defined at {}", m.id, others.join(", ")),
            });
        }
    }
    manifests
        .into_iter()
        .zip(dropped)
        .filter_map(|(m, dropped)| (!dropped).then_some(m))
        .collect()
}

/// Removes yaml_serde's " at line N column M" / " at position N" (the diagnostic has the
/// position already) and makes the envelope's type errors readable.
fn clean_yaml_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        let skip = position_phrase_len(tail);
        if skip == 0 {
            out.push_str(" at ");
            rest = tail;
        } else {
            rest = &tail[skip..];
        }
    }
    out.push_str(rest);
    out.replace(
        "struct Envelope",
        "a manifest (a mapping with apiVersion, kind, metadata, spec)",
    )
    .replace(
        "struct TypedDocument",
        "a manifest (a mapping with apiVersion, kind, metadata, spec)",
    )
}

fn position_phrase_len(tail: &str) -> usize {
    let digits = |s: &str| s.chars().take_while(|c| c.is_ascii_digit()).count();
    if let Some(r) = tail.strip_prefix("line ") {
        let n = digits(r);
        if n > 0 {
            if let Some(r2) = r[n..].strip_prefix(" column ") {
                let m = digits(r2);
                if m > 0 {
                    return 5 + n + 8 + m;
                }
            }
        }
    } else if let Some(r) = tail.strip_prefix("position ") {
        let n = digits(r);
        if n > 0 {
            return 9 + n;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_positions_from_messages() {
        assert_eq!(
            clean_yaml_message("spec: unknown field `x`, expected `a` at line 3 column 5"),
            "spec: unknown field `x`, expected `a`"
        );
        assert_eq!(
            clean_yaml_message("did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1"),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(clean_yaml_message("look at this"), "look at this");
    }

    #[test]
    fn binary_and_non_utf8_are_rejected_with_position() {
        let (pos, msg) = text_from_bytes(b"a: 1\nb: \0".to_vec()).unwrap_err();
        assert_eq!((pos.line, pos.column), (2, 4));
        assert!(msg.contains("binary"));
        let (pos, msg) = text_from_bytes(b"a: 1\nb: \xff".to_vec()).unwrap_err();
        assert_eq!((pos.line, pos.column), (2, 4));
        assert!(msg.contains("UTF-8"));
    }
}
