//! Token parser/verifier: never panics; anything accepted is bound to its
//! exact bytes (workload ID = SHA-256 of the input).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_identity::WorkloadId;
use mazu_identity::jwt::parse_claims_unverified;
use mazu_identity_fuzz::{NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let unverified = parse_claims_unverified(data, 8 * 1024);
    if let Ok(verified) = world.trust.verify_token(data, NOW) {
        assert_eq!(verified.workload_id, WorkloadId::of_token(data));
        // A verified token's claims always parse without verification too.
        assert_eq!(unverified.as_ref().ok(), Some(&verified.claims));
    }
});
