//! The `sdop` command line. Each subcommand is a small function over the library.

pub(crate) mod render;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::apply::{apply, ApplyOptions};
use crate::aws::{Clients, Connection};
use crate::engine::{self, cloud};
use crate::error::{Error, Result};
use crate::manifest::{load_paths, Loaded};
use crate::state::{StateLocation, StateStore};

/// Exit codes shared by subcommands.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// `plan`: changes are pending.
    pub const CHANGES: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "sdop",
    version,
    about = "Declarative operator for Stable Diffusion on AWS SageMaker"
)]
pub struct Cli {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where and as whom sdop talks to AWS (standard credential chain otherwise), and where it
/// keeps status.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Status directory (default: $SDOP_STATE_DIR, $XDG_STATE_HOME/sdop, ~/.local/state/sdop).
    #[arg(long, global = true, env = "SDOP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A shared state instead of the state directory: `s3://BUCKET/PREFIX` (the bucket must exist).
    /// Every daemon and CI apply using it sees one inventory; its lease
    /// (`PREFIX/lease.json`) is the one writer's lock and the daemons' leader election.
    #[arg(
        long,
        global = true,
        env = "SDOP_STATE",
        value_name = "s3://BUCKET/PREFIX"
    )]
    pub state: Option<String>,
    /// AWS region (default: from the environment or profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (a local emulator, a VPC endpoint).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=sdop=debug).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    /// A pull-request comment: a summary, one `<details>` block per resource, a hidden
    /// marker for the CI job, within GitHub's 65,535 characters.
    Markdown,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GetFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests: syntax, fields, AWS naming rules, references, cycles. Exit 1 if invalid.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Show what apply would change (reads AWS). Exit 0: nothing to do, 2: changes, 1: error.
    Plan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `markdown`: a pull-request comment (see deploy/ci/github-actions-plan.yml).
        #[arg(short, long, value_enum, default_value = "text")]
        output: PlanFormat,
        /// Do not read AWS: every object shows as a create (CI without credentials).
        #[arg(long)]
        offline: bool,
        /// Also show what `apply --prune` would delete (resources no manifest declares).
        #[arg(long)]
        prune: bool,
        /// As `apply --prune --force`: plan pruning beyond the guard's limit.
        #[arg(long)]
        force: bool,
    },
    /// Converge AWS to the manifests. Exit 0: converged (or progressing without --wait), 1: problems.
    Apply(ApplyArgs),
    /// Retry KIND/NAME now after a failure whose cause is outside its spec (an image pushed
    /// again, a quota raised): forgets the remembered failure, then applies PATHS (without
    /// PATHS, the next apply or a running daemon's next pass of it retries it).
    Reconcile {
        /// The resource, e.g. Endpoint/sd-base.
        resource: String,
        /// The manifests to apply (as `sdop apply PATHS`).
        paths: Vec<PathBuf>,
        /// Wait until every resource is Ready (or failed), polling what is in progress.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (e.g. 30m, 2h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// How long to wait for another writer of the state (an apply, a daemon) before
        /// refusing.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Approve version VERSION of a ModelPromotion's model package group (or reject it with
    /// --reject), as in the SageMaker console: who, why and the evidence digest go into its
    /// ApprovalDescription; sdop reads the decision back on its next pass. Needs the
    /// resource's status (it has been applied).
    Approve {
        /// The resource, e.g. ModelPromotion/jpstyle.
        resource: String,
        /// The version number, as the registry shows it.
        version: i32,
        /// Why (recorded in the registry).
        #[arg(long)]
        reason: String,
        /// Who decides (default: $SDOP_APPROVER, else $USER).
        #[arg(long)]
        by: Option<String>,
        /// Reject instead: a version rejected after approval rolls production back.
        #[arg(long)]
        reject: bool,
        /// Approve a version whose evidence failed or is missing.
        #[arg(long)]
        force: bool,
    },
    /// Run as a daemon: watch the manifests and converge continuously (SIGTERM/SIGINT: clean exit 0).
    Run(RunArgs),
    /// Show status: all resources, one kind, or KIND/NAME (from a running daemon, else the state directory).
    Get {
        what: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: GetFormat,
    },
    /// List billable AWS objects with sdop's ownership that no state accounts for, and open
    /// multipart uploads, across the regions the manifests use. Exit 1 if any.
    Audit {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the IAM policy the operator needs for exactly these manifests (resources scoped to
    /// their names; nested stacks included; what the stack's templates create is not).
    IamPolicy {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of all manifest kinds.
    Schema,
}

/// `sdop run` flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// HTTP listener: the status page (/), /healthz, /readyz, /metrics, /api/v1/status. An
    /// address that is not loopback needs --auth-token-file.
    #[arg(long, default_value = "127.0.0.1:9750")]
    listen: std::net::SocketAddr,
    /// A file holding a bearer token (one trailing newline dropped): every route but /healthz
    /// then needs `Authorization: Bearer TOKEN` (a browser may open `/?token=TOKEN` once, which
    /// sets a session cookie). Required to listen on an address that is not loopback.
    #[arg(long, value_name = "PATH", env = "SDOP_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
    /// Delete owned resources whose manifests were deleted (guarded as `apply --prune`).
    #[arg(long)]
    prune: bool,
    /// Allow pruning more than half of what sdop owns.
    #[arg(long)]
    force: bool,
    /// Full resync period (re-read everything, correct drift); jittered by 10%.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    resync: std::time::Duration,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Quiet time after a file event before reloading (an editor's save is one batch).
    #[arg(long, default_value = "40ms", value_parser = humantime::parse_duration)]
    debounce: std::time::Duration,
    /// Elect one leader among several daemons with this S3 object; only it mutates AWS.
    #[arg(long, value_name = "s3://BUCKET/KEY")]
    lease: Option<String>,
    /// A lease not renewed for this long is taken over by a standby.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    lease_ttl: std::time::Duration,
    /// How often the leader renews its lease (at most a third of the TTL).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_renew: std::time::Duration,
    /// POST a JSON event here on rollouts, training results, drift corrected, conflicts.
    #[arg(long, value_name = "URL", env = "SDOP_NOTIFY_WEBHOOK")]
    notify_webhook: Option<String>,
    /// Sign each webhook POST with this file's secret (one trailing newline dropped): header
    /// `X-Sdop-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body, as GitHub signs.
    #[arg(
        long,
        value_name = "PATH",
        env = "SDOP_WEBHOOK_SECRET_FILE",
        requires = "notify_webhook"
    )]
    webhook_secret_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long reconciles in flight may take to finish.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// Suspend everything: read every resource and report its drift (status, `sdop get`,
    /// metrics), change nothing in AWS and prune nothing.
    #[arg(long, conflicts_with = "prune")]
    observe_only: bool,
}

