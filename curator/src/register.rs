//! The binding pipeline's stateless half: decode the request and run every
//! check that does not depend on the order of entries (shape, id, slot
//! range, helper count, proof of possession, RBE well-formedness), and the
//! token checks of a reveal. Binds run on blocking threads, several at once;
//! [`crate::writer`] then re-checks against the state and commits, one entry
//! at a time.

use base64ct::{Base64, Encoding};
use mazu_identity::{ClaimsDigest, TokenError, TrustConfig};
use mazu_rbe::{Crs, Registration, RegistrationError, WellFormedRegistration};
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
pub use crate::api::views::{BindingRequest, RevealRequest, SlotRequest};
use crate::entry::{EntryBody, LogEntry, MAX_SIGNATURE_LEN, MAX_SPKI_LEN, MAX_TOKEN_LEN};
use crate::pop::{PopClaim, PopError, verify_pop};
use crate::registry::{Conflict, content_digest};

/// A binding that passed every order-independent check, ready for the
/// writer.
#[derive(Debug, Clone)]
pub struct PreparedBind {
    /// The entry to append (its `at_ms` is set by the writer).
    pub entry: LogEntry,
    /// [`content_digest`] of the entry (identical repeats have the same).
    pub content: [u8; 32],
    /// The RBE registration with the proof that its stateless (pairing)
    /// checks passed under the curator's CRS: the writer adds only the cheap
    /// state checks ([`mazu_rbe::RegistryState::verify_fresh`]).
    pub well_formed: WellFormedRegistration,
}

impl PreparedBind {
    /// The workload id.
    pub fn id(&self) -> &[u8; 32] {
        &self.entry.id
    }

    /// The slot.
    pub fn slot(&self) -> u32 {
        self.well_formed.registration().slot
    }
}

/// A reveal whose token verified, ready for the writer.
#[derive(Debug, Clone)]
pub struct PreparedReveal {
    /// The entry to append (its `at_ms` is set by the writer).
    pub entry: LogEntry,
    /// The token's claims digest (a re-encoded token has the same).
    pub claims_digest: ClaimsDigest,
    /// The verified token's namespace (for the per-namespace quota).
    pub namespace: String,
    /// The verified token's `exp`, Unix seconds.
    pub token_expiry: u64,
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
            slot: Some(*existing_slot),
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
        Conflict::AlreadyBound { slot, .. } => ApiError::AlreadyRegistered { slot: *slot },
        Conflict::SlotTaken(slot) => ApiError::SlotTaken(*slot),
        Conflict::SlotOutOfRange { slot, capacity } => ApiError::SlotOutOfRange {
            slot: *slot,
            capacity: *capacity,
        },
        Conflict::NotBound => ApiError::NotBound,
        Conflict::Ended => ApiError::BindingEnded,
        Conflict::ClaimsRevealed => ApiError::TokenAlreadyRegistered,
        Conflict::AlreadyRevealed(_) => {
            ApiError::internal("repeat of a reveal reached the conflict path")
        }
        // Only the curator's own lifecycle task writes releases that can be
        // due or not; it checked before asking.
        Conflict::NotDue => ApiError::internal("a release that is not due reached the writer"),
        Conflict::ExpiryMismatch { .. } | Conflict::TokenExpired => ApiError::InvalidField {
            field: "token",
            reason: c.to_string(),
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

/// Decodes a holder's signature (release, revocation): standard padded
/// base64, at most [`crate::entry::MAX_SIGNATURE_LEN`] bytes.
pub fn holder_signature(b64: &str) -> Result<Vec<u8>, ApiError> {
    base64_field("signature", b64, crate::entry::MAX_SIGNATURE_LEN)
}

/// Parses a hex workload id (64 hex digits).
pub fn parse_id(field: &'static str, hex_id: &str) -> Result<[u8; 32], ApiError> {
    let invalid = || ApiError::InvalidField {
        field,
        reason: "not 64 hexadecimal digits".into(),
    };
    if hex_id.len() != 64 {
        return Err(invalid());
    }
    hex::decode(hex_id)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(invalid)
}

/// What [`precheck`] reads from a request without decoding any point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prechecked {
    /// The workload id.
    pub id: [u8; 32],
    /// The slot.
    pub slot: u32,
    /// The token expiry the binding commits to, Unix seconds.
    pub token_expiry: u64,
}

/// The token expiries a binding may commit to: after `now_unix`, at most
/// `max_lifetime_secs` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryWindow {
    /// Now, Unix seconds.
    pub now_unix: u64,
    /// The longest lifetime left, seconds.
    pub max_lifetime_secs: u64,
}

