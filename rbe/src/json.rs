//! JSON forms (serde) for the HTTP API.
//!
//! Objects with named fields; numbers as JSON numbers; every point, scalar,
//! digest, id and AEAD body as a string of **standard base64 with padding**
//! (RFC 4648 section 4) of its canonical binary form: G1 points 48-byte
//! compressed, G2 points 96-byte compressed, Gt elements 576 bytes, scalars 32
//! bytes big-endian. Standard rather than URL-safe base64 because these travel
//! in JSON bodies, never in URLs, and every HTTP client library decodes it.
//! Unknown fields are rejected.
//!
//! Deserialization re-encodes the fields into the canonical binary encoding
//! and runs the binary decoder, so both forms accept exactly the same values
//! (subgroup checks, identity rules, lengths).

use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use bls12_381_plus::{G1Affine, G2Affine};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crs::Crs;
use crate::encoding::{Codec, G1_LEN, G2_LEN, GT_LEN, SCALAR_LEN, Writer, decode_value};
use crate::encrypt::Ciphertext;
use crate::error::DecodeError;
use crate::opening::Opening;
use crate::proof::{MembershipProof, NonMembershipProof};
use crate::public_params::PublicParams;
use crate::registration::Registration;

fn b64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

fn g1(p: &G1Affine) -> String {
    b64(&p.to_compressed())
}

fn g2(p: &G2Affine) -> String {
    b64(&p.to_compressed())
}

/// Decode base64 that must hold exactly `len` bytes.
fn unb64(field: &'static str, s: &str, len: usize) -> Result<Vec<u8>, DecodeError> {
    // Reject before decoding anything absurdly long.
    if s.len() > 4 * len.div_ceil(3) {
        return Err(DecodeError::Base64 { field });
    }
    let v = Base64::decode_vec(s).map_err(|_| DecodeError::Base64 { field })?;
    if v.len() != len {
        return Err(DecodeError::Base64 { field });
    }
    Ok(v)
}

/// Base64 of any length up to `max` bytes.
fn unb64_var(field: &'static str, s: &str, max: usize) -> Result<Vec<u8>, DecodeError> {
    if s.len() > 4 * max.div_ceil(3) {
        return Err(DecodeError::Base64 { field });
    }
    Base64::decode_vec(s).map_err(|_| DecodeError::Base64 { field })
}

/// Build the binary encoding field by field, then decode it strictly.
fn via_binary<T: Codec>(
    build: impl FnOnce(&mut Writer) -> Result<(), DecodeError>,
) -> Result<T, DecodeError> {
    let mut w = Writer::with_version(T::MAGIC, T::VERSION);
    build(&mut w)?;
    decode_value(&w.into_bytes())
}

fn count(w: &mut Writer, n: usize) {
    w.count(n);
}

fn de<'de, D: Deserializer<'de>, J: Deserialize<'de>, T>(
    d: D,
    convert: impl FnOnce(J) -> Result<T, DecodeError>,
) -> Result<T, D::Error> {
    let j = J::deserialize(d)?;
    convert(j).map_err(D::Error::custom)
}

// ---- CRS ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrsJson {
    capacity: u32,
    block_size: u32,
    /// h_1 .. h_n, h_(n+2) .. h_(2n).
    g1: Vec<String>,
    /// hh_1 .. hh_n.
    g2: Vec<String>,
}

impl Serialize for Crs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.block_size();
        CrsJson {
            capacity: self.capacity(),
            block_size: n,
            g1: (1..=2 * n).filter_map(|t| self.h(t)).map(g1).collect(),
            g2: (1..=n).filter_map(|t| self.hh(t)).map(g2).collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Crs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: CrsJson| {
            via_binary(|w| {
                w.u32(j.capacity);
                w.u32(j.block_size);
                for p in &j.g1 {
                    w.bytes(&unb64("g1", p, G1_LEN)?);
                }
                for p in &j.g2 {
                    w.bytes(&unb64("g2", p, G2_LEN)?);
                }
                Ok(())
            })
        })
    }
}

// ---- Public parameters ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicParamsJson {
    crs_digest: String,
    capacity: u32,
    block_size: u32,
    version: u64,
    commitments: Vec<String>,
}

impl Serialize for PublicParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dims = self.dimensions();
        PublicParamsJson {
            crs_digest: b64(&self.crs_digest()),
            capacity: dims.capacity(),
            block_size: dims.block_size(),
            version: self.version(),
            commitments: self.commitments().iter().map(g1).collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: PublicParamsJson| {
            via_binary(|w| {
                w.bytes(&unb64("crs_digest", &j.crs_digest, 32)?);
                w.u32(j.capacity);
                w.u32(j.block_size);
                w.u64(j.version);
                count(w, j.commitments.len());
                for c in &j.commitments {
                    w.bytes(&unb64("commitments", c, G1_LEN)?);
                }
                Ok(())
            })
        })
    }
}

