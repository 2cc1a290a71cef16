//! The block commitment an encryptor uses, recomputed from the witnessed
//! log instead of taken from the curator's `GET /v1/params`.
//!
//! A curator that serves `C_k = a·h_i` for the recipient's block (it knows
//! `a`) recovers the message key of every ciphertext made under it. The
//! parameters are covered by no checkpoint, so `mazu-agent encrypt`
//! recomputes the commitment from what is:
//!
//! 1. a checkpoint verified with the curator's key and the witness quorum
//!    ([`crate::follow::verify_witnessed`]);
//! 2. the leaf records up to its size, applied by a
//!    [`LogFollower`] (their leaves must give its root), which says where
//!    the recipient stands and which binding holds each slot;
//! 3. for each slot of the recipient's block, the full bind entry of the
//!    binding that holds it (`GET /v1/log?start=i&limit=1`), whose record
//!    must be the verified record at `i` ([`check_holder_entry`]), whose RBE
//!    registration must be for that id and slot and well formed (the same
//!    check the curator and `mazu-audit` run);
//! 4. `C_k` = the sum of those registrations' public keys
//!    ([`block_commitment`]): exactly how `mazu_rbe::RegistryState` builds
//!    it (`C_k += pk` at each registration of the block).
//!
//! The served commitment for the block must equal the recomputed one
//! ([`CommitmentError::CommitmentMismatch`] otherwise); the message is
//! encrypted to the recomputed one. Cost: every record (~110 bytes each)
//! once, and one full entry plus one well-formedness check (a batched
//! pairing check, O(n)) per holder of the recipient's block only.
//!
//! **Who may be encrypted to.** Only an id whose binding is *live* (bound
//! and revealed). A bound but unrevealed id is refused
//! ([`CommitmentError::Unrevealed`]): anyone who saw the id, the curator
//! included, can bind it first (a front-run), and the token holder reveals
//! only when its own binding came first, so until the reveal the slot's key
//! may be the curator's. Unknown, released and revoked ids hold no key of
//! the token holder and are refused too.

use std::collections::BTreeMap;

use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_identity::registry::derive::{DerivedRegistry, IdState, LogFollower, VoidRecord};
use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier};
use mazu_log::cosignature::WitnessPolicy;
use mazu_log::merkle::Hash;
use mazu_log::record::{LeafRecord, RecordBody};
use mazu_rbe::bls12_381_plus::{G1Affine, G1Projective};
use mazu_rbe::{Crs, Dimensions, PublicParams, Registration};
use tracing::warn;

use crate::curator::CuratorClient;
use crate::error::{CheckpointError, CuratorError, Error};

/// Why the block commitment could not be established from the witnessed
/// log, or why the curator's differs. Each is a refusal to encrypt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitmentError {
    /// The witnessed log has no binding of the recipient's id.
    #[error("id {id} has no binding in the witnessed log (size {size})")]
    UnknownRecipient {
        /// Hex id.
        id: String,
        /// The checkpoint size followed.
        size: u64,
    },
    /// Bound but not revealed: the binding may be a front-run by whoever
    /// saw the id (the curator included), not the token holder's.
    #[error(
        "id {id} is bound (log index {bound_at}) but its token was never revealed: the key may not be the token holder's"
    )]
    Unrevealed {
        /// Hex id.
        id: String,
        /// The bind record's index.
        bound_at: u64,
    },
    /// The binding was released: its slot may hold someone else.
    #[error("id {id} was released: it holds no slot")]
    Released {
        /// Hex id.
        id: String,
    },
    /// The binding was revoked by its holder.
    #[error("id {id} was revoked by its holder: it holds no slot")]
    Revoked {
        /// Hex id.
        id: String,
    },
    /// The full entry served at `index` is not the one the witnessed record
    /// summarizes (or is no bind of the holder).
    #[error("the log entry served at index {index} is not the witnessed one: {reason}")]
    EntryMismatch {
        /// Log index.
        index: u64,
        /// What differs.
        reason: String,
    },
    /// The witnessed bind entry carries an RBE registration that does not
    /// decode, names another id or slot, or is not well formed.
    #[error("the registration bound at log index {index} is unusable: {reason}")]
    BadRegistration {
        /// Log index.
        index: u64,
        /// Why.
        reason: String,
    },
    /// The curator's parameters are for another CRS or other dimensions
    /// than the pinned CRS.
    #[error("the curator's parameters are not for the CRS being used")]
    ParamsForAnotherCrs,
    /// The recipient's slot is outside the CRS's capacity.
    #[error("slot {slot} is outside the CRS's capacity")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
    },
    /// The curator serves another commitment for the recipient's block than
    /// the one the witnessed log gives: refused (a curator knowing the
    /// discrete log of the commitment it serves reads the message).
    #[error(
        "the curator's parameters (version {served_version}) give block {block} the commitment {served}, the witnessed log (size {log_size}, {log_version} registrations) gives {recomputed}: refusing them (commitment_mismatch)"
    )]
    CommitmentMismatch {
        /// The recipient's block.
        block: u32,
        /// Hex of the served commitment (compressed).
        served: String,
        /// Hex of the recomputed commitment (compressed).
        recomputed: String,
        /// The served parameters' version.
        served_version: u64,
        /// The checkpoint size followed.
        log_size: u64,
        /// RBE operations (effective binds, releases, revocations) in it.
        log_version: u64,
    },
}

