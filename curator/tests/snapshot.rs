//! The state snapshot shortens start-up but never changes the state: a valid
//! one replaces the replay of the prefix it covers; a corrupted, truncated,
//! stale, foreign or tampered one is refused (with the reason reported) and
//! the whole log is replayed, giving byte-identical public parameters; a
//! snapshot of the old format (log format 1) is refused by name. Each
//! registration here is two log entries (bind, reveal).
//! In-process with the file store (fast); the process-level restart with a
//! snapshot is in `durability.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mazu_curator::metrics::Metrics;
use mazu_curator::service::{ReplayReport, SnapshotOptions};
use mazu_curator::snapshot::SNAPSHOT_FILE;
use mazu_curator::store::{FileLogStore, LogStore};
use mazu_curator::{Curator, CuratorOptions};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::Crs;
use sha2::{Digest, Sha256};

struct World {
    crs: Crs,
    issuer: DevIssuer,
    dir: tempfile::TempDir,
}

impl World {
    fn new(crs: Crs) -> Self {
        let issuer =
            DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rand::rngs::OsRng)
                .unwrap();
        Self {
            crs,
            issuer,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registrations.log")
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.path().join(SNAPSHOT_FILE)
    }

    fn trust(&self) -> TrustConfig {
        TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(
                DEFAULT_ISSUER_URL,
                self.issuer.jwks_json().as_bytes(),
                mazu_identity::trust::NamespaceScope::any(),
            )
            .build()
            .unwrap()
    }

    /// Opens the curator on this directory's log; `snapshots`: use and write
    /// the snapshot file (periodic writes off: the tests write on demand).
    fn open(&self, snapshots: bool) -> (Curator, ReplayReport) {
        let (store, _) = FileLogStore::open(&self.log_path(), self.crs.digest()).unwrap();
        let options = CuratorOptions {
            snapshot: snapshots.then(|| SnapshotOptions {
                path: self.snapshot_path(),
                every: 0,
            }),
            ..CuratorOptions::default()
        };
        Curator::open(
            self.crs.clone(),
            self.trust(),
            Arc::new(store) as Arc<dyn LogStore>,
            Arc::new(Metrics::new()),
            &options,
        )
        .unwrap()
    }

    async fn register(&self, curator: &Curator, sa: &str) {
        let token = self.issuer.mint(&TokenRequest::new("shop", sa)).unwrap();
        let id = mazu_curator::client::id_of_token(&token);
        let slot = curator.reserve_slot(&hex::encode(id)).unwrap().slot;
        let crs = self.crs.clone();
        let minted = token.clone();
        let agent = tokio::task::spawn_blocking(move || {
            mazu_curator::client::build_registration(&crs, &minted, slot, &mut rand::rngs::OsRng)
                .unwrap()
        })
        .await
        .unwrap();
        curator.bind(agent.request.clone()).await.unwrap();
        curator
            .reveal(
                &agent.request.id,
                mazu_curator::api::views::RevealRequest { token },
            )
            .await
            .unwrap();
    }
}

/// What a reader sees: binary params, the binary registry snapshot, and the
/// Merkle root of the log's records.
async fn served(c: &Curator) -> (Vec<u8>, Vec<u8>) {
    let size = c.transparency().size();
    let (_, root, _) = c.transparency().consistency(size, size).unwrap();
    let mut registry = c.snapshot().await.unwrap().bytes.to_vec();
    registry.extend_from_slice(&root);
    (c.params(false).await.unwrap().1.to_vec(), registry)
}

/// A curator over `w` with `registered` entries, a snapshot covering the
/// first `snapshot_at` of them. Returns the served state after all of them.
async fn build(w: &World, snapshot_at: usize, registered: usize) -> (Vec<u8>, Vec<u8>) {
    let (c, _) = w.open(true);
    for i in 0..registered {
        if i == snapshot_at {
            assert!(c.snapshot_now().unwrap() > 0);
        }
        w.register(&c, &format!("sa-{i}")).await;
    }
    if snapshot_at == registered {
        assert!(c.snapshot_now().unwrap() > 0);
    }
    let state = served(&c).await;
    c.shutdown();
    state
}

