//! Checkpoints with a state line (`mazu-state-sha256`): the witness cosigns
//! one only after deriving that follower state itself from the records sent
//! at `/mazu/v1/add-checkpoint` (`docs/witness.md`, "State lines"). Most
//! tests drive `Witness` directly on a temporary store; the last one goes
//! through the HTTP server.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use base64ct::{Base64, Encoding as _};
use mazu_identity::registry::{FollowError, LogFollower};
use mazu_log::checkpoint::CheckpointSigner;
use mazu_log::cosignature::{CosignatureSigner, WitnessVerifier};
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, MerkleTree};
use mazu_log::record::{LeafRecord, RecordBody};
use mazu_log::witness_protocol::{
    ADD_CHECKPOINT_WITH_RECORDS_PATH, AddCheckpointRequest, with_records,
};
use mazu_witness::store::Store;
use mazu_witness::witness::unix_now_ms;
use mazu_witness::{AddError, Witness};

const ORIGIN: &str = common::ORIGIN;

/// A registry log: its records, checkpoint signer and tree.
struct RegistryLog {
    records: Vec<LeafRecord>,
    signer: CheckpointSigner,
}

/// A token expiry an hour from now, Unix seconds.
fn expiry() -> u64 {
    unix_now_ms() / 1000 + 3600
}

fn record(id: u8, at_ms: u64, body: RecordBody) -> LeafRecord {
    LeafRecord {
        at_ms,
        id: [id; 32],
        entry_digest: [id ^ 0xff; 32],
        body,
    }
}

/// A bind of `id` to `key` in `slot` and its reveal, a few seconds ago.
fn bind_and_reveal(id: u8, slot: u32, key: u8) -> [LeafRecord; 2] {
    let at = unix_now_ms() - 5_000;
    let token_expiry = expiry();
    [
        record(
            id,
            at,
            RecordBody::Bind {
                slot,
                spki_hash: [key; 32],
                token_expiry,
            },
        ),
        record(id, at + 1, RecordBody::Reveal { token_expiry }),
    ]
}

fn encode(records: &[LeafRecord]) -> Vec<u8> {
    records.iter().flat_map(LeafRecord::to_bytes).collect()
}

fn tree(records: &[LeafRecord]) -> MerkleTree {
    MerkleTree::from_leaves(records.iter().map(LeafRecord::leaf_hash))
}

/// The digest of the follower state after `records` (an honest derivation).
fn derived_digest(records: &[LeafRecord]) -> Hash {
    let mut follower = LogFollower::new();
    let root = tree(records).root(records.len() as u64).unwrap();
    follower
        .extend(records, records.len() as u64, &root, unix_now_ms())
        .unwrap();
    follower.state_digest()
}

impl RegistryLog {
    fn new() -> Self {
        Self {
            records: Vec::new(),
            signer: CheckpointSigner::new(ORIGIN, &[1; 32]).unwrap(),
        }
    }

    /// The log's records: two ids bound and revealed, then two more.
    fn four() -> Self {
        let mut log = Self::new();
        log.records.extend(bind_and_reveal(1, 0, 0xA1));
        log.records.extend(bind_and_reveal(2, 1, 0xB2));
        log
    }

    fn root(&self, size: u64) -> Hash {
        tree(&self.records).root(size).unwrap()
    }

    /// The checkpoint at `size` with the state line `digest`.
    fn note_with_state(&self, size: u64, digest: &Hash) -> String {
        self.signer
            .sign_with_extensions(size, &self.root(size), vec![state_extension(digest)])
    }

    /// The honest state line at `size`.
    fn honest_digest(&self, size: u64) -> Hash {
        derived_digest(&self.records[..size as usize])
    }

    /// An add-checkpoint body from `old` to `size` carrying `note`.
    fn add_body(&self, old: u64, size: u64, note: String) -> Vec<u8> {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            tree(&self.records).consistency_proof(old, size).unwrap()
        };
        AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: note.into_bytes(),
        }
        .encode()
    }

    /// A `/mazu/v1/add-checkpoint` body from `old` to `size` with the state
    /// line `digest` and `records`.
    fn body_with(&self, old: u64, size: u64, digest: &Hash, records: &[LeafRecord]) -> Vec<u8> {
        let add = self.add_body(old, size, self.note_with_state(size, digest));
        with_records(&add, &encode(records))
    }

    /// The honest `/mazu/v1/add-checkpoint` body from `old` to `size`.
    fn honest(&self, old: u64, size: u64) -> Vec<u8> {
        self.body_with(
            old,
            size,
            &self.honest_digest(size),
            &self.records[old as usize..size as usize],
        )
    }

    /// A standard add-checkpoint body (no state line) from `old` to `size`.
    fn plain(&self, old: u64, size: u64) -> Vec<u8> {
        self.add_body(old, size, self.signer.sign(size, &self.root(size)))
    }
}

