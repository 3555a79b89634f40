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
