use alloc::vec::Vec;

use mazu_log::MerkleTree;
use mazu_log::record::{LeafRecord, RecordBody, ReleaseReason};

use super::*;

fn record(id: u8, body: RecordBody) -> LeafRecord {
    LeafRecord {
        at_ms: 1_700_000_000_000,
        id: [id; 32],
        entry_digest: [id ^ 0xff; 32],
        body,
    }
}

/// The token expiry every test binding commits to, Unix seconds: after the
/// records' time (`1_700_000_000_000` ms).
const EXP: u64 = 1_800_000_000;

fn bind(id: u8, slot: u32, key: u8) -> LeafRecord {
    record(
        id,
        RecordBody::Bind {
            slot,
            spki_hash: [key; 32],
            token_expiry: EXP,
        },
    )
}

fn at(at_ms: u64, record: LeafRecord) -> LeafRecord {
    LeafRecord { at_ms, ..record }
}

fn reveal(id: u8, token_expiry: u64) -> LeafRecord {
    record(id, RecordBody::Reveal { token_expiry })
}

fn live_key(registry: &DerivedRegistry, id: u8) -> Option<[u8; 32]> {
    registry
        .snapshot()
        .get(&WorkloadId::from_bytes([id; 32]))
        .filter(|entry| !entry.revoked)
        .map(|entry| *entry.spki_hash.as_bytes())
}

/// The witnessed time the follower tests verify against: the records' time.
const NOW: u64 = 1_700_000_000_000;

fn root_of(records: &[LeafRecord]) -> Hash {
    let tree = MerkleTree::from_leaves(records.iter().map(LeafRecord::leaf_hash));
    tree.root(tree.len()).unwrap()
}

#[test]
fn bind_then_reveal_makes_an_id_live_with_its_key_and_expiry() {
    let mut registry = DerivedRegistry::new();
    assert_eq!(registry.apply(&bind(1, 0, 0xA1)), Ok(()));
    // Bound but unrevealed: not usable yet.
    assert_eq!(live_key(&registry, 1), None);
    assert_eq!(registry.apply(&reveal(1, EXP)), Ok(()));
    assert_eq!(live_key(&registry, 1), Some([0xA1; 32]));
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.version(), 2);
    let entry = snapshot.get(&WorkloadId::from_bytes([1; 32])).unwrap();
    assert_eq!((entry.slot, entry.token_expiry), (0, EXP));
    assert_eq!(registry.held_slots(), 1);
}

#[test]
fn first_binding_wins_over_a_later_rebinding() {
    // The curator (or anyone) logs a second binding of the victim's id to
    // its own key, before or after the reveal: it is void, the victim's key
    // stays the only one.
    let mut registry = DerivedRegistry::new();
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    assert_eq!(
        registry.apply(&bind(1, 1, 0xEE)),
        Err(VoidReason::AlreadyBound)
    );
    registry.apply(&reveal(1, EXP)).unwrap();
    assert_eq!(
        registry.apply(&bind(1, 2, 0xEE)),
        Err(VoidReason::AlreadyBound)
    );
    assert_eq!(live_key(&registry, 1), Some([0xA1; 32]));
    // The void binds took no slot.
    assert_eq!(registry.slot_holder(1), None);
    assert_eq!(registry.slot_holder(2), None);
}

#[test]
fn a_released_or_revoked_id_cannot_be_bound_again_while_its_token_is_valid() {
    let mut registry = DerivedRegistry::new();
    for (id, end) in [
        (
            1,
            RecordBody::Release {
                reason: ReleaseReason::Holder,
            },
        ),
        (2, RecordBody::Revoke),
    ] {
        registry.apply(&bind(id, u32::from(id), 0xA0 + id)).unwrap();
        registry.apply(&reveal(id, EXP)).unwrap();
        registry.apply(&record(id, end)).unwrap();
        assert_eq!(live_key(&registry, id), None);
        // The slot is free again...
        assert_eq!(registry.slot_holder(u32::from(id)), None);
        // ...but the id stays void while its token is valid.
        assert_eq!(
            registry.apply(&bind(id, 9, 0xEE)),
            Err(VoidReason::AlreadyBound)
        );
        assert_eq!(live_key(&registry, id), None);
    }
    // A revoked id stays in the snapshot, flagged, so the verdict says why.
    let revoked = registry.snapshot();
    let entry = revoked.get(&WorkloadId::from_bytes([2; 32])).unwrap();
    assert!(entry.revoked);
    assert!(revoked.get(&WorkloadId::from_bytes([1; 32])).is_none());
}

