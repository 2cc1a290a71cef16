//! Log entries on untrusted bytes (what `mazu-audit` and the curator's own
//! replay read): decoding never panics, whatever decodes re-encodes to the
//! same bytes, its leaf record (when it has one) decodes back to itself, and
//! the replay decoder agrees with the entry decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_curator::entry::LogEntry;
use mazu_curator::registry::ReplayEntry;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = LogEntry::from_bytes(data) else {
        assert!(
            ReplayEntry::decode(data).is_err(),
            "the replay decoder accepted bytes the entry decoder refuses"
        );
        return;
    };
    assert_eq!(entry.to_bytes(), data, "accepted a non-canonical entry");
    if let Ok(record) = entry.record(data) {
        let bytes = record.to_bytes();
        assert_eq!(
            mazu_log::record::LeafRecord::from_bytes(&bytes).ok(),
            Some(record),
            "a record does not round-trip"
        );
    }
    let _ = ReplayEntry::decode(data);
});
