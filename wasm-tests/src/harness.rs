//! Shortcuts the tests and benchmarks share: the compiled module (once per
//! process), a configured VM, and serving it a witnessed log.

use std::sync::OnceLock;

use mazu_testkit::filter_wasm::filter_wasm_path;
use mazu_testkit::fixtures::{CURATOR_CLUSTER, Mesh, unix_now};
use mazu_testkit::witnessed::TestLog;

use crate::callouts::AnswerCallouts as _;
use crate::plugin::{FilterModule, Vm};
use crate::state::{Callout, ProcessHandle};

/// The filter, compiled once per test process. Panics, saying how to build
/// it, if the `.wasm` is missing.
pub fn module() -> &'static FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = filter_wasm_path().unwrap_or_else(|message| panic!("{message}"));
        FilterModule::load(&path).unwrap_or_else(|e| panic!("{e:?}"))
    })
}

/// A VM of a fresh process, configured with `config`; panics if the filter
/// refuses it.
pub fn configured(config: &str) -> Vm {
    configured_in(&ProcessHandle::new(), config)
}

/// A VM of `process`, configured with `config`; the clock is the real time.
pub fn configured_in(process: &ProcessHandle, config: &str) -> Vm {
    let now_ms = unix_now() * 1000;
    let mut vm = Vm::new(module(), process, &[CURATOR_CLUSTER], now_ms).expect("instantiate");
    let accepted = vm.start(config.as_bytes()).expect("start");
    assert!(accepted, "configuration refused:\n{}", vm.log_text());
    vm
}

/// An inbound VM for `mesh` (default options plus `extra`) that already
/// follows `log`.
pub fn inbound_with(mesh: &Mesh, extra: &str, log: &TestLog) -> Vm {
    let mut vm = configured(&mesh.config("inbound", extra));
    serve(&mut vm, log);
    vm
}

/// Ticks until the filter starts a round and answers it from `log` (its
/// checkpoint, cosigned now, and the records asked for). Panics if no
/// callout comes.
pub fn serve(vm: &mut Vm, log: &TestLog) {
    log.serve(vm);
}

/// Advances the clock tick by tick until the filter dispatches a callout;
/// returns its token.
pub fn next_callout(vm: &mut Vm) -> u32 {
    next_callout_full(vm).token
}

/// [`next_callout`], returning the whole callout.
pub fn next_callout_full(vm: &mut Vm) -> Callout {
    for _ in 0..100 {
        vm.tick().expect("tick");
        if let Some(callout) = vm.take_callouts().pop() {
            return callout;
        }
        let period = u64::from(vm.tick_period_ms().max(1));
        vm.advance_ms(period);
    }
    panic!("the filter sent no callout:\n{}", vm.log_text());
}
