//! Command-line flags (each with an environment variable) and the validated
//! configuration.

use core::net::SocketAddr;
use core::time::Duration;
use std::path::PathBuf;

use clap::Parser;
use mazu_log::checkpoint::{CheckpointVerifier, valid_name};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7879";

/// Name of the default key file inside the data directory.
pub const KEY_FILE: &str = "witness.key";

/// `mazu-witness`: a C2SP tlog-witness. It cosigns a log's checkpoint only if
/// the log signed it and it is consistent with the last checkpoint of that
/// log the witness cosigned, which it stores durably. See docs/witness.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "mazu-witness", version, about, long_about = None)]
pub struct Args {
    /// The witness name: the key name on its cosignature lines, e.g.
    /// `witness.example.org/w1` (no whitespace, no '+'). Clients configure
    /// the witness by its verifier key, which embeds this name.
    #[arg(long, env = "MAZU_WITNESS_NAME", value_name = "NAME")]
    pub name: String,

    /// A log to witness, by its checkpoint verifier key
    /// `ORIGIN+KEYHASH+BASE64(0x01||PUBKEY)` (as the curator logs it and
    /// serves it at `/v1/checkpoint/key`); the origin is the key name.
    /// Repeatable; in the environment, separated by spaces.
    #[arg(
        long = "log",
        env = "MAZU_WITNESS_LOGS",
        value_name = "VKEY",
        value_delimiter = ' ',
        required = true
    )]
    pub logs: Vec<String>,

    /// Directory of the witness's state: the latest cosigned checkpoint of
    /// each log (`logs/`), fork evidence (`evidence/`), a lock file, and by
    /// default the key. Created if missing.
    #[arg(long, env = "MAZU_WITNESS_DATA_DIR", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// The witness's Ed25519 key: 64 hex digits (or 32 raw bytes).
    /// Default: DATA_DIR/witness.key.
    #[arg(long, env = "MAZU_WITNESS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Generate the key file (mode 0600) if it does not exist. Without this
    /// flag a missing key file is an error: the key is the witness's
    /// identity, and a silently regenerated key is a new, unknown witness.
    #[arg(long, env = "MAZU_WITNESS_CREATE_KEY")]
    pub create_key: bool,

    /// Print the witness's verifier key (`NAME+KEYID+BASE64(0x04||PUBKEY)`)
    /// on stdout and exit.
    #[arg(long)]
    pub print_vkey: bool,

    /// Print the pin of the TLS key (--tls-key, created first with
    /// --create-tls-key) on stdout and exit: what the curator takes as
    /// `--witness https://...=VKEY;tls-pin=PIN`.
    #[arg(long)]
    pub print_tls_pin: bool,

    /// Serve TLS with this key (P-256, 64 hex digits or 32 raw bytes). The
    /// certificate is self-signed and made anew at every start: clients pin
    /// the SHA-256 of its public key (logged at start, --tls-pin-file), not a
    /// CA. Required unless --insecure-plain-http.
    #[arg(long, env = "MAZU_WITNESS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Generate the --tls-key file (mode 0600) if it does not exist. Without
    /// it a missing TLS key is an error: a new key is a new pin that every
    /// curator must be given.
    #[arg(long, env = "MAZU_WITNESS_CREATE_TLS_KEY")]
    pub create_tls_key: bool,

    /// Write the TLS pin (base64 SHA-256 of the key's SubjectPublicKeyInfo)
    /// to this file, atomically, once listening.
    #[arg(long, env = "MAZU_WITNESS_TLS_PIN_FILE", value_name = "FILE")]
    pub tls_pin_file: Option<PathBuf>,

    /// INSECURE, development only: serve plain HTTP instead of TLS. Anyone
    /// on the path can then answer in the witness's place (which withholds
    /// cosignatures, and cannot forge them) or see the submitted
    /// checkpoints. Exactly one of --tls-key and this flag is required.
    #[arg(long, env = "MAZU_WITNESS_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,

    /// Address to listen on (port 0: any free port; see --addr-file).
    #[arg(long, env = "MAZU_WITNESS_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Write the bound address (`IP:PORT`) to this file, atomically, once
    /// listening.
    #[arg(long, env = "MAZU_WITNESS_ADDR_FILE", value_name = "FILE")]
    pub addr_file: Option<PathBuf>,

    /// Whole-request timeout of `add-checkpoint`, in seconds (408 after).
    #[arg(
        long,
        env = "MAZU_WITNESS_REQUEST_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub request_timeout_secs: u64,

    /// Most `add-checkpoint` requests handled at once; more are refused
    /// with 503.
    #[arg(
        long,
        env = "MAZU_WITNESS_MAX_CONCURRENT_REQUESTS",
        default_value_t = 64,
        value_name = "N"
    )]
    pub max_concurrent_requests: usize,

    /// How long in-flight requests may finish after SIGTERM / Ctrl-C.
    #[arg(
        long,
        env = "MAZU_WITNESS_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub shutdown_grace_secs: u64,
}

