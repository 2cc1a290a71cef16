//! The curator's in-memory state: a pure function of the log.
//!
//! [`Registry`] wraps the RBE [`RegistryState`] (block commitments, openings,
//! id and key maps) and adds what the identity layer needs: one
//! [`RegistryEntry`] per log entry (in log order, for snapshots and deltas)
//! and the set of registered claims digests. [`EntryFacts::derive`] is the one
//! function that turns a log entry into those values, used both when a
//! registration is accepted and when the log is replayed, so a replay always
//! rebuilds the same state.

use std::collections::HashSet;

use mazu_identity::{
    ClaimsDigest, RegistryDelta, RegistryEntry, RegistrySnapshot, SpkiHash, WorkloadId,
};
use mazu_rbe::{
    Crs, Registration, RegistrationError, RegistryState, VerifiedRegistration,
    WellFormedRegistration,
};

use crate::entry::{LogEntry, MAX_TOKEN_LEN};

/// Values derived from one log entry.
#[derive(Debug, Clone)]
pub struct EntryFacts {
    /// The decoded RBE registration.
    pub registration: Registration,
    /// The registry entry the filter will see.
    pub registry_entry: RegistryEntry,
    /// SHA-256 of the token's signing input.
    pub claims_digest: ClaimsDigest,
}

/// Why a log entry cannot be applied (on replay: the log is inconsistent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactsError {
    /// The entry bytes do not decode.
    #[error("log entry does not decode: {0}")]
    Entry(#[from] crate::entry::EntryError),
    /// The registration bytes do not decode.
    #[error("registration does not decode: {0}")]
    Registration(#[from] mazu_rbe::DecodeError),
    /// The token is not a well-formed JWT.
    #[error("token does not parse: {0}")]
    Token(#[from] mazu_identity::TokenError),
    /// The registration's id is not SHA-256 of the token.
    #[error("registration id is not SHA-256 of the token")]
    IdMismatch,
}

impl EntryFacts {
    /// Decodes log entry bytes and derives their facts (see [`EntryFacts::derive`]).
    pub fn from_entry_bytes(entry_bytes: &[u8]) -> Result<Self, FactsError> {
        Self::derive(&LogEntry::from_bytes(entry_bytes)?)
    }

    /// Derives the registry values from a (decoded) log entry. Checks only
    /// shape and the id binding, not the token's signature or times: those
    /// were checked at acceptance and may legitimately fail later (key
    /// rotation, expiry).
    pub fn derive(entry: &LogEntry) -> Result<Self, FactsError> {
        let registration = Registration::from_bytes(&entry.registration)?;
        Self::with_registration(entry, registration)
    }

    /// [`EntryFacts::derive`] with the registration already decoded (it must
    /// be the one whose canonical bytes are `entry.registration`; decoding
    /// checks every point, which is not free at large block sizes).
    pub fn with_registration(
        entry: &LogEntry,
        registration: Registration,
    ) -> Result<Self, FactsError> {
        debug_assert_eq!(registration.to_bytes(), entry.registration);
        let (registry_entry, claims_digest) =
            identity_facts(entry, registration.slot, &registration.id)?;
        Ok(Self {
            registration,
            registry_entry,
            claims_digest,
        })
    }
}

/// The identity-layer values of a log entry whose registration has this slot
/// and id: checks the id binding (id = SHA-256 of the token) and derives the
/// registry entry and the claims digest. No curve arithmetic; shared by
/// [`EntryFacts::with_registration`] and the snapshot loader, so both derive
/// exactly the same values.
pub fn identity_facts(
    entry: &LogEntry,
    slot: u32,
    id: &[u8; 32],
) -> Result<(RegistryEntry, ClaimsDigest), FactsError> {
    let workload_id = WorkloadId::of_token(&entry.token);
    if workload_id.as_bytes() != id {
        return Err(FactsError::IdMismatch);
    }
    let claims = mazu_identity::jwt::parse_claims_unverified(&entry.token, MAX_TOKEN_LEN)?;
    let claims_digest = ClaimsDigest::of_signing_input(signing_input(&entry.token));
    let registry_entry = RegistryEntry {
        workload_id,
        slot,
        spki_hash: SpkiHash::of_spki_der(&entry.tls_spki),
        token_expiry: claims.expires_at,
        revoked: false,
    };
    Ok((registry_entry, claims_digest))
}

/// `header.payload`: the token up to its last dot.
pub fn signing_input(token: &[u8]) -> &[u8] {
    match token.iter().rposition(|b| *b == b'.') {
        Some(i) => &token[..i],
        None => token,
    }
}

/// A registration that conflicts with the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
    /// The id is registered (in this slot).
    #[error("id already registered in slot {0}")]
    IdRegistered(u32),
    /// A token with the same claims digest is registered.
    #[error("claims digest already registered")]
    ClaimsRegistered,
    /// The slot holds a key.
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
}

/// The curator's state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Registry {
    rbe: RegistryState,
    entries: Vec<RegistryEntry>,
    claims: HashSet<ClaimsDigest>,
    /// Synthetic identity entries added by the benchmark-only seeding path
    /// (always 0 without the `bench-seed` feature).
    seeded: u64,
}

impl Registry {
    /// The empty registry over `crs`.
    pub fn new(crs: Crs) -> Self {
        Self {
            rbe: RegistryState::new(crs),
            entries: Vec::new(),
            claims: HashSet::new(),
            seeded: 0,
        }
    }

    /// A registry restored from a checked state snapshot
    /// ([`crate::snapshot::restore`]): the RBE state and the identity values
    /// re-derived from the covered log entries, in log order.
    pub(crate) fn from_restored(
        rbe: RegistryState,
        entries: Vec<RegistryEntry>,
        claims: HashSet<ClaimsDigest>,
    ) -> Self {
        Self {
            rbe,
            entries,
            claims,
            seeded: 0,
        }
    }

