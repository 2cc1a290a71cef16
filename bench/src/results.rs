//! What one bench run measured: the input of the report and the plot.

use std::collections::BTreeMap;

use crate::cpu::{Comparison, CpuWindow};
use crate::oha::Summary;
use crate::scale::MemoryReading;
use crate::stats::{Goal, Percentiles, quantile, range};
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
    /// The kernel's clock ticks per second (the unit of `/proc/<pid>/stat`
    /// CPU times).
    pub clock_ticks: u64,
    /// How often the Mazu filters poll the curator, ms.
    pub registry_refresh_ms: u64,
    /// How long the new-certificate samples wait after the client presents
    /// its new certificate, ms.
    pub settle_ms: u64,
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
    /// First connections after a server-sidecar restart (every cache of it
    /// empty, its code just loaded).
    pub after_restart: ColdSamples,
    /// First connections with a new client certificate to a server sidecar
    /// that keeps running: the verdict on that certificate is cold, the
    /// proxy warm.
    pub new_certificate: ColdSamples,
    /// Over [`Churn::new_certificate`]'s first connections, the Mazu server
    /// filter's counters; `None` for the baseline.
    pub new_certificate_verdicts: Option<FilterVerdicts>,
    /// The Mazu server filter's verdict-cache counters over the cached runs
    /// (hits, misses); `None` for the baseline.
    pub cache_counters: Option<(i64, i64)>,
    /// The server sidecar's inbound TLS handshakes over the cached runs, and
    /// how many of them resumed a session (0 expected: the clients turn
    /// resumption off).
    pub handshakes: Option<(u64, u64)>,
}

/// What the Mazu server's filter counted over a set of connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterVerdicts {
    /// Connections.
    pub connections: u64,
    /// Verdict-cache misses (full verdicts).
    pub misses: i64,
    /// Verdicts taken from the handshake validator once the filter's own
    /// registry agreed (its `verdicts_vouched`).
    pub verdicts_vouched: i64,
    /// Token signatures taken on the handshake validator's word (in
    /// verdicts the filter ran itself).
    pub vouched: i64,
    /// Token signatures the filter verified itself.
    pub verified: i64,
    /// Microseconds the filter spent on those full verdicts (its
    /// `uncached_verdict_micros`).
    pub micros: i64,
}

/// Picks one event's samples out of a configuration's churn.
pub type EventSamples = fn(&Churn) -> &ColdSamples;

/// First connections after an event that leaves the server without a
/// verdict on the client's certificate, each followed by the next
/// connection, the warm control.
#[derive(Clone, Debug, Default)]
pub struct ColdSamples {
    /// The first connection after the event, ms.
    pub cold_ms: Vec<f64>,
    /// The connection right after it, ms.
    pub warm_ms: Vec<f64>,
}

impl ColdSamples {
    /// Cold − warm median (ms).
    pub fn cold_minus_warm(&self) -> Option<f64> {
        Some(quantile(&self.cold_ms, 0.5)? - quantile(&self.warm_ms, 0.5)?)
    }
}

/// What a CPU window carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Kept-alive connections at a fixed request rate: CPU per request.
    KeepAlive {
        /// Concurrent connections.
        connections: u32,
    },
    /// A new connection (full handshake) per request, cached verdicts: CPU
    /// per new connection.
    NewConnections,
}

impl Phase {
    /// Its name in the report.
    pub fn label(self) -> String {
        match self {
            Phase::KeepAlive { connections } => {
                format!("per request, keep-alive, {connections} connections")
            }
            Phase::NewConnections => "per new connection (cached verdicts)".to_owned(),
        }
    }
}

/// Both sidecars' CPU time over one measurement (one oha run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuRun {
    /// Configuration.
    pub kind: Kind,
    /// What the window carried.
    pub phase: Phase,
    /// Round number (from 0).
    pub round: u32,
    /// CPU times and requests (or connections).
    pub window: CpuWindow,
}

/// Both sidecars of one configuration with no load at all: what they burn
/// on their own (registry polls, validator file checks, timers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdleCpu {
    /// CPU times (units 0).
    pub window: CpuWindow,
    /// Length of the window, seconds.
    pub secs: f64,
}

