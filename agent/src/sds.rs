//! The SDS v3 server (Envoy's Secret Discovery Service) on a Unix socket,
//! with the resource names Istio uses, so the agent can stand in for
//! istio-agent's socket the way SPIRE's agent does:
//!
//! - `default`: a `tls_certificate` with the workload certificate and its
//!   PKCS#8 key, inline;
//! - `ROOTCA`: a `validation_context` that authenticates the peer in the
//!   TLS handshake: `verify_certificate_spki` lists the SHA-256 of the SPKI
//!   of every live registered workload, as the agent derived them from the
//!   witnessed log ([`crate::follow::LogView::peer_pins`]); no `trusted_ca`
//!   and no `ACCEPT_UNTRUSTED`. Envoy then completes a handshake only with a
//!   peer that proves it holds one of those keys (a client without a
//!   certificate, or with another key, fails it: no application byte
//!   flows). Pins are an extra gate: the Wasm filter still checks the
//!   token, its expiry, revocation and the SPIFFE ID. `ROOTCA` is not
//!   served until the agent has followed the log once (Envoy keeps the
//!   pins it has, or waits); the list is never empty: with no live
//!   workload it holds one pin no key matches ([`NO_PEER_PIN`]), because an
//!   empty validation context makes Envoy accept every client (measured on
//!   Envoy 1.40).
//!
//! `StreamSecrets` is state-of-the-world: every response carries every
//! requested resource that exists, a `version_info` derived from their
//! content and a fresh nonce. A request whose `response_nonce` is the last
//! one sent is an ACK (or a NACK when it has `error_detail`: logged, and the
//! same content is not sent again); a request with an older nonce is stale
//! and ignored, as the xDS protocol says. New credentials are pushed to every
//! open stream.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::error::Error;

/// Istio's resource name for the workload certificate and key.
pub const DEFAULT_RESOURCE: &str = "default";
/// Istio's resource name for the validation context.
pub const ROOTCA_RESOURCE: &str = "ROOTCA";
/// The type of every resource served.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The pin served when no workload is known to be live: SHA-256 digests of
/// no SPKI anyone can make (all zero). It keeps the validation context
/// non-empty, so Envoy still requires, and refuses, every peer certificate.
pub const NO_PEER_PIN: [u8; 32] = [0; 32];

/// What the SDS server serves at a moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Certificate chain PEM and key PEM (absent until the first
    /// registration succeeded).
    pub certificate: Option<(String, String)>,
    /// SHA-256 of the DER SPKI of every peer the handshake may accept:
    /// the live, unrevoked, unexpired registrations of the witnessed log,
    /// sorted and unique (empty: [`NO_PEER_PIN`] is served). `None` until
    /// the agent has followed the log: `ROOTCA` is then not served at all,
    /// so an Envoy that has pins keeps them across an agent restart (even
    /// while the curator is unreachable) and a new one waits.
    pub peer_pins: Option<Vec<[u8; 32]>>,
    /// The handshake validator's configuration (JSON), when Envoy checks
    /// peers with Mazu's validator module: `ROOTCA` is then
    /// [`module_validation_context`] instead of the pins, served from the
    /// same moment (once the log was followed and the registry file written).
    pub validator_config: Option<String>,
    /// The validator configuration is not complete yet: its destinations
    /// come from Kubernetes ([`crate::kube`]) and the API server has not been
    /// read successfully once. `ROOTCA` is then not served (an Envoy keeps
    /// the context it has, or waits), rather than served without them.
    pub validator_pending: bool,
}

/// The dynamic module Envoy loads: `lib<name>.so` in its
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const VALIDATOR_MODULE_NAME: &str = "mazu_validator";

