//! The curator's registry state: a pure function of the ordered registrations.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective};

use crate::WorkloadId;
use crate::crs::Crs;
use crate::error::{RegistrationError, ReplayError};
use crate::opening::Opening;
use crate::proof::{MembershipProof, NonMembershipProof};
use crate::public_params::PublicParams;
use crate::registration::Registration;
use crate::transcript::Transcript;

/// A registration that passed every check against one state. The only way to
/// change a [`RegistryState`] is to [`RegistryState::apply`] one of these; it
/// is refused unless the state is still exactly the one it was checked against
/// (same [`RegistryState::log_digest`]).
#[derive(Clone, Debug)]
pub struct VerifiedRegistration {
    registration: Registration,
    log_digest: [u8; 32],
}

impl VerifiedRegistration {
    /// The registration (to append to the log).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Take the registration back.
    pub fn into_inner(self) -> Registration {
        self.registration
    }
}

/// Openings of every position of one block that has at least one registration.
#[derive(Clone, Debug)]
struct Block {
    /// `u_(k,j)` for `j` in `[1, n]` at index `j - 1`.
    openings: Vec<G1Affine>,
}

/// Block commitments, per-position openings of touched blocks, id -> slot and
/// slot -> key maps, and the number of registrations applied.
///
/// Openings are allocated per block on its first registration (n points), so
/// memory grows with use: at N = 2^20 (n = 1024) a fully registered registry
/// holds ~1M openings plus keys (a few hundred MB), an empty one only its
/// 1024 commitments and the CRS.
#[derive(Clone, Debug)]
pub struct RegistryState {
    crs: Crs,
    commitments: Vec<G1Affine>,
    blocks: BTreeMap<u32, Block>,
    ids: BTreeMap<WorkloadId, u32>,
    keys: BTreeMap<u32, G1Affine>,
    version: u64,
    log_digest: [u8; 32],
}

/// Domain tag of the registration-log hash chain.
const DOMAIN_LOG: &[u8] = b"mazu-rbe/v1/registration-log";

impl RegistryState {
    /// The empty registry over `crs` (call [`Crs::verify`] first on a CRS you
    /// did not make).
    pub fn new(crs: Crs) -> Self {
        let blocks = crs.dimensions().blocks() as usize;
        let crs_digest = crs.digest();
        Self {
            crs,
            commitments: vec![G1Affine::identity(); blocks],
            blocks: BTreeMap::new(),
            ids: BTreeMap::new(),
            keys: BTreeMap::new(),
            version: 0,
            log_digest: {
                let mut t = Transcript::new(DOMAIN_LOG);
                t.append(b"crs", &crs_digest);
                t.finish()
            },
        }
    }

    /// Rebuild the state from the ordered log, verifying every registration.
    /// Two replays of the same log give byte-identical public parameters.
    pub fn replay(
        crs: Crs,
        log: impl IntoIterator<Item = Registration>,
    ) -> Result<Self, ReplayError> {
        let mut state = Self::new(crs);
        for (index, reg) in log.into_iter().enumerate() {
            state
                .verify_and_apply(reg)
                .map_err(|error| ReplayError { index, error })?;
        }
        Ok(state)
    }

    /// The CRS.
    pub fn crs(&self) -> &Crs {
        &self.crs
    }

    /// Number of registrations applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Hash chain over the CRS digest and every applied registration's
    /// canonical encoding, in order: `d_0 = H(CRS digest)`,
    /// `d_(k+1) = H(d_k, registration_k)`. Two states with the same digest
    /// were built from the same log.
    pub fn log_digest(&self) -> [u8; 32] {
        self.log_digest
    }

    /// Every check, in order: slot in range, slot free, id new, key not the
    /// identity, n-1 helpers, proof of knowledge, batched helper check (see
    /// [`Registration::verify_well_formed`]). Pure and deterministic.
    pub fn verify(&self, reg: Registration) -> Result<VerifiedRegistration, RegistrationError> {
        let capacity = self.crs.capacity();
        if reg.slot >= capacity {
            return Err(RegistrationError::SlotOutOfRange {
                slot: reg.slot,
                capacity,
            });
        }
        if self.keys.contains_key(&reg.slot) {
            return Err(RegistrationError::SlotTaken(reg.slot));
        }
        if let Some(existing_slot) = self.ids.get(&reg.id) {
            return Err(RegistrationError::DuplicateId {
                existing_slot: *existing_slot,
            });
        }
        reg.verify_well_formed(&self.crs)?;
        Ok(VerifiedRegistration {
            registration: reg,
            log_digest: self.log_digest,
        })
    }

