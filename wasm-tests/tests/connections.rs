//! Connections through the real filter `.wasm` in the wasmtime host: allowed
//! peers, every deny reason, missing client certificates, the outbound check.

use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer};
use mazu_testkit::fixtures::{
    MAZU_OID_DER, Mesh, WorkloadSpec, log, push_not_after_to_2049, replace_once, unix_now,
};
use mazu_wasm_tests::abi::{Action, LogLevel};
use mazu_wasm_tests::harness::{self, configured, inbound_with, serve};
use mazu_wasm_tests::peer::WorkloadPeer as _;
use mazu_wasm_tests::plugin::{PeerProperties, Side, Vm};
use rand::rngs::OsRng;

const ALLOWED: &str = "mazu.inbound.connections_allowed";
const DENIED: &str = "mazu.inbound.connections_denied";

/// Opens an inbound connection for `peer`, sends a first byte; returns the
/// connection id and the filter's action.
fn first_bytes(vm: &mut Vm, peer: &PeerProperties) -> (u32, Action) {
    let (id, action) = vm.connect(Side::Downstream, peer).expect("connect");
    assert_eq!(
        action,
        Action::Continue,
        "nothing is decided before the handshake"
    );
    let action = vm.downstream_data(id, b"hello").expect("data");
    (id, action)
}

fn assert_allowed(vm: &mut Vm, peer: &PeerProperties) -> u32 {
    let (id, action) = first_bytes(vm, peer);
    let conn = vm.connection(id).expect("connection");
    assert_eq!(action, Action::Continue, "{}", vm.log_text());
    assert!(!conn.closed_downstream);
    assert_eq!(conn.forwarded_downstream, b"hello");
    id
}

fn assert_denied(vm: &mut Vm, peer: &PeerProperties, reason: &str) {
    let counter = format!("mazu.inbound.denied.{reason}");
    let before = vm.stat(&counter);
    let (id, action) = first_bytes(vm, peer);
    let conn = vm.connection(id).expect("connection");
    assert_eq!(action, Action::Pause, "{reason}: {}", vm.log_text());
    assert!(conn.closed_downstream, "{reason}: not closed");
    assert!(
        conn.forwarded_downstream.is_empty(),
        "{reason}: bytes leaked"
    );
    assert_eq!(vm.stat(&counter), before + 1, "{reason}: {}", vm.log_text());
    let line = format!("reason={reason} ");
    assert!(
        vm.logs()
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains(&line)),
        "{reason}: no denial log line:\n{}",
        vm.log_text()
    );
}

#[test]
fn the_filter_imports_only_what_the_host_knows() {
    let imports = harness::module().imports();
    for import in &imports {
        assert!(
            import.starts_with("env.proxy_") || import.starts_with("wasi_snapshot_preview1."),
            "unexpected import {import}"
        );
    }
    let wasi: Vec<&String> = imports.iter().filter(|i| i.starts_with("wasi")).collect();
    assert!(wasi.len() <= 8, "{wasi:?}");
}

#[test]
fn a_registered_peer_passes_and_is_then_served_from_the_cache() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    assert_allowed(&mut vm, &cart.peer());
    assert_allowed(&mut vm, &cart.peer());
    assert_eq!(vm.stat(ALLOWED), 2);
    assert_eq!(vm.stat("mazu.inbound.verdict_cache_misses"), 1);
    assert_eq!(vm.stat("mazu.inbound.verdict_cache_hits"), 1);
    assert_eq!(vm.stat(DENIED), 0);
    // Version = log size: one bind and one reveal.
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 2);
    assert_eq!(vm.stat("mazu.inbound.registry_entries"), 1);
}

#[test]
fn data_after_the_decision_flows_and_closing_is_clean() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    let id = assert_allowed(&mut vm, &cart.peer());
    assert_eq!(vm.downstream_data(id, b" world").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data(id, b"reply").unwrap(), Action::Continue);
    let conn = vm.connection(id).unwrap();
    assert_eq!(conn.forwarded_downstream, b"hello world");
    assert_eq!(conn.forwarded_upstream, b"reply");
    vm.remote_close(id).unwrap();
    assert!(vm.connection(id).unwrap().deleted);
}

