//! The registry as a function of the log: the one place where the lifecycle
//! rules live, shared by the filter, the agent, the auditor and the curator.
//!
//! Every party derives the registry from the log's leaf records
//! ([`mazu_log::record`]) with these rules, applied in log order:
//!
//! | state of the id | record | result |
//! |---|---|---|
//! | never seen (or forgotten) | bind (slot free) | **bound** to the key and the token expiry, the first binding |
//! | never seen (or forgotten) | bind (slot held) | void: `slot_taken` |
//! | anything else | bind | void: `already_bound` (first binding wins) |
//! | bound | reveal of the bound expiry, before it | **live** until the token's expiry |
//! | bound | reveal of another expiry | void: `expiry_mismatch` |
//! | bound | reveal at or after the expiry | void: `token_expired` |
//! | not bound | reveal | void: `not_pending` |
//! | bound | release (unrevealed) | **released**: the slot is free, the id stays void |
//! | live, token expired at the record's time | release (expired) | **released** |
//! | bound or live | release (holder) | **released** |
//! | bound or live | revoke | **revoked**: the slot is free, the id stays void |
//! | live | release (unrevealed) | void: `not_due` (its token was revealed) |
//! | bound, or live before its token's expiry | release (expired) | void: `not_due` |
//! | never seen, released or revoked | release, revoke | void: `not_bound` |
//!
//! So a curator cannot end a live binding early under its own authority: an
//! `expired` release before the token's `exp` (by the record's own time,
//! which the witnesses' timestamps bound) and an `unrevealed` release of a
//! revealed id have no effect for anyone. A `holder` release and a
//! revocation need the bound key's signature, which is in the full entry
//! (checked by the curator, the auditor and the holder's agent; a filter
//! sees only the record).
//!
//! **Time and forgetting.** The registry's clock is the latest record time
//! applied (record times that go backwards count as the latest). An ended
//! (released or revoked) id is *forgotten* as soon as the clock passes its
//! token's expiry, which the holder committed to in the bind: before a
//! record is applied, every ended id whose expiry is below the record's time
//! is dropped. That keeps the state proportional to the live registrations
//! (plus those ended within one token lifetime), not to history, and it is
//! safe: a forgotten id may be bound again, but its token has expired, so a
//! reveal of it is void (`token_expired`) and no verdict admits it. What
//! keeps a curator from moving the clock ahead to forget a revoked id whose
//! token is still valid is the rule that every record's time is at most the
//! witnessed time of the checkpoint it is verified under (plus
//! [`MAX_CLOCK_SKEW_MS`]): [`LogFollower::extend`] refuses a batch with a
//! record from the future.
//!
//! A void record changes nothing. An honest curator never writes one; each is
//! reported to the caller (the filter logs it as curator misbehaviour, the
//! auditor as a discrepancy), but it is not an error: the log stays usable and
//! every party gives it the same (null) meaning.
//!
//! The registry a filter installs ([`DerivedRegistry::snapshot`]) holds the
//! live ids and the revoked ones (so the verdict can say "revoked"); bound
//! but unrevealed ids are not in it (nobody has shown the curator their
//! token yet, and the agent does not present the certificate before that).
//!
//! [`LogFollower`] adds the tie to the log: records are applied only if their
//! leaves, appended to the leaves already applied, give the root of the
//! checkpoint that was verified (signature, witnesses) by the caller.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use mazu_log::Frontier;
use mazu_log::merkle::Hash;
use mazu_log::record::{LeafRecord, RecordBody, ReleaseReason};

mod state;

pub use state::{
    STATE_ENTRY_LEN, STATE_FORMAT, STATE_MAGIC, StateError, StateSummary, StateWalker,
    registry_entry_in,
};

use super::entry::RegistryEntry;
use super::snapshot::RegistrySnapshot;
use crate::digest::{SpkiHash, WorkloadId};

/// Where an id stands in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdState {
    /// Bound to a key, token not revealed yet.
    Bound {
        /// The RBE slot.
        slot: u32,
        /// SHA-256 of the bound TLS key's SPKI.
        spki_hash: Hash,
        /// Index of the bind record in the log.
        bound_at: u64,
        /// The token's `exp` the holder committed to, Unix seconds.
        token_expiry: u64,
    },
    /// Bound and revealed: usable until `token_expiry`.
    Live {
        /// The RBE slot.
        slot: u32,
        /// SHA-256 of the bound TLS key's SPKI.
        spki_hash: Hash,
        /// Index of the bind record in the log.
        bound_at: u64,
        /// The token's `exp`, Unix seconds.
        token_expiry: u64,
    },
    /// Revoked by its holder. The id cannot be bound again until it is
    /// forgotten, after its token's expiry.
    Revoked {
        /// SHA-256 of the key that was bound.
        spki_hash: Hash,
        /// The token's `exp`, Unix seconds.
        token_expiry: u64,
        /// Whether the token had been revealed (the verdict then reports
        /// the id as revoked rather than unknown).
        revealed: bool,
    },
    /// Released. The id cannot be bound again until it is forgotten, after
    /// its token's expiry.
    Released {
        /// Why.
        reason: ReleaseReason,
        /// The token's `exp`, Unix seconds.
        token_expiry: u64,
    },
}

