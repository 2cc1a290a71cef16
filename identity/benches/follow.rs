//! What a filter pays to follow the witnessed log (log format 2) at 100,000
//! live registrations: bootstrap (verify 200,000 records — a bind and a
//! reveal each — against the checkpoint root, derive the registry, take its
//! snapshot), bootstrap from the witnessed follower state instead (hash it
//! against the state line, decode it, take the snapshot: its cost follows
//! the ids held, not the history), the curator's cost of the state line per
//! checkpoint (encode and hash), and a refresh of 100 new registrations.
//! Baselines in the same
//! run: decoding a full 100,000-entry registry snapshot and applying a
//! 100-entry delta to it, which is what the filter did before format 2
//! (trusting a curator-signed digest of them).
//!
//! Run: `cargo bench -p mazu-identity --bench follow`.

// Fixture setup: a failure here is a bug in the benchmark, not input to handle.
#![allow(clippy::unwrap_used)]
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mazu_identity::registry::derive::LogFollower;
use mazu_identity::{RegistryDelta, RegistryEntry, RegistrySnapshot, SpkiHash, WorkloadId};
use mazu_log::record::{LeafRecord, RecordBody};
use mazu_log::{Frontier, Hash};
use sha2::{Digest, Sha256};

const LIVE: u32 = 100_000;
const NEW: u32 = 100;
const EXPIRY: u64 = 1_900_000_000;
/// The checkpoints' witnessed time, Unix ms: after every record.
const WITNESSED_MS: u64 = 1_800_000_000_000;

fn id(i: u32) -> Hash {
    Sha256::digest(i.to_be_bytes()).into()
}

fn spki_hash(i: u32) -> Hash {
    Sha256::digest((u64::from(i) << 32).to_be_bytes()).into()
}

/// A bind and a reveal for each of `range`.
fn records(range: core::ops::Range<u32>) -> Vec<LeafRecord> {
    range
        .flat_map(|i| {
            let base = |body| LeafRecord {
                at_ms: 1_700_000_000_000 + u64::from(i),
                id: id(i),
                entry_digest: [0; 32],
                body,
            };
            [
                base(RecordBody::Bind {
                    slot: i,
                    spki_hash: spki_hash(i),
                    token_expiry: EXPIRY,
                }),
                base(RecordBody::Reveal {
                    token_expiry: EXPIRY,
                }),
            ]
        })
        .collect()
}

fn root_of(records: &[LeafRecord]) -> Hash {
    let mut frontier = Frontier::new();
    for record in records {
        frontier.push(record.leaf_hash());
    }
    frontier.root()
}

fn entry(i: u32) -> RegistryEntry {
    RegistryEntry {
        workload_id: WorkloadId::from_bytes(id(i)),
        slot: i,
        spki_hash: SpkiHash::from_bytes(spki_hash(i)),
        token_expiry: EXPIRY,
        revoked: false,
    }
}

