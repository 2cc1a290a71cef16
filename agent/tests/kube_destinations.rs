//! `mazu-agent run --destinations-from-kubernetes` against a stand-in
//! Kubernetes API server (HTTPS on 127.0.0.1 with a test CA, the three list
//! endpoints from JSON shaped like the API server's, one object per page so
//! that `continue` must be followed, and the `Authorization: Bearer` header
//! checked), the real `mazu-curator` process, and an SDS client on the
//! agent's socket reading `ROOTCA` the way Envoy does (a `StreamSecrets`
//! stream, every response ACKed). Shows:
//!
//! - the served validator configuration holds the derived destinations,
//!   with the hand-written ones winning for their host;
//! - a pod of another service account added behind a Service (and a rotated
//!   bearer token) makes the agent push a new `ROOTCA`;
//! - while the API server answers 500, or a body that is not a list, the
//!   agent pushes nothing and keeps serving the last destinations; once it
//!   answers again, a removed pod is pushed.
//!
//! The agent process is killed on drop; the stand-in runs on the test's own
//! runtime, dropped at the end.

mod common;

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::cert_validator::dynamic_modules::v3::DynamicModuleCertValidatorConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::{
    AgentFiles, AgentProcess, Curator, agent_command, mint, write_projected_token, write_token,
};
use mazu_testkit::fixtures::Mesh;

const WAIT: Duration = Duration::from_secs(60);
const SERVICE_ACCOUNT_TOKEN: &str = "kube-token-1";
const ROTATED_TOKEN: &str = "kube-token-2";

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Serve,
    Fail500,
    Garbage,
}

/// The stand-in API server's state.
struct Cluster {
    mode: Mode,
    /// The only bearer token accepted.
    token: String,
    services: Vec<Value>,
    slices: Vec<Value>,
    pods: Vec<Value>,
    /// Requests answered with a list page.
    served: u64,
    /// Requests answered 500 or with garbage.
    failed: u64,
    /// Requests without the expected `Authorization: Bearer` header.
    unauthorized: u64,
    /// Requests that had no `limit` (the agent always pages).
    without_limit: u64,
}

type Shared = Arc<Mutex<Cluster>>;

fn lock(cluster: &Shared) -> std::sync::MutexGuard<'_, Cluster> {
    cluster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn service(namespace: &str, name: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": namespace, "uid": format!("uid-svc-{name}"),
                      "resourceVersion": "100", "labels": { "app": name } },
        "spec": { "type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": { "app": name },
                  "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080 }] },
        "status": { "loadBalancer": {} }
    })
}

/// A slice of `service` with an endpoint for each pod name.
fn slice(namespace: &str, service: &str, suffix: &str, pods: &[&str]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "addresses": [format!("10.244.0.{}", i + 10)],
                "conditions": { "ready": true, "serving": true, "terminating": false },
                "nodeName": "node-1",
                "targetRef": { "kind": "Pod", "namespace": namespace, "name": name,
                               "uid": format!("uid-pod-{name}") }
            })
        })
        .collect();
    json!({
        "metadata": {
            "name": format!("{service}-{suffix}"), "namespace": namespace,
            "labels": { "kubernetes.io/service-name": service,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Service", "name": service }]
        },
        "addressType": "IPv4",
        "endpoints": if endpoints.is_empty() { Value::Null } else { Value::Array(endpoints) },
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }]
    })
}

fn pod(namespace: &str, name: &str, service_account: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": namespace, "uid": format!("uid-pod-{name}"),
                      "labels": { "app": name } },
        "spec": { "serviceAccountName": service_account, "serviceAccount": service_account,
                  "nodeName": "node-1", "containers": [{ "name": "app", "image": "app:1" }] },
        "status": { "phase": "Running", "podIP": "10.244.0.10" }
    })
}

