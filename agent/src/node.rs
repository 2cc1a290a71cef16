//! `mazu-agent node`: one agent per pod of a node, from the kubelet's pod
//! directories, the way SPIRE's agent serves a whole node.
//!
//! A pod is served when the kubelet has written its projected
//! service-account token (with the deployment's audience, the curator's
//! `--audience`) to
//! `PODS_DIR/<pod uid>/volumes/kubernetes.io~projected/<TOKEN_VOLUME>/<TOKEN_PATH>`.
//! Each served pod gets an ordinary [`Agent`] — the same registration,
//! rotation and restore logic as `mazu-agent run` — built from one template
//! [`AgentConfig`] in which only the per-workload fields differ:
//!
//! ```text
//! token file   PODS_DIR/<uid>/volumes/kubernetes.io~projected/<TOKEN_VOLUME>/<TOKEN_PATH>
//! state dir    STATE_ROOT/<uid>/          0700 (keys, registration, status.json)
//! SDS socket   SOCKET_ROOT/<uid>/socket   the directory 0711, the socket --sds-socket-mode
//! ```
//!
//! The pod mounts `SOCKET_ROOT` with `subPathExpr: $(POD_UID)`, so it sees
//! only its own socket directory: the caller is identified by the file
//! system, and the SDS server needs no peer attestation.
//!
//! Lifecycle, checked every scan interval:
//! - token present, not served: start serving (a failed start is retried
//!   with backoff, and never touches other pods);
//! - served, token gone (the pod is terminating and its volumes are
//!   unmounted): stop that pod's agent and SDS server;
//! - pod directory gone (the kubelet removed the pod): release the pod's
//!   registrations at the curator (each signed by its TLS key, so their
//!   slots serve other pods at once), then remove the pod's state and socket
//!   directories. A state directory whose registrations could not all be
//!   released (curator unreachable) is kept and tried again at the next
//!   scan. While the pod directory exists its socket
//!   directory is never removed, because a running container's bind mount
//!   points at that very directory: a new directory at the same path would
//!   not be seen by the pod.
//!
//! A restart of the node agent restores every pod's registration from its
//! state directory (what [`Agent::new`] does), and rebinds each socket in the
//! existing directory; Envoy reconnects to the same path.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::agent::{Agent, AgentConfig};
use crate::backoff::Backoff;
use crate::error::{Error, StateError};
use crate::sds::{self, Secrets};
use crate::state::{SECRET_MODE, StateDir, ensure_private_dir, write_atomic};

/// The kubelet's pods directory.
pub const DEFAULT_PODS_DIR: &str = "/var/lib/kubelet/pods";
/// The projected volume holding the Mazu token, as the injection template names it.
pub const DEFAULT_TOKEN_VOLUME: &str = "mazu-token";
/// The token's path inside that volume.
pub const DEFAULT_TOKEN_PATH: &str = "token";
/// Where the per-pod socket directories live (mounted into pods with `subPathExpr`).
pub const DEFAULT_SOCKET_ROOT: &str = "/run/mazu/pods";
/// The socket's name inside a pod's socket directory: the name istio-agent
/// looks for in `/var/run/secrets/workload-spiffe-uds`.
pub const SOCKET_NAME: &str = "socket";
/// Mode of a pod's socket directory and of the socket root: search only, so
/// nobody but root can list which pods are on the node; the pod's container
/// reaches its socket through its own bind mount.
pub const SOCKET_DIR_MODE: u32 = 0o711;
/// The node agent's own status file in the state root (its name is not a
/// pod uid, so it is never taken for a pod's state).
pub const NODE_STATUS_FILE: &str = "node.json";
/// How long a stopping pod's SDS server may take to close its streams.
const SDS_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Retry delays for a pod whose agent could not start or stopped by itself.
const RESTART_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Who owns each pod's SDS socket (`--socket-owner UID[:GID]`): the pod's
/// proxy user (istio-proxy is 1337), so that a socket of mode 0600 admits
/// exactly that user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid, if it changes too.
    pub gid: Option<u32>,
}

