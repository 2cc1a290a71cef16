//! Round trips (binary and JSON) for every public type, strictness, and
//! property tests that decoders never panic on arbitrary or mutated input.
// Helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use common::{non_subgroup_g1, non_subgroup_g2, register, rng};
use mazu_rbe::{
    Canonical, Ciphertext, Crs, DecodeError, Group, Gt, MembershipProof, NonMembershipProof,
    Opening, OpeningHistory, PublicParams, Registration, RegistryState, SecretKey, encrypt,
};
use proptest::prelude::*;

/// One valid encoding of each type, built once.
struct Samples {
    crs: Vec<u8>,
    pp: Vec<u8>,
    registration: Vec<u8>,
    opening: Vec<u8>,
    history: Vec<u8>,
    membership: Vec<u8>,
    non_membership: Vec<u8>,
    ciphertext: Vec<u8>,
    secret_key: Vec<u8>,
}

fn samples() -> &'static Samples {
    static S: OnceLock<Samples> = OnceLock::new();
    S.get_or_init(|| {
        let crs = common::crs(9); // n = 3: small, so decoding stays cheap
        let mut state = RegistryState::new(crs.clone());
        let mut r = rng(400);
        let (sk, reg) = register(&mut state, 1, &mut r);
        let (_, reg2) = register(&mut state, 2, &mut r);
        let mut history = OpeningHistory::from_registrations(&crs, 1, [&reg, &reg2]).unwrap();
        history
            .update(&crs, &register(&mut state, 0, &mut r).1)
            .unwrap();
        let pp = state.public_params();
        let ct = encrypt(&crs, &pp, 1, b"sample message", b"", &mut r).unwrap();
        Samples {
            crs: crs.to_bytes(),
            pp: pp.to_bytes(),
            registration: reg.to_bytes(),
            opening: state.opening(1).unwrap().to_bytes(),
            history: history.to_bytes(),
            membership: state.membership_proof(1).unwrap().to_bytes(),
            non_membership: state.non_membership_proof(5).unwrap().to_bytes(),
            ciphertext: ct.to_bytes(),
            secret_key: sk.to_bytes().to_vec(),
        }
    })
}

/// Decode with every decoder. Whatever decodes must re-encode to exactly the
/// input (one encoding per value). Returns how many decoders accepted.
fn decode_all(bytes: &[u8]) -> usize {
    fn check<T: Canonical>(bytes: &[u8]) -> usize {
        match T::from_bytes(bytes) {
            Ok(v) => {
                assert_eq!(v.to_bytes(), bytes, "non-canonical encoding accepted");
                1
            }
            Err(_) => 0,
        }
    }
    let key = SecretKey::from_bytes(bytes).map_or(0, |k| {
        assert_eq!(&k.to_bytes()[..], bytes);
        1
    });
    check::<Crs>(bytes)
        + check::<PublicParams>(bytes)
        + check::<Registration>(bytes)
        + check::<Opening>(bytes)
        + check::<OpeningHistory>(bytes)
        + check::<MembershipProof>(bytes)
        + check::<NonMembershipProof>(bytes)
        + check::<Ciphertext>(bytes)
        + key
}

/// JSON: decode with every type's deserializer; never panics.
fn decode_all_json(s: &str) {
    let _ = serde_json::from_str::<Crs>(s);
    let _ = serde_json::from_str::<PublicParams>(s);
    let _ = serde_json::from_str::<Registration>(s);
    let _ = serde_json::from_str::<Opening>(s);
    let _ = serde_json::from_str::<MembershipProof>(s);
    let _ = serde_json::from_str::<NonMembershipProof>(s);
    let _ = serde_json::from_str::<Ciphertext>(s);
}

fn round_trip<T>(bytes: &[u8])
where
    T: Canonical + serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let v = T::from_bytes(bytes).unwrap();
    assert_eq!(v.to_bytes(), bytes);
    let json = serde_json::to_string(&v).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(&bytes[..4], &T::MAGIC);
    assert_eq!(bytes[4], T::VERSION);
}

#[test]
fn every_type_round_trips_binary_and_json() {
    let s = samples();
    round_trip::<Crs>(&s.crs);
    round_trip::<PublicParams>(&s.pp);
    round_trip::<Registration>(&s.registration);
    round_trip::<Opening>(&s.opening);
    round_trip::<MembershipProof>(&s.membership);
    round_trip::<NonMembershipProof>(&s.non_membership);
    round_trip::<Ciphertext>(&s.ciphertext);
    // Binary-only types (held by the agent, never sent over HTTP).
    let h = OpeningHistory::from_bytes(&s.history).unwrap();
    assert_eq!(h.to_bytes(), s.history);
    assert_eq!(h.openings().len(), 3);
    let k = SecretKey::from_bytes(&s.secret_key).unwrap();
    assert_eq!(&k.to_bytes()[..], &s.secret_key[..]);
}

