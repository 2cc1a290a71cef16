//! Where the CPU of one registration check goes at N = 65,536 (n = 256), the
//! curator's production size: decoding (JSON and binary), the parts of the
//! point decoding (square roots, subgroup checks) done by `bls12_381_plus`
//! for comparison, and the stateless check.
//!
//! `cargo bench -p mazu-rbe --bench registration_breakdown` (about 20 s).
//! Plain timing, not criterion: each row is the minimum and the median of
//! 10 runs (wall clock; the minimum is the least disturbed by other work on
//! a shared machine), and its multiple of one pairing measured alongside.

#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use core::hint::black_box;
use std::time::Instant;

use mazu_rbe::bls12_381_plus::{G1Affine, G2Affine, pairing};
use mazu_rbe::{Crs, Registration, RegistryState, keygen};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// (minimum, median) in milliseconds over `runs` calls after one warm-up.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    black_box(f());
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[0], ms[runs / 2])
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(65_536);
    let crs = Crs::generate_insecure_dev(65_536, &mut rng).unwrap();
    let (_, reg) = keygen(&crs, 1_000, [7; 32], &mut rng).unwrap();
    let bytes = reg.to_bytes();
    let json = serde_json::to_string(&reg).unwrap();
    let mut points: Vec<[u8; 48]> = reg.helpers.iter().map(G1Affine::to_compressed).collect();
    points.push(reg.public_key.to_compressed());
    points.push(reg.proof.commitment.to_compressed());
    let decoded: Vec<G1Affine> = reg
        .helpers
        .iter()
        .chain([&reg.public_key, &reg.proof.commitment])
        .copied()
        .collect();
    let state = RegistryState::new(crs.clone());

    let (pairing_ms, _) = time(20, || {
        pairing(&G1Affine::generator(), &G2Affine::generator())
    });
    let rows: Vec<(String, (f64, f64))> = vec![
        (
            "registration from JSON (base64, then the binary decoder)".into(),
            time(10, || serde_json::from_str::<Registration>(&json).unwrap()),
        ),
        (
            "registration from binary (`Registration::from_bytes`)".into(),
            time(10, || Registration::from_bytes(&bytes).unwrap()),
        ),
        (
            format!(
                "for comparison: {} × `G1Affine::from_compressed` (bls12_381_plus)",
                points.len()
            ),
            time(10, || {
                points
                    .iter()
                    .filter(|b| G1Affine::from_compressed(b).is_some().into())
                    .count()
            }),
        ),
        (
            "  of which square roots (`from_compressed_unchecked`)".into(),
            time(10, || {
                points
                    .iter()
                    .filter(|b| G1Affine::from_compressed_unchecked(b).is_some().into())
                    .count()
            }),
        ),
        (
            "  of which subgroup checks (`is_torsion_free`)".into(),
            time(10, || {
                decoded
                    .iter()
                    .filter(|p| p.is_torsion_free().into())
                    .count()
            }),
        ),
        (
            "stateless check (`verify_well_formed`: PoK + helper check)".into(),
            time(10, || reg.verify_well_formed(&crs).unwrap()),
        ),
        (
            "full check (`RegistryState::verify`)".into(),
            time(10, || state.verify(reg.clone()).unwrap()),
        ),
    ];
    println!("one pairing: {pairing_ms:.3} ms (minimum of 20)\n");
    println!("| N = 65,536 (n = 256) | min | median | min / pairing |\n|---|---|---|---|");
    for (label, (min, median)) in rows {
        println!(
            "| {label} | {min:.2} ms | {median:.2} ms | {:.1}× |",
            min / pairing_ms
        );
    }
}
