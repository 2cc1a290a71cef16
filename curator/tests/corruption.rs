//! Damage on disk never loses an acknowledged entry without saying so
//! (issue 18, storage part), against the real `mazu-curator` binary: bit
//! flips in every field of every frame, cuts at every frame boundary and
//! inside every frame, before and after the acknowledged position, a
//! deleted log, a deleted acknowledged checkpoint, a stale temporary file,
//! and the repair subcommand. Each case either recovers with every
//! acknowledged entry (same parameters) or refuses to start with a message
//! naming the file, the offset, the entry index and the loss, and leaves
//! every file of the data directory byte-identical.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::{BIN, Curator, Fixture};

const LOG: &str = "registrations.log";
const ACK: &str = "acknowledged.checkpoint";
const SNAPSHOT: &str = "state.snapshot";
const HEADER_LEN: usize = 40;

/// A data directory with 3 registrations (6 entries), all acknowledged,
/// cleanly shut down (so the snapshot covers 6 too), kept pristine; and the
/// acknowledged checkpoint as it was after 2 registrations (4 entries).
struct Setup {
    fx: Fixture,
    pristine: BTreeMap<String, Vec<u8>>,
    ack_at_4: Vec<u8>,
    params: Vec<u8>,
    params_at_4: Vec<u8>,
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

fn restore(dir: &Path, state: &BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, bytes) in state {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

async fn setup() -> Setup {
    let fx = Fixture::new();
    let args = args(&fx);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    c.register(&crs, &fx.token("a")).await;
    c.register(&crs, &fx.token("b")).await;
    let ack_at_4 = std::fs::read(fx.data_dir().join(ACK)).unwrap();
    let params_at_4 = c.get_bytes("/v1/params?format=binary").await;
    c.register(&crs, &fx.token("c")).await;
    let params = c.get_bytes("/v1/params?format=binary").await;
    assert!(c.terminate().success());
    let pristine = files(&fx.data_dir());
    for f in [LOG, ACK, SNAPSHOT] {
        assert!(pristine.contains_key(f), "no {f}: {:?}", pristine.keys());
    }
    Setup {
        fx,
        pristine,
        ack_at_4,
        params,
        params_at_4,
    }
}

/// The fixture's arguments.
fn args(fx: &Fixture) -> Vec<String> {
    fx.args(16)
}

/// (offset, payload length) of every frame of a log.
fn frames(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < log.len() {
        let len = u32::from_be_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, len));
        pos += 8 + len;
    }
    assert_eq!(pos, log.len());
    out
}

/// Runs the binary on the fixture and expects it to refuse to start:
/// returns its stderr.
fn expect_refusal(s: &Setup, what: &str) -> String {
    let err_path = s.fx.dir.path().join("refusal.err");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = Command::new(BIN)
        .args(args(&s.fx))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after 60 s:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{what}: started:\n{stderr}");
    stderr
}

/// The refusal names the log, the offset, the entry index and the loss, and
/// every file is unchanged.
fn assert_refused_unchanged(
    s: &Setup,
    before: &BTreeMap<String, Vec<u8>>,
    what: &str,
    offset: usize,
    index: usize,
    lost: usize,
) {
    let stderr = expect_refusal(s, what);
    let log_path = s.fx.data_dir().join(LOG).display().to_string();
    for needle in [
        log_path,
        format!("byte offset {offset}"),
        format!("entry #{index}"),
        format!("{lost} acknowledged entries would be lost"),
        "nothing was changed".to_string(),
    ] {
        assert!(
            stderr.contains(&needle),
            "{what}: no {needle:?} in:\n{stderr}"
        );
    }
    assert!(
        files(&s.fx.data_dir()) == *before,
        "{what}: files changed by a refused start"
    );
}

/// Starts the binary, expects it ready with `entries` entries and `params`.
async fn expect_recovery(s: &Setup, what: &str, entries: u64, params: &[u8]) -> Curator {
    let mut c = Curator::spawn(s.fx.dir.path(), &args(&s.fx));
    c.ready().await;
    assert_eq!(c.version().await, entries, "{what}:\n{}", c.log());
    assert_eq!(
        c.get_bytes("/v1/params?format=binary").await,
        params,
        "{what}"
    );
    c
}

