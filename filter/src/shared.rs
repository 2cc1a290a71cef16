//! The registry shared by the VMs of one Envoy: the cross-VM protocol.
//!
//! Envoy runs one VM of the filter per worker thread, and Istio gives every
//! WasmPlugin of a proxy the same (empty) `vm_id`, so all of them share one
//! shared-data namespace, which any plugin of the proxy can read and write.
//! One VM at a time (the holder of the lease) follows the curator's log; it
//! publishes what it verified, and every VM installs it only after verifying
//! it again itself.
//!
//! # Entries
//!
//! Under [`SharedKeys`] (named by a hash of the trust configuration):
//!
//! | key | value |
//! |---|---|
//! | `instances` | a counter, 8 bytes big-endian |
//! | `lease` | [`Lease`]: holder instance and expiry |
//! | `state` and `state\|<slot>\|<i>` | the follower state of the newest published version ([`mazu_identity::registry::LogFollower::encode_state`]) in pieces, and its manifest ([`chunks`]) |
//! | `checkpoint` | the time the publisher saw the checkpoint (8 bytes big-endian; used only without witnesses), then the signed checkpoint note as the curator served it |
//!
//! # Invariants
//!
//! 1. **What a VM installs, it verified itself** ([`SharedReader::poll`]):
//!    the note's curator signature and witness quorum under the VM's own
//!    configuration, then the state's SHA-256 against the note's state line,
//!    every check of the state decoder, and the state's size, root and
//!    clock against the note. The state is read piece by piece and never
//!    held: the VM keeps each piece's digest and reads the registry in
//!    place ([`SharedRegistry`]), using a piece only while its digest
//!    matches. Nothing is trusted because another VM wrote it: a forged or
//!    swapped entry is refused, once per entry (not re-verified every
//!    tick).
//! 2. **A VM never goes back**: it installs only a larger size than it
//!    holds, confirms only the size and root it holds, and refuses the same
//!    size with another root (a fork).
//! 3. **A torn read installs nothing and is not held against the entry**:
//!    the note of one publish beside the state of another, or pieces of a
//!    later publish being written, are retried at the next poll.
//! 4. **Publishes only move forward** ([`publish`]): every write is a
//!    compare-and-swap against the value read, and a publisher that finds
//!    a verified note at least as new, or the state of a later version,
//!    writes nothing. Once the entry exists, a newer verified note is never
//!    replaced by an older one, however writes interleave.
//! 5. **Instance numbers are unique and the lease has one holder** after
//!    the entry exists: both are compare-and-swap ([`join`],
//!    [`hold_lease`]).
//!
//! One write is not compare-and-swap, because Envoy's shared data cannot
//! do it: creating a key that does not exist succeeds whatever the CAS
//! token. Two VMs that both find a key missing both create it, the later
//! write winning. For `instances` the number also carries a per-VM random
//! `nonce`, so that two first joiners still differ; for `lease`, two VMs
//! may fetch for one round; for the state's pieces and manifest and for
//! `checkpoint`, the first publish may be replaced by an older one once. None of these can make a
//! VM install anything it did not verify (1) or go back (2).
//! `shared/interleavings.rs` checks the invariants under every
//! interleaving of the VMs' reads and writes with up to three preemptions
//! (loom).

use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use crate::config::CuratorConfig;
use crate::transparency::{self, AcceptedCheckpoint, Refusal, VerifiedCheckpoint};

mod chunks;

pub use chunks::{ENTRIES_PER_CHUNK, SharedRegistry, Unreadable};

/// Shared data as Envoy provides it (`proxy_get_shared_data` /
/// `proxy_set_shared_data`): every call is atomic, and a write succeeds if
/// its CAS token is `None`, is the entry's current token, or the entry does
/// not exist yet.
pub trait SharedStore {
    /// The value under `key` and its CAS token; `(None, None)` if absent.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` unless the entry exists and its token is not `cas`;
    /// false if refused.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// How many compare-and-swap attempts a write makes before giving up
/// (contention between a handful of worker threads settles in one or two).
const CAS_ATTEMPTS: usize = 16;

/// The shared-data keys of one registry source.
///
/// The keys name everything that decides which registry a plugin may
/// install: the curator cluster and authority it asks, the checkpoint key
/// of the log, and the witness policy (witness keys and quorum) that
/// decides which checkpoints count. Two plugins share one copy only when
/// all of these agree, so a plugin with a weaker policy never publishes
/// where a stricter one reads; and since every VM verifies what it reads
/// (invariant 1), a plugin that writes there anyway gains nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedKeys {
    /// A counter handing out instance numbers to root contexts.
    pub instances: String,
    /// [`Lease`]: which root context fetches.
    pub lease: String,
    /// The manifest of the newest published follower state; its pieces
    /// are under [`chunk`](Self::chunk).
    pub state: String,
    /// The signed checkpoint note that state is verified against.
    pub checkpoint: String,
    /// Entries per piece of a published state ([`ENTRIES_PER_CHUNK`];
    /// readers take any).
    pub entries_per_chunk: usize,
}

