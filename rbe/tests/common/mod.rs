//! Shared fixtures for the integration tests.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use mazu_rbe::bls12_381_plus::{G1Affine, G2Affine};
use mazu_rbe::{Crs, Registration, RegistryState, SecretKey, keygen};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn crs(capacity: u32) -> Crs {
    Crs::generate_insecure_dev(capacity, &mut rng(u64::from(capacity))).unwrap()
}

/// A distinct workload id per slot.
pub fn id_for(slot: u32) -> [u8; 32] {
    let mut id = [0xA5; 32];
    id[..4].copy_from_slice(&slot.to_be_bytes());
    id
}

/// Generate, verify and apply a registration for `slot`.
pub fn register(
    state: &mut RegistryState,
    slot: u32,
    rng: &mut ChaCha20Rng,
) -> (SecretKey, Registration) {
    let (sk, reg) = keygen(state.crs(), slot, id_for(slot), rng).unwrap();
    let reg = state.verify_and_apply(reg).unwrap();
    (sk, reg)
}

/// Compressed bytes of a point on the G1 curve that is NOT in the prime-order
/// subgroup. Uses the unchecked decoder only to find it.
pub fn non_subgroup_g1() -> [u8; 48] {
    for x in 1u8..=255 {
        let mut bytes = [0u8; 48];
        bytes[47] = x;
        bytes[0] |= 0x80; // compressed flag
        let on_curve: Option<G1Affine> = G1Affine::from_compressed_unchecked(&bytes).into();
        if let Some(p) = on_curve
            && !bool::from(p.is_torsion_free())
        {
            assert!(bool::from(p.is_on_curve()));
            assert!(Option::<G1Affine>::from(G1Affine::from_compressed(&bytes)).is_none());
            return bytes;
        }
    }
    panic!("no non-subgroup G1 point with small x");
}

/// Compressed bytes of a point on the G2 twist that is NOT in the prime-order
/// subgroup (x = k + 0*u for a small k).
pub fn non_subgroup_g2() -> [u8; 96] {
    for x in 1u8..=255 {
        let mut bytes = [0u8; 96];
        // Layout: x.c1 (48 bytes, flags in the top bits) || x.c0 (48 bytes).
        bytes[95] = x;
        bytes[0] |= 0x80;
        let on_curve: Option<G2Affine> = G2Affine::from_compressed_unchecked(&bytes).into();
        if let Some(p) = on_curve
            && !bool::from(p.is_torsion_free())
        {
            assert!(bool::from(p.is_on_curve()));
            assert!(Option::<G2Affine>::from(G2Affine::from_compressed(&bytes)).is_none());
            return bytes;
        }
    }
    panic!("no non-subgroup G2 point with small x");
}

/// Compressed bytes that are not a curve point at all (x with no y).
pub fn off_curve_g1() -> [u8; 48] {
    for x in 1u8..=255 {
        let mut bytes = [0u8; 48];
        bytes[47] = x;
        bytes[0] |= 0x80;
        if Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&bytes)).is_none() {
            return bytes;
        }
    }
    panic!("every small x is on the curve?");
}
