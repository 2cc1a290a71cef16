//! Numbers and encodings of the proxy-wasm ABI (0.2.1), as Envoy and the
//! Rust SDK use them.

/// `proxy_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// No such key, property, buffer...
    NotFound = 1,
    /// An argument the host refuses (unknown cluster, context...).
    BadArgument = 2,
    /// Empty buffer or map.
    Empty = 7,
    /// Shared-data compare-and-swap lost.
    CasMismatch = 8,
}

impl Status {
    /// As returned to the guest.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_action_t` returned by stream callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the data through.
    Continue,
    /// Hold it.
    Pause,
}

impl Action {
    /// From the guest's return value (anything but 0 holds the data).
    pub const fn from_code(code: i32) -> Action {
        if code == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// `proxy_log_level_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0.
    Trace,
    /// 1.
    Debug,
    /// 2.
    Info,
    /// 3.
    Warn,
    /// 4.
    Error,
    /// 5.
    Critical,
}

impl LogLevel {
    /// From the guest's value; `None` for an unknown level.
    pub const fn from_code(code: i32) -> Option<LogLevel> {
        Some(match code {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t` values the host serves.
pub mod buffer {
    /// Data from the downstream connection.
    pub const DOWNSTREAM_DATA: i32 = 2;
    /// Data from the upstream connection.
    pub const UPSTREAM_DATA: i32 = 3;
    /// Body of the callout response being delivered.
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    /// The VM configuration.
    pub const VM_CONFIGURATION: i32 = 6;
    /// The plugin configuration.
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

/// `proxy_map_type_t` values the host serves.
pub mod map {
    /// Headers of the callout response being delivered.
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    /// Trailers of the callout response being delivered.
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_stream_type_t`.
pub mod stream {
    /// The downstream connection.
    pub const DOWNSTREAM: i32 = 2;
    /// The upstream connection.
    pub const UPSTREAM: i32 = 3;
}

/// `proxy_metric_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// Set to a value.
    Gauge,
    /// Distribution.
    Histogram,
}

impl MetricKind {
    /// From the guest's value.
    pub const fn from_code(code: i32) -> Option<MetricKind> {
        Some(match code {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// `proxy_peer_type_t` for close events.
pub mod peer {
    /// Unknown (Envoy's report of an upstream end of stream).
    pub const UNKNOWN: i32 = 0;
    /// Closed by this side (Envoy, on the filter's request).
    pub const LOCAL: i32 = 1;
    /// Closed by the remote peer.
    pub const REMOTE: i32 = 2;
}

/// Encodes header pairs the way the SDK decodes them: count, then (key
/// length, value length) pairs, then each key and value NUL-terminated; all
/// integers little-endian u32.
pub fn encode_pairs(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Decodes what [`encode_pairs`] makes (the guest's `dispatch_http_call`
/// headers); `None` if malformed.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for n in 0..count {
        let key_len = read_u32(4 + n * 8)?;
        let value_len = read_u32(8 + n * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        pairs.push((
            String::from_utf8(key.to_vec()).ok()?,
            String::from_utf8(value.to_vec()).ok()?,
        ));
    }
    Some(pairs)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![
            (":status".to_owned(), b"200".to_vec()),
            ("etag".to_owned(), b"\"7\"".to_vec()),
        ];
        let decoded = decode_pairs(&encode_pairs(&pairs)).unwrap();
        assert_eq!(
            decoded,
            [(":status", "200"), ("etag", "\"7\"")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(decode_pairs(&[1, 0, 0, 0]), None);
        assert_eq!(decode_pairs(&[]), Some(vec![]));
    }
}
