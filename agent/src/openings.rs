//! Keeping the workload's RBE opening current.
//!
//! A ciphertext is made under the block commitment `C_k` published at the
//! time; decrypting needs the opening for exactly that commitment. The agent
//! starts from the opening the curator serves right after registering and
//! then applies every later registration of its block from the public log
//! (`OpeningHistory::update`), and every release or revocation of one
//! (`OpeningHistory::release`: the neighbour's key and helper subtracted
//! again, so its slot can be reused), keeping each version, so a message encrypted
//! under any commitment since then still decrypts. Each refresh is checked
//! against the opening the curator serves for the same version.
//!
//! The `run` loop applies log entries only up to the size of a checkpoint it
//! accepted ([`crate::transparency`]): registry data the curator has not
//! committed to consistently is not used.

use mazu_log::merkle::Hash;
use mazu_rbe::{Crs, OpeningError, OpeningHistory};
use tracing::{debug, warn};

use crate::curator::CuratorClient;
use crate::error::{CuratorError, Error};
use crate::state::RegistrationRecord;

/// The first history for `slot`: the opening the curator serves now, and the
/// log position it covers.
pub async fn initial(
    client: &CuratorClient,
    slot: u32,
) -> Result<(OpeningHistory, u64), CuratorError> {
    let answer = client.opening(slot).await?;
    if !answer.registered || answer.opening.slot != slot {
        return Err(CuratorError::Malformed {
            what: format!("GET /v1/openings/{slot}"),
            reason: "the slot is not registered".to_owned(),
        });
    }
    Ok((OpeningHistory::new(answer.opening), answer.version))
}

/// Applies every registration logged since `record.openings_version` to
/// `history`. Returns whether anything changed (then `record` and `history`
/// need storing).
pub async fn refresh(
    client: &CuratorClient,
    crs: &Crs,
    record: &mut RegistrationRecord,
    history: &mut OpeningHistory,
) -> Result<bool, Error> {
    refresh_until(client, crs, record, history, u64::MAX, &|_| None).await
}

/// [`refresh`], applying only log entries before index `limit` (the size of
/// an accepted checkpoint). `bind_index` gives the log index of an id's
/// first bind, when the caller follows the log: the release of a
/// neighbour bound before the range is then applied too (without it, only
/// releases of binds in the range are, and the cross-check with the
/// curator catches the rest).
pub async fn refresh_until(
    client: &CuratorClient,
    crs: &Crs,
    record: &mut RegistrationRecord,
    history: &mut OpeningHistory,
    limit: u64,
    bind_index: &(dyn Fn(&Hash) -> Option<u64> + Sync),
) -> Result<bool, Error> {
    if limit <= record.openings_version {
        return Ok(false);
    }
    let (logged, size) = client
        .registrations_between(record.openings_version, limit, bind_index)
        .await?;
    let mut changed = false;
    for item in &logged {
        let applied = if item.ended {
            history.release(crs, &item.registration)
        } else {
            history.update(crs, &item.registration)
        };
        match applied {
            Ok(()) => {
                debug!(
                    slot = item.registration.slot,
                    index = item.index,
                    ended = item.ended,
                    "opening updated"
                );
                changed = true;
            }
            // Other blocks, our own registration, one already folded into
            // the opening we started from, or the end of one this history
            // does not hold: nothing to apply.
            Err(
                OpeningError::OtherBlock(_)
                | OpeningError::OwnSlot
                | OpeningError::AlreadyApplied(_)
                | OpeningError::NotApplied(_),
            ) => {}
            Err(e) => {
                return Err(Error::Crypt(crate::error::CryptError::Rbe(format!(
                    "applying log entry {} to the opening: {e}",
                    item.index
                ))));
            }
        }
    }
    if size > record.openings_version {
        record.openings_version = size;
        changed = true;
    }
    // Cross-check with the curator's own opening when it is for the same
    // version (a later registration may have raced in; then the next refresh
    // checks again).
    if changed
        && let Ok(answer) = client.opening(record.slot).await
        && answer.version == record.openings_version
        && answer.opening != *history.latest()
    {
        warn!(
            slot = record.slot,
            version = answer.version,
            "the opening computed from the log differs from the curator's; restarting the history from the curator's"
        );
        *history = OpeningHistory::new(answer.opening);
    }
    Ok(changed)
}
