//! The registry-lifecycle soak (issue 17): a [`LocalMesh`] of four services
//! on a registry of capacity 16, whose 20-second tokens are replaced every
//! few seconds (as the kubelet replaces projected tokens) so that the
//! agents register, serve and release identity after identity, while every
//! service calls every other one through the real Envoys on new and on
//! pooled connections. At the end it checks that the registry served many
//! times its capacity with no failed request, no `registry_full`, the
//! filters' registry and the curator's memory flat, and `mazu-audit check`
//! green. `tests/soak.rs` runs it (5 minutes by default, `MAZU_SOAK_SECS`);
//! docs/soak.md explains the knobs and shows the figures of real runs.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use mazu_log::record::RecordBody;

use crate::backend::{CallResult, http_get, keep_alive_get};
use crate::mesh::{LocalMesh, MeshOptions, ServiceSpec};

/// Registry capacity (slots) of the soak's curator.
pub const CAPACITY: u32 = 16;
/// Lifetime of every token the soak's issuer mints, seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 20;
/// How often the filters poll the curator, milliseconds.
pub const REFRESH_INTERVAL_MS: u64 = 1000;
/// The agents' `--propagation-delay-ms`: a new certificate is served only
/// once every filter has polled the registry that holds it (one interval,
/// plus the quarter-interval tick, with margin).
pub const PROPAGATION_DELAY_MS: u64 = REFRESH_INTERVAL_MS * 5 / 2;
/// The agents' `--release-delay-ms`: the drain time of connections made
/// with a replaced certificate. Must exceed [`POOL_MAX_AGE`].
pub const RELEASE_DELAY_MS: u64 = REFRESH_INTERVAL_MS * 4;
/// How long a pooled connection is reused before the caller opens a new
/// one (what an HTTP client's maximum connection age does). Connections
/// made with a certificate that is then replaced must be done within the
/// release delay: after it, the filters close them at their next bytes.
pub const POOL_MAX_AGE: Duration = Duration::from_secs(2);
/// What an agent logs when the opening it computed from the log is not
/// the curator's (`agent/src/openings.rs`).
const OPENING_RESET: &str = "the opening computed from the log differs from the curator's";
/// The least number of registrations a run must reach: ten times capacity.
pub const MIN_REGISTRATIONS: usize = 10 * CAPACITY as usize;

/// How a soak run goes.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long traffic and rotations run (after the mesh is up).
    pub duration: Duration,
    /// How often each service's token is replaced (the services are
    /// staggered across one period).
    pub rotate_every: Duration,
    /// How often the series are sampled.
    pub sample_every: Duration,
    /// Pause between two calls of one caller on new connections.
    pub new_call_pause: Duration,
    /// Pause between two calls of one caller on its pooled connection.
    pub pooled_call_pause: Duration,
    /// Working directory to keep (logs, state); a temporary one if `None`.
    pub dir: Option<PathBuf>,
    /// The agents serve the handshake validator instead of the pins
    /// (`MAZU_SOAK_HANDSHAKE_VALIDATOR=1`).
    pub handshake_validator: bool,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            duration: Duration::from_secs(300),
            // 4 services x 300 s / 6 s = 200 registrations in 5 minutes,
            // above the 160 (10 x capacity) required.
            rotate_every: Duration::from_secs(6),
            sample_every: Duration::from_secs(10),
            new_call_pause: Duration::from_millis(200),
            pooled_call_pause: Duration::from_millis(100),
            dir: None,
            handshake_validator: false,
        }
    }
}

