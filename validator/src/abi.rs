//! The C ABI Envoy calls: the `envoy.tls.cert_validator.dynamic_modules`
//! hooks of Envoy 1.40's dynamic-module ABI (`v0.2.0`). Thin: every hook
//! checks its pointers, catches panics, and hands over to [`Validator`].
//!
//! The declarations follow Envoy's `abi.h` for the cert-validator hooks; the
//! test `validator/tests/envoy.rs` loads this module into the real Envoy
//! 1.40 binary and shows each hook working (allowed and refused handshakes
//! in both directions).

use core::ffi::{c_char, c_void};
use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use mazu_filter::vouch::{self, TrustDigest, VouchedVerdict};
use mazu_identity::PeerIdentity;
use sha2::{Digest, Sha256};

use crate::config::ValidatorConfig;
use crate::validator::{Refusal, Side, Validator};

/// The ABI version this module is built for (Envoy logs a warning when it
/// differs from its own, and still loads the module).
const ABI_VERSION: &core::ffi::CStr = c"v0.2.0";

/// The only validator name this module serves.
pub const VALIDATOR_NAME: &str = "mazu";

/// `SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT`: a peer without a
/// certificate fails the handshake.
const SSL_VERIFY_PEER_REQUIRED: i32 = 0x03;

/// `envoy_dynamic_module_type_envoy_buffer` / `..._module_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

impl Buffer {
    /// The bytes, or empty for a null pointer.
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes that outlive the call.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: Envoy passes `length` bytes at `ptr`, valid for the call.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
    }
}

/// `envoy_dynamic_module_type_cert_validator_validation_status`.
const STATUS_SUCCESSFUL: u32 = 0;
const STATUS_FAILED: u32 = 1;
/// `envoy_dynamic_module_type_cert_validator_client_validation_status`.
const CLIENT_NO_CERTIFICATE: u32 = 1;
const CLIENT_VALIDATED: u32 = 2;
const CLIENT_FAILED: u32 = 3;

/// `envoy_dynamic_module_type_cert_validator_validation_result`.
#[repr(C)]
pub struct ValidationResult {
    status: u32,
    detailed_status: u32,
    tls_alert: u8,
    has_tls_alert: bool,
}

/// What Envoy holds for one validator configuration.
struct Module {
    validator: Validator,
    /// SHA-256 of the configuration: a changed configuration invalidates
    /// TLS sessions resumed under the old one.
    digest: [u8; 32],
    /// The `trust` object's digest, named when vouching for a token's
    /// signature to the filter (`mazu_filter::vouch`).
    trust_digest: Option<TrustDigest>,
}

/// `envoy_dynamic_module_callback_cert_validator_set_filter_state`: key and
/// value as module buffers, true if stored.
type SetFilterState = unsafe extern "C" fn(*mut c_void, Buffer, Buffer) -> bool;

/// Envoy's `set_filter_state` callback, if this Envoy has it (the 1.38.2,
/// 1.39.0 and 1.40.0 binaries export it: docs/versions.md). Looked up at
/// run time rather than linked, so that the module still loads into an
/// Envoy without it.
fn set_filter_state_callback() -> Option<SetFilterState> {
    static CALLBACK: OnceLock<Option<SetFilterState>> = OnceLock::new();
    *CALLBACK.get_or_init(|| {
        unsafe extern "C" {
            fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        }
        const NAME: &core::ffi::CStr =
            c"envoy_dynamic_module_callback_cert_validator_set_filter_state";
        // SAFETY: dlsym with RTLD_DEFAULT (a null handle on Linux) looks the
        // name up in the process's global symbols; NAME is NUL-terminated.
        let address = unsafe { dlsym(core::ptr::null_mut(), NAME.as_ptr()) };
        if address.is_null() {
            eprintln!(
                "mazu-validator: this Envoy has no cert-validator filter state callback: \
                 the Wasm filter verifies token signatures itself"
            );
            return None;
        }
        // SAFETY: Envoy's exported function of that name has this signature
        // (abi.h: config_envoy_ptr, module_buffer key, module_buffer value -> bool).
        Some(unsafe { core::mem::transmute::<*mut c_void, SetFilterState>(address) })
    })
}

/// Tells the inbound Wasm filter, through the connection's filter state,
/// that this handshake allowed the client certificate `leaf` as `peer`
/// under the trust object `trust` (`mazu_filter::vouch`). Best effort:
/// without it the filter decides the certificate itself.
fn vouch_for_verdict(envoy: *mut c_void, trust: &TrustDigest, leaf: &[u8], peer: &PeerIdentity) {
    let Some(set_filter_state) = set_filter_state_callback() else {
        return;
    };
    let value = vouch::encode_verdict(
        trust,
        &VouchedVerdict {
            certificate_digest: Sha256::digest(leaf).into(),
            workload_id: peer.workload_id,
            spki_hash: peer.spki_hash,
            valid_until: peer.valid_until,
            spiffe_id: peer.spiffe_id.clone(),
        },
    );
    let key = vouch::FILTER_STATE_KEY;
    let buffer = |text: &str| Buffer {
        ptr: text.as_ptr().cast(),
        length: text.len(),
    };
    // SAFETY: `envoy` is the config pointer Envoy passed to this
    // do_verify_cert_chain call, during which the callback is valid; both
    // buffers outlive the call (Envoy copies them).
    unsafe { set_filter_state(envoy, buffer(key), buffer(&value)) };
}

/// Refusals seen per reason; a reason is logged at its 1st, 2nd, 4th, 8th...
/// occurrence, so a flood of refused handshakes cannot flood the log.
static REFUSALS: Mutex<Vec<(&str, u64)>> = Mutex::new(Vec::new());

