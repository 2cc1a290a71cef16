//! A minimal HTTP client for the curator's public endpoints.

use core::time::Duration;

use mazu_service::tls::ClientTransport;
use serde::de::DeserializeOwned;

use crate::AuditError;

/// Largest response accepted (a log page is at most 8 MiB of entries, in
/// base64 inside JSON).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The curator at one base URL.
#[derive(Debug, Clone)]
pub struct CuratorClient {
    base: String,
    http: reqwest::Client,
}

impl CuratorClient {
    /// A client for `base` (e.g. `https://127.0.0.1:7878`), reached over
    /// `transport`.
    pub fn new(base: &str, transport: &ClientTransport) -> Result<Self, AuditError> {
        transport
            .check_url(base)
            .map_err(|e| AuditError::Config(e.to_string()))?;
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(120));
        let http = transport
            .configure(builder)
            .map_err(|e| AuditError::Config(e.to_string()))?
            .build()
            .map_err(|e| AuditError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`: the body, if the status is 200.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, AuditError> {
        let err = |reason: String| AuditError::Http {
            path: path.to_owned(),
            reason,
        };
        let mut response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(err(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(err(format!("HTTP {status}: {text}")));
        }
        Ok(body)
    }

    /// `GET path` as UTF-8 text.
    pub async fn get_text(&self, path: &str) -> Result<String, AuditError> {
        let bytes = self.get_bytes(path).await?;
        String::from_utf8(bytes).map_err(|_| AuditError::Http {
            path: path.to_owned(),
            reason: "response is not UTF-8".into(),
        })
    }

    /// `GET path` as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, AuditError> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| AuditError::Http {
            path: path.to_owned(),
            reason: format!("unexpected JSON: {e}"),
        })
    }
}
