//! Primitives one level below every stage: advisory locks, cleanup on
//! interrupt, and the ownership checks that keep nodeimg from deleting
//! what it did not write.

pub mod interrupt;
pub mod lock;
