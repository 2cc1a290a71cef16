//! `encrypt` and `decrypt`: RBE end to end.
//!
//! **Ciphertext file format**: exactly the rbe crate's canonical
//! `Ciphertext` encoding (`mazu_rbe::Ciphertext::to_bytes`): magic `RBEX`,
//! format version `0x01`, slot (u32 BE), block commitment (48-byte G1),
//! `ct1` (576-byte Gt), `ct2` (96-byte G2), body length (u32 BE) and the
//! ChaCha20-Poly1305 body: 749 bytes plus the message. The associated data
//! is empty unless `--aad` is given (then both sides must give the same).
//!
//! A sender needs only public data: the CRS (`GET /v1/crs`, verified), the
//! public parameters (`GET /v1/params`) and the recipient's slot, read from
//! its membership proof (`GET /v1/proofs/{id}`), which is checked against the
//! parameters when both are of the same version.

use mazu_rbe::{Ciphertext, Crs};
use tracing::{info, warn};

use crate::curator::CuratorClient;
use crate::error::{CryptError, Error, StateError};
use crate::openings;
use crate::state::StateDir;

/// Encrypts `message` to the workload `id_hex` with public parameters only.
pub async fn encrypt_to_id(
    client: &CuratorClient,
    id_hex: &str,
    message: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, Error> {
    let crs = client.crs(None).await?;
    // Params and proof are two requests; a registration in between changes
    // the version. Retry a few times to check the proof against the same
    // version; the ciphertext itself only needs the params.
    for attempt in 0..5 {
        let params = client.params().await?;
        let proof = client
            .proof(id_hex)
            .await?
            .ok_or_else(|| CryptError::UnknownId(id_hex.to_owned()))?;
        if proof.version == params.version() {
            proof
                .proof
                .verify(&crs, &params)
                .map_err(|e| CryptError::Rbe(format!("the id's membership proof: {e}")))?;
            if proof.proof.opening.slot != proof.slot {
                return Err(CryptError::Rbe("membership proof for another slot".to_owned()).into());
            }
        } else if attempt < 4 {
            continue;
        } else {
            warn!("the registry kept changing; encrypting without checking the membership proof");
        }
        let ct = mazu_rbe::encrypt(
            &crs,
            &params,
            proof.slot,
            message,
            aad,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| CryptError::Rbe(e.to_string()))?;
        info!(slot = proof.slot, version = params.version(), "encrypted");
        return Ok(ct.to_bytes());
    }
    Err(CryptError::Rbe("unreachable retry loop".to_owned()).into())
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