/// The validator configuration `config_json` with `live_keys`: a digest of
/// the live registered keys. TLS resumption skips certificate validation, so
/// a peer removed from the registry (revoked, released, expired) could
/// resume a session it made before; `ROOTCA` changes whenever the live keys
/// do, and Envoy then builds new TLS contexts, whose session caches and
/// ticket keys are new. (With the pins `ROOTCA` changes with them anyway.)
pub fn with_live_keys(config_json: &str, pins: &[[u8; 32]]) -> String {
    let Ok(serde_json::Value::Object(mut config)) = serde_json::from_str(config_json) else {
        // Checked at start; the module refuses what it cannot parse.
        return config_json.to_owned();
    };
    let mut sorted = pins.to_vec();
    sorted.sort_unstable();
    let mut digest = Sha256::new();
    for pin in &sorted {
        digest.update(pin);
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    config.insert("live_keys".to_owned(), serde_json::Value::String(hex));
    serde_json::Value::Object(config).to_string()
}

/// The `ROOTCA` validation context that hands every handshake to Mazu's
/// validator module (`mazu-validator`), configured with `config_json`. No
/// CA, no pins, no `ACCEPT_UNTRUSTED`: the module alone decides, and refuses
/// everything when it cannot decide.
pub fn module_validation_context(config_json: &str) -> CertificateValidationContext {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::cert_validator::dynamic_modules::v3::DynamicModuleCertValidatorConfig;
    let config = envoy_types::pb::google::protobuf::StringValue {
        value: config_json.to_owned(),
    };
    let validator = DynamicModuleCertValidatorConfig {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: VALIDATOR_MODULE_NAME.to_owned(),
            ..Default::default()
        }),
        validator_name: mazu_validator::VALIDATOR_NAME.to_owned(),
        validator_config: Some(Any {
            type_url: "type.googleapis.com/google.protobuf.StringValue".to_owned(),
            value: config.encode_to_vec(),
        }),
    };
    CertificateValidationContext {
        custom_validator_config: Some(TypedExtensionConfig {
            name: "envoy.tls.cert_validator.dynamic_modules".to_owned(),
            typed_config: Some(Any {
                type_url: format!(
                    "type.googleapis.com/{}",
                    <DynamicModuleCertValidatorConfig as prost::Name>::full_name()
                ),
                value: validator.encode_to_vec(),
            }),
        }),
        ..Default::default()
    }
}

/// The `ROOTCA` validation context for `pins` (see the module docs).
pub fn pinned_validation_context(pins: &[[u8; 32]]) -> CertificateValidationContext {
    use base64ct::{Base64, Encoding as _};
    let encode = |pin: &[u8; 32]| Base64::encode_string(pin);
    let verify_certificate_spki = if pins.is_empty() {
        vec![encode(&NO_PEER_PIN)]
    } else {
        pins.iter().map(encode).collect()
    };
    CertificateValidationContext {
        verify_certificate_spki,
        ..Default::default()
    }
}

fn content_version(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineString(text.to_owned())),
        ..Default::default()
    })
}

impl Secrets {
    /// The `Secret` named `name`, if it exists now.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        let kind = match name {
            DEFAULT_RESOURCE => {
                let (chain, key) = self.certificate.as_ref()?;
                secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: inline(chain),
                    private_key: inline(key),
                    ..Default::default()
                })
            }
            ROOTCA_RESOURCE => {
                let pins = self.peer_pins.as_deref()?;
                if self.validator_pending {
                    return None;
                }
                secret::Type::ValidationContext(match &self.validator_config {
                    Some(config) => module_validation_context(&with_live_keys(config, pins)),
                    None => pinned_validation_context(pins),
                })
            }
            _ => return None,
        };
        Some(Secret {
            name: name.to_owned(),
            r#type: Some(kind),
        })
    }

    /// The resources among `names` that exist, and a version for exactly
    /// that content.
    /// An empty `names` means every resource (xDS wildcard subscription).
    pub fn resources(&self, names: &BTreeSet<String>) -> (Vec<Any>, String) {
        let everything: BTreeSet<String> = [DEFAULT_RESOURCE, ROOTCA_RESOURCE]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let names = if names.is_empty() { &everything } else { names };
        let mut encoded = Vec::new();
        for name in names {
            if let Some(secret) = self.secret(name) {
                encoded.push(Any {
                    type_url: SECRET_TYPE_URL.to_owned(),
                    value: secret.encode_to_vec(),
                });
            }
        }
        let parts: Vec<&[u8]> = encoded.iter().map(|a| a.value.as_slice()).collect();
        let version = content_version(&parts);
        (encoded, version)
    }
}

