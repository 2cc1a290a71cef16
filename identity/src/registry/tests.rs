//! Registry snapshot and delta tests: lookups, canonical encodings, strict
//! decoders, and all-or-nothing delta application.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::digest::{SpkiHash, WorkloadId};

fn entry(n: u32) -> RegistryEntry {
    RegistryEntry {
        workload_id: WorkloadId::of_token(&n.to_be_bytes()),
        slot: n,
        spki_hash: SpkiHash::of_spki_der(&n.to_le_bytes()),
        token_expiry: 1_767_225_600 + u64::from(n),
        revoked: n.is_multiple_of(5),
    }
}

fn snapshot(version: u64, ns: impl IntoIterator<Item = u32>) -> RegistrySnapshot {
    RegistrySnapshot::from_entries(version, ns.into_iter().map(entry).collect()).unwrap()
}

#[test]
fn lookup_finds_every_entry_and_nothing_else() {
    let snap = snapshot(1000, 0..500);
    assert_eq!(snap.len(), 500);
    for n in 0..500 {
        assert_eq!(snap.get(&entry(n).workload_id), Some(&entry(n)));
    }
    for n in 500..600 {
        assert_eq!(snap.get(&entry(n).workload_id), None);
    }
    assert!(
        snap.entries()
            .windows(2)
            .all(|w| w[0].workload_id < w[1].workload_id)
    );
    assert!(
        RegistrySnapshot::empty()
            .get(&entry(1).workload_id)
            .is_none()
    );
}

#[test]
fn snapshot_round_trips_canonically() {
    let snap = snapshot(77, 0..50);
    let bytes = snap.encode();
    assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN + 50 * ENTRY_LEN);
    assert_eq!(&bytes[..4], b"MZRS");
    assert_eq!(bytes[4], 1);
    assert_eq!(&bytes[5..13], &77u64.to_be_bytes());
    assert_eq!(&bytes[13..17], &50u32.to_be_bytes());
    assert_eq!(RegistrySnapshot::decode(&bytes), Ok(snap.clone()));
    // Input order does not matter: the encoding is canonical.
    let reversed = RegistrySnapshot::from_entries(77, (0..50).rev().map(entry).collect()).unwrap();
    assert_eq!(reversed.encode(), bytes);
    let empty = RegistrySnapshot::empty().encode();
    assert_eq!(empty.len(), SNAPSHOT_HEADER_LEN);
    assert_eq!(
        RegistrySnapshot::decode(&empty),
        Ok(RegistrySnapshot::empty())
    );
}

#[test]
fn entry_layout_is_documented_one() {
    let e = RegistryEntry {
        workload_id: WorkloadId::from_bytes([0x11; 32]),
        slot: 0x0102_0304,
        spki_hash: SpkiHash::from_bytes([0x22; 32]),
        token_expiry: 0x0506_0708_090a_0b0c,
        revoked: true,
    };
    let mut out = Vec::new();
    e.encode_into(&mut out);
    let mut want = vec![0x11; 32];
    want.extend([1, 2, 3, 4]);
    want.extend([0x22; 32]);
    want.extend([5, 6, 7, 8, 9, 10, 11, 12]);
    want.push(1);
    assert_eq!(out, want);
}

