//! `mazu-agent`: the node agent binary. Parses flags, starts tracing, wires
//! the agent, the SDS server and the signals, and maps errors to exit codes
//! (2: configuration, 1: anything else).

use core::time::Duration;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand};
use mazu_agent::agent::ValidatorHandoff;
use mazu_agent::curator::CuratorClient;
use mazu_agent::state::StateDir;
use mazu_agent::token::Token;
use mazu_agent::{Agent, AgentConfig, Error};
use mazu_identity::TrustDomain;
use mazu_service::tls::{ClientTransport, SpkiPin};

/// Mazu node agent: registers the workload's token with the key curator and
/// serves its self-signed certificate to Envoy (files and SDS v3).
#[derive(Parser, Debug)]
#[command(name = "mazu-agent", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register the token, serve the certificate, keep both current.
    Run {
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Serve every pod of this node: one agent and SDS socket per pod, from
    /// the kubelet's projected tokens.
    Node(NodeArgs),
    /// Wait until a Unix socket accepts connections (exit 0), or time out (exit 1).
    WaitSocket(WaitSocketArgs),
    /// Print the node agent's node.json; exit 1 if it is missing or stale
    /// (the DaemonSet's liveness and readiness probe).
    NodeStatus(NodeStatusArgs),
    /// Encrypt a message to a workload id with public parameters only.
    Encrypt(EncryptArgs),
    /// Decrypt a message encrypted to this agent's workload.
    Decrypt(DecryptArgs),
    /// Print the state directory's status.json.
    Status(StatusArgs),
    /// Revoke the workload's current registration with its TLS key: every
    /// filter denies its certificate within one refresh interval, and its
    /// id can never be registered again. Stop the agent first, or it
    /// registers the next token it reads.
    Revoke(RevokeArgs),
}

/// `run`'s per-workload flags (`node` derives them per pod).
#[derive(Args, Debug)]
struct WorkloadArgs {
    /// The workload's projected service-account token file.
    #[arg(long, env = "MAZU_AGENT_TOKEN_FILE")]
    token_file: PathBuf,
    /// State directory (keys, registration, status.json); created 0700.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
    /// Write cert.pem and key.pem (0600) here, atomically.
    #[arg(long, env = "MAZU_AGENT_CERT_DIR")]
    cert_dir: Option<PathBuf>,
    /// Serve SDS v3 (resources `default` and `ROOTCA`) on this Unix socket.
    #[arg(long, env = "MAZU_AGENT_SDS_SOCKET")]
    sds_socket: Option<PathBuf>,
}