/// Rewrites the snapshot's trailing SHA-256 after a deliberate edit, so the
/// edit reaches the checks behind the checksum.
fn reseal(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(bytes.len() - 32);
    edit(&mut bytes);
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    std::fs::write(path, bytes).unwrap();
}

/// Opens with snapshots on; asserts the snapshot was refused (reason
/// containing `why`), everything was replayed, and the served state equals
/// both `expected` and a replay without snapshots.
async fn assert_falls_back(w: &World, why: &str, expected: &(Vec<u8>, Vec<u8>)) {
    let (c, report) = w.open(true);
    let refused = report.snapshot_refused.clone().unwrap_or_default();
    assert!(refused.contains(why), "expected {why:?}, got {report:?}");
    assert_eq!(report.snapshot_entries, 0);
    assert_eq!(report.replayed_entries, report.entries);
    assert_eq!(&served(&c).await, expected, "{why}");
    c.shutdown();
    let (c, report) = w.open(false);
    assert_eq!(report.snapshot_entries, 0);
    assert_eq!(&served(&c).await, expected, "{why}: plain replay");
    c.shutdown();
}

fn dev_crs() -> Crs {
    Crs::generate_insecure_dev(16, &mut rand::rngs::OsRng).unwrap()
}

#[tokio::test]
async fn a_valid_snapshot_replaces_the_prefix_replay() {
    let w = World::new(dev_crs());
    let expected = build(&w, 3, 5).await;
    let (c, report) = w.open(true);
    assert_eq!(report.snapshot_refused, None);
    assert_eq!(report.entries, 10);
    assert_eq!(report.snapshot_entries, 6);
    assert_eq!(report.replayed_entries, 4);
    assert_eq!(served(&c).await, expected);
    // Openings and proofs come from the snapshot too: same as a full replay.
    let (plain, _) = w.open(false);
    for slot in 0..16 {
        assert_eq!(c.opening(slot).unwrap(), plain.opening(slot).unwrap());
    }
    plain.shutdown();
    // It keeps accepting, and the shutdown snapshot covers everything.
    w.register(&c, "after").await;
    let expected = served(&c).await;
    assert!(c.snapshot_now().unwrap() > 0);
    c.shutdown();
    let (c, report) = w.open(true);
    assert_eq!((report.snapshot_entries, report.replayed_entries), (12, 0));
    assert_eq!(served(&c).await, expected);
    c.shutdown();
}

#[tokio::test]
async fn corrupted_or_truncated_snapshots_fall_back_to_the_full_replay() {
    let w = World::new(dev_crs());
    let expected = build(&w, 4, 4).await;
    let path = w.snapshot_path();
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    std::fs::write(&path, &flipped).unwrap();
    assert_falls_back(&w, "checksum", &expected).await;

    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    assert_falls_back(&w, "checksum", &expected).await;
    std::fs::write(&path, &good[..20]).unwrap();
    assert_falls_back(&w, "truncated", &expected).await;
    std::fs::write(&path, b"").unwrap();
    assert_falls_back(&w, "truncated", &expected).await;

    // Damage behind a recomputed checksum: what a buggy or malicious writer
    // could produce. The checks against the log still refuse it.
    std::fs::write(&path, &good).unwrap();
    reseal(&path, |b| b[0] = b'X');
    assert_falls_back(&w, "bad magic", &expected).await;
    std::fs::write(&path, &good).unwrap();
    reseal(&path, |b| b[8] ^= 1);
    assert_falls_back(&w, "another CRS", &expected).await;
    std::fs::write(&path, &good).unwrap();
    // The first commitment of the image (after the 56-byte file header, the
    // image's 81-byte header and its commitment count) replaced by another
    // valid point.
    let at = 56 + 5 + 32 + 8 + 32 + 4;
    reseal(&path, |b| {
        b[at..at + 96].copy_from_slice(&mazu_rbe::G1Affine::generator().to_uncompressed());
    });
    assert_falls_back(&w, "not the sum of its keys", &expected).await;
    std::fs::write(&path, &good).unwrap();
    // A header claiming fewer entries than the other sections.
    reseal(&path, |b| b[40..48].copy_from_slice(&3u64.to_be_bytes()));
    assert_falls_back(&w, "the header covers 3 entries", &expected).await;

    // The good one is used again.
    std::fs::write(&path, &good).unwrap();
    let (c, report) = w.open(true);
    assert_eq!(report.snapshot_entries, 8);
    assert_eq!(served(&c).await, expected);
    c.shutdown();
}