impl RunArgs {
    fn options(self, aws: &AwsArgs) -> crate::daemon::RunOptions {
        crate::daemon::RunOptions {
            paths: self.paths,
            connection: connection(aws),
            state: state_location(aws),
            local_dir: state_dir(aws),
            listen: self.listen,
            auth_token_file: self.auth_token_file,
            prune: self.prune,
            force: self.force,
            resync: self.resync,
            concurrency: self.concurrency,
            debounce: self.debounce,
            lease: self.lease,
            lease_ttl: self.lease_ttl,
            lease_renew: self.lease_renew,
            webhook: self.notify_webhook,
            webhook_secret_file: self.webhook_secret_file,
            shutdown_timeout: self.shutdown_timeout,
            observe_only: self.observe_only,
        }
    }
}

/// Parses the process arguments and runs the command; returns the exit code.
pub fn run() -> Result<u8> {
    let cli = parse();
    // The daemon reports what it does at info; one-shot commands print their own output.
    let default_level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    // The SDK's own credential/region probing (IMDS and the like) is not news to the user:
    // sdop checks what it needs and says it in one line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},aws_config=error"))
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.aws.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(execute(cli))
}

/// The command line, with each command's usage line as `--help` shows it. clap's error usage
/// would otherwise list every flag that has a value, those an environment variable sets
/// (AWS_REGION, AWS_ENDPOINT_URL, SDOP_STATE_DIR...) included, as if they were required.
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    command.build();
    let usages: Vec<(String, String)> = command
        .get_subcommands_mut()
        .map(|sub| (sub.get_name().to_string(), plain_usage(sub)))
        .collect();
    let root = plain_usage(&mut command);
    let mut command = command.override_usage(root);
    for (name, usage) in usages {
        command = command.mut_subcommand(name, |sub| sub.override_usage(usage));
    }
    // `sdop` alone is a request for help, also when AWS_REGION or SDOP_STATE_DIR are set
    // (clap counts flags set by the environment as given, and would say a subcommand is
    // missing instead).
    if std::env::args_os().len() <= 1 {
        let _ = command.print_help();
        std::process::exit(2);
    }
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit())
}

