//! A fast-to-load image of a [`RegistryState`], checked against the log it
//! claims to summarize.
//!
//! Replaying a log decodes every registration (each of its `n + 1` points
//! subgroup-checked) and runs its pairing check: tens of milliseconds per
//! registration at `n = 256`, most of an hour for a full registry of 65,536.
//! A curator that keeps an image of its own state can restart from it and
//! replay only the entries after it.
//!
//! # Format (`RBES`, version 2)
//!
//! ```text
//! magic "RBES", version 0x02
//! crs digest        32 bytes
//! version           u64   operations applied (registrations + releases)
//! log digest        32 bytes (RegistryState::log_digest)
//! commitments       u32 count (= number of blocks B), B uncompressed G1 points (96 B)
//! touched blocks    u32 count, then per block in increasing index:
//!                   index u32 (< B), n uncompressed G1 points (the openings)
//! registrations     u32 count (<= version, <= capacity): the live ones, per
//!                   registration in increasing slot:
//!                   slot u32, id (32 bytes), public key (uncompressed G1, 96 B)
//! ```
//!
//! Version 1 had the same layout for a log without releases (its
//! registration count had to equal its version); such images are still read
//! with that extra check. Images are always written at version 2.
//!
//! # What is and is not checked on load
//!
//! [`SnapshotRestore::from_bytes_unchecked`] decodes points **without the
//! subgroup check** (that check is what makes decoding expensive); it checks
//! that every point is on the curve, every count and index is consistent, the
//! CRS digest matches, and recomputes every block commitment from the keys.
//! [`SnapshotRestore::push_registration`] and
//! [`SnapshotRestore::push_release`] then walk the operations of the log
//! prefix the image claims to cover (canonical registration bytes only, no
//! curve arithmetic), keeping their own table of live registrations: a
//! registration must be for a free slot and an id not live, a release must
//! name exactly the registration live in its slot (same bytes). Only if the
//! log digest recomputed from those operations equals the image's, and the
//! live table they leave (slot, id, key) is exactly the image's, does
//! [`SnapshotRestore::finish`] hand out the state. The live registrations'
//! proofs of knowledge, which membership proofs carry, are not in the image:
//! they are taken (still compressed, not decoded) from the last 80 bytes of
//! the pushed registrations.
//!
//! So the public parameters (CRS digest, version, commitments) of a restored
//! state are exactly those a full replay of that log prefix gives. The
//! **openings are taken on trust**: they are the one part of the state that
//! needs the helper values (the bulk of the log) to recompute. The image must
//! therefore come from a party that already verified the log, typically the
//! same process that wrote it (see `docs/curator.md`); a tampered opening is
//! caught by whoever uses it (membership proofs and decryption check against
//! the commitments), and an auditor replays the log instead.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective};

use crate::WorkloadId;
use crate::crs::Crs;
use crate::encoding::G1_LEN;
use crate::encoding::{Codec, Reader, Writer};
use crate::error::{DecodeError, SnapshotError};
use crate::pok::POK_LEN;
use crate::registration::Registration;
use crate::state::{
    Block, KeyRecord, RegistryState, log_digest_release_step, log_digest_step, registration_digest,
};

/// Type tag of the state image.
const MAGIC: [u8; 4] = *b"RBES";

/// Format version written (the live registration count may differ from the
/// version).
const IMAGE_VERSION: u8 = 2;

/// The format version before releases (registration count = version), still
/// read.
const IMAGE_VERSION_REGISTRATIONS_ONLY: u8 = 1;

/// Uncompressed G1 point length.
const G1_UNCOMPRESSED_LEN: usize = 96;

impl RegistryState {
    /// The state image: every commitment and opening uncompressed, the
    /// id/slot/key table, the version and the log digest (format in
    /// `docs/rbe.md`). Load it with [`SnapshotRestore`], which checks it
    /// against the log prefix it covers.
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        let n = self.crs.block_size() as usize;
        let mut w = Writer::with_version(MAGIC, IMAGE_VERSION);
        w.bytes(&self.crs.digest());
        w.u64(self.version);
        w.bytes(&self.log_digest);
        w.count(self.commitments.len());
        for c in &self.commitments {
            w.bytes(&c.to_uncompressed());
        }
        w.count(self.blocks.len());
        for (index, block) in &self.blocks {
            w.u32(*index);
            debug_assert_eq!(block.openings.len(), n);
            for u in &block.openings {
                w.bytes(&u.to_uncompressed());
            }
        }
        // Slot order (the keys map), with each slot's id.
        let mut id_of: BTreeMap<u32, &WorkloadId> = BTreeMap::new();
        for (id, slot) in &self.ids {
            id_of.insert(*slot, id);
        }
        w.count(self.keys.len());
        for (slot, pk) in &self.keys {
            w.u32(*slot);
            w.bytes(id_of.get(slot).map_or(&[0u8; 32], |id| *id));
            w.bytes(&pk.to_uncompressed());
        }
        w.into_bytes()
    }
}

