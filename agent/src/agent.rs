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
//!    bind first, reveal later (`docs/protocol.md`): reserve a slot for the
//!    id, bind the id to fresh keys (no token), verify the witnessed
//!    checkpoint of the answer and follow the log to it ([`crate::follow`]);
//!    only if the first binding of the id in that log is this agent's, reveal
//!    the token, verify again, and serve (the old certificate keeps being
//!    served until then, then both outputs switch at once). A binding of the
//!    id that came first (`front_run`) means the token is never revealed;
//!    the agent waits for the next token;
//! 3. confirms a registration restored from the state directory with the
//!    witnessed log (the id must be live with this agent's key);
//! 4. renews the certificate (same registered key) when it is within the
//!    rotation margin of `notAfter` and the token still allows a longer one;
//! 5. every `peer_refresh` interval, checks the curator's signed
//!    checkpoint (consistent with the one accepted before, still holding
//!    this agent's registration: [`crate::transparency`]), follows the log
//!    to it and serves the SPKI pins of every live registration in `ROOTCA`
//!    ([`crate::sds`]: peers are authenticated in the TLS handshake);
//! 6. every `opening_refresh` interval, does the same, then brings the RBE
//!    opening up to date from the log, up to that checkpoint only.
//!
//! Curator calls that fail transiently (unreachable, 5xx, 408, 429) are
//! retried with capped exponential backoff and jitter; a refusal of a token
//! (4xx, e.g. `token_expired`) is logged and not retried until the token
//! file changes.

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mazu_identity::TrustDomain;
use mazu_rbe::{Crs, OpeningHistory};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{Instrument as _, debug, error, info, warn};

use mazu_curator::api::views::{BindingRequest, LoggedJson};
use mazu_log::checkpoint::Checkpoint;
use mazu_log::merkle::Hash;

use crate::backoff::Backoff;
use crate::binding::build_binding;
use crate::credentials::{ServedCertificate, build_served};
use crate::curator::CuratorClient;
use crate::error::{
    BindingError, CheckpointError, CredentialsError, CuratorError, Error, StateError,
};
use crate::files::CertDir;
use crate::follow::{LogView, Standing, standing, witness_policy};
use crate::openings;
use crate::registry_file::{self, Published};
use crate::sds::Secrets;
use crate::state::{
    Keys, RegistrationDir, RegistrationOutcome, RegistrationRecord, StateDir, Status,
};
use crate::token::{Token, TokenEvent, TokenWatcher};
use crate::transparency::{CheckResult, CheckpointTracker, Refusal};
use mazu_service::tls::ClientTransport;

/// Everything `run` needs (the binary builds it from flags).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Curator base URL.
    pub curator: String,
    /// How the curator is reached: TLS to a pinned key, or plain HTTP.
    pub curator_transport: ClientTransport,
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
    /// After a rotation, how long after the new certificate is served the
    /// previous registration is released (the drain time of peers' pooled
    /// connections made with the previous certificate).
    pub release_delay: Duration,
    /// How often the token file is read.
    pub poll_interval: Duration,
    /// How often the opening is brought up to date.
    pub opening_refresh: Duration,
    /// How often the witnessed log is followed to update the handshake pins
    /// served in `ROOTCA` (a new workload is accepted, a revoked one refused
    /// in the handshake, within about this long).
    pub peer_refresh: Duration,
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
    /// Witness verifier keys (`--witness`); every checkpoint the agent acts
    /// on must carry the cosignatures of `witness_quorum` of them.
    pub witnesses: Vec<String>,
    /// How many witnesses must cosign (`None`: all).
    pub witness_quorum: Option<usize>,
    /// Accept checkpoints without witnesses (development only; required
    /// when `witnesses` is empty).
    pub insecure_no_witness: bool,
    /// Envoy checks peers with Mazu's validator module: its configuration
    /// (served in `ROOTCA`) and the registry file the agent writes for it.
    pub validator: Option<ValidatorHandoff>,
}

/// What the agent does for Mazu's handshake validator (`mazu-validator`).
#[derive(Clone, Debug)]
pub struct ValidatorHandoff {
    /// The validator's configuration, JSON, as checked at start.
    pub config_json: String,
    /// Its `registry_file`: written from the witnessed log.
    pub registry_file: PathBuf,
    /// Its `trust.trust_domain`.
    pub trust_domain: String,
    /// With destinations from Kubernetes: the configuration to serve
    /// instead of `config_json`, with the derived destinations merged in
    /// ([`crate::kube::DestinationsPoller`]); `None` in the channel until
    /// the API server was read once (`ROOTCA` is not served until then).
    pub served: Option<watch::Receiver<crate::kube::ServedConfig>>,
}