/// One page of `items`: the object at the `continue` index, and the next
/// index as `metadata.continue` while there are more.
fn page(kind: &str, items: &[Value], query: &BTreeMap<String, String>) -> Value {
    let at: usize = query
        .get("continue")
        .and_then(|c| c.strip_prefix("page-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut metadata = json!({ "resourceVersion": "12345" });
    if at + 1 < items.len() {
        metadata["continue"] = json!(format!("page-{}", at + 1));
    }
    json!({
        "kind": kind,
        "apiVersion": if kind == "EndpointSliceList" { "discovery.k8s.io/v1" } else { "v1" },
        "metadata": metadata,
        "items": items.get(at).map(|i| vec![i.clone()]).unwrap_or_default(),
    })
}

fn answer(
    cluster: &Shared,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    list: fn(&Cluster) -> (&'static str, &[Value]),
) -> Response {
    let mut c = lock(cluster);
    let expected = format!("Bearer {}", c.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        c.unauthorized += 1;
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    if !query.contains_key("limit") {
        c.without_limit += 1;
    }
    match c.mode {
        Mode::Fail500 => {
            c.failed += 1;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "etcdserver: request timed out",
            )
                .into_response()
        }
        Mode::Garbage => {
            c.failed += 1;
            (StatusCode::OK, "{\"kind\":\"Status\",\"items\":{}}").into_response()
        }
        Mode::Serve => {
            c.served += 1;
            let (kind, items) = list(&c);
            axum::Json(page(kind, items, query)).into_response()
        }
    }
}

/// A `GET` handler answering with the list `list` selects.
fn list_handler(
    list: fn(&Cluster) -> (&'static str, &[Value]),
) -> axum::routing::MethodRouter<Shared> {
    get(
        move |State(c): State<Shared>, h: HeaderMap, Query(q): Query<BTreeMap<String, String>>| async move {
            answer(&c, &h, &q, list)
        },
    )
}

fn router(cluster: Shared) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/services",
            list_handler(|c| ("ServiceList", &c.services)),
        )
        .route(
            "/apis/discovery.k8s.io/v1/endpointslices",
            list_handler(|c| ("EndpointSliceList", &c.slices)),
        )
        .route("/api/v1/pods", list_handler(|c| ("PodList", &c.pods)))
        .with_state(cluster)
}

/// A test CA (written to `ca_file`) and a server configuration for
/// 127.0.0.1 signed by it.
fn tls_for_localhost(ca_file: &Path) -> Arc<rustls::ServerConfig> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stand-in kubernetes CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    std::fs::write(ca_file, ca.pem()).expect("write ca.crt");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::IpAddress(core::net::IpAddr::V4(
        core::net::Ipv4Addr::LOCALHOST,
    ))];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    // The ring provider, as mazu-service uses it (deprecated for lacking
    // post-quantum key exchange, which a test server does without).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
                key.serialize_der(),
            )),
        )
        .expect("server config");
    Arc::new(config)
}

