//! The daemon's desired state across edits (pure). A file that stops parsing keeps its
//! resources on their last good spec, with the problem attached; a resource that disappears
//! from a file that still parses was deleted. What changed between two loads, plus everything
//! that depends on it, is what the daemon reconciles at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::manifest::graph;
use crate::manifest::{Loaded, Manifest, ResourceId};

/// What the daemon converges towards after one (re)load.
#[derive(Debug, Default)]
pub struct Desired {
    /// Valid manifests plus last-good stand-ins, with their graph. `failed_files` and
    /// `diagnostics` are the fresh load's, so pruning stays off while anything is broken.
    pub loaded: Loaded,
    /// Resources kept on their last good spec, with the problem that keeps them there.
    pub stale: BTreeMap<ResourceId, String>,
}

/// Merges a fresh load with the last effective one.
pub fn merge_last_good(fresh: Loaded, last: &Loaded) -> Desired {
    let valid = fresh.valid_subset();
    let valid_ids: HashSet<&ResourceId> = valid.manifests.iter().map(|m| &m.id).collect();
    let named_by_problem: HashSet<String> = fresh
        .diagnostics
        .iter()
        .filter_map(|d| d.resource.clone())
        .collect();
    let parsed_but_held_back: HashSet<&ResourceId> =
        fresh.manifests.iter().map(|m| &m.id).collect();
    // A failed path may be a directory (a manifest path that vanished mid git-sync swap): every
    // file under it counts as failed, never as deleted.
    let failed = |file: &Path| fresh.failed_files.iter().any(|f| file.starts_with(f));
    let mut kept: Vec<Manifest> = last
        .manifests
        .iter()
        .filter(|m| !valid_ids.contains(&m.id))
        .filter(|m| {
            failed(&m.origin.file)
                || named_by_problem.contains(&m.id.to_string())
                || parsed_but_held_back.contains(&m.id)
        })
        .cloned()
        .collect();
    // A stand-in may reference something that is gone now: drop those until the graph holds.
    let (manifests, graph) = loop {
        let mut all = valid.manifests.clone();
        all.extend(kept.iter().cloned());
        let (graph, problems) = graph::build(&all);
        let broken: HashSet<String> = problems.into_iter().filter_map(|d| d.resource).collect();
        let before = kept.len();
        kept.retain(|m| !broken.contains(&m.id.to_string()));
        if kept.len() == before || broken.is_empty() {
            break (all, graph);
        }
    };
    let stale = kept
        .iter()
        .map(|m| (m.id.clone(), problem_of(m, &fresh)))
        .collect();
    Desired {
        loaded: Loaded {
            manifests,
            diagnostics: fresh.diagnostics,
            failed_files: fresh.failed_files,
            graph,
        },
        stale,
    }
}

fn problem_of(manifest: &Manifest, fresh: &Loaded) -> String {
    let id = manifest.id.to_string();
    let own: Vec<String> = fresh
        .diagnostics
        .iter()
        .filter(|d| {
            d.resource.as_deref() == Some(id.as_str())
                || (d.resource.is_none() && d.file == manifest.origin.file)
        })
        .map(|d| d.to_string())
        .collect();
    let mut text = if own.is_empty() {
        "a resource it references has an invalid manifest".to_string()
    } else {
        own.join("; ")
    };
    text.insert_str(0, "manifest invalid, running on its last good spec: ");
    text
}

/// What a reload changed: resources new or with a different spec, and resources removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub changed: BTreeSet<ResourceId>,
    pub removed: BTreeSet<ResourceId>,
}

