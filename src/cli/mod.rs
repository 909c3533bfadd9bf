//! The `sdop` command line. Each subcommand is a small function over the library.

mod render;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::apply::cloud::AwsCloud;
use crate::apply::{apply, ApplyOptions};
use crate::aws::{Clients, Connection};
use crate::engine::{self, cloud};
use crate::error::{Error, Result};
use crate::manifest::{load_paths, Loaded};
use crate::state::StateStore;

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
    /// AWS region (default: from the environment or profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (a local emulator, a VPC endpoint).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
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
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
        /// Do not read AWS: every object shows as a create (CI without credentials).
        #[arg(long)]
        offline: bool,
    },
    /// Converge AWS to the manifests. Exit 0: converged (or progressing without --wait), 1: problems.
    Apply {
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
        /// Allow pruning more than half of what sdop owns.
        #[arg(long)]
        force: bool,
    },
    /// Show status: all resources, one kind, or KIND/NAME.
    Get {
        what: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: GetFormat,
    },
    /// Print the JSON Schema of all manifest kinds.
    Schema,
}

/// Parses the process arguments and runs the command; returns the exit code.
pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(execute(cli))
}

pub async fn execute(cli: Cli) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Validate { paths, output } => {
            let loaded = load_paths(&paths);
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
                            "file": d.file, "line": d.position.line, "column": d.position.column,
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
        } => {
            let loaded = load_valid(&paths)?;
            let plan = if offline {
                engine::plan_all(&loaded.manifests, &loaded.graph, &cloud::Offline).await?
            } else {
                let aws = AwsCloud {
                    clients: connect(&cli.aws).await,
                    store: store(&cli.aws)?,
                };
                engine::plan_all(&loaded.manifests, &loaded.graph, &aws).await?
            };
            let note = if offline {
                "offline: AWS was not read, so everything shows as a create"
            } else {
                ""
            };
            match output {
                Format::Text => write!(stdout, "{}", render::plan_text(&plan, note)),
                Format::Json => writeln!(
                    stdout,
                    "{:#}",
                    serde_json::json!({"changes": plan.has_changes(), "actions": plan.actions})
                ),
            }
            .map_err(write_error)?;
            Ok(if plan.has_changes() {
                exit::CHANGES
            } else {
                exit::OK
            })
        }
        Command::Apply {
            paths,
            wait,
            timeout,
            prune,
            force,
        } => {
            let mut loaded = load_paths(&paths);
            let invalid = !loaded.is_valid();
            if invalid {
                // Bad input stops only itself (and what depends on it); nothing is pruned.
                eprintln!("{}", crate::diagnostics::render(&loaded.diagnostics));
                loaded = loaded.valid_subset();
                eprintln!(
                    "{} problem(s) found; applying the {} manifest(s) not affected; not pruning",
                    loaded.diagnostics.len(),
                    loaded.manifests.len()
                );
            }
            let prune = prune && !invalid;
            let clients = connect(&cli.aws).await;
            let store = store(&cli.aws)?;
            let options = ApplyOptions {
                wait,
                timeout,
                prune,
                force,
                ..ApplyOptions::default()
            };
            let report = |line: String| println!("{line}");
            let summary = apply(&loaded, &clients, &store, &options, &report).await?;
            drop(stdout);
            let statuses = store.load_all()?;
            let mut out = std::io::stdout().lock();
            write!(out, "\n{}", render::status_table(&statuses)).map_err(write_error)?;
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
        Command::Get { what, output } => {
            let store = store(&cli.aws)?;
            let statuses: Vec<_> = store
                .load_all()?
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
                eprintln!("not found: {}", what.unwrap_or_default());
                return Ok(exit::ERROR);
            }
            match output {
                GetFormat::Table => write!(stdout, "{}", render::status_table(&statuses)),
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
            Ok(exit::OK)
        }
        Command::Schema => {
            writeln!(stdout, "{:#}", crate::schema::manifest_schema()).map_err(write_error)?;
            Ok(exit::OK)
        }
    }
}

async fn connect(args: &AwsArgs) -> Clients {
    Clients::connect(&Connection {
        region: args.region.clone(),
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
    })
    .await
}

fn store(args: &AwsArgs) -> Result<StateStore> {
    StateStore::open(
        args.state_dir
            .clone()
            .unwrap_or_else(StateStore::default_dir),
    )
}

/// Loads manifests; any diagnostic fails the command with all of them listed.
fn load_valid(paths: &[PathBuf]) -> Result<Loaded> {
    let loaded = load_paths(paths);
    if loaded.is_valid() {
        Ok(loaded)
    } else {
        Err(Error::Invalid(loaded.diagnostics))
    }
}

fn write_error(err: std::io::Error) -> Error {
    Error::io("writing output", err)
}
