//! The public registration record and its stateless checks.

use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective, Gt, multi_miller_loop};

use crate::WorkloadId;
use crate::crs::Crs;
use crate::encoding::{Codec, G1_LEN, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::RegistrationError;
use crate::msm::{msm_g1, msm_u128};
use crate::params::MAX_CAPACITY;
use crate::pok::{ProofOfKnowledge, Statement};
use crate::transcript::{DOMAIN_HELPER_CHAIN_WEIGHTS, Transcript, expand_weights};

/// A registration that passed [`Registration::into_well_formed`]: every check
/// that needs only the CRS (slot in range, key not the identity, n-1 helpers,
/// proof of knowledge, batched pairing check of the helpers).
///
/// Proof-carrying: its fields are private, so outside this crate the only way
/// to get one is to pass the check. It remembers the digest of the CRS it was
/// checked against, and [`crate::RegistryState::verify_fresh`] refuses it for
/// a state over any other CRS. It says nothing about the registry (slot free,
/// id new): that is `verify_fresh`'s job, against one exact state.
///
/// ```compile_fail
/// # use mazu_rbe::{Registration, WellFormedRegistration};
/// # fn forge(registration: Registration) -> WellFormedRegistration {
/// // Private fields: cannot be built without the check.
/// WellFormedRegistration { registration, crs_digest: [0; 32] }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WellFormedRegistration {
    registration: Registration,
    crs_digest: [u8; 32],
}

impl WellFormedRegistration {
    /// The registration.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The digest of the CRS the checks ran against.
    pub fn crs_digest(&self) -> &[u8; 32] {
        &self.crs_digest
    }

    /// Take the registration back (dropping the evidence of the check).
    pub fn into_inner(self) -> Registration {
        self.registration
    }
}

/// One registration: what the curator's log stores and every auditor replays.
///
/// A plain record: construct it with [`crate::keygen`] or by decoding; nothing
/// about it is trusted until [`Registration::verify_well_formed`] (or
/// [`crate::RegistryState::verify`], which adds the slot and id checks) passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The slot `s`: block `s / n`, position `s mod n + 1`.
    pub slot: u32,
    /// The workload id (in Mazu: SHA-256 of the token).
    pub id: WorkloadId,
    /// `pk = sk * h_i`.
    pub public_key: G1Affine,
    /// `xi_j = sk * h_(n+1+i-j)` for `j` in `[1, n]`, `j != i`, in increasing `j`.
    pub helpers: Vec<G1Affine>,
    /// Proof of knowledge of `sk`.
    pub proof: ProofOfKnowledge,
}

impl Registration {
    /// The helper value this registration contributes to the opening of
    /// `position` (one-based) in its block, given block size `n`. `None` for
    /// its own position, an out-of-range position, or a malformed helper list.
    pub fn helper_for(&self, block_size: u32, position: u32) -> Option<&G1Affine> {
        if block_size == 0 || self.helpers.len() + 1 != block_size as usize {
            return None;
        }
        let own = self.slot % block_size + 1;
        let index = match position {
            0 => return None,
            p if p == own || p > block_size => return None,
            p if p < own => p - 1,
            p => p - 2,
        };
        self.helpers.get(index as usize)
    }

