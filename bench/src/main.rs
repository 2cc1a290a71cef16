//! `mazu-bench`: Mazu against plain CA-based mTLS, side by side, through
//! real Envoy sidecars on 127.0.0.1 — keep-alive latency at a fixed rate,
//! connection churn with cached and cold verdicts, the sidecars' CPU time
//! per request and per new connection over the same windows, and the
//! filter's memory at 10,000 and 100,000 registered IDs — then
//! `docs/performance.md` and `docs/img/p90-latency.svg`.
//!
//! `just perf` runs it with the full durations; `--quick` is a ~2-minute
//! smoke run for development.

#![forbid(unsafe_code)]

mod backend;
mod certs;
mod cpu;
mod oha;
mod plot;
mod report;
mod results;
mod scale;
mod stats;
mod topology;

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};
use clap::Parser;
use mazu_e2e::mesh::{LocalMesh, MeshOptions};

use crate::oha::Load;
use crate::results::{
    Churn, Conditions, CpuRun, FilterVerdicts, IdleCpu, LatencyRun, Phase, Results,
};
use crate::topology::{Kind, Pair, filter_stats, one_request};

/// How often the filters poll the curator: the filter's default
/// (`curator.refresh_interval_ms`, docs/filter.md), which the Istio manifests
/// deploy. The local mesh's tests poll every second; at that rate the polls
/// alone cost about 2% of the baseline's CPU per request here.
const REFRESH_INTERVAL_MS: u64 = 5_000;

/// The agents' `--release-delay-ms`: short, so that a rotated client's old
/// registration is released, and the server has taken that in, before the
/// next cold-verdict sample.
const RELEASE_DELAY_MS: u64 = 1_000;

/// Mazu against plain mTLS through real Envoy sidecars; writes the report.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where to write performance.md and img/p90-latency.svg.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Seconds per latency measurement (each configuration, each connection
    /// count, each round).
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Smoke run: 5 s measurements, fewer restarts (labelled QUICK in the report).
    #[arg(long)]
    quick: bool,
    /// Interleaved rounds per connection count (A B, then B A, …).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Fixed request rate of the latency runs, requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Connection counts of the latency runs.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    connections: Vec<u32>,
    /// Request (and response) body bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Fixed rate of the new-connection (churn) runs, connections per second.
    #[arg(long, default_value_t = 200)]
    churn_rate: u32,
    /// Seconds of no load at all, both configurations at once, over which
    /// the sidecars' own CPU use (registry polls, timers) is read.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Server-sidecar restarts for the cold-verdict samples (per configuration).
    #[arg(long, default_value_t = 12)]
    restarts: u32,
    /// Registry sizes for the memory measurement (0 is always added).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000])]
    registry_sizes: Vec<u64>,
    /// Skip the latency runs.
    #[arg(long)]
    skip_latency: bool,
    /// Skip the churn runs.
    #[arg(long)]
    skip_churn: bool,
    /// Skip the memory measurement.
    #[arg(long)]
    skip_scale: bool,
    /// Keep the working files (configurations, logs) here instead of a
    /// temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.duration_secs = args.duration_secs.min(5);
        args.restarts = args.restarts.min(4);
        args.idle_secs = args.idle_secs.min(5);
    }
    let temp = tempfile::Builder::new().prefix("mazu-bench-").tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&work)?;
    let oha = oha::binary()?;
    let envoy = mazu_testkit::envoy::envoy_binary()?;
    let mut results = Results {
        conditions: conditions(&args, &oha, &envoy),
        ..Results::default()
    };
    eprintln!(
        "mazu-bench: {} run, load average {}; work files in {}",
        results.conditions.mode,
        results.conditions.load_before,
        work.display()
    );

    let wasm;
    {
        let backend = backend::start()?;
        eprintln!("mazu-bench: starting the local mesh (curator, agents, sidecars)");
        // The agents serve ROOTCA as the handshake validator: the new data
        // plane (validator in the handshake, the filter inbound).
        let mesh = LocalMesh::start(MeshOptions {
            dir: Some(work.join("mesh")),
            handshake_validator: true,
            refresh_interval_ms: REFRESH_INTERVAL_MS,
            release_delay_ms: Some(RELEASE_DELAY_MS),
            ..MeshOptions::default()
        })
        .context("starting the local mesh (build it first: see `just perf`)")?;
        wasm = mesh.binaries.filter_wasm.clone();
        let mut baseline = Pair::baseline(&envoy, &work.join("baseline"), backend.port)?;
        let mut mazu = Pair::mazu(&mesh, &work.join("mazu"), backend.port)?;
        eprintln!("mazu-bench: both pairs answer");
        idle(&args, &baseline, &mazu, &mut results)?;
        if !args.skip_latency {
            latency(&args, &oha, &baseline, &mazu, &mut results)?;
        }
        if !args.skip_churn {
            churn(&args, &oha, &mesh, &mut baseline, &mut mazu, &mut results)?;
        }
        // Everything stops here (sidecars, mesh, backend) before the memory
        // runs, so that those Envoys have the machine to themselves.
    }
    if !args.skip_scale {
        let mut sizes = vec![0];
        sizes.extend(args.registry_sizes.iter().copied().filter(|&n| n > 0));
        for n in sizes {
            for workers in [1, 2] {
                eprintln!("mazu-bench: filter memory, {n} registered IDs, {workers} worker(s)");
                let reading = match scale::measure(&envoy, &wasm, &work.join("scale"), n, workers) {
                    Ok(reading) => reading,
                    Err(error) => {
                        eprintln!("mazu-bench: memory run failed: {error:#}");
                        results.notes.push(format!(
                            "memory run {n} IDs / {workers} worker(s) failed: {error}"
                        ));
                        continue;
                    }
                };
                eprintln!(
                    "  RSS {:.1} MB, tcmalloc {:.1} MB",
                    reading.rss as f64 / 1e6,
                    reading.allocated as f64 / 1e6
                );
                results.memory.push(reading);
            }
        }
    }
    results.conditions.load_after = load_average();

    let text = report::render(&results);
    std::fs::create_dir_all(args.out.join("img"))?;
    let report_path = args.out.join("performance.md");
    std::fs::write(&report_path, &text)?;
    plot::draw_p90(&results, &args.out.join(report::PLOT_PATH))?;
    eprintln!(
        "mazu-bench: wrote {} and {}",
        report_path.display(),
        args.out.join(report::PLOT_PATH).display()
    );
    for goal in results.goals() {
        println!(
            "{}: {} (limit {} {}) -> {}",
            goal.name,
            goal.measured.map_or("not measured".to_owned(), |m| format!(
                "{m:+.3} {}",
                goal.unit
            )),
            goal.limit,
            goal.unit,
            match goal.met() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            }
        );
    }
    drop(temp);
    Ok(())
}