#[test]
fn each_decoder_accepts_only_its_own_type() {
    let s = samples();
    for bytes in [
        &s.crs,
        &s.pp,
        &s.registration,
        &s.opening,
        &s.history,
        &s.membership,
        &s.non_membership,
        &s.ciphertext,
        &s.secret_key,
    ] {
        assert_eq!(decode_all(bytes), 1);
    }
}

#[test]
fn json_shape_is_documented_shape() {
    let s = samples();
    let reg = Registration::from_bytes(&s.registration).unwrap();
    let v: serde_json::Value = serde_json::to_value(&reg).unwrap();
    assert_eq!(v["slot"], 1);
    assert_eq!(v["helpers"].as_array().unwrap().len(), 2);
    // Standard padded base64 of 48 bytes is 64 characters.
    assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(v["proof"]["response"].as_str().unwrap().len(), 44);

    // Unknown fields, bad base64, wrong lengths are rejected.
    let mut extra = v.clone();
    extra["extra"] = serde_json::Value::Bool(true);
    assert!(serde_json::from_value::<Registration>(extra).is_err());
    let mut bad = v.clone();
    bad["public_key"] = "not base64!".into();
    assert!(serde_json::from_value::<Registration>(bad).is_err());
    let mut short = v.clone();
    short["id"] = "AAAA".into();
    assert!(serde_json::from_value::<Registration>(short).is_err());
    let mut url_safe = v.clone();
    let std = v["public_key"].as_str().unwrap().to_string();
    url_safe["public_key"] = std.replace('+', "-").replace('/', "_").into();
    if url_safe["public_key"] != v["public_key"] {
        assert!(serde_json::from_value::<Registration>(url_safe).is_err());
    }
}

#[test]
fn format_versions() {
    let s = samples();
    assert_eq!(mazu_rbe::FORMAT_VERSION, 1);
    assert_eq!(<MembershipProof as Canonical>::VERSION, 2);
    for bytes in [
        &s.crs,
        &s.pp,
        &s.registration,
        &s.opening,
        &s.non_membership,
    ] {
        assert_eq!(bytes[4], 1);
    }
    assert_eq!(s.membership[4], 2);
}

