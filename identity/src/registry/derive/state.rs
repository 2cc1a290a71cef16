//! The follower state: a [`LogFollower`] at one log size, encoded canonically,
//! so that a new follower can start from it instead of from record 0.
//!
//! Its SHA-256 is what a checkpoint's `mazu-state-sha256` extension line
//! commits to ([`mazu_log::evidence::state_extension`]). The curator writes
//! that line; a witness cosigns the checkpoint only after deriving the same
//! state from the log's records itself (`docs/witness.md`), so a filter that
//! installs a state whose digest a witness quorum cosigned trusts the
//! witnesses' derivation, never the curator's word (`docs/filter.md`,
//! "Bootstrap from a witnessed state").
//!
//! The encoding is a function of the state alone (one encoding per state):
//!
//! ```text
//! magic "MZFS" | format (1) | clock_ms (u64) | frontier (size u64, then one
//! 32-byte hash per set bit of size) | count (u32) | count × entry
//! entry (85 bytes): id (32) | kind (1) | slot (u32) | spki_hash (32)
//!                   | bound_at (u64) | token_expiry (u64)
//! ```
//!
//! Integers are big-endian. Entries are sorted by id, each id once. By kind:
//! 0 bound and 1 live use every field; 2 revoked sets `slot` to 0 or 1
//! (whether the token was revealed) and `bound_at` to 0; 3 released sets
//! `slot` to the release reason's code and zeroes `spki_hash` and
//! `bound_at`. The size of the frontier is the log size. Its length is
//! proportional to the ids held (live, bound, and ended within one token
//! lifetime), not to the log's history.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use mazu_log::Frontier;
use mazu_log::merkle::Hash;
use mazu_log::record::ReleaseReason;
use sha2::{Digest, Sha256};

use super::{DerivedRegistry, IdState, LogFollower, snapshot_entry};
use crate::digest::WorkloadId;
use crate::registry::RegistryEntry;

/// Follower-state magic, "MZFS".
pub const STATE_MAGIC: [u8; 4] = *b"MZFS";
/// Follower-state format written and read by this version.
pub const STATE_FORMAT: u8 = 1;
/// Bytes per id in the encoding.
pub const STATE_ENTRY_LEN: usize = 32 + 1 + 4 + 32 + 8 + 8;

const KIND_BOUND: u8 = 0;
const KIND_LIVE: u8 = 1;
const KIND_REVOKED: u8 = 2;
const KIND_RELEASED: u8 = 3;

/// Why bytes are not a follower state. Nothing was built from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not a follower state of this format.
    #[error("not a follower state (magic or format)")]
    Header,
    /// Shorter or longer than its counts say.
    #[error("follower state length does not match its counts")]
    Length,
    /// An entry that this version would never write.
    #[error("follower state entry {0} is malformed")]
    Entry(usize),
    /// Ids not strictly increasing.
    #[error("follower state entries are not sorted by id without repeats")]
    Order,
    /// Two bound or live ids in one slot.
    #[error("slot {0} is held twice in the follower state")]
    SlotTwice(u32),
    /// An ended id that the clock should have forgotten, or a bind index
    /// beyond the log size.
    #[error("follower state entry {0} is inconsistent with the log size or clock")]
    Inconsistent(usize),
}

impl DerivedRegistry {
    /// The follower state ([`LogFollower::encode_state`]) of this registry
    /// and `frontier`, the Merkle frontier of the same records (for a party
    /// that keeps the two apart, like the auditor); `None` if their sizes
    /// differ.
    pub fn follower_state(&self, frontier: &Frontier) -> Option<Vec<u8>> {
        (frontier.size() == self.size).then(|| encode(self, frontier))
    }
}

impl LogFollower {
    /// The canonical encoding of this follower (see the [module docs](self)).
    pub fn encode_state(&self) -> Vec<u8> {
        encode(&self.registry, &self.frontier)
    }

    /// SHA-256 of [`encode_state`](Self::encode_state): what a checkpoint's
    /// state line commits to.
    pub fn state_digest(&self) -> Hash {
        Sha256::digest(self.encode_state()).into()
    }

