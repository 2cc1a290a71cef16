//! Witness verifier keys, cosignature lines and the quorum check on
//! arbitrary bytes: never panic; a note accepted under the fixed policy was
//! cosigned by a quorum of its witnesses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::checkpoint::NoteSignature;
use mazu_log::cosignature::{
    CosignatureSigner, WitnessPolicy, WitnessVerifier, append_cosignatures,
};

fuzz_target!(|data: &[u8]| {
    let w1 = CosignatureSigner::new("fuzz.example/w1", &[1; 32]).expect("signer");
    let w2 = CosignatureSigner::new("fuzz.example/w2", &[2; 32]).expect("signer");
    let policy = WitnessPolicy::new(vec![w1.verifier(), w2.verifier()], 1).expect("policy");
    if let Ok(witnessed) = policy.check(data) {
        assert!(!witnessed.cosigners.is_empty());
        assert!(witnessed.timestamp <= mazu_log::cosignature::MAX_TIMESTAMP);
    }
    let _ = w1.verifier().verify_note(data);
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(v) = WitnessVerifier::parse(text) {
            assert_eq!(WitnessVerifier::parse(&v.to_vkey()).as_ref(), Ok(&v));
        }
        if let Ok(sig) = NoteSignature::parse_line(text) {
            assert_eq!(NoteSignature::parse_line(sig.to_line().trim_end()), Ok(sig));
        }
        let _ = w2.verifier().verify_line("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", text);
        let _ = append_cosignatures(text, &[text]);
    }
});
