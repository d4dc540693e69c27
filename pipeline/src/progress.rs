//! Progress bars for long work: rate and ETA on a terminal, silent otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` units (e.g. "videos"), hidden when `visible` is false
/// or stderr is not a terminal. The caller puts rates in the message.
pub fn bar(total: u64, unit: &str, visible: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}), ETA {{eta}} | {{msg}}"
    );
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    pb
}
