//! Loading manifests: read files with limits, split documents, parse the envelope, parse the
//! typed spec, run field rules, detect duplicates, build the graph. Every problem becomes a
//! [`Diagnostic`]; nothing stops at the first one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::diagnostics::{Diagnostic, Position};
use crate::kinds::{self, Checks};
use crate::manifest::graph::{self, Graph};
use crate::model::naming::content_hash;

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

    /// What can still be acted on when some manifests are invalid: the manifests with no
    /// problem of their own and none in anything they reference, transitively. Diagnostics and
    /// failed files are kept, so callers still report them and never prune.
    pub fn valid_subset(&self) -> Loaded {
        let mut bad: std::collections::HashSet<String> = self
            .diagnostics
            .iter()
            .filter_map(|d| d.resource.clone())
            .collect();
        loop {
            let keep: Vec<Manifest> = self
                .manifests
                .iter()
                .filter(|m| !bad.contains(&m.id.to_string()))
                .cloned()
                .collect();
            let (graph, problems) = graph::build(&keep);
            let newly_bad: Vec<String> = problems
                .into_iter()
                .filter_map(|d| d.resource)
                .filter(|r| !bad.contains(r))
                .collect();
            if newly_bad.is_empty() {
                return Loaded {
                    manifests: keep,
                    diagnostics: self.diagnostics.clone(),
                    failed_files: self.failed_files.clone(),
                    graph,
                };
            }
            bad.extend(newly_bad);
        }
    }
}

/// Reads every manifest under `paths` (files, or directories recursively).
///
/// A YAML file found by walking a directory that a manifest uses as a local file (a
/// CloudFormation template, the `.yaml` beside an SD 2.x checkpoint) or under a manifest's
/// local root (a checkout), even when that manifest has errors, and that holds no sdop
/// manifest is data, not a manifest: its parse errors are not reported.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let (files, mut diagnostics) = discover::manifest_files(paths);
    let mut per_file = Vec::with_capacity(files.len());
    let mut data_paths = Vec::new();
    for file in &files {
        let mut manifests = Vec::new();
        let mut problems = Vec::new();
        match read_text(file) {
            Ok(text) => {
                load_text(file, &text, &mut manifests, &mut problems, &mut data_paths);
                // Found by walking a directory, refused as a manifest, and YAML of another
                // kind (a CloudFormation template, a checkpoint's config): data, whether or
                // not a manifest names it. Only refused files are looked at again, so a
                // directory of manifests is parsed once.
                let walked = !paths.iter().any(|p| p == file);
                if manifests.is_empty() && !problems.is_empty() && walked && is_other_yaml(&text) {
                    continue;
                }
            }
            Err(diagnostic) => problems.push(diagnostic),
        }
        per_file.push((file, manifests, problems));
    }
    let used_locally: Vec<(PathBuf, bool)> = data_paths
        .into_iter()
        .filter_map(|(path, is_dir)| path.canonicalize().ok().map(|p| (p, is_dir)))
        .collect();
    let is_data_file = |file: &Path| {
        let named = paths.iter().any(|p| p == file);
        let canonical = file.canonicalize().ok();
        !named
            && canonical.is_some_and(|c| {
                used_locally.iter().any(|(used, is_dir)| {
                    if *is_dir {
                        c.starts_with(used)
                    } else {
                        c == *used
                    }
                })
            })
    };
    let mut manifests = Vec::new();
    for (file, found, problems) in per_file {
        if found.is_empty() && !problems.is_empty() && is_data_file(file) {
            continue;
        }
        manifests.extend(found);
        diagnostics.extend(problems);
    }
    finish(manifests, diagnostics)
}

