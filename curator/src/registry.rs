//! The curator's in-memory state: a pure function of the log.
//!
//! [`Registry`] holds two views of the same log, kept in step:
//!
//! - the id lifecycle, derived from the leaf records with the shared rules of
//!   [`mazu_identity::registry::derive::DerivedRegistry`] (first binding
//!   wins; a bound id is never bound again), exactly as every filter, agent
//!   and auditor derives it;
//! - the RBE [`RegistryState`] (block commitments, openings, keys, proofs),
//!   updated when an id is **bound** (the RBE key is in the bind entry; the
//!   reveal only makes the id usable).
//!
//! Plus what the curator needs to answer repeats and refuse re-encoded
//! tokens: per id the index and content digest of its bind and the index of
//! its reveal (and of its end), and the claims digests of every revealed
//! token; and, for the lifecycle task, the bindings in the order they fall
//! due: unrevealed ones by bind time, live ones by token expiry.
//!
//! A release or revocation takes the RBE key back out of the RBE state
//! ([`RegistryState::verify_release`]), which needs the full registration
//! of the bind entry: the caller reads it from the log
//! ([`Registry::bind_of`] gives its index) and passes it in.
//!
//! The curator never logs a void entry (one the lifecycle rules give no
//! effect): it checks with [`Registry::check_bind`] / [`Registry::check_reveal`]
//! before appending, and an entry that would be void on replay means the log
//! is not this curator's (a replay error).

use std::collections::{BTreeSet, HashMap, HashSet};

use mazu_identity::registry::derive::{DerivedRegistry, IdState};
use mazu_identity::{ClaimsDigest, RegistrySnapshot};
use mazu_log::record::{LeafRecord, RecordBody, ReleaseReason};
use mazu_rbe::{
    Crs, Registration, RegistrationError, RegistryState, ReleaseError, VerifiedRegistration,
    VerifiedRelease, WellFormedRegistration,
};
use sha2::{Digest, Sha256};

use crate::entry::{EntryBody, EntryError, LogEntry};

mod image;
pub use image::{IdentityImage, ImageError};

/// What the state remembers of a bind entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindInfo {
    /// Its log index.
    pub index: u64,
    /// [`content_digest`] of the entry: equal for an identical repeat.
    pub content: [u8; 32],
    /// When it was logged (Unix ms).
    pub at_ms: u64,
}

/// What the state remembers of a reveal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RevealInfo {
    /// Its log index.
    index: u64,
    /// The revealed token's claims digest.
    claims: ClaimsDigest,
}

/// SHA-256 of an entry's canonical bytes with `at_ms` set to 0: two requests
/// for the same binding (or reveal) give the same digest whenever they were
/// logged.
pub fn content_digest(entry: &LogEntry) -> [u8; 32] {
    let mut timeless = entry.clone();
    timeless.at_ms = 0;
    Sha256::digest(timeless.to_bytes()).into()
}

/// `header.payload`: the token up to its last dot.
pub fn signing_input(token: &[u8]) -> &[u8] {
    match token.iter().rposition(|b| *b == b'.') {
        Some(i) => &token[..i],
        None => token,
    }
}

/// The claims digest of a token (equal for every re-encoding of one signed
/// token).
pub fn claims_digest_of(token: &[u8]) -> ClaimsDigest {
    ClaimsDigest::of_signing_input(signing_input(token))
}

/// Why a bind or reveal cannot be applied to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
    /// The id was bound before (first binding wins).
    #[error("id already bound")]
    AlreadyBound {
        /// Its slot while it holds one.
        slot: Option<u32>,
        /// The index of its bind entry, if this curator logged one.
        index: Option<u64>,
    },
    /// The slot holds another binding.
    #[error("slot {0} taken")]
    SlotTaken(u32),
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// A reveal of an id that is not bound.
    #[error("id is not bound")]
    NotBound,
    /// A reveal of an id that is already revealed (at this index).
    #[error("id already revealed (log index {0})")]
    AlreadyRevealed(u64),
    /// The binding ended (released or revoked).
    #[error("the id's binding has ended")]
    Ended,
    /// A release whose reason does not hold now (`unrevealed` for a
    /// revealed id, `expired` before the token's expiry).
    #[error("the release is not due")]
    NotDue,
    /// A token with the same claims digest was revealed for another id.
    #[error("a token with the same signed content was already revealed")]
    ClaimsRevealed,
    /// A reveal of a token whose expiry is not the one the binding
    /// committed to.
    #[error("the token's expiry {token} is not the {bound} its binding committed to")]
    ExpiryMismatch {
        /// The expiry bound, Unix seconds.
        bound: u64,
        /// The token's, Unix seconds.
        token: u64,
    },
    /// A reveal at or after the token's expiry.
    #[error("the token expired before its reveal was logged")]
    TokenExpired,
}