impl SoakOptions {
    /// The defaults, with `MAZU_SOAK_SECS` (duration), `MAZU_SOAK_ROTATE_MS`
    /// (rotation period), `MAZU_SOAK_DIR` (working directory, kept) and
    /// `MAZU_SOAK_HANDSHAKE_VALIDATOR` (`1`: the validator) from the
    /// environment when set.
    pub fn from_env() -> Result<SoakOptions> {
        let mut options = SoakOptions::default();
        let number = |name: &str| -> Result<Option<u64>> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.trim()
                        .parse()
                        .with_context(|| format!("{name}={v} is not a number"))
                })
                .transpose()
        };
        if let Some(secs) = number("MAZU_SOAK_SECS")? {
            options.duration = Duration::from_secs(secs);
            // Longer runs sample less often; about 30 to 60 points.
            options.sample_every = Duration::from_secs((secs / 30).clamp(10, 60));
        }
        if let Some(ms) = number("MAZU_SOAK_ROTATE_MS")? {
            options.rotate_every = Duration::from_millis(ms);
        }
        options.dir = std::env::var_os("MAZU_SOAK_DIR").map(PathBuf::from);
        options.handshake_validator = number("MAZU_SOAK_HANDSHAKE_VALIDATOR")? == Some(1);
        Ok(options)
    }

    /// The mesh the soak runs: four services that call each other, and
    /// the lifecycle knobs tuned for capacity 16 (docs/soak.md).
    pub fn mesh_options(&self) -> MeshOptions {
        let secs = |s: u64| s.to_string();
        MeshOptions {
            services: ["frontend", "checkout", "payments", "inventory"]
                .into_iter()
                .map(|name| ServiceSpec::new(name, "shop"))
                .collect(),
            refresh_interval_ms: REFRESH_INTERVAL_MS,
            capacity: CAPACITY,
            token_lifetime_secs: TOKEN_LIFETIME_SECS,
            dir: self.dir.clone(),
            lying_curator: false,
            istio_san_matchers: false,
            handshake_validator: self.handshake_validator,
            istio_sidecars: false,
            authorization: Default::default(),
            propagation_delay_ms: Some(PROPAGATION_DELAY_MS),
            release_delay_ms: Some(RELEASE_DELAY_MS),
            curator_args: vec![
                // A token that expired is of no use: free its slot soon
                // after (the agents release replaced ones earlier still).
                "--expiry-grace-secs".into(),
                secs(5),
                // A binding not revealed within a token's lifetime never
                // will be (its token has expired): free it then.
                "--reveal-window-secs".into(),
                secs(TOKEN_LIFETIME_SECS),
                // Likewise a reserved slot never bound.
                "--reservation-ttl-secs".into(),
                secs(TOKEN_LIFETIME_SECS),
                // The four agents share 127.0.0.1, and each rotation is
                // four writes (slot, bind, reveal, release): 160 a minute
                // at a 6-second period, over the default 60 per client.
                "--rate-limit-per-minute".into(),
                "1200".into(),
                "--rate-limit-burst".into(),
                "100".into(),
            ],
        }
    }
}

/// One point of the series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Seconds since the traffic started.
    pub at_secs: u64,
    /// Entries in the curator's log.
    pub log_entries: i64,
    /// Slots held (bound or live), from the curator's metrics.
    pub slots_held: i64,
    /// Bindings ended so far (released or revoked).
    pub ended: i64,
    /// The largest registry a filter holds (entries, over every sidecar
    /// and direction).
    pub filter_entries: i64,
    /// The curator's resident set, KiB.
    pub curator_rss_kib: u64,
    /// The largest Envoy heap (`server.memory_allocated`), KiB.
    pub envoy_heap_kib: u64,
    /// Requests answered so far (both kinds of connection).
    pub answered: u64,
    /// Requests failed so far.
    pub failed: u64,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// How long traffic ran.
    pub duration: Duration,
    /// Registrations in the log (reveals: each is a live registration).
    pub registrations: usize,
    /// Bindings ended (releases and revocations in the log).
    pub releases: usize,
    /// Token files replaced.
    pub rotations: u64,
    /// Requests answered on new connections.
    pub answered_new: u64,
    /// Requests answered on pooled connections.
    pub answered_pooled: u64,
    /// Pooled connections opened.
    pub pooled_connections: u64,
    /// Requests that failed (no answer, or not the peer's `200`).
    pub failed: u64,
    /// The first failures, described.
    pub failures: Vec<String>,
    /// `registry_full` refusals (the curator's refusal and reservation
    /// counters together).
    pub registry_full: u64,
    /// Every refusal the curator counted, by reason.
    pub refusals: Vec<(String, u64)>,
    /// Connections the filters denied (every sidecar, both directions).
    pub denied: i64,
    /// The series.
    pub samples: Vec<Sample>,
    /// How often an agent found the RBE opening it computed from the log
    /// (binds, releases of its block's neighbours) different from the
    /// curator's, and fell back to the curator's.
    pub opening_resets: usize,
    /// The most first binds any agent held at the end (its `status.json`):
    /// what its log view keeps follows the live registrations, not the
    /// history.
    pub first_binds_max: u64,
    /// Whether `mazu-audit check` exited 0.
    pub audit_ok: bool,
    /// Its output (stdout, then stderr).
    pub audit_output: String,
    /// The mesh's working directory.
    pub dir: PathBuf,
}

