//! The same filter `.wasm` in a real Envoy 1.40 (V8) on 127.0.0.1: a
//! registered workload's mTLS connection passes (echo round trip), an
//! unregistered one is closed after the handshake, and the filter's counters
//! show in Envoy's admin `/stats`.
//!
//! The registry comes from the real `mazu-curator` process (development
//! CRS), workloads registered through its HTTP API as an agent does. The
//! parking test needs a curator that answers 503 on demand, so it uses the
//! small [`RegistryServer`] stand-in instead.
//!
//! Needs `envoy` (`bash scripts/install-envoy.sh`), the `mazu-curator`
//! binary (`cargo build -p mazu-curator`) and `openssl`; fails, saying so,
//! when one is missing.

use core::time::Duration;

use mazu_testkit::curator::Curator;
use mazu_testkit::envoy::{Envoy, EnvoySetup, envoy_binary};
use mazu_testkit::filter_wasm::filter_wasm_path;
use mazu_testkit::fixtures::{Mesh, log};
use mazu_testkit::net::{RegistryServer, echo_server, tls_round_trip};

#[test]
fn envoy_with_the_real_curator_admits_registered_workloads_and_closes_others() {
    envoy_binary().unwrap_or_else(|e| panic!("{e}"));
    let wasm = filter_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).unwrap_or_else(|e| panic!("{e:#}"));
    let cart = curator.register(&mesh, "shop", "cart").unwrap();
    // A valid token and certificate, never registered.
    let intruder = mesh.workload("shop", "intruder");

    let echo = echo_server().unwrap();
    let plugin_config = mesh.config_with("inbound", &curator.log_members().unwrap(), "");
    let envoy = Envoy::start(&EnvoySetup {
        wasm: &wasm,
        plugin_config: &plugin_config,
        echo_port: echo.port,
        curator_port: curator.port,
    })
    .unwrap();
    envoy
        .wait_stat(
            "mazu.inbound.registry_version",
            |v| v >= 2,
            Duration::from_secs(10),
        )
        .unwrap();
    // Two VMs (the worker's and the main thread's): one fetches, the other
    // verifies what it published in Envoy's shared data and installs it.
    envoy
        .wait_stat(
            "mazu.inbound.shared_installs",
            |v| v >= 1,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(
        envoy
            .log()
            .contains("in shared data, verified against the witnessed checkpoint; read in place"),
        "{}",
        envoy.log()
    );
    assert_eq!(envoy.stat("mazu.inbound.shared_refused").unwrap_or(0), 0);

    // Registered: the bytes come back through TLS, the filter and tcp_proxy.
    let round_trip = |workload: &mazu_testkit::fixtures::Workload, message: &[u8]| {
        tls_round_trip(
            envoy.listener_port,
            Some((&workload.cert_pem, &workload.key_pem)),
            message,
            Duration::from_secs(5),
            envoy.dir(),
        )
        .unwrap()
    };
    let outcome = round_trip(&cart, b"ping from cart\n");
    assert_eq!(
        outcome.received,
        b"ping from cart\n",
        "no echo for the registered workload\nclient: {}\nenvoy:\n{}",
        outcome.stderr,
        envoy.log()
    );

    // Unregistered: the handshake succeeds, then the filter closes it.
    let outcome = round_trip(&intruder, b"ping from intruder\n");
    assert!(
        outcome.received.is_empty(),
        "the unregistered workload got {:?}",
        String::from_utf8_lossy(&outcome.received)
    );

    // No client certificate: refused in the handshake (trusted_ca present).
    let outcome = tls_round_trip(
        envoy.listener_port,
        None,
        b"ping without a certificate\n",
        Duration::from_secs(3),
        envoy.dir(),
    )
    .unwrap();
    assert!(outcome.received.is_empty());

    // Again: served from the verdict cache.
    assert_eq!(round_trip(&cart, b"again\n").received, b"again\n");

    // A workload registered now reaches the filter with the next records.
    let db = curator.register(&mesh, "shop", "db").unwrap();
    envoy
        .wait_stat(
            "mazu.inbound.registry_version",
            |v| v >= 4,
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        round_trip(&db, b"ping from db\n").received,
        b"ping from db\n"
    );

    let allowed = envoy
        .wait_stat(
            "mazu.inbound.connections_allowed",
            |v| v >= 3,
            Duration::from_secs(5),
        )
        .unwrap();
    let denied = envoy
        .wait_stat(
            "mazu.inbound.denied.not_registered",
            |v| v >= 1,
            Duration::from_secs(5),
        )
        .unwrap();
    let stats: Vec<(String, i64)> = envoy
        .stats("wasmcustom.mazu")
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.starts_with("wasmcustom.mazu."))
        .collect();
    println!("Envoy admin /stats?filter=wasmcustom.mazu:");
    for (name, value) in &stats {
        println!("  {name}: {value}");
    }
    assert_eq!(allowed, 3);
    assert_eq!(denied, 1);
    assert_eq!(envoy.stat("mazu.inbound.connections_denied").unwrap(), 1);
    assert!(
        envoy.stat("mazu.inbound.verdict_cache_hits").unwrap() >= 1,
        "{stats:?}"
    );
    assert!(
        envoy.stat("mazu.inbound.registry_updates").unwrap() >= 2,
        "{stats:?}"
    );
    assert_eq!(
        envoy.stat("mazu.inbound.registry_fetch_failures").unwrap(),
        0,
        "{stats:?}"
    );
    assert!(
        envoy
            .log()
            .contains("reason=not_registered peer=spiffe://cluster.local/ns/shop/sa/intruder"),
        "denial not logged:\n{}",
        envoy.log()
    );
}

