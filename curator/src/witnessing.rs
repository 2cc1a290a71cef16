//! The curator's witness client: submits each signed checkpoint to the
//! configured C2SP `tlog-witness` witnesses (`mazu-witness`) and collects
//! their cosignatures until the quorum is met ([`Witnessing`]), and the
//! newest witnessed checkpoint that bind and reveal answers wait for
//! ([`WitnessedLog`]).
//!
//! Per witness, the client remembers the size it last cosigned (0 at
//! start: the first request is `old 0` without a proof). A witness that
//! holds another size answers `409` with it (`text/x.tlog.size`); the client
//! then retries once from that size with a consistency proof. Every
//! cosignature line a witness returns is verified with that witness's
//! configured key before it counts or is merged into the note: a witness
//! that answers garbage, or signs with another key, does not count (and a
//! bad line never reaches verifiers, whose [`mazu_log::WitnessPolicy`] would
//! refuse the whole note).
//!
//! Witnesses are asked concurrently, each request under the configured
//! timeout; [`Witnessing::cosign`] waits for every answer (more cosignatures
//! than the quorum make the note valid under more verifier policies) and
//! fails, naming every failing witness, if fewer than the quorum cosigned.
//!
//! A witness is reached over TLS pinned to its key
//! (`https://...=VKEY;tls-pin=PIN`: the client accepts exactly the server
//! holding that key, no CA), or over plain `http://` only when the curator
//! runs with `--insecure-plain-http-witness`.
//!
//! A checkpoint that carries a state line (the curator's always do) goes to
//! the witness's Mazu route `/mazu/v1/add-checkpoint` with the log's records
//! from the witness's size on, so that the witness derives the state itself
//! before it cosigns the line ([`LogSource::records`], `docs/witness.md`).
//!
//! The wire format is [`mazu_log::witness_protocol`]; the configuration
//! names (`--witness URL=VKEY[;tls-pin=PIN]`, `--witness-quorum`) are in
//! `docs/protocol.md`, "Wire (log format 2)", and `docs/curator.md`.

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::Poll;
use core::time::Duration;
use std::sync::Arc;

use mazu_log::checkpoint::{Checkpoint, MAX_SIGNATURES, Note};
use mazu_log::cosignature::{CosignatureError, append_cosignatures};
use mazu_log::evidence::state_digest;
use mazu_log::witness_protocol::{
    ADD_CHECKPOINT_PATH, ADD_CHECKPOINT_WITH_RECORDS_PATH, AddCheckpointRequest,
    AddCheckpointResponse, MAX_RESPONSE_LEN, ProtocolError, describe_status, parse_response,
    with_records,
};
use mazu_log::{Hash, WitnessVerifier};
use mazu_service::tls::{ClientTransport, SpkiPin};
use tokio::sync::watch;

/// How many bytes of a refusal's body are kept (sanitized) for the log and
/// the error: enough for the witness's one-line reason.
const REFUSAL_DETAIL_LEN: usize = 200;

/// Why the witness configuration is unusable (a start-up error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessConfigError {
    /// A `--witness` value is not `URL=VKEY` with a usable URL.
    #[error("invalid --witness {arg:?}: {reason}")]
    Endpoint {
        /// The flag's value.
        arg: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The verifier key of a `--witness` value does not parse.
    #[error("invalid --witness {arg:?}: bad witness verifier key: {source}")]
    VerifierKey {
        /// The flag's value.
        arg: String,
        /// Why the key does not parse.
        source: CosignatureError,
    },
    /// The quorum is larger than the number of witnesses.
    #[error("--witness-quorum {quorum} exceeds the {endpoints} configured witnesses")]
    QuorumTooLarge {
        /// The configured quorum.
        quorum: usize,
        /// The number of `--witness` flags.
        endpoints: usize,
    },
    /// Two witnesses share a name or a public key: one key must not count
    /// twice toward the quorum, and verifiers' policies refuse duplicates.
    #[error("two --witness entries have the same {what}: {name}")]
    Duplicate {
        /// "name" or "public key".
        what: &'static str,
        /// The witness name of the second entry.
        name: String,
    },
    /// More witnesses than a note can carry cosignatures of.
    #[error("too many witnesses ({0}); at most {MAX_SIGNATURES}")]
    TooMany(usize),
    /// The request timeout is zero.
    #[error("the witness request timeout must be positive")]
    ZeroTimeout,
    /// The HTTP client cannot be built.
    #[error("cannot build the witness HTTP client: {0}")]
    Client(String),
}

