//! Openings: what a user holds to decrypt and to prove membership.
//!
//! The opening of position `i` in block `k` under commitment `C_k` is
//! `u_i = sum over the other registered positions j of their helper xi_i`.
//! Registrations only add, so a user can keep its opening current from the
//! public log alone ([`Opening::update`]) and keep every past version
//! ([`OpeningHistory`]) to decrypt ciphertexts made under an older `C_k`.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective};

use crate::crs::Crs;
use crate::encoding::{Codec, G1_LEN, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::OpeningError;
use crate::registration::Registration;

/// The opening of one slot under one block commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The slot opened.
    pub slot: u32,
    /// The block commitment `C_k` this opening is valid for.
    pub commitment: G1Affine,
    /// `u_i`.
    pub value: G1Affine,
}

/// Where `reg` falls relative to `slot`'s block: the helper it contributes to
/// `slot`'s position and its public key, or why it does not apply.
fn contribution<'a>(
    crs: &Crs,
    slot: u32,
    reg: &'a Registration,
) -> Result<(&'a G1Affine, &'a G1Affine), OpeningError> {
    let dims = crs.dimensions();
    let me = dims
        .locate(slot)
        .ok_or(OpeningError::MalformedRegistration)?;
    let them = dims
        .locate(reg.slot)
        .ok_or(OpeningError::MalformedRegistration)?;
    if them.block != me.block {
        return Err(OpeningError::OtherBlock(reg.slot));
    }
    if reg.slot == slot {
        return Err(OpeningError::OwnSlot);
    }
    let helper = reg
        .helper_for(dims.block_size(), me.position)
        .ok_or(OpeningError::MalformedRegistration)?;
    Ok((helper, &reg.public_key))
}

impl Opening {
    /// Apply a later registration in the same block: `C_k += pk`,
    /// `u_i += reg.helper_for(i)`. The registration should come from the
    /// curator's verified log; after updating, [`crate::NonMembershipProof`]
    /// or [`crate::MembershipProof`] verification against the published
    /// parameters confirms the result.
    pub fn update(&mut self, crs: &Crs, reg: &Registration) -> Result<(), OpeningError> {
        let (helper, pk) = contribution(crs, self.slot, reg)?;
        let both = [
            G1Projective::from(self.commitment) + pk,
            G1Projective::from(self.value) + helper,
        ];
        let mut out = [G1Affine::identity(); 2];
        G1Projective::batch_normalize(&both, &mut out);
        self.commitment = out[0];
        self.value = out[1];
        Ok(())
    }
}

impl Codec for Opening {
    const MAGIC: [u8; 4] = *b"RBEO";

    fn write(&self, w: &mut Writer) {
        w.u32(self.slot);
        w.g1(&self.commitment);
        w.g1(&self.value);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            slot: r.u32("slot")?,
            commitment: r.g1("commitment")?,
            value: r.g1("opening value")?,
        })
    }
}

impl_canonical!(Opening);

/// Every opening a registered user has had, oldest first: one per block
/// commitment since (and including) its own registration. Bounded by the
/// block size, because each entry comes from a distinct slot of the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningHistory {
    openings: Vec<Opening>,
    applied: BTreeSet<u32>,
}

impl OpeningHistory {
    /// Start from the opening the curator served (for example right after
    /// registering).
    pub fn new(current: Opening) -> Self {
        Self {
            openings: alloc::vec![current],
            applied: BTreeSet::new(),
        }
    }

    /// Rebuild the history of `slot` from registrations in log order (any
    /// registrations of other blocks are skipped), starting at `slot`'s own
    /// registration. This derives the opening for every older commitment.
    pub fn from_registrations<'a>(
        crs: &Crs,
        slot: u32,
        log: impl IntoIterator<Item = &'a Registration>,
    ) -> Result<Self, OpeningError> {
        let dims = crs.dimensions();
        let me = dims.locate(slot).ok_or(OpeningError::NotRegistered(slot))?;
        let mut commitment = G1Projective::IDENTITY;
        let mut value = G1Projective::IDENTITY;
        let mut history: Option<Self> = None;
        let mut seen = BTreeSet::new();
        for reg in log {
            match dims.locate(reg.slot) {
                Some(p) if p.block == me.block => {}
                _ => continue,
            }
            if !seen.insert(reg.slot) {
                return Err(OpeningError::AlreadyApplied(reg.slot));
            }
            commitment += reg.public_key;
            if reg.slot != slot {
                let (helper, _) = contribution(crs, slot, reg)?;
                value += helper;
            }
            let snapshot = Opening {
                slot,
                commitment: G1Affine::from(commitment),
                value: G1Affine::from(value),
            };
            match history.as_mut() {
                None if reg.slot == slot => history = Some(Self::new(snapshot)),
                None => {}
                Some(h) => {
                    h.openings.push(snapshot);
                    h.applied.insert(reg.slot);
                }
            }
        }
        history.ok_or(OpeningError::NotRegistered(slot))
    }

    /// The slot.
    pub fn slot(&self) -> u32 {
        self.latest().slot
    }

    /// The current opening.
    pub fn latest(&self) -> &Opening {
        // Never empty: constructed with one entry and only ever pushed to.
        &self.openings[self.openings.len() - 1]
    }

    /// All openings, oldest first.
    pub fn openings(&self) -> &[Opening] {
        &self.openings
    }

    /// The opening valid under `commitment` (e.g. a ciphertext's), if any.
    pub fn opening_for(&self, commitment: &G1Affine) -> Option<&Opening> {
        self.openings
            .iter()
            .rev()
            .find(|o| o.commitment == *commitment)
    }

    /// Apply a later registration in the block and keep the previous opening.
    pub fn update(&mut self, crs: &Crs, reg: &Registration) -> Result<(), OpeningError> {
        if self.applied.contains(&reg.slot) {
            return Err(OpeningError::AlreadyApplied(reg.slot));
        }
        let mut next = *self.latest();
        next.update(crs, reg)?;
        self.applied.insert(reg.slot);
        self.openings.push(next);
        Ok(())
    }
}

impl Codec for OpeningHistory {
    const MAGIC: [u8; 4] = *b"RBEH";

    fn write(&self, w: &mut Writer) {
        w.u32(self.slot());
        w.count(self.openings.len());
        for o in &self.openings {
            w.g1(&o.commitment);
            w.g1(&o.value);
        }
        w.count(self.applied.len());
        for s in &self.applied {
            w.u32(*s);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let slot = r.u32("slot")?;
        let count = r.count("opening count", 2 * G1_LEN, 1 << 15)?;
        if count == 0 {
            return Err(DecodeError::LengthOutOfRange {
                field: "opening count",
                value: 0,
            });
        }
        let mut openings = Vec::with_capacity(count);
        for _ in 0..count {
            openings.push(Opening {
                slot,
                commitment: r.g1("commitment")?,
                value: r.g1("opening value")?,
            });
        }
        let applied_count = r.count("applied count", 4, 1 << 15)?;
        if applied_count + 1 != count {
            return Err(DecodeError::Inconsistent(
                "applied slots do not match the openings",
            ));
        }
        let mut applied = BTreeSet::new();
        let mut previous = None;
        for _ in 0..applied_count {
            let s = r.u32("applied slot")?;
            // Strictly increasing: the one canonical order of a set.
            if previous.is_some_and(|p| p >= s) {
                return Err(DecodeError::Inconsistent(
                    "applied slots not strictly increasing",
                ));
            }
            previous = Some(s);
            applied.insert(s);
        }
        Ok(Self { openings, applied })
    }
}

impl_canonical!(OpeningHistory);
