//! Multi-scalar multiplication with 128-bit scalars (Pippenger's bucket
//! method), used by every batched pairing check.
//!
//! `bls12_381_plus` offers no multi-exponentiation, so this is a plain
//! implementation over its projective types. It is variable time: it only ever
//! sees public points and public (Fiat–Shamir) weights.

use alloc::vec;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective, G2Affine, G2Projective};

/// The group operations the bucket method needs.
pub(crate) trait MsmGroup: Copy {
    /// Affine points (cheaper mixed addition).
    type Affine: Copy;
    const IDENTITY: Self;
    fn add_affine(&self, p: &Self::Affine) -> Self;
    fn add(&self, q: &Self) -> Self;
    fn double(&self) -> Self;
}

impl MsmGroup for G1Projective {
    type Affine = G1Affine;
    const IDENTITY: Self = G1Projective::IDENTITY;
    fn add_affine(&self, p: &G1Affine) -> Self {
        self.add_mixed(p)
    }
    fn add(&self, q: &Self) -> Self {
        G1Projective::add(self, q)
    }
    fn double(&self) -> Self {
        G1Projective::double(self)
    }
}

impl MsmGroup for G2Projective {
    type Affine = G2Affine;
    const IDENTITY: Self = G2Projective::IDENTITY;
    fn add_affine(&self, p: &G2Affine) -> Self {
        self.add_mixed(p)
    }
    fn add(&self, q: &Self) -> Self {
        G2Projective::add(self, q)
    }
    fn double(&self) -> Self {
        G2Projective::double(self)
    }
}

/// Window width minimising `windows * (points + 2 * buckets)` point additions.
fn window_bits(points: usize) -> u32 {
    let mut best = (usize::MAX, 1u32);
    for c in 1u32..=16 {
        let windows = 128usize.div_ceil(c as usize);
        let cost = windows.saturating_mul(points.saturating_add(2usize << c));
        if cost < best.0 {
            best = (cost, c);
        }
    }
    best.1
}

/// `sum_k scalars[k] * bases[k]`. Extra bases or scalars beyond the shorter
/// list are ignored (callers pass equal lengths).
pub(crate) fn msm_u128<G: MsmGroup>(bases: &[G::Affine], scalars: &[u128]) -> G {
    let len = bases.len().min(scalars.len());
    if len == 0 {
        return G::IDENTITY;
    }
    let c = window_bits(len);
    let mask = (1u128 << c) - 1;
    let windows = 128u32.div_ceil(c);
    let mut buckets: Vec<Option<G>> = vec![None; 1usize << c];
    let mut acc = G::IDENTITY;

    for w in (0..windows).rev() {
        // Shift the running sum up by one window.
        if w != windows - 1 {
            for _ in 0..c {
                acc = acc.double();
            }
        }
        buckets.iter_mut().for_each(|b| *b = None);
        let shift = w * c;
        for (base, scalar) in bases[..len].iter().zip(&scalars[..len]) {
            // Digits are < 2^c <= 2^16, so the cast is lossless.
            let digit = ((scalar >> shift) & mask) as usize;
            if digit != 0 {
                let slot = &mut buckets[digit];
                *slot = Some(match slot {
                    Some(b) => b.add_affine(base),
                    None => G::IDENTITY.add_affine(base),
                });
            }
        }
        // sum_d d * bucket[d] via running suffix sums.
        let mut running = G::IDENTITY;
        let mut window_sum = G::IDENTITY;
        let mut any = false;
        for b in buckets.iter().skip(1).rev() {
            if let Some(b) = b {
                running = running.add(b);
                any = true;
            }
            if any {
                window_sum = window_sum.add(&running);
            }
        }
        acc = acc.add(&window_sum);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use bls12_381_plus::Scalar;

    fn naive_g1(bases: &[G1Affine], scalars: &[u128]) -> G1Projective {
        bases
            .iter()
            .zip(scalars)
            .map(|(b, s)| G1Projective::from(b) * Scalar::from(*s))
            .fold(G1Projective::IDENTITY, |a, b| a + b)
    }

    #[test]
    fn matches_naive() {
        let g = G1Projective::GENERATOR;
        for len in [0usize, 1, 2, 3, 17, 70] {
            let bases: Vec<G1Affine> = (0..len)
                .map(|k| G1Affine::from(g * Scalar::from(k as u64 + 3)))
                .collect();
            let scalars: Vec<u128> = (0..len)
                .map(|k| {
                    (k as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                        | (1u128 << 127)
                })
                .collect();
            assert_eq!(
                msm_u128::<G1Projective>(&bases, &scalars),
                naive_g1(&bases, &scalars)
            );
        }
        // Zero and one scalars, repeated bases.
        let bases = [G1Affine::generator(); 4];
        let scalars = [0u128, 1, u128::MAX, 5];
        assert_eq!(
            msm_u128::<G1Projective>(&bases, &scalars),
            naive_g1(&bases, &scalars)
        );
    }

    #[test]
    fn g2_matches_naive() {
        let g = G2Projective::GENERATOR;
        let bases: Vec<G2Affine> = (0..9)
            .map(|k| G2Affine::from(g * Scalar::from(k as u64 + 1)))
            .collect();
        let scalars: Vec<u128> = (0..9).map(|k| u128::MAX / (k + 2)).collect();
        let naive = bases
            .iter()
            .zip(&scalars)
            .map(|(b, s)| G2Projective::from(b) * Scalar::from(*s))
            .fold(G2Projective::IDENTITY, |a, b| a + b);
        assert_eq!(msm_u128::<G2Projective>(&bases, &scalars), naive);
    }
}
