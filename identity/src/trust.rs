//! What a verifier trusts: the trust domain, the token issuers with their
//! keys and namespace scopes, the audience, and the limits. Built once from
//! configuration and validated.
//!
//! Two rules are configuration, not defaults:
//! - the **audience** ([`audience`]) is required and must be unique to the
//!   deployment; the shared `mazu` is refused;
//! - every **issuer** has a [`NamespaceScope`] ([`scope`]): the namespaces
//!   its tokens may name. "Every namespace" is only what is written (`*`).

mod audience;
mod scope;

pub use audience::{
    AUDIENCE_PREFIX, AudienceError, MAX_AUDIENCE_LEN, SHARED_AUDIENCE, audience_for_log,
    check_audience,
};
pub use scope::{
    ANY_NAMESPACE, MAX_NAMESPACE_LEN, NamespaceScope, SCOPE_LIST_SEPARATOR, ScopeError,
};

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::certificate::DEFAULT_MAX_CERTIFICATE_LEN;
use crate::jwks::{Jwks, JwksError};
use crate::jwt::{
    DEFAULT_CLOCK_SKEW_SECS, DEFAULT_MAX_TOKEN_LEN, Issuer, MAX_CLOCK_SKEW_SECS, SignatureBackend,
    TOKEN_LEN_LIMIT_RANGE, TokenError, TokenPolicy, VerifiedToken,
};
use crate::spiffe::{SpiffeIdError, TrustDomain};

/// Largest certificate size limit a configuration may set.
pub const MAX_CERTIFICATE_LEN_LIMIT: usize = 256 * 1024;

/// Why a trust configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The trust domain is not a valid SPIFFE trust domain.
    #[error("invalid trust domain: {0}")]
    TrustDomain(SpiffeIdError),
    /// No issuer configured: nothing could ever be accepted.
    #[error("no token issuer configured")]
    NoIssuers,
    /// An issuer URL is empty or has spaces or control characters.
    #[error("invalid issuer {0:?}")]
    InvalidIssuer(String),
    /// The same issuer URL appears twice.
    #[error("issuer {0:?} configured twice")]
    DuplicateIssuer(String),
    /// An issuer's JWKS is unusable, or a `kid` appears at two issuers.
    #[error("JWKS of issuer {issuer:?}: {error}")]
    Jwks {
        /// The issuer URL.
        issuer: String,
        /// What is wrong with its keys.
        error: JwksError,
    },
    /// The audience is missing or not deployment-unique (see [`check_audience`]).
    #[error("{0}")]
    Audience(AudienceError),
    /// Clock skew above [`MAX_CLOCK_SKEW_SECS`].
    #[error("clock skew {0} s is above the maximum of {MAX_CLOCK_SKEW_SECS} s")]
    ClockSkewTooLarge(u64),
    /// Token size limit outside [`TOKEN_LEN_LIMIT_RANGE`].
    #[error("token size limit {0} is outside 512..=65536")]
    MaxTokenLenOutOfRange(usize),
    /// Certificate size limit below the token limit or above [`MAX_CERTIFICATE_LEN_LIMIT`].
    #[error(
        "certificate size limit {0} must be at least the token limit and at most {MAX_CERTIFICATE_LEN_LIMIT}"
    )]
    MaxCertificateLenOutOfRange(usize),
}

/// The verifier's configuration. See [`TrustConfig::builder`].
#[derive(Clone, Debug)]
pub struct TrustConfig {
    trust_domain: TrustDomain,
    tokens: TokenPolicy,
    max_certificate_len: usize,
}

/// Builder for [`TrustConfig`]; every value is validated by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct TrustConfigBuilder {
    trust_domain: String,
    issuers: Vec<(String, IssuerKeys, NamespaceScope)>,
    audience: Option<String>,
    clock_skew_secs: u64,
    max_token_len: usize,
    max_certificate_len: usize,
}

#[derive(Clone, Debug)]
enum IssuerKeys {
    Json(Vec<u8>),
    Parsed(Jwks),
}

impl TrustConfig {
    /// Starts a configuration for `trust_domain` with the defaults: 60 s
    /// clock skew, 8 KiB tokens, 16 KiB certificates. The audience and at
    /// least one issuer have no default and must be given.
    pub fn builder(trust_domain: &str) -> TrustConfigBuilder {
        TrustConfigBuilder {
            trust_domain: trust_domain.to_string(),
            issuers: Vec::new(),
            audience: None,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_certificate_len: DEFAULT_MAX_CERTIFICATE_LEN,
        }
    }

    /// The mesh trust domain SPIFFE IDs must be in.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Issuers, audience, skew and token limit.
    pub fn token_policy(&self) -> &TokenPolicy {
        &self.tokens
    }

    /// Tolerated clock difference, seconds (tokens and certificates).
    pub fn clock_skew_secs(&self) -> u64 {
        self.tokens.clock_skew_secs()
    }

