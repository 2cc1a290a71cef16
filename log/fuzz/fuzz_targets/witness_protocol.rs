//! `add-checkpoint` request and answer bodies on arbitrary bytes: never
//! panic, and a parsed request re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_log::witness_protocol::{AddCheckpointRequest, parse_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpointRequest::parse(data) {
        assert_eq!(req.encode(), data);
    }
    let _ = parse_response(200, None, data);
    let _ = parse_response(409, Some("text/x.tlog.size"), data);
});