    /// A follower from [`encode_state`](Self::encode_state)'s bytes. Every
    /// field is checked, so that only an encoding this version would write
    /// is accepted (and re-encodes to the same bytes). Whether the state is
    /// the log's is the caller's to check: its digest against a witnessed
    /// checkpoint's state line, its [`root`](Self::root) and
    /// [`size`](Self::size) against the checkpoint's.
    pub fn decode_state(bytes: &[u8]) -> Result<Self, StateError> {
        let mut ids = BTreeMap::new();
        let mut ended = BTreeSet::new();
        let mut slots = BTreeMap::new();
        let (mut walker, encoded) = split_state(bytes)?;
        walker.entries(encoded, |id, state| {
            match state {
                IdState::Bound { slot, .. } | IdState::Live { slot, .. } => {
                    slots.insert(slot, id);
                }
                IdState::Revoked { token_expiry, .. } | IdState::Released { token_expiry, .. } => {
                    ended.insert((token_expiry.saturating_mul(1000), id));
                }
            }
            ids.insert(id, state);
        })?;
        let (clock_ms, frontier) = (walker.clock_ms, walker.frontier.clone());
        walker.finish()?;
        let registry = DerivedRegistry {
            size: frontier.size(),
            clock_ms,
            ids,
            slots,
            ended,
        };
        Ok(Self { registry, frontier })
    }
}

/// What a follower state says about the log, once [`StateWalker`] has
/// checked all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSummary {
    /// The log size (the frontier's).
    pub size: u64,
    /// The Merkle root of the frontier.
    pub root: Hash,
    /// The state's clock, Unix milliseconds.
    pub clock_ms: u64,
    /// How many of its ids have a registry entry (live, or revoked after
    /// the reveal): the length of the registry it gives.
    pub registry_len: usize,
}

/// How many held slots [`StateWalker::start`] reserves room for at most
/// (4 MB): beyond it the vector grows as needed.
const PRESIZED_SLOTS: usize = 1 << 20;

/// Checks a follower state in pieces, in order: its header, then its
/// entries in any number of runs of whole entries. It applies the checks of
/// [`LogFollower::decode_state`] without holding the state: for a party that
/// reads the state in pieces and keeps none of it (a filter VM reading it
/// from shared data). Besides its own bookkeeping it holds 4 bytes per bound
/// or live id (to find a slot held twice).
#[derive(Debug)]
pub struct StateWalker {
    clock_ms: u64,
    frontier: Frontier,
    /// Entries the header announces.
    count: usize,
    /// Entries walked so far.
    walked: usize,
    registry_len: usize,
    previous: Option<Hash>,
    /// Slots of bound and live ids.
    held_slots: Vec<u32>,
}

impl StateWalker {
    /// The length of the header at the start of `state` (everything before
    /// the entries), read from its first bytes.
    pub fn header_len(state: &[u8]) -> Result<usize, StateError> {
        let (header, rest) = state.split_at_checked(5).ok_or(StateError::Header)?;
        if header[..4] != STATE_MAGIC || header[4] != STATE_FORMAT {
            return Err(StateError::Header);
        }
        let size = rest.get(8..16).ok_or(StateError::Length)?;
        let size = u64::from_be_bytes(size.try_into().map_err(|_| StateError::Length)?);
        // magic, format, clock, frontier (size, one hash per set bit), count.
        Ok(5 + 8 + 8 + 32 * size.count_ones() as usize + 4)
    }

    /// Starts on `header`, exactly the bytes [`header_len`](Self::header_len)
    /// says.
    pub fn start(header: &[u8]) -> Result<Self, StateError> {
        if header.len() != Self::header_len(header)? {
            return Err(StateError::Length);
        }
        let (clock, rest) = header[5..]
            .split_first_chunk::<8>()
            .ok_or(StateError::Length)?;
        let (frontier, count) = rest.split_last_chunk::<4>().ok_or(StateError::Length)?;
        let frontier = Frontier::decode(frontier).ok_or(StateError::Length)?;
        let count = u32::from_be_bytes(*count) as usize;
        Ok(StateWalker {
            clock_ms: u64::from_be_bytes(*clock),
            frontier,
            count,
            walked: 0,
            registry_len: 0,
            previous: None,
            // Reserved once rather than grown by doubling (a Wasm VM keeps
            // its high-water mark); the count is the state's word, so only
            // up to a bound.
            held_slots: Vec::with_capacity(count.min(PRESIZED_SLOTS)),
        })
    }

