//! The one downloader: every file nodeimg takes from the network (base
//! images, checksum lists, charts) comes through here.
//!
//! A pinned download is cached under its sha256 and is used only once the
//! bytes hash to it: the body streams into `partial/<sha256>.part` while it
//! is hashed, and the file moves into `sha256/<sha256>` only when the hash
//! matches. A cut transfer leaves the part file, and the next attempt (in the
//! same run or a later one) resumes it with an HTTP Range request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diag::{Diagnostic, Kind};
use anyhow::{bail, Context, Result};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::io::hash::{parse_sha256, sha256_file};
use crate::io::progress::progress_bar;

/// Attempts per download before giving up (each resumes the last).
const ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The cache directory [default: `$NODEIMG_CACHE/downloads`, or
    /// `~/.cache/nodeimg/downloads`].
    pub cache_dir: PathBuf,
    /// Use only what is in the cache.
    pub offline: bool,
    /// Longest wait for a connection or for the next bytes of a body.
    pub idle_timeout: Duration,
    /// Pause before resuming a cut download (doubled each time).
    pub retry_pause: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            cache_dir: default_cache_dir(),
            offline: false,
            idle_timeout: Duration::from_secs(60),
            retry_pause: Duration::from_secs(2),
        }
    }
}

/// `$NODEIMG_CACHE/downloads`, else `$XDG_CACHE_HOME/nodeimg/downloads`,
/// else `~/.cache/nodeimg/downloads`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("NODEIMG_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("nodeimg")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nodeimg")))
        .unwrap_or_else(|| PathBuf::from(".nodeimg-cache"));
    base.join("downloads")
}

pub struct Fetcher {
    opts: FetchOptions,
    client: Option<reqwest::blocking::Client>,
}

impl Fetcher {
    pub fn new(opts: FetchOptions) -> Result<Fetcher> {
        let client = if opts.offline {
            None
        } else {
            Some(
                reqwest::blocking::Client::builder()
                    .user_agent(concat!("nodeimg/", env!("CARGO_PKG_VERSION")))
                    // Per operation (connect, each read), not for the whole body.
                    .timeout(opts.idle_timeout)
                    .connect_timeout(opts.idle_timeout)
                    .build()
                    .context("cannot set up the HTTP client")?,
            )
        };
        Ok(Fetcher { opts, client })
    }

    /// Where a file of this sha256 lives once verified.
    pub fn cached_path(&self, sha256: &str) -> PathBuf {
        self.opts.cache_dir.join("sha256").join(sha256)
    }

    fn part_path(&self, sha256: &str) -> PathBuf {
        self.opts
            .cache_dir
            .join("partial")
            .join(format!("{sha256}.part"))
    }