impl IdleCpu {
    /// Both sidecars' CPU ms per second.
    pub fn ms_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.window.total_ms() / self.secs
        } else {
            f64::NAN
        }
    }
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
    /// Envoy CPU time per measurement window, in the order run.
    pub cpu: Vec<CpuRun>,
    /// Envoy CPU time with no load, per configuration.
    pub idle_cpu: BTreeMap<Kind, IdleCpu>,
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

    /// The phases with CPU windows: keep-alive by connection count, then
    /// new connections.
    pub fn cpu_phases(&self) -> Vec<Phase> {
        let mut phases: Vec<Phase> = self.cpu.iter().map(|r| r.phase).collect();
        phases.sort_unstable();
        phases.dedup();
        phases
    }

    /// The rounds with CPU windows in `phase`, ascending.
    pub fn cpu_rounds(&self, phase: Phase) -> Vec<u32> {
        let mut rounds: Vec<u32> = self
            .cpu
            .iter()
            .filter(|r| r.phase == phase)
            .map(|r| r.round)
            .collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds
    }

    /// The CPU window of `kind` in `phase` and `round` (`None`: every
    /// round, added up).
    pub fn cpu_window(&self, kind: Kind, phase: Phase, round: Option<u32>) -> Option<CpuWindow> {
        CpuWindow::sum(
            self.cpu
                .iter()
                .filter(|r| {
                    r.kind == kind && r.phase == phase && round.is_none_or(|n| r.round == n)
                })
                .map(|r| &r.window),
        )
    }

    /// Mazu against the baseline in `phase`, in one round or (`None`) over
    /// every round: CPU added up, divided by the requests added up.
    pub fn cpu_comparison(&self, phase: Phase, round: Option<u32>) -> Option<Comparison> {
        Comparison::of(
            &self.cpu_window(Kind::Baseline, phase, round)?,
            &self.cpu_window(Kind::Mazu, phase, round)?,
        )
    }

    /// Spread of a per-round figure of the CPU comparison in `phase`:
    /// (lowest, highest).
    pub fn cpu_round_range(&self, phase: Phase, f: fn(&Comparison) -> f64) -> Option<(f64, f64)> {
        range(
            self.cpu_rounds(phase)
                .into_iter()
                .filter_map(|round| self.cpu_comparison(phase, Some(round)))
                .map(|c| f(&c)),
        )
    }

    /// What Mazu's first connection after an event costs more than its
    /// next one, over the same for the baseline (ms, medians): `samples`
    /// picks the event.
    pub fn cold_over_baseline(&self, samples: EventSamples) -> Option<f64> {
        let cold = |kind| samples(self.churn.get(&kind)?).cold_minus_warm();
        Some(cold(Kind::Mazu)? - cold(Kind::Baseline)?)
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
        for connections in [16, 64] {
            goals.push(Goal {
                name: format!("Envoy CPU per request, {connections} connections (over baseline)"),
                limit: 3.0,
                measured: self
                    .cpu_comparison(Phase::KeepAlive { connections }, None)
                    .map(|c| c.overhead_percent()),
                unit: "%",
            });
        }
        goals.push(Goal {
            name: "Envoy CPU per new connection, cached verdict".to_owned(),
            limit: 0.03,
            measured: self
                .cpu_comparison(Phase::NewConnections, None)
                .map(|c| c.difference()),
            unit: "ms",
        });
        goals.push(Goal {
            name: "cold verdict, new client certificate (first − next connection, median, over baseline)"
                .to_owned(),
            limit: 0.2,
            measured: self.cold_over_baseline(|c| &c.new_certificate),
            unit: "ms",
        });
        goals.push(Goal {
            name: "cold verdict after a server-sidecar restart (first − next connection, median, over baseline)"
                .to_owned(),
            limit: 0.2,
            measured: self.cold_over_baseline(|c| &c.after_restart),
            unit: "ms",
        });
        let per_vm = crate::scale::registry_memory(&self.memory)
            .into_iter()
            .find(|m| m.entries == 100_000)
            .map(|m| m.per_vm_rss as f64 / 1e6);
        goals.push(Goal {
            name: "filter memory per VM, 100,000 registered IDs".to_owned(),
            limit: 2.0,
            measured: per_vm,
            unit: "MB",
        });
        goals
    }
}