/// The top-level keys of an sdop manifest. A document with any of them is a manifest, however
/// wrong the rest is: its errors are reported and stop any pruning.
const ENVELOPE_KEYS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// True when `text` is well-formed YAML with at least one document and no document that has
/// any of [`ENVELOPE_KEYS`] at its top: another tool's YAML (a CloudFormation template has
/// `AWSTemplateFormatVersion` and `Resources`, a Stable Diffusion 2.x config `model`), never a
/// manifest with a mistake (that keeps at least one envelope key, or fails to parse, and is
/// reported). So a checkout, a checkpoint directory or a dataset beside the manifests is not
/// read as manifests once no manifest names it any more (the workshop's clean-up).
fn is_other_yaml(text: &str) -> bool {
    let mut documents = 0;
    for document in yaml_serde::Deserializer::from_str(text) {
        let Ok(value) = yaml_serde::Value::deserialize(document) else {
            return false;
        };
        match untagged(value) {
            yaml_serde::Value::Null => continue,
            yaml_serde::Value::Mapping(map) if looks_like_a_manifest(&map) => return false,
            // Manifests written as a list (`- apiVersion: ...`, `[{kind: ...}]`) are still
            // manifests, reported as such.
            yaml_serde::Value::Sequence(items)
                if items.iter().any(|item| {
                    matches!(untagged(item.clone()), yaml_serde::Value::Mapping(map) if looks_like_a_manifest(&map))
                }) =>
            {
                return false
            }
            _ => documents += 1,
        }
    }
    documents > 0
}

fn untagged(value: yaml_serde::Value) -> yaml_serde::Value {
    match value {
        yaml_serde::Value::Tagged(tagged) => tagged.value,
        value => value,
    }
}

/// Any envelope key at the top, `apiVersion`, `kind` and `spec` in any case (`Kind:` is a
/// manifest with a mistake); `metadata` exactly, as CloudFormation templates have their own
/// `Metadata` section.
fn looks_like_a_manifest(map: &yaml_serde::Mapping) -> bool {
    map.keys().filter_map(|key| key.as_str()).any(|key| {
        key == "metadata"
            || ENVELOPE_KEYS
                .iter()
                .filter(|k| **k != "metadata")
                .any(|k| k.eq_ignore_ascii_case(key))
    })
}