fn log_refusal(refusal: &Refusal, side: Side) {
    let name = refusal.as_str();
    let count = {
        let mut seen = REFUSALS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = seen.iter_mut().find(|(reason, _)| *reason == name) {
            entry.1 += 1;
            entry.1
        } else {
            seen.push((name, 1));
            1
        }
    };
    if count.is_power_of_two() {
        eprintln!(
            "mazu-validator: refused a {side:?}-side handshake ({name}, seen {count} times): {refusal}"
        );
    }
}

/// Returns the ABI version: the module loads.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

/// Parses the configuration; null (Envoy refuses the TLS context) if it is
/// not valid, with the reason on stderr.
///
/// # Safety
/// Called by Envoy with buffers valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_cert_validator_config_new(
    _envoy: *mut c_void,
    name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: Envoy's buffers are valid for the call.
    let (name, config) = unsafe { (name.bytes(), config.bytes()) };
    let made = catch_unwind(|| {
        if name != VALIDATOR_NAME.as_bytes() {
            return Err(format!(
                "unknown validator_name {:?} (this module serves {VALIDATOR_NAME:?})",
                String::from_utf8_lossy(name)
            ));
        }
        let parsed = ValidatorConfig::parse(config).map_err(|e| e.to_string())?;
        eprintln!(
            "mazu-validator: configured: registry file {}, {} destinations",
            parsed.registry_file.display(),
            parsed.destinations.len()
        );
        Ok(Module {
            trust_digest: TrustDigest::of_json(parsed.trust_json.as_bytes()),
            validator: Validator::new(parsed),
            digest: Sha256::digest(config).into(),
        })
    });
    match made {
        Ok(Ok(module)) => Box::into_raw(Box::new(module)).cast_const().cast(),
        Ok(Err(problem)) => {
            eprintln!("mazu-validator: configuration refused: {problem}");
            core::ptr::null()
        }
        Err(_) => {
            eprintln!("mazu-validator: configuration refused: the module panicked");
            core::ptr::null()
        }
    }
}

/// Frees what `config_new` made.
///
/// # Safety
/// `module` is a pointer `config_new` returned, not yet destroyed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_cert_validator_config_destroy(
    module: *const c_void,
) {
    if !module.is_null() {
        // SAFETY: made by Box::into_raw in config_new, destroyed once.
        drop(unsafe { Box::from_raw(module.cast_mut().cast::<Module>()) });
    }
}

/// Decides one handshake.
///
/// # Safety
/// `module` comes from `config_new`; `certs` points to `certs_count`
/// buffers; all are valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_cert_validator_do_verify_cert_chain(
    envoy: *mut c_void,
    module: *const c_void,
    certs: *const Buffer,
    certs_count: usize,
    host_name: Buffer,
    is_server: bool,
) -> ValidationResult {
    let failed = |detailed_status| ValidationResult {
        status: STATUS_FAILED,
        detailed_status,
        tls_alert: 0,
        has_tls_alert: false,
    };
    if module.is_null() {
        return failed(CLIENT_FAILED);
    }
    // SAFETY: a live Module from config_new, shared read-only (Sync).
    let module = unsafe { &*module.cast::<Module>() };
    let leaf = if certs.is_null() || certs_count == 0 {
        None
    } else {
        // SAFETY: the first of `certs_count` buffers Envoy passes; valid for the call.
        Some(unsafe { (*certs).bytes() })
    };
    // SAFETY: valid for the call.
    let sni = String::from_utf8_lossy(unsafe { host_name.bytes() });
    let side = if is_server {
        Side::Server
    } else {
        Side::Client
    };
    let decided = catch_unwind(AssertUnwindSafe(|| {
        module.validator.check(leaf, side, &sni, SystemTime::now())
    }));
    match decided {
        Ok(Ok(peer)) => {
            // Inbound, the filter decides this client again at its first
            // byte: spare it the checks this handshake just made.
            if side == Side::Server
                && let Some(trust) = &module.trust_digest
                && let Some(leaf) = leaf
                && catch_unwind(AssertUnwindSafe(|| {
                    vouch_for_verdict(envoy, trust, leaf, &peer);
                }))
                .is_err()
            {
                eprintln!("mazu-validator: could not vouch for a verdict: the module panicked");
            }
            ValidationResult {
                status: STATUS_SUCCESSFUL,
                detailed_status: CLIENT_VALIDATED,
                tls_alert: 0,
                has_tls_alert: false,
            }
        }
        Ok(Err(refusal)) => {
            log_refusal(&refusal, side);
            if refusal == Refusal::NoCertificate {
                failed(CLIENT_NO_CERTIFICATE)
            } else {
                failed(CLIENT_FAILED)
            }
        }
        Err(_) => {
            eprintln!("mazu-validator: refused a handshake: the module panicked");
            failed(CLIENT_FAILED)
        }
    }
}

/// Peers must present a certificate, in both directions.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_cert_validator_get_ssl_verify_mode(
    _module: *const c_void,
    _handshaker_provides_certificates: bool,
) -> i32 {
    SSL_VERIFY_PEER_REQUIRED
}

/// The configuration's digest, for TLS session resumption.
///
/// # Safety
/// `module` comes from `config_new`; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_cert_validator_update_digest(
    module: *const c_void,
    out: *mut Buffer,
) {
    if module.is_null() || out.is_null() {
        return;
    }
    // SAFETY: a live Module; `out` is Envoy's writable buffer; the digest
    // lives as long as the Module.
    unsafe {
        let module = &*module.cast::<Module>();
        (*out).ptr = module.digest.as_ptr().cast();
        (*out).length = module.digest.len();
    }
}
