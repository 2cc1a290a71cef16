//! `add-checkpoint` request and answer bodies (and Mazu's body with
//! records) on arbitrary bytes: never panic, and a parsed request re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::witness_protocol::{
    AddCheckpointRequest, parse_response, split_with_records, with_records,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpointRequest::parse(data) {
        assert_eq!(req.encode(), data);
    }
    if let Ok(split) = split_with_records(data) {
        assert_eq!(with_records(split.add_checkpoint, split.records), data);
    }
    let _ = parse_response(200, None, data);
    let _ = parse_response(409, Some("text/x.tlog.size"), data);
});
