//! The curator's memory and start-up against the length of its history
//! (issue 17: "proportional to live registrations, not to history").
//!
//! ```sh
//! cargo bench -p mazu-curator --bench history            # full run
//! cargo test  -p mazu-curator --bench history            # quick run (CI)
//! MAZU_BENCH_BASELINE=/path/to/older/mazu-curator cargo bench -p mazu-curator --bench history
//! ```
//!
//! For each history length H the bench writes a real log (the documented
//! frame format) of H registrations that came and went (bind, reveal of a
//! real token, holder release signed by the bound TLS key, one per second,
//! 10-minute tokens, slots reused) followed by L live ones (24-hour tokens),
//! and runs the real `mazu-curator` binary on it twice: first with no
//! snapshot (the whole log replayed with every check, pairing included; it
//! writes a snapshot at its clean shutdown), then from that snapshot. It
//! reports the start-up times the curator logs (`total_ms`), its resident
//! set once ready (`VmRSS`) and its peak (`VmHWM`), how long the background
//! check of the snapshot's prefix took after that (`check_ms`, snapshot
//! format 3: the start-up no longer reads the prefix), and, between the
//! shortest and the longest history (same L, same capacity, same run), the
//! growth per historical registration: the baseline is the shortest run.
//! `MAZU_BENCH_BASELINE` names another build of the binary (e.g. an older
//! commit's) that is run on copies of the same logs in the same run, each
//! history length in turn, for a before/after comparison.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use core::time::Duration;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_curator::holder::{HolderAction, holder_message};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_log::ReleaseReason;
use mazu_rbe::Crs;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Signer;

/// The run's shape.
struct Shape {
    capacity: u32,
    live: u32,
    histories: Vec<u64>,
}

