//! Following the curator's witnessed log: the agent's own view of who
//! bound which id first.
//!
//! The curator's word is not trusted for the one decision that matters:
//! whether this agent's binding of its id is the first one (only then may
//! the token be revealed, `docs/protocol.md`). [`LogView`] keeps a
//! [`LogFollower`] for the whole process (one per agent, reused across
//! registrations, fetching records from its size onward) and moves it only
//! to checkpoints that
//!
//! 1. verify with the curator's checkpoint key, and
//! 2. carry cosignatures of the witness quorum ([`WitnessPolicy::check`]);
//!    with `--insecure-no-witness` there is no policy and this step is
//!    skipped (development only);
//!
//! and only with records (`GET /v1/log/records`) whose Merkle leaves give
//! each checkpoint's root, all or nothing. A curator that serves records
//! other than the ones it signed is caught here
//! ([`CheckpointError::RecordsMismatch`]).
//!
//! Several checkpoints can be passed at once (the one the agent persisted
//! and the one a bind answer carries): the follower steps through each in
//! size order, so the new one must extend the persisted one. A checkpoint
//! smaller than what was followed already is checked with the curator's
//! consistency proof against the follower's root.

use std::collections::{HashMap, VecDeque};

use mazu_identity::registry::derive::{IdState, LogFollower, MAX_CLOCK_SKEW_MS};
use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier};
use mazu_log::cosignature::WitnessPolicy;
use mazu_log::merkle::{Hash, verify_consistency};
use mazu_log::record::{LeafRecord, RecordBody};
use sha2::{Digest as _, Sha256};
use tracing::{debug, error, info};

use crate::curator::CuratorClient;
use crate::error::{CheckpointError, CuratorError, Error};

