//! Curator benchmarks over real HTTP on 127.0.0.1 (server and load generator
//! in this one process, release build). Prints a Markdown table.
//!
//! ```sh
//! cargo run --release -p mazu-curator --features bench-seed --example bench
//! ```
//!
//! Registrations (a bind, then the reveal of its token) run without
//! witnesses (`WitnessMode::Insecure`), or with `MAZU_BENCH_WITNESSES=N` under
//! N in-process `mazu-witness` servers on loopback with a quorum of all N
//! (each bind and each reveal then waits for a cosigned checkpoint); they
//! run at capacity 65,536 (block size 256) with 1,000 already registered.
//! Generating a binding at that size takes ~0.1 s of key generation, so the
//! first run pre-generates 1,000 + 200 bindings (and a log holding the first
//! 1,000, each bind followed by its reveal) into `target/bench-fixtures/`;
//! later runs reuse them (delete the directory to regenerate). Registry and
//! records fetch times at 10,000 and 100,000 registrations use the
//! `bench-seed` path (synthetic bind and reveal records, no RBE keys), see
//! docs/curator.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use core::net::SocketAddr;
use core::time::Duration;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mazu_curator::api::views::BindingRequest;
use mazu_curator::config::LimitsConfig;
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_curator::metrics::Metrics;
use mazu_curator::service::WitnessMode;
use mazu_curator::store::{FileLogStore, LogStore, MemoryLogStore};
use mazu_curator::witnessing::{WitnessEndpoint, WitnessOptions, Witnessing};
use mazu_curator::{AppState, Curator, CuratorOptions, app};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::Crs;
use serde::{Deserialize, Serialize};

const CAPACITY: u32 = 65_536;
const PRELOADED: usize = 1_000;
const SEQUENTIAL: usize = 40;
const CONCURRENT: usize = 160;
const CLIENTS: usize = 8;

fn fixture_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target
        .join("bench-fixtures")
        .join(format!("curator-v2-{CAPACITY}"))
}

/// One pre-generated registration: the token and the binding of its id.
#[derive(Clone, Serialize, Deserialize)]
struct Registration {
    token: String,
    request: BindingRequest,
}

struct Fixture {
    crs: Crs,
    issuer: DevIssuer,
    requests: Vec<Registration>,
    log: PathBuf,
}

fn load_or_build_fixture() -> Fixture {
    let dir = fixture_dir();
    let done = dir.join("complete");
    if !done.exists() {
        build_fixture(&dir);
        std::fs::write(&done, b"ok").unwrap();
    }
    let crs = Crs::from_bytes(&std::fs::read(dir.join("crs.bin")).unwrap()).unwrap();
    let issuer = DevIssuer::load(dir.join("issuer")).unwrap();
    let file = std::fs::File::open(dir.join("requests.jsonl")).unwrap();
    let requests = std::io::BufReader::new(file)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    Fixture {
        crs,
        issuer,
        requests,
        log: dir.join("registrations.log"),
    }
}