#[test]
fn a_freed_slot_is_reused_by_another_id() {
    let mut registry = DerivedRegistry::new();
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    assert_eq!(
        registry.apply(&bind(2, 0, 0xA2)),
        Err(VoidReason::SlotTaken(0))
    );
    registry
        .apply(&record(
            1,
            RecordBody::Release {
                reason: ReleaseReason::Unrevealed,
            },
        ))
        .unwrap();
    assert_eq!(registry.apply(&bind(2, 0, 0xA2)), Ok(()));
    assert_eq!(registry.slot_holder(0), Some(&[2; 32]));
}

fn release_at(id: u8, reason: ReleaseReason, at_ms: u64) -> LeafRecord {
    LeafRecord {
        at_ms,
        ..record(id, RecordBody::Release { reason })
    }
}

/// A curator cannot end a live binding under its own authority: an
/// `expired` release before the token's expiry, or an `unrevealed` release
/// of a revealed id, is void for everyone and the id stays live.
#[test]
fn a_release_whose_reason_does_not_hold_is_void() {
    let mut registry = DerivedRegistry::new();
    let expiry = EXP;
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    // Unrevealed: an `expired` release does not hold (the expiry bound is
    // the holder's claim, the token nobody has seen).
    assert_eq!(
        registry.apply(&release_at(1, ReleaseReason::Expired, expiry * 1000 - 2)),
        Err(VoidReason::NotDue)
    );
    registry
        .apply(&at(expiry * 1000 - 2, reveal(1, expiry)))
        .unwrap();
    assert_eq!(
        registry.apply(&release_at(1, ReleaseReason::Unrevealed, expiry * 1000 - 2)),
        Err(VoidReason::NotDue)
    );
    // One millisecond before the expiry second (the clock never goes back:
    // a record timed earlier than one applied counts at the later time).
    assert_eq!(
        registry.apply(&release_at(1, ReleaseReason::Expired, expiry * 1000 - 1)),
        Err(VoidReason::NotDue)
    );
    assert_eq!(live_key(&registry, 1), Some([0xA1; 32]));
    assert_eq!(registry.slot_holder(0), Some(&[1; 32]));
    // At the expiry it is due.
    assert_eq!(
        registry.apply(&release_at(1, ReleaseReason::Expired, expiry * 1000)),
        Ok(())
    );
    assert_eq!(live_key(&registry, 1), None);
    assert_eq!(registry.slot_holder(0), None);
    // An unrevealed binding may be released as unrevealed, not as expired.
    registry
        .apply(&record(
            2,
            RecordBody::Bind {
                slot: 0,
                spki_hash: [0xA2; 32],
                token_expiry: 2 * EXP,
            },
        ))
        .unwrap();
    assert_eq!(
        registry.apply(&release_at(2, ReleaseReason::Unrevealed, 0)),
        Ok(())
    );
    assert_eq!(
        registry.state(&[2; 32]),
        Some(&IdState::Released {
            reason: ReleaseReason::Unrevealed,
            token_expiry: 2 * EXP,
        })
    );
}

#[test]
fn records_out_of_order_are_void() {
    let mut registry = DerivedRegistry::new();
    assert_eq!(registry.apply(&reveal(1, EXP)), Err(VoidReason::NotPending));
    assert_eq!(
        registry.apply(&record(1, RecordBody::Revoke)),
        Err(VoidReason::NotBound)
    );
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    registry.apply(&reveal(1, EXP)).unwrap();
    assert_eq!(
        registry.apply(&reveal(1, EXP + 1)),
        Err(VoidReason::NotPending)
    );
    registry.apply(&record(1, RecordBody::Revoke)).unwrap();
    assert_eq!(
        registry.apply(&record(1, RecordBody::Revoke)),
        Err(VoidReason::NotBound)
    );
    // Void records still count as log positions.
    assert_eq!(registry.size(), 7);
}

