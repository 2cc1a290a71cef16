//! The state is a pure function of the ordered registration log.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::{register, rng};
use mazu_rbe::{PublicParams, Registration, RegistrationError, RegistryState};

#[test]
fn replay_gives_byte_identical_public_params_and_openings() {
    let crs = common::crs(49); // n = 7
    let mut live = RegistryState::new(crs.clone());
    let mut r = rng(300);
    let mut log: Vec<Registration> = Vec::new();
    let mut snapshots = Vec::new();
    for slot in [3, 0, 48, 13, 7, 8, 20, 1, 40] {
        let (_, reg) = register(&mut live, slot, &mut r);
        log.push(reg);
        snapshots.push(live.public_params().to_bytes());
    }

    // Replay every prefix: identical parameters at every version.
    for (k, expected) in snapshots.iter().enumerate() {
        let replayed = RegistryState::replay(crs.clone(), log[..=k].iter().cloned()).unwrap();
        assert_eq!(&replayed.public_params().to_bytes(), expected, "prefix {k}");
        assert_eq!(replayed.version(), k as u64 + 1);
        if k + 1 == log.len() {
            assert_eq!(replayed.log_digest(), live.log_digest());
        } else {
            assert_ne!(replayed.log_digest(), live.log_digest());
        }
    }

    // The log survives its own encodings, and so does the result.
    let through_bytes: Vec<Registration> = log
        .iter()
        .map(|reg| Registration::from_bytes(&reg.to_bytes()).unwrap())
        .collect();
    let through_json: Vec<Registration> =
        serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
    let a = RegistryState::replay(crs.clone(), through_bytes).unwrap();
    let b = RegistryState::replay(crs.clone(), through_json).unwrap();
    let pp = live.public_params();
    assert_eq!(a.public_params().to_bytes(), pp.to_bytes());
    assert_eq!(b.public_params().to_bytes(), pp.to_bytes());
    for slot in 0..49 {
        assert_eq!(a.opening(slot), live.opening(slot));
        assert_eq!(a.public_key(slot), live.public_key(slot));
    }
    let decoded = PublicParams::from_bytes(&pp.to_bytes()).unwrap();
    assert_eq!(decoded, pp);
    let json: PublicParams = serde_json::from_str(&serde_json::to_string(&pp).unwrap()).unwrap();
    assert_eq!(json, pp);
}

#[test]
fn replay_reports_the_first_bad_entry() {
    let crs = common::crs(16);
    let mut live = RegistryState::new(crs.clone());
    let mut r = rng(301);
    let mut log = Vec::new();
    for slot in [1, 2, 3] {
        log.push(register(&mut live, slot, &mut r).1);
    }
    // A duplicate entry (same slot again).
    let mut dup = log.clone();
    dup.push(log[0].clone());
    let err = RegistryState::replay(crs.clone(), dup).unwrap_err();
    assert_eq!(err.index, 3);
    assert_eq!(err.error, RegistrationError::SlotTaken(1));
    // A tampered helper in the middle.
    let mut bad = log.clone();
    bad[1].helpers[0] = bad[0].helpers[0];
    let err = RegistryState::replay(crs, bad).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.error, RegistrationError::InvalidHelpers);
}

#[test]
fn public_params_decoder_is_strict() {
    let mut state = RegistryState::new(common::crs(16));
    register(&mut state, 5, &mut rng(302));
    let bytes = state.public_params().to_bytes();
    // digest(32) capacity(4) block size(4) version(8) count(4) then commitments.
    let count_at = 5 + 32 + 4 + 4 + 8;
    let mut b = bytes.clone();
    b[count_at..count_at + 4].copy_from_slice(&3u32.to_be_bytes());
    assert!(PublicParams::from_bytes(&b).is_err());
    // The version counts releases too, so it may exceed the capacity.
    let mut b = bytes.clone();
    b[count_at - 8..count_at].copy_from_slice(&17u64.to_be_bytes());
    assert_eq!(PublicParams::from_bytes(&b).unwrap().version(), 17);
    let mut b = bytes.clone();
    b[5 + 32 + 4 + 3] = 5; // block size 5 for capacity 16
    assert!(PublicParams::from_bytes(&b).is_err());
    let mut b = bytes.clone();
    b.push(0);
    assert!(PublicParams::from_bytes(&b).is_err());
    assert!(PublicParams::from_bytes(&bytes[..bytes.len() - 1]).is_err());
}
