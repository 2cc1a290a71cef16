//! Releasing a slot: the state, the members' openings and the released
//! member's access after a release and a reuse of the slot.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{id_for, register, rng};
use mazu_rbe::{
    Crs, DecodeError, DecryptError, MembershipProof, Opening, OpeningError, OpeningHistory,
    OperationError, ProofError, Registration, RegistryOp, RegistryState, ReleaseError, SecretKey,
    decrypt, encrypt, keygen,
};
use rand::Rng;
use rand_chacha::ChaCha20Rng;

/// Commitments, every opening, key, membership and non-membership proof,
/// and the free/taken status of every slot: everything but the version and
/// the log digest, which count operations.
fn assert_same_registry(a: &RegistryState, b: &RegistryState) {
    assert_eq!(
        a.public_params().commitments(),
        b.public_params().commitments()
    );
    let capacity = a.crs().capacity();
    for slot in 0..capacity {
        assert_eq!(a.opening(slot), b.opening(slot), "opening of {slot}");
        assert_eq!(
            a.opening(slot).map(|o| o.to_bytes()),
            b.opening(slot).map(|o| o.to_bytes())
        );
        assert_eq!(a.public_key(slot), b.public_key(slot), "key of {slot}");
        assert_eq!(a.is_free(slot), b.is_free(slot), "slot {slot}");
        assert_eq!(a.membership_proof(slot), b.membership_proof(slot));
        assert_eq!(a.non_membership_proof(slot), b.non_membership_proof(slot));
    }
    assert_eq!(a.live_registrations(), b.live_registrations());
    assert_eq!(a.touched_blocks(), b.touched_blocks());
    assert_eq!(a.first_free_slot(), b.first_free_slot());
}

/// Generate a registration without applying it.
fn fresh(crs: &Crs, slot: u32, id: [u8; 32], r: &mut ChaCha20Rng) -> (SecretKey, Registration) {
    keygen(crs, slot, id, r).unwrap()
}

#[test]
fn release_gives_the_registry_where_it_was_never_applied() {
    let crs = common::crs(16); // n = 4: slots 0..4 are block 0
    let mut r = rng(500);
    let (_, a) = fresh(&crs, 0, id_for(0), &mut r);
    let (_, b) = fresh(&crs, 1, id_for(1), &mut r);
    let (_, c) = fresh(&crs, 2, id_for(2), &mut r);
    let (_, x) = fresh(&crs, 9, id_for(9), &mut r);

    let mut state = RegistryState::new(crs.clone());
    for reg in [&a, &b, &c, &x] {
        state.verify_and_apply(reg.clone()).unwrap();
    }
    let before = state.public_params();
    state.release(&b).unwrap();

    // Never applied, in two orders: the same registry.
    let only_ac = RegistryState::replay(crs.clone(), [a.clone(), c.clone(), x.clone()]).unwrap();
    let other_order = RegistryState::replay(crs.clone(), [x, c, a]).unwrap();
    assert_same_registry(&state, &only_ac);
    assert_same_registry(&state, &other_order);
    assert_ne!(before.commitments(), state.public_params().commitments());

    // The slot is free again and its id unbound; the version counts the
    // release.
    assert!(state.is_free(1));
    assert_eq!(state.first_free_slot(), Some(1));
    assert_eq!(state.slot_of(&id_for(1)), None);
    assert_eq!(state.public_key(1), None);
    assert!(state.membership_proof(1).is_none());
    let pp = state.public_params();
    state
        .non_membership_proof(1)
        .unwrap()
        .verify(&crs, &pp)
        .unwrap();
    assert_eq!(state.version(), 5);
    assert_eq!(pp.version(), 5);
    assert_eq!(state.live_registrations(), 3);
}