/// The witness settings: a quorum policy, or none (`--insecure-no-witness`).
pub fn witness_policy(
    vkeys: &[String],
    quorum: Option<usize>,
    insecure_no_witness: bool,
) -> Result<Option<WitnessPolicy>, Error> {
    if vkeys.is_empty() {
        if insecure_no_witness {
            return Ok(None);
        }
        return Err(Error::Config(
            "no --witness given: the agent cannot tell a log the curator shows only to it from the one everybody sees; give --witness VKEY (repeatable) or, for development only, --insecure-no-witness".to_owned(),
        ));
    }
    if insecure_no_witness {
        return Err(Error::Config(
            "--insecure-no-witness and --witness exclude each other".to_owned(),
        ));
    }
    let witnesses = vkeys
        .iter()
        .map(|k| {
            mazu_log::WitnessVerifier::parse(k)
                .map_err(|e| Error::Config(format!("--witness {k:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = quorum.unwrap_or(witnesses.len());
    WitnessPolicy::new(witnesses, quorum)
        .map(Some)
        .map_err(|e| Error::Config(format!("--witness / --witness-quorum {quorum}: {e}")))
}

/// Verifies a checkpoint note: the curator's signature with `verifier`
/// (`trust` says how that key came to be trusted), then the witness quorum
/// of `policy` (none: not checked).
pub fn verify_witnessed(
    verifier: &CheckpointVerifier,
    trust: &'static str,
    policy: Option<&WitnessPolicy>,
    note: &str,
) -> Result<Checkpoint, CheckpointError> {
    let checkpoint = crate::transparency::verify_note(verifier, trust, note)?;
    if let Some(policy) = policy {
        policy
            .check(note.as_bytes())
            .map_err(|e| CheckpointError::Unwitnessed {
                reason: e.to_string(),
            })?;
    }
    Ok(checkpoint)
}

/// The first binding of an id, as the log shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstBind {
    /// Its log index.
    pub index: u64,
    /// Its record's Merkle leaf hash; `None` when the view started from a
    /// witnessed state, which gives the index but not the record.
    pub leaf: Option<Hash>,
}

/// The agent's verified view of the curator's log.
#[derive(Debug, Default)]
pub struct LogView {
    follower: LogFollower,
    policy: Option<WitnessPolicy>,
    /// The first bind record of every id seen (index and leaf hash), for
    /// the own-entry tracking of [`crate::transparency`] and the opening
    /// refresh (a neighbour's release needs its bind entry, also after the
    /// follower forgot the id). An id's entry is dropped once the opening
    /// refresh has consumed the log past the id's end
    /// ([`prune_first_binds`](Self::prune_first_binds)), so it follows the
    /// ids bound and not yet ended, plus the refresh's lag.
    first_binds: HashMap<Hash, FirstBind>,
    /// The ends (release or revocation records) seen of ids in
    /// `first_binds`, in log order: `(index, id)`.
    ends: VecDeque<(u64, Hash)>,
}

impl LogView {
    /// A view at the empty log, checking notes with `policy`.
    pub fn new(policy: Option<WitnessPolicy>) -> Self {
        LogView {
            follower: LogFollower::new(),
            policy,
            first_binds: HashMap::new(),
            ends: VecDeque::new(),
        }
    }

    /// The witness policy (`None`: `--insecure-no-witness`).
    pub fn policy(&self) -> Option<&WitnessPolicy> {
        self.policy.as_ref()
    }

    /// Records followed so far.
    pub fn size(&self) -> u64 {
        self.follower.size()
    }

    /// Where `id` stands in the followed log.
    pub fn state(&self, id: &Hash) -> Option<IdState> {
        self.follower.registry().state(id).copied()
    }

    /// The first bind record of `id` in the followed log.
    pub fn first_bind(&self, id: &Hash) -> Option<FirstBind> {
        self.first_binds.get(id).copied()
    }

    /// The registry derived from the followed (witnessed) log: what the
    /// filters' verdict decides with, and what the handshake validator is
    /// handed in its registry file.
    pub fn registry(&self) -> mazu_identity::registry::RegistrySnapshot {
        self.follower.registry().snapshot()
    }

    /// The keys a TLS handshake may accept at `now` (Unix seconds): the
    /// SPKI hash of every id live in the followed log (revealed, neither
    /// released nor revoked) whose token has not expired; sorted, unique.
    /// These are exactly the `spki_hash` values the filters' verdict
    /// accepts, so the pins only narrow what reaches the filter.
    pub fn peer_pins(&self, now: u64) -> Vec<Hash> {
        live_pins(&self.follower.registry().snapshot(), now)
    }

    /// Starts the view at a witnessed state instead of at record 0: the
    /// curator's follower state at `size`, used only if it hashes to
    /// `state_digest` (the state line of a checkpoint of that size the
    /// caller verified, witness quorum included), decodes (every field
    /// checked), and has the checkpoint's size and `root` and no clock past
    /// this agent's. Then the download and the start-up follow the live
    /// registrations, not the history. Only from the empty view. `Ok(false)`
    /// when nothing was done and the records serve instead: the curator no
    /// longer keeps that state, or served one that does not verify (logged
    /// as curator misbehaviour; the records are checked against the root
    /// all the same). `Err` only for transient trouble.
    pub async fn bootstrap(
        &mut self,
        client: &CuratorClient,
        (size, root): (u64, Hash),
        state_digest: &Hash,
    ) -> Result<bool, Error> {
        if self.size() != 0 || size == 0 {
            return Ok(false);
        }
        let body = match client.follower_state(size).await {
            Ok(body) => body,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                debug!(size, error = %e, "no follower state from the curator; following the records from 0");
                return Ok(false);
            }
        };
        let follower = match verify_state(&body, size, &root, state_digest) {
            Ok(follower) => follower,
            Err(reason) => {
                error!(
                    size,
                    "CURATOR MISBEHAVIOUR? the follower state it served for a witnessed \
                     checkpoint {reason}; not used, following the log's records from 0 instead"
                );
                return Ok(false);
            }
        };
        // The ids bound before `size` that can still end: their bind index
        // is in the state (the opening refresh needs it for their end).
        for (id, state) in follower.registry().iter() {
            if let IdState::Bound { bound_at, .. } | IdState::Live { bound_at, .. } = *state {
                self.first_binds.insert(
                    *id,
                    FirstBind {
                        index: bound_at,
                        leaf: None,
                    },
                );
            }
        }
        info!(
            size,
            ids = follower.registry().ids_held(),
            "following the log from its witnessed state (not from record 0)"
        );
        self.follower = follower;
        Ok(true)
    }

    /// Follows the log through the verified checkpoints `points` (size and
    /// root; any order). `Err(Error::Checkpoint)` is a refusal (the records
    /// or a consistency proof do not match: nothing changed beyond the
    /// checkpoints that did); other errors are transient.
    pub async fn advance(
        &mut self,
        client: &CuratorClient,
        points: &[(u64, Hash)],
    ) -> Result<(), Error> {
        let mut points = points.to_vec();
        points.sort_unstable_by_key(|(size, _)| *size);
        points.dedup();
        for pair in points.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(CheckpointError::Fork {
                    size: pair[0].0,
                    remembered_root: hex::encode(pair[0].1),
                    offered_root: hex::encode(pair[1].1),
                }
                .into());
            }
        }
        let start = self.size();
        // Behind the follower: only a consistency proof can tie it in.
        for (size, root) in points.iter().filter(|(s, _)| *s <= start) {
            self.check_behind(client, *size, root).await?;
        }
        let Some(&(end, _)) = points.last().filter(|(s, _)| *s > start) else {
            return Ok(());
        };
        let records = client.records(start, end).await?;
        if records.len() as u64 != end - start {
            return Err(CuratorError::Malformed {
                what: "GET /v1/log/records".to_owned(),
                reason: format!(
                    "{} records where {} were expected",
                    records.len(),
                    end - start
                ),
            }
            .into());
        }
        let mut at = start;
        for (size, root) in points.iter().filter(|(s, _)| *s > start) {
            let from = usize::try_from(at - start).unwrap_or(usize::MAX);
            let to = usize::try_from(*size - start).unwrap_or(usize::MAX);
            let slice = records.get(from..to).unwrap_or_default();
            // The agent's own clock bounds the records' times.
            self.follower
                .extend(slice, *size, root, now_ms())
                .map_err(|e| CheckpointError::RecordsMismatch {
                    size: *size,
                    reason: e.to_string(),
                })?;
            self.note_binds(at, slice);
            at = *size;
        }
        Ok(())
    }

    /// A checkpoint of `size` ≤ the followed size: the same root, or a
    /// consistency proof from it to the followed tree.
    async fn check_behind(
        &self,
        client: &CuratorClient,
        size: u64,
        root: &Hash,
    ) -> Result<(), Error> {
        let (now, now_root) = (self.size(), self.follower.root());
        if size == now {
            if *root == now_root {
                return Ok(());
            }
            return Err(CheckpointError::Fork {
                size,
                remembered_root: hex::encode(now_root),
                offered_root: hex::encode(root),
            }
            .into());
        }
        if size == 0 {
            return Ok(());
        }
        let proof = match client.consistency_proof(size, now).await {
            Ok(p) => p,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                return Err(CheckpointError::Inconsistent {
                    from: size,
                    to: now,
                    reason: format!("the curator has no proof: {e}"),
                }
                .into());
            }
        };
        verify_consistency(size, now, root, &now_root, &proof).map_err(|e| {
            CheckpointError::Inconsistent {
                from: size,
                to: now,
                reason: format!("the proof does not verify: {e}"),
            }
            .into()
        })
    }

    fn note_binds(&mut self, start: u64, records: &[LeafRecord]) {
        for (i, record) in records.iter().enumerate() {
            let index = start + i as u64;
            match record.body {
                RecordBody::Bind { .. } => {
                    self.first_binds.entry(record.id).or_insert(FirstBind {
                        index,
                        leaf: Some(record.leaf_hash()),
                    });
                }
                RecordBody::Release { .. } | RecordBody::Revoke
                    if self.first_binds.contains_key(&record.id) =>
                {
                    self.ends.push_back((index, record.id));
                }
                _ => {}
            }
        }
    }

    /// Drops the first binds of the ids whose end is before log index
    /// `consumed`, the position the opening refresh has applied the log up
    /// to: it will never look for them again (an id is never bound again
    /// after its end; a bind the log shows anyway is noted afresh).
    /// Returns how many were dropped.
    pub fn prune_first_binds(&mut self, consumed: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(index, id)) = self.ends.front()
            && index < consumed
        {
            self.ends.pop_front();
            if self
                .first_binds
                .get(&id)
                .is_some_and(|bind| bind.index < index)
            {
                self.first_binds.remove(&id);
                dropped += 1;
            }
        }
        dropped
    }

    /// Remembers the leaf hash of `id`'s first bind at `index`, fetched
    /// after a start from a witnessed state.
    pub fn note_first_bind_leaf(&mut self, id: &Hash, index: u64, leaf: Hash) {
        if let Some(first) = self.first_binds.get_mut(id)
            && first.index == index
        {
            first.leaf = Some(leaf);
        }
    }

    /// How many first binds are held (ids bound and not yet pruned).
    pub fn first_binds_held(&self) -> usize {
        self.first_binds.len()
    }
}

