//! Running a command with a deadline and bounded output: a machine that
//! stops answering, or answers without end, cannot hang or flood nodeimg.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a command printed (each stream cut at the limit) and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// `None`: still running at the deadline, and killed.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Reads at most `limit` bytes of `r` and drains the rest, so that the
/// command never blocks on a full pipe.
fn read_capped(mut r: impl Read, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Kills the command's whole process group: what it started (ssh's
/// ProxyCommand, say) must not keep its pipes open after it.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill has no memory effects; the group is the child's own
        // (process_group(0) below), so nothing else is signalled.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How long the output readers may take once the command is gone.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `cmd` (in a process group of its own) with `stdin` as its input.
/// At `limit` it is killed with everything it started, and what it printed
/// until then is returned with no status. Each output stream keeps at most
/// `max_output` bytes.
pub fn run_with_deadline(
    cmd: &mut Command,
    stdin: &[u8],
    limit: Duration,
    max_output: usize,
) -> std::io::Result<Finished> {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let (Some(mut input), Some(out), Some(err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_group(&mut child);
        return Err(std::io::Error::other("the command's pipes were not opened"));
    };
    let input_data = stdin.to_vec();
    // A command that does not read its input must not block the writer:
    // the writer is a thread of its own, and a broken pipe is not an error.
    thread::spawn(move || {
        let _ = input.write_all(&input_data);
    });
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    thread::spawn(move || out_tx.send(read_capped(out, max_output)));
    thread::spawn(move || err_tx.send(read_capped(err, max_output)));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => break None,
            Err(e) => {
                kill_group(&mut child);
                return Err(e);
            }
        }
    };
    // Whatever is left of the group goes too (it holds the pipes open).
    kill_group(&mut child);
    // Readers end when the pipes close; a reader stuck on a pipe some
    // other process holds is left behind, not waited for.
    let stdout = out_rx.recv_timeout(DRAIN).unwrap_or_default();
    let stderr = err_rx.recv_timeout(DRAIN).unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_ends_gives_its_output_and_status() {
        let done = run_with_deadline(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            b"in\n",
            Duration::from_secs(20),
            1 << 20,
        )
        .unwrap();
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert_eq!(done.stdout, b"in\n");
        assert_eq!(done.stderr, b"err\n");
    }

    /// A command past its deadline is killed with what it started (a
    /// child that holds the output open too), its output so far kept; a
    /// flood is cut at the limit.
    #[test]
    fn a_hanging_or_flooding_command_is_stopped() {
        let started = Instant::now();
        let hung = run_with_deadline(
            Command::new("sh").args(["-c", "echo begun; sleep 30 & sleep 30"]),
            b"",
            Duration::from_millis(500),
            1024,
        )
        .unwrap();
        assert!(hung.status.is_none());
        assert_eq!(hung.stdout, b"begun\n");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let flood = run_with_deadline(
            Command::new("sh").args(["-c", "head -c 300000 /dev/zero"]),
            b"",
            Duration::from_secs(20),
            1000,
        )
        .unwrap();
        assert!(flood.status.is_some());
        assert_eq!(flood.stdout.len(), 1000);
    }
}
