//! The curator itself, independent of HTTP: start-up replay, slot
//! reservations, the bind and reveal pipeline, witnessing, and the read side
//! with its per-version caches. The HTTP handlers in [`crate::api`] are thin
//! wrappers around [`Curator`].

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use mazu_identity::{TrustConfig, WorkloadId};
use mazu_log::LeafRecord;
use mazu_rbe::{Crs, MembershipProof, Opening};
use sha2::Digest as _;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::api::error::ApiError;
use crate::checkpoint::Transparency;
use crate::metrics::Metrics;
use crate::register::{self, BindingRequest, PreparedBind, RevealRequest};
use crate::registry::{ApplyError, Registry, ReplayEntry};
use crate::reservations::Reservations;
use crate::snapshot::Snapshots;
use crate::store::{LogStore, StoreError};
use crate::witnessing::{WitnessedLog, Witnessing};
use crate::writer::{self, Job, Logged, Work};

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
    /// How checkpoints get their witness cosignatures.
    pub witness: WitnessMode,
    /// Where each checkpoint is durably recorded before it is published
    /// (and so before any answer naming an index it covers):
    /// `DATA_DIR/acknowledged.checkpoint` (see [`crate::recovery`]). `None`:
    /// nothing recorded (tests, in-memory stores).
    pub acknowledged: Option<PathBuf>,
    /// Where the leaf records are kept while the curator runs (an unlinked
    /// file rebuilt from the log at every start, see
    /// [`crate::records_file`]): the data directory. `None`: the system's
    /// temporary directory (tests).
    pub records_dir: Option<PathBuf>,
    /// The curator's own releases (reveal window, expiry); `None`: it never
    /// releases on its own (holders still can). Needs a Tokio runtime.
    pub lifecycle: Option<crate::lifecycle::LifecycleOptions>,
    /// Live registrations one namespace may hold (0: no quota). A reveal
    /// beyond it is refused (`namespace_quota`); its binding is released
    /// after the reveal window.
    pub namespace_quota: usize,
    /// The latest token expiry a binding may commit to, from now (longer
    /// ones are refused: an ended id is kept until its token's expiry).
    pub max_token_lifetime: Duration,
    /// The acknowledged checkpoint's size and root (checked with the
    /// checkpoint key): the rebuilt tree must give that root at that size,
    /// or the start fails (after a start from the snapshot: the snapshot
    /// is dropped and the whole log replayed first). A store opened from
    /// the snapshot's frame layout did not check it.
    pub acknowledged_root: Option<(u64, mazu_log::Hash)>,
}

/// How checkpoints are witnessed before binds and reveals are answered.
#[derive(Debug, Clone)]
pub enum WitnessMode {
    /// **INSECURE, development only** (`--insecure-no-witness`): the
    /// curator-signed checkpoint is published at once, without any witness
    /// cosignature, so nothing stops this curator from showing different
    /// logs to different parties.
    Insecure,
    /// Submit checkpoints to witnesses and publish them once the quorum
    /// cosigned.
    Witnesses {
        /// The witness client.
        witnessing: Witnessing,
        /// Re-submit the newest checkpoint this often even if the log did
        /// not grow (fresh cosignature timestamps).
        refresh: Duration,
        /// How long a bind or reveal waits for a witnessed checkpoint
        /// covering it before answering `503 witness_unavailable`.
        wait: Duration,
    },
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
            witness: WitnessMode::Insecure,
            acknowledged: None,
            records_dir: None,
            lifecycle: None,
            namespace_quota: 0,
            max_token_lifetime: Duration::from_secs(48 * 3600),
            acknowledged_root: None,
        }
    }
}

/// What the start-up rebuild of the state did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Log entries in the state (snapshot + replayed).
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

/// The state rebuilt at start-up, before the curator serves.
struct Rebuilt {
    registry: Registry,
    transparency: Transparency,
    /// What the snapshot claimed about the prefix it covers (`None`: the
    /// whole log was replayed).
    claims: Option<crate::snapshot_start::PrefixClaims>,
    entries: u64,
    snapshot_entries: u64,
    snapshot_load: Duration,
    replay: Duration,
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
        error: ApplyError,
    },
    /// Witnessing needs a Tokio runtime to run its background task.
    #[error("witnessing needs a Tokio runtime (open the curator from within one)")]
    NoRuntime,
    /// The writer thread could not be started.
    #[error("cannot start the log writer thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The Merkle tree and its records file cannot be set up.
    #[error(transparent)]
    Transparency(#[from] crate::checkpoint::TransparencyInitError),
    /// The log's first entries are not the ones the acknowledged
    /// checkpoint commits to.
    #[error(
        "the first {size} log entries are not the ones the acknowledged checkpoint commits to \
         ({detail}). Refusing to start; nothing was changed (see docs/curator.md, \"Operations\")"
    )]
    AcknowledgedRoot {
        /// The checkpoint's size.
        size: u64,
        /// What differs.
        detail: String,
    },
}

