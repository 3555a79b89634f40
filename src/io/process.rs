//! Running a command with a deadline and bounded output: a machine that
//! stops answering, or answers without end, cannot hang or flood nodeimg.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a command printed (each stream cut at the limit) and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
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

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` with `stdin` as its input; `None` when it was still running
/// after `limit` (it is killed then). Each output stream keeps at most
/// `max_output` bytes.
pub fn run_with_deadline(
    cmd: &mut Command,
    stdin: &[u8],
    limit: Duration,
    max_output: usize,
) -> std::io::Result<Option<Finished>> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(mut input), Some(out), Some(err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill(&mut child);
        return Err(std::io::Error::other("the command's pipes were not opened"));
    };
    let input_data = stdin.to_vec();
    // A command that does not read its input must not block the writer:
    // the writer is a thread of its own, and a broken pipe is not an error.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&input_data);
    });
    let out = thread::spawn(move || read_capped(out, max_output));
    let err = thread::spawn(move || read_capped(err, max_output));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(status.map(|status| Finished {
        status,
        stdout,
        stderr,
    }))
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
        .unwrap()
        .expect("finished");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout, b"in\n");
        assert_eq!(done.stderr, b"err\n");
    }

    /// A command past its deadline is killed; a flood is cut at the limit.
    #[test]
    fn a_hanging_or_flooding_command_is_stopped() {
        let started = Instant::now();
        let hung = run_with_deadline(
            Command::new("sh").args(["-c", "exec sleep 30"]),
            b"",
            Duration::from_millis(300),
            1024,
        )
        .unwrap();
        assert!(hung.is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
        let flood = run_with_deadline(
            Command::new("sh").args(["-c", "head -c 300000 /dev/zero"]),
            b"",
            Duration::from_secs(20),
            1000,
        )
        .unwrap()
        .expect("finished");
        assert_eq!(flood.stdout.len(), 1000);
    }
}