/// Version 2 of the membership proof: the version 1 fields, then the id and
/// the proof of knowledge. Version 1 proofs (not binding) and a version 2
/// header on a version 1 body are refused; so is an identity `R`.
#[test]
fn membership_proof_v2_layout_and_strictness() {
    let s = samples();
    let bytes = &s.membership;
    assert_eq!(bytes.len(), 5 + 4 + 3 * 48 + 32 + 48 + 32);
    let proof = MembershipProof::from_bytes(bytes).unwrap();
    assert_eq!(&bytes[153..185], &proof.id);
    assert_eq!(
        &bytes[185..233],
        &proof.proof_of_knowledge.commitment.to_compressed()
    );
    assert_eq!(
        &bytes[233..],
        &proof.proof_of_knowledge.response.to_be_bytes()
    );

    let mut v1 = bytes[..153].to_vec();
    v1[4] = 1;
    assert_eq!(
        MembershipProof::from_bytes(&v1),
        Err(DecodeError::UnsupportedVersion(1))
    );
    let mut v1_full = bytes.clone();
    v1_full[4] = 1;
    assert_eq!(
        MembershipProof::from_bytes(&v1_full),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert!(matches!(
        MembershipProof::from_bytes(&bytes[..153]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut identity_r = bytes.clone();
    identity_r[185..233].copy_from_slice(&mazu_rbe::G1Affine::identity().to_compressed());
    assert_eq!(
        MembershipProof::from_bytes(&identity_r),
        Err(DecodeError::IdentityPoint {
            field: "proof commitment"
        })
    );
    let mut big_s = bytes.clone();
    big_s[233..].fill(0xff);
    assert!(matches!(
        MembershipProof::from_bytes(&big_s),
        Err(DecodeError::NonCanonicalScalar { .. })
    ));

    // JSON: id, public_key, proof_of_knowledge {commitment, response}, opening.
    let v: serde_json::Value = serde_json::to_value(proof).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "opening", "proof_of_knowledge", "public_key"]);
    assert_eq!(v["id"].as_str().unwrap().len(), 44);
    assert_eq!(
        v["proof_of_knowledge"]["commitment"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        v["proof_of_knowledge"]["response"].as_str().unwrap().len(),
        44
    );
    // The version 1 JSON shape (no id, no proof of knowledge) is refused.
    let mut old = v.clone();
    old.as_object_mut().unwrap().remove("id");
    old.as_object_mut().unwrap().remove("proof_of_knowledge");
    assert!(serde_json::from_value::<MembershipProof>(old).is_err());
    let mut extra = v.clone();
    extra["extra"] = serde_json::Value::Bool(true);
    assert!(serde_json::from_value::<MembershipProof>(extra).is_err());
}

#[test]
fn ciphertext_decoder_checks_gt_subgroup_and_points() {
    let s = samples();
    let ct = &s.ciphertext;
    // slot(4) commitment(48) ct1(576) ct2(96) len(4) body.
    let ct1_at = 5 + 4 + 48;
    let ct2_at = ct1_at + 576;

    // A canonical Fp12 element outside Gt.
    let mut b = ct.clone();
    b[ct1_at + 575] ^= 1;
    assert_eq!(
        Ciphertext::from_bytes(&b),
        Err(DecodeError::NotInSubgroup { field: "ct1" })
    );
    // The identity of Gt.
    let mut b = ct.clone();
    b[ct1_at..ct2_at].copy_from_slice(&Gt::IDENTITY.to_bytes());
    assert_eq!(
        Ciphertext::from_bytes(&b),
        Err(DecodeError::IdentityPoint { field: "ct1" })
    );
    // A non-canonical field element.
    let mut b = ct.clone();
    b[ct1_at..ct1_at + 48].fill(0xff);
    assert!(matches!(
        Ciphertext::from_bytes(&b),
        Err(DecodeError::InvalidPoint {
            group: Group::Gt,
            ..
        })
    ));
    // ct2 outside the G2 subgroup.
    let mut b = ct.clone();
    b[ct2_at..ct2_at + 96].copy_from_slice(&non_subgroup_g2());
    assert!(matches!(
        Ciphertext::from_bytes(&b),
        Err(DecodeError::InvalidPoint {
            group: Group::G2,
            ..
        })
    ));
    // Commitment outside the G1 subgroup.
    let mut b = ct.clone();
    b[9..57].copy_from_slice(&non_subgroup_g1());
    assert!(matches!(
        Ciphertext::from_bytes(&b),
        Err(DecodeError::InvalidPoint {
            group: Group::G1,
            ..
        })
    ));
    // Body length larger than the input.
    let mut b = ct.clone();
    let len_at = ct2_at + 96;
    b[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Ciphertext::from_bytes(&b).is_err());
}

#[test]
fn non_subgroup_points_rejected_in_every_g1_position_of_small_types() {
    let s = samples();
    let bad = non_subgroup_g1();
    for (name, bytes, offsets) in [
        ("opening", &s.opening, vec![9, 57]),
        // slot, commitment, value, key, id (32), proof commitment, response.
        ("membership", &s.membership, vec![9, 57, 105, 185]),
        ("non-membership", &s.non_membership, vec![9, 57]),
        ("public params", &s.pp, vec![5 + 32 + 4 + 4 + 8 + 4]),
    ] {
        for at in offsets {
            let mut b = bytes.clone();
            b[at..at + 48].copy_from_slice(&bad);
            assert_eq!(decode_all(&b), 0, "{name} at {at}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_with_valid_header_never_panic(
        which in 0usize..9,
        tail in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let s = samples();
        let sample = [&s.crs, &s.pp, &s.registration, &s.opening, &s.history,
            &s.membership, &s.non_membership, &s.ciphertext, &s.secret_key][which];
        let mut bytes = sample[..5].to_vec();
        bytes.extend_from_slice(&tail);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        which in 0usize..9,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let s = samples();
        let sample = [&s.crs, &s.pp, &s.registration, &s.opening, &s.history,
            &s.membership, &s.non_membership, &s.ciphertext, &s.secret_key][which];
        let mut bytes = sample.clone();
        for (index, value, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = index.index(bytes.len());
            match kind {
                0 => bytes[at] = value,
                1 => bytes[at] ^= 1 << (value % 8),
                2 => bytes.truncate(at),
                _ => bytes.insert(at, value),
            }
        }
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(s in "\\PC{0,300}") {
        decode_all_json(&s);
    }

    #[test]
    fn mutated_json_never_panics(
        which in 0usize..7,
        at in any::<prop::sample::Index>(),
        c in any::<char>(),
    ) {
        let s = samples();
        let json = match which {
            0 => serde_json::to_string(&Crs::from_bytes(&s.crs).unwrap()),
            1 => serde_json::to_string(&PublicParams::from_bytes(&s.pp).unwrap()),
            2 => serde_json::to_string(&Registration::from_bytes(&s.registration).unwrap()),
            3 => serde_json::to_string(&Opening::from_bytes(&s.opening).unwrap()),
            4 => serde_json::to_string(&MembershipProof::from_bytes(&s.membership).unwrap()),
            5 => serde_json::to_string(&NonMembershipProof::from_bytes(&s.non_membership).unwrap()),
            _ => serde_json::to_string(&Ciphertext::from_bytes(&s.ciphertext).unwrap()),
        }.unwrap();
        let mut chars: Vec<char> = json.chars().collect();
        let i = at.index(chars.len());
        chars[i] = c;
        let mutated: String = chars.into_iter().collect();
        decode_all_json(&mutated);
    }
}