fn build_fixture(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let total = PRELOADED + SEQUENTIAL + CONCURRENT;
    eprintln!(
        "building the fixture in {} ({total} registrations, once)...",
        dir.display()
    );
    let mut rng = rand::rngs::OsRng;
    let crs = Crs::generate_insecure_dev(CAPACITY, &mut rng).unwrap();
    std::fs::write(dir.join("crs.bin"), crs.to_bytes()).unwrap();
    let issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
    issuer.save(dir.join("issuer")).unwrap();
    // Tokens valid for ten years so the cached fixture keeps working.
    let tokens: Vec<String> = (0..total)
        .map(|i| {
            issuer
                .mint(&TokenRequest::new("bench", format!("sa-{i}")).lifetime(10 * 365 * 86_400))
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get);
    let chunks: Vec<Vec<(usize, String)>> = (0..threads)
        .map(|t| {
            tokens
                .iter()
                .cloned()
                .enumerate()
                .skip(t)
                .step_by(threads)
                .collect()
        })
        .collect();
    let mut requests: Vec<(usize, Registration)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let crs = &crs;
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, token)| {
                            let slot = u32::try_from(i).unwrap();
                            let agent = mazu_curator::client::build_registration(
                                crs,
                                &token,
                                slot,
                                &mut rand::rngs::OsRng,
                            )
                            .unwrap();
                            if i % 100 == 0 {
                                eprintln!("  keygen {i}/{total}");
                            }
                            (
                                i,
                                Registration {
                                    token,
                                    request: agent.request,
                                },
                            )
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
    requests.sort_by_key(|(i, _)| *i);
    eprintln!("  keygen took {:.1} s", started.elapsed().as_secs_f64());
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.join("requests.jsonl")).unwrap());
    for (_, r) in &requests {
        serde_json::to_writer(&mut out, r).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    // The first PRELOADED as a log, each bind followed by its reveal
    // (checked again by every replay).
    let (store, _) = FileLogStore::open(&dir.join("registrations.log"), crs.digest()).unwrap();
    for (i, r) in requests.iter().take(PRELOADED) {
        let d = mazu_curator::register::decode(r.request.clone()).unwrap();
        let id = mazu_curator::client::id_of_token(&r.token);
        let at_ms = 1_700_000_000_000 + 2 * *i as u64;
        let bind = LogEntry {
            at_ms,
            id,
            body: EntryBody::Bind {
                slot: d.registration.slot,
                token_expiry: mazu_identity::jwt::parse_claims_unverified(
                    r.token.as_bytes(),
                    mazu_curator::entry::MAX_TOKEN_LEN,
                )
                .unwrap()
                .expires_at,
                tls_spki: d.spki,
                tls_signature: d.signature,
                registration: d.registration.to_bytes(),
            },
        };
        store.append(&bind.to_bytes()).unwrap();
        let reveal = LogEntry {
            at_ms: at_ms + 1,
            id,
            body: EntryBody::Reveal {
                token: r.token.clone().into_bytes(),
            },
        };
        store.append(&reveal.to_bytes()).unwrap();
    }
}

