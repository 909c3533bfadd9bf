//! Issue #13, item 5: a shared state (`--state s3://BUCKET/PREFIX`). CI applies and several
//! daemons see one inventory; its lease is the one writer's lock; a standby shows what the
//! leader records; a new leader cleans up what the old one recorded; a writer whose view is
//! stale never overwrites a newer status. Every test ends with the leak audit.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sdop::manifest::ResourceId;
use sdop::state::{Phase, ResourceStatus};

use crate::support::daemon::{leak_audit, mutations_by, sdop_bin, Daemon};
use crate::support::local_aws::LocalAws;

const WAIT: Duration = Duration::from_secs(60);
const STATE: &str = "s3://sdop-shared-state/team/prod";

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.swp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn bucket(name: &str, bucket: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: Bucket\nmetadata: {{name: {name}}}\nspec:\n  bucketName: {bucket}\n  region: us-east-1\n  deletionPolicy: Delete\n")
}

fn repository(name: &str, repo: &str) -> String {
    format!("apiVersion: sdop/v1alpha1\nkind: ImageRepository\nmetadata: {{name: {name}}}\nspec:\n  repositoryName: {repo}\n  region: us-east-1\n")
}

/// `sdop ARGS --state STATE` as `caller`, with an empty state directory of its own (as on
/// another machine): everything it knows comes from the shared state.
fn sdop(aws: &LocalAws, caller: &str, args: &[&str]) -> Output {
    let local = tempfile::tempdir().unwrap();
    Command::new(sdop_bin())
        .args(args)
        .args(["--state", STATE])
        .env("AWS_ENDPOINT_URL", &aws.endpoint)
        .env("AWS_ACCESS_KEY_ID", caller)
        .env("AWS_SECRET_ACCESS_KEY", "local-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SDOP_STATE_DIR", local.path())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn state_bucket(aws: &LocalAws) {
    aws.s3()
        .await
        .create_bucket()
        .bucket("sdop-shared-state")
        .send()
        .await
        .unwrap();
}

fn listed(daemon: &Daemon, id: &str) -> bool {
    daemon.resource(id).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_and_daemons_share_one_inventory_and_a_new_leader_cleans_up_the_old_ones() {
    let aws = LocalAws::start();
    state_bucket(&aws).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    write(m, "assets.yaml", &bucket("assets", "sdop-shared-assets"));
    write(
        m,
        "repo.yaml",
        &repository("inference", "sd-shared-inference"),
    );
    let manifests = m.to_str().unwrap();

    // A CI apply records into the shared state; another machine's plan reads it: empty.
    let applied = sdop(&aws, "AKIDSHAREDCI", &["apply", manifests]);
    assert!(applied.status.success(), "{}", text(&applied));
    let keys: Vec<String> = aws
        .s3()
        .await
        .list_objects_v2()
        .bucket("sdop-shared-state")
        .prefix("team/prod/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "team/prod/status/Bucket/assets.json",
            "team/prod/status/ImageRepository/inference.json"
        ],
        "one object per status, and the apply released its lease"
    );
    let plan = sdop(&aws, "AKIDSHAREDPLAN", &["plan", manifests]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let got = sdop(&aws, "AKIDSHAREDPLAN", &["get", "-o", "json"]);
    let statuses: Vec<ResourceStatus> = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(statuses.len(), 2, "{}", text(&got));
    assert!(statuses.iter().all(|s| s.phase == Phase::Ready));

    // Two daemons on the shared state: one leads (its lease is the state's lock).
    let local = tempfile::tempdir().unwrap();
    let args = [
        "--state",
        STATE,
        "--lease-ttl",
        "3s",
        "--lease-renew",
        "1s",
        "--prune",
    ];
    let mut a = Daemon::start(&aws, &[m], &local.path().join("a"), "AKIDSHAREDA", &args);
    let deadline = Instant::now() + WAIT;
    while a.status()["daemon"]["role"] != "leader" {
        assert!(Instant::now() < deadline, "A never led:\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    a.wait_ready(&["Bucket/assets", "ImageRepository/inference"], WAIT);
    let b = Daemon::start(&aws, &[m], &local.path().join("b"), "AKIDSHAREDB", &args);
    b.wait_for("B standing by", WAIT, |s| s["daemon"]["role"] == "standby");
    // The standby shows the inventory it reads from the shared state.
    b.wait_ready(&["Bucket/assets", "ImageRepository/inference"], WAIT);
    // ...and serves a read-only plan of it: nothing to do.
    let (code, body) = b.get("/api/v1/plan").unwrap();
    assert_eq!(code, 200, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["changes"], false, "{plan:#}");
    assert_eq!(plan["actions"], serde_json::json!([]), "{plan:#}");

    // A CI apply beside the leader waits for the lease, then refuses naming it, having
    // changed nothing.
    let refused = sdop(
        &aws,
        "AKIDSHAREDCI2",
        &["apply", manifests, "--lock-timeout", "1s"],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("is in use by") && said.contains(&format!("-{}-", a.pid())),
        "{said}"
    );
    assert_eq!(
        mutations_by(&aws, "AKIDSHAREDCI2"),
        0,
        "the refused apply wrote"
    );

    // The leader creates what is added; the standby sees it recorded.
    write(m, "scratch.yaml", &bucket("scratch", "sdop-shared-scratch"));
    a.wait_ready(&["Bucket/scratch"], WAIT);
    b.wait_ready(&["Bucket/scratch"], WAIT);
    assert!(aws.bucket_exists("sdop-shared-scratch").await);
    assert_eq!(
        mutations_by(&aws, "AKIDSHAREDB"),
        0,
        "the standby never writes, AWS or the state"
    );

    // The leader dies; its manifest is removed while nobody leads. The new leader knows the
    // bucket only from what the old one recorded, and prunes it.
    a.kill9();
    std::fs::remove_file(m.join("scratch.yaml")).unwrap();
    let deadline = Instant::now() + WAIT;
    while aws.bucket_exists("sdop-shared-scratch").await {
        assert!(
            Instant::now() < deadline,
            "the new leader did not prune what the old one created:\n{}",
            crate::support::daemon::tail(&b.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.logs().contains("became leader"));
    assert!(mutations_by(&aws, "AKIDSHAREDB") > 0);
    let deadline = Instant::now() + WAIT;
    while listed(&b, "Bucket/scratch") {
        assert!(Instant::now() < deadline, "scratch still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        aws.s3()
            .await
            .head_object()
            .bucket("sdop-shared-state")
            .key("team/prod/status/Bucket/scratch.json")
            .send()
            .await
            .is_err(),
        "the pruned resource's status is gone from the shared state"
    );
    drop(b);
    leak_audit(&aws, &[], &[]).await;
}

/// A writer whose view of a status is older than the shared state's never overwrites it: the
/// write fails (retryably), and so does every later one until the status is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_never_overwrites_a_newer_status() {
    let aws = LocalAws::start();
    state_bucket(&aws).await;
    let ci = sdop::daemon::shared_state::open_with_client(STATE, aws.s3().await).unwrap();
    let other = sdop::daemon::shared_state::open_with_client(STATE, aws.s3().await).unwrap();
    let id = ResourceId::new("Bucket", "assets");
    let mut status = ResourceStatus::new(&id);

    // No write without the lease.
    let refused = ci.save(&status).unwrap_err().to_string();
    assert!(refused.contains("does not hold the lease"), "{refused}");

    let held = ci
        .lock("ci", Duration::from_secs(1), &|_| {})
        .expect("lease");
    assert!(ci.load(&id).unwrap().is_none());
    status.event("written by ci");
    ci.save(&status).unwrap();
    // A second writer waits for the lease, then refuses naming its holder.
    let busy = other
        .lock("other", Duration::from_millis(500), &|_| {})
        .unwrap_err()
        .to_string();
    assert!(busy.contains("is in use by ci"), "{busy}");
    drop(held);

    let held = other
        .lock("other", Duration::from_secs(1), &|_| {})
        .expect("released at once");
    let mut theirs = other.load(&id).unwrap().unwrap();
    theirs.event("written by other");
    other.save(&theirs).unwrap();
    drop(held);

    // ci's last view is older than what other wrote.
    let _held = ci.lock("ci", Duration::from_secs(1), &|_| {}).unwrap();
    status.event("stale write");
    for attempt in 0..2 {
        let err = ci.save(&status).unwrap_err();
        assert_eq!(err.class(), sdop::error::ErrorClass::Retryable);
        assert!(
            err.to_string().contains("written by another sdop"),
            "attempt {attempt}: {err}"
        );
    }
    let fresh = ci.load(&id).unwrap().unwrap();
    assert_eq!(
        fresh.events.back().unwrap().message,
        "written by other",
        "nothing stale was written"
    );
    ci.save(&fresh).unwrap();
    assert_eq!(ci.load_all().unwrap().len(), 1);
    ci.remove(&id).unwrap();
    assert!(other.load(&id).unwrap().is_none());
}
