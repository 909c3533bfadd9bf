//! Thin entry point: parse flags, run the library, map the outcome to an exit code.
use std::process::ExitCode;

fn main() -> ExitCode {
    match sdop::cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let err = anyhow::Error::from(err);
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
