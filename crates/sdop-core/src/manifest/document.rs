//! Splits a YAML stream into documents and indexes where each key and item sits.
//!
//! yaml_serde gives precise positions for the errors it finds itself, but none for values that
//! deserialize fine and are rejected later (a dangling reference, a bad bucket name). This module
//! walks saphyr-parser's event stream once, without expanding aliases (so alias bombs cost
//! nothing here), and records the position of every mapping key and sequence item by path.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser};

use crate::diagnostics::Position;

/// Paths deeper than this are not indexed (positions fall back to the nearest ancestor).
const MAX_INDEXED_DEPTH: usize = 24;

/// Position of each `a.b[0].c` path in one document.
#[derive(Debug, Default)]
pub struct SpanIndex {
    positions: HashMap<String, Position>,
    /// Keys that appear twice in one mapping: (path, first position, repeated position).
    pub duplicate_keys: Vec<(String, Position, Position)>,
}

impl SpanIndex {
    /// The position of `path`, or of its nearest indexed ancestor.
    pub fn position_of(&self, path: &str) -> Option<Position> {
        let mut current = path;
        loop {
            if let Some(pos) = self.positions.get(current) {
                return Some(*pos);
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }
}

impl SpanIndex {
    /// The same index with every position `lines` lines further down.
    fn shifted(mut self, lines: usize) -> SpanIndex {
        let shift = |p: &mut Position| p.line += lines;
        self.positions.values_mut().for_each(shift);
        for (_, first, again) in &mut self.duplicate_keys {
            shift(first);
            shift(again);
        }
        self
    }
}

/// A document's span index, built when the document is split (the careful path) or only when a
/// position is first asked for (the fast path: most documents never need one).
#[derive(Debug)]
pub struct Spans {
    eager: Option<SpanIndex>,
    lazy: std::sync::OnceLock<SpanIndex>,
    /// The whole file, shared by its documents, and where this document is in it.
    source: Arc<str>,
    range: std::ops::Range<usize>,
    first_line: usize,
}

impl Spans {
    fn eager(index: SpanIndex) -> Spans {
        Spans {
            eager: Some(index),
            lazy: std::sync::OnceLock::new(),
            source: Arc::from(""),
            range: 0..0,
            first_line: 1,
        }
    }

    fn lazy(source: &Arc<str>, range: std::ops::Range<usize>, first_line: usize) -> Spans {
        Spans {
            eager: None,
            lazy: std::sync::OnceLock::new(),
            source: Arc::clone(source),
            range,
            first_line,
        }
    }

    pub fn index(&self) -> &SpanIndex {
        match &self.eager {
            Some(index) => index,
            None => self.lazy.get_or_init(|| {
                let (docs, _) = split(&self.source[self.range.clone()]);
                docs.into_iter()
                    .next()
                    .and_then(|d| d.spans.eager)
                    .unwrap_or_default()
                    .shifted(self.first_line - 1)
            }),
        }
    }

    /// Keys repeated in one mapping. A lazily indexed document has none: its tree parsed,
    /// and the tree parser refuses duplicate keys.
    pub fn duplicate_keys(&self) -> &[(String, Position, Position)] {
        match &self.eager {
            Some(index) => &index.duplicate_keys,
            None => &[],
        }
    }

    pub fn position_of(&self, path: &str) -> Option<Position> {
        self.index().position_of(path)
    }
}

/// One document of a multi-document file.
#[derive(Debug)]
pub struct Document<'a> {
    /// The document's text, cut from whole lines of the file.
    pub text: &'a str,
    /// 1-based line in the file where `text` begins.
    pub first_line: usize,
    /// Position of the document's content (the first key), for whole-document messages.
    pub start: Position,
    /// False for documents with no content (a stray `---`, comments only).
    pub has_content: bool,
    pub spans: Spans,
}

/// A YAML syntax error, at its position in the file.
#[derive(Debug)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
    /// First line of the document the error is in (its text runs to the end of the file).
    pub document_first_line: Option<usize>,
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, index: usize },
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Splits `source` into documents. Documents before a syntax error are returned with it.
pub fn split(source: &str) -> (Vec<Document<'_>>, Option<SyntaxError>) {
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_offset = |line: usize| -> usize {
        line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(source.len())
    };

    struct Open {
        first_line: usize,
        start: Option<Position>,
        spans: SpanIndex,
    }
    let mut docs: Vec<(Open, usize)> = Vec::new();
    let mut open: Option<Open> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut error = None;

    for item in Parser::new_from_str(source) {
        let (event, span) = match item {
            Ok(pair) => pair,
            Err(err) => {
                let mark = err.marker();
                let last_line = line_starts.len() - usize::from(source.ends_with('\n'));
                error = Some(SyntaxError {
                    position: if mark.line() > last_line.max(1) {
                        Position {
                            line: last_line.max(1),
                            column: 1,
                        }
                    } else {
                        Position {
                            line: mark.line().max(1),
                            column: mark.col() + 1,
                        }
                    },
                    message: err.info().to_string(),
                    document_first_line: open.as_ref().map(|d| d.first_line),
                });
                break;
            }
        };
        let pos = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                stack.clear();
                open = Some(Open {
                    first_line: pos.line,
                    start: None,
                    spans: SpanIndex::default(),
                });
            }
            Event::DocumentEnd => {
                if let Some(doc) = open.take() {
                    docs.push((doc, span.end.line()));
                }
            }
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => {
                let Some(doc) = open.as_mut() else { continue };
                // The path of this node when it is a value (not a key).
                let indexed = stack.len() <= MAX_INDEXED_DEPTH;
                let value_path = match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Mapping { path, key }) => match key.take() {
                        Some(key) => Some(child_path(path, &key)),
                        None => {
                            // This node is a key.
                            let name = match &event {
                                Event::Scalar(text, ..) => text.to_string(),
                                _ => "?".to_string(),
                            };
                            let keyed = child_path(path, &name);
                            if indexed {
                                match doc.spans.positions.get(&keyed) {
                                    Some(&first) => {
                                        doc.spans.duplicate_keys.push((keyed, first, pos))
                                    }
                                    None => {
                                        doc.spans.positions.insert(keyed, pos);
                                    }
                                }
                            }
                            *key = Some(name);
                            None
                        }
                    },
                    Some(Frame::Sequence { path, index }) => {
                        let item = format!("{path}[{index}]");
                        *index += 1;
                        if indexed {
                            doc.spans.positions.entry(item.clone()).or_insert(pos);
                        }
                        Some(item)
                    }
                };
                if doc.start.is_none()
                    && !matches!(event, Event::Scalar(ref t, ..) if stack.is_empty() && t.is_empty())
                {
                    doc.start = Some(pos);
                }
                let path = value_path.unwrap_or_else(|| "?".to_string());
                match event {
                    Event::MappingStart(..) => stack.push(Frame::Mapping { path, key: None }),
                    Event::SequenceStart(..) => stack.push(Frame::Sequence { path, index: 0 }),
                    _ => {}
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    if let Some(doc) = open.take() {
        // Unterminated by a syntax error: keep what was open only when the stream ended cleanly.
        if error.is_none() {
            docs.push((doc, line_starts.len()));
        }
    }

    let mut out = Vec::with_capacity(docs.len());
    for i in 0..docs.len() {
        let (doc, end_line) = &docs[i];
        let from = line_offset(doc.first_line);
        let to = match docs.get(i + 1) {
            Some((next, _)) => line_offset(next.first_line),
            None => match error.as_ref().and_then(|e| e.document_first_line) {
                Some(broken) => line_offset(broken),
                None if error.is_some() => line_offset(end_line + 1),
                None => source.len(),
            },
        }
        .max(from);
        out.push((from, to));
    }
    let documents = docs
        .into_iter()
        .zip(out)
        .map(|((doc, _), (from, to))| Document {
            text: &source[from..to],
            first_line: doc.first_line,
            start: doc.start.unwrap_or(Position {
                line: doc.first_line,
                column: 1,
            }),
            has_content: doc.start.is_some(),
            spans: Spans::eager(doc.spans),
        })
        .collect();
    (documents, error)
}