/// The agent's settings shared by `run` and `node` (flattened into both):
/// a flag added here reaches every pod's agent in node mode too.
#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    curator: CuratorArgs,
    /// SPIFFE trust domain of the certificate's URI SAN.
    #[arg(long, env = "MAZU_AGENT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Envoy checks peers with Mazu's validator module (libmazu_validator.so):
    /// serve ROOTCA as that module configured with this file (JSON, see
    /// docs/validator.md) instead of the handshake pins, and write the
    /// registry of the witnessed log to the file's `registry_file`.
    #[arg(long, env = "MAZU_AGENT_VALIDATOR_CONFIG", value_name = "FILE")]
    validator_config: Option<PathBuf>,
    /// Octal mode of the SDS socket (whoever can connect gets the key).
    #[arg(long, env = "MAZU_AGENT_SDS_SOCKET_MODE", default_value = "600", value_parser = parse_octal)]
    sds_socket_mode: u32,
    /// Renew the certificate this long before it (or the token) expires.
    #[arg(long, env = "MAZU_AGENT_ROTATION_MARGIN_SECS", default_value_t = 600)]
    rotation_margin_secs: u64,
    /// After registering a rotated token, keep serving the previous
    /// certificate this long (milliseconds) so every filter has polled the
    /// registry first; at least the filters' refresh interval (5000 by
    /// default), with margin.
    #[arg(
        long,
        env = "MAZU_AGENT_PROPAGATION_DELAY_MS",
        default_value_t = 10_000
    )]
    propagation_delay_ms: u64,
    /// After a rotation, release the previous registration (freeing its
    /// slot) this long (milliseconds) after the new certificate is served.
    /// Peers' pooled connections made with the previous certificate are
    /// closed at their next bytes once the release reaches their filters,
    /// so this is the drain time given to them.
    #[arg(long, env = "MAZU_AGENT_RELEASE_DELAY_MS", default_value_t = 60_000)]
    release_delay_ms: u64,
    /// How often the token file is re-read, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_POLL_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    poll_interval_ms: u64,
    /// How often the RBE opening is brought up to date, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_OPENING_REFRESH_MS", default_value_t = 10_000)]
    opening_refresh_ms: u64,
    /// How often (milliseconds) the witnessed log is followed to update the
    /// keys Envoy accepts in the TLS handshake (`ROOTCA`'s SPKI pins): a new
    /// workload is accepted, and a revoked one refused, within about this
    /// long. Keep it at most the filters' `refresh_interval_ms`.
    #[arg(long, env = "MAZU_AGENT_PEER_REFRESH_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    peer_refresh_ms: u64,
    /// Requested certificate lifetime in seconds (the token's expiry bounds it).
    #[arg(long, env = "MAZU_AGENT_CERT_LIFETIME_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    cert_lifetime_secs: u64,
    /// Refuse a curator whose CRS digest (64 hex digits) differs.
    #[arg(long, env = "MAZU_AGENT_CRS_DIGEST", value_parser = parse_digest)]
    crs_digest: Option<[u8; 32]>,
    /// First retry delay after a failed curator call, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_BACKOFF_INITIAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_BACKOFF_MAX_MS", default_value_t = 30_000)]
    backoff_max_ms: u64,
    #[command(flatten)]
    log: LogTrustArgs,
    #[command(flatten)]
    kubernetes: KubernetesArgs,
}

/// Destinations from Kubernetes (flattened into `run` and `node`).
#[derive(Args, Clone, Debug)]
struct KubernetesArgs {
    /// Derive the validator's `destinations` from Kubernetes: each
    /// Service's host (NAME.NAMESPACE.svc.CLUSTER_DOMAIN) may be served by
    /// the service accounts of the pods behind it (its EndpointSlices),
    /// read from the API server every --kubernetes-poll-interval-ms. Hosts
    /// written in the configuration's `destinations` win. Needs
    /// --validator-config, and RBAC to list services, endpointslices and
    /// pods in every namespace.
    #[arg(long, env = "MAZU_AGENT_DESTINATIONS_FROM_KUBERNETES")]
    destinations_from_kubernetes: bool,
    /// How often the API server is read, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_KUBERNETES_POLL_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    kubernetes_poll_interval_ms: u64,
    /// The cluster's DNS domain (the hosts' suffix after `svc.`).
    #[arg(
        long,
        env = "MAZU_AGENT_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// The API server's URL (https:// only); default: in cluster, from
    /// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
    #[arg(long, env = "MAZU_AGENT_KUBERNETES_API_URL", value_name = "URL")]
    kubernetes_api_url: Option<String>,
    /// The bearer token file, read again for every poll (it rotates).
    #[arg(long, env = "MAZU_AGENT_KUBERNETES_TOKEN_FILE", default_value = mazu_agent::kube::DEFAULT_TOKEN_FILE)]
    kubernetes_token_file: PathBuf,
    /// The CA certificate(s) (PEM) the API server's certificate must chain
    /// to; no other CA is trusted.
    #[arg(long, env = "MAZU_AGENT_KUBERNETES_CA_FILE", default_value = mazu_agent::kube::DEFAULT_CA_FILE)]
    kubernetes_ca_file: PathBuf,
}