    /// How many entries the header announces.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Checks the next run of whole entries and hands every id and its state
    /// to `visit`, in increasing id order. After an error the walker is
    /// spent: what was visited is the caller's to throw away.
    pub fn entries(
        &mut self,
        entries: &[u8],
        mut visit: impl FnMut(Hash, IdState),
    ) -> Result<(), StateError> {
        let (entries, tail) = entries.as_chunks::<STATE_ENTRY_LEN>();
        if !tail.is_empty() || self.walked + entries.len() > self.count {
            return Err(StateError::Length);
        }
        let (size, clock_ms) = (self.frontier.size(), self.clock_ms);
        for entry in entries {
            let index = self.walked;
            self.walked += 1;
            let (id, state) = decode_entry(entry).ok_or(StateError::Entry(index))?;
            if self.previous.is_some_and(|p| p >= id) {
                return Err(StateError::Order);
            }
            self.previous = Some(id);
            match state {
                IdState::Bound { slot, bound_at, .. } | IdState::Live { slot, bound_at, .. } => {
                    if bound_at >= size {
                        return Err(StateError::Inconsistent(index));
                    }
                    self.held_slots.push(slot);
                }
                IdState::Revoked { token_expiry, .. } | IdState::Released { token_expiry, .. } => {
                    // `forget_expired` drops these before any record is
                    // applied once the clock passes them.
                    if token_expiry.saturating_mul(1000) < clock_ms {
                        return Err(StateError::Inconsistent(index));
                    }
                }
            }
            if snapshot_entry(&id, &state).is_some() {
                self.registry_len += 1;
            }
            visit(id, state);
        }
        Ok(())
    }

    /// The last checks, once every entry was walked: as many entries as
    /// the header announced, no slot held twice.
    pub fn finish(mut self) -> Result<StateSummary, StateError> {
        if self.walked != self.count {
            return Err(StateError::Length);
        }
        self.held_slots.sort_unstable();
        if let Some(pair) = self.held_slots.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(StateError::SlotTwice(pair[0]));
        }
        Ok(StateSummary {
            size: self.frontier.size(),
            root: self.frontier.root(),
            clock_ms: self.clock_ms,
            registry_len: self.registry_len,
        })
    }
}

/// The registry entry of `id` in `entries`, a run of whole entries of a
/// follower state that was checked (by [`StateWalker`] or the decoders):
/// a binary search over the encoded entries, nothing decoded but the one
/// found. `None` if `id` is not among them or has no registry entry.
pub fn registry_entry_in(entries: &[u8], id: &WorkloadId) -> Option<RegistryEntry> {
    let (entries, _) = entries.as_chunks::<STATE_ENTRY_LEN>();
    let wanted = id.as_bytes();
    let at = entries
        .binary_search_by(|entry| entry[..32].cmp(&wanted[..]))
        .ok()?;
    let (found, state) = decode_entry(&entries[at])?;
    snapshot_entry(&found, &state)
}

/// Splits a whole follower state (see the [module docs](self)) into a
/// walker started on its header and its entries, checking the lengths
/// first (so a state of the wrong length is refused as such).
fn split_state(bytes: &[u8]) -> Result<(StateWalker, &[u8]), StateError> {
    let header_len = StateWalker::header_len(bytes)?;
    let (header, entries) = bytes
        .split_at_checked(header_len)
        .ok_or(StateError::Length)?;
    let walker = StateWalker::start(header)?;
    if entries.len() != walker.count * STATE_ENTRY_LEN {
        return Err(StateError::Length);
    }
    Ok((walker, entries))
}

