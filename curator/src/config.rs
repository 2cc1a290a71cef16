//! Command-line configuration (every flag can also be set through the
//! environment variable named in `--help`).
//!
//! [`Args`] is what clap parses; [`Args::validate`] turns it into a checked
//! [`Config`] or a [`ConfigError`] that says exactly what is missing or wrong.
//! Files named by the configuration (CRS, JWKS) are read by
//! [`crate::bootstrap`].

use core::net::SocketAddr;
use core::time::Duration;
use std::path::PathBuf;

use clap::Parser;
use mazu_identity::trust::NamespaceScope;

use crate::witnessing::WitnessEndpoint;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Default SPIFFE trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The key curator: logs workload bindings and token reveals (bind first,
/// reveal later) in a witnessed log, and serves the RBE public parameters,
/// the log's records, openings and proofs.
///
/// It holds no secret that makes an identity: everything it serves can be
/// recomputed from its log (`GET /v1/log`). API reference: docs/curator.md;
/// protocol: docs/protocol.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "mazu-curator", version, about, long_about)]
pub struct Args {
    // --- Subcommands (repair); the serve flags follow. ---
    /// Without a subcommand the curator serves (the flags below).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (HTTPS; plain HTTP with --insecure-plain-http). Port 0 picks a free port; the bound
    /// address is logged and written to --addr-file.
    #[arg(long, env = "MAZU_CURATOR_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Directory for the registration log (`registrations.log`) and, with
    /// --dev-crs, the generated development CRS. Created if missing.
    #[arg(long, env = "MAZU_CURATOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The CRS file (canonical binary encoding, from a multi-party ceremony).
    /// With --dev-crs: where the development CRS is generated (if the file
    /// does not exist) and loaded from.
    #[arg(long, env = "MAZU_CURATOR_CRS", value_name = "FILE")]
    pub crs: Option<PathBuf>,

    /// The ceremony transcript (`mazu-ceremony`'s transcript.bin) that --crs
    /// comes from. Required with --crs (unless --dev-crs): the curator
    /// verifies every contribution and refuses to start unless the
    /// transcript verifies and ends in exactly that CRS.
    #[arg(long, env = "MAZU_CURATOR_CRS_TRANSCRIPT", value_name = "FILE")]
    pub crs_transcript: Option<PathBuf>,

    /// The Ed25519 key that signs checkpoints (tree size and Merkle root of
    /// the log), as 32 raw bytes or 64 hex digits. It grants no identity
    /// power: it only makes the curator accountable for what it served.
    /// Default: DATA_DIR/checkpoint.key, generated (mode 0600) on first
    /// start, when the data directory holds no log yet. Missing later, it is
    /// an error (witnesses, auditors and filters pinned it) unless
    /// --create-checkpoint-key.
    #[arg(long, env = "MAZU_CURATOR_CHECKPOINT_KEY", value_name = "FILE")]
    pub checkpoint_key: Option<PathBuf>,

    /// Create a new checkpoint key at DATA_DIR/checkpoint.key although the
    /// data directory already holds a log (the old key is lost): every
    /// witness, auditor and filter must then be given the new verifier key.
    #[arg(long, env = "MAZU_CURATOR_CREATE_CHECKPOINT_KEY")]
    pub create_checkpoint_key: bool,

    /// The checkpoint origin line (the log's name in signed checkpoints).
    /// Default: "mazu-curator/" followed by the first 16 hex digits of the CRS
    /// digest.
    #[arg(long, env = "MAZU_CURATOR_CHECKPOINT_ORIGIN", value_name = "ORIGIN")]
    pub checkpoint_origin: Option<String>,

    /// INSECURE, development only: use a single-contributor CRS whose secret
    /// was known to this process when it generated it (anyone holding that
    /// secret can decrypt and forge openings). Generated into --crs, or
    /// DATA_DIR/dev-crs.bin, if missing. Logged as a warning at start-up and
    /// reported by /readyz.
    #[arg(long, env = "MAZU_CURATOR_DEV_CRS")]
    pub dev_crs: bool,

    /// Registry capacity N (number of slots). Must equal the CRS's capacity;
    /// with --dev-crs it is the capacity of the generated CRS.
    #[arg(long, env = "MAZU_CURATOR_CAPACITY", value_name = "N")]
    pub capacity: Option<u32>,

    /// A trusted token issuer, its JWKS and the namespaces it may assert, as
    /// ISSUER=JWKS;namespaces=SCOPE where JWKS is a file or an http:// URL and
    /// SCOPE is namespace names joined by '+' (`shop+payments`) or `*` for
    /// every namespace (only for the cluster's own issuer). E.g.
    /// `https://kubernetes.default.svc.cluster.local=/etc/mazu/jwks.json;namespaces=*`
    /// or `https://tenant.example=http://jwks-proxy:8080/jwks;namespaces=tenant-a`.
    /// The scope is required: a token naming a namespace outside its
    /// issuer's scope is refused (token_namespace_out_of_scope). Repeat
    /// for several issuers (comma-separated in the environment variable). A
    /// file is read once at start-up; a URL (http:// only, see docs) is
    /// fetched at start-up and every --jwks-refresh-secs. ISSUER must equal
    /// the tokens' `iss` claim and must not contain '='.
    #[arg(
        long = "issuer",
        env = "MAZU_CURATOR_ISSUERS",
        value_delimiter = ',',
        value_name = "ISSUER=JWKS;namespaces=SCOPE"
    )]
    pub issuers: Vec<String>,

    /// How often JWKS given by URL are fetched again, in seconds (0: only at
    /// start-up). A failed refresh keeps the last good key set and logs a
    /// warning.
    #[arg(
        long,
        env = "MAZU_CURATOR_JWKS_REFRESH_SECS",
        default_value_t = 300,
        value_name = "SECS"
    )]
    pub jwks_refresh_secs: u64,

    /// Write a state snapshot (DATA_DIR/state.snapshot) every N log entries
    /// and on clean shutdown, and start from it (after checking it against
    /// the log) instead of replaying the whole log. 0 turns snapshots off.
    #[arg(
        long,
        env = "MAZU_CURATOR_SNAPSHOT_EVERY",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub snapshot_every: u64,

    /// The audience tokens must be issued for (their `aud` must be exactly
    /// this). Required, and unique to this deployment, so that a token seen
    /// in another deployment's log or certificates cannot be registered
    /// here: recommended "mazu:" followed by the checkpoint origin (by
    /// default "mazu:mazu-curator/<first 16 hex digits of the CRS digest>";
    /// the curator logs the value at start-up). The shared "mazu" is refused.
    #[arg(long, env = "MAZU_CURATOR_AUDIENCE", value_name = "AUDIENCE")]
    pub audience: Option<String>,

    /// The SPIFFE trust domain of the workloads (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT).
    #[arg(long, env = "MAZU_CURATOR_TRUST_DOMAIN", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// Clock skew tolerated when checking a token's exp/nbf/iat, in seconds.
    #[arg(
        long,
        env = "MAZU_CURATOR_CLOCK_SKEW_SECS",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub clock_skew_secs: u64,

    /// Write the bound listen address (e.g. 127.0.0.1:40123) to this file once
    /// the socket is bound (written atomically).
    #[arg(long, env = "MAZU_CURATOR_ADDR_FILE", value_name = "FILE")]
    pub addr_file: Option<PathBuf>,

    /// How long a slot reservation (POST /v1/slots) is held, in seconds.
    #[arg(
        long,
        env = "MAZU_CURATOR_RESERVATION_TTL_SECS",
        default_value_t = 300,
        value_name = "SECS"
    )]
    pub reservation_ttl_secs: u64,

    /// A binding whose token is not revealed this many seconds after it was
    /// logged is released (reason `unrevealed`) and its slot reused. Bounds
    /// how long junk bindings hold slots; an agent that misses it needs a new
    /// token (the id stays void).
    #[arg(
        long,
        env = "MAZU_CURATOR_REVEAL_WINDOW_SECS",
        default_value_t = 600,
        value_name = "SECS"
    )]
    pub reveal_window_secs: u64,

    /// Release a live binding (reason `expired`) once its token expired
    /// this long ago, in seconds, freeing its slot.
    #[arg(
        long,
        env = "MAZU_CURATOR_EXPIRY_GRACE_SECS",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub expiry_grace_secs: u64,

    /// Live registrations one namespace may hold at once (0: no quota), so
    /// that one compromised namespace cannot take the whole registry. A
    /// reveal beyond it is refused (namespace_quota); its binding is
    /// released after the reveal window.
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_LIVE_PER_NAMESPACE",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_live_per_namespace: usize,

    /// The latest token expiry a binding may commit to, in seconds from
    /// now. An ended id is kept (and cannot be bound again) until its
    /// token's expiry, so this bounds how long junk bindings weigh on every
    /// party's state. Kubernetes projected tokens last an hour by default.
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_TOKEN_LIFETIME_SECS",
        default_value_t = 48 * 3600,
        value_name = "SECS"
    )]
    pub max_token_lifetime_secs: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAZU_CURATOR_MAX_BODY_BYTES", default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Write requests (slots, bindings, reveals) allowed per client IP per
    /// minute; 0 disables the per-client limit.
    #[arg(
        long,
        env = "MAZU_CURATOR_RATE_LIMIT_PER_MINUTE",
        default_value_t = 60,
        value_name = "N"
    )]
    pub rate_limit_per_minute: u32,

    /// Burst size of the per-client rate limit.
    #[arg(
        long,
        env = "MAZU_CURATOR_RATE_LIMIT_BURST",
        default_value_t = 20,
        value_name = "N"
    )]
    pub rate_limit_burst: u32,

    /// Requests processed at once across all /v1 endpoints; further requests
    /// are refused at once with 503 "overloaded" (load shedding).
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub max_concurrent_requests: usize,

    /// Bindings being verified or waiting for the writer at once; further
    /// bindings are refused with 503 "overloaded".
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_PENDING_REGISTRATIONS",
        default_value_t = 64,
        value_name = "N"
    )]
    pub max_pending_registrations: usize,

    /// Bindings verified in parallel (pairing checks run on blocking
    /// threads); default: the number of CPUs.
    #[arg(long, env = "MAZU_CURATOR_VERIFY_THREADS", value_name = "N")]
    pub verify_threads: Option<usize>,

    /// Whole-request timeout (including reading the body), in seconds.
    #[arg(
        long,
        env = "MAZU_CURATOR_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub request_timeout_secs: u64,

    /// A request body not received in full within this many seconds is
    /// refused (408 timeout), freeing its place for other clients.
    #[arg(
        long,
        env = "MAZU_CURATOR_BODY_READ_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub body_read_timeout_secs: u64,

    /// A request head not received in full within this many seconds closes
    /// the connection; also how long a kept-alive connection may stay idle.
    #[arg(
        long,
        env = "MAZU_CURATOR_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub header_read_timeout_secs: u64,

    /// Open connections at once, all clients together; more are closed at
    /// once.
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Open connections at once from one client address (IPv6: one /64);
    /// more are closed at once.
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64,
        value_name = "N"
    )]
    pub max_connections_per_client: usize,

    /// /v1 requests in progress at once from one client address (IPv6: one
    /// /64); more are refused with 503 "overloaded", so that one client
    /// set cannot take every place of --max-concurrent-requests.
    #[arg(
        long,
        env = "MAZU_CURATOR_MAX_REQUESTS_PER_CLIENT",
        default_value_t = 32,
        value_name = "N"
    )]
    pub max_requests_per_client: usize,

    /// A witness that must cosign checkpoints before binds and reveals are
    /// answered, as URL=VKEY;tls-pin=PIN: the witness's https:// submission
    /// URL (the curator posts to URL/add-checkpoint, C2SP tlog-witness), its
    /// cosignature verifier key (NAME+KEYID+BASE64) and the pin of its TLS
    /// key (base64 SHA-256, the witness's --tls-pin-file): the connection is
    /// accepted only from the server holding that key, no CA is trusted.
    /// An http:// URL=VKEY without a pin needs
    /// --insecure-plain-http-witness. Repeat for several witnesses
    /// (comma-separated in the environment variable). At least one is
    /// required unless --insecure-no-witness.
    #[arg(
        long = "witness",
        env = "MAZU_CURATOR_WITNESSES",
        value_delimiter = ',',
        value_name = "URL=VKEY;tls-pin=PIN"
    )]
    pub witnesses: Vec<String>,

    /// How many of the --witness witnesses must cosign a checkpoint before
    /// it is served and binds and reveals are answered (default: all).
    #[arg(long, env = "MAZU_CURATOR_WITNESS_QUORUM", value_name = "K")]
    pub witness_quorum: Option<usize>,

    /// Re-submit the newest checkpoint to the witnesses this often, in
    /// seconds, even if the log did not grow, so that cosignature timestamps
    /// stay fresh (verifiers measure staleness from them).
    #[arg(
        long,
        env = "MAZU_CURATOR_WITNESS_REFRESH_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub witness_refresh_secs: u64,

    /// Timeout of one request to a witness, in milliseconds. A bind or
    /// reveal waits up to twice this (the round in flight, then the round
    /// covering it) for a witnessed checkpoint, then answers 503
    /// witness_unavailable (the entry stays logged; retry the same request).
    #[arg(
        long,
        env = "MAZU_CURATOR_WITNESS_TIMEOUT_MS",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub witness_timeout_ms: u64,

    /// INSECURE, development only: run without witnesses, serving
    /// checkpoints signed by the curator alone. Nothing then stops the
    /// curator from showing different logs to different parties (a
    /// split view), which is what lets it impersonate workloads. Required
    /// when no --witness is given; refused with one.
    #[arg(long, env = "MAZU_CURATOR_INSECURE_NO_WITNESS")]
    pub insecure_no_witness: bool,

    /// INSECURE, development only: allow --witness http://URL=VKEY (plain
    /// HTTP, no pin). Anyone on the path can then answer in such a witness's
    /// place and withhold its cosignatures (not forge them). Without this
    /// flag an http:// witness is refused.
    #[arg(long, env = "MAZU_CURATOR_INSECURE_PLAIN_HTTP_WITNESS")]
    pub insecure_plain_http_witness: bool,

    /// The key of the curator's TLS certificate (P-256, stored as 32 raw
    /// bytes or 64 hex digits like the checkpoint key). Clients pin the
    /// SHA-256 of its public key (--tls-pin-file); the self-signed
    /// certificate is made anew from it at every start. Default:
    /// DATA_DIR/tls.key, generated (mode 0600) on first start.
    #[arg(long, env = "MAZU_CURATOR_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Write the TLS pin (base64 SHA-256 of the certificate's public key,
    /// what agents take as --curator-tls-pin and Envoy as
    /// verify_certificate_spki) to this file at start (written atomically).
    #[arg(long, env = "MAZU_CURATOR_TLS_PIN_FILE", value_name = "FILE")]
    pub tls_pin_file: Option<PathBuf>,

    /// INSECURE, development only: serve plain HTTP instead of TLS. Anyone
    /// on the path can then read registrations and answer in the curator's
    /// place (which, with bind-first and witnesses, gives them a lying
    /// curator's powers and no more: docs/trust.md).
    #[arg(long, env = "MAZU_CURATOR_INSECURE_PLAIN_HTTP", conflicts_with_all = ["tls_key", "tls_pin_file"])]
    pub insecure_plain_http: bool,

    /// On SIGTERM/Ctrl-C, how long to let in-flight requests finish, in seconds.
    #[arg(
        long,
        env = "MAZU_CURATOR_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub shutdown_grace_secs: u64,
}

