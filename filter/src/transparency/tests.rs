#![allow(clippy::unwrap_used, reason = "tests")]

use alloc::string::String;
use alloc::vec::Vec;

use mazu_log::cosignature::append_cosignatures;
use mazu_log::merkle::MerkleTree;
use mazu_log::record::RecordBody;

use super::*;
use crate::testing::{curator_signer, witness_signer};

/// The witnessed time the follower is offered checkpoints at, Unix ms
/// (after every record's time).
const WITNESSED_MS: u64 = 1_000_000;

fn bind(id: u8, slot: u32, key: u8) -> LeafRecord {
    LeafRecord {
        at_ms: 1,
        id: [id; 32],
        entry_digest: [0; 32],
        body: RecordBody::Bind {
            slot,
            spki_hash: [key; 32],
            token_expiry: 2_000_000_000,
        },
    }
}

fn reveal(id: u8) -> LeafRecord {
    LeafRecord {
        at_ms: 2,
        id: [id; 32],
        entry_digest: [0; 32],
        body: RecordBody::Reveal {
            token_expiry: 2_000_000_000,
        },
    }
}

/// The honest log: ids 1 and 2 bound to keys 11 and 12 and revealed.
fn honest() -> Vec<LeafRecord> {
    vec![bind(1, 0, 11), reveal(1), bind(2, 1, 12), reveal(2)]
}

fn root(records: &[LeafRecord]) -> Hash {
    MerkleTree::from_leaves(records.iter().map(LeafRecord::leaf_hash))
        .root(records.len() as u64)
        .unwrap()
}

fn bytes(records: &[LeafRecord]) -> Vec<u8> {
    records.iter().flat_map(LeafRecord::to_bytes).collect()
}

/// The curator's note for `records`, cosigned by witnesses `witnesses` at
/// `time` (witness n at `time - n`).
fn note(records: &[LeafRecord], witnesses: &[u8], time: u64) -> String {
    let log = curator_signer();
    let note = log.sign(records.len() as u64, &root(records));
    let checkpoint = log.verifier().verify(note.as_bytes()).unwrap();
    let lines: Vec<String> = witnesses
        .iter()
        .map(|&n| {
            witness_signer(n)
                .cosign(&checkpoint, time - u64::from(n))
                .unwrap()
        })
        .collect();
    append_cosignatures(&note, &lines).unwrap()
}

fn policy(quorum: usize) -> WitnessPolicy {
    WitnessPolicy::new(
        vec![witness_signer(1).verifier(), witness_signer(2).verifier()],
        quorum,
    )
    .unwrap()
}

fn verified(records: &[LeafRecord]) -> VerifiedCheckpoint {
    VerifiedCheckpoint {
        size: records.len() as u64,
        root: root(records),
        witnessed_secs: Some(1_000),
        state: None,
    }
}

/// [`verified`] with the state line of the honest follower state.
fn verified_with_state(records: &[LeafRecord]) -> (VerifiedCheckpoint, Vec<u8>) {
    let mut log = LogFollower::new();
    for record in records {
        log.append_own(record).unwrap();
    }
    let state = log.encode_state();
    let checkpoint = VerifiedCheckpoint {
        state: Some(Sha256::digest(&state).into()),
        ..verified(records)
    };
    (checkpoint, state)
}

#[test]
fn a_new_follower_bootstraps_from_the_witnessed_state() {
    let log = honest();
    let (checkpoint, state) = verified_with_state(&log);
    let mut f = Follower::new(1 << 20);
    assert_eq!(
        f.offer_checkpoint(checkpoint, None, WITNESSED_MS),
        Ok(Step::FetchState { size: 4 })
    );
    assert_eq!(
        f.offer_state(4, &state),
        Ok(Step::Applied { void: Vec::new() })
    );
    assert_eq!((f.size(), f.root()), (4, root(&log)));
    let mut from_records = Follower::new(1 << 20);
    from_records
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    from_records.offer_records(0, 4, &bytes(&log)).unwrap();
    assert_eq!(f.snapshot(), from_records.snapshot());
    // It follows on with records like any follower.
    let mut longer = log.clone();
    longer.extend([bind(3, 2, 13), reveal(3)]);
    assert_eq!(
        f.offer_checkpoint(verified(&longer), None, WITNESSED_MS),
        Ok(Step::Fetch { start: 4, end: 6 })
    );
    assert!(matches!(
        f.offer_records(4, 6, &bytes(&longer[4..])),
        Ok(Step::Applied { .. })
    ));
    assert_eq!(f.snapshot().len(), 3);
    // A follower that has records never asks for a state.
    let (with_state, _) = verified_with_state(&longer);
    assert_eq!(
        from_records.offer_checkpoint(with_state, None, WITNESSED_MS),
        Ok(Step::Fetch { start: 4, end: 6 })
    );
}