/// Compares two effective states, plus the resources whose manifest file or local files are
/// among `touched` paths (a re-saved file, a changed local checkpoint).
pub fn changes(old: &Loaded, new: &Loaded, touched: &[PathBuf]) -> Changes {
    let old_hashes: BTreeMap<&ResourceId, &str> = old
        .manifests
        .iter()
        .map(|m| (&m.id, m.spec_hash.as_str()))
        .collect();
    let mut changed = BTreeSet::new();
    for m in &new.manifests {
        let touched_here = touched.iter().any(|t| {
            *t == m.origin.file
                || m.local_files
                    .values()
                    .any(|f| t.starts_with(&f.resolved) || f.resolved.starts_with(t))
        });
        if touched_here || old_hashes.get(&m.id) != Some(&m.spec_hash.as_str()) {
            changed.insert(m.id.clone());
        }
    }
    let new_ids: HashSet<&ResourceId> = new.manifests.iter().map(|m| &m.id).collect();
    let removed = old
        .manifests
        .iter()
        .filter(|m| !new_ids.contains(&m.id))
        .map(|m| m.id.clone())
        .collect();
    Changes { changed, removed }
}

/// `ids` and everything that depends on them, transitively.
pub fn with_dependents(loaded: &Loaded, ids: &BTreeSet<ResourceId>) -> BTreeSet<ResourceId> {
    let mut out = ids.clone();
    loop {
        let before = out.len();
        for (i, m) in loaded.manifests.iter().enumerate() {
            if out.contains(&m.id) {
                continue;
            }
            let depends = loaded
                .graph
                .dependencies(i)
                .iter()
                .any(|&d| out.contains(&loaded.manifests[d].id));
            if depends {
                out.insert(m.id.clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Resources that reference `id` directly.
pub fn dependents_of(loaded: &Loaded, id: &ResourceId) -> Vec<ResourceId> {
    loaded
        .manifests
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            loaded
                .graph
                .dependencies(*i)
                .iter()
                .any(|&d| loaded.manifests[d].id == *id)
        })
        .map(|(_, m)| m.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::load::load_str;
    use crate::manifest::load_paths;

    const BUCKET: &str = "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: assets}\nspec: {bucketName: sdop-test-assets, region: us-east-1}\n";
    const REPO: &str = "apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {name: inference}\nspec: {repositoryName: sd-inference, region: us-east-1}\n";

    fn load(files: &[(&str, &str)]) -> Loaded {
        // One string per file, as the loader sees them; join them through load_str per file.
        let mut all = Loaded::default();
        for (file, text) in files {
            let one = load_str(file, text);
            all.manifests.extend(one.manifests);
            all.diagnostics.extend(one.diagnostics);
            all.failed_files.extend(one.failed_files);
        }
        let (graph, problems) = graph::build(&all.manifests);
        all.graph = graph;
        all.diagnostics.extend(problems);
        all
    }

    fn ids(loaded: &Loaded) -> Vec<String> {
        loaded.manifests.iter().map(|m| m.id.to_string()).collect()
    }

    #[test]
    fn a_broken_file_keeps_its_resources_on_the_last_good_spec() {
        let good = merge_last_good(
            load(&[("a.yaml", BUCKET), ("b.yaml", REPO)]),
            &Loaded::default(),
        );
        assert!(good.stale.is_empty());
        let broken = merge_last_good(
            load(&[
                ("a.yaml", "kind: Bucket\nmetadata: {name: [unclosed\n"),
                ("b.yaml", REPO),
            ]),
            &good.loaded,
        );
        assert_eq!(
            ids(&broken.loaded),
            ["ImageRepository/inference", "Bucket/assets"]
        );
        let why = &broken.stale[&ResourceId::new("Bucket", "assets")];
        assert!(why.contains("a.yaml:"), "{why}");
        assert!(why.contains("last good spec"), "{why}");
        assert_eq!(broken.loaded.failed_files, [PathBuf::from("a.yaml")]);
        // Fixing it resumes from the file, not the stand-in.
        let fixed = merge_last_good(
            load(&[("a.yaml", BUCKET), ("b.yaml", REPO)]),
            &broken.loaded,
        );
        assert!(fixed.stale.is_empty());
        assert!(fixed.loaded.failed_files.is_empty());
    }

    #[test]
    fn a_field_error_keeps_only_that_resource_and_names_it() {
        let good = merge_last_good(load(&[("a.yaml", BUCKET)]), &Loaded::default());
        let bad = BUCKET.replace("sdop-test-assets", "Bad_Name");
        let broken = merge_last_good(load(&[("a.yaml", &bad)]), &good.loaded);
        assert_eq!(ids(&broken.loaded), ["Bucket/assets"]);
        assert_eq!(
            broken.loaded.manifests[0].spec_hash, good.loaded.manifests[0].spec_hash,
            "runs on the last good spec"
        );
        let why = &broken.stale[&ResourceId::new("Bucket", "assets")];
        assert!(
            why.contains("a.yaml:4:") && why.contains("Bad_Name"),
            "{why}"
        );
    }

    #[test]
    fn a_resource_removed_from_a_good_file_is_removed() {
        let both = format!("{BUCKET}---\n{REPO}");
        let good = merge_last_good(load(&[("a.yaml", &both)]), &Loaded::default());
        let after = merge_last_good(load(&[("a.yaml", BUCKET)]), &good.loaded);
        assert_eq!(ids(&after.loaded), ["Bucket/assets"]);
        let delta = changes(&good.loaded, &after.loaded, &[]);
        assert_eq!(
            delta.removed.into_iter().collect::<Vec<_>>(),
            [ResourceId::new("ImageRepository", "inference")]
        );
        assert!(delta.changed.is_empty());
    }

    #[test]
    fn a_vanished_directory_is_not_a_deletion() {
        let good = merge_last_good(
            load(&[("m/a.yaml", BUCKET), ("m/b.yaml", REPO)]),
            &Loaded::default(),
        );
        let vanished = load_paths(&[PathBuf::from("/nonexistent-sdop-test/m")]);
        assert_eq!(vanished.failed_files.len(), 1);
        // Same shape as the manifests' own directory: re-root the failure at "m".
        let fresh = Loaded {
            failed_files: vec![PathBuf::from("m")],
            diagnostics: vanished.diagnostics,
            ..Loaded::default()
        };
        let after = merge_last_good(fresh, &good.loaded);
        assert_eq!(ids(&after.loaded).len(), 2, "kept on their last good specs");
        assert!(changes(&good.loaded, &after.loaded, &[]).removed.is_empty());
    }

    #[test]
    fn a_file_that_never_parsed_has_no_stand_in() {
        let first = merge_last_good(
            load(&[("a.yaml", "kind: [\n"), ("b.yaml", REPO)]),
            &Loaded::default(),
        );
        assert_eq!(ids(&first.loaded), ["ImageRepository/inference"]);
        assert!(first.stale.is_empty());
        assert!(!first.loaded.failed_files.is_empty());
    }

    #[test]
    fn changes_are_new_specs_and_touched_files_plus_dependents() {
        let stack = "apiVersion: sdop/v1alpha1\nkind: ModelArchive\nmetadata: {name: base}\nspec:\n  output: s3://sdop-test-assets/models/model.tar.gz\n  sources:\n    - {s3: 's3://sdop-test-assets/in/model.ckpt', path: Stable-diffusion/}\n";
        let old = merge_last_good(
            load(&[("a.yaml", BUCKET), ("p.yaml", stack)]),
            &Loaded::default(),
        );
        assert!(
            old.loaded.diagnostics.is_empty(),
            "{:?}",
            old.loaded.diagnostics
        );
        let edited = BUCKET.replace("spec: {", "spec: {tags: {team: sd}, ");
        let new = merge_last_good(load(&[("a.yaml", &edited), ("p.yaml", stack)]), &old.loaded);
        let delta = changes(&old.loaded, &new.loaded, &[]);
        assert_eq!(
            delta
                .changed
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            ["Bucket/assets"]
        );
        let affected = with_dependents(&new.loaded, &delta.changed);
        assert_eq!(affected.len(), 2, "{affected:?}");
        assert_eq!(
            dependents_of(&new.loaded, &ResourceId::new("Bucket", "assets")),
            [ResourceId::new("ModelArchive", "base")]
        );
        // Re-saving a file unchanged still reconciles what it declares.
        let touched = changes(&new.loaded, &new.loaded, &[PathBuf::from("p.yaml")]);
        assert_eq!(
            touched
                .changed
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            ["ModelArchive/base"]
        );
    }
}
