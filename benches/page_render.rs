//! The status page's render time and weight (issue #25): `GET /`'s HTML for N resources, from
//! a daemon view like a busy workshop's (every status with its 50 events, histories, outputs,
//! a manifest commit each, a plan's drift), rendered by `sdop::daemon::page::index` alone (no
//! HTTP, no AWS, no git: those are cached or read before rendering).
//!
//! `cargo bench --bench page_render` (optionally `-- 100 1000` for other sizes). Prints the
//! best and median time of 50 renders and the page's size in bytes; exits 1 when the median
//! for 100 resources is 50 ms or more.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use sdop::daemon::http::{Declared, Role, View};
use sdop::daemon::page::{self, Drift, Index};
use sdop::manifest::ResourceId;
use sdop::state::{Phase, ResourceStatus};

const KINDS: [&str; 5] = [
    "DreamboothJob",
    "ModelArchive",
    "Endpoint",
    "ModelPromotion",
    "Endpoint",
];

fn view(n: usize) -> (View, HashMap<PathBuf, String>, Drift) {
    let mut view = View::new("bench-host-1-abcd".into(), vec!["manifests/".into()]);
    view.role = Role::Leader;
    view.synced = true;
    view.diagnostics = vec!["manifests/bad.yaml:4:7: Endpoint/typo: unknown field `tagz`".into()];
    let mut commits = HashMap::new();
    let mut pending = BTreeMap::new();
    for i in 0..n {
        let chain = i / KINDS.len();
        let kind = KINDS[i % KINDS.len()];
        let name = match i % KINDS.len() {
            2 => format!("style-{chain}-staging"),
            _ => format!("style-{chain}"),
        };
        let id = ResourceId::new(kind, &name);
        let mut status = ResourceStatus::new(&id);
        let (phase, reason, message) = match i % 17 {
            3 => (Phase::Failed, "Failed", format!("training failed: AlgorithmError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.76 GiB total capacity; 11.93 GiB already allocated) in {name}")),
            7 => (Phase::Progressing, "Progressing", "sagemaker:endpoint: Updating (rolling out sdop-config-2)".to_string()),
            11 => (Phase::Pending, "WaitingForDependency", format!("waiting for ModelArchive/style-{chain} (Progressing: uploading part 12 of 40)")),
            _ => (Phase::Ready, "Converged", "all AWS objects match the manifest".to_string()),
        };
        status.set_phase(phase, reason, message);
        for e in 0..50 {
            status.event(format!(
                "pass {e}: sagemaker:endpoint sdop-{name} in sync; smoke check passed in 41.2 s"
            ));
        }
        for h in 0..5 {
            status.remember(format!("serving sdop-{name}-{h} (model data s3://sdop-bench/assets/{name}/model.tar.gz, ModelPromotion/style-{chain} version {h} (approved: alice: looks right))"));
        }
        for (k, v) in [
            ("endpointName", format!("sdop-{name}")),
            ("hourlyCost", "0.9400".to_string()),
            (
                "modelData",
                format!("s3://sdop-bench/assets/{name}/model.tar.gz"),
            ),
            ("approvedVersion", "4".to_string()),
            ("candidateVersion", "5".to_string()),
            ("candidateDecision", "PendingManualApproval".to_string()),
            ("verdict", "passed".to_string()),
        ] {
            status.outputs.insert(k.into(), v);
        }
        if i % 13 == 5 {
            pending.insert(id.clone(), 2);
        }
        let file = PathBuf::from(format!("manifests/chain-{chain}.yaml"));
        commits.insert(
            file.clone(),
            format!("4f2a9c1\tRetrain style-{chain} with 40 more images"),
        );
        view.declared.push(Declared {
            id: id.clone(),
            file,
            line: 1 + 20 * (i % KINDS.len()),
            promotion: (i % KINDS.len() == 4).then(|| format!("style-{chain}")),
            expected_checkpoint: (kind == "DreamboothJob").then(|| format!("{name}_800.ckpt")),
        });
        view.statuses.insert(id, status);
    }
    let drift = Drift::Known {
        at: sdop::state::now(),
        pending,
    };
    (view, commits, drift)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![100] } else { sizes };
    let mut over = false;
    for n in sizes {
        let (view, commits, drift) = view(n);
        let render = || {
            page::index(&Index {
                view: &view,
                commits: &commits,
                drift: &drift,
                now: SystemTime::now(),
            })
            .into_string()
        };
        let html = render();
        assert_eq!(html.matches("data-resource=").count(), n);
        let mut times: Vec<Duration> = (0..50)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(render());
                start.elapsed()
            })
            .collect();
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = times[times.len() / 2];
        println!(
            "page_render: {n} resources: best {:.2} ms, median {:.2} ms; page {} bytes",
            ms(times[0]),
            ms(median),
            html.len()
        );
        over |= n == 100 && median >= Duration::from_millis(50);
    }
    if over {
        eprintln!("page_render: FAILED: 100 resources took 50 ms or more");
        std::process::exit(1);
    }
}
