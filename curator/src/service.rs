//! The curator itself, independent of HTTP: start-up replay, slot
//! reservations, the registration pipeline and the read side with its
//! per-version caches. The HTTP handlers in [`crate::api`] are thin wrappers
//! around [`Curator`].

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use mazu_identity::{RegistryDelta, TrustConfig, WorkloadId};
use mazu_rbe::{Crs, MembershipProof, Opening};
use tokio::sync::{Semaphore, mpsc, oneshot};

use mazu_log::MerkleTree;
use sha2::Digest as _;

use crate::api::error::ApiError;
use crate::checkpoint::Transparency;
use crate::metrics::Metrics;
use crate::register::{self, Prepared, RegistrationRequest, conflict_error, token_error};
use crate::registry::{EntryFacts, Registry, ReplayEntryError};
use crate::reservations::Reservations;
use crate::snapshot::{self, Snapshots};
use crate::store::{LogStore, StoreError};
use crate::writer::{self, Committed, Job};

/// Unix time in seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Tunables of a [`Curator`].
#[derive(Debug, Clone)]
pub struct CuratorOptions {
    /// Lifetime of a slot reservation.
    pub reservation_ttl: Duration,
    /// Registrations verified or queued at once before refusing.
    pub max_pending_registrations: usize,
    /// Registrations verified in parallel.
    pub verify_threads: usize,
    /// Whether the CRS is an insecure development CRS (reported by /readyz).
    pub dev_crs: bool,
    /// State snapshots (start from one, write them); `None`: always replay
    /// the whole log and write none.
    pub snapshot: Option<SnapshotOptions>,
    /// The checkpoint signing key (Ed25519 secret); `None`: a random key
    /// for this process only (tests).
    pub checkpoint_key: Option<[u8; 32]>,
    /// The checkpoint origin; `None`: [`crate::checkpoint::default_origin`].
    pub checkpoint_origin: Option<String>,
}

/// Where and how often the state snapshot is written (see [`crate::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The snapshot file (`DATA_DIR/state.snapshot`).
    pub path: PathBuf,
    /// Write one every this many log entries (0: only on clean shutdown).
    pub every: u64,
}

impl Default for CuratorOptions {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(300),
            max_pending_registrations: 64,
            verify_threads: 2,
            dev_crs: false,
            snapshot: None,
            checkpoint_key: None,
            checkpoint_origin: None,
        }
    }
}

/// What the start-up rebuild of the state did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries in the state (snapshot + replayed).
    pub entries: u64,
    /// How long the whole rebuild took.
    pub elapsed: Duration,
    /// Entries covered by the snapshot that was used (0: none used).
    pub snapshot_entries: u64,
    /// Time spent reading and checking the snapshot (also when refused).
    pub snapshot_load: Duration,
    /// Why an existing snapshot was not used, if one was refused.
    pub snapshot_refused: Option<String>,
    /// Entries replayed with every check (the tail after the snapshot, or
    /// the whole log).
    pub replayed_entries: u64,
    /// Time spent replaying them.
    pub replay: Duration,
}

/// Start-up replay failed: the log does not describe a valid registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry cannot be replayed.
    #[error("log entry #{index} cannot be replayed: {error}")]
    Replay {
        /// Its index.
        index: u64,
        /// Why.
        error: ReplayEntryError,
    },
    /// The writer thread could not be started.
    #[error("cannot start the log writer thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The checkpoint signer cannot be set up (invalid origin).
    #[error("cannot set up checkpoint signing: {0}")]
    Checkpoint(#[from] mazu_log::NoteError),
}

/// A granted slot reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// The reserved slot.
    pub slot: u32,
    /// The workload id (SHA-256 of the token).
    pub id: [u8; 32],
    /// When the reservation lapses (Unix seconds).
    pub expires_at: u64,
    /// Whether this request created it (false: an existing one was returned).
    pub created: bool,
    /// The registry version when it was granted.
    pub version: u64,
}

/// State shared by the request handlers and the writer thread.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) crs: Arc<Crs>,
    /// The token policy; replaced as a whole when JWKS URLs are refreshed.
    trust: RwLock<Arc<TrustConfig>>,
    registry: RwLock<Registry>,
    pub(crate) store: Arc<dyn LogStore>,
    reservations: Mutex<Reservations>,
    pub(crate) metrics: Arc<Metrics>,
    /// Set when the log and the state disagree (a bug): stop accepting.
    pub(crate) failed: AtomicBool,
    /// The state snapshot writer, if snapshots are on.
    pub(crate) snapshots: Option<Arc<Snapshots>>,
    /// The Merkle tree over the log and the checkpoint signer.
    pub(crate) transparency: Arc<Transparency>,
}

