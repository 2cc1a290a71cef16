//! Openings: what a user holds to decrypt and to prove membership.
//!
//! The opening of position `i` in block `k` under commitment `C_k` is
//! `u_i = sum over the other registered positions j of their helper xi_i`.
//! A registration adds its terms and a release takes them away, so a user can
//! keep its opening current from the public log alone ([`Opening::update`],
//! [`Opening::release`]) and keep every past version ([`OpeningHistory`]) to
//! decrypt ciphertexts made under an older `C_k`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective};

use crate::crs::Crs;
use crate::encoding::{Codec, G1_LEN, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::OpeningError;
use crate::registration::Registration;
use crate::release::RegistryOp;
use crate::state::registration_digest;

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

    /// Apply the release of a neighbour in the same block: `C_k -= pk`,
    /// `u_i -= reg.helper_for(i)`, the exact inverse of
    /// [`Opening::update`]. The release should come from the curator's
    /// verified log (this does not know which registrations are live; see
    /// [`OpeningHistory::release`] for a checked version). A member's own
    /// release is refused ([`OpeningError::OwnSlot`]): a released member has
    /// no opening under the new commitment.
    pub fn release(&mut self, crs: &Crs, reg: &Registration) -> Result<(), OpeningError> {
        let (helper, pk) = contribution(crs, self.slot, reg)?;
        let both = [
            G1Projective::from(self.commitment) - pk,
            G1Projective::from(self.value) - helper,
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

/// What an [`OpeningHistory`] knows about another slot of its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Holds the registration with this digest (its contribution is in the
    /// latest opening).
    Live([u8; 32]),
    /// Released since the history started (only recorded when the history
    /// does not know the whole block, see [`OpeningHistory::new`]).
    Free,
}

/// Every opening a registered user has had, oldest first: one per block
/// commitment since (and including) its own registration, one more for each
/// later registration or release in its block. Commitments can repeat (a
/// neighbour registering then leaving restores the earlier one, with the
/// same opening); [`OpeningHistory::opening_for`] finds the newest.
///
/// It also tracks which registration is live in each other slot of the
/// block, so that applying the same registration twice, or releasing one
/// that was never applied (or already released), is refused, while a slot
/// released and then registered again is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningHistory {
    openings: Vec<Opening>,
    /// Other slots of the block whose state this history knows.
    slots: BTreeMap<u32, SlotState>,
    /// `true` when the history was derived from the whole log (a slot absent
    /// from `slots` is free); `false` when it started from a served opening
    /// (a slot absent from `slots` is unknown: its contribution may already
    /// be in the first opening).
    complete: bool,
}

impl OpeningHistory {
    /// Start from the opening the curator served (for example right after
    /// registering). Which registrations that opening already contains is
    /// not known, so [`OpeningHistory::update`] and
    /// [`OpeningHistory::release`] accept any slot they have not seen yet;
    /// a history from [`OpeningHistory::from_operations`] knows the whole
    /// block and checks every release.
    pub fn new(current: Opening) -> Self {
        Self {
            openings: alloc::vec![current],
            slots: BTreeMap::new(),
            complete: false,
        }
    }

    /// Rebuild the history of `slot` from registrations in log order (any
    /// registrations of other blocks are skipped), starting at `slot`'s own
    /// (first) registration. This derives the opening for every older
    /// commitment. A log with releases uses
    /// [`OpeningHistory::from_operations`].
    pub fn from_registrations<'a>(
        crs: &Crs,
        slot: u32,
        log: impl IntoIterator<Item = &'a Registration>,
    ) -> Result<Self, OpeningError> {
        let log: Vec<&Registration> = log.into_iter().collect();
        let own = log
            .iter()
            .find(|reg| reg.slot == slot)
            .ok_or(OpeningError::NotRegistered(slot))?;
        Self::from_operations(crs, own, log.iter().map(|reg| RegistryOp::Register(reg)))
    }

    /// Rebuild the history of the member that registered `own`, from the
    /// registry's operations in log order (other blocks are skipped),
    /// starting at `own`'s last registration. Every operation of the block
    /// is checked to follow from the ones before it: a registration for a
    /// slot still live is [`OpeningError::AlreadyApplied`], a release of a
    /// registration that is not the one live in its slot
    /// [`OpeningError::NotApplied`]. If `own` was released (and not
    /// registered again) the member has no current opening:
    /// [`OpeningError::Released`] (the history of the operations before the
    /// release still opens the commitments of that time).
    pub fn from_operations<'a>(
        crs: &Crs,
        own: &Registration,
        ops: impl IntoIterator<Item = RegistryOp<'a>>,
    ) -> Result<Self, OpeningError> {
        let slot = own.slot;
        let dims = crs.dimensions();
        let me = dims.locate(slot).ok_or(OpeningError::NotRegistered(slot))?;
        let own_digest = registration_digest(&own.to_bytes());
        let mut commitment = G1Projective::IDENTITY;
        let mut value = G1Projective::IDENTITY;
        // Every live slot of the block (own included) and its registration.
        let mut live: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
        let mut history: Option<Self> = None;
        let mut released = false;
        for op in ops {
            let reg = op.registration();
            match dims.locate(reg.slot) {
                Some(p) if p.block == me.block => {}
                _ => continue,
            }
            let digest = registration_digest(&reg.to_bytes());
            let helper = if reg.slot == slot {
                None
            } else {
                Some(contribution(crs, slot, reg)?.0)
            };
            match op {
                RegistryOp::Register(_) => {
                    if live.contains_key(&reg.slot) {
                        return Err(OpeningError::AlreadyApplied(reg.slot));
                    }
                    live.insert(reg.slot, digest);
                    commitment += reg.public_key;
                    if let Some(h) = helper {
                        value += h;
                    }
                }
                RegistryOp::Release(_) => {
                    if live.get(&reg.slot) != Some(&digest) {
                        return Err(OpeningError::NotApplied(reg.slot));
                    }
                    live.remove(&reg.slot);
                    commitment -= reg.public_key;
                    if let Some(h) = helper {
                        value -= h;
                    }
                }
            }
            let snapshot = Opening {
                slot,
                commitment: G1Affine::from(commitment),
                value: G1Affine::from(value),
            };
            if reg.slot == slot {
                // Only `own` starts (or restarts) the history; any other
                // registration of this slot, and `own`'s release, end it.
                history = match op {
                    RegistryOp::Register(_) if digest == own_digest => {
                        released = false;
                        let slots = live
                            .iter()
                            .filter(|(s, _)| **s != slot)
                            .map(|(s, d)| (*s, SlotState::Live(*d)))
                            .collect();
                        Some(Self {
                            openings: alloc::vec![snapshot],
                            slots,
                            complete: true,
                        })
                    }
                    RegistryOp::Release(_) if digest == own_digest => {
                        released = true;
                        None
                    }
                    _ => None,
                };
            } else if let Some(h) = history.as_mut() {
                h.openings.push(snapshot);
                match op {
                    RegistryOp::Register(_) => {
                        h.slots.insert(reg.slot, SlotState::Live(digest));
                    }
                    RegistryOp::Release(_) => {
                        h.slots.remove(&reg.slot);
                    }
                }
            }
        }
        match history {
            Some(h) => Ok(h),
            None if released => Err(OpeningError::Released(slot)),
            None => Err(OpeningError::NotRegistered(slot)),
        }
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

    /// Apply a later registration in the block and keep the previous
    /// opening. Refused ([`OpeningError::AlreadyApplied`]) if its slot
    /// already holds a registration applied to this history (the same one
    /// twice, or another without a release in between); a slot whose
    /// registration was released may be registered again.
    pub fn update(&mut self, crs: &Crs, reg: &Registration) -> Result<(), OpeningError> {
        if matches!(self.slots.get(&reg.slot), Some(SlotState::Live(_))) {
            return Err(OpeningError::AlreadyApplied(reg.slot));
        }
        let mut next = *self.latest();
        next.update(crs, reg)?;
        let digest = registration_digest(&reg.to_bytes());
        self.slots.insert(reg.slot, SlotState::Live(digest));
        self.openings.push(next);
        Ok(())
    }

    /// Apply the release of a neighbour in the block and keep the previous
    /// opening (ciphertexts made before the release still need it). Refused
    /// ([`OpeningError::NotApplied`]) if the registration is not the one
    /// this history has live in that slot: another registration, one
    /// already released, or (for a history that knows the whole block, see
    /// [`OpeningHistory::new`]) one never applied. The member's own release
    /// is [`OpeningError::OwnSlot`].
    pub fn release(&mut self, crs: &Crs, reg: &Registration) -> Result<(), OpeningError> {
        let digest = registration_digest(&reg.to_bytes());
        let known = match self.slots.get(&reg.slot) {
            Some(SlotState::Live(d)) => *d == digest,
            Some(SlotState::Free) => false,
            None => !self.complete,
        };
        if !known {
            // The own slot is never in `slots`: report it as such.
            if reg.slot == self.slot() {
                return Err(OpeningError::OwnSlot);
            }
            return Err(OpeningError::NotApplied(reg.slot));
        }
        let mut next = *self.latest();
        next.release(crs, reg)?;
        if self.complete {
            self.slots.remove(&reg.slot);
        } else {
            self.slots.insert(reg.slot, SlotState::Free);
        }
        self.openings.push(next);
        Ok(())
    }
}

