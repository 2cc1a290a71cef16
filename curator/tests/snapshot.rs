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
use mazu_curator::prefix_check::PrefixCheck;
use mazu_curator::service::{ReplayReport, SnapshotOptions};
use mazu_curator::snapshot::SNAPSHOT_FILE;
use mazu_curator::store::{FileLogStore, LogStore};
use mazu_curator::{Curator, CuratorOptions};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_rbe::Crs;
#[path = "support/snapshot_file.rs"]
mod snapshot_file;

use snapshot_file::reseal;

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
    // A format 1 or 2 file: magic "MZSNAP01" / "MZSNAP02", even with a
    // valid checksum.
    let good = std::fs::read(w.snapshot_path()).unwrap();
    reseal(&w.snapshot_path(), |b| b[7] = b'2');
    assert_falls_back(&w, "snapshot format 2 is not readable", &expected).await;
    std::fs::write(w.snapshot_path(), &good).unwrap();
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

// --- Format 3: start without reading the covered prefix, checked after. ---

/// The Merkle root of the records of the log's first `size` entries,
/// computed here from the log file (what an acknowledged checkpoint says).
fn log_root(w: &World, size: u64) -> mazu_log::Hash {
    let (store, _) = FileLogStore::open(&w.log_path(), w.crs.digest()).unwrap();
    let leaves = store
        .read_range(0, usize::try_from(size).unwrap())
        .unwrap()
        .iter()
        .map(|bytes| {
            let entry = mazu_curator::entry::LogEntry::from_bytes(bytes).unwrap();
            mazu_log::merkle::leaf_hash(&entry.record(bytes).unwrap().to_bytes())
        })
        .collect::<Vec<_>>();
    mazu_log::MerkleTree::from_leaves(leaves)
        .root(size)
        .unwrap()
}

/// Opens the log the way the server does from a format-3 snapshot: the
/// frames the snapshot's frame index covers are not read at open, and the
/// acknowledged checkpoint (here: the log's root at the snapshot's size,
/// `ack`) pins the snapshot's tree.
fn open_fast(w: &World, ack: Option<(u64, mazu_log::Hash)>) -> (Curator, ReplayReport, u64) {
    let (opened, unscanned) = try_open_fast(w, ack);
    let (c, report) = opened.unwrap();
    (c, report, unscanned)
}

/// [`open_fast`], the curator's open not unwrapped.
fn try_open_fast(
    w: &World,
    ack: Option<(u64, mazu_log::Hash)>,
) -> (
    Result<(Curator, ReplayReport), mazu_curator::service::OpenError>,
    u64,
) {
    let (_, layout) = mazu_curator::snapshot::covered_prefix(&w.snapshot_path(), &w.crs.digest())
        .unwrap()
        .unwrap();
    let known = mazu_curator::store::Known {
        layout: layout.as_ref(),
        ..Default::default()
    };
    let (store, report) = FileLogStore::open_with(&w.log_path(), w.crs.digest(), &known).unwrap();
    let options = CuratorOptions {
        snapshot: Some(SnapshotOptions {
            path: w.snapshot_path(),
            every: 0,
        }),
        acknowledged_root: ack,
        ..CuratorOptions::default()
    };
    let opened = Curator::open(
        w.crs.clone(),
        w.trust(),
        Arc::new(store) as Arc<dyn LogStore>,
        Arc::new(Metrics::new()),
        &options,
    );
    (opened, report.unverified_prefix)
}

