#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;
use crate::checkpoint::CheckpointSigner;
use alloc::vec;

const BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn seed(b: u8) -> [u8; 32] {
    [b; 32]
}

fn log() -> CheckpointSigner {
    CheckpointSigner::new("example.org/log", &seed(1)).unwrap()
}

fn witness(n: u8) -> CosignatureSigner {
    CosignatureSigner::new(&format!("witness.example/w{n}"), &seed(100 + n)).unwrap()
}

/// A log-signed note of size 5 and its checkpoint.
fn note() -> (String, Checkpoint) {
    let log = log();
    let note = log.sign(5, &[7; 32]);
    let cp = log.verifier().verify(note.as_bytes()).unwrap();
    (note, cp)
}

fn cosigned(signers: &[(&CosignatureSigner, u64)]) -> String {
    let (note, cp) = note();
    let lines: Vec<String> = signers
        .iter()
        .map(|(s, t)| s.cosign(&cp, *t).unwrap())
        .collect();
    append_cosignatures(&note, &lines).unwrap()
}

/// An independent vector, computed with Python's `cryptography` (Ed25519 is
/// deterministic) from the C2SP tlog-cosignature text: seed 00 01 .. 1f,
/// name `witness.example/w1`, the spec's example checkpoint and time.
///
/// ```python
/// k = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
/// kid = sha256(name + b"\n" + b"\x04" + pk).digest()[:4]
/// sig = k.sign(b"cosignature/v1\ntime 1679315147\n" + body)
/// line = "— " + name + " " + b64(kid + t.to_bytes(8, "big") + sig) + "\n"
/// ```
#[test]
fn independent_vector() {
    let secret: [u8; 32] = core::array::from_fn(|i| i as u8);
    let s = CosignatureSigner::new("witness.example/w1", &secret).unwrap();
    assert_eq!(
        s.verifier().to_vkey(),
        "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    );
    let cp = Checkpoint::parse_body(BODY).unwrap();
    let line = s.cosign(&cp, 1_679_315_147).unwrap();
    let want = "\u{2014} witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n";
    assert_eq!(line, want);
    let v = WitnessVerifier::parse(&s.verifier().to_vkey()).unwrap();
    assert_eq!(v.verify_line(BODY, want).unwrap(), Some(1_679_315_147));
}

/// The cosignature line of the C2SP tlog-cosignature example (its key is
/// not published): the structure is key ID (4) || timestamp (8) ||
/// signature (64), and the timestamp is the example's `time 1679315147`.
#[test]
fn spec_example_structure() {
    let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let sig = NoteSignature::parse_line(line).unwrap();
    assert_eq!(sig.name, "witness.example.com/w1");
    assert_eq!(sig.key_hash, [0x8d, 0x66, 0xcf, 0x3f]);
    assert_eq!(sig.signature.len(), 72);
    let ts = u64::from_be_bytes(sig.signature[..8].try_into().unwrap());
    assert_eq!(ts, 1_679_315_147);
    // A verifier that happens to share the name (not the key) ignores it.
    let v = CosignatureSigner::new("witness.example.com/w1", &seed(9))
        .unwrap()
        .verifier();
    assert_eq!(v.verify_signature(BODY, &sig), Ok(None));
    assert_eq!(
        signed_message(1_679_315_147, BODY),
        "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
}

#[test]
fn key_id_and_vkey_format() {
    let s = witness(1);
    let v = s.verifier();
    let pk = v.public_key();
    let mut h = Sha256::new();
    h.update(b"witness.example/w1\n\x04");
    h.update(pk);
    assert_eq!(v.key_id(), h.finalize()[..4]);
    // Not the log key hash (algorithm 0x01) of the same key.
    assert_ne!(v.key_id(), crate::checkpoint::key_hash(v.name(), &pk));
    let vkey = v.to_vkey();
    assert_eq!(WitnessVerifier::parse(&vkey).unwrap(), v);
    assert_eq!(
        WitnessVerifier::from_public_key("witness.example/w1", &pk).unwrap(),
        v
    );
    // A log (0x01) key is not a witness key, and vice versa.
    let log_vkey = log().verifier().to_vkey();
    assert!(WitnessVerifier::parse(&log_vkey).is_err());
    assert!(CheckpointVerifier::parse(&vkey).is_err());
    // Keys whose base64 contains '+' parse.
    let mut seen_plus = false;
    for b in 0..64u8 {
        let vk = CosignatureSigner::new("w", &seed(b))
            .unwrap()
            .verifier()
            .to_vkey();
        seen_plus |= vk.matches('+').count() > 2;
        assert_eq!(WitnessVerifier::parse(&vk).unwrap().to_vkey(), vk);
    }
    assert!(seen_plus);
    for bad in [
        "",
        "w",
        "w+00000000",
        "w+00000000+BA==",
        "a b+00000000+BAAA",
        &vkey.replacen('+', "+0", 1),
        &vkey.replacen("witness.example/w1", "witness.example/w2", 1),
    ] {
        assert!(WitnessVerifier::parse(bad).is_err(), "{bad:?}");
    }
    assert!(CosignatureSigner::new("has space", &seed(1)).is_err());
    assert!(CosignatureSigner::new("a+b", &seed(1)).is_err());
}

#[test]
fn round_trip() {
    let w = witness(1);
    let (note, cp) = note();
    let line = w.cosign(&cp, 1_700_000_000).unwrap();
    assert!(line.starts_with("\u{2014} witness.example/w1 "));
    assert!(line.ends_with('\n'));
    let merged = append_cosignatures(&note, &[&line]).unwrap();
    assert!(merged.starts_with(&note));
    // The log's signature still verifies; the witness's too.
    assert_eq!(log().verifier().verify(merged.as_bytes()).unwrap(), cp);
    assert_eq!(
        w.verifier().verify_note(merged.as_bytes()).unwrap(),
        Some(1_700_000_000)
    );
    assert_eq!(w.verifier().verify_note(note.as_bytes()).unwrap(), None);
    // Extension lines are signed too.
    let log = log();
    let ext = log.sign_with_extensions(5, &[7; 32], vec!["ext 1".into()]);
    let cp_ext = log.verifier().verify(ext.as_bytes()).unwrap();
    let line_ext = w.cosign(&cp_ext, 1).unwrap();
    let merged = append_cosignatures(&ext, &[&line_ext]).unwrap();
    assert_eq!(
        w.verifier().verify_note(merged.as_bytes()).unwrap(),
        Some(1)
    );
    // ... so a cosignature of the same tree without the line does not fit.
    let wrong = append_cosignatures(&ext, &[&line]).unwrap();
    assert!(matches!(
        w.verifier().verify_note(wrong.as_bytes()),
        Err(CosignatureError::BadCosignature(_))
    ));
    // Largest timestamp accepted, one more refused.
    assert!(w.cosign(&cp, MAX_TIMESTAMP).is_ok());
    assert_eq!(
        w.cosign(&cp, MAX_TIMESTAMP + 1),
        Err(CosignatureError::TimestampOutOfRange(MAX_TIMESTAMP + 1))
    );
}

/// Replaces the base64 of the last signature line by `f(raw)`.
fn edit_last_signature(note: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let body = note.strip_suffix('\n').unwrap();
    let (head, last) = body.rsplit_once('\n').unwrap();
    let (prefix, b64) = last.rsplit_once(' ').unwrap();
    let mut raw = Base64::decode_vec(b64).unwrap();
    f(&mut raw);
    format!("{head}\n{prefix} {}\n", Base64::encode_string(&raw))
}

#[test]
fn tampering_is_detected() {
    let w = witness(1);
    let v = w.verifier();
    let good = cosigned(&[(&w, 1_700_000_000)]);
    assert!(v.verify_note(good.as_bytes()).is_ok());
    let bad = |n: &str| {
        assert_eq!(
            v.verify_note(n.as_bytes()),
            Err(CosignatureError::BadCosignature(
                "witness.example/w1".into()
            )),
            "{n}"
        );
    };
    // The body (a root hash byte): the log signature breaks too, but the
    // cosignature alone is already refused.
    bad(&good.replacen("BwcH", "BwcI", 1));
    // The timestamp.
    bad(&edit_last_signature(&good, |r| r[11] ^= 1));
    // The signature.
    bad(&edit_last_signature(&good, |r| r[40] ^= 1));
    // Truncated, extended.
    bad(&edit_last_signature(&good, |r| {
        r.pop();
    }));
    bad(&edit_last_signature(&good, |r| r.push(0)));
    // A timestamp above 2^63 - 1.
    bad(&edit_last_signature(&good, |r| r[4] |= 0x80));
    // A line of another key (wrong key ID) is someone else's: ignored.
    let other = edit_last_signature(&good, |r| r[0] ^= 1);
    assert_eq!(v.verify_note(other.as_bytes()), Ok(None));
    // Another witness's key under this name: another key ID, ignored.
    let impostor = CosignatureSigner::new("witness.example/w1", &seed(55)).unwrap();
    let forged = cosigned(&[(&impostor, 1_700_000_000)]);
    assert_eq!(v.verify_note(forged.as_bytes()), Ok(None));
    // ... and if it reused this key ID, it fails to verify.
    let forged = edit_last_signature(&forged, |r| r[..4].copy_from_slice(&v.key_id()));
    bad(&forged);
}

#[test]
fn quorum_counts_distinct_known_witnesses() {
    let (w1, w2, w3) = (witness(1), witness(2), witness(3));
    let stranger = witness(9);
    let policy = WitnessPolicy::new(vec![w1.verifier(), w2.verifier(), w3.verifier()], 2).unwrap();
    let lv = log().verifier();

    // Two of three: accepted.
    let n = cosigned(&[(&w1, 100), (&w3, 300)]);
    let (cp, got) = policy.verify(&lv, n.as_bytes()).unwrap();
    assert_eq!(cp.size, 5);
    let names: Vec<&str> = got.cosigners.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["witness.example/w1", "witness.example/w3"]);
    assert_eq!(got.cosigners[1].index, 2);
    assert_eq!(got.timestamp, 100);

    // One witness twice (two timestamps) counts once, with its newest
    // timestamp; an unknown witness does not count.
    let n = cosigned(&[(&w1, 100), (&w1, 500), (&stranger, 900)]);
    assert_eq!(
        policy.check(n.as_bytes()),
        Err(CosignatureError::BelowQuorum {
            found: 1,
            quorum: 2
        })
    );
    let n = cosigned(&[(&w1, 100), (&w1, 500), (&w2, 200)]);
    let got = policy.check(n.as_bytes()).unwrap();
    assert_eq!(got.cosigners.len(), 2);
    assert_eq!(got.cosigners[0].timestamp, 500);
    assert_eq!(got.timestamp, 200);

    // No cosignature at all.
    let (plain, _) = note();
    assert_eq!(
        policy.check(plain.as_bytes()),
        Err(CosignatureError::BelowQuorum {
            found: 0,
            quorum: 2
        })
    );

    // A bad line claiming a known witness spoils the note, even with a quorum.
    let n = cosigned(&[(&w1, 100), (&w2, 200), (&w3, 300)]);
    let n = edit_last_signature(&n, |r| r[50] ^= 1);
    assert_eq!(
        policy.check(n.as_bytes()),
        Err(CosignatureError::BadCosignature(
            "witness.example/w3".into()
        ))
    );

    // The log's own signature is required by verify().
    let other_log = CheckpointSigner::new("example.org/log", &seed(2)).unwrap();
    let n = cosigned(&[(&w1, 100), (&w2, 200)]);
    assert!(matches!(
        policy.verify(&other_log.verifier(), n.as_bytes()),
        Err(CosignatureError::Note(NoteError::NotSigned(_)))
    ));
}

/// The witnessed time is the quorum-th newest timestamp: a minority cannot
/// make a stale checkpoint look fresh.
#[test]
fn timestamp_rule() {
    let ws: Vec<CosignatureSigner> = (1..=5).map(witness).collect();
    let verifiers: Vec<WitnessVerifier> = ws.iter().map(|w| w.verifier()).collect();
    let times = [1_000, 5_000, 2_000, 9_999_999, 3_000];
    let all: Vec<(&CosignatureSigner, u64)> = ws.iter().zip(times).collect();
    let n = cosigned(&all);
    for (quorum, want) in [
        (1, 9_999_999),
        (2, 5_000),
        (3, 3_000),
        (4, 2_000),
        (5, 1_000),
    ] {
        let policy = WitnessPolicy::new(verifiers.clone(), quorum).unwrap();
        let got = policy.check(n.as_bytes()).unwrap();
        assert_eq!(got.cosigners.len(), 5);
        assert_eq!(got.timestamp, want, "quorum {quorum}");
    }
    // Quorum 3: one witness with a far-future clock and one fresh witness do
    // not make a checkpoint the others cosigned long ago fresh.
    let n = cosigned(&[
        (&ws[0], 1_000),
        (&ws[1], 1_000),
        (&ws[2], 10_000),
        (&ws[3], u64::MAX >> 1),
    ]);
    let policy = WitnessPolicy::new(verifiers, 3).unwrap();
    let got = policy.check(n.as_bytes()).unwrap();
    assert_eq!(got.timestamp, 1_000);
    assert!(!got.is_fresh(10_000, 300));
    assert!(got.is_fresh(1_200, 300));
    assert!(got.is_fresh(500, 300));
}

#[test]
fn policy_validation() {
    let (w1, w2) = (witness(1), witness(2));
    assert!(WitnessPolicy::new(vec![w1.verifier()], 0).is_err());
    assert!(WitnessPolicy::new(vec![w1.verifier()], 2).is_err());
    assert!(WitnessPolicy::new(Vec::new(), 1).is_err());
    assert!(WitnessPolicy::new(vec![w1.verifier(), w1.verifier()], 1).is_err());
    // The same key under two names would count twice.
    let same_key = CosignatureSigner::new("alias", &seed(101)).unwrap();
    assert!(WitnessPolicy::new(vec![w1.verifier(), same_key.verifier()], 1).is_err());
    // The same name with two keys is ambiguous.
    let same_name = CosignatureSigner::new("witness.example/w1", &seed(7)).unwrap();
    assert!(WitnessPolicy::new(vec![w1.verifier(), same_name.verifier()], 1).is_err());
    let ok = WitnessPolicy::new(vec![w1.verifier(), w2.verifier()], 2).unwrap();
    // A policy built by hand is validated when used.
    let bad = WitnessPolicy {
        quorum: 0,
        ..ok.clone()
    };
    let n = cosigned(&[(&w1, 1)]);
    assert!(matches!(
        bad.check(n.as_bytes()),
        Err(CosignatureError::InvalidPolicy(_))
    ));
}

#[test]
fn append_cosignatures_limits() {
    let (note, cp) = note();
    let w = witness(1);
    let line = w.cosign(&cp, 1).unwrap();
    // A line already present is not repeated; lines without the newline
    // are accepted.
    let once = append_cosignatures(&note, &[line.as_str()]).unwrap();
    let twice = append_cosignatures(&once, &[line.trim_end()]).unwrap();
    assert_eq!(once, twice);
    for bad in [
        "",
        "- w AAAAAAAA",
        "\u{2014} w",
        "\u{2014} w !!!!",
        "\u{2014} a b AAAAAAAA",
        "\u{2014} w AAAAAAAA\r",
        "\u{2014} w AAAAAAAA\n\u{2014} v AAAAAAAA",
    ] {
        assert!(append_cosignatures(&note, &[bad]).is_err(), "{bad:?}");
    }
    assert!(append_cosignatures("not a note", &[line.as_str()]).is_err());
    let many: Vec<String> = (0..MAX_SIGNATURES as u64)
        .map(|t| w.cosign(&cp, t + 10).unwrap())
        .collect();
    assert_eq!(
        append_cosignatures(&note, &many),
        Err(CosignatureError::TooManySignatures)
    );
    let fits = append_cosignatures(&note, &many[..MAX_SIGNATURES - 1]).unwrap();
    assert_eq!(
        Note::parse(fits.as_bytes()).unwrap().signatures.len(),
        MAX_SIGNATURES
    );
}