impl CommitmentError {
    /// A short stable name (`commitment_mismatch`, `unrevealed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CommitmentError::UnknownRecipient { .. } => "unknown_recipient",
            CommitmentError::Unrevealed { .. } => "unrevealed",
            CommitmentError::Released { .. } => "released",
            CommitmentError::Revoked { .. } => "revoked",
            CommitmentError::EntryMismatch { .. } => "entry_mismatch",
            CommitmentError::BadRegistration { .. } => "bad_registration",
            CommitmentError::ParamsForAnotherCrs => "params_for_another_crs",
            CommitmentError::SlotOutOfRange { .. } => "slot_out_of_range",
            CommitmentError::CommitmentMismatch { .. } => "commitment_mismatch",
        }
    }
}

/// How the encryptor trusts the log: the curator's checkpoint key (pinned,
/// or `None`: the one it serves now) and the witness quorum (`None`:
/// `--insecure-no-witness`).
#[derive(Clone, Debug, Default)]
pub struct LogTrust {
    /// `--checkpoint-key` (C2SP vkey).
    pub checkpoint_key: Option<String>,
    /// The witness quorum.
    pub policy: Option<WitnessPolicy>,
}

/// Where the recipient stands: its slot and token expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Its slot.
    pub slot: u32,
    /// Index of its bind record.
    pub bound_at: u64,
    /// The revealed token's `exp` (Unix seconds).
    pub token_expiry: u64,
}

/// Judges the recipient's state in the witnessed log (see the
/// [module docs](self) for why only a live id is accepted).
pub fn recipient(
    registry: &DerivedRegistry,
    id: &Hash,
    size: u64,
) -> Result<Recipient, CommitmentError> {
    let id_hex = || hex::encode(id);
    match registry.state(id) {
        None => Err(CommitmentError::UnknownRecipient { id: id_hex(), size }),
        Some(IdState::Bound { bound_at, .. }) => Err(CommitmentError::Unrevealed {
            id: id_hex(),
            bound_at: *bound_at,
        }),
        Some(IdState::Released { .. }) => Err(CommitmentError::Released { id: id_hex() }),
        Some(IdState::Revoked { .. }) => Err(CommitmentError::Revoked { id: id_hex() }),
        Some(IdState::Live {
            slot,
            bound_at,
            token_expiry,
            ..
        }) => Ok(Recipient {
            slot: *slot,
            bound_at: *bound_at,
            token_expiry: *token_expiry,
        }),
    }
}

/// A binding holding a slot of the block: slot, id and its bind record's
/// index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The slot.
    pub slot: u32,
    /// The id holding it.
    pub id: Hash,
    /// Index of its bind record (the entry carrying its RBE key).
    pub bound_at: u64,
}

