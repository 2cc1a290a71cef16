//! 1,000 slow clients against the real curator process: half hold
//! connections open with a request head that never ends (slowloris), half
//! send a request body one byte a second, all from ten addresses
//! (127.0.0.2–11). Meanwhile a client at 127.0.0.1 gets `/healthz` at once
//! and registers a workload; the connection limits are counted; and the
//! slow connections are closed by the header-read and body-read timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use core::net::{Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::time::Instant;

use common::{Curator, Fixture};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const SLOW_CLIENTS: usize = 1000;
const ADDRESSES: u8 = 10;

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source.into(), 0)).ok()?;
    socket.connect(to).await.ok()
}

/// Whether the server closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            // A response (408 for a slow body) comes before the close.
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_take_the_curator_from_others() {
    let fx = Fixture::new();
    let mut args = fx.args(4);
    args.extend(
        [
            "--header-read-timeout-secs",
            "3",
            "--body-read-timeout-secs",
            "3",
            "--max-connections-per-client",
            "50",
            "--rate-limit-per-minute",
            "0",
        ]
        .map(String::from),
    );
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;

    // The slow clients: every one opens a connection and starts a request.
    let mut held = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(ADDRESSES)) as u8);
        let Some(mut stream) = connect_from(source, c.addr).await else {
            continue;
        };
        let start: &[u8] = if i % 2 == 0 {
            // A head that never ends.
            b"GET /v1/checkpoint HTTP/1.1\r\nHost: curator\r\nX-Slow: "
        } else {
            // A complete head, then a body that trickles.
            b"POST /v1/bindings HTTP/1.1\r\nHost: curator\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        };
        if stream.write_all(start).await.is_ok() {
            held.push((i % 2 == 0, stream));
        }
    }
    // Others are served meanwhile, promptly.
    let started = Instant::now();
    let health = c.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz took {:?}",
        started.elapsed()
    );
    let token = fx.token("web");
    c.register(&crs, &token).await;

    // The limits bit, and were counted: at most 50 connections per address
    // (the rest closed at once), at most 32 requests in progress per
    // address (the rest answered 503 at once).
    let metrics = c.get("/metrics").await.text().await.unwrap();
    let counter = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let refused_connections =
        counter("mazu_curator_connections_refused_total{reason=\"client_connections\"}");
    let refused_requests =
        counter("mazu_curator_registrations_refused_total{reason=\"client_overloaded\"}");
    assert!(
        refused_connections > 0 && refused_requests > 0,
        "connections refused {refused_connections}, requests refused {refused_requests}:\n{metrics}"
    );
    assert!(c.log().contains("connection limit reached"), "{}", c.log());

    // The timeouts close what was admitted: heads after 3 s, trickling
    // bodies after 3 s (with a 408).
    let mut still_open = 0;
    for (slow_head, stream) in held.iter_mut().take(200) {
        if !*slow_head {
            let _ = stream.write_all(b" ").await;
        }
        if !closed_within(stream, Duration::from_secs(10)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "slow connections outlived the timeouts");
    drop(held);
    // And the curator is still fine.
    assert_eq!(c.get("/healthz").await.status(), 200);
    c.terminate();
}
