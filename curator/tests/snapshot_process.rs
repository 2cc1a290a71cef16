//! The `mazu-curator` process started from a format-3 state snapshot: the
//! log's covered prefix is not read before serving (the log line says
//! `unscanned_prefix=N`), what it serves is byte for byte what a full
//! replay serves, and a snapshot that lies about the prefix stops the
//! server (exit status 1, ERROR logged) with the snapshot moved aside, so
//! that the next start replays the whole log. The in-process variants are
//! in `snapshot.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;
#[path = "support/snapshot_file.rs"]
mod snapshot_file;

use core::time::Duration;
use std::time::Instant;

use common::{Curator, Fixture};
use snapshot_file::reseal;

/// Everything the curator serves that follows the log: parameters,
/// registry, checkpoint (origin, size, root, state line), inclusion and
/// consistency proofs below and above the chunk roots, every record, and a
/// page of raw entries.
async fn view(c: &Curator, size: u64) -> Vec<Vec<u8>> {
    let mut out = vec![
        c.get_bytes("/v1/params?format=binary").await,
        c.get_bytes("/v1/registry").await,
    ];
    let checkpoint = String::from_utf8(c.get_bytes("/v1/checkpoint").await).unwrap();
    let text: Vec<&str> = checkpoint.lines().take(4).collect();
    assert_eq!(text[1], size.to_string());
    out.push(text.join("\n").into_bytes());
    for index in [0, 5, 63, 64, size - 1] {
        out.push(
            c.get_bytes(&format!("/v1/proofs/inclusion?index={index}&size={size}"))
                .await,
        );
    }
    for from in [1, 5, 64, size - 1] {
        out.push(
            c.get_bytes(&format!("/v1/proofs/consistency?from={from}&to={size}"))
                .await,
        );
    }
    out.push(
        c.get_bytes(&format!("/v1/log/records?start=0&end={size}"))
            .await,
    );
    out.push(c.get_bytes("/v1/log?start=60&limit=8").await);
    out
}

/// Waits for the process to exit on its own; its status.
fn exited(c: &mut Curator) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = c.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", c.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the log contains `text`.
async fn logged(c: &Curator, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "never logged {text:?}:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_restart_from_a_format_3_snapshot_serves_what_a_full_replay_serves() {
    let fx = Fixture::new();
    let mut args = fx.args(64);
    // 34 registrations from one client.
    args.extend(["--rate-limit-per-minute".into(), "0".into()]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    // 34 registrations: 68 entries, past the tree's first chunk of 64.
    for i in 0..34 {
        c.register(&crs, &fx.token(&format!("sa-{i}"))).await;
    }
    assert!(c.terminate().success());
    let snapshot = fx.data_dir().join("state.snapshot");
    assert_eq!(&std::fs::read(&snapshot).unwrap()[..8], b"MZSNAP03");

    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let log = c.log();
    assert!(log.contains("unscanned_prefix=68"), "{log}");
    assert!(log.contains("snapshot_entries=68"), "{log}");
    assert!(log.contains("replayed_entries=0"), "{log}");
    let from_snapshot = view(&c, 68).await;
    logged(&c, "checked in the background").await;
    assert_eq!(view(&c, 68).await, from_snapshot);
    assert!(c.terminate().success());

    // The same log replayed in full.
    std::fs::remove_file(&snapshot).unwrap();
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let log = c.log();
    assert!(log.contains("replayed_entries=68"), "{log}");
    assert!(log.contains("unscanned_prefix=0"), "{log}");
    assert_eq!(view(&c, 68).await, from_snapshot);
    c.kill9();
}

#[tokio::test]
async fn a_refuted_snapshot_stops_the_server_and_the_next_start_replays() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    for sa in ["a", "b", "c"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    let params = c.get_bytes("/v1/params?format=binary").await;
    let registry = c.get_bytes("/v1/registry").await;
    assert!(c.terminate().success());
    let snapshot = fx.data_dir().join("state.snapshot");
    // The identity maps lie about the first reveal's index (behind a
    // recomputed checksum): the start-up checks pass, the background check
    // does not.
    reseal(&snapshot, |b| {
        let mut at = 48;
        for _ in 0..2 {
            at += 8 + u64::from_be_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        }
        let identity = at + 8;
        let binds = u32::from_be_bytes(b[identity + 5..identity + 9].try_into().unwrap());
        let index = identity + 9 + binds as usize * 80 + 4 + 32 + 7;
        b[index] = (b[index] + 2) % 6;
    });
    let mut c = Curator::spawn(fx.dir.path(), &args);
    let status = exited(&mut c);
    assert_eq!(status.code(), Some(1), "{}", c.log());
    let log = c.log();
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains("does not give what the snapshot claimed"),
        "{log}"
    );
    assert!(log.contains("indexes derived from the first 6"), "{log}");
    assert!(!snapshot.exists(), "moved aside:\n{log}");

    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let log = c.log();
    assert!(log.contains("replayed_entries=6"), "{log}");
    assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
    assert_eq!(c.get_bytes("/v1/registry").await, registry);
    c.kill9();
}