/// [`LogFollower::encode_state`] of a registry and the frontier of the same
/// records.
fn encode(registry: &DerivedRegistry, frontier: &Frontier) -> Vec<u8> {
    let frontier = frontier.encode();
    let mut out =
        Vec::with_capacity(4 + 1 + 8 + frontier.len() + 4 + registry.ids.len() * STATE_ENTRY_LEN);
    out.extend_from_slice(&STATE_MAGIC);
    out.push(STATE_FORMAT);
    out.extend_from_slice(&registry.clock_ms.to_be_bytes());
    out.extend_from_slice(&frontier);
    // Ids held never exceed the records applied, far below 2^32 for
    // any log that fits in memory.
    out.extend_from_slice(&(registry.ids.len() as u32).to_be_bytes());
    for (id, state) in &registry.ids {
        out.extend_from_slice(id);
        let (kind, slot, spki, bound_at, expiry) = match *state {
            IdState::Bound {
                slot,
                spki_hash,
                bound_at,
                token_expiry,
            } => (KIND_BOUND, slot, spki_hash, bound_at, token_expiry),
            IdState::Live {
                slot,
                spki_hash,
                bound_at,
                token_expiry,
            } => (KIND_LIVE, slot, spki_hash, bound_at, token_expiry),
            IdState::Revoked {
                spki_hash,
                token_expiry,
                revealed,
            } => (
                KIND_REVOKED,
                u32::from(revealed),
                spki_hash,
                0,
                token_expiry,
            ),
            IdState::Released {
                reason,
                token_expiry,
            } => (
                KIND_RELEASED,
                u32::from(reason.code()),
                [0; 32],
                0,
                token_expiry,
            ),
        };
        out.push(kind);
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&spki);
        out.extend_from_slice(&bound_at.to_be_bytes());
        out.extend_from_slice(&expiry.to_be_bytes());
    }
    out
}

