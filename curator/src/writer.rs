//! The serialized writer: the only code that changes the state.
//!
//! One dedicated thread takes prepared binds and reveals in arrival order
//! and, for each: answers an identical repeat with the entry already logged;
//! re-checks against the current state (the lifecycle rules: first binding
//! wins, a reveal needs a binding not yet revealed; slot and reservation),
//! runs the RBE *state* checks of a bind for this exact version
//! ([`mazu_rbe::RegistryState::verify_fresh`]: map lookups, no pairing: the
//! pairing check already ran in parallel and its result travels as a
//! [`mazu_rbe::WellFormedRegistration`]), appends the entry to the log
//! (which fsyncs), extends the Merkle tree with the entry's record, then
//! applies it to the in-memory state. A refusal at any step before the
//! append changes nothing; an append failure changes nothing either (the
//! store rolls back or refuses further appends). So the curator never logs
//! an entry the lifecycle rules would void.
//!
//! Releases and revocations ([`PreparedEnd`]) go the same way: re-checked
//! (still bound, and for a curator release still due at the entry's time),
//! the registration of the bind entry verified as the one in its slot, then
//! appended and applied.

use core::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mazu_identity::registry::derive::IdState;
use mazu_log::record::ReleaseReason;
use tokio::sync::{mpsc, oneshot};

use crate::api::error::ApiError;
use crate::entry::{EntryBody, LogEntry};
use crate::register::{PreparedBind, PreparedReveal, conflict_error, rbe_error};
use crate::registry::{Conflict, EndedBinding};
use crate::service::{Core, now_ms};

/// An entry in the log (just appended, or found there for an identical
/// repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    /// Its log index.
    pub index: u64,
    /// Its RFC 6962 leaf hash (of its record).
    pub leaf_hash: [u8; 32],
    /// Whether this request appended it (false: an identical repeat).
    pub created: bool,
}

/// What to commit.
#[derive(Debug)]
pub(crate) enum Work {
    Bind(Box<PreparedBind>),
    Reveal(PreparedReveal),
    End(Box<PreparedEnd>),
}

/// A release or revocation ready to commit: the entry (its signature, if
/// any, already checked against the bound key) and the binding it ends, read
/// from the bind entry at `bind_index`.
#[derive(Debug)]
pub(crate) struct PreparedEnd {
    pub(crate) entry: LogEntry,
    pub(crate) ended: EndedBinding,
    pub(crate) bind_index: u64,
}

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) work: Work,
    pub(crate) reply: oneshot::Sender<Result<Logged, ApiError>>,
}

/// Starts the writer thread. It stops when every sender is dropped.
pub(crate) fn spawn(
    core: Arc<Core>,
    mut jobs: mpsc::Receiver<Job>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            while let Some(job) = jobs.blocking_recv() {
                let started = Instant::now();
                let result = match job.work {
                    Work::Bind(b) => commit_bind(&core, *b),
                    Work::Reveal(r) => commit_reveal(&core, r),
                    Work::End(e) => commit_end(&core, *e),
                };
                core.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                match &result {
                    Ok(l) if l.created => {
                        core.metrics.accepted.inc();
                    }
                    Ok(_) => {}
                    Err(e) => core.metrics.refuse(e.code()),
                }
                // The requester may have gone away (timeout); the outcome
                // stands either way.
                let _ = job.reply.send(result);
            }
        })
}

fn usable(core: &Core) -> Result<(), ApiError> {
    if core.failed.load(Ordering::SeqCst) || core.store.is_poisoned() {
        return Err(ApiError::StorageUnavailable);
    }
    Ok(())
}

/// The entry at `index`, for an identical repeat.
pub(crate) fn already(core: &Core, index: u64) -> Result<Logged, ApiError> {
    let leaf_hash = core
        .transparency
        .leaf(index)
        .map_err(|e| ApiError::internal(format!("logged entry {index} has no leaf: {e}")))?;
    Ok(Logged {
        index,
        leaf_hash,
        created: false,
    })
}

fn commit_bind(core: &Core, prepared: PreparedBind) -> Result<Logged, ApiError> {
    usable(core)?;
    let id = *prepared.id();
    let slot = prepared.slot();
    // Re-check against the current state; only this thread changes it, so
    // the result holds until the apply below.
    let verified = {
        let registry = core.read_registry();
        if let Some(bind) = registry.bind_of(&id)
            && bind.content == prepared.content
        {
            return already(core, bind.index);
        }
        if let Err(c) = registry.check_bind(&id, slot) {
            return Err(conflict_error(&c));
        }
        if core
            .lock_reservations()
            .reserved_for_other(slot, &id, Instant::now())
        {
            return Err(ApiError::SlotReserved(slot));
        }
        registry
            .verify_fresh(prepared.well_formed)
            .map_err(|e| rbe_error(&e))?
    };
    let mut entry = prepared.entry;
    entry.at_ms = now_ms();
    let logged = append(core, &entry, |registry, record| {
        registry.apply_bind(&entry, record, &verified)
    })?;
    core.lock_reservations().release(&id);
    tracing::info!(
        index = logged.index,
        slot,
        id = %hex::encode(id),
        "binding logged"
    );
    Ok(logged)
}