#[test]
fn releasing_a_whole_block_gives_an_untouched_block() {
    let crs = common::crs(16);
    let mut r = rng(501);
    let mut state = RegistryState::new(crs.clone());
    let (_, a) = register(&mut state, 4, &mut r);
    let (_, b) = register(&mut state, 6, &mut r);
    state.release(&a).unwrap();
    state.release(&b).unwrap();
    assert_same_registry(&state, &RegistryState::new(crs.clone()));
    assert_eq!(state.touched_blocks(), 0);
    assert_eq!(
        state.public_params().commitment(1),
        Some(&mazu_rbe::G1Affine::identity())
    );
    // Encryption to an empty block is refused again.
    assert!(encrypt(&crs, &state.public_params(), 5, b"m", b"", &mut r).is_err());
}

/// a and c follow b's release and d's reuse of b's slot with their openings,
/// keep decrypting and proving; d decrypts and proves.
#[test]
fn members_follow_a_release_and_a_reuse() {
    let crs = common::crs(16);
    let mut r = rng(502);
    let mut state = RegistryState::new(crs.clone());
    let (sk_a, a) = register(&mut state, 0, &mut r);
    let mut hist_a = OpeningHistory::new(state.opening(0).unwrap());
    let (_, b) = register(&mut state, 1, &mut r);
    hist_a.update(&crs, &b).unwrap();
    let (sk_c, c) = register(&mut state, 2, &mut r);
    hist_a.update(&crs, &c).unwrap();
    let mut open_c = state.opening(2).unwrap();

    let pp = state.public_params();
    let old_ct_a = encrypt(&crs, &pp, 0, b"to a before", b"", &mut r).unwrap();
    let old_ct_c = encrypt(&crs, &pp, 2, b"to c before", b"", &mut r).unwrap();

    // b leaves.
    state.release(&b).unwrap();
    hist_a.release(&crs, &b).unwrap();
    open_c.release(&crs, &b).unwrap();
    assert_eq!(hist_a.latest(), &state.opening(0).unwrap());
    assert_eq!(open_c, state.opening(2).unwrap());
    let pp = state.public_params();
    for (reg, opening) in [(&a, *hist_a.latest()), (&c, open_c)] {
        MembershipProof::from_registration(reg, opening)
            .verify_id(&crs, &pp, &reg.id)
            .unwrap();
    }
    let ct_a = encrypt(&crs, &pp, 0, b"to a after", b"", &mut r).unwrap();
    let ct_c = encrypt(&crs, &pp, 2, b"to c after", b"", &mut r).unwrap();
    assert_eq!(
        decrypt(&crs, &sk_a, hist_a.latest(), &ct_a, b"").unwrap(),
        b"to a after"
    );
    assert_eq!(
        decrypt(&crs, &sk_c, &open_c, &ct_c, b"").unwrap(),
        b"to c after"
    );
    // Ciphertexts from before the release: a still has that opening.
    let older = hist_a.opening_for(old_ct_a.commitment()).unwrap();
    assert_eq!(
        decrypt(&crs, &sk_a, older, &old_ct_a, b"").unwrap(),
        b"to a before"
    );
    // c kept only its latest opening: the old one is gone for c.
    assert_eq!(
        decrypt(&crs, &sk_c, &open_c, &old_ct_c, b""),
        Err(DecryptError::StaleOpening)
    );

    // d takes b's slot.
    let (sk_d, d) = fresh(&crs, 1, [0xD0; 32], &mut r);
    let d = state.verify_and_apply(d).unwrap();
    hist_a.update(&crs, &d).unwrap();
    open_c.update(&crs, &d).unwrap();
    let open_d = state.opening(1).unwrap();
    assert_eq!(hist_a.latest(), &state.opening(0).unwrap());
    assert_eq!(open_c, state.opening(2).unwrap());
    let pp = state.public_params();
    for (reg, opening) in [(&a, *hist_a.latest()), (&c, open_c), (&d, open_d)] {
        MembershipProof::from_registration(reg, opening)
            .verify_id(&crs, &pp, &reg.id)
            .unwrap();
    }
    state
        .membership_proof(1)
        .unwrap()
        .verify_id(&crs, &pp, &[0xD0; 32])
        .unwrap();
    for (slot, sk, opening) in [
        (0, &sk_a, *hist_a.latest()),
        (1, &sk_d, open_d),
        (2, &sk_c, open_c),
    ] {
        let ct = encrypt(&crs, &pp, slot, b"after reuse", b"aad", &mut r).unwrap();
        assert_eq!(
            decrypt(&crs, sk, &opening, &ct, b"aad").unwrap(),
            b"after reuse"
        );
    }
    // a's history holds every version: before b, with b, without b, with d.
    assert_eq!(hist_a.openings().len(), 5);
}