    /// Every check that needs only the CRS (not the registry): slot in range,
    /// key not the identity, n-1 helpers, proof of knowledge, and the batched
    /// helper check. Deterministic, no RNG.
    ///
    /// Helper check: every helper is `xi_j = z^(n+1-j) pk`, checked as a
    /// chain of links `e(xi_j, G2) == e(pred, hh_s)` from each helper to the
    /// next lower power of `z` (`pk` at the bottom), folded with 128-bit
    /// Fiat–Shamir weights into one 3-term pairing product: two G1
    /// multi-scalar multiplications, one Miller loop, one final
    /// exponentiation. Soundness: a registration with any wrong helper
    /// passes with probability at most 2^-128 per hash query (the weights
    /// hash the CRS digest and the *entire* registration encoding, so they
    /// are fixed after every helper); see `helpers_consistent` for the
    /// argument. No verifier randomness is needed, so the check is a pure
    /// function every auditor reproduces.
    pub fn verify_well_formed(&self, crs: &Crs) -> Result<(), RegistrationError> {
        let dims = crs.dimensions();
        let out_of_range = RegistrationError::SlotOutOfRange {
            slot: self.slot,
            capacity: dims.capacity(),
        };
        let pos = dims.locate(self.slot).ok_or(out_of_range.clone())?;
        let n = dims.block_size();
        let i = pos.position;
        if bool::from(self.public_key.is_identity()) {
            return Err(RegistrationError::IdentityPublicKey);
        }
        if self.helpers.len() != n as usize - 1 {
            return Err(RegistrationError::HelperCount {
                expected: n as usize - 1,
                found: self.helpers.len(),
            });
        }
        let base = crs.h(i).ok_or(out_of_range)?;
        let digest = crs.digest();
        let statement = Statement {
            crs_digest: &digest,
            id: &self.id,
            slot: self.slot,
            base,
            public_key: &self.public_key,
        };
        if !self.proof.verify(&statement) {
            return Err(RegistrationError::InvalidProofOfKnowledge);
        }
        if self.helpers_consistent(crs, i) {
            Ok(())
        } else {
            Err(RegistrationError::InvalidHelpers)
        }
    }

    /// [`Registration::verify_well_formed`], keeping the result: on success
    /// the registration comes back as a [`WellFormedRegistration`] bound to
    /// this CRS's digest, which [`crate::RegistryState::verify_fresh`] turns
    /// into a [`crate::VerifiedRegistration`] with only the cheap state checks.
    /// This lets the expensive part run in parallel, ahead of the serialized
    /// state checks, without running it twice.
    pub fn into_well_formed(self, crs: &Crs) -> Result<WellFormedRegistration, RegistrationError> {
        self.verify_well_formed(crs)?;
        Ok(WellFormedRegistration {
            crs_digest: crs.digest(),
            registration: self,
        })
    }

