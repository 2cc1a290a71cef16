//! Criterion benchmarks of the trusted-setup ceremony: one contribution (CRS
//! update, proof, self-check), the CRS update alone, and decoding and verifying
//! a one-contribution transcript, at N = 2^10, 2^16 and 2^20, with one pairing
//! as the baseline measured in the same run.
//!
//! `cargo bench -p mazu-rbe --bench ceremony`. Times are the benchmark
//! thread's CPU time (see `support/mod.rs`). The numbers in docs/rbe.md
//! ("Ceremony") come from this file.

// criterion_group!/criterion_main! expand to undocumented public functions.
#![allow(missing_docs)]

use core::hint::black_box;
use core::time::Duration;

mod support;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use mazu_rbe::Scalar;
use mazu_rbe::ceremony::Transcript;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::{ThreadCpuTime, baseline};

const CAPACITIES: [u32; 3] = [1 << 10, 1 << 16, 1 << 20];

fn ceremony(c: &mut Criterion<ThreadCpuTime>) {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    for capacity in CAPACITIES {
        // A transcript with one contribution: the next one builds on a CRS
        // with a random secret, like every contribution after the first.
        let mut transcript = Transcript::new(capacity).expect("capacity");
        transcript
            .contribute("first", &mut rng)
            .expect("contribute");
        let n = transcript.latest_crs().block_size();
        let mut g = c.benchmark_group(format!("ceremony N={capacity} (n={n})"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(200));
        g.measurement_time(Duration::from_secs(2));

        g.bench_function(BenchmarkId::new("contribute", capacity), |b| {
            b.iter_batched(
                || transcript.clone(),
                |mut t| {
                    t.contribute("bench", &mut rng).expect("contribute");
                    t
                },
                BatchSize::LargeInput,
            )
        });
        let crs = transcript.latest_crs().clone();
        let s = Scalar::from(0x1234_5678_9abc_def0u64);
        g.bench_function(BenchmarkId::new("crs update only", capacity), |b| {
            b.iter(|| crs.update(black_box(&s)).expect("update"))
        });
        let bytes = transcript.to_bytes();
        g.bench_function(BenchmarkId::new("decode (1 contribution)", capacity), |b| {
            b.iter(|| Transcript::from_bytes(black_box(&bytes)).expect("decode"))
        });
        g.bench_function(BenchmarkId::new("verify (1 contribution)", capacity), |b| {
            b.iter(|| transcript.verify().expect("verifies"))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime::new());
    targets = baseline, ceremony
}
criterion_main!(benches);
