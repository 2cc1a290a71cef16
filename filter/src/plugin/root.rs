//! The root context: configuration, the registry (callouts, shared data)
//! and the parked connections.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use mazu_log::evidence;
use sha2::{Digest as _, Sha256};

use crate::config::{BeforeRegistry, CuratorConfig, FilterConfig};
use crate::engine::{Decision, Engine, reason};
use crate::metrics::Fixed;
use crate::parking::ParkingLot;
use crate::sync::{
    self, FetchFailure, FetchOutcome, FetchRequest, Fetcher, Lease, RegistryStatus, SharedKeys,
};
use crate::transparency::{self, AcceptedCheckpoint, CheckpointFailure, Evidence};

use super::host;
use super::stream::Stream;
use super::vm::{self, Metrics, Settled, SharedVm, Vm};

/// One plugin instance in one VM.
pub struct Root {
    context_id: u32,
    vm: Option<SharedVm>,
    keys: Option<SharedKeys>,
    /// This root's number among all roots sharing the registry (lease owner id).
    instance: u64,
    fetcher: Fetcher,
}

impl Root {
    /// A root context that refuses every connection until configured.
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            vm: None,
            keys: None,
            instance: 0,
            fetcher: Fetcher::new(),
        }
    }

    fn configure(&mut self, size: usize) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .map_err(|status| format!("cannot read the plugin configuration: {status:?}"))?
            .unwrap_or_default();
        let config = FilterConfig::parse(&bytes).map_err(|e| e.to_string())?;
        let keys = SharedKeys::new(&config.curator);
        self.instance = self.take_instance_number(&keys.instances);
        let tick = config.tick_period_ms();
        hostcalls::set_tick_period(core::time::Duration::from_millis(tick))
            .map_err(|status| format!("cannot set the tick period: {status:?}"))?;
        match &config.curator.checkpoint_key {
            Some(key) => host::info(&format!(
                "mazu-filter: registries are used only with a checkpoint by {} consistent \
                 with the last one accepted",
                key.to_vkey()
            )),
            None => host::warn(
                "mazu-filter: no curator.checkpoint_key: the curator's log is NOT held to \
                 append-only (set it to the key served at /v1/checkpoint/key)",
            ),
        }
        host::info(&format!(
            "mazu-filter: configured: direction={} curator={}{} refresh={}ms \
             before_registry={:?} when_stale={:?} max_staleness={}s tick={}ms instance={}",
            config.direction.as_str(),
            config.curator.cluster,
            config.curator.registry_path,
            config.curator.refresh_interval_ms,
            config.before_registry,
            config.when_stale,
            config.max_staleness_secs,
            tick,
            self.instance,
        ));
        let metrics = Metrics::define(config.direction);
        let max_parked = config.max_parked;
        self.vm = Some(Rc::new(RefCell::new(Vm {
            engine: Engine::new(config),
            lot: ParkingLot::new(max_parked),
            settled: BTreeMap::new(),
            metrics,
            keys: keys.clone(),
        })));
        self.keys = Some(keys);
        self.load_shared(host::now_ms());
        Ok(())
    }

    /// A unique number for this root among all VMs: a CAS-incremented counter.
    fn take_instance_number(&self, key: &str) -> u64 {
        for _ in 0..16 {
            let (value, cas) = host::shared(key);
            let next = sync::decode_counter(value.as_deref()).wrapping_add(1);
            if host::set_shared(key, &next.to_be_bytes(), cas) {
                return next;
            }
        }
        // Contended beyond reason: fall back to the context id (unique in
        // this VM); at worst two roots fetch concurrently.
        u64::from(self.context_id) | (1 << 63)
    }

    /// Installs a newer registry from shared data, if another root published one.
    fn load_shared(&mut self, now_ms: u64) {
        let Some(vm) = &self.vm else { return };
        vm::load_shared(vm);
        self.record_gauges(now_ms);
    }

    fn record_gauges(&self, now_ms: u64) {
        let Some(vm) = &self.vm else { return };
        let vm = vm.borrow();
        if let Some(registry) = vm.engine.registry() {
            vm.metrics
                .record(Fixed::RegistryVersion, registry.version());
            vm.metrics
                .record(Fixed::RegistryEntries, registry.len() as u64);
            vm.metrics.record(
                Fixed::RegistryAgeSeconds,
                vm.engine.registry_age_secs(now_ms),
            );
        }
        vm.metrics.record(Fixed::ParkedNow, vm.lot.len() as u64);
    }

    /// Takes or renews the fetch lease; true if this root holds it.
    fn hold_lease(&self, now_ms: u64, config: &FilterConfig, keys: &SharedKeys) -> bool {
        let (value, cas) = host::shared(&keys.lease);
        let current = value.as_deref().and_then(Lease::decode);
        if !Lease::may_take(current, self.instance, now_ms) {
            return false;
        }
        let ttl = 2 * config.curator.refresh_interval_ms + config.curator.timeout_ms + 1_000;
        let lease = Lease {
            owner: self.instance,
            expires_ms: now_ms.saturating_add(ttl),
        };
        host::set_shared(&keys.lease, &lease.encode(), cas)
    }

    /// Sends the next callout if one is due and this root holds the lease.
    fn maybe_fetch(&mut self, now_ms: u64) {
        let Some(vm) = self.vm.clone() else { return };
        let Some(keys) = self.keys.clone() else {
            return;
        };
        if self.fetcher.lapsed(now_ms) {
            self.fetch_failed(&FetchFailure::NoAnswer, now_ms);
        }
        let (held, config_curator) = {
            let vm = vm.borrow();
            (
                vm.engine.registry_version(),
                vm.engine.config().curator.clone(),
            )
        };
        let Some(kind) = self.fetcher.due(now_ms, held) else {
            return;
        };
        let holds = {
            let vm = vm.borrow();
            self.hold_lease(now_ms, vm.engine.config(), &keys)
        };
        if !holds {
            return;
        }
        let held_checkpoint = config_curator
            .checkpoint_key
            .as_ref()
            .and_then(|_| self.held_checkpoint(&keys))
            .map(|held| held.size);
        let request = FetchRequest::new(&config_curator, kind, held_checkpoint);
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let timeout = core::time::Duration::from_millis(config_curator.timeout_ms);
        vm.borrow().metrics.increment(Fixed::RegistryFetches);
        match hostcalls::dispatch_http_call(&config_curator.cluster, headers, None, vec![], timeout)
        {
            Ok(token) => {
                host::debug(&format!(
                    "mazu-filter: registry callout {token} sent ({kind:?})"
                ));
                self.fetcher
                    .started(token, request.kind, now_ms, &config_curator);
            }
            Err(status) => {
                host::error(&format!(
                    "mazu-filter: cannot call cluster {:?}: {status:?}",
                    config_curator.cluster
                ));
                self.fetch_failed(&FetchFailure::Dispatch, now_ms);
            }
        }
    }

    fn fetch_failed(&mut self, failure: &FetchFailure, now_ms: u64) {
        let Some(vm) = self.vm.clone() else { return };
        let mut vm = vm.borrow_mut();
        vm.metrics.increment_fetch_failure(failure);
        let have = vm.engine.registry_version();
        let curator = vm.engine.config().curator.clone();
        self.fetcher
            .finished(Some(failure), now_ms, have.is_some(), &curator);
        let held = match have {
            Some(version) => format!(
                "keeping version {version} (confirmed {} s ago)",
                vm.engine.registry_age_secs(now_ms)
            ),
            None => "no registry yet".to_owned(),
        };
        host::warn(&format!(
            "mazu-filter: registry fetch failed: {failure}; {held} ({} failures in a row)",
            self.fetcher.consecutive_failures
        ));
    }

    /// The last checkpoint accepted by any root of this Envoy.
    fn held_checkpoint(&self, keys: &SharedKeys) -> Option<AcceptedCheckpoint> {
        host::shared(&keys.checkpoint)
            .0
            .as_deref()
            .and_then(AcceptedCheckpoint::decode)
    }

    /// With a checkpoint key configured, checks the answer's evidence for the
    /// registry of `version` whose encoding hashes to `digest` (computed by
    /// `digest` only when needed); returns the checkpoint to remember
    /// (`None` without a key).
    fn check_evidence(
        &self,
        config: &CuratorConfig,
        version: u64,
        digest: impl FnOnce(Option<AcceptedCheckpoint>) -> [u8; 32],
    ) -> Result<Option<AcceptedCheckpoint>, CheckpointFailure> {
        let (Some(verifier), Some(keys)) = (&config.checkpoint_key, &self.keys) else {
            return Ok(None);
        };
        let header = |name| {
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let checkpoint = header(evidence::CHECKPOINT_HEADER);
        let consistency = header(evidence::CONSISTENCY_HEADER);
        let offered = Evidence {
            checkpoint: checkpoint.as_deref(),
            consistency: consistency.as_deref(),
        };
        let held = self.held_checkpoint(keys);
        let digest = digest(held);
        transparency::check(verifier, held, &offered, version, &digest)
            .map(Some)
            .inspect_err(|failure| {
                let held = held.map_or_else(
                    || "none".to_owned(),
                    |h| format!("size {} root {}", h.size, hex(&h.root)),
                );
                let note = checkpoint
                    .as_deref()
                    .and_then(|c| evidence::decode_note(c).ok())
                    .map(|n| String::from_utf8_lossy(&n).replace('\n', "\\n"))
                    .unwrap_or_default();
                host::error(&format!(
                    "mazu-filter: CURATOR MISBEHAVIOUR? registry version {version} refused: \
                     {failure}; accepted checkpoint: {held}; offered checkpoint: {note:?}"
                ));
            })
    }

    /// Publishes a registry this root fetched (its encoding), and the
    /// checkpoint that came with it, for the other VMs.
    fn publish(
        &self,
        encoded: Option<&[u8]>,
        checkpoint: Option<AcceptedCheckpoint>,
        version: u64,
        now_ms: u64,
    ) {
        let Some(keys) = &self.keys else { return };
        if let Some(encoded) = encoded
            && !host::set_shared(&keys.snapshot, encoded, None)
        {
            host::error("mazu-filter: cannot publish the registry in shared data");
            return;
        }
        // Before the status, so that a root that sees the new version also
        // sees the checkpoint that vouches for it.
        if let Some(checkpoint) = checkpoint
            && !host::set_shared(&keys.checkpoint, &checkpoint.encode(), None)
        {
            host::error("mazu-filter: cannot publish the accepted checkpoint in shared data");
            return;
        }
        let (value, cas) = host::shared(&keys.status);
        let published = value.as_deref().and_then(RegistryStatus::decode);
        if published.is_some_and(|p| p.version > version) {
            return; // Someone published a newer one meanwhile.
        }
        let status = RegistryStatus {
            version,
            confirmed_ms: now_ms,
        };
        if !host::set_shared(&keys.status, &status.encode(), cas) {
            host::debug("mazu-filter: registry status changed concurrently; not overwritten");
        }
    }

    fn handle_answer(&mut self, token: u32, body_size: usize) {
        let now_ms = host::now_ms();
        if !self.fetcher.is_current(token) {
            host::debug(&format!(
                "mazu-filter: ignoring answer to callout {token} (not in flight)"
            ));
            return;
        }
        let Some(vm) = self.vm.clone() else { return };
        let max_body = vm.borrow().engine.config().curator.max_body_bytes;
        // Bytes, not a `String`: the SDK's string accessors panic on non-UTF-8.
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|value| core::str::from_utf8(&value).ok()?.parse::<u16>().ok());
        let outcome = if body_size > max_body {
            FetchOutcome::Failed(FetchFailure::TooLarge(body_size))
        } else {
            let body = if body_size == 0 {
                Vec::new()
            } else {
                hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            sync::interpret(vm.borrow().engine.registry(), status, &body)
        };
        if let Err(failure) = self.apply(&vm, outcome, status, now_ms) {
            self.fetch_failed(&failure, now_ms);
        }
        self.settle_parked(now_ms);
        self.record_gauges(now_ms);
    }

    /// Installs and publishes what an answer brought, once its evidence
    /// holds; a failure leaves the registry held as it was.
    fn apply(
        &mut self,
        vm: &SharedVm,
        outcome: FetchOutcome,
        status: Option<u16>,
        now_ms: u64,
    ) -> Result<(), FetchFailure> {
        let curator = vm.borrow().engine.config().curator.clone();
        match outcome {
            FetchOutcome::Updated(snapshot) => {
                let version = snapshot.version();
                let entries = snapshot.len();
                let encoded = snapshot.encode();
                let digest = |_| Sha256::digest(&encoded).into();
                let checkpoint = self
                    .check_evidence(&curator, version, digest)
                    .map_err(FetchFailure::Checkpoint)?;
                self.publish(Some(&encoded), checkpoint, version, now_ms);
                let mut vm = vm.borrow_mut();
                vm.engine.install(snapshot, now_ms);
                vm.metrics.increment(Fixed::RegistryUpdates);
                self.fetcher.finished(None, now_ms, true, &curator);
                host::info(&format!(
                    "mazu-filter: registry version {version} ({entries} entries) from the curator"
                ));
            }
            FetchOutcome::Unchanged => {
                let version = vm.borrow().engine.registry_version().unwrap_or(0);
                // A 200 that changes nothing still carries a checkpoint: a
                // curator that forked its log at the same size is caught
                // here, before its log grows. (A 304 carries nothing.)
                let checkpoint = if status == Some(200) {
                    let digest = |held: Option<AcceptedCheckpoint>| match held {
                        Some(held) if held.size == version => held.registry,
                        _ => vm
                            .borrow()
                            .engine
                            .registry()
                            .map(|r| Sha256::digest(r.encode()).into())
                            .unwrap_or_default(),
                    };
                    self.check_evidence(&curator, version, digest)
                        .map_err(FetchFailure::Checkpoint)?
                } else {
                    None
                };
                self.publish(None, checkpoint, version, now_ms);
                let mut vm = vm.borrow_mut();
                vm.engine.confirm(now_ms);
                vm.metrics.increment(Fixed::RegistryUnchanged);
                self.fetcher.finished(None, now_ms, true, &curator);
            }
            FetchOutcome::Failed(failure) => return Err(failure),
        }
        Ok(())
    }

    /// Decides parked connections once a registry exists; closes those whose
    /// wait is over.
    fn settle_parked(&mut self, now_ms: u64) {
        let Some(vm) = self.vm.clone() else { return };
        let decisions: Vec<(u32, Decision)> = {
            let mut guard = vm.borrow_mut();
            let vm = &mut *guard;
            if vm.lot.is_empty() {
                return;
            }
            if vm.engine.registry().is_some() {
                vm.lot
                    .take_all()
                    .into_iter()
                    .map(|(id, parked)| {
                        let decision = vm.engine.decide_parked(
                            now_ms,
                            &parked.payload.certificate,
                            parked.payload.digest,
                        );
                        (id, decision)
                    })
                    .collect()
            } else {
                vm.lot
                    .take_expired(now_ms)
                    .into_iter()
                    .map(|(id, _)| {
                        (
                            id,
                            Decision::Deny {
                                reason: reason::PARK_TIMEOUT,
                                peer: None,
                                cached: false,
                            },
                        )
                    })
                    .collect()
            }
        };
        if decisions.is_empty() {
            return;
        }
        {
            let mut vm = vm.borrow_mut();
            for (id, decision) in &decisions {
                vm.record_decision(decision);
                let settled = match decision {
                    Decision::Allow { .. } => Settled::Allowed,
                    _ => Settled::Denied,
                };
                vm.settled.insert(*id, settled);
            }
        }
        // No borrow held: resuming may run the connection's callbacks.
        for (id, decision) in &decisions {
            if let Err(status) = hostcalls::set_effective_context(*id) {
                host::debug(&format!(
                    "mazu-filter: parked connection {id} is gone ({status:?})"
                ));
                continue;
            }
            let result = match decision {
                Decision::Allow { .. } => hostcalls::resume_downstream(),
                _ => hostcalls::close_downstream(),
            };
            if let Err(status) = result {
                host::warn(&format!(
                    "mazu-filter: cannot settle parked connection {id}: {status:?}"
                ));
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.handle_answer(token_id, body_size);
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        match self.configure(plugin_configuration_size) {
            Ok(()) => true,
            Err(message) => {
                host::error(&format!(
                    "mazu-filter: invalid plugin configuration: {message}"
                ));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now_ms = host::now_ms();
        self.load_shared(now_ms);
        self.maybe_fetch(now_ms);
        self.settle_parked(now_ms);
        self.record_gauges(now_ms);
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        let park_timeout_ms =
            self.vm
                .as_ref()
                .and_then(|vm| match vm.borrow().engine.config().before_registry {
                    BeforeRegistry::Park { timeout_ms } => Some(timeout_ms),
                    BeforeRegistry::Deny => None,
                });
        Some(Box::new(Stream::new(
            context_id,
            self.vm.clone(),
            park_timeout_ms,
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}

/// Lower-case hex, for log lines.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
