//! Every registration check rejects its own bad case, through the registry
//! state (the curator's entry point) and through the decoder.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{id_for, non_subgroup_g1, non_subgroup_g2, off_curve_g1, register, rng};
use mazu_rbe::bls12_381_plus::{G1Affine, G1Projective, G2Affine, Scalar};
use mazu_rbe::{Crs, DecodeError, Group, Registration, RegistrationError, RegistryState, keygen};

fn state(capacity: u32) -> RegistryState {
    RegistryState::new(common::crs(capacity))
}

#[test]
fn accepts_honest_registrations_in_several_blocks() {
    let mut st = state(30); // n = 6, 5 blocks
    let mut r = rng(1);
    for slot in [0, 5, 6, 13, 29] {
        register(&mut st, slot, &mut r);
    }
    assert_eq!(st.version(), 5);
    assert_eq!(st.slot_of(&id_for(13)), Some(13));
    assert!(!st.is_free(13) && st.is_free(14) && !st.is_free(30));
    assert_eq!(st.touched_blocks(), 4);
}

#[test]
fn rejects_taken_slot() {
    let mut st = state(16);
    let mut r = rng(2);
    register(&mut st, 3, &mut r);
    let (_, again) = keygen(st.crs(), 3, [0x77; 32], &mut r).unwrap();
    assert_eq!(
        st.verify(again).err(),
        Some(RegistrationError::SlotTaken(3))
    );
}

#[test]
fn rejects_duplicate_id() {
    let mut st = state(16);
    let mut r = rng(3);
    register(&mut st, 3, &mut r);
    let (_, dup) = keygen(st.crs(), 4, id_for(3), &mut r).unwrap();
    assert_eq!(
        st.verify(dup).err(),
        Some(RegistrationError::DuplicateId { existing_slot: 3 })
    );
}

#[test]
fn rejects_out_of_range_slot() {
    let st = state(16);
    let mut r = rng(4);
    let (_, mut reg) = keygen(st.crs(), 15, [1; 32], &mut r).unwrap();
    reg.slot = 16;
    assert_eq!(
        st.verify(reg).err(),
        Some(RegistrationError::SlotOutOfRange {
            slot: 16,
            capacity: 16
        })
    );
}

#[test]
fn rejects_identity_key() {
    let st = state(16);
    let mut r = rng(5);
    let (_, mut reg) = keygen(st.crs(), 2, [1; 32], &mut r).unwrap();
    reg.public_key = G1Affine::identity();
    reg.helpers
        .iter_mut()
        .for_each(|h| *h = G1Affine::identity());
    assert_eq!(
        st.verify(reg).err(),
        Some(RegistrationError::IdentityPublicKey)
    );
}

#[test]
fn rejects_wrong_helper_count() {
    let st = state(16);
    let mut r = rng(6);
    let (_, mut reg) = keygen(st.crs(), 2, [1; 32], &mut r).unwrap();
    reg.helpers.truncate(1);
    assert_eq!(
        st.verify(reg).err(),
        Some(RegistrationError::HelperCount {
            expected: 3,
            found: 1
        })
    );
}

/// One wrong helper among n, at each index (n = 4), through the state.
#[test]
fn rejects_one_wrong_helper_each_position() {
    let st = state(16);
    let mut r = rng(7);
    let (_, reg) = keygen(st.crs(), 5, [1; 32], &mut r).unwrap();
    for k in 0..reg.helpers.len() {
        let mut bad = reg.clone();
        bad.helpers[k] = G1Affine::from(G1Projective::from(bad.helpers[k]) * Scalar::from(2u64));
        assert_eq!(
            st.verify(bad).err(),
            Some(RegistrationError::InvalidHelpers),
            "helper {k}"
        );
    }
    st.verify(reg).unwrap();
}

#[test]
fn rejects_wrong_or_rebound_proof_of_knowledge() {
    let st = state(16);
    let mut r = rng(8);
    let (_, reg) = keygen(st.crs(), 5, [1; 32], &mut r).unwrap();

    let mut forged = reg.clone();
    forged.proof.response = Scalar::from(42u64);
    assert_eq!(
        st.verify(forged).err(),
        Some(RegistrationError::InvalidProofOfKnowledge)
    );

    // Same key material claimed for another id.
    let mut other_id = reg.clone();
    other_id.id = [2; 32];
    assert_eq!(
        st.verify(other_id).err(),
        Some(RegistrationError::InvalidProofOfKnowledge)
    );

    // A proof made for another slot, spliced into this one (same position in
    // another block, so helpers and base are identical).
    let (_, there) = keygen(st.crs(), 1, [1; 32], &mut r).unwrap();
    let mut spliced = there.clone();
    spliced.slot = 9; // position 2 in block 2, as slot 1 is position 2 in block 0
    assert_eq!(
        st.verify(spliced).err(),
        Some(RegistrationError::InvalidProofOfKnowledge)
    );
}

