//! Mazu's node agent.
//!
//! The agent turns a workload's Kubernetes service-account token into a
//! registered Mazu identity and keeps Envoy supplied with a valid
//! certificate: it computes the workload id (SHA-256 of the token), reserves
//! a slot at the key curator, generates an RBE key pair with its helper
//! values and an ECDSA P-256 TLS key, proves possession, registers, and
//! builds the self-signed certificate carrying the token (identity crate).
//! It serves the certificate as files and over SDS v3, rotates it when the
//! kubelet rotates the token, keeps the RBE opening current and decrypts
//! messages encrypted to its id.
//!
//! Layout:
//! - [`agent`]: the `run` loop; [`token`]: reading and watching the token;
//! - [`curator`]: the curator's HTTP API; [`backoff`]: retry delays;
//! - [`state`]: the state directory; [`credentials`]: certificate and keys;
//! - outputs: [`files`] (`cert.pem`/`key.pem`) and [`sds`] (SDS v3);
//! - [`binding`]: keys and the binding request; [`follow`]: the witnessed
//!   log, who bound an id first;
//! - [`transparency`]: holding the curator to its signed checkpoints;
//! - [`openings`]: keeping the RBE opening current; [`crypt`]: `encrypt` and
//!   `decrypt`; [`commitment`]: the block commitment from the witnessed log;
//! - [`kube`]: reading Services, EndpointSlices and Pods from the API
//!   server; [`destinations`]: the validator's `destinations` derived from
//!   them (pure).
//!
//! Flags, files and behaviour are documented in `docs/agent.md`.

#![forbid(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod binding;
pub mod commitment;
pub mod credentials;
pub mod crypt;
pub mod curator;
pub mod destinations;
pub mod error;
pub mod files;
pub mod follow;
pub mod kube;
pub mod node;
pub mod openings;
pub mod registry_file;
pub mod sds;
pub mod state;
pub mod token;
pub mod transparency;

pub use agent::{Agent, AgentConfig};
pub use error::Error;
