//! JSON Web Keys (RFC 7517), JWK thumbprints (RFC 7638) and JWKS merging.

use base64ct::{Base64UrlUnpadded, Encoding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::keys::IssuerKey;

/// One public key in a JWKS.
///
/// Field order is the serialization order: an RSA key comes out as
/// `kty, kid, use, alg, n, e`, a P-256 key as `kty, crv, x, y, kid, use, alg`.
/// All byte values are base64url without padding. Fields are public so that
/// negative tests can tamper with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `"RSA"` or `"EC"`.
    pub kty: String,
    /// Curve (`"P-256"`), EC only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Affine x coordinate (32 bytes), EC only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Affine y coordinate (32 bytes), EC only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key ID: the RFC 7638 thumbprint for keys made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Public key use: `"sig"`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Algorithm: `"RS256"` or `"ES256"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Modulus (big-endian, no leading zeros), RSA only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Public exponent (big-endian, no leading zeros), RSA only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    /// The public JWK of `key`, with `kid` set to its RFC 7638 thumbprint.
    pub fn from_key(key: &IssuerKey) -> Jwk {
        let alg = Some(key.algorithm().as_str().to_owned());
        let mut jwk = match key {
            IssuerKey::Rsa(k) => Jwk {
                kty: "RSA".to_owned(),
                crv: None,
                x: None,
                y: None,
                kid: None,
                use_: Some("sig".to_owned()),
                alg,
                n: Some(b64(&k.n().to_bytes_be())),
                e: Some(b64(&k.e().to_bytes_be())),
            },
            IssuerKey::Ec(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                Jwk {
                    kty: "EC".to_owned(),
                    crv: Some("P-256".to_owned()),
                    x: point.x().map(|x| b64(x)),
                    y: point.y().map(|y| b64(y)),
                    kid: None,
                    use_: Some("sig".to_owned()),
                    alg,
                    n: None,
                    e: None,
                }
            }
        };
        jwk.kid = jwk.thumbprint();
        jwk
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url without padding, computed over
    /// the required members only (`e, kty, n` for RSA; `crv, kty, x, y` for EC).
    /// `None` for other key types or when a required member is missing.
    pub fn thumbprint(&self) -> Option<String> {
        // Members in lexicographic order, no whitespace (RFC 7638 section 3).
        let canonical = match self.kty.as_str() {
            "RSA" => serde_json::json!({
                "e": self.e.as_ref()?,
                "kty": "RSA",
                "n": self.n.as_ref()?,
            }),
            "EC" => serde_json::json!({
                "crv": self.crv.as_ref()?,
                "kty": "EC",
                "x": self.x.as_ref()?,
                "y": self.y.as_ref()?,
            }),
            _ => return None,
        };
        // `json!` objects may keep insertion order (serde_json `preserve_order`);
        // the members above are inserted in lexicographic order either way.
        let text = serde_json::to_string(&canonical).ok()?;
        Some(b64(&Sha256::digest(text.as_bytes())))
    }
}

/// A JWK Set: `{"keys": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document.
    pub fn from_json(json: &str) -> Result<Jwks> {
        Ok(serde_json::from_str(json)?)
    }

    /// The JWKS as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and options cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Merges several sets into one, keeping the first key seen for each `kid`
    /// (keys without a `kid` are all kept).
    pub fn merge<'a>(sets: impl IntoIterator<Item = &'a Jwks>) -> Jwks {
        let mut out = Jwks::default();
        for set in sets {
            for key in &set.keys {
                let duplicate =
                    key.kid.is_some() && out.keys.iter().any(|seen| seen.kid == key.kid);
                if !duplicate {
                    out.keys.push(key.clone());
                }
            }
        }
        out
    }
}

/// Base64url without padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1.
        let jwk = Jwk {
            kty: "RSA".to_owned(),
            crv: None,
            x: None,
            y: None,
            kid: Some("2011-04-29".to_owned()),
            use_: None,
            alg: Some("RS256".to_owned()),
            n: Some(
                concat!(
                    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAt",
                    "VT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn6",
                    "4tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD",
                    "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n9",
                    "1CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINH",
                    "aQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
                )
                .to_owned(),
            ),
            e: Some("AQAB".to_owned()),
        };
        assert_eq!(
            jwk.thumbprint().as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn merge_dedups_by_kid() {
        let a = Jwk {
            kty: "EC".to_owned(),
            crv: Some("P-256".to_owned()),
            x: Some("x".to_owned()),
            y: Some("y".to_owned()),
            kid: Some("k1".to_owned()),
            use_: Some("sig".to_owned()),
            alg: Some("ES256".to_owned()),
            n: None,
            e: None,
        };
        let mut b = a.clone();
        b.kid = Some("k2".to_owned());
        let one = Jwks {
            keys: vec![a.clone()],
        };
        let two = Jwks { keys: vec![a, b] };
        let merged = Jwks::merge([&one, &two]);
        assert_eq!(merged.keys.len(), 2);
    }
}