/// What the released member b can no longer do, and what it still can.
#[test]
fn a_released_member_loses_the_slot() {
    let crs = common::crs(16);
    let mut r = rng(503);
    let mut state = RegistryState::new(crs.clone());
    register(&mut state, 0, &mut r);
    let (sk_b, b) = register(&mut state, 1, &mut r);
    register(&mut state, 2, &mut r);
    let old_opening_b = state.opening(1).unwrap();
    let old_proof_b = state.membership_proof(1).unwrap();
    let ct_before = encrypt(&crs, &state.public_params(), 1, b"to b", b"", &mut r).unwrap();

    state.release(&b).unwrap();
    let pp = state.public_params();
    assert!(state.membership_proof(1).is_none());
    // The old proof is for the old commitment.
    assert_eq!(
        old_proof_b.verify(&crs, &pp),
        Err(ProofError::StaleCommitment)
    );
    // Moved to the new commitment (with its old value, or with the free
    // slot's current opening) it does not verify: pk_b is not in C_k.
    let current = state.opening(1).unwrap();
    // The slot's opening value is the sum of the others' helpers: b's old
    // value is the free slot's, only the commitment moved. With the new
    // commitment it is a non-membership proof, not a membership one.
    assert_eq!(current.value, old_opening_b.value);
    for value in [old_opening_b.value, current.value] {
        let moved = MembershipProof {
            opening: Opening { value, ..current },
            ..old_proof_b
        };
        assert_eq!(moved.verify(&crs, &pp), Err(ProofError::Invalid));
    }
    // Its opening cannot be released away from itself.
    let mut own = old_opening_b;
    assert_eq!(own.release(&crs, &b), Err(OpeningError::OwnSlot));

    // A ciphertext to b's slot after the release: b cannot decrypt it, with
    // its old opening or any opening for the new commitment.
    let ct_free = encrypt(&crs, &pp, 1, b"to slot 1", b"", &mut r).unwrap();
    assert_eq!(
        decrypt(&crs, &sk_b, &old_opening_b, &ct_free, b""),
        Err(DecryptError::StaleOpening)
    );
    for value in [old_opening_b.value, current.value] {
        let forged = Opening { value, ..current };
        assert_eq!(
            decrypt(&crs, &sk_b, &forged, &ct_free, b""),
            Err(DecryptError::Authentication)
        );
    }

    // d reuses the slot: d decrypts, b still cannot.
    let (sk_d, d) = fresh(&crs, 1, [0xD0; 32], &mut r);
    state.verify_and_apply(d).unwrap();
    let pp = state.public_params();
    let open_d = state.opening(1).unwrap();
    let ct_d = encrypt(&crs, &pp, 1, b"to d", b"", &mut r).unwrap();
    assert_eq!(decrypt(&crs, &sk_d, &open_d, &ct_d, b"").unwrap(), b"to d");
    for opening in [
        open_d,
        Opening {
            value: old_opening_b.value,
            ..open_d
        },
    ] {
        assert_eq!(
            decrypt(&crs, &sk_b, &opening, &ct_d, b""),
            Err(DecryptError::Authentication)
        );
    }
    // Nor can d open what was sent while the slot was free.
    assert_eq!(
        decrypt(
            &crs,
            &sk_d,
            &Opening {
                commitment: *ct_free.commitment(),
                ..open_d
            },
            &ct_free,
            b""
        ),
        Err(DecryptError::Authentication)
    );

    // Not guaranteed, and stated in docs/rbe.md: a ciphertext made to b
    // before the release stays decryptable by b with the opening of its time.
    assert_eq!(
        decrypt(&crs, &sk_b, &old_opening_b, &ct_before, b"").unwrap(),
        b"to b"
    );
}

