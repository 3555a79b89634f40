//! Day two: reaching the machines nodeimg built, over SSH, trusting only
//! the host key nodeimg made for each one (known before its first boot, so
//! pinned from the very first connection): `status`, `diff` and `ssh`.

pub mod diff;
pub mod ssh;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

/// How to reach the machines, for every day-two command.
#[derive(Debug, Clone)]
pub struct ReachOptions {
    /// `NAME=HOST[:PORT]`: ask this machine there instead of at its
    /// profile address and ssh.port.
    pub addresses: Vec<String>,
    /// A private key to log in with (else ssh-agent and ssh's defaults).
    pub identity: Option<PathBuf>,
    /// The secrets file the machines were built with.
    pub secrets: Option<PathBuf>,
    /// How long one machine may take to connect and answer.
    pub timeout: Duration,
}

impl Default for ReachOptions {
    fn default() -> Self {
        ReachOptions {
            addresses: Vec::new(),
            identity: None,
            secrets: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A character a terminal acts on instead of showing: a control character
/// (escape sequences) or a bidirectional override (reorders what is shown).
pub(crate) fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// What a machine (or ssh quoting it) said, made safe to show: each
/// character a terminal would act on as `?`, at most `max` characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if acts_on_terminal(c) { '?' } else { c })
        .collect()
}
