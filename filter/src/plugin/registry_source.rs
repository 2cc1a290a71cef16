//! The registry source: what fetches the registry from the curator, verifies
//! it against the witnessed log and installs it (callouts for the newest
//! checkpoint, the follower state and pages of records), and the shared-data
//! interplay around it (instance numbers, the fetch lease, publishing the
//! derived registry for the other VMs).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::config::FilterConfig;
use crate::metrics::Fixed;
use crate::sync::{
    self, FetchFailure, FetchKind, FetchRequest, Fetcher, Lease, RegistryStatus, SharedKeys,
};
use crate::transparency::{self, AcceptedCheckpoint, Follower, Step};

use super::host;
use super::vm::SharedVm;

/// One root context's way to the registry: its rounds of callouts and the
/// log as it follows it. The registry itself lives in the [`SharedVm`]
/// every method is given.
pub struct RegistrySource {
    /// This root's number among all roots sharing the registry (lease owner id).
    instance: u64,
    fetcher: Fetcher,
    /// The log as this root follows it (only the lease holder fetches; a
    /// root that takes the lease over starts from the empty log).
    follower: Follower,
    /// The witnessed time of the checkpoint being caught up to, milliseconds.
    round_witnessed_ms: u64,
}

impl RegistrySource {
    /// A source that fetches nothing until it [joins](Self::join) the roots
    /// sharing a registry.
    pub fn new() -> Self {
        RegistrySource {
            instance: 0,
            fetcher: Fetcher::new(),
            follower: Follower::new(crate::config::defaults::MAX_BODY_BYTES),
            round_witnessed_ms: 0,
        }
    }

    /// Takes this root's instance number among the roots sharing `keys` and
    /// follows the log from the empty log, reading answers of at most
    /// `max_body_bytes`. Returns the instance number; `context_id` (the
    /// root's) is the fallback should the shared counter stay contended.
    pub fn join(&mut self, context_id: u32, keys: &SharedKeys, max_body_bytes: usize) -> u64 {
        self.instance = take_instance_number(context_id, &keys.instances);
        self.follower = Follower::new(max_body_bytes);
        self.instance
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

    /// Starts a round (asks for the newest checkpoint) if one is due and
    /// this root holds the lease; ends a round whose answer is overdue.
    pub fn poll(&mut self, vm: &SharedVm, now_ms: u64) {
        if self.fetcher.lapsed(now_ms) {
            self.fetch_failed(vm, &FetchFailure::NoAnswer, now_ms);
        }
        if !self.fetcher.due(now_ms) {
            return;
        }
        let holds = {
            let vm = vm.borrow();
            self.hold_lease(now_ms, vm.engine.config(), &vm.keys)
        };
        if holds {
            self.dispatch(vm, FetchKind::Checkpoint, now_ms);
        }
    }

    /// Sends one callout; a dispatch failure ends the round.
    fn dispatch(&mut self, vm: &SharedVm, kind: FetchKind, now_ms: u64) {
        let curator = vm.borrow().engine.config().curator.clone();
        let request = FetchRequest::new(&curator, kind);
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let timeout = core::time::Duration::from_millis(curator.timeout_ms);
        vm.borrow().metrics.increment(Fixed::RegistryFetches);
        match hostcalls::dispatch_http_call(&curator.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                host::debug(&format!("mazu-filter: callout {token} sent ({kind:?})"));
                self.fetcher.started(token, kind, now_ms, &curator);
            }
            Err(status) => {
                host::error(&format!(
                    "mazu-filter: cannot call cluster {:?}: {status:?}",
                    curator.cluster
                ));
                self.fetch_failed(vm, &FetchFailure::Dispatch, now_ms);
            }
        }
    }

    fn fetch_failed(&mut self, vm: &SharedVm, failure: &FetchFailure, now_ms: u64) {
        let mut vm = vm.borrow_mut();
        vm.metrics.increment_fetch_failure(failure);
        let have = vm.engine.registry_version();
        let curator = vm.engine.config().curator.clone();
        self.fetcher
            .finished(Some(failure), now_ms, have.is_some(), &curator);
        let held = match have {
            Some(version) => format!(
                "keeping version {version} (witnessed {} s ago)",
                vm.engine.registry_age_secs(now_ms)
            ),
            None => "no registry yet".to_owned(),
        };
        if failure.is_refusal() {
            host::error(&format!(
                "mazu-filter: CURATOR MISBEHAVIOUR? log {}: {failure}; following size {} \
                 root {}; {held}",
                curator.checkpoint_key.name(),
                self.follower.size(),
                hex(&self.follower.root()),
            ));
        } else {
            host::warn(&format!(
                "mazu-filter: registry fetch failed: {failure}; {held} ({} failures in a row)",
                self.fetcher.consecutive_failures
            ));
        }
    }

