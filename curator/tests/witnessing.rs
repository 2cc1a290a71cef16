//! The curator's witness client (`mazu_curator::witnessing`) against real
//! `mazu-witness` servers in-process on 127.0.0.1:0, each with its own data
//! directory and key; a tiny raw-TCP stand-in only where a real witness
//! cannot misbehave (garbage, oversized or missing answers).
#![allow(clippy::unwrap_used, reason = "tests")]

use core::net::SocketAddr;
use core::time::Duration;
use std::path::Path;
use std::sync::Mutex;

use mazu_curator::witnessing::{
    FailureReason, WaitTimeout, WitnessEndpoint, WitnessOptions, WitnessedLog, Witnessing,
    WitnessingError,
};
use mazu_log::checkpoint::{CheckpointSigner, Note};
use mazu_log::cosignature::{CosignatureSigner, WitnessPolicy, WitnessVerifier};
use mazu_log::merkle::{Hash, MerkleTree, leaf_hash};
use mazu_witness::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORIGIN: &str = "example.org/curator-log";
const TIMEOUT: Duration = Duration::from_secs(5);

/// A curator-like log: its Merkle tree and checkpoint signer.
struct TestLog {
    tree: MerkleTree,
    signer: CheckpointSigner,
    /// Distinguishes a fork's leaves from the real log's.
    branch: &'static str,
}

impl TestLog {
    fn new(branch: &'static str) -> Self {
        Self {
            tree: MerkleTree::new(),
            signer: CheckpointSigner::new(ORIGIN, &[1; 32]).unwrap(),
            branch,
        }
    }

    fn grow_to(&mut self, size: u64) {
        while self.tree.len() < size {
            let i = self.tree.len();
            self.tree
                .push(leaf_hash(format!("{} {i}", self.branch).as_bytes()));
        }
    }

    fn note(&self, size: u64) -> String {
        self.signer.sign(size, &self.tree.root(size).unwrap())
    }

    fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        self.tree
            .consistency_proof(old, new)
            .map_err(|e| e.to_string())
    }
}

/// A running in-process witness.
struct Running {
    addr: SocketAddr,
    verifier: WitnessVerifier,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), mazu_witness::ServerError>>,
}

impl Running {
    /// Starts a witness named `name` of the test log, with its state and
    /// key in `dir`, on `listen` (port 0: any).
    async fn start(dir: &Path, name: &str, log: &TestLog, listen: SocketAddr) -> Self {
        let mut config = Config::new(name, vec![log.signer.verifier()], dir.to_path_buf());
        config.create_key = true;
        config.listen = listen;
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let verifier = WitnessVerifier::parse(&server.vkey()).unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            verifier,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    fn endpoint(&self) -> WitnessEndpoint {
        endpoint_at(self.addr, &self.verifier)
    }

    /// The size the witness stores for the test log (`/healthz`).
    async fn stored_size(&self) -> Option<u64> {
        let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["logs"][0]["size"].as_u64()
    }
}

fn endpoint_at(addr: SocketAddr, verifier: &WitnessVerifier) -> WitnessEndpoint {
    WitnessEndpoint::parse(&format!("http://{addr}={}", verifier.to_vkey())).unwrap()
}

fn client(endpoints: Vec<WitnessEndpoint>, quorum: usize, timeout: Duration) -> Witnessing {
    Witnessing::new(WitnessOptions {
        endpoints,
        quorum,
        request_timeout: timeout,
    })
    .unwrap()
}

/// An address where nothing listens: bound, then closed.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Cosigns `log`'s checkpoint of `size`.
async fn cosign(w: &Witnessing, log: &TestLog, size: u64) -> Result<String, WitnessingError> {
    w.cosign(&log.note(size), size, &|o, n| log.consistency(o, n))
        .await
}

fn policy(witnesses: &[&WitnessVerifier], quorum: usize) -> WitnessPolicy {
    WitnessPolicy::new(witnesses.iter().map(|v| (*v).clone()).collect(), quorum).unwrap()
}

fn failures(err: WitnessingError) -> Vec<mazu_curator::witnessing::WitnessFailure> {
    match err {
        WitnessingError::BelowQuorum { failures, .. } => failures,
        other => panic!("not below quorum: {other}"),
    }
}

#[tokio::test]
async fn cosigns_size_1_then_5_with_a_proof_and_passes_the_policy() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut log = TestLog::new("real");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let w1 = Running::start(d1.path(), "witness.example/w1", &log, any).await;
    let w2 = Running::start(d2.path(), "witness.example/w2", &log, any).await;
    let witnessing = client(vec![w1.endpoint(), w2.endpoint()], 2, TIMEOUT);
    assert_eq!(witnessing.quorum(), 2);
    let both = policy(&[&w1.verifier, &w2.verifier], 2);