impl KubernetesArgs {
    /// Starts the destinations poller when the flag is on, and hands its
    /// channel to the validator handoff; a configuration error if the
    /// flags do not allow it.
    fn start(
        &self,
        validator: Option<&mut ValidatorHandoff>,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, Error> {
        if !self.destinations_from_kubernetes {
            return Ok(None);
        }
        let Some(handoff) = validator else {
            return Err(Error::Config(
                "--destinations-from-kubernetes needs --validator-config (the destinations are the validator's)"
                    .to_owned(),
            ));
        };
        let api_url = match &self.kubernetes_api_url {
            Some(url) => url.clone(),
            None => mazu_agent::kube::KubeSource::in_cluster_url().ok_or_else(|| {
                Error::Config(
                    "--destinations-from-kubernetes: no --kubernetes-api-url, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not in a pod?)"
                        .to_owned(),
                )
            })?,
        };
        if self.cluster_domain.is_empty() || self.cluster_domain.starts_with('.') {
            return Err(Error::Config(format!(
                "--cluster-domain {:?} is not a DNS domain",
                self.cluster_domain
            )));
        }
        let source = mazu_agent::kube::KubeSource {
            api_url,
            token_file: self.kubernetes_token_file.clone(),
            ca_file: self.kubernetes_ca_file.clone(),
        };
        let client = mazu_agent::kube::KubeClient::new(&source)
            .map_err(|e| Error::Config(format!("--destinations-from-kubernetes: {e}")))?;
        let (tx, rx) = tokio::sync::watch::channel(None);
        handoff.served = Some(rx);
        let poller = mazu_agent::kube::DestinationsPoller {
            client,
            config_json: handoff.config_json.clone(),
            trust_domain: handoff.trust_domain.clone(),
            cluster_domain: self.cluster_domain.clone(),
            interval: Duration::from_millis(self.kubernetes_poll_interval_ms),
        };
        tracing::info!(
            api = %source.api_url,
            interval_ms = self.kubernetes_poll_interval_ms,
            cluster_domain = %self.cluster_domain,
            "deriving the validator's destinations from Kubernetes Services"
        );
        Ok(Some(tokio::spawn(poller.run(tx))))
    }
}

/// How to reach the curator (flattened into every subcommand that does).
#[derive(Args, Debug)]
struct CuratorArgs {
    /// Curator base URL, e.g. https://mazu-curator.mazu-system:7878.
    #[arg(long, env = "MAZU_AGENT_CURATOR")]
    curator: String,
    /// The pin of the curator's TLS key: base64 SHA-256 of its public key,
    /// from the curator's --tls-pin-file or start-up log (repeatable, e.g.
    /// during a key rotation; comma-separated in the environment). Only a
    /// server holding a pinned key is spoken to; no CA is trusted.
    #[arg(
        long = "curator-tls-pin",
        env = "MAZU_AGENT_CURATOR_TLS_PIN",
        value_name = "PIN",
        value_delimiter = ','
    )]
    curator_tls_pins: Vec<SpkiPin>,
    /// Development only: reach the curator over plain HTTP (an http://
    /// URL). Whoever is on the path can then answer for the curator.
    #[arg(long, env = "MAZU_AGENT_INSECURE_PLAIN_HTTP")]
    insecure_plain_http: bool,
}

impl CuratorArgs {
    /// A client for the curator the flags name; a configuration error if
    /// they contradict each other or the URL.
    fn client(&self) -> Result<CuratorClient, Error> {
        CuratorClient::new(&self.curator, &self.transport()?)
            .map_err(|e| Error::Config(e.to_string()))
    }

    fn transport(&self) -> Result<ClientTransport, Error> {
        ClientTransport::for_url(
            &self.curator,
            self.curator_tls_pins.clone(),
            self.insecure_plain_http,
        )
        .map_err(|e| Error::Config(format!("--curator: {e}")))
    }
}

