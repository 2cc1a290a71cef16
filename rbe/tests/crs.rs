//! CRS checks through the public path an auditor uses: bytes -> decode -> verify.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use mazu_rbe::bls12_381_plus::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use mazu_rbe::{Crs, CrsError, DecodeError};

const CAPACITY: u32 = 25; // n = 5: h_1..h_5, h_7..h_10 (9 points), hh_1..hh_5
const G1_AT: usize = 5 + 4 + 4;
const G2_AT: usize = G1_AT + 9 * 48;

fn g1_slot(k: usize) -> core::ops::Range<usize> {
    G1_AT + 48 * k..G1_AT + 48 * (k + 1)
}

fn g2_slot(k: usize) -> core::ops::Range<usize> {
    G2_AT + 96 * k..G2_AT + 96 * (k + 1)
}

#[test]
fn generated_crs_verifies_and_never_holds_the_punctured_power() {
    let crs = common::crs(CAPACITY);
    crs.verify().unwrap();
    let n = crs.block_size();
    assert_eq!(n, 5);
    assert!(crs.h(n + 1).is_none());
    // No published G1 element equals h_5 * (h_2 / h_1), i.e. z^(n+1) * G1 is
    // not in the list under any index: compare against every element via the
    // pairing relation e(x, G2) = e(h_n, hh_1).
    let target = mazu_rbe::bls12_381_plus::pairing(crs.h(n).unwrap(), crs.hh(1).unwrap());
    for t in (1..=2 * n).filter(|t| *t != n + 1) {
        let e = mazu_rbe::bls12_381_plus::pairing(crs.h(t).unwrap(), &G2Affine::generator());
        assert_ne!(e, target, "h_{t} is z^(n+1) G1");
    }
    let bytes = crs.to_bytes();
    assert_eq!(bytes.len(), G2_AT + 5 * 96);
    let back = Crs::from_bytes(&bytes).unwrap();
    back.verify().unwrap();
    assert_eq!(back.digest(), crs.digest());
}

#[test]
fn swapped_elements_are_rejected() {
    let bytes = common::crs(CAPACITY).to_bytes();
    for (a, b) in [(0, 1), (3, 4), (4, 5), (7, 8)] {
        let mut t = bytes.clone();
        let (x, y) = (t[g1_slot(a)].to_vec(), t[g1_slot(b)].to_vec());
        t[g1_slot(a)].copy_from_slice(&y);
        t[g1_slot(b)].copy_from_slice(&x);
        let crs = Crs::from_bytes(&t).unwrap();
        assert_eq!(crs.verify(), Err(CrsError::NotPowers), "g1 {a}<->{b}");
    }
    let mut t = bytes.clone();
    let (x, y) = (t[g2_slot(1)].to_vec(), t[g2_slot(2)].to_vec());
    t[g2_slot(1)].copy_from_slice(&y);
    t[g2_slot(2)].copy_from_slice(&x);
    assert_eq!(
        Crs::from_bytes(&t).unwrap().verify(),
        Err(CrsError::NotPowers)
    );
}

#[test]
fn one_scaled_element_is_rejected() {
    let bytes = common::crs(CAPACITY).to_bytes();
    let s = Scalar::from(0x1234_5678u64);
    for k in 0..9 {
        let mut t = bytes.clone();
        let p: G1Affine = G1Affine::from_compressed(&t[g1_slot(k)].try_into().unwrap()).unwrap();
        t[g1_slot(k)].copy_from_slice(&G1Affine::from(G1Projective::from(p) * s).to_compressed());
        assert_eq!(
            Crs::from_bytes(&t).unwrap().verify(),
            Err(CrsError::NotPowers),
            "g1 {k}"
        );
    }
    for k in 0..5 {
        let mut t = bytes.clone();
        let p: G2Affine = G2Affine::from_compressed(&t[g2_slot(k)].try_into().unwrap()).unwrap();
        t[g2_slot(k)].copy_from_slice(&G2Affine::from(G2Projective::from(p) * s).to_compressed());
        assert_eq!(
            Crs::from_bytes(&t).unwrap().verify(),
            Err(CrsError::NotPowers),
            "g2 {k}"
        );
    }
}

#[test]
fn identity_elements_are_rejected() {
    let bytes = common::crs(CAPACITY).to_bytes();
    let mut t = bytes.clone();
    t[g1_slot(6)].copy_from_slice(&G1Affine::identity().to_compressed());
    assert!(matches!(
        Crs::from_bytes(&t),
        Err(DecodeError::IdentityPoint { .. })
    ));
    let mut t = bytes.clone();
    t[g2_slot(0)].copy_from_slice(&G2Affine::identity().to_compressed());
    assert!(matches!(
        Crs::from_bytes(&t),
        Err(DecodeError::IdentityPoint { .. })
    ));
}

#[test]
fn wrong_lengths_are_rejected() {
    let bytes = common::crs(CAPACITY).to_bytes();
    // One G2 element short, one G1 element extra, empty, header only.
    assert!(matches!(
        Crs::from_bytes(&bytes[..bytes.len() - 96]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut long = bytes.clone();
    long.extend_from_slice(&G1Affine::generator().to_compressed());
    assert!(matches!(
        Crs::from_bytes(&long),
        Err(DecodeError::TrailingBytes { .. })
    ));
    assert!(Crs::from_bytes(&[]).is_err());
    assert!(Crs::from_bytes(&bytes[..13]).is_err());
    // A capacity whose block size disagrees with the element count.
    let mut other_cap = bytes.clone();
    other_cap[5..9].copy_from_slice(&36u32.to_be_bytes()); // n would be 6
    assert!(Crs::from_bytes(&other_cap).is_err());
    // Capacity out of range.
    let mut zero = bytes.clone();
    zero[5..9].copy_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        Crs::from_bytes(&zero),
        Err(DecodeError::LengthOutOfRange { .. })
    ));
    let mut huge = bytes.clone();
    huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Crs::from_bytes(&huge).is_err());
}

#[test]
fn crs_from_another_secret_with_same_shape_verifies_but_has_another_digest() {
    // verify() checks structure, not provenance: bind to a digest.
    let a = common::crs(CAPACITY);
    let b = Crs::generate_insecure_dev(CAPACITY, &mut common::rng(999)).unwrap();
    b.verify().unwrap();
    assert_ne!(a.digest(), b.digest());
}
