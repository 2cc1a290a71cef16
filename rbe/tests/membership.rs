//! Membership and non-membership proofs against public parameters + CRS.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{register, rng};
use mazu_rbe::bls12_381_plus::G1Projective;
use mazu_rbe::{G1Affine, MembershipProof, NonMembershipProof, Opening, ProofError, RegistryState};

fn populated() -> RegistryState {
    let mut state = RegistryState::new(common::crs(25)); // n = 5
    let mut r = rng(200);
    for slot in [0, 2, 4, 6, 12] {
        register(&mut state, slot, &mut r);
    }
    state
}

#[test]
fn membership_verifies_for_every_registered_slot() {
    let state = populated();
    let pp = state.public_params();
    for slot in [0, 2, 4, 6, 12] {
        let proof = state.membership_proof(slot).unwrap();
        proof.verify(state.crs(), &pp).unwrap();
        // After a round trip through both encodings.
        let back = MembershipProof::from_bytes(&proof.to_bytes()).unwrap();
        back.verify(state.crs(), &pp).unwrap();
        let json: MembershipProof =
            serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
        assert_eq!(json, proof);
    }
    assert!(state.membership_proof(1).is_none());
}

#[test]
fn membership_fails_for_wrong_key_slot_or_opening() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    let p2 = state.membership_proof(2).unwrap();
    let p4 = state.membership_proof(4).unwrap();

    // Wrong key: another registered user's key in this slot.
    let wrong_key = MembershipProof {
        public_key: p4.public_key,
        ..p2
    };
    assert_eq!(wrong_key.verify(crs, &pp), Err(ProofError::Invalid));
    // A multiple of the right key.
    let scaled = MembershipProof {
        public_key: G1Affine::from(G1Projective::from(p2.public_key).double()),
        ..p2
    };
    assert_eq!(scaled.verify(crs, &pp), Err(ProofError::Invalid));

    // Wrong slot: claim slot 2's key and opening for slot 3 (same block) and
    // for slot 4 (registered to someone else).
    for slot in [3, 4, 1] {
        let moved = MembershipProof {
            opening: Opening { slot, ..p2.opening },
            ..p2
        };
        assert_eq!(
            moved.verify(crs, &pp),
            Err(ProofError::Invalid),
            "slot {slot}"
        );
    }
    // Wrong opening: another position's opening value.
    let wrong_opening = MembershipProof {
        opening: Opening {
            value: p4.opening.value,
            ..p2.opening
        },
        ..p2
    };
    assert_eq!(wrong_opening.verify(crs, &pp), Err(ProofError::Invalid));

    // Identity key is refused outright (that would be non-membership).
    let identity = MembershipProof {
        public_key: G1Affine::identity(),
        ..p2
    };
    assert_eq!(
        identity.verify(crs, &pp),
        Err(ProofError::IdentityPublicKey)
    );
    // Out of range.
    let far = MembershipProof {
        opening: Opening {
            slot: 25,
            ..p2.opening
        },
        ..p2
    };
    assert!(matches!(
        far.verify(crs, &pp),
        Err(ProofError::SlotOutOfRange { .. })
    ));
    // Parameters of another CRS.
    let other = RegistryState::new(common::crs(24)).public_params();
    assert_eq!(p2.verify(crs, &other), Err(ProofError::ParamsMismatch));
}

#[test]
fn membership_is_tied_to_the_published_commitment() {
    let mut state = populated();
    let old = state.membership_proof(2).unwrap();
    let old_pp = state.public_params();
    let (_, reg3) = register(&mut state, 3, &mut rng(201));
    let pp = state.public_params();
    // The old proof is for an older commitment of block 0.
    assert_eq!(
        old.verify(state.crs(), &pp),
        Err(ProofError::StaleCommitment)
    );
    old.verify(state.crs(), &old_pp).unwrap();
    old.verify_for_commitment(state.crs()).unwrap();
    // The user updates its own opening from the new public registration and
    // gets exactly what the curator serves; the proof is current again.
    let mut opening = old.opening;
    opening.update(state.crs(), &reg3).unwrap();
    assert_eq!(opening, state.opening(2).unwrap());
    let updated = MembershipProof { opening, ..old };
    updated.verify(state.crs(), &pp).unwrap();
    // Registrations that do not concern this opening are refused, typed.
    let (_, reg8) = register(&mut state, 8, &mut rng(202));
    assert_eq!(
        opening.update(state.crs(), &reg8),
        Err(mazu_rbe::OpeningError::OtherBlock(8))
    );
    let mut op3 = state.opening(3).unwrap();
    assert_eq!(
        op3.update(state.crs(), &reg3),
        Err(mazu_rbe::OpeningError::OwnSlot)
    );
    // OpeningHistory refuses applying the same registration twice.
    let mut history = mazu_rbe::OpeningHistory::new(old.opening);
    history.update(state.crs(), &reg3).unwrap();
    assert_eq!(
        history.update(state.crs(), &reg3),
        Err(mazu_rbe::OpeningError::AlreadyApplied(3))
    );
}

#[test]
fn non_membership_for_free_slots_and_not_for_taken_ones() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    // Free slots in touched blocks (0, 1, 2) and in untouched blocks (3, 4).
    for slot in [1, 3, 5, 7, 13, 15, 24] {
        let proof = state.non_membership_proof(slot).unwrap();
        proof
            .verify(crs, &pp)
            .unwrap_or_else(|e| panic!("slot {slot}: {e}"));
        let back = NonMembershipProof::from_bytes(&proof.to_bytes()).unwrap();
        assert_eq!(back, proof);
        let json: NonMembershipProof =
            serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
        assert_eq!(json, proof);
    }
    // Taken slots: the state refuses, and a forged proof from the served
    // opening does not verify.
    for slot in [0, 2, 4, 6, 12] {
        assert!(state.non_membership_proof(slot).is_none());
        let forged = NonMembershipProof {
            opening: state.opening(slot).unwrap(),
        };
        assert_eq!(
            forged.verify(crs, &pp),
            Err(ProofError::Invalid),
            "slot {slot}"
        );
    }
    // A free slot's proof moved to a taken slot fails too.
    let p1 = state.non_membership_proof(1).unwrap();
    let moved = NonMembershipProof {
        opening: Opening {
            slot: 0,
            ..p1.opening
        },
    };
    assert_eq!(moved.verify(crs, &pp), Err(ProofError::Invalid));
}
