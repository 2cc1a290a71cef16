//! The registry cache of the real filter `.wasm`: callouts, deltas, curator
//! failures, staleness, parking, and sharing between VMs.

use mazu_identity::RegistryDelta;
use mazu_wasm_tests::abi::Action;
use mazu_wasm_tests::fixtures::{Mesh, snapshot};
use mazu_wasm_tests::harness::{configured, configured_in, next_callout, serve};
use mazu_wasm_tests::plugin::{Side, Vm};
use mazu_wasm_tests::state::ProcessHandle;

fn connect_and_send(vm: &mut Vm, peer: &mazu_wasm_tests::plugin::PeerProperties) -> (u32, Action) {
    let (id, _) = vm.connect(Side::Downstream, peer).expect("connect");
    let action = vm.downstream_data(id, b"hello").expect("data");
    (id, action)
}

#[test]
fn callouts_ask_for_a_snapshot_then_for_deltas() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", ""));
    let first = {
        next_callout(&mut vm);
        vm.callout_log()[0].clone()
    };
    assert_eq!(first.cluster, "mazu-curator");
    assert_eq!(first.header(":method"), Some("GET"));
    assert_eq!(first.header(":path"), Some("/v1/registry"));
    assert_eq!(first.header(":authority"), Some("curator.mazu.test"));
    assert_eq!(first.header("if-none-match"), None);
    assert_eq!(first.timeout_ms, 500);
    vm.respond(first.token, Some(200), &snapshot(3, &[cart.entry]).encode())
        .unwrap();
    assert!(vm.logged("registry version 3 (1 entries) from the curator"));

    let token = next_callout(&mut vm);
    let second = vm.callout_log().last().unwrap().clone();
    assert_eq!(second.token, token);
    assert_eq!(second.header(":path"), Some("/v1/registry?since=3"));
    // An empty delta confirms the registry.
    vm.respond(
        token,
        Some(200),
        &RegistryDelta::new(3, 3, vec![]).unwrap().encode(),
    )
    .unwrap();
    assert_eq!(vm.stat("mazu.inbound.registry_unchanged"), 1);
    // 304 confirms too.
    let token = next_callout(&mut vm);
    vm.respond(token, Some(304), b"").unwrap();
    assert_eq!(vm.stat("mazu.inbound.registry_unchanged"), 2);
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 0);
}

#[test]
fn curator_errors_garbage_and_silence_keep_the_last_good_registry() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", r#","max_staleness_secs":3600"#));
    serve(&mut vm, &snapshot(1, &[cart.entry]));

    let token = next_callout(&mut vm);
    vm.respond(token, Some(503), b"upstream connect error")
        .unwrap();
    let token = next_callout(&mut vm);
    vm.respond(token, Some(200), b"<html>not a registry</html>")
        .unwrap();
    let token = next_callout(&mut vm);
    let mut truncated = snapshot(2, &[cart.entry]).encode();
    truncated.pop();
    vm.respond(token, Some(200), &truncated).unwrap();
    // Envoy's answer to a timed-out callout: no headers at all.
    let token = next_callout(&mut vm);
    vm.respond(token, None, b"").unwrap();
    // A curator that never answers: the filter gives up after timeout + 1 s.
    next_callout(&mut vm);
    vm.advance_ms(1_600);
    vm.tick().unwrap();
    // An older snapshot (a curator that lost its log) is refused.
    let token = next_callout(&mut vm);
    vm.respond(token, Some(200), &snapshot(0, &[]).encode())
        .unwrap();

    let stat =
        |vm: &Vm, kind: &str| vm.stat(&format!("mazu.inbound.registry_fetch_failures.{kind}"));
    assert_eq!(stat(&vm, "http_status"), 1);
    assert_eq!(stat(&vm, "bad_body"), 2);
    assert_eq!(stat(&vm, "no_answer"), 2);
    assert_eq!(stat(&vm, "rollback"), 1);
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 6);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 1);
    assert!(vm.logged("registry fetch failed: HTTP status 503; keeping version 1"));
    assert!(vm.logged("no answer (timeout or reset)"));
    let (id, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", vm.log_text());
    assert!(!vm.connection(id).unwrap().closed_downstream);
}