/// Serves `cluster` over HTTPS on 127.0.0.1 port 0; returns the port.
async fn stand_in(cluster: Shared, tls: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(cluster);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// An SDS `StreamSecrets` stream for `ROOTCA`, as Envoy holds one.
struct RootcaStream {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

async fn sds_client(socket: &Path) -> SecretDiscoveryServiceClient<tonic::transport::Channel> {
    let socket = socket.to_owned();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to the SDS socket");
    SecretDiscoveryServiceClient::new(channel)
}

fn rootca_request() -> DiscoveryRequest {
    DiscoveryRequest {
        resource_names: vec!["ROOTCA".to_owned()],
        type_url: SECRET_TYPE.to_owned(),
        ..Default::default()
    }
}

impl RootcaStream {
    async fn open(socket: &Path) -> Self {
        let mut client = sds_client(socket).await;
        let (requests, rx) = mpsc::channel(8);
        requests
            .send(rootca_request())
            .await
            .expect("first request");
        let responses = client
            .stream_secrets(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("StreamSecrets")
            .into_inner();
        RootcaStream {
            requests,
            responses,
        }
    }

    /// The next pushed `ROOTCA`'s validator configuration (ACKed), or
    /// `None` if nothing is pushed within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Value> {
        let response = tokio::time::timeout(limit, self.responses.message())
            .await
            .ok()?
            .expect("the SDS stream")
            .expect("a response");
        let ack = DiscoveryRequest {
            version_info: response.version_info.clone(),
            response_nonce: response.nonce.clone(),
            ..rootca_request()
        };
        self.requests.send(ack).await.expect("ACK");
        Some(validator_config(&response))
    }
}

/// The validator configuration (JSON) in a response's `ROOTCA`, checked
/// with the validator's own parser.
fn validator_config(response: &DiscoveryResponse) -> Value {
    assert_eq!(response.resources.len(), 1, "ROOTCA only");
    let secret = Secret::decode(response.resources[0].value.as_slice()).expect("a Secret");
    assert_eq!(secret.name, "ROOTCA");
    let Some(secret::Type::ValidationContext(context)) = secret.r#type else {
        panic!("ROOTCA is a validation context");
    };
    let custom = context
        .custom_validator_config
        .expect("the validator module")
        .typed_config
        .expect("typed config");
    let module =
        DynamicModuleCertValidatorConfig::decode(custom.value.as_slice()).expect("module config");
    let json = envoy_types::pb::google::protobuf::StringValue::decode(
        module
            .validator_config
            .expect("validator_config")
            .value
            .as_slice(),
    )
    .expect("a StringValue")
    .value;
    mazu_validator::ValidatorConfig::parse(json.as_bytes())
        .expect("the served configuration passes the validator's own parser");
    serde_json::from_str(&json).expect("JSON")
}

fn validator_config_file(dir: &Path, mesh: &Mesh) -> PathBuf {
    let config = json!({
        "registry_file": dir.join("registry").to_str().expect("utf-8"),
        "trust": {
            "trust_domain": "cluster.local",
            "audience": mazu_testkit::fixtures::AUDIENCE,
            "issuers": [{
                "issuer": "https://kubernetes.default.svc.cluster.local",
                "namespaces": ["*"],
                "jwks": serde_json::from_str::<Value>(&mesh.jwks_json()).expect("jwks"),
            }]
        },
        "destinations": {
            // Written by hand: wins over what Kubernetes says for cart.
            "cart.shop.svc.cluster.local": ["spiffe://cluster.local/ns/shop/sa/cart-pinned"],
            "legacy.example.com": ["spiffe://cluster.local/ns/legacy/sa/old"]
        }
    });
    let path = dir.join("validator.json");
    std::fs::write(&path, config.to_string()).expect("write validator.json");
    path
}

fn ids(config: &Value, host: &str) -> Vec<String> {
    config["destinations"][host]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|id| id.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rootca_carries_destinations_derived_from_kubernetes_and_keeps_them_when_it_fails() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "frontend"));
    let kube_dir = tempfile::tempdir().expect("tempdir");
    let ca_file = kube_dir.path().join("ca.crt");
    let kube_token = kube_dir.path().join("token");
    std::fs::write(&kube_token, format!("{SERVICE_ACCOUNT_TOKEN}\n")).expect("token");
    let validator = validator_config_file(kube_dir.path(), &mesh);

    let cluster: Shared = Arc::new(Mutex::new(Cluster {
        mode: Mode::Serve,
        token: SERVICE_ACCOUNT_TOKEN.to_owned(),
        services: vec![
            service("shop", "checkout"),
            service("shop", "cart"),
            service("shop", "empty"),
            service("default", "kubernetes"),
        ],
        slices: vec![
            slice("shop", "checkout", "a1b2c", &["checkout-1", "checkout-2"]),
            slice("shop", "cart", "d3e4f", &["cart-1"]),
            slice("shop", "empty", "g5h6i", &[]),
        ],
        pods: vec![
            pod("shop", "checkout-1", "checkout"),
            pod("shop", "checkout-2", "checkout"),
            pod("shop", "cart-1", "cart"),
            pod("shop", "frontend-1", "frontend"),
        ],
        served: 0,
        failed: 0,
        unauthorized: 0,
        without_limit: 0,
    }));
    let tls = tls_for_localhost(&ca_file);
    let port = runtime.block_on(stand_in(cluster.clone(), tls));

    let socket = files.dir.path().join("sds.sock");
    let api_url = format!("https://127.0.0.1:{port}");
    let mut agent = AgentProcess::start(
        &format!("http://127.0.0.1:{}", curator.port),
        &files.token_file,
        &files.state,
        &[
            "--sds-socket",
            socket.to_str().expect("utf-8"),
            "--validator-config",
            validator.to_str().expect("utf-8"),
            "--destinations-from-kubernetes",
            "--kubernetes-api-url",
            &api_url,
            "--kubernetes-token-file",
            kube_token.to_str().expect("utf-8"),
            "--kubernetes-ca-file",
            ca_file.to_str().expect("utf-8"),
            "--kubernetes-poll-interval-ms",
            "200",
        ],
    );
    agent.wait_log(WAIT, "serving SDS v3");
    let mut stream = runtime.block_on(RootcaStream::open(&socket));

    // 1. The first ROOTCA: derived destinations, hand-written ones kept and
    // winning for their host, no entry for a Service without pods.
    let first = runtime.block_on(stream.next(WAIT)).expect("a first ROOTCA");
    assert_eq!(
        ids(&first, "checkout.shop.svc.cluster.local"),
        ["spiffe://cluster.local/ns/shop/sa/checkout"]
    );
    assert_eq!(
        ids(&first, "cart.shop.svc.cluster.local"),
        ["spiffe://cluster.local/ns/shop/sa/cart-pinned"],
        "the hand-written entry wins"
    );
    assert_eq!(
        ids(&first, "legacy.example.com"),
        ["spiffe://cluster.local/ns/legacy/sa/old"]
    );
    assert_eq!(
        first["destinations"].as_object().map(|d| d.len()),
        Some(3),
        "no entry for `empty` (no pods) nor `kubernetes` (no slice): {first}"
    );
    {
        let c = lock(&cluster);
        assert_eq!(c.unauthorized, 0, "every request carried the bearer token");
        assert_eq!(c.without_limit, 0, "every request pages");
    }

    // 2. A pod of another service account behind checkout (and, at the same
    // time, a rotated bearer token): a new ROOTCA is pushed.
    {
        let mut c = lock(&cluster);
        c.pods
            .push(pod("shop", "checkout-canary", "checkout-canary"));
        c.slices
            .push(slice("shop", "checkout", "j7k8l", &["checkout-canary"]));
        c.token = ROTATED_TOKEN.to_owned();
    }
    std::fs::write(&kube_token, ROTATED_TOKEN).expect("rotate the token");
    // A ROOTCA for other reasons (live keys) may come first.
    let second = wait_checkout(
        &runtime,
        &mut stream,
        &[
            "spiffe://cluster.local/ns/shop/sa/checkout",
            "spiffe://cluster.local/ns/shop/sa/checkout-canary",
        ],
    );
    agent.wait_log(WAIT, "destinations derived from Kubernetes changed");

    // 3. The API server fails (500, then a body that is not a list): nothing
    // is pushed, the last destinations stay served.
    for mode in [Mode::Fail500, Mode::Garbage] {
        let failed_before = {
            let mut c = lock(&cluster);
            c.mode = mode;
            // What the next good answer would remove.
            c.pods
                .retain(|p| p["metadata"]["name"] != "checkout-canary");
            c.failed
        };
        wait_until(WAIT, "failed polls", || {
            lock(&cluster).failed >= failed_before + 5
        });
        let pushed = runtime.block_on(stream.next(Duration::from_millis(1500)));
        if let Some(config) = &pushed {
            assert_eq!(
                config["destinations"], second["destinations"],
                "{mode:?}: only an unrelated change (live keys) may be pushed"
            );
        }
        let fetched = runtime.block_on(async {
            let mut client = sds_client(&socket).await;
            client
                .fetch_secrets(rootca_request())
                .await
                .expect("FetchSecrets")
                .into_inner()
        });
        assert_eq!(
            validator_config(&fetched)["destinations"],
            second["destinations"],
            "{mode:?}: the last destinations are kept"
        );
    }
    agent.wait_log(WAIT, "keeping the last destinations");
    let log = agent.log();
    assert!(log.contains("HTTP 500"), "the warning says why:\n{log}");
    assert!(log.contains("is not a Kubernetes list"), "{log}");

    // 4. It answers again: the canary's removal is pushed.
    lock(&cluster).mode = Mode::Serve;
    wait_checkout(
        &runtime,
        &mut stream,
        &["spiffe://cluster.local/ns/shop/sa/checkout"],
    );
    assert_eq!(agent.terminate(), Some(0));
    drop(stream);
    drop(runtime);
}

