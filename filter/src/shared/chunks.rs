//! The follower state in shared data, in chunks, and the registry a VM
//! reads from it in place.
//!
//! Envoy copies a shared-data value whole into the VM that reads it, and a
//! Wasm VM's linear memory keeps its high-water mark. So that a VM never
//! holds the state (85 bytes per id held), the publisher writes it in
//! pieces of at most [`ENTRIES_PER_CHUNK`] entries; a reader streams them
//! through the checks once per version and keeps only each piece's first
//! id and SHA-256 (64 bytes per piece, under 1 byte per id), and a lookup
//! reads the one piece that can hold the id, checks its digest and
//! searches it in place.
//!
//! # Entries
//!
//! | key | value |
//! |---|---|
//! | `state` | the manifest: version (8 bytes), slot (1), pieces (4), big-endian |
//! | `state\|<slot>\|<i>` | version (8 bytes), then piece `i` of that version's state |
//!
//! Piece 0 is the state's header (everything before its entries); piece
//! `i ≥ 1` holds entries `(i - 1) × k` to `i × k`. Concatenated, the
//! pieces are the state whose SHA-256 the checkpoint's state line names.
//!
//! There are two slots, 0 and 1: a publish writes the slot the manifest
//! does not name, then the manifest. VMs holding the published version
//! keep reading their slot while the next one is written; only a VM that
//! missed a whole version finds its pieces overwritten, and it then
//! installs the newest ([`Unreadable`]).
//!
//! # Rules
//!
//! - Pieces and the manifest are written by compare-and-swap against the
//!   value read, and never over a later version's (a publisher that finds
//!   one stops: the later publish stands).
//! - A reader takes a version only if every piece carries the manifest's
//!   version, the manifest's version is the note's size, and the pieces
//!   pass [`transparency::StateCheck`] (the note's state digest, then every
//!   check of the state decoder, then size, root and clock).
//! - A lookup uses a piece only if its SHA-256 is the one recorded when the
//!   version was verified.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use mazu_identity::registry::{STATE_ENTRY_LEN, StateWalker, registry_entry_in};
use mazu_identity::{RegistryEntry, WorkloadId};
use mazu_log::merkle::Hash;
use sha2::{Digest as _, Sha256};

use super::{CAS_ATTEMPTS, SharedKeys, SharedStore, decode_u64};
use crate::transparency::{Refusal, StateCheck, VerifiedCheckpoint};

/// Entries per piece: about 8 KB, so that a lookup copies and hashes
/// little, while the index stays under 1 byte per id.
pub const ENTRIES_PER_CHUNK: usize = 96;

/// The manifest of the published state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Manifest {
    version: u64,
    slot: u8,
    pieces: u32,
}

impl Manifest {
    fn encode(&self) -> [u8; 13] {
        let mut out = [0u8; 13];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8] = self.slot;
        out[9..].copy_from_slice(&self.pieces.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 13] = bytes.try_into().ok()?;
        let (version, rest) = bytes.split_first_chunk::<8>()?;
        let (&slot, pieces) = rest.split_first()?;
        Some(Manifest {
            version: u64::from_be_bytes(*version),
            slot: (slot <= 1).then_some(slot)?,
            pieces: u32::from_be_bytes(pieces.try_into().ok()?),
        })
    }
}

/// The published manifest, if there is a readable one, and its CAS token.
fn manifest(store: &impl SharedStore, keys: &SharedKeys) -> (Option<Manifest>, Option<u32>) {
    let (value, cas) = store.get(&keys.state);
    (value.as_deref().and_then(Manifest::decode), cas)
}

/// Splits a state into its pieces: the header, then runs of `per_piece`
/// entries. `None` if `state` does not start with a state header.
fn pieces(state: &[u8], per_piece: usize) -> Option<Vec<&[u8]>> {
    let header_len = StateWalker::header_len(state).ok()?;
    let (header, entries) = state.split_at_checked(header_len)?;
    let mut pieces = Vec::with_capacity(1 + entries.len() / STATE_ENTRY_LEN / per_piece + 1);
    pieces.push(header);
    pieces.extend(entries.chunks(per_piece.max(1) * STATE_ENTRY_LEN));
    Some(pieces)
}

