//! Checked decoding of compressed G1 points, faster than
//! `G1Affine::from_compressed` and accepting exactly the same inputs.
//!
//! Decoding a registration is dominated by its `n + 1` compressed G1 points
//! (about half of the RBE work of a binding before this module): per point a
//! square root (to recover `y`) and a subgroup check. `bls12_381_plus` does
//! both in constant time, which public data does not need: the square root
//! is a plain square-and-multiply over all 384 exponent bits, and the
//! subgroup check multiplies by `x^2` with complete projective formulas.
//! Here, variable time (every input is public):
//!
//! * the square root `a^((p+1)/4)` (p = 3 mod 4) with a 5-bit sliding window
//!   (~378 squarings and ~80 multiplications instead of 384 and 229), then
//!   the same check `y^2 == x^3 + 4` the library makes;
//! * the same subgroup test the library uses (Scott, ePrint 2021/1130 §6,
//!   proof corrected in ePrint 2022/352: `P` on `E(F_p)` is in the order-`r`
//!   subgroup iff `psi(P) == -[x^2] P` with `psi(x, y) = (beta x, y)`), with
//!   `[x^2] P` computed in Jacobian coordinates (doubling `2M + 5S` instead
//!   of the complete formulas' `6M + 2S`). The additions handle every
//!   exceptional case (an input at infinity, equal inputs, opposite inputs),
//!   so the result is the exact group law for *any* point of `E(F_p)`,
//!   including the small-order points an attacker would send.
//!
//! The point is then built with `G1Affine::from_uncompressed_unchecked`
//! (no further check: `y^2 = x^3 + 4` was just verified). Tests compare every outcome
//! with `G1Affine::from_compressed` on valid points, points outside the
//! subgroup (random points of `E(F_p)`, their torsion parts, the order-3
//! points), every flag combination and random bytes.

use bls12_381_plus::G1Affine;
use bls12_381_plus::fp::Fp;

/// `(p + 1) / 4`, little-endian 64-bit words.
const SQRT_EXP: [u64; 6] = [
    0xee7f_bfff_ffff_eaab,
    0x07aa_ffff_ac54_ffff,
    0xd9cc_34a8_3dac_3d89,
    0xd91d_d2e1_3ce1_44af,
    0x92c6_e9ed_90d2_eb35,
    0x0680_447a_8e5f_f9a6,
];

/// A non-trivial cube root of unity in `F_p` (Montgomery form), the one
/// `bls12_381_plus` uses for `psi` (`G1Affine::is_torsion_free`).
const BETA: Fp = Fp::from_raw_unchecked([
    0x30f1_361b_798a_64e8,
    0xf3b8_ddab_7ece_5a2a,
    0x16a8_ca3a_c615_77f7,
    0xc26a_2ff8_74fd_029b,
    0x3636_b766_6070_1c6e,
    0x051b_a4ab_241b_6160,
]);

/// `|x|` of BLS12-381 (`x = -0xd201_0000_0001_0000`).
const BLS_X_ABS: u64 = 0xd201_0000_0001_0000;

/// `G1Affine::from_compressed(bytes)`, in variable time.
pub(crate) fn g1_from_compressed(bytes: &[u8; 48]) -> Option<G1Affine> {
    let compressed = (bytes[0] >> 7) & 1 == 1;
    let infinity = (bytes[0] >> 6) & 1 == 1;
    let sort = (bytes[0] >> 5) & 1 == 1;
    if !compressed {
        return None;
    }
    let mut x_bytes = *bytes;
    x_bytes[0] &= 0b0001_1111;
    let x: Fp = Option::from(Fp::from_bytes(&x_bytes))?;
    if infinity {
        // The identity: x = 0 and no sort flag.
        return (!sort && bool::from(x.is_zero())).then(G1Affine::identity);
    }
    let rhs = x.square() * x + Fp::from(4u64);
    let mut y = pow_vartime_window(&rhs, &SQRT_EXP);
    if y.square() != rhs {
        return None;
    }
    if bool::from(y.lexicographically_largest()) != sort {
        y = -y;
    }
    if !torsion_free(&x, &y) {
        return None;
    }
    let mut uncompressed = [0u8; 96];
    uncompressed[..48].copy_from_slice(&x.to_bytes());
    uncompressed[48..].copy_from_slice(&y.to_bytes());
    // No flag bits are set (x, y < p < 2^381): the finite point (x, y), on
    // the curve (y^2 = x^3 + 4 checked above) and in the subgroup.
    Option::from(G1Affine::from_uncompressed_unchecked(&uncompressed))
}

