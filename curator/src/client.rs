//! The agent side of a binding, as a reference: builds exactly the
//! `POST /v1/bindings` body the curator expects (RBE key pair for the slot,
//! TLS key pair, proof of possession). No token: the agent reveals it only
//! once the binding is in the witnessed log (`docs/protocol.md`). Tests and
//! benchmarks use it; the node agent produces the same bytes.

use base64ct::{Base64, Encoding};
use mazu_rbe::{Crs, KeyGenError, Registration, SecretKey};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::api::views::{BindingRequest, HolderRequest};
use crate::holder::{HolderAction, holder_message};
use crate::pop::{PopClaim, pop_message};

/// Everything an agent keeps from one binding.
#[derive(Debug)]
pub struct AgentRegistration {
    /// The request body to send.
    pub request: BindingRequest,
    /// The RBE secret key (kept by the agent).
    pub rbe_secret: SecretKey,
    /// The TLS signing key (kept by the agent).
    pub tls_key: SigningKey,
    /// The workload id, SHA-256 of the token.
    pub id: [u8; 32],
}

/// The workload id of a token: SHA-256 of its bytes.
pub fn id_of_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// DER SubjectPublicKeyInfo of `key`'s public key.
pub fn spki_der(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default()
}

/// Signs the proof-of-possession message (DER signature) for a binding
/// that commits to `token_expiry`.
pub fn sign_pop(
    key: &SigningKey,
    registration: &Registration,
    token_expiry: u64,
    spki: &[u8],
) -> Vec<u8> {
    let registration_bytes = registration.to_bytes();
    let message = pop_message(
        &PopClaim {
            id: &registration.id,
            slot: registration.slot,
            token_expiry,
            registration_bytes: &registration_bytes,
        },
        spki,
    );
    let signature: Signature = key.sign(&message);
    signature.to_der().as_bytes().to_vec()
}

/// The body of a holder's release or revocation of the binding of `id` in
/// `slot`, signed by its TLS `key` (DER signature).
pub fn holder_request(
    key: &SigningKey,
    action: HolderAction,
    id: &[u8; 32],
    slot: u32,
) -> HolderRequest {
    let message = holder_message(action, id, slot, &spki_der(key));
    let signature: Signature = key.sign(&message);
    HolderRequest {
        signature: Base64::encode_string(signature.to_der().as_bytes()),
    }
}

/// The `exp` claim of `token` (read, not verified); 0 if it has none.
pub fn token_expiry_of(token: &str) -> u64 {
    mazu_identity::jwt::parse_claims_unverified(token.as_bytes(), crate::entry::MAX_TOKEN_LEN)
        .map(|claims| claims.expires_at)
        .unwrap_or(0)
}

/// Builds a complete binding of `token`'s id in `slot`, committing to its
/// expiry, with fresh RBE and TLS keys.
pub fn build_registration<R: RngCore + CryptoRng>(
    crs: &Crs,
    token: &str,
    slot: u32,
    rng: &mut R,
) -> Result<AgentRegistration, KeyGenError> {
    build_binding_of(crs, &id_of_token(token), token_expiry_of(token), slot, rng)
}

/// Builds a complete binding of `id` in `slot` that commits to
/// `token_expiry`, with fresh RBE and TLS keys (for an id whose token the
/// caller does not hold: junk and forged bindings in tests).
pub fn build_binding_of<R: RngCore + CryptoRng>(
    crs: &Crs,
    id: &[u8; 32],
    token_expiry: u64,
    slot: u32,
    rng: &mut R,
) -> Result<AgentRegistration, KeyGenError> {
    let (rbe_secret, registration) = mazu_rbe::keygen(crs, slot, *id, rng)?;
    let tls_key = SigningKey::random(rng);
    let spki = spki_der(&tls_key);
    let signature = sign_pop(&tls_key, &registration, token_expiry, &spki);
    let request = request_for(&registration, token_expiry, &spki, &signature);
    Ok(AgentRegistration {
        request,
        rbe_secret,
        tls_key,
        id: *id,
    })
}

/// Assembles a binding request from its parts (tests use it to tamper with
/// one). The id is the registration's.
pub fn request_for(
    registration: &Registration,
    token_expiry: u64,
    spki: &[u8],
    signature: &[u8],
) -> BindingRequest {
    BindingRequest {
        id: hex::encode(registration.id),
        slot: registration.slot,
        token_expiry,
        registration: serde_json::to_value(registration).unwrap_or_default(),
        tls_spki: Base64::encode_string(spki),
        tls_signature: Base64::encode_string(signature),
    }
}
