//! The JOSE header of a compact JWS: which algorithm, which key.

use alloc::string::String;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::error::{TokenError, TokenPart};
use crate::json::{self, JsonError};

/// A signature algorithm Mazu verifies.
///
/// Only asymmetric algorithms exist here on purpose: with no HMAC code path
/// at all, the "RSA public key used as an HMAC secret" confusion cannot happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), RSA keys of 2048 to 4096 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4), signature `r || s`, 64 bytes.
    Es256,
}

impl Algorithm {
    /// The JOSE name (`"RS256"`, `"ES256"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    /// Maps a JOSE `alg` name to a verifiable algorithm, or to the named
    /// reason it is refused.
    pub(crate) fn from_jose(name: &str) -> Result<Self, TokenError> {
        match name {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            // Any spelling of "none" gets its own reason: it is the classic attack.
            n if n.eq_ignore_ascii_case("none") => Err(TokenError::AlgNone),
            n if n.len() >= 2 && n.as_bytes()[..2].eq_ignore_ascii_case(b"HS") => {
                Err(TokenError::HmacAlgorithm)
            }
            _ => Err(TokenError::UnsupportedAlgorithm),
        }
    }
}

/// The header fields Mazu reads. Other fields (`typ`, `jku`, `x5c`, an
/// embedded `jwk`, ...) are ignored: keys come only from the configured JWKS.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// Any `crit` means the token relies on an extension we do not implement,
    /// which RFC 7515 §4.1.11 says must make it invalid.
    crit: Option<IgnoredAny>,
}

/// A parsed and accepted header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
}

impl Header {
    /// Parses the decoded header JSON; the order of checks decides which
    /// reason a token that is wrong in several ways reports.
    pub(crate) fn parse(json_bytes: &[u8]) -> Result<Self, TokenError> {
        let raw: RawHeader = json::from_slice_strict(json_bytes).map_err(|e| match e {
            JsonError::Syntax => TokenError::MalformedJson(TokenPart::Header),
            JsonError::DuplicateKey => TokenError::DuplicateJsonKey(TokenPart::Header),
            JsonError::Type => TokenError::MalformedHeader,
        })?;
        let alg = Algorithm::from_jose(raw.alg.as_deref().ok_or(TokenError::MalformedHeader)?)?;
        if raw.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let kid = match raw.kid {
            Some(kid) if !kid.is_empty() => kid,
            _ => return Err(TokenError::MissingKid),
        };
        Ok(Self { alg, kid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_algorithms() {
        assert_eq!(Algorithm::from_jose("RS256"), Ok(Algorithm::Rs256));
        assert_eq!(Algorithm::from_jose("ES256"), Ok(Algorithm::Es256));
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Algorithm::from_jose(none), Err(TokenError::AlgNone));
        }
        for hmac in ["HS256", "HS384", "HS512", "hs256", "HS1"] {
            assert_eq!(Algorithm::from_jose(hmac), Err(TokenError::HmacAlgorithm));
        }
        for other in [
            "RS384", "PS256", "ES384", "ES256K", "EdDSA", "", "rs256", "H",
        ] {
            assert_eq!(
                Algorithm::from_jose(other),
                Err(TokenError::UnsupportedAlgorithm)
            );
        }
    }

    #[test]
    fn parses_headers() {
        let h = Header::parse(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#).unwrap();
        assert_eq!(
            h,
            Header {
                alg: Algorithm::Rs256,
                kid: "k1".into()
            }
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256"}"#),
            Err(TokenError::MissingKid)
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256","kid":""}"#),
            Err(TokenError::MissingKid)
        );
        assert_eq!(
            Header::parse(br#"{"kid":"k"}"#),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            Header::parse(br#"{"alg":256,"kid":"k"}"#),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256","kid":7}"#),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            Header::parse(br#"["RS256"]"#),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256","kid":"k","crit":["b64"],"b64":false}"#),
            Err(TokenError::CriticalHeader)
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256","kid":"a","kid":"b"}"#),
            Err(TokenError::DuplicateJsonKey(TokenPart::Header))
        );
        assert_eq!(
            Header::parse(br#"{"alg":"RS256""#),
            Err(TokenError::MalformedJson(TokenPart::Header))
        );
    }
}
