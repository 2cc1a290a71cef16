#![allow(clippy::unwrap_used, reason = "tests")]

use alloc::string::String;
use alloc::vec::Vec;

use mazu_log::CheckpointSigner;
use mazu_log::evidence::{encode_note, encode_proof, registry_extension};
use mazu_log::merkle::{MerkleTree, leaf_hash};

use super::*;

const ORIGIN: &str = "mazu-curator/test";

/// A log of `n` entries named `prefix0..`, and a signer.
fn log(prefix: &str, n: u64) -> MerkleTree {
    MerkleTree::from_leaves((0..n).map(|i| leaf_hash(format!("{prefix}{i}").as_bytes())))
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap()
}

/// The checkpoint header of `tree` at `size`, binding `digest`.
fn note(signer: &CheckpointSigner, tree: &MerkleTree, size: u64, digest: &Hash) -> String {
    let root = tree.root(size).unwrap();
    encode_note(&signer.sign_with_extensions(size, &root, alloc::vec![registry_extension(digest)]))
}

fn accepted(tree: &MerkleTree, size: u64) -> AcceptedCheckpoint {
    AcceptedCheckpoint {
        size,
        root: tree.root(size).unwrap(),
        registry: DIGEST,
    }
}

const DIGEST: Hash = [0x5a; 32];

#[test]
fn first_use_and_growth_are_accepted() {
    let s = signer();
    let v = s.verifier();
    let tree = log("e", 9);
    let cp = note(&s, &tree, 4, &DIGEST);
    let first = Evidence {
        checkpoint: Some(cp.as_bytes()),
        consistency: None,
    };
    assert_eq!(check(&v, None, &first, 4, &DIGEST), Ok(accepted(&tree, 4)));
    // The same checkpoint again (e.g. a full snapshot of the same version).
    assert_eq!(
        check(&v, Some(accepted(&tree, 4)), &first, 4, &DIGEST),
        Ok(accepted(&tree, 4))
    );
    // Growth with the consistency proof.
    let cp9 = note(&s, &tree, 9, &DIGEST);
    let proof = encode_proof(&tree.consistency_proof(4, 9).unwrap());
    let grown = Evidence {
        checkpoint: Some(cp9.as_bytes()),
        consistency: Some(proof.as_bytes()),
    };
    assert_eq!(
        check(&v, Some(accepted(&tree, 4)), &grown, 9, &DIGEST),
        Ok(accepted(&tree, 9))
    );
    // From the empty log, the proof is empty.
    let empty = encode_proof(&[]);
    let from_empty = Evidence {
        checkpoint: Some(cp9.as_bytes()),
        consistency: Some(empty.as_bytes()),
    };
    assert_eq!(
        check(&v, Some(accepted(&tree, 0)), &from_empty, 9, &DIGEST),
        Ok(accepted(&tree, 9))
    );
}

#[test]
fn a_missing_or_unsigned_checkpoint_is_refused() {
    let s = signer();
    let v = s.verifier();
    let tree = log("e", 3);
    assert_eq!(
        check(&v, None, &Evidence::default(), 3, &DIGEST),
        Err(CheckpointFailure::Missing)
    );
    let garbage = Evidence {
        checkpoint: Some(b"%%%"),
        consistency: None,
    };
    assert!(matches!(
        check(&v, None, &garbage, 3, &DIGEST),
        Err(CheckpointFailure::Undecodable(_))
    ));
    // Signed by another key of the same name.
    let other = CheckpointSigner::new(ORIGIN, &[8; 32]).unwrap();
    let forged = note(&other, &tree, 3, &DIGEST);
    let forged = Evidence {
        checkpoint: Some(forged.as_bytes()),
        consistency: None,
    };
    assert!(matches!(
        check(&v, None, &forged, 3, &DIGEST),
        Err(CheckpointFailure::Signature(_))
    ));
    // A signed note whose body was altered afterwards.
    let root = tree.root(3).unwrap();
    let signed = s.sign_with_extensions(3, &root, alloc::vec![registry_extension(&DIGEST)]);
    let altered = encode_note(&signed.replacen("\n3\n", "\n4\n", 1));
    let altered = Evidence {
        checkpoint: Some(altered.as_bytes()),
        consistency: None,
    };
    assert!(matches!(
        check(&v, None, &altered, 4, &DIGEST),
        Err(CheckpointFailure::Signature(_))
    ));
}