#[test]
fn unusable_kubernetes_settings_exit_2_with_one_line() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = validator_config_file(dir.path(), &mesh);
    let ca_file = dir.path().join("ca.crt");
    tls_for_localhost(&ca_file);
    let state = dir.path().join("state");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--curator",
            "http://127.0.0.1:1",
            "--insecure-no-witness",
            "--token-file",
            "/nonexistent/token",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--destinations-from-kubernetes",
        ];
        args.extend_from_slice(extra);
        let out = agent_command(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        stderr
    };
    let config = validator.to_str().expect("utf-8");
    let ca = ca_file.to_str().expect("utf-8");
    let one_line = |stderr: String, needle: &str| {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    };
    one_line(run(&[]), "needs --validator-config");
    one_line(
        run(&[
            "--validator-config",
            config,
            "--kubernetes-api-url",
            "http://127.0.0.1:6443",
            "--kubernetes-ca-file",
            ca,
        ]),
        "https:// URL is required",
    );
    one_line(
        run(&[
            "--validator-config",
            config,
            "--kubernetes-api-url",
            "https://127.0.0.1:6443",
            "--kubernetes-ca-file",
            "/nonexistent/ca.crt",
        ]),
        "CA file /nonexistent/ca.crt",
    );
    assert!(
        run(&[
            "--validator-config",
            config,
            "--kubernetes-api-url",
            "https://127.0.0.1:6443",
            "--kubernetes-ca-file",
            ca,
            "--kubernetes-poll-interval-ms",
            "5",
        ])
        .contains("--kubernetes-poll-interval-ms")
    );
    assert!(
        !state.exists(),
        "nothing is started on a configuration error"
    );
}

