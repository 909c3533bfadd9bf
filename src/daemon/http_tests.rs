//! The listener's handlers over a [`View`] and a fake [`Backend`] (no AWS): the pages, the
//! refusal of writes, the token, and which S3 keys an evidence image may read.

use super::*;
use crate::state::{Event, Phase};

const BUCKET: &str = "sdop-example-promote";
const PREFIX: &str = "evidence/portrait/abc123/";

/// Plans what it is given and serves the objects it holds; remembers every object asked for.
#[derive(Default)]
struct Fake {
    plan: Mutex<Vec<crate::engine::plan::Action>>,
    objects: Mutex<HashMap<(String, String), Vec<u8>>>,
    asked: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl Backend for Fake {
    async fn plan(&self) -> Result<(Plan, Vec<String>)> {
        Ok((
            Plan {
                actions: self.plan.lock().unwrap().clone(),
                capacity: Vec::new(),
            },
            Vec::new(),
        ))
    }

    async fn object(
        &self,
        _region: Option<&str>,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.asked
            .lock()
            .unwrap()
            .push((bucket.to_string(), key.to_string()));
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(bucket.to_string(), key.to_string()))
            .cloned())
    }
}

fn status(kind: &str, name: &str, phase: Phase, reason: &str, message: &str) -> ResourceStatus {
    let mut s = ResourceStatus::new(&ResourceId::new(kind, name));
    s.set_phase(phase, reason, message);
    s
}

fn declared(kind: &str, name: &str, line: usize) -> Declared {
    Declared {
        id: ResourceId::new(kind, name),
        file: PathBuf::from("examples/promote/promote.yaml"),
        line,
        promotion: (kind == "Endpoint" && name == "portrait").then(|| "portrait".to_string()),
        expected_checkpoint: (kind == "DreamboothJob").then(|| format!("{name}-model_800.ckpt")),
    }
}

const LONG_ERROR: &str = "training failed: AlgorithmError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.76 GiB total capacity; 11.93 GiB already allocated); Traceback (most recent call last): File \"/opt/ml/code/train_dreambooth.py\", line 812, in main: loss.backward() <script>alert(1)</script> and it goes on well past any column a table would cut it at";

/// The promotion chain, declared in dependency order, with a failed job beside it and an
/// invalid manifest.
fn view() -> View {
    let mut view = View::new("host-1-abcd".into(), vec!["examples/promote".into()]);
    view.role = Role::Leader;
    view.synced = true;
    view.diagnostics =
        vec!["examples/promote/bad.yaml:4:7: Endpoint/typo: unknown field `tagz`".to_string()];
    let mut statuses = vec![
        status(
            "Bucket",
            "example-promote",
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        ),
        status(
            "DreamboothJob",
            "portrait",
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        ),
        status(
            "ModelArchive",
            "portrait",
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        ),
        status(
            "Endpoint",
            "portrait-staging",
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        ),
        status(
            "ModelPromotion",
            "portrait",
            Phase::Ready,
            "Converged",
            "version 2 Approved",
        ),
        status(
            "Endpoint",
            "portrait",
            Phase::Ready,
            "Converged",
            "all AWS objects match the manifest",
        ),
        status(
            "DreamboothJob",
            "broken",
            Phase::Failed,
            "Failed",
            LONG_ERROR,
        ),
    ];
    let promotion = &mut statuses[4];
    for (k, v) in [
        ("approvedVersion", "2"),
        ("approvedBy", "sdop (automatic: evidence passed)"),
        ("candidateVersion", "2"),
        ("candidateDecision", "Approved"),
        ("evidence", &format!("s3://{BUCKET}/{PREFIX}evidence.json")),
        (
            "contactSheet",
            &format!("s3://{BUCKET}/{PREFIX}contact-sheet.png"),
        ),
        ("verdict", "passed"),
    ] {
        promotion.outputs.insert(k.to_string(), v.to_string());
    }
    promotion.remember("promoted version 2 for production (s3://x/model.tar.gz; approved: sdop)");
    let production = &mut statuses[5];
    production
        .outputs
        .insert("hourlyCost".into(), "1.0530".into());
    production.history.push(Event {
        at: "2026-12-01T10:00:00Z".into(),
        message: "serving sdop-example-portrait-1 (model data s3://x/v1.tar.gz, ModelPromotion/portrait version 1 (approved: sdop))".into(),
    });
    production.history.push(Event {
        at: "2026-12-02T10:00:00Z".into(),
        message: "serving sdop-example-portrait-2 (model data s3://x/v2.tar.gz, ModelPromotion/portrait version 2 (approved: sdop))".into(),
    });
    production.event("smoke check sdop-example-portrait passed");
    view.statuses = statuses.into_iter().map(|s| (s.id(), s)).collect();
    view.declared = vec![
        declared("Bucket", "example-promote", 10),
        declared("DreamboothJob", "portrait", 40),
        declared("ModelArchive", "portrait", 60),
        declared("Endpoint", "portrait-staging", 80),
        declared("ModelPromotion", "portrait", 110),
        declared("Endpoint", "portrait", 130),
        declared("DreamboothJob", "broken", 150),
    ];
    view
}

