//! What the handshake validator costs Envoy, measured on the real Envoy 1.40.
//!
//! 1. CPU per new mTLS connection: one Envoy, two inbound listeners with the
//!    same certificate and `tcp_proxy`: one whose validation context is the
//!    client's SPKI pin (the agent's `ROOTCA` without the validator, Envoy's
//!    own check: the baseline), one with the validator module. `openssl
//!    s_time -new` makes full handshakes with a registered client
//!    certificate; Envoy's CPU time (utime + stime from `/proc/<pid>/stat`)
//!    over each phase, divided by the handshakes made. Phases alternate,
//!    baseline first, so both see the same machine.
//! 2. Memory: Envoy's resident set with a 100,000-entry registry, before
//!    and after the validator loaded it, at 1 and at 4 workers: the
//!    registry is held once per process, so a worker adds none of it.
//!
//! Run: `cargo bench -p mazu-validator --bench handshake` (about a minute).
//! Under `cargo test` it runs one short phase of each to show it works.

#![allow(clippy::unwrap_used, missing_docs)] // a benchmark: a failure is a bug in it

#[path = "../tests/support/mod.rs"]
mod support;

use core::time::Duration;
use std::path::Path;
use std::process::Command;
use std::thread;

use mazu_identity::RegistryEntry;
use mazu_testkit::fixtures::{Mesh, Workload};
use mazu_testkit::net::echo_server;
use support::{EnvoySpec, Heartbeat, ValidatorEnvoy, config, workload, write_registry};

/// Envoy's CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Full handshakes for `seconds` with `client`; how many were made.
fn handshakes(port: u16, client: &Workload, dir: &Path, seconds: u64) -> u64 {
    let cert = dir.join("bench-client.crt");
    let key = dir.join("bench-client.key");
    std::fs::write(&cert, &client.cert_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let out = Command::new("openssl")
        .args(["s_time", "-new", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-time", &seconds.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "1234 connections in 5.01s; 246.3 connections/user sec, ..."
    text.lines()
        .find(|line| line.contains("connections in"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in openssl s_time's output:\n{text}"))
}

struct Fixture {
    mesh: Mesh,
    client: Workload,
    server: Workload,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(extra_entries: u32) -> Fixture {
        let mesh = Mesh::new();
        let client = workload(&mesh, "shop", "frontend", 0);
        let server = workload(&mesh, "shop", "checkout", 1);
        let mut entries = vec![client.entry, server.entry];
        entries.extend((0..extra_entries).map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[31] = 0xee;
            RegistryEntry {
                workload_id: id.into(),
                slot: i + 2,
                spki_hash: [7; 32].into(),
                token_expiry: client.entry.token_expiry,
                revoked: false,
            }
        }));
        let dir = tempfile::tempdir().unwrap();
        write_registry(&dir.path().join("registry"), &entries);
        Fixture {
            mesh,
            client,
            server,
            dir,
        }
    }

    fn envoy(&self, concurrency: u32, echo_port: u16) -> ValidatorEnvoy {
        let config = config(&self.dir.path().join("registry"), &self.mesh);
        ValidatorEnvoy::start(
            self.dir.path(),
            &EnvoySpec {
                config: &config,
                server: &self.server,
                client: &self.client,
                echo_port,
                outbound: &[],
                pinned_inbound: Some(*self.client.entry.spki_hash.as_bytes()),
                concurrency,
            },
        )
        .unwrap()
    }
}

fn cpu_per_handshake(quick: bool) {
    let (seconds, rounds) = if quick { (1, 1) } else { (5, 4) };
    let fixture = Fixture::new(1_000);
    let _heartbeat = Heartbeat::start(fixture.dir.path().join("registry"));
    let echo = echo_server().unwrap();
    let envoy = fixture.envoy(1, echo.port);
    let ticks = clock_ticks_per_second() as f64;
    let pinned_port = envoy.pinned_port.unwrap();
    let (mut pinned, mut validated) = ((0u64, 0u64), (0u64, 0u64));
    for _ in 0..rounds {
        for (port, total) in [
            (pinned_port, &mut pinned),
            (envoy.inbound_port, &mut validated),
        ] {
            let before = cpu_ticks(envoy.pid());
            let made = handshakes(port, &fixture.client, fixture.dir.path(), seconds);
            total.0 += cpu_ticks(envoy.pid()) - before;
            total.1 += made;
        }
    }
    assert!(pinned.1 > 0 && validated.1 > 0, "no handshake completed");
    let refused = envoy.counter("ssl.fail_verify_error");
    assert_eq!(refused, 0, "the validator refused the registered client");
    let ms = |(t, n): (u64, u64)| t as f64 / ticks * 1000.0 / n as f64;
    println!("Envoy CPU per new mTLS connection (1 worker, {rounds} x {seconds} s per listener):");
    println!(
        "  SPKI pin (baseline)   {:>8.4} ms  ({} handshakes)",
        ms(pinned),
        pinned.1
    );
    println!(
        "  Mazu validator        {:>8.4} ms  ({} handshakes)",
        ms(validated),
        validated.1
    );
    println!(
        "  validator / pin       {:>8.3}x   (+{:.4} ms)",
        ms(validated) / ms(pinned),
        ms(validated) - ms(pinned)
    );
}

fn memory_per_worker(quick: bool) {
    let live = if quick { 10_000 } else { 100_000 };
    let fixture = Fixture::new(live);
    let _heartbeat = Heartbeat::start(fixture.dir.path().join("registry"));
    let echo = echo_server().unwrap();
    println!(
        "Envoy resident memory with {} registrations in the file:",
        live + 2
    );
    for concurrency in [1, 4] {
        let envoy = fixture.envoy(concurrency, echo.port);
        thread::sleep(Duration::from_millis(500));
        let before = rss_kib(envoy.pid());
        // Handshakes on every worker; the first one loads the registry.
        handshakes(envoy.inbound_port, &fixture.client, fixture.dir.path(), 1);
        thread::sleep(Duration::from_millis(300));
        let after = rss_kib(envoy.pid());
        println!(
            "  {concurrency} worker(s): {:>7} KiB before the registry, {:>7} KiB after (+{} KiB)",
            before,
            after,
            after.saturating_sub(before)
        );
    }
}

fn main() {
    let quick = !std::env::args().any(|arg| arg == "--bench");
    cpu_per_handshake(quick);
    memory_per_worker(quick);
}
