//! Driving the filter the way Envoy does: one [`Vm`] is one Wasm instance
//! (Envoy has one per worker thread plus the main thread) with one root
//! context and its connections.

use std::path::Path;

use wasmtime::{Config, Engine, Instance, Module, Result, Store, TypedFunc, bail, format_err};

use crate::abi::{self, Action};
use crate::imports;
use crate::state::{Callout, Connection, Delivery, HostState, LogLine, ProcessHandle, StreamOp};

/// The compiled filter; compile once, instantiate many times.
#[derive(Clone)]
pub struct FilterModule {
    engine: Engine,
    module: Module,
}

impl FilterModule {
    /// Compiles the `.wasm` at `path`.
    pub fn load(path: &Path) -> Result<FilterModule> {
        let engine = Engine::new(&Config::new())?;
        let module = Module::from_file(&engine, path)
            .map_err(|e| format_err!("cannot compile {}: {e}", path.display()))?;
        Ok(FilterModule { engine, module })
    }

    /// The module's imports as `module.name`, sorted.
    pub fn imports(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        names.sort();
        names
    }
}

/// Typed handles to the exports the host calls.
struct Exports {
    context_create: TypedFunc<(i32, i32), ()>,
    vm_start: TypedFunc<(i32, i32), i32>,
    configure: TypedFunc<(i32, i32), i32>,
    tick: TypedFunc<i32, ()>,
    new_connection: TypedFunc<i32, i32>,
    downstream_data: TypedFunc<(i32, i32, i32), i32>,
    upstream_data: TypedFunc<(i32, i32, i32), i32>,
    downstream_close: TypedFunc<(i32, i32), ()>,
    upstream_close: TypedFunc<(i32, i32), ()>,
    http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    done: TypedFunc<i32, i32>,
    delete: TypedFunc<i32, ()>,
}

impl Exports {
    fn new(store: &mut Store<HostState>, instance: &Instance) -> Result<Exports> {
        Ok(Exports {
            context_create: instance.get_typed_func(&mut *store, "proxy_on_context_create")?,
            vm_start: instance.get_typed_func(&mut *store, "proxy_on_vm_start")?,
            configure: instance.get_typed_func(&mut *store, "proxy_on_configure")?,
            tick: instance.get_typed_func(&mut *store, "proxy_on_tick")?,
            new_connection: instance.get_typed_func(&mut *store, "proxy_on_new_connection")?,
            downstream_data: instance.get_typed_func(&mut *store, "proxy_on_downstream_data")?,
            upstream_data: instance.get_typed_func(&mut *store, "proxy_on_upstream_data")?,
            downstream_close: instance
                .get_typed_func(&mut *store, "proxy_on_downstream_connection_close")?,
            upstream_close: instance
                .get_typed_func(&mut *store, "proxy_on_upstream_connection_close")?,
            http_call_response: instance
                .get_typed_func(&mut *store, "proxy_on_http_call_response")?,
            done: instance.get_typed_func(&mut *store, "proxy_on_done")?,
            delete: instance.get_typed_func(&mut *store, "proxy_on_delete")?,
        })
    }
}

/// The root context's id in every VM.
pub const ROOT_CONTEXT: u32 = 1;

/// One VM running the filter.
pub struct Vm {
    store: Store<HostState>,
    exports: Exports,
    next_context: u32,
}

/// Peer properties of a connection, set before its first data event.
#[derive(Clone, Debug, Default)]
pub struct PeerProperties {
    /// `mtls` (`None`: property absent).
    pub mtls: Option<bool>,
    /// `peer_certificate` (PEM).
    pub peer_certificate: Option<String>,
    /// `sha256_peer_certificate_digest` (hex).
    pub digest: Option<String>,
    /// The connection's filter state `mazu.validator.signature_vouched`
    /// (`mazu_filter::vouch`), as Mazu's handshake validator sets it.
    pub vouch: Option<String>,
    /// The connection runs an HTTP connection manager rather than
    /// `tcp_proxy`: no `upstream.address` (Envoy sets it on the downstream
    /// connection only from `tcp_proxy`).
    pub http_chain: bool,
}

/// Which side's properties [`PeerProperties`] describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `connection.*`: the downstream peer.
    Downstream,
    /// `upstream.*`: the upstream peer.
    Upstream,
}

