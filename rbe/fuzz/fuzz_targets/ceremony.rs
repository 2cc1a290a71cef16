//! The ceremony transcript decoder and verifier on untrusted bytes: never
//! panics, whatever decodes re-encodes to the same bytes, and whatever
//! verifies ends in a CRS that `Crs::verify` accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_rbe::ceremony::Transcript;

fuzz_target!(|data: &[u8]| {
    let Ok(transcript) = Transcript::from_bytes(data) else {
        return;
    };
    assert_eq!(
        transcript.to_bytes(),
        data,
        "accepted a non-canonical transcript"
    );
    if let Ok(verified) = transcript.verify() {
        assert!(
            verified.crs().verify().is_ok(),
            "a verified transcript ended in a CRS that does not verify"
        );
    }
});