#[test]
fn a_server_first_protocol_is_checked_on_the_servers_first_bytes() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let intruder = mesh.workload("shop", "intruder");
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    let (id, _) = vm.connect(Side::Downstream, &cart.peer()).unwrap();
    assert_eq!(
        vm.upstream_data(id, b"220 ready").unwrap(),
        Action::Continue
    );
    let (id, _) = vm.connect(Side::Downstream, &intruder.peer()).unwrap();
    assert_eq!(vm.upstream_data(id, b"220 ready").unwrap(), Action::Pause);
    let conn = vm.connection(id).unwrap();
    assert!(conn.closed_downstream && conn.forwarded_upstream.is_empty());
}

#[test]
fn no_client_certificate_is_closed() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    // Envoy lets a certificate-less client through a validation context
    // without a trusted CA: `mtls` is false, and there is no certificate.
    let no_cert = PeerProperties {
        mtls: Some(false),
        peer_certificate: None,
        digest: None,
        ..PeerProperties::default()
    };
    assert_denied(&mut vm, &no_cert, "no_client_certificate");
    // Not TLS at all: no `mtls` property.
    assert_denied(&mut vm, &PeerProperties::default(), "no_client_certificate");
    // `mtls` false must win even if a certificate were reported.
    let mut lying = cart.peer();
    lying.mtls = Some(false);
    assert_denied(&mut vm, &lying, "no_client_certificate");
    // mTLS but no certificate property.
    let missing = PeerProperties {
        mtls: Some(true),
        peer_certificate: None,
        digest: None,
        ..PeerProperties::default()
    };
    assert_denied(&mut vm, &missing, "no_peer_certificate");
    assert_eq!(vm.stat(DENIED), 4);
}

#[test]
fn a_proxy_without_the_certificate_attribute_is_reported_once_loudly() {
    // An Envoy older than `connection.peer_certificate` reports a TLS peer
    // (mTLS, the certificate's digest) but not its certificate.
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    let mut old_envoy = cart.peer();
    old_envoy.peer_certificate = None;
    assert_denied(&mut vm, &old_envoy, "no_peer_certificate");
    assert_denied(&mut vm, &old_envoy, "no_peer_certificate");
    let reports: Vec<_> = vm
        .logs()
        .iter()
        .filter(|l| {
            l.level == LogLevel::Error
                && l.message
                    .contains("does not provide the attribute connection.peer_certificate")
        })
        .collect();
    assert_eq!(reports.len(), 1, "{}", vm.log_text());
    // No certificate and no digest (no TLS peer): not this Envoy's fault.
    let mut vm = inbound_with(&mesh, "", &log(&[cart.entry]));
    let missing = PeerProperties {
        mtls: Some(true),
        peer_certificate: None,
        digest: None,
        ..PeerProperties::default()
    };
    assert_denied(&mut vm, &missing, "no_peer_certificate");
    assert!(
        !vm.logs().iter().any(|l| l.level == LogLevel::Error),
        "{}",
        vm.log_text()
    );
}