#[test]
fn a_state_that_is_not_the_witnessed_one_is_refused_and_records_are_used() {
    let log = honest();
    let (checkpoint, _) = verified_with_state(&log);
    // The curator serves a state in which the victim's id 1 is bound to
    // its own key 66 (it cannot have the witnesses cosign that line).
    let mut rebound = honest();
    rebound[0] = bind(1, 0, 66);
    let (_, lie) = verified_with_state(&rebound);
    let mut f = Follower::new(1 << 20);
    f.offer_checkpoint(checkpoint, None, WITNESSED_MS).unwrap();
    let refusal = f.offer_state(4, &lie).unwrap_err();
    assert_eq!(refusal.as_str(), "state_digest_mismatch");
    assert_eq!(f.size(), 0, "nothing installed");
    // From then on, records only: the next round fetches them.
    assert_eq!(
        f.offer_checkpoint(checkpoint, None, WITNESSED_MS),
        Ok(Step::Fetch { start: 0, end: 4 })
    );

    // A line cosigned over a state with another root (witnesses that did
    // not check) or a clock past the witnessed time is refused too.
    let (mut other_root, state_other) = verified_with_state(&rebound);
    other_root.root = root(&log);
    let mut f = Follower::new(1 << 20);
    f.offer_checkpoint(other_root, None, WITNESSED_MS).unwrap();
    assert_eq!(
        f.offer_state(4, &state_other).unwrap_err().as_str(),
        "state_inconsistent"
    );
    let late: Vec<LeafRecord> = honest()
        .into_iter()
        .map(|r| LeafRecord {
            at_ms: WITNESSED_MS + MAX_CLOCK_SKEW_MS + 1,
            ..r
        })
        .collect();
    let (checkpoint, state) = verified_with_state(&late);
    let mut f = Follower::new(1 << 20);
    f.offer_checkpoint(checkpoint, None, WITNESSED_MS).unwrap();
    assert_eq!(
        f.offer_state(4, &state).unwrap_err().as_str(),
        "state_inconsistent",
        "a clock past the witnessed time plus the skew"
    );
}

#[test]
fn an_unavailable_state_falls_back_to_records_in_the_same_round() {
    let log = honest();
    let (checkpoint, _) = verified_with_state(&log);
    let mut f = Follower::new(1 << 20);
    assert_eq!(
        f.offer_checkpoint(checkpoint, None, WITNESSED_MS),
        Ok(Step::FetchState { size: 4 })
    );
    assert_eq!(f.state_unavailable(), Step::Fetch { start: 0, end: 4 });
    assert!(matches!(
        f.offer_records(0, 4, &bytes(&log)),
        Ok(Step::Applied { .. })
    ));
    // An answer for a state no round waits for changes nothing.
    assert_eq!(f.offer_state(4, b"late"), Ok(Step::Current));
}