/// `base^exp` by a 5-bit sliding window (variable time in `exp`, which is a
/// public constant here).
fn pow_vartime_window(base: &Fp, exp: &[u64; 6]) -> Fp {
    const WINDOW: usize = 5;
    let bit = |i: usize| (exp[i / 64] >> (i % 64)) & 1 == 1;
    // base^1, base^3, ..., base^(2^WINDOW - 1).
    let square = base.square();
    let mut odd = [*base; 1 << (WINDOW - 1)];
    for k in 1..odd.len() {
        odd[k] = odd[k - 1] * square;
    }
    let Some(top) = (0..384).rev().find(|&i| bit(i)) else {
        return Fp::ONE;
    };
    let mut acc: Option<Fp> = None;
    let mut i = top as isize;
    while i >= 0 {
        let hi = i as usize;
        if !bit(hi) {
            acc = acc.map(|a| a.square());
            i -= 1;
            continue;
        }
        // The longest window [lo, hi] of at most WINDOW bits ending in a 1.
        let mut lo = hi.saturating_sub(WINDOW - 1);
        while !bit(lo) {
            lo += 1;
        }
        let mut value = 0usize;
        for b in (lo..=hi).rev() {
            value = (value << 1) | usize::from(bit(b));
        }
        let factor = odd[value >> 1];
        acc = Some(match acc {
            None => factor,
            Some(mut a) => {
                for _ in lo..=hi {
                    a = a.square();
                }
                a * factor
            }
        });
        i = lo as isize - 1;
    }
    acc.unwrap_or(Fp::ONE)
}

/// A point in Jacobian coordinates: `(X / Z^2, Y / Z^3)`, `Z = 0` at
/// infinity.
#[derive(Clone, Copy)]
pub(crate) struct Jacobian {
    x: Fp,
    y: Fp,
    z: Fp,
}

impl Jacobian {
    pub(crate) const INFINITY: Self = Self {
        x: Fp::ONE,
        y: Fp::ONE,
        z: Fp::ZERO,
    };

    pub(crate) fn from_affine(x: &Fp, y: &Fp) -> Self {
        Self {
            x: *x,
            y: *y,
            z: Fp::ONE,
        }
    }

    pub(crate) fn is_infinity(&self) -> bool {
        bool::from(self.z.is_zero())
    }

