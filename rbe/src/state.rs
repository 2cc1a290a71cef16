//! The curator's registry state: a pure function of the ordered registrations
//! and releases (see `release.rs` for the latter).

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective};

use crate::WorkloadId;
use crate::crs::Crs;
use crate::error::{RegistrationError, ReplayError};
use crate::opening::Opening;
use crate::pok::{POK_LEN, ProofOfKnowledge};
use crate::proof::{MembershipProof, NonMembershipProof};
use crate::public_params::PublicParams;
use crate::registration::{Registration, WellFormedRegistration};
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
pub(crate) struct Block {
    /// `u_(k,j)` for `j` in `[1, n]` at index `j - 1`.
    pub(crate) openings: Vec<G1Affine>,
}

/// What a membership proof needs besides the key and the opening: the id and
/// the proof of knowledge a slot was registered with, kept compressed and
/// decoded when a proof is asked for; and the digest of the registration's
/// canonical encoding, so that a release can be checked to name exactly the
/// registration that was applied (its helpers included) without keeping the
/// helpers (144 bytes per registration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub(crate) id: WorkloadId,
    /// [`ProofOfKnowledge::to_compressed`] of the registration's proof.
    pub(crate) proof: [u8; POK_LEN],
    /// [`registration_digest`] of the registration's canonical bytes.
    pub(crate) digest: [u8; 32],
}

/// Block commitments, per-position openings of touched blocks, id -> slot and
/// slot -> key maps (with each key's id and proof of knowledge, for
/// membership proofs), and the number of registrations applied.
///
/// Openings are allocated per block on its first registration (n points), so
/// memory grows with use: at N = 2^20 (n = 1024) a fully registered registry
/// holds ~1M openings plus keys (a few hundred MB), an empty one only its
/// 1024 commitments and the CRS.
#[derive(Clone, Debug)]
pub struct RegistryState {
    pub(crate) crs: Crs,
    pub(crate) commitments: Vec<G1Affine>,
    pub(crate) blocks: BTreeMap<u32, Block>,
    pub(crate) ids: BTreeMap<WorkloadId, u32>,
    pub(crate) keys: BTreeMap<u32, G1Affine>,
    pub(crate) key_records: BTreeMap<u32, KeyRecord>,
    pub(crate) version: u64,
    pub(crate) log_digest: [u8; 32],
}

/// Domain tag of the registration-log hash chain.
const DOMAIN_LOG: &[u8] = b"mazu-rbe/v1/registration-log";

/// `d_0 = H(CRS digest)`: the log digest of the empty registry.
pub(crate) fn log_digest_start(crs_digest: &[u8; 32]) -> [u8; 32] {
    let mut t = Transcript::new(DOMAIN_LOG);
    t.append(b"crs", crs_digest);
    t.finish()
}

/// `d_(k+1) = H(d_k, "registration", registration_k)` over the
/// registration's canonical bytes.
pub(crate) fn log_digest_step(previous: &[u8; 32], registration_bytes: &[u8]) -> [u8; 32] {
    let mut t = Transcript::new(DOMAIN_LOG);
    t.append(b"previous", previous);
    t.append(b"registration", registration_bytes);
    t.finish()
}

/// `d_(k+1) = H(d_k, "release", registration)` over the released
/// registration's canonical bytes. The label differs from the registration
/// step's (and the transcript length-prefixes labels), so a registration and
/// a release of the same bytes never give the same digest.
pub(crate) fn log_digest_release_step(previous: &[u8; 32], registration_bytes: &[u8]) -> [u8; 32] {
    let mut t = Transcript::new(DOMAIN_LOG);
    t.append(b"previous", previous);
    t.append(b"release", registration_bytes);
    t.finish()
}

/// Domain tag of a registration's digest.
const DOMAIN_REGISTRATION: &[u8] = b"mazu-rbe/v1/registration-digest";

/// A digest of a registration's canonical bytes: what a release (or an
/// opening history) compares to know it names exactly the registration that
/// was applied.
pub(crate) fn registration_digest(registration_bytes: &[u8]) -> [u8; 32] {
    let mut t = Transcript::new(DOMAIN_REGISTRATION);
    t.append(b"registration", registration_bytes);
    t.finish()
}

