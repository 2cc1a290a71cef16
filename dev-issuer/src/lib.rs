//! A **development-only** stand-in for the Kubernetes service-account token issuer.
//!
//! It makes RS256 or ES256 signing keys, publishes them as a JWKS, and mints
//! tokens shaped exactly like kube-apiserver's *projected* service-account tokens,
//! for local runs and tests. It is not part of Mazu's trusted system: in
//! production the cluster's own issuer (or a tenant's OIDC issuer) signs tokens.
//!
//! # The token Mazu relies on
//!
//! Header (Kubernetes sets only these two members, in this order):
//!
//! ```json
//! {"alg":"RS256","kid":"<RFC 7638 thumbprint of the signing key>"}
//! ```
//!
//! Claims (members in alphabetical order at every level, as kube-apiserver emits
//! them; `aud` is always an array; `node` appears when the apiserver binds node
//! information; `warnafter` defaults to `exp` here):
//!
//! ```json
//! {
//!   "aud": ["mazu:dev"],
//!   "exp": 1700003600,
//!   "iat": 1700000000,
//!   "iss": "https://kubernetes.default.svc.cluster.local",
//!   "jti": "6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24",
//!   "kubernetes.io": {
//!     "namespace": "shop",
//!     "node": {"name": "node-1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"},
//!     "pod": {"name": "cart-7d9f8-x2x1q", "uid": "778a530c-b3f4-47c0-9cd5-ab018fb64f33"},
//!     "serviceaccount": {"name": "cart", "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"},
//!     "warnafter": 1700003600
//!   },
//!   "nbf": 1700000000,
//!   "sub": "system:serviceaccount:shop:cart"
//! }
//! ```
//!
//! RS256 is RSASSA-PKCS1-v1_5 with SHA-256; ES256 signatures are in JOSE form
//! (`r || s`, 64 bytes), not DER.
//!
//! # Example
//!
//! ```
//! use mazu_dev_issuer::{Algorithm, Claims, DevIssuer, TokenRequest, DEFAULT_ISSUER_URL};
//!
//! let issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rand::rngs::OsRng)?;
//! let request = TokenRequest::new("shop", "cart")
//!     .pod("cart-7d9f8-x2x1q", "778a530c-b3f4-47c0-9cd5-ab018fb64f33")
//!     .node("node-1", "58456cb0-dd00-45ed-b797-5578fdceaced")
//!     .issued_at(1_700_000_000);
//! let token = issuer.mint(&request)?;
//!
//! // What a verifier gets after checking the signature against `issuer.jwks_json()`:
//! let parts = mazu_dev_issuer::decode_unverified(&token)?;
//! let claims: Claims = serde_json::from_slice(&parts.claims)?;
//! assert_eq!(claims.sub, "system:serviceaccount:shop:cart");
//! assert_eq!(claims.exp, 1_700_003_600);
//! assert_eq!(parts.header, format!(r#"{{"alg":"ES256","kid":"{}"}}"#, issuer.kid()).as_bytes());
//!
//! // Negative tests: sign anything verbatim, or assemble any three parts.
//! let dup = issuer.sign_raw(&issuer.header_json(), r#"{"sub":"a","sub":"b"}"#);
//! let none = mazu_dev_issuer::unsigned_token(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#, b"");
//! # let _ = (dup, none);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On disk ([`DevIssuer::save`] / [`DevIssuer::load`]) an issuer is a directory with
//! `key.pem` (PKCS#8, mode 0600), `issuer.json` and `jwks.json`; see [`store`].
//! The `mazu-dev-issuer` binary wraps all of this (`init`, `jwks`, `mint`).

#![forbid(unsafe_code)]

mod error;
mod issuer;
mod jwks;
mod keys;
pub mod store;
mod token;

pub use error::{Error, MetadataProblem, Result};
pub use issuer::DevIssuer;
pub use jwks::{Jwk, Jwks};
pub use keys::{Algorithm, DEFAULT_RSA_BITS, IssuerKey};
pub use store::write_atomic;
pub use token::{
    Claims, DEFAULT_ISSUER_URL, DEFAULT_LIFETIME_SECS, DEV_AUDIENCE, KubernetesClaims, ObjectRef,
    TokenParts, TokenRequest, decode_unverified, derived_uid, now_unix, random_uuid_v4,
    signing_input, unsigned_token,
};

/// The RSA and P-256 crates this crate's public API uses, for callers that need
/// the matching versions (e.g. to verify signatures in tests).
pub mod reexports {
    pub use p256;
    pub use rsa;
}
