//! The curator's HTTP API as the agent uses it (see `docs/curator.md`).
//! Every answer is decoded into typed values; every failure becomes a
//! [`CuratorError`] that says whether retrying can help.

use core::time::Duration;

use base64ct::{Base64, Encoding};
use mazu_curator::register::RegistrationRequest;
use mazu_rbe::{Crs, MembershipProof, Opening, PublicParams, Registration};
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

/// A registry entry as the curator reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct EntryInfo {
    /// Hex workload id.
    pub id: String,
    /// The slot.
    pub slot: u32,
    /// Hex SHA-256 of the registered TLS SPKI.
    pub spki_hash: String,
    /// The token's `exp`.
    pub token_expiry: u64,
    /// Whether revoked.
    #[serde(default)]
    pub revoked: bool,
}

/// `POST /v1/registrations` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct Registered {
    /// Log index of the entry.
    pub index: u64,
    /// Registry version after it.
    pub version: u64,
    /// The entry.
    pub entry: EntryInfo,
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

/// `GET /v1/registry?format=json` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct RegistryAnswer {
    /// Registry version.
    pub version: u64,
    /// Every entry.
    pub entries: Vec<EntryInfo>,
}

#[derive(Deserialize)]
struct LogPage {
    size: u64,
    entries: Vec<LogPageEntry>,
}

#[derive(Deserialize)]
struct LogPageEntry {
    index: u64,
    entry: String,
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

/// One registration from the log, with its position.
#[derive(Clone, Debug)]
pub struct LoggedRegistration {
    /// Log index.
    pub index: u64,
    /// The RBE registration.
    pub registration: Registration,
}

impl CuratorClient {
    /// A client for the curator at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Result<Self, CuratorError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Registrations at large capacities take a few hundred ms and
            // may queue; the curator's own timeout is 30 s by default.
            .timeout(Duration::from_secs(45))
            .tcp_nodelay(true)
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
        let body = response.bytes().await.unwrap_or_default();
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
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CuratorError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            })?;
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
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| CuratorError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            })
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

    /// `POST /v1/slots`.
    pub async fn reserve_slot(&self, token: &str) -> Result<SlotReservation, CuratorError> {
        let body = serde_json::json!({ "token": token });
        self.json(
            "POST /v1/slots",
            self.http.post(self.url("/v1/slots")).json(&body),
        )
        .await
    }

    /// `POST /v1/registrations`.
    pub async fn register(
        &self,
        request: &RegistrationRequest,
    ) -> Result<Registered, CuratorError> {
        self.json(
            "POST /v1/registrations",
            self.http.post(self.url("/v1/registrations")).json(request),
        )
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

    /// `GET /v1/registry?format=json`.
    pub async fn registry(&self) -> Result<RegistryAnswer, CuratorError> {
        self.json(
            "GET /v1/registry",
            self.http.get(self.url("/v1/registry?format=json")),
        )
        .await
    }

    /// Every registration in the log from index `start` on (paged), decoded.
    /// Returns them and the log size seen by the last page.
    pub async fn registrations_since(
        &self,
        start: u64,
    ) -> Result<(Vec<LoggedRegistration>, u64), CuratorError> {
        let mut out = Vec::new();
        let mut next = start;
        loop {
            let path = format!("/v1/log?start={next}&limit=100");
            let what = "GET /v1/log";
            let page: LogPage = self.json(what, self.http.get(self.url(&path))).await?;
            let malformed = |reason: String| CuratorError::Malformed {
                what: what.to_owned(),
                reason,
            };
            for item in &page.entries {
                if item.index != next {
                    return Err(malformed(format!(
                        "entry index {} where {next} was expected",
                        item.index
                    )));
                }
                let bytes = Base64::decode_vec(&item.entry)
                    .map_err(|_| malformed("entry is not base64".to_owned()))?;
                let entry = mazu_curator::entry::LogEntry::from_bytes(&bytes)
                    .map_err(|e| malformed(e.to_string()))?;
                let registration = Registration::from_bytes(&entry.registration)
                    .map_err(|e| malformed(e.to_string()))?;
                out.push(LoggedRegistration {
                    index: item.index,
                    registration,
                });
                next += 1;
            }
            if page.entries.is_empty() || next >= page.size {
                return Ok((out, page.size.max(next)));
            }
        }
    }
}

/// reqwest errors hide the cause (connection refused, ...) in their source
/// chain; the log line should say it.
fn error_chain(e: &dyn core::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
