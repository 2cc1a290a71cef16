//! The C2SP tlog-witness `add-checkpoint` protocol against an in-process
//! witness on 127.0.0.1:0.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{Running, TestLog, add_checkpoint, config};
use mazu_log::checkpoint::CheckpointSigner;
use mazu_log::cosignature::{WitnessPolicy, append_cosignatures};
use mazu_log::witness_protocol::{
    AddCheckpointRequest, AddCheckpointResponse, ProtocolError, SIZE_CONTENT_TYPE, parse_response,
};

/// Sends a request and decodes the answer with the shared client code.
async fn call(w: &Running, body: Vec<u8>) -> (u16, Result<AddCheckpointResponse, ProtocolError>) {
    let a = add_checkpoint(w.addr, body).await;
    (
        a.status,
        parse_response(a.status, a.content_type.as_deref(), &a.body),
    )
}

/// Checks a 200 answer: a valid cosignature of `note` by the witness, and
/// the merged note satisfies a 1-of-1 policy.
fn assert_cosigned(
    w: &Running,
    log: &TestLog,
    note: &str,
    answer: Result<AddCheckpointResponse, ProtocolError>,
) {
    let Ok(AddCheckpointResponse::Cosigned(lines)) = answer else {
        panic!("not cosigned: {answer:?}");
    };
    assert_eq!(lines.len(), 1);
    let cp = log.signer.verifier().verify(note.as_bytes()).unwrap();
    let ts = w.verifier.verify_line(&cp.body(), &lines[0]).unwrap();
    let now = mazu_witness::witness::unix_now();
    assert!(ts.is_some_and(|t| t.abs_diff(now) < 60), "{ts:?}");
    let merged = append_cosignatures(note, &lines).unwrap();
    let policy = WitnessPolicy::new(vec![w.verifier.clone()], 1).unwrap();
    let (got, witnessed) = policy
        .verify(&log.signer.verifier(), merged.as_bytes())
        .unwrap();
    assert_eq!(got, cp);
    assert_eq!(witnessed.cosigners.len(), 1);
}

fn conflict(size: u64) -> Result<AddCheckpointResponse, ProtocolError> {
    Ok(AddCheckpointResponse::Conflict { witness_size: size })
}