fn signer() -> CosignatureSigner {
    CosignatureSigner::new(common::WITNESS_NAME, &[7; 32]).unwrap()
}

fn open(dir: &std::path::Path, log: &RegistryLog) -> Witness {
    Witness::open(
        signer(),
        &[log.signer.verifier()],
        Store::open(dir).unwrap(),
    )
    .unwrap()
}

/// The checkpoint at `size` is cosigned by the witness, now.
fn assert_cosigned(log: &RegistryLog, size: u64, result: Result<mazu_witness::Cosigned, AddError>) {
    let cosigned = result.unwrap();
    assert_eq!(cosigned.size, size);
    let body = format!(
        "{ORIGIN}\n{size}\n{}\n",
        Base64::encode_string(&log.root(size))
    );
    // The cosigned body is the checkpoint with its state line.
    let cp = log
        .signer
        .verifier()
        .verify(
            log.note_with_state(size, &log.honest_digest(size))
                .as_bytes(),
        )
        .unwrap();
    assert!(cp.body().starts_with(&body));
    let verifier = WitnessVerifier::parse(&signer().verifier().to_vkey()).unwrap();
    let ts = verifier.verify_line(&cp.body(), &cosigned.body).unwrap();
    let now = mazu_witness::witness::unix_now();
    assert!(ts.is_some_and(|t| t.abs_diff(now) < 60), "{ts:?}");
}

fn stored_size(w: &Witness) -> Option<u64> {
    w.logs()[0].size
}

fn has_follower(w: &Witness) -> bool {
    w.logs()[0].follower
}

#[test]
fn an_honest_chain_is_cosigned() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);
    assert!(has_follower(&w));
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));
    assert_cosigned(&log, 4, w.add_checkpoint_with_records(&log.honest(2, 4)));
    assert_eq!(stored_size(&w), Some(4));
    // The same checkpoint again, no records: a fresh cosignature.
    let again = w.add_checkpoint_with_records(&log.honest(4, 4)).unwrap();
    assert!(!again.advanced);
    assert!(has_follower(&w));
    // Records with it from the stored size are still required to be none.
    let extra = log.body_with(4, 4, &log.honest_digest(4), &log.records[3..]);
    let err = w.add_checkpoint_with_records(&extra).unwrap_err();
    assert_eq!((err.status(), err.outcome()), (422, "bad_records"));
}

