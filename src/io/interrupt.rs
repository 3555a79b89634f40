//! Ctrl-C, SIGTERM and SIGHUP while nodeimg writes: the staging
//! directories of the running command are removed before the process
//! exits, and never in the middle of the step that swaps an output into
//! place (that step holds [`critical`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static CRITICAL: Mutex<()> = Mutex::new(());
/// Commands that stop on a signal themselves (boot-test) while nothing is
/// being written.
static GRACEFUL: AtomicUsize = AtomicUsize::new(0);
static WATCH: Once = Once::new();

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the signal watcher (once per process).
pub fn watch() {
    WATCH.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if GRACEFUL.load(Ordering::SeqCst) > 0 && lock(&CLEANUP).is_empty() {
                    continue;
                }
                let _swap = lock(&CRITICAL);
                let staged: Vec<PathBuf> = lock(&CLEANUP).drain(..).collect();
                for dir in &staged {
                    // The main thread may still be writing into it: retry
                    // until the directory itself is gone (then its writes fail).
                    for _ in 0..100 {
                        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                            break;
                        }
                    }
                }
                if staged.is_empty() {
                    eprintln!("interrupted");
                } else {
                    eprintln!("interrupted: the output was left as it was");
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

/// Removes `dir` if the process is interrupted before [`forget`].
pub fn remove_on_interrupt(dir: PathBuf) {
    watch();
    lock(&CLEANUP).push(dir);
}

pub fn forget(dir: &std::path::Path) {
    lock(&CLEANUP).retain(|d| d != dir);
}

/// Held while an output is swapped into place or a secrets file is
/// replaced: an interrupt waits for it, so it sees the old or the new state.
pub fn critical() -> MutexGuard<'static, ()> {
    lock(&CRITICAL)
}

/// While the guard lives, a signal with nothing to clean up is left to the
/// caller's own handler (boot-test stops its machines).
pub struct Graceful;

impl Graceful {
    pub fn enter() -> Graceful {
        watch();
        GRACEFUL.fetch_add(1, Ordering::SeqCst);
        Graceful
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.fetch_sub(1, Ordering::SeqCst);
    }
}
