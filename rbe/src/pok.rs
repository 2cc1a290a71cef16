//! Schnorr proof of knowledge of `sk` with `pk = sk * h_i`.
//!
//! Without it a public key is malleable: anyone could register `pk' = c * pk`
//! (with helpers scaled by `c`) or a combination of others' keys, and the
//! helper check alone would accept it. The challenge binds the proof to the CRS,
//! the workload id, the slot and the key, so a proof cannot be replayed for
//! another id or slot.
//!
//! The same proof, copied from the registration, makes a
//! [`crate::MembershipProof`] binding: it shows that the claimed key is
//! `sk * h_i` for an `sk` its registrant knew, which rules out claiming the
//! block commitment (or any other combination of published points) as a key.

use bls12_381_plus::{G1Affine, G1Projective, Scalar};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::WorkloadId;
use crate::encoding::{G1_LEN, SCALAR_LEN, decode_g1, decode_scalar};
use crate::error::DecodeError;
use crate::transcript::{DOMAIN_POK, Transcript};

/// Length of [`ProofOfKnowledge::to_compressed`]: `R` compressed, then `s`.
pub(crate) const POK_LEN: usize = G1_LEN + SCALAR_LEN;

/// A Schnorr proof: commitment `R = k * h_i` and response `s = k + c * sk`
/// where `c = H(domain, CRS digest, id, slot, pk, R)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofOfKnowledge {
    /// `R = k * h_i`.
    pub commitment: G1Affine,
    /// `s = k + c * sk`.
    pub response: Scalar,
}

/// What the proof is about (everything the challenge binds).
pub(crate) struct Statement<'a> {
    pub(crate) crs_digest: &'a [u8; 32],
    pub(crate) id: &'a WorkloadId,
    pub(crate) slot: u32,
    /// `h_i`.
    pub(crate) base: &'a G1Affine,
    pub(crate) public_key: &'a G1Affine,
}

impl Statement<'_> {
    fn challenge(&self, commitment: &G1Affine) -> Scalar {
        let mut t = Transcript::new(DOMAIN_POK);
        t.append(b"crs", self.crs_digest);
        t.append(b"id", self.id);
        t.append(b"slot", &self.slot.to_be_bytes());
        t.append(b"pk", &self.public_key.to_compressed());
        t.append(b"R", &commitment.to_compressed());
        t.challenge_scalar()
    }
}

impl ProofOfKnowledge {
    /// Prove knowledge of `sk` (the caller guarantees `pk = sk * base`).
    /// The nonce is hedged: derived from fresh randomness *and* the secret and
    /// statement, so a weak RNG alone does not leak `sk`.
    pub(crate) fn prove<R: RngCore + CryptoRng>(
        st: &Statement<'_>,
        sk: &Scalar,
        rng: &mut R,
    ) -> Self {
        let mut fresh = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *fresh);
        let sk_bytes = Zeroizing::new(sk.to_be_bytes());
        let mut t = Transcript::new(b"mazu-rbe/v1/pok-nonce");
        t.append(b"sk", &*sk_bytes);
        t.append(b"rng", &*fresh);
        t.append(b"crs", st.crs_digest);
        t.append(b"id", st.id);
        t.append(b"slot", &st.slot.to_be_bytes());
        let k = Zeroizing::new(t.challenge_scalar());
        let commitment = G1Affine::from(G1Projective::from(st.base) * *k);
        let c = st.challenge(&commitment);
        let response = *k + c * sk;
        Self {
            commitment,
            response,
        }
    }

    /// `R` compressed (48 bytes) then `s` (32 bytes, big-endian): the last
    /// 80 bytes of a registration's encoding.
    pub(crate) fn to_compressed(self) -> [u8; POK_LEN] {
        let mut out = [0u8; POK_LEN];
        out[..G1_LEN].copy_from_slice(&self.commitment.to_compressed());
        out[G1_LEN..].copy_from_slice(&self.response.to_be_bytes());
        out
    }

    /// Strict inverse of [`ProofOfKnowledge::to_compressed`] (`R`
    /// subgroup-checked, `s` canonical; the identity `R` is left to
    /// [`ProofOfKnowledge::verify`], which refuses it).
    pub(crate) fn from_compressed(bytes: &[u8; POK_LEN]) -> Result<Self, DecodeError> {
        let (r, s) = bytes.split_at(G1_LEN);
        let mut r_bytes = [0u8; G1_LEN];
        r_bytes.copy_from_slice(r);
        let mut s_bytes = [0u8; SCALAR_LEN];
        s_bytes.copy_from_slice(s);
        Ok(Self {
            commitment: decode_g1("proof commitment", &r_bytes)?,
            response: decode_scalar("proof response", &s_bytes)?,
        })
    }

    /// `s * h_i == R + c * pk`, with `R` not the identity.
    pub(crate) fn verify(&self, st: &Statement<'_>) -> bool {
        if bool::from(self.commitment.is_identity()) {
            return false;
        }
        let c = st.challenge(&self.commitment);
        let lhs = G1Projective::from(st.base) * self.response;
        let rhs = G1Projective::from(st.public_key) * c + self.commitment;
        lhs == rhs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn prove_verify_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let base = G1Affine::from(G1Projective::GENERATOR * Scalar::from(99u64));
        let sk = Scalar::from(1234u64);
        let pk = G1Affine::from(G1Projective::from(base) * sk);
        let digest = [7u8; 32];
        let id = [1u8; 32];
        let st = Statement {
            crs_digest: &digest,
            id: &id,
            slot: 4,
            base: &base,
            public_key: &pk,
        };
        let proof = ProofOfKnowledge::prove(&st, &sk, &mut rng);
        assert!(proof.verify(&st));

        let other_id = [2u8; 32];
        assert!(!proof.verify(&Statement {
            id: &other_id,
            ..st
        }));
        assert!(!proof.verify(&Statement { slot: 5, ..st }));
        let other_digest = [8u8; 32];
        assert!(!proof.verify(&Statement {
            crs_digest: &other_digest,
            ..st
        }));
        let mut bad = proof;
        bad.response += Scalar::ONE;
        assert!(!bad.verify(&st));
        let zero = ProofOfKnowledge {
            commitment: G1Affine::identity(),
            response: Scalar::ZERO,
        };
        assert!(!zero.verify(&st));

        let bytes = proof.to_compressed();
        assert_eq!(ProofOfKnowledge::from_compressed(&bytes), Ok(proof));
        let mut big = bytes;
        big[G1_LEN..].fill(0xff);
        assert!(ProofOfKnowledge::from_compressed(&big).is_err());
    }
}