#[test]
fn envoy_parks_a_connection_until_the_registry_arrives() {
    envoy_binary().unwrap_or_else(|e| panic!("{e}"));
    let wasm = filter_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");

    let echo = echo_server().unwrap();
    let registry = RegistryServer::start(log(&[cart.entry])).unwrap();
    registry.set_unavailable(true);
    let plugin_config = mesh.config(
        "inbound",
        r#","before_registry":"park","park_timeout_ms":8000"#,
    );
    let envoy = Envoy::start(&EnvoySetup {
        wasm: &wasm,
        plugin_config: &plugin_config,
        echo_port: echo.port,
        curator_port: registry.port(),
    })
    .unwrap();
    envoy
        .wait_stat(
            "mazu.inbound.registry_fetch_failures.http_status",
            |v| v >= 1,
            Duration::from_secs(10),
        )
        .unwrap();

    // The curator comes back 1.5 s after the client connected: the parked
    // connection is decided then and its bytes flow.
    let comes_back = std::thread::spawn({
        let registry_port = registry.port();
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            registry_port
        }
    });
    let client = std::thread::spawn({
        let (cert, key, port, dir) = (
            cart.cert_pem.clone(),
            cart.key_pem.clone(),
            envoy.listener_port,
            envoy.dir().to_owned(),
        );
        move || {
            tls_round_trip(
                port,
                Some((&cert, &key)),
                b"parked ping\n",
                Duration::from_secs(8),
                &dir,
            )
        }
    });
    comes_back.join().unwrap();
    envoy
        .wait_stat(
            "mazu.inbound.connections_parked",
            |v| v >= 1,
            Duration::from_secs(5),
        )
        .unwrap();
    registry.set_unavailable(false);
    let outcome = client.join().unwrap().unwrap();
    assert_eq!(
        outcome.received,
        b"parked ping\n",
        "client: {}\nenvoy:\n{}",
        outcome.stderr,
        envoy.log()
    );
    assert_eq!(envoy.stat("mazu.inbound.connections_allowed").unwrap(), 1);
    assert_eq!(envoy.stat("mazu.inbound.connections_denied").unwrap(), 0);
}

#[test]
fn envoy_refuses_a_bad_plugin_configuration_with_the_reason_in_its_log() {
    envoy_binary().unwrap_or_else(|e| panic!("{e}"));
    let wasm = filter_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let mesh = Mesh::new();
    let echo = echo_server().unwrap();
    let registry = RegistryServer::start(log(&[])).unwrap();
    let plugin_config = mesh.config("inbound", r#","park_timeout_ms":0"#);
    let outcome = Envoy::start(&EnvoySetup {
        wasm: &wasm,
        plugin_config: &plugin_config,
        echo_port: echo.port,
        curator_port: registry.port(),
    });
    let message = match outcome {
        Ok(envoy) => envoy.log(),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        message.contains(
            "mazu-filter: invalid plugin configuration: park_timeout_ms: must be between 1 and 60000, got 0"
        ),
        "{message}"
    );
}