#[test]
fn a_registry_nobody_confirms_goes_stale() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    for (when_stale, expect) in [
        ("deny", Action::Pause),
        ("enforce_last_known", Action::Continue),
    ] {
        let extra = format!(r#","max_staleness_secs":10,"when_stale":"{when_stale}""#);
        let mut vm = configured(&mesh.config("inbound", &extra));
        serve(&mut vm, &snapshot(1, &[cart.entry]));
        // The curator goes silent for 11 s.
        for _ in 0..11 {
            vm.advance_ms(1_000);
            vm.tick().unwrap();
            for callout in vm.take_callouts() {
                vm.respond(callout.token, Some(503), b"").unwrap();
            }
        }
        assert!(vm.stat("mazu.inbound.registry_age_seconds") >= 10);
        let (_, action) = connect_and_send(&mut vm, &cart.peer());
        assert_eq!(action, expect, "{when_stale}: {}", vm.log_text());
        if expect == Action::Pause {
            assert_eq!(vm.stat("mazu.inbound.denied.registry_stale"), 1);
            // One good answer and it is fresh again.
            let token = next_callout(&mut vm);
            vm.respond(token, Some(304), b"").unwrap();
            let (_, action) = connect_and_send(&mut vm, &cart.peer());
            assert_eq!(action, Action::Continue);
            assert_eq!(vm.stat("mazu.inbound.registry_age_seconds"), 0);
        }
    }
}

#[test]
fn before_the_first_registry_connections_are_denied_by_default() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", ""));
    let (id, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Pause);
    assert!(vm.connection(id).unwrap().closed_downstream);
    assert_eq!(vm.stat("mazu.inbound.denied.registry_unavailable"), 1);
}

#[test]
fn a_parked_connection_is_resumed_when_the_registry_arrives() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let stranger = mesh.workload("shop", "stranger");
    let mut vm = configured(&mesh.config(
        "inbound",
        r#","before_registry":"park","park_timeout_ms":5000"#,
    ));
    let (good, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Pause);
    let (bad, action) = connect_and_send(&mut vm, &stranger.peer());
    assert_eq!(action, Action::Pause);
    // More bytes while parked are held too.
    assert_eq!(vm.downstream_data(good, b" world").unwrap(), Action::Pause);
    assert_eq!(vm.stat("mazu.inbound.connections_parked"), 2);
    assert_eq!(vm.stat("mazu.inbound.parked_connections"), 2);
    assert!(vm.connection(good).unwrap().forwarded_downstream.is_empty());

    serve(&mut vm, &snapshot(1, &[cart.entry]));
    let conn = vm.connection(good).unwrap();
    assert_eq!(conn.resumed, 1);
    assert_eq!(
        conn.forwarded_downstream,
        b"hello world",
        "{}",
        vm.log_text()
    );
    assert!(!conn.closed_downstream);
    assert!(vm.connection(bad).unwrap().closed_downstream);
    assert_eq!(vm.stat("mazu.inbound.connections_allowed"), 1);
    assert_eq!(vm.stat("mazu.inbound.denied.not_registered"), 1);
    assert_eq!(vm.stat("mazu.inbound.parked_connections"), 0);
    // The server's answer is the first event the resumed connection sees
    // (Envoy hands the held bytes to the next filter directly): it flows.
    assert_eq!(vm.upstream_data(good, b"echo").unwrap(), Action::Continue);
    assert_eq!(vm.connection(good).unwrap().forwarded_upstream, b"echo");
    // Later bytes flow.
    assert_eq!(vm.downstream_data(good, b"!").unwrap(), Action::Continue);
}

#[test]
fn a_parked_connection_is_closed_when_its_wait_is_over() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config(
        "inbound",
        r#","before_registry":"park","park_timeout_ms":1000"#,
    ));
    assert_eq!(vm.tick_period_ms(), 100);
    let (id, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Pause);
    // The curator does not answer.
    vm.advance_ms(900);
    vm.tick().unwrap();
    assert!(!vm.connection(id).unwrap().closed_downstream);
    vm.advance_ms(200);
    vm.tick().unwrap();
    let conn = vm.connection(id).unwrap();
    assert!(conn.closed_downstream, "{}", vm.log_text());
    assert!(conn.forwarded_downstream.is_empty());
    assert_eq!(vm.stat("mazu.inbound.denied.park_timeout"), 1);
}