/// The keep-alive latency runs, interleaved.
fn latency(
    args: &Args,
    oha: &Path,
    baseline: &Pair,
    mazu: &Pair,
    results: &mut Results,
) -> Result<()> {
    for &connections in &args.connections {
        let load = |pair: &Pair, duration| Load {
            port: pair.outbound_port,
            rate: Some(args.rate),
            connections,
            duration,
            keep_alive: true,
            body_bytes: args.body_bytes,
        };
        // Warm-up, discarded.
        for pair in [baseline, mazu] {
            oha::run(oha, &load(pair, Duration::from_secs(2)))?;
        }
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [baseline, mazu]
            } else {
                [mazu, baseline]
            };
            for pair in order {
                let start = pair.cpu_start()?;
                let summary = oha::run(oha, &load(pair, Duration::from_secs(args.duration_secs)))?;
                let window = pair.cpu_finish(start, summary.requests)?;
                eprintln!(
                    "mazu-bench: latency {} c={connections} round {}: p50 {:.3} p90 {:.3} p99 {:.3} ms, {} requests, {} failed; Envoy CPU {:.0} + {:.0} ms",
                    pair.kind.label(),
                    round + 1,
                    summary.latency.p50,
                    summary.latency.p90,
                    summary.latency.p99,
                    summary.requests,
                    summary.failures(),
                    window.client_ms,
                    window.server_ms
                );
                results.cpu.push(CpuRun {
                    kind: pair.kind,
                    phase: Phase::KeepAlive { connections },
                    round,
                    window,
                });
                note_failures(
                    results,
                    &format!("latency {} c={connections}", pair.kind.label()),
                    &summary,
                );
                if !report::plausible(&summary.latency) {
                    results.notes.push(format!(
                        "latency {} c={connections} round {}: implausible percentiles {:?}",
                        pair.kind.label(),
                        round + 1,
                        summary.latency
                    ));
                }
                results.latency.push(LatencyRun {
                    kind: pair.kind,
                    connections,
                    round,
                    summary,
                });
            }
        }
    }
    Ok(())
}

/// Both configurations' sidecars with no load, over the same window.
fn idle(args: &Args, baseline: &Pair, mazu: &Pair, results: &mut Results) -> Result<()> {
    if args.idle_secs == 0 {
        return Ok(());
    }
    eprintln!("mazu-bench: {} s without load (idle CPU)", args.idle_secs);
    let starts = [baseline.cpu_start()?, mazu.cpu_start()?];
    let clock = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let secs = clock.elapsed().as_secs_f64();
    for (pair, start) in [baseline, mazu].into_iter().zip(starts) {
        let window = pair.cpu_finish(start, 0)?;
        eprintln!(
            "mazu-bench: idle {}: Envoy CPU {:.0} + {:.0} ms in {secs:.1} s",
            pair.kind.label(),
            window.client_ms,
            window.server_ms
        );
        results.idle_cpu.insert(pair.kind, IdleCpu { window, secs });
    }
    Ok(())
}

