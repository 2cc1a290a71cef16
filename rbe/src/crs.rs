//! The common reference string: punctured powers of a secret `z`.
//!
//! `h_t = z^t * G1` for `t` in `[1, 2n]` except `t = n + 1`, and
//! `hh_t = z^t * G2` for `t` in `[1, n]`. The punctured power `z^(n+1)` is never
//! computed, as a scalar or as a point: whoever has `z^(n+1) * G1` can decrypt
//! every ciphertext and forge openings.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use bls12_381_plus::{
    G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Gt, Scalar, multi_miller_loop,
    pairing,
};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::encoding::{Codec, G1_LEN, G2_LEN, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::{CrsError, Group};
use crate::msm::msm_u128;
use crate::params::Dimensions;
use crate::transcript::{DOMAIN_CRS_WEIGHTS, Transcript, expand_weights};

/// The CRS for one capacity. Immutable; cheap accessors; carries its digest,
/// `Z = e(h_1, hh_n)` and the prepared G2 generator so that hot paths do not
/// recompute them.
#[derive(Clone)]
pub struct Crs {
    dims: Dimensions,
    /// `h_1 .. h_n, h_(n+2) .. h_(2n)`: 2n - 1 points.
    g1: Vec<G1Affine>,
    /// `hh_1 .. hh_n`: n points.
    g2: Vec<G2Affine>,
    digest: [u8; 32],
    z_gt: Gt,
    g2_generator: G2Prepared,
}

impl fmt::Debug for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crs")
            .field("capacity", &self.dims.capacity())
            .field("block_size", &self.dims.block_size())
            .field("digest", &Hex(&self.digest))
            .finish_non_exhaustive()
    }
}

/// Lowercase hex for Debug output.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl PartialEq for Crs {
    fn eq(&self, other: &Self) -> bool {
        self.dims == other.dims && self.g1 == other.g1 && self.g2 == other.g2
    }
}

impl Eq for Crs {}

/// Scalar multiples `s^t * G` for the CRS exponents `t` in `[1, 2n]` except
/// `n + 1`, in storage order, calling `emit(t, s^t)`. `s^(n+2)` is formed as
/// `s^n * s^2`, so `s^(n+1)` is never computed (n >= 2, see
/// [`crate::params::MIN_CAPACITY`], so `s^2` is not it either). Temporaries
/// are zeroized.
fn for_each_punctured_power(s: &Scalar, n: u32, mut emit: impl FnMut(u32, &Scalar)) {
    let s2 = Zeroizing::new(s.square());
    let mut cur = Zeroizing::new(*s);
    for t in 1..=n {
        emit(t, &cur);
        if t < n {
            *cur *= s;
        }
    }
    // cur = s^n; jump over the punctured power.
    *cur *= &*s2;
    for t in (n + 2)..=(2 * n) {
        emit(t, &cur);
        if t < 2 * n {
            *cur *= s;
        }
    }
}

impl Crs {
    /// **DEVELOPMENT ONLY — INSECURE.** A CRS whose toxic waste `z` was known,
    /// however briefly, to this one process: whoever can read its memory (or
    /// whoever runs it) can decrypt every ciphertext and forge any opening.
    /// Production CRSs come from a multi-party ceremony in which one honest
    /// contributor suffices. `z` is zeroized before returning and `z^(n+1)` is
    /// never computed.
    pub fn generate_insecure_dev<R: RngCore + CryptoRng>(
        capacity: u32,
        rng: &mut R,
    ) -> Result<Self, CrsError> {
        let dims = Dimensions::for_capacity(capacity)?;
        let z = Zeroizing::new(random_nonzero_scalar(rng));
        Ok(Self::from_secret(
            dims,
            &z,
            &G1Projective::GENERATOR,
            &G2Projective::GENERATOR,
        ))
    }