    /// The batched pairing check (see [`Registration::verify_well_formed`]).
    ///
    /// The helpers and the key form one chain of powers of `z` over `pk`:
    /// `xi_j = z^(n+1-j) pk`, so in order of decreasing `j` they are
    /// `pk, z pk, z^2 pk, ..., z^n pk` with exactly the own exponent
    /// `n + 1 - i` missing. Each helper is checked against its predecessor in
    /// that chain (`pred`, the helper of the next larger `j`, or `pk` after
    /// `xi_n`): `e(xi_j, G2) == e(pred, hh_s)` with step `s = 1`, or `s = 2`
    /// for the one helper whose predecessor lies across the missing exponent
    /// (`j = i - 1`). All `n - 1` links are folded with 128-bit weights into
    /// `e(sum_k w_k xi_k, G2) * e(-sum_(s=1) w_k pred_k, hh_1) * e(-w_g pred_g, hh_2) == 1`:
    /// two G1 MSMs, one 3-term Miller loop over G2 points the CRS keeps
    /// prepared, one final exponentiation; no G2 arithmetic per registration.
    ///
    /// Equivalence with the per-helper statement `xi_j = z^(n+1-j) pk` (what
    /// an earlier version checked as `e(sum w_j xi_j, G2) == e(pk, sum w_j
    /// hh_(n+1-j))`): if every link holds (`xi = z^s pred`, the pairing being
    /// non-degenerate on prime-order groups), induction along the chain from
    /// `pk` gives exactly `xi_j = z^(n+1-j) pk` for every `j`; conversely
    /// honest helpers satisfy every link. Batching: write
    /// `D_k = xi_k - z^(s_k) pred_k = d_k G1`; the product is
    /// `e(G1, G2)^(sum_k w_k d_k)`, so it is 1 iff `sum_k w_k d_k = 0 (mod r)`.
    /// The weights are SHA-256 of the CRS digest and the whole registration
    /// encoding, fixed after every `d_k`; if some `d_k != 0` the check passes
    /// with probability at most 2^-128 per hash query (random oracle;
    /// `w -> w d_k` is injective on `[0, 2^128)` since 2^128 < r). The
    /// weights use their own domain tag, distinct from the earlier check's.
    fn helpers_consistent(&self, crs: &Crs, i: u32) -> bool {
        let m = self.helpers.len();
        if m == 0 || m + 1 != crs.block_size() as usize {
            return false;
        }
        let mut t = Transcript::new(DOMAIN_HELPER_CHAIN_WEIGHTS);
        t.append(b"crs", &crs.digest());
        t.append(b"registration", &self.to_bytes());
        let weights = expand_weights(&t.finish(), m);

        // helpers[k] is xi_j for the k-th position j in 1..=n without i:
        // j = k + 1 below i, k + 2 above. Its predecessor is helpers[k + 1]
        // (the next j) or, for the last helper, pk; the step is 2 exactly
        // when the own position i = j + 1 lies in between.
        let gap = usize::try_from(i).ok().and_then(|i| i.checked_sub(2));
        let mut preds: Vec<G1Affine> = Vec::with_capacity(m);
        preds.extend_from_slice(&self.helpers[1..]);
        preds.push(self.public_key);
        let mut step1 = weights.clone();
        let mut gap_term = None;
        if let Some(k) = gap {
            // i >= 2: the helper j = i - 1 is helpers[i - 2].
            match (step1.get_mut(k), preds.get(k)) {
                (Some(w), Some(p)) => {
                    gap_term = Some(msm_u128::<G1Projective>(core::slice::from_ref(p), &[*w]));
                    *w = 0;
                }
                _ => return false,
            }
        }
        let (Some(hh1), Some(hh2)) = (crs.hh_prepared(1), crs.hh_prepared(2)) else {
            return false;
        };
        let lhs = G1Affine::from(msm_g1(&self.helpers, &weights));
        let mid = G1Affine::from(-msm_g1(&preds, &step1));
        let product = match gap_term {
            Some(c) => {
                let c = G1Affine::from(-c);
                multi_miller_loop(&[(&lhs, crs.g2_generator()), (&mid, hh1), (&c, hh2)])
            }
            None => multi_miller_loop(&[(&lhs, crs.g2_generator()), (&mid, hh1)]),
        };
        product.final_exponentiation() == Gt::IDENTITY
    }
}

impl Codec for Registration {
    const MAGIC: [u8; 4] = *b"RBER";

    fn write(&self, w: &mut Writer) {
        w.u32(self.slot);
        w.bytes(&self.id);
        w.g1(&self.public_key);
        w.count(self.helpers.len());
        for h in &self.helpers {
            w.g1(h);
        }
        w.g1(&self.proof.commitment);
        w.scalar(&self.proof.response);
    }

    /// Points are subgroup-checked; the identity is left to
    /// [`Registration::verify_well_formed`], which reports it with its own
    /// error variant.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let slot = r.u32("slot")?;
        let id = r.array::<32>("id")?;
        let public_key = r.g1("public key")?;
        // A block has at most sqrt(MAX_CAPACITY) positions.
        let max_helpers = (1usize << (MAX_CAPACITY.trailing_zeros() / 2)) - 1;
        let count = r.count("helper count", G1_LEN, max_helpers)?;
        let mut helpers = Vec::with_capacity(count);
        for _ in 0..count {
            helpers.push(r.g1("helper value")?);
        }
        let commitment = r.g1("proof commitment")?;
        let response = r.scalar("proof response")?;
        Ok(Self {
            slot,
            id,
            public_key,
            helpers,
            proof: ProofOfKnowledge {
                commitment,
                response,
            },
        })
    }
}

