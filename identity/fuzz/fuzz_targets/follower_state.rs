//! The follower-state decoder (what a new filter takes from the curator,
//! checked against a witnessed digest) on arbitrary bytes: never panics, is
//! canonical (whatever decodes re-encodes to the same bytes), a walk in
//! pieces and a search in place (what a filter VM does with shared data)
//! agree with it, and a decoded state takes further records like any
//! follower.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_identity::registry::{LogFollower, STATE_ENTRY_LEN, StateWalker, registry_entry_in};
use mazu_log::record::decode_records;

fuzz_target!(|data: &[u8]| {
    // A length-prefixed state, then records to apply to it.
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_be_bytes(*len) as usize).min(rest.len());
    let (state, records) = rest.split_at(len);
    // A walk in pieces accepts exactly what the decoder does, and a search
    // in place finds the decoded follower's entries.
    let walked = walk_in_pieces(state, records.first().map_or(1, |&b| usize::from(b % 4) + 1));
    let Ok(mut follower) = LogFollower::decode_state(state) else {
        assert!(walked.is_none(), "a walk in pieces accepted a refused state");
        return;
    };
    let snapshot = follower.registry().snapshot();
    assert_eq!(walked, Some(snapshot.len()));
    let entries = &state[StateWalker::header_len(state).unwrap_or(state.len())..];
    for entry in snapshot.entries() {
        assert_eq!(registry_entry_in(entries, &entry.workload_id), Some(*entry));
    }
    assert_eq!(follower.encode_state(), state);
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

/// Walks `state` header first, then in runs of `run` entries; the length
/// of the registry it gives, if it was accepted.
fn walk_in_pieces(state: &[u8], run: usize) -> Option<usize> {
    let (header, entries) = state.split_at_checked(StateWalker::header_len(state).ok()?)?;
    let mut walker = StateWalker::start(header).ok()?;
    for piece in entries.chunks(run * STATE_ENTRY_LEN) {
        walker.entries(piece, |_, _| {}).ok()?;
    }
    walker.finish().ok().map(|summary| summary.registry_len)
}
