//! What the host knows: per-VM state (contexts, properties, callouts,
//! buffers, logs) and process-wide state shared by every VM of one "Envoy"
//! (shared data and stats), as in Envoy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::abi::{LogLevel, MetricKind};

/// One stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its value (the last recorded one for a gauge, the sum for a counter).
    pub value: i64,
}

/// Shared data and stats of one proxy process, shared by all its VMs.
#[derive(Debug, Default)]
pub struct Process {
    /// key → (value, cas).
    pub shared_data: HashMap<String, (Vec<u8>, u32)>,
    /// Last CAS handed out.
    pub cas_counter: u32,
    /// Stats by name.
    pub stats: BTreeMap<String, Stat>,
}

/// A handle to a [`Process`].
#[derive(Clone, Debug, Default)]
pub struct ProcessHandle(Arc<Mutex<Process>>);

impl ProcessHandle {
    /// A fresh process.
    pub fn new() -> Self {
        ProcessHandle::default()
    }

    /// Locks it (a poisoned lock is recovered: tests report their own panics).
    pub fn lock(&self) -> MutexGuard<'_, Process> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stat's value, if defined.
    pub fn stat(&self, name: &str) -> Option<i64> {
        self.lock().stats.get(name).map(|s| s.value)
    }

    /// Every stat whose name starts with `prefix`.
    pub fn stats_with_prefix(&self, prefix: &str) -> BTreeMap<String, i64> {
        self.lock()
            .stats
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, stat)| (name.clone(), stat.value))
            .collect()
    }
}

/// One log line the guest wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Level.
    pub level: LogLevel,
    /// Text.
    pub message: String,
}

/// An HTTP callout the guest dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callout {
    /// Token returned to the guest.
    pub token: u32,
    /// Target cluster.
    pub cluster: String,
    /// Request headers (pseudo-headers included).
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Timeout the guest asked for, milliseconds.
    pub timeout_ms: u32,
}

impl Callout {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A stream operation the guest requested; carried out after the current
/// VM call returns (as Envoy does: these calls are re-entrant otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOp {
    /// `proxy_continue_stream(Downstream)`.
    ResumeDownstream(u32),
    /// `proxy_close_stream(Downstream)`.
    CloseDownstream(u32),
    /// `proxy_close_stream(Upstream)`.
    CloseUpstream(u32),
}

/// One connection as the host sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Properties by path (segments joined with `\0`, as the SDK sends them).
    pub properties: HashMap<String, Vec<u8>>,
    /// Downstream bytes held because the filter paused.
    pub held_downstream: Vec<u8>,
    /// Downstream bytes the filter let through.
    pub forwarded_downstream: Vec<u8>,
    /// Upstream bytes held because the filter paused.
    pub held_upstream: Vec<u8>,
    /// Upstream bytes the filter let through.
    pub forwarded_upstream: Vec<u8>,
    /// The filter closed the downstream connection.
    pub closed_downstream: bool,
    /// The filter closed the upstream connection.
    pub closed_upstream: bool,
    /// The filter resumed downstream reading (count).
    pub resumed: u32,
    /// The context was deleted.
    pub deleted: bool,
}

/// A callout response being delivered (valid during `proxy_on_http_call_response`).
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// Response headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// Everything one VM's host functions read and write.
#[derive(Debug)]
pub struct HostState {
    /// Shared with the other VMs of the same process.
    pub process: ProcessHandle,
    /// The VM configuration.
    pub vm_configuration: Vec<u8>,
    /// The plugin configuration.
    pub plugin_configuration: Vec<u8>,
    /// The clock, nanoseconds since the epoch.
    pub now_ns: u64,
    /// Lines logged.
    pub logs: Vec<LogLine>,
    /// Bytes written to stdout/stderr through WASI.
    pub stdio: Vec<u8>,
    /// The period the guest asked for, milliseconds (0 = none).
    pub tick_period_ms: u32,
    /// The root context id.
    pub root_context: u32,
    /// The context the host is calling into.
    pub current_context: u32,
    /// The context host calls act on (`proxy_set_effective_context`).
    pub effective_context: u32,
    /// Connections by context id.
    pub connections: BTreeMap<u32, Connection>,
    /// Clusters a callout may target (others: `BadArgument`).
    pub clusters: HashSet<String>,
    /// Callouts dispatched and not yet answered.
    pub callouts: Vec<Callout>,
    /// Every callout ever dispatched.
    pub callout_log: Vec<Callout>,
    /// Last callout token.
    pub last_token: u32,
    /// The response being delivered.
    pub delivery: Option<Delivery>,
    /// Stream operations to carry out after the current call.
    pub deferred: Vec<StreamOp>,
    /// Metric id → name, for this VM.
    pub metric_names: Vec<String>,
}

impl HostState {
    /// A VM of `process` whose callouts may target `clusters`.
    pub fn new(process: ProcessHandle, clusters: &[&str], now_ns: u64) -> Self {
        HostState {
            process,
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            now_ns,
            logs: Vec::new(),
            stdio: Vec::new(),
            tick_period_ms: 0,
            root_context: 0,
            current_context: 0,
            effective_context: 0,
            connections: BTreeMap::new(),
            clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
            callouts: Vec::new(),
            callout_log: Vec::new(),
            last_token: 0,
            delivery: None,
            deferred: Vec::new(),
            metric_names: Vec::new(),
        }
    }
}
