#![allow(clippy::unwrap_used, reason = "tests")]

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use mazu_identity::registry::LogFollower;
use mazu_identity::{RegistryEntry, SpkiHash, WorkloadId};
use mazu_log::cosignature::{WitnessPolicy, append_cosignatures};
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, MerkleTree};
use mazu_log::record::{LeafRecord, RecordBody};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::testing::curator_config;
use crate::testing::{curator_signer, witness_signer};

pub(crate) mod fixture {
    //! A log of `n` binds with witnessed notes and follower states, and a
    //! store with Envoy's shared-data semantics.
    use super::*;

    /// The witnessed time of every note, Unix seconds.
    pub const WITNESSED_SECS: u64 = 2_000_000;

    /// `n` workloads, each bound and revealed: `2n` records.
    fn records(n: u8) -> Vec<LeafRecord> {
        let entries: Vec<RegistryEntry> = (0..n)
            .map(|i| RegistryEntry {
                workload_id: WorkloadId::from_bytes([i + 1; 32]),
                slot: u32::from(i),
                spki_hash: SpkiHash::from_bytes([i + 100; 32]),
                token_expiry: 2_000_000_000,
                revoked: false,
            })
            .collect();
        records_of(&entries)
    }

    /// A bind and a reveal for each of `entries`.
    fn records_of(entries: &[RegistryEntry]) -> Vec<LeafRecord> {
        entries
            .iter()
            .flat_map(|entry| {
                let bind = RecordBody::Bind {
                    slot: entry.slot,
                    spki_hash: *entry.spki_hash.as_bytes(),
                    token_expiry: entry.token_expiry,
                };
                let reveal = RecordBody::Reveal {
                    token_expiry: entry.token_expiry,
                };
                [(1, bind), (2, reveal)].map(|(at_ms, body)| LeafRecord {
                    at_ms,
                    id: *entry.workload_id.as_bytes(),
                    entry_digest: [0; 32],
                    body,
                })
            })
            .collect()
    }

    /// One published version: the note, the state and the checkpoint.
    #[derive(Clone)]
    pub struct Version {
        pub note: Vec<u8>,
        pub state: Vec<u8>,
        pub checkpoint: AcceptedCheckpoint,
    }

    impl Version {
        pub fn publication(&self) -> Publication<'_> {
            Publication {
                note: &self.note,
                checkpoint: self.checkpoint,
                state: Some(&self.state),
            }
        }
    }

    /// The log of `n` registered workloads (size `2n`), its note cosigned
    /// at `WITNESSED_SECS + extra_secs`.
    pub fn version(n: u8, extra_secs: u64) -> Version {
        version_of_records(&records(n), extra_secs)
    }

    /// The log registering `entries` (a bind and a reveal each, in order),
    /// its note cosigned at `WITNESSED_SECS`.
    pub fn version_of(entries: &[RegistryEntry]) -> Version {
        version_of_records(&records_of(entries), 0)
    }

    fn version_of_records(records: &[LeafRecord], extra_secs: u64) -> Version {
        let mut log = LogFollower::new();
        for record in records {
            log.append_own(record).unwrap();
        }
        let state = log.encode_state();
        let size = records.len() as u64;
        let root: Hash = MerkleTree::from_leaves(records.iter().map(LeafRecord::leaf_hash))
            .root(size)
            .unwrap();
        let digest: Hash = Sha256::digest(&state).into();
        let signer = curator_signer();
        let note = signer.sign_with_extensions(size, &root, vec![state_extension(&digest)]);
        let checkpoint = signer.verifier().verify(note.as_bytes()).unwrap();
        let time = WITNESSED_SECS + extra_secs;
        let lines: Vec<String> = [1u8, 2]
            .iter()
            .map(|&w| witness_signer(w).cosign(&checkpoint, time).unwrap())
            .collect();
        let note = append_cosignatures(&note, &lines).unwrap().into_bytes();
        Version {
            note,
            state,
            checkpoint: AcceptedCheckpoint {
                size,
                root,
                witnessed_ms: time * 1000,
            },
        }
    }

    /// Shared data as Envoy keeps it (proxy-wasm-cpp-host `SharedData`):
    /// a token per write from one counter that skips 0; a write to an
    /// existing entry with a non-zero token other than the entry's is
    /// refused; a missing entry is created whatever the token.
    #[derive(Default)]
    pub struct EnvoyMap {
        entries: BTreeMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
    }

    impl EnvoyMap {
        pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.entries.get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            }
        }

        pub fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            if let (Some((_, current)), Some(cas)) = (self.entries.get(key), cas)
                && cas != 0
                && cas != *current
            {
                return false;
            }
            self.next_cas = self.next_cas.wrapping_add(1).max(1);
            self.entries
                .insert(key.into(), (value.to_vec(), self.next_cas));
            true
        }
    }

    /// [`EnvoyMap`] for one thread.
    #[derive(Default)]
    pub struct EnvoyStore(RefCell<EnvoyMap>);

    impl SharedStore for EnvoyStore {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.0.borrow().get(key)
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            self.0.borrow_mut().set(key, value, cas)
        }
    }
}