impl core::str::FromStr for SocketOwner {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not UID or UID:GID (numbers)");
        let (uid, gid) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        let uid = uid.parse().map_err(|_| bad())?;
        let gid = gid.map(str::parse).transpose().map_err(|_| bad())?;
        Ok(SocketOwner { uid, gid })
    }
}

/// Everything `node` needs (the binary builds it from flags).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The settings every pod's agent shares; its `token_file`, `state_dir`,
    /// `sds_socket` and `cert_dir` are replaced per pod.
    pub template: AgentConfig,
    /// The kubelet's pods directory.
    pub pods_dir: PathBuf,
    /// Name of the pods' projected token volume.
    pub token_volume: String,
    /// Relative path of the token inside that volume.
    pub token_path: PathBuf,
    /// Parent of the per-pod state directories.
    pub state_root: PathBuf,
    /// Parent of the per-pod socket directories.
    pub socket_root: PathBuf,
    /// Owner to give each socket.
    pub socket_owner: Option<SocketOwner>,
    /// How often the pods directory is scanned.
    pub scan_interval: Duration,
}

/// `STATE_ROOT/node.json`, rewritten after every scan: which pods are
/// served, and when the node agent last completed a scan (what its liveness
/// probe, `mazu-agent node-status`, checks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// When the last scan completed, Unix seconds.
    pub updated_at: u64,
    /// Uids of the pods being served.
    pub serving: Vec<String>,
    /// Uids of pods with a token whose agent could not start (retried).
    pub retrying: Vec<String>,
}

impl NodeStatus {
    /// Reads `STATE_ROOT/node.json`, if it exists.
    pub fn read(state_root: &Path) -> Result<Option<NodeStatus>, StateError> {
        let path = state_root.join(NODE_STATUS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::corrupt(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::io("reading", &path, e)),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `name` can be a pod uid: what the kubelet names pod directories
/// (a UUID, or 32 hex digits for static pods). Anything else — `..`, a
/// dot file, a path separator — is never used to build a path.
pub fn is_pod_uid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// Whether `name` is a Kubernetes volume name (a DNS-1123 label).
fn is_volume_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `path` is relative and stays inside the volume (no `..`, no root).
fn is_inner_path(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

impl NodeConfig {
    /// Refuses settings that could build paths outside the roots.
    pub fn validate(&self) -> Result<(), Error> {
        if !is_volume_name(&self.token_volume) {
            return Err(Error::Config(format!(
                "--token-volume {:?} is not a volume name (a DNS label)",
                self.token_volume
            )));
        }
        if !is_inner_path(&self.token_path) {
            return Err(Error::Config(format!(
                "--token-path {} must be a relative path without `..`",
                self.token_path.display()
            )));
        }
        if self.scan_interval.is_zero() {
            return Err(Error::Config("--scan-interval-ms must be > 0".to_owned()));
        }
        Ok(())
    }

    /// A pod's directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir.join(uid)
    }

    /// Where the kubelet writes a pod's projected token.
    pub fn token_file(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid)
            .join("volumes")
            .join("kubernetes.io~projected")
            .join(&self.token_volume)
            .join(&self.token_path)
    }

    /// A pod's state directory.
    pub fn state_dir(&self, uid: &str) -> PathBuf {
        self.state_root.join(uid)
    }

    /// A pod's socket directory (what the pod mounts).
    pub fn socket_dir(&self, uid: &str) -> PathBuf {
        self.socket_root.join(uid)
    }

    /// A pod's SDS socket.
    pub fn socket_path(&self, uid: &str) -> PathBuf {
        self.socket_dir(uid).join(SOCKET_NAME)
    }

    /// The pod's agent configuration: the template with the per-workload
    /// fields replaced. Every other field is cloned, so a setting added to
    /// [`AgentConfig`] reaches node mode without a change here.
    pub fn pod_config(&self, uid: &str) -> AgentConfig {
        let mut config = self.template.clone();
        config.token_file = self.token_file(uid);
        config.state_dir = self.state_dir(uid);
        config.sds_socket = Some(self.socket_path(uid));
        // One directory of cert.pem/key.pem per node would mix pods.
        config.cert_dir = None;
        // The validator's registry file goes beside the pod's SDS socket,
        // under the configured file name: the proxy mounts that directory
        // where the configuration's `registry_file` says.
        if let Some(handoff) = config.validator.as_mut()
            && let Some(name) = handoff.registry_file.file_name()
        {
            handoff.registry_file = self.socket_dir(uid).join(name);
        }
        config
    }
}

/// What one scan of the pods directory found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Pods whose directory exists (valid names only).
    pub present: BTreeSet<String>,
    /// Of those, the pods whose token file exists: the ones to serve.
    pub ready: BTreeSet<String>,
}

/// Lists the pods directory. Fails if the directory cannot be read: an
/// unreadable listing must not look like "every pod is gone".
pub fn scan(config: &NodeConfig) -> Result<Scan, Error> {
    let entries = std::fs::read_dir(&config.pods_dir)
        .map_err(|e| StateError::io("listing the pods directory", &config.pods_dir, e))?;
    let mut found = Scan::default();
    for entry in entries {
        let entry =
            entry.map_err(|e| StateError::io("listing the pods directory", &config.pods_dir, e))?;
        let Some(uid) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_pod_uid(&uid) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // `metadata` follows the kubelet's `token -> ..data/token` symlink.
        if std::fs::metadata(config.token_file(&uid)).is_ok_and(|m| m.is_file()) {
            found.ready.insert(uid.clone());
        }
        found.present.insert(uid);
    }
    Ok(found)
}

/// Valid pod uids that have an entry in `root` (a missing root has none).
fn uids_in(root: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| is_pod_uid(name))
        .collect()
}