impl SharedKeys {
    /// Keys for the registry behind `curator`: a hash of its trust
    /// configuration (see the type's documentation).
    pub fn new(curator: &CuratorConfig) -> Self {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        field(curator.cluster.as_bytes());
        field(curator.authority.as_bytes());
        field(curator.checkpoint_key.to_vkey().as_bytes());
        match &curator.witnesses {
            None => field(b"no witnesses"),
            Some(policy) => {
                let mut vkeys: Vec<String> = policy.witnesses.iter().map(|w| w.to_vkey()).collect();
                vkeys.sort_unstable();
                vkeys.dedup();
                field(&(policy.quorum as u64).to_be_bytes());
                for vkey in &vkeys {
                    field(vkey.as_bytes());
                }
            }
        }
        let digest = hash.finalize();
        let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let base = format!("mazu.registry.v5|{id}");
        SharedKeys {
            instances: format!("{base}|instances"),
            lease: format!("{base}|lease"),
            state: format!("{base}|state"),
            checkpoint: format!("{base}|checkpoint"),
            entries_per_chunk: ENTRIES_PER_CHUNK,
        }
    }

    /// The key of piece `index` of the state in `slot`.
    pub fn chunk(&self, slot: u8, index: u32) -> String {
        format!("{}|{index}", self.chunk_base(slot))
    }

    /// The prefix of the keys of the state's pieces in `slot`.
    fn chunk_base(&self, slot: u8) -> String {
        format!("{}|{slot}", self.state)
    }
}

/// Takes a unique instance number among the roots sharing `keys`: a
/// compare-and-swap increment of the shared counter in the high 32 bits,
/// and `nonce` (random per VM) in the low 32 bits. `None` if the counter
/// stayed contended; the caller tries again later and does not fetch
/// meanwhile.
pub fn join(store: &impl SharedStore, keys: &SharedKeys, nonce: u32) -> Option<u64> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = store.get(&keys.instances);
        let next = decode_u64(value.as_deref()).unwrap_or(0).wrapping_add(1);
        if store.set(&keys.instances, &next.to_be_bytes(), cas) {
            return Some((next << 32) | u64::from(nonce));
        }
    }
    None
}

/// Who fetches the registry, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder's instance number.
    pub owner: u64,
    /// When the lease lapses unless renewed, milliseconds since the epoch.
    pub expires_ms: u64,
}

impl Lease {
    /// 16 bytes: owner then expiry, big-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.owner.to_be_bytes());
        out[8..].copy_from_slice(&self.expires_ms.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (owner, expires) = bytes.split_first_chunk::<8>()?;
        let expires: &[u8; 8] = expires.try_into().ok()?;
        Some(Lease {
            owner: u64::from_be_bytes(*owner),
            expires_ms: u64::from_be_bytes(*expires),
        })
    }

    /// Whether instance `me` may (re)take the lease at `now_ms`: it is free,
    /// lapsed, unreadable, or already `me`'s.
    pub fn may_take(current: Option<Lease>, me: u64, now_ms: u64) -> bool {
        current.is_none_or(|lease| lease.owner == me || lease.expires_ms <= now_ms)
    }
}

/// Takes or renews the fetch lease for `me` until `now_ms + ttl_ms`: one
/// compare-and-swap against the lease read. True if `me` holds it.
pub fn hold_lease(
    store: &impl SharedStore,
    keys: &SharedKeys,
    me: u64,
    now_ms: u64,
    ttl_ms: u64,
) -> bool {
    let (value, cas) = store.get(&keys.lease);
    let current = value.as_deref().and_then(Lease::decode);
    if !Lease::may_take(current, me, now_ms) {
        return false;
    }
    let lease = Lease {
        owner: me,
        expires_ms: now_ms.saturating_add(ttl_ms),
    };
    store.set(&keys.lease, &lease.encode(), cas)
}

/// What the lease holder publishes after a round.
#[derive(Clone, Copy, Debug)]
pub struct Publication<'a> {
    /// The checkpoint note as the curator served it (signed and cosigned).
    pub note: &'a [u8],
    /// The note's size, root and witnessed time, as the publisher verified
    /// them.
    pub checkpoint: AcceptedCheckpoint,
    /// The follower state at the note's size; `None` when the round only
    /// confirmed the version already published.
    pub state: Option<&'a [u8]>,
}

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The note (and the state, if given) are in shared data.
    Done,
    /// A verified note at least as new was there already: nothing written
    /// over it.
    Superseded,
    /// A write stayed contended; the next round publishes again.
    Contended,
}