#[test]
fn a_checkpoint_needs_the_curator_signature_and_the_witness_quorum() {
    let key = curator_signer().verifier();
    let log = honest();
    let ok = verify_checkpoint(
        &key,
        Some(&policy(2)),
        note(&log, &[1, 2], 1_000).as_bytes(),
    );
    // The witnessed time is the quorum-th newest: witness 2's (998).
    assert_eq!(
        ok,
        Ok(VerifiedCheckpoint {
            size: 4,
            root: root(&log),
            witnessed_secs: Some(998),
            state: None,
        })
    );
    let one = note(&log, &[1], 1_000);
    assert_eq!(
        verify_checkpoint(&key, Some(&policy(2)), one.as_bytes()),
        Err(Refusal::BelowQuorum {
            found: 1,
            quorum: 2
        })
    );
    // Witness 3 is not configured: its cosignature does not count.
    let stranger = note(&log, &[1, 3], 1_000);
    assert!(matches!(
        verify_checkpoint(&key, Some(&policy(2)), stranger.as_bytes()),
        Err(Refusal::BelowQuorum { found: 1, .. })
    ));
    // Another curator key.
    let other = mazu_log::CheckpointSigner::new("mazu-curator/test", &[43; 32]).unwrap();
    let forged = other.sign(4, &root(&log));
    let refusal = verify_checkpoint(&key, None, forged.as_bytes()).unwrap_err();
    assert_eq!(refusal.as_str(), "checkpoint_signature");
    // A cosignature line of a configured witness that does not verify.
    let mut tampered = note(&log, &[1, 2], 1_000);
    // A character of witness 2's signature bytes (the key ID, first, stays).
    let at = tampered.len() - 4;
    let flipped = if &tampered[at..=at] == "A" { "B" } else { "A" };
    tampered.replace_range(at..=at, flipped);
    let refusal = verify_checkpoint(&key, Some(&policy(1)), tampered.as_bytes()).unwrap_err();
    assert_eq!(refusal.as_str(), "checkpoint_bad_cosignature", "{refusal}");
    // Without witnesses (insecure development mode) the signature suffices.
    assert_eq!(
        verify_checkpoint(&key, None, one.as_bytes()).map(|c| c.witnessed_secs),
        Ok(None)
    );
}

#[test]
fn the_registry_is_derived_from_records_that_give_the_root() {
    let log = honest();
    let mut follower = Follower::new(1 << 20);
    assert_eq!(
        follower.offer_checkpoint(verified(&log[..2]), None, WITNESSED_MS),
        Ok(Step::Fetch { start: 0, end: 2 })
    );
    assert_eq!(
        follower.offer_records(0, 2, &bytes(&log[..2])),
        Ok(Step::Applied { void: vec![] })
    );
    assert_eq!(follower.snapshot().version(), 2);
    assert_eq!(follower.snapshot().len(), 1);
    // The same checkpoint again: current.
    assert_eq!(
        follower.offer_checkpoint(verified(&log[..2]), None, WITNESSED_MS),
        Ok(Step::Current)
    );
    // Growth: only the new records are asked for.
    assert_eq!(
        follower.offer_checkpoint(verified(&log), None, WITNESSED_MS),
        Ok(Step::Fetch { start: 2, end: 4 })
    );
    assert_eq!(
        follower.offer_records(2, 4, &bytes(&log[2..])),
        Ok(Step::Applied { void: vec![] })
    );
    assert_eq!(follower.snapshot().len(), 2);
}

#[test]
fn records_that_rebind_a_victim_are_refused_and_nothing_changes() {
    // The witnessed checkpoint commits to the honest log; the curator serves
    // records in which id 2 is first bound to the attacker's key 66.
    let log = honest();
    let mut lie = log.clone();
    lie[2] = bind(2, 1, 66);
    let mut follower = Follower::new(1 << 20);
    follower
        .offer_checkpoint(verified(&log[..2]), None, WITNESSED_MS)
        .unwrap();
    follower.offer_records(0, 2, &bytes(&log[..2])).unwrap();
    let before = follower.snapshot();

    follower
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    assert_eq!(
        follower.offer_records(2, 4, &bytes(&lie[2..])),
        Err(Refusal::RecordsRootMismatch { size: 4 })
    );
    assert_eq!(follower.snapshot(), before);
    assert_eq!(follower.size(), 2);
    assert_eq!(follower.target(), None, "the round is over");
    // The honest records are taken in the next round.
    follower
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    assert!(matches!(
        follower.offer_records(2, 4, &bytes(&log[2..])),
        Ok(Step::Applied { .. })
    ));
}