/// The SDS service over a watch channel of [`Secrets`].
#[derive(Clone, Debug)]
pub struct SdsService {
    secrets: watch::Receiver<Arc<Secrets>>,
    nonces: Arc<core::sync::atomic::AtomicU64>,
}

impl SdsService {
    /// A service serving whatever `secrets` holds.
    pub fn new(secrets: watch::Receiver<Arc<Secrets>>) -> Self {
        SdsService {
            secrets,
            nonces: Arc::new(core::sync::atomic::AtomicU64::new(0)),
        }
    }

    fn next_nonce(&self) -> String {
        let n = self
            .nonces
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        format!("{n:x}")
    }
}

/// Per-stream xDS bookkeeping (pure: unit-tested without gRPC).
#[derive(Debug, Default)]
pub struct StreamState {
    /// The resource names the client subscribed to.
    pub names: Option<BTreeSet<String>>,
    /// Nonce of the last response.
    pub last_nonce: Option<String>,
    /// Version of the last response.
    pub last_version: Option<String>,
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestAction {
    /// Send the current resources.
    Respond,
    /// ACK of the last response: nothing to send.
    Ack,
    /// NACK of the last response: nothing to send, log the error.
    Nack(String),
    /// A response to an older response: ignore.
    Stale,
}

impl StreamState {
    /// Classifies a request and records its subscription.
    pub fn on_request(&mut self, request: &DiscoveryRequest) -> RequestAction {
        let names: BTreeSet<String> = request.resource_names.iter().cloned().collect();
        if !request.response_nonce.is_empty() {
            if self.last_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                return RequestAction::Stale;
            }
            let same_names = self.names.as_ref() == Some(&names);
            self.names = Some(names);
            if !same_names {
                // A subscription change rides on the ACK: answer it.
                return RequestAction::Respond;
            }
            return match &request.error_detail {
                Some(status) => RequestAction::Nack(status.message.clone()),
                None => RequestAction::Ack,
            };
        }
        self.names = Some(names);
        // A first request (or a reconnect): always answer, even with the
        // version the client says it has, so it can confirm it.
        self.last_version = None;
        RequestAction::Respond
    }
}

type ResponseTx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

async fn send_current(
    service: &SdsService,
    state: &mut StreamState,
    secrets: &Secrets,
    tx: &ResponseTx,
) -> bool {
    let Some(names) = state.names.as_ref() else {
        return true;
    };
    let (resources, version) = secrets.resources(names);
    if resources.is_empty() {
        // Nothing requested exists yet (no certificate before the first
        // registration): Envoy keeps waiting, and the watch pushes it later.
        debug!(?names, "SDS: requested resources not available yet");
        return true;
    }
    if state.last_version.as_deref() == Some(version.as_str()) {
        return true;
    }
    let nonce = service.next_nonce();
    let response = DiscoveryResponse {
        version_info: version.clone(),
        resources,
        type_url: SECRET_TYPE_URL.to_owned(),
        nonce: nonce.clone(),
        ..Default::default()
    };
    info!(?names, %version, %nonce, "SDS: pushing secrets");
    state.last_nonce = Some(nonce);
    state.last_version = Some(version);
    tx.send(Ok(response)).await.is_ok()
}

