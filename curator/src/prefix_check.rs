//! The background check of the log prefix a state snapshot covers.
//!
//! A start from a snapshot ([`crate::snapshot_start`]) serves before it
//! has read the prefix. This check then reads all of it, with the rules of
//! a replay minus the curve arithmetic, and compares what it derives with
//! what the snapshot claimed:
//!
//! 1. every frame's checksum, and the frames lie where the snapshot's frame
//!    index says ([`LogStore::verify_prefix`]);
//! 2. every entry decodes, its record is derived and applied to the id
//!    lifecycle with the replay's rules (a void entry is refused);
//! 3. the RBE image is checked against the prefix's operations: each
//!    bind's slot, id and key, the releases, the log digest, the live table
//!    ([`SnapshotRestore::finish`]);
//! 4. the records' Merkle root is the snapshot's tree root, the follower
//!    state derived is the snapshot's byte for byte, and so is the
//!    identity image of the state derived.
//!
//! On a difference the curator stops trusting what it restored: see
//! [`crate::service`] (`/readyz` fails, no entry is appended any more, no
//! proof or record is served, the snapshot is moved aside so that the next
//! start replays the whole log, and the server exits non-zero).

use mazu_identity::registry::LogFollower;
use mazu_log::LeafRecord;
use mazu_rbe::{Crs, SnapshotRestore};

use crate::entry::{EntryBody, LogEntry};
use crate::registry::Registry;
use crate::snapshot_start::PrefixClaims;
use crate::store::LogStore;

/// Entries read from the log per batch.
const READ_BATCH: usize = 256;

/// Where the background check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixCheck {
    /// The state was not restored from a snapshot: nothing to check.
    NotNeeded,
    /// Running.
    Running,
    /// The prefix gives what the snapshot claimed.
    Passed,
    /// It does not: what differed.
    Refuted(String),
}

impl PrefixCheck {
    /// Whether the check is over (or was never needed).
    pub fn is_done(&self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// Runs the check (blocking: the whole prefix is read). `Err` says what
/// differed. `records` is given each record derived, in log order (the
/// curator keeps them on disk to serve them, checked against the tree).
pub fn check(
    store: &dyn LogStore,
    crs: &Crs,
    claims: &PrefixClaims,
    records: &mut dyn FnMut(&LeafRecord),
) -> Result<(), String> {
    store
        .verify_prefix()
        .map_err(|e| format!("the log's frames: {e}"))?;
    let mut follower = LogFollower::new();
    let registry = rederive(store, crs, claims, &mut |record| {
        // Void records are refused by the lifecycle check in `rederive`.
        let _ = follower.append_own(record);
        records(record);
    })?;
    if follower.root() != claims.root {
        return Err(format!(
            "the records of the first {} log entries hash to root {}, the snapshot's tree says {}",
            claims.entries,
            hex::encode(follower.root()),
            hex::encode(claims.root)
        ));
    }
    if follower.encode_state() != claims.follower {
        return Err(format!(
            "the id lifecycle (follower state) derived from the first {} log entries differs from \
             the snapshot's",
            claims.entries
        ));
    }
    if registry.identity_image() != claims.identity {
        return Err(format!(
            "the bind, reveal, end or namespace indexes derived from the first {} log entries \
             differ from the snapshot's",
            claims.entries
        ));
    }
    Ok(())
}

/// The state after the first `claims.entries` entries, the identity side
/// re-derived with the replay's rules and the RBE image checked against
/// the operations; `records` gets each entry's record in log order.
fn rederive(
    store: &dyn LogStore,
    crs: &Crs,
    claims: &PrefixClaims,
    records: &mut dyn FnMut(&LeafRecord),
) -> Result<Registry, String> {
    let covers = claims.entries;
    let mut restore = SnapshotRestore::from_bytes_unchecked(crs.clone(), &claims.image)
        .map_err(|e| format!("the RBE image: {e}"))?;
    // The identity side is derived on an empty RBE state (whose slots are
    // all free, so only the lifecycle rules decide); the checked image
    // replaces it at the end.
    let mut registry = Registry::new(crs.clone());
    let mut index = 0u64;
    while index < covers {
        let want = usize::try_from(covers - index).map_or(READ_BATCH, |r| r.min(READ_BATCH));
        let chunk = store
            .read_range(index, want)
            .map_err(|e| format!("reading log entry #{index}: {e}"))?;
        if chunk.is_empty() {
            return Err(format!(
                "the log ends at entry #{index}, before the prefix does"
            ));
        }
        for bytes in chunk {
            let entry_error = |reason: String| format!("log entry #{index}: {reason}");
            let entry = LogEntry::from_bytes(&bytes).map_err(|e| entry_error(e.to_string()))?;
            let record = entry
                .record(&bytes)
                .map_err(|e| entry_error(e.to_string()))?;
            match &entry.body {
                EntryBody::Bind {
                    slot, registration, ..
                } => {
                    let (image_slot, image_id) = restore
                        .push_registration(registration)
                        .map_err(|e| entry_error(format!("against the RBE image: {e}")))?;
                    if image_slot != *slot || image_id != entry.id {
                        return Err(entry_error(
                            "the registration's slot or id is not the entry's".into(),
                        ));
                    }
                }
                EntryBody::Release { .. } | EntryBody::Revoke { .. } => {
                    // The RBE side takes out exactly the registration of the
                    // id's bind entry.
                    let bind_index =
                        registry
                            .bind_of(&entry.id)
                            .map(|b| b.index)
                            .ok_or_else(|| {
                                entry_error("ends a binding the log does not hold".into())
                            })?;
                    let bind_bytes = crate::service::read_entry(store, bind_index)
                        .map_err(|e| entry_error(e.to_string()))?;
                    let Ok(LogEntry {
                        body: EntryBody::Bind { registration, .. },
                        ..
                    }) = LogEntry::from_bytes(&bind_bytes)
                    else {
                        return Err(entry_error(format!(
                            "entry {bind_index}, the binding it ends, is not a bind"
                        )));
                    };
                    let (_, image_id) = restore
                        .push_release(&registration)
                        .map_err(|e| entry_error(format!("against the RBE image: {e}")))?;
                    if image_id != entry.id {
                        return Err(entry_error(
                            "the released registration's id is not the entry's".into(),
                        ));
                    }
                }
                EntryBody::Reveal { .. } => {}
            }
            registry
                .apply_identity(&entry, &record)
                .map_err(|e| entry_error(e.to_string()))?;
            records(&record);
            index += 1;
        }
    }
    let rbe = restore
        .finish()
        .map_err(|e| format!("the RBE image against the first {covers} log entries: {e}"))?;
    registry.replace_rbe(rbe);
    Ok(registry)
}
