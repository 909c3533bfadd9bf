//! Which files a path argument means: a file as given, or a directory read recursively for
//! `.yaml`/`.yml` files, skipping hidden entries and editor temp files.

use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Position};

/// True for names editors and tools leave behind: `.x`, `x~`, `#x#`, `x.swp`, `x.tmp`...
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || [".swp", ".swx", ".tmp", ".bak", ".orig"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

pub fn is_manifest_name(name: &str) -> bool {
    !is_ignored_name(name) && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Expands path arguments into manifest files, sorted and de-duplicated.
/// A path that does not exist is a diagnostic, never a silent "no resources".
pub fn manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut problems),
            Ok(_) => files.push(path.clone()),
            Err(err) => problems.push(unreadable(path, &err)),
        }
    }
    files.sort();
    files.dedup();
    (files, problems)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            problems.push(unreadable(dir, &err));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_ignored_name(&name) {
            continue;
        }
        let path = entry.path();
        // file_type() does not follow symlinks; metadata() does, so linked dirs are walked once.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, files, problems),
            Ok(_) if is_manifest_name(&name) => files.push(path),
            Ok(_) => {}
            Err(err) => problems.push(unreadable(&path, &err)),
        }
    }
}

fn unreadable(path: &Path, err: &std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        // The path as a whole: no line or column to point at.
        position: Position::default(),
        resource: None,
        message: cannot_read(err),
    }
}

/// `cannot read: no such file or directory (check the path)`, without the OS error number.
pub fn cannot_read(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            "cannot read: no such file or directory (check the path)".to_string()
        }
        std::io::ErrorKind::PermissionDenied => {
            "cannot read: permission denied (check the file's permissions)".to_string()
        }
        _ => format!("cannot read: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_manifest_name("bucket.yaml"));
        assert!(is_manifest_name("a.yml"));
        for skip in [
            ".hidden.yaml",
            "a.yaml~",
            "#a.yaml#",
            "a.yaml.swp",
            "a.json",
            ".#a.yaml",
        ] {
            assert!(!is_manifest_name(skip), "{skip}");
        }
    }

    #[test]
    fn walks_directories_recursively_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/.git")).unwrap();
        for f in [
            "a.yaml",
            "sub/b.yml",
            "sub/.git/c.yaml",
            "sub/d.txt",
            "e.yaml~",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let (files, problems) = manifest_files(&[dir.path().to_path_buf()]);
        assert!(problems.is_empty());
        let names: Vec<_> = files
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.yaml", "sub/b.yml"]);
        let (_, problems) = manifest_files(&[dir.path().join("missing")]);
        assert_eq!(problems.len(), 1);
    }
}
