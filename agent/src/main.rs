//! `mazu-agent`: the node agent binary. Parses flags, starts tracing, wires
//! the agent, the SDS server and the signals, and maps errors to exit codes
//! (2: configuration, 1: anything else).

use core::time::Duration;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, Parser, Subcommand};
use mazu_agent::curator::CuratorClient;
use mazu_agent::state::StateDir;
use mazu_agent::token::Token;
use mazu_agent::{Agent, AgentConfig, Error};
use mazu_identity::TrustDomain;

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
    Run(RunArgs),
    /// Encrypt a message to a workload id with public parameters only.
    Encrypt(EncryptArgs),
    /// Decrypt a message encrypted to this agent's workload.
    Decrypt(DecryptArgs),
    /// Print the state directory's status.json.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Curator base URL, e.g. http://127.0.0.1:7878.
    #[arg(long, env = "MAZU_AGENT_CURATOR")]
    curator: String,
    /// The workload's projected service-account token file.
    #[arg(long, env = "MAZU_AGENT_TOKEN_FILE")]
    token_file: PathBuf,
    /// State directory (keys, registration, status.json); created 0700.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
    /// SPIFFE trust domain of the certificate's URI SAN.
    #[arg(long, env = "MAZU_AGENT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Write cert.pem and key.pem (0600) here, atomically.
    #[arg(long, env = "MAZU_AGENT_CERT_DIR")]
    cert_dir: Option<PathBuf>,
    /// Serve SDS v3 (resources `default` and `ROOTCA`) on this Unix socket.
    #[arg(long, env = "MAZU_AGENT_SDS_SOCKET")]
    sds_socket: Option<PathBuf>,
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
    /// How often the token file is re-read, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_POLL_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    poll_interval_ms: u64,
    /// How often the RBE opening is brought up to date, in milliseconds.
    #[arg(long, env = "MAZU_AGENT_OPENING_REFRESH_MS", default_value_t = 10_000)]
    opening_refresh_ms: u64,
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
}

#[derive(Args, Debug)]
struct EncryptArgs {
    /// Curator base URL.
    #[arg(long, env = "MAZU_AGENT_CURATOR")]
    curator: String,
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
}

#[derive(Args, Debug)]
struct DecryptArgs {
    /// The agent's state directory.
    #[arg(long, env = "MAZU_AGENT_STATE_DIR")]
    state_dir: PathBuf,
    /// Curator base URL (to refresh the opening first).
    #[arg(long, env = "MAZU_AGENT_CURATOR")]
    curator: String,
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
            Command::Run(args) => run(args).await,
            Command::Encrypt(args) => encrypt(args).await,
            Command::Decrypt(args) => decrypt(args).await,
            Command::Status(args) => status(&args),
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

fn check_url(url: &str) -> Result<(), Error> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "--curator {url:?} is not an http:// or https:// URL"
        )))
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    check_url(&args.curator)?;
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .map_err(|e| Error::Config(format!("--trust-domain {:?}: {e}", args.trust_domain)))?;
    if args.cert_dir.is_none() && args.sds_socket.is_none() {
        tracing::warn!(
            "neither --cert-dir nor --sds-socket given: the certificate is only registered, not served"
        );
    }
    let config = AgentConfig {
        curator: args.curator,
        token_file: args.token_file,
        state_dir: args.state_dir,
        trust_domain,
        cert_dir: args.cert_dir,
        sds_socket: args.sds_socket.clone(),
        sds_socket_mode: args.sds_socket_mode,
        rotation_margin: Duration::from_secs(args.rotation_margin_secs),
        propagation_delay: Duration::from_millis(args.propagation_delay_ms),
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        opening_refresh: Duration::from_millis(args.opening_refresh_ms),
        cert_lifetime: Duration::from_secs(args.cert_lifetime_secs),
        crs_digest: args.crs_digest,
        backoff_initial: Duration::from_millis(args.backoff_initial_ms),
        backoff_max: Duration::from_millis(args.backoff_max_ms),
    };
    let (agent, secrets) = Agent::new(config).context("starting the agent")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sds = match &args.sds_socket {
        Some(path) => {
            let listener = mazu_agent::sds::bind(path, args.sds_socket_mode)?;
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
    if let Some(sds) = sds {
        // A stream Envoy keeps open would hold graceful shutdown forever.
        match tokio::time::timeout(Duration::from_secs(3), sds).await {
            Ok(Ok(result)) => result?,
            _ => {
                if let Some(path) = &args.sds_socket {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => core::future::pending::<()>().await,
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
    check_url(&args.curator)?;
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
    let message = read_input(&args.input)?;
    let client = CuratorClient::new(&args.curator)?;
    let ct = mazu_agent::crypt::encrypt_to_id(&client, &id, &message, args.aad.as_bytes())
        .await
        .with_context(|| format!("encrypting to {id}"))?;
    write_output(&args.output, &ct)
}

async fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    check_url(&args.curator)?;
    let ciphertext = read_input(&args.input)?;
    let state = StateDir::open_existing(&args.state_dir)?;
    let client = CuratorClient::new(&args.curator)?;
    let plain = mazu_agent::crypt::decrypt(&state, Some(&client), &ciphertext, args.aad.as_bytes())
        .await
        .context("decrypting")?;
    write_output(&args.output, &plain)
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
