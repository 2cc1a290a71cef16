//! Filter memory at scale: a real Envoy whose Mazu filter holds a synthetic
//! registry of N entries, served by a stand-in registry server
//! (`mazu_testkit::net::RegistryServer`).
//!
//! Envoy's memory is read two ways once the registry is in every VM: the
//! process's resident set (`VmRSS` in `/proc/<pid>/status`: everything,
//! including V8's heaps and the Wasm linear memories, which V8 maps itself)
//! and the admin `/memory` endpoint (tcmalloc's `allocated` bytes: Envoy's
//! own C++ heap, where the proxy-wasm shared data lives, but *not* V8's
//! mappings). Each size is measured with `--concurrency 1` and `2`: one more
//! worker is one more VM with its own decoded copy, so the difference is the
//! cost of one VM.

use core::time::Duration;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use mazu_e2e::envoy_config::substitute;
use mazu_e2e::process::Process;
use mazu_identity::{RegistryEntry, RegistrySnapshot, SpkiHash, WorkloadId};
use mazu_testkit::fixtures::{self, Mesh};
use mazu_testkit::http;
use mazu_testkit::net::{RegistryServer, free_port};
use mazu_testkit::witnessed::TestLog;

use crate::cpu;
use crate::topology::filter_stats;

const SCALE: &str = include_str!("../envoy/scale.yaml");

/// Memory of one Envoy holding a registry of `entries`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryReading {
    /// Registered IDs in the registry.
    pub entries: u64,
    /// Envoy worker threads (`--concurrency`); VMs = workers + the main thread's.
    pub workers: u32,
    /// Resident set size, bytes.
    pub rss: u64,
    /// tcmalloc `allocated` (admin `/memory`), bytes.
    pub allocated: u64,
    /// Encoded snapshot size, bytes.
    pub snapshot_bytes: u64,
    /// Seconds from Envoy's start until every filter held the registry.
    pub load_secs: f64,
    /// Envoy's CPU time (ms, every thread) for one more registration to
    /// reach every VM: the fetching VM follows the new records, derives and
    /// publishes the state; every other one verifies it in shared data.
    /// Includes the idle polls of that window (at most a few ms).
    pub refresh_cpu_ms: f64,
}

/// A synthetic snapshot of `n` distinct, unrevoked entries (version `n`, at
/// least 1), valid for a day.
pub fn synthetic_snapshot(n: u64) -> Result<RegistrySnapshot> {
    let expiry = fixtures::unix_now() + 86_400;
    let entries = (0..n)
        .map(|i| RegistryEntry {
            workload_id: WorkloadId::from_bytes(spread(i, 0x57)),
            slot: u32::try_from(i).unwrap_or(u32::MAX),
            spki_hash: SpkiHash::from_bytes(spread(i, 0xa3)),
            token_expiry: expiry,
            revoked: false,
        })
        .collect();
    RegistrySnapshot::from_entries(n.max(1), entries).map_err(|e| anyhow!("snapshot: {e:?}"))
}

/// 32 pseudo-random bytes from `i` (splitmix64), distinct for distinct `i`.
fn spread(i: u64, salt: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    }
    // Keep the index in the first bytes so that ids never collide.
    out[..8].copy_from_slice(&i.to_be_bytes());
    out
}

/// Starts an Envoy with the filter holding `n` entries and `workers`
/// workers, waits until it holds them and has settled, and reads its memory.
pub fn measure(
    envoy: &Path,
    wasm: &Path,
    dir: &Path,
    n: u64,
    workers: u32,
) -> Result<MemoryReading> {
    std::fs::create_dir_all(dir)?;
    let snapshot = synthetic_snapshot(n)?;
    let snapshot_bytes = snapshot.encode().len() as u64;
    // The filter derives its registry from log records (a bind and a
    // reveal per entry) under a witnessed checkpoint.
    let mut log = TestLog::with_entries(snapshot.entries());
    let log_size = i64::try_from(log.size())?;
    // The same log, served; `log` grows by one registration later.
    let registry = RegistryServer::start(TestLog::with_entries(snapshot.entries()))?;
    let authority = Mesh::new();
    // A poll that finds nothing new is one small checkpoint fetch (the
    // stand-in computes its root, which at 100,000 ids costs it a little).
    let config = authority
        .config("inbound", "")
        .replace("\"timeout_ms\":500", "\"timeout_ms\":10000");
    let admin = free_port()?;
    let yaml = substitute(
        SCALE,
        &[
            ("ADMIN_PORT", admin.to_string()),
            ("INBOUND_PORT", free_port()?.to_string()),
            ("CURATOR_PORT", registry.port().to_string()),
            ("FILTER_WASM", wasm.display().to_string()),
            ("PLUGIN_CONFIG", serde_json::to_string(&config)?),
        ],
    )?;
    let path = dir.join(format!("scale-{n}-{workers}.yaml"));
    std::fs::write(&path, yaml)?;
    let mut command = Command::new(envoy);
    command.arg("--config-path").arg(&path).args([
        "--concurrency",
        &workers.to_string(),
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]);
    let start = Instant::now();
    let mut process = Process::spawn(
        &format!("envoy (scale {n}, {workers} workers)"),
        command,
        &path.with_extension("log"),
    )?;
    process.wait_until("live", Duration::from_secs(60), || {
        http::get_text(admin, "/ready").is_ok_and(|body| body.trim() == "LIVE")
    })?;
    let expected = i64::try_from(n)?;
    let version = log_size;
    // One VM fetches; every other one (one per worker) installs the
    // registry from shared data after verifying it.
    let others = i64::from(workers);
    wait_for_every_vm(
        &mut process,
        admin,
        "the registry",
        (expected, version),
        others,
    )?;
    let load_secs = start.elapsed().as_secs_f64();
    let refused = filter_stats(admin)?
        .get("mazu.inbound.shared_refused")
        .copied()
        .unwrap_or(0);
    if refused != 0 {
        return Err(anyhow!(
            "{refused} shared-data refusals: the measurement would not be of a verified registry"
        ));
    }
    // Let the allocators settle.
    thread::sleep(Duration::from_secs(3));
    let rss = rss_bytes(process.pid())?;
    let memory: serde_json::Value = serde_json::from_str(&http::get_text(admin, "/memory")?)
        .context("admin /memory is not JSON")?;
    let allocated = memory["allocated"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| memory["allocated"].as_u64())
        .unwrap_or(0);
    // One more registration, once everything has settled.
    let before = cpu::read(process.pid())?;
    let expiry = fixtures::unix_now() + 86_400;
    log.register(&RegistryEntry {
        workload_id: WorkloadId::from_bytes(spread(n, 0x57)),
        slot: u32::try_from(n).unwrap_or(u32::MAX),
        spki_hash: SpkiHash::from_bytes(spread(n, 0xa3)),
        token_expiry: expiry,
        revoked: false,
    });
    let (next_version, next_entries) = (i64::try_from(log.size())?, expected + 1);
    registry.set(log);
    wait_for_every_vm(
        &mut process,
        admin,
        "one more",
        (next_entries, next_version),
        2 * others,
    )?;
    let after = cpu::read(process.pid())?;
    let refresh_cpu_ms = cpu::ticks_to_ms(
        after.total().saturating_sub(before.total()),
        cpu::clock_ticks_per_second(),
    );
    process.check_running()?;
    drop(process);
    drop(registry);
    Ok(MemoryReading {
        entries: n,
        workers,
        rss,
        allocated,
        snapshot_bytes,
        load_secs,
        refresh_cpu_ms,
    })
}