fn case(
    prompt: &str,
    seed: u64,
    key: Option<&str>,
    error: Option<&str>,
) -> sdop_evidence::CaseRecord {
    let mut measurement = sdop_evidence::ImageMeasurement::absent();
    if key.is_some() {
        measurement.bytes = 4;
        measurement.decoded = true;
        measurement.width = Some(512);
        measurement.height = Some(512);
        measurement.expected_size = Some(true);
    }
    sdop_evidence::CaseRecord {
        prompt: prompt.into(),
        negative_prompt: None,
        seed,
        width: 512,
        height: 512,
        key: key.map(str::to_string),
        latency_seconds: Some(2.5),
        cost_usd: None,
        measurement,
        error: error.map(str::to_string),
        scores: Default::default(),
        score_errors: Default::default(),
    }
}

/// The record: case 0 in the bundle, case 1 naming a key outside it, case 2 without an image.
fn record() -> Vec<u8> {
    let record = sdop_evidence::EvidenceRecord::new(
        sdop_evidence::Evaluation {
            candidate: "abc123".into(),
            baseline: Some("version 1 (def456)".into()),
            endpoint: "sdop-example-portrait-staging".into(),
            instance_type: "ml.g4dn.2xlarge".into(),
            price_per_hour_usd: Some(1.053),
        },
        vec![
            case(
                "photo of sksportrait person",
                1,
                Some(&format!("{PREFIX}images/case-0.png")),
                None,
            ),
            case(
                "photo of sksportrait person, smiling",
                2,
                Some("secrets/../../credentials.png"),
                None,
            ),
            case(
                "photo of sksportrait person, at night",
                3,
                None,
                Some("no result within 600 s"),
            ),
        ],
        Default::default(),
    );
    serde_json::to_vec(&record).unwrap()
}

struct Served {
    url: String,
    fake: Arc<Fake>,
    _runtime: tokio::runtime::Runtime,
}

fn serve(view: View, token: Option<&str>) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = Arc::new(Fake::default());
    {
        let mut objects = fake.objects.lock().unwrap();
        objects.insert((BUCKET.into(), format!("{PREFIX}evidence.json")), record());
        objects.insert(
            (BUCKET.into(), format!("{PREFIX}contact-sheet.png")),
            b"\x89PNG sheet".to_vec(),
        );
        objects.insert(
            (BUCKET.into(), format!("{PREFIX}images/case-0.png")),
            b"\x89PNG case 0".to_vec(),
        );
        objects.insert(
            (BUCKET.into(), "credentials.png".into()),
            b"not to be served".to_vec(),
        );
    }
    let state = HttpState::new(
        Arc::new(RwLock::new(view)),
        Arc::new(Metrics::new()),
        fake.clone(),
        token.map(|t| Token::new(t.as_bytes())),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, router(state)).await });
    Served {
        url,
        fake,
        _runtime: runtime,
    }
}

struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    Answer {
        code: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: response.body_mut().read_to_vec().unwrap(),
    }
}

fn get(served: &Served, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent().get(format!("{}{path}", served.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call().unwrap())
}

/// The text of a page without its markup, to read as a person would.
fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_status_page_shows_every_resource_in_dependency_order_and_what_needs_attention() {
    let served = serve(view(), None);
    let page = get(&served, "/", &[]);
    assert_eq!(page.code, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text();
    // Every resource with its phase, in the graph's order: train, archive, staging,
    // promotion, production.
    let order: Vec<usize> = [
        "data-resource=\"Bucket/example-promote\" data-phase=\"Ready\"",
        "data-resource=\"DreamboothJob/portrait\" data-phase=\"Ready\"",
        "data-resource=\"ModelArchive/portrait\" data-phase=\"Ready\"",
        "data-resource=\"Endpoint/portrait-staging\" data-phase=\"Ready\"",
        "data-resource=\"ModelPromotion/portrait\" data-phase=\"Ready\"",
        "data-resource=\"Endpoint/portrait\" data-phase=\"Ready\"",
        "data-resource=\"DreamboothJob/broken\" data-phase=\"Failed\"",
    ]
    .iter()
    .map(|needle| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {html}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let text = visible(&html);
    // The failure in full, escaped, twice (needs attention, its card); never cut.
    assert_eq!(text.matches(LONG_ERROR).count(), 2, "{text}");
    assert!(!html.contains("<script>alert(1)"), "escaped");
    // Needs attention: the failure and the invalid manifest with FILE:LINE:COL.
    assert!(html.contains("data-attention=\"Failed\""));
    assert!(
        text.contains(
            "Invalid manifest : examples/promote/bad.yaml:4:7: Endpoint/typo: unknown field `tagz`"
        ),
        "{text}"
    );
    assert!(html.contains("data-health=\"b-bad\""), "{html}");
    assert!(text.contains("2 problem(s)"), "{text}");
    // Per-kind counts, the live version, the cost, the promotion's decision.
    assert!(
        text.contains("DreamboothJob 2 · 1 Failed · 1 Ready"),
        "{text}"
    );
    assert!(
        text.contains(
            "live model version 2 of ModelPromotion/portrait (served since 2026-12-02T10:00:00Z)"
        ),
        "{text}"
    );
    assert!(text.contains("cost $1.05/h"), "{text}");
    assert!(text.contains("endpoints $1.05/h"), "{text}");
    assert!(
        text.contains("candidate version 2: Approved · evidence passed"),
        "{text}"
    );
    assert!(
        text.contains("manifest promote/promote.yaml:130 "),
        "{text}"
    );
    // Nothing in progress: no refresh.
    assert!(!html.contains("http-equiv=\"refresh\""));
}

#[test]
fn a_page_with_something_in_progress_refreshes_itself_and_shows_its_progress() {
    let mut view = view();
    let job = view
        .statuses
        .get_mut(&ResourceId::new("DreamboothJob", "portrait"))
        .unwrap();
    job.set_phase(
        Phase::Progressing,
        "Progressing",
        "sagemaker:training-job sdop-example-promote: InProgress (Training)",
    );
    // The last run's output: the spec's checkpoint is shown.
    job.outputs.insert(
        "expectedCheckpoint".into(),
        "portrait-model_700.ckpt".into(),
    );
    let served = serve(view, None);
    let html = get(&served, "/", &[]).text();
    assert!(
        html.contains("http-equiv=\"refresh\" content=\"5\""),
        "{html}"
    );
    let text = visible(&html);
    assert!(
        text.contains("progress training: Training for ")
            && text.contains("expected checkpoint portrait-model_800.ckpt"),
        "{text}"
    );
}

#[test]
fn awaiting_approval_suspended_and_drift_need_attention() {
    let mut view = view();
    view.diagnostics.clear();
    view.statuses
        .retain(|id, _| id != &ResourceId::new("DreamboothJob", "broken"));
    let promotion = view
        .statuses
        .get_mut(&ResourceId::new("ModelPromotion", "portrait"))
        .unwrap();
    promotion
        .outputs
        .insert("awaitingApproval".into(), "3".into());
    view.statuses
        .get_mut(&ResourceId::new("Bucket", "example-promote"))
        .unwrap()
        .set_phase(
            Phase::Pending,
            "Suspended",
            "spec.suspend: true; 1 change not applied",
        );
    let served = serve(view, None);
    let production = ResourceId::new("Endpoint", "portrait");
    let want = crate::model::object::DesiredObject::new(
        crate::model::object::AwsType::SageMakerModel,
        crate::model::object::ObjectName::Known("sdop-example-portrait-3".into()),
        crate::model::object::Mutability::Replace,
    );
    served
        .fake
        .plan
        .lock()
        .unwrap()
        .push(crate::engine::plan::create_action(
            &production,
            &want,
            "does not exist".into(),
        ));
    // A resource's page makes the plan (and caches it); the status page reads drift from it.
    let detail = get(&served, "/resources/Endpoint/portrait", &[]).text();
    assert!(
        detail.contains("data-plan=\"changes\"")
            && detail.contains("  + sagemaker:model sdop-example-portrait-3  (does not exist)"),
        "{detail}"
    );
    let html = get(&served, "/", &[]).text();
    let text = visible(&html);
    assert!(
        html.contains("data-attention=\"Awaiting approval\""),
        "{html}"
    );
    assert!(
        text.contains("`sdop approve ModelPromotion/portrait 3 --reason ...`"),
        "{text}"
    );
    assert!(html.contains("data-attention=\"Suspended\""), "{html}");
    assert!(html.contains("data-attention=\"Drifted\""), "{html}");
    assert!(text.contains("drifted: 1 pending change(s)"), "{text}");
    assert!(html.contains("data-health=\"b-wait\""), "{html}");
    // Settled: waiting for a person or suspended does not refresh the page.
    assert!(!html.contains("http-equiv=\"refresh\""));
}

#[test]
fn a_resource_page_has_its_history_events_plan_outputs_and_evidence() {
    let served = serve(view(), None);
    let page = get(&served, "/resources/ModelPromotion/portrait", &[]);
    assert_eq!(page.code, 200);
    let html = page.text();
    let text = visible(&html);
    assert!(html.contains("data-plan=\"empty\""), "{html}");
    assert!(text.contains("promoted version 2 for production"), "{text}");
    assert!(html.contains("data-list=\"history\"") && html.contains("data-list=\"events\""));
    assert!(text.contains("approvedVersion 2"), "{text}");
    // The evidence: verdict, contact sheet, each case with prompt, seed, measurements and
    // its own verdict; an image only for a case whose key is in the bundle.
    assert!(
        html.contains("data-verdict=\"failed\""),
        "case 2 has no image: {html}"
    );
    assert!(html.contains("src=\"/evidence/ModelPromotion/portrait/contact-sheet.png\""));
    assert!(html.contains("src=\"/evidence/ModelPromotion/portrait/case/0.png\""));
    assert!(
        !html.contains("/case/1.png") && !html.contains("/case/2.png"),
        "{html}"
    );
    assert!(
        text.contains("photo of sksportrait person, smiling"),
        "{text}"
    );
    assert!(text.contains("seed 3 · 512x512"), "{text}");
    assert!(text.contains("decoded 512x512"), "{text}");
    assert!(text.contains("no image: no result within 600 s"), "{text}");
    assert_eq!(
        html.matches("data-case-verdict=\"passed\"").count(),
        2,
        "{html}"
    );
    // Another kind has no evidence section; an unknown resource is 404.
    let endpoint = get(&served, "/resources/endpoint/portrait", &[]).text();
    assert!(
        !endpoint.contains("Evidence") && endpoint.contains("version 2 of ModelPromotion/portrait")
    );
    assert_eq!(get(&served, "/resources/Endpoint/nope", &[]).code, 404);
}

#[test]
fn evidence_images_are_read_only_by_the_keys_the_status_recorded() {
    let served = serve(view(), None);
    let sheet = get(
        &served,
        "/evidence/ModelPromotion/portrait/contact-sheet.png",
        &[],
    );
    assert_eq!(
        (sheet.code, sheet.body.as_slice()),
        (200, &b"\x89PNG sheet"[..])
    );
    assert_eq!(sheet.header("content-type"), Some("image/png"));
    let case = get(&served, "/evidence/ModelPromotion/portrait/case/0.png", &[]);
    assert_eq!(
        (case.code, case.body.as_slice()),
        (200, &b"\x89PNG case 0"[..])
    );
    // Whatever the path says, only an index into the record's cases reaches the lookup; a key
    // outside the bundle (case 1), a case without an image (2) or past the end are 404.
    for path in [
        "/evidence/ModelPromotion/portrait/case/1.png",
        "/evidence/ModelPromotion/portrait/case/2.png",
        "/evidence/ModelPromotion/portrait/case/3.png",
        "/evidence/ModelPromotion/portrait/case/-1.png",
        "/evidence/ModelPromotion/portrait/case/..%2F..%2Fcredentials.png",
        "/evidence/ModelPromotion/portrait/case/%2E%2E%2Fcredentials.png",
        "/evidence/ModelPromotion/portrait/case/credentials.png",
        "/evidence/ModelPromotion/portrait/case/0.png%00.json",
        "/evidence/ModelPromotion/portrait/images/case-0.png",
        "/evidence/ModelPromotion/portrait/evidence.json",
        "/evidence/ModelPromotion/other/case/0.png",
        "/evidence/Endpoint/portrait/contact-sheet.png",
        "/evidence/ModelPromotion/portrait/../../credentials.png",
    ] {
        let answer = get(&served, path, &[]);
        assert_eq!(answer.code, 404, "{path}: {}", answer.text());
        assert!(!answer.text().contains("not to be served"));
    }
    let asked = served.fake.asked.lock().unwrap().clone();
    let allowed = [
        format!("{PREFIX}evidence.json"),
        format!("{PREFIX}contact-sheet.png"),
        format!("{PREFIX}images/case-0.png"),
    ];
    assert!(!asked.is_empty());
    for (bucket, key) in &asked {
        assert_eq!(bucket, BUCKET);
        assert!(allowed.contains(key), "{key} was read from S3");
    }
}

#[test]
fn every_method_but_get_and_head_is_refused_on_every_route() {
    for token in [None, Some("s3cret")] {
        let served = serve(view(), token);
        let bearer = ("Authorization", "Bearer s3cret");
        for path in [
            "/",
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/status",
            "/api/v1/plan",
            "/resources/ModelPromotion/portrait",
            "/evidence/ModelPromotion/portrait/case/0.png",
            "/no/such/route",
        ] {
            let url = format!("{}{path}", served.url);
            let agent = agent();
            let answers = [
                (
                    "POST",
                    agent.post(&url).header(bearer.0, bearer.1).send("approve"),
                ),
                ("PUT", agent.put(&url).header(bearer.0, bearer.1).send("x")),
                (
                    "PATCH",
                    agent.patch(&url).header(bearer.0, bearer.1).send("x"),
                ),
                (
                    "DELETE",
                    agent.delete(&url).header(bearer.0, bearer.1).call(),
                ),
                (
                    "OPTIONS",
                    agent.options(&url).header(bearer.0, bearer.1).call(),
                ),
            ];
            for (method, response) in answers {
                let refused = answer(response.unwrap());
                assert_eq!(refused.code, 405, "{method} {path}");
                assert_eq!(
                    refused.header("allow"),
                    Some("GET, HEAD"),
                    "{method} {path}"
                );
            }
            let head = answer(agent.head(&url).header(bearer.0, bearer.1).call().unwrap());
            assert_ne!(head.code, 405, "HEAD {path}");
        }
    }
}

#[test]
fn with_a_token_every_route_but_healthz_needs_it() {
    let token = "s3cret-token-value";
    let served = serve(view(), Some(token));
    assert_eq!(get(&served, "/healthz", &[]).code, 200);
    for path in [
        "/",
        "/readyz",
        "/metrics",
        "/api/v1/status",
        "/resources/ModelPromotion/portrait",
        "/evidence/ModelPromotion/portrait/case/0.png",
        "/no/such/route",
    ] {
        let refused = get(&served, path, &[]);
        assert_eq!(refused.code, 401, "{path}");
        assert!(!refused.text().contains(token));
        for wrong in [
            "Bearer s3cret",
            "Bearer s3cret-token-valuE",
            "Basic s3cret-token-value",
            token,
        ] {
            assert_eq!(
                get(&served, path, &[("Authorization", wrong)]).code,
                401,
                "{path} {wrong}"
            );
        }
        let ok = get(
            &served,
            path,
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert!(
            ok.code == 200 || (path == "/no/such/route" && ok.code == 404),
            "{path}: {}",
            ok.code
        );
        assert!(!ok.text().contains(token), "{path}");
    }
    // A browser: `?token=` once sets an HttpOnly SameSite=Strict cookie and comes back to the
    // same URL without the token.
    let opened = get(
        &served,
        &format!("/resources/ModelPromotion/portrait?x=1&token={token}"),
        &[],
    );
    assert_eq!(opened.code, 303);
    assert_eq!(
        opened.header("location"),
        Some("/resources/ModelPromotion/portrait?x=1")
    );
    let cookie = opened.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains(token), "the cookie holds a derived value");
    let session = cookie.split(';').next().unwrap();
    let page = get(
        &served,
        "/resources/ModelPromotion/portrait?x=1",
        &[("Cookie", session)],
    );
    assert_eq!(page.code, 200);
    assert!(!page.text().contains(token));
    let image = get(
        &served,
        "/evidence/ModelPromotion/portrait/case/0.png",
        &[("Cookie", &format!("a=b; {session}"))],
    );
    assert_eq!(image.code, 200);
    assert_eq!(
        get(&served, "/", &[("Cookie", "sdop_session=0000")]).code,
        401
    );
    // A wrong token in the query is refused, and says nothing of it.
    let wrong = get(&served, "/?token=guess", &[]);
    assert_eq!(wrong.code, 401);
    assert!(!wrong.text().contains("guess") && wrong.header("set-cookie").is_none());
    // `//host` would read as another host: the redirect stays on this one.
    let twisted = get(&served, &format!("//evil.example/?token={token}"), &[]);
    assert_eq!(twisted.header("location"), Some("/evil.example/"));
}

#[test]
fn the_manifest_s_last_commit_is_shown_in_a_git_work_tree() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !git(&["init", "-q"]) {
        eprintln!("no git here: skipped");
        return;
    }
    let file = dir.path().join("promote.yaml");
    std::fs::write(&file, "kind: Bucket\n").unwrap();
    assert!(git(&["add", "promote.yaml"]) && git(&["commit", "-q", "-m", "Promote portrait v2"]));
    let mut view = view();
    for d in &mut view.declared {
        d.file = file.clone();
    }
    view.declared[0].file = PathBuf::from("/nonexistent/dir/x.yaml");
    let served = serve(view, None);
    let text = visible(&get(&served, "/", &[]).text());
    assert_eq!(text.matches(" Promote portrait v2").count(), 6, "{text}");
    assert!(
        text.contains("/nonexistent/dir/x.yaml:10 "),
        "no git there: no commit: {text}"
    );
}
