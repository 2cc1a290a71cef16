//! The curator's HTTP API as the agent uses it (see `docs/curator.md`).
//! Every answer is decoded into typed values; every failure becomes a
//! [`CuratorError`] that says whether retrying can help.

use core::time::Duration;

use base64ct::{Base64, Encoding};
use mazu_curator::api::views::{
    BindingRequest, ConsistencyProofJson, InclusionProofJson, LogJson, LoggedJson, RevealRequest,
    SlotRequest,
};
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_log::merkle::Hash;
use mazu_log::record::{LeafRecord, decode_records};
use mazu_rbe::{Crs, MembershipProof, Opening, PublicParams, Registration};
use mazu_service::tls::ClientTransport;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::CuratorError;

/// A curator client (cheap to clone).
#[derive(Clone, Debug)]
pub struct CuratorClient {
    base: String,
    http: reqwest::Client,
}

/// `POST /v1/slots` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct SlotReservation {
    /// The reserved slot.
    pub slot: u32,
    /// Until when (Unix seconds).
    pub expires_at: u64,
    /// The registry version at the time.
    pub version: u64,
}

/// `GET /v1/openings/{slot}` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct OpeningAnswer {
    /// The version the opening belongs to.
    pub version: u64,
    /// Whether the slot is registered.
    pub registered: bool,
    /// The opening.
    pub opening: Opening,
}

/// `GET /v1/proofs/{id}` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct ProofAnswer {
    /// The version the proof belongs to.
    pub version: u64,
    /// The slot of the id.
    pub slot: u32,
    /// The membership proof (registered key + opening).
    pub proof: MembershipProof,
}

/// An inclusion proof as served (`GET /v1/proofs/inclusion`), decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf hash the curator says is at the index.
    pub leaf_hash: Hash,
    /// The audit path, leaf to root.
    pub proof: Vec<Hash>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiErrorInner,
}

#[derive(Deserialize)]
struct ApiErrorInner {
    code: String,
    message: String,
}

/// One change of the RBE state from the log, with its position.
#[derive(Clone, Debug)]
pub struct LoggedRegistration {
    /// Log index.
    pub index: u64,
    /// The RBE registration bound, or (`ended`) the one whose binding a
    /// release or revocation ended.
    pub registration: Registration,
    /// Whether the entry ends the binding (its key leaves the block)
    /// rather than binding it.
    pub ended: bool,
}

