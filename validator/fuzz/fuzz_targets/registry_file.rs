//! The registry file decoder (bytes another process wrote): never panics,
//! and is canonical (whatever decodes re-encodes to the same bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mazu_validator::RegistryFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = RegistryFile::decode(data) {
        assert_eq!(file.encode(), data);
    }
});
