//! The registry source: what fetches the registry from the curator, verifies
//! it against the witnessed log and installs it (callouts for the newest
//! checkpoint, the follower state and pages of records), and the shared-data
//! interplay around it (instance numbers, the fetch lease, publishing the
//! derived registry for the other VMs).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::config::FilterConfig;
use crate::metrics::Fixed;
use crate::shared::{self, Publication, Published, SharedKeys};
use crate::sync::{self, FetchFailure, FetchKind, FetchRequest, Fetcher};
use crate::transparency::{self, AcceptedCheckpoint, Follower, Step};

use super::host;
use super::vm::SharedVm;

/// One root context's way to the registry: its rounds of callouts and the
/// log as it follows it. The registry itself lives in the [`SharedVm`]
/// every method is given.
pub struct RegistrySource {
    /// This root's number among all roots sharing the registry (lease owner
    /// id); `None` until it could take one (it does not fetch meanwhile).
    instance: Option<u64>,
    fetcher: Fetcher,
    /// The log as this root follows it (only the lease holder fetches; a
    /// root that takes the lease over starts from the empty log).
    follower: Follower,
    /// The witnessed time of the checkpoint being caught up to, milliseconds.
    round_witnessed_ms: u64,
    /// The signed note of that checkpoint, as served: published for the
    /// other VMs, which verify it themselves.
    round_note: Vec<u8>,
}

impl RegistrySource {
    /// A source that fetches nothing until it [joins](Self::join) the roots
    /// sharing a registry.
    pub fn new() -> Self {
        RegistrySource {
            instance: None,
            fetcher: Fetcher::new(),
            follower: Follower::new(crate::config::defaults::MAX_BODY_BYTES),
            round_witnessed_ms: 0,
            round_note: Vec::new(),
        }
    }

    /// Takes this root's instance number among the roots sharing `keys` and
    /// follows the log from the empty log, reading answers of at most
    /// `max_body_bytes`. Returns the instance number, if one could be had
    /// (else [`poll`](Self::poll) tries again).
    pub fn join(&mut self, keys: &SharedKeys, max_body_bytes: usize) -> Option<u64> {
        self.instance = take_instance(keys);
        self.follower = Follower::new(max_body_bytes);
        self.instance
    }

    /// Takes or renews the fetch lease; true if this root holds it.
    fn hold_lease(&mut self, now_ms: u64, config: &FilterConfig, keys: &SharedKeys) -> bool {
        if self.instance.is_none() {
            self.instance = take_instance(keys);
        }
        let Some(me) = self.instance else {
            return false;
        };
        let ttl = 2 * config.curator.refresh_interval_ms + config.curator.timeout_ms + 1_000;
        shared::hold_lease(&host::HostShared, keys, me, now_ms, ttl)
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

    /// Publishes the round's checkpoint note, with the follower state if
    /// the round applied records, for the other VMs (which verify both).
    fn publish(&self, vm: &SharedVm, checkpoint: AcceptedCheckpoint, with_state: bool) {
        let (keys, curator) = {
            let vm = vm.borrow();
            (vm.keys.clone(), vm.engine.config().curator.clone())
        };
        let state = with_state.then(|| self.follower.encode_state());
        let publication = Publication {
            note: &self.round_note,
            checkpoint,
            state: state.as_deref(),
        };
        match shared::publish(&host::HostShared, &keys, &curator, &publication) {
            Published::Done => {}
            Published::Superseded => host::debug(
                "mazu-filter: a newer checkpoint is already in shared data; not overwritten",
            ),
            Published::Contended => {
                host::warn("mazu-filter: shared data stayed contended; publishing next round")
            }
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
                self.round_note = body;
                // Never behind what this VM holds (installed from another
                // VM's verified publish, say).
                let held = vm.borrow().held;
                self.follower
                    .offer_checkpoint(checkpoint, held, self.round_witnessed_ms)
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

    /// The checkpoint the follower is at, witnessed this round.
    fn followed(&self) -> AcceptedCheckpoint {
        AcceptedCheckpoint {
            size: self.follower.size(),
            root: self.follower.root(),
            witnessed_ms: self.round_witnessed_ms,
        }
    }

    /// The checkpoint is the one followed: the registry is confirmed as of
    /// its witnessed time.
    fn confirmed(&mut self, vm: &SharedVm, now_ms: u64) {
        let checkpoint = self.followed();
        let first = vm.borrow().engine.registry().is_none();
        // The first round may find the empty log (nothing to apply): the
        // state is published all the same.
        self.publish(vm, checkpoint, first);
        let mut guard = vm.borrow_mut();
        if first {
            guard
                .engine
                .install(self.follower.snapshot(), checkpoint.witnessed_ms);
            guard.held = Some(checkpoint);
        } else {
            guard.engine.confirm(checkpoint.witnessed_ms);
        }
        guard.metrics.increment(Fixed::RegistryUnchanged);
        let curator = guard.engine.config().curator.clone();
        self.fetcher.finished(None, now_ms, true, &curator);
    }

    /// Records were applied up to a witnessed checkpoint: install and
    /// publish the derived registry.
    fn applied(&mut self, vm: &SharedVm, now_ms: u64) {
        let checkpoint = self.followed();
        let snapshot = self.follower.snapshot();
        let version = snapshot.version();
        let entries = snapshot.len();
        self.publish(vm, checkpoint, true);
        let mut guard = vm.borrow_mut();
        guard.engine.install(snapshot, checkpoint.witnessed_ms);
        guard.held = Some(checkpoint);
        guard.metrics.increment(Fixed::RegistryUpdates);
        let curator = guard.engine.config().curator.clone();
        self.fetcher.finished(None, now_ms, true, &curator);
        host::info(&format!(
            "mazu-filter: registry version {version} ({entries} entries) derived from the \
             witnessed log"
        ));
    }
}

/// An instance number among the roots sharing `keys`, with this VM's
/// random nonce ([`shared::join`]).
fn take_instance(keys: &SharedKeys) -> Option<u64> {
    shared::join(&host::HostShared, keys, host::random_u32())
}

/// Lower-case hex, for log lines.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
