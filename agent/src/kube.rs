//! Reading Services, EndpointSlices and Pods from the Kubernetes API server
//! (the cluster's identity root), and the poller that turns them into the
//! handshake validator's `destinations` ([`crate::destinations`]).
//!
//! Plain `LIST` requests every poll interval, no watch: `GET
//! /api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices` and
//! `/api/v1/pods`, each in pages of [`PAGE_LIMIT`] objects followed through
//! `metadata.continue`. Only the fields the derivation needs are parsed.
//! The bearer token is read again for every poll (the kubelet rotates it);
//! TLS trusts exactly the CA file given (the pod's service-account CA).
//!
//! A poll that fails (unreachable, an HTTP error, a body that does not
//! parse, a token that cannot be read) changes nothing: the last good
//! destinations are kept and a warning is logged.

use core::time::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::curator::error_chain;
use crate::destinations::{self, Change, ClusterView, Destinations};

/// The in-cluster service-account token.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The in-cluster CA of the API server.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// Objects asked for per page of a list.
pub const PAGE_LIMIT: u32 = 500;
/// The longest a whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most pages followed for one list (500 × 1000 objects): a server
/// that keeps answering `continue` cannot hold the poller forever.
const MAX_PAGES: usize = 1000;

/// Why reading from the API server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The API URL is unusable.
    #[error("Kubernetes API URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("Kubernetes CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client cannot be built.
    #[error("Kubernetes API client: {0}")]
    Client(String),
    /// The token file cannot be read (or is empty).
    #[error("Kubernetes token file {path}: {reason}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No answer.
    #[error("GET {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// An answer other than 200.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
    },
    /// A 200 whose body is not the expected list.
    #[error("GET {url}: the body is not a Kubernetes list: {reason}")]
    Parse {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// More pages than [`MAX_PAGES`].
    #[error("GET {url}: more than {MAX_PAGES} pages")]
    TooManyPages {
        /// The URL asked.
        url: String,
    },
}

/// Object metadata: the fields the derivation reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// UID.
    #[serde(default)]
    pub uid: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A Service (only its metadata is read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Service {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// An EndpointSlice (`discovery.k8s.io/v1`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EndpointSlice {
    /// Metadata (the `kubernetes.io/service-name` label names the Service).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Its endpoints (`null` when there are none).
    #[serde(default, deserialize_with = "null_is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The object behind it.
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
}

/// An endpoint's `targetRef`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ObjectReference {
    /// `Pod` for pods.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (the slice's when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// UID.
    #[serde(default)]
    pub uid: Option<String>,
}

/// A Pod: its metadata and service account.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pod {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// The part of a pod's spec read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The pod's service account.
    #[serde(default)]
    pub service_account_name: Option<String>,
}

impl Pod {
    /// The pod's service account (`default` when the spec names none, as
    /// the API server's admission does).
    pub fn service_account(&self) -> &str {
        match self.spec.service_account_name.as_deref() {
            Some(sa) if !sa.is_empty() => sa,
            _ => "default",
        }
    }
}

fn null_is_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned"))]
struct List<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_is_empty")]
    items: Vec<T>,
    #[serde(default)]
    metadata: ListMeta,
}

#[derive(Default, Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeSource {
    /// Base URL, `https://host:port`.
    pub api_url: String,
    /// The bearer token file (re-read every poll).
    pub token_file: PathBuf,
    /// The CA certificate(s), PEM, that the API server's certificate must
    /// chain to.
    pub ca_file: PathBuf,
}

impl KubeSource {
    /// The in-cluster API URL from `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`, as every in-cluster client finds it.
    pub fn in_cluster_url() -> Option<String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").ok()?;
        if host.is_empty() || port.is_empty() {
            return None;
        }
        Some(if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        })
    }
}

/// A client for the three lists.
#[derive(Clone, Debug)]
pub struct KubeClient {
    http: reqwest::Client,
    base: String,
    token_file: PathBuf,
}