/// Each wrong release is refused by name and changes nothing.
#[test]
fn wrong_releases_are_refused_and_change_nothing() {
    let crs = common::crs(16);
    let mut r = rng(504);
    let mut state = RegistryState::new(crs.clone());
    let (_, a) = register(&mut state, 0, &mut r);
    let (_, b) = register(&mut state, 1, &mut r);
    let (_, c) = register(&mut state, 2, &mut r);
    let (_, other_key) = fresh(&crs, 1, b.id, &mut r); // same slot and id, another key
    let (_, never) = fresh(&crs, 3, id_for(3), &mut r);

    let mut other_id = b.clone();
    other_id.id = id_for(7);
    let mut other_proof = b.clone();
    other_proof.proof = other_key.proof;
    let mut other_helpers = b.clone();
    other_helpers.helpers.swap(0, 1);
    let mut wrong_slot_free = b.clone();
    wrong_slot_free.slot = 3;
    let mut wrong_slot_taken = b.clone();
    wrong_slot_taken.slot = 2;
    let mut out_of_range = b.clone();
    out_of_range.slot = 16;

    let cases: Vec<(&Registration, ReleaseError)> = vec![
        (&other_id, ReleaseError::IdMismatch(1)),
        (&other_key, ReleaseError::KeyMismatch(1)),
        (&other_proof, ReleaseError::ProofMismatch(1)),
        (&other_helpers, ReleaseError::RegistrationMismatch(1)),
        (&never, ReleaseError::SlotFree(3)),
        (&wrong_slot_free, ReleaseError::SlotFree(3)),
        (&wrong_slot_taken, ReleaseError::IdMismatch(2)),
        (
            &out_of_range,
            ReleaseError::SlotOutOfRange {
                slot: 16,
                capacity: 16,
            },
        ),
    ];
    let check = |state: &mut RegistryState, cases: &[(&Registration, ReleaseError)]| {
        let pp = state.public_params().to_bytes();
        let digest = state.log_digest();
        let image = state.to_snapshot_bytes();
        for (reg, expected) in cases {
            assert_eq!(state.release(reg).as_ref(), Err(expected));
            assert_eq!(state.public_params().to_bytes(), pp);
            assert_eq!(state.log_digest(), digest);
            assert_eq!(state.to_snapshot_bytes(), image);
        }
    };
    check(&mut state, &cases);

    // Already released.
    state.release(&b).unwrap();
    check(&mut state, &[(&b, ReleaseError::SlotFree(1))]);

    // A verified release is bound to its state: stale after any operation,
    // and spent after its own.
    let verified = state.verify_release(&c).unwrap();
    let early = state.verify_release(&a).unwrap();
    state.apply_release(&verified).unwrap();
    check(&mut state, &[(&c, ReleaseError::SlotFree(2))]);
    let pp = state.public_params().to_bytes();
    assert_eq!(
        state.apply_release(&verified),
        Err(ReleaseError::StaleVerification)
    );
    assert_eq!(
        state.apply_release(&early),
        Err(ReleaseError::StaleVerification)
    );
    assert_eq!(state.public_params().to_bytes(), pp);
    // Fresh, it applies.
    state.release(&a).unwrap();
    assert_eq!(state.live_registrations(), 0);
}

