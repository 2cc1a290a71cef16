//! Snapshot and delta decoders: never panic, and are canonical (whatever
//! decodes re-encodes to the same bytes). Selector byte: 0 = snapshot,
//! 1 = delta, 2 = a length-prefixed snapshot then a delta, applied.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_identity::{RegistryDelta, RegistrySnapshot};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(snapshot) = RegistrySnapshot::decode(input) {
                assert_eq!(snapshot.encode(), input);
                for entry in snapshot.entries() {
                    assert_eq!(snapshot.get(&entry.workload_id), Some(entry));
                }
            }
        }
        1 => {
            if let Ok(delta) = RegistryDelta::decode(input) {
                assert_eq!(delta.encode(), input);
            }
        }
        _ => {
            let Some((len, rest)) = input.split_first_chunk::<4>() else {
                return;
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > rest.len() {
                return;
            }
            let (snapshot, delta) = rest.split_at(len);
            let (Ok(mut snapshot), Ok(delta)) = (
                RegistrySnapshot::decode(snapshot),
                RegistryDelta::decode(delta),
            ) else {
                return;
            };
            let before = snapshot.clone();
            match snapshot.apply(&delta) {
                Ok(()) => {
                    assert_eq!(snapshot.version(), delta.to_version());
                    for upsert in delta.entries() {
                        assert_eq!(snapshot.get(&upsert.workload_id), Some(upsert));
                    }
                    // The result is itself a canonical snapshot.
                    assert_eq!(
                        RegistrySnapshot::decode(&snapshot.encode()).as_ref(),
                        Ok(&snapshot)
                    );
                }
                Err(_) => assert_eq!(snapshot, before),
            }
        }
    }
});
