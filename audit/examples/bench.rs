//! Audit benchmark: `mazu-audit check` over a log of real registrations,
//! against a curator on 127.0.0.1 (in this process, over real HTTP).
//!
//! ```sh
//! cargo run --release -p mazu-audit --example bench            # 10,000 at capacity 16,384
//! cargo run --release -p mazu-audit --example bench -- 2000 4096
//! ```
//!
//! The registrations (key generation, ~n helper values each; each a bind
//! entry and its reveal) are generated once, written directly as a curator
//! log (`registrations.log`, valid
//! frames) and cached in `$CARGO_TARGET_DIR/bench-fixtures/audit-v2-C-N/`; the
//! curator's first start replays that log (every check) and leaves a state
//! snapshot, so later runs start at once. Figures are also given as
//! multiples of one pairing and of one registration check measured in the
//! same run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use mazu_audit::check::{self, CheckConfig};
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::{Crs, Registration};

fn fixture_dir(capacity: u32, entries: usize) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target
        .join("bench-fixtures")
        .join(format!("audit-v2-{capacity}-{entries}"))
}

fn build_fixture(dir: &Path, capacity: u32, entries: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut rng = rand::rngs::OsRng;
    let crs = Crs::generate_insecure_dev(capacity, &mut rng).unwrap();
    std::fs::write(dir.join("crs.bin"), crs.to_bytes()).unwrap();
    let issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
    std::fs::write(dir.join("jwks.json"), issuer.jwks_json()).unwrap();
    let tokens: Vec<String> = (0..entries)
        .map(|i| {
            issuer
                .mint(&TokenRequest::new("bench", format!("sa-{i}")))
                .unwrap()
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get);
    let started = Instant::now();
    let done = core::sync::atomic::AtomicUsize::new(0);
    let base_ms = mazu_curator::service::now_ms();
    let chunk = entries.div_ceil(threads);
    let frames: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let crs = &crs;
                let done = &done;
                s.spawn(move || {
                    let mut rng = rand::rngs::OsRng;
                    part.iter()
                        .enumerate()
                        .flat_map(|(k, token)| {
                            let i = c * chunk + k;
                            let slot = u32::try_from(i).unwrap();
                            let agent = mazu_curator::client::build_registration(
                                crs, token, slot, &mut rng,
                            )
                            .unwrap();
                            let reg: Registration =
                                serde_json::from_value(agent.request.registration.clone()).unwrap();
                            let b64 = |s: &str| {
                                <base64ct::Base64 as base64ct::Encoding>::decode_vec(s).unwrap()
                            };
                            // Each registration is a bind, then its reveal.
                            let at_ms = base_ms + 2 * i as u64;
                            let id = agent.id;
                            let bind = LogEntry {
                                at_ms,
                                id,
                                body: EntryBody::Bind {
                                    slot,
                                    token_expiry: agent.request.token_expiry,
                                    tls_spki: b64(&agent.request.tls_spki),
                                    tls_signature: b64(&agent.request.tls_signature),
                                    registration: reg.to_bytes(),
                                },
                            };
                            let reveal = LogEntry {
                                at_ms: at_ms + 1,
                                id,
                                body: EntryBody::Reveal {
                                    token: token.as_bytes().to_vec(),
                                },
                            };
                            let n = done.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
                            if n.is_multiple_of(500) {
                                eprintln!(
                                    "generated {n}/{entries} registrations ({:.0} s)",
                                    started.elapsed().as_secs_f64()
                                );
                            }
                            [bind.to_bytes(), reveal.to_bytes()]
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    mazu_testkit::curator_log::write_log(&dir.join("data"), crs.digest(), &frames).unwrap();
    std::fs::write(dir.join("complete"), b"").unwrap();
    eprintln!(
        "fixture: {entries} registrations in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let entries: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let capacity: u32 = args.next().map_or(16_384, |a| a.parse().unwrap());
    let dir = fixture_dir(capacity, entries);
    if !dir.join("complete").exists() {
        build_fixture(&dir, capacity, entries);
    }
    let crs = Crs::from_bytes(&std::fs::read(dir.join("crs.bin")).unwrap()).unwrap();
    let jwks = std::fs::read(dir.join("jwks.json")).unwrap();

    // Baselines, same process, same moment.
    let g1 = bls12_381_plus::G1Affine::generator();
    let g2 = bls12_381_plus::G2Affine::generator();
    let t = Instant::now();
    for _ in 0..50 {
        core::hint::black_box(bls12_381_plus::pairing(&g1, &g2));
    }
    let pairing = t.elapsed() / 50;
    let log_bytes = std::fs::read(dir.join("data/registrations.log")).unwrap();
    let mut sample = Vec::new();
    let mut at = 40;
    while sample.len() < 20 && at < log_bytes.len() {
        let len = u32::from_be_bytes(log_bytes[at..at + 4].try_into().unwrap()) as usize;
        let entry = LogEntry::from_bytes(&log_bytes[at + 8..at + 8 + len]).unwrap();
        if let EntryBody::Bind { registration, .. } = entry.body {
            sample.push(registration);
        }
        at += 8 + len;
    }
    let t = Instant::now();
    for bytes in &sample {
        let reg = Registration::from_bytes(bytes).unwrap();
        core::hint::black_box(reg.into_well_formed(&crs).unwrap());
    }
    let registration_check = t.elapsed() / u32::try_from(sample.len()).unwrap();

    // The curator on the fixture's log (first start replays it).
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let config = <mazu_curator::config::Args as Parser>::try_parse_from([
        "mazu-curator".to_owned(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--dev-crs".into(),
        "--crs".into(),
        dir.join("crs.bin").display().to_string(),
        "--capacity".into(),
        capacity.to_string(),
        "--issuer".into(),
        format!(
            "{DEFAULT_ISSUER_URL}={};namespaces=*",
            dir.join("jwks.json").display()
        ),
        "--audience".into(),
        mazu_dev_issuer::DEV_AUDIENCE.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--addr-file".into(),
        addr_file.display().to_string(),
        "--insecure-no-witness".into(),
        "--insecure-plain-http".into(),
    ])
    .unwrap()
    .validate()
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mazu_curator::server::run(config, async {
        let _ = stopped.await;
    }));
    let start = Instant::now();
    let base = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && !a.trim().is_empty()
        {
            break format!("http://{}", a.trim());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let curator_start = start.elapsed();

    let threads = std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get);
    let trust = TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(
            DEFAULT_ISSUER_URL,
            &jwks,
            mazu_identity::trust::NamespaceScope::any(),
        )
        .build()
        .unwrap();
    let config = CheckConfig {
        curator: base.clone(),
        curator_transport: mazu_service::tls::ClientTransport::InsecurePlainHttp,
        crs_digest: crs.digest(),
        trust,
        state: None,
        checkpoint_key: None,
        witnesses: Vec::new(),
        witness_quorum: None,
        insecure_no_witness: true,
        threads,
    };
    let t = Instant::now();
    let mut last = Instant::now();
    let report = check::run(&config, &mut |p| {
        if last.elapsed() > Duration::from_secs(5) {
            eprintln!("audit: {}/{}", p.done, p.total);
            last = Instant::now();
        }
    })
    .await
    .unwrap();
    let audit = t.elapsed();
    assert!(report.is_clean(), "{:#?}", report.discrepancies);
    assert_eq!(report.entries, 2 * entries as u64);
    let _ = stop.send(());
    let _ = server.await;

    let per_entry = audit / u32::try_from(entries).unwrap();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| setup | {entries} registrations, capacity {capacity} (block size {}), {threads} verification threads |",
        crs.block_size()
    );
    println!("| baseline: one pairing | {:.2} ms |", ms(pairing));
    println!(
        "| baseline: one registration check (decode + PoK + batched helper pairing check) | {:.2} ms ({:.1} pairings) |",
        ms(registration_check),
        ratio(registration_check, pairing)
    );
    println!(
        "| curator start-up on this log ({}) | {:.1} s |",
        if curator_start > Duration::from_secs(5) {
            "full replay"
        } else {
            "from its state snapshot"
        },
        curator_start.as_secs_f64()
    );
    println!(
        "| **audit of {entries} registrations ({} entries)** (download + every check + replay + compare) | {:.1} s (download {:.1} s, checks and replay {:.1} s) |",
        2 * entries,
        audit.as_secs_f64(),
        report.download.as_secs_f64(),
        report.verify.as_secs_f64()
    );
    println!(
        "| audit per registration (wall) | {:.2} ms = {:.1} pairings = {:.2} registration checks |",
        ms(per_entry),
        ratio(per_entry, pairing),
        ratio(per_entry, registration_check)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