/// One 85-byte entry; `None` if a field holds what this version never writes.
fn decode_entry(entry: &[u8; STATE_ENTRY_LEN]) -> Option<(Hash, IdState)> {
    let (id, rest) = entry.split_first_chunk::<32>()?;
    let (&kind, rest) = rest.split_first()?;
    let (slot, rest) = rest.split_first_chunk::<4>()?;
    let (spki_hash, rest) = rest.split_first_chunk::<32>()?;
    let (bound_at, rest) = rest.split_first_chunk::<8>()?;
    let (token_expiry, _) = rest.split_first_chunk::<8>()?;
    let slot = u32::from_be_bytes(*slot);
    let spki_hash = *spki_hash;
    let bound_at = u64::from_be_bytes(*bound_at);
    let token_expiry = u64::from_be_bytes(*token_expiry);
    let state = match kind {
        KIND_BOUND => IdState::Bound {
            slot,
            spki_hash,
            bound_at,
            token_expiry,
        },
        KIND_LIVE => IdState::Live {
            slot,
            spki_hash,
            bound_at,
            token_expiry,
        },
        KIND_REVOKED if bound_at == 0 && slot <= 1 => IdState::Revoked {
            spki_hash,
            token_expiry,
            revealed: slot == 1,
        },
        KIND_RELEASED if bound_at == 0 && spki_hash == [0; 32] => IdState::Released {
            reason: ReleaseReason::from_code(u8::try_from(slot).ok()?)?,
            token_expiry,
        },
        _ => return None,
    };
    Some((*id, state))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use alloc::vec;

    use mazu_log::record::{LeafRecord, RecordBody};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const EXP: u64 = 1_800_000_000;

    fn rec(id: u8, at_ms: u64, body: RecordBody) -> LeafRecord {
        LeafRecord {
            at_ms,
            id: [id; 32],
            entry_digest: [id ^ 0x5a; 32],
            body,
        }
    }

    fn bind(id: u8, slot: u32, expiry: u64) -> LeafRecord {
        rec(
            id,
            NOW,
            RecordBody::Bind {
                slot,
                spki_hash: [id.wrapping_add(100); 32],
                token_expiry: expiry,
            },
        )
    }

    fn reveal(id: u8, expiry: u64) -> LeafRecord {
        rec(
            id,
            NOW,
            RecordBody::Reveal {
                token_expiry: expiry,
            },
        )
    }

    /// A follower holding every kind of id: bound (4), live (1, 5),
    /// revoked after its reveal (2), revoked unrevealed (6), released (3).
    fn every_kind() -> LogFollower {
        let records = vec![
            bind(1, 0, EXP),
            reveal(1, EXP),
            bind(2, 1, EXP),
            reveal(2, EXP),
            rec(2, NOW, RecordBody::Revoke),
            bind(3, 1, EXP),
            rec(
                3,
                NOW,
                RecordBody::Release {
                    reason: ReleaseReason::Unrevealed,
                },
            ),
            bind(4, 2, EXP),
            bind(5, 3, EXP + 7),
            reveal(5, EXP + 7),
            bind(6, 4, EXP),
            rec(6, NOW + 5, RecordBody::Revoke),
        ];
        let mut follower = LogFollower::new();
        for record in &records {
            follower.append_own(record).unwrap();
        }
        follower
    }

    #[test]
    fn a_state_round_trips_and_continues_like_the_follower_it_came_from() {
        let original = every_kind();
        let bytes = original.encode_state();
        let mut restored = LogFollower::decode_state(&bytes).unwrap();
        assert_eq!(restored.encode_state(), bytes);
        assert_eq!(restored.state_digest(), original.state_digest());
        assert_eq!(restored.size(), original.size());
        assert_eq!(restored.root(), original.root());
        assert_eq!(restored.registry().clock_ms(), NOW + 5);
        assert_eq!(
            restored.registry().snapshot(),
            original.registry().snapshot()
        );
        for id in 1..=7u8 {
            assert_eq!(
                restored.registry().state(&[id; 32]),
                original.registry().state(&[id; 32])
            );
        }
        // The same records applied to both give the same state: the slot
        // index, the ended set and the frontier came back too. The slot
        // freed by the revocation of 2 is taken, and the ended ids are
        // forgotten once the clock passes their expiry.
        let later = [
            bind(7, 1, EXP + 20),
            rec(9, EXP * 1000 + 1, RecordBody::Revoke),
            bind(2, 9, EXP + 30),
        ];
        let mut continued = original.clone();
        for record in &later {
            assert_eq!(continued.append_own(record), restored.append_own(record));
        }
        assert_eq!(restored.encode_state(), continued.encode_state());
        assert!(restored.registry().state(&[3; 32]).is_none(), "forgotten");
        assert_eq!(restored.registry().slot_holder(1), Some(&[7; 32]));
    }

    #[test]
    fn a_registry_and_a_frontier_kept_apart_give_the_same_state() {
        let records = [bind(1, 0, EXP), reveal(1, EXP), bind(2, 1, EXP)];
        let mut follower = LogFollower::new();
        let mut registry = DerivedRegistry::new();
        let mut frontier = Frontier::new();
        for record in &records {
            follower.append_own(record).unwrap();
            registry.apply(record).unwrap();
            frontier.push(record.leaf_hash());
        }
        assert_eq!(
            registry.follower_state(&frontier),
            Some(follower.encode_state())
        );
        frontier.push([0; 32]);
        assert_eq!(registry.follower_state(&frontier), None, "sizes differ");
    }

    /// Walks `state` with [`StateWalker`]: its header, then runs of `run`
    /// entries (the last one shorter).
    fn walk_in_runs(state: &[u8], run: usize) -> Result<StateSummary, StateError> {
        let header_len = StateWalker::header_len(state)?;
        let (header, entries) = state
            .split_at_checked(header_len)
            .ok_or(StateError::Length)?;
        let mut walker = StateWalker::start(header)?;
        for piece in entries.chunks(run * STATE_ENTRY_LEN) {
            walker.entries(piece, |_, _| {})?;
        }
        walker.finish()
    }

    #[test]
    fn a_state_walked_in_pieces_reads_like_the_whole_and_is_searched_in_place() {
        for follower in [every_kind(), LogFollower::new()] {
            let bytes = follower.encode_state();
            let snapshot = follower.registry().snapshot();
            for run in 1..=4 {
                let summary = walk_in_runs(&bytes, run).unwrap();
                assert_eq!(
                    (summary.size, summary.root, summary.clock_ms),
                    (
                        follower.size(),
                        follower.root(),
                        follower.registry().clock_ms()
                    )
                );
                assert_eq!(summary.registry_len, snapshot.len());
            }
            let entries = &bytes[StateWalker::header_len(&bytes).unwrap()..];
            for entry in snapshot.entries() {
                assert_eq!(registry_entry_in(entries, &entry.workload_id), Some(*entry));
            }
            // Ids held without a registry entry (bound, released, revoked
            // before the reveal), and ids never seen, are not found.
            for id in [3u8, 4, 6, 7, 0] {
                let id = WorkloadId::from_bytes([id; 32]);
                assert_eq!(registry_entry_in(entries, &id), snapshot.get(&id).copied());
            }
        }
        // A piece that is not whole entries, or one entry too many.
        let bytes = every_kind().encode_state();
        let header_len = StateWalker::header_len(&bytes).unwrap();
        let mut walker = StateWalker::start(&bytes[..header_len]).unwrap();
        assert_eq!(
            walker.entries(&bytes[header_len..header_len + 1], |_, _| {}),
            Err(StateError::Length)
        );
        let mut walker = StateWalker::start(&bytes[..header_len]).unwrap();
        let mut too_many = bytes[header_len..].to_vec();
        too_many.extend_from_slice(&bytes[bytes.len() - STATE_ENTRY_LEN..]);
        assert_eq!(
            walker.entries(&too_many, |_, _| {}),
            Err(StateError::Length)
        );
        // A header with a byte more or less.
        assert_eq!(
            StateWalker::start(&bytes[..header_len + 1]).err(),
            Some(StateError::Length)
        );
        assert_eq!(
            StateWalker::start(&bytes[..header_len - 1]).err(),
            Some(StateError::Length)
        );
        // Fewer entries than announced.
        let mut walker = StateWalker::start(&bytes[..header_len]).unwrap();
        walker
            .entries(&bytes[header_len..header_len + STATE_ENTRY_LEN], |_, _| {})
            .unwrap();
        assert_eq!(walker.finish().err(), Some(StateError::Length));
    }

    #[test]
    fn the_empty_follower_has_a_state_too() {
        let empty = LogFollower::new();
        let restored = LogFollower::decode_state(&empty.encode_state()).unwrap();
        assert_eq!(restored.size(), 0);
        assert_eq!(restored.root(), mazu_log::merkle::empty_root());
    }

    /// Offset of field `at` of entry `n` in `every_kind`'s encoding (one
    /// frontier hash per set bit of its size 12).
    fn entry_offset(n: usize) -> usize {
        4 + 1 + 8 + 8 + 32 * 2 + 4 + n * STATE_ENTRY_LEN
    }

    #[test]
    fn anything_this_version_would_not_write_is_refused() {
        let good = every_kind().encode_state();
        let refused = |mutate: &dyn Fn(&mut Vec<u8>), want: StateError| {
            let mut bytes = good.clone();
            mutate(&mut bytes);
            assert_eq!(LogFollower::decode_state(&bytes).err(), Some(want));
            // So does a walk in pieces (whatever their size).
            for run in 1..=3 {
                assert!(walk_in_runs(&bytes, run).is_err(), "runs of {run}");
            }
        };
        // Entries by id: 1 live, 2 revoked (revealed), 3 released,
        // 4 bound, 5 live, 6 revoked (unrevealed).
        let kind = |n: usize| entry_offset(n) + 32;
        let slot = |n: usize| kind(n) + 1;
        let spki = |n: usize| slot(n) + 4;
        let bound_at = |n: usize| spki(n) + 32;
        let expiry = |n: usize| bound_at(n) + 8;
        refused(&|b| b[0] = b'X', StateError::Header);
        refused(&|b| b[4] = 2, StateError::Header);
        refused(&|b| b.truncate(b.len() - 1), StateError::Length);
        refused(&|b| b.push(0), StateError::Length);
        refused(&|b| b[13 + 7] ^= 1, StateError::Length); // the log size
        refused(&|b| b[kind(0)] = 4, StateError::Entry(0));
        refused(&|b| b[slot(1) + 3] = 2, StateError::Entry(1));
        refused(&|b| b[bound_at(1) + 7] = 1, StateError::Entry(1));
        refused(&|b| b[slot(2) + 3] = 9, StateError::Entry(2));
        refused(&|b| b[spki(2)] = 1, StateError::Entry(2));
        // Id 2 renamed to 1: a repeat.
        refused(
            &|b| b[entry_offset(1)..entry_offset(1) + 32].fill(1),
            StateError::Order,
        );
        // Id 4 moved into live id 1's slot 0.
        refused(&|b| b[slot(3) + 3] = 0, StateError::SlotTwice(0));
        refused(&|b| b[bound_at(3) + 7] = 12, StateError::Inconsistent(3));
        // A released id that the clock has passed should be forgotten.
        refused(
            &|b| b[expiry(2)..expiry(2) + 8].copy_from_slice(&1u64.to_be_bytes()),
            StateError::Inconsistent(2),
        );
        // Any change changes the digest.
        let mut other = good.clone();
        other[5 + 7] ^= 1; // the clock
        assert_ne!(
            LogFollower::decode_state(&other).unwrap().state_digest(),
            every_kind().state_digest()
        );
    }
}