/// Where the CRS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrsSource {
    /// A ceremony CRS read from a file, with the ceremony transcript it must
    /// be the final CRS of.
    File {
        /// The CRS file.
        crs: PathBuf,
        /// The ceremony transcript file.
        transcript: PathBuf,
    },
    /// An insecure development CRS, generated into this file if missing.
    Dev(PathBuf),
}

/// One trusted issuer and where its JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSpec {
    /// The issuer URL (the tokens' `iss`).
    pub issuer: String,
    /// Its JWKS (JSON).
    pub jwks: JwksSource,
    /// The namespaces it may assert.
    pub namespaces: NamespaceScope,
}

/// Where an issuer's JWKS is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, read once at start-up.
    File(PathBuf),
    /// An `http://` URL, fetched at start-up and refreshed periodically.
    Url(String),
}

/// How the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS with a self-signed certificate over a pinned key.
    Tls {
        /// The key file (`None`: DATA_DIR/tls.key, generated if missing).
        key: Option<PathBuf>,
        /// Where to write the pin.
        pin_file: Option<PathBuf>,
    },
    /// Plain HTTP (`--insecure-plain-http`).
    InsecurePlainHttp,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// CRS source.
    pub crs: CrsSource,
    /// The checkpoint signing key file (`None`: DATA_DIR/checkpoint.key,
    /// generated if missing in a fresh data directory).
    pub checkpoint_key: Option<PathBuf>,
    /// `--create-checkpoint-key`: generate it even beside an existing log.
    pub create_checkpoint_key: bool,
    /// The checkpoint origin (`None`: derived from the CRS digest).
    pub checkpoint_origin: Option<String>,
    /// Capacity N.
    pub capacity: u32,
    /// Trusted issuers.
    pub issuers: Vec<IssuerSpec>,
    /// Required audience.
    pub audience: String,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Token clock skew.
    pub clock_skew_secs: u64,
    /// Where to write the bound address.
    pub addr_file: Option<PathBuf>,
    /// TLS or plain HTTP.
    pub transport: Transport,
    /// Slot reservation lifetime.
    pub reservation_ttl: Duration,
    /// When the curator releases bindings on its own.
    pub lifecycle: crate::lifecycle::LifecycleOptions,
    /// Live registrations per namespace (0: no quota).
    pub namespace_quota: usize,
    /// The latest token expiry a binding may commit to, from now.
    pub max_token_lifetime: Duration,
    /// Service limits.
    pub limits: LimitsConfig,
    /// Grace period on shutdown.
    pub shutdown_grace: Duration,
    /// Refresh interval of JWKS given by URL (`None`: never refreshed).
    pub jwks_refresh: Option<Duration>,
    /// Entries between state snapshots (`None`: snapshots off).
    pub snapshot_every: Option<u64>,
    /// The witnesses (`None`: `--insecure-no-witness`).
    pub witness: Option<WitnessConfig>,
}