impl IdState {
    /// For a bound or live id: what it holds. `None` once it has ended.
    fn holding(&self) -> Option<Holding> {
        match *self {
            IdState::Bound {
                slot,
                spki_hash,
                token_expiry,
                ..
            } => Some(Holding {
                slot,
                spki_hash,
                token_expiry,
                revealed: false,
            }),
            IdState::Live {
                slot,
                spki_hash,
                token_expiry,
                ..
            } => Some(Holding {
                slot,
                spki_hash,
                token_expiry,
                revealed: true,
            }),
            IdState::Revoked { .. } | IdState::Released { .. } => None,
        }
    }
}

/// What a bound or live id holds.
#[derive(Clone, Copy)]
struct Holding {
    slot: u32,
    spki_hash: Hash,
    token_expiry: u64,
    revealed: bool,
}

/// How far ahead of the witnessed time of the checkpoint that covers it a
/// record's time may be: the clock skew allowed between the curator and the
/// witnesses. A record further ahead is refused ([`FollowError::FromTheFuture`]).
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// Whether a release for `reason` may end `held` at the record's time
/// `at_ms`.
fn release_is_due(reason: ReleaseReason, held: &Holding, at_ms: u64) -> bool {
    match reason {
        ReleaseReason::Unrevealed => !held.revealed,
        ReleaseReason::Expired => held.revealed && at_ms / 1000 >= held.token_expiry,
        ReleaseReason::Holder => true,
    }
}

/// Why a record had no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VoidReason {
    /// A bind of an id that was bound before: only the first binding counts.
    #[error("the id was bound earlier in the log (first binding wins)")]
    AlreadyBound,
    /// A bind into a slot another binding holds.
    #[error("slot {0} is held by another binding")]
    SlotTaken(u32),
    /// A reveal of an id that is not bound and unrevealed.
    #[error("reveal of an id that is not awaiting its reveal")]
    NotPending,
    /// A reveal whose token expiry is not the one bound.
    #[error("reveal of a token whose expiry is not the one bound")]
    ExpiryMismatch,
    /// A reveal at or after the token's expiry (by the record's time).
    #[error("reveal of a token that had expired")]
    TokenExpired,
    /// A release or revocation of an id that is not bound.
    #[error("release or revocation of an id that is not bound")]
    NotBound,
    /// A release whose reason does not hold: `unrevealed` for a revealed
    /// id, `expired` before the token's expiry (by the record's time).
    #[error("release whose reason does not hold at the record's time")]
    NotDue,
}

/// A record that had no effect, and where it is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoidRecord {
    /// Its index in the log.
    pub index: u64,
    /// The record.
    pub record: LeafRecord,
    /// Why it is void.
    pub reason: VoidReason,
}

/// The registry derived from a prefix of the log.
#[derive(Clone, Debug, Default)]
pub struct DerivedRegistry {
    size: u64,
    /// The latest record time applied, Unix milliseconds.
    clock_ms: u64,
    ids: BTreeMap<Hash, IdState>,
    /// Slot → the id holding it (bound or live).
    slots: BTreeMap<u32, Hash>,
    /// Ended ids by the time they are forgotten: (token expiry in
    /// milliseconds, id).
    ended: BTreeSet<(u64, Hash)>,
}

impl DerivedRegistry {
    /// The registry of the empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records have been applied (the log size it reflects).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The latest record time applied, Unix milliseconds (0 for none).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Number of ids held: bound, live, and ended but not yet forgotten.
    /// This, not the log's size, is what the registry's memory follows.
    pub fn ids_held(&self) -> usize {
        self.ids.len()
    }

