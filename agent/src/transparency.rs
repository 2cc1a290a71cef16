//! Checkpoint enforcement: the agent holds the curator to its append-only
//! log.
//!
//! The curator signs checkpoints (tree size and RFC 6962 Merkle root of its
//! log, as C2SP signed notes; see `docs/audit.md`). The agent remembers the
//! last checkpoint it accepted, in `STATE_DIR/checkpoint.json`, and accepts
//! a newer one only when
//!
//! 1. its signature verifies with the checkpoint key: the one pinned with
//!    `--checkpoint-key`, or else the key the curator served the first time
//!    (trust on first use, stored in the same file), and it carries the
//!    cosignatures of the witness quorum (`--witness`, `--witness-quorum`;
//!    see [`crate::follow`]);
//! 2. it extends the accepted one: not smaller (a rollback), not the same
//!    size with another root (a fork), and the curator's consistency proof
//!    from the accepted size verifies;
//! 3. the agent's own registration is in it: an inclusion proof of the
//!    entry's leaf hash at its log index (the "registrant monitors its own
//!    entry" role of Certificate Transparency).
//!
//! A checkpoint failing any of these is signed evidence that the curator,
//! or whoever answers in its place, misbehaves. The agent then keeps the
//! remembered checkpoint, records the refusal (`checkpoint.json` keeps the
//! refused note; `status.json` shows it), does not use the curator's newer
//! registry data (the opening refresh is gated on [`CheckpointTracker::usable_size`]),
//! and keeps serving its certificate. Transient failures (the curator down,
//! 5xx) are not refusals: the caller retries them with its backoff.
//!
//! The decisions are pure functions ([`verify_note`], [`key_changed`],
//! [`consistency_needed`], [`judge_extension`], [`judge_inclusion`]);
//! [`CheckpointTracker`] does the fetching and the remembering.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier};
use mazu_log::cosignature::WitnessPolicy;
use mazu_log::merkle::{Hash, verify_consistency, verify_inclusion};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::curator::{CuratorClient, InclusionProof, parse_hash};
use crate::error::{CheckpointError, CuratorError, Error, StateError};
use crate::state::{CheckpointRefusal, SECRET_MODE, write_atomic};

/// The file in the state directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// How the checkpoint key came to be trusted (part of refusal messages).
const PINNED: &str = "pinned";
const FIRST_USE: &str = "trusted on first use";

/// `checkpoint.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// The checkpoint verifier key (C2SP verifier-key format).
    pub verifier_key: Option<String>,
    /// Whether it came from `--checkpoint-key` (otherwise: first use).
    #[serde(default)]
    pub pinned: bool,
    /// The last accepted checkpoint.
    #[serde(default)]
    pub checkpoint: Option<AcceptedCheckpoint>,
    /// The agent's own registration in the log.
    #[serde(default)]
    pub own_entry: Option<OwnEntry>,
    /// The refusal in force, if the last check refused.
    #[serde(default)]
    pub refusal: Option<CheckpointRefusal>,
    /// The refused signed note, as served (evidence), if one was received.
    #[serde(default)]
    pub refused_note: Option<String>,
}

/// A checkpoint the agent accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedCheckpoint {
    /// Tree size (= registry version).
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    /// The signed note, exactly as served.
    pub note: String,
    /// When accepted, Unix seconds.
    pub accepted_at: u64,
}

/// The agent's own log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnEntry {
    /// Hex workload id.
    pub id: String,
    /// Log index.
    pub index: u64,
    /// RFC 6962 leaf hash of the entry bytes, hex.
    pub leaf_hash: String,
    /// Size of the last accepted checkpoint it was proven included in.
    #[serde(default)]
    pub included_in: Option<u64>,
}

/// What a check gave (transient failures are `Err` instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The served checkpoint is accepted (it may be the one remembered).
    Accepted {
        /// Whether anything new was remembered (a larger checkpoint, the
        /// own entry's inclusion, the end of a refusal).
        changed: bool,
        /// The accepted tree size.
        size: u64,
    },
    /// The served checkpoint is refused; the remembered one stays.
    Refused(Refusal),
}