    log.grow_to(1);
    let note = cosign(&witnessing, &log, 1).await.unwrap();
    let (cp, witnessed) = both
        .verify(&log.signer.verifier(), note.as_bytes())
        .unwrap();
    assert_eq!(cp.size, 1);
    assert_eq!(witnessed.cosigners.len(), 2);
    // The note keeps the curator's signature and gains exactly one line per
    // witness.
    assert!(note.starts_with(&log.note(1)));
    assert_eq!(Note::parse(note.as_bytes()).unwrap().signatures.len(), 3);

    log.grow_to(5);
    let calls = Mutex::new(Vec::new());
    let note = witnessing
        .cosign(&log.note(5), 5, &|o, n| {
            calls.lock().unwrap().push((o, n));
            log.consistency(o, n)
        })
        .await
        .unwrap();
    let (cp, witnessed) = both
        .verify(&log.signer.verifier(), note.as_bytes())
        .unwrap();
    assert_eq!((cp.size, witnessed.cosigners.len()), (5, 2));
    // Each witness was asked from the size it last cosigned, with a proof,
    // and stored the new size.
    assert_eq!(*calls.lock().unwrap(), vec![(1, 5), (1, 5)]);
    assert_eq!(w1.stored_size().await, Some(5));
    assert_eq!(w2.stored_size().await, Some(5));

    // Re-submitting the same size (the refresh) needs no proof and works.
    let again = cosign(&witnessing, &log, 5).await.unwrap();
    both.verify(&log.signer.verifier(), again.as_bytes())
        .unwrap();

    // A verifier trusting only w1 also accepts the note: every witness's
    // cosignature is on it, not just the quorum's.
    policy(&[&w1.verifier], 1)
        .verify(&log.signer.verifier(), note.as_bytes())
        .unwrap();
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn a_down_witness_does_not_count_and_is_named() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut log = TestLog::new("real");
    log.grow_to(3);
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let w1 = Running::start(dirs[0].path(), "witness.example/w1", &log, any).await;
    let w2 = Running::start(dirs[1].path(), "witness.example/w2", &log, any).await;
    let down_key = CosignatureSigner::new("witness.example/down", &[7; 32])
        .unwrap()
        .verifier();
    let down = endpoint_at(dead_addr(), &down_key);
    let endpoints = vec![w1.endpoint(), down.clone(), w2.endpoint()];