    /// Publishes the registry this root derived (its encoding, if new), the
    /// checkpoint it accepted and the status, for the other VMs.
    fn publish(&self, vm: &SharedVm, encoded: Option<&[u8]>, checkpoint: AcceptedCheckpoint) {
        let keys = vm.borrow().keys.clone();
        let shared = accepted_checkpoint(&keys);
        if shared.is_some_and(|s| {
            s.size > checkpoint.size
                || (s.size == checkpoint.size && s.witnessed_ms > checkpoint.witnessed_ms)
        }) {
            // Another root (the previous leader) published a newer one.
            return;
        }
        let (value, _) = host::shared(&keys.status);
        let published = value.as_deref().and_then(RegistryStatus::decode);
        // The digest the status vouches for: the new encoding, or (a
        // confirmation of the same version) the one already published; a
        // root that has neither publishes its own encoding of the version.
        let reencoded;
        let encoded = match (encoded, published) {
            (Some(encoded), _) => Some(encoded),
            (None, Some(p)) if p.version == checkpoint.size => None,
            (None, _) => {
                reencoded = self.follower.snapshot().encode();
                Some(&reencoded[..])
            }
        };
        let snapshot_sha256 = match (encoded, published) {
            (Some(encoded), _) => sync::snapshot_sha256(encoded),
            (None, Some(p)) => p.snapshot_sha256,
            (None, None) => return,
        };
        if let Some(encoded) = encoded
            && !host::set_shared(&keys.snapshot, encoded, None)
        {
            host::error("mazu-filter: cannot publish the registry in shared data");
            return;
        }
        // Before the status, so that a root that sees the new version also
        // sees the checkpoint that vouches for it.
        if !host::set_shared(&keys.checkpoint, &checkpoint.encode(), None) {
            host::error("mazu-filter: cannot publish the accepted checkpoint in shared data");
            return;
        }
        let (value, cas) = host::shared(&keys.status);
        let published = value.as_deref().and_then(RegistryStatus::decode);
        if published.is_some_and(|p| p.version > checkpoint.size) {
            return; // Someone published a newer one meanwhile.
        }
        let status = RegistryStatus {
            version: checkpoint.size,
            confirmed_ms: checkpoint.witnessed_ms,
            snapshot_sha256,
        };
        if !host::set_shared(&keys.status, &status.encode(), cas) {
            host::debug("mazu-filter: registry status changed concurrently; not overwritten");
        }
    }

    /// Takes the answer to callout `token` (Envoy's `on_http_call_response`).
    /// Returns false, having done nothing, if no round waits for it.
    pub fn handle_answer(
        &mut self,
        vm: &SharedVm,
        token: u32,
        body_size: usize,
        now_ms: u64,
    ) -> bool {
        if !self.fetcher.is_current(token) {
            host::debug(&format!(
                "mazu-filter: ignoring answer to callout {token} (not in flight)"
            ));
            return false;
        }
        let Some(kind) = self.fetcher.in_flight().map(|f| f.kind) else {
            return false;
        };
        self.fetcher.answered();
        let result = self.take_answer(vm, kind, body_size, now_ms);
        if let Err(failure) = result {
            self.fetch_failed(vm, &failure, now_ms);
        }
        true
    }

