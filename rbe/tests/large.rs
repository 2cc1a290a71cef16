//! The one test at full scale: N = 2^20 (n = 1024). Memory stays proportional
//! to what is used: openings exist only for touched blocks.

// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use mazu_rbe::{G1Affine, RegistryState, keygen};

#[test]
fn million_slot_registry_allocates_lazily() {
    let mut rng = common::rng(1 << 20);
    let crs = mazu_rbe::Crs::generate_insecure_dev(1 << 20, &mut rng).unwrap();
    assert_eq!(crs.block_size(), 1024);
    assert_eq!(crs.to_bytes().len(), 5 + 8 + 2047 * 48 + 1024 * 96); // ~192 KiB

    let mut state = RegistryState::new(crs.clone());
    assert_eq!(state.touched_blocks(), 0);
    let slot = 700_000;
    let (_, reg) = keygen(&crs, slot, common::id_for(slot), &mut rng).unwrap();
    assert_eq!(reg.helpers.len(), 1023);
    state.verify_and_apply(reg).unwrap();
    assert_eq!(state.touched_blocks(), 1);

    let pp = state.public_params();
    assert_eq!(pp.commitments().len(), 1024);
    state
        .membership_proof(slot)
        .unwrap()
        .verify(&crs, &pp)
        .unwrap();
    // An untouched block: identity commitment and opening, non-membership holds.
    let far = state.opening(5).unwrap();
    assert_eq!(far.commitment, G1Affine::identity());
    state
        .non_membership_proof(5)
        .unwrap()
        .verify(&crs, &pp)
        .unwrap();
}