/// Creates `dir` with `mode` if missing; an existing directory (the kubelet
/// creates a missing `subPathExpr` directory itself) is kept — never
/// replaced — and given `mode`. A symlink or file there is refused.
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), StateError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StateError::io(
                "using as a directory",
                dir,
                std::io::Error::other("exists and is not a directory"),
            ));
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| StateError::io("creating directory", dir, e))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StateError::io("setting the mode of", dir, e))
}

fn remove_dir(dir: &Path) -> Result<bool, StateError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::io("removing", dir, e)),
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// One pod's running agent and SDS server.
struct PodAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PodAgent {
    /// Builds the pod's agent (restoring its registration), binds its
    /// socket, and starts both.
    fn start(uid: &str, node: &NodeConfig) -> Result<PodAgent, Error> {
        let span = info_span!("pod", uid = %uid);
        // Restoring the registration logs too: under the pod's span.
        let _entered = span.enter();
        let config = node.pod_config(uid);
        ensure_dir(&node.socket_dir(uid), SOCKET_DIR_MODE)?;
        let socket = node.socket_path(uid);
        let mode = config.sds_socket_mode;
        let (agent, secrets) = Agent::new(config)?;
        let listener = sds::bind(&socket, mode)?;
        if let Some(owner) = node.socket_owner {
            // After the mode is set: changing the mode of a file one no
            // longer owns would need CAP_FOWNER.
            std::os::unix::fs::chown(&socket, Some(owner.uid), owner.gid).map_err(|error| {
                let _ = std::fs::remove_file(&socket);
                Error::Sds {
                    path: socket.clone(),
                    error,
                }
            })?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(
            serve_pod(agent, listener, socket, secrets, stop_rx).instrument(span.clone()),
        );
        Ok(PodAgent { stop, task })
    }

    /// Stops it and waits until it stopped.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(error = %e, "a pod task failed while stopping");
        }
    }
}