impl Vm {
    /// Instantiates `module` as one VM of `process`; callouts may target
    /// `clusters`; the clock starts at `now_ms`.
    pub fn new(
        module: &FilterModule,
        process: &ProcessHandle,
        clusters: &[&str],
        now_ms: u64,
    ) -> Result<Vm> {
        let state = HostState::new(process.clone(), clusters, now_ms.saturating_mul(1_000_000));
        let mut store = Store::new(&module.engine, state);
        let linker = imports::linker(&module.module)?;
        let instance = linker.instantiate(&mut store, &module.module)?;
        if let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            initialize.call(&mut store, ())?;
        }
        let exports = Exports::new(&mut store, &instance)?;
        Ok(Vm {
            store,
            exports,
            next_context: ROOT_CONTEXT + 1,
        })
    }

    fn enter(&mut self, context: u32) {
        let state = self.store.data_mut();
        state.current_context = context;
        state.effective_context = context;
    }

    fn explain(&self, error: wasmtime::Error) -> wasmtime::Error {
        let stdio = String::from_utf8_lossy(&self.store.data().stdio).into_owned();
        format_err!("{error:?}\nguest output: {stdio}")
    }

    /// Creates the root context, starts the VM and configures the plugin;
    /// returns what `proxy_on_configure` returned.
    pub fn start(&mut self, plugin_configuration: &[u8]) -> Result<bool> {
        let root = ROOT_CONTEXT as i32;
        {
            let state = self.store.data_mut();
            state.root_context = ROOT_CONTEXT;
            state.plugin_configuration = plugin_configuration.to_vec();
        }
        self.enter(ROOT_CONTEXT);
        self.exports
            .context_create
            .call(&mut self.store, (root, 0))
            .map_err(|e| self.explain(e))?;
        let vm_size = self.store.data().vm_configuration.len() as i32;
        let started = self
            .exports
            .vm_start
            .call(&mut self.store, (root, vm_size))
            .map_err(|e| self.explain(e))?;
        if started == 0 {
            return Ok(false);
        }
        let size = plugin_configuration.len() as i32;
        let configured = self
            .exports
            .configure
            .call(&mut self.store, (root, size))
            .map_err(|e| self.explain(e))?;
        self.flush()?;
        Ok(configured != 0)
    }

    /// Fires the root context's tick.
    pub fn tick(&mut self) -> Result<()> {
        self.enter(ROOT_CONTEXT);
        self.exports
            .tick
            .call(&mut self.store, ROOT_CONTEXT as i32)
            .map_err(|e| self.explain(e))?;
        self.flush()
    }

    /// Moves the clock forward.
    pub fn advance_ms(&mut self, ms: u64) {
        let state = self.store.data_mut();
        state.now_ns = state.now_ns.saturating_add(ms.saturating_mul(1_000_000));
    }

    /// The clock, milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.store.data().now_ns / 1_000_000
    }

    /// The tick period the filter asked for, milliseconds.
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Takes the callouts dispatched since the last call.
    pub fn take_callouts(&mut self) -> Vec<Callout> {
        core::mem::take(&mut self.store.data_mut().callouts)
    }

    /// Every callout ever dispatched.
    pub fn callout_log(&self) -> &[Callout] {
        &self.store.data().callout_log
    }

    /// Answers callout `token`. `status: None` models Envoy's answer to a
    /// callout that failed (timeout, reset): no headers, no body.
    pub fn respond(&mut self, token: u32, status: Option<u16>, body: &[u8]) -> Result<()> {
        self.respond_with(token, status, &[], body)
    }

    /// Answers callout `token` with `extra` headers besides `:status` and
    /// `content-type` (none at all when `status` is `None`).
    pub fn respond_with(
        &mut self,
        token: u32,
        status: Option<u16>,
        extra: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<()> {
        let headers: Vec<(String, Vec<u8>)> = status
            .map(|s| {
                let mut headers = vec![
                    (":status".to_owned(), s.to_string().into_bytes()),
                    (
                        "content-type".to_owned(),
                        b"application/octet-stream".to_vec(),
                    ),
                ];
                headers.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())));
                headers
            })
            .unwrap_or_default();
        let header_count = headers.len() as i32;
        self.store.data_mut().delivery = Some(Delivery {
            headers,
            body: body.to_vec(),
        });
        self.enter(ROOT_CONTEXT);
        let result = self.exports.http_call_response.call(
            &mut self.store,
            (
                ROOT_CONTEXT as i32,
                token as i32,
                header_count,
                body.len() as i32,
                0,
            ),
        );
        self.store.data_mut().delivery = None;
        result.map_err(|e| self.explain(e))?;
        self.flush()
    }

    /// Opens a connection (context create + `on_new_connection`) with the
    /// given peer properties; returns its context id and the action.
    pub fn connect(&mut self, side: Side, peer: &PeerProperties) -> Result<(u32, Action)> {
        let context = self.next_context;
        self.next_context += 1;
        let mut connection = Connection::default();
        let prefix = match side {
            Side::Downstream => "connection",
            Side::Upstream => "upstream",
        };
        let key = |name: &str| format!("{prefix}\0{name}");
        // Like Envoy, which defines `mtls` for the downstream connection
        // only (there is no `upstream.mtls` attribute).
        if let Some(mtls) = peer.mtls.filter(|_| side == Side::Downstream) {
            connection
                .properties
                .insert(key("mtls"), vec![u8::from(mtls)]);
        }
        if let Some(pem) = &peer.peer_certificate {
            connection
                .properties
                .insert(key("peer_certificate"), pem.clone().into_bytes());
        }
        if let Some(vouch) = &peer.vouch {
            connection.properties.insert(
                format!("filter_state\0{}", mazu_filter::vouch::FILTER_STATE_KEY),
                vouch.clone().into_bytes(),
            );
        }
        if side == Side::Upstream && !peer.http_chain {
            connection
                .properties
                .insert(key("address"), b"127.0.0.1:15001".to_vec());
        }
        if let Some(digest) = &peer.digest {
            connection.properties.insert(
                key("sha256_peer_certificate_digest"),
                digest.clone().into_bytes(),
            );
        }
        self.store
            .data_mut()
            .connections
            .insert(context, connection);
        self.enter(context);
        self.exports
            .context_create
            .call(&mut self.store, (context as i32, ROOT_CONTEXT as i32))
            .map_err(|e| self.explain(e))?;
        let action = self
            .exports
            .new_connection
            .call(&mut self.store, context as i32)
            .map_err(|e| self.explain(e))?;
        self.flush()?;
        Ok((context, Action::from_code(action)))
    }

    /// Delivers downstream bytes; held bytes accumulate while the filter pauses.
    pub fn downstream_data(&mut self, context: u32, data: &[u8]) -> Result<Action> {
        self.connection_mut(context)?
            .held_downstream
            .extend_from_slice(data);
        let action = self.call_downstream_data(context)?;
        self.flush()?;
        Ok(action)
    }

    fn call_downstream_data(&mut self, context: u32) -> Result<Action> {
        let size = self.connection_mut(context)?.held_downstream.len() as i32;
        self.enter(context);
        let action = self
            .exports
            .downstream_data
            .call(&mut self.store, (context as i32, size, 0))
            .map_err(|e| self.explain(e))?;
        let action = Action::from_code(action);
        if action == Action::Continue {
            let conn = self.connection_mut(context)?;
            let held = core::mem::take(&mut conn.held_downstream);
            conn.forwarded_downstream.extend_from_slice(&held);
        }
        Ok(action)
    }

    /// Delivers upstream bytes.
    pub fn upstream_data(&mut self, context: u32, data: &[u8]) -> Result<Action> {
        self.upstream_event(context, data, false)
    }

    /// The server's last bytes, then its close, as Envoy delivers them: one
    /// `on_upstream_data` with `end_of_stream`, the guest's stream
    /// operations, then `on_upstream_connection_close` for the same context
    /// id (Envoy sends it even if the guest's close already deleted the
    /// context, which the SDK treats as a fatal error).
    pub fn upstream_data_end(&mut self, context: u32, data: &[u8]) -> Result<Action> {
        let action = self.upstream_event(context, data, true)?;
        self.enter(context);
        self.exports
            .upstream_close
            .call(&mut self.store, (context as i32, abi::peer::UNKNOWN))
            .map_err(|e| self.explain(e))?;
        self.flush()?;
        Ok(action)
    }

    fn upstream_event(&mut self, context: u32, data: &[u8], end: bool) -> Result<Action> {
        self.connection_mut(context)?
            .held_upstream
            .extend_from_slice(data);
        let size = self.connection_mut(context)?.held_upstream.len() as i32;
        self.enter(context);
        let action = self
            .exports
            .upstream_data
            .call(&mut self.store, (context as i32, size, i32::from(end)))
            .map_err(|e| self.explain(e))?;
        let action = Action::from_code(action);
        if action == Action::Continue {
            let conn = self.connection_mut(context)?;
            let held = core::mem::take(&mut conn.held_upstream);
            conn.forwarded_upstream.extend_from_slice(&held);
        }
        self.flush()?;
        Ok(action)
    }

    /// The client closed the connection.
    pub fn remote_close(&mut self, context: u32) -> Result<()> {
        self.finish(context, abi::peer::REMOTE)?;
        self.flush()
    }

    fn finish(&mut self, context: u32, peer: i32) -> Result<()> {
        if self.connection_mut(context)?.deleted {
            return Ok(());
        }
        self.enter(context);
        let id = context as i32;
        self.exports
            .downstream_close
            .call(&mut self.store, (id, peer))
            .map_err(|e| self.explain(e))?;
        self.exports
            .done
            .call(&mut self.store, id)
            .map_err(|e| self.explain(e))?;
        self.exports
            .delete
            .call(&mut self.store, id)
            .map_err(|e| self.explain(e))?;
        self.connection_mut(context)?.deleted = true;
        Ok(())
    }

    /// Carries out the stream operations the guest requested, as Envoy does
    /// after a VM call returns.
    fn flush(&mut self) -> Result<()> {
        for _ in 0..1_000 {
            let ops = core::mem::take(&mut self.store.data_mut().deferred);
            if ops.is_empty() {
                return Ok(());
            }
            for op in ops {
                match op {
                    StreamOp::CloseDownstream(context) => {
                        let conn = self.connection_mut(context)?;
                        if !conn.closed_downstream {
                            conn.closed_downstream = true;
                            self.finish(context, abi::peer::LOCAL)?;
                        }
                    }
                    StreamOp::CloseUpstream(context) => {
                        self.connection_mut(context)?.closed_upstream = true;
                    }
                    StreamOp::ResumeDownstream(context) => {
                        // As Envoy's continueReading(): the held bytes go to
                        // the *next* filter; this filter is not called again.
                        let conn = self.connection_mut(context)?;
                        conn.resumed += 1;
                        if !conn.deleted {
                            let held = core::mem::take(&mut conn.held_downstream);
                            conn.forwarded_downstream.extend_from_slice(&held);
                        }
                    }
                }
            }
        }
        bail!("the guest keeps requesting stream operations")
    }

    fn connection_mut(&mut self, context: u32) -> Result<&mut Connection> {
        self.store
            .data_mut()
            .connections
            .get_mut(&context)
            .ok_or_else(|| format_err!("no connection {context}"))
    }

    /// Drops the host-side record of a finished connection (long runs such
    /// as benchmarks would otherwise keep every one).
    pub fn forget_connection(&mut self, context: u32) {
        self.store.data_mut().connections.remove(&context);
    }

    /// Drops the lines logged so far.
    pub fn clear_logs(&mut self) {
        self.store.data_mut().logs.clear();
    }

    /// A connection's host-side state.
    pub fn connection(&self, context: u32) -> Option<&Connection> {
        self.store.data().connections.get(&context)
    }

    /// The process (shared data, stats) this VM belongs to.
    pub fn process(&self) -> &ProcessHandle {
        &self.store.data().process
    }

    /// A stat's value (0 if never defined).
    pub fn stat(&self, name: &str) -> i64 {
        self.process().stat(name).unwrap_or(0)
    }

    /// Lines logged so far.
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Whether a line containing `needle` was logged.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs().iter().any(|line| line.message.contains(needle))
    }

    /// Everything logged, one line each, for failure messages.
    pub fn log_text(&self) -> String {
        self.logs()
            .iter()
            .map(|line| format!("[{:?}] {}\n", line.level, line.message))
            .collect()
    }
}
