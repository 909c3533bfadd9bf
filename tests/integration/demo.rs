//! What a newcomer runs first: `scripts/demo` end to end, and the README's "Try it by hand"
//! emulator command.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::local_aws::{check_installed, repo_root};

/// Issue #23: the demo converges (exit 0) and shows the final status table once (the
/// `apply --wait` ends with it; a `sdop get` after it printed the same table again). Issue #24:
/// it shows the evidence bundle's location and the decision.
#[test]
fn the_demo_converges_and_prints_the_final_table_once() {
    let root = repo_root();
    check_installed(&root).unwrap();
    let out = Command::new(root.join("scripts/demo"))
        .current_dir(&root)
        .env("SDOP_BIN", env!("CARGO_BIN_EXE_sdop"))
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("SDOP_STATE_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("demo: OK"), "{stdout}");
    let ready_rows = stdout
        .lines()
        // (`Endpoint/sd-jpstyle-staging` has its own row.)
        .filter(|l| l.starts_with("Endpoint/sd-jpstyle ") && l.contains(" Ready "))
        .count();
    assert_eq!(ready_rows, 1, "{stdout}");
    // Issue #24: the finetune went through staging, evidence and automatic promotion, and the
    // demo says where the evidence bundle is and what was decided.
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no line {label:?} in\n{stdout}"))
            .to_string()
    };
    let bundle = line("evidence bundle   : ");
    assert!(
        bundle.contains("s3://sdop-sd-webui-assets/sdop/evidence/sdop-jpstyle/"),
        "{bundle}"
    );
    let bundle = bundle.trim_start_matches("evidence bundle   : ").trim();
    assert!(
        line("  record          : ").contains(&format!("{bundle}evidence.json sha256:")),
        "{stdout}"
    );
    assert!(
        line("  contact sheet   : ").ends_with(&format!("{bundle}contact-sheet.png")),
        "{stdout}"
    );
    assert_eq!(line("verdict           : "), "verdict           : passed");
    assert!(
        line("decision          : ").starts_with("decision          : version 1 Approved"),
        "{stdout}"
    );
    assert!(
        line("  approved by     : ").contains("Approved by rule (approval: automatic)"),
        "{stdout}"
    );
    assert!(
        line("  in S3           : ").contains("6 images"),
        "{stdout}"
    );
    for resource in ["Endpoint/sd-jpstyle-staging ", "ModelPromotion/jpstyle "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(resource) && l.contains(" Ready ")),
            "{resource}: {stdout}"
        );
    }
}

/// Issue #23: the README's "Try it by hand" starts the emulator with `--quiet`: no line per
/// request in the user's terminal. The command is taken from the README and run (on a free
/// port), then sent a request.
#[test]
fn the_readme_starts_the_emulator_quietly() {
    let root = repo_root();
    check_installed(&root).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let by_hand = &readme[readme.find("### Try it by hand").expect("the section")..];
    let command = by_hand
        .lines()
        .find(|l| l.contains("deploy/local-aws/up "))
        .expect("the emulator's command")
        .trim()
        .trim_end_matches('&')
        .trim();
    assert!(command.contains("--port 5000"), "{command}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let command = command.replace("--port 5000", &format!("--port {port}"));
    let mut child = Command::new("bash")
        .args(["-c", &format!("exec env {command}")])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("http://127.0.0.1:{port}/_sdop/calls"))
        .call()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut logged = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logged)
        .unwrap();
    assert!(!logged.contains("GET /_sdop/calls"), "{logged}");
}