/// What follows the VKEY in a `--witness` value for a TLS witness.
pub const TLS_PIN_PARAMETER: &str = ";tls-pin=";

/// One configured witness: where to submit checkpoints, how to reach it,
/// and the key its cosignatures must verify with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessEndpoint {
    /// The witness's submission prefix, `https://host:port[/path]` (or
    /// `http://` without TLS), without a trailing slash; requests go to
    /// `<url>/add-checkpoint`.
    pub url: String,
    /// The witness's cosignature verifier key.
    pub verifier: WitnessVerifier,
    /// The pin of the witness's TLS key (`https://`); `None`: plain HTTP
    /// (`http://`, which the configuration allows only with
    /// `--insecure-plain-http-witness`).
    pub tls_pin: Option<SpkiPin>,
}

impl WitnessEndpoint {
    /// Parses a `--witness` value `URL=VKEY;tls-pin=PIN` (or `URL=VKEY` for
    /// plain HTTP), split at the first `=`: the URL is
    /// `https://host[:port][/prefix]` (no query, fragment or user info), the
    /// VKEY a witness verifier key `NAME+KEYID+BASE64(0x04||PUBKEY)`, the
    /// PIN the base64 SHA-256 of the witness's TLS public key (its
    /// `--tls-pin-file`).
    ///
    /// An `https://` URL needs the pin (no CA is trusted for a witness); an
    /// `http://` URL must not have one, and is parsed as plain HTTP: whether
    /// that is allowed is the caller's decision
    /// ([`Self::is_plain_http`], `--insecure-plain-http-witness`).
    pub fn parse(arg: &str) -> Result<Self, WitnessConfigError> {
        let bad = |reason| WitnessConfigError::Endpoint {
            arg: arg.to_owned(),
            reason,
        };
        let (url, rest) = arg.split_once('=').ok_or(bad("expected URL=VKEY"))?;
        let (vkey, tls_pin) = match rest.split_once(TLS_PIN_PARAMETER) {
            Some((vkey, pin)) => (
                vkey,
                Some(pin.parse::<SpkiPin>().map_err(|_| {
                    bad("the tls-pin is not a pin (base64 SHA-256 of the witness's TLS key, 44 characters, from its --tls-pin-file)")
                })?),
            ),
            None => (rest, None),
        };
        if url.is_empty() {
            return Err(bad("empty URL"));
        }
        if vkey.is_empty() {
            return Err(bad("empty verifier key"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| bad("the URL does not parse"))?;
        match (parsed.scheme(), tls_pin) {
            ("https", Some(_)) | ("http", None) => {}
            ("https", None) => {
                return Err(bad(
                    "an https:// witness needs the pin of its TLS key: URL=VKEY;tls-pin=PIN (the witness's --tls-pin-file or start-up log)",
                ));
            }
            ("http", Some(_)) => {
                return Err(bad(
                    "a tls-pin needs an https:// URL (the witness serves TLS)",
                ));
            }
            _ => return Err(bad("the URL scheme must be https (or http)")),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("the URL must not carry user info"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("the URL must not have a query or fragment"));
        }
        let verifier =
            WitnessVerifier::parse(vkey).map_err(|source| WitnessConfigError::VerifierKey {
                arg: arg.to_owned(),
                source,
            })?;
        Ok(Self {
            url: parsed.as_str().trim_end_matches('/').to_owned(),
            verifier,
            tls_pin,
        })
    }

    /// Whether the witness is reached over plain HTTP (no TLS pin).
    pub fn is_plain_http(&self) -> bool {
        self.tls_pin.is_none()
    }

    /// How the client reaches it: TLS pinned to its key, or plain HTTP.
    pub fn transport(&self) -> ClientTransport {
        match self.tls_pin {
            Some(pin) => ClientTransport::Pinned(vec![pin]),
            None => ClientTransport::InsecurePlainHttp,
        }
    }
}

/// The witness configuration of a curator.
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    /// The witnesses (distinct names and keys).
    pub endpoints: Vec<WitnessEndpoint>,
    /// How many of them must cosign each checkpoint (at most
    /// `endpoints.len()`; 0 only for development without witnesses).
    pub quorum: usize,
    /// The timeout of each `add-checkpoint` request (connection, answer
    /// and body).
    pub request_timeout: Duration,
}

/// Why one witness did not count toward the quorum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// The request could not be sent or the answer not read.
    #[error("cannot reach the witness: {0}")]
    Transport(String),
    /// No complete answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The witness refused the checkpoint.
    #[error("refused (HTTP {status}): {}{}", describe_status(*.status), detail_suffix(.detail))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of the witness's answer, sanitized.
        detail: String,
    },
    /// The answer does not follow the protocol (or is too large).
    #[error("malformed answer: {0}")]
    Malformed(ProtocolError),
    /// A returned line claims the configured key but does not verify.
    #[error("a cosignature does not verify: {0}")]
    BadCosignature(CosignatureError),
    /// No returned line is a cosignature by the configured key (e.g. the
    /// witness signs with another key than the one configured).
    #[error("no cosignature by the configured key {0}")]
    NoCosignature(String),
    /// The witness holds a larger checkpoint than the one submitted.
    #[error("the witness holds size {witness_size}, above the submitted size {size}")]
    Ahead {
        /// The witness's size.
        witness_size: u64,
        /// The submitted size.
        size: u64,
    },
    /// A second `409` with a size after retrying from the first one.
    #[error("the witness answered its size again ({witness_size}) after the retry")]
    ConflictAgain {
        /// The size in the second answer.
        witness_size: u64,
    },
    /// The curator could not produce the consistency proof.
    #[error("no consistency proof from size {old} to {new}: {reason}")]
    Proof {
        /// The witness's size.
        old: u64,
        /// The submitted size.
        new: u64,
        /// Why.
        reason: String,
    },
    /// The curator could not produce the records the witness lacks.
    #[error("no records from size {old} to {new}: {reason}")]
    Records {
        /// The witness's size.
        old: u64,
        /// The submitted size.
        new: u64,
        /// Why.
        reason: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// One witness that did not count, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{url} ({name}): {reason}")]
pub struct WitnessFailure {
    /// The witness's URL.
    pub url: String,
    /// The witness's name.
    pub name: String,
    /// Why it did not count.
    pub reason: FailureReason,
}

/// Why a checkpoint could not be witnessed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessingError {
    /// The note given to [`Witnessing::cosign`] is not a signed checkpoint
    /// of the given size (a caller bug).
    #[error("the note to cosign is not a signed checkpoint of size {size}: {reason}")]
    InvalidNote {
        /// The size the caller gave.
        size: u64,
        /// What is wrong.
        reason: String,
    },
    /// Fewer witnesses than the quorum cosigned.
    #[error(
        "{cosigned} of the required {quorum} witnesses cosigned the checkpoint of size {size}; failed: {}",
        list(.failures)
    )]
    BelowQuorum {
        /// The submitted size.
        size: u64,
        /// How many witnesses cosigned.
        cosigned: usize,
        /// The quorum.
        quorum: usize,
        /// Every witness that did not cosign, and why.
        failures: Vec<WitnessFailure>,
    },
    /// The verified cosignatures do not fit on the note.
    #[error("cannot merge the cosignatures into the note: {0}")]
    Merge(CosignatureError),
}