/// What one binary measured at one history length.
struct Point {
    binary: &'static str,
    history: u64,
    entries: u64,
    log_bytes: u64,
    full_ms: u64,
    snapshot_ms: u64,
    /// The background check of the snapshot's prefix, once serving (`None`:
    /// a binary that checks the prefix before serving).
    check_ms: Option<u64>,
    full_rss_kib: u64,
    rss_kib: u64,
    peak_kib: u64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let shape = if full {
        Shape {
            capacity: 256,
            live: 200,
            histories: vec![2_000, 20_000],
        }
    } else {
        Shape {
            capacity: 16,
            live: 8,
            histories: vec![50, 200],
        }
    };
    let mut binaries = vec![("this", PathBuf::from(env!("CARGO_BIN_EXE_mazu-curator")))];
    if let Some(baseline) = std::env::var_os("MAZU_BENCH_BASELINE") {
        binaries.push(("baseline", PathBuf::from(baseline)));
    }
    eprintln!(
        "curator history bench ({}): capacity {}, {} live, binaries {:?}",
        if full { "full" } else { "quick" },
        shape.capacity,
        shape.live,
        binaries
    );
    let mut points = Vec::new();
    for history in &shape.histories {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template");
        let entries = prepare(&template, &shape, *history);
        for (name, bin) in &binaries {
            let run_dir = dir.path().join(name);
            copy_dir(&template, &run_dir);
            points.push(measure(name, bin, &run_dir, &shape, *history, entries));
        }
    }
    for (name, _) in &binaries {
        let mine: Vec<&Point> = points.iter().filter(|p| p.binary == *name).collect();
        report(name, &shape, &mine);
    }
    if binaries.len() > 1 {
        compare(&points);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes the CRS, issuer, checkpoint key and log of one history length
/// into `dir`; returns the number of log entries.
fn prepare(dir: &Path, shape: &Shape, history: u64) -> u64 {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = rand::rngs::OsRng;
    let crs = Crs::generate_insecure_dev(shape.capacity, &mut rng).unwrap();
    std::fs::write(data.join("dev-crs.bin"), crs.to_bytes()).unwrap();
    let issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks_json()).unwrap();
    std::fs::write(dir.join("checkpoint.key"), hex::encode([7u8; 32])).unwrap();
    let started = Instant::now();
    let entries = write_log(&data, &crs, &issuer, shape, history);
    let log_bytes = std::fs::metadata(data.join("registrations.log"))
        .unwrap()
        .len();
    eprintln!(
        "  H={history}: wrote {entries} entries ({:.1} MB) in {:.1} s",
        log_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    entries
}

fn measure(
    binary: &'static str,
    bin: &Path,
    dir: &Path,
    shape: &Shape,
    history: u64,
    entries: u64,
) -> Point {
    let data = dir.join("data");
    let log_bytes = std::fs::metadata(data.join("registrations.log"))
        .unwrap()
        .len();
    let jwks = dir.join("jwks.json");
    let key = dir.join("checkpoint.key");
    let args = vec![
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--dev-crs".to_owned(),
        "--capacity".to_owned(),
        shape.capacity.to_string(),
        "--checkpoint-key".to_owned(),
        key.display().to_string(),
        "--issuer".to_owned(),
        format!("{DEFAULT_ISSUER_URL}={};namespaces=*", jwks.display()),
        "--audience".to_owned(),
        mazu_dev_issuer::DEV_AUDIENCE.to_owned(),
        "--insecure-plain-http".to_owned(),
        "--insecure-no-witness".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    // 1. No snapshot: the whole log, every check. Writes one at shutdown.
    let first = Run::start(bin, dir, &args, "full");
    let (full_entries, full_ms) = first.ready();
    assert_eq!(full_entries, entries, "the curator replayed every entry");
    let full_rss_kib = first.status("VmRSS:");
    first.stop();
    assert!(
        data.join("state.snapshot").exists(),
        "no snapshot after a clean shutdown"
    );
    // 2. From the snapshot.
    let second = Run::start(bin, dir, &args, "snapshot");
    let (snap_entries, snapshot_ms) = second.ready();
    assert_eq!(snap_entries, entries);
    let check_ms = second.prefix_check();
    std::thread::sleep(Duration::from_millis(500));
    let rss_kib = second.status("VmRSS:");
    let peak_kib = second.status("VmHWM:");
    second.stop();
    eprintln!(
        "  H={history} {binary}: full replay {full_ms} ms, from the snapshot {snapshot_ms} ms \
         (then the background check {check_ms:?} ms), RSS {rss_kib} KiB"
    );
    Point {
        binary,
        history,
        entries,
        log_bytes,
        full_ms,
        snapshot_ms,
        check_ms,
        full_rss_kib,
        rss_kib,
        peak_kib,
    }
}

/// One registration's entries, in log order.
fn registration(
    crs: &Crs,
    issuer: &DevIssuer,
    slot: u32,
    at_ms: u64,
    lifetime: u64,
    release: bool,
) -> Vec<Vec<u8>> {
    let token = issuer
        .mint(
            &TokenRequest::new("bench", format!("sa-{slot}"))
                .audiences([mazu_dev_issuer::DEV_AUDIENCE])
                .issued_at(at_ms / 1000 - 1)
                .lifetime(lifetime),
        )
        .unwrap();
    let agent = mazu_curator::client::build_registration(crs, &token, slot, &mut rand::rngs::OsRng)
        .unwrap();
    let d = mazu_curator::register::decode(agent.request).unwrap();
    let id = agent.id;
    let mut out = vec![
        LogEntry {
            at_ms,
            id,
            body: EntryBody::Bind {
                slot,
                token_expiry: d.token_expiry,
                tls_spki: d.spki.clone(),
                tls_signature: d.signature,
                registration: d.registration.to_bytes(),
            },
        },
        LogEntry {
            at_ms: at_ms + 1,
            id,
            body: EntryBody::Reveal {
                token: token.into_bytes(),
            },
        },
    ];
    if release {
        let message = holder_message(HolderAction::Release, &id, slot, &d.spki);
        let signature: Signature = agent.tls_key.sign(&message);
        out.push(LogEntry {
            at_ms: at_ms + 2,
            id,
            body: EntryBody::Release {
                reason: ReleaseReason::Holder,
                signature: signature.to_der().as_bytes().to_vec(),
            },
        });
    }
    out.iter().map(LogEntry::to_bytes).collect()
}

/// Writes the log file: `history` registrations that ended, then the live
/// ones. Returns the number of entries.
fn write_log(data: &Path, crs: &Crs, issuer: &DevIssuer, shape: &Shape, history: u64) -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // One registration per second, ending a minute ago.
    let total = history + u64::from(shape.live);
    let t0 = now_ms - (total + 60) * 1000;
    let churn = shape.capacity - shape.live;
    let threads =
        std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get) as u64;
    let mut per_thread: Vec<Vec<(u64, Vec<Vec<u8>>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..total)
                        .step_by(threads as usize)
                        .map(|k| {
                            let at_ms = t0 + k * 1000;
                            let entries = if k < history {
                                let slot = shape.live + (k % u64::from(churn)) as u32;
                                registration(crs, issuer, slot, at_ms, 600, true)
                            } else {
                                let slot = (k - history) as u32;
                                registration(crs, issuer, slot, at_ms, 86_400, false)
                            };
                            (k, entries)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<(u64, Vec<Vec<u8>>)> = per_thread.drain(..).flatten().collect();
    all.sort_by_key(|(k, _)| *k);
    let file = std::fs::File::create(data.join("registrations.log")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&mazu_curator::store::FILE_MAGIC).unwrap();
    out.write_all(&crs.digest()).unwrap();
    let mut entries = 0;
    for (_, registration) in all {
        for payload in registration {
            out.write_all(&u32::try_from(payload.len()).unwrap().to_be_bytes())
                .unwrap();
            out.write_all(&crc32c::crc32c(&payload).to_be_bytes())
                .unwrap();
            out.write_all(&payload).unwrap();
            entries += 1;
        }
    }
    out.into_inner().unwrap().sync_all().unwrap();
    entries
}

/// A curator process, killed if the bench panics.
struct Run {
    child: Child,
    log: PathBuf,
}

impl Run {
    fn start(bin: &Path, dir: &Path, args: &[String], name: &str) -> Self {
        let log = dir.join(format!("curator-{name}.log"));
        let child = Command::new(bin)
            .args(args)
            .arg("--addr-file")
            .arg(dir.join(format!("addr-{name}")))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn mazu-curator");
        Self { child, log }
    }

    /// Waits for the start-up line; returns its `entries` and `total_ms`.
    fn ready(&self) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
            if let Some(line) = text.lines().find(|l| l.contains("ready entries=")) {
                return (field(line, "entries="), field(line, "total_ms="));
            }
            assert!(Instant::now() < deadline, "curator not ready:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `/proc/PID/status` figure, KiB.
    /// After a start from a snapshot whose prefix was not read (the log
    /// line says `unscanned_prefix=N`, N > 0): waits for the background
    /// check of the prefix and returns its `check_ms`. `None` for a start
    /// that read the prefix.
    fn prefix_check(&self) -> Option<u64> {
        let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let opened = text
            .lines()
            .find(|l| l.contains("registration log opened"))?;
        if !opened.contains("unscanned_prefix=") || field(opened, "unscanned_prefix=") == 0 {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let text = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("checked in the background"))
            {
                return Some(field(line, "check_ms="));
            }
            assert!(
                !text.contains("does not give what the snapshot claimed"),
                "the prefix check refuted the snapshot:\n{text}"
            );
            assert!(Instant::now() < deadline, "prefix check not done:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    /// SIGTERM, then waits for the clean shutdown (it writes the snapshot).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "curator exit {status}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> u64 {
    let at = line.find(name).unwrap() + name.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn report(binary: &str, shape: &Shape, points: &[&Point]) {
    println!(
        "\n### Curator memory and start-up against history: {binary} binary (capacity {}, {} live)\n",
        shape.capacity, shape.live
    );
    println!(
        "| historical registrations | log entries | log size | start-up, full replay | start-up from the snapshot | then, in the background: prefix check | RSS after the full replay | RSS from the snapshot | peak RSS (snapshot start) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for p in points {
        println!(
            "| {} | {} | {:.1} MB | {:.2} s | {:.3} s | {} | {} KiB | {} KiB | {} KiB |",
            p.history,
            p.entries,
            p.log_bytes as f64 / 1e6,
            p.full_ms as f64 / 1e3,
            p.snapshot_ms as f64 / 1e3,
            p.check_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{:.3} s", ms as f64 / 1e3)),
            p.full_rss_kib,
            p.rss_kib,
            p.peak_kib
        );
    }
    let (a, b) = (points[0], points[points.len() - 1]);
    let more = (b.history - a.history) as f64;
    let per = |x: u64, y: u64| (y as f64 - x as f64) * 1024.0 / more;
    println!(
        "\nFrom {} to {} historical registrations ({:.0}x): RSS from the snapshot {:.2}x \
         ({:+.1} bytes per historical registration), after the full replay {:.2}x ({:+.1} B), \
         peak {:.2}x ({:+.1} B); start-up from the snapshot {:.2}x ({} -> {} ms), full replay \
         {:.2}x, background prefix check {}.",
        a.history,
        b.history,
        b.history as f64 / a.history as f64,
        b.rss_kib as f64 / a.rss_kib as f64,
        per(a.rss_kib, b.rss_kib),
        b.full_rss_kib as f64 / a.full_rss_kib as f64,
        per(a.full_rss_kib, b.full_rss_kib),
        b.peak_kib as f64 / a.peak_kib as f64,
        per(a.peak_kib, b.peak_kib),
        b.snapshot_ms.max(1) as f64 / a.snapshot_ms.max(1) as f64,
        a.snapshot_ms,
        b.snapshot_ms,
        b.full_ms.max(1) as f64 / a.full_ms.max(1) as f64,
        match (a.check_ms, b.check_ms) {
            (Some(x), Some(y)) =>
                format!("{:.2}x ({x} -> {y} ms)", y.max(1) as f64 / x.max(1) as f64),
            _ => "not run".to_owned(),
        },
    );
}

/// This binary against the baseline, at each history length.
fn compare(points: &[Point]) {
    println!(
        "\n| historical registrations | RSS from the snapshot, this / baseline | RSS after the full replay | peak RSS | start-up from the snapshot | full replay |"
    );
    println!("|---|---|---|---|---|---|");
    let ratio = |a: u64, b: u64| a.max(1) as f64 / b.max(1) as f64;
    for this in points.iter().filter(|p| p.binary == "this") {
        let Some(base) = points
            .iter()
            .find(|p| p.binary == "baseline" && p.history == this.history)
        else {
            continue;
        };
        println!(
            "| {} | {:.2}x ({} / {} KiB) | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
            this.history,
            ratio(this.rss_kib, base.rss_kib),
            this.rss_kib,
            base.rss_kib,
            ratio(this.full_rss_kib, base.full_rss_kib),
            ratio(this.peak_kib, base.peak_kib),
            ratio(this.snapshot_ms, base.snapshot_ms),
            ratio(this.full_ms, base.full_ms),
        );
    }
}