#[tokio::test]
async fn bit_flips_in_every_field_of_every_acknowledged_frame_are_refused() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let log = &s.pristine[LOG];
    let frames = frames(log);
    assert_eq!(frames.len(), 6);
    for (i, &(at, len)) in frames.iter().enumerate() {
        let fields = [
            ("length, high bit (out of range)", at, 0x80u8),
            ("length, low bit", at + 3, 0x01),
            ("checksum", at + 5, 0x10),
            ("payload, first byte", at + 8, 0x01),
            ("payload, middle", at + 8 + len / 2, 0x40),
            ("payload, last byte", at + 8 + len - 1, 0x02),
        ];
        for (field, byte, mask) in fields {
            let what = format!("frame {i}: {field}");
            let mut state = s.pristine.clone();
            state.get_mut(LOG).unwrap()[byte] ^= mask;
            restore(&dir, &state);
            // A flip anywhere in frame i loses it and everything after.
            assert_refused_unchanged(&s, &state, &what, at, i, 6 - i);
        }
    }
}

#[tokio::test]
async fn cuts_inside_the_acknowledged_log_are_refused() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let log = &s.pristine[LOG];
    let frames = frames(log);
    for (i, &(at, len)) in frames.iter().enumerate() {
        for (kind, cut) in [
            ("at the frame boundary", at),
            ("inside the frame header", at + 5),
            ("inside the payload", at + 8 + len / 2),
            ("one byte short", at + 8 + len - 1),
        ] {
            let what = format!("cut {kind} of frame {i}");
            let mut state = s.pristine.clone();
            state.get_mut(LOG).unwrap().truncate(cut);
            restore(&dir, &state);
            assert_refused_unchanged(&s, &state, &what, at, i, 6 - i);
        }
    }
    // Cut inside the file header: every entry lost.
    let mut state = s.pristine.clone();
    state.get_mut(LOG).unwrap().truncate(20);
    restore(&dir, &state);
    assert_refused_unchanged(&s, &state, "cut inside the file header", 0, 0, 6);
}

#[tokio::test]
async fn torn_tails_past_the_acknowledged_position_are_discarded() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let log = &s.pristine[LOG];
    let (at, len) = frames(log)[5];
    let last_frame = log[at..at + 8 + len].to_vec();
    let mut bad_crc = last_frame.clone();
    bad_crc[10] ^= 0x01;
    for (what, tail) in [
        ("half a frame header", last_frame[..5].to_vec()),
        (
            "a frame cut in its payload",
            last_frame[..8 + len / 2].to_vec(),
        ),
        ("a complete frame with a bad checksum", bad_crc),
        ("zeros", vec![0u8; 4096]),
    ] {
        let mut state = s.pristine.clone();
        state.get_mut(LOG).unwrap().extend_from_slice(&tail);
        restore(&dir, &state);
        let mut c = expect_recovery(&s, what, 6, &s.params).await;
        assert!(
            c.log().contains("discarded an incomplete last frame"),
            "{what}"
        );
        assert!(c.terminate().success());
        assert_eq!(std::fs::read(dir.join(LOG)).unwrap(), *log, "{what}");
    }
    // A non-zero length out of range past the acknowledged entries is not a
    // crash's doing: refused, nothing changed.
    let mut state = s.pristine.clone();
    state
        .get_mut(LOG)
        .unwrap()
        .extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6]);
    restore(&dir, &state);
    let stderr = expect_refusal(&s, "garbage length past the end");
    assert!(
        stderr.contains(&format!("byte offset {}", log.len())),
        "{stderr}"
    );
    assert!(stderr.contains("entry #6"), "{stderr}");
    assert!(stderr.contains("not a torn tail"), "{stderr}");
    assert!(files(&dir) == state);
}