impl ValidatorHandoff {
    /// Reads and checks the validator configuration in `path`.
    pub fn from_file(path: &Path) -> Result<ValidatorHandoff, Error> {
        let config_json = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("--validator-config {}: {e}", path.display())))?;
        let parsed = mazu_validator::ValidatorConfig::parse(config_json.as_bytes())
            .map_err(|e| Error::Config(format!("--validator-config {}: {e}", path.display())))?;
        Ok(ValidatorHandoff {
            config_json,
            registry_file: parsed.registry_file,
            trust_domain: parsed.trust.trust_domain().as_str().to_owned(),
            served: None,
        })
    }
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

/// Serves every validator configuration the destinations poller publishes
/// (`rx`) in `ROOTCA` as soon as it is published, independently of the run
/// loop (a curator call in progress does not delay it): every open SDS
/// stream gets the new `ROOTCA`. Ends when the poller stops; aborted when
/// the agent stops (it holds a sender of the SDS channel).
async fn forward_validator_config(
    mut rx: watch::Receiver<crate::kube::ServedConfig>,
    secrets: watch::Sender<Arc<Secrets>>,
) {
    loop {
        let served = rx.borrow_and_update().clone();
        if let Some(served) = served
            && serve_validator_config(&secrets, &served)
        {
            info!(
                "serving the validator configuration with the destinations derived from Kubernetes"
            );
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Puts `served` in `ROOTCA` (and ends the wait for it); whether it changed.
fn serve_validator_config(secrets: &watch::Sender<Arc<Secrets>>, served: &str) -> bool {
    secrets.send_if_modified(|s| {
        if s.validator_config.as_deref() == Some(served) && !s.validator_pending {
            return false;
        }
        let mut next = (**s).clone();
        next.validator_config = Some(served.to_owned());
        next.validator_pending = false;
        *s = Arc::new(next);
        true
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
            // A front-run id is useless: only a new token helps.
            Error::Binding(BindingError::FrontRun { .. }) => Outcome::GiveUp(e),
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
    next_peer_refresh: Instant,
    /// Whether the log was followed to an accepted checkpoint at least once
    /// (the handshake pins are served only from then on).
    log_followed: bool,
    warned_token_expiry: Option<[u8; 32]>,
    /// The curator's checkpoints: the accepted one, refusals.
    checkpoints: CheckpointTracker,
    /// The witnessed log as this agent followed it (one per process).
    log: LogView,
    /// The last registration attempt that ended before the reveal.
    last_outcome: Option<RegistrationOutcome>,
    /// A replaced registration to release once its drain time is over.
    pending_release: Option<PendingRelease>,
    /// With destinations from Kubernetes: the validator configuration to
    /// serve, as the poller publishes it (taken by `run`'s forwarder).
    served_config: Option<watch::Receiver<crate::kube::ServedConfig>>,
}

/// A registration replaced by a rotation, released at `due`.
#[derive(Debug)]
struct PendingRelease {
    id: String,
    slot: u32,
    tls: p256::ecdsa::SigningKey,
    due: Instant,
}

/// What the checks need to know of a registration: its id, slot, key and
/// the token expiry it committed to.
#[derive(Clone, Debug)]
struct OwnRef {
    id: String,
    id_bytes: Hash,
    slot: u32,
    spki_hash: Hash,
    token_expiry: u64,
}

impl OwnRef {
    fn new(id_hex: &str, slot: u32, token_expiry: u64, keys: &Keys) -> Self {
        OwnRef {
            id: id_hex.to_owned(),
            id_bytes: crate::curator::parse_hash(id_hex).unwrap_or_default(),
            slot,
            spki_hash: Sha256::digest(mazu_curator::client::spki_der(&keys.tls)).into(),
            token_expiry,
        }
    }

    fn of(record: &RegistrationRecord, keys: &Keys) -> Self {
        Self::new(&record.id, record.slot, record.token_exp, keys)
    }

    /// The binding this agent made, as the log should show it.
    fn expected(&self) -> crate::follow::OwnBinding {
        crate::follow::OwnBinding {
            slot: self.slot,
            spki_hash: self.spki_hash,
            token_expiry: self.token_expiry,
        }
    }
}

/// How many times a bind or reveal is re-sent while the curator waits for
/// its witnesses (503 `witness_unavailable`) or is unreachable, before the
/// attempt is handed back to the run loop (which resumes it identically).
const WITNESS_WAIT_ATTEMPTS: u32 = 8;

impl Agent {
    /// Opens the state directory and output directory; restores a stored
    /// registration (served at once if its certificate can still be built).
    /// Fails only on configuration problems.
    pub fn new(config: AgentConfig) -> Result<(Agent, watch::Receiver<Arc<Secrets>>), Error> {
        let client = CuratorClient::new(&config.curator, &config.curator_transport)?;
        let state = StateDir::open(&config.state_dir)?;
        let cert_dir = config.cert_dir.as_ref().map(CertDir::new).transpose()?;
        // No `ROOTCA` until the log is followed (`crate::sds`), nor, with
        // destinations from Kubernetes, until they were read once.
        let mut served_config = config.validator.as_ref().and_then(|v| v.served.clone());
        let (validator_config, validator_pending) = match (&config.validator, &mut served_config) {
            (None, _) => (None, false),
            (Some(v), None) => (Some(v.config_json.clone()), false),
            (Some(v), Some(rx)) => match rx.borrow_and_update().as_deref() {
                Some(served) => (Some(served.to_owned()), false),
                None => (Some(v.config_json.clone()), true),
            },
        };
        let (secrets, receiver) = watch::channel(Arc::new(Secrets {
            validator_config,
            validator_pending,
            ..Secrets::default()
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
        let policy = witness_policy(
            &config.witnesses,
            config.witness_quorum,
            config.insecure_no_witness,
        )?;
        if policy.is_none() {
            warn!(
                "--insecure-no-witness: checkpoints are not required to be witnessed; a curator can show this agent a log nobody else sees"
            );
        }
        let mut checkpoints =
            CheckpointTracker::open(&config.state_dir, config.checkpoint_key.as_deref())?;
        checkpoints.set_witness_policy(policy.clone());
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
            next_peer_refresh: now,
            log_followed: false,
            warned_token_expiry: None,
            checkpoints,
            log: LogView::new(policy),
            last_outcome: None,
            pending_release: None,
            served_config,
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
        let _forwarder = self.served_config.take().map(|rx| {
            AbortOnDrop(tokio::spawn(
                forward_validator_config(rx, self.secrets.clone()).in_current_span(),
            ))
        });
        tokio::pin!(shutdown);
        loop {
            self.poll_token(&mut watcher);
            // A curator that never answers must not hold up the shutdown:
            // the step is dropped mid-call (every state file is written
            // atomically, and a repeated bind or reveal is answered with
            // the entry already logged).
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down (a curator call in progress was abandoned)");
                    return;
                }
                () = self.step() => {}
            }
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
        let now = Instant::now();
        let openings_due = now >= self.next_opening_refresh;
        if openings_due || now >= self.next_peer_refresh {
            let own = self
                .active
                .as_ref()
                .filter(|a| !a.unconfirmed)
                .map(|a| OwnRef::of(&a.record, &a.keys));
            self.next_peer_refresh = now + self.config.peer_refresh;
            let checked = self.check_checkpoint(own).await;
            // Also when the curator is unreachable: expired tokens drop out.
            self.publish_pins();
            checked?;
            if openings_due {
                self.refresh_openings().await?;
                self.next_opening_refresh = Instant::now() + self.config.opening_refresh;
            }
        }
        self.release_due().await;
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
    /// witnessed log: if the log does not show the id live with this
    /// agent's key (a new curator, a reset log), the token must be
    /// registered again.
    async fn confirm_restored(&mut self) -> Result<(), Outcome> {
        let Some(own) = self
            .active
            .as_ref()
            .filter(|a| a.unconfirmed)
            .map(|a| OwnRef::of(&a.record, &a.keys))
        else {
            return Ok(());
        };
        self.check_checkpoint(None).await?;
        if self.checkpoints.refusal().is_some() {
            // Keep serving; nothing the curator shows can be relied on.
            return Ok(());
        }
        let id = own.id.clone();
        match standing(self.log.state(&own.id_bytes), &own.expected()) {
            Standing::Mine {
                live: true,
                bound_at,
            } => {
                info!(%id, slot = own.slot, index = bound_at, "the witnessed log still holds the stored registration: not registering again");
                if let Some(active) = self.active.as_mut() {
                    active.unconfirmed = false;
                }
                self.write_status();
            }
            Standing::Other { .. } => {
                error!(%id, "the witnessed log binds this id to another key; dropping the stored registration");
                self.forget_active(true);
            }
            Standing::Ended => {
                warn!(%id, "the witnessed log shows the stored registration ended; dropping it and registering again");
                self.forget_active(true);
            }
            other => {
                // Not evidence that the binding ended (a new or reset log,
                // or one this agent has no earlier checkpoint of): keep the
                // keys, out of the way, and register again.
                warn!(%id, standing = ?other, "the witnessed log does not show the stored registration live (new or reset curator); keeping its keys aside and registering again");
                self.forget_active(false);
            }
        }
        Ok(())
    }

    /// Drops the active registration: its directory is removed only on
    /// `verified_end` (the witnessed log shows the binding ended or bound to
    /// another key); otherwise it is moved aside, keys included.
    fn forget_active(&mut self, verified_end: bool) {
        if let Some(active) = self.active.take() {
            // The outputs keep the old certificate until a new registration
            // replaces it (Envoy needs *some* certificate to keep listening).
            if verified_end {
                if let Err(e) = active.dir.remove() {
                    warn!(error = %e, "could not remove the stale registration");
                }
            } else {
                match active.dir.set_aside(unix_now()) {
                    Ok(aside) => {
                        info!(path = %aside.display(), "kept the stored registration's keys aside")
                    }
                    Err(e) => warn!(error = %e, "could not move the stored registration aside"),
                }
            }
        }
    }

    /// Registers `token` bind first, reveal later (resuming a stored
    /// binding request if there is one), then switches every output to the
    /// new certificate. The token leaves the agent only after the witnessed
    /// log shows this agent's binding of its id as the first one.
    async fn register(&mut self, token: &Token) -> Result<(), Outcome> {
        let crs = self.crs().await?;
        let id_hex = token.id_hex();
        let dir = self.state.registration(&id_hex)?;
        info!(id = %id_hex, "registering the token with the curator (bind first, reveal later)");

        // A complete registration of this token already on disk (e.g. the
        // token came back after a failed rotation): adopt it if the
        // witnessed log shows it live with our key.
        if let (Some(record), Some(keys)) = (dir.record()?, dir.keys().map_err(Outcome::Retry)?) {
            let own = OwnRef::of(&record, &keys);
            self.check_checkpoint(None).await?;
            if let Standing::Mine { live: true, .. } =
                standing(self.log.state(&own.id_bytes), &own.expected())
            {
                return self.activate(token.clone(), dir, record, keys).await;
            }
        }

        // A request.json from before bind-first (it held the token) does
        // not parse as a binding request: build a new one.
        let pending = dir.pending_request().unwrap_or_else(|e| {
            warn!(error = %e, "ignoring the stored request; building a new binding");
            None
        });
        let (request, keys) = match (pending, dir.keys().map_err(Outcome::Retry)?) {
            (Some(request), Some(keys)) if request.id == id_hex => {
                info!(id = %id_hex, slot = request.slot, "resending the stored binding request");
                (request, keys)
            }
            _ => self.fresh_binding(token, &crs, &dir).await?,
        };
        let (request, keys, answer) = match self.send_bind(&request).await {
            Ok(answer) => (request, keys, Some(answer)),
            Err(e) if e.code() == Some("already_registered") => (request, keys, None),
            Err(e) if !e.is_transient() => {
                info!(reason = %e, "the stored binding request is no longer usable; building a new one");
                let (request, keys) = self.fresh_binding(token, &crs, &dir).await?;
                match self.send_bind(&request).await {
                    Ok(answer) => (request, keys, Some(answer)),
                    Err(e) if e.code() == Some("already_registered") => (request, keys, None),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let own = OwnRef::new(&id_hex, request.slot, request.token_expiry, &keys);

        // Is the first binding of the id in the witnessed log ours?
        let bound_at = match &answer {
            Some(answer) => {
                let checkpoint = self.follow_answer(answer).await?;
                debug!(
                    index = answer.index,
                    size = checkpoint.size,
                    "the binding is under a witnessed checkpoint"
                );
                self.judge_binding(token, &own, Some(answer.index)).await?
            }
            None => {
                // `already_registered`: our earlier request may have been
                // logged without us hearing it, or someone bound the id
                // first. The witnessed log decides.
                self.check_checkpoint(None).await?;
                self.judge_binding(token, &own, None).await?
            }
        };

        // Decided: this token is revealed. Store it first, so that a crash
        // after the reveal still finds it.
        dir.store_token(&token.jwt)?;
        info!(id = %id_hex, index = bound_at, "the witnessed log shows this agent's binding first; revealing the token");
        let answer = self
            .until_witnessed("POST /v1/bindings/{id}/reveal", || {
                self.client.reveal(&id_hex, &token.jwt)
            })
            .await?;
        let checkpoint = self.follow_answer(&answer).await?;
        match standing(self.log.state(&own.id_bytes), &own.expected()) {
            Standing::Mine { live: true, .. } => {}
            other => {
                return Err(Outcome::Retry(
                    BindingError::NotInLog {
                        id: id_hex.clone(),
                        reason: format!(
                            "after the reveal (index {}), the log of {} records shows the id as {other:?}, not live with this agent's key",
                            answer.index, checkpoint.size
                        ),
                    }
                    .into(),
                ));
            }
        }
        let record = RegistrationRecord {
            id: id_hex.clone(),
            slot: own.slot,
            registered_version: checkpoint.size,
            spki_hash: hex::encode(own.spki_hash),
            token_exp: token.expires_at,
            openings_version: checkpoint.size,
            log_index: Some(bound_at),
        };
        self.activate(token.clone(), dir, record, keys).await
    }

    /// Re-sends `POST /v1/bindings` while the curator waits for its
    /// witnesses.
    async fn send_bind(&self, request: &BindingRequest) -> Result<LoggedJson, CuratorError> {
        self.until_witnessed("POST /v1/bindings", || self.client.bind(request))
            .await
    }

    /// Calls `call` until it succeeds, fails for good, or
    /// [`WITNESS_WAIT_ATTEMPTS`] transient failures (503
    /// `witness_unavailable`: the entry is logged but its checkpoint lacks
    /// the witness quorum yet; or no answer). The request is identical each
    /// time, so the curator answers with the same entry once witnessed.
    async fn until_witnessed<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, CuratorError>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<T, CuratorError>>,
    {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        loop {
            match call().await {
                Err(e) if e.is_transient() && backoff.attempts() < WITNESS_WAIT_ATTEMPTS => {
                    let delay = backoff.next_delay();
                    if e.code() == Some("witness_unavailable") {
                        info!(
                            request = what,
                            retry_in_ms = delay.as_millis() as u64,
                            "the curator logged the entry but its witnesses have not cosigned a checkpoint covering it yet; re-sending the identical request"
                        );
                    } else {
                        warn!(request = what, error = %e, retry_in_ms = delay.as_millis() as u64, "no usable answer; re-sending the identical request");
                    }
                    tokio::time::sleep(delay).await;
                }
                result => return result,
            }
        }
    }

    /// Verifies the checkpoint of a bind or reveal answer (curator
    /// signature, witness quorum), follows the log through the persisted
    /// checkpoint and it, and remembers it. Any refusal ends the attempt;
    /// a checkpoint or records that do not verify are recorded and reported
    /// as a refusal with their evidence, as a polled checkpoint is.
    async fn follow_answer(&mut self, answer: &LoggedJson) -> Result<Checkpoint, Outcome> {
        let (verifier, trust) = self
            .checkpoints
            .verifier(&self.client)
            .await
            .map_err(Outcome::Retry)?;
        let offered = match crate::follow::verify_witnessed(
            &verifier,
            trust,
            self.log.policy(),
            &answer.checkpoint,
        ) {
            Ok(offered) => offered,
            Err(error) => return Err(self.refuse_answer(error, None, &answer.checkpoint)),
        };
        if offered.size <= answer.index {
            return Err(Outcome::Retry(
                CheckpointError::OwnEntryMissing {
                    index: answer.index,
                    size: offered.size,
                    reason:
                        "the checkpoint the curator answered with does not cover the entry it names"
                            .to_owned(),
                }
                .into(),
            ));
        }
        let mut points = vec![(offered.size, offered.root)];
        points.extend(self.checkpoints.accepted());
        let bootstrap = match mazu_log::evidence::state_digest(&offered) {
            Ok(Some(digest)) if self.may_start_log_at(offered.size) => {
                self.log
                    .bootstrap(&self.client, (offered.size, offered.root), &digest)
                    .await
            }
            _ => Ok(false),
        };
        let followed = match bootstrap {
            Ok(_) => self.log.advance(&self.client, &points).await,
            Err(e) => Err(e),
        };
        match followed {
            Ok(()) => {}
            Err(Error::Checkpoint(error)) => {
                return Err(self.refuse_answer(error, Some(offered.size), &answer.checkpoint));
            }
            Err(e) => return Err(Outcome::Retry(e)),
        }
        self.checkpoints
            .accept_followed(&offered, &answer.checkpoint)?;
        Ok(offered)
    }

    /// Whether the log view may start from the witnessed state at `size`
    /// ([`LogView::bootstrap`]): not while an opening history restored from
    /// disk still has to apply log entries before `size` (the ends there
    /// need their ids' bind entries, which a state does not give for ids
    /// that already ended).
    fn may_start_log_at(&self, size: u64) -> bool {
        let history_at = self
            .active
            .as_ref()
            .filter(|active| active.history.is_some())
            .map(|active| active.record.openings_version);
        let allowed = may_start_log_at(history_at, size);
        if !allowed {
            info!(
                size,
                opening_history_at = history_at,
                "following the log from record 0: the opening history restored from disk \
                 is behind the witnessed state"
            );
        }
        allowed
    }

    /// The leaf hash of this agent's bind record at `index`, when the log
    /// view started from a witnessed state (which gives the index, not the
    /// record): fetched, and checked to be the bind of `id`. The own-entry
    /// tracking then proves it included in every accepted checkpoint.
    async fn own_bind_leaf(&mut self, id: &Hash, index: u64) -> Result<Hash, Outcome> {
        let records = self
            .client
            .records(index, index + 1)
            .await
            .map_err(|e| Outcome::Retry(e.into()))?;
        match records.first() {
            Some(record)
                if record.id == *id
                    && matches!(record.body, mazu_log::record::RecordBody::Bind { .. }) =>
            {
                let leaf = record.leaf_hash();
                self.log.note_first_bind_leaf(id, index, leaf);
                Ok(leaf)
            }
            _ => Err(Outcome::Retry(
                CuratorError::Malformed {
                    what: "GET /v1/log/records".to_owned(),
                    reason: format!("record {index} is not this agent's bind"),
                }
                .into(),
            )),
        }
    }

    /// Records and reports the refusal of the checkpoint `note` a bind or
    /// reveal answer carried; the attempt is retried with backoff.
    fn refuse_answer(&mut self, error: CheckpointError, size: Option<u64>, note: &str) -> Outcome {
        match self
            .checkpoints
            .record_refusal(error, size, Some(note.to_owned()))
        {
            Ok(refusal) => {
                self.report_refusal(&refusal);
                self.write_status();
                Outcome::Retry(refusal.error.into())
            }
            Err(e) => Outcome::Retry(e.into()),
        }
    }

    /// Whether the first binding of the id in the followed log is this
    /// agent's (`claimed`: the index the curator named). Returns its index;
    /// a binding that came first is a front run, reported and final for
    /// this token.
    async fn judge_binding(
        &mut self,
        token: &Token,
        own: &OwnRef,
        claimed: Option<u64>,
    ) -> Result<u64, Outcome> {
        match standing(self.log.state(&own.id_bytes), &own.expected()) {
            Standing::Mine { bound_at, .. } => {
                if let Some(index) = claimed
                    && index != bound_at
                {
                    warn!(
                        claimed = index,
                        bound_at,
                        "the curator named another index than the log's first binding of this id (which is this agent's)"
                    );
                }
                Ok(bound_at)
            }
            Standing::Other {
                spki_hash,
                bound_at,
            } => {
                let error = BindingError::FrontRun {
                    id: own.id.clone(),
                    spki_hash: hex::encode(spki_hash),
                    index: bound_at,
                };
                self.report_outcome(token, &error);
                Err(Outcome::GiveUp(error.into()))
            }
            other => {
                let error = BindingError::NotInLog {
                    id: own.id.clone(),
                    reason: format!(
                        "the log of {} records shows the id as {other:?} although the curator says it is bound{}",
                        self.log.size(),
                        claimed
                            .map(|i| format!(" at index {i}"))
                            .unwrap_or_default()
                    ),
                };
                self.report_outcome(token, &error);
                Err(Outcome::Retry(error.into()))
            }
        }
    }

    /// Reports a registration that ended before the reveal: the log (with
    /// the stable `reason`), `outcome.json` and `status.json`.
    fn report_outcome(&mut self, token: &Token, error: &BindingError) {
        error!(id = %token.id_hex(), reason = error.reason(), error = %error, "registration refused before revealing the token");
        let outcome = RegistrationOutcome {
            id: token.id_hex(),
            reason: error.reason().to_owned(),
            detail: error.to_string(),
            token_revealed: false,
            at: unix_now(),
        };
        if let Err(e) = self.state.write_outcome(&outcome) {
            error!(error = %e, "could not write outcome.json");
        }
        self.last_outcome = Some(outcome);
        self.write_status();
    }

    /// Reserves a slot for the id, builds fresh keys and the binding
    /// request (stored before sending: see [`crate::state`]).
    async fn fresh_binding(
        &mut self,
        token: &Token,
        crs: &Crs,
        dir: &RegistrationDir,
    ) -> Result<(BindingRequest, Keys), Outcome> {
        let id_hex = token.id_hex();
        let reservation = match self.client.reserve_slot(&id_hex).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("already_registered") => {
                // Bound before this agent sent anything but the id: by
                // whom, the witnessed log says (no key of ours can match).
                self.check_checkpoint(None).await?;
                let nobody = OwnRef {
                    id: id_hex.clone(),
                    id_bytes: token.id,
                    slot: u32::MAX,
                    spki_hash: [0; 32],
                    token_expiry: 0,
                };
                self.judge_binding(token, &nobody, None).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        debug!(
            slot = reservation.slot,
            until = reservation.expires_at,
            "reserved a slot"
        );
        let (crs_owned, id, expiry, slot) =
            (crs.clone(), token.id, token.expires_at, reservation.slot);
        // Key generation is a scalar multiplication per helper value: keep
        // it off the async executor.
        let built = tokio::task::spawn_blocking(move || {
            build_binding(&crs_owned, &id, expiry, slot, &mut rand::rngs::OsRng)
        })
        .await
        .map_err(|e| Outcome::Retry(Error::Registration(format!("key generation task: {e}"))))?
        .map_err(|e| Outcome::GiveUp(Error::Registration(format!("RBE key generation: {e}"))))?;
        let (request, keys) = built;
        dir.store_pending(&keys, &request).map_err(Outcome::Retry)?;
        Ok((request, keys))
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
            .check_checkpoint(Some(OwnRef::of(&record, &keys)))
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
        let replaced = self.active.replace(Active {
            token,
            dir,
            record,
            keys,
            served,
            history,
            unconfirmed: false,
        });
        let previous = replaced.as_ref().map(|a| a.dir.id_hex().to_owned());
        self.publish();
        self.write_status();
        if let Some(replaced) = replaced
            && replaced.record.id != self.active.as_ref().map_or("", |a| a.record.id.as_str())
        {
            // An older one still waiting is released now.
            if let Some(older) = self.pending_release.take() {
                self.release_replaced(older).await;
            }
            self.pending_release = Some(PendingRelease {
                id: replaced.record.id.clone(),
                slot: replaced.record.slot,
                tls: replaced.keys.tls.clone(),
                due: Instant::now() + self.config.release_delay,
            });
        }
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

    /// Releases the replaced registration whose drain time is over, if any.
    async fn release_due(&mut self) {
        if self
            .pending_release
            .as_ref()
            .is_some_and(|p| Instant::now() >= p.due)
            && let Some(pending) = self.pending_release.take()
        {
            self.release_replaced(pending).await;
        }
    }

    /// Frees a replaced registration's slot with a release signed by its
    /// TLS key. A transient failure keeps it pending (retried at the next
    /// curator call); a refusal is final (the curator releases it when its
    /// token expires anyway).
    async fn release_replaced(&mut self, pending: PendingRelease) {
        let outcome = self
            .client
            .end_binding(
                &pending.id,
                pending.slot,
                &pending.tls,
                mazu_curator::holder::HolderAction::Release,
            )
            .await;
        match outcome {
            Ok(logged) => info!(
                id = %pending.id,
                slot = pending.slot,
                index = logged.index,
                "released the previous registration (its slot is free)"
            ),
            Err(e) if e.is_transient() => {
                warn!(id = %pending.id, error = %e, "could not release the previous registration yet; retrying");
                self.pending_release = Some(pending);
            }
            Err(e) => warn!(
                id = %pending.id,
                error = %e,
                "the curator refused to release the previous registration; it is released when its token expires"
            ),
        }
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

    /// Hands the handshake validator the registry of the log just followed
    /// to a witnessed checkpoint (`crate::registry_file`). A failure is
    /// logged and retried next round; meanwhile the file ages and the
    /// validator fails closed.
    fn publish_registry_file(&mut self) {
        let Some(handoff) = &self.config.validator else {
            return;
        };
        let log = &self.log;
        // Without witnesses (development only) there is no witnessed time:
        // the agent's own check is all there is.
        let verified_at = self
            .checkpoints
            .witnessed_at()
            .map_or_else(SystemTime::now, |secs| {
                UNIX_EPOCH + Duration::from_secs(secs)
            });
        match registry_file::publish(&handoff.registry_file, log.size(), verified_at, || {
            log.registry()
        }) {
            Ok(Published::Written) => info!(
                log_size = log.size(),
                path = %handoff.registry_file.display(),
                "wrote the handshake validator's registry file"
            ),
            Ok(Published::Refreshed | Published::Behind) => {}
            Err(e) => warn!(error = %e, "cannot write the handshake validator's registry file"),
        }
    }

    /// Serves, as `ROOTCA`'s pins, the keys of every registration live in
    /// the followed (witnessed) log now; pushed to Envoy when they changed.
    /// Nothing before the log was followed once (an Envoy keeps the pins it
    /// has meanwhile).
    fn publish_pins(&mut self) {
        if !self.log_followed {
            return;
        }
        let pins = self.log.peer_pins(unix_now());
        if self.secrets.borrow().peer_pins.as_ref() == Some(&pins) {
            return;
        }
        let count = pins.len();
        self.secrets.send_modify(|s| {
            let mut next = (**s).clone();
            next.peer_pins = Some(pins);
            *s = Arc::new(next);
        });
        info!(
            peers = count,
            log_size = self.log.size(),
            "serving the handshake pins of the live registered workloads"
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
            registration_refused: self.last_outcome.clone(),
            first_binds_held: self.log.first_binds_held() as u64,
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

    /// Checks the curator's checkpoint ([`crate::transparency`]: signature,
    /// witness quorum, consistency with the accepted one), follows the log
    /// to it ([`crate::follow`]), and, for `own`, requires the log to show
    /// the id bound first to this agent's key. A refusal is reported and
    /// recorded, not an error: the loop carries on with the remembered
    /// checkpoint. Only transient trouble is an `Err` (retried with
    /// backoff).
    async fn check_checkpoint(&mut self, own: Option<OwnRef>) -> Result<(), Outcome> {
        let was_refused = self.checkpoints.refusal().is_some();
        let (changed, size) = match self
            .checkpoints
            .check(&self.client)
            .await
            .map_err(Outcome::Retry)?
        {
            CheckResult::Accepted { changed, size } => (changed, size),
            CheckResult::Refused(refusal) => {
                self.report_refusal(&refusal);
                self.write_status();
                return Ok(());
            }
        };
        if let Some(point) = self.checkpoints.accepted() {
            let bootstrap = match self.checkpoints.accepted_state_digest() {
                Some(digest) if self.may_start_log_at(point.0) => {
                    self.log.bootstrap(&self.client, point, &digest).await
                }
                _ => Ok(false),
            };
            let followed = match bootstrap {
                Ok(_) => self.log.advance(&self.client, &[point]).await,
                Err(e) => Err(e),
            };
            match followed {
                Ok(()) => {
                    self.log_followed = true;
                    self.publish_registry_file();
                }
                Err(Error::Checkpoint(error)) => {
                    let refusal = self.checkpoints.record_refusal(error, Some(size), None)?;
                    self.report_refusal(&refusal);
                    self.write_status();
                    return Ok(());
                }
                Err(e) => return Err(Outcome::Retry(e)),
            }
        }
        if let Some(own) = own {
            match standing(self.log.state(&own.id_bytes), &own.expected()) {
                Standing::Mine { bound_at, .. } => {
                    if let Some(first) = self.log.first_bind(&own.id_bytes)
                        && first.index == bound_at
                    {
                        let leaf = match first.leaf {
                            Some(leaf) => leaf,
                            None => self.own_bind_leaf(&own.id_bytes, bound_at).await?,
                        };
                        self.checkpoints.track_own(&own.id, first.index, &leaf)?;
                    }
                }
                other => {
                    let reason = match other {
                        // This agent never ends the binding it serves (it
                        // releases only replaced ones; `mazu-agent revoke`
                        // runs with the agent stopped): the curator ended
                        // it, or someone revoked it with the stolen key.
                        Standing::Ended => "the witnessed log shows this agent's served \
                                            binding ended (released or revoked) without this \
                                            agent asking"
                            .to_owned(),
                        other => format!(
                            "the witnessed log shows this agent's id as {other:?}, not bound to its key"
                        ),
                    };
                    let error = CheckpointError::OwnEntryMissing {
                        index: self.checkpoints.own_entry().map_or(0, |o| o.index),
                        size,
                        reason,
                    };
                    let refusal = self.checkpoints.record_refusal(error, Some(size), None)?;
                    self.report_refusal(&refusal);
                    self.write_status();
                    return Ok(());
                }
            }
        }
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
        Ok(())
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
        let log = &self.log;
        let bind_index = |id: &Hash| log.first_bind(id).map(|b| b.index);
        if openings::refresh_until(
            &self.client,
            &crs,
            &mut active.record,
            history,
            limit,
            &bind_index,
        )
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
        // The refresh never reads the log before its position again.
        let dropped = self.log.prune_first_binds(active.record.openings_version);
        if dropped > 0 {
            debug!(
                dropped,
                held = self.log.first_binds_held(),
                "first binds of ended ids dropped"
            );
        }
        Ok(())
    }
}

/// Whether a log view may start from the witnessed state at `size` when
/// the opening history (if any) has applied the log up to `history_at`.
fn may_start_log_at(history_at: Option<u64>, size: u64) -> bool {
    history_at.is_none_or(|at| at >= size)
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

#[cfg(test)]
mod tests {
    use super::{
        AbortOnDrop, Arc, Duration, Secrets, forward_validator_config, needs_renewal,
        serve_validator_config, watch,
    };

    #[test]
    fn the_log_starts_from_a_state_only_where_the_opening_history_is() {
        use super::may_start_log_at;
        // No history yet: the one fetched later starts at the curator's
        // version, past the state.
        assert!(may_start_log_at(None, 40));
        assert!(may_start_log_at(Some(40), 40));
        assert!(may_start_log_at(Some(41), 40));
        // A restored history that still has to apply entries 30..40.
        assert!(!may_start_log_at(Some(30), 40));
    }

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

    #[tokio::test]
    async fn published_validator_configurations_reach_rootca_at_once() {
        let (secrets, mut served) = watch::channel(Arc::new(Secrets {
            peer_pins: Some(vec![[7; 32]]),
            validator_config: Some("{}".to_owned()),
            validator_pending: true,
            ..Secrets::default()
        }));
        let (tx, rx) = watch::channel(None);
        let forwarder = AbortOnDrop(tokio::spawn(forward_validator_config(rx, secrets.clone())));
        assert!(
            served
                .borrow_and_update()
                .secret(crate::sds::ROOTCA_RESOURCE)
                .is_none()
        );
        tx.send_replace(Some(Arc::from(r#"{"destinations":{"a":["x"]}}"#)));
        tokio::time::timeout(Duration::from_secs(5), served.changed())
            .await
            .expect("pushed at once")
            .expect("open");
        let now = served.borrow_and_update().clone();
        assert!(!now.validator_pending);
        assert_eq!(
            now.validator_config.as_deref(),
            Some(r#"{"destinations":{"a":["x"]}}"#)
        );
        // The same configuration again is no new version (no push).
        assert!(!serve_validator_config(
            &secrets,
            r#"{"destinations":{"a":["x"]}}"#
        ));
        assert!(serve_validator_config(&secrets, "{}"));
        // Once aborted, the forwarder holds no sender: the SDS streams can
        // see the agent stop.
        drop(forwarder);
        drop(secrets);
        tokio::time::timeout(Duration::from_secs(5), async {
            while served.changed().await.is_ok() {}
        })
        .await
        .expect("the channel closes");
    }
}