/// Runs one pod's agent and SDS server until `stop`, or until either ends by
/// itself (then the other stops too, and the node restarts both later).
async fn serve_pod(
    agent: Agent,
    listener: tokio::net::UnixListener,
    socket: PathBuf,
    secrets: watch::Receiver<Arc<Secrets>>,
    stop: watch::Receiver<bool>,
) {
    info!(socket = %socket.display(), "serving the pod over SDS");
    let (inner_tx, inner_rx) = watch::channel(false);
    let mut agent_task = tokio::spawn(agent.run(stopped(inner_rx.clone())).in_current_span());
    let mut sds_task = tokio::spawn(
        sds::serve(listener, socket.clone(), secrets, stopped(inner_rx)).in_current_span(),
    );
    let (mut agent_done, mut sds_done) = (false, false);
    tokio::select! {
        () = stopped(stop) => {}
        result = &mut sds_task => {
            sds_done = true;
            match result {
                Ok(Ok(())) => error!("the pod's SDS server stopped by itself"),
                Ok(Err(e)) => error!(error = %e, "the pod's SDS server failed"),
                Err(e) => error!(error = %e, "the pod's SDS server panicked"),
            }
        }
        result = &mut agent_task => {
            agent_done = true;
            match result {
                Ok(()) => error!("the pod's agent stopped by itself"),
                Err(e) => error!(error = %e, "the pod's agent panicked"),
            }
        }
    }
    let _ = inner_tx.send(true);
    if !agent_done && let Err(e) = agent_task.await {
        error!(error = %e, "the pod's agent panicked");
    }
    if !sds_done {
        // A stream Envoy keeps open would hold graceful shutdown forever.
        match tokio::time::timeout(SDS_STOP_TIMEOUT, sds_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the pod's SDS server failed while stopping"),
            _ => {
                let _ = std::fs::remove_file(&socket);
            }
        }
    }
}

/// A pod whose agent could not start (or stopped by itself): when to try again.
struct Failure {
    backoff: Backoff,
    retry_at: Instant,
}

/// The node: the pods being served, and those waiting for a retry.
struct Node {
    config: NodeConfig,
    pods: BTreeMap<String, PodAgent>,
    failures: BTreeMap<String, Failure>,
    /// The curator, to release the registrations of removed pods.
    curator: crate::curator::CuratorClient,
    /// Removed pods whose registrations are not all released yet (their
    /// state directories are kept).
    unreleased: BTreeSet<String>,
}

impl Node {
    fn failed(&mut self, uid: &str, error: &dyn core::fmt::Display) {
        let failure = self
            .failures
            .entry(uid.to_owned())
            .or_insert_with(|| Failure {
                backoff: Backoff::new(RESTART_BACKOFF_INITIAL, RESTART_BACKOFF_MAX),
                retry_at: Instant::now(),
            });
        let delay = failure.backoff.next_delay();
        failure.retry_at = Instant::now() + delay;
        error!(
            pod = %uid,
            error = %error,
            attempt = failure.backoff.attempts(),
            retry_in_ms = delay.as_millis() as u64,
            "cannot serve the pod; retrying later (other pods are not affected)"
        );
    }

    /// Releases every accepted registration in a removed pod's state
    /// directory; true when none is left to release (released, or already
    /// ended or unknown at the curator). Otherwise the pod is remembered in
    /// `unreleased` and its directory kept for the next scan.
    async fn release_removed(&mut self, uid: &str) -> bool {
        let Ok(state) = StateDir::open_existing(self.config.state_root.join(uid)) else {
            return true;
        };
        let registrations = state.registrations().unwrap_or_default();
        let mut pending = false;
        for registration in registrations {
            let (Ok(Some(record)), Ok(Some(keys))) = (registration.record(), registration.keys())
            else {
                continue;
            };
            let outcome = self
                .curator
                .end_binding(
                    &record.id,
                    record.slot,
                    &keys.tls,
                    mazu_curator::holder::HolderAction::Release,
                )
                .await;
            match outcome {
                Ok(logged) => info!(
                    pod = %uid,
                    id = %record.id,
                    index = logged.index,
                    "released the registration of a removed pod"
                ),
                Err(crate::error::CuratorError::Refused { code, .. })
                    if code == "binding_ended" || code == "unknown_id" => {}
                Err(e) => {
                    warn!(
                        pod = %uid,
                        id = %record.id,
                        error = %e,
                        "cannot release the registration of a removed pod yet; keeping its state for the next scan"
                    );
                    pending = true;
                }
            }
        }
        if pending {
            self.unreleased.insert(uid.to_owned());
        } else {
            self.unreleased.remove(uid);
        }
        !pending
    }

    async fn stop_pod(&mut self, uid: &str, why: &str) {
        if let Some(pod) = self.pods.remove(uid) {
            pod.stop().await;
            info!(pod = %uid, why, "stopped serving the pod");
        }
    }

