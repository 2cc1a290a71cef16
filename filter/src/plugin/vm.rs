//! State shared by the root context and the connections of one VM, and the
//! bookkeeping every decision goes through (metrics and the denial log line).

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;

use proxy_wasm::types::{Bytes, MetricType};

use crate::cache::CertDigest;
use crate::config::Direction;
use crate::engine::{Decision, Engine, HeldRegistry};
use crate::metrics::{self, Fixed};
use crate::parking::ParkingLot;
use crate::shared::{Found, SharedKeys, SharedReader};
use crate::sync::FetchFailure;
use crate::transparency::AcceptedCheckpoint;

use super::host;

/// Shared handle.
pub type SharedVm = Rc<RefCell<Vm>>;

/// What a parked connection keeps for the root to decide it later.
pub struct ParkedPeer {
    /// The PEM peer certificate.
    pub certificate: Bytes,
    /// Envoy's digest of it, if it gave one.
    pub digest: Option<CertDigest>,
}

/// How the root settled a parked connection; read by the connection at its
/// next event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Resumed.
    Allowed,
    /// Closed.
    Denied,
}

/// Metric ids of one VM.
pub struct Metrics {
    direction: Direction,
    fixed: [Option<u32>; Fixed::ALL.len()],
    denied: BTreeMap<&'static str, Option<u32>>,
    fetch_failures: BTreeMap<&'static str, Option<u32>>,
}

impl Metrics {
    /// Defines the fixed metrics and the fetch-failure counters. Deny reasons
    /// are defined at their first use.
    pub fn define(direction: Direction) -> Metrics {
        let mut fixed = [None; Fixed::ALL.len()];
        for metric in Fixed::ALL {
            let kind = if metric.is_gauge() {
                MetricType::Gauge
            } else {
                MetricType::Counter
            };
            fixed[metric.index()] =
                host::define_metric(kind, &metrics::name(direction, metric.suffix()));
        }
        let fetch_failures = FetchFailure::ALL_NAMES
            .iter()
            .map(|kind| {
                let name = metrics::fetch_failure_name(direction, kind);
                (*kind, host::define_metric(MetricType::Counter, &name))
            })
            .collect();
        Metrics {
            direction,
            fixed,
            denied: BTreeMap::new(),
            fetch_failures,
        }
    }

    /// Adds 1 to a fixed counter.
    pub fn increment(&self, metric: Fixed) {
        host::increment(self.fixed.get(metric.index()).copied().flatten());
    }

    /// Adds `by` to a fixed counter.
    pub fn increment_by(&self, metric: Fixed, by: u64) {
        host::increment_by(self.fixed.get(metric.index()).copied().flatten(), by);
    }

    /// Sets a fixed gauge.
    pub fn record(&self, metric: Fixed, value: u64) {
        host::record(self.fixed.get(metric.index()).copied().flatten(), value);
    }

    /// Adds 1 to `denied.<reason>` (defining it on first use).
    pub fn increment_denied(&mut self, reason: &'static str) {
        let direction = self.direction;
        let id = *self.denied.entry(reason).or_insert_with(|| {
            host::define_metric(
                MetricType::Counter,
                &metrics::denied_name(direction, reason),
            )
        });
        host::increment(id);
    }

    /// Adds 1 to `registry_fetch_failures` and to its kind.
    pub fn increment_fetch_failure(&mut self, failure: &FetchFailure) {
        self.increment(Fixed::RegistryFetchFailures);
        let direction = self.direction;
        let kind = failure.as_str();
        let id = *self.fetch_failures.entry(kind).or_insert_with(|| {
            host::define_metric(
                MetricType::Counter,
                &metrics::fetch_failure_name(direction, kind),
            )
        });
        host::increment(id);
    }
}

