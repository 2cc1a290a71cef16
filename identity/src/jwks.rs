//! JSON Web Key Sets (RFC 7517) as published by a Kubernetes API server at
//! `/openid/v1/jwks`: the only source of keys Mazu trusts for tokens.

use alloc::string::String;
use alloc::vec::Vec;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::base64url;
use crate::json::{self, JsonError};
use crate::jwt::Algorithm;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub const MAX_RSA_BITS: usize = 4096;

/// Why a JWKS document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not well-formed JSON.
    #[error("JWKS is not well-formed JSON")]
    MalformedJson,
    /// An object repeats a key.
    #[error("JWKS repeats a JSON object key")]
    DuplicateJsonKey,
    /// Well-formed JSON but not a JWKS (`keys` missing or a member of the wrong type).
    #[error("JWKS does not have the RFC 7517 shape")]
    MalformedJwks,
    /// A key has no `kid`; tokens select keys by `kid`, so it could never be used.
    #[error("key #{0} has no kid")]
    MissingKid(usize),
    /// Two keys share a `kid` (within one JWKS or across issuers).
    #[error("kid {0:?} appears more than once")]
    DuplicateKid(String),
    /// A key parameter (`n`, `e`, `x`, `y`, `crv`) is missing.
    #[error("key {kid:?} lacks parameter {param}")]
    MissingKeyParameter {
        /// The key.
        kid: String,
        /// The parameter.
        param: &'static str,
    },
    /// A key parameter is not canonical base64url or has the wrong length.
    #[error("key {kid:?} has a malformed parameter {param}")]
    MalformedKeyParameter {
        /// The key.
        kid: String,
        /// The parameter.
        param: &'static str,
    },
    /// An RSA modulus shorter than 2048 bits.
    #[error("RSA key {kid:?} has {bits} bits, fewer than {MIN_RSA_BITS}")]
    WeakRsaKey {
        /// The key.
        kid: String,
        /// Its modulus size.
        bits: usize,
    },
    /// An RSA key the RSA implementation refuses (modulus above 4096 bits, bad exponent).
    #[error("RSA key {kid:?} is invalid")]
    InvalidRsaKey {
        /// The key.
        kid: String,
    },
    /// An EC key on a curve other than P-256.
    #[error("EC key {kid:?} is not on P-256")]
    UnsupportedCurve {
        /// The key.
        kid: String,
    },
    /// An EC key whose coordinates are not a point of P-256.
    #[error("EC key {kid:?} is not a valid P-256 point")]
    InvalidEcPoint {
        /// The key.
        kid: String,
    },
    /// The key carries private material (`d`, `p`, ...): a configuration mistake
    /// that would spread a signing key; refused rather than ignored.
    #[error("key {kid:?} contains private key material")]
    PrivateKeyMaterial {
        /// The key.
        kid: String,
    },
    /// No key in the set can verify RS256 or ES256 signatures.
    #[error("JWKS has no RS256 or ES256 signing key")]
    NoUsableKeys,
}

/// A public key that can verify one algorithm.
#[derive(Clone, Debug)]
pub(crate) enum PublicKey {
    /// RSA, verifying RS256.
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    /// P-256, verifying ES256.
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The only algorithm this key is used with.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa(_) => Algorithm::Rs256,
            Self::P256(_) => Algorithm::Es256,
        }
    }
}

/// A key's public parameters in the encodings native signature libraries
/// take (see [`SignatureBackend`](crate::jwt::SignatureBackend)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyParams {
    /// RS256: the big-endian modulus and public exponent, no leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// ES256: the SEC1 uncompressed point, `0x04 || x || y`.
    P256 {
        /// The point.
        uncompressed: [u8; 65],
    },
}

/// One usable verification key.
#[derive(Clone, Debug)]
pub struct Jwk {
    kid: String,
    pub(crate) key: PublicKey,
    params: PublicKeyParams,
}

impl Jwk {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key's parameters, checked as this key was parsed.
    pub fn params(&self) -> &PublicKeyParams {
        &self.params
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }
}

/// A parsed JWKS: the keys of one issuer that can verify RS256 or ES256.
#[derive(Clone, Debug)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