/// A released registration (same bytes, same id) may register again in
/// this crate; the log's rules above it decide whether an id is ever bound
/// twice. Registration and release steps of the same bytes differ.
#[test]
fn the_same_registration_can_return_and_the_digest_tells_the_steps_apart() {
    let crs = common::crs(16);
    let mut r = rng(505);
    let mut state = RegistryState::new(crs.clone());
    let (_, a) = register(&mut state, 0, &mut r);
    let (_, b) = register(&mut state, 1, &mut r);
    let with_b = state.clone();
    state.release(&b).unwrap();
    let without_b = state.clone();
    state.verify_and_apply(b.clone()).unwrap();
    assert_same_registry(&state, &with_b);
    assert_eq!(state.version(), 4);
    // Four distinct digests for four distinct operation sequences, though
    // two pairs of them give the same registry.
    let only_a = RegistryState::replay(crs.clone(), [a]).unwrap();
    let digests = [
        only_a.log_digest(),
        with_b.log_digest(),
        without_b.log_digest(),
        state.log_digest(),
    ];
    for i in 0..digests.len() {
        for j in 0..i {
            assert_ne!(digests[i], digests[j], "{i} vs {j}");
        }
    }
    assert_same_registry(&only_a, &without_b);
}

#[test]
fn replaying_operations_is_deterministic() {
    let crs = common::crs(25); // n = 5
    let mut r = rng(506);
    let regs: Vec<Registration> = [0u32, 1, 2, 6, 12, 1]
        .iter()
        .enumerate()
        .map(|(k, slot)| fresh(&crs, *slot, id_for(100 + k as u32), &mut r).1)
        .collect();
    let ops = [
        RegistryOp::Register(&regs[0]),
        RegistryOp::Register(&regs[1]),
        RegistryOp::Register(&regs[2]),
        RegistryOp::Register(&regs[3]),
        RegistryOp::Release(&regs[1]),
        RegistryOp::Register(&regs[4]),
        RegistryOp::Release(&regs[3]),
        RegistryOp::Register(&regs[5]), // slot 1 reused
    ];
    let mut live = RegistryState::new(crs.clone());
    for op in ops {
        live.apply_operation(op).unwrap();
    }
    let one = RegistryState::replay_operations(crs.clone(), ops).unwrap();
    let two = RegistryState::replay_operations(crs.clone(), ops.iter().copied()).unwrap();
    for s in [&one, &two] {
        assert_eq!(
            s.public_params().to_bytes(),
            live.public_params().to_bytes()
        );
        assert_eq!(s.log_digest(), live.log_digest());
        assert_eq!(s.to_snapshot_bytes(), live.to_snapshot_bytes());
        assert_same_registry(s, &live);
    }
    assert_eq!(one.version(), 8);

    // Registration-only sequences replay as `replay` does.
    let regs_only = [regs[0].clone(), regs[3].clone(), regs[4].clone()];
    let a = RegistryState::replay(crs.clone(), regs_only.clone()).unwrap();
    let b =
        RegistryState::replay_operations(crs.clone(), regs_only.iter().map(RegistryOp::Register))
            .unwrap();
    assert_eq!(a.public_params().to_bytes(), b.public_params().to_bytes());
    assert_eq!(a.log_digest(), b.log_digest());

    // The first bad operation is reported with its index and reason.
    let bad = [
        RegistryOp::Register(&regs[0]),
        RegistryOp::Release(&regs[0]),
        RegistryOp::Release(&regs[0]),
    ];
    let err = RegistryState::replay_operations(crs.clone(), bad).unwrap_err();
    assert_eq!(err.index, 2);
    assert_eq!(
        err.error,
        OperationError::Release(ReleaseError::SlotFree(0))
    );
    let bad = [
        RegistryOp::Register(&regs[1]),
        RegistryOp::Register(&regs[5]),
    ];
    let err = RegistryState::replay_operations(crs, bad).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(
        err.error,
        OperationError::Registration(mazu_rbe::RegistrationError::SlotTaken(1))
    );
}