/// Every binding (bound or live: both are in the RBE state since bind time)
/// holding a slot of `block`, in slot order.
pub fn block_holders(registry: &DerivedRegistry, dims: Dimensions, block: u32) -> Vec<Holder> {
    (1..=dims.block_size())
        .filter_map(|position| dims.slot_at(block, position))
        .filter_map(|slot| {
            let id = *registry.slot_holder(slot)?;
            let bound_at = match registry.state(&id)? {
                IdState::Bound { bound_at, .. } | IdState::Live { bound_at, .. } => *bound_at,
                IdState::Released { .. } | IdState::Revoked { .. } => return None,
            };
            Some(Holder { slot, id, bound_at })
        })
        .collect()
}

/// Checks the full entry served for `holder` against the verified record at
/// its index and returns its RBE registration, checked well formed under
/// `crs` (proof of knowledge over the slot's base included: without it a
/// logged key `a·h_i - pk` would set the commitment to `a·h_i`).
pub fn check_holder_entry(
    crs: &Crs,
    holder: &Holder,
    verified: &LeafRecord,
    entry_bytes: &[u8],
) -> Result<Registration, CommitmentError> {
    let index = holder.bound_at;
    let mismatch = |reason: String| CommitmentError::EntryMismatch { index, reason };
    let entry = LogEntry::from_bytes(entry_bytes).map_err(|e| mismatch(e.to_string()))?;
    let record = entry
        .record(entry_bytes)
        .map_err(|e| mismatch(e.to_string()))?;
    if record != *verified {
        return Err(mismatch(
            "its record differs from the witnessed record".to_owned(),
        ));
    }
    if verified.id != holder.id
        || !matches!(verified.body, RecordBody::Bind { slot, .. } if slot == holder.slot)
    {
        return Err(mismatch(format!(
            "the witnessed record there is not the bind of slot {}",
            holder.slot
        )));
    }
    let EntryBody::Bind { registration, .. } = &entry.body else {
        return Err(mismatch("not a bind entry".to_owned()));
    };
    let bad = |reason: String| CommitmentError::BadRegistration { index, reason };
    let registration = Registration::from_bytes(registration).map_err(|e| bad(e.to_string()))?;
    if registration.id != holder.id || registration.slot != holder.slot {
        return Err(bad(format!(
            "it is for slot {} of id {}, the binding is slot {} of id {}",
            registration.slot,
            hex::encode(registration.id),
            holder.slot,
            hex::encode(holder.id)
        )));
    }
    registration
        .verify_well_formed(crs)
        .map_err(|e| bad(e.to_string()))?;
    Ok(registration)
}

/// `C_k` = the sum of the public keys registered in the block (the
/// identity for none), as `mazu_rbe::RegistryState` computes it.
pub fn block_commitment<'a>(registrations: impl IntoIterator<Item = &'a Registration>) -> G1Affine {
    let sum = registrations
        .into_iter()
        .fold(G1Projective::IDENTITY, |sum, r| sum + r.public_key);
    G1Affine::from(sum)
}

/// Whether the served parameters agree with the recomputed commitment of
/// `block` (and are for `crs`).
pub fn judge_served(
    crs: &Crs,
    params: &PublicParams,
    block: u32,
    recomputed: &G1Affine,
    log_size: u64,
    log_version: u64,
) -> Result<(), CommitmentError> {
    if params.crs_digest() != crs.digest() || params.dimensions() != crs.dimensions() {
        return Err(CommitmentError::ParamsForAnotherCrs);
    }
    let served = params
        .commitment(block)
        .copied()
        .unwrap_or(G1Affine::identity());
    if served == *recomputed {
        return Ok(());
    }
    Err(CommitmentError::CommitmentMismatch {
        block,
        served: hex::encode(served.to_compressed()),
        recomputed: hex::encode(recomputed.to_compressed()),
        served_version: params.version(),
        log_size,
        log_version,
    })
}

/// RBE operations among `records` (the curator's parameter version counts
/// them): binds, releases and revocations that were not void.
pub fn rbe_operations(records: &[LeafRecord], void: &[VoidRecord], start: u64) -> u64 {
    let void: std::collections::BTreeSet<u64> = void.iter().map(|v| v.index).collect();
    records
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            !void.contains(&(start + *i as u64)) && !matches!(r.body, RecordBody::Reveal { .. })
        })
        .count() as u64
}