    /// Every id held and where it stands, in increasing id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &IdState)> {
        self.ids.iter()
    }

    /// Where `id` stands (`None`: never bound, or forgotten).
    pub fn state(&self, id: &Hash) -> Option<&IdState> {
        self.ids.get(id)
    }

    /// The id holding `slot` (bound or live), if any.
    pub fn slot_holder(&self, slot: u32) -> Option<&Hash> {
        self.slots.get(&slot)
    }

    /// Number of ids bound or live (holding a slot).
    pub fn held_slots(&self) -> usize {
        self.slots.len()
    }

    /// Applies the next record of the log. Returns why it had no effect, if
    /// it had none. Ended ids whose token expired before the record's time
    /// are forgotten first (see the [module docs](self)).
    pub fn apply(&mut self, record: &LeafRecord) -> Result<(), VoidReason> {
        self.apply_noting_forgotten(record, |_| {})
    }

    /// [`apply`](Self::apply), calling `forgotten` with each id forgotten
    /// (for a caller that keeps more per id, like the curator).
    pub fn apply_noting_forgotten(
        &mut self,
        record: &LeafRecord,
        forgotten: impl FnMut(&Hash),
    ) -> Result<(), VoidReason> {
        let index = self.size;
        self.size += 1;
        self.clock_ms = self.clock_ms.max(record.at_ms);
        self.forget_expired(forgotten);
        let now_ms = self.clock_ms;
        let id = record.id;
        let state = self.ids.get(&id).copied();
        match (record.body, state) {
            (
                RecordBody::Bind {
                    slot,
                    spki_hash,
                    token_expiry,
                },
                None,
            ) => {
                if self.slots.contains_key(&slot) {
                    return Err(VoidReason::SlotTaken(slot));
                }
                self.slots.insert(slot, id);
                self.ids.insert(
                    id,
                    IdState::Bound {
                        slot,
                        spki_hash,
                        bound_at: index,
                        token_expiry,
                    },
                );
                Ok(())
            }
            (RecordBody::Bind { .. }, Some(_)) => Err(VoidReason::AlreadyBound),
            (
                RecordBody::Reveal { token_expiry },
                Some(IdState::Bound {
                    slot,
                    spki_hash,
                    bound_at,
                    token_expiry: bound_expiry,
                }),
            ) => {
                if token_expiry != bound_expiry {
                    return Err(VoidReason::ExpiryMismatch);
                }
                if now_ms / 1000 >= token_expiry {
                    return Err(VoidReason::TokenExpired);
                }
                self.ids.insert(
                    id,
                    IdState::Live {
                        slot,
                        spki_hash,
                        bound_at,
                        token_expiry,
                    },
                );
                Ok(())
            }
            (RecordBody::Reveal { .. }, _) => Err(VoidReason::NotPending),
            (RecordBody::Release { .. } | RecordBody::Revoke, held) => {
                let Some(held) = held.and_then(|s| s.holding()) else {
                    return Err(VoidReason::NotBound);
                };
                if let RecordBody::Release { reason } = record.body
                    && !release_is_due(reason, &held, now_ms)
                {
                    return Err(VoidReason::NotDue);
                }
                self.slots.remove(&held.slot);
                let ended = match record.body {
                    RecordBody::Release { reason } => IdState::Released {
                        reason,
                        token_expiry: held.token_expiry,
                    },
                    _ => IdState::Revoked {
                        spki_hash: held.spki_hash,
                        token_expiry: held.token_expiry,
                        revealed: held.revealed,
                    },
                };
                self.ids.insert(id, ended);
                self.ended
                    .insert((held.token_expiry.saturating_mul(1000), id));
                Ok(())
            }
        }
    }

    /// Drops the ended ids whose token expired before the clock.
    fn forget_expired(&mut self, mut forgotten: impl FnMut(&Hash)) {
        while let Some(&(expiry_ms, id)) = self.ended.first() {
            if expiry_ms >= self.clock_ms {
                break;
            }
            self.ended.pop_first();
            self.ids.remove(&id);
            forgotten(&id);
        }
    }

    /// Applies records in order, collecting the void ones.
    pub fn apply_all<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a LeafRecord>,
    ) -> Vec<VoidRecord> {
        let mut void = Vec::new();
        for record in records {
            let index = self.size;
            if let Err(reason) = self.apply(record) {
                void.push(VoidRecord {
                    index,
                    record: *record,
                    reason,
                });
            }
        }
        void
    }

    /// The registry the verdict consults: live ids, and revoked ids whose
    /// token was revealed (flagged revoked), at version [`size`](Self::size).
    pub fn snapshot(&self) -> RegistrySnapshot {
        let entries = self
            .ids
            .iter()
            .filter_map(|(id, state)| snapshot_entry(id, state))
            .collect();
        // The map is sorted by id and holds each id once, so the entries are
        // sorted and unique; each live or revoked id took at least two records.
        RegistrySnapshot::from_sorted_unchecked(self.size, entries)
    }
}

