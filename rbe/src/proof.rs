//! Membership and non-membership proofs, checked against the public
//! parameters and the CRS alone.
//!
//! Membership of `(id, slot, pk)` under `C_k` (slot `s` at position `i` of
//! block `k`) holds iff all of:
//!
//! 1. `pk` is not the identity;
//! 2. the registration's Schnorr proof of knowledge of `sk` with
//!    `pk = sk * h_i` verifies for the statement (CRS digest, `id`, `s`, `pk`)
//!    — the same proof the registration carried, copied from the log;
//! 3. `e(C_k - pk, hh_(n+1-i)) == e(u_i, G2)`, one 2-term multi-Miller loop
//!    and one final exponentiation.
//!
//! Why 2 is needed. The pairing equation alone is *not* binding for the key:
//! it only says that `z^(n+1-i) (C_k - pk)` has no component on the
//! unpublished `h_(n+1)`. Any `pk` whose `h_i`-coordinate equals the
//! registered one passes, and a forger can pick such keys without knowing
//! any secret:
//!
//! * `pk = C_k`, `u = 0` for a **free** slot (or any slot): `C_k - pk = 0`;
//! * `pk' = pk + b G1`, `u' = u - b h_(n+1-i)` for a registered `(pk, u)` and
//!   any `b`: the extra terms cancel.
//!
//! With the proof of knowledge, `pk = sk * h_i` for a known `sk` (extractable
//! in the random-oracle model). Then `z^(n+1-i)(C_k - pk)` has the component
//! `(sk_i - sk) h_(n+1)` (with `sk_i = 0` for a free slot), so `u_i` exists
//! only for `sk = sk_i`, i.e. `pk` = the registered key, unless one can
//! compute a nonzero multiple of `h_(n+1)` — the punctured power whose
//! secrecy the whole scheme rests on. The challenge binds the CRS digest,
//! the id and the slot, so a proof cannot be moved to another CRS, slot or
//! id either.
//!
//! What the id means: it is the id the key's owner bound to the key with the
//! proof of knowledge. A proof served by a curator carries the registration's
//! own proof, i.e. the id in the log; but the owner of `sk` can make a proof of
//! knowledge for any id, so the unique id → slot mapping is the log's (checked
//! by replaying it), not something a single membership proof can show.
//!
//! Non-membership is equation 3 with `pk = 0`: binding as is (a taken slot's
//! `C_k` has the component `sk_i h_(n+1)`).

use bls12_381_plus::{G1Affine, G1Projective, G2Prepared, Gt, multi_miller_loop};

use crate::WorkloadId;
use crate::crs::Crs;
use crate::encoding::{Codec, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::ProofError;
use crate::opening::Opening;
use crate::pok::{ProofOfKnowledge, Statement};
use crate::public_params::PublicParams;

/// Format version of the [`MembershipProof`] encoding. Version 1 (slot,
/// commitment, opening value, key: no proof of knowledge) was not binding and
/// is refused by the decoder.
pub(crate) const MEMBERSHIP_PROOF_VERSION: u8 = 2;

/// Proof that `public_key` is registered for `id` at `opening.slot`.
///
/// Build it with [`crate::RegistryState::membership_proof`] (or from the
/// registration in the public log and an [`Opening`]); check it with
/// [`MembershipProof::verify`] or [`MembershipProof::verify_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipProof {
    /// The workload id the key was registered with.
    pub id: WorkloadId,
    /// The registered key `pk = sk * h_i`.
    pub public_key: G1Affine,
    /// The registration's proof of knowledge of `sk` for `pk`, bound to the
    /// CRS digest, `id` and the slot.
    pub proof_of_knowledge: ProofOfKnowledge,
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
    /// A membership proof from the public registration record and the slot's
    /// opening (as a user maintaining its own opening would build it). Not
    /// checked: call [`MembershipProof::verify`].
    pub fn from_registration(registration: &crate::Registration, opening: Opening) -> Self {
        Self {
            id: registration.id,
            public_key: registration.public_key,
            proof_of_knowledge: registration.proof,
            opening,
        }
    }

    /// Verify against the published parameters: the opening must be for the
    /// current commitment of its block, then everything
    /// [`MembershipProof::verify_for_commitment`] checks.
    pub fn verify(&self, crs: &Crs, pp: &PublicParams) -> Result<(), ProofError> {
        check_current(crs, pp, &self.opening)?;
        self.verify_for_commitment(crs)
    }

    /// [`MembershipProof::verify`], and the proof must be for `id`
    /// ([`ProofError::IdMismatch`] otherwise). What a sender looking up a
    /// workload by id should call.
    pub fn verify_id(
        &self,
        crs: &Crs,
        pp: &PublicParams,
        id: &WorkloadId,
    ) -> Result<(), ProofError> {
        if self.id != *id {
            return Err(ProofError::IdMismatch);
        }
        self.verify(crs, pp)
    }

    /// Verify against the commitment carried in the opening (for a verifier
    /// that obtained the commitment some other trusted way, e.g. an older
    /// checkpoint), in this order: slot in range, key not the identity,
    /// proof of knowledge of the key's secret for (CRS digest, id, slot, key),
    /// then the pairing equation. See the module documentation for why the
    /// proof of knowledge is required.
    pub fn verify_for_commitment(&self, crs: &Crs) -> Result<(), ProofError> {
        let dims = crs.dimensions();
        let out_of_range = ProofError::SlotOutOfRange {
            slot: self.opening.slot,
            capacity: dims.capacity(),
        };
        let pos = dims.locate(self.opening.slot).ok_or(out_of_range.clone())?;
        if bool::from(self.public_key.is_identity()) {
            return Err(ProofError::IdentityPublicKey);
        }
        let base = crs.h(pos.position).ok_or(out_of_range)?;
        let digest = crs.digest();
        let statement = Statement {
            crs_digest: &digest,
            id: &self.id,
            slot: self.opening.slot,
            base,
            public_key: &self.public_key,
        };
        if !self.proof_of_knowledge.verify(&statement) {
            return Err(ProofError::InvalidProofOfKnowledge);
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
    const VERSION: u8 = MEMBERSHIP_PROOF_VERSION;

    fn write(&self, w: &mut Writer) {
        w.u32(self.opening.slot);
        w.g1(&self.opening.commitment);
        w.g1(&self.opening.value);
        w.g1(&self.public_key);
        w.bytes(&self.id);
        w.g1(&self.proof_of_knowledge.commitment);
        w.scalar(&self.proof_of_knowledge.response);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let opening = Opening {
            slot: r.u32("slot")?,
            commitment: r.g1("commitment")?,
            value: r.g1("opening value")?,
        };
        let public_key = r.g1_nonzero("public key")?;
        let id = r.array::<32>("id")?;
        let proof_of_knowledge = ProofOfKnowledge {
            commitment: r.g1_nonzero("proof commitment")?,
            response: r.scalar("proof response")?,
        };
        Ok(Self {
            id,
            public_key,
            proof_of_knowledge,
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
