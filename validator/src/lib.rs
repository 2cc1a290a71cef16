//! Mazu's certificate validator for Envoy's TLS handshake.
//!
//! Built as `libmazu_validator.so`, an `envoy.tls.cert_validator.dynamic_modules`
//! module (Envoy ≥ 1.40): Envoy calls it during every mTLS handshake with the
//! peer's certificate chain, the SNI and the direction, and the handshake
//! fails unless the peer's certificate carries a valid, registered Mazu
//! identity ([`mazu_identity::verdict()`]) and, outbound, the SPIFFE ID the
//! destination is served by. No application byte reaches a refused peer,
//! and none of its bytes reach the application.
//!
//! - [`config`]: the JSON configuration (the filter's `trust` object, the
//!   registry file, the destinations' expected identities);
//! - [`registry_file`]: the file the node agent writes from the witnessed log;
//! - [`source`]: the registry file, re-read when replaced, refused when the
//!   agent stopped verifying;
//! - `shared`: one source per file and one verdict cache per trust
//!   configuration for every TLS context of the process;
//! - [`validator`]: the decision for one handshake;
//! - [`signatures`]: token signatures checked with `ring`;
//! - `abi`: the C hooks Envoy calls.
//!
//! See `docs/validator.md`.

#[allow(unsafe_code)]
mod abi;
pub mod config;
pub mod registry_file;
mod shared;
pub mod signatures;
pub mod source;
pub mod validator;

pub use abi::VALIDATOR_NAME;
pub use config::{ConfigError, ValidatorConfig};
pub use registry_file::{RegistryFile, RegistryFileError};
pub use validator::{Refusal, Side, Validator};
