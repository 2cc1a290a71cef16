//! Target-group helpers: the subgroup check `bls12_381_plus` does not do.

use bls12_381_plus::Gt;

/// The order r of G1, G2 and Gt, as big-endian 64-bit limbs.
const ORDER_BE: [u64; 4] = [
    0x73ed_a753_299d_7d48,
    0x3339_d808_09a1_d805,
    0x53bd_a402_fffe_5bfe,
    0xffff_ffff_0000_0001,
];

/// Is `x` in the order-r subgroup Gt of Fp12*?
///
/// `Gt::from_bytes` accepts any 12 canonical field elements, so a decoded value
/// may be outside Gt (even zero). Fp12* is cyclic, so its elements with
/// `x^r = 1` are exactly the unique subgroup of order r: exponentiating by r and
/// comparing with one is a complete check (zero maps to zero and fails too).
/// Variable time: only used on public data.
pub(crate) fn is_in_subgroup_vartime(x: &Gt) -> bool {
    let mut acc = Gt::IDENTITY;
    let mut started = false;
    for limb in ORDER_BE {
        for bit in (0..64).rev() {
            if started {
                // `double` squares and `+` multiplies in this multiplicative group.
                acc = acc.double();
            }
            if (limb >> bit) & 1 == 1 {
                acc = if started { acc + x } else { *x };
                started = true;
            }
        }
    }
    acc == Gt::IDENTITY
}

#[cfg(test)]
mod tests {
    use super::*;
    use bls12_381_plus::{G1Affine, G2Affine, Scalar, pairing};

    #[test]
    fn members_pass() {
        let g = pairing(&G1Affine::generator(), &G2Affine::generator());
        assert!(is_in_subgroup_vartime(&g));
        assert!(is_in_subgroup_vartime(&(g * Scalar::from(12345u64))));
        assert!(is_in_subgroup_vartime(&Gt::IDENTITY));
    }

    #[test]
    fn non_members_fail() {
        // Perturb a coordinate of a subgroup element: still a canonical Fp12
        // element (from_bytes accepts it) but almost surely not in Gt.
        let g = pairing(&G1Affine::generator(), &G2Affine::generator());
        let mut bytes = g.to_bytes();
        bytes[575] ^= 1;
        let y = Option::<Gt>::from(Gt::from_bytes(&bytes)).expect("canonical Fp12");
        assert!(!is_in_subgroup_vartime(&y));
        // Zero is a canonical Fp12 encoding and not in Fp12* at all.
        let zero = Option::<Gt>::from(Gt::from_bytes(&[0u8; 576])).expect("canonical");
        assert!(!is_in_subgroup_vartime(&zero));
        // The field element 2 lies in Fp* and r does not divide p - 1.
        let mut two = [0u8; 576];
        two[47] = 2;
        let two = Option::<Gt>::from(Gt::from_bytes(&two)).expect("canonical");
        assert!(!is_in_subgroup_vartime(&two));
    }
}