    /// `2P` (dbl-2009-l, `a = 0`). Exact for every input: at infinity
    /// `Z3 = 2 Y Z = 0`; no point of `E(F_p)` has `Y = 0` (the group order is
    /// odd), so `Z3 != 0` otherwise.
    pub(crate) fn double(&self) -> Self {
        let a = self.x.square();
        let b = self.y.square();
        let c = b.square();
        let d = ((self.x + b).square() - a - c).double();
        let e = a.double() + a;
        let f = e.square();
        let x3 = f - d.double();
        let c8 = c.double().double().double();
        let y3 = e * (d - x3) - c8;
        let z3 = (self.y * self.z).double();
        Self {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `P + Q` (add-2007-bl), with every exceptional case handled: either
    /// input at infinity, `P = Q` (doubling) and `P = -Q` (infinity).
    pub(crate) fn add(&self, q: &Self) -> Self {
        if self.is_infinity() {
            return *q;
        }
        if q.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x * z2z2;
        let u2 = q.x * z1z1;
        let s1 = self.y * q.z * z2z2;
        let s2 = q.y * self.z * z1z1;
        let h = u2 - u1;
        let r = s2 - s1;
        if bool::from(h.is_zero()) {
            // Same x: the same point (double) or opposite points (infinity).
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Self::INFINITY
            };
        }
        let i = h.double().square();
        let j = h * i;
        let r = r.double();
        let v = u1 * i;
        let x3 = r.square() - j - v.double();
        let y3 = r * (v - x3) - (s1 * j).double();
        let z3 = ((self.z + q.z).square() - z1z1 - z2z2) * h;
        Self {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// The affine point, `None` at infinity (one inversion).
    pub(crate) fn to_affine(self) -> Option<G1Affine> {
        let zi: Fp = Option::from(self.z.invert())?;
        let zi2 = zi.square();
        let mut uncompressed = [0u8; 96];
        uncompressed[..48].copy_from_slice(&(self.x * zi2).to_bytes());
        uncompressed[48..].copy_from_slice(&(self.y * zi2 * zi).to_bytes());
        Option::from(G1Affine::from_uncompressed_unchecked(&uncompressed))
    }

    /// `[BLS_X_ABS] P`, left to right.
    fn mul_by_x_abs(&self) -> Self {
        let mut acc = *self;
        for b in (0..63).rev() {
            acc = acc.double();
            if (BLS_X_ABS >> b) & 1 == 1 {
                acc = acc.add(self);
            }
        }
        acc
    }

    /// Equal to the finite affine point `(x, y)`.
    fn eq_affine(&self, x: &Fp, y: &Fp) -> bool {
        if self.is_infinity() {
            return false;
        }
        let zz = self.z.square();
        self.x == *x * zz && self.y == *y * zz * self.z
    }
}

/// `(x, y)` (a finite point of `E(F_p)`) lies in the order-`r` subgroup:
/// `psi(P) == -[x^2] P`, i.e. `[x^2] P == (beta x, -y)` (`x^2 = |x|^2`).
fn torsion_free(x: &Fp, y: &Fp) -> bool {
    let p = Jacobian::from_affine(x, y);
    let x2p = p.mul_by_x_abs().mul_by_x_abs();
    x2p.eq_affine(&(BETA * x), &-y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bls12_381_plus::{G1Projective, Scalar};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    /// The group order `r`, big-endian 64-bit words.
    const R_WORDS: [u64; 4] = [
        0x73ed_a753_299d_7d48,
        0x3339_d808_09a1_d805,
        0x53bd_a402_fffe_5bfe,
        0xffff_ffff_0000_0001,
    ];

    /// `[k] P` for any point of `E(F_p)` (complete projective formulas).
    fn mul_words(p: &G1Projective, words: &[u64]) -> G1Projective {
        let mut acc = G1Projective::IDENTITY;
        for w in words {
            for b in (0..64).rev() {
                acc = acc.double();
                if (w >> b) & 1 == 1 {
                    acc += p;
                }
            }
        }
        acc
    }

    /// Both decoders agree on these bytes (value and acceptance).
    fn agree(bytes: &[u8; 48]) -> bool {
        let lib: Option<G1Affine> = Option::from(G1Affine::from_compressed(bytes));
        let ours = g1_from_compressed(bytes);
        assert_eq!(ours, lib, "bytes {bytes:02x?}");
        ours.is_some()
    }

    /// A random point of `E(F_p)` (almost never in the subgroup).
    fn random_curve_point(rng: &mut ChaCha20Rng) -> G1Affine {
        loop {
            let mut b = [0u8; 48];
            rng.fill_bytes(&mut b);
            // Compressed, not infinity, either sort flag.
            b[0] = (b[0] & 0b1011_1111) | 0b1000_0000;
            if let Some(p) = Option::from(G1Affine::from_compressed_unchecked(&b)) {
                return p;
            }
        }
    }

    #[test]
    fn sqrt_matches_the_library() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for _ in 0..200 {
            let a = Fp::random(&mut rng);
            let lib: Option<Fp> = Option::from(a.sqrt());
            let y = pow_vartime_window(&a, &SQRT_EXP);
            assert_eq!(lib.is_some(), y.square() == a);
            if let Some(s) = lib {
                assert!(y == s || y == -s);
            }
        }
        assert_eq!(pow_vartime_window(&Fp::from(7u64), &[0; 6]), Fp::ONE);
        assert_eq!(
            pow_vartime_window(&Fp::from(3u64), &[5, 0, 0, 0, 0, 0]),
            Fp::from(243u64)
        );
    }

    #[test]
    fn subgroup_points_decode_the_same() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut p = G1Projective::GENERATOR;
        for k in 0..64u64 {
            p = p * Scalar::from(rng.next_u64() | 1) + G1Projective::GENERATOR * Scalar::from(k);
            let a = G1Affine::from(p);
            assert!(agree(&a.to_compressed()));
            assert!(agree(&(-a).to_compressed()));
        }
        assert!(agree(&G1Affine::generator().to_compressed()));
        assert!(agree(&G1Affine::identity().to_compressed()));
    }

    /// Points of `E(F_p)` outside the subgroup: random ones, their torsion
    /// parts `[r] Q` and small multiples, torsion plus a subgroup point, and
    /// the two points of order 3, `(0, ±2)`. All refused, as by the library.
    #[test]
    fn points_outside_the_subgroup_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let g = G1Projective::GENERATOR * Scalar::from(rng.next_u64());
        let mut refused = 0;
        for _ in 0..40 {
            let q = G1Projective::from(random_curve_point(&mut rng));
            let t = mul_words(&q, &R_WORDS); // torsion part (order divides h)
            for candidate in [
                q,
                t,
                t + g,
                t.double(),
                t * Scalar::from(3u64),
                t * Scalar::from(11u64),
                t * Scalar::from(121u64),
                t * Scalar::from(1331u64),
            ] {
                let a = G1Affine::from(candidate);
                if !agree(&a.to_compressed()) {
                    refused += 1;
                }
                agree(&(-a).to_compressed());
            }
        }
        assert!(refused > 250, "only {refused} refused");
        // The points of order 3: x = 0, y = ±2.
        let mut zero_x = [0u8; 48];
        zero_x[0] = 0b1000_0000;
        assert!(!agree(&zero_x));
        zero_x[0] = 0b1010_0000;
        assert!(!agree(&zero_x));
        // Torsion points of small order exercise the exceptional additions:
        // [h / f] T for factors f of h = 3 * 11^2 * 10177^2 * 859267^2 *
        // 52437899^2 (order divides f), with and without a subgroup part.
        let h_over: [[u64; 2]; 7] = [
            [0x1324_2eaa_c71c_a072, 0x2eaa_e38e_5555_8e39], // h / 3
            [0x0538_69d1_7c1f_147c, 0x3b45_e0f8_45d1_83e1], // h / 11
            [0x0079_7dfb_c577_3068, 0x627a_b75c_6370_2343], // h / 121
            [0x0001_71c9_ead3_fcd3, 0xd634_e018_6abb_4d6b], // h / 10177
            [0x0000_0009_4d4c_6a74, 0x6301_49c0_28dc_a02b], // h / 10177^2
            [0x0000_0461_34a7_640e, 0x780f_cc6d_77cf_b0b9], // h / 859267
            [0x0000_0000_0000_05e0, 0xd04a_695e_4a55_8443], // h / 52437899^2
        ];
        for _ in 0..10 {
            let q = G1Projective::from(random_curve_point(&mut rng));
            let t = mul_words(&q, &R_WORDS);
            for words in &h_over {
                let small = mul_words(&t, words);
                if !bool::from(small.is_identity()) {
                    assert!(!agree(&G1Affine::from(small).to_compressed()));
                    assert!(!agree(&G1Affine::from(small + g).to_compressed()));
                }
            }
            // [h] T is the identity: the torsion part has order dividing h.
            let h = mul_words(&t, &[0x396c_8c00_5555_e156, 0x8c00_aaab_0000_aaab]);
            assert!(bool::from(h.is_identity()));
        }
    }

    /// The Jacobian arithmetic against the library's complete formulas:
    /// `[|x|] P` and `[x^2] P` for random points of `E(F_p)` and for torsion
    /// points of small order, where the exceptional additions (equal and
    /// opposite inputs, infinity) occur.
    #[test]
    fn jacobian_multiplication_is_exact() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let to_affine =
            |j: &Jacobian| -> G1Affine { j.to_affine().unwrap_or_else(G1Affine::identity) };
        let h_over: [[u64; 2]; 4] = [
            [0x1324_2eaa_c71c_a072, 0x2eaa_e38e_5555_8e39], // h / 3
            [0x0538_69d1_7c1f_147c, 0x3b45_e0f8_45d1_83e1], // h / 11
            [0x0079_7dfb_c577_3068, 0x627a_b75c_6370_2343], // h / 121
            [0x0001_71c9_ead3_fcd3, 0xd634_e018_6abb_4d6b], // h / 10177
        ];
        let mut points = alloc::vec::Vec::new();
        for _ in 0..8 {
            let q = G1Projective::from(random_curve_point(&mut rng));
            let t = mul_words(&q, &R_WORDS);
            points.push(q);
            points.push(t);
            for w in &h_over {
                points.push(mul_words(&t, w));
            }
        }
        points.push(G1Projective::GENERATOR);
        for p in points {
            let a = G1Affine::from(p);
            if bool::from(a.is_identity()) {
                continue;
            }
            let b = a.to_uncompressed();
            let x: Fp = Option::from(Fp::from_bytes(b[..48].try_into().unwrap())).unwrap();
            let y: Fp = Option::from(Fp::from_bytes(b[48..].try_into().unwrap())).unwrap();
            let j = Jacobian::from_affine(&x, &y);
            let once = j.mul_by_x_abs();
            let lib_once = mul_words(&p, &[BLS_X_ABS]);
            assert_eq!(to_affine(&once), G1Affine::from(lib_once));
            let twice = once.mul_by_x_abs();
            assert_eq!(
                to_affine(&twice),
                G1Affine::from(mul_words(&lib_once, &[BLS_X_ABS]))
            );
            assert_eq!(to_affine(&j.add(&j)), G1Affine::from(p.double()));
            assert!(j.add(&Jacobian::from_affine(&x, &-y)).is_infinity());
            // The test itself agrees with the library's.
            assert_eq!(torsion_free(&x, &y), bool::from(a.is_torsion_free()));
        }
    }

    #[test]
    fn flags_and_random_bytes_decode_the_same() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let valid =
            G1Affine::from(G1Projective::GENERATOR * Scalar::from(12345u64)).to_compressed();
        for flags in 0u8..8 {
            let mut b = valid;
            b[0] = (b[0] & 0b0001_1111) | (flags << 5);
            agree(&b);
            let mut inf = [0u8; 48];
            inf[0] = flags << 5;
            agree(&inf);
            inf[47] = 1;
            agree(&inf);
        }
        // x = p (not canonical) and x = p - 1 ... just the top limbs maxed.
        let mut big = [0xffu8; 48];
        big[0] = 0b1001_1111;
        agree(&big);
        let mut accepted = 0;
        for _ in 0..2000 {
            let mut b = [0u8; 48];
            rng.fill_bytes(&mut b);
            if rng.next_u32() % 2 == 0 {
                b[0] = (b[0] & 0b0011_1111) | 0b1000_0000;
                b[0] &= 0b1011_1111;
            }
            if agree(&b) {
                accepted += 1;
            }
        }
        // Random x on the curve is in the subgroup with probability ~1/h.
        assert_eq!(accepted, 0);
    }
}