#[test]
fn a_state_line_that_does_not_follow_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));

    // The curator lies: it signs the right root and sends the right records,
    // but its state line is the digest of a state where the victim's id 1 is
    // bound to the curator's key 0xEE.
    let mut forged = Vec::new();
    forged.extend(bind_and_reveal(1, 0, 0xEE));
    forged.extend_from_slice(&log.records[2..4]);
    let lie = derived_digest(&forged);
    assert_ne!(lie, log.honest_digest(4));
    let body = log.body_with(2, 4, &lie, &log.records[2..4]);
    let err = w.add_checkpoint_with_records(&body).unwrap_err();
    assert!(matches!(err, AddError::BadState { size: 4, .. }), "{err}");
    assert_eq!((err.status(), err.outcome()), (422, "bad_state"));
    assert!(err.to_string().contains("CURATOR MISBEHAVIOUR?"), "{err}");
    assert_eq!(err.known_origin(), Some(ORIGIN));
    // Another lie: the honest state of an earlier size.
    let stale = log.body_with(2, 4, &log.honest_digest(2), &log.records[2..4]);
    assert_eq!(
        w.add_checkpoint_with_records(&stale).unwrap_err().outcome(),
        "bad_state"
    );

    // Nothing stored; the signed note is kept as evidence.
    assert_eq!(stored_size(&w), Some(2));
    let evidence: Vec<String> = std::fs::read_dir(dir.path().join("evidence"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(evidence.len(), 2);
    assert!(
        evidence
            .iter()
            .any(|t| t.contains(&log.note_with_state(4, &lie))),
        "{evidence:?}"
    );

    // The honest request from the old size still works.
    assert_cosigned(&log, 4, w.add_checkpoint_with_records(&log.honest(2, 4)));
}

#[test]
fn records_that_do_not_give_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));
    let digest = log.honest_digest(4);

    // Other records of the right count (the state line computed from them,
    // so only the root can tell).
    let mut other = log.records[..2].to_vec();
    other.extend(bind_and_reveal(3, 1, 0xC3));
    let body = log.body_with(2, 4, &derived_digest(&other), &other[2..]);
    let err = w.add_checkpoint_with_records(&body).unwrap_err();
    assert!(
        matches!(
            err,
            AddError::BadRecords {
                reason: FollowError::RootMismatch,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.status(), 422);
    // Too few, too many, out of order.
    for records in [
        log.records[2..3].to_vec(),
        log.records[1..4].to_vec(),
        vec![log.records[3], log.records[2]],
    ] {
        let err = w
            .add_checkpoint_with_records(&log.body_with(2, 4, &digest, &records))
            .unwrap_err();
        assert_eq!((err.status(), err.outcome()), (422, "bad_records"), "{err}");
    }
    // Records that do not decode: 400.
    let add = log.add_body(2, 4, log.note_with_state(4, &digest));
    let mut bytes = encode(&log.records[2..4]);
    bytes.truncate(bytes.len() - 1);
    let err = w
        .add_checkpoint_with_records(&with_records(&add, &bytes))
        .unwrap_err();
    assert_eq!((err.status(), err.outcome()), (400, "malformed"), "{err}");
    // A body that is not a with-records body at all: 400.
    let err = w.add_checkpoint_with_records(b"\x00\x00").unwrap_err();
    assert_eq!(err.status(), 400);

    assert_eq!(stored_size(&w), Some(2));
    assert_cosigned(&log, 4, w.add_checkpoint_with_records(&log.honest(2, 4)));
}

#[test]
fn a_record_from_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RegistryLog::four();
    // Record 3 is timed an hour ahead (a curator moving the registry clock
    // forward); the state line is what a follower trusting it would derive.
    log.records[3].at_ms = unix_now_ms() + 3_600_000;
    let mut follower = LogFollower::new();
    follower
        .extend(&log.records, 4, &log.root(4), unix_now_ms() + 7_200_000)
        .unwrap();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));
    let body = log.body_with(2, 4, &follower.state_digest(), &log.records[2..4]);
    let err = w.add_checkpoint_with_records(&body).unwrap_err();
    assert!(
        matches!(
            err,
            AddError::BadRecords {
                reason: FollowError::FromTheFuture { index: 3, .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!((err.status(), err.outcome()), (422, "bad_records"));
    assert_eq!(stored_size(&w), Some(2));
}

#[test]
fn the_standard_route_refuses_a_state_line_and_drops_the_follower_when_it_advances() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);

    // A state line on /add-checkpoint: refused, even an honest one.
    let body = log.add_body(0, 2, log.note_with_state(2, &log.honest_digest(2)));
    let err = w.add_checkpoint(&body).unwrap_err();
    assert_eq!((err.status(), err.outcome()), (400, "needs_records"));
    assert!(
        err.to_string()
            .contains("carry its records at /mazu/v1/add-checkpoint"),
        "{err}"
    );
    // No state line on /mazu/v1/add-checkpoint: refused.
    let err = w
        .add_checkpoint_with_records(&with_records(&log.plain(0, 2), &encode(&log.records[..2])))
        .unwrap_err();
    assert_eq!((err.status(), err.outcome()), (400, "no_state_line"));
    assert_eq!(stored_size(&w), None);

    // A checkpoint without a state line works as before; having advanced
    // without the records, the witness no longer holds the follower.
    w.add_checkpoint(&log.plain(0, 2)).unwrap();
    assert_eq!(stored_size(&w), Some(2));
    assert!(!has_follower(&w));
    let err = w
        .add_checkpoint_with_records(&log.honest(2, 4))
        .unwrap_err();
    assert_eq!((err.status(), err.outcome()), (500, "no_follower"));
    assert!(err.to_string().contains("re-initialised"), "{err}");
    // Nor is it stored, so a restart does not bring it back.
    drop(w);
    let file = state_file(dir.path());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(json.get("follower_state").is_none(), "{json}");
    let w = open(dir.path(), &log);
    assert!(!has_follower(&w));
    assert_eq!(
        w.add_checkpoint_with_records(&log.honest(2, 4))
            .unwrap_err()
            .outcome(),
        "no_follower"
    );
    // Plain checkpoints are unaffected.
    w.add_checkpoint(&log.plain(2, 4)).unwrap();
}

fn state_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[test]
fn a_restart_keeps_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));
    drop(w);
    // The follower is stored with the checkpoint, at its size.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_file(dir.path())).unwrap()).unwrap();
    assert_eq!(json["size"], 2);
    let encoded = Base64::decode_vec(json["follower_state"].as_str().unwrap()).unwrap();
    let stored = LogFollower::decode_state(&encoded).unwrap();
    assert_eq!(stored.state_digest(), log.honest_digest(2));

    let w = open(dir.path(), &log);
    assert_eq!(stored_size(&w), Some(2));
    assert!(has_follower(&w));
    assert_cosigned(&log, 4, w.add_checkpoint_with_records(&log.honest(2, 4)));
    drop(w);
    let w = open(dir.path(), &log);
    assert_eq!(stored_size(&w), Some(4));
    assert!(w.add_checkpoint_with_records(&log.honest(4, 4)).is_ok());
}