#[tokio::test]
async fn cuts_past_the_acknowledged_position_recover_and_before_it_refuse() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let log = &s.pristine[LOG];
    let frames = frames(log);
    // Only 4 entries acknowledged (the checkpoint as it was then), no
    // snapshot: entries 4 and 5 were durable but never acknowledged.
    let mut base = s.pristine.clone();
    base.insert(ACK.into(), s.ack_at_4.clone());
    base.remove(SNAPSHOT);
    // Inside the last frame: a torn tail, 5 entries kept.
    let (at5, len5) = frames[5];
    let mut state = base.clone();
    state.get_mut(LOG).unwrap().truncate(at5 + 8 + len5 / 2);
    restore(&dir, &state);
    let mut c = Curator::spawn(s.fx.dir.path(), &args(&s.fx));
    c.ready().await;
    assert_eq!(c.version().await, 5, "{}", c.log());
    c.kill9();
    // At the boundary after the acknowledged entries, and inside the first
    // unacknowledged frame: 4 entries, the acknowledged state.
    let (at4, len4) = frames[4];
    for (what, cut) in [("boundary 4", at4), ("inside frame 4", at4 + 8 + len4 / 3)] {
        let mut state = base.clone();
        state.get_mut(LOG).unwrap().truncate(cut);
        restore(&dir, &state);
        let mut c = expect_recovery(&s, what, 4, &s.params_at_4).await;
        c.kill9();
    }
    // One frame further back is acknowledged: refused.
    let (at3, _) = frames[3];
    let mut state = base.clone();
    state.get_mut(LOG).unwrap().truncate(at3);
    restore(&dir, &state);
    assert_refused_unchanged(&s, &state, "boundary 3", at3, 3, 1);
}

#[tokio::test]
async fn a_deleted_log_is_refused_while_evidence_remains() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    for (what, keep_ack, keep_snapshot) in [
        ("log deleted", true, true),
        ("log and snapshot deleted", true, false),
        ("log and acknowledged checkpoint deleted", false, true),
    ] {
        let mut state = s.pristine.clone();
        state.remove(LOG);
        if !keep_ack {
            state.remove(ACK);
        }
        if !keep_snapshot {
            state.remove(SNAPSHOT);
        }
        restore(&dir, &state);
        let stderr = expect_refusal(&s, what);
        assert!(
            stderr.contains("is missing, but 6 entries were acknowledged"),
            "{what}: {stderr}"
        );
        assert!(
            stderr.contains(&dir.join(LOG).display().to_string()),
            "{stderr}"
        );
        assert!(
            files(&dir) == state,
            "{what}: files changed (a new log created?)"
        );
    }
}

#[tokio::test]
async fn a_deleted_acknowledged_checkpoint_falls_back_to_the_snapshot() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    // Log intact: starts, says it cannot check, keeps everything, and
    // records the checkpoint again.
    let mut state = s.pristine.clone();
    state.remove(ACK);
    restore(&dir, &state);
    let mut c = expect_recovery(&s, "acknowledged checkpoint deleted", 6, &s.params).await;
    assert!(
        c.log().contains("no acknowledged checkpoint"),
        "{}",
        c.log()
    );
    assert!(c.terminate().success());
    assert_eq!(std::fs::read(dir.join(ACK)).unwrap(), s.pristine[ACK]);
    // Log cut as well: the snapshot still proves 6 entries.
    let (at4, _) = frames(&s.pristine[LOG])[4];
    let mut state = s.pristine.clone();
    state.remove(ACK);
    state.get_mut(LOG).unwrap().truncate(at4);
    restore(&dir, &state);
    assert_refused_unchanged(&s, &state, "ack deleted, log cut", at4, 4, 2);
    // An acknowledged checkpoint signed with another key (a replaced
    // checkpoint key) is refused, not trusted or ignored.
    let mut state = s.pristine.clone();
    let text = String::from_utf8(state[ACK].clone()).unwrap();
    let forged =
        mazu_log::checkpoint::CheckpointSigner::new(text.lines().next().unwrap(), &[9u8; 32])
            .unwrap()
            .sign(1, &[0u8; 32]);
    state.insert(ACK.into(), forged.into_bytes());
    restore(&dir, &state);
    let stderr = expect_refusal(&s, "forged acknowledged checkpoint");
    assert!(stderr.contains("acknowledged checkpoint"), "{stderr}");
    assert!(files(&dir) == state);
}

#[tokio::test]
async fn stale_temporary_files_are_removed_at_start() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let mut state = s.pristine.clone();
    state.insert(".state.snapshot.tmp424242".into(), vec![1, 2, 3]);
    state.insert(".acknowledged.checkpoint.tmp7".into(), vec![4]);
    state.insert(".state.snapshot.tmpXYZ".into(), vec![5]); // not ours
    restore(&dir, &state);
    let mut c = expect_recovery(&s, "stale tmp", 6, &s.params).await;
    let log = c.log();
    assert!(log.contains("removed a temporary file"), "{log}");
    assert!(log.contains(".state.snapshot.tmp424242"), "{log}");
    assert!(!dir.join(".state.snapshot.tmp424242").exists());
    assert!(!dir.join(".acknowledged.checkpoint.tmp7").exists());
    assert!(dir.join(".state.snapshot.tmpXYZ").exists());
    c.kill9();
}