/// The cheap checks that run before any curve point is decoded (each point
/// costs a subgroup check, and a registration carries up to n − 1 of them):
/// the id (64 hex digits), the registration's JSON shape, its id (equal to
/// the request's), the slot (equal to `registration.slot`, in range) and
/// the number of helper values (`block_size − 1`), and the token expiry
/// (within `expiries`). A request that fails these costs a JSON parse, not
/// seconds of curve arithmetic.
pub fn precheck(
    req: &BindingRequest,
    capacity: u32,
    block_size: u32,
    expiries: ExpiryWindow,
) -> Result<Prechecked, ApiError> {
    let id = parse_id("id", &req.id)?;
    let latest = expiries.now_unix.saturating_add(expiries.max_lifetime_secs);
    if req.token_expiry <= expiries.now_unix || req.token_expiry > latest {
        return Err(ApiError::InvalidField {
            field: "token_expiry",
            reason: format!(
                "{} is not after now ({}) and within the curator's maximum token lifetime ({} s)",
                req.token_expiry, expiries.now_unix, expiries.max_lifetime_secs
            ),
        });
    }
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
    let registration_id = fields
        .get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|id| Base64::decode_vec(id).ok())
        .and_then(|id| <[u8; 32]>::try_from(id).ok())
        .ok_or_else(|| invalid("registration.id is not 32 bytes of standard base64"))?;
    if registration_id != id {
        return Err(ApiError::IdMismatch);
    }
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
    Ok(Prechecked {
        id,
        slot,
        token_expiry: req.token_expiry,
    })
}

/// A binding request's decoded fields.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The RBE registration.
    pub registration: Registration,
    /// The token expiry the binding commits to.
    pub token_expiry: u64,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Proof-of-possession signature.
    pub signature: Vec<u8>,
}

/// The TLS key and signature fields, decoded (no point yet).
pub fn decode_tls(req: &BindingRequest) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let spki = base64_field("tls_spki", &req.tls_spki, MAX_SPKI_LEN)?;
    let signature = base64_field("tls_signature", &req.tls_signature, MAX_SIGNATURE_LEN)?;
    Ok((spki, signature))
}

/// Decodes the request's registration (every point subgroup-checked) and
/// TLS fields (no signature check yet).
pub fn decode(req: BindingRequest) -> Result<Decoded, ApiError> {
    let (spki, signature) = decode_tls(&req)?;
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
    Ok(Decoded {
        registration,
        token_expiry: req.token_expiry,
        spki,
        signature,
    })
}

/// Verifies the proof of possession, then the RBE well-formedness (the
/// expensive pairing check), and builds the bind entry. `id` is the
/// pre-checked request id.
pub fn finish(crs: &Crs, id: &[u8; 32], decoded: Decoded) -> Result<PreparedBind, ApiError> {
    let Decoded {
        registration,
        token_expiry,
        spki,
        signature,
    } = decoded;
    if &registration.id != id {
        return Err(ApiError::IdMismatch);
    }
    let registration_bytes = registration.to_bytes();
    let claim = PopClaim {
        id: &registration.id,
        slot: registration.slot,
        token_expiry,
        registration_bytes: &registration_bytes,
    };
    verify_pop(&claim, &spki, &signature).map_err(|e| pop_error(&e))?;
    let slot = registration.slot;
    let well_formed = registration
        .into_well_formed(crs)
        .map_err(|e| rbe_error(&e))?;
    let entry = LogEntry {
        at_ms: 0,
        id: *id,
        body: EntryBody::Bind {
            slot,
            token_expiry,
            tls_spki: spki,
            tls_signature: signature,
            registration: registration_bytes,
        },
    };
    entry
        .check_lengths()
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    Ok(PreparedBind {
        content: content_digest(&entry),
        entry,
        well_formed,
    })
}

/// The checks of a reveal that need no state, cheapest first: the path id
/// (64 hex digits), SHA-256(token) = id, then the token itself under the
/// configured trust (issuer and its key, audience, namespace scope, times).
pub fn prepare_reveal(
    trust: &TrustConfig,
    hex_id: &str,
    req: RevealRequest,
    now_unix: u64,
) -> Result<PreparedReveal, ApiError> {
    let id = parse_id("id", hex_id)
        .map_err(|_| ApiError::InvalidParameter("id must be 64 hexadecimal digits".into()))?;
    let token = req.token.into_bytes();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::InvalidField {
            field: "token",
            reason: format!("length must be 1..={MAX_TOKEN_LEN} bytes"),
        });
    }
    if <[u8; 32]>::from(Sha256::digest(&token)) != id {
        return Err(ApiError::TokenIdMismatch);
    }
    let verified = trust
        .verify_token(&token, now_unix)
        .map_err(|e| token_error(&e))?;
    if verified.workload_id.as_bytes() != &id
        || verified.claims_digest != crate::registry::claims_digest_of(&token)
    {
        return Err(ApiError::internal(
            "the verified token's id or claims digest differs from the one derived from its bytes",
        ));
    }
    let entry = LogEntry {
        at_ms: 0,
        id,
        body: EntryBody::Reveal { token },
    };
    // The record needs a readable `exp`; the verified token has one, so
    // this only fails on a bug.
    entry
        .record(&entry.to_bytes())
        .map_err(|e| ApiError::internal(format!("verified token gives no record: {e}")))?;
    Ok(PreparedReveal {
        entry,
        claims_digest: verified.claims_digest,
        token_expiry: verified.claims.expires_at,
        namespace: verified.claims.kubernetes.namespace,
    })
}
