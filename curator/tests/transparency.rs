//! The Merkle tree over the log and its signed checkpoints, over real HTTP
//! against the curator process: checkpoints verify with the served key (and
//! a tampered one does not), inclusion proofs verify (and not for another
//! index), consistency proofs link an older checkpoint to a newer one, the
//! key survives a restart, and registry answers carry a checkpoint that
//! binds them and a consistency proof from the client's checkpoint.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use common::{Curator, Fixture};
use mazu_curator::api::views::{ConsistencyProofJson, InclusionProofJson};
use mazu_identity::{RegistryDelta, RegistrySnapshot};
use mazu_log::evidence::{
    CHECKPOINT_HEADER, CHECKPOINT_SIZE_HEADER, CONSISTENCY_HEADER, decode_note, decode_proof,
    registry_digest,
};
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

    c.register(&crs, &fx.token("a")).await;
    let (note1, cp1) = checkpoint(&c, &v).await;
    assert_eq!(cp1.size, 1);
    for sa in ["b", "c", "d", "e"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    let (note5, cp5) = checkpoint(&c, &v).await;
    assert_eq!(cp5.size, 5);

    // Conditional GET of an unchanged checkpoint.
    let r = c
        .http
        .get(c.url("/v1/checkpoint"))
        .header("If-None-Match", "\"5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Inclusion: every entry, against the checkpoint root; the leaf hash is
    // the one /v1/log serves and SHA-256(0x00 || entry).
    let log = c.get_json("/v1/log?start=0&limit=10").await;
    for i in 0..5u64 {
        let p: InclusionProofJson = c
            .get(&format!("/v1/proofs/inclusion?index={i}&size=5"))
            .await
            .json()
            .await
            .unwrap();
        let entry = &log["entries"][i as usize];
        assert_eq!(p.leaf_hash, entry["leaf_hash"].as_str().unwrap());
        let raw =
            <base64ct::Base64 as base64ct::Encoding>::decode_vec(entry["entry"].as_str().unwrap())
                .unwrap();
        assert_eq!(hash(&p.leaf_hash), leaf_hash(&raw));
        let proof = hashes(&p.proof);
        verify_inclusion(&hash(&p.leaf_hash), i, 5, &proof, &cp5.root).unwrap();
        // The same proof for another index, or against another root, fails.
        assert!(verify_inclusion(&hash(&p.leaf_hash), (i + 1) % 5, 5, &proof, &cp5.root).is_err());
        assert!(verify_inclusion(&hash(&p.leaf_hash), i, 5, &proof, &cp1.root).is_err());
    }
    // Default size is the current one; an index at or beyond the size is refused.
    let p: InclusionProofJson = c
        .get("/v1/proofs/inclusion?index=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p.size, 5);
    for bad in [
        "/v1/proofs/inclusion?index=5&size=5",
        "/v1/proofs/inclusion?index=0&size=6",
        "/v1/proofs/inclusion?size=5",
        "/v1/proofs/inclusion?index=x",
        "/v1/proofs/consistency?from=3&to=2",
        "/v1/proofs/consistency?from=1&to=6",
        "/v1/proofs/consistency?to=2",
    ] {
        let r = c.get(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(common::code(&body), "invalid_parameter", "{bad}");
    }

    // Consistency between the remembered checkpoint of size 1 and size 5.
    let p: ConsistencyProofJson = c
        .get("/v1/proofs/consistency?from=1&to=5")
        .await
        .json()
        .await
        .unwrap();
    verify_consistency(1, 5, &cp1.root, &cp5.root, &hashes(&p.proof)).unwrap();
    // ... and not against a forged older root.
    let mut forged = cp1.root;
    forged[0] ^= 1;
    assert!(verify_consistency(1, 5, &forged, &cp5.root, &hashes(&p.proof)).is_err());
    for from in 0..=5 {
        let p: ConsistencyProofJson = c
            .get(&format!("/v1/proofs/consistency?from={from}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(p.to, 5);
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
        verify_consistency(from, 5, &from_root, &cp5.root, &hashes(&p.proof)).unwrap();
    }

    // A tampered checkpoint does not verify.
    let tampered = note5.replacen("\n5\n", "\n4\n", 1);
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
    assert!(String::from_utf8_lossy(&o.stderr).contains("checkpoint key"));
}

/// `GET path` with `Mazu-Checkpoint-Size: held` (if any): the body, the
/// verified checkpoint it carries, and its consistency proof (if any).
async fn registry_answer(
    c: &Curator,
    v: &CheckpointVerifier,
    path: &str,
    held: Option<&str>,
) -> (Vec<u8>, Checkpoint, Option<Vec<Hash>>) {
    let mut request = reqwest::Client::new().get(c.url(path));
    if let Some(held) = held {
        request = request.header(CHECKPOINT_SIZE_HEADER, held);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    let note = decode_note(r.headers()[CHECKPOINT_HEADER].as_bytes()).unwrap();
    let cp = v.verify(&note).unwrap();
    let proof = r
        .headers()
        .get(CONSISTENCY_HEADER)
        .map(|h| decode_proof(h.as_bytes()).unwrap());
    (r.bytes().await.unwrap().to_vec(), cp, proof)
}

#[tokio::test]
async fn registry_answers_carry_a_checkpoint_binding_them_and_a_consistency_proof() {
    let fx = Fixture::new();
    let mut c = Curator::spawn(fx.dir.path(), &fx.args(16));
    c.ready().await;
    let crs = c.crs().await;
    let v = CheckpointVerifier::parse(&text(&c, "/v1/checkpoint/key").await).unwrap();

    // The empty registry is bound too.
    let (body, cp0, proof) = registry_answer(&c, &v, "/v1/registry", None).await;
    assert_eq!(cp0.size, 0);
    assert_eq!(registry_digest(&cp0).unwrap(), sha256(&body));
    assert!(proof.is_none());

    for sa in ["a", "b", "c"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    // A full snapshot: the checkpoint's size is the snapshot's version and
    // it signs the snapshot's digest; the proof links the held size 1.
    let (_, served) = checkpoint(&c, &v).await;
    assert_eq!(served.size, 3);
    let (body, cp3, proof) = registry_answer(&c, &v, "/v1/registry", Some("1")).await;
    let snapshot = RegistrySnapshot::decode(&body).unwrap();
    assert_eq!((snapshot.version(), cp3.size), (3, 3));
    assert_eq!(cp3, served, "the same checkpoint as /v1/checkpoint");
    assert_eq!(registry_digest(&cp3).unwrap(), sha256(&body));
    let consistency = registry_answer(&c, &v, "/v1/registry", Some("0")).await.2;
    assert!(consistency.is_some());
    let mut tree = mazu_log::MerkleTree::new();
    for entry in c.get_json("/v1/log?start=0").await["entries"]
        .as_array()
        .unwrap()
    {
        tree.push(hash(entry["leaf_hash"].as_str().unwrap()));
    }
    let root1 = tree.root(1).unwrap();
    verify_consistency(1, 3, &root1, &cp3.root, &proof.unwrap()).unwrap();

    // A delta carries the checkpoint of its target version, which binds the
    // full snapshot of that version (not the delta's bytes).
    let (delta, cpd, proof) = registry_answer(&c, &v, "/v1/registry?since=2", Some("2")).await;
    let delta = RegistryDelta::decode(&delta).unwrap();
    assert_eq!((delta.to_version(), cpd.size), (3, 3));
    assert_eq!(registry_digest(&cpd).unwrap(), sha256(&body));
    verify_consistency(2, 3, &tree.root(2).unwrap(), &cpd.root, &proof.unwrap()).unwrap();
    // JSON answers carry the same evidence.
    let (_, cpj, _) = registry_answer(&c, &v, "/v1/registry?format=json", None).await;
    assert_eq!(cpj, cp3);

    // Held at the current size (or beyond it): no proof to give.
    assert!(
        registry_answer(&c, &v, "/v1/registry", Some("3"))
            .await
            .2
            .is_none()
    );
    assert!(
        registry_answer(&c, &v, "/v1/registry", Some("9"))
            .await
            .2
            .is_none()
    );
    // A held size that is not a number is refused.
    let r = reqwest::Client::new()
        .get(c.url("/v1/registry"))
        .header(CHECKPOINT_SIZE_HEADER, "three")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(common::code(&body), "invalid_parameter");
}

fn sha256(bytes: &[u8]) -> Hash {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