fn follow(c: &mut Criterion) {
    let live = records(0..LIVE);
    let live_root = root_of(&live);
    let mut all = live.clone();
    let new = records(LIVE..LIVE + NEW);
    all.extend_from_slice(&new);
    let all_root = root_of(&all);
    let mut at_live = LogFollower::new();
    at_live
        .extend(&live, live.len() as u64, &live_root, WITNESSED_MS)
        .unwrap();

    let mut group = c.benchmark_group("follow");
    group.sample_size(10);
    group.bench_function("bootstrap: 200k records, derive, snapshot", |b| {
        b.iter(|| {
            let mut follower = LogFollower::new();
            follower
                .extend(
                    black_box(&live),
                    live.len() as u64,
                    &live_root,
                    WITNESSED_MS,
                )
                .unwrap();
            black_box(follower.registry().snapshot())
        });
    });
    group.bench_function("refresh: +100 registrations at 100k, snapshot", |b| {
        b.iter_batched(
            || at_live.clone(),
            |mut follower| {
                follower
                    .extend(black_box(&new), all.len() as u64, &all_root, WITNESSED_MS)
                    .unwrap();
                black_box(follower.registry().snapshot())
            },
            BatchSize::LargeInput,
        );
    });

    let state = at_live.encode_state();
    let line: Hash = Sha256::digest(&state).into();
    println!(
        "follower state at {LIVE} live: {} bytes ({} per id)",
        state.len(),
        state.len() / LIVE as usize
    );
    group.bench_function(
        "bootstrap from the state: hash, decode, snapshot at 100k",
        |b| {
            b.iter(|| {
                let digest: Hash = Sha256::digest(black_box(&state)).into();
                assert_eq!(digest, line);
                let follower = LogFollower::decode_state(&state).unwrap();
                black_box(follower.registry().snapshot())
            });
        },
    );
    group.bench_function("curator state line: encode and hash at 100k", |b| {
        b.iter(|| {
            let encoded = black_box(&at_live).encode_state();
            black_box(Sha256::digest(&encoded))
        });
    });

    // Baselines: the format-1 filter's work for the same two events.
    let snapshot =
        RegistrySnapshot::from_entries(u64::from(LIVE), (0..LIVE).map(entry).collect()).unwrap();
    let encoded = snapshot.encode();
    let delta = RegistryDelta::new(
        u64::from(LIVE),
        u64::from(LIVE + NEW),
        (LIVE..LIVE + NEW).map(entry).collect(),
    )
    .unwrap();
    group.bench_function("baseline bootstrap: decode a 100k snapshot", |b| {
        b.iter(|| black_box(RegistrySnapshot::decode(black_box(&encoded)).unwrap()));
    });
    group.bench_function("baseline refresh: apply a 100-entry delta", |b| {
        b.iter_batched(
            || snapshot.clone(),
            |mut s| {
                s.apply(black_box(&delta)).unwrap();
                black_box(s)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// 1,000,000 registrations over time, each bound, revealed and released by
/// its holder a token lifetime later, then 100,000 live: what a filter that
/// joins a mesh that has run for months faces. From the records it replays
/// the whole history; from the witnessed state it decodes what is held
/// (ended ids are forgotten once their token expired).
fn history(c: &mut Criterion) {
    const HISTORY: u32 = 1_000_000;
    // One registration every 10 ms; a token lifetime later it is released:
    // at most LIVE are live at once.
    const LIFETIME_MS: u64 = LIVE as u64 * 10;
    let start_ms = 1_700_000_000_000u64;
    let mut log = Vec::with_capacity(3 * HISTORY as usize + 2 * LIVE as usize);
    let record = |i: u32, at_ms: u64, body| LeafRecord {
        at_ms,
        id: id(i),
        entry_digest: [0; 32],
        body,
    };
    // Registration i is bound at 10·i ms in slot i mod LIVE, which its
    // predecessor there released just before.
    let expiry_of = |at_ms: u64| (at_ms + LIFETIME_MS) / 1000;
    let mut pending = std::collections::VecDeque::new();
    for i in 0..HISTORY + LIVE {
        let at_ms = start_ms + u64::from(i) * 10;
        while let Some(&(j, bound_ms)) = pending.front() {
            if at_ms < bound_ms + LIFETIME_MS || j >= HISTORY {
                break;
            }
            pending.pop_front();
            log.push(record(
                j,
                at_ms,
                RecordBody::Release {
                    reason: mazu_log::record::ReleaseReason::Holder,
                },
            ));
        }
        let expiry = expiry_of(at_ms);
        log.push(record(
            i,
            at_ms,
            RecordBody::Bind {
                slot: i % LIVE,
                spki_hash: spki_hash(i),
                token_expiry: expiry,
            },
        ));
        log.push(record(
            i,
            at_ms,
            RecordBody::Reveal {
                token_expiry: expiry,
            },
        ));
        pending.push_back((i, at_ms));
    }
    let size = log.len() as u64;
    let root = root_of(&log);
    let witnessed_ms = start_ms + u64::from(HISTORY + LIVE) * 10;
    let mut follower = LogFollower::new();
    let void = follower.extend(&log, size, &root, witnessed_ms).unwrap();
    assert!(void.is_empty(), "{} void records", void.len());
    let state = follower.encode_state();
    println!(
        "after {HISTORY} historical registrations: {size} records, {} ids held, {} live, \
         state {} bytes",
        follower.registry().ids_held(),
        follower.registry().snapshot().len(),
        state.len()
    );

    let mut group = c.benchmark_group("history");
    group.sample_size(10);
    group.bench_function("bootstrap from records: 1M historical, 100k live", |b| {
        b.iter(|| {
            let mut f = LogFollower::new();
            f.extend(black_box(&log), size, &root, witnessed_ms)
                .unwrap();
            black_box(f.registry().snapshot())
        });
    });
    group.bench_function("bootstrap from the state: 1M historical, 100k live", |b| {
        b.iter(|| {
            black_box(Sha256::digest(black_box(&state)));
            let f = LogFollower::decode_state(&state).unwrap();
            black_box(f.registry().snapshot())
        });
    });
    group.finish();
}

criterion_group!(benches, follow, history);
criterion_main!(benches);
