//! Progress bars and spinners for long CLI work (submitting, `--wait` on
//! many tasks, benchmarks). They draw on stderr and only when stdout is a
//! terminal: piped or redirected output (scripts, `--json`, CI logs) never
//! gets them.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars may be drawn.
fn visible() -> bool {
    std::io::stdout().is_terminal()
}

/// A bar counting to `len`, labelled `msg` (hidden off a terminal).
pub(crate) fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb
}

/// A spinner labelled `msg` (hidden off a terminal).
pub(crate) fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn target() -> ProgressDrawTarget {
    if visible() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