fn list(failures: &[WitnessFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One witness and what the client remembers of it.
#[derive(Debug)]
struct Witness {
    endpoint: WitnessEndpoint,
    /// `<url>/add-checkpoint`.
    submit_url: String,
    /// `<url>/mazu/v1/add-checkpoint`: with the records, for a checkpoint
    /// that carries a state line.
    submit_with_records_url: String,
    /// Its HTTP client: TLS pinned to its key, or plain HTTP.
    client: reqwest::Client,
    /// The size the witness last cosigned (or told us it holds): the old
    /// size of the next request.
    last_size: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    witnesses: Vec<Witness>,
    quorum: usize,
    timeout: Duration,
}

/// The client of the configured witnesses. Cheap to clone (shared state:
/// the sizes each witness last cosigned).
#[derive(Clone, Debug)]
pub struct Witnessing {
    inner: Arc<Inner>,
}

/// What a witness is sent besides the checkpoint: proofs and records of the
/// curator's log. A closure `(old, new) -> proof` is a source without
/// records (enough for checkpoints without a state line).
pub trait LogSource: Send + Sync {
    /// The consistency proof between the log at sizes `old` and `new`.
    fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, String>;

    /// The leaf records `old..new`, concatenated.
    fn records(&self, old: u64, new: u64) -> Result<Vec<u8>, String> {
        let _ = (old, new);
        Err("this log source has no records".to_owned())
    }
}

impl<F> LogSource for F
where
    F: Fn(u64, u64) -> Result<Vec<Hash>, String> + Send + Sync,
{
    fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        self(old, new)
    }
}

impl LogSource for crate::checkpoint::Transparency {
    fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, String> {
        Self::consistency(self, old, new)
            .map(|(_, _, proof)| proof)
            .map_err(|e| e.to_string())
    }

    fn records(&self, old: u64, new: u64) -> Result<Vec<u8>, String> {
        self.records_between(old, new)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the log has no records {old}..{new}"))
    }
}

type Consistency<'a> = &'a dyn LogSource;

impl Witnessing {
    /// Checks the options (quorum at most the number of witnesses, distinct
    /// witness names and keys, a positive timeout) and builds the client.
    pub fn new(opts: WitnessOptions) -> Result<Self, WitnessConfigError> {
        let n = opts.endpoints.len();
        if opts.quorum > n {
            return Err(WitnessConfigError::QuorumTooLarge {
                quorum: opts.quorum,
                endpoints: n,
            });
        }
        if n > MAX_SIGNATURES {
            return Err(WitnessConfigError::TooMany(n));
        }
        if opts.request_timeout.is_zero() {
            return Err(WitnessConfigError::ZeroTimeout);
        }
        for (i, a) in opts.endpoints.iter().enumerate() {
            for b in &opts.endpoints[..i] {
                let what = if a.verifier.name() == b.verifier.name() {
                    "name"
                } else if a.verifier.public_key() == b.verifier.public_key() {
                    "public key"
                } else {
                    continue;
                };
                return Err(WitnessConfigError::Duplicate {
                    what,
                    name: a.verifier.name().to_owned(),
                });
            }
        }
        let witnesses = opts
            .endpoints
            .into_iter()
            .map(|endpoint| {
                // A witness has no reason to redirect a submission; following
                // one would send the checkpoint somewhere unconfigured. Each
                // witness has its own client: a TLS one accepts only the
                // server holding that witness's pinned key.
                let builder = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(opts.request_timeout);
                let client = endpoint
                    .transport()
                    .configure(builder)
                    .map_err(|e| WitnessConfigError::Client(e.to_string()))?
                    .build()
                    .map_err(|e| WitnessConfigError::Client(e.to_string()))?;
                Ok(Witness {
                    submit_url: format!("{}{ADD_CHECKPOINT_PATH}", endpoint.url),
                    submit_with_records_url: format!(
                        "{}{ADD_CHECKPOINT_WITH_RECORDS_PATH}",
                        endpoint.url
                    ),
                    endpoint,
                    client,
                    last_size: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, WitnessConfigError>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                witnesses,
                quorum: opts.quorum,
                timeout: opts.request_timeout,
            }),
        })
    }

    /// The number of witnesses that must cosign.
    pub fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// The configured witnesses' verifier keys, in configuration order.
    pub fn verifiers(&self) -> Vec<WitnessVerifier> {
        self.inner
            .witnesses
            .iter()
            .map(|w| w.endpoint.verifier.clone())
            .collect()
    }

    /// Submits the curator-signed checkpoint note of `size` to every witness
    /// concurrently and returns the note with the verified cosignature lines
    /// appended once `quorum` witnesses cosigned (quorum 0: the note
    /// unchanged). `consistency(old, new)` returns the consistency proof
    /// between two sizes of the curator's tree.
    ///
    /// Waits for every witness's answer (each bounded by the request
    /// timeout): every extra cosignature makes the note acceptable to more
    /// verifier policies. Failing witnesses are logged (warn) and, below
    /// the quorum, all named in [`WitnessingError::BelowQuorum`].
    pub async fn cosign(
        &self,
        signed_note: &str,
        size: u64,
        consistency: Consistency<'_>,
    ) -> Result<String, WitnessingError> {
        let (text, with_state) = checkpoint_text(signed_note, size)?;
        if self.inner.witnesses.is_empty() {
            return Ok(signed_note.to_owned());
        }
        let answers = join_all(
            self.inner
                .witnesses
                .iter()
                .map(|w| self.cosign_one(w, signed_note, &text, with_state, size, consistency))
                .collect(),
        )
        .await;
        let mut lines = Vec::new();
        let mut cosigned = 0;
        let mut failures = Vec::new();
        for (w, answer) in self.inner.witnesses.iter().zip(answers) {
            match answer {
                Ok(mut l) => {
                    cosigned += 1;
                    lines.append(&mut l);
                }
                Err(reason) => {
                    tracing::warn!(
                        url = %w.endpoint.url,
                        witness = w.endpoint.verifier.name(),
                        size,
                        reason = %reason,
                        "witness did not cosign the checkpoint"
                    );
                    failures.push(WitnessFailure {
                        url: w.endpoint.url.clone(),
                        name: w.endpoint.verifier.name().to_owned(),
                        reason,
                    });
                }
            }
        }
        if cosigned < self.inner.quorum {
            return Err(WitnessingError::BelowQuorum {
                size,
                cosigned,
                quorum: self.inner.quorum,
                failures,
            });
        }
        tracing::debug!(size, cosigned, "checkpoint witnessed");
        append_cosignatures(signed_note, &lines).map_err(WitnessingError::Merge)
    }

    /// One witness: submit from its remembered size, retry once from the
    /// size it answers with, and return its verified cosignature lines.
    async fn cosign_one(
        &self,
        w: &Witness,
        note: &str,
        text: &str,
        with_state: bool,
        size: u64,
        source: Consistency<'_>,
    ) -> Result<Vec<String>, FailureReason> {
        let mut old = w.last_size.load(Ordering::Relaxed);
        if old > size {
            // No proof runs backwards. Either a concurrent submission of a
            // newer checkpoint already went through (the witness will say
            // so), or the witness lost its state: ask with old 0, and its
            // 409 tells which.
            old = 0;
        }
        for retried in [false, true] {
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                source
                    .consistency(old, size)
                    .map_err(|reason| FailureReason::Proof {
                        old,
                        new: size,
                        reason,
                    })?
            };
            let body = AddCheckpointRequest {
                old_size: old,
                proof,
                checkpoint: note.as_bytes().to_vec(),
            }
            .encode();
            let (url, body) = if with_state {
                let records =
                    source
                        .records(old, size)
                        .map_err(|reason| FailureReason::Records {
                            old,
                            new: size,
                            reason,
                        })?;
                (&w.submit_with_records_url, with_records(&body, &records))
            } else {
                (&w.submit_url, body)
            };
            match self.submit(w, url, body).await? {
                AddCheckpointResponse::Cosigned(lines) => {
                    let verified = verify_lines(&w.endpoint.verifier, text, &lines)?;
                    w.last_size.fetch_max(size, Ordering::Relaxed);
                    return Ok(verified);
                }
                AddCheckpointResponse::Conflict { witness_size } => {
                    w.last_size.store(witness_size, Ordering::Relaxed);
                    if witness_size > size {
                        return Err(FailureReason::Ahead { witness_size, size });
                    }
                    if retried {
                        return Err(FailureReason::ConflictAgain { witness_size });
                    }
                    tracing::debug!(
                        url = %w.endpoint.url,
                        witness_size,
                        "witness holds another size; retrying from it"
                    );
                    old = witness_size;
                }
            }
        }
        // The loop returns on its second pass.
        Err(FailureReason::ConflictAgain { witness_size: old })
    }

    /// POSTs one `add-checkpoint` body and decodes the answer, within the
    /// request timeout and with the body size capped.
    async fn submit(
        &self,
        w: &Witness,
        url: &str,
        body: Vec<u8>,
    ) -> Result<AddCheckpointResponse, FailureReason> {
        let timeout = self.inner.timeout;
        let exchange = async {
            let response = w
                .client
                .post(url)
                .body(body)
                .send()
                .await
                .map_err(|e| transport(&e, timeout))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if status != 200 && status != 409 {
                let (detail, _) = read_capped(response, REFUSAL_DETAIL_LEN, timeout).await?;
                return Err(FailureReason::Refused {
                    status,
                    detail: sanitize(&detail),
                });
            }
            let (answer, complete) = read_capped(response, MAX_RESPONSE_LEN, timeout).await?;
            if !complete {
                return Err(FailureReason::Malformed(ProtocolError::TooLarge(
                    MAX_RESPONSE_LEN,
                )));
            }
            match parse_response(status, content_type.as_deref(), &answer) {
                Ok(r) => Ok(r),
                // A 409 without the size type: a fork refusal.
                Err(ProtocolError::Refused { status }) => Err(FailureReason::Refused {
                    status,
                    detail: sanitize(&answer),
                }),
                Err(e) => Err(FailureReason::Malformed(e)),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FailureReason::Timeout(timeout))?
    }
}

/// The checkpoint body (note text) of `note`, checked to be a checkpoint of
/// `size` (cosignatures are verified against it), and whether it carries a
/// state line.
fn checkpoint_text(note: &str, size: u64) -> Result<(String, bool), WitnessingError> {
    let invalid = |reason: String| WitnessingError::InvalidNote { size, reason };
    let parsed = Note::parse(note.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let checkpoint = Checkpoint::parse_body(&parsed.text).map_err(|e| invalid(e.to_string()))?;
    if checkpoint.size != size {
        return Err(invalid(format!("its size is {}", checkpoint.size)));
    }
    let with_state = state_digest(&checkpoint)
        .map_err(|e| invalid(e.to_string()))?
        .is_some();
    Ok((parsed.text, with_state))
}

/// Keeps the lines that are valid cosignatures of `text` by `verifier`.
/// Lines of other keys are dropped (never merged: they are not
/// configured); a line that claims the key but does not verify disqualifies
/// the whole answer.
fn verify_lines(
    verifier: &WitnessVerifier,
    text: &str,
    lines: &[String],
) -> Result<Vec<String>, FailureReason> {
    let mut verified = Vec::new();
    for line in lines {
        match verifier.verify_line(text, line) {
            Ok(Some(_timestamp)) => verified.push(line.clone()),
            Ok(None) => {}
            Err(e) => return Err(FailureReason::BadCosignature(e)),
        }
    }
    if verified.is_empty() {
        return Err(FailureReason::NoCosignature(verifier.to_vkey()));
    }
    Ok(verified)
}

/// Reads at most `cap` bytes of the body; `complete` is false if the body
/// is longer (the rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), FailureReason> {
    let mut body = Vec::new();
    if response.content_length().is_some_and(|l| l > cap as u64) {
        return Ok((body, false));
    }
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e, timeout))? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// A refusal's body as one printable line (it goes into logs).
fn sanitize(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.truncate(out.trim_end().len());
    out
}

