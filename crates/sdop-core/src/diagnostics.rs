//! Diagnostics: one problem in one manifest, rendered as `FILE:LINE:COL: Kind/name: message`.

use std::fmt;
use std::path::PathBuf;

/// A position in a manifest file (1-based line and column); line 0 means the file as a whole
/// (it cannot be read), shown without a position.
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
        write!(f, "{}", self.file.display())?;
        if self.position.line > 0 {
            write!(f, ":{}:{}", self.position.line, self.position.column)?;
        }
        f.write_str(": ")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_of_the_whole_file_has_no_position() {
        let whole = Diagnostic {
            file: "nosuch.yaml".into(),
            position: Position::default(),
            resource: None,
            message: "cannot read: no such file or directory".into(),
        };
        assert_eq!(
            whole.to_string(),
            "nosuch.yaml: cannot read: no such file or directory"
        );
        let at = Diagnostic {
            position: Position { line: 4, column: 8 },
            resource: Some("Bucket/b".into()),
            ..whole
        };
        assert_eq!(
            at.to_string(),
            "nosuch.yaml:4:8: Bucket/b: cannot read: no such file or directory"
        );
    }
}
