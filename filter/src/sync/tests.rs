use super::*;
use crate::config::CuratorConfig;
use crate::testing::curator_signer;
use crate::transparency::Refusal;

fn curator() -> CuratorConfig {
    CuratorConfig {
        cluster: "mazu-curator".into(),
        authority: "curator.local".into(),
        refresh_interval_ms: 5_000,
        timeout_ms: 2_000,
        max_body_bytes: 1 << 20,
        checkpoint_key: curator_signer().verifier(),
        witnesses: None,
    }
}

#[test]
fn requests() {
    let checkpoint = FetchRequest::new(&curator(), FetchKind::Checkpoint);
    assert_eq!(
        checkpoint.headers,
        [
            (":method", "GET"),
            (":path", "/v1/checkpoint"),
            (":authority", "curator.local"),
            ("accept", "text/plain"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    let records = FetchRequest::new(
        &curator(),
        FetchKind::Records {
            start: 3,
            end: 16_387,
        },
    );
    assert_eq!(
        records.headers[1],
        (
            ":path".to_owned(),
            "/v1/log/records?start=3&end=16387".to_owned()
        )
    );
    assert_eq!(records.headers[3].1, "application/octet-stream");
}

#[test]
fn only_a_200_is_used() {
    assert_eq!(check_status(Some(200)), Ok(()));
    assert_eq!(check_status(None), Err(FetchFailure::NoAnswer));
    // A 304 confirms nothing any more: freshness comes from the witnesses.
    assert_eq!(check_status(Some(304)), Err(FetchFailure::Status(304)));
    assert_eq!(check_status(Some(503)), Err(FetchFailure::Status(503)));
}

#[test]
fn failure_names_are_distinct_and_refusals_are_flagged() {
    let mut names = FetchFailure::ALL_NAMES.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FetchFailure::ALL_NAMES.len());
    let refusal = FetchFailure::Refused(Refusal::RecordsRootMismatch { size: 4 });
    assert_eq!(refusal.as_str(), "records_root_mismatch");
    assert!(refusal.is_refusal());
    assert!(!FetchFailure::NoAnswer.is_refusal());
    assert!(FetchFailure::ALL_NAMES.contains(&"checkpoint_below_quorum"));
    assert!(FetchFailure::ALL_NAMES.contains(&"checkpoint_rollback"));
}

#[test]
fn fetch_schedule() {
    let curator = curator();
    let mut fetcher = Fetcher::new();
    assert!(fetcher.due(0));
    fetcher.started(1, FetchKind::Checkpoint, 0, &curator);
    assert!(!fetcher.due(100), "one callout at a time");
    assert!(fetcher.is_current(1) && !fetcher.is_current(2));
    assert!(!fetcher.lapsed(2_999));
    assert!(fetcher.lapsed(3_000));

    // Bootstrap failures retry within a second.
    fetcher.finished(Some(&FetchFailure::NoAnswer), 3_000, false, &curator);
    assert!(!fetcher.due(3_999));
    assert!(fetcher.due(4_000));

    // A round of several callouts: the next round is due one interval after
    // its checkpoint callout was sent (a tick exactly one interval later
    // must find it due).
    fetcher.started(2, FetchKind::Checkpoint, 4_000, &curator);
    fetcher.answered();
    assert!(!fetcher.is_current(2));
    fetcher.started(3, FetchKind::Records { start: 0, end: 2 }, 4_050, &curator);
    fetcher.finished(None, 4_100, true, &curator);
    assert!(!fetcher.due(8_999));
    assert!(fetcher.due(9_000));

    // A refusal: one interval after the failure.
    fetcher.started(4, FetchKind::Checkpoint, 9_100, &curator);
    fetcher.finished(
        Some(&FetchFailure::Refused(Refusal::Fork { size: 2 })),
        9_200,
        true,
        &curator,
    );
    assert_eq!(fetcher.consecutive_failures, 1);
    assert!(!fetcher.due(14_199));
    assert!(fetcher.due(14_200));
}
