//! The real filter `.wasm` derives the registry from the curator's witnessed
//! log and trusts nothing else the curator says: a checkpoint without the
//! witness quorum, records that do not give the witnessed root (a curator
//! that rebinds a victim's id to an attacker's key), a rollback or a fork
//! are refused, counted by reason, and the registry held stays in force; a
//! curator that keeps serving an old cosigned checkpoint makes the proxy
//! stale, because age counts from the witnessed time. A new filter takes the
//! witnessed follower state only if it hashes to the checkpoint's state line.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

use mazu_log::CheckpointSigner;
use mazu_testkit::fixtures::{Mesh, Workload, WorkloadSpec, log};
use mazu_testkit::witnessed::{TestLog, curator_signer, log_members};
use mazu_wasm_tests::abi::Action;
use mazu_wasm_tests::callouts::AnswerCallouts as _;
use mazu_wasm_tests::harness::{configured, next_callout_full, serve};
use mazu_wasm_tests::peer::WorkloadPeer as _;
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use p256::ecdsa::SigningKey;
use rand::rngs::OsRng;

fn admitted(vm: &mut Vm, peer: &PeerProperties) -> bool {
    let (id, _) = vm.connect(Side::Downstream, peer).expect("connect");
    let action = vm.downstream_data(id, b"hello").expect("data");
    action == Action::Continue && !vm.connection(id).unwrap().closed_downstream
}

fn refusals(vm: &Vm, reason: &str) -> i64 {
    vm.stat(&format!("mazu.inbound.registry_fetch_failures.{reason}"))
}

/// Stale registries stay in force unless a test says otherwise: refusals
/// must not look like staleness.
fn filter(mesh: &Mesh) -> Vm {
    configured(&mesh.config(
        "inbound",
        r#","max_staleness_secs":3600,"when_stale":"enforce_last_known""#,
    ))
}

/// A victim workload, and the attacker's certificate carrying the victim's
/// token with the attacker's own key.
fn victim_and_attacker(mesh: &Mesh) -> (Workload, Workload) {
    let victim = mesh.workload("shop", "victim");
    let attacker = mesh.workload_with_key(
        victim.token.clone(),
        &WorkloadSpec::new("shop", "victim"),
        SigningKey::random(&mut OsRng),
    );
    (victim, attacker)
}

/// Answers the next round's checkpoint callout with `note`; returns the
/// records callout it led to, if any.
fn offer(vm: &mut Vm, curator: &TestLog, note: &str) -> Option<mazu_wasm_tests::state::Callout> {
    let checkpoint = next_callout_full(vm);
    assert_eq!(checkpoint.header(":path"), Some("/v1/checkpoint"));
    curator.answer_with(vm, &checkpoint, note);
    vm.take_callouts().pop()
}

#[test]
fn a_checkpoint_without_the_witness_quorum_is_refused() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let curator = log(&[cart.entry]);
    let mut vm = filter(&mesh);
    assert!(vm.logged("cosigned by 2 of 2 witnesses (witness.test/w1, witness.test/w2)"));
    let now = vm.now_ms() / 1000;

    // One witness of the two required; then one plus a stranger.
    assert!(offer(&mut vm, &curator, &curator.note(2, &[1], now)).is_none());
    assert!(offer(&mut vm, &curator, &curator.note(2, &[1, 3], now)).is_none());
    assert_eq!(
        refusals(&vm, "checkpoint_below_quorum"),
        2,
        "{}",
        vm.log_text()
    );
    assert!(vm.logged("cosigned by 1 of the required 2 witnesses"));
    assert!(vm.logged("CURATOR MISBEHAVIOUR?"));
    // Signed by another curator key, cosigned by both witnesses.
    let impostor = CheckpointSigner::new("mazu-curator/test", &[43; 32]).unwrap();
    let note = impostor.sign(2, &curator.root(2));
    assert!(offer(&mut vm, &curator, &note).is_none());
    assert_eq!(refusals(&vm, "checkpoint_signature"), 1);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 0);
    assert!(
        !admitted(&mut vm, &cart.peer()),
        "no registry: nobody is admitted"
    );

    // Both witnesses: the records are fetched and the registry installed.
    serve(&mut vm, &curator);
    assert!(admitted(&mut vm, &cart.peer()), "{}", vm.log_text());
}

