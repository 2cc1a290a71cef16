//! A criterion measurement of the benchmark thread's CPU time.
//!
//! The build machine's two cores are shared with other builds; wall-clock
//! samples then mostly measure the scheduler. Linux reports the nanoseconds a
//! thread actually ran in `/proc/thread-self/schedstat` (first field), which
//! is what "time on one core" means. Where that file is missing, the
//! measurement falls back to wall-clock time (and says so once). Also the
//! pairing baseline both bench targets report against.

use std::fs;
use std::sync::OnceLock;
use std::time::Instant;

use core::hint::black_box;

use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use mazu_rbe::bls12_381_plus::{G1Affine, G2Affine, pairing};

/// Thread CPU time in nanoseconds (wall clock if unavailable).
pub struct ThreadCpuTime {
    // Only for its nanosecond formatter.
    wall: WallTime,
}

impl ThreadCpuTime {
    pub fn new() -> Self {
        if schedstat_ns().is_none() {
            eprintln!("note: /proc/thread-self/schedstat unavailable, measuring wall-clock time");
        }
        Self { wall: WallTime }
    }
}

fn schedstat_ns() -> Option<u64> {
    let s = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    schedstat_ns().unwrap_or_else(|| {
        u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
    })
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a.saturating_add(*b)
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// The baseline every figure is reported against: one pairing, measured in
/// the same run.
pub fn baseline(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("baseline");
    g.sample_size(20);
    let p = G1Affine::generator();
    let q = G2Affine::generator();
    g.bench_function("pairing", |b| {
        b.iter(|| pairing(black_box(&p), black_box(&q)))
    });
    g.finish();
}