/// Why an entry could not be applied (on replay: the log is inconsistent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The entry is malformed or its record cannot be derived.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The entry conflicts with the state (it would be void).
    #[error("the entry conflicts with the log before it: {0}")]
    Conflict(#[from] Conflict),
    /// The RBE state refused the registration.
    #[error("RBE check failed: {0}")]
    Rbe(#[from] RegistrationError),
    /// The RBE state refused the release (the registration given is not
    /// the one bound in the slot).
    #[error("RBE release failed: {0}")]
    RbeRelease(#[from] ReleaseError),
    /// A holder's release or revocation whose signature does not verify
    /// with the bound key.
    #[error("holder signature: {0}")]
    HolderSignature(crate::pop::PopError),
    /// The registration bytes do not decode.
    #[error("registration does not decode: {0}")]
    Registration(#[from] mazu_rbe::DecodeError),
    /// The registration's id or slot is not the entry's.
    #[error("the registration's id or slot differs from the entry's")]
    RegistrationMismatch,
    /// The proof of possession does not verify.
    #[error("proof of possession: {0}")]
    Pop(#[from] crate::pop::PopError),
    /// The log has no entry at this index (the bind entry a release needs).
    #[error("the log has no entry at index {0}")]
    MissingEntry(u64),
    /// The record given is not the entry's record (a bug in the caller).
    #[error("the record does not summarize the entry")]
    RecordMismatch,
}

/// One log entry decoded for replay: the entry, its record and, for a bind,
/// its decoded RBE registration (whose points are subgroup-checked: the
/// costly part, done on a decoding thread).
#[derive(Debug, Clone)]
pub struct ReplayEntry {
    /// The entry.
    pub entry: LogEntry,
    /// Its leaf record.
    pub record: LeafRecord,
    /// The decoded registration of a bind.
    pub registration: Option<Registration>,
}

/// The binding a release or revocation ends, as read from its bind entry:
/// what the RBE state needs to take the key out, and what a holder's
/// signature is checked against.
#[derive(Debug, Clone)]
pub struct EndedBinding {
    /// The bind entry's registration.
    pub registration: Registration,
    /// The bind entry's TLS key (DER SubjectPublicKeyInfo).
    pub tls_spki: Vec<u8>,
}

impl EndedBinding {
    /// The binding of `id` from its bind entry's bytes (at the index
    /// [`Registry::bind_of`] names).
    pub fn from_bind_entry(id: &[u8; 32], bind_bytes: &[u8]) -> Result<Self, ApplyError> {
        let entry = LogEntry::from_bytes(bind_bytes)?;
        let EntryBody::Bind {
            slot,
            tls_spki,
            registration,
            ..
        } = entry.body
        else {
            return Err(ApplyError::RecordMismatch);
        };
        let registration = Registration::from_bytes(&registration)?;
        if entry.id != *id || registration.id != *id || registration.slot != slot {
            return Err(ApplyError::RegistrationMismatch);
        }
        Ok(Self {
            registration,
            tls_spki,
        })
    }
}

impl ReplayEntry {
    /// Decodes entry bytes strictly, derives the record and, for a bind,
    /// decodes the registration, checks that its id and slot are the
    /// entry's and verifies the proof of possession.
    pub fn decode(entry_bytes: &[u8]) -> Result<Self, ApplyError> {
        let entry = LogEntry::from_bytes(entry_bytes)?;
        let record = entry.record(entry_bytes)?;
        let registration = match &entry.body {
            EntryBody::Bind {
                slot,
                token_expiry,
                tls_spki,
                tls_signature,
                registration,
            } => {
                let decoded = Registration::from_bytes(registration)?;
                if decoded.id != entry.id || decoded.slot != *slot {
                    return Err(ApplyError::RegistrationMismatch);
                }
                let claim = crate::pop::PopClaim {
                    id: &entry.id,
                    slot: *slot,
                    token_expiry: *token_expiry,
                    registration_bytes: registration,
                };
                crate::pop::verify_pop(&claim, tls_spki, tls_signature)?;
                Some(decoded)
            }
            EntryBody::Reveal { .. } | EntryBody::Release { .. } | EntryBody::Revoke { .. } => None,
        };
        Ok(Self {
            entry,
            record,
            registration,
        })
    }
}

/// The curator's state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Registry {
    rbe: RegistryState,
    ids: DerivedRegistry,
    binds: HashMap<[u8; 32], BindInfo>,
    reveals: HashMap<[u8; 32], RevealInfo>,
    /// Index of the entry that ended each id (release or revocation).
    ends: HashMap<[u8; 32], u64>,
    claims: HashSet<ClaimsDigest>,
    /// Bound, unrevealed ids by bind time (Unix ms).
    unrevealed: BTreeSet<(u64, [u8; 32])>,
    /// Live ids by token expiry (Unix s).
    expiring: BTreeSet<(u64, [u8; 32])>,
    /// The namespace of each live id (from its revealed token), and how
    /// many live ids each namespace has (the per-namespace quota).
    live_namespace: HashMap<[u8; 32], String>,
    live_per_namespace: HashMap<String, usize>,
}

impl Registry {
    /// The state of the empty log over `crs`.
    pub fn new(crs: Crs) -> Self {
        Self::with_rbe(RegistryState::new(crs))
    }

    fn with_rbe(rbe: RegistryState) -> Self {
        Self {
            rbe,
            ids: DerivedRegistry::new(),
            binds: HashMap::new(),
            reveals: HashMap::new(),
            ends: HashMap::new(),
            claims: HashSet::new(),
            unrevealed: BTreeSet::new(),
            expiring: BTreeSet::new(),
            live_namespace: HashMap::new(),
            live_per_namespace: HashMap::new(),
        }
    }

    /// Replaces the RBE state by a restored one (the snapshot loader, after
    /// checking the image against the entries whose identity side it
    /// applied).
    pub(crate) fn replace_rbe(&mut self, rbe: RegistryState) {
        self.rbe = rbe;
    }

    /// The log size the state reflects (entries applied).
    pub fn size(&self) -> u64 {
        self.ids.size()
    }

    /// The RBE state (public parameters, openings, proofs).
    pub fn rbe(&self) -> &RegistryState {
        &self.rbe
    }

    /// The id lifecycle derived from the records.
    pub fn ids(&self) -> &DerivedRegistry {
        &self.ids
    }

    /// The capacity N.
    pub fn capacity(&self) -> u32 {
        self.rbe.crs().capacity()
    }

    /// Where `id` stands.
    pub fn state(&self, id: &[u8; 32]) -> Option<&IdState> {
        self.ids.state(id)
    }

    /// The slot `id` holds (bound or live).
    pub fn slot_of(&self, id: &[u8; 32]) -> Option<u32> {
        match self.ids.state(id)? {
            IdState::Bound { slot, .. } | IdState::Live { slot, .. } => Some(*slot),
            IdState::Revoked { .. } | IdState::Released { .. } => None,
        }
    }

    /// The id's bind entry, if this curator logged one.
    pub fn bind_of(&self, id: &[u8; 32]) -> Option<&BindInfo> {
        self.binds.get(id)
    }

    /// The index of the id's reveal entry.
    pub fn reveal_of(&self, id: &[u8; 32]) -> Option<u64> {
        self.reveals.get(id).map(|r| r.index)
    }

    /// The index of the entry that ended the id's binding.
    pub fn end_of(&self, id: &[u8; 32]) -> Option<u64> {
        self.ends.get(id).copied()
    }

    /// The index of the entry that already ended `id`'s binding the way its
    /// holder asks again: a revocation (`revoke`) or a holder's release.
    pub fn holder_end_of(&self, id: &[u8; 32], revoke: bool) -> Option<u64> {
        let done = match self.ids.state(id)? {
            IdState::Revoked { .. } => revoke,
            IdState::Released {
                reason: ReleaseReason::Holder,
                ..
            } => !revoke,
            _ => false,
        };
        done.then(|| self.end_of(id)).flatten()
    }

    /// Up to `limit` bindings whose curator release is due at `now_ms`:
    /// unrevealed ones bound at least `reveal_window_ms` ago, then live
    /// ones whose token expired at least `expiry_grace_ms` ago. Oldest
    /// first.
    pub fn due_releases(
        &self,
        now_ms: u64,
        reveal_window_ms: u64,
        expiry_grace_ms: u64,
        limit: usize,
    ) -> Vec<([u8; 32], ReleaseReason)> {
        let unrevealed = self
            .unrevealed
            .iter()
            .take_while(|(bound_ms, _)| bound_ms.saturating_add(reveal_window_ms) <= now_ms)
            .map(|(_, id)| (*id, ReleaseReason::Unrevealed));
        let expired = self
            .expiring
            .iter()
            .take_while(|(expiry, _)| {
                expiry.saturating_mul(1000).saturating_add(expiry_grace_ms) <= now_ms
            })
            .map(|(_, id)| (*id, ReleaseReason::Expired));
        unrevealed.chain(expired).take(limit).collect()
    }

    /// When the next curator release falls due (Unix ms): the oldest
    /// unrevealed binding's window, or the earliest expiry plus the grace.
    pub fn next_release_ms(&self, reveal_window_ms: u64, expiry_grace_ms: u64) -> Option<u64> {
        let unrevealed = self
            .unrevealed
            .first()
            .map(|(bound_ms, _)| bound_ms.saturating_add(reveal_window_ms));
        let expired = self
            .expiring
            .first()
            .map(|(expiry, _)| expiry.saturating_mul(1000).saturating_add(expiry_grace_ms));
        match (unrevealed, expired) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Live ids whose token names `namespace`.
    pub fn live_in_namespace(&self, namespace: &str) -> usize {
        self.live_per_namespace.get(namespace).copied().unwrap_or(0)
    }

    /// The earliest token expiry of a live id (Unix s).
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiring.first().map(|(expiry, _)| *expiry)
    }

    /// Number of bound ids whose token is not revealed yet.
    pub fn unrevealed_count(&self) -> usize {
        self.unrevealed.len()
    }

    /// Whether `slot` is in range and holds no binding.
    pub fn is_free(&self, slot: u32) -> bool {
        self.rbe.is_free(slot) && self.ids.slot_holder(slot).is_none()
    }

    /// Whether a token with this claims digest was revealed.
    pub fn has_claims(&self, digest: &ClaimsDigest) -> bool {
        self.claims.contains(digest)
    }

    /// The live (revealed) ids and revoked ones, at [`size`](Self::size):
    /// what a filter derives from the same records.
    pub fn snapshot(&self) -> RegistrySnapshot {
        self.ids.snapshot()
    }

    /// Whether `id` may be bound in `slot` now (the lifecycle rules and the
    /// slot's range).
    pub fn check_bind(&self, id: &[u8; 32], slot: u32) -> Result<(), Conflict> {
        if self.ids.state(id).is_some() {
            return Err(Conflict::AlreadyBound {
                slot: self.slot_of(id),
                index: self.binds.get(id).map(|b| b.index),
            });
        }
        let capacity = self.capacity();
        if slot >= capacity {
            return Err(Conflict::SlotOutOfRange { slot, capacity });
        }
        if !self.is_free(slot) {
            return Err(Conflict::SlotTaken(slot));
        }
        Ok(())
    }

    /// Whether the binding of `id` may be ended now by an entry logged at
    /// `at_ms`: a revocation or a holder's release while it is bound or
    /// live, an `unrevealed` release before its reveal, an `expired` one
    /// once its token's expiry has passed (the rules of
    /// [`DerivedRegistry::apply`]). Returns the index of its bind entry.
    pub fn check_end(
        &self,
        id: &[u8; 32],
        reason: Option<ReleaseReason>,
        at_ms: u64,
    ) -> Result<u64, Conflict> {
        let live_expiry = match self.ids.state(id) {
            None => return Err(Conflict::NotBound),
            Some(IdState::Revoked { .. } | IdState::Released { .. }) => {
                return Err(Conflict::Ended);
            }
            Some(IdState::Bound { .. }) => None,
            Some(IdState::Live { token_expiry, .. }) => Some(*token_expiry),
        };
        let due = match reason {
            None | Some(ReleaseReason::Holder) => true,
            Some(ReleaseReason::Unrevealed) => live_expiry.is_none(),
            Some(ReleaseReason::Expired) => {
                live_expiry.is_some_and(|expiry| at_ms / 1000 >= expiry)
            }
        };
        if !due {
            return Err(Conflict::NotDue);
        }
        self.binds
            .get(id)
            .map(|b| b.index)
            .ok_or(Conflict::NotBound)
    }

    /// Whether `id` may be revealed by an entry logged at `at_ms` with a
    /// token of this claims digest and expiry.
    pub fn check_reveal(
        &self,
        id: &[u8; 32],
        claims: &ClaimsDigest,
        token_expiry: u64,
        at_ms: u64,
    ) -> Result<(), Conflict> {
        match self.ids.state(id) {
            None => Err(Conflict::NotBound),
            Some(IdState::Live { .. }) => Err(Conflict::AlreadyRevealed(
                self.reveals.get(id).map_or(u64::MAX, |r| r.index),
            )),
            Some(IdState::Revoked { .. } | IdState::Released { .. }) => Err(Conflict::Ended),
            Some(IdState::Bound { .. }) if self.claims.contains(claims) => {
                Err(Conflict::ClaimsRevealed)
            }
            Some(IdState::Bound {
                token_expiry: bound,
                ..
            }) if *bound != token_expiry => Err(Conflict::ExpiryMismatch {
                bound: *bound,
                token: token_expiry,
            }),
            Some(IdState::Bound { .. })
                if at_ms.max(self.ids.clock_ms()) / 1000 >= token_expiry =>
            {
                Err(Conflict::TokenExpired)
            }
            Some(IdState::Bound { .. }) => Ok(()),
        }
    }

    /// The RBE state checks alone, for a registration whose pairing check
    /// already passed (see [`RegistryState::verify_fresh`]).
    pub fn verify_fresh(
        &self,
        well_formed: WellFormedRegistration,
    ) -> Result<VerifiedRegistration, RegistrationError> {
        self.rbe.verify_fresh(well_formed)
    }

    /// Every RBE check against this state, pairing included.
    pub fn verify(
        &self,
        registration: Registration,
    ) -> Result<VerifiedRegistration, RegistrationError> {
        self.rbe.verify(registration)
    }

    /// Applies a bind whose registration was verified against this state:
    /// the RBE state first (which refuses a stale verification, changing
    /// nothing), then the identity state. `record` must be
    /// `entry.record(bytes)`.
    pub fn apply_bind(
        &mut self,
        entry: &LogEntry,
        record: &LeafRecord,
        verified: &VerifiedRegistration,
    ) -> Result<(), ApplyError> {
        let EntryBody::Bind { slot, .. } = &entry.body else {
            return Err(ApplyError::RecordMismatch);
        };
        if verified.registration().id != entry.id || verified.registration().slot != *slot {
            return Err(ApplyError::RegistrationMismatch);
        }
        self.check_identity(entry, record)?;
        self.rbe.apply(verified)?;
        self.record_identity(entry, record)
    }

    /// Applies a reveal (no RBE change). `record` must be
    /// `entry.record(bytes)`.
    pub fn apply_reveal(
        &mut self,
        entry: &LogEntry,
        record: &LeafRecord,
    ) -> Result<(), ApplyError> {
        if !matches!(entry.body, EntryBody::Reveal { .. }) {
            return Err(ApplyError::RecordMismatch);
        }
        self.apply_identity(entry, record)
    }

    /// Applies a release or revocation whose RBE release was verified
    /// against this state (from the bind entry's registration). A holder's
    /// release or a revocation must carry the bound key's signature
    /// (`tls_spki`, from the bind entry). `record` must be
    /// `entry.record(bytes)`.
    pub fn apply_end(
        &mut self,
        entry: &LogEntry,
        record: &LeafRecord,
        verified: &VerifiedRelease,
        tls_spki: &[u8],
    ) -> Result<(), ApplyError> {
        if verified.registration().id != entry.id {
            return Err(ApplyError::RegistrationMismatch);
        }
        let slot = verified.registration().slot;
        let signed = match &entry.body {
            EntryBody::Release {
                reason: ReleaseReason::Holder,
                signature,
            } => Some((crate::holder::HolderAction::Release, signature)),
            EntryBody::Release { .. } => None,
            EntryBody::Revoke { signature } => {
                Some((crate::holder::HolderAction::Revoke, signature))
            }
            _ => return Err(ApplyError::RecordMismatch),
        };
        if let Some((action, signature)) = signed {
            crate::holder::verify_holder(action, &entry.id, slot, tls_spki, signature)
                .map_err(ApplyError::HolderSignature)?;
        }
        self.check_identity(entry, record)?;
        self.rbe.apply_release(verified)?;
        self.record_identity(entry, record)
    }

    /// Verifies a release or revocation of `ended` against this state and
    /// applies it (start-up replay).
    pub fn replay_end(
        &mut self,
        entry: &LogEntry,
        record: &LeafRecord,
        ended: &EndedBinding,
    ) -> Result<(), ApplyError> {
        let verified = self.rbe.verify_release(&ended.registration)?;
        self.apply_end(entry, record, &verified, &ended.tls_spki)
    }

    /// Checks that `entry` (with its `record`) is not void against this
    /// state.
    fn check_identity(&self, entry: &LogEntry, record: &LeafRecord) -> Result<(), ApplyError> {
        if record.id != entry.id {
            return Err(ApplyError::RecordMismatch);
        }
        match (&entry.body, &record.body) {
            (EntryBody::Bind { slot, .. }, RecordBody::Bind { slot: s, .. }) if slot == s => {
                Ok(self.check_bind(&entry.id, *slot)?)
            }
            (EntryBody::Reveal { token }, RecordBody::Reveal { token_expiry }) => Ok(self
                .check_reveal(
                    &entry.id,
                    &claims_digest_of(token),
                    *token_expiry,
                    entry.at_ms,
                )?),
            (EntryBody::Release { reason, .. }, RecordBody::Release { reason: r })
                if reason == r =>
            {
                self.check_end(&entry.id, Some(*reason), entry.at_ms)?;
                Ok(())
            }
            (EntryBody::Revoke { .. }, RecordBody::Revoke) => {
                self.check_end(&entry.id, None, entry.at_ms)?;
                Ok(())
            }
            _ => Err(ApplyError::RecordMismatch),
        }
    }

    /// Applies the identity side of an entry (lifecycle, bind and reveal
    /// indexes, claims), after checking it is not void. The RBE side of a
    /// bind is the caller's ([`Registry::apply_bind`], or the snapshot
    /// restore that checks the image against the log).
    pub(crate) fn apply_identity(
        &mut self,
        entry: &LogEntry,
        record: &LeafRecord,
    ) -> Result<(), ApplyError> {
        self.check_identity(entry, record)?;
        self.record_identity(entry, record)
    }

    /// [`Registry::apply_identity`] after the check (which a bind makes
    /// before changing the RBE state: after it, its slot is no longer free).
    fn record_identity(&mut self, entry: &LogEntry, record: &LeafRecord) -> Result<(), ApplyError> {
        use mazu_identity::registry::derive::VoidReason;
        let index = self.ids.size();
        let before = self.ids.state(&entry.id).copied();
        // Ids whose token expired are forgotten by every party; the maps
        // kept beside the lifecycle follow, so memory follows the live
        // registrations, not history.
        let (binds, reveals, ends, claims) = (
            &mut self.binds,
            &mut self.reveals,
            &mut self.ends,
            &mut self.claims,
        );
        let applied = self.ids.apply_noting_forgotten(record, |id| {
            binds.remove(id);
            ends.remove(id);
            if let Some(reveal) = reveals.remove(id) {
                claims.remove(&reveal.claims);
            }
        });
        // Checked above: the record is not void.
        if let Err(reason) = applied {
            return Err(ApplyError::Conflict(match reason {
                VoidReason::SlotTaken(s) => Conflict::SlotTaken(s),
                VoidReason::NotDue => Conflict::NotDue,
                VoidReason::NotBound => Conflict::NotBound,
                VoidReason::TokenExpired => Conflict::TokenExpired,
                VoidReason::ExpiryMismatch => Conflict::ExpiryMismatch {
                    bound: match before {
                        Some(IdState::Bound { token_expiry, .. }) => token_expiry,
                        _ => 0,
                    },
                    token: match record.body {
                        RecordBody::Reveal { token_expiry } => token_expiry,
                        _ => 0,
                    },
                },
                _ => Conflict::AlreadyBound {
                    slot: None,
                    index: None,
                },
            }));
        }
        let bound_ms = self.binds.get(&entry.id).map(|b| b.at_ms);
        match &entry.body {
            EntryBody::Bind { .. } => {
                self.binds.insert(
                    entry.id,
                    BindInfo {
                        index,
                        content: content_digest(entry),
                        at_ms: entry.at_ms,
                    },
                );
                self.unrevealed.insert((entry.at_ms, entry.id));
            }
            EntryBody::Reveal { token } => {
                let claims = claims_digest_of(token);
                self.reveals.insert(entry.id, RevealInfo { index, claims });
                self.claims.insert(claims);
                if let Some(bound_ms) = bound_ms {
                    self.unrevealed.remove(&(bound_ms, entry.id));
                }
                if let RecordBody::Reveal { token_expiry } = record.body {
                    self.expiring.insert((token_expiry, entry.id));
                }
                // The token was verified when it was logged; its namespace
                // is read again here (replay included) for the quota.
                if let Ok(claims) =
                    mazu_identity::jwt::parse_claims_unverified(token, crate::entry::MAX_TOKEN_LEN)
                {
                    let namespace = claims.kubernetes.namespace;
                    *self
                        .live_per_namespace
                        .entry(namespace.clone())
                        .or_insert(0) += 1;
                    self.live_namespace.insert(entry.id, namespace);
                }
            }
            EntryBody::Release { .. } | EntryBody::Revoke { .. } => {
                self.ends.insert(entry.id, index);
                if let Some(bound_ms) = bound_ms {
                    self.unrevealed.remove(&(bound_ms, entry.id));
                }
                if let Some(IdState::Live { token_expiry, .. }) = before {
                    self.expiring.remove(&(token_expiry, entry.id));
                }
                if let Some(namespace) = self.live_namespace.remove(&entry.id)
                    && let Some(count) = self.live_per_namespace.get_mut(&namespace)
                {
                    *count -= 1;
                    if *count == 0 {
                        self.live_per_namespace.remove(&namespace);
                    }
                }
            }
        }
        Ok(())
    }

    /// **Benchmarks only** (feature `bench-seed`): applies a synthetic
    /// record to the id lifecycle, without an entry or RBE key.
    #[cfg(feature = "bench-seed")]
    pub fn bench_seed(&mut self, record: &LeafRecord) {
        let _ = self.ids.apply(record);
    }

    /// Verifies and applies one decoded log entry (start-up replay): a bind
    /// gets every RBE check (pairing included), a reveal the lifecycle
    /// checks. The token of a reveal is not verified again (its issuer's
    /// keys may have rotated since); the curator verified it when it logged
    /// it and an auditor checks it at the entry's time.
    ///
    /// A release or revocation needs the binding it ends: `bind_entry` is
    /// called with the index of the id's bind entry and returns its bytes.
    pub fn replay(
        &mut self,
        decoded: ReplayEntry,
        bind_entry: impl FnOnce(u64) -> Result<Vec<u8>, ApplyError>,
    ) -> Result<(), ApplyError> {
        match (decoded.registration, &decoded.entry.body) {
            (Some(registration), _) => {
                self.check_identity(&decoded.entry, &decoded.record)?;
                let verified = self.rbe.verify(registration)?;
                self.apply_bind(&decoded.entry, &decoded.record, &verified)
            }
            (None, EntryBody::Release { .. } | EntryBody::Revoke { .. }) => {
                self.check_identity(&decoded.entry, &decoded.record)?;
                let index = self
                    .binds
                    .get(&decoded.entry.id)
                    .map(|b| b.index)
                    .ok_or(ApplyError::Conflict(Conflict::NotBound))?;
                let ended = EndedBinding::from_bind_entry(&decoded.entry.id, &bind_entry(index)?)?;
                self.replay_end(&decoded.entry, &decoded.record, &ended)
            }
            (None, _) => self.apply_reveal(&decoded.entry, &decoded.record),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn signing_input_is_up_to_the_last_dot() {
        assert_eq!(signing_input(b"aa.bb.cc"), b"aa.bb");
        assert_eq!(signing_input(b"aa.bb."), b"aa.bb");
        assert_eq!(signing_input(b"nodots"), b"nodots");
    }

    #[test]
    fn content_digest_ignores_the_time_only() {
        let a = LogEntry {
            at_ms: 1,
            id: [1; 32],
            body: EntryBody::Reveal {
                token: b"a.b.c".to_vec(),
            },
        };
        let later = LogEntry {
            at_ms: 2,
            ..a.clone()
        };
        assert_eq!(content_digest(&a), content_digest(&later));
        let other = LogEntry {
            body: EntryBody::Reveal {
                token: b"a.b.d".to_vec(),
            },
            ..a.clone()
        };
        assert_ne!(content_digest(&a), content_digest(&other));
    }
}
