//! Process wiring: load the configuration's files, open the log, bind, replay
//! in the background (ready afterwards), serve until SIGTERM/Ctrl-C, then shut
//! down gracefully.

use core::future::Future;
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::api::{AppState, app};
use crate::bootstrap::{self, BootError};
use crate::config::Config;
use crate::jwks::TrustSource;
use crate::metrics::Metrics;
use crate::service::{Curator, CuratorOptions, OpenError, SnapshotOptions, WitnessMode};
use crate::snapshot::SNAPSHOT_FILE;
use crate::store::{LogStore, StoreError};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "registrations.log";
/// Default name of the TLS key file inside the data directory.
pub const TLS_KEY_FILE: &str = "tls.key";

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A configured file is missing or invalid.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The log cannot be opened.
    #[error("cannot open the registration log: {0}")]
    Store(#[from] StoreError),
    /// The log cannot be replayed.
    #[error("cannot replay the registration log: {0}")]
    Replay(#[from] OpenError),
    /// The listen address cannot be bound or the address file written.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The checkpoint key is missing beside an existing log.
    #[error(
        "the checkpoint key {path} is missing, but the data directory already holds {evidence}: \
         every witness, auditor and filter pinned the old key, and a new one would tell them \
         another story. Restore the key from its backup; or, to start signing with a new key \
         (and give its verifier key to the witnesses, auditors and filters), pass \
         --create-checkpoint-key"
    )]
    MissingCheckpointKey {
        /// The key file.
        path: String,
        /// What the data directory holds.
        evidence: String,
    },
    /// A key file (checkpoint or TLS) cannot be read or created.
    #[error(transparent)]
    Key(#[from] mazu_service::files::KeyError),
    /// The TLS configuration cannot be built from the key.
    #[error("TLS: {0}")]
    Tls(#[from] mazu_service::tls::TlsError),
    /// The TLS key cannot be loaded or its pin file written.
    #[error(transparent)]
    ServerTls(#[from] mazu_service::tls::ServerTlsError),
    /// The witness configuration is unusable.
    #[error(transparent)]
    Witness(#[from] crate::witnessing::WitnessConfigError),
    /// A start-up task panicked.
    #[error("start-up task failed: {0}")]
    Task(String),
    /// The background check of the state snapshot's log prefix refuted
    /// the state the curator restored from it.
    #[error(
        "the state restored from the snapshot is not the log's ({0}); the snapshot was moved \
         aside: the next start replays the whole log"
    )]
    Refuted(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Task(e.to_string()))
}

/// The TLS identity (`None` with `--insecure-plain-http`): the key file is
/// read (or created at its default place), the pin logged and written.
fn load_tls(config: &Config) -> Result<Option<mazu_service::tls::ServerTls>, ServerError> {
    let crate::config::Transport::Tls { key, pin_file } = &config.transport else {
        tracing::warn!(
            "SERVING PLAIN HTTP (--insecure-plain-http): anyone on the path can read \
             registrations and answer in the curator's place. Never use this outside local demos."
        );
        return Ok(None);
    };
    let key_path = key
        .clone()
        .unwrap_or_else(|| config.data_dir.join(TLS_KEY_FILE));
    let loaded =
        mazu_service::tls::load_server_tls(&key_path, key.is_none(), None, pin_file.as_deref())?;
    let tls = loaded.tls;
    tracing::info!(
        path = %key_path.display(),
        generated = loaded.created,
        pin = %tls.pin(),
        "TLS key loaded: clients pin this (agents: --curator-tls-pin; Envoy: verify_certificate_spki)"
    );
    Ok(Some(tls))
}

/// Runs the curator until `shutdown` resolves (or start-up fails).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let boot_config = config.clone();
    let loaded = blocking(move || bootstrap::load_crs(&boot_config)).await??;
    if loaded.dev {
        tracing::warn!(
            path = %loaded.path.display(),
            generated = loaded.generated,
            "USING AN INSECURE DEVELOPMENT CRS: a single party knew its secret and can decrypt \
             everything and forge openings. Never use --dev-crs outside local demos."
        );
    }
    if let Some((transcript, contributions)) = &loaded.ceremony {
        tracing::info!(
            transcript = %transcript.display(),
            contributions,
            "ceremony transcript verified: the CRS is its final CRS"
        );
    }
    tracing::info!(
        capacity = loaded.crs.capacity(),
        block_size = loaded.crs.block_size(),
        digest = %hex::encode(loaded.crs.digest()),
        verify_ms = loaded.verify_time.as_millis() as u64,
        "CRS loaded and verified"
    );
    let (trust_source, trust) = TrustSource::load(&config).await?;
    tracing::info!(
        issuers = ?config
            .issuers
            .iter()
            .map(|i| format!("{} (namespaces {})", i.issuer, i.namespaces))
            .collect::<Vec<_>>(),
        jwks_refresh_secs = config
            .jwks_refresh
            .filter(|_| trust_source.has_urls())
            .map_or(0, |d| d.as_secs()),
        audience = %config.audience,
        trust_domain = %config.trust_domain,
        "token trust configured"
    );

    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let key_path = config
        .checkpoint_key
        .clone()
        .unwrap_or_else(|| config.data_dir.join(crate::checkpoint::CHECKPOINT_KEY_FILE));
    // Generated only at its default place in the data directory, atomically
    // and never over an existing key, and only in a data directory that
    // holds no log yet (or on --create-checkpoint-key); a key file named
    // with --checkpoint-key must exist.
    let may_create = config.checkpoint_key.is_none();
    if may_create && !key_path.exists() && !config.create_checkpoint_key {
        let held = crate::recovery::held_state(&config.data_dir);
        if !held.is_empty() {
            return Err(ServerError::MissingCheckpointKey {
                path: key_path.display().to_string(),
                evidence: held.join(", "),
            });
        }
    }
    let mazu_service::files::LoadedKey {
        secret: checkpoint_key,
        created: generated,
        ..
    } = mazu_service::files::load_or_create_key(&key_path, may_create)?;
    if generated && config.create_checkpoint_key {
        tracing::warn!(
            path = %key_path.display(),
            "created a NEW checkpoint key beside an existing log (--create-checkpoint-key): \
             give its verifier key to every witness, auditor and filter"
        );
    }
    tracing::info!(
        path = %key_path.display(),
        generated,
        "checkpoint signing key loaded (it signs log checkpoints only and grants no identity power)"
    );
    // The log is opened under what the data directory proves about it
    // independently of its frames (the acknowledged checkpoint, checked
    // with the checkpoint key, and the snapshot): see crate::recovery.
    let digest = loaded.crs.digest();
    let origin = config
        .checkpoint_origin
        .clone()
        .unwrap_or_else(|| crate::checkpoint::default_origin(&digest));
    let verifier = mazu_log::checkpoint::CheckpointSigner::new(&origin, &checkpoint_key)
        .map_err(|e| ServerError::Replay(OpenError::Transparency(e.into())))?
        .verifier();
    let data_dir = config.data_dir.clone();
    let (store, report, evidence, stale) = blocking(move || {
        let stale = crate::recovery::remove_stale_temp_files(&data_dir)?;
        let (store, report, evidence) = crate::recovery::open_log(&data_dir, digest, &verifier)?;
        Ok::<_, StoreError>((store, report, evidence, stale))
    })
    .await??;
    for path in stale {
        tracing::warn!(
            path = %path.display(),
            "removed a temporary file left by an interrupted atomic write"
        );
    }
    if report.discarded_bytes > 0 {
        tracing::warn!(
            discarded_bytes = report.discarded_bytes,
            reason = report.discarded_reason.unwrap_or(""),
            acknowledged_entries = evidence.entries(),
            "discarded an incomplete last frame of the registration log, past every \
             acknowledged entry (an interrupted, never-acknowledged write)"
        );
    }
    if let Some(reason) = &report.layout_refused {
        tracing::warn!(
            reason = %reason,
            "the state snapshot's frame index was not used; every frame of the log was scanned"
        );
    }
    if evidence.acknowledged.is_none() && report.entries > 0 {
        tracing::warn!(
            path = %config.data_dir.join(crate::recovery::ACKNOWLEDGED_FILE).display(),
            entries = report.entries,
            snapshot_entries = evidence.snapshot_entries.unwrap_or(0),
            "no acknowledged checkpoint: the log cannot be checked for lost acknowledged \
             entries beyond what the snapshot covers (a data directory from an older version, \
             or the file was deleted); it is written again with the next checkpoint"
        );
    }
    tracing::info!(
        path = %store.path().display(),
        entries = report.entries,
        acknowledged_entries = evidence.entries(),
        created = report.created,
        scan_ms = report.scan_time.as_millis() as u64,
        unscanned_prefix = report.unverified_prefix,
        "registration log opened"
    );
    let acknowledged_root = evidence.acknowledged.as_ref().map(|c| (c.size, c.root));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Io {
            what: format!("cannot listen on {}", config.listen),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServerError::Io {
        what: "cannot read the bound address".into(),
        source,
    })?;
    let tls = load_tls(&config)?;
    tracing::info!(addr = %local, tls = tls.is_some(), "listening");
    if let Some(path) = &config.addr_file {
        bootstrap::write_atomic(path, local.to_string().as_bytes()).map_err(|source| {
            ServerError::Io {
                what: format!("cannot write the address file {}", path.display()),
                source,
            }
        })?;
    }

    let witness = match &config.witness {
        None => {
            tracing::warn!(
                "RUNNING WITHOUT WITNESSES (--insecure-no-witness): checkpoints are signed by \
                 this curator alone, so nothing stops it from showing different logs to \
                 different parties. Never use this outside local demos."
            );
            WitnessMode::Insecure
        }
        Some(w) => {
            let witnessing =
                crate::witnessing::Witnessing::new(crate::witnessing::WitnessOptions {
                    endpoints: w.endpoints.clone(),
                    quorum: w.quorum,
                    request_timeout: w.timeout,
                })?;
            let plain: Vec<&str> = w
                .endpoints
                .iter()
                .filter(|e| e.is_plain_http())
                .map(|e| e.url.as_str())
                .collect();
            if !plain.is_empty() {
                tracing::warn!(
                    witnesses = ?plain,
                    "REACHING WITNESSES OVER PLAIN HTTP (--insecure-plain-http-witness): anyone \
                     on the path can answer in their place and withhold cosignatures. Never use \
                     this outside local demos."
                );
            }
            tracing::info!(
                witnesses = ?w.endpoints.iter().map(|e| format!("{} ({}{})", e.url, e.verifier.name(), e.tls_pin.map(|p| format!(", tls-pin {p}")).unwrap_or_default())).collect::<Vec<_>>(),
                quorum = w.quorum,
                refresh_secs = w.refresh.as_secs(),
                timeout_ms = u64::try_from(w.timeout.as_millis()).unwrap_or(u64::MAX),
                "witnesses configured"
            );
            WitnessMode::Witnesses {
                witnessing,
                refresh: w.refresh,
                wait: w.timeout.saturating_mul(2),
            }
        }
    };
    let metrics = Arc::new(Metrics::new());
    let connection_stats = metrics.connections.clone();
    let state = AppState::new(metrics.clone(), config.limits.clone(), loaded.dev);
    let options = CuratorOptions {
        reservation_ttl: config.reservation_ttl,
        max_pending_registrations: config.limits.max_pending_registrations,
        verify_threads: config.limits.verify_threads,
        dev_crs: loaded.dev,
        snapshot: config.snapshot_every.map(|every| SnapshotOptions {
            path: config.data_dir.join(SNAPSHOT_FILE),
            every,
        }),
        checkpoint_key: Some(checkpoint_key),
        checkpoint_origin: config.checkpoint_origin.clone(),
        witness,
        acknowledged: Some(config.data_dir.join(crate::recovery::ACKNOWLEDGED_FILE)),
        records_dir: Some(config.data_dir.clone()),
        lifecycle: Some(config.lifecycle),
        namespace_quota: config.namespace_quota,
        max_token_lifetime: config.max_token_lifetime,
        acknowledged_root,
    };
    let scan_time = report.scan_time;
    if let Some(interval) = config.jwks_refresh
        && trust_source.has_urls()
    {
        tokio::spawn(crate::jwks::refresh_loop(
            trust_source,
            interval,
            state.clone(),
        ));
    }

    // Replay in the background: /healthz answers meanwhile, /readyz says 503.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<ServerError>(2);
    let replay_state = state.clone();
    let crs = loaded.crs;
    let store: Arc<dyn LogStore> = Arc::new(store);
    let audience = config.audience.clone();
    let unwitnessed = config.witness.is_none();
    let runtime = tokio::runtime::Handle::current();
    let replay = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        match Curator::open(crs, trust, store, metrics, &options) {
            Ok((curator, report)) => {
                // A refuted snapshot stops the server (exit status 1): the
                // next start replays the whole log (the snapshot was moved
                // aside), rather than serving on, unready, until someone
                // notices. Nothing is served from the refuted state
                // meanwhile.
                let mut check = curator.prefix_check();
                let refuted_tx = fatal_tx.clone();
                runtime.spawn(async move {
                    if let Ok(state) = check.wait_for(|s| s.is_done()).await
                        && let crate::prefix_check::PrefixCheck::Refuted(what) = &*state
                    {
                        let _ = refuted_tx.try_send(ServerError::Refuted(what.clone()));
                    }
                });
                if unwitnessed {
                    // Without witnesses the publisher thread signs the first
                    // checkpoint at once: ready means it is served, so that
                    // nobody sees `/readyz` 200 and then a 503 checkpoint.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    // (A refuted state signs none: the server stops instead.)
                    while curator.checkpoint().is_err()
                        && curator.refuted().is_none()
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                tracing::info!(
                    origin = curator.transparency().origin(),
                    verifier_key = curator.transparency().verifier_key(),
                    tree_size = curator.transparency().size(),
                    "checkpoints signed"
                );
                log_audience_advice(&audience, curator.transparency().origin());
                tracing::info!(
                    entries = report.entries,
                    scan_ms = scan_time.as_millis() as u64,
                    snapshot_entries = report.snapshot_entries,
                    snapshot_load_ms = report.snapshot_load.as_millis() as u64,
                    replayed_entries = report.replayed_entries,
                    replay_ms = report.replay.as_millis() as u64,
                    total_ms = (started.elapsed() + scan_time).as_millis() as u64,
                    "state rebuilt from the log; ready"
                );
                replay_state.set_ready(Arc::new(curator));
            }
            Err(e) => {
                tracing::error!(error = %e, "log replay failed");
                let _ = fatal_tx.try_send(ServerError::Replay(e));
            }
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut fatal = None;
    let stop = {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }
    };
    let router = app(state.clone());
    let connection_limits = config.limits.connections;
    let mut server = mazu_service::http::serve_tcp(
        listener,
        tls.as_ref(),
        router,
        connection_limits,
        connection_stats,
        stop,
    )
    .map_err(|source| ServerError::Io {
        what: "cannot start the TLS listener".into(),
        source,
    })?;
    let grace = config.shutdown_grace;
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut server => {}
        () = &mut shutdown => {
            let _ = stop_tx.send(true);
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time");
            }
        }
        Some(e) = fatal_rx.recv() => {
            let _ = stop_tx.send(true);
            fatal = Some(e);
            let _ = tokio::time::timeout(grace, &mut server).await;
        }
    }
    drop(replay);
    if let Some(e) = fatal {
        return Err(e);
    }
    // Clean shutdown: leave a snapshot of the final state, so the next start
    // replays nothing. Best effort: the log is already durable.
    if let Ok(curator) = state.curator() {
        let curator = curator.clone();
        if let Ok(Err(e)) = blocking(move || curator.snapshot_now()).await {
            tracing::warn!(error = %e, "writing the shutdown snapshot failed");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Compares the configured audience with the one derived from this log's
/// origin (`mazu:<origin>`, the recommended deployment-unique value): an
/// audience that names another log is most likely copied from another
/// deployment, and tokens for one would then be accepted by the other.
fn log_audience_advice(audience: &str, origin: &str) {
    let derived = mazu_identity::trust::audience_for_log(origin);
    if audience == derived {
        return;
    }
    if audience.starts_with(mazu_identity::trust::AUDIENCE_PREFIX) {
        tracing::warn!(
            audience,
            recommended = %derived,
            "the audience names a log origin that is not this curator's; make sure it is \
             unique to this deployment (see docs/curator.md, --audience)"
        );
    } else {
        tracing::info!(
            audience,
            recommended = %derived,
            "the audience is not the one derived from this log's origin; it must be unique \
             to this deployment"
        );
    }
}
