//! The registration pipeline's stateless half: decode the request and run
//! every check that does not depend on the order of registrations (token,
//! id binding, proof of possession, RBE well-formedness). It runs on blocking
//! threads, several at once; [`crate::writer`] then re-checks freshness and
//! commits, one registration at a time.

use base64ct::{Base64, Encoding};
use mazu_identity::{TokenError, TrustConfig, VerifiedToken};
use mazu_rbe::{Crs, Registration, RegistrationError, WellFormedRegistration};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::entry::{LogEntry, MAX_SIGNATURE_LEN, MAX_SPKI_LEN};
use crate::pop::{PopError, verify_pop};
use crate::registry::{Conflict, EntryFacts, FactsError};

/// `POST /v1/slots` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    /// The workload's token (compact JWT).
    pub token: String,
}

/// `POST /v1/registrations` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The workload's token (compact JWT).
    pub token: String,
    /// The slot (must equal `registration.slot`).
    pub slot: u32,
    /// The RBE registration in the rbe crate's JSON form.
    pub registration: serde_json::Value,
    /// Standard base64 of the TLS key's DER SubjectPublicKeyInfo.
    pub tls_spki: String,
    /// Standard base64 of the proof-of-possession signature.
    pub tls_signature: String,
}

/// A registration that passed every order-independent check, ready for the
/// writer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The entry to append (its `accepted_at_ms` is set by the writer).
    pub entry: LogEntry,
    /// Facts derived from the entry.
    pub facts: EntryFacts,
    /// The RBE registration with the proof that its stateless (pairing)
    /// checks passed under the curator's CRS: the writer adds only the cheap
    /// state checks ([`mazu_rbe::RegistryState::verify_fresh`]).
    pub well_formed: WellFormedRegistration,
}

impl Prepared {
    /// The workload id.
    pub fn id(&self) -> &[u8; 32] {
        &self.facts.registration.id
    }

    /// The slot.
    pub fn slot(&self) -> u32 {
        self.facts.registration.slot
    }
}

/// Maps a token refusal to the API error (code = the identity crate's name).
pub fn token_error(e: &TokenError) -> ApiError {
    ApiError::Token {
        code: e.as_str(),
        message: e.to_string(),
    }
}

/// Maps an RBE registration refusal to the API error.
pub fn rbe_error(e: &RegistrationError) -> ApiError {
    match e {
        RegistrationError::SlotOutOfRange { slot, capacity } => ApiError::SlotOutOfRange {
            slot: *slot,
            capacity: *capacity,
        },
        RegistrationError::SlotTaken(slot) => ApiError::SlotTaken(*slot),
        RegistrationError::DuplicateId { existing_slot } => ApiError::AlreadyRegistered {
            slot: *existing_slot,
        },
        RegistrationError::IdentityPublicKey => ApiError::IdentityPublicKey,
        RegistrationError::HelperCount { .. } => ApiError::HelperCount(e.to_string()),
        RegistrationError::InvalidProofOfKnowledge => ApiError::InvalidProofOfKnowledge,
        RegistrationError::InvalidHelpers => ApiError::InvalidHelpers,
        // StaleVerification / CrsMismatch: the writer checked against the
        // wrong state or CRS, which is a bug, not the client's fault.
        other => ApiError::internal(format!("unexpected RBE refusal: {other}")),
    }
}

/// Maps a state conflict to the API error.
pub fn conflict_error(c: &Conflict) -> ApiError {
    match c {
        Conflict::IdRegistered(slot) => ApiError::AlreadyRegistered { slot: *slot },
        Conflict::ClaimsRegistered => ApiError::TokenAlreadyRegistered,
        Conflict::SlotTaken(slot) => ApiError::SlotTaken(*slot),
        Conflict::SlotOutOfRange { slot, capacity } => ApiError::SlotOutOfRange {
            slot: *slot,
            capacity: *capacity,
        },
    }
}

fn pop_error(e: &PopError) -> ApiError {
    match e {
        PopError::InvalidKey | PopError::UnsupportedKey(_) => {
            ApiError::InvalidTlsKey(e.to_string())
        }
        PopError::MalformedSignature | PopError::BadSignature => {
            ApiError::BadTlsSignature(e.to_string())
        }
    }
}

fn base64_field(field: &'static str, value: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if value.len() > 4 * max.div_ceil(3) {
        return Err(ApiError::InvalidField {
            field,
            reason: format!("longer than {max} bytes"),
        });
    }
    let bytes = Base64::decode_vec(value).map_err(|_| ApiError::InvalidField {
        field,
        reason: "not standard padded base64".into(),
    })?;
    if bytes.is_empty() {
        return Err(ApiError::InvalidField {
            field,
            reason: "empty".into(),
        });
    }
    Ok(bytes)
}

/// What [`precheck`] reads from a request without decoding any point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prechecked {
    /// The registration's workload id.
    pub id: [u8; 32],
    /// The slot.
    pub slot: u32,
}