impl KubeClient {
    /// A client for `source`: HTTPS only, trusting only its CA file.
    pub fn new(source: &KubeSource) -> Result<KubeClient, KubeError> {
        let url_error = |reason| KubeError::Url {
            url: source.api_url.clone(),
            reason,
        };
        let base = source.api_url.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(url_error(
                "an https:// URL is required (the bearer token is never sent in clear)",
            ));
        }
        reqwest::Url::parse(&base).map_err(|_| url_error("not a URL"))?;
        let ca_error = |reason: String| KubeError::Ca {
            path: source.ca_file.clone(),
            reason,
        };
        let pem = std::fs::read(&source.ca_file).map_err(|e| ca_error(e.to_string()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error("no PEM certificate in it".to_owned()));
        }
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .timeout(REQUEST_TIMEOUT);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|e| KubeError::Client(e.to_string()))?;
        Ok(KubeClient {
            http,
            base,
            token_file: source.token_file.clone(),
        })
    }

    fn token(&self) -> Result<String, KubeError> {
        let error = |reason: String| KubeError::Token {
            path: self.token_file.clone(),
            reason,
        };
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| error(e.to_string()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(error("empty".to_owned()));
        }
        Ok(token.to_owned())
    }

    /// Every object of the list at `path`, page by page.
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, KubeError> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base);
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let limit = PAGE_LIMIT.to_string();
            let mut query = vec![("limit", limit.as_str())];
            if let Some(token) = next.as_deref() {
                query.push(("continue", token));
            }
            let response = self
                .http
                .get(&url)
                .query(&query)
                .bearer_auth(&token)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| KubeError::Unreachable {
                    url: url.clone(),
                    reason: error_chain(&e),
                })?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(KubeError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            let body = response.bytes().await.map_err(|e| KubeError::Unreachable {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            let page: List<T> = serde_json::from_slice(&body).map_err(|e| KubeError::Parse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            items.extend(page.items);
            match page.metadata.continue_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(items),
            }
        }
        Err(KubeError::TooManyPages { url })
    }

    /// Services, EndpointSlices and Pods of every namespace.
    pub async fn view(&self) -> Result<ClusterView, KubeError> {
        Ok(ClusterView {
            services: self.list("/api/v1/services").await?,
            slices: self
                .list("/apis/discovery.k8s.io/v1/endpointslices")
                .await?,
            pods: self.list("/api/v1/pods").await?,
        })
    }
}

/// What the poller publishes: the validator configuration to serve, with
/// the derived destinations merged in (`None` until the first good poll).
pub type ServedConfig = Option<Arc<str>>;

/// The destinations poller: every `interval`, reads the API server,
/// derives the destinations and, when they changed, publishes the
/// validator configuration with them merged in.
#[derive(Debug)]
pub struct DestinationsPoller {
    /// The API client.
    pub client: KubeClient,
    /// The validator configuration as written (hand-written destinations).
    pub config_json: String,
    /// The validator configuration's `trust.trust_domain`.
    pub trust_domain: String,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// How often the API server is read.
    pub interval: Duration,
}

impl DestinationsPoller {
    /// Polls forever (abort the task to stop it), publishing to `tx`.
    pub async fn run(self, tx: watch::Sender<ServedConfig>) {
        let mut last: Option<Destinations> = None;
        loop {
            self.poll_once(&mut last, &tx).await;
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One poll: on success and a change, publish; on failure, keep.
    pub async fn poll_once(
        &self,
        last: &mut Option<Destinations>,
        tx: &watch::Sender<ServedConfig>,
    ) {
        let view = match self.client.view().await {
            Ok(view) => view,
            Err(e) => {
                warn!(
                    error = %e,
                    kept_hosts = last.as_ref().map(Destinations::len),
                    "cannot read Services, EndpointSlices and Pods from the Kubernetes API server; keeping the last destinations"
                );
                return;
            }
        };
        let derived = destinations::derive(&view, &self.trust_domain, &self.cluster_domain);
        if last.as_ref() == Some(&derived) {
            return;
        }
        let merged = match destinations::merge_into_config(&self.config_json, &derived) {
            Ok(merged) => merged,
            Err(e) => {
                warn!(error = %e, "cannot serve the derived destinations; keeping the last ones");
                return;
            }
        };
        let change = Change::between(last.as_ref().unwrap_or(&Destinations::new()), &derived);
        info!(
            hosts = derived.len(),
            added = ?change.added,
            removed = ?change.removed,
            changed = ?change.changed,
            services = view.services.len(),
            pods = view.pods.len(),
            "destinations derived from Kubernetes changed; serving them in ROOTCA"
        );
        *last = Some(derived);
        tx.send_replace(Some(Arc::from(merged)));
    }
}