    let note = cosign(&client(endpoints.clone(), 2, TIMEOUT), &log, 3)
        .await
        .unwrap();
    let witnessed = policy(&[&w1.verifier, &down_key, &w2.verifier], 2)
        .check(note.as_bytes())
        .unwrap();
    let names: Vec<_> = witnessed
        .cosigners
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["witness.example/w1", "witness.example/w2"]);

    let err = cosign(&client(endpoints, 3, TIMEOUT), &log, 3)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("2 of the required 3"), "{message}");
    assert!(message.contains(&down.url), "{message}");
    let failed = failures(err);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].url, down.url);
    assert_eq!(failed[0].name, "witness.example/down");
    assert!(
        matches!(failed[0].reason, FailureReason::Transport(_)),
        "{:?}",
        failed[0].reason
    );
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn a_fork_is_refused_by_the_witnesses() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut log = TestLog::new("real");
    log.grow_to(5);
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let w1 = Running::start(dirs[0].path(), "witness.example/w1", &log, any).await;
    let w2 = Running::start(dirs[1].path(), "witness.example/w2", &log, any).await;
    let witnessing = client(vec![w1.endpoint(), w2.endpoint()], 1, TIMEOUT);
    cosign(&witnessing, &log, 5).await.unwrap();

    // Same size, another root, signed with the curator's key.
    let mut fork = TestLog::new("fork");
    fork.grow_to(5);
    assert_ne!(fork.note(5), log.note(5));
    let failed = failures(cosign(&witnessing, &fork, 5).await.unwrap_err());
    assert_eq!(failed.len(), 2);
    for f in &failed {
        match &f.reason {
            FailureReason::Refused { status, detail } => {
                assert_eq!(*status, 409);
                assert!(detail.contains("FORK"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    // A forked extension: its proof from the witnessed size does not
    // verify against the stored root.
    fork.grow_to(8);
    let failed = failures(cosign(&witnessing, &fork, 8).await.unwrap_err());
    assert!(
        failed
            .iter()
            .all(|f| matches!(f.reason, FailureReason::Refused { status: 422, .. })),
        "{failed:?}"
    );
    // The witnesses still hold the real checkpoint, which extends.
    log.grow_to(8);
    cosign(&witnessing, &log, 8).await.unwrap();
    assert_eq!(w1.stored_size().await, Some(8));
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn a_restarted_witness_remembers_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new("real");
    log.grow_to(5);
    let w = Running::start(
        dir.path(),
        "witness.example/w1",
        &log,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await;
    let addr = w.addr;
    cosign(&client(vec![w.endpoint()], 1, TIMEOUT), &log, 5)
        .await
        .unwrap();
    w.stop().await;

    // Same data directory, key and address.
    let w = Running::start(dir.path(), "witness.example/w1", &log, addr).await;
    assert_eq!(w.stored_size().await, Some(5));
    // A fresh client (a restarted curator) starts from old 0: the witness
    // answers 409 with its size 5, and the client retries with a proof.
    let fresh = client(vec![w.endpoint()], 1, TIMEOUT);
    log.grow_to(8);
    let calls = Mutex::new(Vec::new());
    let note = fresh
        .cosign(&log.note(8), 8, &|o, n| {
            calls.lock().unwrap().push((o, n));
            log.consistency(o, n)
        })
        .await
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), vec![(5, 8)]);
    policy(&[&w.verifier], 1)
        .verify(&log.signer.verifier(), note.as_bytes())
        .unwrap();
    assert_eq!(w.stored_size().await, Some(8));

    // An older checkpoint cannot be witnessed any more: the witness is
    // ahead, and no proof runs backwards.
    let failed = failures(cosign(&fresh, &log, 6).await.unwrap_err());
    assert_eq!(
        failed[0].reason,
        FailureReason::Ahead {
            witness_size: 8,
            size: 6
        }
    );
    // A proof the curator cannot produce fails that witness, named.
    let stale = client(vec![w.endpoint()], 1, TIMEOUT);
    log.grow_to(9);
    let failed = failures(
        stale
            .cosign(&log.note(9), 9, &|_, _| Err("tree unavailable".into()))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&failed[0].reason, FailureReason::Proof { old: 8, new: 9, reason } if reason == "tree unavailable"),
        "{:?}",
        failed[0].reason
    );
    w.stop().await;
}

#[tokio::test]
async fn a_witness_key_other_than_the_configured_one_does_not_count() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut log = TestLog::new("real");
    log.grow_to(2);
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let w1 = Running::start(dirs[0].path(), "witness.example/w1", &log, any).await;
    let w2 = Running::start(dirs[1].path(), "witness.example/w2", &log, any).await;
    // w2 is configured with another key under its own name.
    let wrong = CosignatureSigner::new("witness.example/w2", &[9; 32])
        .unwrap()
        .verifier();
    assert_ne!(wrong, w2.verifier);
    let endpoints = vec![w1.endpoint(), endpoint_at(w2.addr, &wrong)];

    let failed = failures(
        cosign(&client(endpoints.clone(), 2, TIMEOUT), &log, 2)
            .await
            .unwrap_err(),
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].name, "witness.example/w2");
    assert!(
        matches!(failed[0].reason, FailureReason::NoCosignature(_)),
        "{:?}",
        failed[0].reason
    );

    // With quorum 1 the note carries w1's line only: w2's real line is not
    // merged (it is not a configured key).
    let note = cosign(&client(endpoints, 1, TIMEOUT), &log, 2)
        .await
        .unwrap();
    assert_eq!(Note::parse(note.as_bytes()).unwrap().signatures.len(), 2);
    assert_eq!(w2.verifier.verify_note(note.as_bytes()), Ok(None));
    policy(&[&w1.verifier, &wrong], 1)
        .check(note.as_bytes())
        .unwrap();
    w1.stop().await;
    w2.stop().await;
}

