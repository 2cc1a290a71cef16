//! One connection: checked at its first data event after the handshake,
//! and again at its first data event after every registry change, so that a
//! revoked, released or expired peer's open connection (a pooled one, kept
//! for hours) is closed before another byte passes in either direction.

use core::sync::atomic::{AtomicBool, Ordering};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, BufferType, PeerType};

use crate::config::Direction;
use crate::engine::{Decision, PeerFacts, parse_hex_digest, reason};
use crate::metrics::Fixed;
use crate::vouch;

use super::host;
use super::vm::{self, ParkedPeer, Settled, SharedVm};

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not decided yet.
    Pending,
    /// Let through: every later event continues.
    Allowed,
    /// Closed: every later event stops.
    Denied,
    /// Waiting for the root to decide it.
    Parked,
}

/// Which side's certificate a check reads.
#[derive(Clone, Copy, Debug)]
enum Peer {
    Downstream,
    Upstream,
}

impl Peer {
    const fn prefix(self) -> &'static str {
        match self {
            Peer::Downstream => "connection",
            Peer::Upstream => "upstream",
        }
    }
}

/// The upstream data event being handled.
#[derive(Clone, Copy, Debug)]
struct UpstreamEvent {
    size: usize,
    end_of_stream: bool,
}

/// The stream context of one connection.
pub struct Stream {
    context_id: u32,
    vm: Option<SharedVm>,
    park_timeout_ms: Option<u64>,
    state: State,
    /// Set while `on_upstream_data` runs.
    upstream_event: Option<UpstreamEvent>,
    /// A denial made on the upstream's last bytes, carried out when Envoy
    /// reports the upstream close that follows them.
    close_on_upstream_close: bool,
    /// Once allowed: the peer that was checked, and the registry version
    /// the decision was made under (checked again when it changes).
    allowed: Option<(Peer, Option<u64>)>,
    /// Set while an allowed connection is decided again: an allow then is
    /// not a new connection (not counted); a denial is counted, with its
    /// reason.
    recheck: bool,
}

impl Stream {
    /// A connection of a root context; `vm` is `None` when the root is not
    /// configured (every connection is then closed).
    pub fn new(context_id: u32, vm: Option<SharedVm>, park_timeout_ms: Option<u64>) -> Self {
        Stream {
            context_id,
            vm,
            park_timeout_ms,
            state: State::Pending,
            upstream_event: None,
            close_on_upstream_close: false,
            allowed: None,
            recheck: false,
        }
    }

    /// A data event of an allowed connection: passes while the registry the
    /// decision was made under is current; after a registry change the peer
    /// is decided again (from the verdict cache when its entry did not
    /// change) and the connection closed if it is now denied.
    fn allowed_event(&mut self) -> Action {
        let (Some((peer, decided_under)), Some(vm)) = (self.allowed, self.vm.as_ref()) else {
            return Action::Continue;
        };
        if vm.borrow().engine.registry_version() == decided_under {
            return Action::Continue;
        }
        self.recheck = true;
        let action = self.check(peer);
        self.recheck = false;
        action
    }

    fn direction(&self) -> Option<Direction> {
        self.vm
            .as_ref()
            .map(|vm| vm.borrow().engine.config().direction)
    }

    /// Runs the check for `peer` and carries out the decision.
    fn check(&mut self, peer: Peer) -> Action {
        let Some(vm) = self.vm.clone() else {
            host::error("mazu-filter: connection on an unconfigured plugin; closing it");
            self.close();
            return Action::Pause;
        };
        // A worker that has not ticked since another VM fetched the first
        // registry picks it up now rather than refusing the connection.
        if vm.borrow().engine.registry().is_none() {
            vm::load_shared(&vm);
        }
        let prefix = peer.prefix();
        let now_ms = host::now_ms();
        let digest_hex = host::property(&[prefix, "sha256_peer_certificate_digest"]);
        // Envoy defines `mtls` for the downstream connection only. A server
        // that completed a TLS handshake always presented a certificate, so
        // upstream the presence of its digest is the same fact.
        let mtls = match peer {
            Peer::Downstream => host::bool_property(&[prefix, "mtls"]),
            Peer::Upstream => Some(digest_hex.is_some()),
        };
        let facts = PeerFacts {
            mtls,
            digest_hex: digest_hex.as_deref(),
        };
        // The clock is read only once the cache has missed (the validator's
        // word is read then and only then, first): a cached verdict pays no
        // host call.
        let verdict_started = core::cell::Cell::new(None);
        let decide = || {
            vm.borrow_mut().engine.decide_vouched(
                now_ms,
                facts,
                || host::property(&[prefix, "peer_certificate"]),
                || {
                    verdict_started.set(Some(host::now_nanos()));
                    // The validator vouches on the connection it checked: the
                    // downstream one; an upstream's is not this connection's.
                    match peer {
                        Peer::Downstream => {
                            host::property(&["filter_state", vouch::FILTER_STATE_KEY])
                        }
                        Peer::Upstream => None,
                    }
                },
            )
        };
        let mut decision = decide();
        if decision.ran_full_verdict()
            && let Some(started) = verdict_started.get()
        {
            let micros = host::now_nanos().saturating_sub(started) / 1_000;
            vm.borrow().metrics.increment_by(
                Fixed::UncachedVerdictMicros,
                u64::try_from(micros).unwrap_or(u64::MAX),
            );
        }
        // Before refusing, make sure this VM is not behind another VM's
        // newer registry (a workload registered since this VM's last tick).
        if let Decision::Deny { reason, .. } = &decision
            && *reason != reason::NO_CLIENT_CERTIFICATE
            && vm::load_shared(&vm)
        {
            decision = decide();
        }
        if decision == Decision::Park {
            return self.park(&vm, peer, now_ms, digest_hex.as_deref());
        }
        if let Decision::Deny { reason, .. } = &decision
            && *reason == reason::NO_PEER_CERTIFICATE
            && digest_hex.is_some()
        {
            report_missing_attribute(&vm, prefix);
        }
        let allowed = matches!(decision, Decision::Allow { .. });
        if !(allowed && self.recheck) {
            vm.borrow_mut().record_decision(&decision);
        }
        if allowed {
            self.allowed = Some((peer, vm.borrow().engine.registry_version()));
        }
        self.carry_out(&decision)
    }

