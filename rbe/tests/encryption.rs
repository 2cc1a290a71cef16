//! Encryption and decryption across blocks and across later registrations.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{register, rng};
use mazu_rbe::{
    Ciphertext, DecryptError, EncryptError, OpeningHistory, Registration, RegistryState, SecretKey,
    decrypt, encrypt, encrypt_to_commitment, keygen,
};

const CAPACITY: u32 = 36; // n = 6, 6 blocks

#[test]
fn several_users_several_blocks_after_later_registrations() {
    let crs = common::crs(CAPACITY);
    let mut state = RegistryState::new(crs.clone());
    let mut r = rng(100);
    let mut log: Vec<Registration> = Vec::new();
    let mut keys: BTreeMap<u32, SecretKey> = BTreeMap::new();
    let mut histories: BTreeMap<u32, OpeningHistory> = BTreeMap::new();

    fn add(
        state: &mut RegistryState,
        slot: u32,
        r: &mut rand_chacha::ChaCha20Rng,
        log: &mut Vec<Registration>,
        keys: &mut BTreeMap<u32, SecretKey>,
        histories: &mut BTreeMap<u32, OpeningHistory>,
    ) {
        let (sk, reg) = register(state, slot, r);
        // Every existing user follows the public log.
        for h in histories.values_mut() {
            match h.update(state.crs(), &reg) {
                Ok(()) | Err(mazu_rbe::OpeningError::OtherBlock(_)) => {}
                Err(e) => panic!("update: {e}"),
            }
        }
        histories.insert(slot, OpeningHistory::new(state.opening(slot).unwrap()));
        keys.insert(slot, sk);
        log.push(reg);
    }

    // Round 1: users in blocks 0, 1 and 3.
    for slot in [0, 3, 7, 10, 20] {
        add(
            &mut state,
            slot,
            &mut r,
            &mut log,
            &mut keys,
            &mut histories,
        );
    }
    let pp1 = state.public_params();
    let mut old_cts = Vec::new();
    for slot in [0u32, 3, 7, 10, 20] {
        let msg = format!("round one for {slot}");
        let ct = encrypt(&crs, &pp1, slot, msg.as_bytes(), b"ctx", &mut r).unwrap();
        let got = decrypt(&crs, &keys[&slot], histories[&slot].latest(), &ct, b"ctx").unwrap();
        assert_eq!(got, msg.as_bytes());
        old_cts.push((slot, msg, ct));
    }

    // Round 2: later registrations in the same blocks (and a new block).
    for slot in [1, 5, 6, 8, 11, 18, 30] {
        add(
            &mut state,
            slot,
            &mut r,
            &mut log,
            &mut keys,
            &mut histories,
        );
    }
    let pp2 = state.public_params();

    for (slot, msg, ct) in &old_cts {
        let h = &histories[slot];
        // The current opening is for a newer commitment: typed error, not garbage.
        if h.latest().commitment != *ct.commitment() {
            assert_eq!(
                decrypt(&crs, &keys[slot], h.latest(), ct, b"ctx"),
                Err(DecryptError::StaleOpening)
            );
        }
        // The history still holds the opening the ciphertext was made under.
        let old = h
            .opening_for(ct.commitment())
            .expect("opening for old commitment");
        assert_eq!(
            decrypt(&crs, &keys[slot], old, ct, b"ctx").unwrap(),
            msg.as_bytes()
        );
        // And the history derived from the public log agrees (it also
        // knows the whole block, which the followed one, started from a
        // served opening, does not: compare the openings).
        let derived = OpeningHistory::from_registrations(&crs, *slot, &log).unwrap();
        assert_eq!(derived.openings(), h.openings());
    }

    // New ciphertexts to everyone, with the user-maintained openings, which
    // match what the curator serves.
    for (slot, sk) in &keys {
        let h = &histories[slot];
        assert_eq!(*h.latest(), state.opening(*slot).unwrap());
        let ct = encrypt(&crs, &pp2, *slot, b"round two", b"", &mut r).unwrap();
        assert_eq!(
            decrypt(&crs, sk, h.latest(), &ct, b"").unwrap(),
            b"round two"
        );
        // Through the binary and JSON encodings too.
        let ct = Ciphertext::from_bytes(&ct.to_bytes()).unwrap();
        let ct: Ciphertext = serde_json::from_str(&serde_json::to_string(&ct).unwrap()).unwrap();
        assert_eq!(
            decrypt(&crs, sk, h.latest(), &ct, b"").unwrap(),
            b"round two"
        );
    }
}