/// Publishes a round's result: the state first (its pieces, then its
/// manifest), then the note, each by compare-and-swap against the value
/// read, and never over a newer one (invariant 4). A note entry found in shared data counts only if it
/// verifies under `curator` (one that does not is written over).
pub fn publish(
    store: &impl SharedStore,
    keys: &SharedKeys,
    curator: &CuratorConfig,
    publication: &Publication<'_>,
) -> Published {
    let ours = publication.checkpoint;
    if let Some(state) = publication.state
        && !chunks::write(store, keys, ours.size, state)
    {
        return Published::Contended;
    }
    let mut entry = Vec::with_capacity(8 + publication.note.len());
    entry.extend_from_slice(&ours.witnessed_ms.to_be_bytes());
    entry.extend_from_slice(publication.note);
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = store.get(&keys.checkpoint);
        let current = value
            .as_deref()
            .and_then(|v| note_entry(curator, v).ok())
            .map(|(checkpoint, _)| (checkpoint.size, checkpoint.witnessed_ms));
        if current >= Some((ours.size, ours.witnessed_ms)) {
            return Published::Superseded;
        }
        if store.set(&keys.checkpoint, &entry, cas) {
            return Published::Done;
        }
    }
    Published::Contended
}

/// Decodes and verifies a note entry under `curator`: the checkpoint with
/// its witnessed time (without witnesses, the entry's clock stands in).
fn note_entry(
    curator: &CuratorConfig,
    entry: &[u8],
) -> Result<(AcceptedCheckpoint, VerifiedCheckpoint), Refusal> {
    let (clock, note) = entry.split_first_chunk::<8>().ok_or(Refusal::Signature(
        mazu_log::NoteError::Malformed("shared entry shorter than its header"),
    ))?;
    let checkpoint =
        transparency::verify_checkpoint(&curator.checkpoint_key, curator.witnesses.as_ref(), note)?;
    let witnessed_ms = checkpoint
        .witnessed_secs
        .map_or(u64::from_be_bytes(*clock), |secs| secs.saturating_mul(1000));
    let accepted = AcceptedCheckpoint {
        size: checkpoint.size,
        root: checkpoint.root,
        witnessed_ms,
    };
    Ok((accepted, checkpoint))
}

/// What a poll of shared data found.
#[derive(Debug)]
pub enum Found {
    /// Nothing new: no note, a note older than the held version, one
    /// already dealt with, or a torn read to retry at the next poll.
    Nothing,
    /// The held version, confirmed as of this witnessed time.
    Confirmed(AcceptedCheckpoint),
    /// A newer version, verified: install its registry.
    Newer {
        /// The registry of the verified follower state, read in place.
        registry: SharedRegistry,
        /// Its checkpoint.
        checkpoint: AcceptedCheckpoint,
    },
    /// The entries do not verify (or fork from what is held): not used,
    /// and not read again until the note entry changes.
    Refused(Refusal),
}

/// One VM's reading side: remembers which note entry it has dealt with so
/// that a poll costs one small read when nothing changed.
#[derive(Clone, Debug, Default)]
pub struct SharedReader {
    /// SHA-256 of the last note entry confirmed, installed, refused or
    /// found older than the held version.
    settled: Option<[u8; 32]>,
}

impl SharedReader {
    /// A reader that has seen nothing.
    pub fn new() -> Self {
        SharedReader::default()
    }

    /// Reads shared data and says what to do with it, given the checkpoint
    /// of the registry this VM holds (invariants 1 to 3).
    pub fn poll(
        &mut self,
        store: &impl SharedStore,
        keys: &SharedKeys,
        curator: &CuratorConfig,
        held: Option<AcceptedCheckpoint>,
    ) -> Found {
        let Some(entry) = store.get(&keys.checkpoint).0 else {
            return Found::Nothing;
        };
        let entry_digest: [u8; 32] = Sha256::digest(&entry).into();
        if self.settled == Some(entry_digest) {
            return Found::Nothing;
        }
        let (found, settled) = read(store, keys, curator, held, &entry);
        if settled {
            self.settled = Some(entry_digest);
        }
        found
    }
}

/// What a note entry means to a VM holding `held`, and whether that is
/// final for this entry (false only for a torn read).
fn read(
    store: &impl SharedStore,
    keys: &SharedKeys,
    curator: &CuratorConfig,
    held: Option<AcceptedCheckpoint>,
    entry: &[u8],
) -> (Found, bool) {
    let (accepted, checkpoint) = match note_entry(curator, entry) {
        Ok(verified) => verified,
        Err(refusal) => return (Found::Refused(refusal), true),
    };
    if let Some(held) = held {
        if accepted.size < held.size {
            return (Found::Nothing, true);
        }
        if accepted.size == held.size {
            let found = if accepted.root == held.root {
                Found::Confirmed(accepted)
            } else {
                Found::Refused(Refusal::Fork { size: held.size })
            };
            return (found, true);
        }
    }
    match chunks::read(store, keys, &checkpoint, accepted.witnessed_ms) {
        chunks::StateRead::Torn => (Found::Nothing, false),
        chunks::StateRead::Refused(refusal) => (Found::Refused(refusal), true),
        chunks::StateRead::Verified(registry) => (
            Found::Newer {
                registry,
                checkpoint: accepted,
            },
            true,
        ),
    }
}

/// A big-endian `u64` from exactly 8 bytes.
fn decode_u64(bytes: Option<&[u8]>) -> Option<u64> {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod interleavings;