/// Waits on `stream` for a `ROOTCA` whose destinations for checkout are `want`.
fn wait_checkout(
    runtime: &tokio::runtime::Runtime,
    stream: &mut RootcaStream,
    want: &[&str],
) -> Value {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        let Some(config) = runtime.block_on(stream.next(WAIT)) else {
            break;
        };
        if ids(&config, "checkout.shop.svc.cluster.local") == want {
            return config;
        }
    }
    panic!("no ROOTCA with checkout served by {want:?}");
}

#[test]
fn node_mode_pushes_the_derived_destinations_to_every_pod() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let node = tempfile::tempdir().expect("tempdir");
    let (pods, state, sockets) = (
        node.path().join("pods"),
        node.path().join("state"),
        node.path().join("sockets"),
    );
    let uids = [
        "0a1b2c3d-0000-4000-8000-000000000001",
        "0a1b2c3d-0000-4000-8000-000000000002",
    ];
    for (uid, sa) in uids.iter().zip(["frontend", "cart"]) {
        write_projected_token(
            &pods
                .join(uid)
                .join("volumes/kubernetes.io~projected/mazu-token"),
            &mint(&mesh, "shop", sa),
        );
    }
    let ca_file = node.path().join("ca.crt");
    let kube_token = node.path().join("kube-token");
    std::fs::write(&kube_token, SERVICE_ACCOUNT_TOKEN).expect("token");
    let validator = validator_config_file(node.path(), &mesh);
    let cluster: Shared = Arc::new(Mutex::new(Cluster {
        mode: Mode::Serve,
        token: SERVICE_ACCOUNT_TOKEN.to_owned(),
        services: vec![service("shop", "checkout")],
        slices: vec![slice("shop", "checkout", "a1b2c", &["checkout-1"])],
        pods: vec![pod("shop", "checkout-1", "checkout")],
        served: 0,
        failed: 0,
        unauthorized: 0,
        without_limit: 0,
    }));
    let port = runtime.block_on(stand_in(cluster.clone(), tls_for_localhost(&ca_file)));
    let api_url = format!("https://127.0.0.1:{port}");
    let mut agent = AgentProcess::start_node(
        &format!("http://127.0.0.1:{}", curator.port),
        &pods,
        &state,
        &sockets,
        &[
            "--validator-config",
            validator.to_str().expect("utf-8"),
            "--destinations-from-kubernetes",
            "--kubernetes-api-url",
            &api_url,
            "--kubernetes-token-file",
            kube_token.to_str().expect("utf-8"),
            "--kubernetes-ca-file",
            ca_file.to_str().expect("utf-8"),
            "--kubernetes-poll-interval-ms",
            "200",
        ],
    );
    let socket = |uid: &str| sockets.join(uid).join("socket");
    for uid in uids {
        wait_until(WAIT, "the pod's SDS socket", || socket(uid).exists());
    }
    let mut streams: Vec<RootcaStream> = uids
        .iter()
        .map(|uid| runtime.block_on(RootcaStream::open(&socket(uid))))
        .collect();
    let only = ["spiffe://cluster.local/ns/shop/sa/checkout"];
    for stream in &mut streams {
        wait_checkout(&runtime, stream, &only);
    }
    {
        let mut c = lock(&cluster);
        c.pods
            .push(pod("shop", "checkout-canary", "checkout-canary"));
        c.slices
            .push(slice("shop", "checkout", "j7k8l", &["checkout-canary"]));
    }
    let both = [
        "spiffe://cluster.local/ns/shop/sa/checkout",
        "spiffe://cluster.local/ns/shop/sa/checkout-canary",
    ];
    for stream in &mut streams {
        wait_checkout(&runtime, stream, &both);
    }
    // One poller for the node, not one per pod.
    let log = agent.log();
    assert_eq!(
        log.matches("deriving the validator's destinations from Kubernetes")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(agent.terminate(), Some(0));
    drop(streams);
    drop(runtime);
}
