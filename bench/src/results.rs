//! What one bench run measured: the input of the report and the plot.

use std::collections::BTreeMap;

use crate::oha::Summary;
use crate::scale::MemoryReading;
use crate::stats::{Goal, Percentiles, range};
use crate::topology::Kind;

/// The conditions of the run.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// UTC start time.
    pub started: String,
    /// `quick` or `full`.
    pub mode: String,
    /// Seconds per latency measurement.
    pub duration_secs: u64,
    /// Interleaved rounds (A B, B A, …) per connection count.
    pub rounds: u32,
    /// Fixed request rate of the latency runs.
    pub rate: u32,
    /// Request and response body bytes.
    pub body_bytes: usize,
    /// Machine: CPU model, CPUs, kernel.
    pub machine: String,
    /// Load average (1, 5, 15 min) when the run started and ended.
    pub load_before: String,
    /// Same at the end.
    pub load_after: String,
    /// Envoy and oha versions.
    pub tools: String,
}

/// One latency measurement (keep-alive, fixed rate).
#[derive(Clone, Debug)]
pub struct LatencyRun {
    /// Configuration.
    pub kind: Kind,
    /// Concurrent connections.
    pub connections: u32,
    /// Round number (from 0).
    pub round: u32,
    /// oha's result.
    pub summary: Summary,
}

/// New-connection measurements of one configuration.
#[derive(Clone, Debug, Default)]
pub struct Churn {
    /// Fixed-rate runs, a new connection per request (cached verdicts).
    pub cached: Vec<Summary>,
    /// Fixed rate of those runs.
    pub cached_rate: u32,
    /// Highest new-connection rate reached (unbounded run), per second.
    pub max_rate: Option<f64>,
    /// First connection after a server-sidecar restart (cold caches), ms.
    pub cold_ms: Vec<f64>,
    /// The connection right after it (caches warm again), ms.
    pub warm_ms: Vec<f64>,
    /// The Mazu server filter's verdict-cache counters over the cached runs
    /// (hits, misses); `None` for the baseline.
    pub cache_counters: Option<(i64, i64)>,
}

/// Everything measured.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// How and where.
    pub conditions: Conditions,
    /// Latency runs, in the order run.
    pub latency: Vec<LatencyRun>,
    /// Connection churn per configuration.
    pub churn: BTreeMap<Kind, Churn>,
    /// Filter memory readings.
    pub memory: Vec<MemoryReading>,
    /// Problems worth a line in the report (failed requests, skipped parts).
    pub notes: Vec<String>,
}

impl Results {
    /// The connection counts measured, ascending.
    pub fn connection_counts(&self) -> Vec<u32> {
        let mut counts: Vec<u32> = self.latency.iter().map(|r| r.connections).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// Per-round percentiles of `kind` at `connections`.
    pub fn rounds(&self, kind: Kind, connections: u32) -> Vec<Percentiles> {
        self.latency
            .iter()
            .filter(|r| r.kind == kind && r.connections == connections)
            .map(|r| r.summary.latency)
            .collect()
    }

    /// The mean percentiles of `kind` at `connections` over its rounds.
    pub fn latency(&self, kind: Kind, connections: u32) -> Option<Percentiles> {
        Percentiles::mean(&self.rounds(kind, connections))
    }

    /// Mazu − baseline at `connections`.
    pub fn latency_overhead(&self, connections: u32) -> Option<Percentiles> {
        Some(
            self.latency(Kind::Mazu, connections)?
                .minus(&self.latency(Kind::Baseline, connections)?),
        )
    }

    /// Spread of the per-round p90 differences (Mazu − baseline of the same
    /// round) at `connections`: (lowest, highest).
    pub fn p90_overhead_range(&self, connections: u32) -> Option<(f64, f64)> {
        let of = |kind: Kind, round: u32| {
            self.latency
                .iter()
                .find(|r| r.kind == kind && r.connections == connections && r.round == round)
                .map(|r| r.summary.latency.p90)
        };
        range(self.latency.iter().filter_map(|r| {
            if r.kind != Kind::Mazu || r.connections != connections {
                return None;
            }
            Some(of(Kind::Mazu, r.round)? - of(Kind::Baseline, r.round)?)
        }))
    }

    /// Mean percentiles of the cached new-connection runs of `kind`.
    pub fn churn_latency(&self, kind: Kind) -> Option<Percentiles> {
        let runs: Vec<Percentiles> = self
            .churn
            .get(&kind)?
            .cached
            .iter()
            .map(|s| s.latency)
            .collect();
        Percentiles::mean(&runs)
    }

    /// The goals with what was measured.
    pub fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        for connections in [16, 64] {
            goals.push(Goal {
                name: format!("p90 latency overhead, {connections} connections"),
                limit: 0.02,
                measured: self.latency_overhead(connections).map(|d| d.p90),
                unit: "ms",
            });
        }
        let cached = self
            .churn_latency(Kind::Mazu)
            .zip(self.churn_latency(Kind::Baseline))
            .map(|(m, b)| m.p50 - b.p50);
        goals.push(Goal {
            name: "new-connection overhead, cached verdict (p50)".to_owned(),
            limit: 0.03,
            measured: cached,
            unit: "ms",
        });
        let per_vm = crate::scale::registry_memory(&self.memory)
            .into_iter()
            .find(|m| m.entries == 100_000)
            .map(|m| m.per_vm_rss as f64 / 1e6);
        goals.push(Goal {
            name: "filter memory per VM, 100,000 registered IDs".to_owned(),
            limit: 16.0,
            measured: per_vm,
            unit: "MB",
        });
        goals
    }
}