/// Whether a series is flat after warm-up: the samples are cut in thirds
/// (the first is warm-up), and the last third's maximum may exceed the
/// second third's by at most 10% plus `margin`. Returns the two maxima.
pub fn flat(series: &[u64], margin: u64) -> (bool, u64, u64) {
    let third = series.len() / 3;
    let second = series[third..2 * third].iter().copied().max().unwrap_or(0);
    let last = series[2 * third..].iter().copied().max().unwrap_or(0);
    (last <= second + second / 10 + margin, second, last)
}

/// Flatness margin of the filters' registry size: one rotation's worth of
/// entries per service (its next binding and the previous one draining).
pub const FILTER_ENTRIES_MARGIN: u64 = 4;
/// The most first binds an agent may hold: every slot's id, and as many
/// ended ones not yet consumed by its opening refresh (far below the
/// registrations of a run, at least ten times capacity).
pub const FIRST_BINDS_BOUND: u64 = 2 * CAPACITY as u64;
/// Flatness margin of the curator's resident set, KiB.
pub const CURATOR_RSS_MARGIN_KIB: u64 = 2048;

impl SoakReport {
    /// Everything the run must show that it did not; empty if it passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.registrations < MIN_REGISTRATIONS {
            problems.push(format!(
                "{} registrations, fewer than {MIN_REGISTRATIONS} (10 x capacity)",
                self.registrations
            ));
        }
        if self.failed > 0 {
            problems.push(format!(
                "{} failed requests, e.g. {:?}",
                self.failed, self.failures
            ));
        }
        if self.answered_new == 0 || self.answered_pooled == 0 {
            problems.push("no traffic on new or on pooled connections".to_owned());
        }
        if self.registry_full > 0 {
            problems.push(format!("{} registry_full refusals", self.registry_full));
        }
        if self.denied > 0 {
            problems.push(format!("the filters denied {} connections", self.denied));
        }
        if self.opening_resets > 0 {
            problems.push(format!(
                "the agents' openings diverged from the curator's {} times",
                self.opening_resets
            ));
        }
        if self.first_binds_max > FIRST_BINDS_BOUND {
            problems.push(format!(
                "an agent holds {} first binds, more than {FIRST_BINDS_BOUND}: its log view \
                 follows the history",
                self.first_binds_max
            ));
        }
        if self.samples.len() < 6 {
            problems.push(format!(
                "{} samples, too few to judge flatness",
                self.samples.len()
            ));
        } else {
            for (name, series, margin) in [
                (
                    "the filters' registry size",
                    self.series(|s| u64::try_from(s.filter_entries).unwrap_or(0)),
                    FILTER_ENTRIES_MARGIN,
                ),
                (
                    "the curator's RSS (KiB)",
                    self.series(|s| s.curator_rss_kib),
                    CURATOR_RSS_MARGIN_KIB,
                ),
            ] {
                let (ok, second, last) = flat(&series, margin);
                if !ok {
                    problems.push(format!(
                        "{name} grew after warm-up: last third's max {last} > \
                         second third's max {second} + 10% + {margin}"
                    ));
                }
            }
        }
        if !self.audit_ok {
            problems.push(format!("mazu-audit check failed:\n{}", self.audit_output));
        }
        problems
    }

    /// The trend of the curator's RSS against its log size after warm-up
    /// (the first third): KiB per 1000 entries, by least squares. Printed,
    /// not asserted: it tells memory that follows history (the log) from
    /// memory that follows live registrations.
    pub fn rss_per_thousand_entries(&self) -> Option<f64> {
        let points: Vec<(f64, f64)> = self.samples[self.samples.len() / 3..]
            .iter()
            .map(|s| (s.log_entries as f64, s.curator_rss_kib as f64))
            .collect();
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx * 1000.0)
    }

    fn series(&self, value: impl Fn(&Sample) -> u64) -> Vec<u64> {
        self.samples.iter().map(value).collect()
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.duration.as_secs_f64() / 60.0;
        writeln!(
            f,
            "soak: {minutes:.1} min, capacity {CAPACITY}, tokens of {TOKEN_LIFETIME_SECS} s, \
             {} token rotations",
            self.rotations
        )?;
        writeln!(
            f,
            "  registrations {} (>= {MIN_REGISTRATIONS}), releases {}",
            self.registrations, self.releases
        )?;
        writeln!(
            f,
            "  requests answered {} (new connections {}, pooled {} on {} connections), failed {}",
            self.answered_new + self.answered_pooled,
            self.answered_new,
            self.answered_pooled,
            self.pooled_connections,
            self.failed
        )?;
        let refusals: Vec<String> = self
            .refusals
            .iter()
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        writeln!(
            f,
            "  registry_full {}, curator refusals [{}], filter denials {}",
            self.registry_full,
            refusals.join(" "),
            self.denied
        )?;
        let entries = self.series(|s| u64::try_from(s.filter_entries).unwrap_or(0));
        let rss = self.series(|s| s.curator_rss_kib);
        if self.samples.len() >= 3 {
            let (ok, second, last) = flat(&entries, FILTER_ENTRIES_MARGIN);
            writeln!(
                f,
                "  filter registry max: second third {second}, last third {last} ({})",
                if ok { "flat" } else { "GREW" }
            )?;
            let (ok, second, last) = flat(&rss, CURATOR_RSS_MARGIN_KIB);
            writeln!(
                f,
                "  curator RSS max KiB: second third {second}, last third {last} ({})",
                if ok { "flat" } else { "GREW" }
            )?;
        }
        if let Some(slope) = self.rss_per_thousand_entries() {
            writeln!(
                f,
                "  curator RSS after warm-up: {slope:+.0} KiB per 1000 log entries (least squares)"
            )?;
        }
        writeln!(
            f,
            "  agents' openings diverged from the curator's: {} times; first binds held at most \
             {} (<= {FIRST_BINDS_BOUND})",
            self.opening_resets, self.first_binds_max
        )?;
        writeln!(
            f,
            "  mazu-audit check: {}",
            if self.audit_ok { "green" } else { "FAILED" }
        )?;
        writeln!(f, "  working directory: {}", self.dir.display())?;
        writeln!(
            f,
            "\n  {:>6} {:>8} {:>6} {:>6} {:>9} {:>12} {:>12} {:>9} {:>6}",
            "t (s)",
            "log",
            "held",
            "ended",
            "filter",
            "curator KiB",
            "envoy KiB",
            "answered",
            "failed"
        )?;
        for s in &self.samples {
            writeln!(
                f,
                "  {:>6} {:>8} {:>6} {:>6} {:>9} {:>12} {:>12} {:>9} {:>6}",
                s.at_secs,
                s.log_entries,
                s.slots_held,
                s.ended,
                s.filter_entries,
                s.curator_rss_kib,
                s.envoy_heap_kib,
                s.answered,
                s.failed
            )?;
        }
        Ok(())
    }
}

