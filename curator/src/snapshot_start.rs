//! Start-up from a state snapshot (format 3) without reading the log
//! prefix it covers: what is checked before the curator serves.
//!
//! Everything here follows the live state, not the history:
//!
//! - the file is intact and of this CRS ([`crate::snapshot::parse`]);
//! - it covers no more entries than the log holds, and (if the log was
//!   opened from its frame layout) exactly the prefix the store skipped;
//! - the RBE image decodes (points on the curve) and every block
//!   commitment is the sum of its keys ([`SnapshotRestore::from_bytes_unchecked`]);
//! - the sections agree with each other: the follower state, the tree and
//!   the header have the same size, and the follower's Merkle frontier has
//!   the tree's root; the identity image fits the id lifecycle
//!   ([`Registry::from_image`]);
//! - the log agrees with them where they point: the bind entry of every id
//!   holding a slot is read (by the index the snapshot gives) and must be a
//!   bind of that id with that content and time, into the slot the
//!   lifecycle holds it in, and the registrations in
//!   them must be exactly the RBE image's live table (slot, id, key) —
//!   [`SnapshotRestore::finish_live`], which also takes their proofs of
//!   knowledge; the last covered entries (up to a chunk of the tree) are
//!   read and their records must hash to the snapshot's tree.
//!
//! What is **not** checked before serving, because it needs the whole
//! prefix: the frames' checksums, the RBE log digest, the lifecycle and
//! the maps beside it as derived from every entry, and the chunk roots
//! below the last chunk. [`crate::prefix_check`] checks all of them in the
//! background and stops the curator if one differs; until then, a proof
//! or record that reaches below a chunk root is made only from records
//! derived from the log and checked against that chunk root, and the root
//! the tree gives is checked at start against the acknowledged checkpoint
//! (signed) by the caller.

use std::path::Path;
use std::sync::Arc;

use mazu_identity::registry::LogFollower;
use mazu_identity::registry::derive::IdState;
use mazu_log::chunked::ChunkedTree;
use mazu_log::merkle::{Hash, leaf_hash};
use mazu_rbe::{Crs, SnapshotRestore};

use crate::entry::{EntryBody, LogEntry};
use crate::registry::{IdentityImage, Registry, content_digest};
use crate::snapshot::{SnapshotLoadError, parse};
use crate::store::LogStore;

/// What the snapshot claims about the prefix, kept until the background
/// check has compared it with what the log gives.
#[derive(Debug, Clone)]
pub struct PrefixClaims {
    /// Entries covered.
    pub entries: u64,
    /// The RBE image.
    pub image: Vec<u8>,
    /// The follower state.
    pub follower: Vec<u8>,
    /// The identity image.
    pub identity: Vec<u8>,
    /// The tree's root at `entries`.
    pub root: Hash,
}

/// The state restored from a snapshot.
#[derive(Debug)]
pub struct Restored {
    /// The curator's state after the prefix.
    pub registry: Registry,
    /// The follower after the prefix (for the checkpoints' state line).
    pub follower: LogFollower,
    /// The Merkle tree's upper levels after the prefix.
    pub tree: ChunkedTree,
    /// What the background check compares.
    pub claims: PrefixClaims,
}

/// Restores from the snapshot at `path` (`Ok(None)`: there is none), with
/// the checks in the [module docs](self).
pub fn load(
    path: &Path,
    crs: &Crs,
    store: &Arc<dyn LogStore>,
    chunk_bits: u32,
) -> Result<Option<Restored>, SnapshotLoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    restore(&bytes, crs, store, chunk_bits).map(Some)
}