/// Writes the state of `version` in pieces, then the manifest naming them.
/// True when done, or when a later version is published or being written
/// (it stands); false if a write stayed contended.
pub(super) fn write(
    store: &impl SharedStore,
    keys: &SharedKeys,
    version: u64,
    state: &[u8],
) -> bool {
    let (current, _) = manifest(store, keys);
    if current.is_some_and(|m| m.version >= version) {
        return true;
    }
    let slot = current.map_or(0, |m| m.slot ^ 1);
    let Some(pieces) = pieces(state, keys.entries_per_chunk) else {
        // Not a state: nothing the readers could verify.
        return true;
    };
    let ours = Manifest {
        version,
        slot,
        pieces: pieces.len() as u32,
    };
    let all: Vec<usize> = (0..pieces.len()).collect();
    let created = match write_pieces(store, keys, ours, &pieces, &all) {
        Some(Written::All { created }) => created,
        Some(Written::LaterFound) => return true,
        None => return false,
    };
    match set_manifest(store, keys, ours) {
        Some(true) => {}
        Some(false) => return true,
        None => return false,
    }
    // Envoy creates a missing key whatever the CAS token, so an older
    // publisher that found a piece missing may have written it over ours.
    // Only a key this publish created can have been raced so (an existing
    // key's compare-and-swap holds); each is put back: the key exists now,
    // so compare-and-swap holds, and the older publisher stops at the first
    // piece it finds newer. Readers meanwhile find the piece torn and retry.
    write_pieces(store, keys, ours, &pieces, &created).is_some()
}

/// What writing pieces did.
enum Written {
    /// Every piece asked for is in place; these keys were created (missing
    /// before this write).
    All { created: Vec<usize> },
    /// A piece of a later version was found: that publish stands.
    LaterFound,
}

/// Writes the pieces of `ours` at `indexes`. `None` if contended.
fn write_pieces(
    store: &impl SharedStore,
    keys: &SharedKeys,
    ours: Manifest,
    pieces: &[&[u8]],
    indexes: &[usize],
) -> Option<Written> {
    let mut created = Vec::new();
    for &index in indexes {
        let Some(piece) = pieces.get(index) else {
            continue;
        };
        let mut entry = Vec::with_capacity(8 + piece.len());
        entry.extend_from_slice(&ours.version.to_be_bytes());
        entry.extend_from_slice(piece);
        let key = keys.chunk(ours.slot, index as u32);
        match write_piece(store, &key, ours.version, &entry)? {
            PieceWrite::InPlace { created: true } => created.push(index),
            PieceWrite::InPlace { created: false } => {}
            PieceWrite::Later => return Some(Written::LaterFound),
        }
    }
    Some(Written::All { created })
}

/// What writing one piece found.
enum PieceWrite {
    /// Ours is in place; `created` if the key was missing before.
    InPlace { created: bool },
    /// A later version's piece is there.
    Later,
}

/// Writes one piece unless a later version's is there. `None` if contended.
fn write_piece(
    store: &impl SharedStore,
    key: &str,
    version: u64,
    entry: &[u8],
) -> Option<PieceWrite> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = store.get(key);
        if value.as_deref() == Some(entry) {
            return Some(PieceWrite::InPlace { created: false });
        }
        if decode_u64(value.as_deref().and_then(|v| v.get(..8))) > Some(version) {
            return Some(PieceWrite::Later);
        }
        if store.set(key, entry, cas) {
            return Some(PieceWrite::InPlace {
                created: value.is_none(),
            });
        }
    }
    None
}

/// Sets the manifest to `ours` unless one at least as late is there.
/// `Some(true)` if ours is in place, `Some(false)` if a later one (or
/// another of the same version) is, `None` if contended.
fn set_manifest(store: &impl SharedStore, keys: &SharedKeys, ours: Manifest) -> Option<bool> {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = manifest(store, keys);
        if current == Some(ours) {
            return Some(true);
        }
        if current.is_some_and(|m| m.version >= ours.version) {
            return Some(false);
        }
        if store.set(&keys.state, &ours.encode(), cas) {
            return Some(true);
        }
    }
    None
}

/// What reading the published state gave.
#[derive(Debug)]
pub(super) enum StateRead {
    /// Not (yet, or no longer) the state of this note: another publish's
    /// manifest or pieces. Retried at the next poll.
    Torn,
    /// Pieces of this note's version that do not verify.
    Refused(Refusal),
    /// The state verified: the registry, to be read in place.
    Verified(SharedRegistry),
}

