//! The registry as the filter holds it: every registered workload, sorted by ID.
//!
//! Why a sorted `Vec` and binary search rather than a hash map: it is the
//! most compact layout (80 bytes per entry in memory, no buckets or control
//! bytes), lookups cost ~17 comparisons at 100,000 entries, there is no hash
//! seed to get from an RNG (none in the Wasm sandbox) and no hash-flooding
//! concern, and the in-memory order *is* the canonical encoding order, so
//! decoding is a validated copy and encoding is deterministic.

use alloc::vec::Vec;

use super::codec::{Cursor, sort_unique};
use super::delta::RegistryDelta;
use super::entry::{ENTRY_LEN, RegistryEntry};
use super::error::RegistryError;
use crate::digest::WorkloadId;

/// Snapshot magic, "MZRS".
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"MZRS";
/// Snapshot format written and read by this version. A later format (2) will
/// add the Merkle-log checkpoint (tree size and root hash) after `version`.
pub const SNAPSHOT_FORMAT: u8 = 1;
/// Header length of format 1: magic (4) + format (1) + version (8) + count (4).
pub const SNAPSHOT_HEADER_LEN: usize = 4 + 1 + 8 + 4;

/// Every registered workload at one curator log size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrySnapshot {
    version: u64,
    entries: Vec<RegistryEntry>,
}

impl RegistrySnapshot {
    /// The empty registry at version 0.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A snapshot from entries in any order. `version` is the curator log size
    /// the entries reflect; there cannot be more entries than log records.
    pub fn from_entries(version: u64, entries: Vec<RegistryEntry>) -> Result<Self, RegistryError> {
        let entries = sort_unique(entries)?;
        check_count(entries.len(), version)?;
        Ok(Self { version, entries })
    }

    /// A snapshot from entries already sorted by id without duplicates, as
    /// [`DerivedRegistry`](super::DerivedRegistry) produces them from its map.
    pub(super) fn from_sorted_unchecked(version: u64, entries: Vec<RegistryEntry>) -> Self {
        debug_assert!(
            entries
                .windows(2)
                .all(|pair| pair[0].workload_id < pair[1].workload_id)
        );
        Self { version, entries }
    }

    /// The curator log size this snapshot reflects.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries, sorted by workload ID.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The entry for `id` (binary search).
    pub fn get(&self, id: &WorkloadId) -> Option<&RegistryEntry> {
        self.entries
            .binary_search_by(|entry| entry.workload_id.cmp(id))
            .ok()
            .and_then(|index| self.entries.get(index))
    }

    /// The canonical encoding (see docs/identity.md, "Registry snapshot").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        // At most u32::MAX entries can be decoded; a snapshot built in memory
        // cannot realistically exceed it (that would be 330 GB).
        out.extend_from_slice(
            &u32::try_from(self.entries.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for entry in &self.entries {
            entry.encode_into(&mut out);
        }
        out
    }

    /// Decodes the canonical encoding, refusing anything else: wrong magic or
    /// format, a count that does not match the length (checked before any
    /// allocation), unsorted or duplicate entries, unknown flags, trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RegistryError> {
        let mut cursor = Cursor::new(bytes);
        cursor.magic(&SNAPSHOT_MAGIC)?;
        let format = cursor.u8()?;
        if format != SNAPSHOT_FORMAT {
            return Err(RegistryError::UnsupportedFormat(format));
        }
        let version = cursor.u64()?;
        let count = cursor.u32()?;
        let entries = cursor.sorted_entries(count)?;
        check_count(entries.len(), version)?;
        Ok(Self { version, entries })
    }

    /// Applies a delta, all or nothing. Refuses (leaving `self` unchanged) a
    /// delta that does not start at this snapshot's version, that rebinds an
    /// existing ID to another slot, key or expiry, or that un-revokes one.
    pub fn apply(&mut self, delta: &RegistryDelta) -> Result<(), RegistryError> {
        if delta.from_version() != self.version {
            return Err(RegistryError::VersionMismatch {
                snapshot: self.version,
                delta_from: delta.from_version(),
            });
        }
        // Validate everything first so that a refused delta changes nothing.
        let mut revocations: Vec<usize> = Vec::new();
        let mut fresh: Vec<RegistryEntry> = Vec::new();
        for upsert in delta.entries() {
            match self
                .entries
                .binary_search_by(|entry| entry.workload_id.cmp(&upsert.workload_id))
            {
                Ok(index) => {
                    let existing = self.entries.get(index).ok_or(RegistryError::Unsorted)?;
                    if !existing.same_binding(upsert) {
                        return Err(RegistryError::ConflictingEntry(upsert.workload_id));
                    }
                    match (existing.revoked, upsert.revoked) {
                        (true, false) => return Err(RegistryError::Unrevoke(upsert.workload_id)),
                        (false, true) => revocations.push(index),
                        _ => {}
                    }
                }
                Err(_) => fresh.push(*upsert),
            }
        }
        // No count check needed: the snapshot has at most `version` entries
        // and the delta at most `to - from` upserts, so the result has at
        // most `to_version` entries.

        for index in revocations {
            if let Some(entry) = self.entries.get_mut(index) {
                entry.revoked = true;
            }
        }
        merge_sorted(&mut self.entries, &fresh);
        self.version = delta.to_version();
        Ok(())
    }
}

fn check_count(count: usize, records: u64) -> Result<(), RegistryError> {
    if u64::try_from(count).map_or(true, |c| c > records) {
        return Err(RegistryError::TooManyEntries { count, records });
    }
    Ok(())
}

/// Merges sorted `fresh` (IDs absent from `entries`) into sorted `entries`
/// in place, from the back: O(n + m), one reallocation at most.
fn merge_sorted(entries: &mut Vec<RegistryEntry>, fresh: &[RegistryEntry]) {
    let mut i = entries.len();
    let mut j = fresh.len();
    entries.extend_from_slice(fresh);
    let mut k = entries.len();
    while j > 0 {
        k -= 1;
        let take_old = i > 0 && entries[i - 1].workload_id > fresh[j - 1].workload_id;
        if take_old {
            i -= 1;
            entries[k] = entries[i];
        } else {
            j -= 1;
            entries[k] = fresh[j];
        }
    }
}