    /// One pass: reconcile the served pods with the pods directory.
    async fn reconcile(&mut self) {
        let found = match scan(&self.config) {
            Ok(found) => found,
            Err(e) => {
                // Keep serving what is served: no listing is no evidence.
                // node.json is not updated either: a pods directory that stays
                // unreadable makes the liveness probe fail.
                warn!(error = %e, "cannot scan the pods directory; keeping the current pods");
                return;
            }
        };
        // Pods whose agent or SDS server ended by themselves.
        let crashed: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, pod)| pod.task.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in crashed {
            self.stop_pod(&uid, "its agent or SDS server ended").await;
            self.failed(&uid, &"the pod's agent or SDS server ended by itself");
        }
        // Served pods whose token is gone.
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !found.ready.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            let why = if found.present.contains(&uid) {
                "its token is gone (the pod is terminating)"
            } else {
                "the pod is gone"
            };
            self.stop_pod(&uid, why).await;
        }
        self.failures.retain(|uid, _| found.ready.contains(uid));
        // New pods, and failed ones whose retry time has come.
        let now = Instant::now();
        for uid in &found.ready {
            if self.pods.contains_key(uid)
                || self.failures.get(uid).is_some_and(|f| f.retry_at > now)
            {
                continue;
            }
            match PodAgent::start(uid, &self.config) {
                Ok(pod) => {
                    info!(pod = %uid, token = %self.config.token_file(uid).display(), "started serving the pod");
                    self.failures.remove(uid);
                    self.pods.insert(uid.clone(), pod);
                }
                Err(e) => self.failed(uid, &e),
            }
        }
        // The state and socket directories of pods the kubelet removed; the
        // registrations first.
        for uid in uids_in(&self.config.state_root) {
            if found.present.contains(&uid) || self.pods.contains_key(&uid) {
                continue;
            }
            if !self.release_removed(&uid).await {
                continue;
            }
        }
        for (root, what) in [
            (&self.config.state_root, "state"),
            (&self.config.socket_root, "socket"),
        ] {
            for uid in uids_in(root) {
                if found.present.contains(&uid) || self.pods.contains_key(&uid) {
                    continue;
                }
                if what == "state" && self.unreleased.contains(&uid) {
                    continue;
                }
                match remove_dir(&root.join(&uid)) {
                    Ok(true) => info!(pod = %uid, what, "removed the directory of a removed pod"),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(pod = %uid, error = %e, "cannot remove the directory of a removed pod")
                    }
                }
            }
        }
        self.write_status();
    }

    fn write_status(&self) {
        let status = NodeStatus {
            updated_at: unix_now(),
            serving: self.pods.keys().cloned().collect(),
            retrying: self.failures.keys().cloned().collect(),
        };
        let path = self.config.state_root.join(NODE_STATUS_FILE);
        let result = serde_json::to_vec_pretty(&status)
            .map_err(|e| StateError::corrupt(&path, e))
            .and_then(|bytes| write_atomic(&path, &bytes, SECRET_MODE));
        if let Err(e) = result {
            warn!(error = %e, "cannot write the node status");
        }
    }

    async fn stop_all(&mut self) {
        let pods = core::mem::take(&mut self.pods);
        let stops = pods.into_iter().map(|(uid, pod)| async move {
            pod.stop().await;
            info!(pod = %uid, "stopped serving the pod (node agent shutting down)");
        });
        join_all(stops).await;
    }
}

/// Awaits every future (all run concurrently on the runtime).
async fn join_all<F>(futures: impl IntoIterator<Item = F>)
where
    F: core::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<JoinHandle<()>> = futures.into_iter().map(tokio::spawn).collect();
    for handle in handles {
        let _ = handle.await;
    }
}

