//! Ending bindings: the curator's own releases (a binding whose token was
//! never revealed within the reveal window; a binding whose token expired)
//! and the holder's signed releases and revocations.
//!
//! Each is a log entry that frees the binding's RBE slot
//! ([`crate::registry::Registry::apply_end`]); the id stays void forever.
//! Everything here prepares such an entry outside the writer (reading the
//! bind entry from the log, decoding its registration, checking a holder's
//! signature); the writer re-checks it against the state of the moment and
//! commits it ([`crate::writer`]).
//!
//! The rules every party applies to these entries (which reasons are due
//! when) are those of `mazu_identity::registry::derive`; the curator only
//! decides *when* to write a due release: the reveal window and the expiry
//! grace are its configuration ([`LifecycleOptions`]).

use core::time::Duration;
use std::sync::Arc;

use mazu_log::record::ReleaseReason;
use tokio::sync::{mpsc, oneshot};

use crate::api::error::ApiError;
use crate::entry::{EntryBody, LogEntry};
use crate::holder::{HolderAction, verify_holder};
use crate::register::conflict_error;
use crate::registry::EndedBinding;
use crate::service::{Core, now_ms, read_entry};
use crate::writer::{Job, Work};

/// When the curator releases bindings on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleOptions {
    /// A binding whose token is not revealed this long after it was logged
    /// is released (`unrevealed`): nobody can present a certificate for it,
    /// and junk bindings cannot hold slots for longer than this.
    pub reveal_window: Duration,
    /// A live binding is released (`expired`) this long after its token's
    /// expiry (the token clock skew: peers still accept the token until
    /// then).
    pub expiry_grace: Duration,
    /// How often the curator looks for due releases.
    pub sweep_interval: Duration,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            reveal_window: Duration::from_secs(600),
            expiry_grace: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// Releases committed per sweep at most (the rest wait for the next one), so
/// that a mass expiry does not hold the writer from registrations.
const SWEEP_BATCH: usize = 64;

/// Prepares the end of `id`'s binding with `body` (a release or a
/// revocation): the binding must be bound or live now (and a curator
/// release due), its bind entry is read from the log, and a holder's
/// signature (`holder`) is checked against the bound TLS key.
pub(crate) fn prepare_end(
    core: &Core,
    id: [u8; 32],
    body: EntryBody,
) -> Result<crate::writer::PreparedEnd, ApiError> {
    let (reason, holder) = match &body {
        EntryBody::Release { reason, signature } => (
            Some(*reason),
            (*reason == ReleaseReason::Holder).then_some((HolderAction::Release, signature)),
        ),
        EntryBody::Revoke { signature } => (None, Some((HolderAction::Revoke, signature))),
        _ => return Err(ApiError::internal("not a release or revocation")),
    };
    let bind_index = core
        .read_registry()
        .check_end(&id, reason, now_ms())
        .map_err(|c| conflict_error(&c))?;
    let bind_bytes = read_entry(core.store.as_ref(), bind_index)
        .map_err(|e| ApiError::internal(format!("reading the bind entry: {e}")))?;
    let ended = EndedBinding::from_bind_entry(&id, &bind_bytes)
        .map_err(|e| ApiError::internal(format!("the logged bind entry {bind_index}: {e}")))?;
    if let Some((action, signature)) = holder {
        verify_holder(
            action,
            &id,
            ended.registration.slot,
            &ended.tls_spki,
            signature,
        )
        .map_err(|e| ApiError::BadHolderSignature(e.to_string()))?;
    }
    Ok(crate::writer::PreparedEnd {
        entry: LogEntry { at_ms: 0, id, body },
        ended,
        bind_index,
    })
}

/// The lifecycle task: every `sweep_interval`, releases the bindings that
/// are due (oldest first, at most [`SWEEP_BATCH`] per round) through the
/// writer, and refreshes the lifecycle gauges. It stops when the curator's
/// writer channel closes (shutdown).
pub(crate) async fn sweep_loop(
    core: Arc<Core>,
    jobs: mpsc::WeakSender<Job>,
    options: LifecycleOptions,
) {
    let window_ms = u64::try_from(options.reveal_window.as_millis()).unwrap_or(u64::MAX);
    let grace_ms = u64::try_from(options.expiry_grace.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(options.sweep_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sender) = jobs.upgrade() else {
            return;
        };
        // While the background check of a snapshot's prefix runs, the
        // lifecycle it restored is not confirmed yet: the curator's own
        // releases (never urgent: a grace period is built in) wait for it,
        // so that none is decided from a state the check could refute.
        let confirmed = !matches!(
            *core.prefix_check.borrow(),
            crate::prefix_check::PrefixCheck::Running
        );
        let due = if confirmed {
            core.read_registry()
                .due_releases(now_ms(), window_ms, grace_ms, SWEEP_BATCH)
        } else {
            Vec::new()
        };
        for (id, reason) in due {
            let prepare_core = core.clone();
            let body = EntryBody::Release {
                reason,
                signature: Vec::new(),
            };
            let prepared =
                tokio::task::spawn_blocking(move || prepare_end(&prepare_core, id, body)).await;
            let outcome = match prepared {
                Ok(Ok(prepared)) => {
                    let (reply, answer) = oneshot::channel();
                    let job = Job {
                        work: Work::End(Box::new(prepared)),
                        reply,
                    };
                    if sender.send(job).await.is_err() {
                        return;
                    }
                    answer
                        .await
                        .unwrap_or_else(|_| Err(ApiError::internal("the writer dropped a release")))
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err(ApiError::internal(format!("release task failed: {e}"))),
            };
            match outcome {
                Ok(logged) => core.metrics.released(reason.as_str(), logged.created),
                Err(e) => tracing::warn!(
                    id = %hex::encode(id),
                    reason = reason.as_str(),
                    error = %e,
                    code = e.code(),
                    "a due release was not logged; retrying at the next sweep"
                ),
            }
        }
        drop(sender);
        let registry = core.read_registry();
        core.metrics.lifecycle(
            registry.ids().held_slots(),
            registry.unrevealed_count(),
            registry.capacity(),
            registry.next_expiry(),
        );
    }
}