#[tokio::test]
async fn the_shutdown_snapshot_never_replaces_one_covering_more() {
    use mazu_curator::service::SnapshotOptions;
    use mazu_curator::store::{FileLogStore, LogStore};
    let s = setup().await;
    let dir = s.fx.data_dir();
    // The library path (no acknowledged-checkpoint check): a log cut to 4
    // entries under a snapshot of 6.
    let (at4, _) = frames(&s.pristine[LOG])[4];
    let mut state = s.pristine.clone();
    state.get_mut(LOG).unwrap().truncate(at4);
    restore(&dir, &state);
    let crs = mazu_rbe::Crs::from_bytes(&std::fs::read(dir.join("dev-crs.bin")).unwrap()).unwrap();
    let (store, _) = FileLogStore::open(&dir.join(LOG), crs.digest()).unwrap();
    let trust = mazu_identity::TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(
            mazu_dev_issuer::DEFAULT_ISSUER_URL,
            s.fx.issuer.jwks_json().as_bytes(),
            mazu_identity::trust::NamespaceScope::any(),
        )
        .build()
        .unwrap();
    let options = mazu_curator::CuratorOptions {
        snapshot: Some(SnapshotOptions {
            path: dir.join(SNAPSHOT),
            every: 0,
        }),
        ..mazu_curator::CuratorOptions::default()
    };
    let (curator, report) = mazu_curator::Curator::open(
        crs,
        trust,
        Arc::new(store) as Arc<dyn LogStore>,
        Arc::new(mazu_curator::metrics::Metrics::new()),
        &options,
    )
    .unwrap();
    assert_eq!(report.entries, 4);
    assert!(report.snapshot_refused.is_some());
    assert_eq!(curator.snapshot_now().unwrap(), 0, "snapshot overwritten");
    assert_eq!(
        std::fs::read(dir.join(SNAPSHOT)).unwrap(),
        s.pristine[SNAPSHOT]
    );
    curator.shutdown();
}

fn repair(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .arg("repair")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn repair_reports_and_truncates_only_when_told() {
    let s = setup().await;
    let dir = s.fx.data_dir();
    let log = &s.pristine[LOG];
    let (at4, _) = frames(log)[4];
    let mut state = s.pristine.clone();
    state.get_mut(LOG).unwrap()[at4 + 9] ^= 0x01;
    restore(&dir, &state);

    // Report only: names the damage and the loss, changes nothing.
    let (code, out, err) = repair(&dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("entry #4 at byte offset {at4}")),
        "{out}"
    );
    assert!(out.contains("2 acknowledged entries"), "{out}");
    assert!(
        out.contains(&format!("--truncate-at-offset {at4} --yes")),
        "{out}"
    );
    assert!(files(&dir) == state);
    // Without --yes, or at another offset: refused, nothing changed.
    let offset = at4.to_string();
    let (code, _, err) = repair(&dir, &["--truncate-at-offset", &offset]);
    assert_eq!(code, 2, "{err}");
    let wrong = (at4 + 1).to_string();
    let (code, _, err) = repair(&dir, &["--truncate-at-offset", &wrong, "--yes"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not the end of the last intact frame"),
        "{err}"
    );
    assert!(files(&dir) == state);
    // Confirmed: truncated, the evidence of more moved aside (kept).
    let (code, out, err) = repair(&dir, &["--truncate-at-offset", &offset, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 entries kept"), "{out}");
    assert_eq!(std::fs::read(dir.join(LOG)).unwrap(), log[..at4]);
    let names: Vec<String> = files(&dir).into_keys().collect();
    assert!(!names.contains(&ACK.to_string()) && !names.contains(&SNAPSHOT.to_string()));
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("acknowledged.checkpoint.lost-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("state.snapshot.lost-")),
        "{names:?}"
    );
    // And the curator starts with the 4 kept entries.
    let mut c = expect_recovery(&s, "after repair", 4, &s.params_at_4).await;
    c.kill9();
}