    /// The verified file at `url` whose sha256 is `sha256`: from the cache,
    /// or downloaded (resuming an earlier partial download) and verified.
    /// A `file://` URL is verified in place and not copied.
    /// At most `cap` bytes are accepted (announced or received).
    pub fn fetch(&self, url: &str, sha256: &str, cap: u64) -> Result<PathBuf> {
        let shown = shown_url(url);
        let sha256 = parse_sha256(sha256)
            .with_context(|| format!("{sha256:?} is not a sha256 (64 hex digits)"))?;
        if let Some(path) = url.strip_prefix("file://") {
            let path = PathBuf::from(path);
            crate::io::input::open_regular(&path, cap).map_err(anyhow::Error::msg)?;
            let actual = sha256_file(&path)?;
            if actual != sha256 {
                bail!(Diagnostic::new(
                    Kind::Download,
                    format!("sha256 mismatch: expected {sha256}, got {actual}")
                )
                .at(&shown)
                .hint("the file is not the one the profile pins; fix the sha256 or the file"));
            }
            return Ok(path);
        }
        let cached = self.cached_path(&sha256);
        if cached.is_file() {
            // Re-verified on use: a damaged cache entry is dropped, not used.
            if sha256_file(&cached)? == sha256 {
                return Ok(cached);
            }
            fs::remove_file(&cached)
                .with_context(|| format!("cannot remove the damaged {}", cached.display()))?;
        }
        let Some(client) = &self.client else {
            bail!(Diagnostic::new(
                Kind::Download,
                format!(
                    "{shown} (sha256 {sha256}) is not in the cache {}",
                    self.opts.cache_dir.display()
                )
            )
            .at("--offline")
            .hint(format!(
                "run once without --offline, or put the file there as sha256/{sha256}"
            )));
        };
        for dir in ["sha256", "partial"] {
            let d = self.opts.cache_dir.join(dir);
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let part = self.part_path(&sha256);
        let mut pause = self.opts.retry_pause;
        let mut attempt = 1;
        loop {
            match self.download(client, url, &part, cap) {
                Ok(actual) if actual == sha256 => break,
                Ok(actual) => {
                    // Nothing unverified is kept: the next run starts afresh.
                    let _ = fs::remove_file(&part);
                    bail!(Diagnostic::new(
                        Kind::Download,
                        format!("sha256 mismatch: expected {sha256}, got {actual}; nothing was cached")
                    )
                    .at(&shown)
                    .hint("the server sent other bytes than the profile pins; check the URL and the sha256"));
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Cut(e)) if attempt >= ATTEMPTS => {
                    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                    return Err(e.context(format!(
                        "{shown}: gave up after {ATTEMPTS} attempts with {have} bytes; run again to resume from there"
                    )));
                }
                Err(Attempt::Cut(_)) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
            }
        }
        File::open(&part)?.sync_all()?;
        fs::rename(&part, &cached)
            .with_context(|| format!("cannot move the download into {}", cached.display()))?;
        Ok(cached)
    }

    /// One attempt: appends to `part` (from its current length) and returns
    /// the sha256 of the whole file once the body is complete.
    fn download(
        &self,
        client: &reqwest::blocking::Client,
        url: &str,
        part: &Path,
        cap: u64,
    ) -> std::result::Result<String, Attempt> {
        let shown = shown_url(url);
        let url_shown = shown.as_str();
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().map_err(|e| {
            if e.is_redirect() {
                // Another attempt would follow the same loop.
                Attempt::Fatal(request_error(url, e))
            } else {
                Attempt::Cut(request_error(url, e))
            }
        })?;
        let status = resp.status();
        let resumed = status == StatusCode::PARTIAL_CONTENT
            && content_range_start(&resp) == Some(have)
            && have > 0;
        if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // The part file is as long as (or longer than) the body: start over.
            let _ = fs::remove_file(part);
            return Err(Attempt::Cut(anyhow::anyhow!(
                "{url_shown}: the server refused to resume"
            )));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(
                Diagnostic::new(Kind::Download, format!("the server answered {status}"))
                    .at(url_shown)
                    .hint(format!(
                        "check the URL{}",
                        if status == StatusCode::NOT_FOUND {
                            " (the file is not there)"
                        } else {
                            ""
                        }
                    ))
                    .into(),
            ));
        }
        let mut hasher = Sha256::new();
        let mut file = OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(part)
            .map_err(|e| {
                Attempt::Fatal(
                    anyhow::Error::new(e).context(format!("cannot write {}", part.display())),
                )
            })?;
        let mut done = 0;
        if resumed {
            // The hash covers the whole file: feed it what is already there.
            let mut old = File::open(part).map_err(|e| Attempt::Fatal(e.into()))?;
            io::copy(&mut old, &mut HashWriter(&mut hasher))
                .map_err(|e| Attempt::Fatal(e.into()))?;
            done = have;
        }
        let total = resp.content_length().map(|n| n + done);
        let too_big = |n: u64| {
            let _ = fs::remove_file(part);
            Attempt::Fatal(
                Diagnostic::new(
                    Kind::Download,
                    format!(
                        "the file is {n} bytes or more, more than the {} nodeimg accepts for it; nothing was kept",
                        crate::io::input::human(cap)
                    ),
                )
                .at(url_shown)
                .hint("check the URL: it names something much larger than expected")
                .into(),
            )
        };
        if let Some(total) = total.filter(|&t| t > cap) {
            return Err(too_big(total));
        }
        let bar = progress_bar(total, url.rsplit('/').next().unwrap_or(url));
        bar.set_position(done);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(Attempt::Cut(anyhow::Error::new(e).context(format!(
                        "{url_shown}: the transfer stopped after {done} bytes"
                    ))));
                }
            };
            file.write_all(&buf[..n]).map_err(|e| {
                Attempt::Fatal(
                    anyhow::Error::new(e).context(format!("cannot write {}", part.display())),
                )
            })?;
            hasher.update(&buf[..n]);
            done += n as u64;
            bar.set_position(done);
            if done > cap {
                bar.abandon();
                drop(file);
                return Err(too_big(done));
            }
        }
        bar.finish_and_clear();
        if let Some(total) = total {
            if done < total {
                return Err(Attempt::Cut(anyhow::anyhow!(
                    "{url_shown}: the transfer stopped after {done} of {total} bytes"
                )));
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// A small unpinned text file (a SHA256SUMS list): downloaded afresh
    /// when online (and kept), read from the cache when offline.
    pub fn fetch_text(&self, url: &str) -> Result<String> {
        let cap = crate::io::input::MAX_CHECKSUM_LIST;
        let shown = shown_url(url);
        if let Some(path) = url.strip_prefix("file://") {
            let bytes =
                crate::io::input::read_regular(Path::new(path), cap).map_err(anyhow::Error::msg)?;
            return String::from_utf8(bytes).with_context(|| format!("{path} is not text"));
        }
        let key = crate::io::hash::sha256_hex(url.as_bytes());
        let cached = self.opts.cache_dir.join("by-url").join(&key);
        let Some(client) = &self.client else {
            return match fs::read_to_string(&cached) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Diagnostic::new(
                    Kind::Download,
                    format!(
                        "{shown} is not in the cache {}",
                        self.opts.cache_dir.display()
                    ),
                )
                .at("--offline")
                .hint("run once without --offline")
                .into()),
                read => read.with_context(|| format!("cannot read {}", cached.display())),
            };
        };
        let resp = client.get(url).send().map_err(|e| request_error(url, e))?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                Diagnostic::new(Kind::Download, format!("the server answered {status}"))
                    .at(&shown)
                    .hint("check the URL")
            );
        }
        let mut bytes = Vec::new();
        resp.take(cap + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{shown}: the transfer failed"))?;
        if bytes.len() as u64 > cap {
            bail!(Diagnostic::new(
                Kind::Download,
                format!(
                    "more than the {} nodeimg reads for a checksum list",
                    crate::io::input::human(cap)
                )
            )
            .at(&shown)
            .hint("check the URL: it should name a SHA256SUMS file"));
        }
        let text = String::from_utf8(bytes).with_context(|| format!("{shown}: not text"))?;
        crate::io::write::write_private_atomic(&cached, text.as_bytes())?;
        Ok(text)
    }
}

enum Attempt {
    /// Worth another attempt that resumes the part file.
    Cut(anyhow::Error),
    /// Another attempt would fail the same way.
    Fatal(anyhow::Error),
}

/// A request that got no answer (or only redirects).
fn request_error(url: &str, e: reqwest::Error) -> anyhow::Error {
    let what = if e.is_redirect() {
        "too many redirects (a redirect loop?); not retried"
    } else if e.is_timeout() {
        "no answer in time (timed out)"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    // reqwest's own message repeats the URL, credentials and all.
    anyhow::Error::new(e.without_url()).context(format!("{}: {what}", shown_url(url)))
}

/// `url` as messages show it: a password in it (`user:pass@`) becomes `***`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

fn content_range_start(resp: &reqwest::blocking::Response) -> Option<u64> {
    // "bytes START-END/TOTAL"
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