/// A state image ([`RegistryState::to_snapshot_bytes`]) being checked
/// against the log prefix it claims to cover. The public parameters of the
/// state it gives are exactly those of a full replay of that prefix; the
/// openings are taken on trust (see `docs/rbe.md`, "State images").
///
/// ```
/// use mazu_rbe::{Crs, RegistryState, SnapshotRestore, keygen};
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
///
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let crs = Crs::generate_insecure_dev(16, &mut rng)?;
/// let mut state = RegistryState::new(crs.clone());
/// let (_, reg) = keygen(&crs, 3, [3; 32], &mut rng)?;
/// let log = vec![reg.to_bytes()]; // what a log stores
/// state.verify_and_apply(reg)?;
/// let image = state.to_snapshot_bytes();
///
/// let mut restore = SnapshotRestore::from_bytes_unchecked(crs, &image)?;
/// for registration_bytes in log.iter().take(restore.covers() as usize) {
///     restore.push_registration(registration_bytes)?;
/// }
/// let restored = restore.finish()?;
/// assert_eq!(restored.public_params().to_bytes(), state.public_params().to_bytes());
/// # Ok::<(), mazu_rbe::Error>(())
/// ```
#[derive(Debug)]
pub struct SnapshotRestore {
    state: RegistryState,
    /// Log digest recomputed from the operations pushed so far.
    digest: [u8; 32],
    /// Operations pushed so far.
    pushed: u64,
    /// The registrations live after the operations pushed so far, by slot.
    live: BTreeMap<u32, Pushed>,
    /// Their ids.
    live_ids: BTreeMap<WorkloadId, u32>,
}

/// What the restore keeps of a pushed registration that is still live.
#[derive(Clone, Copy, Debug)]
struct Pushed {
    id: WorkloadId,
    /// Compressed public key.
    public_key: [u8; 48],
    record: KeyRecord,
}

/// The fields [`SnapshotRestore`] reads from a registration's canonical
/// bytes without decoding a point.
struct Header {
    slot: u32,
    id: WorkloadId,
    public_key: [u8; 48],
    proof: [u8; POK_LEN],
}

/// Reads slot, id, compressed key, the helper count (the length must match
/// it) and the trailing proof of knowledge.
fn read_header(registration_bytes: &[u8]) -> Result<Header, SnapshotError> {
    let mut r = Reader::open(registration_bytes, Registration::MAGIC)?;
    let slot = r.u32("slot")?;
    let id = r.array::<32>("id")?;
    let public_key = r.array::<48>("public key")?;
    let count = r.u32("helper count")?;
    let helpers_len = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(G1_LEN))
        .ok_or(DecodeError::LengthOutOfRange {
            field: "helper count",
            value: u64::from(count),
        })?;
    r.take("helper value", helpers_len)?;
    let proof = r.array::<POK_LEN>("proof of knowledge")?;
    r.finish()?;
    Ok(Header {
        slot,
        id,
        public_key,
        proof,
    })
}

impl SnapshotRestore {
    /// Decodes a state image over `crs` **without subgroup checks** (points
    /// are checked to be on the curve). Checks the CRS digest, every count and
    /// index, the id/key maps, and that each block commitment is the sum of
    /// that block's keys. The state is not usable until the log prefix has
    /// been pushed and [`SnapshotRestore::finish`] accepted it.
    pub fn from_bytes_unchecked(crs: Crs, bytes: &[u8]) -> Result<Self, SnapshotError> {
        // Version 2, or version 1 (no releases: live count = version).
        let (mut r, registrations_only) = match Reader::open_version(bytes, MAGIC, IMAGE_VERSION) {
            Err(DecodeError::UnsupportedVersion(IMAGE_VERSION_REGISTRATIONS_ONLY)) => (
                Reader::open_version(bytes, MAGIC, IMAGE_VERSION_REGISTRATIONS_ONLY)?,
                true,
            ),
            other => (other?, false),
        };
        let crs_digest = r.array::<32>("crs digest")?;
        if crs_digest != crs.digest() {
            return Err(SnapshotError::CrsMismatch);
        }
        let dims = crs.dimensions();
        let n = dims.block_size() as usize;
        let block_count = dims.blocks() as usize;
        let capacity = dims.capacity();
        let version = r.u64("version")?;
        let log_digest = r.array::<32>("log digest")?;

        let count = r.count("commitment count", G1_UNCOMPRESSED_LEN, block_count)?;
        if count != block_count {
            return Err(SnapshotError::Inconsistent(
                "commitment count is not the block count",
            ));
        }
        let mut commitments = Vec::with_capacity(count);
        for _ in 0..count {
            commitments.push(g1_unchecked(&mut r, "commitment")?);
        }

        let block_len = 4 + n * G1_UNCOMPRESSED_LEN;
        let count = r.count("block count", block_len, block_count)?;
        let mut blocks = BTreeMap::new();
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let index = r.u32("block index")?;
            if index as usize >= block_count || previous.is_some_and(|p| index <= p) {
                return Err(SnapshotError::Inconsistent(
                    "block indices out of range or not increasing",
                ));
            }
            previous = Some(index);
            let mut openings = Vec::with_capacity(n);
            for _ in 0..n {
                openings.push(g1_unchecked(&mut r, "opening")?);
            }
            blocks.insert(index, Block { openings });
        }