/// A follower state `body` checked against a verified checkpoint of `size`
/// and `root` whose state line is `digest`: the follower, or why not.
fn verify_state(body: &[u8], size: u64, root: &Hash, digest: &Hash) -> Result<LogFollower, String> {
    if <[u8; 32]>::from(Sha256::digest(body)) != *digest {
        return Err("does not hash to the checkpoint's state line".to_owned());
    }
    let follower = LogFollower::decode_state(body).map_err(|e| format!("does not decode ({e})"))?;
    if follower.size() != size || follower.root() != *root {
        return Err("has another size or root than the checkpoint".to_owned());
    }
    if follower.registry().clock_ms() > now_ms().saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err("has a clock ahead of this agent's".to_owned());
    }
    Ok(follower)
}

/// The SPKI hashes of the entries of `registry` that are live at `now`
/// (not revoked, token not expired), sorted and unique.
pub fn live_pins(registry: &mazu_identity::registry::RegistrySnapshot, now: u64) -> Vec<Hash> {
    let mut pins: Vec<Hash> = registry
        .entries()
        .iter()
        .filter(|e| !e.revoked && e.token_expiry > now)
        .map(|e| *e.spki_hash.as_bytes())
        .collect();
    pins.sort_unstable();
    pins.dedup();
    pins
}

