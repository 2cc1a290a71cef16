//! Criterion benchmarks: one pairing as the baseline, then keygen, registration
//! check, apply, membership verify, encrypt and decrypt at N = 2^10, 2^16, 2^20.
//!
//! `cargo bench -p mazu-rbe` (a few minutes on one core). Sample sizes and
//! measurement times are small on purpose; the numbers in docs/rbe.md come
//! from this file. Times are the benchmark thread's CPU time (see
//! `support/mod.rs`), so that other work on the machine does not inflate them.

// criterion_group!/criterion_main! expand to undocumented public functions.
#![allow(missing_docs)]

use core::hint::black_box;
use core::time::Duration;

mod support;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use mazu_rbe::{Crs, Registration, RegistryState, decrypt, encrypt, keygen};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::{ThreadCpuTime, baseline};

const CAPACITIES: [u32; 3] = [1 << 10, 1 << 16, 1 << 20];

fn id(slot: u32) -> [u8; 32] {
    let mut id = [0x5a; 32];
    id[..4].copy_from_slice(&slot.to_be_bytes());
    id
}

fn rbe(c: &mut Criterion<ThreadCpuTime>) {
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    for capacity in CAPACITIES {
        let crs = Crs::generate_insecure_dev(capacity, &mut rng).expect("crs");
        let n = crs.block_size();
        let mut g = c.benchmark_group(format!("N={capacity} (n={n})"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));

        // A state with a few users in block 0 and the slot under test free.
        let mut state = RegistryState::new(crs.clone());
        let slot = 1u32;
        let mut others = Vec::new();
        for s in [0u32, 2, 3] {
            let (sk, reg) = keygen(&crs, s, id(s), &mut rng).expect("keygen");
            state.verify_and_apply(reg).expect("register");
            others.push(sk);
        }
        let (sk, reg) = keygen(&crs, slot, id(slot), &mut rng).expect("keygen");

        g.bench_function(BenchmarkId::new("keygen", capacity), |b| {
            b.iter(|| keygen(&crs, slot, id(slot), &mut rng).expect("keygen"))
        });
        let reg_bytes = reg.to_bytes();
        g.bench_function(BenchmarkId::new("registration decode", capacity), |b| {
            b.iter(|| Registration::from_bytes(black_box(&reg_bytes)).expect("decode"))
        });
        g.bench_function(BenchmarkId::new("registration check", capacity), |b| {
            b.iter(|| state.verify(black_box(reg.clone())).expect("valid"))
        });
        let verified = state.verify(reg.clone()).expect("valid");
        g.bench_function(BenchmarkId::new("register (apply)", capacity), |b| {
            b.iter_batched(
                || state.clone(),
                |mut s| {
                    s.apply(&verified).expect("apply");
                    s
                },
                BatchSize::LargeInput,
            )
        });
        state.apply(&verified).expect("apply");
        let pp = state.public_params();
        let proof = state.membership_proof(slot).expect("member");
        g.bench_function(BenchmarkId::new("membership verify", capacity), |b| {
            b.iter(|| proof.verify(&crs, black_box(&pp)).expect("verifies"))
        });
        let msg = [7u8; 32];
        g.bench_function(BenchmarkId::new("encrypt", capacity), |b| {
            b.iter(|| encrypt(&crs, &pp, slot, black_box(&msg), b"", &mut rng).expect("encrypt"))
        });
        let ct = encrypt(&crs, &pp, slot, &msg, b"", &mut rng).expect("encrypt");
        let opening = state.opening(slot).expect("opening");
        g.bench_function(BenchmarkId::new("decrypt", capacity), |b| {
            b.iter(|| decrypt(&crs, &sk, &opening, black_box(&ct), b"").expect("decrypt"))
        });
        g.bench_function(BenchmarkId::new("crs verify", capacity), |b| {
            b.iter(|| crs.verify().expect("valid crs"))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::new());
    targets = baseline, rbe
}
criterion_main!(benches);