#[test]
fn snapshot_decoder_is_strict() {
    let good = snapshot(10, 0..3).encode();
    let body = SNAPSHOT_HEADER_LEN;
    let mut cases: Vec<(Vec<u8>, RegistryError)> = vec![
        (good[..3].to_vec(), RegistryError::Truncated),
        (good[..body - 1].to_vec(), RegistryError::Truncated),
        ([b"MZRD", &good[4..]].concat(), RegistryError::BadMagic),
        (
            {
                let mut b = good.clone();
                b[4] = 2;
                b
            },
            RegistryError::UnsupportedFormat(2),
        ),
        (
            good[..good.len() - 1].to_vec(),
            RegistryError::LengthMismatch {
                count: 3,
                remaining: 3 * ENTRY_LEN - 1,
            },
        ),
        (
            [&good[..], &[0]].concat(),
            RegistryError::LengthMismatch {
                count: 3,
                remaining: 3 * ENTRY_LEN + 1,
            },
        ),
        (
            {
                // A huge count with a short body: refused before allocating.
                let mut b = good.clone();
                b[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
                b
            },
            RegistryError::LengthMismatch {
                count: u32::MAX,
                remaining: 3 * ENTRY_LEN,
            },
        ),
        (
            {
                let mut b = good.clone();
                b[body + ENTRY_LEN - 1] = 0x03;
                b
            },
            RegistryError::UnknownFlags(0x03),
        ),
        (
            {
                // Version 2 cannot hold 3 entries.
                let mut b = good.clone();
                b[5..13].copy_from_slice(&2u64.to_be_bytes());
                b
            },
            RegistryError::TooManyEntries {
                count: 3,
                records: 2,
            },
        ),
    ];
    // Swap the first two entries: unsorted.
    let mut swapped = good.clone();
    let (first, rest) = swapped[body..].split_at_mut(ENTRY_LEN);
    first.swap_with_slice(&mut rest[..ENTRY_LEN]);
    cases.push((swapped, RegistryError::Unsorted));
    // Repeat the first entry.
    let mut dup = good.clone();
    let first = dup[body..body + ENTRY_LEN].to_vec();
    dup[body + ENTRY_LEN..body + 2 * ENTRY_LEN].copy_from_slice(&first);
    let first_id = RegistrySnapshot::decode(&good).unwrap().entries()[0].workload_id;
    cases.push((dup, RegistryError::DuplicateEntry(first_id)));
    for (bytes, want) in cases {
        assert_eq!(
            RegistrySnapshot::decode(&bytes),
            Err(want.clone()),
            "{want}"
        );
    }
    assert_eq!(
        RegistrySnapshot::from_entries(10, vec![entry(1), entry(1)]),
        Err(RegistryError::DuplicateEntry(entry(1).workload_id))
    );
}

#[test]
fn delta_round_trips_and_is_strict() {
    let delta = RegistryDelta::new(10, 14, vec![entry(7), entry(3)]).unwrap();
    let bytes = delta.encode();
    assert_eq!(bytes.len(), DELTA_HEADER_LEN + 2 * ENTRY_LEN);
    assert_eq!(&bytes[..4], b"MZRD");
    assert_eq!(RegistryDelta::decode(&bytes), Ok(delta.clone()));
    assert!(delta.entries()[0].workload_id < delta.entries()[1].workload_id);

    let mut backwards = bytes.clone();
    backwards[5..13].copy_from_slice(&20u64.to_be_bytes());
    assert_eq!(
        RegistryDelta::decode(&backwards),
        Err(RegistryError::BackwardsDelta { from: 20, to: 14 })
    );
    assert_eq!(
        RegistryDelta::new(10, 11, vec![entry(1), entry(2)]),
        Err(RegistryError::TooManyEntries {
            count: 2,
            records: 1
        })
    );
    assert_eq!(
        RegistryDelta::decode(&bytes[..bytes.len() - 1]).unwrap_err(),
        RegistryError::LengthMismatch {
            count: 2,
            remaining: 2 * ENTRY_LEN - 1
        }
    );
    assert_eq!(
        RegistryDelta::decode(&snapshot(1, []).encode()),
        Err(RegistryError::BadMagic)
    );
    let mut unsorted = bytes.clone();
    let (a, b) = unsorted[DELTA_HEADER_LEN..].split_at_mut(ENTRY_LEN);
    a.swap_with_slice(b);
    assert_eq!(
        RegistryDelta::decode(&unsorted),
        Err(RegistryError::Unsorted)
    );
    let mut format = bytes;
    format[4] = 9;
    assert_eq!(
        RegistryDelta::decode(&format),
        Err(RegistryError::UnsupportedFormat(9))
    );
}

#[test]
fn apply_registers_and_revokes() {
    let mut snap = snapshot(10, [1, 2, 4, 6]);
    let mut revoke_2 = entry(2);
    revoke_2.revoked = true;
    let delta = RegistryDelta::new(10, 15, vec![entry(3), revoke_2, entry(9), entry(8)]).unwrap();
    snap.apply(&delta).unwrap();
    assert_eq!(snap.version(), 15);
    assert_eq!(snap.len(), 7);
    assert!(snap.get(&entry(2).workload_id).unwrap().revoked);
    for n in [1, 3, 4, 6, 8, 9] {
        assert_eq!(snap.get(&entry(n).workload_id), Some(&entry(n)));
    }
    // Same result as building the final state directly.
    let mut expected: Vec<_> = [1, 3, 4, 6, 8, 9].into_iter().map(entry).collect();
    expected.push(revoke_2);
    assert_eq!(snap, RegistrySnapshot::from_entries(15, expected).unwrap());
    // Idempotent upsert of an identical entry, and an empty delta.
    snap.apply(&RegistryDelta::new(15, 16, vec![entry(1)]).unwrap())
        .unwrap();
    snap.apply(&RegistryDelta::new(16, 16, vec![]).unwrap())
        .unwrap();
    assert_eq!(snap.version(), 16);
    assert_eq!(snap.len(), 7);
}

#[test]
fn apply_merges_large_deltas_in_order() {
    let mut snap = snapshot(5000, (0..2000).filter(|n| n % 2 == 0));
    let delta = RegistryDelta::new(
        5000,
        6000,
        (0..2000).filter(|n| n % 2 == 1).map(entry).collect(),
    )
    .unwrap();
    snap.apply(&delta).unwrap();
    assert_eq!(snap, snapshot(6000, 0..2000));
}

#[test]
fn refused_deltas_change_nothing() {
    let original = snapshot(10, [1, 2, 5]);
    let mut revoked_5 = entry(5);
    revoked_5.revoked = true; // entry(5) is already revoked: un-revoke below
    let mut unrevoke = entry(5);
    unrevoke.revoked = false;
    let mut rebind_key = entry(1);
    rebind_key.spki_hash = SpkiHash::from_bytes([9; 32]);
    let mut rebind_slot = entry(1);
    rebind_slot.slot = 99;
    let mut rebind_expiry = entry(2);
    rebind_expiry.token_expiry += 1;
    let cases = [
        (
            RegistryDelta::new(9, 12, vec![entry(3)]).unwrap(),
            RegistryError::VersionMismatch {
                snapshot: 10,
                delta_from: 9,
            },
        ),
        (
            RegistryDelta::new(11, 12, vec![entry(3)]).unwrap(),
            RegistryError::VersionMismatch {
                snapshot: 10,
                delta_from: 11,
            },
        ),
        (
            RegistryDelta::new(10, 12, vec![entry(3), unrevoke]).unwrap(),
            RegistryError::Unrevoke(entry(5).workload_id),
        ),
        (
            RegistryDelta::new(10, 12, vec![entry(3), rebind_key]).unwrap(),
            RegistryError::ConflictingEntry(entry(1).workload_id),
        ),
        (
            RegistryDelta::new(10, 12, vec![rebind_slot]).unwrap(),
            RegistryError::ConflictingEntry(entry(1).workload_id),
        ),
        (
            RegistryDelta::new(10, 12, vec![rebind_expiry]).unwrap(),
            RegistryError::ConflictingEntry(entry(2).workload_id),
        ),
    ];
    assert_eq!(revoked_5, entry(5));
    for (delta, want) in cases {
        let mut snap = original.clone();
        assert_eq!(snap.apply(&delta), Err(want));
        assert_eq!(snap, original);
    }
}

#[test]
fn hundred_thousand_entries_fit_in_a_few_megabytes() {
    let snap = RegistrySnapshot::from_entries(
        100_000,
        (0..100_000u32)
            .map(|n| RegistryEntry {
                workload_id: WorkloadId::of_token(&n.to_le_bytes()),
                slot: n,
                spki_hash: SpkiHash::from_bytes([1; 32]),
                token_expiry: 1,
                revoked: false,
            })
            .collect(),
    )
    .unwrap();
    let bytes = snap.encode();
    assert_eq!(bytes.len(), SNAPSHOT_HEADER_LEN + 100_000 * ENTRY_LEN); // 7.7 MB
    assert_eq!(core::mem::size_of::<RegistryEntry>(), 80); // 8.0 MB in memory
    assert_eq!(RegistrySnapshot::decode(&bytes).unwrap(), snap);
}