impl Core {
    /// The current token policy (a cheap reference; never held across a
    /// refresh).
    pub(crate) fn trust(&self) -> Arc<TrustConfig> {
        self.trust
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn read_registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write_registry(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn lock_reservations(&self) -> MutexGuard<'_, Reservations> {
        self.reservations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Cache = tokio::sync::Mutex<Option<(u64, Bytes)>>;

/// Encoded responses kept per version, so that repeated reads of an unchanged
/// registry cost a clone of a reference-counted buffer.
#[derive(Debug, Default)]
struct Caches {
    params_binary: Cache,
    params_json: Cache,
    snapshot: tokio::sync::Mutex<Option<EncodedSnapshot>>,
}

/// The registry snapshot of one version, encoded, with its SHA-256 (what
/// checkpoints bind): both computed once per version.
#[derive(Clone, Debug)]
pub struct EncodedSnapshot {
    /// The registry version.
    pub version: u64,
    /// The identity crate's binary encoding (`MZRS`).
    pub bytes: Bytes,
    /// SHA-256 of `bytes`.
    pub digest: [u8; 32],
}

/// The key curator. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Curator {
    core: Arc<Core>,
    jobs: mpsc::Sender<Job>,
    pending: Arc<Semaphore>,
    verify: Arc<Semaphore>,
    crs_binary: Bytes,
    crs_json: Bytes,
    caches: Caches,
    dev_crs: bool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Curator {
    /// Rebuilds the registry over `crs` from `store` (blocking: run it on a
    /// blocking thread) and starts the writer. With snapshots on, a valid
    /// snapshot that matches the log prefix replaces the replay of that
    /// prefix (see [`crate::snapshot`]); otherwise every entry is replayed.
    pub fn open(
        crs: Crs,
        trust: TrustConfig,
        store: Arc<dyn LogStore>,
        metrics: Arc<Metrics>,
        options: &CuratorOptions,
    ) -> Result<(Self, ReplayReport), OpenError> {
        let started = Instant::now();
        let mut snapshot_refused = None;
        let mut registry = None;
        if let Some(opts) = &options.snapshot {
            match snapshot::load(&opts.path, &crs, store.as_ref()) {
                Ok(Some(restored)) => registry = Some(restored),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        path = %opts.path.display(),
                        reason = %e,
                        "state snapshot not used; replaying the whole log (the log is \
                         authoritative, this only costs start-up time)"
                    );
                    snapshot_refused = Some(e.to_string());
                }
            }
        }
        let snapshot_load = started.elapsed();
        let snapshot_entries = registry.as_ref().map_or(0, Registry::version);
        let mut registry = registry.unwrap_or_else(|| Registry::new(crs.clone()));
        let replay_started = Instant::now();
        let index = replay_from(&mut registry, &store, snapshot_entries)?;
        let report = ReplayReport {
            entries: index,
            elapsed: started.elapsed(),
            snapshot_entries,
            snapshot_load,
            snapshot_refused,
            replayed_entries: index - snapshot_entries,
            replay: replay_started.elapsed(),
        };
        metrics
            .log_entries
            .set(i64::try_from(index).unwrap_or(i64::MAX));
        metrics.replay_seconds.set(report.elapsed.as_secs_f64());
        let snapshots = options
            .snapshot
            .as_ref()
            .map(|o| Arc::new(Snapshots::new(o.path.clone(), o.every, snapshot_entries)));

        let tree = merkle_tree(store.as_ref(), index)?;
        let origin = options
            .checkpoint_origin
            .clone()
            .unwrap_or_else(|| crate::checkpoint::default_origin(&crs.digest()));
        let key = options.checkpoint_key.unwrap_or_else(|| {
            let mut k = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
            k
        });
        let transparency = Arc::new(Transparency::new(tree, &origin, &key)?);

        let crs_binary = Bytes::from(crs.to_bytes());
        let crs_json = Bytes::from(serde_json::to_vec(&crs).map_err(std::io::Error::other)?);
        let core = Arc::new(Core {
            crs: Arc::new(crs),
            trust: RwLock::new(Arc::new(trust)),
            registry: RwLock::new(registry),
            store,
            reservations: Mutex::new(Reservations::new(options.reservation_ttl)),
            metrics,
            failed: AtomicBool::new(false),
            snapshots,
            transparency,
        });
        let (tx, rx) = mpsc::channel(options.max_pending_registrations.max(1));
        let handle = writer::spawn(core.clone(), rx)?;
        let curator = Self {
            core,
            jobs: tx,
            pending: Arc::new(Semaphore::new(options.max_pending_registrations.max(1))),
            verify: Arc::new(Semaphore::new(options.verify_threads.max(1))),
            crs_binary,
            crs_json,
            caches: Caches::default(),
            dev_crs: options.dev_crs,
            writer: Mutex::new(Some(handle)),
        };
        Ok((curator, report))
    }

    /// The Merkle tree and checkpoint signer.
    pub fn transparency(&self) -> &Transparency {
        &self.core.transparency
    }

    /// The registry version (log size).
    pub fn version(&self) -> u64 {
        self.core.read_registry().version()
    }

    /// The CRS.
    pub fn crs(&self) -> &Crs {
        &self.core.crs
    }

    /// Whether the CRS is an insecure development CRS.
    pub fn dev_crs(&self) -> bool {
        self.dev_crs
    }

    /// Whether registrations can be accepted (the store is writable and the
    /// state consistent with the log).
    pub fn is_healthy(&self) -> bool {
        !self.core.failed.load(Ordering::SeqCst) && !self.core.store.is_poisoned()
    }

    /// **Benchmarks only** (feature `bench-seed`): see
    /// [`Registry::bench_seed`](crate::registry::Registry::bench_seed).
    /// The Merkle tree gets one stand-in leaf per entry (its id), so that
    /// registry answers can carry checkpoints at the seeded version.
    #[cfg(feature = "bench-seed")]
    pub fn bench_seed(&self, entries: impl IntoIterator<Item = mazu_identity::RegistryEntry>) {
        let entries: Vec<_> = entries.into_iter().collect();
        for e in &entries {
            self.core
                .transparency
                .push(mazu_log::merkle::leaf_hash(e.workload_id.as_bytes()));
        }
        self.core.write_registry().bench_seed(entries);
    }

    /// Live slot reservations.
    pub fn reservations(&self) -> usize {
        self.core.lock_reservations().len()
    }

    /// `POST /v1/slots`: verifies the token and reserves (or returns the
    /// existing reservation of) a slot for its id.
    pub fn reserve_slot(&self, token: &str) -> Result<SlotGrant, ApiError> {
        let verified = self
            .core
            .trust()
            .verify_token(token.as_bytes(), now_unix())
            .map_err(|e| token_error(&e))?;
        let id = *verified.workload_id.as_bytes();
        let now = Instant::now();
        let mut reservations = self.core.lock_reservations();
        let registry = self.core.read_registry();
        if let Some(slot) = registry.slot_of(&id) {
            return Err(ApiError::AlreadyRegistered { slot });
        }
        if registry.has_claims(&verified.claims_digest) {
            return Err(ApiError::TokenAlreadyRegistered);
        }
        let capacity = registry.capacity();
        let (r, created) = reservations
            .reserve(id, now, now_unix(), capacity, |s| registry.is_free(s))
            .ok_or(ApiError::RegistryFull)?;
        Ok(SlotGrant {
            slot: r.slot,
            id,
            expires_at: r.expires_at,
            created,
            version: registry.version(),
        })
    }

    /// `POST /v1/registrations`: verifies on a blocking thread (several at
    /// once), then commits through the serialized writer.
    pub async fn register(&self, request: RegistrationRequest) -> Result<Committed, ApiError> {
        let Ok(_pending) = self.pending.clone().try_acquire_owned() else {
            self.core.metrics.refuse(ApiError::Overloaded.code());
            return Err(ApiError::Overloaded);
        };
        let verify_permit = self
            .verify
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("verify semaphore closed"))?;
        let core = self.core.clone();
        let started = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || {
            let _permit = verify_permit;
            prepare(&core, request)
        })
        .await
        .map_err(|e| ApiError::internal(format!("verification task failed: {e}")))?;
        self.core
            .metrics
            .verify_seconds
            .observe(started.elapsed().as_secs_f64());
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.core.metrics.refuse(e.code());
                return Err(e);
            }
        };
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job { prepared, reply })
            .await
            .map_err(|_| ApiError::internal("log writer stopped"))?;
        outcome
            .await
            .map_err(|_| ApiError::internal("log writer dropped a registration"))?
    }

    /// Public parameters at the current version: (version, canonical bytes
    /// or JSON).
    pub async fn params(&self, json: bool) -> Result<(u64, Bytes), ApiError> {
        let cache = if json {
            &self.caches.params_json
        } else {
            &self.caches.params_binary
        };
        let mut slot = cache.lock().await;
        let (version, pp) = {
            let registry = self.core.read_registry();
            if let Some((v, b)) = slot.as_ref().filter(|(v, _)| *v == registry.version()) {
                return Ok((*v, b.clone()));
            }
            (registry.version(), registry.rbe().public_params())
        };
        let bytes = if json {
            Bytes::from(serde_json::to_vec(&pp).map_err(ApiError::internal)?)
        } else {
            Bytes::from(pp.to_bytes())
        };
        *slot = Some((version, bytes.clone()));
        Ok((version, bytes))
    }

    /// The CRS: canonical bytes or JSON.
    pub fn crs_encoded(&self, json: bool) -> Bytes {
        if json {
            self.crs_json.clone()
        } else {
            self.crs_binary.clone()
        }
    }

    /// The full registry snapshot at the current version, encoded and
    /// hashed. Built on a blocking thread once per version.
    pub async fn snapshot(&self) -> Result<EncodedSnapshot, ApiError> {
        let mut slot = self.caches.snapshot.lock().await;
        let current = self.version();
        if let Some(cached) = slot.as_ref().filter(|s| s.version == current) {
            return Ok(cached.clone());
        }
        let core = self.core.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            // Copy the entries under the lock (a memcpy); sort and encode
            // without it, so the writer is not held up.
            let (version, entries) = {
                let registry = core.read_registry();
                (registry.version(), registry.entries().to_vec())
            };
            let snapshot = mazu_identity::RegistrySnapshot::from_entries(version, entries)
                .map_err(ApiError::internal)?;
            let bytes = snapshot.encode();
            let digest = sha2::Sha256::digest(&bytes).into();
            Ok::<_, ApiError>(EncodedSnapshot {
                version: snapshot.version(),
                bytes: Bytes::from(bytes),
                digest,
            })
        })
        .await
        .map_err(ApiError::internal)??;
        *slot = Some(encoded.clone());
        Ok(encoded)
    }

    /// The delta from `since` to version `to` (at most the current version).
    pub fn delta(&self, since: u64, to: u64) -> Result<RegistryDelta, ApiError> {
        let registry = self.core.read_registry();
        let version = registry.version();
        registry
            .delta(since, to)
            .ok_or(ApiError::VersionAhead { since, version })
    }

    /// The evidence for the registry at the current version `N`: `(N, the
    /// signed checkpoint of size N, the binary snapshot)`. The checkpoint
    /// binds the snapshot with its SHA-256 (`mazu_log::evidence`), so the
    /// curator signs which registry its log yields.
    pub async fn evidence(&self) -> Result<(u64, String, Bytes), ApiError> {
        let snapshot = self.snapshot().await?;
        let note = self
            .core
            .transparency
            .checkpoint_at(snapshot.version, &snapshot.digest)
            .map_err(ApiError::internal)?;
        Ok((snapshot.version, note, snapshot.bytes))
    }

    /// The consistency proof from tree size `from` to `to`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<mazu_log::Hash>, ApiError> {
        self.core
            .transparency
            .consistency(from, to)
            .map(|(_, _, proof)| proof)
            .map_err(|e| ApiError::InvalidParameter(e.to_string()))
    }

    /// The current opening of `slot`, whether it is registered, and the version.
    pub fn opening(&self, slot: u32) -> Result<(u64, Opening, bool), ApiError> {
        let registry = self.core.read_registry();
        let capacity = registry.capacity();
        let opening = registry
            .rbe()
            .opening(slot)
            .ok_or(ApiError::SlotOutOfRange { slot, capacity })?;
        Ok((registry.version(), opening, !registry.is_free(slot)))
    }

    /// A membership proof for `id`: (version, slot, proof).
    pub fn proof(&self, id: &WorkloadId) -> Result<(u64, u32, MembershipProof), ApiError> {
        let registry = self.core.read_registry();
        let version = registry.version();
        let slot = registry
            .slot_of(id.as_bytes())
            .ok_or(ApiError::UnknownId { version })?;
        let proof = registry
            .rbe()
            .membership_proof(slot)
            .ok_or_else(|| ApiError::internal(format!("registered slot {slot} has no proof")))?;
        Ok((version, slot, proof))
    }

    /// Raw log entries `[start, start + limit)` and the log size.
    pub async fn log_range(
        &self,
        start: u64,
        limit: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), ApiError> {
        let store = self.core.store.clone();
        let size = self.version();
        let entries = tokio::task::spawn_blocking(move || store.read_range(start, limit))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Ok((size, entries))
    }

    /// Replaces the token policy (a JWKS refresh). Requests already past the
    /// token check keep the policy they were checked with.
    pub fn set_trust(&self, trust: TrustConfig) {
        *self
            .core
            .trust
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(trust);
    }

    /// Writes a state snapshot now (blocking; the clean-shutdown snapshot),
    /// unless snapshots are off, the state disagrees with the log, or one of
    /// this version exists. Returns the bytes written.
    pub fn snapshot_now(&self) -> std::io::Result<usize> {
        let Some(snapshots) = &self.core.snapshots else {
            return Ok(0);
        };
        if self.core.failed.load(Ordering::SeqCst) {
            return Ok(0);
        }
        // Clone under the lock (a memory copy), encode and write without it.
        let state = self.core.read_registry().rbe().clone();
        snapshots.write_now(&state)
    }

    /// Whether a background snapshot write is running.
    pub fn snapshot_in_progress(&self) -> bool {
        self.core.snapshots.as_ref().is_some_and(|s| s.is_busy())
    }

    /// Stops the writer after the queued registrations (call after the HTTP
    /// server has stopped).
    pub fn shutdown(self) {
        let Self { jobs, writer, .. } = self;
        drop(jobs);
        let handle = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The Merkle tree over the leaf hashes of the first `size` log entries.
fn merkle_tree(store: &dyn LogStore, size: u64) -> Result<MerkleTree, OpenError> {
    let mut tree = MerkleTree::new();
    while tree.len() < size {
        let chunk = store.read_range(tree.len(), 256)?;
        if chunk.is_empty() {
            break;
        }
        for bytes in chunk
            .iter()
            .take(usize::try_from(size - tree.len()).unwrap_or(usize::MAX))
        {
            tree.push(crate::entry::LogEntry::leaf_hash(bytes));
        }
    }
    Ok(tree)
}

/// Replays the log entries from `start` on into `registry` with every check;
/// returns the log size replayed to.
fn replay_from(
    registry: &mut Registry,
    store: &Arc<dyn LogStore>,
    start: u64,
) -> Result<u64, OpenError> {
    let total = store.len();
    // Decoding an entry (every point subgroup-checked) costs about as much
    // as verifying it: decode on a second thread while this one verifies
    // and applies, in log order.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, EntryFacts), OpenError>>(64);
    let decode_store = store.clone();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut index = start;
            while index < total {
                let chunk = match decode_store.read_range(index, 64) {
                    Ok(c) if !c.is_empty() => c,
                    Ok(_) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                for bytes in chunk {
                    let item = EntryFacts::from_entry_bytes(&bytes)
                        .map(|f| (index, f))
                        .map_err(|e| OpenError::Replay {
                            index,
                            error: e.into(),
                        });
                    if tx.send(item).is_err() {
                        return; // the verifier stopped on an error
                    }
                    index += 1;
                }
            }
        });
        let mut applied = start;
        for item in rx {
            let (index, facts) = item?;
            registry
                .replay_facts(&facts)
                .map_err(|error| OpenError::Replay { index, error })?;
            applied = index + 1;
            if applied.is_multiple_of(1000) {
                tracing::info!(replayed = applied, total, "replaying the log");
            }
        }
        Ok::<u64, OpenError>(applied)
    })
}

/// The order-independent checks, cheapest first. Runs on a blocking thread.
fn prepare(core: &Core, request: RegistrationRequest) -> Result<Prepared, ApiError> {
    // Cheapest first: the JSON shape, then one token signature and the state
    // lookups, and only then the curve points (subgroup checks) and pairings.
    let register::Prechecked { id, slot } =
        register::precheck(&request, core.crs.capacity(), core.crs.block_size())?;
    let verified = register::check_token(&core.trust(), request.token.as_bytes(), &id, now_unix())?;
    core.read_registry()
        .check_fresh(&id, &verified.claims_digest, slot)
        .map_err(|c| conflict_error(&c))?;
    if core
        .lock_reservations()
        .reserved_for_other(slot, &id, Instant::now())
    {
        return Err(ApiError::SlotReserved(slot));
    }
    let register::Decoded {
        token,
        registration,
        spki,
        signature,
    } = register::decode(request)?;
    if registration.id != id || registration.slot != slot {
        return Err(ApiError::internal(
            "decoded registration differs from its pre-checked id or slot",
        ));
    }
    register::finish(&core.crs, &verified, token, registration, spki, signature)
}
