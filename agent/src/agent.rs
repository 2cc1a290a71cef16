//! The `run` loop: token → registration → certificate → outputs, then keep
//! it that way (token rotation, certificate renewal, openings), riding out
//! curator outages.
//!
//! One task does everything in order, so there is never more than one
//! registration in flight and no lock is held across an `.await`. Each turn
//! of the loop:
//!
//! 1. re-reads the token file (content hash; see [`crate::token`]);
//! 2. if the served registration is not for that token, registers the token
//!    (the old certificate keeps being served until the new registration is
//!    accepted, then both outputs switch at once);
//! 3. confirms a registration restored from the state directory with the
//!    curator (`GET /v1/proofs/{id}` must show our RBE key);
//! 4. renews the certificate (same registered key) when it is within the
//!    rotation margin of `notAfter` and the token still allows a longer one;
//! 5. every `opening_refresh` interval, checks the curator's signed
//!    checkpoint (consistent with the one accepted before, still holding
//!    this agent's registration: [`crate::transparency`]), then brings the
//!    RBE opening up to date from the log, up to that checkpoint only.
//!
//! Curator calls that fail transiently (unreachable, 5xx, 408, 429) are
//! retried with capped exponential backoff and jitter; a refusal of a token
//! (4xx, e.g. `token_expired`) is logged and not retried until the token
//! file changes.

use core::time::Duration;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mazu_identity::TrustDomain;
use mazu_rbe::{Crs, OpeningHistory};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::credentials::{ServedCertificate, build_served};
use crate::curator::CuratorClient;
use crate::error::{CheckpointError, CredentialsError, CuratorError, Error, StateError};
use crate::files::CertDir;
use crate::openings;
use crate::sds::Secrets;
use crate::state::{Keys, RegistrationDir, RegistrationRecord, StateDir, Status};
use crate::token::{Token, TokenEvent, TokenWatcher};
use crate::transparency::{CheckResult, CheckpointTracker, Refusal};

/// Everything `run` needs (the binary builds it from flags).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Curator base URL.
    pub curator: String,
    /// The projected token file.
    pub token_file: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// SPIFFE trust domain.
    pub trust_domain: TrustDomain,
    /// Where to write `cert.pem` / `key.pem`, if anywhere.
    pub cert_dir: Option<PathBuf>,
    /// Where to serve SDS, if anywhere.
    pub sds_socket: Option<PathBuf>,
    /// Mode of the SDS socket file.
    pub sds_socket_mode: u32,
    /// Renew/rotate this long before the certificate or token expires.
    pub rotation_margin: Duration,
    /// After registering a rotated token, how long the previous (still
    /// valid) certificate keeps being served, so that every filter has
    /// polled the registry before peers see the new one.
    pub propagation_delay: Duration,
    /// How often the token file is read.
    pub poll_interval: Duration,
    /// How often the opening is brought up to date.
    pub opening_refresh: Duration,
    /// Requested certificate lifetime (the token's expiry bounds it).
    pub cert_lifetime: Duration,
    /// Pinned CRS digest.
    pub crs_digest: Option<[u8; 32]>,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Pinned checkpoint verifier key (C2SP verifier-key format); `None`:
    /// trust the key the curator serves the first time.
    pub checkpoint_key: Option<String>,
}

