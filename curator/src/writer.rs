//! The serialized writer: the only code that changes the registry.
//!
//! One dedicated thread takes prepared registrations in arrival order and, for
//! each: re-checks freshness against the current state (id, claims digest,
//! slot, reservation), runs the RBE *state* checks for this exact version
//! ([`mazu_rbe::RegistryState::verify_fresh`]: map lookups, no pairing: the
//! pairing check already ran in parallel and its result travels as a
//! [`mazu_rbe::WellFormedRegistration`]), appends the entry to the log (which
//! fsyncs), then applies it to the in-memory state. A refusal at any step
//! before the append changes nothing; an append failure changes nothing
//! either (the store rolls back or refuses further appends). Verification work done before this point runs in
//! parallel on other threads.

use core::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mazu_identity::RegistryEntry;
use tokio::sync::{mpsc, oneshot};

use crate::api::error::ApiError;
use crate::entry::LogEntry;
use crate::register::{Prepared, conflict_error, rbe_error};
use crate::service::{Core, now_ms};

/// A registration accepted into the log.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its log index.
    pub index: u64,
    /// The registry version after it (index + 1).
    pub version: u64,
    /// The registry entry.
    pub entry: RegistryEntry,
    /// When it was accepted (Unix ms).
    pub accepted_at_ms: u64,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: [u8; 32],
}

/// A unit of work for the writer.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) prepared: Prepared,
    pub(crate) reply: oneshot::Sender<Result<Committed, ApiError>>,
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
                let result = commit(&core, job.prepared);
                core.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                match &result {
                    Ok(_) => {
                        core.metrics.accepted.inc();
                    }
                    Err(e) => core.metrics.refuse(e.code()),
                }
                // The requester may have gone away (timeout); the outcome
                // stands either way.
                let _ = job.reply.send(result);
            }
        })
}

fn commit(core: &Core, prepared: Prepared) -> Result<Committed, ApiError> {
    if core.failed.load(Ordering::SeqCst) || core.store.is_poisoned() {
        return Err(ApiError::StorageUnavailable);
    }
    let id = *prepared.id();
    let slot = prepared.slot();
    if core
        .lock_reservations()
        .reserved_for_other(slot, &id, Instant::now())
    {
        return Err(ApiError::SlotReserved(slot));
    }
    // What is applied must be what is logged: the checked registration must
    // be the one the entry's facts were derived from (a `Prepared` is only
    // built by `register::finish`, but its fields are public).
    if prepared.well_formed.registration() != &prepared.facts.registration {
        return Err(ApiError::internal(
            "checked registration differs from the entry's registration",
        ));
    }
    // Re-check against the current version; only this thread changes it, so
    // the result holds until the apply below.
    let verified = {
        let registry = core.read_registry();
        registry
            .check_fresh(&id, &prepared.facts.claims_digest, slot)
            .map_err(|c| conflict_error(&c))?;
        registry
            .verify_fresh(prepared.well_formed)
            .map_err(|e| rbe_error(&e))?
    };
    let mut entry = prepared.entry;
    entry.accepted_at_ms = now_ms();
    let bytes = entry.to_bytes();
    let index = core.store.append(&bytes).map_err(|e| {
        tracing::error!(error = %e, "appending a registration to the log failed; nothing changed");
        ApiError::StorageUnavailable
    })?;
    // The tree follows the durable log; the registry catches up below. So
    // the tree is never behind the registry, and a checkpoint can always be
    // signed at the registry's version.
    let leaf_hash = LogEntry::leaf_hash(&bytes);
    core.transparency.push(leaf_hash);
    let version = {
        let mut registry = core.write_registry();
        if let Err(e) = registry.apply(&verified, &prepared.facts) {
            // The entry is durable but the state refused it: the log and the
            // state disagree. Stop accepting; a restart replays the log.
            core.failed.store(true, Ordering::SeqCst);
            return Err(ApiError::internal(format!(
                "log entry {index} appended but not applied: {e}"
            )));
        }
        registry.version()
    };
    if version != index + 1 {
        core.failed.store(true, Ordering::SeqCst);
        return Err(ApiError::internal(format!(
            "log index {index} does not match registry version {version}"
        )));
    }
    core.metrics
        .log_entries
        .set(i64::try_from(version).unwrap_or(i64::MAX));
    if let Some(snapshots) = &core.snapshots
        && snapshots.due(version)
    {
        // Clone under the read lock (a memory copy); encoding, writing and
        // fsyncing happen on another thread, so the writer is not held up.
        let state = core.read_registry().rbe().clone();
        snapshots.write_in_background(state);
    }
    core.lock_reservations().release(&id);
    tracing::info!(
        index,
        slot,
        id = %hex::encode(id),
        "registration accepted"
    );
    Ok(Committed {
        index,
        version,
        entry: prepared.facts.registry_entry,
        accepted_at_ms: entry.accepted_at_ms,
        leaf_hash,
    })
}