    /// Largest accepted peer certificate (PEM or DER as given), bytes.
    pub fn max_certificate_len(&self) -> usize {
        self.max_certificate_len
    }

    /// Verifies a token (the curator's registration check).
    pub fn verify_token(&self, token: &[u8], now_unix: u64) -> Result<VerifiedToken, TokenError> {
        self.tokens.verify(token, now_unix)
    }

    /// [`verify_token`](Self::verify_token) with the signature checked by
    /// `backend` ([`TokenPolicy::verify_with`]).
    pub fn verify_token_with(
        &self,
        token: &[u8],
        now_unix: u64,
        backend: &dyn SignatureBackend,
    ) -> Result<VerifiedToken, TokenError> {
        self.tokens.verify_with(token, now_unix, backend)
    }

    /// [`verify_token`](Self::verify_token) without the signature check
    /// ([`TokenPolicy::verify_vouched`]).
    pub fn verify_vouched_token(
        &self,
        token: &[u8],
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenError> {
        self.tokens.verify_vouched(token, now_unix)
    }
}

impl TrustConfigBuilder {
    /// Trusts tokens from `issuer_url` (their `iss`) signed by a key of the
    /// JWKS document `jwks_json` (parsed by [`build`](Self::build)), for the
    /// namespaces in `scope` only.
    pub fn issuer(mut self, issuer_url: &str, jwks_json: &[u8], scope: NamespaceScope) -> Self {
        self.issuers.push((
            issuer_url.to_string(),
            IssuerKeys::Json(jwks_json.to_vec()),
            scope,
        ));
        self
    }

    /// Same as [`issuer`](Self::issuer) with an already parsed JWKS.
    pub fn issuer_jwks(mut self, issuer_url: &str, jwks: Jwks, scope: NamespaceScope) -> Self {
        self.issuers
            .push((issuer_url.to_string(), IssuerKeys::Parsed(jwks), scope));
        self
    }

    /// The audience tokens must carry, alone. Required; it must be unique to
    /// the deployment ([`check_audience`]; recommended: [`audience_for_log`]).
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_string());
        self
    }

    /// Tolerated clock difference in seconds (default 60, at most 600).
    pub fn clock_skew_secs(mut self, secs: u64) -> Self {
        self.clock_skew_secs = secs;
        self
    }

    /// Largest accepted token in bytes (default 8192, 512..=65536).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Largest accepted peer certificate in bytes (default 16384).
    pub fn max_certificate_len(mut self, len: usize) -> Self {
        self.max_certificate_len = len;
        self
    }

    /// Validates everything and parses the JWKS documents.
    pub fn build(self) -> Result<TrustConfig, ConfigError> {
        let trust_domain =
            TrustDomain::new(&self.trust_domain).map_err(ConfigError::TrustDomain)?;
        let audience = self
            .audience
            .ok_or(ConfigError::Audience(AudienceError::Missing))?;
        check_audience(&audience).map_err(ConfigError::Audience)?;
        if self.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(ConfigError::ClockSkewTooLarge(self.clock_skew_secs));
        }
        if !TOKEN_LEN_LIMIT_RANGE.contains(&self.max_token_len) {
            return Err(ConfigError::MaxTokenLenOutOfRange(self.max_token_len));
        }
        if self.max_certificate_len < self.max_token_len
            || self.max_certificate_len > MAX_CERTIFICATE_LEN_LIMIT
        {
            return Err(ConfigError::MaxCertificateLenOutOfRange(
                self.max_certificate_len,
            ));
        }
        if self.issuers.is_empty() {
            return Err(ConfigError::NoIssuers);
        }
        let mut issuers: Vec<Issuer> = Vec::with_capacity(self.issuers.len());
        for (url, keys, scope) in self.issuers {
            if url.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::InvalidIssuer(url));
            }
            if url == audience {
                return Err(ConfigError::Audience(AudienceError::IsIssuer(url)));
            }
            if issuers.iter().any(|i| i.url() == url) {
                return Err(ConfigError::DuplicateIssuer(url));
            }
            let jwks = match keys {
                IssuerKeys::Parsed(jwks) => jwks,
                IssuerKeys::Json(json) => {
                    Jwks::from_json(&json).map_err(|error| ConfigError::Jwks {
                        issuer: url.clone(),
                        error,
                    })?
                }
            };
            // Keys are looked up by `kid` across all issuers, so a `kid` must
            // name one key in the whole configuration.
            if let Some(key) = jwks
                .keys()
                .iter()
                .find(|key| issuers.iter().any(|i| i.jwks().get(key.kid()).is_some()))
            {
                return Err(ConfigError::Jwks {
                    issuer: url,
                    error: JwksError::DuplicateKid(key.kid().to_string()),
                });
            }
            issuers.push(Issuer::new(url, jwks, scope));
        }
        let tokens = TokenPolicy::new(issuers, audience, self.clock_skew_secs, self.max_token_len);
        Ok(TrustConfig {
            trust_domain,
            tokens,
            max_certificate_len: self.max_certificate_len,
        })
    }
}