    /// Reads and uses one answer; an error ends the round, the registry held
    /// stays as it was.
    fn take_answer(
        &mut self,
        vm: &SharedVm,
        kind: FetchKind,
        body_size: usize,
        now_ms: u64,
    ) -> Result<(), FetchFailure> {
        let curator = vm.borrow().engine.config().curator.clone();
        // Bytes, not a `String`: the SDK's string accessors panic on non-UTF-8.
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|value| core::str::from_utf8(&value).ok()?.parse::<u16>().ok());
        let usable = sync::check_status(status).and_then(|()| {
            if body_size > curator.max_body_bytes {
                return Err(FetchFailure::TooLarge(body_size));
            }
            Ok(())
        });
        if let (FetchKind::State { size }, Err(failure)) = (kind, &usable) {
            // No state to be had (no longer kept, too large, an outage):
            // the records serve as well, only slower.
            host::warn(&format!(
                "mazu-filter: the follower state at size {size} is unavailable ({failure}); \
                 fetching the log's records instead"
            ));
            let step = self.follower.state_unavailable();
            return self.next_step(vm, kind, step, now_ms);
        }
        usable?;
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let step = match kind {
            FetchKind::Checkpoint => {
                let checkpoint = transparency::verify_checkpoint(
                    &curator.checkpoint_key,
                    curator.witnesses.as_ref(),
                    &body,
                )
                .map_err(FetchFailure::Refused)?;
                // Without witnesses the curator's answer is all there is.
                self.round_witnessed_ms = checkpoint
                    .witnessed_secs
                    .map_or(now_ms, |secs| secs.saturating_mul(1000));
                let keys = vm.borrow().keys.clone();
                let accepted = accepted_checkpoint(&keys);
                self.follower
                    .offer_checkpoint(checkpoint, accepted, self.round_witnessed_ms)
                    .map_err(FetchFailure::Refused)?
            }
            FetchKind::State { size } => self
                .follower
                .offer_state(size, &body)
                .map_err(FetchFailure::Refused)?,
            FetchKind::Records { start, end } => self
                .follower
                .offer_records(start, end, &body)
                .map_err(FetchFailure::Refused)?,
        };
        self.next_step(vm, kind, step, now_ms)
    }

    /// Acts on what the follower asks for next.
    fn next_step(
        &mut self,
        vm: &SharedVm,
        kind: FetchKind,
        step: Step,
        now_ms: u64,
    ) -> Result<(), FetchFailure> {
        match step {
            Step::FetchState { size } => self.dispatch(vm, FetchKind::State { size }, now_ms),
            Step::Fetch { start, end } => {
                self.dispatch(vm, FetchKind::Records { start, end }, now_ms)
            }
            Step::Current if kind == FetchKind::Checkpoint => self.confirmed(vm, now_ms),
            Step::Current => {
                // An answer to a page no round waits for: it confirms nothing.
                let curator = vm.borrow().engine.config().curator.clone();
                self.fetcher.finished(None, now_ms, true, &curator);
            }
            Step::Applied { void } => {
                for record in &void {
                    host::error(&format!(
                        "mazu-filter: CURATOR MISBEHAVIOUR? log record {} ({}) of id {} has no \
                         effect: {}",
                        record.index,
                        record.record.body.kind_name(),
                        hex(&record.record.id),
                        record.reason
                    ));
                }
                self.applied(vm, now_ms);
            }
        }
        Ok(())
    }

    /// The checkpoint is the one followed: the registry is confirmed as of
    /// its witnessed time.
    fn confirmed(&mut self, vm: &SharedVm, now_ms: u64) {
        let witnessed_ms = self.round_witnessed_ms;
        self.publish(
            vm,
            None,
            AcceptedCheckpoint {
                size: self.follower.size(),
                root: self.follower.root(),
                witnessed_ms,
            },
        );
        let mut guard = vm.borrow_mut();
        if guard.engine.registry().is_none() {
            // The first round found the empty log: an empty registry.
            guard.engine.install(self.follower.snapshot(), witnessed_ms);
        } else {
            guard.engine.confirm(witnessed_ms);
        }
        guard.metrics.increment(Fixed::RegistryUnchanged);
        let curator = guard.engine.config().curator.clone();
        self.fetcher.finished(None, now_ms, true, &curator);
    }

    /// Records were applied up to a witnessed checkpoint: install and
    /// publish the derived registry.
    fn applied(&mut self, vm: &SharedVm, now_ms: u64) {
        let witnessed_ms = self.round_witnessed_ms;
        let snapshot = self.follower.snapshot();
        let version = snapshot.version();
        let entries = snapshot.len();
        self.publish(
            vm,
            Some(&snapshot.encode()),
            AcceptedCheckpoint {
                size: self.follower.size(),
                root: self.follower.root(),
                witnessed_ms,
            },
        );
        let mut guard = vm.borrow_mut();
        guard.engine.install(snapshot, witnessed_ms);
        guard.metrics.increment(Fixed::RegistryUpdates);
        let curator = guard.engine.config().curator.clone();
        self.fetcher.finished(None, now_ms, true, &curator);
        host::info(&format!(
            "mazu-filter: registry version {version} ({entries} entries) derived from the \
             witnessed log"
        ));
    }
}

/// A unique number for a root among all VMs: a CAS-incremented counter
/// under `key`.
fn take_instance_number(context_id: u32, key: &str) -> u64 {
    for _ in 0..16 {
        let (value, cas) = host::shared(key);
        let next = sync::decode_counter(value.as_deref()).wrapping_add(1);
        if host::set_shared(key, &next.to_be_bytes(), cas) {
            return next;
        }
    }
    // Contended beyond reason: fall back to the context id (unique in
    // this VM); at worst two roots fetch concurrently.
    u64::from(context_id) | (1 << 63)
}

/// The newest checkpoint accepted by any root of this Envoy.
fn accepted_checkpoint(keys: &SharedKeys) -> Option<AcceptedCheckpoint> {
    host::shared(&keys.checkpoint)
        .0
        .as_deref()
        .and_then(AcceptedCheckpoint::decode)
}

/// Lower-case hex, for log lines.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