/// `VmRSS` of process `pid`, bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Waits until the filter's gauges show `entries` at `version` and the
/// VMs that do not fetch have installed `installs` registries from shared
/// data in all.
fn wait_for_every_vm(
    process: &mut Process,
    admin: u16,
    what: &str,
    (entries, version): (i64, i64),
    installs: i64,
) -> Result<()> {
    process.wait_until(
        &format!("every VM holding {what}"),
        Duration::from_secs(120),
        || {
            filter_stats(admin).is_ok_and(|s| {
                s.get("mazu.inbound.registry_entries") == Some(&entries)
                    && s.get("mazu.inbound.registry_version") == Some(&version)
                    && s.get("mazu.inbound.shared_installs")
                        .is_some_and(|&n| n >= installs)
            })
        },
    )
}

/// The memory attributable to the registry, from readings with 0 and `n`
/// entries at 1 and 2 workers.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryMemory {
    /// Registered IDs.
    pub entries: u64,
    /// RSS growth of the whole process (1 worker: 2 VMs + shared data), bytes.
    pub process_rss: i64,
    /// tcmalloc growth of the whole process (1 worker), bytes.
    pub process_allocated: i64,
    /// RSS of one more VM holding the registry (2 workers − 1 worker, minus
    /// the same difference with an empty registry), bytes.
    pub per_vm_rss: i64,
}

/// Combines the readings into [`RegistryMemory`] per size (sizes other than 0).
pub fn registry_memory(readings: &[MemoryReading]) -> Vec<RegistryMemory> {
    let find = |n: u64, w: u32| readings.iter().find(|r| r.entries == n && r.workers == w);
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (Some(e1), Some(e2)) = (find(0, 1), find(0, 2)) else {
        return Vec::new();
    };
    let mut sizes: Vec<u64> = readings
        .iter()
        .map(|r| r.entries)
        .filter(|&n| n > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|n| {
            let (r1, r2) = (find(n, 1)?, find(n, 2)?);
            Some(RegistryMemory {
                entries: n,
                process_rss: signed(r1.rss) - signed(e1.rss),
                process_allocated: signed(r1.allocated) - signed(e1.allocated),
                per_vm_rss: (signed(r2.rss) - signed(r1.rss)) - (signed(e2.rss) - signed(e1.rss)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_snapshots_have_distinct_entries() {
        let snapshot = synthetic_snapshot(1000).unwrap();
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(snapshot.version(), 1000);
        assert_eq!(snapshot.encode().len(), 17 + 1000 * 77);
        assert_eq!(synthetic_snapshot(0).unwrap().version(), 1);
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tenvoy\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t12\n";
        assert_eq!(parse_vm_rss(status), Some(51234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn registry_memory_subtracts_the_empty_registry() {
        let r = |entries, workers, rss, allocated| MemoryReading {
            entries,
            workers,
            rss,
            allocated,
            snapshot_bytes: 0,
            load_secs: 0.0,
            refresh_cpu_ms: 0.0,
        };
        let readings = [
            r(0, 1, 100, 10),
            r(0, 2, 130, 12),
            r(10, 1, 150, 20),
            r(10, 2, 200, 22),
        ];
        let memory = registry_memory(&readings);
        assert_eq!(
            memory,
            vec![RegistryMemory {
                entries: 10,
                process_rss: 50,
                process_allocated: 10,
                per_vm_rss: 20,
            }]
        );
    }
}