#[test]
fn records_that_rebind_a_victim_to_an_attacker_are_refused_and_the_last_good_registry_stays() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let (victim, attacker) = victim_and_attacker(&mesh);
    let mut honest = log(&[cart.entry]);
    let mut vm = filter(&mesh);
    serve(&mut vm, &honest);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 2);

    // The witnesses see the victim's honest binding; the curator serves
    // this proxy records in which the victim's id is first bound to the
    // attacker's key.
    honest.register(&victim.entry);
    let mut lie = log(&[cart.entry]);
    lie.register(&attacker.entry);
    let now = vm.now_ms() / 1000;
    let records = offer(&mut vm, &honest, &honest.checkpoint(now)).expect("records callout");
    assert_eq!(
        records.header(":path"),
        Some("/v1/log/records?start=2&end=4")
    );
    vm.respond(records.token, Some(200), &lie.records_bytes(2, 4))
        .unwrap();
    assert_eq!(
        refusals(&vm, "records_root_mismatch"),
        1,
        "{}",
        vm.log_text()
    );
    assert!(
        vm.logged("the log records do not give the root of the witnessed checkpoint of size 4")
    );
    assert_eq!(
        vm.stat("mazu.inbound.registry_version"),
        2,
        "the last good one"
    );
    assert!(
        !admitted(&mut vm, &attacker.peer()),
        "the attacker is not admitted"
    );
    assert!(admitted(&mut vm, &cart.peer()), "the held registry stays");

    // The honest records, in the next round, are taken.
    serve(&mut vm, &honest);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
    assert!(admitted(&mut vm, &victim.peer()), "{}", vm.log_text());
    assert!(!admitted(&mut vm, &attacker.peer()));
    assert_eq!(vm.stat("mazu.inbound.denied.not_registered"), 1);
    assert_eq!(vm.stat("mazu.inbound.denied.key_mismatch"), 1);
}

#[test]
fn a_new_filter_refuses_a_state_that_rebinds_a_victim_and_derives_from_the_records() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let (victim, attacker) = victim_and_attacker(&mesh);
    // The witnesses cosigned the honest log and its state line; the curator
    // serves a new proxy the state in which the victim's id is bound to the
    // attacker's key.
    let honest = log(&[cart.entry, victim.entry]);
    let lie = log(&[cart.entry, attacker.entry]);
    let mut vm = filter(&mesh);
    let now = vm.now_ms() / 1000;
    let state = offer(&mut vm, &honest, &honest.checkpoint(now)).expect("state callout");
    assert_eq!(state.header(":path"), Some("/v1/log/state?size=4"));
    vm.respond(state.token, Some(200), &lie.state(4)).unwrap();
    assert_eq!(
        refusals(&vm, "state_digest_mismatch"),
        1,
        "{}",
        vm.log_text()
    );
    assert!(vm.logged("CURATOR MISBEHAVIOUR?"));
    assert!(vm.logged("does not hash to the witnessed checkpoint's state line"));
    assert_eq!(
        vm.stat("mazu.inbound.registry_version"),
        0,
        "nothing installed"
    );
    assert!(!admitted(&mut vm, &attacker.peer()));

    // The next round derives the registry from the records, not the state.
    let answered = honest.serve(&mut vm);
    let paths: Vec<_> = answered.iter().filter_map(|c| c.header(":path")).collect();
    assert_eq!(paths, ["/v1/checkpoint", "/v1/log/records?start=0&end=4"]);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
    assert!(admitted(&mut vm, &victim.peer()), "{}", vm.log_text());
    assert!(!admitted(&mut vm, &attacker.peer()));
}

