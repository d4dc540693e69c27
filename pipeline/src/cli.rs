//! What every binary of the workspace does around its own work: logs to
//! stderr through `tracing` (`RUST_LOG`, default `info`), and turns an error
//! into one short `error: ...` line and a failing exit code.

use std::process::ExitCode;

/// Longest error line printed; longer ones are cut, saying how much was left out.
pub const MAX_ERROR_CHARS: usize = 300;

pub fn main_with(run: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(crate::progress::use_color())
        .with_target(false)
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line; a usage error is printed with every line cut
/// to [`MAX_ERROR_CHARS`] (clap would echo a 5,000-character argument back
/// whole). Help and version print as clap prints them.
pub fn parse_args<P: clap::Parser>() -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            for line in rendered.lines() {
                eprintln!("{}", short_line(line));
            }
            std::process::exit(e.exit_code());
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose text
/// its parent already shows (`path: No such file...` over `No such file...`)
/// is not repeated. Cut to [`MAX_ERROR_CHARS`].
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text.trim());
    }
    short_line(&line)
}

/// `text` as one line of at most [`MAX_ERROR_CHARS`] characters, saying how
/// much was left out.
pub fn short_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let total = line.chars().count();
    if total <= MAX_ERROR_CHARS {
        return line;
    }
    let kept: String = line.chars().take(MAX_ERROR_CHARS - 40).collect();
    format!("{kept}... ({} more characters)", total - (MAX_ERROR_CHARS - 40))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IoContext;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::fs::read("/nonexistent/x").at("/nonexistent/x").unwrap_err();
        let line = error_line(&anyhow::Error::new(io).context("reading the list"));
        assert_eq!(line.matches("No such file").count(), 1, "{line}");
        assert!(line.starts_with("reading the list: /nonexistent/x: "), "{line}");
    }

    #[test]
    fn long_errors_are_cut_to_one_short_line() {
        let e = anyhow::anyhow!("bad: {}\nsecond line", "x".repeat(9000));
        let line = error_line(&e);
        assert!(line.chars().count() <= MAX_ERROR_CHARS, "{}", line.len());
        assert!(!line.contains('\n') && line.ends_with("more characters)"), "{line}");
    }
}