#[tokio::test]
async fn protocol() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new(common::ORIGIN, 1, 5);
    let w = Running::start(config(dir.path(), &[&log])).await;

    // A first checkpoint from old 0, no proof.
    let (status, answer) = call(&w, log.request(0, 5)).await;
    assert_eq!(status, 200);
    assert_cosigned(&w, &log, &log.note(5), answer);

    // Old 0 again: 409 with the stored size, as text/x.tlog.size.
    let a = add_checkpoint(w.addr, log.request(0, 5)).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.content_type.as_deref(), Some(SIZE_CONTENT_TYPE));
    assert_eq!(a.body, b"5\n");

    // An extension with a valid proof.
    log.grow_to(13);
    let (status, answer) = call(&w, log.request(5, 13)).await;
    assert_eq!(status, 200);
    assert_cosigned(&w, &log, &log.note(13), answer);

    // Wrong old size.
    log.grow_to(20);
    assert_eq!(call(&w, log.request(5, 20)).await, (409, conflict(13)));
    assert_eq!(call(&w, log.request(14, 20)).await, (409, conflict(13)));

    // A bad proof: 422 (a proof from another size, a flipped hash, none).
    let mut req = AddCheckpointRequest::parse(&log.request(13, 20)).unwrap();
    req.proof = log.tree.consistency_proof(12, 20).unwrap();
    assert_eq!(call(&w, req.encode()).await.0, 422);
    let mut req = AddCheckpointRequest::parse(&log.request(13, 20)).unwrap();
    req.proof[0][0] ^= 1;
    assert_eq!(call(&w, req.encode()).await.0, 422);
    req.proof.clear();
    assert_eq!(call(&w, req.encode()).await.0, 422);

    // The same checkpoint again (old = size = stored): re-cosigned, fresh.
    let (status, answer) = call(&w, log.request(13, 13)).await;
    assert_eq!(status, 200);
    assert_cosigned(&w, &log, &log.note(13), answer);

    // A fork: same size, another root, signed by the log. 409, not the
    // size content type, and the evidence is kept.
    let mut forked = TestLog::new(common::ORIGIN, 1, 12);
    forked.tree.push([0xee; 32]);
    let body = AddCheckpointRequest {
        old_size: 13,
        proof: Vec::new(),
        checkpoint: forked.note(13).into_bytes(),
    }
    .encode();
    let a = add_checkpoint(w.addr, body).await;
    assert_eq!(a.status, 409);
    assert_ne!(a.content_type.as_deref(), Some(SIZE_CONTENT_TYPE));
    assert!(a.text().contains("FORK"), "{}", a.text());
    assert_eq!(
        parse_response(a.status, a.content_type.as_deref(), &a.body),
        Err(ProtocolError::Refused { status: 409 })
    );
    let evidence: Vec<_> = std::fs::read_dir(dir.path().join("evidence"))
        .unwrap()
        .collect();
    assert_eq!(evidence.len(), 1);

    // Rollback: a smaller checkpoint. With the stored size as old: 400 (old
    // above the checkpoint size); with its own size as old: 409.
    let a = add_checkpoint(w.addr, log.request(13, 10)).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(call(&w, log.request(10, 10)).await, (409, conflict(13)));
    assert_eq!(call(&w, log.request(0, 10)).await, (409, conflict(13)));

    // Unknown origin: 404.
    let other = TestLog::new("example.org/other-log", 2, 3);
    assert_eq!(call(&w, other.request(0, 3)).await.0, 404);

    // The right origin signed by another key: 403.
    let impostor = TestLog::new(common::ORIGIN, 3, 20);
    assert_eq!(call(&w, impostor.request(13, 20)).await.0, 403);
    // A cosignature-only note (no log signature): 403.
    let mut unsigned = log.note(20);
    let cut = unsigned.find("\n\n").unwrap() + 2;
    unsigned.truncate(cut);
    let line = mazu_log::cosignature::CosignatureSigner::new("someone", &[9; 32])
        .unwrap()
        .cosign(
            &log.signer
                .verifier()
                .verify(log.note(20).as_bytes())
                .unwrap(),
            1,
        )
        .unwrap();
    unsigned.push_str(&line);
    let body = AddCheckpointRequest {
        old_size: 13,
        proof: log.tree.consistency_proof(13, 20).unwrap(),
        checkpoint: unsigned.into_bytes(),
    }
    .encode();
    assert_eq!(call(&w, body).await.0, 403);

    // Malformed: 400.
    for bad in [
        &b""[..],
        b"old 1\n",
        b"old x\n\nfoo",
        b"old 0\n\nnot a note\n",
    ] {
        assert_eq!(add_checkpoint(w.addr, bad.to_vec()).await.status, 400);
    }
    // Too large: 413.
    let huge = vec![b'a'; mazu_log::witness_protocol::MAX_REQUEST_LEN + 1];
    assert_eq!(add_checkpoint(w.addr, huge).await.status, 413);

    // The state is still 13, and the extension still works.
    let (status, answer) = call(&w, log.request(13, 20)).await;
    assert_eq!(status, 200);
    assert_cosigned(&w, &log, &log.note(20), answer);

    // Health and metrics.
    let health: serde_json::Value = reqwest::get(w.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["vkey"], w.verifier.to_vkey());
    assert_eq!(health["logs"][0]["size"], 20);
    let metrics = reqwest::get(w.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "mazu_witness_add_checkpoint_total{origin=\"example.org/test-log\",outcome=\"fork\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("mazu_witness_tree_size{origin=\"example.org/test-log\"} 20"));
    // The connection limits are exported too (this scrape's connection is
    // open; nothing was refused).
    assert!(
        metrics.contains("mazu_witness_connections_refused_total{reason=\"client_connections\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mazu_witness_connections_open "),
        "{metrics}"
    );
    assert_eq!(
        reqwest::get(w.url("/nope"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    w.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new(common::ORIGIN, 1, 8);
    let w = Running::start(config(dir.path(), &[&log])).await;
    let vkey = w.verifier.to_vkey();
    assert_eq!(call(&w, log.request(0, 8)).await.0, 200);
    log.grow_to(11);
    assert_eq!(call(&w, log.request(8, 11)).await.0, 200);

    // A second witness on the same directory is refused (the lock).
    assert!(
        mazu_witness::Server::bind(config(dir.path(), &[&log]))
            .await
            .is_err()
    );
    w.stop().await;

    // Restarted: same key, same state.
    let w = Running::start(config(dir.path(), &[&log])).await;
    assert_eq!(w.verifier.to_vkey(), vkey);
    assert_eq!(call(&w, log.request(0, 8)).await, (409, conflict(11)));
    assert_eq!(call(&w, log.request(11, 8)).await.0, 400);
    assert_eq!(call(&w, log.request(8, 8)).await, (409, conflict(11)));
    log.grow_to(12);
    assert_eq!(call(&w, log.request(11, 12)).await.0, 200);
    w.stop().await;

    // A damaged state file stops the witness rather than resetting it.
    let logs = dir.path().join("logs");
    let file = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"size\":12", "\"size\":2")).unwrap();
    let err = mazu_witness::Server::bind(config(dir.path(), &[&log]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_from_one_size_advance_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new(common::ORIGIN, 1, 4);
    let w = Running::start(config(dir.path(), &[&log])).await;
    assert_eq!(call(&w, log.request(0, 4)).await.0, 200);
    log.grow_to(64);
    for round in 0..5u64 {
        let old = 4 + round * 10;
        // Several competing extensions of one old size.
        let bodies: Vec<Vec<u8>> = (1..=6).map(|k| log.request(old, old + k)).collect();
        let calls = bodies
            .into_iter()
            .map(|b| tokio::spawn(add_checkpoint(w.addr, b)));
        let mut ok = Vec::new();
        for (k, c) in calls.enumerate() {
            let a = c.await.unwrap();
            match a.status {
                200 => ok.push(old + 1 + k as u64),
                409 => assert_eq!(a.content_type.as_deref(), Some(SIZE_CONTENT_TYPE)),
                s => panic!("status {s}: {}", a.text()),
            }
        }
        assert_eq!(ok.len(), 1, "round {round}: {ok:?}");
        // Whoever won, the witness holds that size; move on from there to
        // the next round's base with a proof.
        let won = ok[0];
        let next = old + 10;
        assert_eq!(call(&w, log.request(won, next)).await.0, 200);
    }
    w.stop().await;
}

#[tokio::test]
async fn several_logs_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestLog::new("example.org/a", 1, 3);
    let b = TestLog::new("example.org/b", 2, 7);
    let w = Running::start(config(dir.path(), &[&a, &b])).await;
    assert_eq!(call(&w, a.request(0, 3)).await.0, 200);
    assert_eq!(call(&w, b.request(0, 7)).await.0, 200);
    assert_eq!(call(&w, a.request(0, 3)).await, (409, conflict(3)));
    // Log a's key does not sign for b.
    let wrong = CheckpointSigner::new("example.org/b", &[1; 32]).unwrap();
    let body = AddCheckpointRequest {
        old_size: 7,
        proof: Vec::new(),
        checkpoint: wrong.sign(7, &b.tree.root(7).unwrap()).into_bytes(),
    }
    .encode();
    assert_eq!(call(&w, body).await.0, 403);
    w.stop().await;
}
