//! Peer certificate parser/checker and the full verdict, plus the DER and
//! SPIFFE codecs they rely on. Selector byte: 0 = verdict (pure and cached
//! must agree), 1 = Mazu extension DER, 2 = SPIFFE ID text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_identity::certificate::{MazuIdentity, PeerCertificate};
use mazu_identity::{SpiffeId, Verifier, verdict};
use mazu_identity_fuzz::{NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let world = &*WORLD;
    match selector % 3 {
        0 => {
            if let Ok(peer) = PeerCertificate::parse(input, 16 * 1024) {
                let _ = peer.check_validity(NOW, 60);
            }
            let pure = verdict(input, NOW, &world.trust, &world.registry);
            let mut verifier = Verifier::new(world.trust.clone(), 4);
            assert_eq!(verifier.verdict(input, NOW, &world.registry), pure);
            assert_eq!(verifier.verdict(input, NOW, &world.registry), pure);
            assert!(!pure.as_str().is_empty());
        }
        1 => {
            // Strict DER: whatever decodes re-encodes to the same bytes.
            if let Ok(ext) = MazuIdentity::from_der(input) {
                assert_eq!(ext.to_der().expect("re-encode"), input);
            }
        }
        _ => {
            if let Ok(text) = core::str::from_utf8(input) {
                if let Ok(id) = SpiffeId::parse(text) {
                    assert_eq!(id.to_string(), text);
                }
            }
        }
    }
});
