#![allow(clippy::unwrap_used, reason = "tests")]

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use std::collections::BTreeMap;

use mazu_identity::registry::LogFollower;
use mazu_log::cosignature::{WitnessPolicy, append_cosignatures};
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, MerkleTree};
use mazu_log::record::{LeafRecord, RecordBody};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::testing::{curator_signer, witness_signer};

pub(super) mod fixture {
    //! A log of `n` binds with witnessed notes and follower states, and a
    //! store with Envoy's shared-data semantics.
    use super::*;

    /// The witnessed time of every note, Unix seconds.
    pub const WITNESSED_SECS: u64 = 2_000_000;

    pub fn curator_config() -> CuratorConfig {
        CuratorConfig {
            cluster: "mazu-curator".into(),
            authority: "curator.local".into(),
            refresh_interval_ms: 5_000,
            timeout_ms: 2_000,
            max_body_bytes: 1 << 20,
            checkpoint_key: curator_signer().verifier(),
            witnesses: Some(
                WitnessPolicy::new(
                    vec![witness_signer(1).verifier(), witness_signer(2).verifier()],
                    2,
                )
                .unwrap(),
            ),
        }
    }

    /// `n` workloads, each bound and revealed: `2n` records.
    fn records(n: u8) -> Vec<LeafRecord> {
        (0..n)
            .flat_map(|i| {
                let id = [i + 1; 32];
                let bind = RecordBody::Bind {
                    slot: u32::from(i),
                    spki_hash: [i + 100; 32],
                    token_expiry: 2_000_000_000,
                };
                let reveal = RecordBody::Reveal {
                    token_expiry: 2_000_000_000,
                };
                [(1, bind), (2, reveal)].map(|(at_ms, body)| LeafRecord {
                    at_ms,
                    id,
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
        let records = records(n);
        let mut log = LogFollower::new();
        for record in &records {
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

/// The state entry a publish of `version` writes.
fn state_entry(version: &Version) -> Vec<u8> {
    [&version.checkpoint.size.to_be_bytes()[..], &version.state].concat()
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
    assert!(keys.state.starts_with("mazu.registry.v4|"));
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
    store.set(&keys.state, &state_entry(&v3), None);
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::Signature(_))
    ));
    assert!(matches!(poll(&mut reader, &store, None), Found::Nothing));
    // A genuine note beside the state of another log of that size.
    let store = EnvoyStore::default();
    publish(&store, &keys, &curator_config(), &v2.publication());
    let other = LogFollower::new().encode_state();
    store.set(
        &keys.state,
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
    store.set(&keys.state, &state_entry(&v3), None);
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
    store.set(&keys.state, &state_entry(&v2), None);
    let mut reader = SharedReader::new();
    assert!(matches!(
        poll(&mut reader, &store, None),
        Found::Refused(Refusal::BelowQuorum {
            found: 1,
            quorum: 2
        })
    ));
}
