//! Merkle proof verification on arbitrary sizes, indices and proofs: never
//! panics, and never accepts a proof for a root it was not built for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::merkle::{Hash, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 + 64 {
        return;
    }
    let a = u64::from_be_bytes(data[..8].try_into().expect("8"));
    let b = u64::from_be_bytes(data[8..16].try_into().expect("8"));
    let h1: Hash = data[16..48].try_into().expect("32");
    let h2: Hash = data[48..80].try_into().expect("32");
    let proof: Vec<Hash> = data[80..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32"))
        .collect();
    let _ = verify_inclusion(&h1, a, b, &proof, &h2);
    let _ = verify_consistency(a, b, &h1, &h2, &proof);
});