/// Waits for the background check of the snapshot's prefix.
async fn prefix_checked(c: &Curator) -> PrefixCheck {
    let mut rx = c.prefix_check();
    tokio::time::timeout(
        core::time::Duration::from_secs(60),
        rx.wait_for(PrefixCheck::is_done),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
}

/// Everything the transparency side serves at `size`: inclusion proofs of
/// entries in and out of the covered prefix (below and above chunk roots),
/// consistency proofs from older sizes, every record, every log entry.
async fn transparency_served(c: &Curator, size: u64) -> Vec<u8> {
    let t = c.transparency();
    let mut out = Vec::new();
    for index in [0, 5, 40, 63, 64, 65, size - 1] {
        let (leaf, proof) = t.inclusion(index, size).unwrap();
        out.extend_from_slice(&leaf);
        out.extend(proof.concat());
    }
    for from in [1, 5, 64, 66, size - 1] {
        let (a, b, proof) = t.consistency(from, size).unwrap();
        out.extend_from_slice(&a);
        out.extend_from_slice(&b);
        out.extend(proof.concat());
    }
    out.extend(t.records(0, size).unwrap().unwrap().2);
    let (_, entries) = c.log_range(0, 1000).await.unwrap();
    assert_eq!(entries.len() as u64, size);
    for (entry, record) in entries {
        out.extend(entry);
        out.extend(record);
    }
    out
}

fn crs_64() -> Crs {
    Crs::generate_insecure_dev(64, &mut rand::rngs::OsRng).unwrap()
}

/// `registered` registrations (two entries each) with a snapshot after the
/// first `snapshot_at`, at capacity 64: past the first chunk of the tree
/// (64 leaves) when more than 32.
async fn build_long(w: &World, snapshot_at: usize, registered: usize) {
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
    c.shutdown();
}

/// A start from a format-3 snapshot whose log prefix is not read at open
/// serves byte for byte what a full replay serves: parameters, registry,
/// openings, every proof (also below the chunk roots, from records derived
/// from the log) and record, every entry; the background check then
/// confirms the prefix, and the curator keeps accepting.
#[tokio::test]
async fn a_format_3_start_serves_what_a_full_replay_serves() {
    let w = World::new(crs_64());
    build_long(&w, 34, 36).await;
    let (plain, _) = w.open(false);
    let expected = (served(&plain).await, transparency_served(&plain, 72).await);
    let openings: Vec<_> = (0..64).map(|s| plain.opening(s).unwrap()).collect();
    let first_chunk = plain.transparency().records(0, 64).unwrap().unwrap().2;
    plain.shutdown();

    let (c, report, unscanned) = open_fast(&w, Some((68, log_root(&w, 68))));
    assert_eq!(
        unscanned, 68,
        "the log was opened without reading the prefix"
    );
    assert_eq!(report.snapshot_refused, None);
    assert_eq!((report.snapshot_entries, report.replayed_entries), (68, 4));
    // Served before the check is done (the proofs below a chunk root use
    // records derived from the log, checked against the snapshot's tree).
    assert_eq!(
        (served(&c).await, transparency_served(&c, 72).await),
        expected
    );
    assert_eq!(prefix_checked(&c).await, PrefixCheck::Passed);
    assert_eq!(c.refuted(), None);
    let after: Vec<_> = (0..64).map(|s| c.opening(s).unwrap()).collect();
    assert_eq!(after, openings);
    assert_eq!(
        (served(&c).await, transparency_served(&c, 72).await),
        expected
    );
    // Once checked, the prefix's records are served from the file the
    // check filled (not derived from the log again): an entry changed on
    // disk now does not reach them.
    rewrite_entry(&w.log_path(), 5, true, |payload| payload[13] ^= 1);
    assert_eq!(
        c.transparency().records(0, 64).unwrap().unwrap().2,
        first_chunk
    );
    assert!(c.transparency().inclusion(5, 72).is_ok());
    w.register(&c, "after").await;
    assert_eq!(c.transparency().size(), 74);
    c.shutdown();
}

/// The byte range of section `k` (0 image, 1 follower, 2 identity, 3 tree,
/// 4 frames) of a format-3 snapshot.
fn section(bytes: &[u8], k: usize) -> core::ops::Range<usize> {
    let mut at = 48;
    for i in 0.. {
        let len = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        if i == k {
            return at + 8..at + 8 + len;
        }
        at += 8 + len;
    }
    unreachable!()
}

/// What a curator whose restored state was refuted does: it says why,
/// serves no proof, record or checkpoint state, accepts no registration,
/// and has moved the snapshot aside so that the next start replays.
async fn assert_refuted(w: &World, c: &Curator, why: &str) {
    let PrefixCheck::Refuted(what) = prefix_checked(c).await else {
        panic!("not refuted");
    };
    assert!(what.contains(why), "{what}");
    assert_eq!(c.refuted().as_deref(), Some(what.as_str()));
    let t = c.transparency();
    assert!(t.inclusion(0, 2).is_err());
    assert!(t.consistency(1, 2).is_err());
    assert!(t.records(0, 2).is_err());
    assert!(t.sign_latest().is_err());
    assert!(!c.is_healthy());
    let token = w.issuer.mint(&TokenRequest::new("shop", "late")).unwrap();
    let id = mazu_curator::client::id_of_token(&token);
    let slot = c.reserve_slot(&hex::encode(id)).unwrap().slot;
    let agent =
        mazu_curator::client::build_registration(&w.crs, &token, slot, &mut rand::rngs::OsRng)
            .unwrap();
    assert!(c.bind(agent.request).await.is_err());
    assert!(!w.snapshot_path().exists(), "the snapshot is moved aside");
    let aside = std::fs::read_dir(w.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state.snapshot.refuted-")
        })
        .count();
    assert_eq!(aside, 1);
    assert_eq!(
        c.snapshot_now().unwrap(),
        0,
        "no snapshot of a refuted state"
    );
}

