//! The registry cache of the real filter `.wasm`: callouts (checkpoint, then
//! records), curator failures, staleness, parking, and sharing between VMs.

use mazu_testkit::fixtures::{Mesh, Workload, log};
use mazu_testkit::witnessed::TestLog;
use mazu_wasm_tests::abi::Action;
use mazu_wasm_tests::callouts::AnswerCallouts as _;
use mazu_wasm_tests::harness::{configured, configured_in, next_callout, next_callout_full, serve};
use mazu_wasm_tests::peer::WorkloadPeer as _;
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use mazu_wasm_tests::state::ProcessHandle;

fn connect_and_send(vm: &mut Vm, peer: &PeerProperties) -> (u32, Action) {
    let (id, _) = vm.connect(Side::Downstream, peer).expect("connect");
    let action = vm.downstream_data(id, b"hello").expect("data");
    (id, action)
}

fn failures(vm: &Vm, kind: &str) -> i64 {
    vm.stat(&format!("mazu.inbound.registry_fetch_failures.{kind}"))
}

#[test]
fn callouts_ask_for_the_checkpoint_then_for_the_records_since_the_size_followed() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let db = mesh.workload("shop", "db");
    let mut curator = log(&[cart.entry]);
    let mut vm = configured(&mesh.config("inbound", ""));
    let first = next_callout_full(&mut vm);
    assert_eq!(first.cluster, "mazu-curator");
    assert_eq!(first.header(":method"), Some("GET"));
    assert_eq!(first.header(":path"), Some("/v1/checkpoint"));
    assert_eq!(first.header(":authority"), Some("curator.mazu.test"));
    assert_eq!(first.timeout_ms, 500);
    curator.answer(&mut vm, &first);
    // The checkpoint is larger than the empty log and carries the state
    // line: the witnessed state, at once, not the history.
    let state = vm.take_callouts().pop().expect("state callout");
    assert_eq!(state.header(":path"), Some("/v1/log/state?size=2"));
    curator.answer(&mut vm, &state);
    assert!(
        vm.logged("registry version 2 (1 entries) derived from the witnessed log"),
        "{}",
        vm.log_text()
    );
    let (_, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Continue);

    // The same checkpoint again: no records, the registry is confirmed.
    let answered = curator.serve(&mut vm);
    assert_eq!(answered.len(), 1);
    assert_eq!(vm.stat("mazu.inbound.registry_unchanged"), 1);

    // The log grows: only the new records are asked for.
    curator.register(&db.entry);
    let answered = curator.serve(&mut vm);
    let paths: Vec<_> = answered.iter().map(|c| c.header(":path")).collect();
    assert_eq!(
        paths,
        [
            Some("/v1/checkpoint"),
            Some("/v1/log/records?start=2&end=4")
        ]
    );
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
    assert_eq!(vm.stat("mazu.inbound.registry_updates"), 2);
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 0);
    let (_, action) = connect_and_send(&mut vm, &db.peer());
    assert_eq!(action, Action::Continue, "{}", vm.log_text());
}

#[test]
fn records_come_in_pages_that_fit_max_body_bytes() {
    let mesh = Mesh::new();
    let workloads: Vec<_> = (0..20)
        .map(|i| mesh.workload("shop", &format!("w{i}")))
        .collect();
    let entries: Vec<_> = workloads.iter().map(|w| w.entry).collect();
    let curator = log(&entries);
    // 1024 bytes hold 8 records of at most 114 bytes, and not the state of
    // 20 ids (85 bytes each): the filter falls back to records.
    let members = format!(
        r#"{},"max_body_bytes":1024"#,
        mazu_testkit::witnessed::log_members()
    );
    let mut vm = configured(&mesh.config_with("inbound", &members, ""));
    let answered = curator.serve(&mut vm);
    let paths: Vec<_> = answered.iter().filter_map(|c| c.header(":path")).collect();
    assert_eq!(
        paths,
        [
            "/v1/checkpoint",
            "/v1/log/state?size=40",
            "/v1/log/records?start=0&end=8",
            "/v1/log/records?start=8&end=16",
            "/v1/log/records?start=16&end=24",
            "/v1/log/records?start=24&end=32",
            "/v1/log/records?start=32&end=40",
        ]
    );
    assert!(vm.logged("the follower state at size 40 is unavailable"));
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 0);
    assert_eq!(vm.stat("mazu.inbound.registry_entries"), 20);
    for workload in &workloads {
        let (_, action) = connect_and_send(&mut vm, &workload.peer());
        assert_eq!(action, Action::Continue);
    }
}

