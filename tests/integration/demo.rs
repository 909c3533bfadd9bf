//! What a newcomer runs first: `scripts/demo` end to end, and the README's "Try it by hand"
//! emulator command.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::local_aws::{check_installed, repo_root};

/// Issue #23: the demo converges (exit 0) and shows the final status table once (the
/// `apply --wait` ends with it; a `sdop get` after it printed the same table again).
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
        .filter(|l| l.starts_with("Endpoint/sd-jpstyle") && l.contains(" Ready "))
        .count();
    assert_eq!(ready_rows, 1, "{stdout}");
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
