//! What every binary of the workspace does around its own work: logs to
//! stderr through `tracing` (`RUST_LOG`, default `info`), and turns an error
//! into one `error: ...` line (with its causes) and a failing exit code.

use std::fmt::Display;
use std::process::ExitCode;

pub fn main_with<E: Display>(run: impl FnOnce() -> Result<ExitCode, E>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