fn commit_reveal(core: &Core, prepared: PreparedReveal) -> Result<Logged, ApiError> {
    usable(core)?;
    let id = prepared.entry.id;
    {
        let registry = core.read_registry();
        match registry.check_reveal(
            &id,
            &prepared.claims_digest,
            prepared.token_expiry,
            now_ms(),
        ) {
            Ok(()) => {}
            // The id's token is the one whose SHA-256 is the id: a second
            // reveal is the same token again, answered with the first.
            Err(Conflict::AlreadyRevealed(index)) => return already(core, index),
            Err(c) => return Err(conflict_error(&c)),
        }
        debug_assert!(matches!(registry.state(&id), Some(IdState::Bound { .. })));
        let quota = core.namespace_quota;
        if quota > 0 && registry.live_in_namespace(&prepared.namespace) >= quota {
            return Err(ApiError::NamespaceQuota {
                namespace: prepared.namespace,
                quota,
            });
        }
    }
    let mut entry = prepared.entry;
    entry.at_ms = now_ms();
    let logged = append(core, &entry, |registry, record| {
        registry.apply_reveal(&entry, record)
    })?;
    tracing::info!(index = logged.index, id = %hex::encode(id), "reveal logged");
    Ok(logged)
}

fn commit_end(core: &Core, prepared: PreparedEnd) -> Result<Logged, ApiError> {
    usable(core)?;
    let PreparedEnd {
        mut entry,
        ended,
        bind_index,
    } = prepared;
    let id = entry.id;
    entry.at_ms = now_ms();
    let reason = match &entry.body {
        EntryBody::Release { reason, .. } => Some(*reason),
        EntryBody::Revoke { .. } => None,
        _ => return Err(ApiError::internal("not a release or revocation")),
    };
    let verified = {
        let registry = core.read_registry();
        match registry.check_end(&id, reason, entry.at_ms) {
            Ok(index) if index == bind_index => {}
            Ok(_) => return Err(ApiError::internal("the binding's bind entry moved")),
            Err(Conflict::Ended) => {
                // A holder's repeat (its first answer was lost) gets the
                // entry that did what it asks.
                let holder = matches!(reason, None | Some(ReleaseReason::Holder));
                return match registry.holder_end_of(&id, reason.is_none()) {
                    Some(index) if holder => already(core, index),
                    _ => Err(ApiError::BindingEnded),
                };
            }
            Err(c) => return Err(conflict_error(&c)),
        }
        registry
            .rbe()
            .verify_release(&ended.registration)
            .map_err(|e| ApiError::internal(format!("the bound registration is not live: {e}")))?
    };
    let logged = append(core, &entry, |registry, record| {
        registry.apply_end(&entry, record, &verified, &ended.tls_spki)
    })?;
    core.lock_reservations().slot_freed(ended.registration.slot);
    tracing::info!(
        index = logged.index,
        slot = ended.registration.slot,
        id = %hex::encode(id),
        kind = entry.body.kind_name(),
        reason = reason.map_or("holder", ReleaseReason::as_str),
        "binding ended; its slot is free"
    );
    Ok(logged)
}

/// Appends `entry` (checked against the state by the caller), extends the
/// tree with its record, applies it with `apply`, and signals the new size.
fn append(
    core: &Core,
    entry: &LogEntry,
    apply: impl FnOnce(
        &mut crate::registry::Registry,
        &mazu_log::LeafRecord,
    ) -> Result<(), crate::registry::ApplyError>,
) -> Result<Logged, ApiError> {
    let bytes = entry.to_bytes();
    let record = entry
        .record(&bytes)
        .map_err(|e| ApiError::internal(format!("a checked entry has no record: {e}")))?;
    let index = core.store.append(&bytes).map_err(|e| {
        tracing::error!(error = %e, "appending to the log failed; nothing changed");
        ApiError::StorageUnavailable
    })?;
    // The tree follows the durable log; the state catches up below.
    let leaf_hash = core.transparency.push(record.to_bytes());
    let size = {
        let mut registry = core.write_registry();
        if let Err(e) = apply(&mut registry, &record) {
            // The entry is durable but the state refused it: the log and the
            // state disagree. Stop accepting; a restart replays the log.
            core.failed.store(true, Ordering::SeqCst);
            return Err(ApiError::internal(format!(
                "log entry {index} appended but not applied: {e}"
            )));
        }
        registry.size()
    };
    if size != index + 1 || core.transparency.size() != size {
        core.failed.store(true, Ordering::SeqCst);
        return Err(ApiError::internal(format!(
            "log index {index} does not match the state's size {size}"
        )));
    }
    core.metrics
        .log_entries
        .set(i64::try_from(size).unwrap_or(i64::MAX));
    if let Some(snapshots) = &core.snapshots
        && snapshots.due(size)
    {
        // Clone under the read lock (a memory copy); encoding, writing and
        // fsyncing happen on another thread, so the writer is not held up.
        if let Some(capture) = core.capture() {
            snapshots.write_in_background(capture);
        }
    }
    core.grew(size);
    Ok(Logged {
        index,
        leaf_hash,
        created: true,
    })
}