/// `sdop plan [OPTIONS] <PATHS>...`: a command's usage with no argument given.
fn plain_usage(command: &mut clap::Command) -> String {
    let usage = command.render_usage().to_string();
    usage
        .strip_prefix("Usage: ")
        .unwrap_or(&usage)
        .trim()
        .to_string()
}

pub async fn execute(cli: Cli) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Validate { paths, output } => {
            let loaded = load_paths(&paths);
            if let Some(nothing) = no_manifests(&paths, &loaded) {
                eprintln!("{nothing}");
                return Ok(exit::ERROR);
            }
            match output {
                Format::Text => {
                    if loaded.is_valid() {
                        writeln!(stdout, "{} manifest(s) valid", loaded.manifests.len())
                            .map_err(write_error)?;
                    } else {
                        eprintln!("{}", crate::diagnostics::render(&loaded.diagnostics));
                        eprintln!("{} problem(s) found", loaded.diagnostics.len());
                    }
                }
                Format::Json => {
                    let body = serde_json::json!({
                        "valid": loaded.is_valid(),
                        "manifests": loaded.manifests.len(),
                        "diagnostics": loaded.diagnostics.iter().map(|d| serde_json::json!({
                            "file": d.file,
                            // A problem of the file as a whole (it cannot be read) has no position.
                            "line": (d.position.line > 0).then_some(d.position.line),
                            "column": (d.position.line > 0).then_some(d.position.column),
                            "resource": d.resource, "message": d.message, "text": d.to_string(),
                        })).collect::<Vec<_>>(),
                    });
                    writeln!(stdout, "{body:#}").map_err(write_error)?;
                }
            }
            Ok(if loaded.is_valid() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
        Command::Plan {
            paths,
            output,
            offline,
            prune,
            force,
        } => {
            let loaded = load_paths(&paths);
            if let Some(nothing) = no_manifests(&paths, &loaded) {
                eprintln!("{nothing}");
                return Ok(exit::ERROR);
            }
            let loaded = valid(loaded)?;
            let mut opened: Option<StateStore> = None;
            let mut priced_in = String::new();
            let mut plan = if offline {
                let nothing_recorded = std::collections::HashMap::new();
                let region = offline_region(&cli.aws, &loaded);
                let plan = engine::plan_all(
                    &loaded.manifests,
                    &loaded.graph,
                    // Prices the plan; nothing else reads it offline.
                    &cloud::Offline {
                        region: region.clone().ok(),
                    },
                    &nothing_recorded,
                )
                .await?;
                if let Err(why) = region {
                    if !plan.hourly_after().unknown.is_empty() {
                        priced_in = format!("; not priced: {why}");
                    }
                }
                plan
            } else {
                let clients = connect(&cli.aws).await?;
                let store = read_store(&cli.aws)?;
                let plan = crate::apply::plan(&loaded, clients, &store).await?;
                opened = Some(store);
                plan
            };
            let mut pruning = String::new();
            if let (true, Some(store)) = (prune, &opened) {
                match crate::apply::prune::planned_prune(&loaded, &store.load_all()?, force) {
                    Ok(crate::apply::prune::PlannedPrune {
                        actions, forgotten, ..
                    }) => {
                        plan.actions.extend(actions);
                        if !forgotten.is_empty() {
                            let names: Vec<String> =
                                forgotten.iter().map(|id| id.to_string()).collect();
                            pruning = format!(
                                "pruning forgets {} (deletionPolicy Retain: their AWS objects are kept)",
                                names.join(", ")
                            );
                        }
                    }
                    Err(refusal) => pruning = format!("apply --prune would refuse: {refusal}"),
                }
            }
            let note = if !pruning.is_empty() {
                pruning.as_str()
            } else if offline {
                pruning = format!(
                    "offline: AWS was not read, so everything shows as a create{priced_in}"
                );
                pruning.as_str()
            } else {
                ""
            };
            match output {
                PlanFormat::Text => write!(stdout, "{}", render::plan_text(&plan, note)),
                PlanFormat::Json => writeln!(stdout, "{:#}", plan.to_json()),
                PlanFormat::Markdown => {
                    // Versions that passed their evaluation and wait for a person.
                    let awaiting: Vec<String> = match &opened {
                        Some(store) => store
                            .load_all()?
                            .iter()
                            .filter(|s| loaded.manifests.iter().any(|m| m.id == s.id()))
                            .filter_map(|s| {
                                let version = s.outputs.get("awaitingApproval")?;
                                (!version.is_empty())
                                    .then(|| format!("{} version {version}", s.id()))
                            })
                            .collect(),
                        None => Vec::new(),
                    };
                    write!(
                        stdout,
                        "{}",
                        render::plan_markdown(&plan, note, &awaiting, render::GITHUB_COMMENT_LIMIT)
                    )
                }
            }
            .map_err(write_error)?;
            // A Failed resource plans nothing until it is retried: say so, and how.
            if let (PlanFormat::Text, Some(store)) = (output, &opened) {
                for failed in store.load_all()?.iter().filter(|s| {
                    s.phase == crate::state::Phase::Failed
                        && loaded.manifests.iter().any(|m| m.id == s.id())
                }) {
                    writeln!(stdout, "Failed: {}: {}", failed.id(), failed.message)
                        .map_err(write_error)?;
                }
            }
            Ok(if plan.has_changes() {
                exit::CHANGES
            } else {
                exit::OK
            })
        }
        Command::Apply(args) => {
            drop(stdout);
            apply_command(&cli.aws, args).await
        }
        Command::Reconcile {
            resource,
            paths,
            wait,
            timeout,
            lock_timeout,
        } => {
            drop(stdout);
            let Some(id) = resource
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty())
                .and_then(|(kind, name)| {
                    crate::kinds::kind_names()
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(kind))
                        .map(|k| crate::manifest::ResourceId::new(*k, name))
                })
            else {
                match resource
                    .split_once('/')
                    .and_then(|(kind, _)| crate::kinds::renamed_kind(kind))
                {
                    Some(renamed) => eprintln!("{resource:?}: {renamed}"),
                    None => eprintln!(
                        "{resource:?} is not KIND/NAME (kinds: {}), e.g. Endpoint/sd-base",
                        crate::kinds::kind_names().join(", ")
                    ),
                }
                return Ok(exit::ERROR);
            };
            let store = store(&cli.aws)?;
            {
                // A state directory is written without its writer lock, which a running daemon
                // holds for its whole life: the request is one field of one status, and the
                // daemon reads the status again at the start of each pass. A shared state is
                // written only under its lease.
                let _writer = match state_location(&cli.aws) {
                    crate::state::StateLocation::Dir(_) => None,
                    crate::state::StateLocation::Shared(_) => Some(store.lock(
                        &format!("sdop reconcile (pid {})", std::process::id()),
                        lock_timeout,
                        &|holder| {
                            eprintln!("waiting for the shared state's lease, held by {holder}")
                        },
                    )?),
                };
                let Some(mut status) = store.load(&id)? else {
                    eprintln!(
                        "{id}: no status in {}: sdop has not applied it yet, so there is nothing to retry; run `sdop apply`",
                        match state_location(&cli.aws) {
                            crate::state::StateLocation::Dir(dir) =>
                                format!("the state directory {}", dir.display()),
                            crate::state::StateLocation::Shared(uri) =>
                                format!("the shared state {uri}"),
                        }
                    );
                    return Ok(exit::ERROR);
                };
                status.retry_requested_at = Some(crate::state::now());
                status.event("retry requested (sdop reconcile)");
                store.save(&status)?;
            }
            if paths.is_empty() {
                println!(
                    "retry of {id} requested: the next `sdop apply` of its manifest, or a running daemon's next pass of it (a file change or its resync), retries it"
                );
                return Ok(exit::OK);
            }
            println!(
                "retry of {id} requested; applying {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            apply_command(
                &cli.aws,
                ApplyArgs {
                    paths,
                    wait,
                    timeout,
                    prune: false,
                    force: false,
                    max_hourly_cost: None,
                    lock_timeout,
                },
            )
            .await
        }
        Command::Approve {
            resource,
            version,
            reason,
            by,
            reject,
            force,
        } => {
            drop(stdout);
            let kind = <crate::kinds::model_promotion::ModelPromotion as crate::kinds::Kind>::KIND;
            let Some(name) = resource
                .split_once('/')
                .filter(|(k, n)| k.eq_ignore_ascii_case(kind) && !n.is_empty())
                .map(|(_, n)| n)
            else {
                eprintln!("{resource:?} is not {kind}/NAME, e.g. {kind}/jpstyle");
                return Ok(exit::ERROR);
            };
            let id = crate::manifest::ResourceId::new(kind, name);
            let Some(status) = store(&cli.aws)?.load(&id)? else {
                eprintln!(
                    "{id}: no status in the state: apply its manifest first (`sdop apply`), so sdop knows its model package group"
                );
                return Ok(exit::ERROR);
            };
            let Some(group) = status.outputs.get("modelPackageGroupName").cloned() else {
                eprintln!("{id}: its status names no model package group yet; apply it first");
                return Ok(exit::ERROR);
            };
            // The evidence root: the parent of the candidate's `CANDIDATE/evidence.json`.
            let evidence_root = status.outputs.get("evidence").and_then(|uri| {
                let path = uri.strip_prefix("s3://")?.strip_suffix("/evidence.json")?;
                let (root, _) = path.rsplit_once('/')?;
                Some(format!("{root}/"))
            });
            let by = by
                .or_else(|| std::env::var("SDOP_APPROVER").ok())
                .or_else(|| std::env::var("USER").ok())
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "unknown".to_string());
            if reason.trim().is_empty() {
                eprintln!("--reason must say why (it is recorded in the registry)");
                return Ok(exit::ERROR);
            }
            let clients = connect(&cli.aws).await?.in_region(status.region.as_deref());
            let done = crate::apply::approve::approve(
                &clients,
                &crate::apply::approve::Approval {
                    resource: &id.to_string(),
                    group: &group,
                    version,
                    approve: !reject,
                    by: &by,
                    reason: &reason,
                    evidence_root: evidence_root.as_deref(),
                    force,
                },
            )
            .await;
            match done {
                Ok(message) => {
                    println!("{message}");
                    Ok(exit::OK)
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    Ok(exit::ERROR)
                }
            }
        }
        Command::Run(args) => {
            drop(stdout);
            crate::daemon::run(args.options(&cli.aws)).await?;
            Ok(exit::OK)
        }
        Command::Get { what, output } => {
            if let Some(selector) = &what {
                let kind = selector
                    .split_once('/')
                    .map_or(selector.as_str(), |(k, _)| k);
                if !crate::kinds::kind_names()
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(kind))
                {
                    match crate::kinds::renamed_kind(kind) {
                        Some(renamed) => eprintln!("{renamed}"),
                        None => eprintln!(
                            "unknown kind {kind:?} (kinds: {})",
                            crate::kinds::kind_names().join(", ")
                        ),
                    }
                    return Ok(exit::ERROR);
                }
            }
            let read = statuses_for_get(&cli.aws)?;
            // Which state this is, on stderr: `-o json` and `-o yaml` stay parseable.
            eprintln!("status from {}", read.source);
            let statuses: Vec<_> = read
                .statuses
                .into_iter()
                .filter(|s| match what.as_deref() {
                    None => true,
                    Some(sel) => match sel.split_once('/') {
                        Some((kind, name)) => s.kind.eq_ignore_ascii_case(kind) && s.name == name,
                        None => s.kind.eq_ignore_ascii_case(sel),
                    },
                })
                .collect();
            if statuses.is_empty() && what.as_deref().is_some_and(|w| w.contains('/')) {
                eprintln!(
                    "not found: {} has no status there (not applied with this state yet; `sdop get` lists what it has)",
                    what.unwrap_or_default()
                );
                return Ok(exit::ERROR);
            }
            match output {
                GetFormat::Table => write!(
                    stdout,
                    "{}",
                    render::status_table(&statuses, render::terminal_width())
                ),
                GetFormat::Json => writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&statuses).unwrap_or_default()
                ),
                GetFormat::Yaml => write!(
                    stdout,
                    "{}",
                    yaml_serde::to_string(&statuses).unwrap_or_default()
                ),
            }
            .map_err(write_error)?;
            if !read.diagnostics.is_empty() {
                eprintln!(
                    "invalid manifests, as the daemon last read them (not reconciled, or running on their last good spec until fixed):"
                );
                for problem in &read.diagnostics {
                    eprintln!("  {problem}");
                }
            }
            Ok(exit::OK)
        }
        Command::Audit { paths } => {
            let loaded = load_paths(&paths).valid_subset();
            let clients = connect(&cli.aws).await?;
            let findings =
                crate::apply::audit::audit(&loaded, &clients, &read_store(&cli.aws)?).await?;
            write!(stdout, "{}", render::audit_table(&findings)).map_err(write_error)?;
            Ok(if findings.is_empty() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
        Command::IamPolicy { paths } => {
            let loaded = load_paths(&paths);
            if let Some(nothing) = no_manifests(&paths, &loaded) {
                eprintln!("{nothing}");
                return Ok(exit::ERROR);
            }
            let loaded = valid(loaded)?;
            let policy = crate::apply::iam_policy(&loaded);
            writeln!(stdout, "{policy:#}").map_err(write_error)?;
            Ok(exit::OK)
        }
        Command::Schema => {
            writeln!(stdout, "{:#}", crate::schema::manifest_schema()).map_err(write_error)?;
            Ok(exit::OK)
        }
    }
}