    fn park(
        &mut self,
        vm: &SharedVm,
        peer: Peer,
        now_ms: u64,
        digest_hex: Option<&[u8]>,
    ) -> Action {
        let deny = |reason: &'static str| Decision::Deny {
            reason,
            peer: None,
            cached: false,
        };
        // Only a read can be parked: Envoy never resumes a paused write
        // (there is no `resume_upstream`), so the server's greeting of a
        // server-first protocol (an upstream event deciding the client) is
        // decided now, never held.
        let parkable = self.upstream_event.is_none();
        let decision = match (self.park_timeout_ms, peer) {
            (Some(timeout_ms), Peer::Downstream) if parkable => {
                match host::property(&[peer.prefix(), "peer_certificate"]) {
                    None => deny(reason::NO_PEER_CERTIFICATE),
                    Some(certificate) => {
                        let parked = ParkedPeer {
                            certificate,
                            digest: digest_hex.and_then(parse_hex_digest),
                        };
                        let mut guard = vm.borrow_mut();
                        match guard.lot.park(
                            self.context_id,
                            now_ms.saturating_add(timeout_ms),
                            parked,
                        ) {
                            Ok(()) => {
                                guard.metrics.increment(Fixed::ConnectionsParked);
                                let parked_now = guard.lot.len() as u64;
                                guard.metrics.record(Fixed::ParkedNow, parked_now);
                                self.state = State::Parked;
                                host::debug(&format!(
                                    "mazu-filter: connection {} parked until the registry arrives",
                                    self.context_id
                                ));
                                return Action::Pause;
                            }
                            Err(_) => deny(reason::PARK_OVERFLOW),
                        }
                    }
                }
            }
            // Upstream data cannot be resumed: never park it.
            _ => deny(reason::REGISTRY_UNAVAILABLE),
        };
        vm.borrow_mut().record_decision(&decision);
        self.carry_out(&decision)
    }

    fn carry_out(&mut self, decision: &Decision) -> Action {
        match decision {
            Decision::Allow { .. } => {
                self.state = State::Allowed;
                Action::Continue
            }
            Decision::Deny { .. } | Decision::Park => {
                self.close();
                Action::Pause
            }
        }
    }

    fn close(&mut self) {
        self.state = State::Denied;
        if let Some(event) = self.upstream_event {
            // The server's bytes that triggered the check never reach the
            // client, whatever happens to the connection next.
            if let Err(status) = hostcalls::set_buffer(BufferType::UpstreamData, 0, event.size, &[])
            {
                host::warn(&format!(
                    "mazu-filter: dropping upstream data failed: {status:?}"
                ));
            }
            if event.end_of_stream {
                // Envoy reports the upstream close right after this event.
                // Closing now would delete this context first, and that
                // report would then hit an id the SDK no longer knows (it
                // panics, and the VM is lost): close from there instead.
                self.close_on_upstream_close = true;
                return;
            }
        }
        // One close, of the downstream connection: in a network filter both
        // of the SDK's streams are that connection (a second close, with
        // `close_upstream`, is not needed).
        if let Err(status) = hostcalls::close_downstream() {
            host::warn(&format!("mazu-filter: close_downstream failed: {status:?}"));
        }
    }

    /// A parked connection's next event: did the root settle it?
    fn parked_event(&mut self) -> Action {
        let settled = self
            .vm
            .as_ref()
            .and_then(|vm| vm.borrow_mut().settled.remove(&self.context_id));
        match settled {
            Some(Settled::Allowed) => {
                self.state = State::Allowed;
                // Parking is inbound only: the client was decided. Under
                // which registry is not known here (the root may have
                // installed a newer one since), so its next event decides
                // it again, from the verdict cache.
                self.allowed = Some((Peer::Downstream, None));
                Action::Continue
            }
            Some(Settled::Denied) => {
                self.state = State::Denied;
                Action::Pause
            }
            None => Action::Pause,
        }
    }

    /// An upstream data event: the server's bytes (outbound), or the first
    /// event of a server-first protocol (inbound).
    fn upstream_data(&mut self) -> Action {
        match self.state {
            State::Allowed => self.allowed_event(),
            State::Denied => Action::Pause,
            // Resuming hands the held bytes straight to the next filter, so
            // the server's answer may be this connection's first event since.
            State::Parked => self.parked_event(),
            State::Pending => match self.direction() {
                Some(Direction::Outbound) if !upstream_seen() => self.not_seen(),
                Some(Direction::Outbound) | None => self.check(Peer::Upstream),
                // Inbound, server-first protocol: the client has not sent a
                // byte yet, so decide the client now, before the server's
                // bytes reach it.
                Some(Direction::Inbound) => self.check(Peer::Downstream),
            },
        }
    }

    /// An outbound connection whose server this filter cannot see: let it
    /// through, counted, and said once per VM. Only `tcp_proxy` sets the
    /// upstream on the downstream connection; an HTTP connection manager
    /// opens its upstream connections per request, out of a network
    /// filter's sight, so refusing here would refuse every HTTP call (after
    /// the server ran it). There the server is authenticated in the TLS
    /// handshake, by the node agent's `ROOTCA` (pins or the validator).
    fn not_seen(&mut self) -> Action {
        if let Some(vm) = &self.vm {
            vm.borrow().metrics.increment(Fixed::OutboundNotSeen);
        }
        if !REPORTED_UPSTREAM_NOT_SEEN.swap(true, Ordering::Relaxed) {
            host::info(
                "mazu-filter: an outbound connection without a tcp_proxy upstream (an HTTP \
                 connection manager chain): its server is not visible to this filter and is \
                 authenticated in the TLS handshake only (counted in outbound_not_seen)",
            );
        }
        self.state = State::Allowed;
        Action::Continue
    }

    fn forget(&mut self) {
        if let Some(vm) = &self.vm {
            let mut vm = vm.borrow_mut();
            vm.lot.remove(self.context_id);
            vm.settled.remove(&self.context_id);
        }
    }
}

