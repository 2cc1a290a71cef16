//! The real filter `.wasm` holding the curator to its append-only log: with
//! `curator.checkpoint_key` pinned, a registry is used only with a signed
//! checkpoint that binds it and is consistent with the last one accepted. A
//! curator that rewrites, reorders or drops logged entries, forks its log,
//! or serves a registry its log does not yield is refused, and the registry
//! held stays in force.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use mazu_identity::{RegistryDelta, RegistrySnapshot};
use mazu_log::CheckpointSigner;
use mazu_log::evidence::{
    CHECKPOINT_HEADER, CONSISTENCY_HEADER, encode_note, encode_proof, registry_extension,
};
use mazu_log::merkle::{Hash, MerkleTree, leaf_hash};
use mazu_wasm_tests::abi::Action;
use mazu_wasm_tests::fixtures::{Mesh, snapshot};
use mazu_wasm_tests::harness::{configured, next_callout};
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use sha2::Digest as _;

/// A curator's log as the filter sees it through the evidence: leaves
/// (stand-ins for entries) and the checkpoint key.
struct Log {
    signer: CheckpointSigner,
    leaves: Vec<Hash>,
}

impl Log {
    fn new(size: usize) -> Self {
        Log {
            signer: CheckpointSigner::new("mazu-curator/test", &[42; 32]).unwrap(),
            leaves: (0..size)
                .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                .collect(),
        }
    }

    fn tree(&self) -> MerkleTree {
        MerkleTree::from_leaves(self.leaves.iter().copied())
    }

    fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    /// The evidence headers of an answer whose registry is `registry`, for a
    /// client holding a checkpoint of size `held`.
    fn evidence(&self, registry: &RegistrySnapshot, held: Option<u64>) -> Vec<(String, Vec<u8>)> {
        let tree = self.tree();
        let size = registry.version();
        let digest: Hash = sha2::Sha256::digest(registry.encode()).into();
        let note = self.signer.sign_with_extensions(
            size,
            &tree.root(size).unwrap(),
            vec![registry_extension(&digest)],
        );
        let mut headers = vec![(
            CHECKPOINT_HEADER.to_owned(),
            encode_note(&note).into_bytes(),
        )];
        if let Some(held) = held.filter(|&h| h < size) {
            let proof = tree.consistency_proof(held, size).unwrap();
            headers.push((
                CONSISTENCY_HEADER.to_owned(),
                encode_proof(&proof).into_bytes(),
            ));
        }
        headers
    }
}

fn respond(vm: &mut Vm, token: u32, body: &[u8], headers: &[(String, Vec<u8>)]) {
    let headers: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    vm.respond_with(token, Some(200), &headers, body).unwrap();
}

fn admitted(vm: &mut Vm, peer: &PeerProperties) -> bool {
    let (id, _) = vm.connect(Side::Downstream, peer).expect("connect");
    let action = vm.downstream_data(id, b"hello").expect("data");
    action == Action::Continue && !vm.connection(id).unwrap().closed_downstream
}

fn refusals(vm: &Vm) -> i64 {
    vm.stat("mazu.inbound.registry_fetch_failures.checkpoint")
}

