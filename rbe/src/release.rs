//! Releasing a slot, and replaying a sequence of registrations and releases.
//!
//! A release is the exact inverse of applying the registration: block
//! commitments and openings are sums of the registrations' contributions, so
//! taking one term away gives the state in which it was never applied (see
//! `docs/rbe.md`, "Releasing a slot"). Who may release what (token expiry, the
//! holder's signature, a reveal window) and whether an id may ever be bound
//! again are the log's rules, enforced above this crate; here a release only
//! has to name exactly the registration live in its slot.

use crate::error::{OperationError, OperationsReplayError, ReleaseError};
use crate::registration::Registration;
use crate::state::{Fold, RegistryState, log_digest_release_step, registration_digest};

/// A release that passed every check against one state. It is applied with
/// [`RegistryState::apply_release`], which refuses it unless the state is
/// still exactly the one it was checked against (same
/// [`RegistryState::log_digest`]), as for [`crate::VerifiedRegistration`].
#[derive(Clone, Debug)]
pub struct VerifiedRelease {
    registration: Registration,
    log_digest: [u8; 32],
}

impl VerifiedRelease {
    /// The registration being released.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Take the registration back.
    pub fn into_inner(self) -> Registration {
        self.registration
    }
}

/// One entry of a registry's history: a registration or the release of one.
/// [`RegistryState::replay_operations`] and
/// [`crate::OpeningHistory::from_operations`] take sequences of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryOp<'a> {
    /// Register (verified in full, as [`RegistryState::verify`] does).
    Register(&'a Registration),
    /// Release this registration, which must be the one live in its slot.
    Release(&'a Registration),
}

impl<'a> RegistryOp<'a> {
    /// The registration registered or released.
    pub fn registration(&self) -> &'a Registration {
        match self {
            RegistryOp::Register(reg) | RegistryOp::Release(reg) => reg,
        }
    }
}

impl RegistryState {
    /// Check a release against this state, in this order: slot in range
    /// ([`ReleaseError::SlotOutOfRange`]), slot taken
    /// ([`ReleaseError::SlotFree`], also for one already released), and the
    /// registration is exactly the one applied there: same id
    /// ([`ReleaseError::IdMismatch`]), same public key
    /// ([`ReleaseError::KeyMismatch`]), same proof of knowledge
    /// ([`ReleaseError::ProofMismatch`]), same canonical bytes, i.e. the same
    /// helpers ([`ReleaseError::RegistrationMismatch`]; the helpers are what
    /// is subtracted from the openings, so they must be the ones that were
    /// added). No curve arithmetic: map lookups and one hash of the
    /// registration's encoding.
    ///
    /// The result is bound to this state's log digest, as
    /// [`RegistryState::verify`]'s is.
    pub fn verify_release(&self, reg: &Registration) -> Result<VerifiedRelease, ReleaseError> {
        let capacity = self.crs.capacity();
        if reg.slot >= capacity {
            return Err(ReleaseError::SlotOutOfRange {
                slot: reg.slot,
                capacity,
            });
        }
        let (Some(key), Some(record)) = (self.keys.get(&reg.slot), self.key_records.get(&reg.slot))
        else {
            return Err(ReleaseError::SlotFree(reg.slot));
        };
        if record.id != reg.id {
            return Err(ReleaseError::IdMismatch(reg.slot));
        }
        if *key != reg.public_key {
            return Err(ReleaseError::KeyMismatch(reg.slot));
        }
        if record.proof != reg.proof.to_compressed() {
            return Err(ReleaseError::ProofMismatch(reg.slot));
        }
        if record.digest != registration_digest(&reg.to_bytes()) {
            return Err(ReleaseError::RegistrationMismatch(reg.slot));
        }
        Ok(VerifiedRelease {
            registration: reg.clone(),
            log_digest: self.log_digest,
        })
    }

    /// Apply a release verified against exactly this state: `C_k -= pk` and
    /// `u_(k,j) -= xi_j` for every other position `j` of the block, and the
    /// slot's id, key and record are removed, so the slot is free
    /// ([`RegistryState::is_free`], [`RegistryState::non_membership_proof`])
    /// and may be registered again, by any id (this one included: forbidding
    /// an id to be bound twice is the log's rule, not this crate's).
    /// `version` grows by one and the log digest takes a release step.
    pub fn apply_release(&mut self, verified: &VerifiedRelease) -> Result<(), ReleaseError> {
        if verified.log_digest != self.log_digest {
            return Err(ReleaseError::StaleVerification);
        }
        let reg = &verified.registration;
        // Remove the slot from the maps first: `fold` drops the block's
        // openings when no other slot of it is live.
        self.keys.remove(&reg.slot);
        self.key_records.remove(&reg.slot);
        self.ids.remove(&reg.id);
        let folded = self.fold(reg, Fold::Remove);
        // Verified against this state, so the slot is in range.
        debug_assert!(folded);
        self.version += 1;
        self.log_digest = log_digest_release_step(&self.log_digest, &reg.to_bytes());
        Ok(())
    }

    /// [`RegistryState::verify_release`] then
    /// [`RegistryState::apply_release`]. A refused release leaves the state
    /// unchanged.
    pub fn release(&mut self, reg: &Registration) -> Result<(), ReleaseError> {
        let verified = self.verify_release(reg)?;
        self.apply_release(&verified)
    }

    /// Apply one operation: a registration through
    /// [`RegistryState::verify_and_apply`] (every check, pairing included),
    /// a release through [`RegistryState::release`].
    pub fn apply_operation(&mut self, op: RegistryOp<'_>) -> Result<(), OperationError> {
        match op {
            RegistryOp::Register(reg) => {
                self.verify_and_apply(reg.clone())?;
            }
            RegistryOp::Release(reg) => self.release(reg)?,
        }
        Ok(())
    }

    /// Rebuild the state from an ordered sequence of registrations and
    /// releases, verifying each. Two replays of the same sequence give
    /// byte-identical public parameters and the same log digest; a
    /// registration-only sequence gives exactly what
    /// [`RegistryState::replay`] gives.
    pub fn replay_operations<'a>(
        crs: crate::Crs,
        ops: impl IntoIterator<Item = RegistryOp<'a>>,
    ) -> Result<Self, OperationsReplayError> {
        let mut state = Self::new(crs);
        for (index, op) in ops.into_iter().enumerate() {
            state
                .apply_operation(op)
                .map_err(|error| OperationsReplayError { index, error })?;
        }
        Ok(state)
    }
}