/// The witness configuration.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witnesses (`--witness`).
    pub endpoints: Vec<WitnessEndpoint>,
    /// How many must cosign (`--witness-quorum`, 1..=endpoints).
    pub quorum: usize,
    /// Re-submission interval (`--witness-refresh-secs`).
    pub refresh: Duration,
    /// Timeout of one witness request (`--witness-timeout-ms`).
    pub timeout: Duration,
}

/// The request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Body size limit in bytes.
    pub max_body_bytes: usize,
    /// Per-client requests per minute (0: off).
    pub rate_limit_per_minute: u32,
    /// Per-client burst.
    pub rate_limit_burst: u32,
    /// Global concurrency limit.
    pub max_concurrent_requests: usize,
    /// Registrations in flight.
    pub max_pending_registrations: usize,
    /// Parallel verifications.
    pub verify_threads: usize,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// /v1 requests in progress per client.
    pub max_requests_per_client: usize,
    /// Connection limits and the header-read (idle) timeout.
    pub connections: mazu_service::http::ConnectionLimits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            rate_limit_per_minute: 60,
            rate_limit_burst: 20,
            max_concurrent_requests: 256,
            max_pending_registrations: 64,
            verify_threads: default_verify_threads(),
            request_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            max_requests_per_client: 32,
            connections: mazu_service::http::ConnectionLimits::default(),
        }
    }
}

