//! Thin entry point: parse flags, run the library, map the outcome to an exit code.
use std::process::ExitCode;

fn main() -> ExitCode {
    match sdop::cli::run() {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`sdop schema | head`): stop quietly, as Unix tools do.
        Err(sdop::error::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // The error's own text already says its cause (an I/O error's included): printing
            // its source chain too would say it twice.
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