#[test]
fn a_rollback_or_a_fork_is_refused() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let db = mesh.workload("shop", "db");
    let thief = mesh.workload("shop", "thief");
    let honest = log(&[cart.entry, db.entry]);
    let mut vm = filter(&mesh);
    serve(&mut vm, &honest);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
    let now = vm.now_ms() / 1000;

    // An older checkpoint, properly cosigned (e.g. replayed).
    assert!(offer(&mut vm, &honest, &honest.note(2, &[1, 2], now)).is_none());
    assert_eq!(refusals(&vm, "checkpoint_rollback"), 1, "{}", vm.log_text());
    assert!(vm.logged("checkpoint of size 2 is older than the accepted size 4"));
    // Another log of the same size (db dropped, the thief in its place),
    // cosigned by witnesses the curator fooled or owns.
    let fork = log(&[cart.entry, thief.entry]);
    assert!(offer(&mut vm, &fork, &fork.checkpoint(now)).is_none());
    assert_eq!(refusals(&vm, "checkpoint_fork"), 1);
    assert!(vm.logged("forked log"));
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
    assert!(admitted(&mut vm, &db.peer()));
    assert!(!admitted(&mut vm, &thief.peer()));
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 2);
}

#[test]
fn a_curator_that_keeps_serving_an_old_cosigned_checkpoint_makes_the_proxy_stale() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let curator = log(&[cart.entry]);
    let mut vm =
        configured(&mesh.config("inbound", r#","max_staleness_secs":10,"when_stale":"deny""#));
    let frozen = curator.checkpoint(vm.now_ms() / 1000);
    let records = offer(&mut vm, &curator, &frozen).expect("records");
    curator.answer(&mut vm, &records);
    assert!(admitted(&mut vm, &cart.peer()));
    // The curator answers every round, always with the same old note.
    for _ in 0..11 {
        vm.advance_ms(1_000);
        vm.tick().unwrap();
        for callout in vm.take_callouts() {
            curator.answer_with(&mut vm, &callout, &frozen);
        }
    }
    assert!(vm.stat("mazu.inbound.registry_unchanged") >= 9);
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 0);
    assert!(vm.stat("mazu.inbound.registry_age_seconds") >= 10);
    assert!(!admitted(&mut vm, &cart.peer()));
    assert_eq!(vm.stat("mazu.inbound.denied.registry_stale"), 1);
    // Freshly cosigned: fresh again.
    serve(&mut vm, &curator);
    assert!(admitted(&mut vm, &cart.peer()));
}

#[test]
fn a_checkpoint_witnessed_long_ago_is_stale_from_the_start() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let curator = log(&[cart.entry]);
    let mut vm = configured(&mesh.config("inbound", r#","max_staleness_secs":60"#));
    let hour_ago = vm.now_ms() / 1000 - 3600;
    let records = offer(&mut vm, &curator, &curator.checkpoint(hour_ago)).expect("records");
    curator.answer(&mut vm, &records);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 2);
    assert!(vm.stat("mazu.inbound.registry_age_seconds") >= 3600);
    assert!(!admitted(&mut vm, &cart.peer()));
    assert_eq!(vm.stat("mazu.inbound.denied.registry_stale"), 1);
}

#[test]
fn without_witnesses_the_filter_needs_the_explicit_insecure_flag_and_warns() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let curator = log(&[cart.entry]);
    let key = format!(
        r#","checkpoint_key":"{}","insecure_no_witness":true"#,
        curator_signer().verifier().to_vkey()
    );
    let mut vm = configured(&mesh.config_with("inbound", &key, ""));
    assert!(vm.logged("used WITHOUT witnesses"));
    // A checkpoint without any cosignature is enough then.
    let records = offer(&mut vm, &curator, &curator.note(2, &[], 0)).expect("records");
    curator.answer(&mut vm, &records);
    assert!(admitted(&mut vm, &cart.peer()), "{}", vm.log_text());
    // The same log members without the flag are refused (tests/config.rs
    // covers the message); with the witnesses they are the default.
    assert!(log_members().contains("\"witness_quorum\":2"));
}
