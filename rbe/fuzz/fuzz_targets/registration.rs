//! A decoded registration run through every check against a small fixed CRS and
//! a registry with one entry: never panics, and a registration that passes the
//! stateful check also passes the stateless one.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mazu_rbe::{Crs, Registration, RegistryState, keygen};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn registry() -> &'static RegistryState {
    static STATE: OnceLock<RegistryState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let crs = Crs::generate_insecure_dev(16, &mut rng).expect("dev CRS");
        let mut state = RegistryState::new(crs.clone());
        let (_, reg) = keygen(&crs, 3, [3; 32], &mut rng).expect("keygen");
        state.verify_and_apply(reg).expect("honest registration");
        state
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(registration) = Registration::from_bytes(data) else {
        return;
    };
    let state = registry();
    let stateless = registration.verify_well_formed(state.crs());
    if state.verify(registration).is_ok() {
        assert!(stateless.is_ok());
    }
});