/// Whether [`RegistryState::fold`] adds a registration's contribution or
/// takes it away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fold {
    Add,
    Remove,
}

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
            key_records: BTreeMap::new(),
            version: 0,
            log_digest: log_digest_start(&crs_digest),
        }
    }

    /// Rebuild the state from an ordered log of registrations only,
    /// verifying every registration. Two replays of the same log give
    /// byte-identical public parameters. A log with releases replays with
    /// [`RegistryState::replay_operations`].
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

    /// Number of operations applied: registrations plus releases. It only
    /// grows, so a larger version is a later state of the same log. With no
    /// release it is the number of registrations; the number of slots taken
    /// now is [`RegistryState::live_registrations`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of registrations applied and not released (slots taken).
    pub fn live_registrations(&self) -> usize {
        self.keys.len()
    }

    /// Hash chain over the CRS digest and every applied operation, in order:
    /// `d_0 = H(CRS digest)`, `d_(k+1) = H(d_k, "registration", bytes)` for
    /// a registration and `H(d_k, "release", bytes)` for a release, `bytes`
    /// being the registration's canonical encoding. Two states with the same
    /// digest were built from the same sequence of operations.
    pub fn log_digest(&self) -> [u8; 32] {
        self.log_digest
    }

    /// Every check, in order: slot in range, slot free, id new, key not the
    /// identity, n-1 helpers, proof of knowledge, batched helper check (see
    /// [`Registration::verify_well_formed`]). Pure and deterministic.
    ///
    /// This runs the pairing check. A caller that already holds a
    /// [`WellFormedRegistration`] for this state's CRS should use
    /// [`RegistryState::verify_fresh`] instead, which does only the state
    /// checks.
    pub fn verify(&self, reg: Registration) -> Result<VerifiedRegistration, RegistrationError> {
        self.check_state(&reg)?;
        let well_formed = reg.into_well_formed(&self.crs)?;
        Ok(VerifiedRegistration {
            registration: well_formed.into_inner(),
            log_digest: self.log_digest,
        })
    }

    /// The state checks alone, for a registration that already passed the
    /// stateless checks ([`Registration::into_well_formed`], typically on
    /// another thread): the CRS it was checked against is this state's CRS
    /// ([`RegistrationError::CrsMismatch`] otherwise), slot in range, slot
    /// free, id new. No curve arithmetic: a few map lookups.
    ///
    /// The result is bound to this state's log digest exactly as
    /// [`RegistryState::verify`]'s is, so [`RegistryState::apply`] refuses
    /// it on any other state.
    pub fn verify_fresh(
        &self,
        well_formed: WellFormedRegistration,
    ) -> Result<VerifiedRegistration, RegistrationError> {
        // The proof of knowledge and the helper weights are bound to the CRS
        // digest; a check under another CRS says nothing about this one.
        if well_formed.crs_digest() != &self.crs.digest() {
            return Err(RegistrationError::CrsMismatch);
        }
        self.check_state(well_formed.registration())?;
        Ok(VerifiedRegistration {
            registration: well_formed.into_inner(),
            log_digest: self.log_digest,
        })
    }

    /// Slot in range, slot free, id new (the order [`RegistryState::verify`]
    /// reports them in).
    fn check_state(&self, reg: &Registration) -> Result<(), RegistrationError> {
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
        Ok(())
    }

    /// Apply a registration verified against exactly this state:
    /// `C_k += pk` and `u_(k,j) += xi_j` for every other position `j` of the
    /// block (n mixed additions and one batched normalisation).
    pub fn apply(&mut self, verified: &VerifiedRegistration) -> Result<(), RegistrationError> {
        if verified.log_digest != self.log_digest {
            return Err(RegistrationError::StaleVerification);
        }
        let reg = &verified.registration;
        let capacity = self.crs.capacity();
        if !self.fold(reg, Fold::Add) {
            return Err(RegistrationError::SlotOutOfRange {
                slot: reg.slot,
                capacity,
            });
        }
        let bytes = reg.to_bytes();
        self.ids.insert(reg.id, reg.slot);
        self.keys.insert(reg.slot, reg.public_key);
        self.key_records.insert(
            reg.slot,
            KeyRecord {
                id: reg.id,
                proof: reg.proof.to_compressed(),
                digest: registration_digest(&bytes),
            },
        );
        self.version += 1;
        self.log_digest = log_digest_step(&self.log_digest, &bytes);
        Ok(())
    }

    /// Add (or take away) `reg`'s contribution to its block: `C_k ± pk` and
    /// `u_(k,j) ± xi_j` for every other position `j`. The maps are the
    /// caller's. A block's openings are allocated on its first addition and
    /// dropped when a removal leaves it without a registered slot (then every
    /// opening and the commitment are the identity again, as in a block never
    /// touched). `false` (nothing changed) if the slot is out of range.
    pub(crate) fn fold(&mut self, reg: &Registration, fold: Fold) -> bool {
        let dims = self.crs.dimensions();
        let n = dims.block_size();
        let Some(pos) = dims.locate(reg.slot) else {
            return false;
        };
        let Some(commitment) = self.commitments.get_mut(pos.block as usize) else {
            return false;
        };
        let block = self.blocks.entry(pos.block).or_insert_with(|| Block {
            openings: vec![G1Affine::identity(); n as usize],
        });
        let mut sums: Vec<G1Projective> = block.openings.iter().map(G1Projective::from).collect();
        for j in (1..=n).filter(|j| *j != pos.position) {
            if let (Some(sum), Some(helper)) = (sums.get_mut(j as usize - 1), reg.helper_for(n, j))
            {
                match fold {
                    Fold::Add => *sum += helper,
                    Fold::Remove => *sum -= helper,
                }
            }
        }
        G1Projective::batch_normalize(&sums, &mut block.openings);
        let c = G1Projective::from(*commitment);
        *commitment = G1Affine::from(match fold {
            Fold::Add => c + reg.public_key,
            Fold::Remove => c - reg.public_key,
        });
        if fold == Fold::Remove {
            let first = pos.block * n;
            let others_live = self
                .keys
                .range(first..first.saturating_add(n))
                .any(|(slot, _)| *slot != reg.slot);
            if !others_live {
                self.blocks.remove(&pos.block);
            }
        }
        true
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

    /// The public parameters at this version (see [`RegistryState::version`]).
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

    /// Membership proof for a registered slot: its key, the id and proof of
    /// knowledge it was registered with, and its current opening. `None` for
    /// a free slot (and, for a state restored from an image, if the log
    /// prefix pushed held a proof of knowledge that does not decode, which a
    /// verified log never does).
    pub fn membership_proof(&self, slot: u32) -> Option<MembershipProof> {
        let public_key = *self.keys.get(&slot)?;
        let record = self.key_records.get(&slot)?;
        let proof_of_knowledge = ProofOfKnowledge::from_compressed(&record.proof).ok()?;
        Some(MembershipProof {
            id: record.id,
            public_key,
            proof_of_knowledge,
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

    fn dev_crs(seed: u64, capacity: u32) -> (Crs, rand_chacha::ChaCha20Rng) {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let crs = Crs::generate_insecure_dev(capacity, &mut rng).unwrap();
        (crs, rng)
    }

    #[test]
    fn verify_fresh_accepts_and_matches_verify() {
        let (crs, mut rng) = dev_crs(8, 16);
        let mut a = RegistryState::new(crs.clone());
        let mut b = RegistryState::new(crs.clone());
        for slot in [3u32, 9] {
            let (_, reg) = crate::keygen(&crs, slot, [slot as u8; 32], &mut rng).unwrap();
            let wf = reg.clone().into_well_formed(&crs).unwrap();
            assert_eq!(wf.crs_digest(), &crs.digest());
            let fresh = b.verify_fresh(wf).unwrap();
            b.apply(&fresh).unwrap();
            a.verify_and_apply(reg).unwrap();
        }
        assert_eq!(a.public_params().to_bytes(), b.public_params().to_bytes());
        assert_eq!(a.log_digest(), b.log_digest());
    }

    #[test]
    fn well_formed_under_another_crs_is_refused() {
        let (crs_a, mut rng) = dev_crs(1, 16);
        let (crs_b, _) = dev_crs(2, 16);
        let (_, reg) = crate::keygen(&crs_a, 4, [4; 32], &mut rng).unwrap();
        let wf = reg.into_well_formed(&crs_a).unwrap();
        let state_b = RegistryState::new(crs_b);
        assert_eq!(
            state_b.verify_fresh(wf.clone()).unwrap_err(),
            RegistrationError::CrsMismatch
        );
        // Under its own CRS it passes.
        RegistryState::new(crs_a).verify_fresh(wf).unwrap();
    }

    #[test]
    fn into_well_formed_refuses_what_verify_well_formed_refuses() {
        let (crs, mut rng) = dev_crs(3, 16);
        let (_, reg) = crate::keygen(&crs, 4, [4; 32], &mut rng).unwrap();
        let mut bad = reg.clone();
        bad.helpers.swap(0, 1);
        assert_eq!(
            bad.into_well_formed(&crs).unwrap_err(),
            RegistrationError::InvalidHelpers
        );
        let mut bad = reg;
        bad.id = [5; 32];
        assert_eq!(
            bad.into_well_formed(&crs).unwrap_err(),
            RegistrationError::InvalidProofOfKnowledge
        );
    }

    #[test]
    fn verify_fresh_refuses_taken_slot_duplicate_id_and_stale_use() {
        let (crs, mut rng) = dev_crs(4, 16);
        let mut state = RegistryState::new(crs.clone());
        let (_, first) = crate::keygen(&crs, 2, [2; 32], &mut rng).unwrap();
        // Both checked before the first is applied (as the curator's parallel
        // verification does).
        let (_, same_slot) = crate::keygen(&crs, 2, [3; 32], &mut rng).unwrap();
        let (_, same_id) = crate::keygen(&crs, 7, [2; 32], &mut rng).unwrap();
        let (_, other) = crate::keygen(&crs, 8, [8; 32], &mut rng).unwrap();
        let wf_first = first.into_well_formed(&crs).unwrap();
        let wf_slot = same_slot.into_well_formed(&crs).unwrap();
        let wf_id = same_id.into_well_formed(&crs).unwrap();
        let wf_other = other.into_well_formed(&crs).unwrap();
        // Verified against version 0, applied only after version 1 exists.
        let early = state.verify_fresh(wf_other.clone()).unwrap();
        let v = state.verify_fresh(wf_first.clone()).unwrap();
        state.apply(&v).unwrap();
        assert_eq!(
            state.verify_fresh(wf_slot).unwrap_err(),
            RegistrationError::SlotTaken(2)
        );
        assert_eq!(
            state.verify_fresh(wf_id).unwrap_err(),
            RegistrationError::DuplicateId { existing_slot: 2 }
        );
        assert_eq!(
            state.verify_fresh(wf_first).unwrap_err(),
            RegistrationError::SlotTaken(2)
        );
        assert_eq!(
            state.apply(&early).unwrap_err(),
            RegistrationError::StaleVerification
        );
        let v = state.verify_fresh(wf_other).unwrap();
        state.apply(&v).unwrap();
        assert_eq!(state.version(), 2);
    }

    /// A registration step and a release step over the same bytes never
    /// give the same digest (distinct, length-prefixed labels).
    #[test]
    fn release_step_is_domain_separated() {
        let d = [7u8; 32];
        for bytes in [&b""[..], b"registration", b"release"] {
            assert_ne!(
                log_digest_step(&d, bytes),
                log_digest_release_step(&d, bytes)
            );
        }
        assert_ne!(registration_digest(b"x"), log_digest_step(&d, b"x"));
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
        assert_send_sync::<crate::VerifiedRelease>();
        assert_send_sync::<WellFormedRegistration>();
        assert_send_sync::<crate::SecretKey>();
    }
}