/// Reads the published state of `checkpoint`'s size piece by piece through
/// [`StateCheck`], holding one piece at a time.
pub(super) fn read(
    store: &impl SharedStore,
    keys: &SharedKeys,
    checkpoint: &VerifiedCheckpoint,
    witnessed_ms: u64,
) -> StateRead {
    let (Some(manifest), _) = manifest(store, keys) else {
        return StateRead::Torn;
    };
    if manifest.version != checkpoint.size || manifest.pieces == 0 {
        return StateRead::Torn;
    }
    let mut check = StateCheck::new(checkpoint, witnessed_ms);
    // The manifest is anyone's to write: room reserved by its word only up
    // to a bound (a million ids' worth).
    let mut index = Vec::with_capacity((manifest.pieces as usize).min(1 << 14));
    for i in 0..manifest.pieces {
        let Some(entry) = store.get(&keys.chunk(manifest.slot, i)).0 else {
            return StateRead::Torn;
        };
        let Some((version, piece)) = entry.split_first_chunk::<8>() else {
            return StateRead::Refused(check.mismatch());
        };
        if u64::from_be_bytes(*version) != manifest.version {
            // A later publish being written, or an earlier one that wrote
            // a missing piece over this one (put back by its publisher).
            return StateRead::Torn;
        }
        if i == 0 {
            check.header(piece);
        } else {
            let Some(first) = piece.first_chunk::<32>() else {
                return StateRead::Refused(check.mismatch());
            };
            index.push(Piece {
                first_id: *first,
                digest: Sha256::digest(piece).into(),
            });
            check.entries(piece);
        }
    }
    match check.finish() {
        Ok(summary) => StateRead::Verified(SharedRegistry {
            version: manifest.version,
            len: summary.registry_len,
            key_base: keys.chunk_base(manifest.slot),
            pieces: index,
            last: RefCell::new(None),
        }),
        Err(refusal) => StateRead::Refused(refusal),
    }
}

/// One piece of entries, as verified.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// Its first id: the piece holds the ids from this one up to the next
    /// piece's first.
    first_id: Hash,
    /// SHA-256 of the piece.
    digest: Hash,
}

/// A lookup could not read a verified piece: it was overwritten (by a
/// later publish, after this VM missed a whole version, or by another
/// plugin of the proxy). The VM installs the newest version and asks again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable;

/// A verified registry in shared data, read in place: what a VM that does
/// not follow the log decides with. It holds 64 bytes per piece and the
/// last piece read.
#[derive(Debug)]
pub struct SharedRegistry {
    version: u64,
    len: usize,
    /// `<state key>|<slot>`: piece `i` is under `<key_base>|<i>`.
    key_base: String,
    pieces: Vec<Piece>,
    /// The last piece read and verified (its index and its entry, version
    /// first): a verdict looks the same id up more than once.
    last: RefCell<Option<(usize, Vec<u8>)>>,
}

impl SharedRegistry {
    /// The registry's version (the log size).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of registry entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The registry entry of `id`: reads the piece that can hold it, checks
    /// its digest, searches it.
    pub fn get(
        &self,
        store: &(impl SharedStore + ?Sized),
        id: &WorkloadId,
    ) -> Result<Option<RegistryEntry>, Unreadable> {
        let after = self
            .pieces
            .partition_point(|piece| piece.first_id <= *id.as_bytes());
        let Some(at) = after.checked_sub(1) else {
            return Ok(None);
        };
        let mut last = self.last.borrow_mut();
        if let Some((index, entry)) = last.as_ref()
            && *index == at
        {
            return Ok(registry_entry_in(&entry[8..], id));
        }
        let entry = store
            .get(&format!("{}|{}", self.key_base, at + 1))
            .0
            .ok_or(Unreadable)?;
        let piece = entry.get(8..).ok_or(Unreadable)?;
        let digest: Hash = Sha256::digest(piece).into();
        if self.pieces.get(at).is_none_or(|p| p.digest != digest) {
            return Err(Unreadable);
        }
        let found = registry_entry_in(piece, id);
        *last = Some((at, entry));
        Ok(found)
    }
}