/// A bind, then the reveal of its token; panics unless both are accepted.
async fn register(http: &reqwest::Client, base: &str, r: &Registration) {
    let resp = http
        .post(format!("{base}/v1/bindings"))
        .json(&r.request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = http
        .post(format!("{base}/v1/bindings/{}/reveal", r.request.id))
        .json(&serde_json::json!({ "token": r.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn serve(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

fn limits() -> LimitsConfig {
    LimitsConfig {
        rate_limit_per_minute: 0,
        max_pending_registrations: 1024,
        max_body_bytes: 4 << 20,
        request_timeout: Duration::from_secs(600),
        ..LimitsConfig::default()
    }
}

async fn timed_get(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
) -> (Duration, u16, usize) {
    let started = Instant::now();
    let mut req = http.get(url);
    if let Some(tag) = etag {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let len = r.bytes().await.unwrap().len();
    (started.elapsed(), status, len)
}

async fn repeat_get(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    n: usize,
) -> (Duration, Duration, u16, usize) {
    let mut times = Vec::with_capacity(n);
    let mut last = (0, 0);
    for _ in 0..n {
        let (t, s, len) = timed_get(http, url, etag).await;
        times.push(t);
        last = (s, len);
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(n).unwrap();
    (mean, percentile(&times, 0.99), last.0, last.1)
}

/// The checkpoint origin and key of the bench curator (fixed, so that
/// witnesses can be told the log's key before it starts).
const ORIGIN: &str = "mazu-curator/bench";
const CHECKPOINT_KEY: [u8; 32] = [0x42; 32];

/// `MAZU_BENCH_WITNESSES`: how many witnesses (0: none, insecure mode).
fn witness_count() -> usize {
    std::env::var("MAZU_BENCH_WITNESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts `n` in-process witnesses of the bench curator's log; keep the
/// returned senders alive while they are needed (dropping one stops its
/// witness).
async fn start_witnesses(
    n: usize,
    dir: &Path,
) -> (WitnessMode, Vec<tokio::sync::oneshot::Sender<()>>) {
    if n == 0 {
        return (WitnessMode::Insecure, Vec::new());
    }
    let log = mazu_log::CheckpointSigner::new(ORIGIN, &CHECKPOINT_KEY)
        .unwrap()
        .verifier();
    let mut endpoints = Vec::new();
    let mut stops = Vec::new();
    for i in 0..n {
        let mut config = mazu_witness::Config::new(
            &format!("witness-{i}.bench"),
            vec![log.clone()],
            dir.join(format!("witness-{i}")),
        );
        config.create_key = true;
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = mazu_witness::Server::bind(config).await.unwrap();
        endpoints.push(
            WitnessEndpoint::parse(&format!("http://{}={}", server.local_addr(), server.vkey()))
                .unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    let witnessing = Witnessing::new(WitnessOptions {
        endpoints,
        quorum: n,
        request_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let mode = WitnessMode::Witnesses {
        witnessing,
        refresh: Duration::from_secs(10),
        wait: Duration::from_secs(30),
    };
    (mode, stops)
}

#[tokio::main]
async fn main() {
    let mut rows: Vec<(String, String)> = Vec::new();
    let fx = load_or_build_fixture();
    let threads = std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get);

    // Baseline: one pairing, measured in this run; other rows are also given
    // as multiples of it (ratios travel between machines and loads better).
    let g1 = mazu_rbe::G1Affine::generator();
    let g2 = mazu_rbe::G2Affine::generator();
    let started = Instant::now();
    for _ in 0..20 {
        core::hint::black_box(mazu_rbe::bls12_381_plus::pairing(
            core::hint::black_box(&g1),
            &g2,
        ));
    }
    let pairing = started.elapsed() / 20;
    let x = |d: Duration| d.as_secs_f64() / pairing.as_secs_f64();
    rows.push(("baseline: one pairing".into(), ms(pairing)));

    // Reference costs of the RBE checks at this size.
    let sample = mazu_curator::register::decode(fx.requests[PRELOADED].request.clone()).unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        sample.registration.verify_well_formed(&fx.crs).unwrap();
    }
    let well_formed = started.elapsed() / 5;
    rows.push((
        "RBE well-formedness check, one registration (n = 256; parallel threads)".into(),
        format!("{} ({:.1}×)", ms(well_formed), x(well_formed)),
    ));
    // The serialized writer's RBE check per registration: before, the full
    // `verify` (pairing check again); now `verify_fresh` (state checks only).
    let empty = mazu_rbe::RegistryState::new(fx.crs.clone());
    let started = Instant::now();
    for _ in 0..5 {
        empty.verify(sample.registration.clone()).unwrap();
    }
    let old_writer = started.elapsed() / 5;
    let checked = sample
        .registration
        .clone()
        .into_well_formed(&fx.crs)
        .unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        empty.verify_fresh(checked.clone()).unwrap();
    }
    let new_writer = started.elapsed() / 1000;
    rows.push((
        "writer's RBE check per registration: old `verify` / new `verify_fresh`".into(),
        format!(
            "{} ({:.1}×) / {:.0} ns ({:.5}×): {:.0}× less",
            ms(old_writer),
            x(old_writer),
            new_writer.as_secs_f64() * 1e9,
            x(new_writer),
            old_writer.as_secs_f64() / new_writer.as_secs_f64()
        ),
    ));

    let started = Instant::now();
    for _ in 0..5 {
        let _: mazu_rbe::Registration =
            serde_json::from_value(fx.requests[PRELOADED].request.registration.clone()).unwrap();
    }
    rows.push((
        "decoding one registration (256 G1 points, subgroup-checked)".into(),
        ms(started.elapsed() / 5),
    ));
    // The whole stateless half of a bind as the verify threads run it: the
    // JSON registration to points, the proof of possession, the RBE checks.
    let request = &fx.requests[PRELOADED].request;
    let id = mazu_curator::register::parse_id("id", &request.id).unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        let decoded = mazu_curator::register::decode(request.clone()).unwrap();
        mazu_curator::register::finish(&fx.crs, &id, decoded).unwrap();
    }
    let bind_check = started.elapsed() / 5;
    rows.push((
        "stateless bind check, one registration (`register::decode` + `finish`: decode, PoP, RBE)"
            .into(),
        format!("{} ({:.1}×)", ms(bind_check), x(bind_check)),
    ));

    // --- registrations at capacity 65,536 with 1,000 registered ---
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("registrations.log");
    std::fs::copy(&fx.log, &log).unwrap();
    let trust = TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(
            DEFAULT_ISSUER_URL,
            fx.issuer.jwks_json().as_bytes(),
            mazu_identity::trust::NamespaceScope::any(),
        )
        .build()
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let witnesses = witness_count();
    let (witness, _witness_stops) = start_witnesses(witnesses, data.path()).await;
    let witnessed = if witnesses == 0 {
        "no witness".to_owned()
    } else {
        format!("{witnesses} witnesses, quorum {witnesses}")
    };
    let options = CuratorOptions {
        max_pending_registrations: 1024,
        verify_threads: threads,
        snapshot: Some(mazu_curator::service::SnapshotOptions {
            path: data.path().join(mazu_curator::snapshot::SNAPSHOT_FILE),
            every: 0,
        }),
        checkpoint_key: Some(CHECKPOINT_KEY),
        checkpoint_origin: Some(ORIGIN.to_owned()),
        witness,
        // The acknowledged checkpoint (recorded before each answer) is on,
        // as in the server; MAZU_BENCH_NO_ACK=1 turns it off to compare.
        acknowledged: std::env::var_os("MAZU_BENCH_NO_ACK")
            .is_none()
            .then(|| data.path().join(mazu_curator::recovery::ACKNOWLEDGED_FILE)),
        ..CuratorOptions::default()
    };
    // Start-up without a snapshot (full replay), then with one.
    let open = |metrics: Arc<Metrics>| {
        let crs = fx.crs.clone();
        let trust = trust.clone();
        let options = options.clone();
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let (store, scan) = FileLogStore::open(&log, crs.digest()).unwrap();
            let (curator, report) = Curator::open(
                crs,
                trust,
                Arc::new(store) as Arc<dyn LogStore>,
                metrics,
                &options,
            )
            .unwrap();
            (curator, report, scan.scan_time, started.elapsed())
        })
    };
    let (curator, report, scan, full) = open(metrics.clone()).await.unwrap();
    assert_eq!(report.entries, 2 * PRELOADED as u64);
    assert_eq!(report.snapshot_entries, 0);
    rows.push((
        format!(
            "start-up, {PRELOADED} registrations ({} entries), no snapshot (scan + full replay, every check)",
            2 * PRELOADED
        ),
        format!(
            "{:.2} s (scan {}, replay {:.2} s)",
            full.as_secs_f64(),
            ms(scan),
            report.replay.as_secs_f64()
        ),
    ));
    let started = Instant::now();
    let written = tokio::task::block_in_place(|| curator.snapshot_now().unwrap());
    rows.push((
        format!("state snapshot at {PRELOADED} registrations: size / write (encode + fsync)"),
        format!("{:.2} MB / {}", written as f64 / 1e6, ms(started.elapsed())),
    ));
    let (second, report, scan, fast) = open(Arc::new(Metrics::new())).await.unwrap();
    assert_eq!(report.snapshot_entries, 2 * PRELOADED as u64);
    assert_eq!(
        second.params(false).await.unwrap().1,
        curator.params(false).await.unwrap().1
    );
    second.shutdown();
    rows.push((
        format!(
            "start-up, {PRELOADED} registrations, from the snapshot (scan + load + check vs log)"
        ),
        format!(
            "{} (scan {}, snapshot load + prefix check {}, tail replay {}): {:.0}× faster",
            ms(fast),
            ms(scan),
            ms(report.snapshot_load),
            ms(report.replay),
            full.as_secs_f64() / fast.as_secs_f64()
        ),
    ));
    let state = AppState::with_curator(Arc::new(curator), metrics, limits());
    let addr = serve(state).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let base = format!("http://{addr}");

    // One at a time: latency without queueing.
    let mut lat = Vec::new();
    let seq: Vec<_> = fx.requests[PRELOADED..PRELOADED + SEQUENTIAL].to_vec();
    let started = Instant::now();
    for r in &seq {
        let t = Instant::now();
        register(&http, &base, r).await;
        lat.push(t.elapsed());
    }
    let wall = started.elapsed();
    lat.sort();
    rows.push((
        format!(
            "registration (bind + reveal; {witnessed}), 1 client ({SEQUENTIAL} regs): throughput"
        ),
        format!("{:.1} /s", SEQUENTIAL as f64 / wall.as_secs_f64()),
    ));
    rows.push((
        format!("registration ({witnessed}), 1 client: p50 / p99 latency"),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));

    // Many clients at once: throughput and tail latency with queueing.
    let conc: Vec<Registration> = fx.requests[PRELOADED + SEQUENTIAL..].to_vec();
    let queue = Arc::new(std::sync::Mutex::new(conc.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let queue = queue.clone();
        let http = http.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().unwrap().next();
                let Some(r) = next else { break };
                let t = Instant::now();
                register(&http, &base, &r).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    lat.sort();
    let per_reg = wall / u32::try_from(CONCURRENT).unwrap();
    rows.push((
        format!("registration ({witnessed}), {CLIENTS} clients ({CONCURRENT} regs): throughput"),
        format!(
            "{:.1} /s ({:.1} pairings of wall time per registration)",
            CONCURRENT as f64 / wall.as_secs_f64(),
            x(per_reg)
        ),
    ));
    rows.push((
        format!("registration ({witnessed}), {CLIENTS} clients: p50 / p99 latency"),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));

    // Unchanged polls.
    let version = 2 * (PRELOADED + SEQUENTIAL + CONCURRENT);
    let tag = format!("\"{version}\"");
    let (mean, p99, status, _) =
        repeat_get(&http, &format!("{base}/v1/registry"), Some(&tag), 2000).await;
    assert_eq!(status, 304);
    rows.push((
        "unchanged poll `GET /v1/registry` + If-None-Match → 304: mean / p99".into(),
        format!("{} / {}", us(mean), us(p99)),
    ));
    let (mean, p99, status, len) = repeat_get(
        &http,
        &format!("{base}/v1/log/records?start={version}"),
        None,
        2000,
    )
    .await;
    assert_eq!((status, len), (200, 0));
    rows.push((
        "follower poll at the log's size `GET /v1/log/records?start=SIZE` (empty): mean / p99"
            .into(),
        format!("{} / {}", us(mean), us(p99)),
    ));
    let (mean, p99, status, len) =
        repeat_get(&http, &format!("{base}/v1/params?format=binary"), None, 500).await;
    assert_eq!(status, 200);
    rows.push((
        format!("`GET /v1/params?format=binary` (200, {len} B, cached): mean / p99"),
        format!("{} / {}", us(mean), us(p99)),
    ));

    // --- the registry and the records at 10,000 and 100,000 registrations
    // (bench-seed path) ---
    for n in [10_000usize, 100_000] {
        let mut rng = rand::rngs::OsRng;
        let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
        let trust = TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(
                DEFAULT_ISSUER_URL,
                fx.issuer.jwks_json().as_bytes(),
                mazu_identity::trust::NamespaceScope::any(),
            )
            .build()
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let (curator, _) = Curator::open(
            crs,
            trust,
            Arc::new(MemoryLogStore::new()) as Arc<dyn LogStore>,
            metrics.clone(),
            &CuratorOptions::default(),
        )
        .unwrap();
        curator.bench_seed((0..n).map(|i| {
            let mut id = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng, &mut id);
            (id, u32::try_from(i).unwrap(), id, 1_900_000_000)
        }));
        let state = AppState::with_curator(Arc::new(curator), metrics, limits());
        let addr = serve(state).await;
        let url = format!("http://{addr}/v1/registry");
        let (cold, status, len) = timed_get(&http, &url, None).await;
        assert_eq!(status, 200);
        let (warm, p99, _, _) = repeat_get(&http, &url, None, 20).await;
        rows.push((
            format!("registry, {n} live ids: size / first fetch (encode) / cached fetch mean, p99"),
            format!(
                "{:.2} MB / {} / {}, {}",
                len as f64 / 1e6,
                ms(cold),
                ms(warm),
                ms(p99)
            ),
        ));
        let (cold, _, len) = timed_get(&http, &format!("{url}?format=json"), None).await;
        rows.push((
            format!("registry JSON, {n} live ids: size / first fetch"),
            format!("{:.2} MB / {}", len as f64 / 1e6, ms(cold)),
        ));
        let records = format!("http://{addr}/v1/log/records");
        let (mean, _, status, len) =
            repeat_get(&http, &format!("{records}?start={}", 2 * n - 100), None, 50).await;
        assert_eq!(status, 200);
        rows.push((
            format!("the last 100 records at {n} registrations: size / fetch mean"),
            format!("{len} B / {}", us(mean)),
        ));
        let (cold, status, len) = timed_get(&http, &format!("{records}?start=0"), None).await;
        assert_eq!(status, 200);
        rows.push((
            format!("first records page (16,384) at {n} registrations: size / fetch"),
            format!("{:.2} MB / {}", len as f64 / 1e6, ms(cold)),
        ));
        let tag = format!("\"{}\"", 2 * n);
        let (mean, p99, status, _) = repeat_get(&http, &url, Some(&tag), 2000).await;
        assert_eq!(status, 304);
        rows.push((
            format!("unchanged registry poll at {n} live ids → 304: mean / p99"),
            format!("{} / {}", us(mean), us(p99)),
        ));
    }

    println!("| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    println!(
        "\n({threads} CPUs; server and load generator share them; registrations fsync to {}.)",
        data.path().display()
    );
}
