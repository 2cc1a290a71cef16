//! Power cuts on the witness: the `mazu-witness` process runs under the
//! power-cut shim (`mazu_service::powercut`), cosigning a growing log; it is
//! killed mid-flight, its state directory replaced by what a power cut
//! would leave (only fsynced data), and restarted. After every cut the
//! witness still holds at least the largest checkpoint it cosigned (so it
//! can never cosign a fork of one it signed), and refuses a fork of it.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use core::time::Duration;
use std::process::{Child, Command, Stdio};

use common::{TestLog, add_checkpoint};
use mazu_log::witness_protocol::{AddCheckpointResponse, parse_response};
use rand::Rng as _;

const BIN: &str = env!("CARGO_BIN_EXE_mazu-witness");

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    dir: &std::path::Path,
    log: &TestLog,
    env: &[(&'static str, std::ffi::OsString)],
) -> (Guard, core::net::SocketAddr) {
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let child = Command::new(BIN)
        .env("RUST_LOG", "warn")
        .envs(env.iter().cloned())
        .args(["--name", common::WITNESS_NAME])
        .args(["--log", &log.signer.verifier().to_vkey()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--insecure-plain-http")
        .args(["--listen", "127.0.0.1:0", "--create-key"])
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    for _ in 0..400 {
        if let Some(addr) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|t| t.parse().ok())
        {
            return (guard, addr);
        }
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "mazu-witness exited early"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("no address file");
}

/// The size the witness holds (a request from size 0 is answered with a
/// conflict naming it), 0 if it holds none.
async fn held_size(addr: core::net::SocketAddr, log: &TestLog, size: u64) -> u64 {
    let a = add_checkpoint(addr, log.request(0, size)).await;
    match parse_response(a.status, a.content_type.as_deref(), &a.body) {
        Ok(AddCheckpointResponse::Conflict { witness_size }) => witness_size,
        Ok(AddCheckpointResponse::Cosigned(_)) => 0,
        Err(e) => panic!("unexpected answer: {e:?} {}", a.text()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_keeps_what_it_cosigned_across_power_cuts() {
    let cuts: usize = std::env::var("MAZU_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let shim = mazu_service::powercut::build_shim(dir.path()).expect("cc builds the shim");
    let state = dir.path().join("data").join(mazu_witness::store::LOGS_DIR);
    let shadow = dir.path().join("durable");
    let mut log = TestLog::new(common::ORIGIN, 1, 1);
    let mut cosigned = 0u64;
    let mut rng = rand::thread_rng();
    for cut in 0..cuts {
        mazu_service::powercut::copy_dir(&state, &shadow).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let env = mazu_service::powercut::env(&shim, &state, &shadow);
        let (guard, addr) = start(dir.path(), &log, &env);
        // At least what it acknowledged before the cut.
        let held = held_size(addr, &log, log.tree.len()).await;
        assert!(
            held >= cosigned,
            "after cut {cut}: the witness holds size {held}, but cosigned {cosigned}"
        );
        // A fork of the acknowledged checkpoint is refused.
        if cosigned > 1 {
            let forked = add_checkpoint(addr, fork_request(&log, held, cosigned)).await;
            assert_ne!(forked.status, 200, "after cut {cut}: cosigned a fork");
        }
        // Cosign a growing log until the cut.
        let mut old = held;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(200..800));
        while tokio::time::Instant::now() < deadline {
            let size = old + 1 + rng.gen_range(0..3);
            log.grow_to(size);
            let a = add_checkpoint(addr, log.request(old, size)).await;
            match parse_response(a.status, a.content_type.as_deref(), &a.body) {
                Ok(AddCheckpointResponse::Cosigned(_)) => {
                    cosigned = cosigned.max(size);
                    old = size;
                }
                Ok(AddCheckpointResponse::Conflict { witness_size }) => old = witness_size,
                Err(e) => panic!("add-checkpoint: {e:?} {}", a.text()),
            }
        }
        // The cut.
        drop(guard);
        mazu_service::powercut::copy_dir(&shadow, &state).unwrap();
    }
    assert!(
        cosigned > cuts as u64,
        "too little was cosigned to mean anything"
    );
}

/// A checkpoint signed by `log`'s key of a log whose leaves differ, at
/// `size`, claimed to extend the held size without a proof.
fn fork_request(log: &TestLog, held: u64, size: u64) -> Vec<u8> {
    let mut tree = mazu_log::merkle::MerkleTree::new();
    for i in 0..size {
        tree.push(mazu_log::merkle::leaf_hash(
            format!("forked {i}").as_bytes(),
        ));
    }
    mazu_log::witness_protocol::AddCheckpointRequest {
        old_size: held,
        proof: Vec::new(),
        checkpoint: log
            .signer
            .sign(size, &tree.root(size).unwrap())
            .into_bytes(),
    }
    .encode()
}