#[test]
fn curator_errors_garbage_and_silence_keep_the_last_good_registry() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut curator = log(&[cart.entry]);
    let mut vm = configured(&mesh.config("inbound", r#","max_staleness_secs":3600"#));
    serve(&mut vm, &curator);
    curator.register(&mesh.workload("shop", "db").entry);

    let token = next_callout(&mut vm);
    vm.respond(token, Some(503), b"upstream connect error")
        .unwrap();
    let token = next_callout(&mut vm);
    vm.respond(token, Some(200), b"<html>not a checkpoint</html>")
        .unwrap();
    // A page of records that does not decode.
    let checkpoint = next_callout_full(&mut vm);
    curator.answer(&mut vm, &checkpoint);
    let records = vm.take_callouts().pop().expect("records callout");
    let mut truncated = curator.records_bytes(2, 4);
    truncated.pop();
    vm.respond(records.token, Some(200), &truncated).unwrap();
    // Envoy's answer to a timed-out callout: no headers at all.
    let token = next_callout(&mut vm);
    vm.respond(token, None, b"").unwrap();
    // A curator that never answers: the filter gives up after timeout + 1 s.
    next_callout(&mut vm);
    vm.advance_ms(1_600);
    vm.tick().unwrap();
    // A 304 is not an answer any more.
    let token = next_callout(&mut vm);
    vm.respond(token, Some(304), b"").unwrap();

    assert_eq!(failures(&vm, "http_status"), 2);
    assert_eq!(failures(&vm, "checkpoint_signature"), 1);
    assert_eq!(failures(&vm, "records_undecodable"), 1);
    assert_eq!(failures(&vm, "no_answer"), 2);
    assert_eq!(vm.stat("mazu.inbound.registry_fetch_failures"), 6);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 2);
    assert!(vm.logged("registry fetch failed: HTTP status 503; keeping version 2"));
    assert!(vm.logged("no answer (timeout or reset)"));
    let (id, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", vm.log_text());
    assert!(!vm.connection(id).unwrap().closed_downstream);
    // The curator is back: the records are taken.
    serve(&mut vm, &curator);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 4);
}

