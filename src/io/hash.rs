//! SHA-256: of bytes, of (sparse) files, and as written in checksum lists.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The sha256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A sha256 as lowercase hex, checked for shape.
pub fn parse_sha256(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then_some(t)
}

/// The sha256 of a file, streamed. Holes of a sparse file (disk images are
/// mostly holes) are hashed as the zeros they read as, without reading them.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    sha256_sparse(&mut f).with_context(|| format!("cannot read {}", path.display()))
}

fn sha256_sparse(f: &mut File) -> io::Result<String> {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    const BUFFER: usize = 1 << 20;
    let len = f.metadata()?.len();
    if len <= BUFFER as u64 {
        // A seed's files: one read, no hole search, no large buffers.
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes)?;
        return Ok(sha256_hex(&bytes));
    }
    let mut hasher = Sha256::new();
    let zeros = vec![0u8; BUFFER];
    let mut buf = vec![0u8; BUFFER];
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek on an open descriptor; the result is checked.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        // No more data (ENXIO), or a file system without SEEK_DATA: the
        // rest is a hole, or is read as it is.
        let data = if data < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                len
            } else {
                pos
            }
        } else {
            (data as u64).min(len)
        };
        let mut hole = data - pos;
        while hole > 0 {
            let n = hole.min(zeros.len() as u64) as usize;
            hasher.update(&zeros[..n]);
            hole -= n as u64;
        }
        if data >= len {
            break;
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(f.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
        let end = if end < 0 { len } else { (end as u64).min(len) };
        f.seek(SeekFrom::Start(data))?;
        let mut left = end - data;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        pos = end;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The entry for `name` in a SHA256SUMS list (`HASH  NAME` or `HASH *NAME`).
pub fn sums_entry(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (hash, file) = line.split_once(char::is_whitespace)?;
        let file = file.trim_start().trim_start_matches('*');
        (file == name).then(|| parse_sha256(hash)).flatten()
    })
}
