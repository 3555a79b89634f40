//! flock(2) on directories: two nodeimg runs that share a secrets file or an
//! output folder take turns, so they never make two different secrets.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Held locks; released when dropped (or when the process dies).
pub struct DirLocks {
    _files: Vec<File>,
}

fn flock(file: &File, nonblocking: bool) -> std::io::Result<()> {
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Locks every directory of `dirs` (which must exist), in one global order
/// (device, inode) so that two runs never wait for each other in a circle.
/// When another run holds one, says so on stderr and waits for it.
pub fn lock_dirs(dirs: &[&Path]) -> Result<DirLocks> {
    let mut opened = Vec::new();
    for dir in dirs {
        let file =
            File::open(dir).with_context(|| format!("cannot open {} to lock it", dir.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        opened.push(((meta.dev(), meta.ino()), dir.to_path_buf(), file));
    }
    opened.sort_by_key(|(id, _, _)| *id);
    opened.dedup_by_key(|(id, _, _)| *id);
    let mut files = Vec::new();
    for (_, dir, file) in opened {
        match flock(&file, true) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                eprintln!(
                    "waiting for another nodeimg run that is writing in {}",
                    dir.display()
                );
                flock(&file, false).with_context(|| format!("cannot lock {}", dir.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot lock {}", dir.display())),
        }
        files.push(file);
    }
    Ok(DirLocks { _files: files })
}

/// Takes `file`'s lock if no other process holds it (used to tell a live
/// run's staging directory from a dead one's).
pub fn try_lock(file: &File) -> bool {
    flock(file, true).is_ok()
}

/// Locks `file` (waiting if needed); the lock lives as long as the file.
pub fn lock(file: &File) -> std::io::Result<()> {
    flock(file, false)
}
