//! Membership and non-membership proofs, checked against the public
//! parameters and the CRS alone.
//!
//! Membership of `(slot, pk)` under `C_k`: `e(C_k - pk, hh_(n+1-i)) == e(u_i, G2)`,
//! evaluated as one 2-term multi-Miller loop and one final exponentiation.
//! Non-membership is the same equation with `pk = 0`. Binding: `C_k - pk`
//! multiplied by `z^(n+1-i)` has a component on the unpublished `h_(n+1)`
//! unless `pk` is exactly the key registered at `i`, so producing `u_i` for
//! another key (or for a taken slot, as non-membership) means computing
//! `z^(n+1) * G1`.

use bls12_381_plus::{G1Affine, G1Projective, G2Prepared, Gt, multi_miller_loop};

use crate::crs::Crs;
use crate::encoding::{Codec, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::ProofError;
use crate::opening::Opening;
use crate::public_params::PublicParams;

/// Proof that `public_key` is registered at `opening.slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipProof {
    /// The registered key.
    pub public_key: G1Affine,
    /// The slot's opening under the block commitment it claims.
    pub opening: Opening,
}

/// Proof that nobody is registered at `opening.slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonMembershipProof {
    /// The slot's opening under the block commitment it claims.
    pub opening: Opening,
}

/// `e(C - pk, hh_(n+1-i)) * e(-u, G2) == 1` for the opening's own commitment.
fn check(crs: &Crs, opening: &Opening, public_key: &G1Affine) -> Result<(), ProofError> {
    let dims = crs.dimensions();
    let out_of_range = ProofError::SlotOutOfRange {
        slot: opening.slot,
        capacity: dims.capacity(),
    };
    let pos = dims.locate(opening.slot).ok_or(out_of_range.clone())?;
    let hh = crs
        .hh(dims.block_size() + 1 - pos.position)
        .ok_or(out_of_range)?;
    let lhs = G1Affine::from(G1Projective::from(opening.commitment) - public_key);
    let neg_u = -opening.value;
    let hh = G2Prepared::from(*hh);
    let product = multi_miller_loop(&[(&lhs, &hh), (&neg_u, crs.g2_generator())]);
    if product.final_exponentiation() == Gt::IDENTITY {
        Ok(())
    } else {
        Err(ProofError::Invalid)
    }
}

/// The opening's commitment must be the one `pp` publishes for its block.
fn check_current(crs: &Crs, pp: &PublicParams, opening: &Opening) -> Result<(), ProofError> {
    if pp.crs_digest() != crs.digest() || pp.dimensions() != crs.dimensions() {
        return Err(ProofError::ParamsMismatch);
    }
    let published = pp
        .commitment_for_slot(opening.slot)
        .ok_or(ProofError::SlotOutOfRange {
            slot: opening.slot,
            capacity: crs.capacity(),
        })?;
    if *published != opening.commitment {
        return Err(ProofError::StaleCommitment);
    }
    Ok(())
}

impl MembershipProof {
    /// Verify against the published parameters: the opening must be for the
    /// current commitment of its block, and the pairing equation must hold.
    pub fn verify(&self, crs: &Crs, pp: &PublicParams) -> Result<(), ProofError> {
        check_current(crs, pp, &self.opening)?;
        self.verify_for_commitment(crs)
    }

    /// Verify against the commitment carried in the opening (for a verifier
    /// that obtained the commitment some other trusted way, e.g. an older
    /// checkpoint).
    pub fn verify_for_commitment(&self, crs: &Crs) -> Result<(), ProofError> {
        if bool::from(self.public_key.is_identity()) {
            return Err(ProofError::IdentityPublicKey);
        }
        check(crs, &self.opening, &self.public_key)
    }
}

impl NonMembershipProof {
    /// Verify against the published parameters.
    pub fn verify(&self, crs: &Crs, pp: &PublicParams) -> Result<(), ProofError> {
        check_current(crs, pp, &self.opening)?;
        self.verify_for_commitment(crs)
    }

    /// Verify against the commitment carried in the opening.
    pub fn verify_for_commitment(&self, crs: &Crs) -> Result<(), ProofError> {
        check(crs, &self.opening, &G1Affine::identity())
    }
}

impl Codec for MembershipProof {
    const MAGIC: [u8; 4] = *b"RBEM";

    fn write(&self, w: &mut Writer) {
        w.u32(self.opening.slot);
        w.g1(&self.opening.commitment);
        w.g1(&self.opening.value);
        w.g1(&self.public_key);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let opening = Opening {
            slot: r.u32("slot")?,
            commitment: r.g1("commitment")?,
            value: r.g1("opening value")?,
        };
        let public_key = r.g1_nonzero("public key")?;
        Ok(Self {
            public_key,
            opening,
        })
    }
}

impl_canonical!(MembershipProof);

impl Codec for NonMembershipProof {
    const MAGIC: [u8; 4] = *b"RBEN";

    fn write(&self, w: &mut Writer) {
        w.u32(self.opening.slot);
        w.g1(&self.opening.commitment);
        w.g1(&self.opening.value);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            opening: Opening {
                slot: r.u32("slot")?,
                commitment: r.g1("commitment")?,
                value: r.g1("opening value")?,
            },
        })
    }
}

impl_canonical!(NonMembershipProof);
