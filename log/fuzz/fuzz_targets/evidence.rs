//! The registry answers' evidence headers on arbitrary bytes: decoding never
//! panics, and whatever decodes re-encodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::evidence::{decode_note, decode_proof, encode_proof};

fuzz_target!(|data: &[u8]| {
    let _ = decode_note(data);
    if let Ok(proof) = decode_proof(data) {
        assert_eq!(encode_proof(&proof).as_bytes(), data);
    }
});