/// A snapshot whose identity side lies (a reveal index moved in the
/// identity maps; a token expiry changed in the follower state; checksum
/// recomputed) passes the start-up checks, which follow the live state;
/// the background check finds it.
#[tokio::test]
async fn a_lying_identity_state_is_refuted_in_the_background() {
    let w = World::new(dev_crs());
    let expected = build(&w, 5, 5).await;
    let good = std::fs::read(w.snapshot_path()).unwrap();
    type Edit<'a> = &'a dyn Fn(&mut Vec<u8>);
    let cases: [(&str, Edit<'_>); 2] = [
        ("indexes derived from the first 10 log entries", &|b| {
            let identity = section(b, 2);
            let binds = u32::from_be_bytes(
                b[identity.start + 5..identity.start + 9]
                    .try_into()
                    .unwrap(),
            );
            // The first reveal's index (after the binds and the reveal count).
            let at = identity.start + 9 + binds as usize * 80 + 4 + 32;
            b[at + 7] = (b[at + 7] + 2) % 10;
        }),
        ("the id lifecycle (follower state) derived", &|b| {
            // The last id's token expiry, the follower state's last field.
            let follower = section(b, 1);
            b[follower.end - 1] ^= 1;
        }),
    ];
    for (why, edit) in cases {
        std::fs::write(w.snapshot_path(), &good).unwrap();
        reseal(&w.snapshot_path(), edit);
        let (c, report, _) = open_fast(&w, Some((10, log_root(&w, 10))));
        assert_eq!(report.snapshot_entries, 10, "{report:?}");
        assert_refuted(&w, &c, why).await;
        c.shutdown();
        // The next start replays everything and serves the log's state.
        let (c, report) = w.open(true);
        assert_eq!((report.snapshot_entries, report.replayed_entries), (0, 10));
        assert_eq!(served(&c).await, expected);
        c.shutdown();
        for e in std::fs::read_dir(w.dir.path()).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().contains(".refuted-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
}

/// A lying tree (a leaf hash changed, checksum recomputed) or follower
/// frontier is refused at start: the sections must agree with each other
/// (and the tree with the log's last chunk, and with the acknowledged
/// checkpoint's root: `durability.rs`). The whole log is then replayed.
#[tokio::test]
async fn a_lying_tree_is_refused_before_serving() {
    let w = World::new(dev_crs());
    let expected = build(&w, 3, 3).await;
    let good = std::fs::read(w.snapshot_path()).unwrap();
    reseal(&w.snapshot_path(), |b| {
        let tree = section(b, 3);
        b[tree.end - 1] ^= 1;
    });
    assert_falls_back(&w, "the follower state's root is not the tree's", &expected).await;
    std::fs::write(w.snapshot_path(), &good).unwrap();
    // The follower state's Merkle frontier (after its magic, format,
    // clock and size).
    reseal(&w.snapshot_path(), |b| {
        let follower = section(b, 1);
        b[follower.start + 21] ^= 1;
    });
    assert_falls_back(&w, "the follower state's root is not the tree's", &expected).await;
}

/// Rewrites log entry `index` of the file at `path` with `edit`, keeping
/// its frame valid (`fix_crc`) or not.
fn rewrite_entry(path: &Path, index: usize, fix_crc: bool, edit: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    let mut at = 40;
    for _ in 0..index {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    edit(&mut bytes[at + 8..at + 8 + len]);
    if fix_crc {
        let crc = crc32c::crc32c(&bytes[at + 8..at + 8 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A log whose covered prefix was changed after the snapshot (an entry of
/// the first chunk, with its frame checksum recomputed or not): start-up
/// does not read it, the background check finds it, and no proof is ever
/// made from it (the records derived from the changed entry do not hash to
/// the chunk root the snapshot holds).
#[tokio::test]
async fn a_log_prefix_changed_after_the_snapshot_is_refuted_and_proves_nothing() {
    for fix_crc in [true, false] {
        let w = World::new(crs_64());
        build_long(&w, 34, 34).await;
        let acknowledged = (68, log_root(&w, 68));
        // Entry 5: the reveal of the third registration; its time's last
        // byte changes (it still decodes).
        rewrite_entry(&w.log_path(), 5, fix_crc, |payload| payload[13] ^= 1);
        let (c, report, unscanned) = open_fast(&w, Some(acknowledged));
        assert_eq!((unscanned, report.snapshot_entries), (68, 68), "{report:?}");
        // Whether or not the check has finished: no proof from the entry.
        assert!(c.transparency().inclusion(5, 68).is_err());
        assert!(c.transparency().records(0, 10).is_err());
        let why = if fix_crc {
            "hash to root"
        } else {
            "checksum mismatch"
        };
        assert_refuted(&w, &c, why).await;
        c.shutdown();
    }
}

/// A snapshot whose tree lies about a complete chunk (its root changed,
/// and the follower's frontier with it, so the sections agree): with an
/// acknowledged checkpoint the tree does not give its root; without one,
/// the chunks it does not pin are checked against the log before serving.
/// Either way the snapshot is dropped and the log replayed; the
/// acknowledged root of another log refuses the start.
#[tokio::test]
async fn a_lying_chunk_root_is_refused_before_serving() {
    let w = World::new(crs_64());
    build_long(&w, 34, 34).await;
    let root = log_root(&w, 68);
    let (plain, _) = w.open(false);
    let expected = transparency_served(&plain, 68).await;
    plain.shutdown();
    let good = std::fs::read(w.snapshot_path()).unwrap();
    reseal(&w.snapshot_path(), |b| {
        // The first chunk root (after the chunk bits and the count) and
        // the follower's first frontier hash (the subtree of 64 leaves).
        let tree = section(b, 3);
        let follower = section(b, 1);
        let at = tree.start + 9;
        b[at] ^= 1;
        let lie: [u8; 32] = b[at..at + 32].try_into().unwrap();
        b[follower.start + 21..follower.start + 53].copy_from_slice(&lie);
    });
    let lying = std::fs::read(w.snapshot_path()).unwrap();
    for (ack, why) in [
        (
            Some((68, root)),
            "does not give the acknowledged checkpoint's root",
        ),
        (None, "does not hold the log's records 0..68"),
    ] {
        std::fs::write(w.snapshot_path(), &lying).unwrap();
        let (c, report, _) = open_fast(&w, ack);
        let refused = report.snapshot_refused.clone().unwrap_or_default();
        assert!(refused.contains(why), "{refused}");
        assert_eq!((report.snapshot_entries, report.replayed_entries), (0, 68));
        assert_eq!(c.prefix_check().borrow().clone(), PrefixCheck::NotNeeded);
        assert_eq!(transparency_served(&c, 68).await, expected);
        c.shutdown();
    }
    // The good snapshot under the right acknowledged root is used; under
    // another root the start is refused (after replaying the whole log).
    std::fs::write(w.snapshot_path(), &good).unwrap();
    let (c, report, _) = open_fast(&w, Some((68, root)));
    assert_eq!(report.snapshot_entries, 68);
    c.shutdown();
    let (store, _) = FileLogStore::open(&w.log_path(), w.crs.digest()).unwrap();
    let options = CuratorOptions {
        snapshot: Some(SnapshotOptions {
            path: w.snapshot_path(),
            every: 0,
        }),
        acknowledged_root: Some((68, [7; 32])),
        ..CuratorOptions::default()
    };
    let err = Curator::open(
        w.crs.clone(),
        w.trust(),
        Arc::new(store) as Arc<dyn LogStore>,
        Arc::new(Metrics::new()),
        &options,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            mazu_curator::service::OpenError::AcknowledgedRoot { size: 68, .. }
        ),
        "{err}"
    );
}

/// Lies the live state or the entries after the prefix show are caught
/// before serving: the follower state holding a live id in another slot
/// than its bind entry's; identity maps under which an entry after the
/// prefix does not replay (a claims digest of a token revealed later,
/// claimed as revealed already). Both fall back to the full replay.
#[tokio::test]
async fn lies_the_live_state_shows_are_refused_before_serving() {
    let w = World::new(dev_crs());
    let expected = build(&w, 3, 5).await;
    let good = std::fs::read(w.snapshot_path()).unwrap();
    reseal(&w.snapshot_path(), |b| {
        // The first id's slot in the follower state: after magic, format,
        // clock, frontier (size 6: two hashes) and count, then id and kind.
        let follower = section(b, 1);
        let at = follower.start + 5 + 8 + 8 + 64 + 4 + 33;
        b[at..at + 4].copy_from_slice(&15u32.to_be_bytes());
    });
    assert_falls_back(&w, "another slot than its bind's", &expected).await;

    // The token revealed by entry 7 (after the prefix of 6 entries).
    let (store, _) = FileLogStore::open(&w.log_path(), w.crs.digest()).unwrap();
    let reveal = store.read_range(7, 1).unwrap().pop().unwrap();
    drop(store);
    let mazu_curator::entry::EntryBody::Reveal { token } =
        mazu_curator::entry::LogEntry::from_bytes(&reveal)
            .unwrap()
            .body
    else {
        panic!("entry 7 is not a reveal");
    };
    let later = mazu_curator::registry::claims_digest_of(&token);
    std::fs::write(w.snapshot_path(), &good).unwrap();
    reseal(&w.snapshot_path(), |b| {
        let identity = section(b, 2);
        let binds = u32::from_be_bytes(
            b[identity.start + 5..identity.start + 9]
                .try_into()
                .unwrap(),
        );
        let at = identity.start + 9 + binds as usize * 80 + 4 + 32 + 8;
        b[at..at + 32].copy_from_slice(later.as_bytes());
    });
    assert_falls_back(&w, "do not replay on it", &expected).await;
}

/// A store opened from the snapshot's frame index whose snapshot is then
/// refused reads the prefix's frames before replaying them: a frame
/// damaged there refuses the start, naming it, instead of being taken on
/// the snapshot's word.
#[tokio::test]
async fn a_refused_snapshot_leaves_no_frame_unread() {
    let w = World::new(crs_64());
    build_long(&w, 34, 34).await;
    rewrite_entry(&w.log_path(), 5, false, |payload| payload[13] ^= 1);
    // The follower's frontier: the snapshot parses (its frame index is
    // used) but is refused by the restore.
    reseal(&w.snapshot_path(), |b| {
        let follower = section(b, 1);
        b[follower.start + 21] ^= 1;
    });
    let (opened, unscanned) = try_open_fast(&w, None);
    assert_eq!(unscanned, 68);
    let err = opened.err().unwrap().to_string();
    assert!(
        err.contains("not the frames the state snapshot recorded")
            && err.contains("entry #5")
            && err.contains("checksum mismatch")
            && err.contains("repair"),
        "{err}"
    );
}