/// New connections: cached verdicts at a fixed rate, the highest rate, and
/// cold verdicts, with a new client certificate and after server restarts.
fn churn(
    args: &Args,
    oha: &Path,
    mesh: &LocalMesh,
    baseline: &mut Pair,
    mazu: &mut Pair,
    results: &mut Results,
) -> Result<()> {
    let churn_secs = if args.quick {
        5
    } else {
        args.duration_secs.min(30)
    };
    let load = |pair: &Pair, rate, secs| Load {
        port: pair.outbound_port,
        rate,
        connections: 16,
        duration: Duration::from_secs(secs),
        keep_alive: false,
        body_bytes: args.body_bytes,
    };
    let mut churns = [Churn::default(), Churn::default()];
    for c in &mut churns {
        c.cached_rate = args.churn_rate;
    }
    for pair in [&*baseline, &*mazu] {
        oha::run(oha, &load(pair, Some(args.churn_rate), 2))?;
    }
    let counters = |pair: &Pair| -> Result<(i64, i64)> {
        let stats = filter_stats(pair.server.admin_port)?;
        let get = |k: &str| stats.get(k).copied().unwrap_or(0);
        Ok((
            get("mazu.inbound.verdict_cache_hits"),
            get("mazu.inbound.verdict_cache_misses"),
        ))
    };
    let before = counters(mazu)?;
    let handshakes_before = [baseline.server_handshakes()?, mazu.server_handshakes()?];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let pair: &Pair = if index == 0 { baseline } else { mazu };
            let start = pair.cpu_start()?;
            let summary = oha::run(oha, &load(pair, Some(args.churn_rate), churn_secs))?;
            let window = pair.cpu_finish(start, summary.requests)?;
            eprintln!(
                "mazu-bench: new connections {} round {}: p50 {:.3} p90 {:.3} p99 {:.3} ms, {} failed; Envoy CPU {:.0} + {:.0} ms for {} connections",
                pair.kind.label(),
                round + 1,
                summary.latency.p50,
                summary.latency.p90,
                summary.latency.p99,
                summary.failures(),
                window.client_ms,
                window.server_ms,
                summary.requests
            );
            results.cpu.push(CpuRun {
                kind: pair.kind,
                phase: Phase::NewConnections,
                round,
                window,
            });
            note_failures(
                results,
                &format!("new connections {}", pair.kind.label()),
                &summary,
            );
            churns[index].cached.push(summary);
        }
    }
    let after = counters(mazu)?;
    churns[1].cache_counters = Some((after.0 - before.0, after.1 - before.1));
    for (index, pair) in [&*baseline, &*mazu].into_iter().enumerate() {
        let (handshakes, resumed) = pair.server_handshakes()?;
        let (h0, r0) = handshakes_before[index];
        churns[index].handshakes =
            Some((handshakes.saturating_sub(h0), resumed.saturating_sub(r0)));
    }
    let max_secs = if args.quick { 3 } else { 10 };
    for (index, pair) in [&*baseline, &*mazu].into_iter().enumerate() {
        let summary = oha::run(oha, &load(pair, None, max_secs))?;
        eprintln!(
            "mazu-bench: max new-connection rate {}: {:.0}/s",
            pair.kind.label(),
            summary.requests_per_sec
        );
        churns[index].max_rate = Some(summary.requests_per_sec);
    }
    new_certificates(args, mesh, baseline, mazu, &mut churns, results)?;
    for restart in 0..args.restarts {
        for (index, pair) in interleaved(restart, baseline, mazu) {
            pair.restart_server()?;
            let (status, cold) = one_request(pair.outbound_port)?;
            let (status2, warm) = one_request(pair.outbound_port)?;
            if status != 200 || status2 != 200 {
                results.notes.push(format!(
                    "cold-verdict sample {} of {}: statuses {status}/{status2}",
                    restart + 1,
                    pair.kind.label()
                ));
                continue;
            }
            let samples = &mut churns[index].after_restart;
            samples.cold_ms.push(cold.as_secs_f64() * 1000.0);
            samples.warm_ms.push(warm.as_secs_f64() * 1000.0);
        }
    }
    let [base, mazu_churn] = churns;
    results.churn.insert(Kind::Baseline, base);
    results.churn.insert(Kind::Mazu, mazu_churn);
    Ok(())
}

/// How long the new-certificate samples wait once the client presents its
/// certificate: the old registration's release and one registry poll.
fn settle_time() -> Duration {
    Duration::from_millis(RELEASE_DELAY_MS + REFRESH_INTERVAL_MS + 1_000)
}

