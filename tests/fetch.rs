//! The downloader against a server on loopback: caching, verification,
//! resume after a cut connection, and clear errors.

mod common;

use std::fs;
use std::time::Duration;

use common::http::{Behaviour, Server};
use nodeimg::fetch::{FetchOptions, Fetcher};

/// A cap well above every payload of these tests.
const CAP: u64 = 1 << 30;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha(bytes: &[u8]) -> String {
    nodeimg::io::hash::sha256_hex(bytes)
}

fn fetcher(cache: &std::path::Path, offline: bool) -> Fetcher {
    Fetcher::new(FetchOptions {
        cache_dir: cache.to_path_buf(),
        offline,
        idle_timeout: Duration::from_secs(2),
        retry_pause: Duration::from_millis(50),
    })
    .unwrap()
}

/// Every file under the cache (relative paths).
fn cached_files(cache: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["sha256", "partial"] {
        if let Ok(entries) = fs::read_dir(cache.join(sub)) {
            for e in entries.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn a_pinned_download_is_verified_cached_and_then_used_offline() {
    let server = Server::start(Behaviour::default());
    let body = payload(300_000);
    let url = server.add("/base.img", body.clone());
    let cache = tempfile::tempdir().unwrap();
    let path = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(
        cached_files(cache.path()),
        [format!("sha256/{}", sha(&body))]
    );
    // Offline, the cache answers and the server sees nothing more.
    let before = server.requests().len();
    let again = fetcher(cache.path(), true)
        .fetch(&url, &sha(&body), CAP)
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(server.requests().len(), before);
}

#[test]
fn offline_without_the_file_says_what_is_missing() {
    let cache = tempfile::tempdir().unwrap();
    let want = sha(b"x");
    let err = fetcher(cache.path(), true)
        .fetch("http://127.0.0.1:9/base.img", &want, CAP)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("--offline"), "{text}");
    assert!(text.contains("http://127.0.0.1:9/base.img"), "{text}");
    assert!(text.contains(&want), "{text}");
}

#[test]
fn a_corrupted_download_is_refused_with_both_hashes_and_nothing_is_cached() {
    let server = Server::start(Behaviour::default());
    let good = payload(200_000);
    let mut bad = good.clone();
    bad[100_000] ^= 1;
    let url = server.add("/base.img", bad.clone());
    let cache = tempfile::tempdir().unwrap();
    let err = fetcher(cache.path(), false)
        .fetch(&url, &sha(&good), CAP)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&format!("expected {}", sha(&good))), "{text}");
    assert!(text.contains(&format!("got {}", sha(&bad))), "{text}");
    assert!(
        cached_files(cache.path()).is_empty(),
        "{:?}",
        cached_files(cache.path())
    );
}

#[test]
fn a_cut_download_resumes_where_it_stopped() {
    let server = Server::start(Behaviour {
        cut_first: 1,
        ..Default::default()
    });
    let body = payload(1_000_000);
    let url = server.add("/base.img", body.clone());
    let cache = tempfile::tempdir().unwrap();
    let path = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].1, None);
    // The second request asks for the rest only: from the first half's end.
    assert_eq!(
        requests[1].1.as_deref(),
        Some("bytes=500000-"),
        "{requests:?}"
    );
}

#[test]
fn a_download_cut_in_one_run_resumes_in_the_next() {
    let server = Server::start(Behaviour {
        cut_first: 100,
        ..Default::default()
    });
    let body = payload(64_000);
    let url = server.add("/base.img", body.clone());
    let cache = tempfile::tempdir().unwrap();
    // Every attempt of this run is cut: the run fails but keeps the part.
    let err = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("run again to resume"),
        "{err:#}"
    );
    let part = cache
        .path()
        .join("partial")
        .join(format!("{}.part", sha(&body)));
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64);
    let served_whole = Server::start(Behaviour::default());
    let url2 = served_whole.add("/base.img", body.clone());
    let path = fetcher(cache.path(), false)
        .fetch(&url2, &sha(&body), CAP)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(
        served_whole.requests()[0].1.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
}