/// Which checkpoints of the curator's log are believed (flattened into
/// `run`, `node` and `encrypt`).
#[derive(Args, Debug)]
struct LogTrustArgs {
    /// Pin the curator's checkpoint verifier key (NAME+HASH+KEY, as served
    /// by GET /v1/checkpoint/key); without it the key served first is
    /// trusted. Production should pin it.
    #[arg(long, env = "MAZU_AGENT_CHECKPOINT_KEY", value_name = "VKEY")]
    checkpoint_key: Option<String>,
    /// A witness's verifier key (repeatable; comma-separated in the
    /// environment). Every checkpoint acted on must carry the cosignatures
    /// of --witness-quorum of them.
    #[arg(
        long = "witness",
        env = "MAZU_AGENT_WITNESSES",
        value_name = "VKEY",
        value_delimiter = ','
    )]
    witnesses: Vec<String>,
    /// How many of the --witness keys must cosign a checkpoint (default: all).
    #[arg(long, env = "MAZU_AGENT_WITNESS_QUORUM", value_name = "K")]
    witness_quorum: Option<usize>,
    /// Development only: accept checkpoints no witness cosigned (required
    /// when no --witness is given). A curator can then show this agent a
    /// log nobody else sees.
    #[arg(long, env = "MAZU_AGENT_INSECURE_NO_WITNESS")]
    insecure_no_witness: bool,
}

impl LogTrustArgs {
    /// The witness policy; a configuration error if the flags contradict.
    fn policy(&self) -> Result<Option<mazu_log::cosignature::WitnessPolicy>, Error> {
        mazu_agent::follow::witness_policy(
            &self.witnesses,
            self.witness_quorum,
            self.insecure_no_witness,
        )
    }
}

#[derive(Args, Debug)]
struct NodeArgs {
    #[command(flatten)]
    agent: RunArgs,
    /// The kubelet's pods directory (read only).
    #[arg(long, env = "MAZU_AGENT_PODS_DIR", default_value = mazu_agent::node::DEFAULT_PODS_DIR)]
    pods_dir: PathBuf,
    /// Name of the pods' projected token volume (requested with the
    /// deployment's audience, the curator's --audience).
    #[arg(long, env = "MAZU_AGENT_TOKEN_VOLUME", default_value = mazu_agent::node::DEFAULT_TOKEN_VOLUME)]
    token_volume: String,
    /// Path of the token inside that volume.
    #[arg(long, env = "MAZU_AGENT_TOKEN_PATH", default_value = mazu_agent::node::DEFAULT_TOKEN_PATH)]
    token_path: PathBuf,
    /// Parent of the per-pod state directories (STATE_ROOT/<pod uid>); created 0700.
    #[arg(long, env = "MAZU_AGENT_STATE_ROOT")]
    state_root: PathBuf,
    /// Parent of the per-pod socket directories (SOCKET_ROOT/<pod uid>/socket).
    #[arg(long, env = "MAZU_AGENT_SOCKET_ROOT", default_value = mazu_agent::node::DEFAULT_SOCKET_ROOT)]
    socket_root: PathBuf,
    /// Give each SDS socket this owner, UID or UID:GID (istio-proxy is 1337).
    #[arg(long, env = "MAZU_AGENT_SOCKET_OWNER")]
    socket_owner: Option<mazu_agent::node::SocketOwner>,
    /// How often the pods directory is scanned, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_SCAN_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    scan_interval_ms: u64,
}

#[derive(Args, Debug)]
struct WaitSocketArgs {
    /// The Unix socket to wait for.
    #[arg(long, env = "MAZU_AGENT_WAIT_PATH")]
    path: PathBuf,
    /// Give up (exit 1) after this many seconds.
    #[arg(long, env = "MAZU_AGENT_WAIT_TIMEOUT_SECS", default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Args, Debug)]
struct EncryptArgs {
    #[command(flatten)]
    curator: CuratorArgs,
    /// The recipient's workload id (64 hex digits).
    #[arg(
        long,
        env = "MAZU_AGENT_ID",
        conflicts_with = "token_file",
        required_unless_present = "token_file"
    )]
    id: Option<String>,
    /// Or the recipient's token file (the id is its SHA-256).
    #[arg(long, env = "MAZU_AGENT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Plaintext input file, `-` for stdin.
    #[arg(long = "in", env = "MAZU_AGENT_IN", default_value = "-")]
    input: String,
    /// Ciphertext output file, `-` for stdout.
    #[arg(long = "out", env = "MAZU_AGENT_OUT", default_value = "-")]
    output: String,
    /// Associated data (authenticated, not encrypted); decrypt needs the same.
    #[arg(long, env = "MAZU_AGENT_AAD", default_value = "")]
    aad: String,
    /// The SHA-256 digest (64 hex digits) of the CRS to encrypt under; a
    /// curator serving another CRS is refused. Required unless
    /// --insecure-unpinned-crs.
    #[arg(
        long,
        env = "MAZU_AGENT_CRS_SHA256",
        value_name = "HEX",
        value_parser = parse_digest,
        required_unless_present = "insecure_unpinned_crs"
    )]
    crs_sha256: Option<[u8; 32]>,
    /// Development only: encrypt under whatever CRS the curator serves.
    #[arg(
        long,
        env = "MAZU_AGENT_INSECURE_UNPINNED_CRS",
        conflicts_with = "crs_sha256"
    )]
    insecure_unpinned_crs: bool,
    #[command(flatten)]
    log: LogTrustArgs,
}