/// One case per deny reason of the verdict, each from a real failing input.
#[test]
fn every_verdict_deny_reason_closes_the_connection() {
    let mesh = Mesh::new();
    let now = unix_now();
    let good = mesh.workload("shop", "good");

    // Registry-side failures.
    let unregistered = mesh.workload("shop", "stranger");
    let revoked = mesh.workload("shop", "revoked");
    let mut revoked_entry = revoked.entry;
    revoked_entry.revoked = true;
    let lapsed = mesh.workload("shop", "lapsed");
    let mut lapsed_entry = lapsed.entry;
    lapsed_entry.token_expiry = now - 3600;
    let stolen = mesh.workload("shop", "stolen");
    let mut stolen_entry = stolen.entry;
    stolen_entry.spki_hash = good.entry.spki_hash; // the token registered with another key

    // Token failures.
    let other_issuer =
        DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut OsRng).unwrap();
    let unknown_kid = mesh.workload_from(&other_issuer, &WorkloadSpec::new("shop", "kid"));
    let same_key_other_url = DevIssuer::from_key(mesh.issuer.key().clone(), "https://evil.example");
    let wrong_issuer = mesh.workload_from(&same_key_other_url, &WorkloadSpec::new("shop", "iss"));
    let mut spec = WorkloadSpec::new("shop", "aud");
    spec.audiences = vec!["kubernetes".into()];
    let wrong_audience = mesh.workload_from(&mesh.issuer, &spec);
    let mut spec = WorkloadSpec::new("shop", "nbf");
    spec.not_before = Some(now + 3600);
    let not_yet = mesh.workload_from(&mesh.issuer, &spec);
    let bad_signature = {
        let token = good.token.clone();
        let flipped = flip_last_signature_char(&token);
        mesh.workload_with_token(flipped, &WorkloadSpec::new("shop", "good"))
    };
    // The builder refuses `alg: none`; swap it into a good certificate.
    let alg_none = {
        let parts = mazu_dev_issuer::decode_unverified(&good.token).unwrap();
        let claims = String::from_utf8(parts.claims).unwrap();
        // "none" is one byte shorter than "ES256": lengthen the kid by one.
        let header = format!(r#"{{"alg":"none","kid":"{}x"}}"#, mesh.issuer.kid());
        let token = mazu_dev_issuer::unsigned_token(&header, &claims, &parts.signature);
        good.with_token(&token)
    };
    // Registered under the good certificate's key, so that the verdict gets
    // past the registry (checked before any token) to the token itself.
    let alg_none_entry = {
        let parts = mazu_dev_issuer::decode_unverified(&good.token).unwrap();
        let claims = String::from_utf8(parts.claims).unwrap();
        let header = format!(r#"{{"alg":"none","kid":"{}x"}}"#, mesh.issuer.kid());
        let token = mazu_dev_issuer::unsigned_token(&header, &claims, &parts.signature);
        mazu_identity::RegistryEntry {
            workload_id: mazu_identity::WorkloadId::of_token(token.as_bytes()),
            slot: 50,
            ..good.entry
        }
    };

    // Certificate failures.
    let mut spec = WorkloadSpec::new("shop", "expired");
    spec.issued_at = now - 7200;
    spec.certificate_time = now - 7200;
    spec.certificate_lifetime = 600;
    let expired_cert = mesh.workload_from(&mesh.issuer, &spec);
    let mut spec = WorkloadSpec::new("shop", "future");
    spec.issued_at = now + 3600;
    spec.certificate_time = now + 3600;
    let future_cert = mesh.workload_from(&mesh.issuer, &spec);
    let mut spec = WorkloadSpec::new("shop", "elsewhere");
    spec.trust_domain = "other.example".into();
    let foreign_domain = mesh.workload_from(&mesh.issuer, &spec);

    let registry = log(&[
        good.entry,
        revoked_entry,
        lapsed_entry,
        stolen_entry,
        unknown_kid.entry,
        wrong_issuer.entry,
        wrong_audience.entry,
        not_yet.entry,
        bad_signature.entry,
        expired_cert.entry,
        future_cert.entry,
        foreign_domain.entry,
        alg_none_entry,
    ]);
    let mut vm = inbound_with(&mesh, "", &registry);
    assert_allowed(&mut vm, &good.peer());

    let no_mazu_extension = good.altered(|der| {
        let mut other = MAZU_OID_DER.to_vec();
        *other.last_mut().unwrap() = 0x02;
        replace_once(der, MAZU_OID_DER, &other);
    });
    let id_mismatch = good.altered(|der| {
        let id = *good.entry.workload_id.as_bytes();
        let mut other = id;
        other[0] ^= 0xff;
        replace_once(der, &id, &other);
    });
    let outlives = good.altered(|der| push_not_after_to_2049(der));
    let garbage_pem = PeerProperties {
        mtls: Some(true),
        peer_certificate: Some(
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into(),
        ),
        digest: Some("00".repeat(32)),
        ..PeerProperties::default()
    };
    let garbage_der = good.altered(|der| der.truncate(40));
    let huge = PeerProperties {
        mtls: Some(true),
        peer_certificate: Some("A".repeat(100_000)),
        digest: Some("11".repeat(32)),
        ..PeerProperties::default()
    };

    let cases: Vec<(&str, PeerProperties)> = vec![
        ("not_registered", unregistered.peer()),
        ("revoked", revoked.peer()),
        ("registration_expired", lapsed.peer()),
        ("key_mismatch", stolen.peer()),
        ("token_unknown_kid", unknown_kid.peer()),
        ("token_wrong_issuer", wrong_issuer.peer()),
        ("token_wrong_audience", wrong_audience.peer()),
        ("token_not_yet_valid", not_yet.peer()),
        ("token_bad_signature", bad_signature.peer()),
        ("token_alg_none", alg_none),
        ("certificate_expired", expired_cert.peer()),
        ("certificate_not_yet_valid", future_cert.peer()),
        ("spiffe_id_mismatch", foreign_domain.peer()),
        ("certificate_missing_mazu_extension", no_mazu_extension),
        ("workload_id_mismatch", id_mismatch),
        ("certificate_outlives_token", outlives),
        ("certificate_malformed_pem", garbage_pem),
        ("certificate_malformed", garbage_der),
        ("certificate_too_large", huge),
    ];
    let count = cases.len() as i64;
    for (reason, peer) in &cases {
        assert_denied(&mut vm, peer, reason);
    }
    assert_eq!(vm.stat(DENIED), count);
    assert_eq!(vm.stat(ALLOWED), 1);
    // The peer's SPIFFE ID is logged when the certificate parses.
    assert!(vm.logged("reason=revoked peer=spiffe://cluster.local/ns/shop/sa/revoked"));
    assert!(vm.logged("reason=certificate_malformed peer=-"));
}

#[test]
fn an_expired_token_is_denied_even_inside_a_valid_certificate() {
    // The certificate's notAfter equals the token's exp; both get the same
    // clock skew (60 s), but the token expires at exp + skew exactly while the
    // certificate is still valid at that second.
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let exp = cart.entry.token_expiry;
    let mut vm = configured(&mesh.config("inbound", r#","when_stale":"enforce_last_known""#));
    serve(&mut vm, &log(&[cart.entry]));
    let now = vm.now_ms();
    vm.advance_ms((exp + 60) * 1000 - now);
    assert_denied(&mut vm, &cart.peer(), "token_expired");
}

#[test]
fn a_cached_allow_does_not_survive_a_revocation() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let mut curator = log(&[cart.entry]);
    let mut vm = inbound_with(&mesh, "", &curator);
    assert_allowed(&mut vm, &cart.peer());
    curator.revoke(&cart.entry);
    serve(&mut vm, &curator);
    assert_eq!(vm.stat("mazu.inbound.registry_version"), 3);
    assert_denied(&mut vm, &cart.peer(), "revoked");
}

#[test]
fn outbound_checks_the_server_before_its_bytes_reach_the_client() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "db");
    let impostor = mesh.workload("shop", "impostor");
    let mut vm = configured(&mesh.config("outbound", ""));
    serve(&mut vm, &log(&[server.entry]));

    let (id, _) = vm.connect(Side::Upstream, &server.peer()).unwrap();
    assert_eq!(vm.downstream_data(id, b"query").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data(id, b"rows").unwrap(), Action::Continue);
    assert_eq!(vm.connection(id).unwrap().forwarded_upstream, b"rows");
    assert_eq!(vm.stat("mazu.outbound.connections_allowed"), 1);

    let (id, _) = vm.connect(Side::Upstream, &impostor.peer()).unwrap();
    assert_eq!(vm.downstream_data(id, b"query").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data(id, b"rows").unwrap(), Action::Pause);
    let conn = vm.connection(id).unwrap();
    assert!(
        conn.forwarded_upstream.is_empty(),
        "the impostor's bytes reached the client"
    );
    assert!(conn.closed_downstream);
    assert_eq!(vm.stat("mazu.outbound.denied.not_registered"), 1);
    assert!(vm.logged("denied outbound connection: reason=not_registered"));

    // The impostor answers and closes at once (its last bytes and the end
    // of stream in one event, as a `connection: close` HTTP server does).
    // Envoy then reports the upstream close for the same context: closing
    // inside the data event would have deleted it first and made the SDK
    // panic, losing the VM. The bytes are dropped, the close comes after.
    let (id, _) = vm.connect(Side::Upstream, &impostor.peer()).unwrap();
    assert_eq!(vm.downstream_data(id, b"query").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data_end(id, b"rows").unwrap(), Action::Pause);
    let conn = vm.connection(id).unwrap();
    assert!(conn.forwarded_upstream.is_empty() && conn.held_upstream.is_empty());
    assert!(conn.closed_downstream);
    assert_eq!(vm.stat("mazu.outbound.denied.not_registered"), 2);
    // The VM is still in service.
    let (id, _) = vm.connect(Side::Upstream, &server.peer()).unwrap();
    assert_eq!(vm.downstream_data(id, b"query").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data_end(id, b"rows").unwrap(), Action::Continue);
    assert_eq!(vm.connection(id).unwrap().forwarded_upstream, b"rows");
}