    /// The arithmetic of one ceremony contribution: multiply element `t` by
    /// `s^t` (so the secret becomes `z * s`). The contributor must forget `s`.
    /// This alone proves nothing to others; a ceremony contribution with its
    /// update proof is [`crate::ceremony::Transcript::contribute`], which
    /// calls this.
    pub fn update(&self, s: &Scalar) -> Result<Self, CrsError> {
        if *s == Scalar::ZERO {
            return Err(CrsError::ZeroUpdate);
        }
        let n = self.dims.block_size();
        let mut g1 = vec![G1Projective::IDENTITY; self.g1.len()];
        let mut g2 = vec![G2Projective::IDENTITY; self.g2.len()];
        let mut k = 0usize;
        for_each_punctured_power(s, n, |t, st| {
            if let (Some(out), Some(h)) = (g1.get_mut(k), self.g1.get(k)) {
                *out = G1Projective::from(h) * st;
            }
            if let (true, Some(out), Some(hh)) = (t <= n, g2.get_mut(k), self.g2.get(k)) {
                *out = G2Projective::from(hh) * st;
            }
            k += 1;
        });
        Ok(Self::from_projective(self.dims, &g1, &g2))
    }

    /// Elements `z^t * g1` and `z^t * g2` for the punctured exponent set.
    fn from_secret(
        dims: Dimensions,
        z: &Scalar,
        g1_base: &G1Projective,
        g2_base: &G2Projective,
    ) -> Self {
        let n = dims.block_size();
        let mut g1 = Vec::with_capacity(2 * n as usize - 1);
        let mut g2 = Vec::with_capacity(n as usize);
        for_each_punctured_power(z, n, |t, zt| {
            g1.push(g1_base * zt);
            if t <= n {
                g2.push(g2_base * zt);
            }
        });
        Self::from_projective(dims, &g1, &g2)
    }

    fn from_projective(dims: Dimensions, g1: &[G1Projective], g2: &[G2Projective]) -> Self {
        let mut a1 = vec![G1Affine::identity(); g1.len()];
        G1Projective::batch_normalize(g1, &mut a1);
        let mut a2 = vec![G2Affine::identity(); g2.len()];
        G2Projective::batch_normalize(g2, &mut a2);
        Self::from_parts(dims, a1, a2)
    }

    /// The public starting point of a ceremony: every element is its group's
    /// generator, i.e. the powers of the secret `z = 1`. It publishes the
    /// punctured power (`G1` itself), so [`Crs::verify`] refuses it; only a
    /// contribution on top of it makes a usable CRS.
    pub(crate) fn ceremony_start(dims: Dimensions) -> Self {
        let n = dims.block_size() as usize;
        Self::from_parts(
            dims,
            vec![G1Affine::generator(); 2 * n - 1],
            vec![G2Affine::generator(); n],
        )
    }

    /// Assemble and compute the cached values. Does not verify.
    fn from_parts(dims: Dimensions, g1: Vec<G1Affine>, g2: Vec<G2Affine>) -> Self {
        let h1 = g1.first().copied().unwrap_or_else(G1Affine::identity);
        let hhn = g2.last().copied().unwrap_or_else(G2Affine::identity);
        let mut crs = Self {
            dims,
            g1,
            g2,
            digest: [0; 32],
            z_gt: pairing(&h1, &hhn),
            g2_generator: G2Prepared::from(G2Affine::generator()),
        };
        crs.digest = Sha256::digest(crs.to_bytes()).into();
        crs
    }

    /// Write the elements only (no header, capacity or block size): the
    /// ceremony transcript stores many CRSs of one capacity.
    pub(crate) fn write_elements(&self, w: &mut Writer) {
        for p in &self.g1 {
            w.g1(p);
        }
        for p in &self.g2 {
            w.g2(p);
        }
    }

