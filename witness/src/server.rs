//! Process wiring: load the key and the state, bind, write the address
//! file, serve until the shutdown future resolves (SIGTERM / Ctrl-C in the
//! binary), then let in-flight requests finish within the grace period.

use core::future::Future;
use core::net::SocketAddr;
use std::sync::Arc;

use mazu_log::cosignature::CosignatureSigner;
use tokio::net::TcpListener;

use crate::api::{AppState, Limits, app};
use crate::config::{Config, Transport};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::witness::Witness;
use mazu_service::files::{KeyError, load_or_create_key, write_atomic};
use mazu_service::tls::{ServerTls, ServerTlsError, SpkiPin};

/// Why the witness could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The key is missing or unreadable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The state directory cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS key cannot be loaded or its pin file written.
    #[error(transparent)]
    Tls(#[from] ServerTlsError),
    /// The witness name is invalid.
    #[error("invalid witness name: {0}")]
    Name(#[from] mazu_log::CosignatureError),
    /// Binding, the address file or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads (or, with `create_key`, creates) the witness key of `config` and
/// returns the signer.
pub fn load_signer(config: &Config) -> Result<CosignatureSigner, ServerError> {
    if config.create_key
        && let Some(dir) = config.key_file.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
    }
    let key = load_or_create_key(&config.key_file, config.create_key)?;
    let signer = CosignatureSigner::new(&config.name, &key.secret)?;
    if key.created {
        tracing::warn!(
            path = %config.key_file.display(),
            vkey = %signer.verifier().to_vkey(),
            "generated a NEW witness key (--create-key): this is a new witness identity; \
             give its verifier key to the logs' clients"
        );
    }
    if key.too_open {
        tracing::warn!(
            path = %config.key_file.display(),
            "the witness key file is readable by group or others; chmod 600 it"
        );
    }
    Ok(signer)
}

/// A witness bound to its address, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<ServerTls>,
    state: AppState,
    config: Config,
}

/// The TLS identity (`None` with `--insecure-plain-http`): the key file is
/// read (or created with --create-tls-key), the pin logged and written.
fn load_tls(config: &Config) -> Result<Option<ServerTls>, ServerError> {
    let Transport::Tls {
        key,
        create,
        pin_file,
    } = &config.transport
    else {
        tracing::warn!(
            "SERVING PLAIN HTTP (--insecure-plain-http): anyone on the path can answer in the \
             witness's place. Never use this outside local demos."
        );
        return Ok(None);
    };
    let loaded = mazu_service::tls::load_server_tls(
        key,
        *create,
        Some("--create-tls-key"),
        pin_file.as_deref(),
    )?;
    tracing::info!(
        path = %key.display(),
        generated = loaded.created,
        pin = %loaded.tls.pin(),
        "TLS key loaded: curators pin this (--witness https://...=VKEY;tls-pin=PIN)"
    );
    if loaded.too_open {
        tracing::warn!(
            path = %key.display(),
            "the TLS key file is readable by group or others; chmod 600 it"
        );
    }
    Ok(Some(loaded.tls))
}

impl Server {
    /// Loads the key and the state, binds `config.listen` and writes the
    /// address file.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let signer = load_signer(&config)?;
        let store = Store::open(&config.data_dir)?;
        let witness = Witness::open(signer, &config.logs, store)?;
        let metrics = Arc::new(Metrics::new());
        for (origin, size) in witness.sizes() {
            if let Some(size) = size {
                metrics.set_size(&origin, size);
            }
            tracing::info!(origin = %origin, size, "witnessing log");
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Io {
                    what: format!("cannot listen on {}", config.listen),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Io {
            what: "cannot read the bound address".into(),
            source,
        })?;
        let tls = load_tls(&config)?;
        tracing::info!(
            addr = %addr,
            tls = tls.is_some(),
            name = witness.name(),
            vkey = %witness.vkey(),
            data_dir = %config.data_dir.display(),
            "listening"
        );
        if let Some(path) = &config.addr_file {
            write_atomic(path, addr.to_string().as_bytes()).map_err(|source| ServerError::Io {
                what: format!("cannot write the address file {}", path.display()),
                source,
            })?;
        }
        Ok(Self {
            listener,
            addr,
            tls,
            state: AppState {
                witness: Arc::new(witness),
                metrics,
            },
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The witness's verifier key.
    pub fn vkey(&self) -> String {
        self.state.witness.vkey()
    }

    /// The pin of its TLS key (`None`: plain HTTP).
    pub fn tls_pin(&self) -> Option<SpkiPin> {
        self.tls.as_ref().map(ServerTls::pin)
    }

    /// Serves until `shutdown` resolves, then waits up to the grace period
    /// for in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let limits = Limits {
            request_timeout: self.config.request_timeout,
            max_concurrent_requests: self.config.max_concurrent_requests,
        };
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let connections = self.state.metrics.connections.clone();
        let router = app(self.state, limits);
        // Header-read (idle) timeout and per-client connection caps, as the
        // curator's: slow or idle clients cannot hold every socket.
        let connection_limits = mazu_service::http::ConnectionLimits::default();
        let mut server = mazu_service::http::serve_tcp(
            self.listener,
            self.tls.as_ref(),
            router,
            connection_limits,
            connections,
            stop,
        )
        .map_err(|source| ServerError::Io {
            what: "cannot start the TLS listener".into(),
            source,
        })?;
        tokio::pin!(shutdown);
        let grace = self.config.shutdown_grace;
        tokio::select! {
            () = &mut server => {}
            () = &mut shutdown => {
                let _ = stop_tx.send(true);
                if tokio::time::timeout(grace, &mut server).await.is_err() {
                    tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time");
                }
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Binds and serves `config` until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}