#[test]
fn a_checkpoint_for_another_registry_is_refused() {
    let s = signer();
    let v = s.verifier();
    let tree = log("e", 5);
    let cp = note(&s, &tree, 4, &DIGEST);
    let e = Evidence {
        checkpoint: Some(cp.as_bytes()),
        consistency: None,
    };
    // Another version than the checkpoint's size.
    assert_eq!(
        check(&v, None, &e, 5, &DIGEST),
        Err(CheckpointFailure::SizeMismatch {
            checkpoint: 4,
            registry: 5
        })
    );
    // Another registry content at that version.
    assert_eq!(
        check(&v, None, &e, 4, &[0x5b; 32]),
        Err(CheckpointFailure::RegistryMismatch { version: 4 })
    );
    // A checkpoint without the registry line.
    let bare = encode_note(&s.sign(4, &tree.root(4).unwrap()));
    let bare = Evidence {
        checkpoint: Some(bare.as_bytes()),
        consistency: None,
    };
    assert!(matches!(
        check(&v, None, &bare, 4, &DIGEST),
        Err(CheckpointFailure::NoRegistryBinding(_))
    ));
}

#[test]
fn rollbacks_forks_and_rewritten_logs_are_refused() {
    let s = signer();
    let v = s.verifier();
    let honest = log("e", 8);
    let held = Some(accepted(&honest, 6));

    // Rollback to an older size.
    let older = note(&s, &honest, 5, &DIGEST);
    let older = Evidence {
        checkpoint: Some(older.as_bytes()),
        consistency: None,
    };
    assert_eq!(
        check(&v, held, &older, 5, &DIGEST),
        Err(CheckpointFailure::Rollback {
            held: 6,
            offered: 5
        })
    );

    // A fork at the same size: entry 2 rewritten.
    let mut leaves: Vec<Hash> = (0..8).map(|i| honest.leaf(i).unwrap()).collect();
    leaves[2] = leaf_hash(b"forged");
    let forked = MerkleTree::from_leaves(leaves.iter().copied());
    let same_size = note(&s, &forked, 6, &DIGEST);
    let same_size = Evidence {
        checkpoint: Some(same_size.as_bytes()),
        consistency: None,
    };
    assert_eq!(
        check(&v, held, &same_size, 6, &DIGEST),
        Err(CheckpointFailure::Fork { size: 6 })
    );

    // The rewritten log grown past the held size: its own consistency proof
    // does not lead from the held root.
    let grown = note(&s, &forked, 8, &DIGEST);
    let proof = encode_proof(&forked.consistency_proof(6, 8).unwrap());
    let rewritten = Evidence {
        checkpoint: Some(grown.as_bytes()),
        consistency: Some(proof.as_bytes()),
    };
    assert!(matches!(
        check(&v, held, &rewritten, 8, &DIGEST),
        Err(CheckpointFailure::Inconsistent { from: 6, to: 8, .. })
    ));

    // Two entries swapped, or one dropped and another appended: same.
    for mutate in [
        |l: &mut Vec<Hash>| l.swap(1, 3),
        |l: &mut Vec<Hash>| {
            l.remove(0);
            l.push(leaf_hash(b"new"));
        },
    ] {
        let mut leaves: Vec<Hash> = (0..8).map(|i| honest.leaf(i).unwrap()).collect();
        mutate(&mut leaves);
        let other = MerkleTree::from_leaves(leaves.iter().copied());
        let cp = note(&s, &other, 8, &DIGEST);
        let proof = encode_proof(&other.consistency_proof(6, 8).unwrap());
        let e = Evidence {
            checkpoint: Some(cp.as_bytes()),
            consistency: Some(proof.as_bytes()),
        };
        assert!(matches!(
            check(&v, held, &e, 8, &DIGEST),
            Err(CheckpointFailure::Inconsistent { .. })
        ));
    }

    // Honest growth without its proof, or with a malformed one.
    let cp8 = note(&s, &honest, 8, &DIGEST);
    let no_proof = Evidence {
        checkpoint: Some(cp8.as_bytes()),
        consistency: None,
    };
    assert_eq!(
        check(&v, held, &no_proof, 8, &DIGEST),
        Err(CheckpointFailure::NoConsistencyProof { from: 6, to: 8 })
    );
    let bad_proof = Evidence {
        checkpoint: Some(cp8.as_bytes()),
        consistency: Some(b"AAAA"),
    };
    assert!(matches!(
        check(&v, held, &bad_proof, 8, &DIGEST),
        Err(CheckpointFailure::Undecodable(_))
    ));
    // ... and the honest proof passes.
    let proof = encode_proof(&honest.consistency_proof(6, 8).unwrap());
    let ok = Evidence {
        checkpoint: Some(cp8.as_bytes()),
        consistency: Some(proof.as_bytes()),
    };
    assert_eq!(check(&v, held, &ok, 8, &DIGEST), Ok(accepted(&honest, 8)));
}

#[test]
fn accepted_checkpoints_round_trip_through_shared_data() {
    let a = accepted(&log("e", 3), 3);
    assert_eq!(AcceptedCheckpoint::decode(&a.encode()), Some(a));
    assert_eq!(AcceptedCheckpoint::decode(&a.encode()[..71]), None);
    assert_eq!(AcceptedCheckpoint::decode(&[]), None);
}