#[test]
fn opening_history_handles_leave_and_reuse() {
    let crs = common::crs(16);
    let mut r = rng(507);
    let (_, x) = fresh(&crs, 3, id_for(3), &mut r); // registered before a
    let (_, a) = fresh(&crs, 0, id_for(0), &mut r);
    let (_, b) = fresh(&crs, 1, id_for(1), &mut r);
    let (_, d) = fresh(&crs, 1, id_for(11), &mut r);
    let (_, y) = fresh(&crs, 8, id_for(8), &mut r); // another block
    let (_, never) = fresh(&crs, 2, id_for(2), &mut r);
    let ops = [
        RegistryOp::Register(&x),
        RegistryOp::Register(&a),
        RegistryOp::Register(&b),
        RegistryOp::Register(&y),
        RegistryOp::Release(&b),
        RegistryOp::Release(&x),
        RegistryOp::Register(&d),
    ];
    let state = RegistryState::replay_operations(crs.clone(), ops).unwrap();

    // Derived from the operations: one opening per operation of the block
    // from a's registration on; the latest is the curator's.
    let derived = OpeningHistory::from_operations(&crs, &a, ops).unwrap();
    assert_eq!(derived.latest(), &state.opening(0).unwrap());
    assert_eq!(derived.openings().len(), 5); // x+a, +b, -b, -x, +d
    // Followed step by step from the opening served at registration.
    let prefix = RegistryState::replay_operations(crs.clone(), ops[..2].iter().copied()).unwrap();
    let mut followed = OpeningHistory::new(prefix.opening(0).unwrap());
    followed.update(&crs, &b).unwrap();
    assert_eq!(followed.update(&crs, &y), Err(OpeningError::OtherBlock(8)));
    followed.release(&crs, &b).unwrap();
    // x was folded in before the history started: unknown, accepted once.
    followed.release(&crs, &x).unwrap();
    followed.update(&crs, &d).unwrap();
    assert_eq!(followed.openings(), derived.openings());

    // Refusals, on both kinds of history.
    for mut h in [derived.clone(), followed.clone()] {
        let before = h.clone();
        assert_eq!(h.update(&crs, &d), Err(OpeningError::AlreadyApplied(1)));
        assert_eq!(h.release(&crs, &b), Err(OpeningError::NotApplied(1)));
        assert_eq!(h.release(&crs, &x), Err(OpeningError::NotApplied(3)));
        assert_eq!(h.release(&crs, &a), Err(OpeningError::OwnSlot));
        assert_eq!(h, before);
    }
    // Only a history that knows the whole block refuses a release of a
    // registration it never saw.
    let mut h = derived.clone();
    assert_eq!(h.release(&crs, &never), Err(OpeningError::NotApplied(2)));
    // d leaves and its slot is taken again by b: accepted.
    h.release(&crs, &d).unwrap();
    // Back to a commitment seen before, with the same opening; the newest
    // is found.
    assert_eq!(h.openings()[5], h.openings()[3]);
    assert_eq!(
        h.opening_for(&h.openings()[3].commitment),
        Some(&h.openings()[5])
    );
    h.update(&crs, &b).unwrap();
    assert_eq!(h.openings().len(), 7);

    // Derived histories of the other members.
    let for_d = OpeningHistory::from_operations(&crs, &d, ops).unwrap();
    assert_eq!(for_d.latest(), &state.opening(1).unwrap());
    assert_eq!(
        OpeningHistory::from_operations(&crs, &b, ops),
        Err(OpeningError::Released(1))
    );
    assert_eq!(
        OpeningHistory::from_operations(&crs, &never, ops),
        Err(OpeningError::NotRegistered(2))
    );
    // Operations that do not follow are refused.
    let doubled = [
        RegistryOp::Register(&a),
        RegistryOp::Register(&b),
        RegistryOp::Register(&d),
    ];
    assert_eq!(
        OpeningHistory::from_operations(&crs, &a, doubled),
        Err(OpeningError::AlreadyApplied(1))
    );
    let unapplied = [RegistryOp::Register(&a), RegistryOp::Release(&b)];
    assert_eq!(
        OpeningHistory::from_operations(&crs, &a, unapplied),
        Err(OpeningError::NotApplied(1))
    );
    // The registration-only constructor still works.
    let regs_only = OpeningHistory::from_registrations(&crs, 0, [&x, &a, &b]).unwrap();
    assert_eq!(regs_only.openings().len(), 2);

    // The encoding (version 2) round-trips both kinds; version 1 is refused.
    for h in [&derived, &followed, &h] {
        let bytes = h.to_bytes();
        assert_eq!(bytes[4], 2);
        assert_eq!(&OpeningHistory::from_bytes(&bytes).unwrap(), h);
        let mut v1 = bytes.clone();
        v1[4] = 1;
        assert_eq!(
            OpeningHistory::from_bytes(&v1),
            Err(DecodeError::UnsupportedVersion(1))
        );
    }
}

