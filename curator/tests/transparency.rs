//! The Merkle tree over the log's leaf records and its signed checkpoints,
//! over real HTTP against the curator process: checkpoints are plain C2SP
//! checkpoints that verify with the served key (and a tampered one does
//! not), inclusion proofs of the records verify (and not for another index),
//! consistency proofs link an older checkpoint to a newer one, and the key
//! survives a restart.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use common::{Curator, Fixture};
use mazu_curator::api::views::{ConsistencyProofJson, InclusionProofJson};
use mazu_log::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use mazu_log::{Checkpoint, CheckpointVerifier, NoteError};

fn hash(h: &str) -> Hash {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn hashes(v: &[String]) -> Vec<Hash> {
    v.iter().map(|h| hash(h)).collect()
}

async fn text(c: &Curator, path: &str) -> String {
    let r = c.get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

/// Log size after the first registration, and after all five.
const S1: u64 = 2;
const S: u64 = 10;

async fn checkpoint(c: &Curator, v: &CheckpointVerifier) -> (String, Checkpoint) {
    let note = text(c, "/v1/checkpoint").await;
    let cp = v.verify(note.as_bytes()).unwrap();
    (note, cp)
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_over_http() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    let vkey = text(&c, "/v1/checkpoint/key").await;
    let v = CheckpointVerifier::parse(&vkey).unwrap();
    assert!(v.name().starts_with("mazu-curator/"));

    // The empty log.
    let (_, cp0) = checkpoint(&c, &v).await;
    assert_eq!((cp0.size, cp0.root), (0, mazu_log::merkle::empty_root()));

    // Each registration is two entries (bind, reveal).
    c.register(&crs, &fx.token("a")).await;
    let (note1, cp1) = checkpoint(&c, &v).await;
    assert_eq!(cp1.size, S1);
    assert_eq!(cp1.extensions.len(), 1, "the state line only");
    assert!(mazu_log::evidence::state_digest(&cp1).unwrap().is_some());
    for sa in ["b", "c", "d", "e"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    let (note5, cp5) = checkpoint(&c, &v).await;
    assert_eq!(cp5.size, S);

    // Conditional GET of an unchanged checkpoint.
    let r = c
        .http
        .get(c.url("/v1/checkpoint"))
        .header("If-None-Match", format!("\"{S}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Inclusion: every entry, against the checkpoint root; the leaf hash is
    // the one /v1/log serves and SHA-256(0x00 || record), where the record
    // is the one the entry gives.
    let log = c.get_json("/v1/log?start=0&limit=100").await;
    for i in 0..S {
        let p: InclusionProofJson = c
            .get(&format!("/v1/proofs/inclusion?index={i}&size={S}"))
            .await
            .json()
            .await
            .unwrap();
        let entry = &log["entries"][i as usize];
        assert_eq!(p.leaf_hash, entry["leaf_hash"].as_str().unwrap());
        let raw =
            <base64ct::Base64 as base64ct::Encoding>::decode_vec(entry["entry"].as_str().unwrap())
                .unwrap();
        let record = mazu_curator::entry::LogEntry::from_bytes(&raw)
            .unwrap()
            .record(&raw)
            .unwrap();
        assert_eq!(hash(&p.leaf_hash), leaf_hash(&record.to_bytes()));
        assert_ne!(hash(&p.leaf_hash), leaf_hash(&raw), "leaves are records");
        let proof = hashes(&p.proof);
        verify_inclusion(&hash(&p.leaf_hash), i, S, &proof, &cp5.root).unwrap();
        // The same proof for another index, or against another root, fails.
        assert!(verify_inclusion(&hash(&p.leaf_hash), (i + 1) % S, S, &proof, &cp5.root).is_err());
        assert!(verify_inclusion(&hash(&p.leaf_hash), i, S, &proof, &cp1.root).is_err());
    }
    // Default size is the current one; an index at or beyond the size is refused.
    let p: InclusionProofJson = c
        .get("/v1/proofs/inclusion?index=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p.size, S);
    for bad in [
        "/v1/proofs/inclusion?index=10&size=10",
        "/v1/proofs/inclusion?index=0&size=11",
        "/v1/proofs/inclusion?size=10",
        "/v1/proofs/inclusion?index=x",
        "/v1/proofs/consistency?from=3&to=2",
        "/v1/proofs/consistency?from=1&to=11",
        "/v1/proofs/consistency?to=2",
    ] {
        let r = c.get(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(common::code(&body), "invalid_parameter", "{bad}");
    }

    // Consistency between the remembered checkpoint of size S1 and size S.
    let p: ConsistencyProofJson = c
        .get(&format!("/v1/proofs/consistency?from={S1}&to={S}"))
        .await
        .json()
        .await
        .unwrap();
    verify_consistency(S1, S, &cp1.root, &cp5.root, &hashes(&p.proof)).unwrap();
    // ... and not against a forged older root.
    let mut forged = cp1.root;
    forged[0] ^= 1;
    assert!(verify_consistency(S1, S, &forged, &cp5.root, &hashes(&p.proof)).is_err());
    for from in 0..=S {
        let p: ConsistencyProofJson = c
            .get(&format!("/v1/proofs/consistency?from={from}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(p.to, S);
        let from_root = if from == 0 {
            cp0.root
        } else {
            let cp = v
                .verify(
                    // Recompute the older root from the served leaves.
                    mazu_log::CheckpointSigner::new("x", &[1; 32])
                        .unwrap()
                        .sign(0, &[0; 32])
                        .as_bytes(),
                )
                .err();
            assert!(cp.is_some(), "another key's checkpoint must not verify");
            let leaves: Vec<Hash> = (0..from)
                .map(|i| hash(log["entries"][i as usize]["leaf_hash"].as_str().unwrap()))
                .collect();
            mazu_log::MerkleTree::from_leaves(leaves)
                .root(from)
                .unwrap()
        };
        verify_consistency(from, S, &from_root, &cp5.root, &hashes(&p.proof)).unwrap();
    }

    // A tampered checkpoint does not verify.
    let tampered = note5.replacen("\n10\n", "\n9\n", 1);
    assert!(matches!(
        v.verify(tampered.as_bytes()),
        Err(NoteError::BadSignature(_))
    ));
    let tampered = note1.replacen(
        &<base64ct::Base64 as base64ct::Encoding>::encode_string(&cp1.root),
        &<base64ct::Base64 as base64ct::Encoding>::encode_string(&cp5.root),
        1,
    );
    assert!(v.verify(tampered.as_bytes()).is_err());

    // The key persists (0600) and a restart serves the same checkpoint.
    let key_path = fx.data_dir().join("checkpoint.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(c.terminate().success());
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    assert_eq!(text(&c, "/v1/checkpoint/key").await, vkey);
    assert_eq!(text(&c, "/v1/checkpoint").await, note5);
    assert!(c.terminate().success());

    // With another key (--checkpoint-key) the old verifier refuses its
    // checkpoints: a swapped key is detected by anyone who pinned the key.
    let other_key = fx.dir.path().join("other.key");
    std::fs::write(&other_key, hex::encode([9u8; 32])).unwrap();
    let mut other_args = args.clone();
    other_args.extend(["--checkpoint-key".into(), other_key.display().to_string()]);
    // The curator itself refuses: its acknowledged checkpoint does not
    // verify under the new key (nothing is changed on disk).
    let o = std::process::Command::new(common::BIN)
        .args(&other_args)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("acknowledged checkpoint"), "{stderr}");
    // Whoever swaps the key deletes that evidence too; the pinned verifier
    // still refuses.
    std::fs::remove_file(
        fx.data_dir()
            .join(mazu_curator::recovery::ACKNOWLEDGED_FILE),
    )
    .unwrap();
    let mut c = Curator::spawn(fx.dir.path(), &other_args);
    c.ready().await;
    let note = text(&c, "/v1/checkpoint").await;
    assert!(matches!(
        v.verify(note.as_bytes()),
        Err(NoteError::NotSigned(_))
    ));
    assert!(c.terminate().success());

    // A --checkpoint-key that does not exist is not generated: refused.
    let mut missing = args.clone();
    missing.extend([
        "--checkpoint-key".into(),
        fx.dir.path().join("nope.key").display().to_string(),
    ]);
    let o = std::process::Command::new(common::BIN)
        .args(&missing)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("nope.key") && stderr.contains("does not exist"),
        "{stderr}"
    );
}