// ---- Registration ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    commitment: String,
    response: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationJson {
    slot: u32,
    id: String,
    public_key: String,
    helpers: Vec<String>,
    proof: ProofJson,
}

impl Serialize for Registration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RegistrationJson {
            slot: self.slot,
            id: b64(&self.id),
            public_key: g1(&self.public_key),
            helpers: self.helpers.iter().map(g1).collect(),
            proof: ProofJson {
                commitment: g1(&self.proof.commitment),
                response: b64(&self.proof.response.to_be_bytes()),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Registration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: RegistrationJson| {
            via_binary(|w| {
                w.u32(j.slot);
                w.bytes(&unb64("id", &j.id, 32)?);
                w.bytes(&unb64("public_key", &j.public_key, G1_LEN)?);
                count(w, j.helpers.len());
                for h in &j.helpers {
                    w.bytes(&unb64("helpers", h, G1_LEN)?);
                }
                w.bytes(&unb64("proof.commitment", &j.proof.commitment, G1_LEN)?);
                w.bytes(&unb64("proof.response", &j.proof.response, SCALAR_LEN)?);
                Ok(())
            })
        })
    }
}

// ---- Openings and proofs ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpeningJson {
    slot: u32,
    commitment: String,
    value: String,
}

impl From<&Opening> for OpeningJson {
    fn from(o: &Opening) -> Self {
        Self {
            slot: o.slot,
            commitment: g1(&o.commitment),
            value: g1(&o.value),
        }
    }
}

impl OpeningJson {
    fn write(&self, w: &mut Writer) -> Result<(), DecodeError> {
        w.u32(self.slot);
        w.bytes(&unb64("commitment", &self.commitment, G1_LEN)?);
        w.bytes(&unb64("value", &self.value, G1_LEN)?);
        Ok(())
    }
}

impl Serialize for Opening {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OpeningJson::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Opening {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: OpeningJson| via_binary(|w| j.write(w)))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipProofJson {
    id: String,
    public_key: String,
    proof_of_knowledge: ProofJson,
    opening: OpeningJson,
}

impl Serialize for MembershipProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MembershipProofJson {
            id: b64(&self.id),
            public_key: g1(&self.public_key),
            proof_of_knowledge: ProofJson {
                commitment: g1(&self.proof_of_knowledge.commitment),
                response: b64(&self.proof_of_knowledge.response.to_be_bytes()),
            },
            opening: OpeningJson::from(&self.opening),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for MembershipProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: MembershipProofJson| {
            via_binary(|w| {
                j.opening.write(w)?;
                w.bytes(&unb64("public_key", &j.public_key, G1_LEN)?);
                w.bytes(&unb64("id", &j.id, 32)?);
                let pok = &j.proof_of_knowledge;
                w.bytes(&unb64(
                    "proof_of_knowledge.commitment",
                    &pok.commitment,
                    G1_LEN,
                )?);
                w.bytes(&unb64(
                    "proof_of_knowledge.response",
                    &pok.response,
                    SCALAR_LEN,
                )?);
                Ok(())
            })
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonMembershipProofJson {
    opening: OpeningJson,
}

impl Serialize for NonMembershipProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        NonMembershipProofJson {
            opening: OpeningJson::from(&self.opening),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NonMembershipProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: NonMembershipProofJson| {
            via_binary(|w| j.opening.write(w))
        })
    }
}

// ---- Ciphertext ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CiphertextJson {
    slot: u32,
    commitment: String,
    ct1: String,
    ct2: String,
    body: String,
}

impl Serialize for Ciphertext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CiphertextJson {
            slot: self.slot(),
            commitment: g1(self.commitment()),
            ct1: b64(&self.ct1().to_bytes()),
            ct2: g2(self.ct2()),
            body: b64(self.body()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ciphertext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de(d, |j: CiphertextJson| {
            via_binary(|w| {
                w.u32(j.slot);
                w.bytes(&unb64("commitment", &j.commitment, G1_LEN)?);
                w.bytes(&unb64("ct1", &j.ct1, GT_LEN)?);
                w.bytes(&unb64("ct2", &j.ct2, G2_LEN)?);
                let body = unb64_var("body", &j.body, crate::encrypt::MAX_BODY_LEN)?;
                count(w, body.len());
                w.bytes(&body);
                Ok(())
            })
        })
    }
}
