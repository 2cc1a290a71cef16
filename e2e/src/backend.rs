//! The workloads behind the sidecars: tiny HTTP/1.1 servers on 127.0.0.1
//! that answer every request with their service name, and the plain-text
//! client a workload uses to call a peer through its sidecar.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use anyhow::{Context as _, Result};

/// A running backend; stops accepting when dropped.
pub struct Backend {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Starts the backend of `service` on a free port: it answers
    /// `hello from <service>`.
    pub fn start(service: &str) -> Result<Backend> {
        Backend::serving(format!("hello from {service}\n").into_bytes())
    }

    /// Starts a backend on a free port that answers every request with `body`.
    pub fn serving(body: Vec<u8>) -> Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a backend")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let body: Arc<[u8]> = body.into();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let body = body.clone();
                thread::spawn(move || {
                    let _ = answer(stream, &body);
                });
            }
        });
        Ok(Backend { port, stop })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection until the client closes it or asks
/// to close it (`connection: close`).
fn answer(stream: TcpStream, body: &[u8]) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut content_length = 0usize;
        let mut close = false;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        let mut request_body = vec![0u8; content_length];
        reader.read_exact(&mut request_body)?;
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: {connection}\r\n\r\n",
            body.len()
        )?;
        writer.write_all(body)?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// What a call through a sidecar gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// An HTTP answer came back.
    Answered {
        /// Its status code.
        status: u16,
        /// Its body.
        body: String,
    },
    /// The connection was closed (or reset) before any answer: the mesh
    /// refused it.
    Closed,
}

/// One `GET /` to `port` on a new connection; waits at most `timeout`.
pub fn http_get(port: u16, host: &str, timeout: Duration) -> Result<CallResult> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A reset after a denial still means "closed"; a timeout with
        // nothing read is an error the caller should see.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) if response.is_empty() => {
            return Err(error).context(format!("no answer from 127.0.0.1:{port}"));
        }
        Err(_) => {}
    }
    if response.is_empty() {
        return Ok(CallResult::Closed);
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok(answered(head, body))
}

/// The HTTP version [`curl_get`] speaks to the sidecar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 in clear text, with prior knowledge (as an application that
    /// speaks h2c to its sidecar).
    Http2,
}

/// One `GET /` to `port` with `host`, by `curl` (HTTP/1.1 or h2c): the
/// answer, or [`CallResult::Closed`] when no HTTP answer came back.
pub fn curl_get(
    port: u16,
    host: &str,
    version: HttpVersion,
    timeout: Duration,
) -> Result<CallResult> {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time"])
        .arg(timeout.as_secs().max(1).to_string())
        .arg(match version {
            HttpVersion::Http1 => "--http1.1",
            HttpVersion::Http2 => "--http2-prior-knowledge",
        })
        .arg("--header")
        .arg(format!("host: {host}"))
        // The status on a line of its own after the body.
        .args(["--write-out", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running curl (the h2c client of the e2e tests; apt-get install curl)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    match status.trim().parse::<u16>() {
        Ok(0) | Err(_) => Ok(CallResult::Closed),
        Ok(status) => Ok(CallResult::Answered {
            status,
            body: body.to_owned(),
        }),
    }
}

/// An answer from its head (status line and headers) and body.
fn answered(head: &str, body: &str) -> CallResult {
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    CallResult::Answered {
        status,
        body: body.to_owned(),
    }
}

/// One `GET /` on a kept-alive connection (`stream`, to a sidecar's
/// outbound port): the answer once its head and `content-length` body are
/// read, or `None` if the connection is closed (or fails) before a complete
/// answer. The connection stays open for the next request.
pub fn keep_alive_get(stream: &mut TcpStream, host: &str) -> Option<CallResult> {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Some(answered(head, &text[end + 4..]));
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A server-first TCP workload (SMTP, MySQL...): greets every connection
/// with `220 mazu greeting`, then echoes what it reads once.
pub struct Greeter {
    /// The port it listens on.
    pub port: u16,
    /// Connections accepted so far (an unauthenticated client must not
    /// cause one).
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Greeter {
    /// Starts the greeter on a free port.
    pub fn start() -> Result<Greeter> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a greeter")?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let _ = stream.write_all(GREETING);
                    let mut buf = [0u8; 256];
                    if let Ok(n) = stream.read(&mut buf) {
                        let _ = stream.write_all(&buf[..n]);
                    }
                });
            }
        });
        Ok(Greeter {
            port,
            accepted,
            stop,
        })
    }
}

/// What a [`Greeter`] says first.
pub const GREETING: &[u8] = b"220 mazu greeting\r\n";

impl Drop for Greeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