/// Why the flags are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The witness name is not a valid key name.
    #[error("invalid --name {0:?}: it must be non-empty, without whitespace or '+'")]
    Name(String),
    /// A `--log` verifier key does not parse.
    #[error("invalid --log {vkey:?}: {source}")]
    Log {
        /// The flag's value.
        vkey: String,
        /// Why.
        source: mazu_log::NoteError,
    },
    /// Two `--log` keys name the same origin.
    #[error("two --log keys for the origin {0:?}")]
    DuplicateOrigin(String),
    /// No `--log` flag.
    #[error("no --log: the witness must be told which logs to witness")]
    NoLogs,
    /// A limit is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Neither TLS nor plain HTTP was chosen, or both, or a TLS flag
    /// without --tls-key.
    #[error("{0}")]
    Transport(&'static str),
}

/// How the witness serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS with a self-signed certificate over a pinned key.
    Tls {
        /// The key file.
        key: PathBuf,
        /// Whether a missing key file may be generated.
        create: bool,
        /// Where to write the pin once listening.
        pin_file: Option<PathBuf>,
    },
    /// Plain HTTP (`--insecure-plain-http`).
    InsecurePlainHttp,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The witness name.
    pub name: String,
    /// The logs, by origin (= the verifier's name).
    pub logs: Vec<CheckpointVerifier>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The key file.
    pub key_file: PathBuf,
    /// Whether a missing key file may be generated.
    pub create_key: bool,
    /// The listen address.
    pub listen: SocketAddr,
    /// Where to write the bound address.
    pub addr_file: Option<PathBuf>,
    /// The `add-checkpoint` timeout.
    pub request_timeout: Duration,
    /// The `add-checkpoint` concurrency limit.
    pub max_concurrent_requests: usize,
    /// The shutdown grace period.
    pub shutdown_grace: Duration,
    /// TLS or plain HTTP.
    pub transport: Transport,
}

impl Args {
    /// The transport the flags choose: exactly one of --tls-key and
    /// --insecure-plain-http (the one-line reason otherwise).
    pub fn transport(&self) -> Result<Transport, ConfigError> {
        match (&self.tls_key, self.insecure_plain_http) {
            (None, false) => Err(ConfigError::Transport(
                "no transport: give --tls-key FILE (TLS; curators pin its key, see \
                 --tls-pin-file) or, for local development only, --insecure-plain-http",
            )),
            (Some(_), true) => Err(ConfigError::Transport(
                "--tls-key and --insecure-plain-http exclude each other",
            )),
            (None, true) if self.create_tls_key || self.tls_pin_file.is_some() => {
                Err(ConfigError::Transport(
                    "--create-tls-key and --tls-pin-file need --tls-key (not --insecure-plain-http)",
                ))
            }
            (None, true) => Ok(Transport::InsecurePlainHttp),
            (Some(key), false) => Ok(Transport::Tls {
                key: key.clone(),
                create: self.create_tls_key,
                pin_file: self.tls_pin_file.clone(),
            }),
        }
    }

    /// Checks the flags and builds the configuration.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        if !valid_name(&self.name) {
            return Err(ConfigError::Name(self.name.clone()));
        }
        let mut logs: Vec<CheckpointVerifier> = Vec::new();
        for vkey in self.logs.iter().filter(|v| !v.is_empty()) {
            let v = CheckpointVerifier::parse(vkey).map_err(|source| ConfigError::Log {
                vkey: vkey.clone(),
                source,
            })?;
            if logs.iter().any(|l| l.name() == v.name()) {
                return Err(ConfigError::DuplicateOrigin(v.name().to_owned()));
            }
            logs.push(v);
        }
        if logs.is_empty() {
            return Err(ConfigError::NoLogs);
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError::Zero("--request-timeout-secs"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::Zero("--max-concurrent-requests"));
        }
        // --print-vkey serves nothing: it needs no transport.
        let transport = if self.print_vkey && self.tls_key.is_none() {
            Transport::InsecurePlainHttp
        } else {
            self.transport()?
        };
        Ok(Config {
            name: self.name.clone(),
            logs,
            key_file: self
                .key
                .clone()
                .unwrap_or_else(|| self.data_dir.join(KEY_FILE)),
            data_dir: self.data_dir.clone(),
            create_key: self.create_key,
            listen: self.listen,
            addr_file: self.addr_file.clone(),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_concurrent_requests: self.max_concurrent_requests,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            transport,
        })
    }
}

impl Config {
    /// A configuration with the defaults of the flags (for tests and
    /// embedding): listen on 127.0.0.1, any port, plain HTTP (set
    /// `transport` for TLS; the binary has no such default and requires a
    /// choice).
    pub fn new(name: &str, logs: Vec<CheckpointVerifier>, data_dir: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            logs,
            key_file: data_dir.join(KEY_FILE),
            data_dir,
            create_key: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            addr_file: None,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 64,
            shutdown_grace: Duration::from_secs(10),
            transport: Transport::InsecurePlainHttp,
        }
    }
}
