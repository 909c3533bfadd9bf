//! The built `sdop` binary: exit codes and output of validate, plan and schema.

use std::process::Command;

fn sdop(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sdop"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run sdop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_manifests_and_examples_validate() {
    let (code, stdout, stderr) = sdop(&["validate", "manifests/", "examples/"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("manifest(s) valid"));
}

#[test]
fn plan_of_the_workshop_exits_2_with_a_readable_plan() {
    let (code, stdout, stderr) = sdop(&["plan", "--offline", "manifests/"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("+ s3:bucket"), "{stdout}");
    assert!(stdout.contains("+ sagemaker:endpoint "), "{stdout}");
    assert!(stdout.contains("Plan: "), "{stdout}");
    let (code, json, _) = sdop(&["plan", "--offline", "manifests/", "-o", "json"]);
    assert_eq!(code, 2);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["changes"], true);
    assert!(parsed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["operation"] == "create"));
}

#[test]
fn plan_of_invalid_manifests_exits_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {name: b}\nspec: {bucketName: Bad_Name, region: us-east-1}\n").unwrap();
    let (code, _, stderr) = sdop(&["plan", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.yaml:4:8: Bucket/b: S3 bucket name \"Bad_Name\""),
        "{stderr}"
    );
}

#[test]
fn schema_is_json_with_every_kind() {
    let (code, stdout, _) = sdop(&["schema"]);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(schema["oneOf"].as_array().unwrap().len(), 6);
}