#[test]
fn outbound_on_an_http_chain_leaves_the_server_to_the_handshake_and_says_so() {
    let mesh = Mesh::new();
    let server = mesh.workload("shop", "db");
    let impostor = mesh.workload("shop", "impostor");
    let mut vm = configured(&mesh.config("outbound", ""));
    serve(&mut vm, &log(&[server.entry]));

    // An HTTP connection manager chain: no `upstream.address`. The filter
    // cannot see which server answered (the router picked it per request),
    // so it does not pretend to: the response passes, counted.
    let http = PeerProperties {
        http_chain: true,
        ..PeerProperties::default()
    };
    for _ in 0..2 {
        let (id, _) = vm.connect(Side::Upstream, &http).unwrap();
        assert_eq!(vm.downstream_data(id, b"GET /").unwrap(), Action::Continue);
        assert_eq!(vm.upstream_data(id, b"200 OK").unwrap(), Action::Continue);
        assert_eq!(vm.connection(id).unwrap().forwarded_upstream, b"200 OK");
    }
    assert_eq!(vm.stat("mazu.outbound.outbound_not_seen"), 2);
    assert_eq!(vm.stat("mazu.outbound.connections_denied"), 0);
    assert!(vm.logged("authenticated in the TLS handshake only"));

    // A `tcp_proxy` chain still decides on the server it connected to: an
    // impostor, or a plain-text upstream (no certificate), is refused.
    let (id, _) = vm.connect(Side::Upstream, &impostor.peer()).unwrap();
    assert_eq!(vm.upstream_data(id, b"rows").unwrap(), Action::Pause);
    let plaintext = PeerProperties {
        http_chain: false,
        ..http
    };
    let (id, _) = vm.connect(Side::Upstream, &plaintext).unwrap();
    assert_eq!(vm.upstream_data(id, b"rows").unwrap(), Action::Pause);
    assert!(vm.connection(id).unwrap().forwarded_upstream.is_empty());
    assert_eq!(vm.stat("mazu.outbound.connections_denied"), 2);
    assert_eq!(vm.stat("mazu.outbound.outbound_not_seen"), 2);
}

