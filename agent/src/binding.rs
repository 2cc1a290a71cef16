//! Building a binding: fresh RBE and TLS keys for an id and a slot, and the
//! `POST /v1/bindings` body (no token) with the proof of possession, the
//! same bytes `mazu_curator::client` builds (`docs/protocol.md`).

use base64ct::{Base64, Encoding};
use mazu_curator::api::views::BindingRequest;
use mazu_curator::client::{sign_pop, spki_der};
use mazu_rbe::Crs;
use p256::ecdsa::SigningKey;
use rand::{CryptoRng, RngCore};

use crate::state::Keys;

/// Fresh keys for workload `id` in `slot` and the binding request that
/// registers them: the RBE registration (with its proof of knowledge over
/// the CRS digest, id, slot and key), the TLS key's SPKI and its signature
/// over the proof-of-possession message, which commits to the token's
/// expiry `token_expiry` (the token itself is revealed later).
pub fn build_binding<R: RngCore + CryptoRng>(
    crs: &Crs,
    id: &[u8; 32],
    token_expiry: u64,
    slot: u32,
    rng: &mut R,
) -> Result<(BindingRequest, Keys), String> {
    let (rbe, registration) = mazu_rbe::keygen(crs, slot, *id, rng).map_err(|e| e.to_string())?;
    let tls = SigningKey::random(rng);
    let spki = spki_der(&tls);
    let signature = sign_pop(&tls, &registration, token_expiry, &spki);
    let registration_json = serde_json::to_value(&registration).map_err(|e| e.to_string())?;
    let request = BindingRequest {
        id: hex::encode(id),
        slot,
        token_expiry,
        registration: registration_json,
        tls_spki: Base64::encode_string(&spki),
        tls_signature: Base64::encode_string(&signature),
    };
    Ok((request, Keys { tls, rbe }))
}
