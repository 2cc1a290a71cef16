//! Membership and non-membership proofs against public parameters + CRS.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{id_for, register, rng};
use mazu_rbe::bls12_381_plus::{G1Projective, G2Affine, Scalar, pairing};
use mazu_rbe::{
    Crs, G1Affine, MembershipProof, NonMembershipProof, Opening, ProofError, ProofOfKnowledge,
    RegistryState, keygen,
};

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

    // Wrong key: another registered user's key in this slot (the proof of
    // knowledge is for slot 2's key).
    let wrong_key = MembershipProof {
        public_key: p4.public_key,
        ..p2
    };
    assert_eq!(
        wrong_key.verify(crs, &pp),
        Err(ProofError::InvalidProofOfKnowledge)
    );
    // Slot 4's key with its own id and proof of knowledge, in slot 2: the
    // proof is bound to slot 4.
    let borrowed = MembershipProof {
        opening: p2.opening,
        ..p4
    };
    assert_eq!(
        borrowed.verify(crs, &pp),
        Err(ProofError::InvalidProofOfKnowledge)
    );
    // A multiple of the right key.
    let scaled = MembershipProof {
        public_key: G1Affine::from(G1Projective::from(p2.public_key).double()),
        ..p2
    };
    assert_eq!(
        scaled.verify(crs, &pp),
        Err(ProofError::InvalidProofOfKnowledge)
    );

    // Wrong slot: claim slot 2's key and opening for slot 3 (same block) and
    // for slot 4 (registered to someone else): the proof of knowledge is
    // bound to slot 2.
    for slot in [3, 4, 1] {
        let moved = MembershipProof {
            opening: Opening { slot, ..p2.opening },
            ..p2
        };
        assert_eq!(
            moved.verify(crs, &pp),
            Err(ProofError::InvalidProofOfKnowledge),
            "slot {slot}"
        );
    }
    // Another id in a genuine proof: the proof of knowledge is bound to it.
    let other_id = MembershipProof {
        id: id_for(3),
        ..p2
    };
    assert_eq!(
        other_id.verify(crs, &pp),
        Err(ProofError::InvalidProofOfKnowledge)
    );
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

/// Forgery (a) of the review, exactly: a free slot claimed as a member with
/// the block commitment as the key and the identity as the opening
/// (`e(C_k - C_k, .) = 1 = e(0, G2)`). Accepted before membership proofs
/// carried a proof of knowledge; now refused for every free slot of every
/// touched block, whatever id and proof of knowledge the forger attaches.
#[test]
fn forgery_free_slot_with_commitment_as_key_is_refused() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    let genuine = state.membership_proof(2).unwrap();
    let made_up = ProofOfKnowledge {
        commitment: G1Affine::generator(),
        response: Scalar::ONE,
    };
    for slot in [1, 3, 5, 7, 13, 14] {
        let commitment = *pp.commitment_for_slot(slot).unwrap();
        assert!(!bool::from(commitment.is_identity()), "slot {slot}");
        let opening = Opening {
            slot,
            commitment,
            value: G1Affine::identity(),
        };
        for (id, proof_of_knowledge) in [
            (genuine.id, genuine.proof_of_knowledge),
            (id_for(slot), genuine.proof_of_knowledge),
            (id_for(slot), made_up),
        ] {
            let forged = MembershipProof {
                id,
                public_key: commitment,
                proof_of_knowledge,
                opening,
            };
            assert_eq!(
                forged.verify(crs, &pp),
                Err(ProofError::InvalidProofOfKnowledge),
                "slot {slot}"
            );
            assert_eq!(
                forged.verify_for_commitment(crs),
                Err(ProofError::InvalidProofOfKnowledge)
            );
        }
    }
    // The same trick on a taken slot, and on a block with a single member
    // (where the commitment *is* the member's key: that is the genuine
    // proof, and only with the member's own proof of knowledge).
    let c0 = pp.commitments()[0];
    let taken = MembershipProof {
        public_key: c0,
        opening: Opening {
            slot: 2,
            commitment: c0,
            value: G1Affine::identity(),
        },
        ..genuine
    };
    assert_eq!(
        taken.verify(crs, &pp),
        Err(ProofError::InvalidProofOfKnowledge)
    );
    let alone = state.membership_proof(12).unwrap(); // block 2 holds only slot 12
    assert_eq!(alone.public_key, pp.commitments()[2]);
    alone.verify(crs, &pp).unwrap();
}