impl AgentConfig {
    /// A certificate for `token` with the registered TLS key, valid from
    /// `now` for the configured lifetime (bounded by the token's expiry).
    fn certificate(
        &self,
        token: &Token,
        keys: &Keys,
        now: u64,
    ) -> Result<ServedCertificate, CredentialsError> {
        build_served(
            token,
            &keys.tls,
            &self.trust_domain,
            now,
            self.cert_lifetime.as_secs(),
        )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The registration being served.
struct Active {
    token: Token,
    dir: RegistrationDir,
    record: RegistrationRecord,
    keys: Keys,
    served: ServedCertificate,
    history: Option<OpeningHistory>,
    /// Restored from disk and not yet confirmed with the curator.
    unconfirmed: bool,
}

/// Why a registration attempt ended without a registration.
enum Outcome {
    /// Try again after a backoff delay.
    Retry(Error),
    /// This token cannot be registered; wait for another.
    GiveUp(Error),
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        match &e {
            Error::Curator(c) if c.is_transient() => Outcome::Retry(e),
            // Not this token's fault: the curator (or its configuration) may
            // be fixed; keep retrying, at the backoff cap.
            Error::Curator(CuratorError::CrsMismatch { .. }) => Outcome::Retry(e),
            Error::Curator(_) => Outcome::GiveUp(e),
            // Local I/O may be a full disk that gets cleaned up.
            _ => Outcome::Retry(e),
        }
    }
}

impl From<CuratorError> for Outcome {
    fn from(e: CuratorError) -> Self {
        Outcome::from(Error::from(e))
    }
}

impl From<StateError> for Outcome {
    fn from(e: StateError) -> Self {
        Outcome::Retry(e.into())
    }
}

/// The agent.
pub struct Agent {
    config: AgentConfig,
    client: CuratorClient,
    state: StateDir,
    cert_dir: Option<CertDir>,
    secrets: watch::Sender<Arc<Secrets>>,
    crs: Option<Crs>,
    active: Option<Active>,
    /// Latest good token from the file.
    desired: Option<Token>,
    /// Id of a token the curator refused for good (not retried).
    refused: Option<[u8; 32]>,
    backoff: Backoff,
    next_curator_call: Instant,
    next_opening_refresh: Instant,
    warned_token_expiry: Option<[u8; 32]>,
    /// The curator's checkpoints: the accepted one, refusals.
    checkpoints: CheckpointTracker,
}

/// What the checkpoint check needs to know of the served registration.
struct OwnRef {
    id: String,
    log_index: Option<u64>,
    registered_version: u64,
    spki_der: Vec<u8>,
}

impl OwnRef {
    fn new(record: &RegistrationRecord, keys: &Keys) -> Self {
        OwnRef {
            id: record.id.clone(),
            log_index: record.log_index,
            registered_version: record.registered_version,
            spki_der: mazu_curator::client::spki_der(&keys.tls),
        }
    }

    /// Whether raw log entry `bytes` is this registration.
    fn is_entry(&self, bytes: &[u8]) -> bool {
        mazu_curator::entry::LogEntry::from_bytes(bytes).is_ok_and(|e| {
            hex::encode(Sha256::digest(&e.token)) == self.id && e.tls_spki == self.spki_der
        })
    }
}

impl Agent {
    /// Opens the state directory and output directory; restores a stored
    /// registration (served at once if its certificate can still be built).
    /// Fails only on configuration problems.
    pub fn new(config: AgentConfig) -> Result<(Agent, watch::Receiver<Arc<Secrets>>), Error> {
        let client = CuratorClient::new(&config.curator)?;
        let state = StateDir::open(&config.state_dir)?;
        let cert_dir = config.cert_dir.as_ref().map(CertDir::new).transpose()?;
        let root_ca_pem = state.root_ca_pem(unix_now())?;
        let (secrets, receiver) = watch::channel(Arc::new(Secrets {
            certificate: None,
            root_ca_pem,
        }));
        let crs = match state.crs_bytes()? {
            Some(bytes) => {
                let path = state.root().join("crs.bin");
                let crs = Crs::from_bytes(&bytes).map_err(|e| StateError::corrupt(&path, e))?;
                if let Some(pinned) = &config.crs_digest
                    && crs.digest() != *pinned
                {
                    return Err(Error::Config(format!(
                        "the state directory holds CRS {} but --crs-digest is {}; use a fresh --state-dir",
                        hex::encode(crs.digest()),
                        hex::encode(pinned)
                    )));
                }
                Some(crs)
            }
            None => None,
        };
        let checkpoints =
            CheckpointTracker::open(&config.state_dir, config.checkpoint_key.as_deref())?;
        let now = Instant::now();
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        let mut agent = Agent {
            config,
            client,
            state,
            cert_dir,
            secrets,
            crs,
            active: None,
            desired: None,
            refused: None,
            backoff,
            next_curator_call: now,
            next_opening_refresh: now,
            warned_token_expiry: None,
            checkpoints,
        };
        agent.restore();
        Ok((agent, receiver))
    }

