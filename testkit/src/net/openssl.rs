//! TLS peers made with `openssl`: a client presenting a workload
//! certificate, and an impostor server that counts what it receives.

use core::time::Duration;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};

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