#[tokio::test]
async fn stale_or_foreign_snapshots_fall_back_to_the_full_replay() {
    let crs = dev_crs();
    let w = World::new(crs.clone());
    build(&w, 4, 4).await;
    let from_longer_log = std::fs::read(w.snapshot_path()).unwrap();

    // A snapshot ahead of the log: the log was replaced by a shorter one
    // (here: a log of 2 other entries under the same CRS).
    let short = World::new(crs.clone());
    let expected_short = build(&short, 2, 2).await;
    let from_short_log = std::fs::read(short.snapshot_path()).unwrap();
    std::fs::write(short.snapshot_path(), &from_longer_log).unwrap();
    assert_falls_back(
        &short,
        "covers 8 entries but the log holds only 4",
        &expected_short,
    )
    .await;

    // A snapshot of another log of the same CRS that covers fewer entries
    // than this log: the prefix does not match.
    let expected_w = {
        let (c, _) = w.open(false);
        let s = served(&c).await;
        c.shutdown();
        s
    };
    std::fs::write(w.snapshot_path(), &from_short_log).unwrap();
    assert_falls_back(&w, "does not match the log", &expected_w).await;

    // A snapshot made under another CRS.
    let other = World::new(dev_crs());
    build(&other, 1, 1).await;
    std::fs::copy(other.snapshot_path(), w.snapshot_path()).unwrap();
    assert_falls_back(&w, "another CRS", &expected_w).await;
}

#[tokio::test]
async fn snapshots_off_ignores_the_file_and_writes_none() {
    let w = World::new(dev_crs());
    let expected = build(&w, 2, 3).await;
    let (c, report) = w.open(false);
    assert_eq!(report.snapshot_entries, 0);
    assert_eq!(report.replayed_entries, 6);
    assert_eq!(c.snapshot_now().unwrap(), 0);
    assert_eq!(served(&c).await, expected);
    c.shutdown();
}

#[tokio::test]
async fn periodic_snapshots_are_written_in_the_background() {
    let w = World::new(dev_crs());
    let (store, _) = FileLogStore::open(&w.log_path(), w.crs.digest()).unwrap();
    let options = CuratorOptions {
        snapshot: Some(SnapshotOptions {
            path: w.snapshot_path(),
            every: 4,
        }),
        ..CuratorOptions::default()
    };
    let (c, _) = Curator::open(
        w.crs.clone(),
        w.trust(),
        Arc::new(store) as Arc<dyn LogStore>,
        Arc::new(Metrics::new()),
        &options,
    )
    .unwrap();
    w.register(&c, "a").await;
    assert!(!w.snapshot_path().exists());
    w.register(&c, "b").await;
    while c.snapshot_in_progress() {
        tokio::time::sleep(core::time::Duration::from_millis(10)).await;
    }
    assert!(w.snapshot_path().exists());
    w.register(&c, "c").await;
    let expected = served(&c).await;
    c.shutdown();
    let (c, report) = w.open(true);
    assert_eq!((report.snapshot_entries, report.replayed_entries), (4, 2));
    assert_eq!(served(&c).await, expected);
    c.shutdown();
}

#[tokio::test]
async fn an_old_format_snapshot_is_refused_by_name() {
    let w = World::new(dev_crs());
    let expected = build(&w, 2, 2).await;
    // A format 1 file (log format 1): same framing, magic "MZSNAP01", even
    // with a valid checksum.
    reseal(&w.snapshot_path(), |b| b[7] = b'1');
    assert_falls_back(&w, "snapshot format 1 is not readable", &expected).await;
    let (c, report) = w.open(true);
    assert!(
        report
            .snapshot_refused
            .as_deref()
            .is_some_and(|r| r.contains("log format 2")),
        "{report:?}"
    );
    // The next snapshot replaces it and is used.
    assert!(c.snapshot_now().unwrap() > 0);
    c.shutdown();
    let (c, report) = w.open(true);
    assert_eq!((report.snapshot_entries, report.replayed_entries), (4, 0));
    assert_eq!(served(&c).await, expected);
    c.shutdown();
}