fn connection(args: &AwsArgs) -> Connection {
    Connection {
        region: args.region.clone(),
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
    }
}

async fn connect(args: &AwsArgs) -> Result<Clients> {
    Clients::connect(&connection(args)).await
}

fn state_dir(args: &AwsArgs) -> PathBuf {
    args.state_dir
        .clone()
        .unwrap_or_else(StateStore::default_dir)
}

fn state_location(args: &AwsArgs) -> StateLocation {
    match &args.state {
        Some(uri) => StateLocation::Shared(uri.clone()),
        None => StateLocation::Dir(state_dir(args)),
    }
}

fn store(args: &AwsArgs) -> Result<StateStore> {
    crate::daemon::shared_state::open(&state_location(args), &connection(args))
}

/// The region `plan --offline` prices what has no region of its own (endpoints, training
/// jobs) in: `--region` or the environment's (where apply would create them), else the one
/// region the manifests name (`spec.region`); else why there is none.
fn offline_region(args: &AwsArgs, loaded: &Loaded) -> std::result::Result<String, String> {
    if let Some(region) = args
        .region
        .clone()
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
    {
        return Ok(region);
    }
    let named: std::collections::BTreeSet<String> = loaded
        .manifests
        .iter()
        .filter_map(|m| m.spec_json()["region"].as_str().map(str::to_string))
        .collect();
    let mut regions = named.iter();
    match (regions.next(), regions.next()) {
        (Some(only), None) => Ok(only.clone()),
        (None, _) => {
            Err("no region: the manifests name none; pass --region or set AWS_REGION".to_string())
        }
        (Some(_), Some(_)) => Err(format!(
            "the manifests name several regions ({}); pass --region with the endpoints' one",
            named.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The state of a command that only reads it: a missing state directory is not created.
fn read_store(args: &AwsArgs) -> Result<StateStore> {
    crate::daemon::shared_state::open_to_read(&state_location(args), &connection(args))
}

/// What `sdop get` read: the statuses, where from, and the daemon's manifest problems.
struct ReadForGet {
    statuses: Vec<crate::state::ResourceStatus>,
    /// `the state directory /x`, `the daemon at http://... (state directory /x)`...
    source: String,
    /// `FILE:LINE:COL: Kind/name: message` of the daemon's last load.
    diagnostics: Vec<String>,
}

/// Statuses for `sdop get`: from the daemon running on this state directory (it also knows
/// what is in flight and which manifests are invalid), else from the state itself. Creates
/// nothing.
fn statuses_for_get(args: &AwsArgs) -> Result<ReadForGet> {
    // A shared state is what its leader writes as it goes: read it directly.
    if let Some(uri) = &args.state {
        return Ok(ReadForGet {
            statuses: read_store(args)?.load_all()?,
            source: format!("the shared state {uri}"),
            diagnostics: Vec::new(),
        });
    }
    let dir = state_dir(args);
    if let Some((url, token_file)) = crate::daemon::daemon_url(&dir) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(3)))
            .build()
            .into();
        let mut request = agent.get(format!("{url}/api/v1/status"));
        // A daemon with a token: its file, when this user may read it (never printed).
        if let Some(file) = &token_file {
            match std::fs::read(file) {
                Ok(mut token) => {
                    if token.ends_with(b"\n") {
                        token.pop();
                        if token.ends_with(b"\r") {
                            token.pop();
                        }
                    }
                    request = request.header(
                        "Authorization",
                        format!("Bearer {}", String::from_utf8_lossy(&token)),
                    );
                }
                Err(err) => eprintln!(
                    "note: the daemon at {url} needs its token, and its file {} cannot be read ({err})",
                    file.display()
                ),
            }
        }
        let asked = request
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| {
                r.body_mut()
                    .read_json::<serde_json::Value>()
                    .map_err(|e| e.to_string())
            })
            .and_then(|body| {
                let statuses =
                    serde_json::from_value(body["resources"].clone()).map_err(|e| e.to_string())?;
                let diagnostics = body["daemon"]["diagnostics"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .filter_map(|d| d.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((statuses, diagnostics))
            });
        match asked {
            Ok((statuses, diagnostics)) => {
                return Ok(ReadForGet {
                    statuses,
                    source: format!("the daemon at {url} (state directory {})", dir.display()),
                    diagnostics,
                })
            }
            Err(err) => eprintln!(
                "note: the daemon at {url} did not answer ({err}); showing the state directory"
            ),
        }
    }
    let source = if dir.is_dir() {
        format!("the state directory {}", dir.display())
    } else {
        format!(
            "the state directory {}, which does not exist: nothing was applied with it (--state-dir or SDOP_STATE_DIR names another)",
            dir.display()
        )
    };
    Ok(ReadForGet {
        statuses: StateStore::existing(&dir).load_all()?,
        source,
        diagnostics: Vec::new(),
    })
}

/// `validate`'s and `plan`'s answer to paths that hold no manifest at all (and no problem).
fn no_manifests(paths: &[PathBuf], loaded: &Loaded) -> Option<String> {
    if !loaded.manifests.is_empty() || !loaded.diagnostics.is_empty() {
        return None;
    }
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Some(format!(
        "no manifests found in {} (sdop reads .yaml and .yml files): pass the files or directories holding your manifests",
        shown.join(", ")
    ))
}

fn valid(loaded: Loaded) -> Result<Loaded> {
    if loaded.is_valid() {
        Ok(loaded)
    } else {
        Err(Error::Invalid(loaded.diagnostics))
    }
}

fn write_error(err: std::io::Error) -> Error {
    Error::io("writing output", err)
}

/// `sdop apply`'s flags (and the apply `sdop reconcile` runs).
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Wait until every resource is Ready (or failed), polling what is in progress.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long (e.g. 30m, 2h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Delete owned resources whose manifests are gone (honouring deletionPolicy).
    #[arg(long)]
    prune: bool,
    /// Allow pruning more than half of what sdop owns, and a plan above --max-hourly-cost.
    #[arg(long)]
    force: bool,
    /// Refuse (without --force) when the endpoints planned would cost more than this many
    /// US dollars per hour once applied (on-demand list prices from sdop's price table).
    #[arg(long, value_name = "DOLLARS")]
    max_hourly_cost: Option<f64>,
    /// How long to wait for another writer of the state (an apply, a daemon) before
    /// refusing.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    lock_timeout: std::time::Duration,
}

/// `sdop apply` (and the apply of `sdop reconcile`).
async fn apply_command(aws: &AwsArgs, args: ApplyArgs) -> Result<u8> {
    let ApplyArgs {
        paths,
        wait,
        timeout,
        prune,
        force,
        max_hourly_cost,
        lock_timeout,
    } = args;
    let mut loaded = load_paths(&paths);
    let invalid = !loaded.is_valid();
    let mut skipped = Vec::new();
    if invalid {
        // Bad input stops only itself (and what depends on it); nothing is pruned.
        eprintln!("{}", crate::diagnostics::render(&loaded.diagnostics));
        let valid = loaded.valid_subset();
        skipped = skipped_resources(&loaded, &valid);
        loaded = valid;
        eprintln!(
            "{} problem(s) found; applying the {} manifest(s) not affected; not pruning",
            loaded.diagnostics.len(),
            loaded.manifests.len()
        );
    }
    let prune = prune && !invalid;
    let clients = connect(aws).await?;
    let store = store(aws)?;
    let _writer = store.lock(
        &format!("sdop apply (pid {})", std::process::id()),
        lock_timeout,
        &|holder| eprintln!("waiting for the state lock, held by {holder}"),
    )?;
    mark_not_applied(&store, &skipped)?;
    if let Some(limit) = max_hourly_cost {
        // The same pass in plan mode: what apply is about to do, priced.
        let plan = crate::apply::plan(&loaded, clients.clone(), &store).await?;
        let after = plan.hourly_after();
        let line = render::cost_line(&plan);
        let over = after.dollars > limit;
        if (over || !after.unknown.is_empty()) && !force {
            eprintln!("{line}");
            eprintln!(
                    "refusing to apply: {} (--max-hourly-cost {limit:.2}); pass --force to apply anyway",
                    if over {
                        format!("the endpoints would cost ${:.2}/h", after.dollars)
                    } else {
                        "some prices are unknown, so the limit cannot be checked".to_string()
                    }
                );
            return Ok(exit::ERROR);
        }
        println!("{line}");
    }
    let options = ApplyOptions {
        wait,
        timeout,
        prune,
        force,
        ..ApplyOptions::default()
    };
    let report = |line: String| println!("{line}");
    let summary = apply(&loaded, &clients, &store, &options, &report).await?;
    let statuses = store.load_all()?;
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "\n{}",
        render::status_table(&statuses, render::terminal_width())
    )
    .map_err(write_error)?;
    let failed = if wait {
        !summary.converged()
    } else {
        summary.has_problems()
    };
    Ok(if failed || invalid {
        exit::ERROR
    } else {
        exit::OK
    })
}

/// The resources an apply skips because their manifest is invalid (with its problems) or
/// because one they reference is.
fn skipped_resources(all: &Loaded, valid: &Loaded) -> Vec<(crate::manifest::ResourceId, String)> {
    let mut ids: Vec<crate::manifest::ResourceId> =
        all.manifests.iter().map(|m| m.id.clone()).collect();
    ids.extend(all.diagnostics.iter().filter_map(|d| {
        d.resource
            .as_deref()
            .and_then(crate::manifest::ResourceId::parse)
    }));
    ids.sort();
    ids.dedup();
    ids.retain(|id| !valid.manifests.iter().any(|m| &m.id == id));
    ids.into_iter()
        .map(|id| {
            let own: Vec<String> = all
                .diagnostics
                .iter()
                .filter(|d| d.resource.as_deref() == Some(id.to_string().as_str()))
                .map(|d| d.to_string())
                .collect();
            let why = if own.is_empty() {
                "a resource it references has an invalid manifest".to_string()
            } else {
                own.join("; ")
            };
            (id, format!("manifest invalid, not applied: {why}"))
        })
        .collect()
}

/// Records on each skipped resource sdop applied before that it was not applied and why, so
/// `sdop get` shows it as such instead of what its last pass left.
fn mark_not_applied(
    store: &crate::state::StateStore,
    skipped: &[(crate::manifest::ResourceId, String)],
) -> Result<()> {
    for (id, message) in skipped {
        let Some(mut status) = store.load(id)? else {
            continue;
        };
        let before = status
            .conditions
            .iter()
            .find(|c| c.kind == crate::state::MANIFEST_CONDITION)
            .map(|c| (c.status, c.message.clone()));
        if before != Some((false, message.clone())) {
            status.set_condition(
                crate::state::MANIFEST_CONDITION,
                false,
                "InvalidManifest",
                message,
            );
            status.event(message.clone());
            store.save(&status)?;
        }
    }
    Ok(())
}