#[test]
fn verified_registration_is_bound_to_its_state_version() {
    let mut st = state(16);
    let mut r = rng(9);
    let (_, a) = keygen(st.crs(), 1, id_for(1), &mut r).unwrap();
    let (_, b) = keygen(st.crs(), 2, id_for(2), &mut r).unwrap();
    let va = st.verify(a).unwrap();
    let vb = st.verify(b).unwrap();
    st.apply(&va).unwrap();
    // Applying twice, or applying a check made before another apply, is refused.
    assert_eq!(st.apply(&va), Err(RegistrationError::StaleVerification));
    assert_eq!(st.apply(&vb), Err(RegistrationError::StaleVerification));
    // Another state over another CRS at the same version refuses it too.
    let mut other = state(17);
    let (_, c) = keygen(st.crs(), 3, id_for(3), &mut r).unwrap();
    let vc = st.verify(c).unwrap();
    let mut fresh = RegistryState::new(other.crs().clone());
    assert_eq!(fresh.apply(&vc), Err(RegistrationError::StaleVerification));
    assert_eq!(other.apply(&vc), Err(RegistrationError::StaleVerification));
    assert_eq!(st.version(), 1);

    // Two states over the same CRS at the same version but with different
    // logs: a check made against one does not apply to the other (slot 3 is
    // free in `st` but taken in `twin`).
    let mut twin = RegistryState::new(st.crs().clone());
    register(&mut twin, 3, &mut r);
    assert_eq!(twin.version(), st.version());
    assert_ne!(twin.log_digest(), st.log_digest());
    assert_eq!(twin.apply(&vc), Err(RegistrationError::StaleVerification));
    st.apply(&vc).unwrap();
}

#[test]
fn registration_for_another_crs_is_rejected() {
    let st = state(16);
    let other = Crs::generate_insecure_dev(16, &mut rng(99)).unwrap();
    let (_, reg) = keygen(&other, 5, [1; 32], &mut rng(10)).unwrap();
    // The proof binds the CRS digest; the helpers would fail too.
    assert_eq!(
        st.verify(reg).err(),
        Some(RegistrationError::InvalidProofOfKnowledge)
    );
}

/// Byte offsets in a registration encoding.
const PK_OFFSET: usize = 5 + 4 + 32;
const HELPERS_OFFSET: usize = PK_OFFSET + 48 + 4;

#[test]
fn decoder_rejects_malformed_and_non_subgroup_points() {
    let st = state(16);
    let (_, reg) = keygen(st.crs(), 5, [1; 32], &mut rng(11)).unwrap();
    let bytes = reg.to_bytes();
    assert_eq!(Registration::from_bytes(&bytes).unwrap(), reg);

    for (name, bad) in [
        ("non-subgroup", non_subgroup_g1()),
        ("off-curve", off_curve_g1()),
        ("no compression flag", {
            let mut b = reg.public_key.to_compressed();
            b[0] &= 0x7f;
            b
        }),
        ("x not reduced", [0x9f; 48]),
    ] {
        for offset in [PK_OFFSET, HELPERS_OFFSET, HELPERS_OFFSET + 48] {
            let mut b = bytes.clone();
            b[offset..offset + 48].copy_from_slice(&bad);
            assert!(
                matches!(
                    Registration::from_bytes(&b),
                    Err(DecodeError::InvalidPoint {
                        group: Group::G1,
                        ..
                    })
                ),
                "{name} at {offset}"
            );
        }
    }
    // The proof commitment and response are checked too.
    let r_off = bytes.len() - 32 - 48;
    let mut b = bytes.clone();
    b[r_off..r_off + 48].copy_from_slice(&non_subgroup_g1());
    assert!(matches!(
        Registration::from_bytes(&b),
        Err(DecodeError::InvalidPoint { .. })
    ));
    let mut b = bytes.clone();
    let len = b.len();
    b[len - 32..].fill(0xff);
    assert!(matches!(
        Registration::from_bytes(&b),
        Err(DecodeError::NonCanonicalScalar { .. })
    ));
}

#[test]
fn non_subgroup_points_exist_and_are_refused_by_checked_decoders() {
    let g1 = non_subgroup_g1();
    let g2 = non_subgroup_g2();
    assert!(Option::<G1Affine>::from(G1Affine::from_compressed(&g1)).is_none());
    assert!(Option::<G2Affine>::from(G2Affine::from_compressed(&g2)).is_none());
    // And in a CRS: replace hh_1 with the non-subgroup G2 point.
    let crs = common::crs(16);
    let mut bytes = crs.to_bytes();
    let g2_offset = 5 + 8 + 7 * 48;
    bytes[g2_offset..g2_offset + 96].copy_from_slice(&g2);
    assert!(matches!(
        Crs::from_bytes(&bytes),
        Err(DecodeError::InvalidPoint {
            group: Group::G2,
            ..
        })
    ));
    let mut bytes = crs.to_bytes();
    bytes[13..13 + 48].copy_from_slice(&g1);
    assert!(matches!(
        Crs::from_bytes(&bytes),
        Err(DecodeError::InvalidPoint {
            group: Group::G1,
            ..
        })
    ));
}

#[test]
fn json_registration_rejects_bad_points() {
    let st = state(16);
    let (_, reg) = keygen(st.crs(), 5, [1; 32], &mut rng(12)).unwrap();
    let mut v: serde_json::Value = serde_json::to_value(&reg).unwrap();
    use base64ct::Encoding;
    v["helpers"][1] =
        serde_json::Value::String(base64ct::Base64::encode_string(&non_subgroup_g1()));
    let err = serde_json::from_value::<Registration>(v).unwrap_err();
    assert!(err.to_string().contains("helper value"), "{err}");
}