#[test]
fn parking_is_bounded_and_a_closed_parked_connection_is_forgotten() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", r#","before_registry":"park","max_parked":2"#));
    let (first, _) = connect_and_send(&mut vm, &cart.peer());
    let (_, a) = connect_and_send(&mut vm, &cart.peer());
    let (third, c) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!((a, c), (Action::Pause, Action::Pause));
    assert!(vm.connection(third).unwrap().closed_downstream);
    assert_eq!(vm.stat("mazu.inbound.denied.park_overflow"), 1);
    // The client gives up on the first one: its place frees up.
    vm.remote_close(first).unwrap();
    let (fourth, _) = connect_and_send(&mut vm, &cart.peer());
    assert!(!vm.connection(fourth).unwrap().closed_downstream);
    serve(&mut vm, &snapshot(1, &[cart.entry]));
    assert_eq!(vm.stat("mazu.inbound.connections_allowed"), 2);
}

#[test]
fn vms_of_one_envoy_share_one_registry_and_one_fetcher() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let process = ProcessHandle::new();
    let config = mesh.config("inbound", "");
    let mut main = configured_in(&process, &config);
    let mut worker = configured_in(&process, &config);

    let token = next_callout(&mut main);
    // The main VM holds the lease: the worker does not call the curator.
    for _ in 0..3 {
        worker.advance_ms(1_000);
        worker.tick().unwrap();
        assert!(worker.take_callouts().is_empty());
    }
    main.respond(token, Some(200), &snapshot(1, &[cart.entry]).encode())
        .unwrap();
    // The worker picks the registry up from shared data on its tick.
    worker.tick().unwrap();
    assert!(worker.logged("registry version 1 (1 entries) from shared data"));
    let (_, action) = connect_and_send(&mut worker, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());

    // The main VM stops ticking (e.g. it is gone): the worker takes over
    // once the lease lapses (2 x refresh + timeout + 1 s = 3.5 s here).
    let mut took_over = false;
    for _ in 0..6 {
        worker.advance_ms(1_000);
        worker.tick().unwrap();
        if !worker.take_callouts().is_empty() {
            took_over = true;
            break;
        }
    }
    assert!(took_over, "{}", worker.log_text());
}

#[test]
fn a_callout_to_an_unknown_cluster_is_counted() {
    let mesh = Mesh::new();
    let config = mesh
        .config("inbound", "")
        .replace("\"cluster\":\"mazu-curator\"", "\"cluster\":\"nowhere\"");
    let mut vm = configured(&config);
    vm.tick().unwrap();
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures.dispatch"), 1);
    assert!(vm.logged("cannot call cluster \"nowhere\""));
}

#[test]
fn a_worker_that_has_not_ticked_yet_picks_the_registry_up_at_its_first_connection() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let process = ProcessHandle::new();
    let config = mesh.config("inbound", "");
    let mut main = configured_in(&process, &config);
    let mut worker = configured_in(&process, &config);
    serve(&mut main, &snapshot(1, &[cart.entry]));
    let (_, action) = connect_and_send(&mut worker, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());
    assert!(worker.logged("registry version 1 (1 entries) from shared data"));
}

#[test]
fn a_worker_behind_another_vms_newer_registry_catches_up_before_refusing() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let db = mesh.workload("shop", "db");
    let process = ProcessHandle::new();
    let config = mesh.config("inbound", "");
    let mut main = configured_in(&process, &config);
    let mut worker = configured_in(&process, &config);
    serve(&mut main, &snapshot(1, &[cart.entry]));
    worker.tick().unwrap();
    // db registers; the main VM learns it, the worker has not ticked since.
    let token = next_callout(&mut main);
    let delta = RegistryDelta::new(1, 2, vec![db.entry]).unwrap();
    main.respond(token, Some(200), &delta.encode()).unwrap();
    let (_, action) = connect_and_send(&mut worker, &db.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());
    assert!(worker.logged("registry version 2 (2 entries) from shared data"));
}