        let count = r.count(
            "registration count",
            4 + 32 + G1_UNCOMPRESSED_LEN,
            capacity as usize,
        )?;
        if registrations_only && count as u64 != version {
            return Err(SnapshotError::Inconsistent(
                "registration count is not the version",
            ));
        }
        // Each live registration took at least one operation.
        if count as u64 > version {
            return Err(SnapshotError::Inconsistent(
                "more live registrations than operations",
            ));
        }
        let mut ids = BTreeMap::new();
        let mut keys = BTreeMap::new();
        let mut sums = vec![G1Projective::IDENTITY; block_count];
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let slot = r.u32("slot")?;
            let id = r.array::<32>("id")?;
            let pk = g1_unchecked(&mut r, "public key")?;
            if slot >= capacity || previous.is_some_and(|p| slot <= p) {
                return Err(SnapshotError::Inconsistent(
                    "slots out of range or not increasing",
                ));
            }
            previous = Some(slot);
            if ids.insert(id, slot).is_some() {
                return Err(SnapshotError::Inconsistent("an id is registered twice"));
            }
            let pos = dims
                .locate(slot)
                .ok_or(SnapshotError::Inconsistent("slot out of range"))?;
            if !blocks.contains_key(&pos.block) {
                return Err(SnapshotError::Inconsistent(
                    "a registered slot's block has no openings",
                ));
            }
            if let Some(sum) = sums.get_mut(pos.block as usize) {
                *sum += pk;
            }
            keys.insert(slot, pk);
        }
        r.finish()?;
        // The commitments are what the public parameters publish: recompute
        // them from the keys (which the log prefix pins down) rather than
        // trusting the image. One addition per registration.
        let mut recomputed = vec![G1Affine::identity(); block_count];
        G1Projective::batch_normalize(&sums, &mut recomputed);
        if recomputed != commitments {
            return Err(SnapshotError::Inconsistent(
                "a block commitment is not the sum of its keys",
            ));
        }
        let digest = crate::state::log_digest_start(&crs_digest);
        Ok(Self {
            state: RegistryState {
                crs,
                commitments,
                blocks,
                ids,
                keys,
                key_records: BTreeMap::new(),
                version,
                log_digest,
            },
            digest,
            pushed: 0,
            live: BTreeMap::new(),
            live_ids: BTreeMap::new(),
        })
    }

    /// How many operations the image covers (its version): push exactly
    /// that many registrations and releases, from the start of the log.
    pub fn covers(&self) -> u64 {
        self.state.version
    }

    /// Refuses a push past the image's version.
    fn check_room(&self) -> Result<u64, SnapshotError> {
        let index = self.pushed;
        if index >= self.state.version {
            return Err(SnapshotError::PrefixLength {
                covers: self.state.version,
                pushed: index + 1,
            });
        }
        Ok(index)
    }

    /// Checks the next operation of the log prefix, a registration, given as
    /// its canonical bytes (`Registration::to_bytes`, as a log stores them):
    /// its slot must be in range and free, and its id not live, after the
    /// operations pushed before it ([`SnapshotError::PrefixMismatch`]
    /// otherwise). Reads the fixed-size header, the helper count (the length
    /// must match it) and the trailing proof of knowledge, which the restored
    /// state keeps for its membership proofs; no point is decoded. Returns
    /// that slot and id (for the caller's own bindings, e.g. id = hash of a
    /// token). Whether it matches the image is known at
    /// [`SnapshotRestore::finish`] (it may be released by a later operation).
    pub fn push_registration(
        &mut self,
        registration_bytes: &[u8],
    ) -> Result<(u32, WorkloadId), SnapshotError> {
        let index = self.check_room()?;
        let h = read_header(registration_bytes)?;
        if h.slot >= self.state.crs.capacity()
            || self.live.contains_key(&h.slot)
            || self.live_ids.contains_key(&h.id)
        {
            return Err(SnapshotError::PrefixMismatch { index });
        }
        let record = KeyRecord {
            id: h.id,
            proof: h.proof,
            digest: registration_digest(registration_bytes),
        };
        self.live.insert(
            h.slot,
            Pushed {
                id: h.id,
                public_key: h.public_key,
                record,
            },
        );
        self.live_ids.insert(h.id, h.slot);
        self.digest = log_digest_step(&self.digest, registration_bytes);
        self.pushed += 1;
        Ok((h.slot, h.id))
    }

    /// Checks the next operation of the log prefix, a release, given as the
    /// released registration's canonical bytes: they must be exactly those
    /// of the registration live in its slot after the operations pushed
    /// before it ([`SnapshotError::PrefixMismatch`] otherwise). Returns that
    /// slot and id.
    pub fn push_release(
        &mut self,
        registration_bytes: &[u8],
    ) -> Result<(u32, WorkloadId), SnapshotError> {
        let index = self.check_room()?;
        let h = read_header(registration_bytes)?;
        let digest = registration_digest(registration_bytes);
        if self.live.get(&h.slot).map(|p| p.record.digest) != Some(digest) {
            return Err(SnapshotError::PrefixMismatch { index });
        }
        self.live.remove(&h.slot);
        self.live_ids.remove(&h.id);
        self.digest = log_digest_release_step(&self.digest, registration_bytes);
        self.pushed += 1;
        Ok((h.slot, h.id))
    }

    /// The restored state, if exactly [`SnapshotRestore::covers`]
    /// operations were pushed, the log digest recomputed from them is the
    /// image's, and the registrations they leave live (slot, id, key) are
    /// exactly the image's.
    pub fn finish(mut self) -> Result<RegistryState, SnapshotError> {
        if self.pushed != self.state.version {
            return Err(SnapshotError::PrefixLength {
                covers: self.state.version,
                pushed: self.pushed,
            });
        }
        if self.digest != self.state.log_digest {
            return Err(SnapshotError::LogDigestMismatch);
        }
        // The image's table (from which the commitments were recomputed)
        // must be the one the operations leave.
        let same = self.live.len() == self.state.keys.len()
            && self.state.keys.iter().all(|(slot, key)| {
                self.live.get(slot).is_some_and(|p| {
                    p.public_key == key.to_compressed() && self.state.ids.get(&p.id) == Some(slot)
                })
            });
        if !same {
            return Err(SnapshotError::LiveSetMismatch);
        }
        self.state.key_records = self
            .live
            .iter()
            .map(|(slot, p)| (*slot, p.record))
            .collect();
        Ok(self.state)
    }
}

