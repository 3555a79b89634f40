//! Primitives one level below every stage: hashing, atomic and private
//! writes, input limits, progress bars, advisory locks, cleanup on
//! interrupt, commands with a deadline, and the ownership checks that keep
//! nodeimg from deleting what it did not write. Nothing here uses a stage
//! module.

pub mod hash;
pub mod input;
pub mod interrupt;
pub mod lock;
pub mod process;
pub mod progress;
pub mod write;

/// The effective user id: whose secrets file and staging directories
/// nodeimg trusts and may remove.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