/// The largest answer body read from the curator: a page of records
/// (16,384 × 114 bytes), a page of log entries or the CRS at the largest
/// capacity fit well below it. A longer body is refused before it is read
/// whole, so a misbehaving curator cannot exhaust the agent's memory.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The largest text answer (a checkpoint note with its cosignatures, a
/// verifier key) and the largest error body read.
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// Reads `response`'s body, refusing it (without reading further) once it is
/// longer than `limit`.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, CuratorError> {
    let too_long = |len: u64| CuratorError::Malformed {
        what: what.to_owned(),
        reason: format!("the answer is longer than {limit} bytes ({len} or more); not read"),
    };
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(too_long(len));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CuratorError::Unreachable {
            url: response.url().to_string(),
            reason: error_chain(&e),
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_long((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl CuratorClient {
    /// A client for the curator at `base` (e.g. `https://127.0.0.1:7878`),
    /// reached over `transport` (TLS to a pinned key, or plain HTTP).
    pub fn new(base: &str, transport: &ClientTransport) -> Result<Self, CuratorError> {
        transport.check_url(base)?;
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Registrations at large capacities take a few hundred ms and
            // may queue; the curator's own timeout is 30 s by default.
            .timeout(Duration::from_secs(45))
            .tcp_nodelay(true);
        let http =
            transport
                .configure(builder)?
                .build()
                .map_err(|e| CuratorError::Unreachable {
                    url: base.to_owned(),
                    reason: format!("building the HTTP client: {e}"),
                })?;
        Ok(CuratorClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CuratorError> {
        let response = request
            .send()
            .await
            .map_err(|e| CuratorError::Unreachable {
                url: format!(
                    "{}{}",
                    self.base,
                    what.split_once(' ').map_or(what, |x| x.1)
                ),
                reason: error_chain(&e),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = read_bounded(response, MAX_TEXT_BYTES, what)
            .await
            .unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ApiErrorBody>(&body) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                "http_error".to_owned(),
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            ),
        };
        Err(CuratorError::Refused {
            what: what.to_owned(),
            status,
            code,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CuratorError> {
        let response = self.send(what, request).await?;
        let bytes = read_bounded(response, MAX_RESPONSE_BYTES, what).await?;
        serde_json::from_slice(&bytes).map_err(|e| CuratorError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn bytes(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CuratorError> {
        let response = self.send(what, request).await?;
        read_bounded(response, MAX_RESPONSE_BYTES, what).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/crs` (canonical bytes), decoded and verified (`Crs::verify`),
    /// and checked against `expected_digest` when given.
    pub async fn crs(&self, expected_digest: Option<&[u8; 32]>) -> Result<Crs, CuratorError> {
        let what = "GET /v1/crs";
        let bytes = self.bytes(what, self.http.get(self.url("/v1/crs"))).await?;
        let crs = Crs::from_bytes(&bytes).map_err(|e| CuratorError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(expected) = expected_digest
            && crs.digest() != *expected
        {
            return Err(CuratorError::CrsMismatch {
                served: hex::encode(crs.digest()),
                expected: hex::encode(expected),
            });
        }
        // Verification is pairing work: keep it off the async executor.
        let crs = tokio::task::spawn_blocking(move || crs.verify().map(|()| crs))
            .await
            .map_err(|e| CuratorError::Malformed {
                what: what.to_owned(),
                reason: format!("verification task failed: {e}"),
            })?
            .map_err(|e| CuratorError::Malformed {
                what: what.to_owned(),
                reason: format!("the CRS does not verify: {e}"),
            })?;
        Ok(crs)
    }

    /// `GET /v1/params?format=binary`.
    pub async fn params(&self) -> Result<PublicParams, CuratorError> {
        let what = "GET /v1/params";
        let bytes = self
            .bytes(what, self.http.get(self.url("/v1/params?format=binary")))
            .await?;
        PublicParams::from_bytes(&bytes).map_err(|e| CuratorError::Malformed {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    /// `POST /v1/slots {id}`: reserves a slot for the workload id (no
    /// token).
    pub async fn reserve_slot(&self, id_hex: &str) -> Result<SlotReservation, CuratorError> {
        let body = SlotRequest {
            id: id_hex.to_owned(),
        };
        self.json(
            "POST /v1/slots",
            self.http.post(self.url("/v1/slots")).json(&body),
        )
        .await
    }

    /// `POST /v1/bindings`: binds the id to the TLS and RBE keys (no
    /// token). The answer names the entry and a witnessed checkpoint that
    /// covers it (not verified here: see [`crate::follow`]).
    pub async fn bind(&self, request: &BindingRequest) -> Result<LoggedJson, CuratorError> {
        self.json(
            "POST /v1/bindings",
            self.http.post(self.url("/v1/bindings")).json(request),
        )
        .await
    }

    /// `POST /v1/bindings/{id}/reveal {token}`: reveals the token of a
    /// binding already in the witnessed log.
    pub async fn reveal(&self, id_hex: &str, token: &str) -> Result<LoggedJson, CuratorError> {
        let path = format!("/v1/bindings/{id_hex}/reveal");
        let body = RevealRequest {
            token: token.to_owned(),
        };
        self.json(
            "POST /v1/bindings/{id}/reveal",
            self.http.post(self.url(&path)).json(&body),
        )
        .await
    }

    /// `POST /v1/bindings/{id}/release` or `.../revoke`: ends the binding
    /// of `id_hex` in `slot` with a signature by its TLS key `tls_key`
    /// (`mazu_curator::holder`).
    pub async fn end_binding(
        &self,
        id_hex: &str,
        slot: u32,
        tls_key: &p256::ecdsa::SigningKey,
        action: mazu_curator::holder::HolderAction,
    ) -> Result<LoggedJson, CuratorError> {
        let id = parse_hash(id_hex).ok_or_else(|| CuratorError::Malformed {
            what: "binding id".to_owned(),
            reason: format!("{id_hex} is not 64 hexadecimal digits"),
        })?;
        let body = mazu_curator::client::holder_request(tls_key, action, &id, slot);
        let path = format!("/v1/bindings/{id_hex}/{}", action.as_str());
        let what = match action {
            mazu_curator::holder::HolderAction::Release => "POST /v1/bindings/{id}/release",
            mazu_curator::holder::HolderAction::Revoke => "POST /v1/bindings/{id}/revoke",
        };
        self.json(what, self.http.post(self.url(&path)).json(&body))
            .await
    }

    /// `GET /v1/log/records?start=S&end=E`: the leaf records `start..end`,
    /// fetched page by page until `end` is reached. Fails if the curator
    /// serves fewer (its log is shorter than a checkpoint it signed), more,
    /// or records that do not decode.
    pub async fn records(&self, start: u64, end: u64) -> Result<Vec<LeafRecord>, CuratorError> {
        let what = "GET /v1/log/records";
        let malformed = |reason: String| CuratorError::Malformed {
            what: what.to_owned(),
            reason,
        };
        let mut out = Vec::new();
        let mut next = start;
        while next < end {
            let path = format!("/v1/log/records?start={next}&end={end}");
            let bytes = self.bytes(what, self.http.get(self.url(&path))).await?;
            let page = decode_records(&bytes).map_err(|e| malformed(e.to_string()))?;
            let n = page.len() as u64;
            if n == 0 {
                return Err(malformed(format!(
                    "no records from {next} although the log was said to reach {end}"
                )));
            }
            if n > end - next {
                return Err(malformed(format!(
                    "{n} records from {next} where at most {} were asked for",
                    end - next
                )));
            }
            out.extend(page);
            next += n;
        }
        Ok(out)
    }

    /// `GET /v1/log/state?size=N`: the follower state after the log's first
    /// `size` records, as served (the caller checks it against a witnessed
    /// checkpoint's state line).
    pub async fn follower_state(&self, size: u64) -> Result<Vec<u8>, CuratorError> {
        let path = format!("/v1/log/state?size={size}");
        self.bytes("GET /v1/log/state", self.http.get(self.url(&path)))
            .await
    }

    /// `GET /v1/openings/{slot}`.
    pub async fn opening(&self, slot: u32) -> Result<OpeningAnswer, CuratorError> {
        let path = format!("/v1/openings/{slot}");
        self.json(&format!("GET {path}"), self.http.get(self.url(&path)))
            .await
    }

    /// `GET /v1/proofs/{id}`; `None` when the curator does not know the id.
    pub async fn proof(&self, id_hex: &str) -> Result<Option<ProofAnswer>, CuratorError> {
        let path = format!("/v1/proofs/{id_hex}");
        match self
            .json(&format!("GET {path}"), self.http.get(self.url(&path)))
            .await
        {
            Ok(answer) => Ok(Some(answer)),
            Err(CuratorError::Refused { code, .. }) if code == "unknown_id" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every RBE registration (bind entry) in the log from index `start` on
    /// (paged), decoded.
    /// Returns them and the log size seen by the last page.
    pub async fn registrations_since(
        &self,
        start: u64,
    ) -> Result<(Vec<LoggedRegistration>, u64), CuratorError> {
        self.registrations_between(start, u64::MAX, &|_| None).await
    }

    /// The RBE changes at log indexes `start..end` (fewer if the log is
    /// shorter), decoded: every bind, and every release or revocation with
    /// the registration it ends (so that openings subtract it again). The
    /// ended registration is the id's bind in this range, else the bind at
    /// `bind_index(id)` (the caller's view of the log), fetched; an end
    /// whose bind neither gives is left out. Returns them and the position
    /// reached: the log size the curator reported, or `end` if that came
    /// first (never less than `start`).
    pub async fn registrations_between(
        &self,
        start: u64,
        end: u64,
        bind_index: &(dyn Fn(&Hash) -> Option<u64> + Sync),
    ) -> Result<(Vec<LoggedRegistration>, u64), CuratorError> {
        let what = "GET /v1/log";
        let malformed = |reason: String| CuratorError::Malformed {
            what: what.to_owned(),
            reason,
        };
        let mut out: Vec<LoggedRegistration> = Vec::new();
        // The first bind of each id in the range, as a position in `out`.
        let mut binds: std::collections::HashMap<Hash, usize> = Default::default();
        let mut next = start;
        loop {
            if next >= end {
                return Ok((out, next));
            }
            let limit = (end - next).min(100);
            let (size, entries) = self.log_entries(next, limit).await?;
            for (index, bytes) in &entries {
                let entry = LogEntry::from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
                // Reveals carry no registration and change no RBE state.
                let registration = match &entry.body {
                    EntryBody::Bind { registration, .. } => {
                        let registration = Registration::from_bytes(registration)
                            .map_err(|e| malformed(e.to_string()))?;
                        binds.entry(entry.id).or_insert(out.len());
                        out.push(LoggedRegistration {
                            index: *index,
                            registration,
                            ended: false,
                        });
                        continue;
                    }
                    EntryBody::Reveal { .. } => continue,
                    EntryBody::Release { .. } | EntryBody::Revoke { .. } => {
                        match binds.get(&entry.id) {
                            Some(&at) => Some(out[at].registration.clone()),
                            None => match bind_index(&entry.id) {
                                Some(at) if at < *index => {
                                    Some(self.bound_registration(at, &entry.id).await?)
                                }
                                _ => None,
                            },
                        }
                    }
                };
                if let Some(registration) = registration {
                    out.push(LoggedRegistration {
                        index: *index,
                        registration,
                        ended: true,
                    });
                }
            }
            next += entries.len() as u64;
            if entries.is_empty() || next >= size {
                return Ok((out, size.max(next)));
            }
        }
    }

    /// The RBE registration of the bind entry at log index `index`, which
    /// must bind `id`.
    async fn bound_registration(
        &self,
        index: u64,
        id: &Hash,
    ) -> Result<Registration, CuratorError> {
        let malformed = |reason: String| CuratorError::Malformed {
            what: "GET /v1/log".to_owned(),
            reason,
        };
        let (_, entries) = self.log_entries(index, 1).await?;
        let bytes = entries
            .first()
            .map(|(_, bytes)| bytes)
            .ok_or_else(|| malformed(format!("no entry at index {index}")))?;
        let entry = LogEntry::from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
        match entry.body {
            EntryBody::Bind { registration, .. } if entry.id == *id => {
                Registration::from_bytes(&registration).map_err(|e| malformed(e.to_string()))
            }
            _ => Err(malformed(format!(
                "entry {index} is not the bind of the released id"
            ))),
        }
    }

    /// Raw log entries from index `start` (at most `limit`, fewer when the
    /// curator caps the page): the log size and `(index, entry bytes)`.
    pub async fn log_entries(
        &self,
        start: u64,
        limit: u64,
    ) -> Result<(u64, Vec<(u64, Vec<u8>)>), CuratorError> {
        let path = format!("/v1/log?start={start}&limit={}", limit.clamp(1, 1000));
        let what = "GET /v1/log";
        let page: LogJson = self.json(what, self.http.get(self.url(&path))).await?;
        let malformed = |reason: String| CuratorError::Malformed {
            what: what.to_owned(),
            reason,
        };
        let mut out = Vec::with_capacity(page.entries.len());
        for (i, item) in page.entries.iter().enumerate() {
            let expected = start + i as u64;
            if item.index != expected {
                return Err(malformed(format!(
                    "entry index {} where {expected} was expected",
                    item.index
                )));
            }
            let bytes = Base64::decode_vec(&item.entry)
                .map_err(|_| malformed("entry is not base64".to_owned()))?;
            out.push((item.index, bytes));
        }
        Ok((page.size, out))
    }

    /// `GET /v1/checkpoint`: the signed checkpoint note, as served (not
    /// verified here: see [`crate::transparency`]).
    pub async fn checkpoint(&self) -> Result<String, CuratorError> {
        self.text("GET /v1/checkpoint", "/v1/checkpoint").await
    }

    /// `GET /v1/checkpoint/key`: the checkpoint verifier key the curator
    /// serves (one line, trailing newline removed).
    pub async fn checkpoint_key(&self) -> Result<String, CuratorError> {
        let key = self
            .text("GET /v1/checkpoint/key", "/v1/checkpoint/key")
            .await?;
        Ok(key.trim_end().to_owned())
    }

    /// `GET /v1/proofs/inclusion?index=I&size=N`, hashes decoded.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, CuratorError> {
        let what = "GET /v1/proofs/inclusion";
        let path = format!("/v1/proofs/inclusion?index={index}&size={size}");
        let answer: InclusionProofJson = self.json(what, self.http.get(self.url(&path))).await?;
        let malformed = |reason: &str| CuratorError::Malformed {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        if answer.index != index || answer.size != size {
            return Err(malformed("the proof is for another index or size"));
        }
        Ok(InclusionProof {
            leaf_hash: parse_hash(&answer.leaf_hash)
                .ok_or_else(|| malformed("leaf hash is not 32 hex bytes"))?,
            proof: parse_hashes(&answer.proof)
                .ok_or_else(|| malformed("a proof hash is not 32 hex bytes"))?,
        })
    }

    /// `GET /v1/proofs/consistency?from=M&to=N`, hashes decoded.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, CuratorError> {
        let what = "GET /v1/proofs/consistency";
        let path = format!("/v1/proofs/consistency?from={from}&to={to}");
        let answer: ConsistencyProofJson = self.json(what, self.http.get(self.url(&path))).await?;
        let malformed = |reason: &str| CuratorError::Malformed {
            what: what.to_owned(),
            reason: reason.to_owned(),
        };
        if answer.from != from || answer.to != to {
            return Err(malformed("the proof is for other sizes"));
        }
        parse_hashes(&answer.proof).ok_or_else(|| malformed("a proof hash is not 32 hex bytes"))
    }

    async fn text(&self, what: &str, path: &str) -> Result<String, CuratorError> {
        let response = self.send(what, self.http.get(self.url(path))).await?;
        let bytes = read_bounded(response, MAX_TEXT_BYTES, what).await?;
        String::from_utf8(bytes).map_err(|_| CuratorError::Malformed {
            what: what.to_owned(),
            reason: "not UTF-8 text".to_owned(),
        })
    }
}

/// A 32-byte hash from lowercase or uppercase hex.
pub fn parse_hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}

fn parse_hashes(texts: &[String]) -> Option<Vec<Hash>> {
    texts.iter().map(|h| parse_hash(h)).collect()
}

/// reqwest errors hide the cause (connection refused, ...) in their source
/// chain; the log line should say it.
pub(crate) fn error_chain(e: &dyn core::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
