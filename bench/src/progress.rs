//! Progress bars for long steps (connecting thousands of clients, publish phases, settling),
//! drawn on stderr with `indicatif`; hidden automatically when stderr is not a terminal, so CI
//! logs keep only the one-line summaries the scenarios print.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `what`, with elapsed time, rate and a free-text message.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "  {prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}) {msg}",
    )
    .expect("static template is valid");
    b.set_style(style);
    b.set_prefix(what.to_string());
    b
}

/// A bar that counts seconds of a timed step (`secs` long).
pub fn timer(secs: f64, what: &str) -> ProgressBar {
    let b = ProgressBar::new((secs * 10.0).ceil() as u64);
    let style = ProgressStyle::with_template("  {prefix:>12} [{elapsed_precise}] {wide_bar} {msg}")
        .expect("static template is valid");
    b.set_style(style);
    b.set_prefix(what.to_string());
    b
}