#[test]
fn wrong_key_opening_aad_or_tampering_fail_cleanly() {
    let crs = common::crs(CAPACITY);
    let mut state = RegistryState::new(crs.clone());
    let mut r = rng(101);
    let (sk2, _) = register(&mut state, 2, &mut r);
    let (sk4, _) = register(&mut state, 4, &mut r);
    let pp = state.public_params();
    let op2 = state.opening(2).unwrap();
    let op4 = state.opening(4).unwrap();
    let ct = encrypt(&crs, &pp, 2, b"secret", b"aad", &mut r).unwrap();
    assert_eq!(decrypt(&crs, &sk2, &op2, &ct, b"aad").unwrap(), b"secret");

    // Another user's key: slot mismatch, typed.
    assert_eq!(
        decrypt(&crs, &sk4, &op2, &ct, b"aad"),
        Err(DecryptError::SlotMismatch {
            ciphertext: 2,
            key: 4
        })
    );
    // A key for the right slot that is not the registered one.
    let (impostor, _) = keygen(&crs, 2, [9; 32], &mut r).unwrap();
    assert_eq!(
        decrypt(&crs, &impostor, &op2, &ct, b"aad"),
        Err(DecryptError::Authentication)
    );
    // The right key with another position's opening value.
    let wrong_opening = mazu_rbe::Opening {
        value: op4.value,
        ..op2
    };
    assert_eq!(
        decrypt(&crs, &sk2, &wrong_opening, &ct, b"aad"),
        Err(DecryptError::Authentication)
    );
    // Opening for another slot altogether.
    assert!(matches!(
        decrypt(&crs, &sk2, &op4, &ct, b"aad"),
        Err(DecryptError::SlotMismatch { .. })
    ));
    // Wrong associated data.
    assert_eq!(
        decrypt(&crs, &sk2, &op2, &ct, b"other"),
        Err(DecryptError::Authentication)
    );
    // Tampering goes through the encoding (the fields are private so that
    // ct1 is always a checked Gt element). Offsets: slot 5..9,
    // commitment 9..57, ct1 57..633, ct2 633..729, length 729..733, body.
    let tamper = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = ct.to_bytes();
        f(&mut b);
        Ciphertext::from_bytes(&b).unwrap()
    };
    // Tampered body.
    let t = tamper(&|b| b[733] ^= 1);
    assert_eq!(
        decrypt(&crs, &sk2, &op2, &t, b"aad"),
        Err(DecryptError::Authentication)
    );
    // Tampered ct1 / ct2 (still valid group elements).
    let squared = (*ct.ct1() + *ct.ct1()).to_bytes();
    let t = tamper(&|b| b[57..633].copy_from_slice(&squared));
    assert_eq!(
        decrypt(&crs, &sk2, &op2, &t, b"aad"),
        Err(DecryptError::Authentication)
    );
    let negated = (-*ct.ct2()).to_compressed();
    let t = tamper(&|b| b[633..729].copy_from_slice(&negated));
    assert_eq!(
        decrypt(&crs, &sk2, &op2, &t, b"aad"),
        Err(DecryptError::Authentication)
    );
    // A ciphertext under another commitment is refused before any pairing.
    let other = mazu_rbe::G1Affine::generator().to_compressed();
    let t = tamper(&|b| b[9..57].copy_from_slice(&other));
    assert_eq!(
        decrypt(&crs, &sk2, &op2, &t, b"aad"),
        Err(DecryptError::StaleOpening)
    );
    // Retargeted to another slot.
    let t = tamper(&|b| b[5..9].copy_from_slice(&3u32.to_be_bytes()));
    assert!(matches!(
        decrypt(&crs, &sk2, &op2, &t, b"aad"),
        Err(DecryptError::SlotMismatch { .. })
    ));
}

#[test]
fn encrypt_rejects_bad_inputs() {
    let crs = common::crs(CAPACITY);
    let mut state = RegistryState::new(crs.clone());
    let mut r = rng(102);
    register(&mut state, 2, &mut r);
    let pp = state.public_params();
    assert_eq!(
        encrypt(&crs, &pp, 36, b"x", b"", &mut r).err(),
        Some(EncryptError::SlotOutOfRange {
            slot: 36,
            capacity: 36
        })
    );
    // Block 3 is empty: nobody could decrypt.
    assert_eq!(
        encrypt(&crs, &pp, 20, b"x", b"", &mut r).err(),
        Some(EncryptError::EmptyBlock(20))
    );
    assert_eq!(
        encrypt_to_commitment(&crs, 20, &mazu_rbe::G1Affine::identity(), b"x", b"", &mut r).err(),
        Some(EncryptError::EmptyBlock(20))
    );
    // Parameters from another CRS.
    let other = RegistryState::new(common::crs(35)).public_params();
    assert_eq!(
        encrypt(&crs, &other, 2, b"x", b"", &mut r).err(),
        Some(EncryptError::ParamsMismatch)
    );
}

#[test]
fn ciphertext_to_a_free_slot_of_a_used_block_is_undecryptable() {
    let crs = common::crs(CAPACITY);
    let mut state = RegistryState::new(crs.clone());
    let mut r = rng(103);
    register(&mut state, 0, &mut r);
    let pp = state.public_params();
    let ct = encrypt(&crs, &pp, 1, b"nobody", b"", &mut r).unwrap();
    // Whoever registers at slot 1 later cannot open the earlier ciphertext:
    // its key was not in the commitment used.
    let (sk1, _) = register(&mut state, 1, &mut r);
    let op = state.opening(1).unwrap();
    assert_eq!(
        decrypt(&crs, &sk1, &op, &ct, b""),
        Err(DecryptError::StaleOpening)
    );
    let forced = mazu_rbe::Opening {
        commitment: *ct.commitment(),
        ..op
    };
    assert_eq!(
        decrypt(&crs, &sk1, &forced, &ct, b""),
        Err(DecryptError::Authentication)
    );
}
