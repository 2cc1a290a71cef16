//! The validator configuration parser (JSON the control plane serves):
//! never panics; a destination lookup on any SNI never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_validator::ValidatorConfig;
use mazu_validator::config::destination_host;

fuzz_target!(|data: &[u8]| {
    let sni = String::from_utf8_lossy(data);
    let host = destination_host(&sni);
    assert!(sni.ends_with(host));
    if let Ok(config) = ValidatorConfig::parse(data) {
        let _ = config.expected_servers(&sni);
    }
});
