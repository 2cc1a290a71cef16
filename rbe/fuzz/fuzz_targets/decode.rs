//! Every canonical decoder: never panics, and whatever decodes re-encodes to
//! the same bytes. The first byte selects the type.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_rbe::{
    Canonical, Ciphertext, Crs, MembershipProof, NonMembershipProof, Opening, PublicParams,
    Registration,
};

/// Decode `bytes` as `T`; if that succeeds the encoding must be canonical.
fn round_trip<T: Canonical>(bytes: &[u8]) {
    if let Ok(value) = T::from_bytes(bytes) {
        assert_eq!(value.to_bytes(), bytes, "accepted a non-canonical encoding");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 7 {
        0 => round_trip::<Crs>(input),
        1 => round_trip::<PublicParams>(input),
        2 => round_trip::<Registration>(input),
        3 => round_trip::<Opening>(input),
        4 => round_trip::<MembershipProof>(input),
        5 => round_trip::<NonMembershipProof>(input),
        _ => round_trip::<Ciphertext>(input),
    }
});
