//! The agent's error types: one enum per concern, wrapped by [`Error`].

use std::path::PathBuf;

/// Anything the agent library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Talking to the curator failed or it refused.
    #[error(transparent)]
    Curator(#[from] CuratorError),
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The token file.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Building the certificate.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Encryption or decryption.
    #[error(transparent)]
    Crypt(#[from] CryptError),
    /// The curator's signed checkpoint was refused (see
    /// [`crate::transparency`]).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The SDS server.
    // The I/O error is part of the message, not a `source`, so that
    // `{:#}` chains do not print it twice.
    #[error("SDS server on {path}: {error}")]
    Sds {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A registration could not be completed for a reason other than the
    /// curator's answer (key generation, an id registered with other keys).
    #[error("registration: {0}")]
    Registration(String),
    /// The witnessed log does not show this agent's binding as the first
    /// binding of its id: the token is not revealed.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// A setting is unusable (the binary exits with a one-line message).
    #[error("configuration: {0}")]
    Config(String),
}

/// Why a curator request failed. [`CuratorError::is_transient`] tells the
/// retry loop whether waiting can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CuratorError {
    /// No answer (connection refused, timeout, reset).
    #[error("curator unreachable at {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The transport error, as text (reqwest's error chain).
        reason: String,
    },
    /// The curator answered with an API error.
    #[error("curator refused {what}: {status} {code}: {message}")]
    Refused {
        /// What was asked (e.g. `POST /v1/registrations`).
        what: String,
        /// HTTP status.
        status: u16,
        /// The API error code (`token_expired`, `not_ready`, ...).
        code: String,
        /// The curator's message.
        message: String,
    },
    /// The answer did not parse or did not check out.
    #[error("unexpected answer to {what}: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The flags name no usable way to reach the curator (no TLS pin, a
    /// scheme that does not match).
    #[error(transparent)]
    Transport(#[from] mazu_service::tls::TransportError),
    /// The curator serves another CRS than the pinned or stored one.
    #[error("the curator's CRS digest is {served}, expected {expected}: refusing it")]
    CrsMismatch {
        /// Hex digest served.
        served: String,
        /// Hex digest expected.
        expected: String,
    },
}

impl CuratorError {
    /// Whether retrying later can succeed: transport failures, 5xx, 408 and
    /// 429. A 4xx refusal (an expired token, a bad request) is permanent for
    /// this token; a CRS mismatch is permanent for this configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            CuratorError::Unreachable { .. } => true,
            CuratorError::Refused { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            CuratorError::Malformed { .. } => true,
            CuratorError::CrsMismatch { .. } | CuratorError::Transport(_) => false,
        }
    }

    /// The API error code, if the curator answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CuratorError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// State directory failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// An I/O error on a path.
    #[error("{op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error (in the message, not a `source`: printed once).
        error: std::io::Error,
    },
    /// A stored file does not parse.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl StateError {
    /// Wraps an I/O error with what was done to which path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        StateError::Io {
            op,
            path: path.into(),
            error,
        }
    }

    /// A file whose content does not parse.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        StateError::Corrupt {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Token file problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file does not exist (yet: the kubelet may not have written it).
    #[error("token file {0} does not exist")]
    Missing(PathBuf),
    /// Reading failed.
    #[error("reading token file {path}: {error}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file is empty.
    #[error("token file {0} is empty")]
    Empty(PathBuf),
    /// The claims do not parse (the curator would refuse it anyway).
    #[error("token in {path} is not a usable Kubernetes token: {reason}")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// The identity crate's refusal.
        reason: String,
    },
}

/// Certificate and key building failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The identity crate refused to build the certificate.
    #[error("building the workload certificate: {0}")]
    Build(String),
    /// Encoding a key or certificate.
    #[error("encoding {0}")]
    Encoding(&'static str),
    /// A stored key does not decode.
    #[error("decoding the stored {0}")]
    Decoding(&'static str),
}

/// Encryption and decryption failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The input is not a Mazu ciphertext.
    #[error("not an RBE ciphertext: {0}")]
    BadCiphertext(String),
    /// No stored registration holds the ciphertext's slot.
    #[error("the ciphertext is for slot {0}, and no stored registration holds that slot")]
    NoKeyForSlot(u32),
    /// The stored openings do not include the ciphertext's block commitment.
    #[error(
        "no opening for the ciphertext's block commitment (made under a registry version this agent never saw)"
    )]
    NoOpening,
    /// The rbe crate refused.
    #[error("{0}")]
    Rbe(String),
    /// The id is not registered.
    #[error("id {0} is not registered at the curator")]
    UnknownId(String),
    /// The curator served a membership proof for another id.
    #[error(
        "the curator's membership proof is for id {served}, not {expected}: refusing to encrypt"
    )]
    ProofForAnotherId {
        /// The recipient's id (hex).
        expected: String,
        /// The id the proof is for (hex).
        served: String,
    },
}