use fixture::*;

fn keys() -> SharedKeys {
    SharedKeys::new(&curator_config())
}

/// Writes `version`'s state (pieces and manifest) as a publish does,
/// without its note.
fn write_state(store: &EnvoyStore, keys: &SharedKeys, version: &Version) {
    assert!(chunks::write(
        store,
        keys,
        version.checkpoint.size,
        &version.state
    ));
}

/// The registry a poll installed.
fn installed(found: Found) -> SharedRegistry {
    match found {
        Found::Newer { registry, .. } => registry,
        other => panic!("{other:?}"),
    }
}

/// The registry entries of `version`, as the log's follower derives them.
fn entries(version: &Version) -> Vec<RegistryEntry> {
    LogFollower::decode_state(&version.state)
        .unwrap()
        .registry()
        .snapshot()
        .entries()
        .to_vec()
}

fn poll(reader: &mut SharedReader, store: &EnvoyStore, held: Option<AcceptedCheckpoint>) -> Found {
    reader.poll(store, &keys(), &curator_config(), held)
}

#[test]
fn shared_keys_name_the_whole_trust_configuration() {
    use mazu_log::cosignature::CosignatureSigner;
    let base = curator_config();
    let keys = SharedKeys::new(&base);
    assert_eq!(
        SharedKeys::new(&curator_config()),
        keys,
        "same configuration"
    );
    assert!(keys.state.starts_with("mazu.registry.v5|"));
    let w3 = CosignatureSigner::new("w3.example", &[3; 32])
        .unwrap()
        .verifier();
    let with = |edit: &dyn Fn(&mut CuratorConfig)| {
        let mut c = curator_config();
        edit(&mut c);
        SharedKeys::new(&c)
    };
    let variants = [
        with(&|c| c.cluster = "other".into()),
        with(&|c| c.authority = "other.local".into()),
        with(&|c| c.witnesses = None),
        with(&|c| {
            c.witnesses = Some(WitnessPolicy::new(vec![witness_signer(1).verifier()], 1).unwrap())
        }),
        with(&|c| {
            let ws = vec![witness_signer(1).verifier(), witness_signer(2).verifier()];
            c.witnesses = Some(WitnessPolicy::new(ws, 1).unwrap())
        }),
        with(&|c| {
            let ws = vec![witness_signer(1).verifier(), w3.clone()];
            c.witnesses = Some(WitnessPolicy::new(ws, 2).unwrap())
        }),
    ];
    for (i, variant) in variants.iter().enumerate() {
        assert_ne!(variant, &keys, "variant {i} shares the keys");
    }
    // Only the timing differs: same registry, same keys.
    assert_eq!(with(&|c| c.refresh_interval_ms = 1), keys);
}

#[test]
fn lease_rules_and_encoding() {
    let lease = Lease {
        owner: 1,
        expires_ms: 10_000,
    };
    assert_eq!(Lease::decode(&lease.encode()), Some(lease));
    assert_eq!(Lease::decode(b"short"), None);
    assert!(Lease::may_take(None, 2, 0));
    assert!(Lease::may_take(Some(lease), 1, 5_000));
    assert!(!Lease::may_take(Some(lease), 2, 5_000));
    assert!(Lease::may_take(Some(lease), 2, 10_000));
}

