//! The cross-VM protocol under every interleaving (loom): worker VMs are
//! threads, Envoy's shared data is one mutex-guarded map (as in
//! proxy-wasm-cpp-host), and every `get` and `set` is a scheduling point.

#![allow(clippy::unwrap_used, reason = "tests")]

use alloc::sync::Arc;
use alloc::vec::Vec;

use loom::sync::Mutex;
use loom::thread;
use mazu_identity::WorkloadId;
use mazu_identity::registry::{LogFollower, STATE_ENTRY_LEN};

use super::tests::fixture::{EnvoyMap, Version, version};
use super::*;
use crate::testing::curator_config;

/// Envoy's shared data between threads: one lock per call.
#[derive(Default)]
struct LoomStore(Mutex<EnvoyMap>);

impl SharedStore for LoomStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.lock().unwrap().get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.lock().unwrap().set(key, value, cas)
    }
}

/// Fixtures made once: signing and cosigning cost more than a model run.
struct Fixtures {
    keys: SharedKeys,
    config: CuratorConfig,
    versions: Vec<Version>,
}

fn fixtures(sizes: &[u8]) -> Arc<Fixtures> {
    let config = curator_config();
    Arc::new(Fixtures {
        keys: SharedKeys::new(&config),
        config,
        versions: sizes.iter().map(|&n| version(n, 0)).collect(),
    })
}

/// A model run: loom's exploration, bounded to three preemptions per run
/// (every bug loom's authors report needs fewer).
fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(test);
}

/// What a reader installs is one publish's verified state, never torn or
/// forged, and its versions only grow: every lookup in it gives that
/// version's entry, or [`Unreadable`] once a later publish took its slot,
/// never another entry.
fn check_installs(found: &[Found], versions: &[Version], store: &LoomStore) {
    let mut last = 0;
    for found in found {
        if let Found::Newer {
            registry,
            checkpoint,
        } = found
        {
            let version = versions
                .iter()
                .find(|v| v.checkpoint == *checkpoint)
                .expect("installed a checkpoint nobody published");
            assert_eq!(registry.version(), checkpoint.size);
            let published = LogFollower::decode_state(&version.state).unwrap();
            let published = published.registry().snapshot();
            assert_eq!(registry.len(), published.len());
            for id in (1..=4u8).map(|i| WorkloadId::from_bytes([i; 32])) {
                // Err(Unreadable) is allowed: a later publish took the slot.
                if let Ok(entry) = registry.get(store, &id) {
                    assert_eq!(entry.as_ref(), published.get(&id), "another registry");
                }
            }
            assert!(checkpoint.size > last, "went back");
            last = checkpoint.size;
        }
    }
}