#[test]
fn apply_all_reports_void_records_with_their_index() {
    let records = [bind(1, 0, 0xA1), bind(1, 1, 0xEE), reveal(1, EXP)];
    let mut registry = DerivedRegistry::new();
    let void = registry.apply_all(&records);
    assert_eq!(void.len(), 1);
    assert_eq!(void[0].index, 1);
    assert_eq!(void[0].reason, VoidReason::AlreadyBound);
}

#[test]
fn the_follower_applies_only_records_that_give_the_verified_root() {
    let records: Vec<LeafRecord> = [bind(1, 0, 0xA1), reveal(1, EXP), bind(2, 1, 0xA2)].into();
    let mut follower = LogFollower::new();
    // Records that are not the log's (a rebinding swapped in) are refused,
    // and nothing changes.
    let mut forged = records.clone();
    forged[0] = bind(1, 0, 0xEE);
    assert_eq!(
        follower.extend(&forged, 3, &root_of(&records), NOW),
        Err(FollowError::RootMismatch)
    );
    assert_eq!(follower.size(), 0);
    // Too few or too many records for the checkpoint.
    assert!(matches!(
        follower.extend(&records[..2], 3, &root_of(&records), NOW),
        Err(FollowError::WrongCount { .. })
    ));
    // The log's records are applied.
    assert_eq!(
        follower.extend(&records, 3, &root_of(&records), NOW),
        Ok(Vec::new())
    );
    assert_eq!(live_key(follower.registry(), 1), Some([0xA1; 32]));
    assert_eq!(follower.root(), root_of(&records));

    // Extending: only the new records, against the new root.
    let mut longer = records.clone();
    longer.push(reveal(2, EXP));
    longer.push(bind(1, 5, 0xEE)); // void: first binding wins
    let void = follower
        .extend(&longer[3..], 5, &root_of(&longer), NOW)
        .unwrap();
    assert_eq!(void.len(), 1);
    assert_eq!(void[0].index, 4);
    assert_eq!(live_key(follower.registry(), 2), Some([0xA2; 32]));
    assert_eq!(live_key(follower.registry(), 1), Some([0xA1; 32]));

    // A fork: a log of the same size whose earlier records differ cannot be
    // followed from here, even with its own correct root.
    let mut fork = longer.clone();
    fork[0] = bind(1, 0, 0xEE);
    fork.push(reveal(9, EXP));
    assert_eq!(
        follower.extend(&fork[5..], 6, &root_of(&fork), NOW),
        Err(FollowError::RootMismatch)
    );
    // A rollback is refused by size.
    assert!(matches!(
        follower.extend(&[], 3, &root_of(&records), NOW),
        Err(FollowError::Rollback { .. })
    ));
    // The same size and root again is a no-op.
    assert_eq!(
        follower.extend(&[], 5, &root_of(&longer), NOW),
        Ok(Vec::new())
    );
}

#[test]
fn a_reveal_must_match_the_bound_expiry_and_come_before_it() {
    let mut registry = DerivedRegistry::new();
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    // A reveal claiming another expiry than the holder bound: void.
    assert_eq!(
        registry.apply(&reveal(1, EXP + 3600)),
        Err(VoidReason::ExpiryMismatch)
    );
    // A reveal at the expiry: void, the token is dead.
    assert_eq!(
        registry.apply(&at(EXP * 1000, reveal(1, EXP))),
        Err(VoidReason::TokenExpired)
    );
    assert_eq!(live_key(&registry, 1), None);
    assert!(matches!(
        registry.state(&[1; 32]),
        Some(IdState::Bound { .. })
    ));
}