    /// Apply a registration verified against exactly this state:
    /// `C_k += pk` and `u_(k,j) += xi_j` for every other position `j` of the
    /// block (n mixed additions and one batched normalisation).
    pub fn apply(&mut self, verified: &VerifiedRegistration) -> Result<(), RegistrationError> {
        if verified.log_digest != self.log_digest {
            return Err(RegistrationError::StaleVerification);
        }
        let reg = &verified.registration;
        let dims = self.crs.dimensions();
        let n = dims.block_size();
        let pos = dims
            .locate(reg.slot)
            .ok_or(RegistrationError::SlotOutOfRange {
                slot: reg.slot,
                capacity: dims.capacity(),
            })?;
        let k = pos.block as usize;
        let Some(commitment) = self.commitments.get_mut(k) else {
            return Err(RegistrationError::SlotOutOfRange {
                slot: reg.slot,
                capacity: dims.capacity(),
            });
        };
        let block = self.blocks.entry(pos.block).or_insert_with(|| Block {
            openings: vec![G1Affine::identity(); n as usize],
        });
        let mut sums: Vec<G1Projective> = block.openings.iter().map(G1Projective::from).collect();
        for j in (1..=n).filter(|j| *j != pos.position) {
            if let (Some(sum), Some(helper)) = (sums.get_mut(j as usize - 1), reg.helper_for(n, j))
            {
                *sum += helper;
            }
        }
        G1Projective::batch_normalize(&sums, &mut block.openings);
        *commitment = G1Affine::from(G1Projective::from(*commitment) + reg.public_key);
        self.ids.insert(reg.id, reg.slot);
        self.keys.insert(reg.slot, reg.public_key);
        self.version += 1;
        let mut t = Transcript::new(DOMAIN_LOG);
        t.append(b"previous", &self.log_digest);
        t.append(b"registration", &reg.to_bytes());
        self.log_digest = t.finish();
        Ok(())
    }

    /// [`RegistryState::verify`] then [`RegistryState::apply`]; returns the
    /// registration for the caller's log.
    pub fn verify_and_apply(
        &mut self,
        reg: Registration,
    ) -> Result<Registration, RegistrationError> {
        let verified = self.verify(reg)?;
        self.apply(&verified)?;
        Ok(verified.into_inner())
    }

    /// The public parameters at this version.
    pub fn public_params(&self) -> PublicParams {
        PublicParams::new(
            self.crs.digest(),
            self.crs.dimensions(),
            self.version,
            self.commitments.clone(),
        )
    }

    /// The slot registered for `id`.
    pub fn slot_of(&self, id: &WorkloadId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    /// The key registered at `slot`.
    pub fn public_key(&self, slot: u32) -> Option<&G1Affine> {
        self.keys.get(&slot)
    }

    /// Is `slot` in range and unregistered?
    pub fn is_free(&self, slot: u32) -> bool {
        slot < self.crs.capacity() && !self.keys.contains_key(&slot)
    }

    /// The lowest free slot, if any (one allocation policy a curator may use;
    /// O(number of registrations)).
    pub fn first_free_slot(&self) -> Option<u32> {
        let mut candidate = 0u32;
        for slot in self.keys.keys() {
            if *slot != candidate {
                break;
            }
            candidate = candidate.checked_add(1)?;
        }
        (candidate < self.crs.capacity()).then_some(candidate)
    }

    /// The current opening of `slot` (registered or not); `None` if out of
    /// range. In an untouched block both commitment and value are the identity.
    pub fn opening(&self, slot: u32) -> Option<Opening> {
        let pos = self.crs.dimensions().locate(slot)?;
        let commitment = *self.commitments.get(pos.block as usize)?;
        let value = match self.blocks.get(&pos.block) {
            Some(b) => *b.openings.get(pos.position as usize - 1)?,
            None => G1Affine::identity(),
        };
        Some(Opening {
            slot,
            commitment,
            value,
        })
    }

    /// Membership proof for a registered slot.
    pub fn membership_proof(&self, slot: u32) -> Option<MembershipProof> {
        let public_key = *self.keys.get(&slot)?;
        Some(MembershipProof {
            public_key,
            opening: self.opening(slot)?,
        })
    }

    /// Non-membership proof for a free slot.
    pub fn non_membership_proof(&self, slot: u32) -> Option<NonMembershipProof> {
        if !self.is_free(slot) {
            return None;
        }
        Some(NonMembershipProof {
            opening: self.opening(slot)?,
        })
    }

    /// Number of blocks with at least one registration (their openings are
    /// held in memory).
    pub fn touched_blocks(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_free_slot_fills_gaps() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let crs = Crs::generate_insecure_dev(4, &mut rng).unwrap();
        let mut state = RegistryState::new(crs.clone());
        assert_eq!(state.first_free_slot(), Some(0));
        for (slot, next) in [(0u32, Some(1u32)), (2, Some(1)), (1, Some(3)), (3, None)] {
            let (_, reg) = crate::keygen(&crs, slot, [slot as u8; 32], &mut rng).unwrap();
            state.verify_and_apply(reg).unwrap();
            assert_eq!(state.first_free_slot(), next);
        }
    }

    /// The curator shares the state and CRS across request handlers.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RegistryState>();
        assert_send_sync::<Crs>();
        assert_send_sync::<PublicParams>();
        assert_send_sync::<Registration>();
        assert_send_sync::<VerifiedRegistration>();
        assert_send_sync::<crate::SecretKey>();
    }
}