impl Jwks {
    /// Parses a JWKS document.
    ///
    /// Keys that cannot sign RS256/ES256 tokens (`use` other than `sig`, an
    /// `alg` other than RS256/ES256, a `kty` other than RSA/EC, symmetric
    /// `oct` keys) are skipped; a usable-looking key that is malformed or weak
    /// is an error, so that a broken configuration is loud.
    pub fn from_json(json_bytes: &[u8]) -> Result<Self, JwksError> {
        let raw: RawJwks = json::from_slice_strict(json_bytes).map_err(|e| match e {
            JsonError::Syntax => JwksError::MalformedJson,
            JsonError::DuplicateKey => JwksError::DuplicateJsonKey,
            JsonError::Type => JwksError::MalformedJwks,
        })?;
        let mut keys: Vec<Jwk> = Vec::new();
        for (index, raw_key) in raw.keys.into_iter().enumerate() {
            let Some(jwk) = parse_key(index, raw_key)? else {
                continue;
            };
            if keys.iter().any(|k| k.kid == jwk.kid) {
                return Err(JwksError::DuplicateKid(jwk.kid));
            }
            keys.push(jwk);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// All usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

fn decode_param(kid: &str, param: &'static str, value: Option<&str>) -> Result<Vec<u8>, JwksError> {
    let text = value.ok_or_else(|| JwksError::MissingKeyParameter {
        kid: kid.into(),
        param,
    })?;
    base64url::decode(text.as_bytes()).ok_or_else(|| JwksError::MalformedKeyParameter {
        kid: kid.into(),
        param,
    })
}

fn parse_key(index: usize, raw: RawJwk) -> Result<Option<Jwk>, JwksError> {
    let kty = raw.kty.as_deref().unwrap_or("");
    let expected_alg = match kty {
        "RSA" => "RS256",
        "EC" => "ES256",
        // "oct" (symmetric) and anything else: never usable, by design.
        _ => return Ok(None),
    };
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if raw.alg.as_deref().is_some_and(|a| a != expected_alg) {
        return Ok(None);
    }
    let kid = match raw.kid {
        Some(kid) if !kid.is_empty() => kid,
        _ => return Err(JwksError::MissingKid(index)),
    };
    if raw.d.is_some() || raw.p.is_some() || raw.k.is_some() {
        return Err(JwksError::PrivateKeyMaterial { kid });
    }
    let (key, params) = if kty == "RSA" {
        let n = BigUint::from_bytes_be(&decode_param(&kid, "n", raw.n.as_deref())?);
        let e = BigUint::from_bytes_be(&decode_param(&kid, "e", raw.e.as_deref())?);
        let bits = n.bits();
        if bits < MIN_RSA_BITS {
            return Err(JwksError::WeakRsaKey { kid, bits });
        }
        let params = PublicKeyParams::Rsa {
            n: n.to_bytes_be(),
            e: e.to_bytes_be(),
        };
        let public = RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
            .map_err(|_| JwksError::InvalidRsaKey { kid: kid.clone() })?;
        (
            PublicKey::Rsa(rsa::pkcs1v15::VerifyingKey::new(public)),
            params,
        )
    } else {
        match raw.crv.as_deref() {
            Some("P-256") => {}
            Some(_) => return Err(JwksError::UnsupportedCurve { kid }),
            None => return Err(JwksError::MissingKeyParameter { kid, param: "crv" }),
        }
        let x = decode_param(&kid, "x", raw.x.as_deref())?;
        let y = decode_param(&kid, "y", raw.y.as_deref())?;
        // RFC 7518 §6.2.1.2: coordinates are exactly the field size, 32 bytes.
        let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) else {
            return Err(JwksError::MalformedKeyParameter { kid, param: "x/y" });
        };
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
            .map_err(|_| JwksError::InvalidEcPoint { kid: kid.clone() })?;
        let mut uncompressed = [0x04; 65];
        uncompressed[1..33].copy_from_slice(&x);
        uncompressed[33..].copy_from_slice(&y);
        (PublicKey::P256(key), PublicKeyParams::P256 { uncompressed })
    };
    Ok(Some(Jwk { kid, key, params }))
}