/// A refused check, with the evidence to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub error: CheckpointError,
    /// Whether this differs from the refusal already in force (then it is
    /// worth the full evidence in the log again).
    pub new: bool,
    /// How many checks in a row were refused.
    pub count: u64,
    /// The remembered checkpoint's note.
    pub remembered_note: Option<String>,
    /// The refused note, as served.
    pub offered_note: Option<String>,
}

/// Verifies a signed checkpoint note with the trusted key.
pub fn verify_note(
    verifier: &CheckpointVerifier,
    trust: &'static str,
    note: &str,
) -> Result<Checkpoint, CheckpointError> {
    verifier
        .verify(note.as_bytes())
        .map_err(|e| CheckpointError::BadSignature {
            key: verifier.to_vkey(),
            trust,
            reason: e.to_string(),
        })
}

/// A note that did not verify ([`verify_note`]'s `error`) when the curator
/// now serves another key than the trusted one: a
/// [`CheckpointError::KeyChanged`]. `served` is `None` if the key could not
/// be fetched.
pub fn key_changed(
    error: CheckpointError,
    trusted: &CheckpointVerifier,
    served: Option<String>,
) -> CheckpointError {
    match (error, served) {
        (CheckpointError::BadSignature { trust, reason, .. }, Some(served))
            if served != trusted.to_vkey() =>
        {
            CheckpointError::KeyChanged {
                served,
                trusted: trusted.to_vkey(),
                trust,
                reason,
            }
        }
        (error, _) => error,
    }
}

/// The sizes of the consistency proof needed to accept `offered` after the
/// remembered `(size, root)`: `None` when no proof is needed (nothing
/// remembered, an empty remembered tree, the same size, or a smaller size,
/// which [`judge_extension`] refuses anyway).
pub fn consistency_needed(
    remembered: Option<(u64, Hash)>,
    offered: &Checkpoint,
) -> Option<(u64, u64)> {
    match remembered {
        Some((size, _)) if size > 0 && size < offered.size => Some((size, offered.size)),
        _ => None,
    }
}

/// Whether `offered` extends the remembered `(size, root)`, given the
/// consistency proof from the remembered size (empty when
/// [`consistency_needed`] asked for none).
pub fn judge_extension(
    remembered: Option<(u64, Hash)>,
    offered: &Checkpoint,
    proof: &[Hash],
) -> Result<(), CheckpointError> {
    let Some((size, root)) = remembered else {
        return Ok(());
    };
    if offered.size < size {
        return Err(CheckpointError::Rollback {
            remembered: size,
            offered: offered.size,
        });
    }
    if offered.size == size {
        return if offered.root == root {
            Ok(())
        } else {
            Err(CheckpointError::Fork {
                size,
                remembered_root: hex::encode(root),
                offered_root: hex::encode(offered.root),
            })
        };
    }
    verify_consistency(size, offered.size, &root, &offered.root, proof).map_err(|e| {
        CheckpointError::Inconsistent {
            from: size,
            to: offered.size,
            reason: format!("the proof does not verify: {e}"),
        }
    })
}

