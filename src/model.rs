//! The small vocabulary every stage shares and that uses no stage: machine
//! roles, protocols, what makes a DNS label or a host address, and shell
//! quoting. Kept here, one level below the stages, so that none of them
//! has to import another for a word.

use std::net::Ipv4Addr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Nfs,
    Master,
    Worker,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Nfs, Role::Master, Role::Worker];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Nfs => "nfs",
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
    pub fn is_kubernetes(self) -> bool {
        matches!(self, Role::Master | Role::Worker)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// The range that makes `a` no host's address (loopback, multicast,
/// reserved including 0.0.0.0 and the broadcast address, link-local).
pub fn unusable_range(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_loopback() {
        Some("the loopback range (127.0.0.0/8), which never leaves a machine")
    } else if a.is_multicast() {
        Some("a multicast range (224.0.0.0/4), not one for hosts")
    } else if a.octets()[0] == 0 || a.octets()[0] >= 240 {
        Some("a reserved range, not one for hosts")
    } else if a.is_link_local() {
        Some("the link-local range (169.254.0.0/16), which no router forwards and DHCP-less hosts pick at random")
    } else {
        None
    }
}

/// RFC 1918 and shared address space (100.64.0.0/10, carrier-grade NAT).
pub fn is_private_v4(a: Ipv4Addr) -> bool {
    a.is_private() || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
}

/// `s` as one single-quoted POSIX shell word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