/// A reqwest error as a failure reason, with its causes (reqwest's own
/// message alone omits e.g. "connection refused").
fn transport(e: &reqwest::Error, timeout: Duration) -> FailureReason {
    if e.is_timeout() {
        return FailureReason::Timeout(timeout);
    }
    let mut msg = e.to_string();
    let mut source = core::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    FailureReason::Transport(msg)
}

/// Drives `futures` concurrently on the calling task and returns their
/// outputs in order. (Not spawned: each borrows the note and the
/// consistency callback.)
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Waiting for a witnessed checkpoint covering an index timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no witnessed checkpoint covers index {index} after {waited:?}")]
pub struct WaitTimeout {
    /// The index waited for.
    pub index: u64,
    /// How long it waited.
    pub waited: Duration,
}

/// The newest witnessed checkpoint (size and cosigned note), and waiting
/// for one that covers an index. Cheap to clone (shared).
#[derive(Clone)]
pub struct WitnessedLog {
    latest: Arc<watch::Sender<Option<(u64, String)>>>,
}

impl fmt::Debug for WitnessedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessedLog")
            .field("size", &self.latest.borrow().as_ref().map(|(s, _)| *s))
            .finish_non_exhaustive()
    }
}

impl Default for WitnessedLog {
    fn default() -> Self {
        Self::new()
    }
}