/// Whether the entry with leaf hash `own_leaf` is at `index` in the
/// `offered` tree, by the curator's inclusion proof.
pub fn judge_inclusion(
    own_leaf: &Hash,
    index: u64,
    offered: &Checkpoint,
    served: &InclusionProof,
) -> Result<(), CheckpointError> {
    let missing = |reason: String| CheckpointError::OwnEntryMissing {
        index,
        size: offered.size,
        reason,
    };
    if served.leaf_hash != *own_leaf {
        return Err(missing(format!(
            "the curator says the entry there has leaf hash {}, not this agent's {}",
            hex::encode(served.leaf_hash),
            hex::encode(own_leaf)
        )));
    }
    verify_inclusion(own_leaf, index, offered.size, &served.proof, &offered.root)
        .map_err(|e| missing(format!("the inclusion proof does not verify: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A proof request refused with a 4xx is the curator failing to prove a
/// checkpoint it signed (a refusal); anything else may pass (retry).
fn proof_refused(e: CuratorError) -> Result<String, Error> {
    if e.is_transient() {
        Err(e.into())
    } else {
        Ok(e.to_string())
    }
}

/// The remembered checkpoint and key, kept in `checkpoint.json`.
#[derive(Debug)]
pub struct CheckpointTracker {
    path: PathBuf,
    verifier: Option<CheckpointVerifier>,
    /// The accepted checkpoint's size and root, decoded.
    accepted: Option<(u64, Hash)>,
    file: CheckpointFile,
    /// The witness quorum every checkpoint must carry (`None`:
    /// `--insecure-no-witness`).
    policy: Option<WitnessPolicy>,
    /// The witnessed time (Unix seconds: the quorum-th newest cosignature)
    /// of the last checkpoint accepted; not persisted.
    witnessed_at: Option<u64>,
}

impl CheckpointTracker {
    /// Loads `checkpoint.json` from `state_dir` (a missing file is a fresh
    /// start). A `pinned` verifier key must parse and agree with a stored
    /// one (a configuration error otherwise: the stored checkpoint was
    /// signed by the other key).
    pub fn open(state_dir: &Path, pinned: Option<&str>) -> Result<Self, Error> {
        let path = state_dir.join(CHECKPOINT_FILE);
        let pinned = pinned
            .map(|k| {
                CheckpointVerifier::parse(k)
                    .map_err(|e| Error::Config(format!("--checkpoint-key {k:?}: {e}")))
            })
            .transpose()?;
        let file: CheckpointFile = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StateError::corrupt(&path, e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CheckpointFile::default(),
            Err(e) => return Err(StateError::io("reading", &path, e).into()),
        };
        let stored = file
            .verifier_key
            .as_deref()
            .map(|k| CheckpointVerifier::parse(k).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()?;
        let accepted = file
            .checkpoint
            .as_ref()
            .map(|c| {
                parse_hash(&c.root)
                    .map(|root| (c.size, root))
                    .ok_or_else(|| StateError::corrupt(&path, "the root is not 32 hex bytes"))
            })
            .transpose()?;
        let mut tracker = CheckpointTracker {
            path,
            verifier: stored.clone(),
            accepted,
            file,
            policy: None,
            witnessed_at: None,
        };
        match (pinned, stored) {
            (Some(pin), Some(stored)) if pin != stored => {
                return Err(Error::Config(format!(
                    "--checkpoint-key is {} but {} remembers checkpoints signed by {}; \
                     remove that file to start over with the pinned key",
                    pin.to_vkey(),
                    tracker.path.display(),
                    stored.to_vkey()
                )));
            }
            (Some(pin), _) => {
                tracker.file.verifier_key = Some(pin.to_vkey());
                tracker.file.pinned = true;
                tracker.verifier = Some(pin);
            }
            (None, _) => {}
        }
        Ok(tracker)
    }

    /// Requires every checkpoint to carry `policy`'s witness quorum.
    pub fn set_witness_policy(&mut self, policy: Option<WitnessPolicy>) {
        self.policy = policy;
    }

    /// The accepted checkpoint's size and root.
    pub fn accepted(&self) -> Option<(u64, Hash)> {
        self.accepted
    }

    /// The trusted checkpoint key and how it came to be trusted (fetching
    /// it from the curator on first use).
    pub async fn verifier(
        &mut self,
        client: &CuratorClient,
    ) -> Result<(CheckpointVerifier, &'static str), Error> {
        let verifier = match &self.verifier {
            Some(v) => v.clone(),
            None => self.trust_on_first_use(client).await?,
        };
        let trust = if self.file.pinned { PINNED } else { FIRST_USE };
        Ok((verifier, trust))
    }

    /// Remembers `offered` (verified, witnessed, and followed from the
    /// accepted checkpoint by [`crate::follow::LogView::advance`], so it
    /// extends it) if it is larger than the accepted one.
    pub fn accept_followed(&mut self, offered: &Checkpoint, note: &str) -> Result<(), StateError> {
        if self.accepted.is_some_and(|(size, _)| size >= offered.size) {
            return Ok(());
        }
        self.file.checkpoint = Some(AcceptedCheckpoint {
            size: offered.size,
            root: hex::encode(offered.root),
            note: note.to_owned(),
            accepted_at: unix_now(),
        });
        self.accepted = Some((offered.size, offered.root));
        self.save()
    }

    /// When the witnesses last vouched for the log this agent accepted: the
    /// witnessed time (Unix seconds) of the checkpoint accepted in the last
    /// check that accepted one. `None` before that, and without witnesses.
    pub fn witnessed_at(&self) -> Option<u64> {
        self.witnessed_at
    }

    /// The state line (`mazu-state-sha256`) of the accepted checkpoint, if
    /// it has one: what a log view may start from instead of record 0.
    pub fn accepted_state_digest(&self) -> Option<Hash> {
        let note = &self.file.checkpoint.as_ref()?.note;
        let text = &note[..note.find("\n\n")? + 1];
        let checkpoint = mazu_log::checkpoint::Checkpoint::parse_body(text).ok()?;
        mazu_log::evidence::state_digest(&checkpoint).ok().flatten()
    }

    /// The accepted tree size, if a checkpoint was accepted.
    pub fn accepted_size(&self) -> Option<u64> {
        self.accepted.map(|(size, _)| size)
    }

    /// The accepted tree size, unless a refusal is in force: registry data
    /// up to this version may be used.
    pub fn usable_size(&self) -> Option<u64> {
        if self.file.refusal.is_some() {
            return None;
        }
        self.accepted_size()
    }

    /// The refusal in force.
    pub fn refusal(&self) -> Option<&CheckpointRefusal> {
        self.file.refusal.as_ref()
    }

    /// The tracked own entry.
    pub fn own_entry(&self) -> Option<&OwnEntry> {
        self.file.own_entry.as_ref()
    }

    /// The log index of registration `id`, if proven included in the
    /// accepted checkpoint.
    pub fn included_index(&self, id: &str) -> Option<u64> {
        self.file
            .own_entry
            .as_ref()
            .filter(|o| o.id == id && o.included_in.is_some())
            .map(|o| o.index)
    }

    /// The remembered state, as stored.
    pub fn file(&self) -> &CheckpointFile {
        &self.file
    }

    fn save(&self) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(&self.file)
            .map_err(|e| StateError::corrupt(&self.path, e))?;
        write_atomic(&self.path, &json, SECRET_MODE)
    }

    /// Tracks registration `id`'s entry at `index` with `leaf` (replacing
    /// the previously tracked one, e.g. after a token rotation). Its
    /// inclusion is checked from the next [`check`](Self::check) on.
    pub fn track_own(&mut self, id: &str, index: u64, leaf: &Hash) -> Result<(), StateError> {
        let leaf_hex = hex::encode(leaf);
        if self
            .file
            .own_entry
            .as_ref()
            .is_some_and(|o| o.id == id && o.index == index && o.leaf_hash == leaf_hex)
        {
            return Ok(());
        }
        self.file.own_entry = Some(OwnEntry {
            id: id.to_owned(),
            index,
            leaf_hash: leaf_hex,
            included_in: None,
        });
        self.save()
    }

    /// Fetches the curator's checkpoint and accepts or refuses it (see the
    /// [module docs](self)). `Err` only for transient trouble (the curator
    /// unreachable, 5xx, a garbled answer) and local I/O: retry later.
    pub async fn check(&mut self, client: &CuratorClient) -> Result<CheckResult, Error> {
        let (verifier, trust) = self.verifier(client).await?;
        let note = client.checkpoint().await?;
        let offered =
            match crate::follow::verify_witnessed(&verifier, trust, self.policy.as_ref(), &note) {
                Ok(cp) => cp,
                Err(error @ CheckpointError::Unwitnessed { .. }) => {
                    return Ok(CheckResult::Refused(self.record_refusal(
                        error,
                        None,
                        Some(note),
                    )?));
                }
                Err(error) => {
                    // Say so when the key changed (asked only on this path).
                    let served = client.checkpoint_key().await.ok();
                    let error = key_changed(error, &verifier, served);
                    return Ok(CheckResult::Refused(self.record_refusal(
                        error,
                        None,
                        Some(note),
                    )?));
                }
            };
        // The quorum verified above; its time is what freshness counts from.
        let witnessed_at = self
            .policy
            .as_ref()
            .and_then(|policy| policy.check(note.as_bytes()).ok())
            .map(|witnessed| witnessed.timestamp);

        let proof = match consistency_needed(self.accepted, &offered) {
            Some((from, to)) => match client.consistency_proof(from, to).await {
                Ok(proof) => proof,
                Err(e) => {
                    let reason = proof_refused(e)?;
                    let error = CheckpointError::Inconsistent {
                        from,
                        to,
                        reason: format!("the curator has none: {reason}"),
                    };
                    return Ok(CheckResult::Refused(self.record_refusal(
                        error,
                        Some(offered.size),
                        Some(note),
                    )?));
                }
            },
            None => Vec::new(),
        };
        if let Err(error) = judge_extension(self.accepted, &offered, &proof) {
            return Ok(CheckResult::Refused(self.record_refusal(
                error,
                Some(offered.size),
                Some(note),
            )?));
        }

        let mut changed = false;
        if let Some(own) = self.file.own_entry.clone()
            && own.included_in != Some(offered.size)
            && own.index < offered.size
        {
            let leaf = parse_hash(&own.leaf_hash)
                .ok_or_else(|| StateError::corrupt(&self.path, "own leaf hash is not hex"))?;
            let result = match client.inclusion_proof(own.index, offered.size).await {
                Ok(served) => judge_inclusion(&leaf, own.index, &offered, &served),
                Err(e) => Err(CheckpointError::OwnEntryMissing {
                    index: own.index,
                    size: offered.size,
                    reason: format!("the curator has no inclusion proof: {}", proof_refused(e)?),
                }),
            };
            if let Err(error) = result {
                return Ok(CheckResult::Refused(self.record_refusal(
                    error,
                    Some(offered.size),
                    Some(note),
                )?));
            }
            if let Some(o) = self.file.own_entry.as_mut() {
                o.included_in = Some(offered.size);
            }
            changed = true;
        }
        if self.accepted != Some((offered.size, offered.root)) {
            self.file.checkpoint = Some(AcceptedCheckpoint {
                size: offered.size,
                root: hex::encode(offered.root),
                note,
                accepted_at: unix_now(),
            });
            self.accepted = Some((offered.size, offered.root));
            changed = true;
        }
        if self.file.refusal.is_some() {
            self.file.refusal = None;
            self.file.refused_note = None;
            changed = true;
        }
        if changed {
            self.save()?;
        }
        self.witnessed_at = witnessed_at;
        Ok(CheckResult::Accepted {
            changed,
            size: offered.size,
        })
    }

    /// No pinned or stored key: takes the one the curator serves, once.
    async fn trust_on_first_use(
        &mut self,
        client: &CuratorClient,
    ) -> Result<CheckpointVerifier, Error> {
        let key = client.checkpoint_key().await?;
        let verifier = CheckpointVerifier::parse(&key).map_err(|e| CuratorError::Malformed {
            what: "GET /v1/checkpoint/key".to_owned(),
            reason: e.to_string(),
        })?;
        warn!(
            key = %verifier.to_vkey(),
            "trusting the curator's checkpoint key on first use; pin it with --checkpoint-key"
        );
        self.file.verifier_key = Some(verifier.to_vkey());
        self.file.pinned = false;
        self.verifier = Some(verifier.clone());
        self.save()?;
        Ok(verifier)
    }

    /// Records a refusal (the remembered checkpoint stays) and returns what
    /// to report.
    pub fn record_refusal(
        &mut self,
        error: CheckpointError,
        offered_size: Option<u64>,
        offered_note: Option<String>,
    ) -> Result<Refusal, StateError> {
        let now = unix_now();
        let previous = self.file.refusal.take();
        let new = previous.as_ref().is_none_or(|p| p.kind != error.kind())
            || self.file.refused_note != offered_note;
        let refusal = CheckpointRefusal {
            kind: error.kind().to_owned(),
            reason: error.to_string(),
            count: previous.as_ref().map_or(1, |p| p.count.saturating_add(1)),
            since: previous.as_ref().map_or(now, |p| p.since),
            last_at: now,
            remembered_size: self.accepted_size(),
            offered_size,
        };
        let count = refusal.count;
        self.file.refusal = Some(refusal);
        self.file.refused_note.clone_from(&offered_note);
        self.save()?;
        Ok(Refusal {
            error,
            new,
            count,
            remembered_note: self.file.checkpoint.as_ref().map(|c| c.note.clone()),
            offered_note,
        })
    }
}

#[cfg(test)]
mod tests {
    use mazu_log::checkpoint::CheckpointSigner;
    use mazu_log::merkle::{MerkleTree, leaf_hash};

    use super::*;

    fn tree(n: u8) -> MerkleTree {
        MerkleTree::from_leaves((0..n).map(|i| leaf_hash(&[i])))
    }

    fn checkpoint(t: &MerkleTree, size: u64) -> Checkpoint {
        Checkpoint {
            origin: "test/log".to_owned(),
            size,
            root: t.root(size).expect("root"),
            extensions: Vec::new(),
        }
    }

    fn remembered(t: &MerkleTree, size: u64) -> Option<(u64, Hash)> {
        Some((size, t.root(size).expect("root")))
    }

    #[test]
    fn a_signed_checkpoint_verifies() {
        let signer = CheckpointSigner::new("test/log", &[1; 32]).expect("signer");
        let t = tree(3);
        let note = signer.sign(3, &t.root(3).expect("root"));
        let cp = verify_note(&signer.verifier(), PINNED, &note).expect("verifies");
        assert_eq!((cp.size, cp.root), (3, t.root(3).expect("root")));
    }

    #[test]
    fn a_note_by_another_key_or_tampered_is_refused() {
        let signer = CheckpointSigner::new("test/log", &[1; 32]).expect("signer");
        let other = CheckpointSigner::new("test/log", &[2; 32]).expect("signer");
        let t = tree(3);
        let note = other.sign(3, &t.root(3).expect("root"));
        let e = verify_note(&signer.verifier(), FIRST_USE, &note).expect_err("other key");
        assert_eq!(e.kind(), "bad_signature");
        assert!(e.to_string().contains("trusted on first use"), "{e}");
        let good = signer.sign(3, &t.root(3).expect("root"));
        let tampered = good.replacen("\n3\n", "\n4\n", 1);
        let e = verify_note(&signer.verifier(), PINNED, &tampered).expect_err("tampered");
        assert_eq!(e.kind(), "bad_signature");
    }

    #[test]
    fn a_note_after_a_key_change_is_refused_as_such() {
        let signer = CheckpointSigner::new("test/log", &[1; 32]).expect("signer");
        let other = CheckpointSigner::new("test/log", &[2; 32]).expect("signer");
        let t = tree(3);
        let note = other.sign(3, &t.root(3).expect("root"));
        let bad = verify_note(&signer.verifier(), PINNED, &note).expect_err("other key");
        let trusted = signer.verifier();
        let e = key_changed(bad.clone(), &trusted, Some(other.verifier().to_vkey()));
        assert_eq!(e.kind(), "key_changed");
        assert!(e.to_string().contains("pinned"), "{e}");
        // The same key served (a forged note), or no key: a bad signature.
        let same = key_changed(bad.clone(), &trusted, Some(trusted.to_vkey()));
        assert_eq!(same.kind(), "bad_signature");
        assert_eq!(key_changed(bad, &trusted, None).kind(), "bad_signature");
    }

    #[test]
    fn the_first_checkpoint_and_the_same_one_are_accepted() {
        let t = tree(4);
        let cp = checkpoint(&t, 4);
        assert_eq!(consistency_needed(None, &cp), None);
        assert_eq!(judge_extension(None, &cp, &[]), Ok(()));
        assert_eq!(consistency_needed(remembered(&t, 4), &cp), None);
        assert_eq!(judge_extension(remembered(&t, 4), &cp, &[]), Ok(()));
        // From the empty tree, anything extends it.
        assert_eq!(consistency_needed(remembered(&t, 0), &cp), None);
        assert_eq!(judge_extension(remembered(&t, 0), &cp, &[]), Ok(()));
    }

    #[test]
    fn a_consistent_larger_checkpoint_is_accepted() {
        let t = tree(7);
        let cp = checkpoint(&t, 7);
        assert_eq!(consistency_needed(remembered(&t, 3), &cp), Some((3, 7)));
        let proof = t.consistency_proof(3, 7).expect("proof");
        assert_eq!(judge_extension(remembered(&t, 3), &cp, &proof), Ok(()));
    }

    #[test]
    fn a_rollback_is_refused() {
        let t = tree(5);
        let cp = checkpoint(&t, 4);
        assert_eq!(consistency_needed(remembered(&t, 5), &cp), None);
        let e = judge_extension(remembered(&t, 5), &cp, &[]).expect_err("rollback");
        assert_eq!(
            e,
            CheckpointError::Rollback {
                remembered: 5,
                offered: 4
            }
        );
    }

    #[test]
    fn the_same_size_with_another_root_is_a_fork() {
        let t = tree(4);
        let mut other = MerkleTree::from_leaves((0..4u8).rev().map(|i| leaf_hash(&[i])));
        other.push(leaf_hash(b"x"));
        let cp = checkpoint(&other, 4);
        let e = judge_extension(remembered(&t, 4), &cp, &[]).expect_err("fork");
        assert_eq!(e.kind(), "fork");
    }

    #[test]
    fn a_rewritten_history_fails_the_consistency_proof() {
        let t = tree(3);
        // Entry 1 replaced, then grown: the new tree does not extend the old.
        let forked = MerkleTree::from_leaves([0u8, 9, 2, 3, 4].iter().map(|i| leaf_hash(&[*i])));
        let cp = checkpoint(&forked, 5);
        let proof = forked.consistency_proof(3, 5).expect("proof");
        let e = judge_extension(remembered(&t, 3), &cp, &proof).expect_err("fork");
        assert_eq!(e.kind(), "inconsistent");
        // A missing or truncated proof is refused too.
        let honest = tree(5);
        let cp = checkpoint(&honest, 5);
        let e = judge_extension(remembered(&t, 3), &cp, &[]).expect_err("no proof");
        assert_eq!(e.kind(), "inconsistent");
    }

    #[test]
    fn the_own_entry_must_be_included() {
        let t = tree(6);
        let cp = checkpoint(&t, 6);
        let own = leaf_hash(&[2]);
        let served = InclusionProof {
            leaf_hash: own,
            proof: t.inclusion_proof(2, 6).expect("proof"),
        };
        assert_eq!(judge_inclusion(&own, 2, &cp, &served), Ok(()));

        // Another leaf at our index (the entry replaced or dropped).
        let replaced = InclusionProof {
            leaf_hash: leaf_hash(&[3]),
            proof: t.inclusion_proof(3, 6).expect("proof"),
        };
        let e = judge_inclusion(&own, 2, &cp, &replaced).expect_err("replaced");
        assert_eq!(e.kind(), "own_entry_missing");

        // Our leaf hash claimed, but the proof is for another position.
        let lying = InclusionProof {
            leaf_hash: own,
            proof: t.inclusion_proof(3, 6).expect("proof"),
        };
        let e = judge_inclusion(&own, 2, &cp, &lying).expect_err("bad proof");
        assert_eq!(e.kind(), "own_entry_missing");
    }

    #[test]
    fn the_tracker_remembers_refusals_and_pins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = CheckpointSigner::new("test/log", &[1; 32]).expect("signer");
        let vkey = signer.verifier().to_vkey();
        let mut tracker = CheckpointTracker::open(dir.path(), Some(&vkey)).expect("open");
        assert_eq!(tracker.usable_size(), None);
        let first = tracker
            .record_refusal(
                CheckpointError::Rollback {
                    remembered: 2,
                    offered: 1,
                },
                Some(1),
                Some("note".to_owned()),
            )
            .expect("record");
        assert!(first.new);
        let second = tracker
            .record_refusal(
                CheckpointError::Rollback {
                    remembered: 2,
                    offered: 1,
                },
                Some(1),
                Some("note".to_owned()),
            )
            .expect("record");
        assert!(!second.new);
        assert_eq!(second.count, 2);

        // Persisted, with the refused note; the pin is stored.
        let again = CheckpointTracker::open(dir.path(), None).expect("reopen");
        assert_eq!(again.refusal().map(|r| r.count), Some(2));
        assert_eq!(again.file().refused_note.as_deref(), Some("note"));
        assert_eq!(again.file().verifier_key.as_deref(), Some(vkey.as_str()));
        // Another pinned key than the stored one is a configuration error.
        let other = CheckpointSigner::new("test/log", &[2; 32]).expect("signer");
        let e = CheckpointTracker::open(dir.path(), Some(&other.verifier().to_vkey()))
            .expect_err("conflict");
        assert!(matches!(e, Error::Config(_)), "{e}");
        // A malformed pin too.
        let e = CheckpointTracker::open(dir.path(), Some("nonsense")).expect_err("malformed");
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
