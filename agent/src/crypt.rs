//! `encrypt` and `decrypt`: RBE end to end.
//!
//! **Ciphertext file format**: exactly the rbe crate's canonical
//! `Ciphertext` encoding (`mazu_rbe::Ciphertext::to_bytes`): magic `RBEX`,
//! format version `0x01`, slot (u32 BE), block commitment (48-byte G1),
//! `ct1` (576-byte Gt), `ct2` (96-byte G2), body length (u32 BE) and the
//! ChaCha20-Poly1305 body: 749 bytes plus the message. The associated data
//! is empty unless `--aad` is given (then both sides must give the same).
//!
//! A sender needs only public data: the CRS (`GET /v1/crs`, verified and
//! compared with the pinned digest, `--crs-sha256`), the witnessed log
//! (checkpoint, records, and the bind entries of the recipient's block) and
//! the public parameters (`GET /v1/params`). The recipient's slot and its
//! block commitment come from the witnessed log, not from the curator's
//! word: see [`crate::commitment`]. The served parameters must agree with
//! the recomputed commitment; the message is encrypted to the recomputed one.

use core::time::Duration;

use mazu_rbe::{Ciphertext, Crs, MembershipProof, PublicParams};
use tracing::{info, warn};

use crate::commitment::{self, CommitmentError, EncryptError, LogTrust, WitnessedLog};
use crate::curator::CuratorClient;
use crate::error::{CryptError, Error, StateError};
use crate::openings;
use crate::state::StateDir;

/// How many times the served parameters are fetched again when they are at
/// another registry version than the witnessed log (a registration between
/// the two requests, or one not witnessed yet) before a disagreement is
/// final.
const PARAMS_ATTEMPTS: u32 = 8;

/// Encrypts `message` to the workload `id_hex` with public data only, under
/// the CRS whose digest is `crs_digest` (`None`: whatever the curator
/// serves; development only), to the block commitment recomputed from the
/// log witnessed under `trust`.
pub async fn encrypt_to_id(
    client: &CuratorClient,
    crs_digest: Option<&[u8; 32]>,
    trust: &LogTrust,
    id_hex: &str,
    message: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let id: [u8; 32] = crate::curator::parse_hash(id_hex)
        .ok_or_else(|| Error::Config(format!("{id_hex:?} is not a hex workload id")))?;
    if crs_digest.is_none() {
        warn!("encrypting under an unpinned CRS (--insecure-unpinned-crs)");
    }
    if trust.policy.is_none() {
        warn!("following a log no witness cosigned (--insecure-no-witness)");
    }
    if trust.checkpoint_key.is_none() {
        warn!("checking checkpoints with the key the curator serves; pin it with --checkpoint-key");
    }
    let crs = client.crs(crs_digest).await?;
    let mut log = WitnessedLog::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let checkpoint = log.advance(client, trust).await?;
        let recipient = commitment::recipient(log.registry(), &id, checkpoint.size)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        commitment::warn_if_expired(&recipient, now);
        let block = crs
            .dimensions()
            .locate(recipient.slot)
            .ok_or(CommitmentError::SlotOutOfRange {
                slot: recipient.slot,
            })?
            .block;
        let recomputed = log.commitment(client, &crs, block).await?;
        let params = client.params().await?;
        match commitment::judge_served(
            &crs,
            &params,
            block,
            &recomputed,
            log.size(),
            log.operations(),
        ) {
            Ok(()) => {}
            // Another version: the two views may differ only in time.
            Err(CommitmentError::CommitmentMismatch { .. })
                if params.version() != log.operations() && attempt < PARAMS_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let ct = mazu_rbe::encrypt_to_commitment(
            &crs,
            recipient.slot,
            &recomputed,
            message,
            aad,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| CryptError::Rbe(e.to_string()))?;
        info!(
            slot = recipient.slot,
            block,
            log_size = checkpoint.size,
            "encrypted to the block commitment of the witnessed log"
        );
        return Ok(ct.to_bytes());
    }
}

