//! Shared helpers: a test log (a Merkle tree and its checkpoint signer), an
//! in-process witness on 127.0.0.1:0, and the add-checkpoint call.
#![allow(dead_code, reason = "each test file uses a subset")]
#![allow(clippy::unwrap_used, reason = "tests")]

use core::net::SocketAddr;
use std::path::Path;

use mazu_log::checkpoint::CheckpointSigner;
use mazu_log::cosignature::WitnessVerifier;
use mazu_log::merkle::{MerkleTree, leaf_hash};
use mazu_log::witness_protocol::{ADD_CHECKPOINT_PATH, AddCheckpointRequest};
use mazu_witness::{Config, Server};

pub const ORIGIN: &str = "example.org/test-log";
pub const WITNESS_NAME: &str = "witness.example/w1";

/// A log: leaves 0..n and the signer of its checkpoints.
pub struct TestLog {
    pub tree: MerkleTree,
    pub signer: CheckpointSigner,
}

impl TestLog {
    pub fn new(origin: &str, seed: u8, leaves: u64) -> Self {
        let mut log = Self {
            tree: MerkleTree::new(),
            signer: CheckpointSigner::new(origin, &[seed; 32]).unwrap(),
        };
        log.grow_to(leaves);
        log
    }

    pub fn grow_to(&mut self, size: u64) {
        while self.tree.len() < size {
            let i = self.tree.len();
            self.tree.push(leaf_hash(format!("entry {i}").as_bytes()));
        }
    }

    /// The signed checkpoint at `size`.
    pub fn note(&self, size: u64) -> String {
        self.signer.sign(size, &self.tree.root(size).unwrap())
    }

    /// An add-checkpoint body from `old` to `size` with a valid proof.
    pub fn request(&self, old: u64, size: u64) -> Vec<u8> {
        // No proof exists for a rollback (old > size): send none.
        let proof = if old == 0 || old > size {
            Vec::new()
        } else {
            self.tree.consistency_proof(old, size).unwrap()
        };
        AddCheckpointRequest {
            old_size: old,
            proof,
            checkpoint: self.note(size).into_bytes(),
        }
        .encode()
    }
}

/// A configuration for a witness of `logs` in `dir`, key created.
pub fn config(dir: &Path, logs: &[&TestLog]) -> Config {
    let mut c = Config::new(
        WITNESS_NAME,
        logs.iter().map(|l| l.signer.verifier()).collect(),
        dir.to_path_buf(),
    );
    c.create_key = true;
    c
}

/// A running in-process witness.
pub struct Running {
    pub addr: SocketAddr,
    pub verifier: WitnessVerifier,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), mazu_witness::ServerError>>,
}

impl Running {
    pub async fn start(config: Config) -> Self {
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let verifier = WitnessVerifier::parse(&server.vkey()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            verifier,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn add_checkpoint(addr: SocketAddr, body: Vec<u8>) -> Answer {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{ADD_CHECKPOINT_PATH}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.bytes().await.unwrap().to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}
