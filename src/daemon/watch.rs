//! Watching manifest directories: notify with its full debouncer (an editor's save by rename
//! arrives as one batch), hidden and temp files ignored. A path reached through a symlink
//! (git-sync swaps `current` atomically) is re-resolved after every batch and watched anew
//! when its target changed; the symlink's own directory is watched too, so the swap is seen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::manifest::discover::is_ignored_name;

pub struct Watcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// (path as given, what it resolved to when watched, extra symlink parents watched)
    roots: Vec<(PathBuf, Option<PathBuf>, Vec<PathBuf>)>,
}

/// True when an event path can matter: not a hidden or temp file, nor inside `.git`.
/// (Only the file name is judged: the manifests may live under a hidden directory.)
fn is_relevant(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| is_ignored_name(&n.to_string_lossy()));
    !hidden && !path.components().any(|c| c.as_os_str() == ".git")
}

fn is_relevant_kind(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl Watcher {
    /// Starts watching `paths`; batches of changed paths arrive on the returned channel.
    pub fn start(
        paths: &[PathBuf],
        debounce: Duration,
    ) -> Result<(Watcher, mpsc::UnboundedReceiver<Vec<PathBuf>>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let debouncer =
            new_debouncer(
                debounce,
                None,
                move |result: DebounceEventResult| match result {
                    Ok(events) => {
                        let mut paths: Vec<PathBuf> = events
                            .iter()
                            .filter(|e| is_relevant_kind(&e.kind))
                            .flat_map(|e| e.paths.iter().cloned())
                            .filter(|p| is_relevant(p))
                            .collect();
                        paths.sort();
                        paths.dedup();
                        if !paths.is_empty() {
                            let _ = tx.send(paths);
                        }
                    }
                    Err(errors) => {
                        for err in errors {
                            tracing::warn!(error = %err, "file watch error");
                        }
                    }
                },
            )
            .map_err(|e| Error::Terminal(format!("cannot watch manifests: {e}")))?;
        let mut watcher = Watcher {
            debouncer,
            roots: paths
                .iter()
                .map(|p| (p.clone(), None, Vec::new()))
                .collect(),
        };
        watcher.rewatch();
        Ok((watcher, rx))
    }

    /// (Re)establishes watches whose target moved (symlink swapped, directory re-created).
    pub fn rewatch(&mut self) {
        for (given, watched, parents) in &mut self.roots {
            let target = given.canonicalize().ok();
            if target == *watched && target.is_some() {
                continue;
            }
            if let Some(old) = watched.take() {
                let _ = self.debouncer.unwatch(&old);
            }
            for parent in parents.drain(..) {
                let _ = self.debouncer.unwatch(&parent);
            }
            // The directories holding symlinks on the way (git-sync's `current`), and the
            // path's own parent (so its re-creation is seen), non-recursively.
            let mut link_parents: Vec<PathBuf> = given
                .ancestors()
                .filter(|a| {
                    a.symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                })
                .filter_map(|a| a.parent().map(Path::to_path_buf))
                .collect();
            if let Some(parent) = given.parent().filter(|p| !p.as_os_str().is_empty()) {
                link_parents.push(parent.to_path_buf());
            }
            link_parents.sort();
            link_parents.dedup();
            for parent in link_parents {
                if self
                    .debouncer
                    .watch(&parent, RecursiveMode::NonRecursive)
                    .is_ok()
                {
                    parents.push(parent);
                }
            }
            match &target {
                Some(target) => match self.debouncer.watch(target, RecursiveMode::Recursive) {
                    Ok(()) => *watched = Some(target.clone()),
                    Err(err) => {
                        tracing::warn!(path = %given.display(), error = %err, "cannot watch")
                    }
                },
                None => {
                    tracing::warn!(path = %given.display(), "manifest path does not exist (yet); watching its parent")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_temp_files_are_ignored() {
        assert!(is_relevant(Path::new("/m/10-bucket.yaml")));
        assert!(!is_relevant(Path::new("/m/.10-bucket.yaml.swp")));
        assert!(!is_relevant(Path::new("/m/10-bucket.yaml~")));
        assert!(!is_relevant(Path::new("/m/.git/index")));
        assert!(!is_relevant(Path::new("/m/#10-bucket.yaml#")));
        assert!(is_relevant(Path::new(
            "/home/u/.config/sdop/10-bucket.yaml"
        )));
        assert!(!is_relevant_kind(&EventKind::Access(AccessKind::Read)));
        assert!(is_relevant_kind(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
    }
}
