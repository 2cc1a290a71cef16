//! The agent against a curator that answers garbage: every answer announces a
//! gigabyte body (and streams as much of it as the agent reads). The agent
//! reads no more than its limits, keeps its memory small, persists nothing
//! the server sent, and still stops promptly on SIGTERM.

mod common;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use common::{AgentFiles, AgentProcess, mint, write_token};
use mazu_testkit::fixtures::Mesh;

/// Serves `HTTP/1.1 200` with `Content-Length: 1 GB` to every request on
/// 127.0.0.1, then streams zeros until the client goes away. Returns the
/// port, the bytes sent so far and a stop flag.
fn garbage_server() -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent_in, stop_in) = (sent.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stop_in.load(Ordering::SeqCst) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let sent = sent_in.clone();
            let stop = stop_in.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n";
                if stream.write_all(head).is_err() {
                    return;
                }
                let zeros = [b'0'; 64 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    match stream.write(&zeros) {
                        Ok(n) => {
                            sent.fetch_add(n as u64, Ordering::SeqCst);
                        }
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (port, sent, stop)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_curator_that_sends_endless_bodies_is_refused_without_reading_them() {
    let mesh = Mesh::new();
    let (port, sent, stop) = garbage_server();
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "web"));
    let mut agent = AgentProcess::start(
        &format!("http://127.0.0.1:{port}"),
        &files.token_file,
        &files.state,
        &["--cert-dir", files.certs.to_str().expect("utf-8")],
    );
    // Several attempts (with backoff) against the garbage.
    agent.wait_log(Duration::from_secs(30), "longer than");
    std::thread::sleep(Duration::from_secs(3));
    let rss = rss_kib(agent.pid());
    assert!(agent.running(), "{}", agent.log());
    assert!(
        rss < 100 * 1024,
        "the agent grew to {rss} KiB:\n{}",
        agent.log()
    );
    // Nothing from the server was kept: no CRS, no checkpoint, no certificate.
    for file in ["crs.bin", "checkpoint.json"] {
        assert!(!files.state.join(file).exists(), "{file} was written");
    }
    assert!(!files.certs.join("cert.pem").exists());
    // The log names the refusal without quoting the body.
    let log = agent.log();
    assert!(
        !log.contains("0000000000000000000000000000000000000000"),
        "{log}"
    );
    // SIGTERM with a curator that never stops sending: prompt exit.
    let started = Instant::now();
    assert_eq!(agent.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    // The agent stopped reading long before the announced gigabyte.
    assert!(sent.load(Ordering::SeqCst) < 1_000_000_000);
}

/// A curator that accepts connections and never answers: SIGTERM still
/// stops the agent at once (the call in progress is abandoned).
#[test]
fn a_curator_that_never_answers_does_not_hold_up_the_shutdown() {
    let mesh = Mesh::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept and hold every connection, reading nothing, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "web"));
    let mut agent = AgentProcess::start(
        &format!("http://127.0.0.1:{port}"),
        &files.token_file,
        &files.state,
        &[],
    );
    agent.wait_log(Duration::from_secs(30), "read the token file");
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(agent.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}:\n{}",
        started.elapsed(),
        agent.log()
    );
}