#[test]
fn instance_numbers_count_up_and_carry_the_nonce() {
    let store = EnvoyStore::default();
    let a = join(&store, &keys(), 7).unwrap();
    let b = join(&store, &keys(), 7).unwrap();
    assert_eq!((a >> 32, a & 0xffff_ffff), (1, 7));
    assert_eq!((b >> 32, b & 0xffff_ffff), (2, 7));
}

#[test]
fn the_lease_is_held_by_one_until_it_lapses() {
    let store = EnvoyStore::default();
    let keys = keys();
    assert!(hold_lease(&store, &keys, 1, 0, 1_000));
    assert!(!hold_lease(&store, &keys, 2, 500, 1_000));
    assert!(hold_lease(&store, &keys, 1, 900, 1_000), "renewed");
    assert!(!hold_lease(&store, &keys, 2, 1_500, 1_000));
    assert!(hold_lease(&store, &keys, 2, 1_900, 1_000), "lapsed");
}

#[test]
fn a_published_version_is_verified_and_installed_once() {
    let store = EnvoyStore::default();
    let v2 = version(2, 0);
    let published = publish(&store, &keys(), &curator_config(), &v2.publication());
    assert_eq!(published, Published::Done);
    let mut reader = SharedReader::new();
    match poll(&mut reader, &store, None) {
        Found::Newer {
            registry,
            checkpoint,
        } => {
            assert_eq!(checkpoint, v2.checkpoint);
            assert_eq!(registry.version(), 4);
            assert_eq!(registry.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    // Dealt with: the next poll is one small read.
    assert!(matches!(
        poll(&mut reader, &store, Some(v2.checkpoint)),
        Found::Nothing
    ));
    // A newer cosignature of the same version confirms it.
    let confirmation = version(2, 30);
    let publication = Publication {
        state: None,
        ..confirmation.publication()
    };
    assert_eq!(
        publish(&store, &keys(), &curator_config(), &publication),
        Published::Done
    );
    match poll(&mut reader, &store, Some(v2.checkpoint)) {
        Found::Confirmed(c) => assert_eq!(c.witnessed_ms, confirmation.checkpoint.witnessed_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_entries_are_refused_once_and_installed_never() {
    let keys = keys();
    let v2 = version(2, 0);
    let v3 = version(3, 0);
    // A note signed by no one the configuration trusts.
    let store = EnvoyStore::default();
    let mut forged = 0u64.to_be_bytes().to_vec();
    forged.extend_from_slice(b"mazu-curator/test\n6\nAAAA\n\n- someone abc\n");
    store.set(&keys.checkpoint, &forged, None);
    write_state(&store, &keys, &v3);
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::Signature(_))
    ));
    assert!(matches!(poll(&mut reader, &store, None), Found::Nothing));
    // A genuine note beside the state of another log of that size: its
    // header (all of the empty log's state) over the published one's.
    let store = EnvoyStore::default();
    publish(&store, &keys, &curator_config(), &v2.publication());
    let other = LogFollower::new().encode_state();
    store.set(
        &keys.chunk(0, 0),
        &[&4u64.to_be_bytes()[..], &other].concat(),
        None,
    );
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::StateDigestMismatch { size: 4 })
    ));
    assert!(matches!(poll(&mut reader, &store, None), Found::Nothing));
}

#[test]
fn a_torn_read_installs_nothing_and_is_retried() {
    let keys = keys();
    let store = EnvoyStore::default();
    let v2 = version(2, 0);
    let v3 = version(3, 0);
    publish(&store, &keys, &curator_config(), &v2.publication());
    // The next publish has written its state but not yet its note.
    write_state(&store, &keys, &v3);
    let mut reader = SharedReader::new();
    assert!(matches!(poll(&mut reader, &store, None), Found::Nothing));
    // ... and then its note: the same reader installs it.
    publish(&store, &keys, &curator_config(), &v3.publication());
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Newer { checkpoint, .. } if checkpoint == v3.checkpoint
    ));
}