#[test]
fn metrics_count_each_verdict_and_reason() {
    let mesh = Mesh::new();
    let a = mesh.workload("shop", "a");
    let b = mesh.workload("shop", "b");
    let c = mesh.workload("shop", "c");
    let mut vm = inbound_with(&mesh, "", &log(&[a.entry, b.entry]));
    for peer in [&a, &b, &a, &c, &c] {
        let _ = first_bytes(&mut vm, &peer.peer());
    }
    let _ = first_bytes(&mut vm, &PeerProperties::default());
    let stats = vm.process().stats_with_prefix("mazu.inbound.");
    let get = |name: &str| {
        stats
            .get(&format!("mazu.inbound.{name}"))
            .copied()
            .unwrap_or(-1)
    };
    assert_eq!(get("connections_allowed"), 3);
    assert_eq!(get("connections_denied"), 3);
    assert_eq!(get("denied.not_registered"), 2);
    assert_eq!(get("denied.no_client_certificate"), 1);
    // a, b and c's first sight miss the cache; a's and c's second sight hit it.
    assert_eq!(get("verdict_cache_misses"), 3);
    assert_eq!(get("verdict_cache_hits"), 2);
    // One round: the checkpoint and one page of records.
    assert_eq!(get("registry_fetches"), 2);
    assert_eq!(get("registry_updates"), 1);
    assert_eq!(get("registry_fetch_failures"), 0);
}

fn flip_last_signature_char(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    // The second-to-last base64url character is fully covered by signature
    // bits (the last one may carry padding bits only).
    let at = bytes.len() - 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("a token is ASCII")
}