/// A granted slot reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrant {
    /// The reserved slot.
    pub slot: u32,
    /// The workload id (SHA-256 of its token).
    pub id: [u8; 32],
    /// When the reservation lapses (Unix seconds).
    pub expires_at: u64,
    /// Whether this request created it (false: an existing one was returned).
    pub created: bool,
    /// The log size when it was granted.
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
    /// The Merkle tree over the log's records and the checkpoint signer.
    pub(crate) transparency: Arc<Transparency>,
    /// The newest witnessed checkpoint.
    pub(crate) witnessed: WitnessedLog,
    /// The log size, for the witnessing task (it wakes when it grows).
    size_tx: watch::Sender<u64>,
    /// Publish curator-signed checkpoints without witnesses.
    insecure_no_witness: bool,
    /// Live registrations per namespace (0: no quota).
    pub(crate) namespace_quota: usize,
    /// The latest token expiry a binding may commit to, from now.
    pub(crate) max_token_lifetime: Duration,
    /// Without witnesses, with an acknowledged-checkpoint file: the thread
    /// that records and publishes checkpoints (group commit).
    publisher: Option<Arc<Publisher>>,
    /// The background check of the snapshot's prefix.
    pub(crate) prefix_check: watch::Sender<crate::prefix_check::PrefixCheck>,
}

/// Hands log sizes from the writer to the publisher thread, which records
/// the newest checkpoint durably and then publishes it: one atomic write
/// covers every entry appended meanwhile, and the writer never waits for it.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    /// (size wanted, stop).
    wanted: Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
}

impl Publisher {
    fn want(&self, size: u64) {
        let mut w = self
            .wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.0 = w.0.max(size);
        self.wake.notify_one();
    }

    fn stop(&self) {
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1 = true;
        self.wake.notify_one();
    }