#[test]
fn a_reader_never_goes_back_nor_follows_a_fork() {
    let keys = keys();
    let store = EnvoyStore::default();
    let v2 = version(2, 0);
    let v3 = version(3, 0);
    publish(&store, &keys, &curator_config(), &v2.publication());
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, Some(v3.checkpoint)),
        Found::Nothing
    ));
    let forked = AcceptedCheckpoint {
        root: [9; 32],
        ..v2.checkpoint
    };
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, Some(forked)),
        Found::Refused(Refusal::Fork { size: 4 })
    ));
}

#[test]
fn publishes_never_replace_a_newer_verified_note_but_do_replace_garbage() {
    let keys = keys();
    let config = curator_config();
    let store = EnvoyStore::default();
    let v2 = version(2, 0);
    let v3 = version(3, 0);
    assert_eq!(
        publish(&store, &keys, &config, &v3.publication()),
        Published::Done
    );
    // A publisher still at version 2 writes nothing.
    assert_eq!(
        publish(&store, &keys, &config, &v2.publication()),
        Published::Superseded
    );
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Newer { checkpoint, .. } if checkpoint == v3.checkpoint
    ));
    // Garbage in the note entry does not stop the next publish.
    store.set(&keys.checkpoint, b"garbage that claims nothing", None);
    let v4 = version(4, 0);
    assert_eq!(
        publish(&store, &keys, &config, &v4.publication()),
        Published::Done
    );
}

#[test]
fn a_note_for_another_trust_configuration_is_refused() {
    // A plugin whose configuration needs only witness 1 finds a note
    // cosigned by witness 1 alone acceptable; a reader needing both refuses it.
    let keys = keys();
    let store = EnvoyStore::default();
    let v2 = version(2, 0);
    let text = String::from_utf8(v2.note.clone()).unwrap();
    let one_witness: String = text
        .lines()
        .filter(|line| !line.contains("witness.test/w2"))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut entry = 0u64.to_be_bytes().to_vec();
    entry.extend_from_slice(one_witness.as_bytes());
    store.set(&keys.checkpoint, &entry, None);
    write_state(&store, &keys, &v2);
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::BelowQuorum {
            found: 1,
            quorum: 2
        })
    ));
}

#[test]
fn a_registry_read_in_place_answers_like_the_decoded_one() {
    for per_chunk in [1, 2, ENTRIES_PER_CHUNK] {
        let mut keys = keys();
        keys.entries_per_chunk = per_chunk;
        let store = EnvoyStore::default();
        let v5 = version(5, 0);
        publish(&store, &keys, &curator_config(), &v5.publication());
        let registry = installed(SharedReader::new().poll(&store, &keys, &curator_config(), None));
        assert_eq!((registry.version(), registry.len()), (10, 5));
        for entry in entries(&v5) {
            assert_eq!(registry.get(&store, &entry.workload_id), Ok(Some(entry)));
        }
        // Below the first id, between ids, past the last.
        for id in [[0; 32], [6; 32], [0xff; 32]] {
            let id = WorkloadId::from_bytes(id);
            assert_eq!(registry.get(&store, &id), Ok(None), "per_chunk {per_chunk}");
        }
    }
}

#[test]
fn an_overwritten_piece_is_never_used() {
    let mut keys = keys();
    keys.entries_per_chunk = 1;
    let store = EnvoyStore::default();
    let v3 = version(3, 0);
    publish(&store, &keys, &curator_config(), &v3.publication());
    let registry = installed(SharedReader::new().poll(&store, &keys, &curator_config(), None));
    let [first, second, third] = <[RegistryEntry; 3]>::try_from(entries(&v3)).unwrap();
    // Another plugin writes the first id's piece where the second's was
    // (a well-formed piece of this very version, under a valid header).
    let (piece_1, _) = store.get(&keys.chunk(0, 1));
    store.set(&keys.chunk(0, 2), &piece_1.unwrap(), None);
    assert_eq!(registry.get(&store, &second.workload_id), Err(Unreadable));
    // ... or removes the third's content.
    store.set(&keys.chunk(0, 3), &6u64.to_be_bytes(), None);
    assert_eq!(registry.get(&store, &third.workload_id), Err(Unreadable));
    // The pieces left alone still answer.
    assert_eq!(registry.get(&store, &first.workload_id), Ok(Some(first)));
}