/// The encryptor's view of the witnessed log, moved forward checkpoint by
/// checkpoint (each must extend the previous).
#[derive(Debug, Default)]
pub struct WitnessedLog {
    follower: LogFollower,
    records: Vec<LeafRecord>,
    operations: u64,
    /// Registrations checked so far, by bind index.
    checked: BTreeMap<u64, Registration>,
}

impl WitnessedLog {
    /// The derived registry.
    pub fn registry(&self) -> &DerivedRegistry {
        self.follower.registry()
    }

    /// Records followed.
    pub fn size(&self) -> u64 {
        self.follower.size()
    }

    /// RBE operations in the followed log.
    pub fn operations(&self) -> u64 {
        self.operations
    }

    /// Fetches the newest checkpoint, verifies it under `trust`, and
    /// follows the records up to it. `Error::Checkpoint` is a refusal.
    pub async fn advance(
        &mut self,
        client: &CuratorClient,
        trust: &LogTrust,
    ) -> Result<Checkpoint, Error> {
        let (verifier, how) = match &trust.checkpoint_key {
            Some(k) => (
                CheckpointVerifier::parse(k)
                    .map_err(|e| Error::Config(format!("--checkpoint-key {k:?}: {e}")))?,
                "pinned",
            ),
            None => {
                let served = client.checkpoint_key().await?;
                let verifier =
                    CheckpointVerifier::parse(&served).map_err(|e| CuratorError::Malformed {
                        what: "GET /v1/checkpoint/key".to_owned(),
                        reason: e.to_string(),
                    })?;
                (verifier, "served by the curator (not pinned)")
            }
        };
        let note = client.checkpoint().await?;
        let checkpoint =
            crate::follow::verify_witnessed(&verifier, how, trust.policy.as_ref(), &note)?;
        let start = self.size();
        if checkpoint.size < start {
            return Err(CheckpointError::Rollback {
                remembered: start,
                offered: checkpoint.size,
            }
            .into());
        }
        if checkpoint.size == start && checkpoint.root == self.follower.root() {
            return Ok(checkpoint);
        }
        let records = client.records(start, checkpoint.size).await?;
        let void = self
            .follower
            .extend(
                &records,
                checkpoint.size,
                &checkpoint.root,
                crate::follow::now_ms(),
            )
            .map_err(|e| CheckpointError::RecordsMismatch {
                size: checkpoint.size,
                reason: e.to_string(),
            })?;
        self.operations += rbe_operations(&records, &void, start);
        self.records.extend(records);
        Ok(checkpoint)
    }

    /// The recomputed commitment of `block`: fetches and checks the bind
    /// entry of every holder not checked before.
    pub async fn commitment(
        &mut self,
        client: &CuratorClient,
        crs: &Crs,
        block: u32,
    ) -> Result<G1Affine, EncryptError> {
        let holders = block_holders(self.registry(), crs.dimensions(), block);
        for holder in &holders {
            if self.checked.contains_key(&holder.bound_at) {
                continue;
            }
            let index = holder.bound_at;
            let verified = usize::try_from(index)
                .ok()
                .and_then(|i| self.records.get(i))
                .copied()
                .ok_or_else(|| CommitmentError::EntryMismatch {
                    index,
                    reason: "beyond the followed records".to_owned(),
                })?;
            let (_, entries) = client.log_entries(index, 1).await?;
            let bytes = match entries.as_slice() {
                [(i, bytes)] if *i == index => bytes.clone(),
                _ => {
                    return Err(CommitmentError::EntryMismatch {
                        index,
                        reason: format!("{} entries served where one was asked for", entries.len()),
                    }
                    .into());
                }
            };
            let (crs2, holder2) = (crs.clone(), *holder);
            // The well-formedness check is pairing work: off the executor.
            let registration = tokio::task::spawn_blocking(move || {
                check_holder_entry(&crs2, &holder2, &verified, &bytes)
            })
            .await
            .map_err(|e| CommitmentError::BadRegistration {
                index,
                reason: format!("the check did not complete: {e}"),
            })??;
            self.checked.insert(index, registration);
        }
        Ok(block_commitment(
            holders.iter().filter_map(|h| self.checked.get(&h.bound_at)),
        ))
    }
}

/// What `encrypt_to_id` fails with: the agent's errors, or a refusal of the
/// commitment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The block commitment (or the recipient) was refused.
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
    /// Anything else (the curator, the checkpoint, configuration).
    #[error(transparent)]
    Agent(#[from] Error),
}

