//! Progress bars for long byte streams (downloads, flashing).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The byte progress bar of downloads and of `flash`.
pub fn progress_bar(len: Option<u64>, what: &str) -> ProgressBar {
    // Drawn on a terminal only: stderr that is a pipe or a file stays quiet.
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}