/// Loads manifests from a string, as if read from `file` (tests, benches, stdin).
pub fn load_str(file: impl AsRef<Path>, text: &str) -> Loaded {
    let mut manifests = Vec::new();
    let mut diagnostics = Vec::new();
    load_text(
        file.as_ref(),
        text,
        &mut manifests,
        &mut diagnostics,
        &mut Vec::new(),
    );
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
        .map_err(|e| file_problem(file, Position::default(), super::discover::cannot_read(&e)))?
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
        .map_err(|e| file_problem(file, Position::default(), super::discover::cannot_read(&e)))?;
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

/// Loads every document of `text`; `data_paths` collects the local files and roots its specs
/// name, resolved, with whether each is a directory (YAML files there are data).
fn load_text(
    file: &Path,
    text: &str,
    out: &mut Vec<Manifest>,
    diagnostics: &mut Vec<Diagnostic>,
    data_paths: &mut Vec<(PathBuf, bool)>,
) {
    // The fast path: split at `---` lines and read each document in one typed pass (its kind
    // peeked from its `kind:` line), or as a tree when that pass refuses it (the tree path
    // gives the same result and, for a bad field, the same message); positions are indexed
    // only if a diagnostic asks. A document the tree parser refuses too (a syntax error, a
    // repeated key, an alias bomb) sends the whole file down the careful path, which reports
    // it exactly; what the fast path found in this file is then dropped.
    if let Some(documents) = document::split_fast(text) {
        let (out_before, diagnostics_before, data_before) =
            (out.len(), diagnostics.len(), data_paths.len());
        out.reserve(documents.len());
        let mut refused = false;
        for doc in documents.into_iter().filter(|doc| doc.has_content) {
            let parsed = match parse_whole(doc.text) {
                Some(parsed) => Parsed::Whole(parsed),
                None => match yaml_serde::from_str(doc.text) {
                    Ok(tree) => Parsed::Tree(tree),
                    Err(_) => {
                        refused = true;
                        break;
                    }
                },
            };
            load_document(file, doc, parsed, out, diagnostics, data_paths);
        }
        if !refused {
            return;
        }
        out.truncate(out_before);
        diagnostics.truncate(diagnostics_before);
        data_paths.truncate(data_before);
    }
    let (documents, syntax_error) = document::split(text);
    if let Some(err) = syntax_error {
        diagnostics.push(syntax_problem(file, text, &err));
    }
    for doc in documents {
        if doc.has_content {
            load_document(file, doc, Parsed::Text, out, diagnostics, data_paths);
        }
    }
}

/// How far a document was read before [`load_document`].
enum Parsed {
    /// Envelope and spec, in one typed pass.
    Whole(kinds::ParsedDocument),
    /// A tree (the envelope and the spec are read from it).
    Tree(yaml_serde::Value),
    /// Only split: the careful path, with its span index.
    Text,
}

/// The one-pass typed read of a document whose `kind:` line names a known kind, or `None`
/// (no such line, an unknown kind, a field the kind refuses, a repeated key): the document is
/// then read the other ways, which say what is wrong.
fn parse_whole(text: &str) -> Option<kinds::ParsedDocument> {
    let kind = text.lines().find_map(|line| {
        let value = line.strip_prefix("kind:")?;
        Some(value.split(" #").next().unwrap_or_default().trim())
    })?;
    let handler = kinds::handler(kind)?;
    let parsed = handler.parse_document(text).ok()?;
    (parsed.kind == kind).then_some(parsed)
}

/// Largest file whose syntax error is re-read with libyaml for a better message.
const LIBYAML_RETRY_MAX_BYTES: usize = 256 * 1024;

/// Reports a syntax error. For unclosed constructs libyaml (through yaml_serde) explains it
/// better ("did not find expected ',' or ']', while parsing a flow sequence started at 9:17"),
/// so the broken document is re-read with it; otherwise saphyr's message stands.
fn syntax_problem(file: &Path, text: &str, err: &document::SyntaxError) -> Diagnostic {
    // libyaml is not re-run on pathological input (it is slow on millions of nested levels).
    let pathological =
        err.message.contains("recursion limit") || text.len() > LIBYAML_RETRY_MAX_BYTES;
    if let (Some(first_line), false) = (err.document_first_line, pathological) {
        let offset: usize = text
            .split_inclusive('\n')
            .take(first_line - 1)
            .map(str::len)
            .sum();
        if let Err(yaml_err) = yaml_serde::from_str::<IgnoredAny>(&text[offset..]) {
            if let Some(location) = yaml_err.location() {
                // libyaml reports an error at end of input one line past the last line.
                let last_line = text.lines().count().max(1);
                let line = first_line - 1 + location.line();
                let position = if line > last_line {
                    let width = text.lines().last().map_or(0, |l| l.chars().count());
                    Position {
                        line: last_line,
                        column: width + 1,
                    }
                } else {
                    Position {
                        line,
                        column: location.column(),
                    }
                };
                let message = clean_yaml_message(&yaml_err.to_string(), first_line - 1);
                // Prefer libyaml only when it says where the broken construct started.
                if message.contains(" started at ") {
                    return file_problem(file, position, format!("YAML syntax error: {message}"));
                }
            }
        }
    }
    let message = if err.message.contains("recursion limit exceeded") {
        "document is nested too deeply (recursion limit exceeded)".to_string()
    } else {
        err.message.clone()
    };
    file_problem(file, err.position, format!("YAML syntax error: {message}"))
}

fn load_document(
    file: &Path,
    doc: Document<'_>,
    parsed: Parsed,
    out: &mut Vec<Manifest>,
    diagnostics: &mut Vec<Diagnostic>,
    data_paths: &mut Vec<(PathBuf, bool)>,
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
        message: clean_yaml_message(&err.to_string(), doc.first_line - 1),
    };
    if !origin.spans.duplicate_keys().is_empty() {
        for (path, first, again) in origin.spans.duplicate_keys() {
            let key = path.rsplit('.').next().unwrap_or(path);
            diagnostics.push(Diagnostic {
                file: file.to_path_buf(),
                position: *again,
                resource: identity_of(doc.text),
                message: format!(
                    "duplicate key `{key}` (first at {}:{}); a key may appear once per mapping",
                    first.line, first.column
                ),
            });
        }
        return;
    }
    // Read once: the envelope and the spec come from the one-pass read or from one tree.
    // When the tree cannot be built (an alias bomb stops it) or rejects a part, the text is
    // parsed the typed way, which stops at the first error and gives its position.
    let (whole, tree) = match parsed {
        Parsed::Whole(whole) => (Some(whole), None),
        Parsed::Tree(tree) => (None, Some(tree)),
        Parsed::Text => (
            None,
            yaml_serde::from_str::<yaml_serde::Value>(doc.text).ok(),
        ),
    };
    let (envelope, whole_spec) = match whole {
        Some(whole) => (
            Envelope {
                api_version: whole.api_version,
                kind: whole.kind,
                metadata: whole.metadata,
                spec: IgnoredAny,
            },
            Some(whole.spec),
        ),
        None => match tree.as_ref().map(Envelope::deserialize) {
            Some(Ok(envelope)) => (envelope, None),
            _ => match yaml_serde::from_str::<Envelope>(doc.text) {
                Ok(envelope) => (envelope, None),
                Err(err) => {
                    diagnostics.push(yaml_problem(&err, identity_of(doc.text)));
                    return;
                }
            },
        },
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
        let message = kinds::renamed_kind(&envelope.kind).unwrap_or_else(|| {
            format!(
                "unknown kind {:?} (known kinds: {})",
                envelope.kind,
                kinds::kind_names().join(", ")
            )
        });
        diagnostics.push(at("kind", message));
        return;
    };
    let parsed = match (
        whole_spec,
        tree.as_ref().map(|tree| handler.parse_tree(tree)),
    ) {
        (Some(spec), _) | (None, Some(Ok(spec))) => Ok(spec),
        _ => handler.parse(doc.text),
    };
    let spec = match parsed {
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
    let root = handler.local_root(spec.as_ref());
    let missing_root = root.as_ref().and_then(|root| {
        let resolved = base_dir.join(&root.directory);
        data_paths.push((resolved.clone(), true));
        (!resolved.is_dir()).then(|| {
            (
                root.path,
                format!(
                    "local directory {:?} ({}) does not exist: {}",
                    root.directory,
                    resolved.display(),
                    root.hint
                        .replace("{directory}", &resolved.display().to_string())
                ),
            )
        })
    });
    if let Some((path, message)) = missing_root {
        // Every local path is under it: one error, not one per path.
        checks.error(path, message);
    } else {
        for (path, written) in handler.local_paths(spec.as_ref()) {
            match super::local::inspect(base_dir, &written) {
                Ok(found) => {
                    data_paths.push((found.resolved.clone(), found.is_dir));
                    local_files.insert(written, found);
                }
                Err(message) => match handler.local_path_hint(spec.as_ref(), &written) {
                    Some(hint) => checks.error(path, format!("{message}; {hint}")),
                    None => checks.error(path, message),
                },
            }
        }
        handler.check_local(spec.as_ref(), &local_files, &mut checks);
    }
    if !checks.problems.is_empty() || !envelope_ok {
        for (path, message) in checks.problems {
            diagnostics.push(at(&path, message));
        }
        return;
    }
    let spec_json = handler.to_json(spec.as_ref());
    let spec_hash = content_hash(&spec_json);
    let s3_buckets = kinds::s3_buckets(&spec_json);
    let ssm_parameters = kinds::ssm_parameters(&spec_json);
    out.push(Manifest {
        id,
        metadata: envelope.metadata,
        handler,
        spec,
        spec_hash,
        s3_buckets,
        ssm_parameters,
        origin,
        local_files,
    });
}

/// Reports every duplicate `Kind/name` (naming the other places). The first definition stays in
/// the set, so references to the name do not also read as dangling; the load is invalid anyway.
fn drop_duplicates(manifests: Vec<Manifest>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Manifest> {
    let mut seen: HashMap<ResourceId, Vec<usize>> = HashMap::new();
    for (i, m) in manifests.iter().enumerate() {
        seen.entry(m.id.clone()).or_default().push(i);
    }
    let mut dropped = vec![false; manifests.len()];
    for indices in seen.values().filter(|v| v.len() > 1) {
        for &i in indices {
            dropped[i] = i != indices[0];
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

/// Removes the first " at line N column M" / " at position N" of a yaml_serde message (the
/// diagnostic carries that position), turns later ones (libyaml's "while parsing ... at") into
/// file coordinates, and words a few messages for people.
fn clean_yaml_message(message: &str, line_offset: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut seen_first = false;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        match position_phrase(tail) {
            Some((skip, line_col)) => {
                if seen_first {
                    if let Some((line, column)) = line_col {
                        out.push_str(&format!(" started at {}:{column}", line + line_offset));
                    }
                }
                seen_first = true;
                rest = &tail[skip..];
            }
            None => {
                out.push_str(" at ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    let out = out
        .replace(
            "struct Envelope",
            "a manifest (a mapping with apiVersion, kind, metadata, spec)",
        )
        .replace(
            "struct TypedDocument",
            "a manifest (a mapping with apiVersion, kind, metadata, spec)",
        );
    if out.contains("repetition limit exceeded") {
        return "document expands too many aliases (repetition limit exceeded): refusing a possible YAML alias bomb".into();
    }
    if out.contains("recursion limit exceeded") {
        return "document is nested too deeply (recursion limit exceeded)".into();
    }
    renamed_key(&out).unwrap_or(out)
}

/// `PATH: unknown field `modelPackage`, expected ... `modelArchive` ...` (a key renamed with
/// its kind, where the new one is expected): says so, naming the new key.
fn renamed_key(message: &str) -> Option<String> {
    kinds::RENAMED_KEYS
        .iter()
        .find_map(|(earlier, current, names)| {
            let (path, expected) = message.split_once(&format!("unknown field `{earlier}`, "))?;
            expected
                .contains(&format!("`{current}`"))
                .then(|| format!("{path}`{earlier}` was renamed to `{current}` ({names})"))
        })
}

/// Parses "line N column M" or "position N" at the start of `tail`: (length, Some((N, M))).
fn position_phrase(tail: &str) -> Option<(usize, Option<(usize, usize)>)> {
    let digits = |s: &str| s.chars().take_while(|c| c.is_ascii_digit()).count();
    if let Some(r) = tail.strip_prefix("line ") {
        let n = digits(r);
        let r2 = r[n..].strip_prefix(" column ")?;
        let m = digits(r2);
        if n == 0 || m == 0 {
            return None;
        }
        let line = r[..n].parse().ok()?;
        let column = r2[..m].parse().ok()?;
        return Some((5 + n + 8 + m, Some((line, column))));
    }
    let r = tail.strip_prefix("position ")?;
    let n = digits(r);
    (n > 0).then_some((9 + n, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_tools_yaml_is_data_and_a_broken_manifest_is_not() {
        for data in [
            "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  B: {Type: AWS::S3::Bucket, Properties: {BucketName: !Ref N}}\n",
            "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n",
            "# a comment\n---\n- a list\n",
        ] {
            assert!(is_other_yaml(data), "{data}");
        }
        for manifest in [
            // Each keeps an envelope key, however wrong the rest: reported, never skipped.
            "apiVersoin: sdop/v1alpha1\nkind: Bucket\n",
            "kind: Bukcet\nmetadata: {name: a}\n",
            "spec: {}\n",
            "Kind: Bucket\nMetadata: {name: a}\nSpec: {}\n",
            "- apiVersion: sdop/v1alpha1\n  kind: Bucket\n",
            "[{kind: Bucket, metadata: {name: a}}]\n",
            "AWSTemplateFormatVersion: x\n---\napiVersion: sdop/v1alpha1\n",
            // Not YAML at all, or nothing in it: reported as before.
            "a: [\n",
            "",
            "# only a comment\n",
        ] {
            assert!(!is_other_yaml(manifest), "{manifest}");
        }
    }

    /// Issue #23: a file a resource reads is part of what its failure is remembered by, so
    /// fixing the file retries it as an edit of the manifest does; the spec hash (and so the
    /// ownership tags) stays.
    #[test]
    fn a_changed_local_file_changes_the_failure_key_not_the_spec_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/a.jpg"), "a1").unwrap();
        std::fs::write(
            dir.path().join("dataset.yaml"),
            "apiVersion: sdop/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec: {directory: images, s3Uri: \"s3://sdop-b/d/\"}\n",
        )
        .unwrap();
        let before = load_paths(&[dir.path().to_path_buf()]);
        assert!(before.is_valid(), "{:?}", before.diagnostics);
        // Touched (a fresh clone, a sync): the same content, the same key.
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("images/a.jpg"))
            .unwrap()
            .set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400),
            )
            .unwrap();
        let touched = load_paths(&[dir.path().to_path_buf()]);
        assert_eq!(
            before.manifests[0].failure_key(),
            touched.manifests[0].failure_key()
        );
        std::fs::write(dir.path().join("images/a.jpg"), "a2").unwrap();
        let after = load_paths(&[dir.path().to_path_buf()]);
        let (before, after) = (&before.manifests[0], &after.manifests[0]);
        assert_eq!(before.spec_hash, after.spec_hash);
        assert_ne!(before.failure_key(), after.failure_key());
    }

    /// The workshop's clean-up: once no manifest names the checkout and the checkpoints, their
    /// YAML is still not read as manifests, so nothing blocks the prune; a broken manifest
    /// beside them still does.
    #[test]
    fn a_directory_walk_skips_data_that_no_manifest_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("all-in-one-ai/deployment/templates")).unwrap();
        std::fs::create_dir_all(root.join("checkpoints")).unwrap();
        std::fs::write(
            root.join("all-in-one-ai/deployment/templates/main.yaml"),
            "AWSTemplateFormatVersion: '2010-09-09'\nResources: {}\n",
        )
        .unwrap();
        std::fs::write(root.join("checkpoints/v2.yaml"), "model: {target: x}\n").unwrap();
        std::fs::write(
            root.join("00-bucket.yaml"),
            "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: a}\nspec: {bucketName: sdop-a, region: us-east-1}\n",
        )
        .unwrap();
        let loaded = load_paths(&[root.to_path_buf()]);
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.manifests.len(), 1);

        std::fs::write(
            root.join("10-broken.yaml"),
            "kind: Endpoint\nmetadata: {name: e}\n",
        )
        .unwrap();
        let loaded = load_paths(&[root.to_path_buf()]);
        assert_eq!(loaded.failed_files, [root.join("10-broken.yaml")]);

        // A file named on the command line is read as a manifest whatever it holds.
        let template = root.join("all-in-one-ai/deployment/templates/main.yaml");
        let loaded = load_paths(std::slice::from_ref(&template));
        assert_eq!(loaded.failed_files, [template]);
    }

    #[test]
    fn cleans_positions_from_messages() {
        assert_eq!(
            clean_yaml_message(
                "spec: unknown field `x`, expected `a` at line 3 column 5",
                10
            ),
            "spec: unknown field `x`, expected `a`"
        );
        assert_eq!(
            clean_yaml_message(
                "did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1",
                10
            ),
            "did not find expected key, while parsing a block mapping started at 11:1"
        );
        assert_eq!(clean_yaml_message("look at this", 0), "look at this");
        assert!(clean_yaml_message("repetition limit exceeded", 0).contains("alias bomb"));
    }

    #[test]
    fn the_valid_subset_drops_invalid_manifests_and_what_depends_on_them() {
        let loaded = load_str(
            "t.yaml",
            "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: ok}\nspec: {bucketName: sdop-ok, region: us-east-1}\n---\n\
             apiVersion: sdop/v1alpha1\nkind: ModelArchive\nmetadata: {name: bad}\nspec: {output: s3://sdop-ok/m.tar.gz, compressionLevel: 12, sources: [{s3: s3://sdop-ok/a.ckpt, path: Stable-diffusion/}]}\n---\n\
             apiVersion: sdop/v1alpha1\nkind: Endpoint\nmetadata: {name: uses-bad}\nspec: {endpointName: e, image: {uri: a/b:c}, modelData: {modelArchive: bad}, instanceType: ml.g4dn.xlarge, executionRoleArn: arn:aws:iam::123456789012:role/r, contract: all-in-one-ai/2023-03-01}\n",
        );
        assert!(!loaded.is_valid());
        let subset = loaded.valid_subset();
        let names: Vec<String> = subset.manifests.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(names, ["Bucket/ok"]);
        assert!(!subset.failed_files.is_empty());
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