/// Whether the connection has an upstream this filter can read: `tcp_proxy`
/// records the host it connected to on the downstream connection, an HTTP
/// connection manager does not.
fn upstream_seen() -> bool {
    host::property(&["upstream", "address"]).is_some()
}

/// Said once per VM (each VM is its own Wasm instance, so a static is per
/// VM): outbound connections the filter cannot see.
static REPORTED_UPSTREAM_NOT_SEEN: AtomicBool = AtomicBool::new(false);

/// A TLS peer Envoy reports (its certificate's digest is there) whose
/// certificate attribute is missing: this Envoy predates
/// `connection.peer_certificate` / `upstream.peer_certificate` (envoyproxy/envoy
/// PR #43773), and every connection will be denied. Said once per VM, as an
/// error.
fn report_missing_attribute(vm: &SharedVm, prefix: &str) {
    let mut vm = vm.borrow_mut();
    if core::mem::replace(&mut vm.reported_missing_attribute, true) {
        return;
    }
    host::error(&format!(
        "mazu-filter: this Envoy does not provide the attribute {prefix}.peer_certificate \
         (it reports the peer certificate's digest but not the certificate): it predates \
         envoyproxy/envoy PR #43773, and the filter denies every connection \
         (no_peer_certificate). See docs/istio.md for the Envoy and Istio versions Mazu needs."
    ));
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        self.forget();
        true
    }
}

impl StreamContext for Stream {
    fn on_new_connection(&mut self) -> Action {
        // Before the TLS handshake: nothing to check yet.
        Action::Continue
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        match self.state {
            State::Allowed => self.allowed_event(),
            State::Denied => Action::Pause,
            State::Parked => self.parked_event(),
            State::Pending => match self.direction() {
                // Outbound: the server is checked on its first bytes.
                Some(Direction::Outbound) => Action::Continue,
                Some(Direction::Inbound) | None => self.check(Peer::Downstream),
            },
        }
    }

    fn on_upstream_data(&mut self, data_size: usize, end_of_stream: bool) -> Action {
        self.upstream_event = Some(UpstreamEvent {
            size: data_size,
            end_of_stream,
        });
        let action = self.upstream_data();
        self.upstream_event = None;
        action
    }

    fn on_upstream_close(&mut self, _peer_type: PeerType) {
        if core::mem::take(&mut self.close_on_upstream_close)
            && let Err(status) = hostcalls::close_downstream()
        {
            host::warn(&format!("mazu-filter: close_downstream failed: {status:?}"));
        }
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {
        self.forget();
    }
}