/// The registry entry of `id` in `state`, if the verdict consults it: live
/// ids, and revoked ids whose token was revealed (flagged revoked).
fn snapshot_entry(id: &Hash, state: &IdState) -> Option<RegistryEntry> {
    match *state {
        IdState::Live {
            slot,
            spki_hash,
            token_expiry,
            ..
        } => Some(RegistryEntry {
            workload_id: WorkloadId::from_bytes(*id),
            slot,
            spki_hash: SpkiHash::from_bytes(spki_hash),
            token_expiry,
            revoked: false,
        }),
        IdState::Revoked {
            spki_hash,
            token_expiry,
            revealed: true,
        } => Some(RegistryEntry {
            workload_id: WorkloadId::from_bytes(*id),
            // The slot is free again; a revoked entry keeps none.
            slot: u32::MAX,
            spki_hash: SpkiHash::from_bytes(spki_hash),
            token_expiry,
            revoked: true,
        }),
        _ => None,
    }
}

/// Why a batch of records was not applied. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The checkpoint is smaller than what was already applied.
    #[error("the checkpoint's size {checkpoint} is below the {applied} records already applied")]
    Rollback {
        /// Records applied.
        applied: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// The records do not bring the log to the checkpoint's size.
    #[error(
        "{applied} records applied plus {given} given is not the checkpoint's size {checkpoint}"
    )]
    WrongCount {
        /// Records applied.
        applied: u64,
        /// Records given.
        given: u64,
        /// The checkpoint's size.
        checkpoint: u64,
    },
    /// A record's time is after the checkpoint's witnessed time (plus
    /// [`MAX_CLOCK_SKEW_MS`]): a curator moving the registry's clock ahead
    /// (to have ids forgotten early).
    #[error(
        "record {index} is timed {at_ms} ms, after the checkpoint's witnessed time {witnessed_ms} ms plus the allowed skew"
    )]
    FromTheFuture {
        /// The record's index in the log.
        index: u64,
        /// Its time, Unix milliseconds.
        at_ms: u64,
        /// The checkpoint's witnessed time, Unix milliseconds.
        witnessed_ms: u64,
    },
    /// The leaves do not give the checkpoint's root: the records are not the
    /// log's, or the log is not an extension of what was applied.
    #[error(
        "the records do not give the checkpoint's root: not this log, or not an extension of the one applied"
    )]
    RootMismatch,
}

/// A registry kept in step with a verified log: the derived registry plus the
/// Merkle frontier of the records applied.
#[derive(Clone, Debug, Default)]
pub struct LogFollower {
    registry: DerivedRegistry,
    frontier: Frontier,
}

impl LogFollower {
    /// A follower at the empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The derived registry.
    pub fn registry(&self) -> &DerivedRegistry {
        &self.registry
    }

    /// Records applied.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root of the records applied.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Applies `records`, which must be the log's records from
    /// [`size`](Self::size) up to `checkpoint_size`, whose tree root is
    /// `checkpoint_root` — a checkpoint the caller has verified, witnessed at
    /// `witnessed_ms` (Unix milliseconds: the quorum-th newest cosignature
    /// time, or the caller's clock without witnesses). No record may be
    /// timed after that plus [`MAX_CLOCK_SKEW_MS`]. All or nothing: on an
    /// error nothing changes. Returns the void records.
    pub fn extend(
        &mut self,
        records: &[LeafRecord],
        checkpoint_size: u64,
        checkpoint_root: &Hash,
        witnessed_ms: u64,
    ) -> Result<Vec<VoidRecord>, FollowError> {
        let applied = self.size();
        if checkpoint_size < applied {
            return Err(FollowError::Rollback {
                applied,
                checkpoint: checkpoint_size,
            });
        }
        let given = records.len() as u64;
        if applied.checked_add(given) != Some(checkpoint_size) {
            return Err(FollowError::WrongCount {
                applied,
                given,
                checkpoint: checkpoint_size,
            });
        }
        let mut frontier = self.frontier.clone();
        for record in records {
            frontier.push(record.leaf_hash());
        }
        if frontier.root() != *checkpoint_root {
            return Err(FollowError::RootMismatch);
        }
        let latest = witnessed_ms.saturating_add(MAX_CLOCK_SKEW_MS);
        if let Some((offset, record)) = records
            .iter()
            .enumerate()
            .find(|(_, record)| record.at_ms > latest)
        {
            return Err(FollowError::FromTheFuture {
                index: applied + offset as u64,
                at_ms: record.at_ms,
                witnessed_ms,
            });
        }
        self.frontier = frontier;
        Ok(self.registry.apply_all(records))
    }

    /// Appends one record without a checkpoint to check it against: for the
    /// log's writer (the curator), whose records these are. Returns why it
    /// was void, if it was.
    pub fn append_own(&mut self, record: &LeafRecord) -> Result<(), VoidReason> {
        self.frontier.push(record.leaf_hash());
        self.registry.apply(record)
    }
}

#[cfg(test)]
mod tests;