impl WitnessedLog {
    /// No witnessed checkpoint yet.
    pub fn new() -> Self {
        Self {
            latest: Arc::new(watch::Sender::new(None)),
        }
    }

    /// Records a witnessed checkpoint of `size`: it becomes the latest if
    /// its size is at least the current one (equal size: the newer note,
    /// e.g. with fresher cosignatures). A smaller size is ignored, so the
    /// served checkpoint never goes back.
    pub fn publish(&self, size: u64, note: String) {
        self.latest.send_if_modified(|latest| {
            if latest.as_ref().is_some_and(|(s, _)| *s > size) {
                return false;
            }
            *latest = Some((size, note));
            true
        });
    }

    /// The latest witnessed checkpoint, if any.
    pub fn latest(&self) -> Option<(u64, String)> {
        self.latest.borrow().clone()
    }

    /// Waits until a witnessed checkpoint covers `index` (its size is
    /// greater than `index`) and returns it, or fails after `timeout`.
    pub async fn wait_covering(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(u64, String), WaitTimeout> {
        let mut rx = self.latest.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|l| l.as_ref().is_some_and(|(s, _)| *s > index)),
        )
        .await;
        match waited {
            Ok(Ok(latest)) => latest.clone().ok_or(WaitTimeout {
                index,
                waited: timeout,
            }),
            // The sender lives in `self`, so the channel cannot close
            // while waiting; treat it as no answer anyway.
            Ok(Err(_)) | Err(_) => Err(WaitTimeout {
                index,
                waited: timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use mazu_log::cosignature::CosignatureSigner;

    fn vkey(name: &str, seed: u8) -> String {
        CosignatureSigner::new(name, &[seed; 32])
            .unwrap()
            .verifier()
            .to_vkey()
    }

    #[test]
    fn parse_accepts_urls_with_and_without_prefix() {
        let k = vkey("witness.example/w1", 1);
        let e = WitnessEndpoint::parse(&format!("http://127.0.0.1:7879={k}")).unwrap();
        assert_eq!(e.url, "http://127.0.0.1:7879");
        assert_eq!(e.verifier.to_vkey(), k);
        assert!(e.is_plain_http());
        let e = WitnessEndpoint::parse(&format!("http://w.example/sub/={k}")).unwrap();
        assert_eq!(e.url, "http://w.example/sub");
        let e =
            WitnessEndpoint::parse(&format!("https://127.0.0.1:7879={k};tls-pin={PIN}")).unwrap();
        assert_eq!(e.url, "https://127.0.0.1:7879");
        assert_eq!(e.verifier.to_vkey(), k);
        assert_eq!(e.tls_pin.map(|p| p.to_string()).as_deref(), Some(PIN));
        assert!(!e.is_plain_http());
    }

    /// A pin in its text form (base64 of 32 bytes).
    const PIN: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    #[test]
    fn parse_refusals() {
        let k = vkey("witness.example/w1", 1);
        let log_key = mazu_log::CheckpointSigner::new("example.org/log", &[2; 32])
            .unwrap()
            .verifier()
            .to_vkey();
        let mut flipped = k.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        for bad in [
            String::new(),
            "http://127.0.0.1:7879".to_owned(),
            k.clone(),
            format!("={k}"),
            "http://127.0.0.1:7879=".to_owned(),
            format!("127.0.0.1:7879={k}"),
            format!("ftp://127.0.0.1:7879={k}"),
            // https needs a pin, a pin needs https, and the pin must parse.
            format!("https://127.0.0.1:7879={k}"),
            format!("http://127.0.0.1:7879={k};tls-pin={PIN}"),
            format!("https://127.0.0.1:7879={k};tls-pin=not-a-pin"),
            format!("https://127.0.0.1:7879={k};tls-pin="),
            format!("http://={k}"),
            format!("http://user:pw@127.0.0.1:7879={k}"),
            format!("http://127.0.0.1:7879/#frag={k}"),
            format!("http://127.0.0.1:99999={k}"),
            "http://127.0.0.1:7879=not-a-key".to_owned(),
            format!("http://127.0.0.1:7879={log_key}"),
            format!("http://127.0.0.1:7879={flipped}"),
        ] {
            assert!(WitnessEndpoint::parse(&bad).is_err(), "{bad:?}");
        }
        // A URL with a query is split at its '=' and refused as a whole.
        assert!(WitnessEndpoint::parse(&format!("http://h:1/?a=b={k}")).is_err());
    }

    fn endpoint(name: &str, seed: u8) -> WitnessEndpoint {
        WitnessEndpoint::parse(&format!("http://127.0.0.1:1={}", vkey(name, seed))).unwrap()
    }

    fn opts(endpoints: Vec<WitnessEndpoint>, quorum: usize) -> WitnessOptions {
        WitnessOptions {
            endpoints,
            quorum,
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn new_refuses_bad_quorum_and_duplicates() {
        let a = endpoint("w/a", 1);
        let b = endpoint("w/b", 2);
        assert!(matches!(
            Witnessing::new(opts(vec![a.clone(), b.clone()], 3)),
            Err(WitnessConfigError::QuorumTooLarge {
                quorum: 3,
                endpoints: 2
            })
        ));
        assert!(matches!(
            Witnessing::new(opts(vec![a.clone(), a.clone()], 1)),
            Err(WitnessConfigError::Duplicate { what: "name", .. })
        ));
        // The same key under another name still counts once: refused.
        assert!(matches!(
            Witnessing::new(opts(vec![a.clone(), endpoint("w/c", 1)], 1)),
            Err(WitnessConfigError::Duplicate {
                what: "public key",
                ..
            })
        ));
        let mut zero = opts(vec![a.clone()], 1);
        zero.request_timeout = Duration::ZERO;
        assert!(matches!(
            Witnessing::new(zero),
            Err(WitnessConfigError::ZeroTimeout)
        ));
        assert_eq!(Witnessing::new(opts(vec![a, b], 2)).unwrap().quorum(), 2);
    }

    #[tokio::test]
    async fn no_witnesses_returns_the_note_unchanged_and_checks_it() {
        let w = Witnessing::new(opts(Vec::new(), 0)).unwrap();
        let log = mazu_log::CheckpointSigner::new("example.org/log", &[3; 32]).unwrap();
        let note = log.sign(4, &[9; 32]);
        let none = |_: u64, _: u64| -> Result<Vec<Hash>, String> { Err("unused".into()) };
        assert_eq!(w.cosign(&note, 4, &none).await.unwrap(), note);
        // A size that is not the note's is a caller bug, refused.
        assert!(matches!(
            w.cosign(&note, 5, &none).await,
            Err(WitnessingError::InvalidNote { size: 5, .. })
        ));
        assert!(matches!(
            w.cosign("not a note", 4, &none).await,
            Err(WitnessingError::InvalidNote { .. })
        ));
    }

    fn assert_send<T: Send>(_: &T) {}
    fn assert_shared<T: Send + Sync + Clone>() {}

    /// The curator awaits `cosign` in spawned tasks and shares both types.
    #[test]
    fn usable_across_tasks() {
        assert_shared::<Witnessing>();
        assert_shared::<WitnessedLog>();
        let w = Witnessing::new(opts(Vec::new(), 0)).unwrap();
        let proof = |_: u64, _: u64| -> Result<Vec<Hash>, String> { Ok(Vec::new()) };
        let future = w.cosign("", 0, &proof);
        assert_send(&future);
        let log = WitnessedLog::new();
        assert_send(&log.wait_covering(0, Duration::ZERO));
    }

    #[test]
    fn sanitize_makes_one_printable_line() {
        assert_eq!(sanitize(b"FORK\ndetected\x1b[31m\n"), "FORK detected [31m");
    }
}
