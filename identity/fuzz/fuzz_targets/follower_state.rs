//! The follower-state decoder (what a new filter takes from the curator,
//! checked against a witnessed digest) on arbitrary bytes: never panics, is
//! canonical (whatever decodes re-encodes to the same bytes), the
//! registry-only reading agrees with it, and a decoded state takes further
//! records like any follower.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_identity::registry::LogFollower;
use mazu_log::record::decode_records;

fuzz_target!(|data: &[u8]| {
    // A length-prefixed state, then records to apply to it.
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_be_bytes(*len) as usize).min(rest.len());
    let (state, records) = rest.split_at(len);
    // The registry-only reading accepts exactly what the full one does,
    // and gives the full one's snapshot.
    let registry = LogFollower::decode_state_registry(state);
    let Ok(mut follower) = LogFollower::decode_state(state) else {
        assert_eq!(registry.err(), LogFollower::decode_state(state).err());
        return;
    };
    assert_eq!(follower.encode_state(), state);
    assert_eq!(
        registry.map(|r| r.registry).as_ref(),
        Ok(&follower.registry().snapshot())
    );
    if let Ok(records) = decode_records(records) {
        for record in &records {
            let _ = follower.append_own(record);
        }
        let again = follower.encode_state();
        assert_eq!(
            LogFollower::decode_state(&again).map(|f| f.encode_state()).as_deref(),
            Ok(&again[..])
        );
    }
});