/// Ended ids are forgotten once their token has expired, so the state
/// follows the live registrations, and a forgotten id bound again can never
/// become live (its token is dead).
#[test]
fn an_ended_id_is_forgotten_after_its_expiry_and_cannot_come_back() {
    let mut registry = DerivedRegistry::new();
    registry.apply(&bind(1, 0, 0xA1)).unwrap();
    registry.apply(&reveal(1, EXP)).unwrap();
    registry.apply(&record(1, RecordBody::Revoke)).unwrap();
    registry.apply(&bind(2, 1, 0xA2)).unwrap();
    registry
        .apply(&record(
            2,
            RecordBody::Release {
                reason: ReleaseReason::Unrevealed,
            },
        ))
        .unwrap();
    assert_eq!(registry.ids_held(), 2);
    // At the expiry millisecond they are still held: a rebinding is void.
    assert_eq!(
        registry.apply(&at(EXP * 1000, bind(1, 5, 0xEE))),
        Err(VoidReason::AlreadyBound)
    );
    assert_eq!(registry.ids_held(), 2);
    assert!(
        registry
            .snapshot()
            .get(&WorkloadId::from_bytes([1; 32]))
            .is_some()
    );
    // One millisecond later both are forgotten, before the record applies.
    assert_eq!(
        registry.apply(&at(EXP * 1000 + 1, bind(1, 5, 0xEE))),
        Ok(())
    );
    assert_eq!(registry.state(&[2; 32]), None);
    assert_eq!(registry.ids_held(), 1);
    // The rebinding (someone who learnt the dead token) never goes live.
    assert_eq!(
        registry.apply(&at(EXP * 1000 + 2, reveal(1, EXP))),
        Err(VoidReason::TokenExpired)
    );
    assert_eq!(live_key(&registry, 1), None);
    assert_eq!(registry.clock_ms(), EXP * 1000 + 2);
    // A record timed in the past does not move the clock back.
    registry.apply(&bind(3, 6, 0xA3)).unwrap();
    assert_eq!(registry.clock_ms(), EXP * 1000 + 2);
}

/// A workload rotating its token a thousand times holds a bounded state:
/// every replaced binding is forgotten once its token has expired.
#[test]
fn rotations_keep_the_state_bounded() {
    let mut registry = DerivedRegistry::new();
    let lifetime_ms = 20_000;
    let mut held = Vec::new();
    for n in 0..1000u64 {
        let now = NOW + n * 16_000;
        let id = n.to_be_bytes().repeat(4).try_into().unwrap();
        let slot = (n % 4) as u32;
        let expiry = (now + lifetime_ms) / 1000;
        let rec = |body| LeafRecord {
            at_ms: now,
            id,
            entry_digest: [0; 32],
            body,
        };
        if n > 0 {
            let previous: [u8; 32] = (n - 1).to_be_bytes().repeat(4).try_into().unwrap();
            let release = LeafRecord {
                id: previous,
                ..rec(RecordBody::Release {
                    reason: ReleaseReason::Holder,
                })
            };
            assert_eq!(registry.apply(&release), Ok(()));
        }
        assert_eq!(
            registry.apply(&rec(RecordBody::Bind {
                slot,
                spki_hash: [1; 32],
                token_expiry: expiry,
            })),
            Ok(())
        );
        assert_eq!(
            registry.apply(&rec(RecordBody::Reveal {
                token_expiry: expiry
            })),
            Ok(())
        );
        held.push(registry.ids_held());
    }
    assert_eq!(registry.size(), 3 * 1000 - 1);
    // One live id plus the one or two ended within a token lifetime.
    assert!(held.iter().all(|&n| n <= 3), "{held:?}");
}

#[test]
fn the_follower_refuses_records_timed_after_the_witnessed_time() {
    // A curator that times a record in the future would have every party
    // forget revoked ids whose tokens are still valid.
    let records: Vec<LeafRecord> = [
        bind(1, 0, 0xA1),
        at(NOW + MAX_CLOCK_SKEW_MS + 1, reveal(1, EXP)),
    ]
    .into();
    let mut follower = LogFollower::new();
    assert_eq!(
        follower.extend(&records, 2, &root_of(&records), NOW),
        Err(FollowError::FromTheFuture {
            index: 1,
            at_ms: NOW + MAX_CLOCK_SKEW_MS + 1,
            witnessed_ms: NOW,
        })
    );
    assert_eq!(follower.size(), 0);
    // Within the skew it is taken.
    assert_eq!(
        follower.extend(&records, 2, &root_of(&records), NOW + 1),
        Ok(Vec::new())
    );
}
