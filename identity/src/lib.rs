//! Mazu's identity rules, shared by the node agent, the key curator and the
//! Envoy filter. Pure logic: no I/O, no clock, no RNG; `no_std` + `alloc`, so
//! the same code runs natively and inside the proxy-wasm filter.
//!
//! A workload's identity is its Kubernetes projected service-account token
//! (a JWT). Its **workload ID** is SHA-256 of the token bytes. The node agent
//! self-signs a certificate for the workload's TLS key carrying the SPIFFE ID
//! as URI SAN and the token and ID in the Mazu extension
//! ([`certificate::build_certificate`]), and registers the ID with the SPKI
//! hash of that key at the curator. A peer is accepted only if
//! [`verdict()`](fn@crate::verdict) says so: token verified against the configured issuers' JWKS,
//! SPIFFE ID consistent with the token, ID = SHA-256(token), ID registered
//! and not revoked, and the registered key is the certificate's key.
//!
//! Modules:
//! - [`jwt`], [`jwks`]: token parsing and verification;
//! - [`spiffe`], [`digest`]: SPIFFE IDs, workload IDs and other digests;
//! - [`certificate`]: the extension, the builder, the peer-certificate parser;
//! - [`registry`]: the registry snapshot and deltas the filter holds;
//! - [`trust`]: the verifier configuration;
//! - [`verdict`](mod@verdict): the decision, pure and cached.
//!
//! Design notes, formats and the list of deny reasons: `docs/identity.md`.
//!
//! ```
//! use mazu_identity::{RegistryEntry, RegistrySnapshot, SpiffeId, SpkiHash, WorkloadId};
//!
//! let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart")?;
//! assert_eq!((id.namespace(), id.service_account()), ("shop", "cart"));
//!
//! let workload = WorkloadId::of_token(b"eyJhbGciOi...");
//! let registry = RegistrySnapshot::from_entries(1, vec![RegistryEntry {
//!     workload_id: workload,
//!     slot: 0,
//!     spki_hash: SpkiHash::of_spki_der(b"DER SubjectPublicKeyInfo"),
//!     token_expiry: 1_767_229_140,
//!     revoked: false,
//! }])?;
//! let bytes = registry.encode();
//! assert_eq!(RegistrySnapshot::decode(&bytes)?.get(&workload).map(|e| e.slot), Some(0));
//! # Ok::<(), mazu_identity::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod base64url;
mod json;

pub mod certificate;
pub mod digest;
pub mod jwks;
pub mod jwt;
pub mod registry;
pub mod spiffe;
pub mod trust;
pub mod verdict;

mod error;

pub use certificate::{BuildError, CertificateError, PeerCertificate};
pub use digest::{ClaimsDigest, SpkiHash, WorkloadId};
pub use error::Error;
pub use jwks::{Jwks, JwksError};
pub use jwt::{Claims, TokenError, VerifiedToken};
pub use registry::{RegistryDelta, RegistryEntry, RegistryError, RegistryLookup, RegistrySnapshot};
pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};
pub use trust::{ConfigError, TrustConfig, TrustConfigBuilder};
pub use verdict::{DenyReason, PeerIdentity, Verdict, Verifier, check_registration, verdict};
