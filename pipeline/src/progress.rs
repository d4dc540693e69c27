//! Progress of long work: a bar with rate and ETA on a terminal; when
//! stderr is not a terminal (a log file, a cluster job, `| tee`), a plain
//! `tracing` line every few seconds instead (position, rate, ETA and the
//! caller's message, e.g. the loss), with no escape codes.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between plain progress lines (see [`set_log_every`]).
static LOG_EVERY_SECS: AtomicU64 = AtomicU64::new(DEFAULT_LOG_EVERY_SECS);
pub const DEFAULT_LOG_EVERY_SECS: u64 = 10;

/// Sets the seconds between plain progress lines (at least 1).
pub fn set_log_every(seconds: u64) {
    LOG_EVERY_SECS.store(seconds.max(1), Ordering::Relaxed);
}

/// Whether log lines may carry colour: stderr is a terminal and `NO_COLOR`
/// is unset (<https://no-color.org>).
pub fn use_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Progress over `total` units (e.g. "steps"); silent when `visible` is false.
pub fn bar(total: u64, unit: &str, visible: bool) -> Progress {
    let terminal = visible && std::io::stderr().is_terminal();
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}), ETA {{eta}} | {{msg}}"
    );
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    let plain = (visible && !terminal).then(|| {
        Mutex::new(PlainLines {
            unit: unit.to_string(),
            total,
            every: Duration::from_secs(LOG_EVERY_SECS.load(Ordering::Relaxed)),
            started: Instant::now(),
            last: Instant::now(),
            first: 0,
            position: 0,
            message: String::new(),
        })
    });
    Progress { bar: pb, plain }
}

/// A bar on a terminal, plain periodic lines elsewhere.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Mutex<PlainLines>>,
}

#[derive(Debug)]
struct PlainLines {
    unit: String,
    total: u64,
    every: Duration,
    started: Instant,
    last: Instant,
    /// Position when counting started (a resumed run starts past 0).
    first: u64,
    position: u64,
    message: String,
}

impl PlainLines {
    fn line(&self) -> String {
        let done = self.position.saturating_sub(self.first);
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / seconds.max(1e-9);
        let left = self.total.saturating_sub(self.position);
        let eta = if rate > 0.0 { format_duration(left as f64 / rate) } else { "?".into() };
        let percent = 100.0 * self.position as f64 / self.total.max(1) as f64;
        let mut line = format!(
            "{}/{} {} ({percent:.0}%), {rate:.2} {}/s, elapsed {}, ETA {eta}",
            self.position,
            self.total,
            self.unit,
            self.unit,
            format_duration(seconds)
        );
        if !self.message.is_empty() {
            line.push_str(" | ");
            line.push_str(&self.message);
        }
        line
    }

    fn tick(&mut self) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            tracing::info!("{}", self.line());
        }
    }
}

/// `1h02m03s`, `4m05s`, `6s`.
fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

impl Progress {
    fn plain(&self, f: impl FnOnce(&mut PlainLines)) {
        if let Some(plain) = &self.plain {
            f(&mut plain.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.plain(|p| {
            p.position += n;
            p.tick();
        });
    }

    /// Moves to `position` (a resumed run) without counting it as progress
    /// made now.
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
        self.plain(|p| {
            p.position = position;
            p.first = position;
        });
    }

    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        self.plain(|p| p.message = message.clone());
        self.bar.set_message(message);
    }

    /// Ends the bar (left on screen) or writes the last plain line.
    pub fn finish(&self) {
        self.bar.finish();
        self.plain(|p| tracing::info!("{}", p.line()));
    }

    /// Ends the bar (cleared) or writes the last plain line.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        self.plain(|p| tracing::info!("{}", p.line()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_position_rate_eta_and_message() {
        let mut p = PlainLines {
            unit: "steps".into(),
            total: 100,
            every: Duration::from_secs(10),
            started: Instant::now() - Duration::from_secs(20),
            last: Instant::now(),
            first: 10,
            position: 50,
            message: "loss 0.1".into(),
        };
        let line = p.line();
        assert!(line.starts_with("50/100 steps (50%), 2.00 steps/s, elapsed 20s, ETA 25s | loss 0.1"), "{line}");
        assert!(!line.contains('\x1b'));
        p.position = 100;
        assert!(p.line().contains("ETA 0s"));
        assert_eq!(format_duration(3723.0), "1h02m03s");
        assert_eq!(format_duration(245.0), "4m05s");
    }
}