    /// Read the `2n - 1` G1 and `n` G2 elements of a CRS of dimensions `dims`
    /// (each subgroup-checked, identity refused). Does not verify the powers.
    pub(crate) fn read_elements(dims: Dimensions, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let nu = dims.block_size() as usize;
        let need = Self::elements_len(dims);
        if r.remaining() < need {
            return Err(DecodeError::Truncated {
                field: "crs elements",
                needed: need - r.remaining(),
            });
        }
        let mut g1 = Vec::with_capacity(2 * nu - 1);
        for _ in 0..(2 * nu - 1) {
            g1.push(r.g1_nonzero("crs g1 element")?);
        }
        let mut g2 = Vec::with_capacity(nu);
        for _ in 0..nu {
            g2.push(r.g2_nonzero("crs g2 element")?);
        }
        Ok(Self::from_parts(dims, g1, g2))
    }

    /// A copy with one G1 and/or G2 element replaced (by storage index), for
    /// tests that need a CRS no honest code path produces.
    #[cfg(test)]
    pub(crate) fn with_elements_replaced(
        &self,
        g1: Option<(usize, G1Affine)>,
        g2: Option<(usize, G2Affine)>,
    ) -> Self {
        let mut a = self.g1.clone();
        let mut b = self.g2.clone();
        if let Some((k, p)) = g1 {
            a[k] = p;
        }
        if let Some((k, p)) = g2 {
            b[k] = p;
        }
        Self::from_parts(self.dims, a, b)
    }

    /// Encoded size of the elements alone (see [`Crs::write_elements`]).
    pub(crate) fn elements_len(dims: Dimensions) -> usize {
        let nu = dims.block_size() as usize;
        (2 * nu - 1) * G1_LEN + nu * G2_LEN
    }

    /// Capacity, block size and block count.
    pub fn dimensions(&self) -> Dimensions {
        self.dims
    }

    /// Capacity N.
    pub fn capacity(&self) -> u32 {
        self.dims.capacity()
    }

    /// Block size n.
    pub fn block_size(&self) -> u32 {
        self.dims.block_size()
    }

    /// SHA-256 of the canonical encoding; binds registrations, proofs and
    /// ciphertexts to this CRS.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// `h_t = z^t * G1`, for `t` in `[1, 2n]`, `t != n + 1`; `None` otherwise
    /// (in particular always `None` for the punctured power).
    pub fn h(&self, t: u32) -> Option<&G1Affine> {
        let n = self.dims.block_size();
        let index = match t {
            0 => return None,
            t if t <= n => t - 1,
            t if t == n + 1 => return None,
            t => t - 2,
        };
        self.g1.get(index as usize)
    }

    /// `hh_t = z^t * G2`, for `t` in `[1, n]`; `None` otherwise.
    pub fn hh(&self, t: u32) -> Option<&G2Affine> {
        t.checked_sub(1).and_then(|i| self.g2.get(i as usize))
    }

    /// `Z = e(h_1, hh_n) = e(G1, G2)^(z^(n+1))`.
    pub(crate) fn z_gt(&self) -> &Gt {
        &self.z_gt
    }

    /// The G2 generator, prepared for Miller loops.
    pub(crate) fn g2_generator(&self) -> &G2Prepared {
        &self.g2_generator
    }