/// Longest line the fast split takes.
const FAST_LINE_MAX: usize = 16 * 1024;
/// Deepest flow nesting (brackets counted, quotes not parsed) the fast split takes.
const FAST_FLOW_DEPTH_MAX: i64 = 64;

/// Splits `source` at its `---` lines without parsing it, for the common shape of manifests
/// (no `...`, no directives, nothing after a `---` on its line); `None` for any other shape,
/// which [`split`] handles. Documents, first lines and starts are what [`split`] gives (a test
/// checks it over every shipped YAML file); span indexes are built only when asked for.
pub fn split_fast(source: &str) -> Option<Vec<Document<'_>>> {
    struct Open {
        from: usize,
        first_line: usize,
        start: Option<Position>,
        explicit: bool,
    }
    let mut docs: Vec<(Open, usize)> = Vec::new();
    let mut open: Option<Open> = None;
    let mut offset = 0;
    // Hostile shapes (very long lines, deep flow nesting) go the careful way: the tree parser
    // is slow on them before it finds the error, saphyr is not.
    let mut flow_depth: i64 = 0;
    for (i, line) in source.split_inclusive('\n').enumerate() {
        let number = i + 1;
        if line.len() > FAST_LINE_MAX {
            return None;
        }
        for b in line.bytes() {
            match b {
                b'[' | b'{' => flow_depth += 1,
                b']' | b'}' => flow_depth -= 1,
                _ => {}
            }
        }
        if flow_depth > FAST_FLOW_DEPTH_MAX {
            return None;
        }
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.starts_with("...") || bare.starts_with('%') || bare.starts_with('\u{feff}') {
            return None;
        }
        if let Some(rest) = bare.strip_prefix("---") {
            let rest = rest.trim_start_matches(' ');
            if !(rest.is_empty() || rest.starts_with('#')) {
                return None;
            }
            if let Some(doc) = open.take() {
                docs.push((doc, offset));
            }
            open = Some(Open {
                from: offset,
                first_line: number,
                start: None,
                explicit: true,
            });
        } else {
            let content = bare.trim_start_matches(' ');
            if !content.is_empty() && !content.starts_with('#') {
                if content.starts_with('\t') {
                    return None;
                }
                let doc = open.get_or_insert(Open {
                    from: offset,
                    first_line: number,
                    start: None,
                    explicit: false,
                });
                if doc.start.is_none() {
                    doc.start = Some(Position {
                        line: number,
                        column: bare.len() - content.len() + 1,
                    });
                }
            }
        }
        offset += line.len();
    }
    if let Some(doc) = open.take() {
        docs.push((doc, source.len()));
    }
    let shared: Arc<str> = Arc::from(source);
    Some(
        docs.into_iter()
            .filter(|(doc, _)| doc.explicit || doc.start.is_some())
            .map(|(doc, to)| {
                let text = &source[doc.from..to];
                Document {
                    text,
                    first_line: doc.first_line,
                    start: doc.start.unwrap_or(Position {
                        line: doc.first_line,
                        column: 1,
                    }),
                    has_content: doc.start.is_some(),
                    spans: Spans::lazy(&shared, doc.from..to, doc.first_line),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_indexes_paths() {
        let src = "# comment\napiVersion: v\nkind: A\nspec:\n  items:\n    - a: 1\n    - b: 2\n---\n---\nkind: B\n";
        let (docs, err) = split(src);
        assert!(err.is_none());
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].first_line, 2);
        assert!(docs[0].text.starts_with("apiVersion"));
        assert_eq!(
            docs[0].spans.position_of("kind"),
            Some(Position { line: 3, column: 1 })
        );
        assert_eq!(
            docs[0].spans.position_of("spec.items[1].b"),
            Some(Position { line: 7, column: 7 })
        );
        assert_eq!(
            docs[0].spans.position_of("spec.items[1].missing"),
            Some(Position { line: 7, column: 7 })
        );
        assert!(!docs[1].has_content);
        assert!(docs[2].has_content);
        assert_eq!(docs[2].text, "---\nkind: B\n");
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let (docs, err) = split("a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs.len(), 1);
        assert!(err.unwrap().position.line >= 3);
    }

    #[test]
    fn a_broken_document_does_not_swallow_the_one_before() {
        let (docs, err) = split("a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs[0].text, "a: 1\n");
        let err = err.unwrap();
        assert_eq!(err.document_first_line, Some(2));
        assert!(err.position.line <= 3, "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_found_where_they_repeat() {
        let (docs, _) = split("spec:\n  region: a\n  name: b\n  region: c\n");
        assert_eq!(
            docs[0].spans.duplicate_keys(),
            &[(
                "spec.region".to_string(),
                Position { line: 2, column: 3 },
                Position { line: 4, column: 3 }
            )]
        );
    }

    /// The fast split gives what the careful one gives, over every YAML file the repository
    /// ships (manifests, examples, the corpus) and some shapes of its own; positions of the
    /// lazily built index match the eager one's.
    #[test]
    fn the_fast_split_agrees_with_the_careful_one() {
        // The repository root: the manifests and corpus live there, two levels above the crate.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["manifests", "examples", "tests/corpus"] {
            collect(&root.join(dir), &mut files);
        }
        let mut texts: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        texts.extend(
            [
                "# c\n\napiVersion: v\n---\n# only a comment\n---\nkind: B\nspec:\n  a: [1, 2]\n",
                "---\nkind: A\n--- # x\nkind: B\n---\n",
                "a: |\n  text\n  more\nb: 2\n",
            ]
            .map(String::from),
        );
        let mut compared = 0;
        for text in &texts {
            let Some(fast) = split_fast(text) else {
                continue;
            };
            let (careful, error) = split(text);
            if error.is_some() {
                continue;
            }
            assert_eq!(fast.len(), careful.len(), "{text}");
            for (f, c) in fast.iter().zip(&careful) {
                assert_eq!(
                    (f.text, f.first_line, f.start, f.has_content),
                    (c.text, c.first_line, c.start, c.has_content),
                    "{text}"
                );
                assert_eq!(
                    f.spans.index().positions,
                    c.spans.index().positions,
                    "{text}"
                );
            }
            compared += 1;
        }
        assert!(compared > 50, "{compared}");
    }

    fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }

    #[test]
    fn deep_nesting_is_iterative() {
        let src = "[".repeat(200_000);
        let (_, err) = split(&src);
        assert!(err.is_some());
    }
}