#[test]
fn concurrent_publishes_move_forward_and_readers_install_only_verified_states() {
    // v1 and v2 are published (so every entry exists in both slots: the
    // invariants hold once the entries exist; the race on a missing piece
    // is `an_older_publish_that_created_a_piece_over_a_newer_one_is_repaired`);
    // two leaders (a lapsed one and its successor) publish v3 and v4 while a
    // worker polls.
    let fixtures = fixtures(&[1, 2, 3, 4]);
    model(move || {
        let store = Arc::new(LoomStore::default());
        let f = &fixtures;
        for version in &f.versions[..2] {
            publish(&*store, &f.keys, &f.config, &version.publication());
        }
        let publishers: Vec<_> = [2, 3]
            .map(|i| {
                let (store, f) = (store.clone(), fixtures.clone());
                thread::spawn(move || {
                    publish(&*store, &f.keys, &f.config, &f.versions[i].publication())
                })
            })
            .into_iter()
            .collect();
        let reader = {
            let (store, f) = (store.clone(), fixtures.clone());
            thread::spawn(move || {
                let mut reader = SharedReader::new();
                let mut held = Some(f.versions[1].checkpoint);
                let mut found = Vec::new();
                for _ in 0..2 {
                    let next = reader.poll(&*store, &f.keys, &f.config, held);
                    if let Found::Newer { checkpoint, .. } = &next {
                        held = Some(*checkpoint);
                    }
                    found.push(next);
                }
                found
            })
        };
        for publisher in publishers {
            assert_ne!(publisher.join().unwrap(), Published::Contended);
        }
        let found = reader.join().unwrap();
        check_installs(&found, &f.versions, &store);
        assert!(
            !found.iter().any(|x| matches!(x, Found::Refused(_))),
            "an honest publish was refused: {found:?}"
        );
        // The newest publish stands, whatever the order of the writes, and
        // a VM that looks now installs it and reads every entry.
        let newest = &f.versions[3];
        match SharedReader::new().poll(&*store, &f.keys, &f.config, None) {
            Found::Newer {
                checkpoint,
                registry,
            } => {
                assert_eq!(checkpoint, newest.checkpoint);
                for i in 1..=4u8 {
                    let id = WorkloadId::from_bytes([i; 32]);
                    assert!(matches!(registry.get(&*store, &id), Ok(Some(_))));
                }
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_forged_state_written_during_a_publish_is_never_installed() {
    let fixtures = fixtures(&[1, 2]);
    model(move || {
        let store = Arc::new(LoomStore::default());
        let f = &fixtures;
        publish(&*store, &f.keys, &f.config, &f.versions[0].publication());
        let publisher = {
            let (store, f) = (store.clone(), fixtures.clone());
            thread::spawn(move || {
                publish(&*store, &f.keys, &f.config, &f.versions[1].publication())
            })
        };
        let forger = {
            let (store, f) = (store.clone(), fixtures.clone());
            thread::spawn(move || {
                // Another plugin's blind write, where version 2's entries
                // go: version 2's number, version 1's entries.
                let mut forged = f.versions[1].checkpoint.size.to_be_bytes().to_vec();
                let v1 = &f.versions[0].state;
                forged.extend_from_slice(&v1[v1.len() - STATE_ENTRY_LEN..]);
                store.set(&f.keys.chunk(1, 1), &forged, None);
            })
        };
        let mut reader = SharedReader::new();
        let mut found = Vec::new();
        let mut held = Some(f.versions[0].checkpoint);
        for _ in 0..2 {
            let next = reader.poll(&*store, &f.keys, &f.config, held);
            if let Found::Newer { checkpoint, .. } = &next {
                held = Some(*checkpoint);
            }
            found.push(next);
        }
        publisher.join().unwrap();
        forger.join().unwrap();
        check_installs(&found, &f.versions, &store);
    });
}

/// Two VMs joining at once, with these nonces: their instance numbers.
fn join_concurrently(store: &Arc<LoomStore>, keys: &SharedKeys, nonces: [u32; 2]) -> [u64; 2] {
    nonces
        .map(|nonce| {
            let (store, keys) = (store.clone(), keys.clone());
            thread::spawn(move || join(&*store, &keys, nonce))
        })
        .map(|vm| vm.join().unwrap().unwrap())
}

#[test]
fn instance_numbers_are_unique() {
    model(|| {
        let store = Arc::new(LoomStore::default());
        let keys = SharedKeys::new(&curator_config());
        // Two first joiners race to create the counter: the nonce (random
        // per VM in Envoy) keeps them apart.
        let numbers = join_concurrently(&store, &keys, [1, 2]);
        assert_ne!(numbers[0], numbers[1]);
        // Once the counter exists, compare-and-swap alone keeps them apart,
        // even with equal nonces.
        let numbers = join_concurrently(&store, &keys, [7, 7]);
        assert_ne!(numbers[0], numbers[1]);
    });
}

#[test]
fn a_lapsed_lease_goes_to_exactly_one_contender() {
    model(|| {
        let store = Arc::new(LoomStore::default());
        let keys = SharedKeys::new(&curator_config());
        assert!(hold_lease(&*store, &keys, 9, 0, 1_000));
        let contenders: Vec<_> = [1u64, 2]
            .map(|me| {
                let (store, keys) = (store.clone(), keys.clone());
                thread::spawn(move || hold_lease(&*store, &keys, me, 5_000, 1_000))
            })
            .into_iter()
            .collect();
        let holders = contenders
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|&held| held)
            .count();
        assert_eq!(holders, 1);
    });
}