#[test]
fn a_registry_nobody_confirms_goes_stale() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let curator = log(&[cart.entry]);
    for (when_stale, expect) in [
        ("deny", Action::Pause),
        ("enforce_last_known", Action::Continue),
    ] {
        let extra = format!(r#","max_staleness_secs":10,"when_stale":"{when_stale}""#);
        let mut vm = configured(&mesh.config("inbound", &extra));
        serve(&mut vm, &curator);
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
            // One freshly witnessed checkpoint and it is fresh again.
            serve(&mut vm, &curator);
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
fn the_empty_log_is_an_empty_registry() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config("inbound", ""));
    let answered = TestLog::new().serve(&mut vm);
    assert_eq!(answered.len(), 1, "nothing to fetch");
    let (_, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Pause);
    assert_eq!(vm.stat("mazu.inbound.denied.not_registered"), 1);
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

    serve(&mut vm, &log(&[cart.entry]));
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
fn a_server_first_greeting_before_the_registry_is_never_parked() {
    // Envoy never resumes a paused write: a server-first protocol's greeting
    // (the first event, deciding the client) must be decided at once, not
    // parked, even with `before_registry: park`.
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = configured(&mesh.config(
        "inbound",
        r#","before_registry":"park","park_timeout_ms":5000"#,
    ));
    let (id, _) = vm.connect(Side::Downstream, &cart.peer()).unwrap();
    assert_eq!(
        vm.upstream_data(id, b"220 ready").unwrap(),
        Action::Pause,
        "{}",
        vm.log_text()
    );
    let conn = vm.connection(id).unwrap();
    assert!(conn.closed_downstream, "refused, not left paused");
    assert!(conn.forwarded_upstream.is_empty(), "the greeting leaked");
    assert_eq!(vm.stat("mazu.inbound.connections_parked"), 0);
    assert_eq!(vm.stat("mazu.inbound.parked_connections"), 0);
    assert_eq!(vm.stat("mazu.inbound.denied.registry_unavailable"), 1);
    // A client-first connection on the same plugin is still parked.
    let (_, action) = connect_and_send(&mut vm, &cart.peer());
    assert_eq!(action, Action::Pause);
    assert_eq!(vm.stat("mazu.inbound.connections_parked"), 1);
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
    serve(&mut vm, &log(&[cart.entry]));
    assert_eq!(vm.stat("mazu.inbound.connections_allowed"), 2);
}

/// Replaces the shared entry whose key ends in `suffix` with `edit` of it.
fn tamper_shared(process: &ProcessHandle, suffix: &str, edit: impl Fn(&mut Vec<u8>)) {
    let mut guard = process.lock();
    let key = guard
        .shared_data
        .keys()
        .find(|k| k.ends_with(suffix))
        .cloned()
        .unwrap_or_else(|| panic!("no shared entry {suffix}"));
    let entry = guard.shared_data.get_mut(&key).expect("entry");
    edit(&mut entry.0);
    entry.1 += 1;
}

#[test]
fn a_shared_registry_that_does_not_verify_is_never_installed() {
    // Any plugin in Istio's shared namespace can write the registry's
    // entries: a VM installs only what verifies under its own configuration.
    for (suffix, what) in [
        (
            // The piece of the state holding the entries (slot 0, piece 1).
            "|state|0|1",
            "does not hash to the witnessed checkpoint's state line",
        ),
        ("|checkpoint", "does not verify with the pinned key"),
    ] {
        let mesh = Mesh::new();
        let cart = mesh.workload("shop", "cart");
        let curator = log(&[cart.entry]);
        let process = ProcessHandle::new();
        let config = mesh.config("inbound", "");
        let mut main = configured_in(&process, &config);
        let mut worker = configured_in(&process, &config);
        let first = next_callout_full(&mut main);
        curator.answer(&mut main, &first);
        let records = main.take_callouts().pop().expect("records callout");
        curator.answer(&mut main, &records);
        // One byte changed past the entry's 8-byte header: a flipped bit in
        // the state, or in the note's signature line.
        tamper_shared(&process, suffix, |value| {
            let at = value.len() - 4;
            value[at] ^= 0x01;
        });
        worker.tick().unwrap();
        worker.tick().unwrap();
        let refusals = worker
            .log_text()
            .matches("the registry in shared data does not verify")
            .count();
        assert_eq!(
            refusals,
            1,
            "{suffix}: refused once, not every tick: {}",
            worker.log_text()
        );
        assert!(worker.logged(what), "{suffix}: {}", worker.log_text());
        assert_eq!(worker.stat("mazu.inbound.shared_refused"), 1, "{suffix}");
        assert_eq!(worker.stat("mazu.inbound.shared_installs"), 0, "{suffix}");
        // Nothing was installed: the worker has no registry to admit cart.
        let (_, action) = connect_and_send(&mut worker, &cart.peer());
        assert_eq!(action, Action::Pause, "{suffix}: {}", worker.log_text());
        assert_eq!(worker.stat("mazu.inbound.denied.registry_unavailable"), 1);
        // The main VM's own copy is unaffected.
        let (_, action) = connect_and_send(&mut main, &cart.peer());
        assert_eq!(action, Action::Continue, "{suffix}: {}", main.log_text());
    }
}

/// Two VMs of one process: the main one has fetched a log registering
/// cart (and published it), the worker has not looked at shared data yet.
fn a_fetching_vm_and_a_worker() -> (Workload, ProcessHandle, Vm, Vm) {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let process = ProcessHandle::new();
    let config = mesh.config("inbound", "");
    let mut main = configured_in(&process, &config);
    let worker = configured_in(&process, &config);
    serve(&mut main, &log(&[cart.entry]));
    (cart, process, main, worker)
}

#[test]
fn a_piece_overwritten_after_it_was_verified_is_never_used() {
    // A VM that installed from shared data reads the registry there, in
    // place: a piece changed since it was verified gives no answer at all.
    let (cart, process, mut main, mut worker) = a_fetching_vm_and_a_worker();
    worker.tick().unwrap();
    assert!(
        worker.logged("in shared data, verified"),
        "{}",
        worker.log_text()
    );
    // Another plugin flips a bit of cart's registered key hash.
    tamper_shared(&process, "|state|0|1", |value| {
        let at = value.len() - 20;
        value[at] ^= 0x01;
    });
    let (_, action) = connect_and_send(&mut worker, &cart.peer());
    assert_eq!(action, Action::Pause, "{}", worker.log_text());
    assert_eq!(worker.stat("mazu.inbound.denied.registry_unreadable"), 1);
    assert_eq!(worker.stat("mazu.inbound.connections_allowed"), 0);
    // The main VM decides with the registry it derived itself.
    let (_, action) = connect_and_send(&mut main, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", main.log_text());
}

#[test]
fn vms_of_one_envoy_share_one_registry_and_one_fetcher() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let db = mesh.workload("shop", "db");
    let mut curator = log(&[cart.entry]);
    let process = ProcessHandle::new();
    let config = mesh.config("inbound", "");
    let mut main = configured_in(&process, &config);
    let mut worker = configured_in(&process, &config);

    let first = next_callout_full(&mut main);
    // The main VM holds the lease: the worker does not call the curator.
    for _ in 0..3 {
        worker.advance_ms(1_000);
        worker.tick().unwrap();
        assert!(worker.take_callouts().is_empty());
    }
    curator.answer(&mut main, &first);
    let records = main.take_callouts().pop().expect("records callout");
    curator.answer(&mut main, &records);
    // The worker picks the registry up from shared data on its tick.
    worker.tick().unwrap();
    assert!(
        worker.logged("registry version 2 (1 entries) in shared data, verified"),
        "{}",
        worker.log_text()
    );
    let (_, action) = connect_and_send(&mut worker, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());

    // The main VM stops ticking (e.g. it is gone): the worker takes over
    // once the lease lapses (2 x refresh + timeout + 1 s = 3.5 s here),
    // from the empty log (its own follower has nothing yet).
    curator.register(&db.entry);
    let mut took_over = None;
    for _ in 0..6 {
        worker.advance_ms(1_000);
        worker.tick().unwrap();
        if let Some(callout) = worker.take_callouts().pop() {
            took_over = Some(callout);
            break;
        }
    }
    let checkpoint = took_over.unwrap_or_else(|| panic!("{}", worker.log_text()));
    curator.answer(&mut worker, &checkpoint);
    let state = worker.take_callouts().pop().expect("state callout");
    assert_eq!(state.header(":path"), Some("/v1/log/state?size=4"));
    curator.answer(&mut worker, &state);
    assert_eq!(worker.stat("mazu.inbound.registry_version"), 4);
    let (_, action) = connect_and_send(&mut worker, &db.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());
}

#[test]
fn a_callout_to_an_unknown_cluster_is_counted() {
    let mesh = Mesh::new();
    let config = mesh
        .config("inbound", "")
        .replace("\"cluster\":\"mazu-curator\"", "\"cluster\":\"nowhere\"");
    let mut vm = configured(&config);
    vm.tick().unwrap();
    assert_eq!(failures(&vm, "dispatch"), 1);
    assert!(vm.logged("cannot call cluster \"nowhere\""));
}

#[test]
fn a_worker_that_has_not_ticked_yet_picks_the_registry_up_at_its_first_connection() {
    let (cart, _process, _main, mut worker) = a_fetching_vm_and_a_worker();
    let (_, action) = connect_and_send(&mut worker, &cart.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());
    assert!(worker.logged("registry version 2 (1 entries) in shared data"));
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
    let mut curator = log(&[cart.entry]);
    serve(&mut main, &curator);
    worker.tick().unwrap();
    // db registers; the main VM learns it, the worker has not ticked since.
    curator.register(&db.entry);
    serve(&mut main, &curator);
    let (_, action) = connect_and_send(&mut worker, &db.peer());
    assert_eq!(action, Action::Continue, "{}", worker.log_text());
    assert!(worker.logged("registry version 4 (2 entries) in shared data"));
}