fn default_verify_threads() -> usize {
    std::thread::available_parallelism().map_or(2, core::num::NonZeroUsize::get)
}

/// What is wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("missing {flag}: {hint}")]
    Missing {
        /// The flag.
        flag: &'static str,
        /// What to pass.
        hint: &'static str,
    },
    /// A setting has an invalid value.
    #[error("invalid {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

impl Args {
    /// Checks every setting and returns the validated [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let data_dir = self.data_dir.ok_or(ConfigError::Missing {
            flag: "--data-dir",
            hint: "the directory that holds the registration log",
        })?;
        let capacity = self.capacity.ok_or(ConfigError::Missing {
            flag: "--capacity",
            hint: "the registry capacity N, equal to the CRS's capacity",
        })?;
        if capacity < 2 {
            return Err(invalid(
                "--capacity",
                format!("{capacity} is below the minimum of 2"),
            ));
        }
        let crs = match (self.crs, self.dev_crs) {
            (Some(path), false) => CrsSource::File {
                crs: path,
                transcript: self.crs_transcript.ok_or(ConfigError::Missing {
                    flag: "--crs-transcript",
                    hint: "the ceremony transcript the --crs file comes from (mazu-ceremony's \
                           transcript.bin); a CRS without a verified ceremony is refused \
                           (or --dev-crs for an insecure local demo)",
                })?,
            },
            (path, true) => CrsSource::Dev(path.unwrap_or_else(|| data_dir.join("dev-crs.bin"))),
            (None, false) => {
                return Err(ConfigError::Missing {
                    flag: "--crs",
                    hint: "the CRS file from the ceremony (or --dev-crs for an insecure local demo)",
                });
            }
        };
        if self.issuers.is_empty() {
            return Err(ConfigError::Missing {
                flag: "--issuer",
                hint: "at least one trusted issuer as ISSUER=JWKS_FILE_OR_URL;namespaces=SCOPE",
            });
        }
        let issuers = self
            .issuers
            .iter()
            .map(|spec| parse_issuer(spec))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in issuers.iter().enumerate() {
            if issuers[..i].iter().any(|b| b.issuer == a.issuer) {
                return Err(invalid(
                    "--issuer",
                    format!("issuer {} given twice", a.issuer),
                ));
            }
        }
        let audience = self.audience.ok_or(ConfigError::Missing {
            flag: "--audience",
            hint: "the deployment's own token audience, e.g. \"mazu:\" followed by the \
                   checkpoint origin (\"mazu:mazu-curator/<first 16 hex digits of the CRS \
                   digest>\"); there is no default, a shared audience lets tokens from one \
                   deployment be registered at another",
        })?;
        mazu_identity::trust::check_audience(&audience)
            .map_err(|e| invalid("--audience", e.to_string()))?;
        if let Some(issuer) = issuers.iter().find(|i| i.issuer == audience) {
            return Err(invalid(
                "--audience",
                mazu_identity::trust::AudienceError::IsIssuer(issuer.issuer.clone()).to_string(),
            ));
        }
        if let Some(origin) = &self.checkpoint_origin
            && !crate::checkpoint::valid_origin(origin)
        {
            return Err(invalid(
                "--checkpoint-origin",
                "must be non-empty printable text without '+' , newlines or spaces",
            ));
        }
        if self.trust_domain.is_empty() {
            return Err(invalid("--trust-domain", "must not be empty"));
        }
        if self.reservation_ttl_secs == 0 {
            return Err(invalid("--reservation-ttl-secs", "must be at least 1"));
        }
        if self.reveal_window_secs == 0 {
            return Err(invalid("--reveal-window-secs", "must be at least 1"));
        }
        if self.max_token_lifetime_secs == 0 {
            return Err(invalid("--max-token-lifetime-secs", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("--max-body-bytes", "must be at least 1024"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(invalid("--max-concurrent-requests", "must be at least 1"));
        }
        if self.max_pending_registrations == 0 {
            return Err(invalid("--max-pending-registrations", "must be at least 1"));
        }
        if self.request_timeout_secs == 0 {
            return Err(invalid("--request-timeout-secs", "must be at least 1"));
        }
        for (flag, value) in [
            ("--body-read-timeout-secs", self.body_read_timeout_secs),
            ("--header-read-timeout-secs", self.header_read_timeout_secs),
        ] {
            if value == 0 {
                return Err(invalid(flag, "must be at least 1"));
            }
        }
        for (flag, value) in [
            ("--max-connections", self.max_connections),
            (
                "--max-connections-per-client",
                self.max_connections_per_client,
            ),
            ("--max-requests-per-client", self.max_requests_per_client),
        ] {
            if value == 0 {
                return Err(invalid(flag, "must be at least 1"));
            }
        }
        let witness = witness_config(
            &self.witnesses,
            self.witness_quorum,
            self.witness_refresh_secs,
            self.witness_timeout_ms,
            self.insecure_no_witness,
            self.insecure_plain_http_witness,
        )?;
        let verify_threads = self.verify_threads.unwrap_or_else(default_verify_threads);
        if verify_threads == 0 {
            return Err(invalid("--verify-threads", "must be at least 1"));
        }
        Ok(Config {
            listen: self.listen,
            data_dir,
            crs,
            checkpoint_key: self.checkpoint_key,
            create_checkpoint_key: self.create_checkpoint_key,
            checkpoint_origin: self.checkpoint_origin,
            capacity,
            issuers,
            audience,
            trust_domain: self.trust_domain,
            clock_skew_secs: self.clock_skew_secs,
            addr_file: self.addr_file,
            transport: if self.insecure_plain_http {
                Transport::InsecurePlainHttp
            } else {
                Transport::Tls {
                    key: self.tls_key,
                    pin_file: self.tls_pin_file,
                }
            },
            reservation_ttl: Duration::from_secs(self.reservation_ttl_secs),
            namespace_quota: self.max_live_per_namespace,
            max_token_lifetime: Duration::from_secs(self.max_token_lifetime_secs),
            lifecycle: crate::lifecycle::LifecycleOptions {
                reveal_window: Duration::from_secs(self.reveal_window_secs),
                expiry_grace: Duration::from_secs(self.expiry_grace_secs),
                ..crate::lifecycle::LifecycleOptions::default()
            },
            limits: LimitsConfig {
                max_body_bytes: self.max_body_bytes,
                rate_limit_per_minute: self.rate_limit_per_minute,
                rate_limit_burst: self.rate_limit_burst,
                max_concurrent_requests: self.max_concurrent_requests,
                max_pending_registrations: self.max_pending_registrations,
                verify_threads,
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
                max_requests_per_client: self.max_requests_per_client,
                connections: mazu_service::http::ConnectionLimits {
                    header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                    max_connections: self.max_connections,
                    max_connections_per_client: self.max_connections_per_client,
                },
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            jwks_refresh: (self.jwks_refresh_secs > 0)
                .then(|| Duration::from_secs(self.jwks_refresh_secs)),
            snapshot_every: (self.snapshot_every > 0).then_some(self.snapshot_every),
            witness,
        })
    }
}

fn witness_config(
    witnesses: &[String],
    quorum: Option<usize>,
    refresh_secs: u64,
    timeout_ms: u64,
    insecure_no_witness: bool,
    insecure_plain_http_witness: bool,
) -> Result<Option<WitnessConfig>, ConfigError> {
    if witnesses.is_empty() {
        if !insecure_no_witness {
            return Err(ConfigError::Missing {
                flag: "--witness",
                hint: "at least one witness as URL=VKEY;tls-pin=PIN (checkpoints must be cosigned by \
                       witnesses, or the curator can show different logs to different \
                       parties); for a local demo only, --insecure-no-witness",
            });
        }
        if quorum.is_some_and(|q| q > 0) {
            return Err(invalid(
                "--witness-quorum",
                "no --witness is given (--insecure-no-witness)",
            ));
        }
        return Ok(None);
    }
    if insecure_no_witness {
        return Err(invalid(
            "--insecure-no-witness",
            "witnesses are configured (--witness); drop one or the other",
        ));
    }
    let endpoints = witnesses
        .iter()
        .map(|w| WitnessEndpoint::parse(w).map_err(|e| invalid("--witness", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if !insecure_plain_http_witness
        && let Some(plain) = endpoints.iter().find(|e| e.is_plain_http())
    {
        return Err(invalid(
            "--witness",
            format!(
                "{} is plain HTTP: use https://...=VKEY;tls-pin=PIN, or for local development \
                 only --insecure-plain-http-witness",
                plain.url
            ),
        ));
    }
    for (i, a) in endpoints.iter().enumerate() {
        if endpoints[..i]
            .iter()
            .any(|b| b.verifier.to_vkey() == a.verifier.to_vkey() || b.url == a.url)
        {
            return Err(invalid(
                "--witness",
                format!("witness {} given twice", a.url),
            ));
        }
    }
    let quorum = quorum.unwrap_or(endpoints.len());
    if quorum == 0 || quorum > endpoints.len() {
        return Err(invalid(
            "--witness-quorum",
            format!(
                "{quorum} is not between 1 and the {} witnesses given",
                endpoints.len()
            ),
        ));
    }
    if refresh_secs == 0 {
        return Err(invalid("--witness-refresh-secs", "must be at least 1"));
    }
    if timeout_ms == 0 {
        return Err(invalid("--witness-timeout-ms", "must be at least 1"));
    }
    Ok(Some(WitnessConfig {
        endpoints,
        quorum,
        refresh: Duration::from_secs(refresh_secs),
        timeout: Duration::from_millis(timeout_ms),
    }))
}

/// What follows the JWKS in an `--issuer` value.
const SCOPE_PARAMETER: &str = ";namespaces=";

fn parse_issuer(spec: &str) -> Result<IssuerSpec, ConfigError> {
    let malformed = || {
        invalid(
            "--issuer",
            format!("{spec:?} is not ISSUER=JWKS_FILE_OR_URL;namespaces=SCOPE"),
        )
    };
    let (issuer, rest) = spec.split_once('=').ok_or_else(malformed)?;
    if issuer.is_empty() || rest.is_empty() {
        return Err(malformed());
    }
    let Some((source, scope)) = rest.rsplit_once(SCOPE_PARAMETER) else {
        return Err(invalid(
            "--issuer",
            format!(
                "{spec:?} has no namespace scope: append \";namespaces=NS+NS\" (the namespaces \
                 this issuer may assert) or \";namespaces=*\" (every namespace, for the \
                 cluster's own issuer only)"
            ),
        ));
    };
    let namespaces = NamespaceScope::parse(scope)
        .map_err(|e| invalid("--issuer", format!("namespace scope of {issuer}: {e}")))?;
    if source.is_empty() {
        return Err(malformed());
    }
    let jwks = if let Some(rest) = source.strip_prefix("http://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("--issuer", format!("{source:?} has no host")));
        }
        JwksSource::Url(source.to_owned())
    } else if source.starts_with("https://") {
        // This build's HTTP client has no TLS (adding a TLS stack is a
        // separate decision); refuse clearly rather than fail at fetch time.
        return Err(invalid(
            "--issuer",
            format!(
                "{source:?}: https:// JWKS URLs are not supported by this build; use a JWKS \
                 file (e.g. kept fresh by a sidecar) or an http:// URL on a trusted local hop"
            ),
        ));
    } else if source.contains("://") {
        return Err(invalid(
            "--issuer",
            format!("{source:?}: only files and http:// URLs are supported"),
        ));
    } else {
        JwksSource::File(PathBuf::from(source))
    };
    Ok(IssuerSpec {
        issuer: issuer.to_owned(),
        jwks,
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["mazu-curator"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).expect("clap").validate()
    }

    const OK: &[&str] = &[
        "--data-dir",
        "/tmp/d",
        "--crs",
        "/tmp/crs.bin",
        "--crs-transcript",
        "/tmp/transcript.bin",
        "--capacity",
        "16",
        "--issuer",
        "https://issuer.example=/tmp/jwks.json;namespaces=*",
        "--audience",
        "mazu:mazu-curator/0123456789abcdef",
        "--insecure-no-witness",
    ];

    #[test]
    fn defaults() {
        let c = parse(OK).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.audience, "mazu:mazu-curator/0123456789abcdef");
        assert_eq!(c.trust_domain, "cluster.local");
        assert_eq!(
            c.crs,
            CrsSource::File {
                crs: "/tmp/crs.bin".into(),
                transcript: "/tmp/transcript.bin".into()
            }
        );
        assert_eq!(
            c.issuers,
            vec![IssuerSpec {
                issuer: "https://issuer.example".into(),
                jwks: JwksSource::File("/tmp/jwks.json".into()),
                namespaces: NamespaceScope::any(),
            }]
        );
        assert_eq!(c.reservation_ttl, Duration::from_secs(300));
        assert_eq!(c.jwks_refresh, Some(Duration::from_secs(300)));
        assert_eq!(c.snapshot_every, Some(1000));
    }

    #[test]
    fn missing_settings_are_named() {
        for (drop_flag, flag) in [
            ("--data-dir", "--data-dir"),
            ("--crs", "--crs"),
            ("--crs-transcript", "--crs-transcript"),
            ("--capacity", "--capacity"),
            ("--issuer", "--issuer"),
            ("--audience", "--audience"),
        ] {
            let i = OK.iter().position(|a| *a == drop_flag).unwrap();
            let mut args = OK.to_vec();
            args.drain(i..i + 2);
            let err = parse(&args).unwrap_err();
            assert!(
                matches!(err, ConfigError::Missing { flag: f, .. } if f == flag),
                "{err}"
            );
        }
    }

    #[test]
    fn jwks_url_and_switches() {
        let mut args = OK.to_vec();
        args[9] = "https://issuer.example=http://127.0.0.1:8080/jwks?x=1;namespaces=shop+payments";
        args.extend_from_slice(&["--jwks-refresh-secs", "0", "--snapshot-every", "0"]);
        let c = parse(&args).unwrap();
        assert_eq!(
            c.issuers[0].jwks,
            JwksSource::Url("http://127.0.0.1:8080/jwks?x=1".into())
        );
        assert_eq!(
            c.issuers[0].namespaces,
            NamespaceScope::parse("payments+shop").unwrap()
        );
        assert_eq!(c.jwks_refresh, None);
        assert_eq!(c.snapshot_every, None);
    }

    #[test]
    fn dev_crs_defaults_into_data_dir() {
        let c = parse(&[
            "--data-dir",
            "/tmp/d",
            "--dev-crs",
            "--capacity",
            "16",
            "--issuer",
            "i=/j;namespaces=*",
            "--audience",
            "mazu:dev",
            "--insecure-no-witness",
        ])
        .unwrap();
        assert_eq!(c.crs, CrsSource::Dev("/tmp/d/dev-crs.bin".into()));
    }

    #[test]
    fn malformed_values() {
        let mut args = OK.to_vec();
        args[9] = "no-equals-sign";
        assert!(matches!(
            parse(&args),
            Err(ConfigError::Invalid {
                flag: "--issuer",
                ..
            })
        ));
        let mut args = OK.to_vec();
        args.extend_from_slice(&["--issuer", "https://issuer.example=/other;namespaces=*"]);
        assert!(matches!(
            parse(&args),
            Err(ConfigError::Invalid {
                flag: "--issuer",
                ..
            })
        ));
        let mut args = OK.to_vec();
        args[7] = "1";
        assert!(matches!(
            parse(&args),
            Err(ConfigError::Invalid {
                flag: "--capacity",
                ..
            })
        ));
        for bad in [
            "https://issuer.example=https://issuer.example/jwks;namespaces=*",
            "https://issuer.example=ftp://x/jwks;namespaces=*",
            "https://issuer.example=http://;namespaces=*",
            "https://issuer.example=;namespaces=*",
        ] {
            let mut args = OK.to_vec();
            args[9] = bad;
            assert!(
                matches!(
                    parse(&args),
                    Err(ConfigError::Invalid {
                        flag: "--issuer",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        // clap itself refuses non-numbers and bad addresses.
        assert!(Args::try_parse_from(["x", "--capacity", "many"]).is_err());
        assert!(Args::try_parse_from(["x", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn the_shared_audience_is_refused() {
        for shared in ["mazu", "MAZU", "mazu:"] {
            let mut args = OK.to_vec();
            args[11] = shared;
            let err = parse(&args).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { flag: "--audience", reason }
                    if reason.contains("shared by every Mazu deployment")),
                "{err}"
            );
        }
        let mut args = OK.to_vec();
        args[11] = "https://issuer.example";
        assert!(matches!(
            parse(&args),
            Err(ConfigError::Invalid {
                flag: "--audience",
                ..
            })
        ));
        let mut args = OK.to_vec();
        args[11] = "";
        assert!(parse(&args).is_err());
    }

    #[test]
    fn every_issuer_needs_an_explicit_namespace_scope() {
        for (bad, says) in [
            (
                "https://issuer.example=/tmp/jwks.json",
                "no namespace scope",
            ),
            ("https://issuer.example=/tmp/jwks.json;namespaces=", "empty"),
            (
                "https://issuer.example=/tmp/jwks.json;namespaces=*+shop",
                "only entry",
            ),
            (
                "https://issuer.example=/tmp/jwks.json;namespaces=Shop",
                "not a Kubernetes namespace",
            ),
            // A comma separates issuers, so "cart" is a second, malformed one.
            (
                "https://issuer.example=/tmp/jwks.json;namespaces=shop,cart",
                "\"cart\" is not ISSUER=",
            ),
            (
                "https://issuer.example=/tmp/jwks.json;namespaces=shop cart",
                "not a Kubernetes namespace",
            ),
        ] {
            let mut args = OK.to_vec();
            args[9] = bad;
            let err = parse(&args).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { flag: "--issuer", reason } if reason.contains(says)),
                "{bad}: {err}"
            );
        }
        // Several issuers in the environment variable: commas between issuers.
        let mut args = OK.to_vec();
        args[9] =
            "https://a.example=/a.json;namespaces=*,https://b.example=/b.json;namespaces=tenant";
        let c = parse(&args).unwrap();
        assert_eq!(c.issuers.len(), 2);
        assert!(c.issuers[1].namespaces.allows("tenant"));
        assert!(!c.issuers[1].namespaces.allows("shop"));
    }

    /// A witness verifier key (any valid one; the name differs per `n`).
    fn vkey(n: u8) -> String {
        mazu_log::cosignature::CosignatureSigner::new(&format!("witness-{n}"), &[n; 32])
            .unwrap()
            .verifier()
            .to_vkey()
    }

    fn without_insecure() -> Vec<&'static str> {
        OK.iter()
            .copied()
            .filter(|a| *a != "--insecure-no-witness")
            .collect()
    }

    #[test]
    fn tls_witnesses_need_their_pin_and_no_insecure_flag() {
        let pin = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
        let tls = format!("https://127.0.0.1:7001={};tls-pin={pin}", vkey(1));
        let mut args = without_insecure();
        args.extend_from_slice(&["--witness", &tls]);
        let w = parse(&args).unwrap().witness.unwrap();
        assert_eq!(w.endpoints[0].url, "https://127.0.0.1:7001");
        assert_eq!(w.endpoints[0].tls_pin.unwrap().to_string(), pin);

        let no_pin = format!("https://127.0.0.1:7001={}", vkey(1));
        let mut args = without_insecure();
        args.extend_from_slice(&["--witness", &no_pin, "--insecure-plain-http-witness"]);
        let err = parse(&args).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { flag: "--witness", reason } if reason.contains("tls-pin=PIN")),
            "{err}"
        );
    }

    #[test]
    fn witnesses_are_required_unless_explicitly_insecure() {
        let err = parse(&without_insecure()).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Missing { flag: "--witness", hint } if hint.contains("--insecure-no-witness")),
            "{err}"
        );
        assert!(parse(OK).unwrap().witness.is_none());

        let (a, b) = (
            format!("http://127.0.0.1:7001={}", vkey(1)),
            format!("http://127.0.0.1:7002={}", vkey(2)),
        );
        let mut args = without_insecure();
        args.extend_from_slice(&["--witness", &a, "--witness", &b]);
        // Plain HTTP witnesses only with the explicit flag.
        let err = parse(&args).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { flag: "--witness", reason } if reason.contains("--insecure-plain-http-witness")),
            "{err}"
        );
        args.push("--insecure-plain-http-witness");
        let w = parse(&args).unwrap().witness.unwrap();
        assert_eq!(w.endpoints.len(), 2);
        assert_eq!(w.quorum, 2, "default: every witness");
        assert_eq!(w.refresh, Duration::from_secs(10));
        assert_eq!(w.timeout, Duration::from_millis(10_000));
        assert_eq!(w.endpoints[0].url, "http://127.0.0.1:7001");

        let mut quorum_one = args.clone();
        quorum_one.extend_from_slice(&[
            "--witness-quorum",
            "1",
            "--witness-refresh-secs",
            "3",
            "--witness-timeout-ms",
            "250",
        ]);
        let w = parse(&quorum_one).unwrap().witness.unwrap();
        assert_eq!(
            (w.quorum, w.refresh, w.timeout),
            (1, Duration::from_secs(3), Duration::from_millis(250))
        );

        for (extra, flag) in [
            (&["--witness-quorum", "3"][..], "--witness-quorum"),
            (&["--witness-quorum", "0"][..], "--witness-quorum"),
            (&["--insecure-no-witness"][..], "--insecure-no-witness"),
            (
                &["--witness-refresh-secs", "0"][..],
                "--witness-refresh-secs",
            ),
            (&["--witness-timeout-ms", "0"][..], "--witness-timeout-ms"),
            (&["--witness", a.as_str()][..], "--witness"),
            (&["--witness", "http://127.0.0.1:7003"][..], "--witness"),
            (&["--witness", "ftp://x=k"][..], "--witness"),
        ] {
            let mut bad = args.clone();
            bad.extend_from_slice(extra);
            let err = parse(&bad).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { flag: f, .. } if *f == flag),
                "{extra:?}: {err}"
            );
        }
    }
}