/// Version 2 of the `RBEH` encoding: version 1 recorded only the set of
/// slots applied, which cannot tell a reused slot from a registration applied
/// twice; it is refused (`UnsupportedVersion(1)`) and a history is rebuilt
/// from the log.
const OPENING_HISTORY_VERSION: u8 = 2;

/// Slot-state tags in the encoding.
const TAG_FREE: u8 = 0;
const TAG_LIVE: u8 = 1;

impl Codec for OpeningHistory {
    const MAGIC: [u8; 4] = *b"RBEH";
    const VERSION: u8 = OPENING_HISTORY_VERSION;

    fn write(&self, w: &mut Writer) {
        w.u32(self.slot());
        w.count(self.openings.len());
        for o in &self.openings {
            w.g1(&o.commitment);
            w.g1(&o.value);
        }
        w.bytes(&[u8::from(self.complete)]);
        w.count(self.slots.len());
        for (slot, state) in &self.slots {
            w.u32(*slot);
            match state {
                SlotState::Free => w.bytes(&[TAG_FREE]),
                SlotState::Live(digest) => {
                    w.bytes(&[TAG_LIVE]);
                    w.bytes(digest);
                }
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let slot = r.u32("slot")?;
        let count = r.count("opening count", 2 * G1_LEN, 1 << 24)?;
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
        let complete = match r.array::<1>("complete flag")? {
            [0] => false,
            [1] => true,
            _ => return Err(DecodeError::Inconsistent("complete flag is not 0 or 1")),
        };
        // A block has at most 2^15 positions.
        let slot_count = r.count("slot count", 5, 1 << 15)?;
        let mut slots = BTreeMap::new();
        let mut previous = None;
        for _ in 0..slot_count {
            let s = r.u32("slot state slot")?;
            // Strictly increasing: the one canonical order of a map.
            if previous.is_some_and(|p| p >= s) {
                return Err(DecodeError::Inconsistent(
                    "slot states not strictly increasing",
                ));
            }
            previous = Some(s);
            if s == slot {
                return Err(DecodeError::Inconsistent("a slot state for the own slot"));
            }
            let state = match r.array::<1>("slot state")? {
                [TAG_LIVE] => SlotState::Live(r.array::<32>("registration digest")?),
                // A complete history records free slots by their absence.
                [TAG_FREE] if !complete => SlotState::Free,
                _ => return Err(DecodeError::Inconsistent("invalid slot state")),
            };
            slots.insert(s, state);
        }
        Ok(Self {
            openings,
            slots,
            complete,
        })
    }
}

impl_canonical!(OpeningHistory);