/// The cheap checks that run before the token's signature and before any
/// curve point is decoded (each point costs a subgroup check, and a
/// registration carries up to n − 1 of them): the registration's JSON shape,
/// its id, the slot (equal to `registration.slot`, in range) and the number
/// of helper values (`block_size − 1`). An unauthenticated request that fails
/// these costs a JSON parse, not seconds of curve arithmetic.
pub fn precheck(
    req: &RegistrationRequest,
    capacity: u32,
    block_size: u32,
) -> Result<Prechecked, ApiError> {
    let invalid = |reason: &str| ApiError::InvalidRegistration(reason.to_owned());
    let fields = req
        .registration
        .as_object()
        .ok_or_else(|| invalid("registration is not a JSON object"))?;
    let slot = fields
        .get("slot")
        .and_then(serde_json::Value::as_u64)
        .and_then(|slot| u32::try_from(slot).ok())
        .ok_or_else(|| invalid("registration.slot is not a u32"))?;
    if slot != req.slot {
        return Err(ApiError::InvalidField {
            field: "slot",
            reason: format!("slot {} differs from registration.slot {slot}", req.slot),
        });
    }
    if slot >= capacity {
        return Err(ApiError::SlotOutOfRange { slot, capacity });
    }
    let id = fields
        .get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| Base64::decode_vec(id).ok())
        .and_then(|id| <[u8; 32]>::try_from(id).ok())
        .ok_or_else(|| invalid("registration.id is not 32 bytes of standard base64"))?;
    let helpers = fields
        .get("helpers")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| invalid("registration.helpers is not an array"))?;
    let expected = block_size.saturating_sub(1) as usize;
    if helpers.len() != expected {
        return Err(ApiError::HelperCount(format!(
            "helper count {}, expected {expected}",
            helpers.len()
        )));
    }
    Ok(Prechecked { id, slot })
}

/// A request's decoded fields.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The token bytes.
    pub token: Vec<u8>,
    /// The RBE registration.
    pub registration: Registration,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Proof-of-possession signature.
    pub signature: Vec<u8>,
}

/// Decodes the request's fields (no cryptography yet).
pub fn decode(req: RegistrationRequest) -> Result<Decoded, ApiError> {
    let registration: Registration = serde_json::from_value(req.registration)
        .map_err(|e| ApiError::InvalidRegistration(e.to_string()))?;
    if registration.slot != req.slot {
        return Err(ApiError::InvalidField {
            field: "slot",
            reason: format!(
                "slot {} differs from registration.slot {}",
                req.slot, registration.slot
            ),
        });
    }
    let spki = base64_field("tls_spki", &req.tls_spki, MAX_SPKI_LEN)?;
    let signature = base64_field("tls_signature", &req.tls_signature, MAX_SIGNATURE_LEN)?;
    Ok(Decoded {
        token: req.token.into_bytes(),
        registration,
        spki,
        signature,
    })
}

/// Verifies the token and the id binding; returns the verified token.
pub fn check_token(
    trust: &TrustConfig,
    token: &[u8],
    registration_id: &[u8; 32],
    now_unix: u64,
) -> Result<VerifiedToken, ApiError> {
    let verified = trust
        .verify_token(token, now_unix)
        .map_err(|e| token_error(&e))?;
    if verified.workload_id.as_bytes() != registration_id {
        return Err(ApiError::IdMismatch);
    }
    Ok(verified)
}

/// Builds the log entry and its facts, verifies the proof of possession and
/// the RBE well-formedness (the expensive pairing check). `verified` is the
/// token checked by [`check_token`].
pub fn finish(
    crs: &Crs,
    verified: &VerifiedToken,
    token: Vec<u8>,
    registration: Registration,
    spki: Vec<u8>,
    signature: Vec<u8>,
) -> Result<Prepared, ApiError> {
    let registration_bytes = registration.to_bytes();
    verify_pop(
        &registration.id,
        registration.slot,
        &registration_bytes,
        &spki,
        &signature,
    )
    .map_err(|e| pop_error(&e))?;
    let well_formed = registration
        .into_well_formed(crs)
        .map_err(|e| rbe_error(&e))?;
    let entry = LogEntry {
        accepted_at_ms: 0,
        token,
        tls_spki: spki,
        tls_signature: signature,
        registration: registration_bytes,
    };
    entry
        .check_lengths()
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let facts =
        EntryFacts::with_registration(&entry, well_formed.registration().clone()).map_err(|e| {
            match e {
                FactsError::IdMismatch => ApiError::IdMismatch,
                other => {
                    ApiError::internal(format!("verified registration does not derive: {other}"))
                }
            }
        })?;
    // The replay derivation must agree with the verified token.
    if facts.claims_digest != verified.claims_digest
        || facts.registry_entry.token_expiry != verified.claims.expires_at
    {
        return Err(ApiError::internal(
            "claims digest or expiry derived from the entry differ from the verified token",
        ));
    }
    Ok(Prepared {
        entry,
        facts,
        well_formed,
    })
}
