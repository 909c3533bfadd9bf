//! The `sdop` command line. Each subcommand is a small function over the library.

mod render;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::{self, cloud};
use crate::error::{Error, Result};
use crate::manifest::{load_paths, Loaded};

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

/// Where and as whom sdop talks to AWS (standard credential chain otherwise).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests: syntax, fields, AWS naming rules, references, cycles. Exit 1 if invalid.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Show what apply would change. Exit 0: nothing to do, 2: changes, 1: error.
    Plan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long, value_enum, default_value = "text")]
        output: Format,
    },
    /// Print the JSON Schema of all manifest kinds.
    Schema,
}

/// Parses the process arguments and runs the command; returns the exit code.
pub fn run() -> Result<u8> {
    let cli = Cli::parse();
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
        Command::Plan { paths, output } => {
            let loaded = load_valid(&paths)?;
            let plan = engine::plan_all(&loaded.manifests, &loaded.graph, &cloud::Offline).await?;
            match output {
                Format::Text => write!(
                    stdout,
                    "{}",
                    render::plan_text(
                        &plan,
                        "offline: AWS is not observed yet, so everything shows as a create"
                    )
                ),
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
        Command::Schema => {
            writeln!(stdout, "{:#}", crate::schema::manifest_schema()).map_err(write_error)?;
            Ok(exit::OK)
        }
    }
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