// --- The repair subcommand (see docs/curator.md, "Operations"). ---

/// Subcommands of `mazu-curator` (none: serve).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Inspects a data directory the curator refuses to start from: reports
    /// the log's intact entries, the first damage (offset, entry index,
    /// kind), the acknowledged checkpoint and the snapshot, and how many
    /// acknowledged entries are missing. Changes nothing unless told to.
    Repair(RepairArgs),
    /// Prints the pin of a TLS key file (what agents pass as
    /// --curator-tls-pin and Envoy as verify_certificate_spki), creating the
    /// key first with --create-key: an operator can make the key and learn
    /// its pin before the curator first starts (e.g. for a Kubernetes Secret).
    TlsPin(TlsPinArgs),
}

/// Flags of `mazu-curator tls-pin`.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsPinArgs {
    /// The key file (32 raw bytes or 64 hex digits, the --tls-key format).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,

    /// Create the key (mode 0600, atomically) if the file does not exist.
    #[arg(long)]
    pub create_key: bool,
}

/// Flags of `mazu-curator repair`.
#[derive(Debug, Clone, clap::Args)]
pub struct RepairArgs {
    /// The curator's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Truncate the log at this byte offset, which must be the end of its
    /// last intact frame (the report names it). Every entry after it is
    /// given up; an acknowledged checkpoint or snapshot proving more entries
    /// is renamed to NAME.lost-<unix time>, not deleted. Needs --yes.
    #[arg(long, value_name = "N")]
    pub truncate_at_offset: Option<u64>,

    /// Confirms --truncate-at-offset (without it, only the report is printed).
    #[arg(long)]
    pub yes: bool,
}