async fn run_stream(service: SdsService, mut inbound: Streaming<DiscoveryRequest>, tx: ResponseTx) {
    let mut secrets = service.secrets.clone();
    let mut state = StreamState::default();
    loop {
        tokio::select! {
            request = inbound.message() => {
                let request = match request {
                    Ok(Some(r)) => r,
                    Ok(None) => { debug!("SDS stream closed by the client"); return; }
                    Err(status) => { debug!(%status, "SDS stream ended"); return; }
                };
                match state.on_request(&request) {
                    RequestAction::Respond => {
                        let current = secrets.borrow_and_update().clone();
                        if !send_current(&service, &mut state, &current, &tx).await {
                            return;
                        }
                    }
                    RequestAction::Ack => {
                        debug!(version = %request.version_info, "SDS: ACK");
                    }
                    RequestAction::Nack(message) => {
                        warn!(version = ?state.last_version, %message, "SDS: Envoy rejected the pushed secrets (NACK)");
                    }
                    RequestAction::Stale => {
                        debug!(nonce = %request.response_nonce, "SDS: ignoring a request with a stale nonce");
                    }
                }
            }
            changed = secrets.changed() => {
                if changed.is_err() {
                    // The agent is shutting down.
                    return;
                }
                let current = secrets.borrow_and_update().clone();
                if !send_current(&service, &mut state, &current, &tx).await {
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;
    type StreamSecretsStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        Err(Status::unimplemented(
            "delta SDS is not supported: use the state-of-the-world StreamSecrets",
        ))
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(run_stream(self.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let current = self.secrets.borrow().clone();
        let (resources, version) = current.resources(&names);
        if resources.is_empty() {
            return Err(Status::unavailable(
                "none of the requested secrets is available yet",
            ));
        }
        Ok(Response::new(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce: self.next_nonce(),
            ..Default::default()
        }))
    }
}

/// Binds the Unix socket at `path` (replacing a stale socket left by a
/// crashed agent, refusing to replace anything else) with `mode`.
pub fn bind(path: &Path, mode: u32) -> Result<tokio::net::UnixListener, Error> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let err = |error| Error::Sds {
        path: path.to_owned(),
        error,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(err)?,
        Ok(_) => {
            return Err(Error::Config(format!(
                "--sds-socket {} exists and is not a socket",
                path.display()
            )));
        }
        Err(_) => {}
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}

/// Serves SDS on `listener` until `shutdown` completes, then removes the
/// socket file.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    secrets: watch::Receiver<Arc<Secrets>>,
    shutdown: impl core::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let service = SecretDiscoveryServiceServer::new(SdsService::new(secrets));
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| Error::Sds {
        path,
        error: std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(names: &[&str], nonce: &str, nack: bool) -> DiscoveryRequest {
        DiscoveryRequest {
            resource_names: names.iter().map(|s| (*s).to_owned()).collect(),
            response_nonce: nonce.to_owned(),
            type_url: SECRET_TYPE_URL.to_owned(),
            error_detail: nack.then(|| envoy_types::pb::google::rpc::Status {
                code: 3,
                message: "bad".to_owned(),
                details: vec![],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ack_nack_and_stale_nonces() {
        let mut s = StreamState::default();
        assert_eq!(
            s.on_request(&request(&["default"], "", false)),
            RequestAction::Respond
        );
        s.last_nonce = Some("1".to_owned());
        assert_eq!(
            s.on_request(&request(&["default"], "0", false)),
            RequestAction::Stale
        );
        assert_eq!(
            s.on_request(&request(&["default"], "1", false)),
            RequestAction::Ack
        );
        assert_eq!(
            s.on_request(&request(&["default"], "1", true)),
            RequestAction::Nack("bad".to_owned())
        );
        assert_eq!(
            s.on_request(&request(&["default", "ROOTCA"], "1", false)),
            RequestAction::Respond
        );
    }

    #[test]
    fn resources_and_versions() {
        let mut secrets = Secrets::default();
        let names: BTreeSet<String> = ["default", "ROOTCA", "other"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (r0, _) = secrets.resources(&names);
        assert!(r0.is_empty(), "no ROOTCA before the log was followed");
        secrets.peer_pins = Some(vec![[7; 32], [9; 32]]);
        let (r1, v1) = secrets.resources(&names);
        assert_eq!(r1.len(), 1, "only ROOTCA before a certificate exists");
        secrets.certificate = Some(("cert".to_owned(), "key".to_owned()));
        let (r2, v2) = secrets.resources(&names);
        assert_eq!(r2.len(), 2);
        assert_ne!(v1, v2);
        assert_eq!(
            secrets.resources(&names).1,
            v2,
            "same content, same version"
        );
        let rootca = Secret::decode(r2[0].value.as_slice()).expect("decode");
        let Some(secret::Type::ValidationContext(vc)) = rootca.r#type else {
            panic!("ROOTCA is a validation context");
        };
        // Pins only: no CA, no ACCEPT_UNTRUSTED (which would switch the pins
        // off), no SAN matchers (refused by Envoy without a CA).
        assert_eq!(
            vc.verify_certificate_spki,
            [
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
                "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="
            ]
        );
        assert!(vc.trusted_ca.is_none());
        assert_eq!(vc.trust_chain_verification, 0, "VERIFY_TRUST_CHAIN");
        assert!(vc.match_typed_subject_alt_names.is_empty());
        // A pin change is a new version (pushed to Envoy).
        if let Some(pins) = secrets.peer_pins.as_mut() {
            pins.push([11; 32]);
        }
        assert_ne!(secrets.resources(&names).1, v2);
    }

    #[test]
    fn no_live_peer_is_one_pin_nobody_holds_never_an_empty_context() {
        let vc = pinned_validation_context(&[]);
        assert_eq!(
            vc.verify_certificate_spki,
            ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
        );
        assert!(vc.trusted_ca.is_none());
    }

    #[test]
    fn with_the_validator_rootca_is_the_module_alone() {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::cert_validator::dynamic_modules::v3::DynamicModuleCertValidatorConfig;
        let secrets = Secrets {
            peer_pins: Some(vec![[7; 32]]),
            validator_config: Some(r#"{"registry_file":"/r"}"#.into()),
            ..Secrets::default()
        };
        let Some(secret::Type::ValidationContext(vc)) =
            secrets.secret(ROOTCA_RESOURCE).and_then(|s| s.r#type)
        else {
            panic!("ROOTCA is a validation context");
        };
        // No pins, no CA, no SAN matchers, no ACCEPT_UNTRUSTED beside it.
        assert_eq!(
            vc,
            CertificateValidationContext {
                custom_validator_config: vc.custom_validator_config.clone(),
                ..Default::default()
            }
        );
        let custom = vc.custom_validator_config.expect("custom validator");
        assert_eq!(custom.name, "envoy.tls.cert_validator.dynamic_modules");
        let any = custom.typed_config.expect("typed config");
        let config =
            DynamicModuleCertValidatorConfig::decode(any.value.as_slice()).expect("decodes");
        assert_eq!(
            config.dynamic_module_config.map(|m| m.name).as_deref(),
            Some(VALIDATOR_MODULE_NAME)
        );
        assert_eq!(config.validator_name, "mazu");
        let value = config.validator_config.expect("validator config").value;
        let json = envoy_types::pb::google::protobuf::StringValue::decode(value.as_slice())
            .expect("a StringValue");
        let served: serde_json::Value = serde_json::from_str(&json.value).expect("JSON");
        assert_eq!(served["registry_file"], "/r");
        let live_keys = served["live_keys"].as_str().expect("live_keys").to_owned();
        assert_eq!(live_keys.len(), 64);
        // The same live keys in any order: the same configuration (no
        // context rebuilt); one key less: another one (sessions made with
        // the removed key's holder cannot be resumed).
        let reordered = Secrets {
            peer_pins: Some(vec![[9; 32], [7; 32]]),
            ..secrets.clone()
        };
        let fewer = Secrets {
            peer_pins: Some(vec![[9; 32]]),
            ..secrets.clone()
        };
        let both = Secrets {
            peer_pins: Some(vec![[7; 32], [9; 32]]),
            ..secrets.clone()
        };
        assert_eq!(
            reordered.secret(ROOTCA_RESOURCE),
            both.secret(ROOTCA_RESOURCE)
        );
        assert_ne!(fewer.secret(ROOTCA_RESOURCE), both.secret(ROOTCA_RESOURCE));
        assert_ne!(
            secrets.secret(ROOTCA_RESOURCE),
            both.secret(ROOTCA_RESOURCE)
        );
        // Not served before the log was followed, as with the pins.
        let before = Secrets {
            validator_config: secrets.validator_config.clone(),
            ..Secrets::default()
        };
        assert!(before.secret(ROOTCA_RESOURCE).is_none());
        // Nor while the destinations from Kubernetes were never read.
        let pending = Secrets {
            validator_pending: true,
            ..secrets.clone()
        };
        assert!(pending.secret(ROOTCA_RESOURCE).is_none());
    }
}