    /// Check, without `z`, that the elements are consecutive powers of one
    /// nonzero secret in both groups. Deterministic (Fiat–Shamir weights from
    /// the digest); cost: MSMs over ~3n G1 and n G2 points with 128-bit
    /// weights, one 4-term Miller loop, one final exponentiation.
    ///
    /// Individual equations, each folded into one product with its own weight:
    /// * `e(h_t, hh_1) = e(h_(t+1), G2)` for consecutive published pairs
    ///   (`t` in `[1, n-1]` and `[n+2, 2n-1]`),
    /// * `e(h_n, hh_2) = e(h_(n+2), G2)`, bridging the gap at `n + 1`,
    /// * `e(h_t, G2) = e(G1, hh_t)` for `t` in `[1, n]` (G2 chain pinned to G1).
    ///
    /// With `h_1 = z * G1` these force `h_t = z^t * G1` and `hh_t = z^t * G2`.
    /// If any equation fails, the weighted product is one only with
    /// probability at most 2^-128 per attempt (the weights are a random oracle
    /// of the whole CRS). It cannot detect a `z` known to someone: that is
    /// what the ceremony is for.
    pub fn verify(&self) -> Result<(), CrsError> {
        let n = self.dims.block_size();
        let nu = n as usize;
        if self.g1.len() != 2 * nu - 1 {
            return Err(CrsError::WrongLength {
                group: Group::G1,
                expected: 2 * nu - 1,
                found: self.g1.len(),
            });
        }
        if self.g2.len() != nu {
            return Err(CrsError::WrongLength {
                group: Group::G2,
                expected: nu,
                found: self.g2.len(),
            });
        }
        for (k, p) in self.g1.iter().enumerate() {
            if bool::from(p.is_identity()) {
                let power = if k < nu { k + 1 } else { k + 2 };
                return Err(CrsError::IdentityElement {
                    group: Group::G1,
                    power: power as u32,
                });
            }
        }
        for (k, p) in self.g2.iter().enumerate() {
            if bool::from(p.is_identity()) {
                return Err(CrsError::IdentityElement {
                    group: Group::G2,
                    power: k as u32 + 1,
                });
            }
        }
        // n >= 2 by construction of `Dimensions`; checked again so that the
        // indexing below can never panic.
        if nu < 2 {
            return Err(CrsError::CapacityOutOfRange(u64::from(
                self.dims.capacity(),
            )));
        }
        if self.g1[0] == G1Affine::generator() {
            return Err(CrsError::TrivialSecret);
        }

        // Consecutive published pairs (h_t, h_(t+1)) in storage order:
        // h_1..h_n are g1[0..n], h_(n+2)..h_(2n) are g1[n..2n-1].
        let mut left: Vec<G1Affine> = Vec::with_capacity(2 * nu);
        let mut right: Vec<G1Affine> = Vec::with_capacity(2 * nu);
        for k in (0..nu - 1).chain(nu..2 * nu - 2) {
            left.push(self.g1[k]);
            right.push(self.g1[k + 1]);
        }
        let pairs = left.len();

        // Weights: one per pair, one for the bridge, one per cross check.
        let mut t = Transcript::new(DOMAIN_CRS_WEIGHTS);
        t.append(b"crs", &self.digest);
        let weights = expand_weights(&t.finish(), pairs + 1 + nu);
        let (w_pairs, rest) = weights.split_at(pairs);
        let (w_bridge, w_cross) = rest.split_at(1);

        // Pairs: e(sum w h_t, hh_1) * e(-sum w h_(t+1), G2).
        // Bridge: e(w_b h_n, hh_2) * e(-w_b h_(n+2), G2); its right element
        // joins the G2-side sum.
        // Cross: e(sum v h_t, G2) * e(-G1, sum v hh_t).
        let a = G1Affine::from(msm_u128::<G1Projective>(&left, w_pairs));
        right.push(self.g1[nu]);
        let mut right_weights = w_pairs.to_vec();
        right_weights.extend_from_slice(w_bridge);
        let b = msm_u128::<G1Projective>(&right, &right_weights);
        let bridge = G1Affine::from(msm_u128::<G1Projective>(&self.g1[nu - 1..nu], w_bridge));
        let v = msm_u128::<G1Projective>(&self.g1[..nu], w_cross);
        let w = msm_u128::<G2Projective>(&self.g2, w_cross);

        let v_minus_b = G1Affine::from(v - b);
        let neg_g1 = -G1Affine::generator();
        let w = G2Prepared::from(G2Affine::from(w));
        let hh1 = G2Prepared::from(self.g2[0]);
        let hh2 = G2Prepared::from(self.g2[1]);
        let terms = [
            (&a, &hh1),
            (&bridge, &hh2),
            (&v_minus_b, &self.g2_generator),
            (&neg_g1, &w),
        ];
        if multi_miller_loop(&terms).final_exponentiation() == Gt::IDENTITY {
            Ok(())
        } else {
            Err(CrsError::NotPowers)
        }
    }
}

