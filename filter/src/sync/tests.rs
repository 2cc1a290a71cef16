use mazu_identity::{RegistryDelta, RegistryEntry, SpkiHash, WorkloadId};

use super::*;
use crate::config::CuratorConfig;

fn curator() -> CuratorConfig {
    CuratorConfig {
        cluster: "mazu-curator".into(),
        authority: "curator.local".into(),
        registry_path: "/v1/registry".into(),
        refresh_interval_ms: 5_000,
        timeout_ms: 2_000,
        max_body_bytes: 1 << 20,
        checkpoint_key: None,
    }
}

fn entry(n: u8, revoked: bool) -> RegistryEntry {
    RegistryEntry {
        workload_id: WorkloadId::from_bytes([n; 32]),
        slot: u32::from(n),
        spki_hash: SpkiHash::from_bytes([n.wrapping_add(100); 32]),
        token_expiry: 2_000_000_000,
        revoked,
    }
}

fn snapshot(version: u64, entries: &[RegistryEntry]) -> RegistrySnapshot {
    RegistrySnapshot::from_entries(version, entries.to_vec()).unwrap()
}

#[test]
fn requests() {
    let full = FetchRequest::new(&curator(), FetchKind::Full { have: None }, None);
    assert_eq!(
        full.headers,
        [
            (":method", "GET"),
            (":path", "/v1/registry"),
            (":authority", "curator.local"),
            ("accept", "application/octet-stream"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    let conditional = FetchRequest::new(&curator(), FetchKind::Full { have: Some(7) }, None);
    assert!(
        conditional
            .headers
            .contains(&("if-none-match".to_owned(), "\"7\"".to_owned()))
    );
    let delta = FetchRequest::new(&curator(), FetchKind::Delta { since: 7 }, None);
    assert!(
        delta
            .headers
            .contains(&(":path".to_owned(), "/v1/registry?since=7".to_owned()))
    );
    assert!(
        !delta
            .headers
            .iter()
            .any(|(n, _)| n == "mazu-checkpoint-size")
    );
    // The size of the checkpoint held, for the consistency proof.
    let proving = FetchRequest::new(&curator(), FetchKind::Delta { since: 7 }, Some(7));
    assert!(
        proving
            .headers
            .contains(&("mazu-checkpoint-size".to_owned(), "7".to_owned()))
    );
}

#[test]
fn first_snapshot_is_installed() {
    let fresh = snapshot(2, &[entry(1, false), entry(2, false)]);
    assert_eq!(
        interpret(None, Some(200), &fresh.encode()),
        FetchOutcome::Updated(fresh)
    );
}

#[test]
fn newer_snapshot_replaces_older_one_and_rollback_is_refused() {
    let held = snapshot(2, &[entry(1, false)]);
    let newer = snapshot(3, &[entry(1, false), entry(2, false)]);
    assert_eq!(
        interpret(Some(&held), Some(200), &newer.encode()),
        FetchOutcome::Updated(newer.clone())
    );
    assert_eq!(
        interpret(Some(&newer), Some(200), &held.encode()),
        FetchOutcome::Failed(FetchFailure::Rollback { have: 3, got: 2 })
    );
    assert_eq!(
        interpret(Some(&newer), Some(200), &newer.encode()),
        FetchOutcome::Unchanged
    );
    let forked = snapshot(3, &[entry(1, false), entry(3, false)]);
    assert!(matches!(
        interpret(Some(&newer), Some(200), &forked.encode()),
        FetchOutcome::Failed(FetchFailure::Rollback { .. })
    ));
}

#[test]
fn deltas_apply_or_fail_without_touching_the_held_copy() {
    let held = snapshot(2, &[entry(1, false)]);
    let delta = RegistryDelta::new(2, 4, vec![entry(1, true), entry(2, false)]).unwrap();
    let FetchOutcome::Updated(next) = interpret(Some(&held), Some(200), &delta.encode()) else {
        panic!("delta should apply");
    };
    assert_eq!(next.version(), 4);
    assert!(next.get(&entry(1, true).workload_id).unwrap().revoked);
    assert!(next.get(&entry(2, false).workload_id).is_some());

    let wrong_base = RegistryDelta::new(3, 4, vec![entry(2, false)]).unwrap();
    assert!(matches!(
        interpret(Some(&held), Some(200), &wrong_base.encode()),
        FetchOutcome::Failed(FetchFailure::DeltaMismatch(_))
    ));
    let empty = RegistryDelta::new(2, 2, vec![]).unwrap();
    assert_eq!(
        interpret(Some(&held), Some(200), &empty.encode()),
        FetchOutcome::Unchanged
    );
    // A delta with nothing to apply it to is useless.
    assert_eq!(
        interpret(None, Some(200), &delta.encode()),
        FetchOutcome::Failed(FetchFailure::Garbage)
    );
}

#[test]
fn errors_and_garbage_are_failures() {
    let held = snapshot(1, &[entry(1, false)]);
    assert_eq!(
        interpret(Some(&held), Some(304), b""),
        FetchOutcome::Unchanged
    );
    assert_eq!(
        interpret(None, Some(304), b""),
        FetchOutcome::Failed(FetchFailure::Status(304))
    );
    assert_eq!(
        interpret(Some(&held), Some(503), b"upstream connect error"),
        FetchOutcome::Failed(FetchFailure::Status(503))
    );
    assert_eq!(
        interpret(Some(&held), None, b""),
        FetchOutcome::Failed(FetchFailure::NoAnswer)
    );
    assert_eq!(
        interpret(Some(&held), Some(200), b"<html>hello</html>"),
        FetchOutcome::Failed(FetchFailure::Garbage)
    );
    let mut truncated = snapshot(2, &[entry(1, false), entry(2, false)]).encode();
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(
        interpret(Some(&held), Some(200), &truncated),
        FetchOutcome::Failed(FetchFailure::BadBody(_))
    ));
}

#[test]
fn shared_records_round_trip() {
    let status = RegistryStatus {
        version: 9,
        confirmed_ms: 1_234,
    };
    assert_eq!(RegistryStatus::decode(&status.encode()), Some(status));
    assert_eq!(RegistryStatus::decode(b"short"), None);
    let lease = Lease {
        owner: 3,
        expires_ms: 10_000,
    };
    assert_eq!(Lease::decode(&lease.encode()), Some(lease));
    assert_eq!(decode_counter(None), 0);
    assert_eq!(decode_counter(Some(&5u64.to_be_bytes())), 5);
    assert_eq!(decode_counter(Some(b"xx")), 0);
}

#[test]
fn lease_rules() {
    let lease = Lease {
        owner: 1,
        expires_ms: 10_000,
    };
    assert!(Lease::may_take(None, 2, 0));
    assert!(Lease::may_take(Some(lease), 1, 5_000));
    assert!(!Lease::may_take(Some(lease), 2, 5_000));
    assert!(Lease::may_take(Some(lease), 2, 10_000));
}

#[test]
fn fetch_schedule() {
    let curator = curator();
    let mut fetcher = Fetcher::new();
    assert_eq!(fetcher.due(0, None), Some(FetchKind::Full { have: None }));
    fetcher.started(1, FetchKind::Full { have: None }, 0, &curator);
    assert_eq!(fetcher.due(100, None), None, "one callout at a time");
    assert!(fetcher.is_current(1) && !fetcher.is_current(2));
    assert!(!fetcher.lapsed(2_999));
    assert!(fetcher.lapsed(3_000));

    // Bootstrap failures retry within a second.
    fetcher.finished(Some(&FetchFailure::NoAnswer), 3_000, false, &curator);
    assert_eq!(fetcher.due(3_999, None), None);
    assert_eq!(
        fetcher.due(4_000, None),
        Some(FetchKind::Full { have: None })
    );

    // Success: deltas at the refresh interval, counted from when the last
    // fetch was sent (a tick exactly one interval later must find it due).
    fetcher.started(2, FetchKind::Full { have: None }, 4_000, &curator);
    fetcher.finished(None, 4_100, true, &curator);
    assert_eq!(fetcher.due(8_999, Some(5)), None);
    assert_eq!(
        fetcher.due(9_000, Some(5)),
        Some(FetchKind::Delta { since: 5 })
    );

    // A delta that does not apply: next time a full snapshot, one interval
    // after the failure.
    fetcher.started(3, FetchKind::Delta { since: 5 }, 9_100, &curator);
    fetcher.finished(
        Some(&FetchFailure::DeltaMismatch(RegistryError::Truncated)),
        9_200,
        true,
        &curator,
    );
    assert_eq!(fetcher.consecutive_failures, 1);
    assert_eq!(
        fetcher.due(14_200, Some(5)),
        Some(FetchKind::Full { have: Some(5) })
    );
}