#[test]
fn a_lost_or_damaged_follower_makes_state_lines_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 2, w.add_checkpoint_with_records(&log.honest(0, 2)));
    drop(w);
    let file = state_file(dir.path());
    let original = std::fs::read(&file).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&original).unwrap();

    // A follower of another size (size 1: what an interrupted writer could
    // have left), one that does not decode, one not base64, none.
    let mut at_one = LogFollower::new();
    at_one
        .extend(&log.records[..1], 1, &log.root(1), unix_now_ms())
        .unwrap();
    let b64 = |bytes: &[u8]| Base64::encode_string(bytes);
    let variants = [
        (Some(b64(&at_one.encode_state())), "at size 1"),
        (Some(b64(b"MZFS\x01 not a state")), "does not decode"),
        (Some("not base64 !".to_owned()), "not base64"),
        (None, "no follower state"),
    ];
    for (field, why) in variants {
        let mut edited = json.clone();
        match field {
            Some(v) => edited["follower_state"] = serde_json::Value::String(v),
            None => {
                edited.as_object_mut().unwrap().remove("follower_state");
            }
        }
        std::fs::write(&file, serde_json::to_vec(&edited).unwrap()).unwrap();
        // The witness starts (the checkpoint is intact) ...
        let w = open(dir.path(), &log);
        assert_eq!(stored_size(&w), Some(2));
        assert!(!has_follower(&w), "{why}");
        // ... and refuses state lines, saying why.
        let err = w
            .add_checkpoint_with_records(&log.honest(2, 4))
            .unwrap_err();
        assert_eq!((err.status(), err.outcome()), (500, "no_follower"), "{why}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert_eq!(stored_size(&w), Some(2));
    }

    // With the file as written, it verifies again.
    std::fs::write(&file, &original).unwrap();
    let w = open(dir.path(), &log);
    assert_cosigned(&log, 4, w.add_checkpoint_with_records(&log.honest(2, 4)));
}

#[tokio::test]
async fn over_http_the_records_route_cosigns_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = RegistryLog::four();
    let mut config = mazu_witness::Config::new(
        common::WITNESS_NAME,
        vec![log.signer.verifier()],
        dir.path().to_path_buf(),
    );
    config.create_key = true;
    let w = common::Running::start(config).await;
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: Vec<u8>| {
        let request = client.post(w.url(path)).body(body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    let (status, text) = post(ADD_CHECKPOINT_WITH_RECORDS_PATH, log.honest(0, 2)).await;
    assert_eq!(status, 200, "{text}");
    let cp = log
        .signer
        .verifier()
        .verify(log.note_with_state(2, &log.honest_digest(2)).as_bytes())
        .unwrap();
    assert!(
        w.verifier
            .verify_line(&cp.body(), text.trim_end())
            .unwrap()
            .is_some()
    );

    // A lying state line: 422.
    let lie = derived_digest(&log.records[..3]);
    let (status, text) = post(
        ADD_CHECKPOINT_WITH_RECORDS_PATH,
        log.body_with(2, 4, &lie, &log.records[2..4]),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("does not follow from the records"), "{text}");
    // A stale old size: 409 with the size, as on /add-checkpoint.
    let (status, text) = post(ADD_CHECKPOINT_WITH_RECORDS_PATH, log.honest(0, 4)).await;
    assert_eq!((status, text.as_str()), (409, "2\n"));
    // The standard route refuses the state line.
    let body = log.add_body(2, 4, log.note_with_state(4, &log.honest_digest(4)));
    let (status, text) = post("/add-checkpoint", body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("/mazu/v1/add-checkpoint"), "{text}");
    // The honest extension.
    let (status, text) = post(ADD_CHECKPOINT_WITH_RECORDS_PATH, log.honest(2, 4)).await;
    assert_eq!(status, 200, "{text}");

    let health: serde_json::Value = reqwest::get(w.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["logs"][0]["size"], 4);
    assert_eq!(health["logs"][0]["follower"], true);
    let metrics = reqwest::get(w.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["bad_state", "needs_records", "conflict"] {
        assert!(
            metrics.contains(&format!(
                "mazu_witness_add_checkpoint_total{{origin=\"{ORIGIN}\",outcome=\"{outcome}\"}} 1"
            )),
            "{outcome}: {metrics}"
        );
    }
    assert!(metrics.contains(&format!(
        "mazu_witness_add_checkpoint_total{{origin=\"{ORIGIN}\",outcome=\"cosigned\"}} 2"
    )));
    w.stop().await;
}
