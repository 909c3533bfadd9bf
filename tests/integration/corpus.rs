//! The invalid-manifest corpus: every `tests/corpus/invalid/NAME.yaml` (or directory `NAME/`)
//! must fail with exactly the diagnostics in `NAME.expected`; every file in
//! `tests/corpus/valid/` must pass. Hostile inputs too big to commit are generated here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sdop::diagnostics::render;
use sdop::manifest::load_paths;

fn corpus(dir: &str) -> PathBuf {
    Path::new("tests/corpus").join(dir)
}

fn in_repo_root() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
}

#[test]
fn every_invalid_manifest_fails_with_its_expected_message() {
    in_repo_root();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "expected"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "corpus has only {} cases", cases.len());
    let mut failures = Vec::new();
    for expected_file in &cases {
        let stem = expected_file.with_extension("");
        let input = if stem.is_dir() {
            stem.clone()
        } else {
            stem.with_extension("yaml")
        };
        assert!(
            input.exists(),
            "{} has no input {}",
            expected_file.display(),
            input.display()
        );
        let expected = std::fs::read_to_string(expected_file).unwrap();
        let loaded = load_paths(std::slice::from_ref(&input));
        let actual = render(&loaded.diagnostics);
        if actual.trim_end() != expected.trim_end() {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- actual\n{}",
                input.display(),
                expected.trim_end(),
                actual
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus case(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_valid_manifest_passes() {
    in_repo_root();
    let loaded = load_paths(&[corpus("valid")]);
    assert!(loaded.is_valid(), "{}", render(&loaded.diagnostics));
}

fn assert_rejected_fast(path: &Path, needle: &str) {
    let started = Instant::now();
    let loaded = load_paths(&[path.to_path_buf()]);
    let elapsed = started.elapsed();
    let text = render(&loaded.diagnostics);
    assert!(text.contains(needle), "{text}");
    assert!(loaded.manifests.is_empty());
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_50_mb_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.yaml");
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    let body = line.repeat(50 * 1024 * 1024 / line.len());
    std::fs::write(&file, body).unwrap();
    assert_rejected_fast(
        &file,
        "huge.yaml:1:1: file is 50.0 MiB; manifest files are limited to 4 MiB",
    );
}

#[test]
fn a_big_alias_bomb_within_the_size_limit_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.yaml");
    let mut text = String::from("apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: bomb}\nspec:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..40 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("  a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    std::fs::write(&file, text).unwrap();
    assert_rejected_fast(&file, "bomb.yaml:");
}

#[test]
fn deep_nesting_near_the_size_limit_is_rejected_without_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: deep}}\nspec: {}",
            "[".repeat(3_000_000)
        ),
    )
    .unwrap();
    assert_rejected_fast(&file, "deep.yaml:");
}

/// Every object a registered kind emits (for the valid corpus and the examples, planned
/// offline) is a declared object type with an adapter: a kind emitting something sdop cannot
/// converge fails here, not in a user's apply.
#[tokio::test]
async fn the_valid_corpus_emits_every_object_type() {
    in_repo_root();
    // The valid corpus, and each example on its own (examples are independent: two of them
    // may name their resources alike).
    let mut sets = vec![corpus("valid")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir("examples")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    examples.sort();
    sets.extend(examples);
    let mut kinds = std::collections::BTreeSet::new();
    let mut emitted = std::collections::BTreeSet::new();
    for set in sets {
        let loaded = load_paths(std::slice::from_ref(&set));
        assert!(
            loaded.is_valid(),
            "{}: {}",
            set.display(),
            render(&loaded.diagnostics)
        );
        kinds.extend(loaded.manifests.iter().map(|m| m.handler.kind()));
        let nothing = std::collections::HashMap::new();
        let plan = sdop::engine::plan_all(
            &loaded.manifests,
            &loaded.graph,
            &sdop::engine::cloud::Offline::default(),
            &nothing,
        )
        .await
        .unwrap();
        // Every type has its adapter by construction (`aws::adapters::adapter` matches them
        // all); here the corpus is held to emitting each one, so each is planned somewhere.
        emitted.extend(plan.actions.iter().map(|a| a.aws_type));
    }
    assert_eq!(
        kinds.len(),
        sdop::kinds::REGISTRY.len(),
        "the corpus covers every kind: {kinds:?}"
    );
    let missing: Vec<_> = sdop::model::object::AwsType::ALL
        .into_iter()
        .filter(|t| !emitted.contains(t))
        .collect();
    assert!(missing.is_empty(), "no valid manifest emits {missing:?}");
}