/// A uniformly random nonzero scalar (512 bits reduced: bias ~2^-256).
pub(crate) fn random_nonzero_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
    loop {
        let mut wide = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(&mut *wide);
        let s = Scalar::from_bytes_wide(&wide);
        if s != Scalar::ZERO {
            return s;
        }
    }
}

impl Codec for Crs {
    const MAGIC: [u8; 4] = *b"RBEC";

    fn write(&self, w: &mut Writer) {
        w.dimensions(self.dims);
        self.write_elements(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let dims = r.dimensions()?;
        Self::read_elements(dims, r)
    }
}

impl_canonical!(Crs);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Canonical;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn crs(capacity: u32) -> Crs {
        Crs::generate_insecure_dev(capacity, &mut ChaCha20Rng::seed_from_u64(1)).unwrap()
    }

    #[test]
    fn generated_is_powers_and_verifies() {
        for capacity in [2u32, 3, 4, 5, 10, 16, 17, 50] {
            let c = crs(capacity);
            let n = c.block_size();
            assert_eq!(c.g1.len(), 2 * n as usize - 1);
            assert_eq!(c.g2.len(), n as usize);
            assert!(c.h(n + 1).is_none());
            assert!(c.h(0).is_none() && c.h(2 * n + 1).is_none());
            assert!(c.hh(0).is_none() && c.hh(n + 1).is_none());
            c.verify()
                .unwrap_or_else(|e| panic!("capacity {capacity}: {e}"));
        }
    }

    #[test]
    fn known_secret_matches() {
        // Build from a known z and compare element-wise with direct powers.
        let dims = Dimensions::for_capacity(9).unwrap();
        let z = Scalar::from(7u64);
        let c = Crs::from_secret(dims, &z, &G1Projective::GENERATOR, &G2Projective::GENERATOR);
        for t in (1..=6u32).filter(|t| *t != 4) {
            let zt = z.pow_vartime(&[u64::from(t), 0, 0, 0]);
            assert_eq!(
                *c.h(t).unwrap(),
                G1Affine::from(G1Projective::GENERATOR * zt)
            );
            if t <= 3 {
                assert_eq!(
                    *c.hh(t).unwrap(),
                    G2Affine::from(G2Projective::GENERATOR * zt)
                );
            }
        }
        let z4 = z.pow_vartime(&[4, 0, 0, 0]);
        assert_eq!(
            *c.z_gt(),
            pairing(&G1Affine::generator(), &G2Affine::generator()) * z4
        );
    }

    #[test]
    fn update_keeps_structure() {
        let c = crs(20);
        let u = c.update(&Scalar::from(12345u64)).unwrap();
        u.verify().unwrap();
        assert_ne!(u.digest(), c.digest());
        assert_eq!(
            *u.h(1).unwrap(),
            G1Affine::from(G1Projective::from(c.h(1).unwrap()) * Scalar::from(12345u64))
        );
        assert_eq!(c.update(&Scalar::ZERO), Err(CrsError::ZeroUpdate));
    }

    #[test]
    fn rejects_swapped_element() {
        let mut c = crs(16);
        c.g1.swap(2, 3);
        assert_eq!(c.verify(), Err(CrsError::NotPowers));
        let mut c = crs(16);
        c.g2.swap(0, 1);
        assert_eq!(c.verify(), Err(CrsError::NotPowers));
        // Swapping across the gap (h_n and h_(n+2)).
        let mut c = crs(16);
        c.g1.swap(3, 4);
        assert_eq!(c.verify(), Err(CrsError::NotPowers));
    }

    #[test]
    fn rejects_each_scaled_element() {
        let base = crs(9); // n = 3: h_1 h_2 h_3 h_5 h_6, hh_1 hh_2 hh_3
        let two = Scalar::from(2u64);
        for k in 0..base.g1.len() {
            let mut c = base.clone();
            c.g1[k] = G1Affine::from(G1Projective::from(c.g1[k]) * two);
            assert_eq!(c.verify(), Err(CrsError::NotPowers), "g1[{k}]");
        }
        for k in 0..base.g2.len() {
            let mut c = base.clone();
            c.g2[k] = G2Affine::from(G2Projective::from(c.g2[k]) * two);
            assert_eq!(c.verify(), Err(CrsError::NotPowers), "g2[{k}]");
        }
    }