fn pinned(mesh: &Mesh, log: &Log) -> Vm {
    let key = format!(r#","checkpoint_key":"{}""#, log.vkey());
    // Stale registries stay in force here: refusals must not look like
    // staleness.
    configured(&mesh.config_with(
        "inbound",
        &key,
        r#","max_staleness_secs":3600,"when_stale":"enforce_last_known""#,
    ))
}

#[test]
fn a_curator_that_rewrites_its_log_is_refused_and_the_held_registry_stays() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let thief = mesh.workload("shop", "thief");
    let mut log = Log::new(1);
    let mut vm = pinned(&mesh, &log);
    assert!(vm.logged("registries are used only with a checkpoint by mazu-curator/test+"));

    // Version 1 with its checkpoint: installed on first use of the key.
    let v1 = snapshot(1, &[cart.entry]);
    let token = next_callout(&mut vm);
    respond(&mut vm, token, &v1.encode(), &log.evidence(&v1, None));
    assert_eq!(
        vm.stat("mazu.inbound.registry_version"),
        1,
        "{}",
        vm.log_text()
    );
    assert!(admitted(&mut vm, &cart.peer()));

    // The next callout tells the curator which checkpoint it holds.
    let token = next_callout(&mut vm);
    let asked = vm.callout_log().last().unwrap().clone();
    assert_eq!(asked.header(":path"), Some("/v1/registry?since=1"));
    assert_eq!(asked.header("mazu-checkpoint-size"), Some("1"));

    // The curator rewrote entry 0 and registered the thief: its own
    // consistency proof cannot link the checkpoint held.
    let mut forked = Log::new(2);
    forked.leaves[0] = leaf_hash(b"rewritten entry 0");
    let v2 = snapshot(2, &[cart.entry, thief.entry]);
    let delta = RegistryDelta::new(1, 2, vec![thief.entry]).unwrap();
    respond(
        &mut vm,
        token,
        &delta.encode(),
        &forked.evidence(&v2, Some(1)),
    );
    assert_eq!(refusals(&vm), 1, "{}", vm.log_text());
    assert!(vm.logged("CURATOR MISBEHAVIOUR? registry version 2 refused"));
    assert!(vm.logged("is not append-only"));
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 1);
    assert!(
        !admitted(&mut vm, &thief.peer()),
        "the thief is not admitted"
    );
    assert!(admitted(&mut vm, &cart.peer()), "the held registry stays");

    // The same registry without evidence, or with evidence for another
    // registry (the thief added to the registry but not to the log).
    let token = next_callout(&mut vm);
    respond(&mut vm, token, &delta.encode(), &[]);
    assert_eq!(refusals(&vm), 2);
    assert!(vm.logged("carries no mazu-checkpoint header"));
    let token = next_callout(&mut vm);
    log.leaves.push(leaf_hash(b"entry 1"));
    let honest_v2 = snapshot(2, &[cart.entry]);
    respond(
        &mut vm,
        token,
        &delta.encode(),
        &log.evidence(&honest_v2, Some(1)),
    );
    assert_eq!(refusals(&vm), 3);
    assert!(vm.logged("binds another registry than the one served at version 2"));
    assert!(!admitted(&mut vm, &thief.peer()));

    // The honest log grows with the thief's registration logged: accepted.
    let token = next_callout(&mut vm);
    respond(&mut vm, token, &delta.encode(), &log.evidence(&v2, Some(1)));
    assert_eq!(refusals(&vm), 3, "{}", vm.log_text());
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 2);
    assert!(admitted(&mut vm, &thief.peer()));

    // A fork at the same size, served as an empty delta ("nothing new"),
    // is refused too: the registry is not confirmed by it.
    let unchanged_before = vm.stat("mazu.inbound.registry_unchanged");
    let token = next_callout(&mut vm);
    assert_eq!(
        vm.callout_log()
            .last()
            .unwrap()
            .header("mazu-checkpoint-size"),
        Some("2")
    );
    let mut same_size = Log::new(2);
    same_size.leaves.swap(0, 1);
    let empty = RegistryDelta::new(2, 2, vec![]).unwrap();
    respond(
        &mut vm,
        token,
        &empty.encode(),
        &same_size.evidence(&v2, Some(2)),
    );
    assert_eq!(refusals(&vm), 4);
    assert!(vm.logged("forked log"));
    assert_eq!(vm.stat("mazu.inbound.registry_unchanged"), unchanged_before);
    // ... while the honest one confirms it.
    let token = next_callout(&mut vm);
    respond(&mut vm, token, &empty.encode(), &log.evidence(&v2, Some(2)));
    assert_eq!(refusals(&vm), 4);
    assert_eq!(
        vm.stat("mazu.inbound.registry_unchanged"),
        unchanged_before + 1
    );
}

#[test]
fn checkpoints_by_another_key_are_refused_from_the_start() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let pinned_log = Log::new(1);
    let mut vm = pinned(&mesh, &pinned_log);
    let mut impostor = Log::new(1);
    impostor.signer = CheckpointSigner::new("mazu-curator/test", &[43; 32]).unwrap();
    let v1 = snapshot(1, &[cart.entry]);
    let token = next_callout(&mut vm);
    respond(&mut vm, token, &v1.encode(), &impostor.evidence(&v1, None));
    assert_eq!(refusals(&vm), 1);
    assert!(vm.logged("does not verify with the pinned key"));
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 0);
    assert!(
        !admitted(&mut vm, &cart.peer()),
        "no registry: nobody is admitted"
    );
}

#[test]
fn without_a_pinned_key_the_filter_warns_and_needs_no_evidence() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", ""));
    assert!(vm.logged("NOT held to append-only"));
    let token = next_callout(&mut vm);
    vm.respond(token, Some(200), &snapshot(1, &[cart.entry]).encode())
        .unwrap();
    assert!(
        vm.callout_log()
            .iter()
            .all(|c| c.header("mazu-checkpoint-size").is_none())
    );
    assert!(admitted(&mut vm, &cart.peer()));
}