/// Everything one VM shares between its root context and its connections.
pub struct Vm {
    /// Decision state.
    pub engine: Engine,
    /// Connections waiting for the first registry.
    pub lot: ParkingLot<ParkedPeer>,
    /// Parked connections the root decided, until the connection looks.
    pub settled: BTreeMap<u32, Settled>,
    /// Metric ids.
    pub metrics: Metrics,
    /// Where the registry copy lives in shared data.
    pub keys: SharedKeys,
    /// Whether the proxy was found to lack the `peer_certificate` attribute
    /// (logged once, loudly).
    pub reported_missing_attribute: bool,
    /// The engine's counts already added to the metrics: token signatures
    /// verified here, signatures and whole verdicts vouched for by the validator.
    pub vouch_counts: [u64; 3],
    /// What this VM has read from shared data.
    pub reader: SharedReader,
    /// The checkpoint of the registry installed (from the log followed, or
    /// verified from shared data).
    pub held: Option<AcceptedCheckpoint>,
}

/// Installs a newer registry from shared data, if a root context (of this or
/// another VM) published one, after verifying it ([`crate::shared`]);
/// records a verified confirmation of the held one. Returns whether a new
/// registry was installed.
pub fn load_shared(vm: &SharedVm) -> bool {
    let found = {
        let mut guard = vm.borrow_mut();
        let Vm {
            engine,
            keys,
            reader,
            held,
            ..
        } = &mut *guard;
        reader.poll(&host::HostShared, keys, &engine.config().curator, *held)
    };
    match found {
        Found::Nothing => false,
        Found::Confirmed(checkpoint) => {
            vm.borrow_mut().engine.confirm(checkpoint.witnessed_ms);
            false
        }
        Found::Newer {
            registry,
            checkpoint,
        } => {
            let entries = registry.len();
            let held = HeldRegistry::Shared {
                registry,
                store: Rc::new(host::HostShared),
            };
            let mut guard = vm.borrow_mut();
            guard.held = Some(checkpoint);
            let installed = guard.engine.install(held, checkpoint.witnessed_ms);
            guard.metrics.increment(Fixed::SharedInstalls);
            if installed {
                host::info(&format!(
                    "mazu-filter: registry version {} ({entries} entries) in shared data, \
                     verified against the witnessed checkpoint; read in place",
                    checkpoint.size
                ));
            }
            installed
        }
        Found::Refused(refusal) => {
            vm.borrow().metrics.increment(Fixed::SharedRefused);
            host::error(&format!(
                "mazu-filter: the registry in shared data does not verify ({refusal}); not \
                 installed, keeping the held one (another plugin of this proxy wrote it, or a \
                 publish was overwritten)"
            ));
            false
        }
    }
}

impl Vm {
    /// Counts and logs a final decision (allow or deny; not park).
    pub fn record_decision(&mut self, decision: &Decision) {
        let (verified, vouched) = self.engine.token_signatures();
        let counts = [verified, vouched, self.engine.vouched_verdicts()];
        let metrics = [
            Fixed::TokenSignaturesVerified,
            Fixed::TokenSignaturesVouched,
            Fixed::VerdictsVouched,
        ];
        for ((metric, count), counted) in metrics.into_iter().zip(counts).zip(&self.vouch_counts) {
            self.metrics
                .increment_by(metric, count.saturating_sub(*counted));
        }
        self.vouch_counts = counts;
        let direction = self.engine.config().direction.as_str();
        match decision {
            Decision::Allow { peer, cached } => {
                self.metrics.increment(Fixed::ConnectionsAllowed);
                if *cached {
                    // The hot path: no log line (formatting it would cost
                    // more than the decision).
                    self.metrics.increment(Fixed::VerdictCacheHits);
                } else {
                    self.metrics.increment(Fixed::VerdictCacheMisses);
                    host::debug(&format!(
                        "mazu-filter: allowed {direction} connection: peer={peer}"
                    ));
                }
            }
            Decision::Deny {
                reason,
                peer,
                cached,
            } => {
                self.metrics.increment(Fixed::ConnectionsDenied);
                self.metrics.increment_denied(reason);
                if *cached {
                    self.metrics.increment(Fixed::VerdictCacheHits);
                } else if decision.ran_full_verdict() {
                    self.metrics.increment(Fixed::VerdictCacheMisses);
                }
                host::warn(&format!(
                    "mazu-filter: denied {direction} connection: reason={reason} peer={}",
                    peer.as_deref().unwrap_or("-")
                ));
            }
            Decision::Park => {}
        }
    }
}