/// An open connection is decided again at its first event after a registry
/// change: a peer revoked meanwhile has its pooled connection closed before
/// another byte passes (inbound: the client's next bytes; outbound: the
/// server's next bytes or the client's), while other peers' connections
/// carry on from the verdict cache.
#[test]
fn an_open_connection_of_a_peer_revoked_since_is_closed_at_its_next_bytes() {
    let mesh = Mesh::new();
    let cart = mesh.workload("shop", "cart");
    let web = mesh.workload("shop", "web");
    let mut curator = log(&[cart.entry, web.entry]);
    let mut vm = inbound_with(&mesh, "", &curator);
    let cart_conn = assert_allowed(&mut vm, &cart.peer());
    let web_conn = assert_allowed(&mut vm, &web.peer());
    // Unchanged registry: the next bytes pass without a new decision.
    assert_eq!(
        vm.downstream_data(cart_conn, b" again").unwrap(),
        Action::Continue
    );
    assert_eq!(vm.stat(ALLOWED), 2);

    curator.revoke(&cart.entry);
    serve(&mut vm, &curator);
    let before = vm.stat("mazu.inbound.denied.revoked");
    assert_eq!(
        vm.downstream_data(cart_conn, b"more").unwrap(),
        Action::Pause
    );
    let conn = vm.connection(cart_conn).unwrap();
    assert!(conn.closed_downstream, "{}", vm.log_text());
    assert_eq!(
        conn.forwarded_downstream, b"hello again",
        "bytes after the revocation leaked"
    );
    assert_eq!(vm.stat("mazu.inbound.denied.revoked"), before + 1);
    // The other peer's connection carries on.
    assert_eq!(
        vm.downstream_data(web_conn, b"more").unwrap(),
        Action::Continue
    );
    assert!(!vm.connection(web_conn).unwrap().closed_downstream);
    // Deciding it again is not a new allowed connection.
    assert_eq!(vm.stat(ALLOWED), 2);

    // Outbound: the server revoked while the connection is pooled.
    let mut curator = log(&[web.entry]);
    let mut vm = configured(&mesh.config("outbound", ""));
    serve(&mut vm, &curator);
    let (id, _) = vm.connect(Side::Upstream, &web.peer()).unwrap();
    assert_eq!(vm.downstream_data(id, b"query").unwrap(), Action::Continue);
    assert_eq!(vm.upstream_data(id, b"rows").unwrap(), Action::Continue);
    curator.revoke(&web.entry);
    serve(&mut vm, &curator);
    assert_eq!(vm.upstream_data(id, b"late rows").unwrap(), Action::Pause);
    let conn = vm.connection(id).unwrap();
    assert_eq!(
        conn.forwarded_upstream, b"rows",
        "the revoked server's bytes leaked"
    );
    assert!(conn.closed_downstream);
}

/// The handshake validator's word on a token signature
/// (`mazu_filter::vouch`): the filter skips that token's signature check, and
/// only that check, only for a value made under its own trust object.
/// The certificate here carries a token whose signature is broken, so only a
/// skipped check lets it through.
#[test]
fn a_signature_vouched_for_under_the_same_trust_is_not_verified_again() {
    use mazu_filter::vouch::{self, TrustDigest};
    use mazu_identity::WorkloadId;

    let mesh = Mesh::new();
    let good = mesh.workload("shop", "good");
    let forged = mesh.workload_with_token(
        flip_last_signature_char(&good.token),
        &WorkloadSpec::new("shop", "good"),
    );
    let stranger = mesh.workload("shop", "stranger");
    let config: serde_json::Value =
        serde_json::from_str(&mesh.config("inbound", "")).expect("config JSON");
    let trust = TrustDigest::of(&config["trust"]);
    let vouched = |peer: PeerProperties, trust: &TrustDigest, token: &str| PeerProperties {
        vouch: Some(vouch::encode_signature(
            trust,
            &WorkloadId::of_token(token.as_bytes()),
        )),
        ..peer
    };
    let registry = log(&[forged.entry, good.entry]);
    let verified = "mazu.inbound.token_signatures_verified";
    let vouches = "mazu.inbound.token_signatures_vouched";

    // Refused with the signature checked: no word, a word under another
    // trust object, a word for another token, a malformed word.
    let mut other_trust = config["trust"].clone();
    other_trust["clock_skew_secs"] = serde_json::json!(5);
    let other_trust = TrustDigest::of(&other_trust);
    for (what, peer) in [
        ("no word", forged.peer()),
        (
            "another trust object",
            vouched(forged.peer(), &other_trust, &forged.token),
        ),
        ("another token", vouched(forged.peer(), &trust, &good.token)),
        (
            "malformed",
            PeerProperties {
                vouch: Some("v1 yes".into()),
                ..forged.peer()
            },
        ),
    ] {
        let mut vm = inbound_with(&mesh, "", &registry);
        assert_denied(&mut vm, &peer, "token_bad_signature");
        assert_eq!((vm.stat(verified), vm.stat(vouches)), (1, 0), "{what}");
    }

    // Its own word under this trust object: the signature is not looked at.
    let mut vm = inbound_with(&mesh, "", &registry);
    assert_allowed(&mut vm, &vouched(forged.peer(), &trust, &forged.token));
    assert_eq!((vm.stat(verified), vm.stat(vouches)), (0, 1));
    // A genuine client with its word: allowed, not verified in V8 either.
    assert_allowed(&mut vm, &vouched(good.peer(), &trust, &good.token));
    assert_eq!((vm.stat(verified), vm.stat(vouches)), (0, 2));
    // Every other check still runs: vouched for but not registered.
    assert_denied(
        &mut vm,
        &vouched(stranger.peer(), &trust, &stranger.token),
        "not_registered",
    );
}