    /// Reloads the registration named by `current`, if it is complete.
    fn restore(&mut self) {
        let restored = (|| -> Result<Option<Active>, Error> {
            let Some(id) = self.state.current()? else {
                return Ok(None);
            };
            let dir = self.state.registration(&id)?;
            let (Some(record), Some(keys), Some(jwt)) = (dir.record()?, dir.keys()?, dir.token()?)
            else {
                warn!(%id, "the stored registration is incomplete; registering again");
                return Ok(None);
            };
            let token = Token::parse(&dir.path().join("token"), jwt.as_bytes())?;
            let served = self.config.certificate(&token, &keys, unix_now())?;
            let history = dir.openings()?;
            Ok(Some(Active {
                token,
                dir,
                record,
                keys,
                served,
                history,
                unconfirmed: true,
            }))
        })();
        match restored {
            Ok(Some(active)) => {
                info!(
                    id = %active.record.id,
                    slot = active.record.slot,
                    not_after = active.served.issued.not_after,
                    "restored the stored registration; serving its certificate while confirming it with the curator"
                );
                self.active = Some(active);
                self.publish();
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot use the stored registration; registering again"),
        }
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl core::future::Future<Output = ()>) {
        let mut watcher = TokenWatcher::new(self.config.token_file.clone());
        tokio::pin!(shutdown);
        loop {
            self.poll_token(&mut watcher);
            self.step().await;
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down");
                    return;
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    fn poll_token(&mut self, watcher: &mut TokenWatcher) {
        match watcher.poll() {
            TokenEvent::Unchanged => {}
            TokenEvent::Changed(token) => {
                info!(
                    id = %token.id_hex(),
                    namespace = %token.namespace,
                    service_account = %token.service_account,
                    exp = token.expires_at,
                    "read the token file"
                );
                if self.refused.is_some_and(|id| id != token.id) {
                    self.refused = None;
                }
                // A new token is worth trying at once, whatever the backoff.
                if self.active.as_ref().is_none_or(|a| a.token.id != token.id) {
                    self.next_curator_call = Instant::now();
                    self.backoff.reset();
                }
                self.desired = Some(token);
            }
            TokenEvent::Unusable { error, first } => {
                if first {
                    warn!(error = %error, "waiting for a usable token file (the kubelet may not have written it yet)");
                }
            }
        }
    }

    /// One round of work: certificate renewal, then whatever needs the
    /// curator, if the backoff allows.
    async fn step(&mut self) {
        // Renewal needs no curator: it must happen even during an outage.
        self.renew_certificate();
        if Instant::now() < self.next_curator_call {
            return;
        }
        match self.curator_work().await {
            Ok(()) => self.backoff.reset(),
            Err(Outcome::Retry(e)) => {
                let delay = self.backoff.next_delay();
                warn!(
                    error = %e,
                    attempt = self.backoff.attempts(),
                    retry_in_ms = delay.as_millis() as u64,
                    "curator call failed; keeping the current certificate and retrying"
                );
                self.next_curator_call = Instant::now() + delay;
            }
            Err(Outcome::GiveUp(e)) => {
                error!(error = %e, "cannot register this token; waiting for the token file to change");
                if let Some(token) = &self.desired {
                    self.refused = Some(token.id);
                }
            }
        }
    }

    async fn curator_work(&mut self) -> Result<(), Outcome> {
        self.confirm_restored().await?;
        let wanted = self.desired.clone();
        if let Some(token) = wanted
            && self.active.as_ref().is_none_or(|a| a.token.id != token.id)
            && self.refused != Some(token.id)
        {
            let now = unix_now();
            if token.expires_at <= now {
                if self.refused != Some(token.id) {
                    error!(id = %token.id_hex(), exp = token.expires_at, "the token in the file has expired; waiting for the kubelet to replace it");
                }
                self.refused = Some(token.id);
            } else {
                self.register(&token).await?;
            }
        }
        if Instant::now() >= self.next_opening_refresh {
            let own = self
                .active
                .as_ref()
                .filter(|a| !a.unconfirmed)
                .map(|a| OwnRef::new(&a.record, &a.keys));
            self.check_checkpoint(own).await?;
            self.refresh_openings().await?;
            self.next_opening_refresh = Instant::now() + self.config.opening_refresh;
        }
        Ok(())
    }

    async fn crs(&mut self) -> Result<Crs, Outcome> {
        if let Some(crs) = &self.crs {
            return Ok(crs.clone());
        }
        let crs = self.client.crs(self.config.crs_digest.as_ref()).await?;
        self.state.store_crs(&crs.to_bytes())?;
        info!(digest = %hex::encode(crs.digest()), capacity = crs.capacity(), "fetched and verified the curator's CRS");
        self.crs = Some(crs.clone());
        Ok(crs)
    }

    /// A restored registration is served at once but checked with the
    /// curator: if the curator no longer has it (a new curator, a reset log),
    /// the token must be registered again.
    async fn confirm_restored(&mut self) -> Result<(), Outcome> {
        let Some(active) = self.active.as_ref().filter(|a| a.unconfirmed) else {
            return Ok(());
        };
        let id = active.record.id.clone();
        let crs = self.crs().await?;
        let proof = self.client.proof(&id).await?;
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        match proof {
            Some(p) if Some(p.proof.public_key) == active.keys.rbe.public_key(&crs) => {
                info!(%id, slot = p.slot, version = p.version, "the curator still holds the stored registration: not registering again");
                active.unconfirmed = false;
                self.write_status();
            }
            Some(_) => {
                error!(%id, "the curator holds this id with another RBE key; dropping the stored registration");
                self.forget_active();
            }
            None => {
                warn!(%id, "the curator does not know the stored registration (new or reset curator); registering again");
                self.forget_active();
            }
        }
        Ok(())
    }

    fn forget_active(&mut self) {
        if let Some(active) = self.active.take() {
            // The outputs keep the old certificate until a new registration
            // replaces it (Envoy needs *some* certificate to keep listening).
            if let Err(e) = active.dir.remove() {
                warn!(error = %e, "could not remove the stale registration");
            }
        }
    }

    /// Registers `token` (resuming a pending attempt if one is stored), then
    /// switches every output to the new certificate.
    async fn register(&mut self, token: &Token) -> Result<(), Outcome> {
        let crs = self.crs().await?;
        let id_hex = token.id_hex();
        let dir = self.state.registration(&id_hex)?;
        info!(id = %id_hex, "registering the token with the curator");

        // A complete registration of this token already on disk (e.g. the
        // token came back after a failed rotation): confirm and adopt it.
        if let (Some(record), Some(keys)) = (dir.record()?, dir.keys().map_err(Outcome::Retry)?)
            && let Some(p) = self.client.proof(&id_hex).await?
            && Some(p.proof.public_key) == keys.rbe.public_key(&crs)
        {
            return self.activate(token.clone(), dir, record, keys).await;
        }

        let attempt = match (dir.pending_request()?, dir.keys().map_err(Outcome::Retry)?) {
            (Some(request), Some(keys)) => {
                info!(id = %id_hex, slot = request.slot, "resending the stored pending registration");
                match self.client.register(&request).await {
                    Ok(answer) => Attempt::Registered(
                        answer.version,
                        answer.entry.slot,
                        Some(answer.index),
                        keys,
                    ),
                    Err(e) if e.code() == Some("already_registered") => {
                        Attempt::AlreadyRegistered(keys)
                    }
                    Err(e) if !e.is_transient() => {
                        info!(reason = %e, "the stored pending registration is no longer usable; building a new one");
                        self.fresh_attempt(token, &crs, &dir).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => self.fresh_attempt(token, &crs, &dir).await?,
        };
        let keys = match attempt {
            Attempt::Registered(version, slot, index, keys) => {
                let record = self.record_from(token, &keys, version, slot, index);
                return self.activate(token.clone(), dir, record, keys).await;
            }
            Attempt::AlreadyRegistered(keys) => keys,
        };
        // `already_registered`: our earlier request may have been accepted
        // without us hearing it. It is ours if the registered RBE key is.
        match self.client.proof(&id_hex).await? {
            Some(p) if Some(p.proof.public_key) == keys.rbe.public_key(&crs) => {
                info!(id = %id_hex, slot = p.slot, "found our earlier registration at the curator");
                let record = self.record_from(token, &keys, p.version, p.slot, None);
                self.activate(token.clone(), dir, record, keys).await
            }
            Some(_) => Err(Outcome::GiveUp(Error::Registration(format!(
                "id {id_hex} is registered with keys this agent does not hold"
            )))),
            None => Err(Outcome::Retry(Error::Registration(format!(
                "the curator said {id_hex} is registered but has no proof for it yet"
            )))),
        }
    }

    /// Reserves a slot, builds fresh keys (stored before sending: see
    /// [`crate::state`]) and sends the registration.
    async fn fresh_attempt(
        &mut self,
        token: &Token,
        crs: &Crs,
        dir: &RegistrationDir,
    ) -> Result<Attempt, Outcome> {
        let reservation = self.client.reserve_slot(&token.jwt).await?;
        debug!(
            slot = reservation.slot,
            until = reservation.expires_at,
            "reserved a slot"
        );
        let (crs_owned, jwt, slot) = (crs.clone(), token.jwt.clone(), reservation.slot);
        // Key generation is a scalar multiplication per helper value: keep
        // it off the async executor.
        let built = tokio::task::spawn_blocking(move || {
            mazu_curator::client::build_registration(&crs_owned, &jwt, slot, &mut rand::rngs::OsRng)
        })
        .await
        .map_err(|e| Outcome::Retry(Error::Registration(format!("key generation task: {e}"))))?
        .map_err(|e| Outcome::GiveUp(Error::Registration(format!("RBE key generation: {e}"))))?;
        let keys = Keys {
            tls: built.tls_key,
            rbe: built.rbe_secret,
        };
        dir.store_pending(&token.jwt, &keys, &built.request)
            .map_err(Outcome::Retry)?;
        match self.client.register(&built.request).await {
            Ok(answer) => {
                let ours = hex::encode(Sha256::digest(mazu_curator::client::spki_der(&keys.tls)));
                if answer.entry.spki_hash != ours {
                    warn!(curator = %answer.entry.spki_hash, %ours, "the curator reports another SPKI hash");
                }
                Ok(Attempt::Registered(
                    answer.version,
                    answer.entry.slot,
                    Some(answer.index),
                    keys,
                ))
            }
            Err(e) if e.code() == Some("already_registered") => {
                Ok(Attempt::AlreadyRegistered(keys))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn record_from(
        &self,
        token: &Token,
        keys: &Keys,
        version: u64,
        slot: u32,
        log_index: Option<u64>,
    ) -> RegistrationRecord {
        RegistrationRecord {
            id: token.id_hex(),
            slot,
            registered_version: version,
            spki_hash: hex::encode(Sha256::digest(mazu_curator::client::spki_der(&keys.tls))),
            token_exp: token.expires_at,
            openings_version: version,
            log_index,
        }
    }

    /// Makes a registration the served one: opening, certificate, state
    /// files, then both outputs (the previous certificate was served until
    /// this moment).
    async fn activate(
        &mut self,
        token: Token,
        dir: RegistrationDir,
        mut record: RegistrationRecord,
        keys: Keys,
    ) -> Result<(), Outcome> {
        info!(id = %record.id, slot = record.slot, version = record.registered_version, "registered");
        // The checkpoint that holds the registration, before using any of
        // the curator's registry data.
        if let Err(Outcome::Retry(e) | Outcome::GiveUp(e)) = self
            .check_checkpoint(Some(OwnRef::new(&record, &keys)))
            .await
        {
            warn!(error = %e, "could not check the curator's checkpoint yet; checking again on the next refresh");
        }
        let history = match dir.openings()? {
            Some(h) => Some(h),
            None if self.checkpoints.usable_size().is_none() => None,
            None => match openings::initial(&self.client, record.slot).await {
                Ok((history, version)) => {
                    record.openings_version = version;
                    dir.store_openings(&history)?;
                    Some(history)
                }
                Err(e) => {
                    // Not needed to serve a certificate: fetched on the next refresh.
                    warn!(error = %e, "could not fetch the opening yet");
                    None
                }
            },
        };
        dir.store_record(&record)?;
        let served = self
            .config
            .certificate(&token, &keys, unix_now())
            .map_err(|e| Outcome::GiveUp(e.into()))?;
        self.await_propagation().await;
        self.state.set_current(dir.id_hex())?;
        let previous = self.active.as_ref().map(|a| a.dir.id_hex().to_owned());
        self.active = Some(Active {
            token,
            dir,
            record,
            keys,
            served,
            history,
            unconfirmed: false,
        });
        self.publish();
        self.write_status();
        let current = self.active.as_ref().map(|a| a.dir.id_hex().to_owned());
        let keep: Vec<&str> = [current.as_deref(), previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if let Err(e) = self.state.prune(&keep) {
            warn!(error = %e, "could not prune old registrations");
        }
        Ok(())
    }

    /// On a rotation, keeps the previous certificate in service for the
    /// propagation delay: the filters learn the new registration only at
    /// their next registry poll, and a peer shown the new certificate
    /// before then would refuse it (`not_registered`). Skipped when there
    /// is no previous certificate, or it would expire in the meantime.
    async fn await_propagation(&self) {
        let delay = self.config.propagation_delay;
        let Some(active) = &self.active else { return };
        let until = unix_now().saturating_add(delay.as_secs() + 1);
        if delay.is_zero() || active.served.issued.not_after <= until {
            return;
        }
        info!(
            delay_ms = delay.as_millis() as u64,
            "registered; serving the previous certificate until the mesh's filters have seen the new registration"
        );
        tokio::time::sleep(delay).await;
    }

    /// Sends the active certificate to the outputs.
    fn publish(&mut self) {
        let Some(active) = &self.active else { return };
        let served = &active.served;
        if let Some(dir) = &self.cert_dir {
            match dir.write(served) {
                Ok(()) => {
                    info!(dir = %dir.path().display(), not_after = served.issued.not_after, "wrote cert.pem and key.pem")
                }
                Err(e) => error!(error = %e, "could not write the certificate files"),
            }
        }
        let pair = (served.cert_pem.clone(), served.key_pem.clone());
        self.secrets.send_modify(|s| {
            let mut next = (**s).clone();
            next.certificate = Some(pair);
            *s = Arc::new(next);
        });
        info!(
            spiffe_id = %served.issued.spiffe_id,
            version = %served.version(),
            not_after = served.issued.not_after,
            "serving the certificate"
        );
    }

    fn write_status(&self) {
        let Some(active) = &self.active else { return };
        let status = Status {
            id: active.record.id.clone(),
            slot: active.record.slot,
            spiffe_id: active.served.issued.spiffe_id.as_str().to_owned(),
            registered_version: active.record.registered_version,
            spki_hash: active.record.spki_hash.clone(),
            cert_not_after: active.served.issued.not_after,
            token_exp: active.token.expires_at,
            curator: self.config.curator.clone(),
            updated_at: unix_now(),
            checkpoint_size: self.checkpoints.accepted_size(),
            log_index: self.checkpoints.included_index(&active.record.id),
            checkpoint_refused: self.checkpoints.refusal().cloned(),
        };
        if let Err(e) = self.state.write_status(&status) {
            error!(error = %e, "could not write status.json");
        }
    }

    /// Rebuilds the certificate with the registered key when it is within
    /// the margin of `notAfter` and the token allows a later one (the
    /// registry binds the key, not the certificate, so no new registration
    /// is needed). Warns once when the token itself is about to expire and
    /// the kubelet has not replaced it.
    fn renew_certificate(&mut self) {
        let now = unix_now();
        let margin = self.config.rotation_margin.as_secs();
        let lifetime = self.config.cert_lifetime.as_secs();
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if active.token.expires_at <= now.saturating_add(margin)
            && self.warned_token_expiry != Some(active.token.id)
        {
            warn!(
                exp = active.token.expires_at,
                "the token expires within the rotation margin and no newer token is in the file yet"
            );
            self.warned_token_expiry = Some(active.token.id);
        }
        if !needs_renewal(
            now,
            active.served.issued.not_after,
            active.token.expires_at,
            margin,
            lifetime,
        ) {
            return;
        }
        let not_after = active.served.issued.not_after;
        match self.config.certificate(&active.token, &active.keys, now) {
            Ok(served) => {
                info!(
                    old_not_after = not_after,
                    new_not_after = served.issued.not_after,
                    "renewing the certificate (same registered key)"
                );
                active.served = served;
                self.publish();
                self.write_status();
            }
            Err(e) => warn!(error = %e, "could not renew the certificate"),
        }
    }

    /// Checks the curator's checkpoint ([`crate::transparency`]), tracking
    /// the served registration's log entry first. A refusal is reported and
    /// recorded, not an error: the loop carries on with the remembered
    /// checkpoint. Only transient trouble is an `Err` (retried with
    /// backoff).
    async fn check_checkpoint(&mut self, own: Option<OwnRef>) -> Result<(), Outcome> {
        if let Some(own) = own
            && self.checkpoints.own_entry().is_none_or(|o| o.id != own.id)
        {
            match self.locate_own_entry(&own).await? {
                Ok((index, leaf)) => {
                    debug!(index, "tracking this registration's log entry");
                    self.checkpoints.track_own(&own.id, index, &leaf)?;
                }
                Err(error) => {
                    let refusal = self.checkpoints.record_refusal(error, None, None)?;
                    self.report_refusal(&refusal);
                    self.write_status();
                    return Ok(());
                }
            }
        }
        let was_refused = self.checkpoints.refusal().is_some();
        match self
            .checkpoints
            .check(&self.client)
            .await
            .map_err(Outcome::Retry)?
        {
            CheckResult::Accepted { changed, size } => {
                if was_refused {
                    info!(
                        size,
                        "the curator's checkpoint is consistent with the accepted one again"
                    );
                }
                if changed {
                    info!(size, log_index = ?self.active.as_ref().and_then(|a| self.checkpoints.included_index(&a.record.id)), "accepted the curator's checkpoint");
                    self.write_status();
                }
            }
            CheckResult::Refused(refusal) => {
                self.report_refusal(&refusal);
                self.write_status();
            }
        }
        Ok(())
    }

    /// Finds the served registration's log entry: at the index the curator
    /// gave when it accepted it, or else (restored or `already_registered`
    /// registrations) by scanning the log back from the registered version.
    /// The inner `Err` is a refusal: the log does not hold it.
    async fn locate_own_entry(
        &self,
        own: &OwnRef,
    ) -> Result<Result<(u64, mazu_log::merkle::Hash), CheckpointError>, Outcome> {
        let retry = |e: CuratorError| Outcome::Retry(e.into());
        if let Some(index) = own.log_index {
            let (size, entries) = self.client.log_entries(index, 1).await.map_err(retry)?;
            return Ok(match entries.first() {
                Some((_, bytes)) if own.is_entry(bytes) => {
                    Ok((index, mazu_log::merkle::leaf_hash(bytes)))
                }
                _ => Err(CheckpointError::OwnEntryMissing {
                    index,
                    size,
                    reason: "the log entry at the index the curator gave when it accepted the registration is not this registration".to_owned(),
                }),
            });
        }
        // Newest first: a registration the agent just learnt of is near
        // the end.
        const PAGE: u64 = 100;
        let mut end = own.registered_version;
        let mut size = end;
        while end > 0 {
            let start = end.saturating_sub(PAGE);
            let mut next = start;
            while next < end {
                let (served_size, entries) = self
                    .client
                    .log_entries(next, end - next)
                    .await
                    .map_err(retry)?;
                size = served_size;
                if let Some((index, bytes)) = entries.iter().find(|(_, b)| own.is_entry(b)) {
                    return Ok(Ok((*index, mazu_log::merkle::leaf_hash(bytes))));
                }
                if entries.is_empty() {
                    break;
                }
                // The curator may cap a page short: go on from there.
                next += entries.len() as u64;
            }
            end = start;
        }
        Ok(Err(CheckpointError::OwnEntryMissing {
            index: own.registered_version.saturating_sub(1),
            size,
            reason: format!(
                "no entry of the log's first {} holds this registration, which the curator reports registered",
                own.registered_version
            ),
        }))
    }

    /// Logs a refusal: the full evidence (both signed notes) when it is new,
    /// a reminder otherwise.
    fn report_refusal(&self, refusal: &Refusal) {
        if refusal.new {
            error!(
                kind = refusal.error.kind(),
                reason = %refusal.error,
                remembered_checkpoint = ?refusal.remembered_note,
                offered_checkpoint = ?refusal.offered_note,
                "refusing the curator's checkpoint: the curator (or whoever answers in its place) misbehaves; keeping the remembered checkpoint, not using its newer registry data, still serving the current certificate"
            );
        } else {
            warn!(
                kind = refusal.error.kind(),
                count = refusal.count,
                reason = %refusal.error,
                "still refusing the curator's checkpoint"
            );
        }
    }

    async fn refresh_openings(&mut self) -> Result<(), Outcome> {
        let crs = self.crs().await?;
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if active.unconfirmed {
            return Ok(());
        }
        // Registry data only up to a checkpoint accepted as consistent.
        let Some(limit) = self.checkpoints.usable_size() else {
            debug!("no consistent checkpoint accepted: not using the curator's registry data");
            return Ok(());
        };
        let history = match active.history.as_mut() {
            Some(h) => h,
            None => {
                let (history, version) =
                    openings::initial(&self.client, active.record.slot).await?;
                active.record.openings_version = version;
                active.dir.store_openings(&history)?;
                active.dir.store_record(&active.record)?;
                active.history.insert(history)
            }
        };
        let before = active.record.openings_version;
        if openings::refresh_until(&self.client, &crs, &mut active.record, history, limit)
            .await
            .map_err(Outcome::from)?
        {
            active.dir.store_openings(history)?;
            active.dir.store_record(&active.record)?;
            debug!(
                from = before,
                to = active.record.openings_version,
                openings = history.openings().len(),
                "opening history brought up to date"
            );
        }
        Ok(())
    }
}

/// Whether a certificate valid until `not_after` should be rebuilt at
/// `now`: it is within the margin of expiring and a new one (bounded by the
/// token's `exp`) would last longer. The margin is capped at half the
/// lifetime, so a short lifetime does not renew on every poll.
pub fn needs_renewal(now: u64, not_after: u64, token_exp: u64, margin: u64, lifetime: u64) -> bool {
    let margin = margin.min(lifetime / 2);
    let could_reach = now.saturating_add(lifetime).min(token_exp);
    not_after <= now.saturating_add(margin) && could_reach > not_after
}

/// What sending a registration gave.
enum Attempt {
    /// Accepted: version, slot and log index.
    Registered(u64, u32, Option<u64>, Keys),
    /// The id is registered already (maybe by our earlier attempt).
    AlreadyRegistered(Keys),
}

#[cfg(test)]
mod tests {
    use super::needs_renewal;

    #[test]
    fn renewal_decision() {
        let now = 1_000_000;
        // Far from expiry: no.
        assert!(!needs_renewal(now, now + 3600, now + 7200, 600, 3600));
        // Within the margin, and the token allows longer: yes.
        assert!(needs_renewal(now, now + 300, now + 7200, 600, 3600));
        // Within the margin but the token ends there too: no (only a new
        // token helps).
        assert!(!needs_renewal(now, now + 300, now + 300, 600, 3600));
        // Already expired certificate, token still valid: yes.
        assert!(needs_renewal(now, now - 1, now + 7200, 600, 3600));
        // Lifetime shorter than the margin: the margin is capped at half of
        // it, so a fresh certificate is not renewed at once.
        assert!(!needs_renewal(now, now + 60, now + 7200, 600, 60));
        assert!(needs_renewal(now, now + 30, now + 7200, 600, 60));
    }
}