/// Why the agent refused a checkpoint the curator served: each is evidence
/// that the curator (or whoever answers in its place) misbehaves, not a
/// transient failure (see [`crate::transparency`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is not signed by the trusted key (or is malformed).
    #[error("the checkpoint does not verify with the {trust} checkpoint key {key}: {reason}")]
    BadSignature {
        /// The trusted verifier key.
        key: String,
        /// `pinned` or `trusted on first use`.
        trust: &'static str,
        /// The verifier's refusal.
        reason: String,
    },
    /// The curator serves another checkpoint key than the trusted one.
    #[error(
        "the curator now serves checkpoint key {served}, not the {trust} {trusted}, and its checkpoint does not verify with the latter: {reason}"
    )]
    KeyChanged {
        /// The key served now.
        served: String,
        /// The trusted key.
        trusted: String,
        /// `pinned` or `trusted on first use`.
        trust: &'static str,
        /// Why the checkpoint did not verify.
        reason: String,
    },
    /// A smaller tree than one already accepted: the log was rolled back.
    #[error(
        "the checkpoint has {offered} entries, fewer than the {remembered} of the checkpoint accepted before: the log was rolled back"
    )]
    Rollback {
        /// The accepted size.
        remembered: u64,
        /// The offered size.
        offered: u64,
    },
    /// The same size with another root: the log was rewritten (a fork).
    #[error(
        "the checkpoint has the same size {size} as the one accepted before but root {offered_root}, not {remembered_root}: the log was rewritten (a fork)"
    )]
    Fork {
        /// The tree size.
        size: u64,
        /// The accepted root (hex).
        remembered_root: String,
        /// The offered root (hex).
        offered_root: String,
    },
    /// No valid consistency proof from the accepted tree to the offered
    /// one: the offered log does not extend the accepted one.
    #[error(
        "no valid consistency proof from the checkpoint accepted before ({from} entries) to the offered one ({to} entries): {reason}"
    )]
    Inconsistent {
        /// The accepted size.
        from: u64,
        /// The offered size.
        to: u64,
        /// What failed.
        reason: String,
    },
    /// The checkpoint is not cosigned by the configured witness quorum.
    #[error("the checkpoint is not cosigned by the witness quorum: {reason}")]
    Unwitnessed {
        /// The policy's refusal.
        reason: String,
    },
    /// The curator's log records do not give the root of a checkpoint it
    /// signed (or do not extend the log already followed): it lied.
    #[error(
        "the curator's log records up to {size} do not give its signed checkpoint's root: {reason}"
    )]
    RecordsMismatch {
        /// The checkpoint's size.
        size: u64,
        /// What failed.
        reason: String,
    },
    /// The agent's own registration is not (or no longer) in the log.
    #[error(
        "this agent's registration (log index {index}) is not in the log of {size} entries: {reason}"
    )]
    OwnEntryMissing {
        /// The entry's log index.
        index: u64,
        /// The tree size checked against.
        size: u64,
        /// What failed.
        reason: String,
    },
}

/// Why the agent does not reveal its token (or does not serve a
/// certificate) after binding: the witnessed log, not the curator's word,
/// decides whose binding of the id counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// Another binding of the id came first in the witnessed log (the
    /// curator, or someone on the path, saw the id and bound it to its own
    /// key). Revealing the token would hand it a valid certificate.
    #[error(
        "id {id} was first bound to another key (SPKI hash {spki_hash}, log index {index}): this binding was front-run; the token is never revealed, waiting for a new token"
    )]
    FrontRun {
        /// Hex workload id.
        id: String,
        /// Hex SPKI hash of the binding that came first.
        spki_hash: String,
        /// Its log index.
        index: u64,
    },
    /// The curator's answer names another key or slot than this agent's.
    #[error("the curator's answer for id {id} does not match this agent's binding: {reason}")]
    Mismatch {
        /// Hex workload id.
        id: String,
        /// What differs.
        reason: String,
    },
    /// The witnessed log up to the curator's checkpoint does not hold the
    /// binding (or the reveal) the curator says it logged.
    #[error("the witnessed log does not show id {id} as the curator claims: {reason}")]
    NotInLog {
        /// Hex workload id.
        id: String,
        /// What the log shows instead.
        reason: String,
    },
}

impl BindingError {
    /// A short stable name (`status.json`, `outcome.json`, logs, tests).
    pub fn reason(&self) -> &'static str {
        match self {
            BindingError::FrontRun { .. } => "front_run",
            BindingError::Mismatch { .. } => "spki_mismatch",
            BindingError::NotInLog { .. } => "not_in_log",
        }
    }
}

impl CheckpointError {
    /// A short stable name of the refusal (`status.json`, logs, tests).
    pub fn kind(&self) -> &'static str {
        match self {
            CheckpointError::BadSignature { .. } => "bad_signature",
            CheckpointError::KeyChanged { .. } => "key_changed",
            CheckpointError::Rollback { .. } => "rollback",
            CheckpointError::Fork { .. } => "fork",
            CheckpointError::Inconsistent { .. } => "inconsistent",
            CheckpointError::OwnEntryMissing { .. } => "own_entry_missing",
            CheckpointError::Unwitnessed { .. } => "unwitnessed",
            CheckpointError::RecordsMismatch { .. } => "records_mismatch",
        }
    }
}
