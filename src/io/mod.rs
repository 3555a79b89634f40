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

/// `f` of every item, on every core, in the items' order: each core takes
/// a share in order, so the result is the same as one by one (machines are
/// independent; files are hashed independently).
pub fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    on_shares(items, |part| part.iter().map(&f).collect::<Vec<_>>())
        .into_iter()
        .flatten()
        .collect()
}

/// `f` of every item on every core, for its effect: each core stops at its
/// first error, and the first error in the items' order is returned, the
/// one a run one by one would have stopped at.
pub fn try_on_every_core<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    on_shares(items, |part| part.iter().try_for_each(&f))
        .into_iter()
        .collect()
}

/// `work` of each of consecutive shares of `items`, one share per core,
/// in order.
fn on_shares<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = items.len().div_ceil(cores).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(share)
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