/// Serves every pod of the node until `shutdown` completes, then stops every
/// pod's agent and SDS server (their state stays, for the next start).
/// Fails only on configuration problems and an unusable state or socket root.
pub async fn run(
    config: NodeConfig,
    shutdown: impl core::future::Future<Output = ()>,
) -> Result<(), Error> {
    config.validate()?;
    ensure_private_dir(&config.state_root)?;
    ensure_dir(&config.socket_root, SOCKET_DIR_MODE)?;
    info!(
        pods_dir = %config.pods_dir.display(),
        token_volume = %config.token_volume,
        state_root = %config.state_root.display(),
        socket_root = %config.socket_root.display(),
        "node agent started"
    );
    let interval = config.scan_interval;
    let curator = crate::curator::CuratorClient::new(
        &config.template.curator,
        &config.template.curator_transport,
    )?;
    let mut node = Node {
        config,
        pods: BTreeMap::new(),
        failures: BTreeMap::new(),
        curator,
        unreleased: BTreeSet::new(),
    };
    tokio::pin!(shutdown);
    loop {
        node.reconcile().await;
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    info!(pods = node.pods.len(), "stopping every pod");
    node.stop_all().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_uids() {
        assert!(is_pod_uid("0b6f7c2e-8a43-4f5e-9d1c-3c2b1a0f9e8d"));
        assert!(is_pod_uid("d41d8cd98f00b204e9800998ecf8427e"));
        for bad in [
            "",
            "..",
            ".",
            "-x",
            "a/b",
            "ABCDEF",
            "0b6f7c2e..",
            ".hidden",
            "pod uid",
        ] {
            assert!(!is_pod_uid(bad), "{bad:?}");
        }
        assert!(!is_pod_uid(&"a".repeat(65)));
    }

    #[test]
    fn socket_owner_parses() {
        assert_eq!(
            "1337".parse(),
            Ok(SocketOwner {
                uid: 1337,
                gid: None
            })
        );
        assert_eq!(
            "1337:1338".parse(),
            Ok(SocketOwner {
                uid: 1337,
                gid: Some(1338)
            })
        );
        for bad in ["", "x", "1337:", ":1", "-1", "1:2:3"] {
            assert!(bad.parse::<SocketOwner>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_pod_gets_the_registry_file_beside_its_socket() {
        let template = AgentConfig {
            curator: "http://curator".into(),
            curator_transport: mazu_service::tls::ClientTransport::InsecurePlainHttp,
            token_file: PathBuf::new(),
            state_dir: PathBuf::new(),
            trust_domain: mazu_identity::TrustDomain::new("cluster.local").expect("domain"),
            cert_dir: None,
            sds_socket: None,
            sds_socket_mode: 0o600,
            rotation_margin: Duration::from_secs(600),
            propagation_delay: Duration::ZERO,
            release_delay: Duration::ZERO,
            poll_interval: Duration::from_secs(1),
            opening_refresh: Duration::from_secs(10),
            peer_refresh: Duration::from_secs(2),
            cert_lifetime: Duration::from_secs(3600),
            crs_digest: None,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            checkpoint_key: None,
            witnesses: Vec::new(),
            witness_quorum: None,
            insecure_no_witness: true,
            validator: Some(crate::agent::ValidatorHandoff {
                config_json: "{}".into(),
                registry_file: PathBuf::from("/var/run/secrets/workload-spiffe-uds/mazu-registry"),
                trust_domain: "cluster.local".into(),
                served: None,
            }),
        };
        let node = NodeConfig {
            template,
            pods_dir: PathBuf::from("/pods"),
            token_volume: "mazu-token".into(),
            token_path: PathBuf::from("token"),
            state_root: PathBuf::from("/state"),
            socket_root: PathBuf::from("/sockets"),
            socket_owner: None,
            scan_interval: Duration::from_secs(1),
        };
        let config = node.pod_config("0b9c1e2a-1111-2222-3333-444455556666");
        let socket = config.sds_socket.expect("socket");
        let handoff = config.validator.expect("validator");
        assert_eq!(handoff.registry_file.parent(), socket.parent());
        assert_eq!(
            handoff.registry_file.file_name(),
            Some(std::ffi::OsStr::new("mazu-registry"))
        );
    }

    #[test]
    fn inner_paths_and_volume_names() {
        assert!(is_inner_path(Path::new("token")));
        assert!(is_inner_path(Path::new("a/token")));
        for bad in ["", "/token", "../token", "a/../../b", "./token"] {
            assert!(!is_inner_path(Path::new(bad)), "{bad:?}");
        }
        assert!(is_volume_name("mazu-token"));
        for bad in ["", "Mazu", "-a", "a-", "a/b", "..", "a.b"] {
            assert!(!is_volume_name(bad), "{bad:?}");
        }
    }
}