/// How `id` stands in the followed log relative to this agent's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The first binding is this agent's (same slot and key); `live` once
    /// the token is revealed.
    Mine {
        /// The bind record's index.
        bound_at: u64,
        /// Whether the token was revealed.
        live: bool,
    },
    /// Another key was bound first.
    Other {
        /// SHA-256 of that key's SPKI.
        spki_hash: Hash,
        /// Its bind record's index.
        bound_at: u64,
    },
    /// The id was bound but has ended (released or revoked).
    Ended,
    /// The log does not know the id.
    Absent,
}

/// Now, Unix milliseconds (0 before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A binding this agent made: what its bind record must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnBinding {
    /// The slot.
    pub slot: u32,
    /// SHA-256 of the TLS key's SPKI.
    pub spki_hash: Hash,
    /// The token expiry committed to (a curator that logs another one,
    /// which its proof of possession does not cover, could have the id
    /// forgotten early: the binding is not this agent's).
    pub token_expiry: u64,
}

/// Judges `state` (from [`LogView::state`]) against this agent's binding.
pub fn standing(state: Option<IdState>, own: &OwnBinding) -> Standing {
    let (s, h, e, bound_at, live) = match state {
        None => return Standing::Absent,
        Some(IdState::Bound {
            slot,
            spki_hash,
            bound_at,
            token_expiry,
        }) => (slot, spki_hash, token_expiry, bound_at, false),
        Some(IdState::Live {
            slot,
            spki_hash,
            bound_at,
            token_expiry,
        }) => (slot, spki_hash, token_expiry, bound_at, true),
        Some(IdState::Revoked { .. } | IdState::Released { .. }) => return Standing::Ended,
    };
    if h == own.spki_hash && s == own.slot && e == own.token_expiry {
        Standing::Mine { bound_at, live }
    } else {
        Standing::Other {
            spki_hash: h,
            bound_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use mazu_log::checkpoint::CheckpointSigner;
    use mazu_log::cosignature::CosignatureSigner;

    use super::*;

    fn policy(witnesses: &[&CosignatureSigner], quorum: usize) -> WitnessPolicy {
        WitnessPolicy::new(witnesses.iter().map(|w| w.verifier()).collect(), quorum)
            .expect("policy")
    }

    fn cosigned(note: &str, by: &[&CosignatureSigner]) -> String {
        let text = &note[..note.find("\n\n").expect("note text") + 1];
        let cp = Checkpoint::parse_body(text).expect("body");
        let lines: Vec<String> = by
            .iter()
            .map(|w| w.cosign(&cp, 1_700_000_000).expect("cosign"))
            .collect();
        mazu_log::cosignature::append_cosignatures(note, &lines).expect("append")
    }

    #[test]
    fn a_checkpoint_below_the_quorum_is_refused() {
        let log = CheckpointSigner::new("test/log", &[1; 32]).expect("signer");
        let w1 = CosignatureSigner::new("w1.example", &[2; 32]).expect("w1");
        let w2 = CosignatureSigner::new("w2.example", &[3; 32]).expect("w2");
        let note = log.sign(3, &[7; 32]);
        let both = policy(&[&w1, &w2], 2);
        // Curator-signed only, then one of two: refused.
        let e = verify_witnessed(&log.verifier(), "pinned", Some(&both), &note)
            .expect_err("no cosignature");
        assert_eq!(e.kind(), "unwitnessed");
        let one = cosigned(&note, &[&w1]);
        let e =
            verify_witnessed(&log.verifier(), "pinned", Some(&both), &one).expect_err("one of two");
        assert_eq!(e.kind(), "unwitnessed");
        // Both: accepted; a quorum of 1 accepts one.
        let two = cosigned(&note, &[&w1, &w2]);
        let cp = verify_witnessed(&log.verifier(), "pinned", Some(&both), &two).expect("two");
        assert_eq!(cp.size, 3);
        verify_witnessed(
            &log.verifier(),
            "pinned",
            Some(&policy(&[&w1, &w2], 1)),
            &one,
        )
        .expect("quorum 1");
        // Cosigned but by another log key: the curator signature fails first.
        let other = CheckpointSigner::new("test/log", &[9; 32]).expect("signer");
        let e = verify_witnessed(&other.verifier(), "pinned", Some(&both), &two)
            .expect_err("other log key");
        assert_eq!(e.kind(), "bad_signature");
    }

    #[test]
    fn the_witness_settings_are_checked() {
        let w1 = CosignatureSigner::new("w1.example", &[2; 32]).expect("w1");
        let w2 = CosignatureSigner::new("w2.example", &[3; 32]).expect("w2");
        let keys = vec![w1.verifier().to_vkey(), w2.verifier().to_vkey()];
        // No witness without the explicit development flag: refused.
        assert!(matches!(
            witness_policy(&[], None, false),
            Err(Error::Config(_))
        ));
        assert_eq!(witness_policy(&[], None, true).expect("insecure"), None);
        assert!(matches!(
            witness_policy(&keys, None, true),
            Err(Error::Config(_))
        ));
        // Default quorum: all.
        let p = witness_policy(&keys, None, false)
            .expect("policy")
            .expect("some");
        assert_eq!(p.quorum, 2);
        assert!(matches!(
            witness_policy(&keys, Some(3), false),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            witness_policy(&keys, Some(0), false),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            witness_policy(&["nonsense".to_owned()], None, false),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn first_binds_are_dropped_once_the_opening_refresh_is_past_their_end() {
        use mazu_log::record::ReleaseReason;
        let record = |id: u8, body: RecordBody| LeafRecord {
            at_ms: 1,
            id: [id; 32],
            entry_digest: [0; 32],
            body,
        };
        let bind = |id: u8| {
            record(
                id,
                RecordBody::Bind {
                    slot: u32::from(id),
                    spki_hash: [id; 32],
                    token_expiry: 2_000,
                },
            )
        };
        let mut view = LogView::new(None);
        view.note_binds(
            0,
            &[
                bind(1),
                record(
                    1,
                    RecordBody::Reveal {
                        token_expiry: 2_000,
                    },
                ),
                bind(2),
                record(
                    1,
                    RecordBody::Release {
                        reason: ReleaseReason::Holder,
                    },
                ),
                // An end of an id never bound here: nothing to drop.
                record(9, RecordBody::Revoke),
                record(2, RecordBody::Revoke),
                bind(3),
            ],
        );
        assert_eq!(view.first_binds_held(), 3);
        // The refresh has not applied id 1's release (index 3) yet.
        assert_eq!(view.prune_first_binds(3), 0);
        assert_eq!(view.first_bind(&[1; 32]).map(|b| b.index), Some(0));
        assert_eq!(view.prune_first_binds(4), 1);
        assert_eq!(view.first_bind(&[1; 32]), None);
        assert_eq!(view.first_bind(&[2; 32]).map(|b| b.index), Some(2));
        // Past every end: only the id still bound is kept.
        assert_eq!(view.prune_first_binds(100), 1);
        assert_eq!(view.first_binds_held(), 1);
        assert_eq!(view.first_bind(&[3; 32]).map(|b| b.index), Some(6));
        // A bind the log shows later for a dropped id is noted afresh.
        view.note_binds(7, &[bind(1)]);
        assert_eq!(view.first_bind(&[1; 32]).map(|b| b.index), Some(7));
    }

    #[test]
    fn a_follower_state_is_used_only_if_it_is_the_witnessed_one() {
        let mut log = LogFollower::new();
        for body in [
            RecordBody::Bind {
                slot: 0,
                spki_hash: [5; 32],
                token_expiry: 4_000_000_000,
            },
            RecordBody::Reveal {
                token_expiry: 4_000_000_000,
            },
        ] {
            let record = LeafRecord {
                at_ms: 1,
                id: [1; 32],
                entry_digest: [0; 32],
                body,
            };
            log.append_own(&record).expect("append");
        }
        let state = log.encode_state();
        let digest: Hash = Sha256::digest(&state).into();
        let root = log.root();
        let read = verify_state(&state, 2, &root, &digest).expect("the witnessed state");
        assert_eq!(read.registry().snapshot(), log.registry().snapshot());
        let refused = |body: &[u8], size, root: &Hash, digest: &Hash| {
            verify_state(body, size, root, digest).expect_err("refused")
        };
        assert!(refused(&state, 2, &root, &[0; 32]).contains("state line"));
        assert!(refused(&state, 2, &[9; 32], &digest).contains("size or root"));
        assert!(refused(&state, 3, &root, &digest).contains("size or root"));
        // Garbage that hashes to its own line still has to decode.
        let garbage = b"not a state".to_vec();
        let garbage_digest: Hash = Sha256::digest(&garbage).into();
        assert!(refused(&garbage, 2, &root, &garbage_digest).contains("decode"));
        // A clock far ahead of this agent's (bytes 5..13), under its own line.
        let mut ahead = state.clone();
        ahead[5..13].copy_from_slice(&u64::MAX.to_be_bytes());
        let ahead_digest: Hash = Sha256::digest(&ahead).into();
        assert!(refused(&ahead, 2, &root, &ahead_digest).contains("clock"));
    }

    #[test]
    fn only_live_unexpired_unrevoked_keys_are_pinned() {
        use mazu_identity::digest::{SpkiHash, WorkloadId};
        use mazu_identity::registry::{RegistryEntry, RegistrySnapshot};
        let entry = |id: u8, key: u8, token_expiry, revoked| RegistryEntry {
            workload_id: WorkloadId::from_bytes([id; 32]),
            slot: u32::from(id),
            spki_hash: SpkiHash::from_bytes([key; 32]),
            token_expiry,
            revoked,
        };
        let registry = RegistrySnapshot::from_entries(
            9,
            vec![
                entry(1, 5, 2_000, false),
                entry(2, 3, 2_000, false),
                // Revoked: its key is not pinned, even before its expiry.
                entry(3, 7, 2_000, true),
                // Token expired at `now`.
                entry(4, 8, 1_000, false),
                // Another id bound to the same key: one pin.
                entry(5, 5, 3_000, false),
            ],
        )
        .expect("snapshot");
        assert_eq!(live_pins(&registry, 1_000), vec![[3; 32], [5; 32]]);
        assert_eq!(live_pins(&registry, 2_500), vec![[5; 32]]);
        assert!(live_pins(&RegistrySnapshot::empty(), 0).is_empty());
    }

    #[test]
    fn standing_compares_slot_key_and_expiry() {
        let mine = OwnBinding {
            slot: 2,
            spki_hash: [1; 32],
            token_expiry: 5_000,
        };
        let bound = |slot, spki_hash, token_expiry| {
            Some(IdState::Bound {
                slot,
                spki_hash,
                bound_at: 4,
                token_expiry,
            })
        };
        assert_eq!(
            standing(bound(2, [1; 32], 5_000), &mine),
            Standing::Mine {
                bound_at: 4,
                live: false
            }
        );
        assert_eq!(
            standing(bound(2, [9; 32], 5_000), &mine),
            Standing::Other {
                spki_hash: [9; 32],
                bound_at: 4
            }
        );
        // Same key in another slot is not this agent's binding either.
        assert!(matches!(
            standing(bound(3, [1; 32], 5_000), &mine),
            Standing::Other { .. }
        ));
        // Nor with another expiry than the one it signed: a curator that
        // logs an earlier one could have the id forgotten while the token
        // is still valid.
        assert!(matches!(
            standing(bound(2, [1; 32], 4_000), &mine),
            Standing::Other { .. }
        ));
        assert_eq!(standing(None, &mine), Standing::Absent);
    }
}