impl SnapshotRestore {
    /// The restored state from the registrations live at the image's
    /// version alone (their canonical bytes, in any order), instead of
    /// every operation before it: they must be exactly the image's live
    /// table (slot, id, key, each once), and their proofs of knowledge are
    /// taken from them. No operation may have been pushed.
    ///
    /// **The log digest is not checked**: that needs every operation of the
    /// prefix. The caller must check the prefix otherwise, e.g. by pushing
    /// every operation to another restore of the same image and calling
    /// [`finish`](Self::finish) (what the curator does in the background
    /// after it starts serving, see `docs/curator.md`).
    pub fn finish_live<'a>(
        mut self,
        live: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<RegistryState, SnapshotError> {
        if self.pushed != 0 {
            return Err(SnapshotError::PrefixLength {
                covers: self.state.version,
                pushed: self.pushed,
            });
        }
        let mut records = BTreeMap::new();
        for registration_bytes in live {
            let h = read_header(registration_bytes)?;
            let matches = self.state.ids.get(&h.id) == Some(&h.slot)
                && self
                    .state
                    .keys
                    .get(&h.slot)
                    .is_some_and(|key| key.to_compressed() == h.public_key);
            let record = KeyRecord {
                id: h.id,
                proof: h.proof,
                digest: registration_digest(registration_bytes),
            };
            if !matches || records.insert(h.slot, record).is_some() {
                return Err(SnapshotError::LiveSetMismatch);
            }
        }
        if records.len() != self.state.keys.len() {
            return Err(SnapshotError::LiveSetMismatch);
        }
        self.state.key_records = records;
        Ok(self.state)
    }
}