    /// The version: the number of log entries applied.
    pub fn version(&self) -> u64 {
        self.rbe.version() + self.seeded
    }

    /// **Benchmarks only** (feature `bench-seed`): appends `entries` to the
    /// identity registry as if each were one log entry, without RBE keys, log
    /// records or checks, so that snapshot and delta serving can be measured
    /// at sizes where real registrations would take hours of key generation.
    /// A registry seeded this way must not accept registrations.
    #[cfg(feature = "bench-seed")]
    pub fn bench_seed(&mut self, entries: impl IntoIterator<Item = RegistryEntry>) {
        for e in entries {
            self.entries.push(e);
            self.seeded += 1;
        }
    }

    /// The RBE state (public parameters, openings, proofs).
    pub fn rbe(&self) -> &RegistryState {
        &self.rbe
    }

    /// The capacity N.
    pub fn capacity(&self) -> u32 {
        self.rbe.crs().capacity()
    }

    /// Registry entries in log order.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// Whether a token with this claims digest is registered.
    pub fn has_claims(&self, digest: &ClaimsDigest) -> bool {
        self.claims.contains(digest)
    }

    /// The slot `id` is registered in.
    pub fn slot_of(&self, id: &[u8; 32]) -> Option<u32> {
        self.rbe.slot_of(id)
    }

    /// Whether `slot` is in range and unregistered.
    pub fn is_free(&self, slot: u32) -> bool {
        self.rbe.is_free(slot)
    }

    /// The cheap freshness checks: id, claims digest, slot range and slot.
    pub fn check_fresh(
        &self,
        id: &[u8; 32],
        claims: &ClaimsDigest,
        slot: u32,
    ) -> Result<(), Conflict> {
        if let Some(existing) = self.rbe.slot_of(id) {
            return Err(Conflict::IdRegistered(existing));
        }
        if self.claims.contains(claims) {
            return Err(Conflict::ClaimsRegistered);
        }
        let capacity = self.capacity();
        if slot >= capacity {
            return Err(Conflict::SlotOutOfRange { slot, capacity });
        }
        if !self.rbe.is_free(slot) {
            return Err(Conflict::SlotTaken(slot));
        }
        Ok(())
    }

    /// Every RBE check against this version (see [`RegistryState::verify`]).
    pub fn verify(
        &self,
        registration: Registration,
    ) -> Result<VerifiedRegistration, RegistrationError> {
        self.rbe.verify(registration)
    }

    /// The RBE state checks alone, for a registration whose pairing check
    /// already passed (see [`RegistryState::verify_fresh`]).
    pub fn verify_fresh(
        &self,
        well_formed: WellFormedRegistration,
    ) -> Result<VerifiedRegistration, RegistrationError> {
        self.rbe.verify_fresh(well_formed)
    }

    /// Applies a registration verified against this version, with the facts
    /// derived from its log entry. Fails (changing nothing) if the
    /// verification is stale or the claims digest is already registered.
    pub fn apply(
        &mut self,
        verified: &VerifiedRegistration,
        facts: &EntryFacts,
    ) -> Result<(), ApplyError> {
        if self.claims.contains(&facts.claims_digest) {
            return Err(ApplyError::ClaimsRegistered);
        }
        self.rbe.apply(verified)?;
        self.entries.push(facts.registry_entry);
        self.claims.insert(facts.claims_digest);
        Ok(())
    }

    /// Verifies and applies one log entry (start-up replay).
    pub fn replay_entry(&mut self, entry_bytes: &[u8]) -> Result<(), ReplayEntryError> {
        let facts = EntryFacts::from_entry_bytes(entry_bytes)?;
        self.replay_facts(&facts)
    }

    /// Verifies and applies the facts of one log entry (the second half of
    /// [`Registry::replay_entry`], so that decoding can run on another thread).
    pub fn replay_facts(&mut self, facts: &EntryFacts) -> Result<(), ReplayEntryError> {
        let verified = self.verify(facts.registration.clone())?;
        self.apply(&verified, facts)?;
        Ok(())
    }

    /// The full registry snapshot at this version. Entries are unique by id
    /// (the RBE state refuses duplicate ids) and there is one per log entry,
    /// so an error here means a bug.
    pub fn snapshot(&self) -> Result<RegistrySnapshot, mazu_identity::RegistryError> {
        RegistrySnapshot::from_entries(self.version(), self.entries.clone())
    }

    /// The delta from version `since` to version `to`, or `None` unless
    /// `since <= to <= ` this version.
    pub fn delta(&self, since: u64, to: u64) -> Option<RegistryDelta> {
        if since > to || to > self.version() {
            return None;
        }
        let start = usize::try_from(since).ok()?;
        let end = usize::try_from(to).ok()?;
        RegistryDelta::new(since, to, self.entries.get(start..end)?.to_vec()).ok()
    }
}

/// Why [`Registry::apply`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The RBE state refused (stale verification).
    #[error(transparent)]
    Rbe(#[from] RegistrationError),
    /// The claims digest is already registered.
    #[error("claims digest already registered")]
    ClaimsRegistered,
}

/// Why a log entry could not be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayEntryError {
    /// The entry is malformed.
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// The RBE checks refused it.
    #[error("RBE check failed: {0}")]
    Rbe(#[from] RegistrationError),
    /// It conflicts with an earlier entry.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_input_is_up_to_the_last_dot() {
        assert_eq!(signing_input(b"aa.bb.cc"), b"aa.bb");
        assert_eq!(signing_input(b"aa.bb."), b"aa.bb");
        assert_eq!(signing_input(b"nodots"), b"nodots");
    }
}
