//! Multi-scalar multiplication with 128-bit scalars (Pippenger's bucket
//! method), used by every batched pairing check.
//!
//! `bls12_381_plus` offers no multi-exponentiation with short scalars, so
//! this is our own: [`msm_u128`] over the library's projective types (G2, and
//! short G1 lists), and [`msm_g1`] for long G1 lists, which accumulates the
//! buckets in affine coordinates with batched inversions. Both use signed
//! digits. Variable time: they only ever see public points and public
//! (Fiat–Shamir) weights.

use alloc::vec;
use alloc::vec::Vec;

use bls12_381_plus::fp::Fp;
use bls12_381_plus::{G1Affine, G1Projective, G2Affine, G2Projective};

use crate::g1_decode::Jacobian;

/// The group operations the bucket method needs.
pub(crate) trait MsmGroup: Copy {
    /// Affine points (cheaper mixed addition).
    type Affine: Copy;
    const IDENTITY: Self;
    fn add_affine(&self, p: &Self::Affine) -> Self;
    fn add(&self, q: &Self) -> Self;
    fn double(&self) -> Self;
    fn neg_affine(p: &Self::Affine) -> Self::Affine;
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
    fn neg_affine(p: &G1Affine) -> G1Affine {
        -p
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
    fn neg_affine(p: &G2Affine) -> G2Affine {
        -p
    }
}

/// Window width minimising `windows * (points + 2 * buckets)` point additions
/// with signed digits (`2^(c-1)` buckets, one window more for the carry).
fn window_bits(points: usize) -> u32 {
    let mut best = (usize::MAX, 1u32);
    for c in 1u32..=16 {
        let windows = signed_windows(c) as usize;
        let cost = windows.saturating_mul(points.saturating_add(2usize << (c - 1)));
        if cost < best.0 {
            best = (cost, c);
        }
    }
    best.1
}

/// Number of signed `c`-bit digits of a 128-bit scalar: the top one holds
/// only the final carry.
fn signed_windows(c: u32) -> u32 {
    128u32.div_ceil(c) + 1
}

/// The scalar in signed base `2^c`: `scalar = sum_w d_w 2^(c w)` with every
/// `d_w` in `[-2^(c-1), 2^(c-1)]`, written into `out` (`signed_windows(c)`
/// digits, least significant first).
fn signed_digits(scalar: u128, c: u32, out: &mut [i32]) {
    let mask = (1u128 << c) - 1;
    let half = 1i64 << (c - 1);
    let full = 1i64 << c;
    let mut carry = 0i64;
    for (w, d) in out.iter_mut().enumerate() {
        let shift = (w as u32) * c;
        // Digits are < 2^c <= 2^16, so the casts are lossless.
        let raw = if shift < 128 {
            ((scalar >> shift) & mask) as i64
        } else {
            0
        } + carry;
        if raw > half {
            *d = (raw - full) as i32;
            carry = 1;
        } else {
            *d = raw as i32;
            carry = 0;
        }
    }
}

/// `sum_k scalars[k] * bases[k]`. Extra bases or scalars beyond the shorter
/// list are ignored (callers pass equal lengths).
///
/// Pippenger's bucket method with signed digits: a digit `d < 0` adds `-base`
/// to bucket `|d|`, which halves the buckets (negating an affine point is
/// free).
pub(crate) fn msm_u128<G: MsmGroup>(bases: &[G::Affine], scalars: &[u128]) -> G {
    let len = bases.len().min(scalars.len());
    if len == 0 {
        return G::IDENTITY;
    }
    let c = window_bits(len);
    let windows = signed_windows(c) as usize;
    let mut digits = vec![0i32; len * windows];
    for (scalar, out) in scalars[..len].iter().zip(digits.chunks_exact_mut(windows)) {
        signed_digits(*scalar, c, out);
    }
    let mut buckets: Vec<Option<G>> = vec![None; 1usize << (c - 1)];
    let mut acc = G::IDENTITY;

    for w in (0..windows).rev() {
        // Shift the running sum up by one window.
        if w != windows - 1 {
            for _ in 0..c {
                acc = acc.double();
            }
        }
        buckets.iter_mut().for_each(|b| *b = None);
        for (base, ds) in bases[..len].iter().zip(digits.chunks_exact(windows)) {
            let digit = ds[w];
            if digit == 0 {
                continue;
            }
            let point = if digit < 0 {
                G::neg_affine(base)
            } else {
                *base
            };
            let slot = &mut buckets[digit.unsigned_abs() as usize - 1];
            *slot = Some(match slot {
                Some(b) => b.add_affine(&point),
                None => G::IDENTITY.add_affine(&point),
            });
        }
        // sum_d d * bucket[d] via running suffix sums.
        let mut running = G::IDENTITY;
        let mut window_sum = G::IDENTITY;
        let mut any = false;
        for b in buckets.iter().rev() {
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

/// Below this many points [`msm_g1`] uses the projective [`msm_u128`] (the
/// affine method's batched inversions do not pay off).
const AFFINE_MSM_MIN_POINTS: usize = 32;

/// `sum_k scalars[k] * bases[k]` in G1, like [`msm_u128`] but faster for
/// long lists: the bucket sums are accumulated in affine coordinates, every
/// bucket of every window at once, by rounds of pairwise additions whose
/// denominators share one field inversion (Montgomery's trick): about 5
/// multiplications per addition instead of the ~12 of a projective mixed
/// addition. The additions are exact for all inputs (equal points double,
/// opposite points cancel). Window sums and the final combination run in
/// Jacobian coordinates. Variable time (public inputs only).
pub(crate) fn msm_g1(bases: &[G1Affine], scalars: &[u128]) -> G1Projective {
    let len = bases.len().min(scalars.len());
    if len < AFFINE_MSM_MIN_POINTS {
        return msm_u128::<G1Projective>(&bases[..len], &scalars[..len]);
    }
    // Window width: additions cost ~6 multiplications per point and window,
    // the running sums ~28 per bucket and window.
    let c = (2u32..=10)
        .min_by_key(|&c| signed_windows(c) as usize * (6 * len + 28 * (1usize << (c - 1))))
        .unwrap_or(5);
    let windows = signed_windows(c) as usize;
    let per_window = 1usize << (c - 1);
    let keys = windows * per_window;

    // Affine coordinates of the bases (the identity contributes nothing).
    let coords: Vec<Option<(Fp, Fp)>> = bases[..len].iter().map(affine_coords).collect();
    let mut digits = vec![0i32; len * windows];
    for (scalar, out) in scalars[..len].iter().zip(digits.chunks_exact_mut(windows)) {
        signed_digits(*scalar, c, out);
    }
    // Counting sort of the (window, bucket) entries.
    let key_of = |w: usize, d: i32| w * per_window + d.unsigned_abs() as usize - 1;
    let mut start = vec![0usize; keys + 1];
    for (point, ds) in coords.iter().zip(digits.chunks_exact(windows)) {
        if point.is_some() {
            for (w, &d) in ds.iter().enumerate() {
                if d != 0 {
                    start[key_of(w, d) + 1] += 1;
                }
            }
        }
    }
    for k in 0..keys {
        start[k + 1] += start[k];
    }
    let mut fill = start.clone();
    let mut entries = vec![(Fp::ZERO, Fp::ZERO); start[keys]];
    for (point, ds) in coords.iter().zip(digits.chunks_exact(windows)) {
        let Some((x, y)) = point else { continue };
        for (w, &d) in ds.iter().enumerate() {
            if d != 0 {
                let k = key_of(w, d);
                entries[fill[k]] = (*x, if d < 0 { -y } else { *y });
                fill[k] += 1;
            }
        }
    }
    let mut lens: Vec<usize> = (0..keys).map(|k| start[k + 1] - start[k]).collect();

    // Rounds of pairwise additions inside every bucket until each holds at
    // most one point.
    let mut denominators: Vec<Fp> = Vec::new();
    let mut inverses: Vec<Fp> = Vec::new();
    loop {
        denominators.clear();
        for k in 0..keys {
            let base = start[k];
            for p in 0..lens[k] / 2 {
                let (xa, ya) = entries[base + 2 * p];
                let (xb, yb) = entries[base + 2 * p + 1];
                if xa != xb {
                    denominators.push(xb - xa);
                } else if ya == yb {
                    denominators.push(ya.double());
                }
                // Same x, opposite y: they cancel, nothing to invert.
            }
        }
        if lens.iter().all(|&l| l < 2) {
            break;
        }
        batch_invert(&denominators, &mut inverses);
        let mut next_inverse = inverses.iter();
        for k in 0..keys {
            let base = start[k];
            let n = lens[k];
            let mut out = 0;
            for p in 0..n / 2 {
                let (xa, ya) = entries[base + 2 * p];
                let (xb, yb) = entries[base + 2 * p + 1];
                let lambda = if xa != xb {
                    next_inverse.next().map(|inv| (yb - ya) * inv)
                } else if ya == yb {
                    let xx = xa.square();
                    next_inverse.next().map(|inv| (xx.double() + xx) * inv)
                } else {
                    None
                };
                if let Some(lambda) = lambda {
                    let x3 = lambda.square() - xa - xb;
                    let y3 = lambda * (xa - x3) - ya;
                    entries[base + out] = (x3, y3);
                    out += 1;
                }
            }
            if n % 2 == 1 {
                entries[base + out] = entries[base + n - 1];
                out += 1;
            }
            lens[k] = out;
        }
    }

    // sum_w 2^(c w) sum_d d * bucket(w, d), in Jacobian coordinates.
    let mut acc = Jacobian::INFINITY;
    for w in (0..windows).rev() {
        for _ in 0..c {
            acc = acc.double();
        }
        let mut running = Jacobian::INFINITY;
        let mut window_sum = Jacobian::INFINITY;
        for d in (0..per_window).rev() {
            let k = w * per_window + d;
            if lens[k] == 1 {
                let (x, y) = entries[start[k]];
                running = running.add(&Jacobian::from_affine(&x, &y));
            }
            window_sum = window_sum.add(&running);
        }
        acc = acc.add(&window_sum);
    }
    acc.to_affine()
        .map_or(G1Projective::IDENTITY, G1Projective::from)
}

/// The affine coordinates of a finite point.
fn affine_coords(p: &G1Affine) -> Option<(Fp, Fp)> {
    if bool::from(p.is_identity()) {
        return None;
    }
    let bytes = p.to_uncompressed();
    let mut x = [0u8; 48];
    let mut y = [0u8; 48];
    x.copy_from_slice(&bytes[..48]);
    y.copy_from_slice(&bytes[48..]);
    Some((
        Option::from(Fp::from_bytes(&x))?,
        Option::from(Fp::from_bytes(&y))?,
    ))
}

/// `out[i] = 1 / values[i]` for nonzero values (Montgomery's trick: one
/// inversion). A zero value (never passed) would make every output zero.
fn batch_invert(values: &[Fp], out: &mut Vec<Fp>) {
    out.clear();
    let mut running = Fp::ONE;
    for v in values {
        out.push(running);
        running *= v;
    }
    let mut inv: Fp = Option::from(running.invert()).unwrap_or(Fp::ZERO);
    for (o, v) in out.iter_mut().zip(values).rev() {
        *o *= inv;
        inv *= v;
    }
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
        // Digits at the signed-digit boundaries (2^(c-1), all ones, carries
        // into the top window) for every window width the sizes pick.
        for len in [1usize, 2, 5, 40, 255, 600] {
            let bases: Vec<G1Affine> = (0..len)
                .map(|k| G1Affine::from(g * Scalar::from(k as u64 + 11)))
                .collect();
            let patterns = [
                u128::MAX,
                u128::MAX >> 1,
                1u128 << 127,
                0x8080_8080_8080_8080_8080_8080_8080_8080,
                0x5555_5555_5555_5555_5555_5555_5555_5555,
                0xaaaa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaa,
                0x2020_2020_2020_2020_2020_2020_2020_2020,
                1,
            ];
            let scalars: Vec<u128> = (0..len).map(|k| patterns[k % patterns.len()]).collect();
            assert_eq!(
                msm_u128::<G1Projective>(&bases, &scalars),
                naive_g1(&bases, &scalars),
                "len {len}"
            );
        }
        assert_eq!(
            msm_u128::<G1Projective>(&bases, &scalars),
            naive_g1(&bases, &scalars)
        );
    }

    /// The affine-bucket MSM against the naive sum: long and short lists,
    /// repeated and opposite bases (equal points double, opposite ones
    /// cancel inside a bucket), identity bases, zero and boundary scalars.
    #[test]
    fn affine_g1_matches_naive() {
        let g = G1Projective::GENERATOR;
        for len in [0usize, 1, 31, 32, 33, 100, 255, 700] {
            let bases: Vec<G1Affine> = (0..len)
                .map(|k| G1Affine::from(g * Scalar::from(k as u64 * 7919 + 3)))
                .collect();
            let scalars: Vec<u128> = (0..len)
                .map(|k| (k as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
                .collect();
            assert_eq!(
                msm_g1(&bases, &scalars),
                naive_g1(&bases, &scalars),
                "len {len}"
            );
        }
        let p = G1Affine::from(g * Scalar::from(5u64));
        let q = G1Affine::from(g * Scalar::from(9u64));
        let mut bases = vec![p; 40];
        bases.extend([-p; 40]);
        bases.extend([q; 20]);
        bases.extend([G1Affine::identity(); 5]);
        let patterns = [
            1u128,
            u128::MAX,
            1 << 127,
            0,
            0x8080_8080_8080_8080_8080_8080_8080_8080,
        ];
        for shift in 0..patterns.len() {
            let scalars: Vec<u128> = (0..bases.len())
                .map(|k| patterns[(k + shift) % patterns.len()])
                .collect();
            assert_eq!(msm_g1(&bases, &scalars), naive_g1(&bases, &scalars));
            let same = vec![patterns[shift]; bases.len()];
            assert_eq!(msm_g1(&bases, &same), naive_g1(&bases, &same));
        }
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