/// Checks the curator's membership proof for the recipient `id` against the
/// public parameters of the same version: it must be for `id` (a proof for
/// another id would send the message to whoever holds that id's slot), for
/// the `slot` the curator named, and verify.
pub fn check_membership(
    crs: &Crs,
    params: &PublicParams,
    proof: &MembershipProof,
    slot: u32,
    id: &[u8; 32],
) -> Result<(), CryptError> {
    if proof.id != *id {
        return Err(CryptError::ProofForAnotherId {
            expected: hex::encode(id),
            served: hex::encode(proof.id),
        });
    }
    proof
        .verify_id(crs, params, id)
        .map_err(|e| CryptError::Rbe(format!("the id's membership proof: {e}")))?;
    if proof.opening.slot != slot {
        return Err(CryptError::Rbe(
            "membership proof for another slot".to_owned(),
        ));
    }
    Ok(())
}

/// Decrypts `ciphertext` with the secret key and openings stored in `state`,
/// refreshing the opening from the curator first (in memory only, so a
/// running agent's files are never written concurrently).
pub async fn decrypt(
    state: &StateDir,
    client: Option<&CuratorClient>,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Error> {
    let ct =
        Ciphertext::from_bytes(ciphertext).map_err(|e| CryptError::BadCiphertext(e.to_string()))?;
    let crs_path = state.root().join("crs.bin");
    let crs_bytes = state
        .crs_bytes()?
        .ok_or_else(|| StateError::corrupt(&crs_path, "missing: the agent never registered"))?;
    let crs = Crs::from_bytes(&crs_bytes).map_err(|e| StateError::corrupt(&crs_path, e))?;
    for reg in state.registrations()? {
        let Some(mut record) = reg.record()? else {
            continue;
        };
        if record.slot != ct.slot() {
            continue;
        }
        let Some(keys) = reg.keys()? else { continue };
        let Some(mut history) = reg.openings()? else {
            return Err(CryptError::NoOpening.into());
        };
        if let Some(client) = client
            && let Err(e) = openings::refresh(client, &crs, &mut record, &mut history).await
        {
            warn!(error = %e, "could not refresh the opening; using the stored one");
        }
        let opening = history
            .opening_for(ct.commitment())
            .ok_or(CryptError::NoOpening)?;
        return mazu_rbe::decrypt(&crs, &keys.rbe, opening, &ct, aad)
            .map_err(|e| CryptError::Rbe(e.to_string()).into());
    }
    Err(CryptError::NoKeyForSlot(ct.slot()).into())
}

#[cfg(test)]
mod tests {
    use mazu_rbe::RegistryState;

    use super::*;

    #[test]
    fn a_membership_proof_for_another_id_is_refused() {
        let mut rng = rand::rngs::OsRng;
        let crs = Crs::generate_insecure_dev(4, &mut rng).expect("crs");
        let mut state = RegistryState::new(crs.clone());
        let (id_a, id_b) = ([1u8; 32], [2u8; 32]);
        let (_, reg_a) = mazu_rbe::keygen(&crs, 0, id_a, &mut rng).expect("keygen");
        let (_, reg_b) = mazu_rbe::keygen(&crs, 1, id_b, &mut rng).expect("keygen");
        state.verify_and_apply(reg_a).expect("apply a");
        state.verify_and_apply(reg_b).expect("apply b");
        let params = state.public_params();
        let proof_a = state.membership_proof(0).expect("proof a");
        check_membership(&crs, &params, &proof_a, 0, &id_a).expect("a's own proof");
        // The curator answers the request for b with a's (valid) proof.
        let e = check_membership(&crs, &params, &proof_a, 0, &id_b).expect_err("another id");
        assert!(matches!(e, CryptError::ProofForAnotherId { .. }), "{e}");
        // The right id, but the curator names another slot.
        let e = check_membership(&crs, &params, &proof_a, 1, &id_a).expect_err("other slot");
        assert!(matches!(e, CryptError::Rbe(_)), "{e}");
    }
}