#[test]
fn not_found_is_a_clear_error_and_caches_nothing() {
    let server = Server::start(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/missing.img", server.base);
    let err = fetcher(cache.path(), false)
        .fetch(&url, &sha(b"x"), CAP)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("404"), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(cached_files(cache.path()).is_empty());
    // A 404 is not worth retrying.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_server_that_does_not_answer_times_out_with_a_clear_error() {
    let server = Server::start(Behaviour {
        delay: Duration::from_secs(30),
        ..Default::default()
    });
    let body = payload(1000);
    let url = server.add("/base.img", body.clone());
    let cache = tempfile::tempdir().unwrap();
    let err = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("timed out"), "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(!cache.path().join("sha256").join(sha(&body)).exists());
}

#[test]
fn a_damaged_cache_entry_is_fetched_again() {
    let server = Server::start(Behaviour::default());
    let body = payload(10_000);
    let url = server.add("/base.img", body.clone());
    let cache = tempfile::tempdir().unwrap();
    let path = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap();
    fs::write(&path, b"bit rot").unwrap();
    let path = fetcher(cache.path(), false)
        .fetch(&url, &sha(&body), CAP)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), body);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn sha256sums_lists_are_read_in_both_notations() {
    let list = format!(
        "{}  other.img\n{} *ubuntu-22.04-server-cloudimg-amd64.img\n",
        sha(b"a"),
        sha(b"b")
    );
    assert_eq!(
        nodeimg::io::hash::sums_entry(&list, "ubuntu-22.04-server-cloudimg-amd64.img"),
        Some(sha(b"b"))
    );
    assert_eq!(
        nodeimg::io::hash::sums_entry(&list, "other.img"),
        Some(sha(b"a"))
    );
    assert_eq!(nodeimg::io::hash::sums_entry(&list, "missing.img"), None);
}

/// A server that sends without end (or announces more than the cap) fills
/// no disk: the download stops at the cap, keeps nothing, and is not retried.
#[test]
fn a_download_larger_than_its_cap_is_stopped_and_nothing_is_kept() {
    let server = Server::start(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(cache.path(), false);
    let url = server.add_endless("/endless.img");
    let err = format!("{:#}", f.fetch(&url, &sha(b"x"), 4 << 20).unwrap_err());
    assert!(err.contains("more than the 4 MiB nodeimg accepts"), "{err}");
    assert!(
        cached_files(cache.path()).is_empty(),
        "{:?}",
        cached_files(cache.path())
    );
    assert_eq!(
        server.requests().len(),
        1,
        "retried: {:?}",
        server.requests()
    );
    let url = server.add_announcing("/big.img", 5 << 30);
    let err = format!("{:#}", f.fetch(&url, &sha(b"x"), 4 << 20).unwrap_err());
    assert!(err.contains("is 5368709120 bytes or more"), "{err}");
    assert!(cached_files(cache.path()).is_empty());
}

/// A redirect loop is an answer, not a cut connection: one attempt, a clear
/// message.
#[test]
fn a_redirect_loop_is_not_retried() {
    let server = Server::start(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let url = server.add_redirect("/a.img", "/b.img");
    server.add_redirect("/b.img", "/a.img");
    let err = format!(
        "{:#}",
        fetcher(cache.path(), false)
            .fetch(&url, &sha(b"x"), CAP)
            .unwrap_err()
    );
    assert!(
        err.contains("too many redirects (a redirect loop?); not retried"),
        "{err}"
    );
    assert!(!err.contains("run again"), "{err}");
    // reqwest follows up to 10 redirects, once.
    assert!(server.requests().len() <= 11, "{}", server.requests().len());
}

/// A password in a URL never reaches a message.
#[test]
fn credentials_in_a_url_are_not_shown() {
    let server = Server::start(Behaviour::default());
    let cache = tempfile::tempdir().unwrap();
    let with_password = server.base.replace("http://", "http://alice:hunter2@") + "/missing.img";
    let f = fetcher(cache.path(), false);
    let err = format!(
        "{:#}",
        f.fetch(&with_password, &sha(b"x"), CAP).unwrap_err()
    );
    assert!(err.contains("alice:***@"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let dead = "http://bob:s3cret@127.0.0.1:9/x.img";
    let err = format!("{:#}", f.fetch(dead, &sha(b"x"), CAP).unwrap_err());
    assert!(!err.contains("s3cret") && err.contains("bob:***@"), "{err}");
}
