//! Host calls as the filter uses them: results instead of panics, and the
//! time in milliseconds.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Bytes, LogLevel, MetricType};

/// Logs at `level`; a failing log call is ignored (there is nowhere to report it).
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Wall-clock time in milliseconds since the epoch; 0 if the host cannot
/// tell (every token then looks not yet valid: connections are denied).
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The host's clock in nanoseconds since the Unix epoch (0 if unreadable):
/// for measuring spans of the filter's own work.
pub fn now_nanos() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// A property, `None` when absent or unreadable.
pub fn property(path: &[&str]) -> Option<Bytes> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A boolean property (Envoy serialises it as one byte).
pub fn bool_property(path: &[&str]) -> Option<bool> {
    match property(path)?.as_slice() {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// Envoy's shared data, as the [cross-VM protocol](crate::shared) uses it:
/// an unreadable entry reads as absent, a refused write as `false`.
pub struct HostShared;

impl crate::shared::SharedStore for HostShared {
    fn get(&self, key: &str) -> (Option<Bytes>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// 32 random bits from the host (WASI `random_get`, which Envoy serves
/// from BoringSSL's `RAND_bytes`), through the standard library's
/// randomly keyed hasher.
pub fn random_u32() -> u32 {
    use core::hash::BuildHasher as _;
    use std::hash::RandomState;
    RandomState::new().hash_one(0u8) as u32
}

/// Defines a metric; `None` if the host refused.
pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            error(&format!(
                "mazu-filter: cannot define metric {name}: {status:?}"
            ));
            None
        }
    }
}

/// Adds 1 to a counter.
pub fn increment(id: Option<u32>) {
    increment_by(id, 1);
}

/// Adds `by` to a counter.
pub fn increment_by(id: Option<u32>, by: u64) {
    if let Some(id) = id
        && by > 0
    {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// Sets a gauge.
pub fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}