/// Forgery (b) of the review, exactly: for a member `(pk, u)` at position
/// `i`, `(pk + b G1, u - b h_(n+1-i))` satisfies the pairing equation for
/// every `b` (checked here with raw pairings) but is refused now: the key's
/// proof of knowledge does not carry over.
#[test]
fn forgery_key_substitution_is_refused() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    let n = crs.block_size();
    for slot in [0, 2, 4, 6, 12] {
        let genuine = state.membership_proof(slot).unwrap();
        let i = slot % n + 1;
        let h = G1Projective::from(crs.h(n + 1 - i).unwrap());
        let hh = *crs.hh(n + 1 - i).unwrap();
        for b in [1u64, 2, 12345, u64::MAX] {
            let b = Scalar::from(b);
            let public_key = G1Affine::from(
                G1Projective::from(genuine.public_key) + G1Projective::GENERATOR * b,
            );
            let value = G1Affine::from(G1Projective::from(genuine.opening.value) - h * b);
            // The pairing equation alone holds for the substituted key.
            let lhs = G1Affine::from(G1Projective::from(genuine.opening.commitment) - public_key);
            assert_eq!(pairing(&lhs, &hh), pairing(&value, &G2Affine::generator()));
            let forged = MembershipProof {
                public_key,
                opening: Opening {
                    value,
                    ..genuine.opening
                },
                ..genuine
            };
            assert_eq!(
                forged.verify(crs, &pp),
                Err(ProofError::InvalidProofOfKnowledge),
                "slot {slot}"
            );
            assert_eq!(
                forged.verify_for_commitment(crs),
                Err(ProofError::InvalidProofOfKnowledge)
            );
        }
    }
}

/// A key that was never registered, with a perfectly valid proof of
/// knowledge for the free slot, still fails: the pairing equation needs a
/// multiple of the punctured power.
#[test]
fn unregistered_key_with_valid_proof_of_knowledge_is_refused() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    let (_, reg) = keygen(crs, 1, id_for(1), &mut rng(300)).unwrap();
    reg.verify_well_formed(crs).unwrap();
    let forged = MembershipProof::from_registration(&reg, state.opening(1).unwrap());
    assert_eq!(forged.verify(crs, &pp), Err(ProofError::Invalid));
}

#[test]
fn verify_id_checks_the_id() {
    let state = populated();
    let pp = state.public_params();
    let crs = state.crs();
    let p2 = state.membership_proof(2).unwrap();
    assert_eq!(p2.id, id_for(2));
    p2.verify_id(crs, &pp, &id_for(2)).unwrap();
    assert_eq!(
        p2.verify_id(crs, &pp, &id_for(4)),
        Err(ProofError::IdMismatch)
    );
    let relabelled = MembershipProof {
        id: id_for(4),
        ..p2
    };
    assert_eq!(
        relabelled.verify_id(crs, &pp, &id_for(4)),
        Err(ProofError::InvalidProofOfKnowledge)
    );
}

/// Genuine proofs keep verifying as the block fills up: the curator's proofs
/// at every version, and the proofs members build themselves from their
/// registration and a self-maintained opening (which equal the curator's).
#[test]
fn genuine_proofs_verify_across_later_registrations_in_the_block() {
    let crs: Crs = common::crs(25); // n = 5: block 0 is slots 0..5
    let mut state = RegistryState::new(crs.clone());
    let mut r = rng(500);
    register(&mut state, 12, &mut r); // another block
    let mut members: Vec<(mazu_rbe::Registration, Opening)> = Vec::new();
    let mut previous: Vec<(MembershipProof, mazu_rbe::PublicParams)> = Vec::new();
    for slot in [3, 0, 4, 1, 2] {
        let (_, reg) = register(&mut state, slot, &mut r);
        for (member, opening) in &mut members {
            opening.update(&crs, &reg).unwrap();
            assert_eq!(*opening, state.opening(member.slot).unwrap());
        }
        members.push((reg.clone(), state.opening(slot).unwrap()));
        let pp = state.public_params();
        for (member, opening) in &members {
            let served = state.membership_proof(member.slot).unwrap();
            served.verify(&crs, &pp).unwrap();
            served.verify_id(&crs, &pp, &member.id).unwrap();
            let own = MembershipProof::from_registration(member, *opening);
            assert_eq!(own, served);
            // Through both encodings.
            MembershipProof::from_bytes(&own.to_bytes())
                .unwrap()
                .verify(&crs, &pp)
                .unwrap();
            let json: MembershipProof =
                serde_json::from_str(&serde_json::to_string(&own).unwrap()).unwrap();
            json.verify(&crs, &pp).unwrap();
        }
        state
            .membership_proof(12)
            .unwrap()
            .verify(&crs, &pp)
            .unwrap();
        // Proofs of the previous versions: stale against the new parameters,
        // still valid against their own.
        for (old, old_pp) in &previous {
            assert_eq!(old.verify(&crs, &pp), Err(ProofError::StaleCommitment));
            old.verify(&crs, old_pp).unwrap();
        }
        previous = members
            .iter()
            .map(|(m, _)| (state.membership_proof(m.slot).unwrap(), pp.clone()))
            .collect();
    }
}
