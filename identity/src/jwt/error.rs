//! Every reason a token is refused, each with a stable name.

use core::fmt;

/// Which of the three segments of a compact JWS a problem was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenPart {
    /// The JOSE header (first segment).
    Header,
    /// The claims (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// Why a service-account token was refused.
///
/// [`TokenError::as_str`] gives each variant a stable snake_case name for
/// metrics labels and logs; renaming one is a breaking change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the configured limit.
    #[error("token is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Length of the token.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// Not three dot-separated segments with a non-empty header and payload.
    #[error("token is not a compact JWS (header.payload.signature)")]
    Malformed,
    /// A segment is not canonical unpadded base64url.
    #[error("{0} is not canonical unpadded base64url")]
    MalformedBase64(TokenPart),
    /// A segment is not a single well-formed JSON value.
    #[error("{0} is not well-formed JSON")]
    MalformedJson(TokenPart),
    /// A JSON object in the header or the claims repeats a key.
    #[error("{0} repeats a JSON object key")]
    DuplicateJsonKey(TokenPart),
    /// The header is JSON but not a JOSE header Mazu can read (`alg` or
    /// `kid` not a string, or not an object).
    #[error("header fields have the wrong type")]
    MalformedHeader,
    /// `alg` is `none`: an unsigned token.
    #[error("unsigned token (alg \"none\")")]
    AlgNone,
    /// `alg` is an HMAC algorithm (`HS256`, ...); Mazu never does HMAC, so a
    /// public key can never be misused as a shared secret.
    #[error("HMAC algorithms are refused")]
    HmacAlgorithm,
    /// `alg` is neither `RS256` nor `ES256`.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// The header has a `crit` member: it depends on an extension Mazu does not implement.
    #[error("header marks an extension critical")]
    CriticalHeader,
    /// The header has no `kid`.
    #[error("header has no key id (kid)")]
    MissingKid,
    /// No configured issuer has a key with this `kid`.
    #[error("no configured key has this key id")]
    UnknownKid,
    /// The key named by `kid` is not of the type `alg` needs (say an EC key for `RS256`).
    #[error("key type does not match the algorithm")]
    KeyTypeMismatch,
    /// The signature does not verify (including a wrong length).
    #[error("signature does not verify")]
    BadSignature,
    /// The claims are JSON but a claim has the wrong type (say a string `exp`).
    #[error("a claim has the wrong type")]
    MalformedClaims,
    /// A required claim is absent or empty.
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),
    /// `sub` is not `system:serviceaccount:<namespace>:<service account>`
    /// for the `kubernetes.io` claims of the same token.
    #[error("sub does not match the kubernetes.io namespace and service account")]
    SubjectMismatch,
    /// `iss` is not the issuer whose key signed the token.
    #[error("issuer does not match the signing key's issuer")]
    WrongIssuer,
    /// The token's `kubernetes.io.namespace` is outside the namespace scope
    /// configured for its issuer: the issuer may not speak for that namespace.
    #[error("the issuer is not trusted for the token's namespace")]
    NamespaceOutOfScope,
    /// `aud` does not contain Mazu's audience.
    #[error("audience does not include the configured audience")]
    WrongAudience,
    /// `aud` names other audiences too. A token in a certificate is shown to
    /// every peer, so one that the API server (or anything else) would also
    /// accept must never be used.
    #[error("token is also valid for other audiences")]
    ExtraAudience,
    /// `exp` (plus the allowed clock skew) has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is later than now plus the allowed clock skew.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is later than now plus the allowed clock skew.
    #[error("token issued in the future")]
    IssuedInFuture,
}

impl TokenError {
    /// A stable snake_case name for metrics labels and logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "token_too_large",
            Self::Malformed => "token_malformed",
            Self::MalformedBase64(_) => "token_malformed_base64",
            Self::MalformedJson(_) => "token_malformed_json",
            Self::DuplicateJsonKey(_) => "token_duplicate_json_key",
            Self::MalformedHeader => "token_malformed_header",
            Self::AlgNone => "token_alg_none",
            Self::HmacAlgorithm => "token_alg_hmac",
            Self::UnsupportedAlgorithm => "token_alg_unsupported",
            Self::CriticalHeader => "token_critical_header",
            Self::MissingKid => "token_missing_kid",
            Self::UnknownKid => "token_unknown_kid",
            Self::KeyTypeMismatch => "token_key_type_mismatch",
            Self::BadSignature => "token_bad_signature",
            Self::MalformedClaims => "token_malformed_claims",
            Self::MissingClaim(_) => "token_missing_claim",
            Self::SubjectMismatch => "token_subject_mismatch",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::NamespaceOutOfScope => "token_namespace_out_of_scope",
            Self::WrongAudience => "token_wrong_audience",
            Self::ExtraAudience => "token_extra_audience",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "token_issued_in_future",
        }
    }
}