/// The handshake validator's verdict (`mazu_filter::vouch`, `v2`): taken
/// without parsing the certificate, but only about this connection's
/// certificate, under the filter's own trust object, and where the filter's
/// own registry agrees; otherwise the whole verdict runs in the filter.
#[test]
fn a_verdict_vouched_for_is_taken_only_where_this_registry_agrees() {
    use mazu_filter::vouch::{self, TrustDigest, VouchedVerdict};

    let mesh = Mesh::new();
    let good = mesh.workload("shop", "good");
    let stranger = mesh.workload("shop", "stranger");
    let config: serde_json::Value =
        serde_json::from_str(&mesh.config("inbound", "")).expect("config JSON");
    let trust = TrustDigest::of(&config["trust"]);
    let with =
        |peer: PeerProperties, trust: &TrustDigest, verdict: &VouchedVerdict| PeerProperties {
            vouch: Some(vouch::encode_verdict(trust, verdict)),
            ..peer
        };
    let counts = |vm: &Vm| {
        (
            vm.stat("mazu.inbound.verdicts_vouched"),
            vm.stat("mazu.inbound.token_signatures_verified"),
        )
    };
    let registry = log(&[good.entry]);

    // Taken: nothing parsed or verified in V8; the next connection is cached.
    let mut vm = inbound_with(&mesh, "", &registry);
    let vouched = with(good.peer(), &trust, &good.vouched_verdict());
    assert_allowed(&mut vm, &vouched);
    assert_eq!(counts(&vm), (1, 0));
    assert_allowed(&mut vm, &vouched);
    assert_eq!(vm.stat("mazu.inbound.verdict_cache_hits"), 1);

    // Not in this registry: the filter decides, and refuses.
    let mut vm = inbound_with(&mesh, "", &registry);
    assert_denied(
        &mut vm,
        &with(stranger.peer(), &trust, &stranger.vouched_verdict()),
        "not_registered",
    );
    assert_eq!(counts(&vm), (0, 0));

    // Revoked in this registry: refused.
    let mut revoked = good.entry;
    revoked.revoked = true;
    let mut vm = inbound_with(&mesh, "", &log(&[revoked]));
    assert_denied(&mut vm, &vouched, "revoked");
    assert_eq!(counts(&vm), (0, 0));

    // About another certificate, or under another trust object: not taken;
    // the filter verifies the token's signature itself.
    let mut other_trust = config["trust"].clone();
    other_trust["clock_skew_secs"] = serde_json::json!(5);
    for (what, peer) in [
        (
            "another certificate",
            with(good.peer(), &trust, &stranger.vouched_verdict()),
        ),
        (
            "another trust object",
            with(
                good.peer(),
                &TrustDigest::of(&other_trust),
                &good.vouched_verdict(),
            ),
        ),
    ] {
        let mut vm = inbound_with(&mesh, "", &registry);
        assert_allowed(&mut vm, &peer);
        assert_eq!(counts(&vm), (0, 1), "{what}");
    }
}
