//! The host functions: the proxy-wasm ABI calls the filter imports, the few
//! WASI preview1 calls Rust's `std` imports, and a trapping stub (naming the
//! function) for every other import of the module.

use std::collections::HashSet;

use wasmtime::{Caller, Extern, Linker, Module, Result, bail, format_err};

use crate::abi::{self, LogLevel, MetricKind, Status};
use crate::state::{Callout, HostState, LogLine, Stat, StreamOp};

type Ctx<'a> = Caller<'a, HostState>;

const ENV: &str = "env";
const WASI: &str = "wasi_snapshot_preview1";

/// Builds a linker with every host function, plus trapping stubs for the
/// imports of `module` that the host does not implement.
pub fn linker(module: &Module) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(module.engine());
    let mut defined = HashSet::new();
    define_proxy(&mut linker, &mut defined)?;
    define_wasi(&mut linker, &mut defined)?;
    for import in module.imports() {
        let (module_name, name) = (import.module().to_owned(), import.name().to_owned());
        if defined.contains(&(module_name.clone(), name.clone())) {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            bail!("the module imports a non-function {module_name}.{name}");
        };
        let label = format!("{module_name}.{name}");
        linker.func_new(&module_name, &name, ty, move |_, _, _| {
            bail!("the test host does not implement {label} (called by the filter)")
        })?;
    }
    Ok(linker)
}

fn note(defined: &mut HashSet<(String, String)>, module: &str, name: &str) {
    defined.insert((module.to_owned(), name.to_owned()));
}

// ---- guest memory -------------------------------------------------------

fn memory(caller: &mut Ctx<'_>) -> Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| format_err!("the guest exports no memory"))
}

fn offset(ptr: i32) -> usize {
    // Wasm32 pointers are unsigned.
    ptr as u32 as usize
}

/// Reads `len` bytes at `ptr` (trap if out of bounds).
pub fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let mut out = vec![0u8; offset(len)];
    memory
        .read(&*caller, offset(ptr), &mut out)
        .map_err(|_| format_err!("guest pointer {ptr:#x}+{len} is out of bounds"))?;
    Ok(out)
}

fn read_string(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<String> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| format_err!("guest string is not UTF-8"))
}

fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, offset(ptr), bytes)
        .map_err(|_| format_err!("guest pointer {ptr:#x}+{} is out of bounds", bytes.len()))
}

fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into memory the guest allocates (through its
/// `proxy_on_memory_allocate` or `malloc` export) and writes the pointer and
/// size to `ptr_ptr` and `size_ptr`.
fn return_bytes(caller: &mut Ctx<'_>, bytes: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<()> {
    let size = i32::try_from(bytes.len()).map_err(|_| format_err!("return value too large"))?;
    let address = if bytes.is_empty() {
        0
    } else {
        let allocate = caller
            .get_export("proxy_on_memory_allocate")
            .or_else(|| caller.get_export("malloc"))
            .and_then(Extern::into_func)
            .ok_or_else(|| {
                format_err!("the guest exports neither proxy_on_memory_allocate nor malloc")
            })?
            .typed::<i32, i32>(&*caller)?;
        let address = allocate.call(&mut *caller, size)?;
        if address == 0 {
            bail!("the guest could not allocate {size} bytes");
        }
        write(caller, address, bytes)?;
        address
    };
    write_u32(caller, ptr_ptr, address as u32)?;
    write_u32(caller, size_ptr, size as u32)
}

// ---- proxy-wasm ---------------------------------------------------------

fn define_proxy(
    linker: &mut Linker<HostState>,
    defined: &mut HashSet<(String, String)>,
) -> Result<()> {
    for name in [
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_get_buffer_bytes",
        "proxy_set_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_get_property",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_http_call",
        "proxy_set_effective_context",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_get_metric",
        "proxy_done",
    ] {
        note(defined, ENV, name);
    }

    linker.func_wrap(
        ENV,
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let message = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
            let Some(level) = LogLevel::from_code(level) else {
                return Ok(Status::BadArgument.code());
            };
            c.data_mut().logs.push(LogLine { level, message });
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_log_level",
        |mut c: Ctx<'_>, ret: i32| -> Result<i32> {
            write_u32(&mut c, ret, 0)?; // trace: the guest logs everything
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, ret: i32| -> Result<i32> {
            let now = c.data().now_ns;
            write_u64(&mut c, ret, now)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| -> Result<i32> {
            c.data_mut().tick_period_ms = period as u32;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         kind: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let state = c.data();
            let effective = state.effective_context;
            let buffer: Option<Vec<u8>> = match kind {
                abi::buffer::PLUGIN_CONFIGURATION => Some(state.plugin_configuration.clone()),
                abi::buffer::VM_CONFIGURATION => Some(state.vm_configuration.clone()),
                abi::buffer::HTTP_CALL_RESPONSE_BODY => {
                    state.delivery.as_ref().map(|d| d.body.clone())
                }
                abi::buffer::DOWNSTREAM_DATA => state
                    .connections
                    .get(&effective)
                    .map(|c| c.held_downstream.clone()),
                abi::buffer::UPSTREAM_DATA => state
                    .connections
                    .get(&effective)
                    .map(|c| c.held_upstream.clone()),
                other => bail!("the test host does not serve buffer type {other}"),
            };
            let Some(buffer) = buffer else {
                return Ok(Status::NotFound.code());
            };
            let start = offset(start).min(buffer.len());
            let end = start.saturating_add(offset(max)).min(buffer.len());
            let slice = buffer.get(start..end).unwrap_or_default().to_vec();
            if slice.is_empty() && buffer.is_empty() {
                return Ok(Status::NotFound.code());
            }
            return_bytes(&mut c, &slice, ptr_ptr, size_ptr)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            let value = read(&mut c, ptr, len)?;
            let state = c.data_mut();
            let effective = state.effective_context;
            let Some(connection) = state.connections.get_mut(&effective) else {
                return Ok(Status::NotFound.code());
            };
            let buffer = match kind {
                abi::buffer::DOWNSTREAM_DATA => &mut connection.held_downstream,
                abi::buffer::UPSTREAM_DATA => &mut connection.held_upstream,
                other => bail!("the test host cannot set buffer type {other}"),
            };
            let start = offset(start).min(buffer.len());
            let end = start.saturating_add(offset(size)).min(buffer.len());
            buffer.splice(start..end, value);
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, kind: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            let pairs = response_map(c.data(), kind)?;
            let encoded = abi::encode_pairs(&pairs);
            return_bytes(&mut c, &encoded, ptr_ptr, size_ptr)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>,
         kind: i32,
         key_ptr: i32,
         key_len: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let pairs = response_map(c.data(), kind)?;
            let Some((_, value)) = pairs
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&key))
            else {
                return Ok(Status::NotFound.code());
            };
            return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_property",
        |mut c: Ctx<'_>,
         path_ptr: i32,
         path_len: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> Result<i32> {
            let path = read_string(&mut c, path_ptr, path_len)?;
            let state = c.data();
            let value = state
                .connections
                .get(&state.effective_context)
                .and_then(|conn| conn.properties.get(&path))
                .cloned();
            let Some(value) = value else {
                return Ok(Status::NotFound.code());
            };
            return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let entry = c.data().process.lock().shared_data.get(&key).cloned();
            let Some((value, cas)) = entry else {
                return Ok(Status::NotFound.code());
            };
            return_bytes(&mut c, &value, ptr_ptr, size_ptr)?;
            write_u32(&mut c, cas_ptr, cas)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_set_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32,
         cas: i32|
         -> Result<i32> {
            let key = read_string(&mut c, key_ptr, key_len)?;
            let value = read(&mut c, value_ptr, value_len)?;
            let process = c.data().process.clone();
            let mut process = process.lock();
            let cas = cas as u32;
            if let Some((_, current)) = process.shared_data.get(&key)
                && cas != 0
                && cas != *current
            {
                return Ok(Status::CasMismatch.code());
            }
            process.cas_counter = process.cas_counter.wrapping_add(1).max(1);
            let next = process.cas_counter;
            process.shared_data.insert(key, (value, next));
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_continue_stream",
        |mut c: Ctx<'_>, stream: i32| -> Result<i32> {
            let context = c.data().effective_context;
            match stream {
                abi::stream::DOWNSTREAM => c
                    .data_mut()
                    .deferred
                    .push(StreamOp::ResumeDownstream(context)),
                // Envoy does not implement resuming the upstream side of a network filter.
                abi::stream::UPSTREAM => {
                    bail!("proxy_continue_stream(Upstream) is unimplemented in Envoy")
                }
                other => bail!("the test host does not implement proxy_continue_stream({other})"),
            }
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_close_stream",
        |mut c: Ctx<'_>, stream: i32| -> Result<i32> {
            let context = c.data().effective_context;
            match stream {
                abi::stream::DOWNSTREAM => c
                    .data_mut()
                    .deferred
                    .push(StreamOp::CloseDownstream(context)),
                abi::stream::UPSTREAM => {
                    c.data_mut().deferred.push(StreamOp::CloseUpstream(context))
                }
                other => bail!("the test host does not implement proxy_close_stream({other})"),
            }
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up_ptr: i32,
         up_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         body_ptr: i32,
         body_len: i32,
         trailers_ptr: i32,
         trailers_len: i32,
         timeout_ms: i32,
         token_ptr: i32|
         -> Result<i32> {
            let cluster = read_string(&mut c, up_ptr, up_len)?;
            let headers = abi::decode_pairs(&read(&mut c, headers_ptr, headers_len)?)
                .ok_or_else(|| format_err!("malformed callout headers"))?;
            let body = read(&mut c, body_ptr, body_len)?;
            let _trailers = read(&mut c, trailers_ptr, trailers_len)?;
            if !c.data().clusters.contains(&cluster) {
                return Ok(Status::BadArgument.code());
            }
            let state = c.data_mut();
            state.last_token += 1;
            let callout = Callout {
                token: state.last_token,
                cluster,
                headers,
                body,
                timeout_ms: timeout_ms as u32,
            };
            let token = callout.token;
            state.callouts.push(callout.clone());
            state.callout_log.push(callout);
            write_u32(&mut c, token_ptr, token)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, context: i32| -> Result<i32> {
            let context = context as u32;
            let state = c.data_mut();
            let known = context == state.root_context
                || state
                    .connections
                    .get(&context)
                    .is_some_and(|conn| !conn.deleted);
            if !known {
                return Ok(Status::BadArgument.code());
            }
            state.effective_context = context;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, name_ptr: i32, name_len: i32, id_ptr: i32| -> Result<i32> {
            let name = read_string(&mut c, name_ptr, name_len)?;
            let Some(kind) = MetricKind::from_code(kind) else {
                return Ok(Status::BadArgument.code());
            };
            let state = c.data_mut();
            state
                .process
                .lock()
                .stats
                .entry(name.clone())
                .or_insert(Stat { kind, value: 0 });
            state.metric_names.push(name);
            let id = u32::try_from(state.metric_names.len() - 1)?;
            write_u32(&mut c, id_ptr, id)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_increment_metric",
        |c: Ctx<'_>, id: i32, offset: i64| -> Result<i32> {
            Ok(update_metric(c.data(), id, |stat| {
                if stat.kind == MetricKind::Histogram {
                    return false;
                }
                stat.value = stat.value.saturating_add(offset);
                true
            }))
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_record_metric",
        |c: Ctx<'_>, id: i32, value: i64| -> Result<i32> {
            Ok(update_metric(c.data(), id, |stat| {
                stat.value = value;
                true
            }))
        },
    )?;

    linker.func_wrap(
        ENV,
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, ret: i32| -> Result<i32> {
            let state = c.data();
            let value = state
                .metric_names
                .get(offset(id))
                .and_then(|name| state.process.lock().stats.get(name).map(|s| s.value));
            let Some(value) = value else {
                return Ok(Status::NotFound.code());
            };
            write_u64(&mut c, ret, value as u64)?;
            Ok(Status::Ok.code())
        },
    )?;

    linker.func_wrap(ENV, "proxy_done", |_c: Ctx<'_>| -> Result<i32> {
        Ok(Status::Ok.code())
    })?;
    Ok(())
}

fn response_map(state: &HostState, kind: i32) -> Result<Vec<(String, Vec<u8>)>> {
    match kind {
        abi::map::HTTP_CALL_RESPONSE_HEADERS => Ok(state
            .delivery
            .as_ref()
            .map(|d| d.headers.clone())
            .unwrap_or_default()),
        abi::map::HTTP_CALL_RESPONSE_TRAILERS => Ok(Vec::new()),
        other => bail!("the test host does not serve header map type {other}"),
    }
}

fn update_metric(state: &HostState, id: i32, update: impl FnOnce(&mut Stat) -> bool) -> i32 {
    let Some(name) = state.metric_names.get(offset(id)) else {
        return Status::NotFound.code();
    };
    let mut process = state.process.lock();
    match process.stats.get_mut(name) {
        Some(stat) => {
            if update(stat) {
                Status::Ok.code()
            } else {
                Status::BadArgument.code()
            }
        }
        None => Status::NotFound.code(),
    }
}

// ---- WASI preview1 (what Rust's std imports) -------------------------------

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;

fn define_wasi(
    linker: &mut Linker<HostState>,
    defined: &mut HashSet<(String, String)>,
) -> Result<()> {
    for name in [
        "fd_write",
        "environ_get",
        "environ_sizes_get",
        "args_get",
        "args_sizes_get",
        "clock_time_get",
        "random_get",
        "proc_exit",
    ] {
        note(defined, WASI, name);
    }

    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(ERRNO_BADF);
            }
            let mut total = 0u32;
            for i in 0..iovs_len {
                let iov = read(&mut c, iovs.wrapping_add(i * 8), 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = read(&mut c, ptr, len)?;
                total = total.wrapping_add(bytes.len() as u32);
                c.data_mut().stdio.extend_from_slice(&bytes);
            }
            write_u32(&mut c, written_ptr, total)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;

    for (sizes, values) in [
        ("environ_sizes_get", "environ_get"),
        ("args_sizes_get", "args_get"),
    ] {
        linker.func_wrap(
            WASI,
            sizes,
            |mut c: Ctx<'_>, count_ptr: i32, size_ptr: i32| -> Result<i32> {
                write_u32(&mut c, count_ptr, 0)?;
                write_u32(&mut c, size_ptr, 0)?;
                Ok(ERRNO_SUCCESS)
            },
        )?;
        linker.func_wrap(
            WASI,
            values,
            |_c: Ctx<'_>, _ptrs: i32, _buf: i32| -> Result<i32> { Ok(ERRNO_SUCCESS) },
        )?;
    }

    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Ctx<'_>, _clock: i32, _precision: i64, ret: i32| -> Result<i32> {
            let now = c.data().now_ns;
            write_u64(&mut c, ret, now)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;

    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> Result<i32> {
            // Deterministic bytes: the filter needs no secret randomness.
            let bytes: Vec<u8> = (0..offset(len))
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
                .collect();
            write(&mut c, ptr, &bytes)?;
            Ok(ERRNO_SUCCESS)
        },
    )?;

    linker.func_wrap(WASI, "proc_exit", |c: Ctx<'_>, code: i32| -> Result<()> {
        let stdio = String::from_utf8_lossy(&c.data().stdio).into_owned();
        bail!("the guest called proc_exit({code}); its output: {stdio}")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Module, Store};

    use super::linker;
    use crate::state::{HostState, ProcessHandle};

    /// `(module (import "env" "proxy_nope" (func)) (func (export "go") call 0))`
    const CALLS_UNKNOWN_IMPORT: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x02, 0x12, 0x01, 0x03, b'e', b'n', b'v', 0x0a, b'p', b'r', b'o', b'x', b'y', b'_', b'n',
        b'o', b'p', b'e', 0x00, 0x00, // import env.proxy_nope
        0x03, 0x02, 0x01, 0x00, // function 1: type 0
        0x07, 0x06, 0x01, 0x02, b'g', b'o', 0x00, 0x01, // export "go"
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x10, 0x00, 0x0b, // body: call 0
    ];

    #[test]
    fn an_unimplemented_import_traps_naming_it() {
        let engine = Engine::default();
        let module = Module::new(&engine, CALLS_UNKNOWN_IMPORT).unwrap();
        let linker = linker(&module).unwrap();
        let mut store = Store::new(&engine, HostState::new(ProcessHandle::new(), &[], 0));
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let go = instance.get_typed_func::<(), ()>(&mut store, "go").unwrap();
        let error = go.call(&mut store, ()).unwrap_err();
        assert!(
            format!("{error:?}").contains("the test host does not implement env.proxy_nope"),
            "{error:?}"
        );
    }
}
