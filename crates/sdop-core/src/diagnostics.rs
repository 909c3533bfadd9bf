//! Diagnostics: one problem in one manifest, rendered as `FILE:LINE:COL: Kind/name: message`.

use std::fmt;
use std::path::PathBuf;

/// A position in a manifest file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub position: Position,
    /// `Kind/name` when the problem belongs to a resource, else `None` (e.g. the file is unreadable).
    pub resource: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: ",
            self.file.display(),
            self.position.line,
            self.position.column
        )?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Renders diagnostics one per line, sorted by file and position.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
    sorted
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
