//! Registration-based encryption (RBE) on BLS12-381.
//!
//! This crate implements the pairing-based RBE of Glaeser, Kolonelos, Malavolta and
//! Rahimi (CCS 2023, ePrint 2022/1505) as Mazu's unprivileged *key curator* needs it:
//!
//! * [`Crs`]: the punctured powers of a secret `z` (no element for `z^(n+1)` ever
//!   exists), its canonical encoding, digest and a pairing-based [`Crs::verify`].
//! * [`keygen`]: a key pair for a slot, the helper values and a Schnorr proof of
//!   knowledge, packaged as a public [`Registration`].
//! * [`RegistryState`]: the curator's state (block commitments, openings, id and key
//!   maps), a pure function of the ordered registrations and releases
//!   ([`RegistryState::replay`], [`RegistryState::replay_operations`]). A
//!   release ([`RegistryState::release`]) frees its slot for reuse.
//! * [`Opening`] / [`OpeningHistory`]: what a user holds to decrypt and to prove
//!   membership, updatable from later registrations and releases in its block.
//! * [`MembershipProof`] / [`NonMembershipProof`]: checkable against
//!   [`PublicParams`] and the CRS alone.
//! * [`encrypt`] / [`decrypt`]: a KEM over `Gt` plus ChaCha20-Poly1305.
//!
//! Every public type has one canonical, versioned binary encoding ([`Canonical`])
//! and a JSON form (serde, points as standard padded base64 of their compressed
//! encoding). See `docs/rbe.md` in the repository for formats and security notes.
//!
//! The crate is `no_std` + `alloc` so that the Envoy Wasm filter can use it.
//!
//! ```
//! use mazu_rbe::{Crs, RegistryState, keygen, encrypt, decrypt};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! // Development only: a single party knows the toxic waste of this CRS.
//! let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
//! crs.verify().unwrap();
//!
//! let mut state = RegistryState::new(crs.clone());
//! let (sk, reg) = keygen(&crs, 5, [1u8; 32], &mut rng).unwrap();
//! state.verify_and_apply(reg).unwrap();
//!
//! let pp = state.public_params();
//! let ct = encrypt(&crs, &pp, 5, b"hello", b"aad", &mut rng).unwrap();
//! let opening = state.opening(5).unwrap();
//! assert_eq!(decrypt(&crs, &sk, &opening, &ct, b"aad").unwrap(), b"hello");
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod ceremony;
mod crs;
mod encoding;
mod encrypt;
mod error;
mod g1_decode;
mod gt;
mod json;
mod keys;
mod msm;
mod opening;
mod params;
mod pok;
mod proof;
mod public_params;
mod registration;
mod release;
mod snapshot;
mod state;
mod transcript;

pub use bls12_381_plus;
pub use bls12_381_plus::{G1Affine, G2Affine, Gt, Scalar};

pub use ceremony::CeremonyError;
pub use crs::Crs;
pub use encoding::{Canonical, FORMAT_VERSION};
pub use encrypt::{Ciphertext, decrypt, encrypt, encrypt_to_commitment};
pub use error::{
    CrsError, DecodeError, DecryptError, EncryptError, Error, Group, KeyGenError, OpeningError,
    OperationError, OperationsReplayError, ProofError, RegistrationError, ReleaseError,
    ReplayError, SnapshotError,
};
pub use keys::{SecretKey, keygen};
pub use opening::{Opening, OpeningHistory};
pub use params::{Dimensions, MAX_CAPACITY, MIN_CAPACITY, SlotPosition};
pub use pok::ProofOfKnowledge;
pub use proof::{MembershipProof, NonMembershipProof};
pub use public_params::PublicParams;
pub use registration::{Registration, WellFormedRegistration};
pub use release::{RegistryOp, VerifiedRelease};
pub use snapshot::SnapshotRestore;
pub use state::{RegistryState, VerifiedRegistration};

/// A 32-byte workload identifier (in Mazu: `SHA-256(token)`).
pub type WorkloadId = [u8; 32];
