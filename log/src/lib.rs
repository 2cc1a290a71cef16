//! Mazu's transparency-log primitives, shared by the key curator (which
//! serves them), the auditor (which checks them), the filter and the node
//! agent (which remember the last checkpoint they accepted).
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 Merkle tree hashing over 32-byte leaf
//!   hashes, inclusion and consistency proofs and their verification;
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies in C2SP `signed-note`s
//!   with Ed25519 signatures, and the verifier-key format;
//! - [`evidence`]: how registry answers carry a checkpoint and a consistency
//!   proof (HTTP headers), and the checkpoint line that binds the registry;
//! - [`record`]: the compact leaf records (bind, reveal, release, revoke) the
//!   tree commits to, from which every party derives the registry;
//! - [`frontier`]: the right edge of a tree, to follow a log leaf by leaf.
//!
//! Pure logic, `no_std` + `alloc`: no I/O, no clock, no RNG (the signer
//! takes its 32-byte secret from the caller). A separate crate rather than a
//! module of `mazu-identity` because it is not identity logic and carries its
//! own dependency (Ed25519), which the identity crate's users need not build.
//! Formats and the reasoning are in `docs/audit.md`.
//!
//! ```
//! use mazu_log::checkpoint::CheckpointSigner;
//! use mazu_log::merkle::{MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
//!
//! let mut tree = MerkleTree::new();
//! for entry in [&b"a"[..], b"b", b"c"] {
//!     tree.push(leaf_hash(entry));
//! }
//! let root = tree.root(3)?;
//! verify_inclusion(&leaf_hash(b"b"), 1, 3, &tree.inclusion_proof(1, 3)?, &root)?;
//! verify_consistency(2, 3, &tree.root(2)?, &root, &tree.consistency_proof(2, 3)?)?;
//!
//! let signer = CheckpointSigner::new("example.org/log", &[7; 32])?;
//! let note = signer.sign(3, &root);
//! let checkpoint = signer.verifier().verify(note.as_bytes())?;
//! assert_eq!((checkpoint.size, checkpoint.root), (3, root));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod checkpoint;
pub mod chunked;
pub mod cosignature;
pub mod evidence;
pub mod frontier;
pub mod merkle;
pub mod record;
pub mod witness_protocol;

pub use checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, NoteError};
pub use cosignature::{CosignatureError, CosignatureSigner, WitnessPolicy, WitnessVerifier};
pub use evidence::EvidenceError;
pub use frontier::Frontier;
pub use merkle::{Hash, MerkleTree, ProofError};
pub use record::{LeafRecord, RecordBody, RecordError, ReleaseReason};