#[test]
fn rollbacks_and_forks_are_refused_also_against_what_another_vm_accepted() {
    let log = honest();
    let mut follower = Follower::new(1 << 20);
    follower
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    follower.offer_records(0, 4, &bytes(&log)).unwrap();
    assert_eq!(
        follower.offer_checkpoint(verified(&log[..2]), None, WITNESSED_MS),
        Err(Refusal::Rollback {
            held: 4,
            offered: 2
        })
    );
    let mut fork = log.clone();
    fork.swap(0, 2);
    assert_eq!(
        follower.offer_checkpoint(verified(&fork), None, WITNESSED_MS),
        Err(Refusal::Fork { size: 4 })
    );

    // A new leader that starts from the empty log still refuses to go
    // behind, or beside, what this Envoy accepted.
    let accepted = AcceptedCheckpoint {
        size: 4,
        root: root(&log),
        witnessed_ms: 5,
    };
    let mut fresh = Follower::new(1 << 20);
    assert_eq!(
        fresh.offer_checkpoint(verified(&log[..2]), Some(accepted), WITNESSED_MS),
        Err(Refusal::Rollback {
            held: 4,
            offered: 2
        })
    );
    assert_eq!(
        fresh.offer_checkpoint(verified(&fork), Some(accepted), WITNESSED_MS),
        Err(Refusal::Fork { size: 4 })
    );
    // The accepted checkpoint itself: it bootstraps from record 0.
    assert_eq!(
        fresh.offer_checkpoint(verified(&log), Some(accepted), WITNESSED_MS),
        Ok(Step::Fetch { start: 0, end: 4 })
    );
}

#[test]
fn records_come_page_by_page_and_bad_pages_are_refused() {
    let log = honest();
    // Room for three records per page.
    let mut follower = Follower::new(3 * MAX_RECORD_LEN);
    assert_eq!(
        follower.offer_checkpoint(verified(&log), None, WITNESSED_MS),
        Ok(Step::Fetch { start: 0, end: 3 })
    );
    // The server may answer fewer than asked.
    assert_eq!(
        follower.offer_records(0, 3, &bytes(&log[..1])),
        Ok(Step::Fetch { start: 1, end: 4 })
    );
    assert_eq!(follower.size(), 0, "nothing applied before the last page");
    assert!(matches!(
        follower.offer_records(1, 4, &bytes(&log[1..])),
        Ok(Step::Applied { .. })
    ));
    assert_eq!(follower.size(), 4);

    let grown = {
        let mut grown = log.clone();
        grown.push(bind(3, 2, 13));
        grown.push(reveal(3));
        grown
    };
    let refused = |body: &[u8]| {
        let mut follower = follower.clone();
        follower
            .offer_checkpoint(verified(&grown), None, WITNESSED_MS)
            .unwrap();
        let refusal = follower.offer_records(4, 6, body).unwrap_err();
        assert_eq!(follower.size(), 4);
        refusal.as_str()
    };
    assert_eq!(refused(b""), "records_count");
    assert_eq!(refused(&bytes(&grown[3..])), "records_count");
    assert_eq!(refused(b"<html>"), "records_undecodable");
    let mut truncated = bytes(&grown[4..]);
    truncated.pop();
    assert_eq!(refused(&truncated), "records_undecodable");
}

#[test]
fn void_records_are_reported() {
    // A second binding of id 1 (to another key) has no effect.
    let log = vec![bind(1, 0, 11), reveal(1), bind(1, 1, 66)];
    let mut follower = Follower::new(1 << 20);
    follower
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    let Ok(Step::Applied { void }) = follower.offer_records(0, 3, &bytes(&log)) else {
        panic!("not applied");
    };
    assert_eq!(void.len(), 1);
    assert_eq!(void[0].index, 2);
    let entry = follower.snapshot().entries()[0];
    assert_eq!(entry.spki_hash.as_bytes(), &[11; 32]);
}

#[test]
fn records_timed_after_the_witnessed_time_are_refused() {
    // A curator that times a record in the future would make every filter
    // forget revoked ids whose tokens are still valid.
    let mut log = honest();
    log[3].at_ms = WITNESSED_MS + mazu_identity::registry::derive::MAX_CLOCK_SKEW_MS + 1;
    let mut follower = Follower::new(1 << 20);
    follower
        .offer_checkpoint(verified(&log), None, WITNESSED_MS)
        .unwrap();
    assert_eq!(
        follower.offer_records(0, 4, &bytes(&log)),
        Err(Refusal::RecordsFromTheFuture { index: 3 })
    );
    assert_eq!(follower.size(), 0);
}
