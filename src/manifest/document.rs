//! Splits a YAML stream into documents and indexes where each key and item sits.
//!
//! yaml_serde gives precise positions for the errors it finds itself, but none for values that
//! deserialize fine and are rejected later (a dangling reference, a bad bucket name). This module
//! walks saphyr-parser's event stream once, without expanding aliases (so alias bombs cost
//! nothing here), and records the position of every mapping key and sequence item by path.

use std::collections::HashMap;

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
    pub spans: SpanIndex,
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
            spans: doc.spans,
        })
        .collect();
    (documents, error)
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
            docs[0].spans.duplicate_keys,
            vec![(
                "spec.region".to_string(),
                Position { line: 2, column: 3 },
                Position { line: 4, column: 3 }
            )]
        );
    }

    #[test]
    fn deep_nesting_is_iterative() {
        let src = "[".repeat(200_000);
        let (_, err) = split(&src);
        assert!(err.is_some());
    }
}
