//! The development issuer: a key, its `kid`, and an issuer URL.

use rand::{CryptoRng, RngCore};

use crate::error::Result;
use crate::jwks::{Jwk, Jwks};
use crate::keys::{Algorithm, IssuerKey};
use crate::token::{Claims, TokenRequest, signing_input, unsigned_token};

/// A development service-account token issuer.
#[derive(Debug, Clone)]
pub struct DevIssuer {
    key: IssuerKey,
    kid: String,
    issuer_url: String,
}

impl DevIssuer {
    /// Generates a fresh issuer for `alg` (RSA: 2048 bits) with issuer URL
    /// `issuer_url` (use [`crate::DEFAULT_ISSUER_URL`] to look like a default cluster).
    pub fn generate<R: RngCore + CryptoRng>(
        alg: Algorithm,
        issuer_url: impl Into<String>,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(Self::from_key(IssuerKey::generate(alg, rng)?, issuer_url))
    }

    /// Generates a fresh RS256 issuer with a `bits`-bit modulus (1024..=8192).
    pub fn generate_rsa<R: RngCore + CryptoRng>(
        bits: usize,
        issuer_url: impl Into<String>,
        rng: &mut R,
    ) -> Result<Self> {
        Ok(Self::from_key(
            IssuerKey::generate_rsa(bits, rng)?,
            issuer_url,
        ))
    }

    /// An issuer for an existing key; the `kid` is the key's RFC 7638 thumbprint.
    pub fn from_key(key: IssuerKey, issuer_url: impl Into<String>) -> Self {
        let kid = Jwk::from_key(&key).kid.unwrap_or_default();
        DevIssuer {
            key,
            kid,
            issuer_url: issuer_url.into(),
        }
    }

    /// The signing key.
    pub fn key(&self) -> &IssuerKey {
        &self.key
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The key ID (RFC 7638 thumbprint, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The issuer URL put in `iss`.
    pub fn issuer_url(&self) -> &str {
        &self.issuer_url
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk::from_key(&self.key)
    }

    /// A JWKS holding this issuer's public key.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.jwk()],
        }
    }

    /// The JWKS document `{"keys":[...]}` as pretty-printed JSON.
    pub fn jwks_json(&self) -> String {
        self.jwks().to_json()
    }

    /// One JWKS with the keys of all `issuers` (e.g. for a verifier trusting
    /// several clusters, or for key rotation tests).
    pub fn merged_jwks<'a>(issuers: impl IntoIterator<Item = &'a DevIssuer>) -> Jwks {
        let sets: Vec<Jwks> = issuers.into_iter().map(DevIssuer::jwks).collect();
        Jwks::merge(&sets)
    }

    /// The header Kubernetes puts on its tokens: `{"alg":"..","kid":".."}`.
    pub fn header_json(&self) -> String {
        format!(
            r#"{{"alg":"{}","kid":"{}"}}"#,
            self.algorithm().as_str(),
            self.kid
        )
    }

    /// The claim set this issuer would sign for `request` (random `jti` unless
    /// the request sets one).
    pub fn claims(&self, request: &TokenRequest) -> Claims {
        request.to_claims(&self.issuer_url)
    }

    /// Mints a projected service-account token for `request`.
    pub fn mint(&self, request: &TokenRequest) -> Result<String> {
        self.sign_claims(&self.claims(request))
    }

    /// Signs `claims` under this issuer's standard header.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String> {
        let claims_json = serde_json::to_string(claims)?;
        Ok(self.sign_raw(&self.header_json(), &claims_json))
    }

    /// Signs arbitrary header and claims bytes **verbatim** (no parsing, no
    /// re-encoding), for negative tests: duplicate JSON keys, a header `alg` that
    /// does not match the key, a foreign `kid`, non-JSON payloads, and so on.
    pub fn sign_raw(&self, header_json: &str, claims_json: &str) -> String {
        let signature = self.sign_bytes(signing_input(header_json, claims_json).as_bytes());
        unsigned_token(header_json, claims_json, &signature)
    }

    /// Signs `message` and returns the JWS signature bytes (see [`IssuerKey::sign`]).
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message)
    }
}