impl_canonical!(Registration);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::keygen;
    use bls12_381_plus::Scalar;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn setup(capacity: u32) -> (Crs, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let crs = Crs::generate_insecure_dev(capacity, &mut rng).unwrap();
        (crs, rng)
    }

    #[test]
    fn honest_registration_verifies() {
        let (crs, mut rng) = setup(25);
        for slot in [0u32, 4, 7, 24] {
            let (_, reg) = keygen(&crs, slot, [slot as u8; 32], &mut rng).unwrap();
            reg.verify_well_formed(&crs).unwrap();
        }
    }

    #[test]
    fn helper_for_maps_positions() {
        let (crs, mut rng) = setup(16);
        let (_, reg) = keygen(&crs, 6, [1; 32], &mut rng).unwrap(); // position 3
        assert!(reg.helper_for(4, 3).is_none());
        assert!(reg.helper_for(4, 0).is_none());
        assert!(reg.helper_for(4, 5).is_none());
        assert!(reg.helper_for(5, 1).is_none());
        assert_eq!(reg.helper_for(4, 1), Some(&reg.helpers[0]));
        assert_eq!(reg.helper_for(4, 2), Some(&reg.helpers[1]));
        assert_eq!(reg.helper_for(4, 4), Some(&reg.helpers[2]));
    }

    /// One wrong helper among n, at every position, for every own position.
    #[test]
    fn rejects_one_wrong_helper_anywhere() {
        let (crs, mut rng) = setup(25); // n = 5
        for slot in 0..5u32 {
            let (_, reg) = keygen(&crs, slot, [slot as u8; 32], &mut rng).unwrap();
            for k in 0..reg.helpers.len() {
                let mut bad = reg.clone();
                bad.helpers[k] =
                    G1Affine::from(G1Projective::from(bad.helpers[k]) + G1Projective::GENERATOR);
                assert_eq!(
                    bad.verify_well_formed(&crs),
                    Err(RegistrationError::InvalidHelpers),
                    "slot {slot} helper {k}"
                );
                // A helper from the right chain but the wrong index.
                let mut shifted = reg.clone();
                shifted.helpers.swap(k, (k + 1) % reg.helpers.len());
                assert_eq!(
                    shifted.verify_well_formed(&crs),
                    Err(RegistrationError::InvalidHelpers)
                );
            }
        }
    }

    /// The chained check links each helper to the next one with `hh_1`,
    /// except across the own position (`hh_2`). Helpers that form an
    /// unbroken chain `z^1 pk, z^2 pk, ...` (no gap at the own exponent)
    /// satisfy every step-1 link and fail only the gap link, so this pins
    /// that the gap term is checked, for every own position but the first
    /// (which has no gap). Also: the right helpers in the wrong order.
    #[test]
    fn rejects_helpers_that_skip_the_gap() {
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        let z = Scalar::from(0x1234_5678_9abc_def1u64);
        let crs = Crs::from_known_secret_for_tests(36, &z); // n = 6
        let n = crs.block_size();
        for slot in 0..n {
            let (_, reg) = keygen(&crs, slot, [slot as u8 + 1; 32], &mut rng).unwrap();
            reg.verify_well_formed(&crs).unwrap();
            let i = slot + 1;
            let pk = G1Projective::from(reg.public_key);
            // Rank of j in the chain without a gap: n + 1 - j above i, n - j below.
            let mut gapless = reg.clone();
            for (k, h) in gapless.helpers.iter_mut().enumerate() {
                let j = if (k as u32) + 1 < i {
                    k as u32 + 1
                } else {
                    k as u32 + 2
                };
                let e = if j < i { n - j } else { n + 1 - j };
                *h = G1Affine::from(pk * z.pow_vartime(&[u64::from(e), 0, 0, 0]));
            }
            if i == 1 {
                assert_eq!(gapless, reg, "no gap at position 1");
                continue;
            }
            assert_ne!(gapless, reg);
            assert_eq!(
                gapless.verify_well_formed(&crs),
                Err(RegistrationError::InvalidHelpers),
                "slot {slot}"
            );
            let mut reversed = reg.clone();
            reversed.helpers.reverse();
            assert_eq!(
                reversed.verify_well_formed(&crs),
                Err(RegistrationError::InvalidHelpers),
                "slot {slot}"
            );
        }
    }

    #[test]
    fn rejects_helpers_for_another_key() {
        let (crs, mut rng) = setup(16);
        let (_, a) = keygen(&crs, 1, [1; 32], &mut rng).unwrap();
        let (_, b) = keygen(&crs, 1, [2; 32], &mut rng).unwrap();
        let mut mixed = a.clone();
        mixed.helpers = b.helpers.clone();
        assert_eq!(
            mixed.verify_well_formed(&crs),
            Err(RegistrationError::InvalidHelpers)
        );
    }

    #[test]
    fn rejects_bad_proof_of_knowledge() {
        let (crs, mut rng) = setup(16);
        let (_, reg) = keygen(&crs, 5, [5; 32], &mut rng).unwrap();
        let mut bad = reg.clone();
        bad.proof.response += Scalar::ONE;
        assert_eq!(
            bad.verify_well_formed(&crs),
            Err(RegistrationError::InvalidProofOfKnowledge)
        );
        // A valid proof bound to another id.
        let mut other_id = reg.clone();
        other_id.id = [6; 32];
        assert_eq!(
            other_id.verify_well_formed(&crs),
            Err(RegistrationError::InvalidProofOfKnowledge)
        );
        // Scaling the key and all helpers keeps the helper check happy; only
        // the proof of knowledge catches the mauled key.
        let c = Scalar::from(3u64);
        let mut mauled = reg.clone();
        mauled.public_key = G1Affine::from(G1Projective::from(reg.public_key) * c);
        for h in &mut mauled.helpers {
            *h = G1Affine::from(G1Projective::from(*h) * c);
        }
        assert_eq!(
            mauled.verify_well_formed(&crs),
            Err(RegistrationError::InvalidProofOfKnowledge)
        );
        // The same key material from another CRS.
        let other = Crs::generate_insecure_dev(16, &mut rng).unwrap();
        assert_eq!(
            reg.verify_well_formed(&other),
            Err(RegistrationError::InvalidProofOfKnowledge)
        );
    }

    #[test]
    fn rejects_identity_count_and_range() {
        let (crs, mut rng) = setup(16);
        let (_, reg) = keygen(&crs, 5, [5; 32], &mut rng).unwrap();
        let mut id = reg.clone();
        id.public_key = G1Affine::identity();
        assert_eq!(
            id.verify_well_formed(&crs),
            Err(RegistrationError::IdentityPublicKey)
        );
        let mut short = reg.clone();
        short.helpers.pop();
        assert_eq!(
            short.verify_well_formed(&crs),
            Err(RegistrationError::HelperCount {
                expected: 3,
                found: 2
            })
        );
        let mut long = reg.clone();
        long.helpers.push(G1Affine::generator());
        assert!(matches!(
            long.verify_well_formed(&crs),
            Err(RegistrationError::HelperCount { found: 4, .. })
        ));
        let mut far = reg.clone();
        far.slot = 16;
        assert_eq!(
            far.verify_well_formed(&crs),
            Err(RegistrationError::SlotOutOfRange {
                slot: 16,
                capacity: 16
            })
        );
        // Same position in another block: the proof is bound to the slot.
        let mut moved = reg.clone();
        moved.slot = 9;
        assert_eq!(
            moved.verify_well_formed(&crs),
            Err(RegistrationError::InvalidProofOfKnowledge)
        );
    }

    #[test]
    fn encoding_round_trip_and_strictness() {
        let (crs, mut rng) = setup(16);
        let (_, reg) = keygen(&crs, 5, [5; 32], &mut rng).unwrap();
        let bytes = reg.to_bytes();
        assert_eq!(bytes.len(), 5 + 4 + 32 + 48 + 4 + 3 * 48 + 48 + 32);
        assert_eq!(Registration::from_bytes(&bytes).unwrap(), reg);
        // Helper count larger than the bytes present: no allocation, typed error.
        let mut lie = bytes.clone();
        lie[89..93].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            Registration::from_bytes(&lie),
            Err(DecodeError::Truncated { .. })
        ));
        let mut huge = bytes.clone();
        huge[89..93].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Registration::from_bytes(&huge),
            Err(DecodeError::LengthOutOfRange { .. })
        ));
        // A flipped byte in a helper: invalid encoding or (rarely) another
        // valid point, never a panic.
        let mut flip = bytes.clone();
        flip[100] ^= 0x40;
        let _ = Registration::from_bytes(&flip);
    }
}
