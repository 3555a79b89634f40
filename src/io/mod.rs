//! Primitives one level below every stage: advisory locks, cleanup on
//! interrupt, and the ownership checks that keep nodeimg from deleting
//! what it did not write.

pub mod input;
pub mod interrupt;
pub mod lock;

/// The effective user id: whose secrets file and staging directories
/// nodeimg trusts and may remove.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