    #[test]
    fn rejects_identity_element() {
        let mut c = crs(16);
        c.g1[5] = G1Affine::identity();
        assert_eq!(
            c.verify(),
            Err(CrsError::IdentityElement {
                group: Group::G1,
                power: 7
            })
        );
        let mut c = crs(16);
        c.g2[1] = G2Affine::identity();
        assert_eq!(
            c.verify(),
            Err(CrsError::IdentityElement {
                group: Group::G2,
                power: 2
            })
        );
        // Identity bytes are refused by the decoder as well.
        let c = crs(16);
        let mut bytes = c.to_bytes();
        let off = 5 + 8 + 48 * 2;
        bytes[off..off + 48].copy_from_slice(&G1Affine::identity().to_compressed());
        assert!(matches!(
            Crs::from_bytes(&bytes),
            Err(DecodeError::IdentityPoint { .. })
        ));
    }

    #[test]
    fn rejects_wrong_length() {
        let mut c = crs(16);
        c.g1.pop();
        assert!(matches!(
            c.verify(),
            Err(CrsError::WrongLength {
                group: Group::G1,
                ..
            })
        ));
        let mut c = crs(16);
        c.g2.push(G2Affine::generator());
        assert!(matches!(
            c.verify(),
            Err(CrsError::WrongLength {
                group: Group::G2,
                ..
            })
        ));

        let bytes = crs(16).to_bytes();
        assert!(matches!(
            Crs::from_bytes(&bytes[..bytes.len() - 96]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.extend_from_slice(&G1Affine::generator().to_compressed());
        assert!(matches!(
            Crs::from_bytes(&long),
            Err(DecodeError::TrailingBytes { count: 48 })
        ));
        // A header claiming another block size.
        let mut bad_n = bytes.clone();
        bad_n[12] = 5;
        assert!(matches!(
            Crs::from_bytes(&bad_n),
            Err(DecodeError::Inconsistent(_))
        ));
    }

    #[test]
    fn rejects_trivial_secret() {
        let dims = Dimensions::for_capacity(4).unwrap();
        let c = Crs::from_secret(
            dims,
            &Scalar::ONE,
            &G1Projective::GENERATOR,
            &G2Projective::GENERATOR,
        );
        assert_eq!(c.verify(), Err(CrsError::TrivialSecret));
    }

    #[test]
    fn rejects_mixed_secrets() {
        // G1 powers of one z, G2 powers of another: each chain is consistent
        // on its own; only the cross check catches it.
        let dims = Dimensions::for_capacity(16).unwrap();
        let a = Crs::from_secret(
            dims,
            &Scalar::from(3u64),
            &G1Projective::GENERATOR,
            &G2Projective::GENERATOR,
        );
        let b = Crs::from_secret(
            dims,
            &Scalar::from(5u64),
            &G1Projective::GENERATOR,
            &G2Projective::GENERATOR,
        );
        let mixed = Crs::from_parts(dims, a.g1.clone(), b.g2.clone());
        assert_eq!(mixed.verify(), Err(CrsError::NotPowers));
        // And a gap that does not bridge: h_(n+2).. from another secret.
        let mut g1 = a.g1.clone();
        g1[4..].copy_from_slice(&b.g1[4..]);
        let gap = Crs::from_parts(dims, g1, a.g2.clone());
        assert_eq!(gap.verify(), Err(CrsError::NotPowers));
    }

    #[test]
    fn round_trip_and_digest() {
        let c = crs(30);
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), 5 + 8 + (2 * 6 - 1) * 48 + 6 * 96);
        let back = Crs::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.digest(), c.digest());
        assert_eq!(c.digest(), <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(<Crs as Canonical>::MAGIC, *b"RBEC");
    }
}
