//! Per-connection cost of the real filter `.wasm` inside wasmtime.
//!
//! - `data_event_noop`: one `on_downstream_data` on an already allowed
//!   connection (the filter only checks its state): the host↔guest round trip;
//! - `connection_lifecycle`: context create, `on_new_connection`, close,
//!   done, delete, with no data event: the host-side bookkeeping;
//! - `connection_cached`: the lifecycle plus the first data event whose
//!   verdict comes from the cache (reads `mtls` and the digest property);
//! - `connection_cold_es256` / `connection_cold_rs256`: the same with a cache
//!   miss every time (two workloads alternating through a one-entry cache):
//!   PEM + X.509 parse, token signature check, registry lookup;
//! - `connection_cold_es256_vouched`: the cold ES256 connection with the
//!   handshake validator's word on the signature only (`mazu_filter::vouch`,
//!   `v1`): every check but the signature;
//! - `connection_cold_vouched_verdict`: the cold connection with the
//!   validator's verdict (`v2`), as behind the validator: its word read and
//!   checked against this VM's registry, no certificate read or parsed.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer};
use mazu_filter::vouch::{self, TrustDigest};
use mazu_identity::WorkloadId;
use mazu_testkit::fixtures::{Mesh, Workload, WorkloadSpec, log};
use mazu_wasm_tests::abi::Action;
use mazu_wasm_tests::harness::inbound_with;
use mazu_wasm_tests::peer::WorkloadPeer as _;
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use rand::rngs::OsRng;

fn connection(vm: &mut Vm, peer: &PeerProperties, expect: Action) {
    let (id, _) = vm.connect(Side::Downstream, peer).expect("connect");
    let action = vm.downstream_data(id, b"x").expect("data");
    assert_eq!(action, expect);
    vm.remote_close(id).expect("close");
    vm.forget_connection(id);
    vm.clear_logs();
}

/// Connections from the two `peers` in turn: with a one-entry verdict
/// cache, every one is a cache miss.
fn alternating(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    vm: &mut Vm,
    peers: &[PeerProperties; 2],
) {
    let mut turn = 0usize;
    group.bench_function(name, |bench| {
        bench.iter(|| {
            turn ^= 1;
            connection(vm, &peers[turn], Action::Continue);
        })
    });
}

fn mesh_with(alg: Algorithm) -> Mesh {
    Mesh {
        issuer: DevIssuer::generate(alg, DEFAULT_ISSUER_URL, &mut OsRng).expect("issuer"),
    }
}

fn two_workloads(mesh: &Mesh) -> (Workload, Workload) {
    let a = mesh.workload_from(&mesh.issuer, &WorkloadSpec::new("shop", "a"));
    let b = mesh.workload_from(&mesh.issuer, &WorkloadSpec::new("shop", "b"));
    (a, b)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter_in_wasmtime");

    let mesh = mesh_with(Algorithm::Es256);
    let (a, b) = two_workloads(&mesh);
    let registry = log(&[a.entry, b.entry]);

    let mut vm = inbound_with(&mesh, "", &registry);
    let (id, _) = vm.connect(Side::Downstream, &a.peer()).expect("connect");
    assert_eq!(
        vm.downstream_data(id, b"x").expect("data"),
        Action::Continue
    );
    group.bench_function("data_event_noop", |bench| {
        bench.iter(|| vm.downstream_data(id, b"x").expect("data"))
    });

    let mut vm = inbound_with(&mesh, "", &registry);
    let peer = a.peer();
    group.bench_function("connection_lifecycle", |bench| {
        bench.iter(|| {
            let (id, _) = vm.connect(Side::Downstream, &peer).expect("connect");
            vm.remote_close(id).expect("close");
            vm.forget_connection(id);
        })
    });

    let mut vm = inbound_with(&mesh, "", &registry);
    connection(&mut vm, &peer, Action::Continue);
    group.bench_function("connection_cached", |bench| {
        bench.iter(|| connection(&mut vm, &peer, Action::Continue))
    });

    for (name, alg) in [
        ("connection_cold_es256", Algorithm::Es256),
        ("connection_cold_rs256", Algorithm::Rs256),
    ] {
        let mesh = mesh_with(alg);
        let (a, b) = two_workloads(&mesh);
        let registry = log(&[a.entry, b.entry]);
        let mut vm = inbound_with(&mesh, r#","verdict_cache_entries":1"#, &registry);
        let peers = [a.peer(), b.peer()];
        alternating(&mut group, name, &mut vm, &peers);
        assert_eq!(
            vm.stat("mazu.inbound.verdict_cache_hits"),
            0,
            "{name} hit the cache"
        );
    }
    let mesh = mesh_with(Algorithm::Es256);
    let (a, b) = two_workloads(&mesh);
    let registry = log(&[a.entry, b.entry]);
    let config: serde_json::Value =
        serde_json::from_str(&mesh.config("inbound", "")).expect("config JSON");
    let trust = TrustDigest::of(&config["trust"]);
    let vouched = |workload: &Workload| PeerProperties {
        vouch: Some(vouch::encode_signature(
            &trust,
            &WorkloadId::of_token(workload.token.as_bytes()),
        )),
        ..workload.peer()
    };
    let mut vm = inbound_with(&mesh, r#","verdict_cache_entries":1"#, &registry);
    let peers = [vouched(&a), vouched(&b)];
    alternating(&mut group, "connection_cold_es256_vouched", &mut vm, &peers);
    assert_eq!(vm.stat("mazu.inbound.verdict_cache_hits"), 0);
    assert_eq!(vm.stat("mazu.inbound.token_signatures_verified"), 0);

    let verdict = |workload: &Workload| PeerProperties {
        vouch: Some(vouch::encode_verdict(&trust, &workload.vouched_verdict())),
        ..workload.peer()
    };
    let mut vm = inbound_with(&mesh, r#","verdict_cache_entries":1"#, &registry);
    let peers = [verdict(&a), verdict(&b)];
    alternating(
        &mut group,
        "connection_cold_vouched_verdict",
        &mut vm,
        &peers,
    );
    assert_eq!(vm.stat("mazu.inbound.verdict_cache_hits"), 0);
    assert_eq!(vm.stat("mazu.inbound.token_signatures_vouched"), 0);
    assert!(vm.stat("mazu.inbound.verdicts_vouched") > 0);
    group.finish();
}

criterion_group!(connection_benches, benches);
criterion_main!(connection_benches);