/// [`load`] on bytes already read.
pub fn restore(
    bytes: &[u8],
    crs: &Crs,
    store: &Arc<dyn LogStore>,
    chunk_bits: u32,
) -> Result<Restored, SnapshotLoadError> {
    let parsed = parse(bytes, &crs.digest())?;
    let covers = parsed.entries;
    let log_len = store.len();
    if covers > log_len {
        return Err(SnapshotLoadError::AheadOfLog { covers, log_len });
    }
    let skipped = store.unverified_prefix();
    if skipped != 0 && skipped != covers {
        return Err(SnapshotLoadError::Parts(format!(
            "the log was opened without reading its first {skipped} entries, the snapshot covers \
             {covers}"
        )));
    }
    let parts = |what: String| SnapshotLoadError::Parts(what);
    let rbe = SnapshotRestore::from_bytes_unchecked(crs.clone(), parsed.image)?;
    let follower = LogFollower::decode_state(parsed.follower)
        .map_err(|e| parts(format!("the follower state: {e}")))?;
    if parsed.chunk_bits != chunk_bits {
        return Err(parts(format!(
            "the tree has chunks of 2^{} leaves, this curator uses 2^{chunk_bits}",
            parsed.chunk_bits
        )));
    }
    let tree =
        ChunkedTree::from_parts(chunk_bits, parsed.chunk_roots.iter().copied(), &parsed.tail)
            .ok_or_else(|| parts("the tree's last chunk is complete".into()))?;
    if follower.size() != covers || tree.len() != covers {
        return Err(parts(format!(
            "the header covers {covers} entries, the follower state {}, the tree {}",
            follower.size(),
            tree.len()
        )));
    }
    // The root of the whole tree needs no leaf below a chunk root.
    let root = tree
        .root(covers, |_, _| Err::<Vec<Hash>, _>("no leaf is needed"))
        .map_err(|e| parts(format!("the tree's root: {e}")))?;
    if follower.root() != root {
        return Err(parts("the follower state's root is not the tree's".into()));
    }
    let identity = IdentityImage::decode(parsed.identity)
        .map_err(|e| parts(format!("the identity image: {e}")))?;
    let ids = follower.registry().clone();

    // The log where the snapshot points: the live binds, and the last
    // covered entries against the tree.
    let mut live = Vec::new();
    for (id, bind) in identity.slot_holders(&ids) {
        let index = bind.index;
        let entry_error = |reason: &str| SnapshotLoadError::Entry {
            index,
            reason: reason.into(),
        };
        let bytes = store
            .read_range(index, 1)?
            .pop()
            .ok_or_else(|| entry_error("missing"))?;
        let entry = LogEntry::from_bytes(&bytes).map_err(|e| entry_error(&e.to_string()))?;
        if entry.id != id || entry.at_ms != bind.at_ms || content_digest(&entry) != bind.content {
            return Err(entry_error(
                "it is not the bind the snapshot names for this id",
            ));
        }
        let EntryBody::Bind {
            slot, registration, ..
        } = entry.body
        else {
            return Err(entry_error("not a bind"));
        };
        // The lifecycle holds the id in the slot its bind names (the RBE
        // image's slot for it is checked by `finish_live`).
        let held = match ids.state(&id) {
            Some(IdState::Bound { slot, .. } | IdState::Live { slot, .. }) => Some(*slot),
            _ => None,
        };
        if held != Some(slot) {
            return Err(entry_error(
                "the follower state holds this id in another slot than its bind's",
            ));
        }
        live.push(registration);
    }
    let rbe = rbe.finish_live(live.iter().map(Vec::as_slice))?;
    check_last_chunk(store.as_ref(), &tree, covers)?;
    let registry = Registry::from_image(rbe, ids, identity).map_err(|e| parts(e.to_string()))?;
    let claims = PrefixClaims {
        entries: covers,
        image: parsed.image.to_vec(),
        follower: parsed.follower.to_vec(),
        identity: parsed.identity.to_vec(),
        root,
    };
    Ok(Restored {
        registry,
        follower,
        tree,
        claims,
    })
}

/// The covered entries of the tree's last chunk (up to a chunk) must be
/// the log's: their records hash to the leaves or chunk root the snapshot
/// holds. A cheap check that the log and the snapshot meet at the boundary.
fn check_last_chunk(
    store: &dyn LogStore,
    tree: &ChunkedTree,
    covers: u64,
) -> Result<(), SnapshotLoadError> {
    if covers == 0 {
        return Ok(());
    }
    let start = (covers - 1) / tree.chunk_len() * tree.chunk_len();
    let count = usize::try_from(covers - start).unwrap_or(usize::MAX);
    let entries = store.read_range(start, count)?;
    let mut leaves = Vec::with_capacity(entries.len());
    for (index, bytes) in (start..).zip(&entries) {
        let record = LogEntry::from_bytes(bytes)
            .and_then(|e| e.record(bytes))
            .map_err(|e| SnapshotLoadError::Entry {
                index,
                reason: e.to_string(),
            })?;
        leaves.push(leaf_hash(&record.to_bytes()));
    }
    if entries.len() != count || !tree.holds(start, &leaves) {
        return Err(SnapshotLoadError::Entry {
            index: start,
            reason: format!(
                "the records of entries {start}..{covers} do not hash to the snapshot's tree"
            ),
        });
    }
    Ok(())
}