/// **Unchecked**: an uncompressed G1 point that is on the curve but *not*
/// checked to be in the prime-order subgroup. Only for the state image, whose
/// points came out of this crate's own arithmetic on checked inputs (see the
/// module docs for why that is acceptable there; the subgroup check is the
/// cost the image exists to avoid).
fn g1_unchecked(r: &mut Reader<'_>, field: &'static str) -> Result<G1Affine, DecodeError> {
    let bytes: [u8; G1_UNCOMPRESSED_LEN] = r.array(field)?;
    let point = Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(&bytes))
        .filter(|p| bool::from(p.is_on_curve()))
        .ok_or(DecodeError::InvalidPoint {
            field,
            group: crate::error::Group::G1,
        })?;
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::keygen;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn registered(capacity: u32, slots: &[u32]) -> (Crs, RegistryState, Vec<Vec<u8>>) {
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let crs = Crs::generate_insecure_dev(capacity, &mut rng).unwrap();
        let mut state = RegistryState::new(crs.clone());
        let mut log = Vec::new();
        for slot in slots {
            let (_, reg) = keygen(&crs, *slot, [*slot as u8 + 1; 32], &mut rng).unwrap();
            log.push(reg.to_bytes());
            state.verify_and_apply(reg).unwrap();
        }
        (crs, state, log)
    }

    fn restore(crs: &Crs, image: &[u8], log: &[Vec<u8>]) -> Result<RegistryState, SnapshotError> {
        let mut r = SnapshotRestore::from_bytes_unchecked(crs.clone(), image)?;
        for reg in log.iter().take(usize::try_from(r.covers()).unwrap()) {
            r.push_registration(reg)?;
        }
        r.finish()
    }

    #[test]
    fn round_trip_gives_the_same_state() {
        let (crs, state, log) = registered(16, &[0, 5, 6, 15]);
        let image = state.to_snapshot_bytes();
        let restored = restore(&crs, &image, &log).unwrap();
        assert_eq!(
            restored.public_params().to_bytes(),
            state.public_params().to_bytes()
        );
        assert_eq!(restored.log_digest(), state.log_digest());
        for slot in 0..16 {
            assert_eq!(restored.opening(slot), state.opening(slot));
            assert_eq!(restored.public_key(slot), state.public_key(slot));
            // Membership proofs carry the proof of knowledge taken from the
            // pushed log entries.
            assert_eq!(
                restored.membership_proof(slot),
                state.membership_proof(slot)
            );
        }
        let pp = restored.public_params();
        for slot in [0, 5, 6, 15] {
            let proof = restored.membership_proof(slot).unwrap();
            proof.verify(&crs, &pp).unwrap();
        }
        assert_eq!(restored.to_snapshot_bytes(), image);
        // And it keeps working: the next registration applies identically.
        let mut a = state.clone();
        let mut b = restored;
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (_, reg) = keygen(&crs, 7, [77; 32], &mut rng).unwrap();
        a.verify_and_apply(reg.clone()).unwrap();
        b.verify_and_apply(reg).unwrap();
        assert_eq!(a.public_params().to_bytes(), b.public_params().to_bytes());
        assert_eq!(a.log_digest(), b.log_digest());
    }

    /// Each image entry must be pushed once: a log that repeats an entry
    /// cannot leave a registered slot without its proof of knowledge.
    #[test]
    fn refuses_a_registration_pushed_twice() {
        let (crs, state, log) = registered(16, &[0, 5]);
        let image = state.to_snapshot_bytes();
        let mut r = SnapshotRestore::from_bytes_unchecked(crs, &image).unwrap();
        r.push_registration(&log[0]).unwrap();
        assert_eq!(
            r.push_registration(&log[0]),
            Err(SnapshotError::PrefixMismatch { index: 1 })
        );
        // A registration whose length does not match its helper count.
        let mut short = log[1].clone();
        short.pop();
        assert!(matches!(
            r.push_registration(&short),
            Err(SnapshotError::Decode(_))
        ));
    }

    /// From the live registrations alone: the same state (proofs of
    /// knowledge included); a missing, extra, repeated or other
    /// registration is refused, and so is a restore already pushed to.
    #[test]
    fn finish_live_needs_exactly_the_live_registrations() {
        let (crs, state, log) = registered(16, &[0, 5, 6, 15]);
        let image = state.to_snapshot_bytes();
        let open = || SnapshotRestore::from_bytes_unchecked(crs.clone(), &image).unwrap();
        let live: Vec<&[u8]> = log.iter().rev().map(Vec::as_slice).collect();
        let restored = open().finish_live(live.iter().copied()).unwrap();
        for slot in 0..16 {
            assert_eq!(
                restored.membership_proof(slot),
                state.membership_proof(slot)
            );
        }
        assert_eq!(restored.to_snapshot_bytes(), image);
        assert_eq!(
            open().finish_live(live[1..].iter().copied()).err(),
            Some(SnapshotError::LiveSetMismatch)
        );
        let repeated = [live[0], live[0], live[1], live[2]];
        assert_eq!(
            open().finish_live(repeated).err(),
            Some(SnapshotError::LiveSetMismatch)
        );
        let (_, other, other_log) = registered(16, &[0, 5, 6, 15, 3]);
        drop(other);
        let with_extra = live.iter().copied().chain([other_log[4].as_slice()]);
        assert_eq!(
            open().finish_live(with_extra).err(),
            Some(SnapshotError::LiveSetMismatch)
        );
        let mut pushed = open();
        pushed.push_registration(&log[0]).unwrap();
        assert!(matches!(
            pushed.finish_live(live.iter().copied()),
            Err(SnapshotError::PrefixLength { .. })
        ));
    }

    #[test]
    fn empty_state_round_trips() {
        let (crs, state, log) = registered(16, &[]);
        let restored = restore(&crs, &state.to_snapshot_bytes(), &log).unwrap();
        assert_eq!(restored.version(), 0);
    }

    #[test]
    fn refuses_another_crs() {
        let (_, state, log) = registered(16, &[1]);
        let (other, _, _) = {
            let mut rng = ChaCha20Rng::seed_from_u64(1234);
            let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
            (crs.clone(), RegistryState::new(crs), ())
        };
        assert_eq!(
            restore(&other, &state.to_snapshot_bytes(), &log).unwrap_err(),
            SnapshotError::CrsMismatch
        );
    }

    #[test]
    fn refuses_another_or_short_prefix() {
        let (crs, state, log) = registered(16, &[0, 5, 6]);
        let image = state.to_snapshot_bytes();
        // Another log with the same CRS.
        let (_, _, other_log) = {
            let mut rng = ChaCha20Rng::seed_from_u64(5);
            let mut st = RegistryState::new(crs.clone());
            let mut log = Vec::new();
            for slot in [0u32, 5, 6] {
                let (_, reg) = keygen(&crs, slot, [slot as u8 + 1; 32], &mut rng).unwrap();
                log.push(reg.to_bytes());
                st.verify_and_apply(reg).unwrap();
            }
            ((), st, log)
        };
        assert_eq!(
            restore(&crs, &image, &other_log).unwrap_err(),
            SnapshotError::LogDigestMismatch
        );
        // The same registrations in another order.
        let reordered = vec![log[1].clone(), log[0].clone(), log[2].clone()];
        assert_eq!(
            restore(&crs, &image, &reordered).unwrap_err(),
            SnapshotError::LogDigestMismatch
        );
        // A log shorter than the image.
        assert!(matches!(
            restore(&crs, &image, &log[..2]).unwrap_err(),
            SnapshotError::PrefixLength {
                covers: 3,
                pushed: 2
            }
        ));
        // Pushing past the image.
        let mut r = SnapshotRestore::from_bytes_unchecked(crs.clone(), &image).unwrap();
        for reg in &log {
            r.push_registration(reg).unwrap();
        }
        assert!(matches!(
            r.push_registration(&log[0]),
            Err(SnapshotError::PrefixLength { .. })
        ));
    }

    #[test]
    fn refuses_damaged_images() {
        let (crs, state, log) = registered(16, &[0, 5]);
        let image = state.to_snapshot_bytes();
        // Truncated anywhere, or extended.
        for cut in [0, 4, 5, 40, 100, image.len() - 1] {
            assert!(restore(&crs, &image[..cut], &log).is_err(), "cut at {cut}");
        }
        let mut long = image.clone();
        long.push(0);
        assert!(restore(&crs, &long, &log).is_err());
        // A tampered commitment (a valid point, just another one).
        let mut tampered = image.clone();
        let at = 5 + 32 + 8 + 32 + 4;
        tampered[at..at + 96].copy_from_slice(&G1Affine::generator().to_uncompressed());
        assert_eq!(
            restore(&crs, &tampered, &log).unwrap_err(),
            SnapshotError::Inconsistent("a block commitment is not the sum of its keys")
        );
        // A point off the curve.
        let mut off = image.clone();
        off[at + 95] ^= 1;
        assert!(matches!(
            restore(&crs, &off, &log).unwrap_err(),
            SnapshotError::Decode(DecodeError::InvalidPoint { .. })
        ));
        // A tampered log digest.
        let mut digest = image.clone();
        digest[5 + 32 + 8] ^= 1;
        assert_eq!(
            restore(&crs, &digest, &log).unwrap_err(),
            SnapshotError::LogDigestMismatch
        );
        // Structural lies, each refused by name.
        let header = 5 + 32 + 8 + 32;
        let commitments = 4 + 4 * 96; // capacity 16: 4 blocks
        let block = 4 + 4 * 96;
        let blocks_at = header + commitments;
        let regs_at = blocks_at + 4 + block; // slots 0 and 5: blocks 0 and 1
        let regs_at = regs_at + block;
        let inconsistent = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = image.clone();
            edit(&mut b);
            restore(&crs, &b, &log).unwrap_err()
        };
        assert!(matches!(
            inconsistent(&|b| b[header..header + 4].copy_from_slice(&3u32.to_be_bytes())),
            SnapshotError::Inconsistent(_) | SnapshotError::Decode(_)
        ));
        // Block indices swapped (not increasing).
        assert!(matches!(
            inconsistent(&|b| {
                b[blocks_at + 4..blocks_at + 8].copy_from_slice(&1u32.to_be_bytes());
                b[blocks_at + 4 + block..blocks_at + 8 + block]
                    .copy_from_slice(&0u32.to_be_bytes());
            }),
            SnapshotError::Inconsistent("block indices out of range or not increasing")
        ));
        // A registration left out of the table: the count no longer
        // covers the bytes.
        assert!(matches!(
            inconsistent(&|b| b[regs_at..regs_at + 4].copy_from_slice(&1u32.to_be_bytes())),
            SnapshotError::Decode(DecodeError::TrailingBytes { .. })
        ));
        // The second registration claims the first one's id.
        let second = regs_at + 4 + 4 + 32 + 96;
        assert_eq!(
            inconsistent(&|b| {
                let first_id: Vec<u8> = b[regs_at + 8..regs_at + 40].to_vec();
                b[second + 4..second + 36].copy_from_slice(&first_id);
            }),
            SnapshotError::Inconsistent("an id is registered twice")
        );
        // Slots not increasing.
        assert_eq!(
            inconsistent(&|b| b[second..second + 4].copy_from_slice(&0u32.to_be_bytes())),
            SnapshotError::Inconsistent("slots out of range or not increasing")
        );

        // Every single-byte flip is refused or (for an opening's bytes, the
        // part taken on trust) still gives the same public parameters.
        let pp = state.public_params().to_bytes();
        for i in (0..image.len()).step_by(7) {
            let mut flipped = image.clone();
            flipped[i] ^= 0x01;
            if let Ok(s) = restore(&crs, &flipped, &log) {
                assert_eq!(s.public_params().to_bytes(), pp, "byte {i}");
            }
        }
    }

    /// A log with releases and a slot reused: what to push, in order.
    #[derive(Clone)]
    enum Pushable {
        Register(Vec<u8>),
        Release(Vec<u8>),
    }

    fn with_releases() -> (Crs, RegistryState, Vec<Pushable>) {
        let mut rng = ChaCha20Rng::seed_from_u64(17);
        let crs = Crs::generate_insecure_dev(16, &mut rng).unwrap();
        let mut state = RegistryState::new(crs.clone());
        let mut log = Vec::new();
        let mut regs = Vec::new();
        for slot in [0u32, 1, 2, 5] {
            let (_, reg) = keygen(&crs, slot, [slot as u8 + 1; 32], &mut rng).unwrap();
            log.push(Pushable::Register(reg.to_bytes()));
            state.verify_and_apply(reg.clone()).unwrap();
            regs.push(reg);
        }
        // Release 1 (slot reused below) and 5 (its block becomes empty).
        for reg in [&regs[1], &regs[3]] {
            state.release(reg).unwrap();
            log.push(Pushable::Release(reg.to_bytes()));
        }
        let (_, reused) = keygen(&crs, 1, [99; 32], &mut rng).unwrap();
        log.push(Pushable::Register(reused.to_bytes()));
        state.verify_and_apply(reused).unwrap();
        (crs, state, log)
    }

    fn restore_ops(
        crs: &Crs,
        image: &[u8],
        log: &[Pushable],
    ) -> Result<RegistryState, SnapshotError> {
        let mut r = SnapshotRestore::from_bytes_unchecked(crs.clone(), image)?;
        for op in log.iter().take(usize::try_from(r.covers()).unwrap()) {
            match op {
                Pushable::Register(bytes) => r.push_registration(bytes)?,
                Pushable::Release(bytes) => r.push_release(bytes)?,
            };
        }
        r.finish()
    }

    #[test]
    fn round_trip_with_releases_and_reuse() {
        let (crs, state, log) = with_releases();
        assert_eq!(state.version(), 7);
        assert_eq!(state.live_registrations(), 3);
        let image = state.to_snapshot_bytes();
        assert_eq!(image[4], IMAGE_VERSION);
        let restored = restore_ops(&crs, &image, &log).unwrap();
        assert_eq!(
            restored.public_params().to_bytes(),
            state.public_params().to_bytes()
        );
        assert_eq!(restored.log_digest(), state.log_digest());
        assert_eq!(restored.touched_blocks(), 1);
        for slot in 0..16 {
            assert_eq!(restored.opening(slot), state.opening(slot));
            assert_eq!(restored.is_free(slot), state.is_free(slot));
            assert_eq!(
                restored.membership_proof(slot),
                state.membership_proof(slot)
            );
        }
        assert_eq!(restored.to_snapshot_bytes(), image);
        // The restored state releases exactly like the original: it kept
        // each live registration's digest.
        let mut rng = ChaCha20Rng::seed_from_u64(18);
        let (_, fresh) = keygen(&crs, 9, [9; 32], &mut rng).unwrap();
        let (mut a, mut b) = (state.clone(), restored);
        for s in [&mut a, &mut b] {
            s.verify_and_apply(fresh.clone()).unwrap();
            s.release(&fresh).unwrap();
        }
        assert_eq!(a.public_params().to_bytes(), b.public_params().to_bytes());
        assert_eq!(a.log_digest(), b.log_digest());
    }

    #[test]
    fn refuses_pushes_that_do_not_follow() {
        let (crs, state, log) = with_releases();
        let image = state.to_snapshot_bytes();
        let bytes = |i: usize| match &log[i] {
            Pushable::Register(b) | Pushable::Release(b) => b.clone(),
        };
        // A release pushed as a registration: its slot is still live.
        let mut r = SnapshotRestore::from_bytes_unchecked(crs.clone(), &image).unwrap();
        for i in 0..4 {
            r.push_registration(&bytes(i)).unwrap();
        }
        assert_eq!(
            r.push_registration(&bytes(4)),
            Err(SnapshotError::PrefixMismatch { index: 4 })
        );
        // Releasing what is not live: twice, or never registered.
        r.push_release(&bytes(4)).unwrap();
        assert_eq!(
            r.push_release(&bytes(4)),
            Err(SnapshotError::PrefixMismatch { index: 5 })
        );
        assert_eq!(
            r.push_release(&bytes(6)),
            Err(SnapshotError::PrefixMismatch { index: 5 })
        );
        // The same operations in another order: the digest gives it away.
        let mut swapped = log.clone();
        swapped.swap(4, 5); // the two releases in the other order
        assert_eq!(
            restore_ops(&crs, &image, &swapped).unwrap_err(),
            SnapshotError::LogDigestMismatch
        );
    }

    /// An image whose table lies about an id, with a log digest that is
    /// right: the live table of the pushed operations catches it.
    #[test]
    fn refuses_a_table_the_operations_do_not_leave() {
        let (crs, state, log) = with_releases();
        let mut image = state.to_snapshot_bytes();
        let n = 4;
        let header = 5 + 32 + 8 + 32;
        let regs_at = header + (4 + 4 * 96) + 4 + (4 + n * 96);
        // First live entry: slot 0, its id right after the slot.
        image[regs_at + 4 + 4] ^= 0xFF;
        assert_eq!(
            restore_ops(&crs, &image, &log).unwrap_err(),
            SnapshotError::LiveSetMismatch
        );
    }

    #[test]
    fn version_one_images_are_read_only_without_releases() {
        // A registration-only image, as version 1 wrote it.
        let (crs, state, log) = registered(16, &[0, 5, 6]);
        let mut v1 = state.to_snapshot_bytes();
        v1[4] = IMAGE_VERSION_REGISTRATIONS_ONLY;
        let restored = restore(&crs, &v1, &log).unwrap();
        assert_eq!(
            restored.public_params().to_bytes(),
            state.public_params().to_bytes()
        );
        // Version 1 with a live count below the version cannot be.
        let (crs, state, _) = with_releases();
        let mut v1 = state.to_snapshot_bytes();
        v1[4] = IMAGE_VERSION_REGISTRATIONS_ONLY;
        assert_eq!(
            SnapshotRestore::from_bytes_unchecked(crs.clone(), &v1).unwrap_err(),
            SnapshotError::Inconsistent("registration count is not the version")
        );
        // Unknown versions are refused by name.
        let mut v3 = state.to_snapshot_bytes();
        v3[4] = 3;
        assert_eq!(
            SnapshotRestore::from_bytes_unchecked(crs, &v3).unwrap_err(),
            SnapshotError::Decode(DecodeError::UnsupportedVersion(3))
        );
    }
}