    /// Waits for a size above `done`; `None` once stopped or abandoned.
    fn next(self: &Arc<Self>, done: u64) -> Option<u64> {
        let mut w = self
            .wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if w.1 {
                return None;
            }
            if w.0 > done {
                return Some(w.0);
            }
            // Only this thread holds the publisher any more: the curator is
            // gone.
            if Arc::strong_count(self) == 1 {
                return None;
            }
            w = self
                .wake
                .wait_timeout(w, Duration::from_secs(1))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// The publisher thread (see [`Publisher`]): signs the checkpoint of the
/// newest size, records it, then publishes it. A failed record is retried;
/// meanwhile binds and reveals wait (and time out as `witness_unavailable`),
/// never answered with an index that was not recorded.
fn publish_loop(
    publisher: &Arc<Publisher>,
    transparency: &Transparency,
    witnessed: &WitnessedLog,
    recorder: &crate::recovery::AckRecorder,
    start: u64,
) {
    let mut done = None::<u64>;
    let mut next = Some(start);
    while let Some(wanted) = next {
        // The newest size, at least the one wanted: only it has a state.
        let (size, note) = match transparency.sign_latest() {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(error = %e, size = wanted, "cannot sign a checkpoint");
                std::thread::sleep(Duration::from_secs(1));
                next = publisher.next(done.unwrap_or(0));
                continue;
            }
        };
        if let Err(e) = recorder.record(size, &note) {
            tracing::error!(
                error = %e,
                size,
                path = %recorder.path().display(),
                "cannot record the acknowledged checkpoint; not publishing it (binds and \
                 reveals wait), retrying"
            );
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        witnessed.publish(size, note);
        done = Some(size);
        next = publisher.next(size);
    }
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

    /// Everything a state snapshot keeps, copied at one log size (the
    /// registry, the tree and the store agree on it: the writer changes
    /// them one after the other, so a copy is retried until they do).
    /// `None` if they never agree or the tree has no follower state.
    pub(crate) fn capture(&self) -> Option<crate::snapshot::Capture> {
        for _ in 0..200 {
            {
                let registry = self.read_registry();
                let size = registry.size();
                let layout = match self.store.frame_layout(size) {
                    Some(layout) => Some(layout),
                    // A store without a byte layout (in memory).
                    None if self.store.len() == size => Some(crate::store::FrameLayout::default()),
                    None => None,
                };
                if let (Some(layout), Some((follower, chunk_roots, tail))) =
                    (layout, self.transparency.capture(size))
                {
                    return Some(crate::snapshot::Capture {
                        entries: size,
                        rbe: registry.rbe().clone(),
                        follower,
                        identity: registry.identity_image(),
                        chunk_bits: crate::checkpoint::CHUNK_BITS,
                        chunk_roots,
                        tail,
                        layout,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::warn!("no consistent copy of the state for a snapshot; none written");
        None
    }

    /// The background check refuted what was restored from the snapshot:
    /// accept nothing more, serve nothing from it, and move the snapshot
    /// aside (kept as evidence) so that the next start replays the whole
    /// log with every check.
    pub(crate) fn refute(&self, difference: &str) {
        self.failed.store(true, Ordering::SeqCst);
        self.transparency.refute();
        let moved = self.snapshots.as_ref().map(|s| s.retire(now_unix()));
        let moved_to = match &moved {
            Some(Ok(Some(path))) => path.display().to_string(),
            Some(Ok(None)) | None => "(no snapshot file)".into(),
            Some(Err(e)) => format!("(cannot move it aside: {e}; delete it before restarting)"),
        };
        tracing::error!(
            difference,
            snapshot_moved_to = %moved_to,
            "the log prefix the state snapshot covers does not give what the snapshot claimed: \
             the state restored from it is not trusted (no registration is accepted, nothing is \
             served, /readyz fails). Restart the curator: the next start replays the whole log \
             with every check"
        );
        self.prefix_check
            .send_replace(crate::prefix_check::PrefixCheck::Refuted(
                difference.to_owned(),
            ));
    }

    /// The log grew to `size`: without witnesses, publish its checkpoint at
    /// once; with them, wake the witnessing task.
    pub(crate) fn grew(&self, size: u64) {
        if let Some(publisher) = &self.publisher {
            publisher.want(size);
        } else if self.insecure_no_witness {
            match self.transparency.sign_latest() {
                Ok((signed, note)) => self.witnessed.publish(signed, note),
                Err(e) => tracing::error!(error = %e, size, "cannot sign a checkpoint"),
            }
        } else {
            self.size_tx.send_replace(size);
        }
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

/// The derived registry of one version (live and revoked ids), encoded, with
/// its SHA-256: both computed once per version. Operators' view only: it is
/// not signed, and verifiers derive it from the witnessed records.
#[derive(Clone, Debug)]
pub struct EncodedSnapshot {
    /// The log size it reflects.
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
    /// The witnessing task, if witnesses are configured.
    witness_task: Option<tokio::task::JoinHandle<()>>,
    /// The lifecycle task (due releases), if configured.
    lifecycle_task: Option<tokio::task::JoinHandle<()>>,
    /// How long binds and reveals wait for a witnessed checkpoint.
    witness_wait: Duration,
    /// The curator's own releases, if on (for `registry_full`'s hint).
    lifecycle: Option<crate::lifecycle::LifecycleOptions>,
}

impl Curator {
    /// Rebuilds the state over `crs` from `store` (blocking: run it on a
    /// blocking thread, inside a Tokio runtime when witnesses are
    /// configured) and starts the writer and the witnessing task. With
    /// snapshots on, a valid snapshot that matches the log prefix replaces
    /// the replay of that prefix (see [`crate::snapshot`]); otherwise every
    /// entry is replayed.
    pub fn open(
        crs: Crs,
        trust: TrustConfig,
        store: Arc<dyn LogStore>,
        metrics: Arc<Metrics>,
        options: &CuratorOptions,
    ) -> Result<(Self, ReplayReport), OpenError> {
        let started = Instant::now();
        let origin = options
            .checkpoint_origin
            .clone()
            .unwrap_or_else(|| crate::checkpoint::default_origin(&crs.digest()));
        let key = options.checkpoint_key.unwrap_or_else(|| {
            let mut k = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
            k
        });
        let records_dir = options
            .records_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let new_tree = || Transparency::new(&origin, &key, &records_dir);
        let mut snapshot_refused = None;
        let mut restored = None;
        let load_started = Instant::now();
        if let Some(opts) = &options.snapshot {
            match crate::snapshot_start::load(
                &opts.path,
                &crs,
                &store,
                crate::checkpoint::CHUNK_BITS,
            ) {
                Ok(r) => restored = r,
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
        let snapshot_load = load_started.elapsed();
        let mut from_snapshot = restored.is_some();
        let restored_tree = |tree, follower| {
            Transparency::restored(&origin, &key, &records_dir, tree, follower, store.clone())
        };
        // The snapshot is dropped: the whole log decides.
        let replay_all = |reason: &str| {
            tracing::warn!(
                reason = %reason,
                "state snapshot not used; replaying the whole log (the log is \
                 authoritative, this only costs start-up time)"
            );
            rebuild(
                &crs,
                &store,
                None,
                snapshot_load,
                &|_, _| new_tree(),
                &new_tree,
            )
        };
        let mut rebuilt = match rebuild(
            &crs,
            &store,
            restored,
            snapshot_load,
            &restored_tree,
            &new_tree,
        ) {
            Ok(rebuilt) => rebuilt,
            // The entries after the prefix do not replay on the snapshot's
            // state: the snapshot or the log is wrong. The whole log
            // decides (it replays, or the start fails on its own error).
            Err(e @ OpenError::Replay { .. }) if from_snapshot => {
                let reason =
                    format!("the entries after the snapshot's prefix do not replay on it: {e}");
                let rebuilt = replay_all(&reason)?;
                snapshot_refused = Some(reason);
                from_snapshot = false;
                rebuilt
            }
            Err(e) => return Err(e),
        };
        // The tree must give the acknowledged checkpoint's root; after a
        // start from the snapshot, that pins the snapshot's chunk roots below
        // that size to a signed root, and the chunks from there to the end
        // of the snapshot's prefix are checked against the log's records
        // (normally the last one: the acknowledged checkpoint covers the
        // snapshot's prefix but for the entries of the last moments). Only
        // then is anything served from the snapshot's tree. If either check
        // fails, the snapshot is dropped and the whole log replayed.
        if from_snapshot
            && let Some(reason) = snapshot_tree_problem(&rebuilt, options.acknowledged_root)
        {
            rebuilt = replay_all(&reason)?;
            snapshot_refused = Some(reason);
        }
        if let Some((size, root)) = options.acknowledged_root
            && let Some(detail) = root_differs(&rebuilt.transparency, size, &root)
        {
            return Err(OpenError::AcknowledgedRoot { size, detail });
        }
        let Rebuilt {
            registry,
            transparency,
            claims,
            entries: index,
            snapshot_entries,
            snapshot_load,
            replay,
        } = rebuilt;
        let report = ReplayReport {
            entries: index,
            elapsed: started.elapsed(),
            snapshot_entries,
            snapshot_load,
            snapshot_refused,
            replayed_entries: index - snapshot_entries,
            replay,
        };
        metrics
            .log_entries
            .set(i64::try_from(index).unwrap_or(i64::MAX));
        metrics.replay_seconds.set(report.elapsed.as_secs_f64());
        let snapshots = options
            .snapshot
            .as_ref()
            .map(|o| Arc::new(Snapshots::new(o.path.clone(), o.every, snapshot_entries)));

        let transparency = Arc::new(transparency);

        let crs_binary = Bytes::from(crs.to_bytes());
        let crs_json = Bytes::from(serde_json::to_vec(&crs).map_err(std::io::Error::other)?);
        let insecure_no_witness = matches!(options.witness, WitnessMode::Insecure);
        let (size_tx, size_rx) = watch::channel(index);
        let (prefix_check, _) = watch::channel(if claims.is_some() {
            crate::prefix_check::PrefixCheck::Running
        } else {
            crate::prefix_check::PrefixCheck::NotNeeded
        });
        let recorder = options
            .acknowledged
            .as_ref()
            .map(|p| Arc::new(crate::recovery::AckRecorder::new(p.clone(), 0)));
        let publisher =
            (insecure_no_witness && recorder.is_some()).then(|| Arc::new(Publisher::default()));
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
            witnessed: WitnessedLog::new(),
            size_tx,
            insecure_no_witness,
            publisher: publisher.clone(),
            namespace_quota: options.namespace_quota,
            max_token_lifetime: options.max_token_lifetime,
            prefix_check,
        });
        if let Some(claims) = claims {
            spawn_prefix_check(core.clone(), claims)?;
        }
        let (witness_task, witness_wait) = match &options.witness {
            WitnessMode::Insecure => {
                if let (Some(publisher), Some(recorder)) = (publisher, recorder.clone()) {
                    let transparency = core.transparency.clone();
                    let witnessed = core.witnessed.clone();
                    std::thread::Builder::new()
                        .name("checkpoint-publisher".into())
                        .spawn(move || {
                            publish_loop(&publisher, &transparency, &witnessed, &recorder, index);
                        })?;
                } else {
                    core.grew(index);
                }
                (None, Duration::from_secs(5))
            }
            WitnessMode::Witnesses {
                witnessing,
                refresh,
                wait,
            } => {
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
                let task = runtime.spawn(witness_loop(
                    core.transparency.clone(),
                    core.witnessed.clone(),
                    witnessing.clone(),
                    size_rx,
                    *refresh,
                    recorder.clone(),
                ));
                (Some(task), *wait)
            }
        };
        let (tx, rx) = mpsc::channel(options.max_pending_registrations.max(1));
        let handle = writer::spawn(core.clone(), rx)?;
        let lifecycle_task = match options.lifecycle {
            Some(lifecycle) => {
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
                Some(runtime.spawn(crate::lifecycle::sweep_loop(
                    core.clone(),
                    tx.downgrade(),
                    lifecycle,
                )))
            }
            None => None,
        };
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
            witness_task,
            lifecycle_task,
            witness_wait,
            lifecycle: options.lifecycle,
        };
        Ok((curator, report))
    }

    /// The Merkle tree and checkpoint signer.
    pub fn transparency(&self) -> &Transparency {
        &self.core.transparency
    }

    /// The log size the state reflects (the "version" of every answer).
    pub fn version(&self) -> u64 {
        self.core.read_registry().size()
    }

    /// The CRS.
    pub fn crs(&self) -> &Crs {
        &self.core.crs
    }

    /// Whether the CRS is an insecure development CRS.
    pub fn dev_crs(&self) -> bool {
        self.dev_crs
    }

    /// Whether checkpoints are published without witnesses
    /// (`--insecure-no-witness`).
    pub fn insecure_no_witness(&self) -> bool {
        self.core.insecure_no_witness
    }

    /// Whether binds and reveals can be accepted (the store is writable and
    /// the state consistent with the log).
    pub fn is_healthy(&self) -> bool {
        !self.core.failed.load(Ordering::SeqCst) && !self.core.store.is_poisoned()
    }

    /// **Benchmarks only** (feature `bench-seed`): applies synthetic bind
    /// and reveal records for `(id, slot, spki_hash, token_expiry)` to the
    /// id lifecycle and the Merkle tree, without log entries or RBE keys, so
    /// that serving the registry and the records can be measured at sizes
    /// where real bindings would take hours of key generation. A curator
    /// seeded this way must not accept binds (its tree no longer matches
    /// its log).
    #[cfg(feature = "bench-seed")]
    pub fn bench_seed(&self, bindings: impl IntoIterator<Item = ([u8; 32], u32, [u8; 32], u64)>) {
        use mazu_log::record::{LeafRecord, RecordBody};
        let mut registry = self.core.write_registry();
        for (id, slot, spki_hash, token_expiry) in bindings {
            for body in [
                RecordBody::Bind {
                    slot,
                    spki_hash,
                    token_expiry,
                },
                RecordBody::Reveal { token_expiry },
            ] {
                let record = LeafRecord {
                    at_ms: 0,
                    id,
                    entry_digest: [0; 32],
                    body,
                };
                registry.bench_seed(&record);
                self.core.transparency.push(record.to_bytes());
            }
        }
    }

    /// Live slot reservations.
    pub fn reservations(&self) -> usize {
        self.core.lock_reservations().len()
    }

    /// `POST /v1/slots`: reserves (or returns the existing reservation of) a
    /// free slot for `hex_id`. No token: the id is SHA-256 of a token the
    /// curator sees only at the reveal.
    pub fn reserve_slot(&self, hex_id: &str) -> Result<SlotGrant, ApiError> {
        let id = register::parse_id("id", hex_id)?;
        let now = Instant::now();
        let mut reservations = self.core.lock_reservations();
        let registry = self.core.read_registry();
        if registry.state(&id).is_some() {
            return Err(ApiError::AlreadyRegistered {
                slot: registry.slot_of(&id),
            });
        }
        let capacity = registry.capacity();
        let (r, created) = reservations
            .reserve(id, now, now_unix(), capacity, |s| registry.is_free(s))
            .ok_or_else(|| ApiError::RegistryFull {
                retry_after_secs: self.lifecycle.and_then(|l| {
                    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    registry
                        .next_release_ms(ms(l.reveal_window), ms(l.expiry_grace))
                        .map(|due| due.saturating_sub(now_ms()).div_ceil(1000).max(1))
                }),
            })?;
        Ok(SlotGrant {
            slot: r.slot,
            id,
            expires_at: r.expires_at,
            created,
            version: registry.size(),
        })
    }

    /// `POST /v1/bindings`: verifies on a blocking thread (several at once),
    /// commits through the serialized writer, then waits for a witnessed
    /// checkpoint covering the entry. Returns the entry and that checkpoint.
    pub async fn bind(&self, request: BindingRequest) -> Result<(Logged, String), ApiError> {
        let Ok(pending) = self.pending.clone().try_acquire_owned() else {
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
            prepare_bind(&core, request)
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
        let logged = self.commit(Work::Bind(Box::new(prepared))).await?;
        drop(pending);
        self.witnessed(logged).await
    }

    /// `POST /v1/bindings/{id}/reveal`: verifies the token (SHA-256 = id,
    /// issuer, audience, namespace scope, times), commits the reveal, then
    /// waits for a witnessed checkpoint covering it.
    pub async fn reveal(
        &self,
        hex_id: &str,
        request: RevealRequest,
    ) -> Result<(Logged, String), ApiError> {
        let prepared =
            match register::prepare_reveal(&self.core.trust(), hex_id, request, now_unix()) {
                Ok(p) => p,
                Err(e) => {
                    self.core.metrics.refuse(e.code());
                    return Err(e);
                }
            };
        let logged = self.commit(Work::Reveal(prepared)).await?;
        self.witnessed(logged).await
    }

    /// `POST /v1/bindings/{id}/release` and `.../revoke`: the holder ends
    /// its binding with a signature by the bound TLS key
    /// ([`crate::holder`]); the slot is free once the entry is logged. A
    /// repeat of what was already done answers with that entry. Waits for a
    /// witnessed checkpoint covering it.
    pub async fn end_by_holder(
        &self,
        hex_id: &str,
        action: crate::holder::HolderAction,
        request: crate::api::views::HolderRequest,
    ) -> Result<(Logged, String), ApiError> {
        let result = async {
            let id = register::parse_id("id", hex_id).map_err(|_| {
                ApiError::InvalidParameter("id must be 64 hexadecimal digits".into())
            })?;
            let signature = register::holder_signature(&request.signature)?;
            let body = match action {
                crate::holder::HolderAction::Release => crate::entry::EntryBody::Release {
                    reason: mazu_log::record::ReleaseReason::Holder,
                    signature,
                },
                crate::holder::HolderAction::Revoke => {
                    crate::entry::EntryBody::Revoke { signature }
                }
            };
            let core = self.core.clone();
            let prepared =
                tokio::task::spawn_blocking(move || crate::lifecycle::prepare_end(&core, id, body))
                    .await
                    .map_err(|e| ApiError::internal(format!("release task failed: {e}")))?;
            match prepared {
                Ok(prepared) => self.commit(Work::End(Box::new(prepared))).await,
                // The writer answers a repeat with the entry that did it;
                // outside the writer only a state check can see it.
                Err(ApiError::BindingEnded) => self.repeated_end(&id, action),
                Err(e) => Err(e),
            }
        }
        .await;
        let logged = match result {
            Ok(logged) => logged,
            Err(e) => {
                self.core.metrics.refuse(e.code());
                return Err(e);
            }
        };
        self.core.metrics.released(action.as_str(), logged.created);
        self.witnessed(logged).await
    }

    /// The entry that already did what a holder asks again, if it did.
    fn repeated_end(
        &self,
        id: &[u8; 32],
        action: crate::holder::HolderAction,
    ) -> Result<Logged, ApiError> {
        let revoke = action == crate::holder::HolderAction::Revoke;
        let index = self.core.read_registry().holder_end_of(id, revoke);
        match index {
            Some(index) => writer::already(&self.core, index),
            None => Err(ApiError::BindingEnded),
        }
    }

    async fn commit(&self, work: Work) -> Result<Logged, ApiError> {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job { work, reply })
            .await
            .map_err(|_| ApiError::internal("log writer stopped"))?;
        outcome
            .await
            .map_err(|_| ApiError::internal("log writer dropped an entry"))?
    }

    /// Waits for a witnessed checkpoint covering `logged`.
    async fn witnessed(&self, logged: Logged) -> Result<(Logged, String), ApiError> {
        match self
            .core
            .witnessed
            .wait_covering(logged.index, self.witness_wait)
            .await
        {
            Ok((_, note)) => Ok((logged, note)),
            Err(e) => {
                tracing::warn!(
                    index = logged.index,
                    waited_ms = u64::try_from(e.waited.as_millis()).unwrap_or(u64::MAX),
                    "no witnessed checkpoint covers the entry yet; answering witness_unavailable"
                );
                let err = ApiError::WitnessUnavailable {
                    index: logged.index,
                    retry_after_secs: self.witness_wait.as_secs().clamp(1, 30),
                };
                self.core.metrics.refuse(err.code());
                Err(err)
            }
        }
    }

    /// The newest witnessed checkpoint: (size, note with the cosignatures).
    pub fn checkpoint(&self) -> Result<(u64, String), ApiError> {
        self.core
            .witnessed
            .latest()
            .ok_or(ApiError::NoWitnessedCheckpoint)
    }

    /// The newest witnessed checkpoint, shared (tests and wiring wait on it).
    pub fn witnessed_log(&self) -> &WitnessedLog {
        &self.core.witnessed
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
            if let Some((v, b)) = slot.as_ref().filter(|(v, _)| *v == registry.size()) {
                return Ok((*v, b.clone()));
            }
            (registry.size(), registry.rbe().public_params())
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

    /// The derived registry (live and revoked ids) at the current version,
    /// encoded and hashed, once per version. For operators: not signed.
    pub async fn snapshot(&self) -> Result<EncodedSnapshot, ApiError> {
        let mut slot = self.caches.snapshot.lock().await;
        let current = self.version();
        if let Some(cached) = slot.as_ref().filter(|s| s.version == current) {
            return Ok(cached.clone());
        }
        let core = self.core.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let snapshot = core.read_registry().snapshot();
            let bytes = snapshot.encode();
            let digest = sha2::Sha256::digest(&bytes).into();
            EncodedSnapshot {
                version: snapshot.version(),
                bytes: Bytes::from(bytes),
                digest,
            }
        })
        .await
        .map_err(ApiError::internal)?;
        *slot = Some(encoded.clone());
        Ok(encoded)
    }

    /// The consistency proof from tree size `from` to `to`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<mazu_log::Hash>, ApiError> {
        self.core
            .transparency
            .consistency(from, to)
            .map(|(_, _, proof)| proof)
            .map_err(|e| ApiError::InvalidParameter(e.to_string()))
    }

    /// The current opening of `slot`, whether it holds a binding, and the
    /// version.
    pub fn opening(&self, slot: u32) -> Result<(u64, Opening, bool), ApiError> {
        let registry = self.core.read_registry();
        let capacity = registry.capacity();
        let opening = registry
            .rbe()
            .opening(slot)
            .ok_or(ApiError::SlotOutOfRange { slot, capacity })?;
        Ok((registry.size(), opening, !registry.is_free(slot)))
    }

    /// A membership proof for a bound or live `id`: (version, slot, proof).
    pub fn proof(&self, id: &WorkloadId) -> Result<(u64, u32, MembershipProof), ApiError> {
        let registry = self.core.read_registry();
        let version = registry.size();
        let slot = registry
            .slot_of(id.as_bytes())
            .ok_or(ApiError::UnknownId { version })?;
        let proof = registry
            .rbe()
            .membership_proof(slot)
            .ok_or_else(|| ApiError::internal(format!("bound slot {slot} has no proof")))?;
        Ok((version, slot, proof))
    }

    /// Raw log entries `[start, start + limit)` with their records, and the
    /// log size.
    pub async fn log_range(
        &self,
        start: u64,
        limit: usize,
    ) -> Result<(u64, Vec<(Vec<u8>, Vec<u8>)>), ApiError> {
        let store = self.core.store.clone();
        let transparency = self.core.transparency.clone();
        let size = transparency.size();
        tokio::task::spawn_blocking(move || {
            let entries = store.read_range(start, limit).map_err(ApiError::internal)?;
            let end = start.saturating_add(entries.len() as u64);
            // An entry appended but not yet in the tree is left for the next
            // page (the tree follows the store within one commit).
            let records = transparency
                .records_each(start, end)
                .map_err(ApiError::internal)?;
            Ok((size, entries.into_iter().zip(records).collect()))
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// Records `start..min(end, size, start + 16384)` concatenated: (log
    /// size, count, bytes). `start > size` is `out_of_range`.
    pub async fn records(&self, start: u64, end: u64) -> Result<(u64, u64, Vec<u8>), ApiError> {
        let transparency = self.core.transparency.clone();
        tokio::task::spawn_blocking(move || {
            let records = transparency
                .records(start, end)
                .map_err(ApiError::internal)?;
            records.ok_or_else(|| {
                ApiError::OutOfRange(format!(
                    "start {start} is beyond the log size {}",
                    transparency.size()
                ))
            })
        })
        .await
        .map_err(ApiError::internal)?
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
        // Copied under the lock (a memory copy), encoded and written
        // without it.
        match self.core.capture() {
            Some(capture) => snapshots.write_now(&capture),
            None => Ok(0),
        }
    }

    /// The background check of the snapshot's prefix: where it stands, and
    /// a receiver that sees it change.
    pub fn prefix_check(&self) -> watch::Receiver<crate::prefix_check::PrefixCheck> {
        self.core.prefix_check.subscribe()
    }

    /// What the background check found wrong with the state restored from
    /// the snapshot, if it refuted it.
    pub fn refuted(&self) -> Option<String> {
        match &*self.core.prefix_check.borrow() {
            crate::prefix_check::PrefixCheck::Refuted(what) => Some(what.clone()),
            _ => None,
        }
    }

    /// Whether a background snapshot write is running.
    pub fn snapshot_in_progress(&self) -> bool {
        self.core.snapshots.as_ref().is_some_and(|s| s.is_busy())
    }

    /// Stops the witnessing task and the writer after the queued entries
    /// (call after the HTTP server has stopped).
    pub fn shutdown(self) {
        let Self {
            core,
            jobs,
            writer,
            witness_task,
            lifecycle_task,
            ..
        } = self;
        if let Some(task) = witness_task {
            task.abort();
        }
        if let Some(task) = lifecycle_task {
            task.abort();
        }
        if let Some(publisher) = &core.publisher {
            publisher.stop();
        }
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

/// The witnessing task: whenever the log grew, and every `refresh` even if
/// not, signs the checkpoint of the current size, has the witnesses cosign
/// it, and publishes the cosigned note. A failed round is retried after a
/// second (binds and reveals keep waiting meanwhile, up to their timeout).
/// It ends when the curator is dropped (or at [`Curator::shutdown`]).
async fn witness_loop(
    transparency: Arc<Transparency>,
    witnessed: WitnessedLog,
    witnessing: Witnessing,
    mut size_rx: watch::Receiver<u64>,
    refresh: Duration,
    recorder: Option<Arc<crate::recovery::AckRecorder>>,
) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        // The sender lives in the curator's core: once it is gone, stop.
        if size_rx.has_changed().is_err() {
            return;
        }
        size_rx.mark_unchanged();
        let (size, note) = match transparency.sign_latest() {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the checkpoint to witness");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match witnessing.cosign(&note, size, transparency.as_ref()).await {
            Ok(cosigned) => {
                tracing::debug!(size, "checkpoint witnessed");
                // Recorded durably before it is published: no answer names
                // an index the next start could lose without noticing.
                if let Some(recorder) = &recorder {
                    let r = recorder.clone();
                    let note = cosigned.clone();
                    let recorded = tokio::task::spawn_blocking(move || r.record(size, &note))
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r);
                    if let Err(e) = recorded {
                        tracing::error!(
                            error = %e,
                            size,
                            path = %recorder.path().display(),
                            "cannot record the acknowledged checkpoint; not publishing it \
                             (binds and reveals wait), retrying"
                        );
                        tokio::time::sleep(RETRY.min(refresh)).await;
                        continue;
                    }
                }
                witnessed.publish(size, cosigned);
            }
            Err(e) => {
                tracing::warn!(size, error = %e, "checkpoint not witnessed; retrying");
                tokio::time::sleep(RETRY.min(refresh)).await;
                continue;
            }
        }
        if transparency.size() > size {
            continue;
        }
        // Woken by growth or the refresh interval; an error: the curator is
        // gone.
        if let Ok(Err(_)) = tokio::time::timeout(refresh, size_rx.changed()).await {
            return;
        }
    }
}

/// Rebuilds the state: from `restored` (a snapshot) and the entries after
/// it, or (`None`) by replaying every entry. `restored_tree` makes the tree
/// of a restored state, `new_tree` an empty one.
fn rebuild(
    crs: &Crs,
    store: &Arc<dyn LogStore>,
    restored: Option<crate::snapshot_start::Restored>,
    snapshot_load: Duration,
    restored_tree: &dyn Fn(
        mazu_log::chunked::ChunkedTree,
        mazu_identity::registry::LogFollower,
    ) -> Result<Transparency, crate::checkpoint::TransparencyInitError>,
    new_tree: &dyn Fn() -> Result<Transparency, crate::checkpoint::TransparencyInitError>,
) -> Result<Rebuilt, OpenError> {
    let (mut registry, transparency, claims) = match restored {
        Some(r) => (
            r.registry,
            restored_tree(r.tree, r.follower)?,
            Some(r.claims),
        ),
        None => {
            // Frames the store took from the snapshot's layout without
            // reading them are read now: the replay needs them all checked.
            store.verify_prefix()?;
            (Registry::new(crs.clone()), new_tree()?, None)
        }
    };
    let snapshot_entries = registry.size();
    let replay_started = Instant::now();
    let entries = replay_from(&mut registry, store, snapshot_entries, &mut |record| {
        transparency.push_batched(record.to_bytes());
    })?;
    // A batch the disk refused stays in memory (and is retried).
    if let Err(e) = transparency.flush() {
        tracing::warn!(error = %e, "cannot write the leaf records file; records kept in memory");
    }
    Ok(Rebuilt {
        registry,
        transparency,
        claims,
        entries,
        snapshot_entries,
        snapshot_load,
        replay: replay_started.elapsed(),
    })
}

/// Why the tree rebuilt from `rebuilt` (a snapshot's) is not to be served:
/// it does not give the acknowledged root, or the chunks after the size
/// that root pins do not hold the log's records. `None`: it may be served.
fn snapshot_tree_problem(
    rebuilt: &Rebuilt,
    acknowledged: Option<(u64, mazu_log::Hash)>,
) -> Option<String> {
    let covers = rebuilt.snapshot_entries;
    let pinned = match acknowledged {
        Some((size, root)) => {
            if let Some(detail) = root_differs(&rebuilt.transparency, size, &root) {
                return Some(format!(
                    "the snapshot's tree does not give the acknowledged checkpoint's root at size \
                     {size} ({detail})"
                ));
            }
            size.min(covers)
        }
        None => 0,
    };
    let chunk = 1u64 << crate::checkpoint::CHUNK_BITS;
    let from = pinned / chunk * chunk;
    let checked = rebuilt.transparency.records_each(from, covers);
    if from + chunk < covers {
        tracing::info!(
            from,
            to = covers,
            acknowledged = acknowledged.map(|(size, _)| size),
            "the snapshot's tree levels the acknowledged checkpoint does not pin were checked \
             against the log before serving"
        );
    }
    checked.err().map(|e| {
        format!("the snapshot's tree does not hold the log's records {from}..{covers} ({e})")
    })
}

/// What differs between the tree's root at `size` and `root` (`None`: the
/// same).
fn root_differs(transparency: &Transparency, size: u64, root: &mazu_log::Hash) -> Option<String> {
    match transparency.root(size) {
        Ok(found) if found == *root => None,
        Ok(found) => Some(format!(
            "they hash to {}, the checkpoint says {}",
            hex::encode(found),
            hex::encode(root)
        )),
        Err(e) => Some(e.to_string()),
    }
}

/// Records the background check hands to the records file at once.
const FILL_BATCH: usize = 512;

/// Starts the background check of the snapshot's prefix (see
/// [`crate::prefix_check`]): on a difference, [`Core::refute`].
fn spawn_prefix_check(
    core: Arc<Core>,
    claims: crate::snapshot_start::PrefixClaims,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("prefix-check".into())
        .spawn(move || {
            let started = Instant::now();
            // The records derived go to the file that serves the prefix's
            // records from then on (instead of deriving them again).
            let mut batch = Vec::with_capacity(FILL_BATCH);
            let mut fill = |record: &LeafRecord| {
                batch.push(record.to_bytes());
                if batch.len() == FILL_BATCH {
                    core.transparency.fill_prefix(&batch);
                    batch.clear();
                }
            };
            let outcome =
                crate::prefix_check::check(core.store.as_ref(), &core.crs, &claims, &mut fill);
            core.transparency.fill_prefix(&batch);
            match outcome {
                Ok(()) => {
                    tracing::info!(
                        entries = claims.entries,
                        check_ms = started.elapsed().as_millis() as u64,
                        "the log prefix the state snapshot covers was checked in the background: \
                         it gives what the snapshot claimed"
                    );
                    core.prefix_check
                        .send_replace(crate::prefix_check::PrefixCheck::Passed);
                }
                Err(difference) => core.refute(&difference),
            }
        })?;
    Ok(())
}

/// Replays the log entries from `start` on into `registry` with every check,
/// giving `records` each one's leaf record in log order; returns the log
/// size replayed to.
fn replay_from(
    registry: &mut Registry,
    store: &Arc<dyn LogStore>,
    start: u64,
    records: &mut dyn FnMut(&LeafRecord),
) -> Result<u64, OpenError> {
    let total = store.len();
    // Decoding a bind (every point subgroup-checked) costs about as much as
    // verifying it: decode on a second thread while this one verifies and
    // applies, in log order.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, ReplayEntry), OpenError>>(64);
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
                    let item = ReplayEntry::decode(&bytes)
                        .map(|d| (index, d))
                        .map_err(|error| OpenError::Replay { index, error });
                    if tx.send(item).is_err() {
                        return; // the verifier stopped on an error
                    }
                    index += 1;
                }
            }
        });
        let mut applied = start;
        for item in rx {
            let (index, decoded) = item?;
            let record = decoded.record;
            registry
                .replay(decoded, |bind_index| read_entry(store.as_ref(), bind_index))
                .map_err(|error| OpenError::Replay { index, error })?;
            records(&record);
            applied = index + 1;
            if applied.is_multiple_of(1000) {
                tracing::info!(replayed = applied, total, "replaying the log");
            }
        }
        Ok::<u64, OpenError>(applied)
    })
}

/// The entry at `index`, for the binding a release or revocation ends.
pub(crate) fn read_entry(store: &dyn LogStore, index: u64) -> Result<Vec<u8>, ApplyError> {
    store
        .read_range(index, 1)
        .ok()
        .and_then(|mut entries| entries.pop())
        .ok_or(ApplyError::MissingEntry(index))
}

/// The order-independent checks of a bind, cheapest first. Runs on a
/// blocking thread.
fn prepare_bind(core: &Core, request: BindingRequest) -> Result<PreparedBind, ApiError> {
    // Cheapest first: the JSON shape, id, slot and helper count; then the
    // state (a bound id with another key, a taken or reserved slot), the TLS
    // fields; and only then the curve points (subgroup checks), the proof of
    // possession over their canonical bytes, and the pairings.
    let register::Prechecked {
        id,
        slot,
        token_expiry,
    } = register::precheck(
        &request,
        core.crs.capacity(),
        core.crs.block_size(),
        register::ExpiryWindow {
            now_unix: now_unix(),
            max_lifetime_secs: core.max_token_lifetime.as_secs(),
        },
    )?;
    let (spki, _) = register::decode_tls(&request)?;
    {
        let registry = core.read_registry();
        if let Some(state) = registry.state(&id) {
            // Only the identical binding may go on (the writer answers it
            // with the logged entry); anything else is refused before any
            // point is decoded.
            let same_key = match state {
                mazu_identity::registry::derive::IdState::Bound {
                    slot: s,
                    spki_hash,
                    token_expiry: e,
                    ..
                }
                | mazu_identity::registry::derive::IdState::Live {
                    slot: s,
                    spki_hash,
                    token_expiry: e,
                    ..
                } => {
                    *s == slot
                        && *e == token_expiry
                        && *spki_hash == <[u8; 32]>::from(sha2::Sha256::digest(&spki))
                }
                _ => false,
            };
            if !same_key {
                return Err(ApiError::AlreadyRegistered {
                    slot: registry.slot_of(&id),
                });
            }
        } else {
            registry
                .check_bind(&id, slot)
                .map_err(|c| register::conflict_error(&c))?;
        }
    }
    if core
        .lock_reservations()
        .reserved_for_other(slot, &id, Instant::now())
    {
        return Err(ApiError::SlotReserved(slot));
    }
    let decoded = register::decode(request)?;
    register::finish(&core.crs, &id, decoded)
}