/// Counts of the callers, shared with their threads.
#[derive(Default)]
struct Tally {
    answered_new: AtomicU64,
    answered_pooled: AtomicU64,
    pooled_connections: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, started: Instant, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut failures) = self.failures.lock()
            && failures.len() < 20
        {
            failures.push(format!("t={:.1}s {what}", started.elapsed().as_secs_f64()));
        }
    }

    fn answered(&self) -> u64 {
        self.answered_new.load(Ordering::SeqCst) + self.answered_pooled.load(Ordering::SeqCst)
    }
}

/// One caller: `from`'s workload calling `to` through `from`'s outbound
/// listener `port`, on a new connection per request or on a pooled one.
struct Caller {
    from: String,
    to: String,
    port: u16,
    pooled: bool,
    pause: Duration,
}

impl Caller {
    fn run(&self, tally: &Tally, stop: &AtomicBool, started: Instant) {
        let expected = format!("hello from {}", self.to);
        let mut pool: Option<(TcpStream, Instant)> = None;
        while !stop.load(Ordering::SeqCst) {
            let answer = if self.pooled {
                if pool
                    .as_ref()
                    .is_some_and(|(_, opened)| opened.elapsed() >= POOL_MAX_AGE)
                {
                    pool = None;
                }
                if pool.is_none() {
                    match TcpStream::connect(("127.0.0.1", self.port)) {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            tally.pooled_connections.fetch_add(1, Ordering::SeqCst);
                            pool = Some((stream, Instant::now()));
                        }
                        Err(e) => {
                            tally.fail(
                                started,
                                format!("{} -> {}: connect: {e}", self.from, self.to),
                            );
                        }
                    }
                }
                pool.as_mut().map(|(stream, _)| {
                    keep_alive_get(stream, &self.to)
                        .ok_or_else(|| "closed before a complete answer".to_owned())
                })
            } else {
                Some(
                    http_get(self.port, &self.to, Duration::from_secs(10))
                        .map_err(|e| format!("{e:#}")),
                )
            };
            match answer {
                Some(Ok(CallResult::Answered { status: 200, body }))
                    if body.contains(&expected) =>
                {
                    let counter = if self.pooled {
                        &tally.answered_pooled
                    } else {
                        &tally.answered_new
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                None => {}
                Some(other) => {
                    let kind = if self.pooled { "pooled" } else { "new" };
                    tally.fail(
                        started,
                        format!("{} -> {} ({kind}): {other:?}", self.from, self.to),
                    );
                    // A failed pooled connection is not reused.
                    pool = None;
                }
            }
            thread::sleep(self.pause);
        }
    }
}

/// Starts the mesh and runs the soak; the report says what it measured
/// ([`SoakReport::problems`] judges it).
pub fn run(options: &SoakOptions) -> Result<SoakReport> {
    let mesh = LocalMesh::start(options.mesh_options()).context("starting the soak mesh")?;
    let mut callers = Vec::new();
    for sidecar in mesh.services() {
        for (to, port) in &sidecar.outbound {
            for pooled in [false, true] {
                callers.push(Caller {
                    from: sidecar.spec.name.clone(),
                    to: to.clone(),
                    port: *port,
                    pooled,
                    pause: if pooled {
                        options.pooled_call_pause
                    } else {
                        options.new_call_pause
                    },
                });
            }
        }
    }
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            let (tally, stop) = (tally.clone(), stop.clone());
            thread::spawn(move || caller.run(&tally, &stop, started))
        })
        .collect();

    let mut kubelet = Kubelet {
        rotations: 0,
        samples: Vec::new(),
    };
    let outcome = kubelet.drive(&mesh, options, started, &tally);
    stop.store(true, Ordering::SeqCst);
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow!("a caller thread panicked"))?;
    }
    outcome?;
    let Kubelet {
        rotations,
        mut samples,
    } = kubelet;
    samples.push(sample(&mesh, started, &tally)?);
    let duration = started.elapsed();

    let records = mesh.curator_records()?;
    let registrations = records
        .iter()
        .filter(|r| matches!(r.body, RecordBody::Reveal { .. }))
        .count();
    let releases = records
        .iter()
        .filter(|r| matches!(r.body, RecordBody::Release { .. } | RecordBody::Revoke))
        .count();
    let metrics = mesh.curator_metrics()?;
    let refusals = labelled_counts(&metrics, "mazu_curator_registrations_refused_total");
    let registry_full = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains("\"registry_full\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    let mut denied = 0;
    for sidecar in mesh.services() {
        let stats = sidecar.filter_stats()?;
        denied += ["inbound", "outbound"]
            .iter()
            .filter_map(|dir| stats.get(&format!("mazu.{dir}.connections_denied")))
            .sum::<i64>();
    }
    let mut opening_resets = 0;
    let mut first_binds_max = 0;
    for sidecar in mesh.services() {
        let log = std::fs::read_to_string(sidecar.dir.join("agent.log"))?;
        opening_resets += log.matches(OPENING_RESET).count();
        let held = sidecar
            .agent_status()
            .and_then(|status| status["first_binds_held"].as_u64())
            .ok_or_else(|| anyhow!("{}: no first_binds_held in status.json", sidecar.spec.name))?;
        first_binds_max = first_binds_max.max(held);
    }
    let audit = mesh.audit_check()?;
    let failures = tally.failures.lock().map(|f| f.clone()).unwrap_or_default();
    Ok(SoakReport {
        duration,
        registrations,
        releases,
        rotations,
        answered_new: tally.answered_new.load(Ordering::SeqCst),
        answered_pooled: tally.answered_pooled.load(Ordering::SeqCst),
        pooled_connections: tally.pooled_connections.load(Ordering::SeqCst),
        failed: tally.failed.load(Ordering::SeqCst),
        failures,
        registry_full,
        refusals,
        denied,
        samples,
        opening_resets,
        first_binds_max,
        audit_ok: audit.status.success(),
        audit_output: format!(
            "{}{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        ),
        dir: mesh.dir().to_owned(),
    })
}

/// The harness's kubelet: replaces each service's token every period (the
/// services staggered across it), and samples the series meanwhile.
struct Kubelet {
    rotations: u64,
    samples: Vec<Sample>,
}

impl Kubelet {
    fn drive(
        &mut self,
        mesh: &LocalMesh,
        options: &SoakOptions,
        started: Instant,
        tally: &Tally,
    ) -> Result<()> {
        let names: Vec<&str> = mesh
            .services()
            .iter()
            .map(|s| s.spec.name.as_str())
            .collect();
        let n = u32::try_from(names.len()).unwrap_or(1).max(1);
        let mut next_rotation: Vec<Instant> = (1..=n)
            .map(|i| started + options.rotate_every * i / n)
            .collect();
        let mut next_sample = started;
        while started.elapsed() < options.duration {
            let now = Instant::now();
            for (name, due) in names.iter().zip(next_rotation.iter_mut()) {
                if now >= *due {
                    mesh.rotate_token(name)?;
                    self.rotations += 1;
                    *due += options.rotate_every;
                }
            }
            if now >= next_sample {
                let sample = sample(mesh, started, tally)?;
                eprintln!(
                    "soak t={}s log={} held={} filter={} curator_rss={}KiB answered={} failed={}",
                    sample.at_secs,
                    sample.log_entries,
                    sample.slots_held,
                    sample.filter_entries,
                    sample.curator_rss_kib,
                    sample.answered,
                    sample.failed
                );
                self.samples.push(sample);
                next_sample += options.sample_every;
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// One point of the series, now.
fn sample(mesh: &LocalMesh, started: Instant, tally: &Tally) -> Result<Sample> {
    let metrics = mesh.curator_metrics()?;
    let gauge = |name: &str| metric(&metrics, name).unwrap_or(-1);
    let mut filter_entries = 0;
    let mut envoy_heap = 0;
    for sidecar in mesh.services() {
        let stats = sidecar.filter_stats()?;
        for dir in ["inbound", "outbound"] {
            if let Some(n) = stats.get(&format!("mazu.{dir}.registry_entries")) {
                filter_entries = filter_entries.max(*n);
            }
        }
        envoy_heap = envoy_heap.max(sidecar.envoy_counter("server.memory_allocated")?);
    }
    Ok(Sample {
        at_secs: started.elapsed().as_secs(),
        log_entries: gauge("mazu_curator_log_entries"),
        slots_held: gauge("mazu_curator_slots_held"),
        ended: labelled_counts(&metrics, "mazu_curator_bindings_ended_total")
            .iter()
            .map(|(_, n)| *n as i64)
            .sum(),
        filter_entries,
        curator_rss_kib: mesh.curator_pid().map_or(Ok(0), rss_kib)?,
        envoy_heap_kib: envoy_heap / 1024,
        answered: tally.answered(),
        failed: tally.failed.load(Ordering::SeqCst),
    })
}

/// The value of the unlabelled metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let (found, value) = line.split_once(' ')?;
        (found == name).then(|| value.trim().parse::<f64>().ok().map(|v| v as i64))?
    })
}

/// `(label value, count)` of every series of the one-label metric `name`.
fn labelled_counts(text: &str, name: &str) -> Vec<(String, u64)> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            let label = labels.split_once('=')?.1.trim_matches('"').to_owned();
            Some((label, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The resident set of process `pid`, KiB (`VmRSS` in /proc).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmRSS:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}
