//! Loopback helpers for the real-Envoy tests: free ports, an echo server, a
//! registry stand-in that fails on demand, and a TLS client (`openssl
//! s_client`) presenting a workload certificate.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use crate::witnessed::{Request, TestLog, parse_path};
use anyhow::{Context as _, Result, anyhow, bail};

/// Every port [`free_port`] handed out in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port free right now on 127.0.0.1, for a server another process will
/// bind (Envoy listeners, a curator that must keep its port across restarts).
///
/// It is picked at random *below* the kernel's ephemeral range: a port the
/// OS handed out for port 0 is also where it puts the source ports of
/// outgoing connections, so between this check and the other process's
/// bind a client socket (of any test running meanwhile) could take it.
pub fn free_port() -> Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    // The process never hands out a port twice: a mesh picks a score of
    // ports before its Envoys bind them, and a port picked again in that
    // window (about one mesh start in a hundred, drawing from ~22,000) made
    // two of its listeners collide ("Address already in use").
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..200 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), low..high);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            let port = listener.local_addr()?.port();
            handed_out.insert(port);
            return Ok(port);
        }
    }
    // Everything below the ephemeral range seems taken: fall back to the OS.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A thread serving TCP connections until dropped.
pub struct Server {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            thread::spawn(move || handler(stream));
        }
    });
    Ok(Server { port, stop })
}

/// An echo server: every byte comes back.
pub fn echo_server() -> Result<Server> {
    serve(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A stand-in for the curator where a test needs failures on demand (the
/// real one is in [`crate::curator`]): a minimal HTTP/1.1 server answering
/// `GET /v1/checkpoint` and `GET /v1/log/records` from a
/// [`TestLog`] (cosigned at the current time), or
/// `503` while [`set_unavailable`](RegistryServer::set_unavailable).
pub struct RegistryServer {
    server: Server,
    body: Arc<Mutex<TestLog>>,
    unavailable: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RegistryServer {
    /// Serves `log`.
    pub fn start(log: TestLog) -> Result<RegistryServer> {
        let body = Arc::new(Mutex::new(log));
        let unavailable = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (served, down, log) = (body.clone(), unavailable.clone(), requests.clone());
        let server = serve(move |stream| {
            let _ = answer_registry(stream, &served, down.load(Ordering::SeqCst), &log);
        })?;
        Ok(RegistryServer {
            server,
            body,
            unavailable,
            requests,
        })
    }

    /// While true, every request gets `503 Service Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Replaces what is served.
    pub fn set(&self, log: TestLog) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = log;
    }

    /// Request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn answer_registry(
    stream: TcpStream,
    log_served: &Mutex<TestLog>,
    unavailable: bool,
    log: &Mutex<Vec<String>>,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request_line.trim_end().to_owned());
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let body = {
        let served = log_served.lock().unwrap_or_else(PoisonError::into_inner);
        match parse_path(path) {
            Request::Checkpoint => {
                Some(served.checkpoint(crate::fixtures::unix_now()).into_bytes())
            }
            Request::Records { start, end } => Some(served.records_bytes(start, end)),
            Request::State { size } => (size <= served.size()).then(|| served.state(size)),
            Request::Other(_) => None,
        }
    };
    let mut stream = stream;
    match body {
        _ if unavailable => write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?,
        None => write!(
            stream,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?,
        Some(bytes) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            )?;
            stream.write_all(&bytes)?;
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// Everything `stream` yields until it ends, gathered by a thread.
fn collect(
    mut stream: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&buf[..n]);
        }
    });
    (received, reader)
}

/// What a TLS client saw.
#[derive(Debug)]
pub struct ClientOutcome {
    /// Bytes received back.
    pub received: Vec<u8>,
    /// `openssl s_client`'s stderr (handshake details, alerts).
    pub stderr: String,
}

/// Connects with `openssl s_client` presenting `cert_pem`/`key_pem` (either
/// may be `None` for no client certificate), sends `message`, and collects
/// what comes back until the server closes or `wait` passes.
pub fn tls_round_trip(
    port: u16,
    identity: Option<(&str, &str)>,
    message: &[u8],
    wait: Duration,
    dir: &Path,
) -> Result<ClientOutcome> {
    let mut command = Command::new("openssl");
    command
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-quiet",
        ])
        .args(["-servername", "envoy.mazu.test"]);
    if let Some((cert, key)) = identity {
        let tag = format!(
            "{:x}",
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
        );
        let cert_path = dir.join(format!("client-{tag}.crt"));
        let key_path = dir.join(format!("client-{tag}.key"));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        command
            .arg("-cert")
            .arg(cert_path)
            .arg("-key")
            .arg(key_path);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run openssl s_client")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (received, reader) = collect(stdout);
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    if let Some(mut stdin) = child.stdin.take() {
        // Give the handshake a moment so the bytes go out as application data.
        thread::sleep(Duration::from_millis(300));
        let _ = stdin.write_all(message);
        let _ = stdin.flush();
        // Keep stdin open: -quiet ignores EOF on stdin, the server decides.
        let start = Instant::now();
        while start.elapsed() < wait {
            if child.try_wait()?.is_some() {
                break;
            }
            let done = received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                >= message.len();
            if done {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        drop(stdin);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let received = received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(ClientOutcome { received, stderr })
}

/// A TLS server on a port a proxy sends traffic to, holding a certificate
/// and key of the attacker's choosing, that never answers: it only counts
/// the application bytes it receives after a completed handshake
/// (`openssl s_server -quiet` prints exactly those). Killed on drop.
pub struct Impostor {
    child: Child,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Impostor {
    /// Listens on 127.0.0.1:`port` with `cert_pem`/`key_pem` (written
    /// under `dir`).
    pub fn start(port: u16, cert_pem: &str, key_pem: &str, dir: &Path) -> Result<Impostor> {
        let tag = format!("{port}-{:08x}", rand::random::<u32>());
        let cert = dir.join(format!("impostor-{tag}.crt"));
        let key = dir.join(format!("impostor-{tag}.key"));
        std::fs::write(&cert, cert_pem)?;
        std::fs::write(&key, key_pem)?;
        let mut child = Command::new("openssl")
            .arg("s_server")
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            // Ask for the client's certificate (as a sidecar would) but
            // accept any: the impostor wants the bytes, not the client.
            .args(["-verify", "1", "-quiet", "-naccept", "16"])
            // Stdin stays open and silent: the impostor never answers.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run openssl s_server")?;
        let (received, _reader) = collect(child.stdout.take().context("no stdout")?);
        // Listening once a plain TCP connection is accepted.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("the impostor exited with {status}");
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the impostor does not listen on {port}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Impostor { child, received })
    }

    /// The application bytes received so far.
    pub fn received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let port = free_port().expect("a free port");
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }
}