/// Cold verdicts on a warm server: the client sidecar gets a new
/// certificate (baseline: a new CA-signed one; Mazu: its agent registers a
/// rotated token and serves the new certificate), then one connection, the
/// first the server sees with that certificate, and the next as the warm
/// control. As many samples as restarts, interleaved.
fn new_certificates(
    args: &Args,
    mesh: &LocalMesh,
    baseline: &mut Pair,
    mazu: &mut Pair,
    churns: &mut [Churn; 2],
    results: &mut Results,
) -> Result<()> {
    // After the client presents its new certificate, Mazu's agent releases
    // the old registration (its release delay) and the server's filter and
    // validator take in that change: the samples start once it is over,
    // the same pause for both configurations.
    let settle = settle_time();
    let counters = |pair: &Pair| -> Result<FilterVerdicts> {
        let stats = filter_stats(pair.server.admin_port)?;
        let get = |k: &str| {
            stats
                .get(&format!("mazu.inbound.{k}"))
                .copied()
                .unwrap_or(0)
        };
        Ok(FilterVerdicts {
            connections: 0,
            misses: get("verdict_cache_misses"),
            verdicts_vouched: get("verdicts_vouched"),
            vouched: get("token_signatures_vouched"),
            verified: get("token_signatures_verified"),
            micros: get("uncached_verdict_micros"),
        })
    };
    let mut verdicts = FilterVerdicts::default();
    for sample in 0..args.restarts {
        for (index, pair) in interleaved(sample, baseline, mazu) {
            pair.renew_client_certificate(mesh)?;
            std::thread::sleep(settle);
            let before = (pair.kind == Kind::Mazu)
                .then(|| counters(pair))
                .transpose()?;
            let (status, cold) = one_request(pair.outbound_port)?;
            let after = before.map(|_| counters(pair)).transpose()?;
            let (status2, warm) = one_request(pair.outbound_port)?;
            if status != 200 || status2 != 200 {
                results.notes.push(format!(
                    "new-certificate sample {} of {}: statuses {status}/{status2}",
                    sample + 1,
                    pair.kind.label()
                ));
                continue;
            }
            if let (Some(before), Some(after)) = (before, after) {
                verdicts.connections += 1;
                verdicts.misses += after.misses - before.misses;
                verdicts.verdicts_vouched += after.verdicts_vouched - before.verdicts_vouched;
                verdicts.vouched += after.vouched - before.vouched;
                verdicts.verified += after.verified - before.verified;
                verdicts.micros += after.micros - before.micros;
            }
            let samples = &mut churns[index].new_certificate;
            samples.cold_ms.push(cold.as_secs_f64() * 1000.0);
            samples.warm_ms.push(warm.as_secs_f64() * 1000.0);
        }
    }
    churns[1].new_certificate_verdicts = Some(verdicts);
    Ok(())
}

/// The two pairs in the order of sample `n` (baseline first in even
/// samples, Mazu first in odd ones), each with its index in the churns.
fn interleaved<'a>(
    n: u32,
    baseline: &'a mut Pair,
    mazu: &'a mut Pair,
) -> [(usize, &'a mut Pair); 2] {
    if n.is_multiple_of(2) {
        [(0, baseline), (1, mazu)]
    } else {
        [(1, mazu), (0, baseline)]
    }
}

fn note_failures(results: &mut Results, what: &str, summary: &oha::Summary) {
    if summary.failures() > 0 {
        results.notes.push(format!(
            "{what}: {} of {} requests failed ({:?} {:?})",
            summary.failures(),
            summary.requests + summary.errors.values().sum::<u64>(),
            summary.status_codes,
            summary.errors
        ));
    }
}

fn conditions(args: &Args, oha: &Path, envoy: &Path) -> Conditions {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = command_output("uname", &["-r"]);
    let envoy_version = command_output(&envoy.display().to_string(), &["--version"]);
    let envoy_version = envoy_version
        .split("version:")
        .nth(1)
        .map_or(envoy_version.clone(), |v| v.trim().to_owned());
    Conditions {
        started: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        mode: if args.quick { "quick" } else { "full" }.to_owned(),
        duration_secs: args.duration_secs,
        rounds: args.rounds,
        rate: args.rate,
        body_bytes: args.body_bytes,
        machine: format!("{cpus} CPUs ({cpu}), Linux {kernel}, loopback"),
        load_before: load_average(),
        load_after: String::new(),
        tools: format!(
            "{}; Envoy {envoy_version}",
            oha::version(oha).unwrap_or_else(|_| "oha".to_owned())
        ),
        clock_ticks: cpu::clock_ticks_per_second(),
        registry_refresh_ms: REFRESH_INTERVAL_MS,
        settle_ms: u64::try_from(settle_time().as_millis()).unwrap_or(u64::MAX),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
