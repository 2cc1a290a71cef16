//! The root context: the proxy-wasm glue that configures the VM's state and
//! hands ticks and callout answers to the [registry source](RegistrySource)
//! and the [parked connections](parked).

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::config::FilterConfig;
use crate::engine::Engine;
use crate::metrics::Fixed;
use crate::parking::ParkingLot;
use crate::shared::{SharedKeys, SharedReader};

use super::host;
use super::parked;
use super::registry_source::RegistrySource;
use super::stream::Stream;
use super::vm::{self, Metrics, SharedVm, Vm};

/// One plugin instance in one VM.
pub struct Root {
    context_id: u32,
    vm: Option<SharedVm>,
    source: RegistrySource,
}

impl Root {
    /// A root context that refuses every connection until configured.
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            vm: None,
            source: RegistrySource::new(),
        }
    }

    fn configure(&mut self, size: usize) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .map_err(|status| format!("cannot read the plugin configuration: {status:?}"))?
            .unwrap_or_default();
        let config = FilterConfig::parse(&bytes).map_err(|e| e.to_string())?;
        let keys = SharedKeys::new(&config.curator);
        let instance = self.source.join(&keys, config.curator.max_body_bytes);
        let tick = config.tick_period_ms();
        hostcalls::set_tick_period(core::time::Duration::from_millis(tick))
            .map_err(|status| format!("cannot set the tick period: {status:?}"))?;
        match &config.curator.witnesses {
            Some(policy) => host::info(&format!(
                "mazu-filter: the registry is derived from the log of {} under checkpoints \
                 cosigned by {} of {} witnesses ({})",
                config.curator.checkpoint_key.to_vkey(),
                policy.quorum,
                policy.witnesses.len(),
                policy
                    .witnesses
                    .iter()
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => host::warn(&format!(
                "mazu-filter: curator.insecure_no_witness: checkpoints of {} are used WITHOUT \
                 witnesses; the curator could show this proxy a log nobody else sees \
                 (development only)",
                config.curator.checkpoint_key.to_vkey()
            )),
        }
        host::info(&format!(
            "mazu-filter: configured: direction={} curator={} refresh={}ms \
             before_registry={:?} when_stale={:?} max_staleness={}s tick={}ms instance={}",
            config.direction.as_str(),
            config.curator.cluster,
            config.curator.refresh_interval_ms,
            config.before_registry,
            config.when_stale,
            config.max_staleness_secs,
            tick,
            instance.map_or_else(
                || "none yet".to_owned(),
                |n| format!("{}.{:08x}", n >> 32, n as u32)
            ),
        ));
        let metrics = Metrics::define(config.direction);
        let max_parked = config.max_parked;
        self.vm = Some(Rc::new(RefCell::new(Vm {
            engine: Engine::new(config),
            lot: ParkingLot::new(max_parked),
            settled: BTreeMap::new(),
            metrics,
            keys,
            reported_missing_attribute: false,
            vouch_counts: [0; 3],
            reader: SharedReader::new(),
            held: None,
        })));
        self.load_shared(host::now_ms());
        Ok(())
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
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let now_ms = host::now_ms();
        // Only a configured root sends callouts.
        let Some(vm) = self.vm.clone() else { return };
        if self.source.handle_answer(&vm, token_id, body_size, now_ms) {
            parked::settle(&vm, now_ms, self.context_id);
            self.record_gauges(now_ms);
        }
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
        if let Some(vm) = self.vm.clone() {
            self.source.poll(&vm, now_ms);
            parked::settle(&vm, now_ms, self.context_id);
        }
        self.record_gauges(now_ms);
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Stream::new(
            context_id,
            self.vm.clone(),
            parked::timeout_ms(self.vm.as_ref()),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}