/// A stand-in witness on raw TCP that reads each request and answers it
/// with `response` (or, if `None`, never answers).
async fn fake_witness(response: Option<Vec<u8>>) -> SocketAddr {
    slow_fake_witness(response, Duration::ZERO).await
}

/// [`fake_witness`], answering `delay` after reading the request.
async fn slow_fake_witness(response: Option<Vec<u8>>, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the headers and the Content-Length body.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                match response {
                    Some(r) => {
                        let _ = socket.write_all(&r).await;
                        let _ = socket.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    addr
}

/// What a failure reason must look like.
type Expect = fn(&FailureReason) -> bool;

fn http_200(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn garbage_oversized_or_missing_answers_do_not_count() {
    let mut log = TestLog::new("real");
    log.grow_to(5);
    let key = CosignatureSigner::new("witness.example/fake", &[5; 32]).unwrap();
    let verifier = key.verifier();
    let cp = |size: u64| {
        log.signer
            .verifier()
            .verify(log.note(size).as_bytes())
            .unwrap()
    };
    let good_line = key.cosign(&cp(4), 1_700_000_000).unwrap();
    // A real cosignature by the configured key, but of another checkpoint.
    let other_line = key.cosign(&cp(5), 1_700_000_000).unwrap();

    // Control: the stand-in answering a valid line counts.
    let good = fake_witness(Some(http_200(good_line.as_bytes()))).await;
    let w = client(vec![endpoint_at(good, &verifier)], 1, TIMEOUT);
    let note = cosign(&w, &log, 4).await.unwrap();
    policy(&[&verifier], 1).check(note.as_bytes()).unwrap();

    let cases: Vec<(Option<Vec<u8>>, Expect)> = vec![
        // Claims the configured key, does not verify for this checkpoint.
        (Some(http_200(other_line.as_bytes())), |r| {
            matches!(r, FailureReason::BadCosignature(_))
        }),
        // A valid line followed by a bad one: the whole answer is refused.
        (
            Some(http_200(format!("{good_line}{other_line}").as_bytes())),
            |r| matches!(r, FailureReason::BadCosignature(_)),
        ),
        // Not signature lines at all.
        (Some(http_200(b"hello\n")), |r| {
            matches!(r, FailureReason::Malformed(_))
        }),
        // Longer than MAX_RESPONSE_LEN.
        (
            Some(http_200(&vec![b'a'; mazu_log::witness_protocol::MAX_RESPONSE_LEN + 1])),
            |r| matches!(r, FailureReason::Malformed(_)),
        ),
        // A 409 whose size is not a size.
        (
            Some(
                b"HTTP/1.1 409 Conflict\r\ncontent-type: text/x.tlog.size\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
                    .to_vec(),
            ),
            |r| matches!(r, FailureReason::Malformed(_)),
        ),
        // A server error.
        (
            Some(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops".to_vec()),
            |r| matches!(r, FailureReason::Refused { status: 500, .. }),
        ),
        // No answer at all: the request timeout.
        (None, |r| matches!(r, FailureReason::Timeout(_))),
    ];
    for (i, (response, expected)) in cases.into_iter().enumerate() {
        let addr = fake_witness(response).await;
        let w = client(
            vec![endpoint_at(addr, &verifier)],
            1,
            Duration::from_millis(500),
        );
        let started = std::time::Instant::now();
        let failed = failures(cosign(&w, &log, 4).await.unwrap_err());
        assert!(
            expected(&failed[0].reason),
            "case {i}: {:?}",
            failed[0].reason
        );
        assert!(started.elapsed() < Duration::from_secs(3), "case {i}");
    }
}

#[tokio::test]
async fn asks_witnesses_concurrently_and_waits_for_every_answer() {
    let mut log = TestLog::new("real");
    log.grow_to(3);
    let cp = log
        .signer
        .verifier()
        .verify(log.note(3).as_bytes())
        .unwrap();
    let keys: Vec<_> = (0..4u8)
        .map(|i| CosignatureSigner::new(&format!("witness.example/f{i}"), &[20 + i; 32]).unwrap())
        .collect();
    let line = |i: usize| http_200(keys[i].cosign(&cp, 1_700_000_000).unwrap().as_bytes());
    let endpoints = vec![
        endpoint_at(fake_witness(None).await, &keys[0].verifier()),
        endpoint_at(fake_witness(None).await, &keys[1].verifier()),
        endpoint_at(fake_witness(Some(line(2))).await, &keys[2].verifier()),
        endpoint_at(
            slow_fake_witness(Some(line(3)), Duration::from_millis(300)).await,
            &keys[3].verifier(),
        ),
    ];
    let timeout = Duration::from_millis(800);
    let started = std::time::Instant::now();
    let note = cosign(&client(endpoints, 1, timeout), &log, 3)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    // Both silent witnesses were waited for once, side by side (in series
    // it would take two timeouts plus the slow one's delay).
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < 2 * timeout, "{elapsed:?}");
    // The quorum (1) was met by the fast witness, yet the slow one's
    // cosignature is on the note too.
    let verifiers: Vec<_> = keys.iter().map(CosignatureSigner::verifier).collect();
    let witnessed = WitnessPolicy::new(verifiers, 1)
        .unwrap()
        .check(note.as_bytes())
        .unwrap();
    let names: Vec<_> = witnessed
        .cosigners
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["witness.example/f2", "witness.example/f3"]);
}

#[tokio::test]
async fn wait_covering_returns_on_a_covering_publish_and_times_out_otherwise() {
    let witnessed = WitnessedLog::new();
    assert_eq!(witnessed.latest(), None);
    assert_eq!(
        witnessed.wait_covering(0, Duration::from_millis(50)).await,
        Err(WaitTimeout {
            index: 0,
            waited: Duration::from_millis(50)
        })
    );

    let waiter = {
        let witnessed = witnessed.clone();
        tokio::spawn(async move { witnessed.wait_covering(4, Duration::from_secs(10)).await })
    };
    // Size 4 does not cover index 4; size 5 does.
    witnessed.publish(4, "note 4".into());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    witnessed.publish(5, "note 5".into());
    assert_eq!(waiter.await.unwrap(), Ok((5, "note 5".into())));

    // Never goes back; the same size takes the newer note.
    witnessed.publish(3, "note 3".into());
    assert_eq!(witnessed.latest(), Some((5, "note 5".into())));
    witnessed.publish(5, "note 5, fresher".into());
    assert_eq!(witnessed.latest(), Some((5, "note 5, fresher".into())));
    // Already covered: immediate.
    assert_eq!(
        witnessed.wait_covering(2, Duration::from_millis(1)).await,
        Ok((5, "note 5, fresher".into()))
    );
    // Not covered in time.
    assert_eq!(
        witnessed.wait_covering(5, Duration::from_millis(50)).await,
        Err(WaitTimeout {
            index: 5,
            waited: Duration::from_millis(50)
        })
    );
}