impl From<CuratorError> for EncryptError {
    fn from(e: CuratorError) -> Self {
        EncryptError::Agent(e.into())
    }
}

impl From<CheckpointError> for EncryptError {
    fn from(e: CheckpointError) -> Self {
        EncryptError::Agent(e.into())
    }
}

impl From<crate::error::CryptError> for EncryptError {
    fn from(e: crate::error::CryptError) -> Self {
        EncryptError::Agent(e.into())
    }
}

/// Warns when the recipient's token has expired (its key still holds the
/// slot until the binding is released, so this is not refused).
pub fn warn_if_expired(recipient: &Recipient, now: u64) {
    if recipient.token_expiry < now {
        warn!(
            slot = recipient.slot,
            token_expiry = recipient.token_expiry,
            "the recipient's token has expired; its agent may have moved to a new id"
        );
    }
}

#[cfg(test)]
mod tests {
    use mazu_log::record::ReleaseReason;

    use super::*;

    fn bind(id: u8, slot: u32) -> LeafRecord {
        LeafRecord {
            at_ms: 1,
            id: [id; 32],
            entry_digest: [0; 32],
            body: RecordBody::Bind {
                slot,
                spki_hash: [id; 32],
                token_expiry: 2_000_000_000,
            },
        }
    }

    fn with_body(id: u8, body: RecordBody) -> LeafRecord {
        LeafRecord {
            at_ms: 1,
            id: [id; 32],
            entry_digest: [0; 32],
            body,
        }
    }

    #[test]
    fn only_a_live_recipient_is_accepted() {
        let mut registry = DerivedRegistry::new();
        let records = [
            bind(1, 0),
            with_body(
                1,
                RecordBody::Reveal {
                    token_expiry: 2_000_000_000,
                },
            ),
            bind(2, 1),
            bind(3, 2),
            with_body(
                3,
                RecordBody::Release {
                    reason: ReleaseReason::Unrevealed,
                },
            ),
            bind(4, 3),
            with_body(
                4,
                RecordBody::Reveal {
                    token_expiry: 2_000_000_000,
                },
            ),
            with_body(4, RecordBody::Revoke),
        ];
        assert!(registry.apply_all(&records).is_empty());
        assert_eq!(
            recipient(&registry, &[1; 32], 8).expect("live"),
            Recipient {
                slot: 0,
                bound_at: 0,
                token_expiry: 2_000_000_000
            }
        );
        let kind = |id: u8| {
            recipient(&registry, &[id; 32], 8)
                .expect_err("refused")
                .kind()
        };
        assert_eq!(kind(2), "unrevealed");
        assert_eq!(kind(3), "released");
        assert_eq!(kind(4), "revoked");
        assert_eq!(kind(5), "unknown_recipient");
        // Reveals do not count as RBE operations; binds and endings do.
        assert_eq!(rbe_operations(&records, &[], 0), 6);
    }

    #[test]
    fn holders_are_the_block_s_bound_and_live_bindings() {
        let dims = Dimensions::for_capacity(16).expect("dims");
        let n = dims.block_size();
        let mut registry = DerivedRegistry::new();
        let records = [
            bind(1, 0),
            bind(2, n - 1),
            bind(3, n),
            with_body(2, RecordBody::Revoke),
            bind(4, 1),
        ];
        assert!(registry.apply_all(&records).is_empty());
        let holders = block_holders(&registry, dims, 0);
        assert_eq!(
            holders,
            vec![
                Holder {
                    slot: 0,
                    id: [1; 32],
                    bound_at: 0
                },
                Holder {
                    slot: 1,
                    id: [4; 32],
                    bound_at: 4
                },
            ]
        );
        assert_eq!(block_holders(&registry, dims, 1).len(), 1);
    }

