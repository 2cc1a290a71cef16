//! Secret keys and key generation for a slot.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use bls12_381_plus::{G1Affine, G1Projective, Scalar};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::WorkloadId;
use crate::crs::{Crs, random_nonzero_scalar};
use crate::encoding::{Reader, Writer, decode_scalar};
use crate::error::DecodeError;
use crate::error::KeyGenError;
use crate::pok::{ProofOfKnowledge, Statement};
use crate::registration::Registration;

/// An RBE secret key for one slot. Zeroized on drop; `Debug` shows only the
/// slot. Not `Clone`, so that copies are deliberate (`to_bytes`/`from_bytes`).
pub struct SecretKey {
    slot: u32,
    sk: Scalar,
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.sk.zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Type tag of the secret-key encoding.
const SECRET_KEY_MAGIC: [u8; 4] = *b"RBEK";

impl SecretKey {
    /// The slot this key was generated for.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The secret scalar (for decryption).
    pub(crate) fn scalar(&self) -> &Scalar {
        &self.sk
    }

    /// `pk = sk * h_i` for this key's slot, or `None` if the slot is out of
    /// range for `crs`.
    pub fn public_key(&self, crs: &Crs) -> Option<G1Affine> {
        let pos = crs.dimensions().locate(self.slot)?;
        let base = crs.h(pos.position)?;
        Some(G1Affine::from(G1Projective::from(base) * self.sk))
    }

    /// Encoding for the agent's own storage: `"RBEK"`, version, slot (u32 BE),
    /// scalar (32 bytes BE). Returned in a buffer that is zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(SECRET_KEY_MAGIC);
        w.u32(self.slot);
        let sk = Zeroizing::new(self.sk.to_be_bytes());
        w.bytes(&*sk);
        Zeroizing::new(w.into_bytes())
    }

    /// Strict inverse of [`SecretKey::to_bytes`]; rejects a zero scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::open(bytes, SECRET_KEY_MAGIC)?;
        let slot = r.u32("slot")?;
        let raw = Zeroizing::new(r.array::<32>("secret key")?);
        r.finish()?;
        let sk = decode_scalar("secret key", &raw)?;
        if sk == Scalar::ZERO {
            return Err(DecodeError::ZeroScalar {
                field: "secret key",
            });
        }
        Ok(Self { slot, sk })
    }
}

/// Generate a key pair for `slot` and the public [`Registration`] to send to
/// the curator: `pk = sk * h_i`, helper values `xi_j = sk * h_(n+1+i-j)` for
/// every `j` in `[1, n]`, `j != i` (ordered by `j`), and a proof of knowledge of
/// `sk` bound to the CRS, `id` and `slot`. Cost: n constant-time G1 scalar
/// multiplications.
pub fn keygen<R: RngCore + CryptoRng>(
    crs: &Crs,
    slot: u32,
    id: WorkloadId,
    rng: &mut R,
) -> Result<(SecretKey, Registration), KeyGenError> {
    let dims = crs.dimensions();
    let out_of_range = KeyGenError::SlotOutOfRange {
        slot,
        capacity: dims.capacity(),
    };
    let pos = dims.locate(slot).ok_or(out_of_range.clone())?;
    let n = dims.block_size();
    let i = pos.position;
    let base = *crs.h(i).ok_or(out_of_range.clone())?;

    let key = SecretKey {
        slot,
        sk: random_nonzero_scalar(rng),
    };
    let pk = G1Affine::from(G1Projective::from(base) * key.sk);

    let mut proj = Vec::with_capacity(n as usize - 1);
    for j in (1..=n).filter(|j| *j != i) {
        // n + 1 + i - j is in [2, 2n] and never n + 1 because j != i.
        let h = crs.h(n + 1 + i - j).ok_or(out_of_range.clone())?;
        proj.push(G1Projective::from(h) * key.sk);
    }
    let mut helpers = vec![G1Affine::identity(); proj.len()];
    G1Projective::batch_normalize(&proj, &mut helpers);

    let digest = crs.digest();
    let proof = ProofOfKnowledge::prove(
        &Statement {
            crs_digest: &digest,
            id: &id,
            slot,
            base: &base,
            public_key: &pk,
        },
        &key.sk,
        rng,
    );
    let registration = Registration {
        slot,
        id,
        public_key: pk,
        helpers,
        proof,
    };
    Ok((key, registration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn keygen_shapes_and_key_encoding() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
        let (sk, reg) = keygen(&crs, 6, [9; 32], &mut rng).unwrap();
        assert_eq!(reg.helpers.len(), 3);
        assert_eq!(sk.public_key(&crs), Some(reg.public_key));
        assert_eq!(sk.slot(), 6);
        let dbg = alloc::format!("{sk:?}");
        assert!(dbg.contains("slot") && !dbg.contains("sk:"));

        let bytes = sk.to_bytes();
        let back = SecretKey::from_bytes(&bytes).unwrap();
        assert_eq!(back.public_key(&crs), Some(reg.public_key));
        let mut zero = bytes.to_vec();
        zero[9..].fill(0);
        assert!(matches!(
            SecretKey::from_bytes(&zero),
            Err(DecodeError::ZeroScalar { .. })
        ));
        let mut big = bytes.to_vec();
        big[9..].fill(0xff);
        assert!(matches!(
            SecretKey::from_bytes(&big),
            Err(DecodeError::NonCanonicalScalar { .. })
        ));

        assert_eq!(
            keygen(&crs, 16, [0; 32], &mut rng).err(),
            Some(KeyGenError::SlotOutOfRange {
                slot: 16,
                capacity: 16
            })
        );
    }
}
