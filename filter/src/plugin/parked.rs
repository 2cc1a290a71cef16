//! The root's side of parking: connections that arrived before any registry
//! wait in the VM's lot (the stream context parks them); once a registry is
//! installed they are decided and resumed or closed, and those whose wait is
//! over are closed.

use proxy_wasm::hostcalls;

use crate::config::BeforeRegistry;
use crate::engine::{Decision, reason};

use super::host;
use super::vm::{Settled, SharedVm};

/// How long a new connection may stay parked, milliseconds; `None` when the
/// configuration denies connections before the first registry (or the root
/// is not configured).
pub fn timeout_ms(vm: Option<&SharedVm>) -> Option<u64> {
    vm.and_then(|vm| match vm.borrow().engine.config().before_registry {
        BeforeRegistry::Park { timeout_ms } => Some(timeout_ms),
        BeforeRegistry::Deny => None,
    })
}

/// Decides parked connections once a registry exists; closes those whose
/// wait is over. Resuming or closing one switches the host to its context;
/// `root_context_id` is switched back to afterwards.
pub fn settle(vm: &SharedVm, now_ms: u64, root_context_id: u32) {
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
    let _ = hostcalls::set_effective_context(root_context_id);
}
