//! Where the token verification keys come from: each issuer's JWKS is a file
//! (read once at start-up) or an `http://` URL (fetched at start-up, then
//! every `--jwks-refresh-secs`).
//!
//! Start-up refuses to continue if any JWKS cannot be read, fetched or
//! parsed. A failed *refresh* (network error, bad status, oversized or
//! unparsable document) keeps the last good key set of every issuer and logs
//! a warning: a flaky JWKS endpoint must not stop registrations, and keys
//! only change by a successful fetch of a document that parses.
//!
//! Only `http://` is supported: the workspace's HTTP client is built without
//! a TLS stack. Point it at a trusted local hop (for example `kubectl proxy`
//! or a sidecar that fetches the API server's `/openid/v1/jwks`), or use a
//! file kept fresh by such a sidecar and restart on rotation.

use core::time::Duration;

use mazu_identity::TrustConfig;

use crate::api::AppState;
use crate::bootstrap::BootError;
use crate::config::{Config, JwksSource};
use mazu_identity::trust::NamespaceScope;

/// Largest JWKS document accepted (1 MiB; real ones are a few KB).
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// Timeout of one JWKS fetch (connect + whole response).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWKS URL could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection, timeout or protocol failure.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A non-2xx answer.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The document is larger than [`MAX_JWKS_BYTES`].
    #[error("document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
}

/// Why a refresh was not applied (the last good keys stay in use).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// A URL could not be fetched.
    #[error("fetching the JWKS of {issuer} from {url}: {source}")]
    Fetch {
        /// The issuer.
        issuer: String,
        /// The URL.
        url: String,
        /// Why.
        source: FetchError,
    },
    /// A fetched document does not parse (or the configuration is invalid).
    #[error("the fetched JWKS do not form a valid trust configuration: {0}")]
    Trust(#[from] mazu_identity::ConfigError),
}

/// The issuers' JWKS documents and how to rebuild the token policy from them.
#[derive(Debug)]
pub struct TrustSource {
    trust_domain: String,
    audience: String,
    clock_skew_secs: u64,
    /// (issuer, source, last good document).
    issuers: Vec<(String, JwksSource, Vec<u8>)>,
    /// Each issuer's namespace scope, in the order of `issuers`.
    scopes: Vec<NamespaceScope>,
    client: reqwest::Client,
}

impl TrustSource {
    /// Reads every JWKS file, fetches every JWKS URL and builds the token
    /// policy. Any failure is a start-up error naming the issuer and source.
    pub async fn load(config: &Config) -> Result<(Self, TrustConfig), BootError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| BootError::JwksClient(e.to_string()))?;
        let mut issuers = Vec::with_capacity(config.issuers.len());
        for spec in &config.issuers {
            let doc = match &spec.jwks {
                JwksSource::File(path) => std::fs::read(path).map_err(|source| BootError::Io {
                    what: "reading the JWKS file",
                    path: path.clone(),
                    source,
                })?,
                JwksSource::Url(url) => {
                    fetch(&client, url)
                        .await
                        .map_err(|source| BootError::JwksFetch {
                            issuer: spec.issuer.clone(),
                            url: url.clone(),
                            source,
                        })?
                }
            };
            issuers.push((spec.issuer.clone(), spec.jwks.clone(), doc));
        }
        let source = Self {
            trust_domain: config.trust_domain.clone(),
            audience: config.audience.clone(),
            clock_skew_secs: config.clock_skew_secs,
            issuers,
            scopes: config
                .issuers
                .iter()
                .map(|i| i.namespaces.clone())
                .collect(),
            client,
        };
        let trust = source.build(None)?;
        Ok((source, trust))
    }

    /// Whether any issuer's JWKS comes from a URL (only then is there
    /// anything to refresh).
    pub fn has_urls(&self) -> bool {
        self.issuers
            .iter()
            .any(|(_, s, _)| matches!(s, JwksSource::Url(_)))
    }

    /// The token policy from the current documents, with `replacement`
    /// (per issuer, `None` = keep) substituted.
    fn build(
        &self,
        replacement: Option<&[Option<Vec<u8>>]>,
    ) -> Result<TrustConfig, mazu_identity::ConfigError> {
        let mut builder = TrustConfig::builder(&self.trust_domain)
            .audience(&self.audience)
            .clock_skew_secs(self.clock_skew_secs);
        for (i, ((issuer, _, doc), scope)) in self.issuers.iter().zip(&self.scopes).enumerate() {
            let doc = replacement
                .and_then(|r| r.get(i))
                .and_then(Option::as_ref)
                .unwrap_or(doc);
            builder = builder.issuer(issuer, doc, scope.clone());
        }
        builder.build()
    }

    /// Fetches every URL again and builds the new policy. All-or-nothing: on
    /// any failure nothing changes (the last good documents stay).
    pub async fn refresh(&mut self) -> Result<TrustConfig, RefreshError> {
        let mut fresh: Vec<Option<Vec<u8>>> = Vec::with_capacity(self.issuers.len());
        for (issuer, source, _) in &self.issuers {
            match source {
                JwksSource::File(_) => fresh.push(None),
                JwksSource::Url(url) => {
                    let doc =
                        fetch(&self.client, url)
                            .await
                            .map_err(|source| RefreshError::Fetch {
                                issuer: issuer.clone(),
                                url: url.clone(),
                                source,
                            })?;
                    fresh.push(Some(doc));
                }
            }
        }
        let trust = self.build(Some(&fresh))?;
        for ((_, _, doc), new) in self.issuers.iter_mut().zip(fresh) {
            if let Some(new) = new {
                *doc = new;
            }
        }
        Ok(trust)
    }
}

/// GETs `url` and returns the body (2xx only, at most [`MAX_JWKS_BYTES`]).
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|l| l > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Refreshes the URL-sourced JWKS every `interval` for as long as the task
/// runs, installing each good key set in the curator once it is ready.
pub async fn refresh_loop(mut source: TrustSource, interval: Duration, state: AppState) {
    let mut pending: Option<TrustConfig> = None;
    loop {
        tokio::time::sleep(interval).await;
        match source.refresh().await {
            Ok(trust) => {
                tracing::debug!("JWKS refreshed");
                pending = Some(trust);
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good keys");
            }
        }
        // During the start-up replay there is no curator yet: keep the newest
        // key set until there is.
        if let Ok(curator) = state.curator()
            && let Some(trust) = pending.take()
        {
            curator.set_trust(trust);
        }
    }
}