    /// The recomputed commitment is the curator's (same registrations, any
    /// order); a served commitment that differs is refused by name.
    #[test]
    fn the_recomputed_commitment_is_the_state_s_and_a_forged_one_is_refused() {
        let mut rng = rand::rngs::OsRng;
        let crs = Crs::generate_insecure_dev(16, &mut rng).expect("crs");
        let mut state = mazu_rbe::RegistryState::new(crs.clone());
        let mut regs = Vec::new();
        for (slot, id) in [(0u32, 1u8), (2, 2), (5, 3)] {
            let (_, reg) = mazu_rbe::keygen(&crs, slot, [id; 32], &mut rng).expect("keygen");
            state.verify_and_apply(reg.clone()).expect("apply");
            regs.push(reg);
        }
        let params = state.public_params();
        let block = crs.dimensions().locate(0).expect("slot 0").block;
        let in_block: Vec<_> = regs
            .iter()
            .filter(|r| crs.dimensions().locate(r.slot).map(|p| p.block) == Some(block))
            .rev()
            .collect();
        let recomputed = block_commitment(in_block.iter().copied());
        assert_eq!(params.commitment(block), Some(&recomputed));
        judge_served(&crs, &params, block, &recomputed, 3, 3).expect("agrees");

        // The curator serves a·h_1 (it knows a) for the block.
        let forged = G1Affine::from(
            G1Projective::from(crs.h(1).expect("h_1")) * mazu_rbe::Scalar::from(7u64),
        );
        let e = judge_served(&crs, &params, block, &forged, 3, 3).expect_err("forged");
        assert_eq!(e.kind(), "commitment_mismatch");
        assert!(
            matches!(e, CommitmentError::CommitmentMismatch { block: b, .. } if b == block),
            "{e}"
        );
        // Parameters of another CRS are refused before any comparison.
        let other = Crs::generate_insecure_dev(16, &mut rng).expect("crs");
        let e = judge_served(&other, &params, block, &recomputed, 3, 3).expect_err("other crs");
        assert_eq!(e.kind(), "params_for_another_crs");
    }

    /// The full entry must be the one the witnessed record summarizes, and
    /// its registration must be the holder's and well formed.
    #[test]
    fn a_served_entry_must_be_the_witnessed_one() {
        let mut rng = rand::rngs::OsRng;
        let crs = Crs::generate_insecure_dev(16, &mut rng).expect("crs");
        let id = [9u8; 32];
        let (_, reg) = mazu_rbe::keygen(&crs, 2, id, &mut rng).expect("keygen");
        let entry = |registration: &Registration, slot: u32| {
            let e = LogEntry {
                at_ms: 5,
                id,
                body: EntryBody::Bind {
                    slot,
                    token_expiry: 2_000_000_000,
                    tls_spki: vec![1, 2, 3],
                    tls_signature: vec![4],
                    registration: registration.to_bytes(),
                },
            };
            let bytes = e.to_bytes();
            let record = e.record(&bytes).expect("record");
            (bytes, record)
        };
        let holder = Holder {
            slot: 2,
            id,
            bound_at: 7,
        };
        let (bytes, record) = entry(&reg, 2);
        let got = check_holder_entry(&crs, &holder, &record, &bytes).expect("the witnessed entry");
        assert_eq!(got.public_key, reg.public_key);

        // Another key swapped in: the record no longer matches.
        let (_, other) = mazu_rbe::keygen(&crs, 2, id, &mut rng).expect("keygen");
        let (swapped, _) = entry(&other, 2);
        let e = check_holder_entry(&crs, &holder, &record, &swapped).expect_err("swapped");
        assert_eq!(e.kind(), "entry_mismatch");
        // Garbage.
        let e = check_holder_entry(&crs, &holder, &record, b"nonsense").expect_err("garbage");
        assert_eq!(e.kind(), "entry_mismatch");

        // A witnessed entry whose registration is for another slot.
        let (_, elsewhere) = mazu_rbe::keygen(&crs, 3, id, &mut rng).expect("keygen");
        let (bytes, record) = entry(&elsewhere, 2);
        let e = check_holder_entry(&crs, &holder, &record, &bytes).expect_err("other slot");
        assert_eq!(e.kind(), "bad_registration");

        // A witnessed entry whose key is not well formed (another key put
        // in with the original proof: a rogue key).
        let mut rogue = reg.clone();
        rogue.public_key = other.public_key;
        let (bytes, record) = entry(&rogue, 2);
        let e = check_holder_entry(&crs, &holder, &record, &bytes).expect_err("rogue key");
        assert_eq!(e.kind(), "bad_registration");
    }
}