#[derive(Args, Debug)]
struct DecryptArgs {
    /// The agent's state directory.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
    /// The curator (to refresh the opening first).
    #[command(flatten)]
    curator: CuratorArgs,
    /// Ciphertext input file, `-` for stdin.
    #[arg(long = "in", env = "MAZU_AGENT_IN", default_value = "-")]
    input: String,
    /// Plaintext output file, `-` for stdout.
    #[arg(long = "out", env = "MAZU_AGENT_OUT", default_value = "-")]
    output: String,
    /// Associated data given to encrypt.
    #[arg(long, env = "MAZU_AGENT_AAD", default_value = "")]
    aad: String,
}

#[derive(Args, Debug)]
struct RevokeArgs {
    /// The agent's state directory.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
    /// The curator.
    #[command(flatten)]
    curator: CuratorArgs,
    /// The registration to revoke (hex id); default: the one being served.
    #[arg(long, env = "MAZU_AGENT_REVOKE_ID", value_name = "HEX")]
    id: Option<String>,
}

#[derive(Args, Debug)]
struct NodeStatusArgs {
    /// The node agent's state root.
    #[arg(long, env = "MAZU_AGENT_STATE_ROOT")]
    state_root: PathBuf,
    /// Fail if the last completed scan is older than this.
    #[arg(long, env = "MAZU_AGENT_MAX_AGE_SECS", default_value_t = 30)]
    max_age_secs: u64,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The agent's state directory.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
}

fn parse_octal(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode like 600"))
}

fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is not 64 hex digits"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and `kubectl logs` get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mazu-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { workload, args } => run(workload, args).await,
            Command::Node(args) => node(args).await,
            Command::WaitSocket(args) => wait_socket(&args).await,
            Command::Encrypt(args) => encrypt(args).await,
            Command::Decrypt(args) => decrypt(args).await,
            Command::Status(args) => status(&args),
            Command::Revoke(args) => revoke(args).await,
            Command::NodeStatus(args) => node_status(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let config = e
                .downcast_ref::<Error>()
                .is_some_and(|e| matches!(e, Error::Config(_)));
            eprintln!("mazu-agent: {e:#}");
            if config {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The agent configuration from the shared flags and one workload's paths
/// (`node` passes empty ones: its template's paths are replaced per pod).
fn agent_config(args: RunArgs, workload: WorkloadArgs) -> Result<AgentConfig, Error> {
    let curator_transport = args.curator.transport()?;
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .map_err(|e| Error::Config(format!("--trust-domain {:?}: {e}", args.trust_domain)))?;
    // Checked here too so that a bad setting is the only line printed.
    args.log.policy()?;
    Ok(AgentConfig {
        curator: args.curator.curator,
        curator_transport,
        token_file: workload.token_file,
        state_dir: workload.state_dir,
        trust_domain,
        cert_dir: workload.cert_dir,
        sds_socket: workload.sds_socket,
        sds_socket_mode: args.sds_socket_mode,
        rotation_margin: Duration::from_secs(args.rotation_margin_secs),
        propagation_delay: Duration::from_millis(args.propagation_delay_ms),
        release_delay: Duration::from_millis(args.release_delay_ms),
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        opening_refresh: Duration::from_millis(args.opening_refresh_ms),
        peer_refresh: Duration::from_millis(args.peer_refresh_ms),
        cert_lifetime: Duration::from_secs(args.cert_lifetime_secs),
        crs_digest: args.crs_digest,
        backoff_initial: Duration::from_millis(args.backoff_initial_ms),
        backoff_max: Duration::from_millis(args.backoff_max_ms),
        checkpoint_key: args.log.checkpoint_key,
        witnesses: args.log.witnesses,
        witness_quorum: args.log.witness_quorum,
        insecure_no_witness: args.log.insecure_no_witness,
        validator: args
            .validator_config
            .as_deref()
            .map(ValidatorHandoff::from_file)
            .transpose()?,
    })
}

async fn run(workload: WorkloadArgs, args: RunArgs) -> anyhow::Result<()> {
    // Flags first: a configuration error is the only line printed.
    let kubernetes = args.kubernetes.clone();
    let mut config = agent_config(args, workload)?;
    let poller = kubernetes.start(config.validator.as_mut())?;
    if config.cert_dir.is_none() && config.sds_socket.is_none() {
        tracing::warn!(
            "neither --cert-dir nor --sds-socket given: the certificate is only registered, not served"
        );
    }
    let (sds_socket, sds_socket_mode) = (config.sds_socket.clone(), config.sds_socket_mode);
    let (agent, secrets) = Agent::new(config).context("starting the agent")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sds = match &sds_socket {
        Some(path) => {
            let listener = mazu_agent::sds::bind(path, sds_socket_mode)?;
            tracing::info!(socket = %path.display(), "serving SDS v3");
            Some(tokio::spawn(mazu_agent::sds::serve(
                listener,
                path.clone(),
                secrets,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let agent_task = tokio::spawn(agent.run(stopped(stop_rx)));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = agent_task.await;
    if let Some(poller) = poller {
        poller.abort();
    }
    if let Some(sds) = sds {
        // A stream Envoy keeps open would hold graceful shutdown forever.
        match tokio::time::timeout(Duration::from_secs(3), sds).await {
            Ok(Ok(result)) => result?,
            _ => {
                if let Some(path) = &sds_socket {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    // The template's paths are placeholders: node mode sets them per pod.
    let workload = WorkloadArgs {
        token_file: PathBuf::new(),
        state_dir: PathBuf::new(),
        cert_dir: None,
        sds_socket: None,
    };
    let kubernetes = args.agent.kubernetes.clone();
    let mut template = agent_config(args.agent, workload)?;
    let poller = kubernetes.start(template.validator.as_mut())?;
    let config = mazu_agent::node::NodeConfig {
        template,
        pods_dir: args.pods_dir,
        token_volume: args.token_volume,
        token_path: args.token_path,
        state_root: args.state_root,
        socket_root: args.socket_root,
        socket_owner: args.socket_owner,
        scan_interval: Duration::from_millis(args.scan_interval_ms),
    };
    let result = mazu_agent::node::run(config, shutdown).await;
    if let Some(poller) = poller {
        poller.abort();
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// Exit 0 once `--path` accepts a connection: what an init container runs so
/// that istio-proxy starts only after the node agent serves the pod's socket
/// (istio-agent looks for it once, at start-up).
async fn wait_socket(args: &WaitSocketArgs) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let error = match tokio::net::UnixStream::connect(&args.path).await {
            Ok(_) => {
                tracing::info!(socket = %args.path.display(), "the socket accepts connections");
                return Ok(());
            }
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "{} did not accept a connection within {} s (last error: {error})",
                args.path.display(),
                args.timeout_secs,
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Completes on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this
/// is called, not when it is first polled: `node` passes it down while it is
/// still starting pods, and a SIGTERM then must stop it cleanly, not kill it.
fn shutdown_signal() -> impl core::future::Future<Output = ()> {
    #[cfg(unix)]
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match sigterm {
                Some(mut s) => {
                    s.recv().await;
                }
                None => core::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = core::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!("signal received");
    }
}

fn read_input(name: &str) -> anyhow::Result<Vec<u8>> {
    if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(name).with_context(|| format!("reading {name}"))
    }
}

fn write_output(name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    if name == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).context("writing stdout")?;
        out.flush().context("writing stdout")
    } else {
        std::fs::write(name, bytes).with_context(|| format!("writing {name}"))
    }
}

async fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let client = args.curator.client()?;
    let id = match (&args.id, &args.token_file) {
        (Some(id), _) => {
            parse_digest(id).map_err(|e| Error::Config(format!("--id: {e}")))?;
            id.to_ascii_lowercase()
        }
        (None, Some(path)) => Token::read(path)?.id_hex(),
        (None, None) => {
            return Err(anyhow!(Error::Config(
                "give --id or --token-file".to_owned()
            )));
        }
    };
    let trust = mazu_agent::commitment::LogTrust {
        checkpoint_key: args.log.checkpoint_key.clone(),
        policy: args.log.policy()?,
    };
    let message = read_input(&args.input)?;
    let ct = mazu_agent::crypt::encrypt_to_id(
        &client,
        args.crs_sha256.as_ref(),
        &trust,
        &id,
        &message,
        args.aad.as_bytes(),
    )
    .await
    // A configuration error stays an `Error` (exit code 2).
    .map_err(|e| match e {
        mazu_agent::commitment::EncryptError::Agent(e) => anyhow!(e),
        other => anyhow!(other),
    })
    .with_context(|| format!("encrypting to {id}"))?;
    write_output(&args.output, &ct)
}

async fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let client = args.curator.client()?;
    let ciphertext = read_input(&args.input)?;
    let state = StateDir::open_existing(&args.state_dir)?;
    let plain = mazu_agent::crypt::decrypt(&state, Some(&client), &ciphertext, args.aad.as_bytes())
        .await
        .context("decrypting")?;
    write_output(&args.output, &plain)
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let client = args.curator.client()?;
    let state = StateDir::open_existing(&args.state_dir)?;
    let id = match args.id {
        Some(id) => id,
        None => state.current()?.ok_or_else(|| {
            anyhow!(
                "{} serves no registration; name one with --id",
                args.state_dir.display()
            )
        })?,
    };
    let registration = state.registration(&id)?;
    let record = registration
        .record()?
        .ok_or_else(|| anyhow!("registration {id} was never accepted by the curator"))?;
    let keys = registration
        .keys()?
        .ok_or_else(|| anyhow!("registration {id} has no stored keys"))?;
    let logged = client
        .end_binding(
            &record.id,
            record.slot,
            &keys.tls,
            mazu_curator::holder::HolderAction::Revoke,
        )
        .await
        .with_context(|| format!("revoking {id}"))?;
    tracing::info!(id = %record.id, slot = record.slot, index = logged.index, "revoked");
    println!(
        "{}",
        serde_json::json!({ "id": record.id, "revoked_at_index": logged.index })
    );
    Ok(())
}

fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let state = StateDir::open_existing(&args.state_dir)?;
    let status = state.read_status()?.ok_or_else(|| {
        anyhow!(
            "no status.json in {}: the agent has not registered yet",
            args.state_dir.display()
        )
    })?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

fn node_status(args: &NodeStatusArgs) -> anyhow::Result<()> {
    let status = mazu_agent::node::NodeStatus::read(&args.state_root)?.ok_or_else(|| {
        anyhow!(
            "no {} in {}: the node agent has not completed a scan yet",
            mazu_agent::node::NODE_STATUS_FILE,
            args.state_root.display()
        )
    })?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = now.saturating_sub(status.updated_at);
    if age > args.max_age_secs {
        return Err(anyhow!(
            "the node agent's last scan was {age} s ago (more than {} s): it is stuck",
            args.max_age_secs
        ));
    }
    Ok(())
}
