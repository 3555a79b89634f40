//! A small HTTP/1.1 file server on 127.0.0.1 for download tests: serves
//! files from memory, honours Range, and can misbehave on purpose (cut a
//! body halfway, answer too slowly), recording every request it sees.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Behaviour {
    /// The first this many GETs of a body stop after half of it.
    pub cut_first: usize,
    /// Wait this long before answering anything.
    pub delay: Duration,
}

#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// Read from disk on each request (large images).
    File(std::path::PathBuf),
    /// Bytes without end and without a Content-Length (a hostile server).
    Endless,
    /// Announces this Content-Length, sends a few bytes and hangs up.
    Announce(u64),
    /// `302 Found` to this path.
    Redirect(String),
}

#[derive(Default)]
struct State {
    files: HashMap<String, Body>,
    behaviour: Behaviour,
    /// (path, Range header) of every request.
    requests: Vec<(String, Option<String>)>,
    cuts_done: usize,
}

pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            behaviour,
            ..Default::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Server { base, state }
    }

    pub fn add(&self, path: &str, bytes: Vec<u8>) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), Body::Bytes(bytes));
        format!("{}{path}", self.base)
    }

    /// Serves the file at `file` (read when asked for, not held in memory).
    pub fn add_file(&self, path: &str, file: &std::path::Path) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), Body::File(file.to_path_buf()));
        format!("{}{path}", self.base)
    }

    fn insert(&self, path: &str, body: Body) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), body);
        format!("{}{path}", self.base)
    }

    pub fn add_endless(&self, path: &str) -> String {
        self.insert(path, Body::Endless)
    }

    pub fn add_announcing(&self, path: &str, len: u64) -> String {
        self.insert(path, Body::Announce(len))
    }

    pub fn add_redirect(&self, path: &str, to: &str) -> String {
        self.insert(path, Body::Redirect(to.to_string()))
    }

    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        let (body, delay, cut) = {
            let mut s = state.lock().unwrap();
            s.requests.push((path.clone(), range.clone()));
            let cut = s.cuts_done < s.behaviour.cut_first;
            let body = s.files.get(&path).cloned();
            if cut && body.is_some() {
                s.cuts_done += 1;
            }
            (body, s.behaviour.delay, cut)
        };
        std::thread::sleep(delay);
        let body = match body {
            Some(Body::File(path)) => {
                let len = std::fs::metadata(&path)?.len();
                let start = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.split('-').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|&s| s < len);
                let mut f = std::fs::File::open(&path)?;
                match start {
                    Some(s) => {
                        use std::io::{Seek, SeekFrom};
                        f.seek(SeekFrom::Start(s))?;
                        write!(
                            out,
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{len}\r\n\r\n",
                            len - s,
                            len - 1
                        )?;
                    }
                    None => write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?,
                }
                std::io::copy(&mut f, &mut out)?;
                out.flush()?;
                continue;
            }
            Some(Body::Endless) => {
                out.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
                let chunk = vec![0x5au8; 64 * 1024];
                // Until the client hangs up.
                while out.write_all(&chunk).is_ok() {}
                return Ok(());
            }
            Some(Body::Announce(len)) => {
                write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nabc")?;
                return Ok(());
            }
            Some(Body::Redirect(to)) => {
                write!(
                    out,
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
                )?;
                continue;
            }
            Some(Body::Bytes(b)) => Some(b),
            None => None,
        };
        let Some(body) = body else {
            out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            )?;
            return Ok(());
        };
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse::<usize>().ok());
        let (status, slice, extra) = match start {
            Some(s) if s < body.len() => (
                "206 Partial Content",
                &body[s..],
                format!(
                    "Content-Range: bytes {s}-{}/{}\r\n",
                    body.len() - 1,
                    body.len()
                ),
            ),
            Some(_) => (
                "416 Range Not Satisfiable",
                &body[..0],
                format!("Content-Range: bytes */{}\r\n", body.len()),
            ),
            None => ("200 OK", &body[..], String::new()),
        };
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}\r\n",
            slice.len()
        )?;
        if cut {
            // Half the body, then the connection drops.
            out.write_all(&slice[..slice.len() / 2])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        out.write_all(slice)?;
        out.flush()?;
    }
}