/// Random interleavings of registrations and releases give the registry of
/// the survivors alone, and every survivor's derived opening history ends at
/// the curator's opening.
#[test]
fn random_interleavings_equal_the_survivors() {
    let crs = common::crs(16);
    let capacity = crs.capacity();
    let mut r = rng(508);
    for round in 0..4u32 {
        let mut state = RegistryState::new(crs.clone());
        let mut all: Vec<Registration> = Vec::new();
        // (index into `all`, is a registration)
        let mut ops: Vec<(usize, bool)> = Vec::new();
        let mut live: Vec<usize> = Vec::new();
        for step in 0..14u32 {
            let free: Vec<u32> = (0..capacity).filter(|s| state.is_free(*s)).collect();
            let register_now = live.is_empty() || (!free.is_empty() && r.gen_bool(0.6));
            if register_now {
                let slot = free[r.gen_range(0..free.len())];
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(u64::from(round) << 32 | u64::from(step)).to_be_bytes());
                let (_, reg) = fresh(&crs, slot, id, &mut r);
                state.verify_and_apply(reg.clone()).unwrap();
                all.push(reg);
                live.push(all.len() - 1);
                ops.push((all.len() - 1, true));
            } else {
                let k = live.swap_remove(r.gen_range(0..live.len()));
                state.release(&all[k]).unwrap();
                ops.push((k, false));
            }
        }
        // The survivors alone, in a shuffled order.
        let mut survivors: Vec<Registration> = live.iter().map(|k| all[*k].clone()).collect();
        for i in (1..survivors.len()).rev() {
            survivors.swap(i, r.gen_range(0..=i));
        }
        let only = RegistryState::replay(crs.clone(), survivors.clone()).unwrap();
        assert_same_registry(&state, &only);
        let pp = state.public_params();
        for reg in &survivors {
            state
                .membership_proof(reg.slot)
                .unwrap()
                .verify_id(&crs, &pp, &reg.id)
                .unwrap();
        }

        // The operation sequence replays to the same bytes.
        let as_ops: Vec<RegistryOp<'_>> = ops
            .iter()
            .map(|(k, register)| {
                if *register {
                    RegistryOp::Register(&all[*k])
                } else {
                    RegistryOp::Release(&all[*k])
                }
            })
            .collect();
        let replayed = RegistryState::replay_operations(crs.clone(), as_ops.clone()).unwrap();
        assert_eq!(replayed.public_params().to_bytes(), pp.to_bytes());
        assert_eq!(replayed.log_digest(), state.log_digest());
        assert_eq!(state.version(), ops.len() as u64);
        for reg in &survivors {
            let h = OpeningHistory::from_operations(&crs, reg, as_ops.clone()).unwrap();
            assert_eq!(h.latest(), &state.opening(reg.slot).unwrap());
        }
    }
}