#[test]
fn a_held_version_is_read_undisturbed_while_the_next_is_published() {
    let mut keys = keys();
    keys.entries_per_chunk = 1;
    let store = EnvoyStore::default();
    let (v2, v3) = (version(2, 0), version(3, 0));
    publish(&store, &keys, &curator_config(), &v2.publication());
    let mut reader = SharedReader::new();
    let held = installed(reader.poll(&store, &keys, &curator_config(), None));
    // The next version goes to the other slot.
    publish(&store, &keys, &curator_config(), &v3.publication());
    assert!(store.get(&keys.chunk(1, 0)).0.is_some());
    for entry in entries(&v2) {
        assert_eq!(held.get(&store, &entry.workload_id), Ok(Some(entry)));
    }
    let next = installed(reader.poll(&store, &keys, &curator_config(), Some(v2.checkpoint)));
    assert_eq!(next.version(), 6);
    for entry in entries(&v3) {
        assert_eq!(next.get(&store, &entry.workload_id), Ok(Some(entry)));
    }
}

#[test]
fn pieces_of_another_version_are_torn_and_other_content_refused() {
    let keys = keys();
    let v2 = version(2, 0);
    let store = EnvoyStore::default();
    publish(&store, &keys, &curator_config(), &v2.publication());
    let (piece, _) = store.get(&keys.chunk(0, 1));
    let piece = piece.unwrap();
    let with_version = |version: u64| {
        let mut other = piece.clone();
        other[..8].copy_from_slice(&version.to_be_bytes());
        other
    };
    // A piece of a later publish being written, or of an earlier one (the
    // race on a missing key): retried, never refused nor installed.
    let mut reader = SharedReader::new();
    for version in [9, 1] {
        store.set(&keys.chunk(0, 1), &with_version(version), None);
        assert!(matches!(poll(&mut reader, &store, None), Found::Nothing));
    }
    // This version's number on other content: refused.
    let mut other = piece.clone();
    *other.last_mut().unwrap() ^= 1;
    store.set(&keys.chunk(0, 1), &other, None);
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::StateDigestMismatch { size: 4 })
    ));
    // A manifest announcing more pieces than exist: nothing allocated for
    // them, nothing installed.
    store.set(&keys.chunk(0, 1), &piece, None);
    let mut manifest = store.get(&keys.state).0.unwrap();
    manifest[9..].copy_from_slice(&u32::MAX.to_be_bytes());
    store.set(&keys.state, &manifest, None);
    assert!(matches!(
        SharedReader::new().poll(&store, &keys, &curator_config(), None),
        Found::Nothing
    ));
}

#[test]
fn an_older_publish_that_created_a_piece_over_a_newer_one_is_repaired() {
    // Envoy lets a write create a missing key whatever its CAS token: an
    // older publisher that found the piece missing writes it after the
    // newer one did. The newer publisher puts it back after its manifest.
    let keys = keys();
    let store = EnvoyStore::default();
    let (v2, v3) = (version(2, 0), version(3, 0));
    let older = [&4u64.to_be_bytes()[..], b"an older piece"].concat();
    let racing = RacingStore {
        store: &store,
        key: keys.chunk(0, 1),
        value: older,
        done: Cell::new(false),
    };
    publish(&racing, &keys, &curator_config(), &v3.publication());
    assert!(racing.done.get(), "the race was run");
    match SharedReader::new().poll(&store, &keys, &curator_config(), None) {
        Found::Newer { checkpoint, .. } => assert_eq!(checkpoint, v3.checkpoint),
        other => panic!("{other:?}"),
    }
    // The older publisher, going on, stops at the newer pieces.
    assert_eq!(
        publish(&store, &keys, &curator_config(), &v2.publication()),
        Published::Superseded
    );
}

/// A store where another writer creates `key` with `value`, unconditionally,
/// right after the first write of `key` (as an older publisher that read
/// the key missing would).
struct RacingStore<'a> {
    store: &'a EnvoyStore,
    key: String,
    value: Vec<u8>,
    done: Cell<bool>,
}

impl SharedStore for RacingStore<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.store.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let written = self.store.set(key, value, cas);
        if written && key == self.key && !self.done.replace(true) {
            self.store.set(key, &self.value, None);
        }
        written
    }
}
