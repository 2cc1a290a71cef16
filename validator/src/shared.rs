//! What every TLS context of one Envoy process shares.
//!
//! Envoy builds a validator for each TLS context that names it (every
//! outbound cluster, every inbound filter chain) and builds them all again
//! whenever `ROOTCA` changes, which the node agent makes happen whenever the
//! set of live keys changes (see `live_keys` in docs/validator.md). The
//! registry, megabytes at scale, must not be read and held once per context,
//! nor the verdict cache emptied at each change: validators of the same
//! file share one [`RegistrySource`], validators of the same `trust` one
//! [`Verifier`]. What is shared lives as long as a validator uses it.

use core::time::Duration;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use mazu_identity::Verifier;

use crate::config::ValidatorConfig;
use crate::source::RegistrySource;

/// Most cached verdicts (allowed certificates and tokens) per trust
/// configuration.
const CACHE_ENTRIES: usize = mazu_identity::verdict::DEFAULT_CACHE_CAPACITY;

static SOURCES: Mutex<Vec<Weak<RegistrySource>>> = Mutex::new(Vec::new());

/// The trust object's text, and the verifier built from it.
type SharedVerifier = (String, Weak<Mutex<Verifier>>);

static VERIFIERS: Mutex<Vec<SharedVerifier>> = Mutex::new(Vec::new());

/// The process's source of `path` with these limits, made on first use.
pub fn registry_source(path: &Path, max_age: Duration, recheck: Duration) -> Arc<RegistrySource> {
    let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
    sources.retain(|source| source.strong_count() > 0);
    if let Some(found) = sources
        .iter()
        .filter_map(Weak::upgrade)
        .find(|source| source.serves(path, max_age, recheck))
    {
        return found;
    }
    let made = Arc::new(RegistrySource::new(path.to_owned(), max_age, recheck));
    sources.push(Arc::downgrade(&made));
    made
}

/// The process's verifier for `config`'s trust object, made on first use.
pub fn verifier(config: &ValidatorConfig) -> Arc<Mutex<Verifier>> {
    let mut verifiers = VERIFIERS.lock().unwrap_or_else(PoisonError::into_inner);
    verifiers.retain(|(_, verifier)| verifier.strong_count() > 0);
    if let Some(found) = verifiers
        .iter()
        .filter(|(trust, _)| *trust == config.trust_json)
        .find_map(|(_, verifier)| verifier.upgrade())
    {
        return found;
    }
    let made = Arc::new(Mutex::new(
        Verifier::new(config.trust.clone(), CACHE_ENTRIES)
            .with_signature_backend(&crate::signatures::RING),
    ));
    verifiers.push((config.trust_json.clone(), Arc::downgrade(&made)));
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_per_file_and_limits_while_used() {
        let second = Duration::from_secs(1);
        let a = registry_source(Path::new("/shared-test/a"), second * 60, second);
        let again = registry_source(Path::new("/shared-test/a"), second * 60, second);
        assert!(Arc::ptr_eq(&a, &again));
        let other_file = registry_source(Path::new("/shared-test/b"), second * 60, second);
        let other_limit = registry_source(Path::new("/shared-test/a"), second * 30, second);
        assert!(!Arc::ptr_eq(&a, &other_file) && !Arc::ptr_eq(&a, &other_limit));
        // Dropped by every validator: the next one is made afresh.
        drop((a, again));
        let fresh = registry_source(Path::new("/shared-test/a"), second * 60, second);
        assert_eq!(Arc::strong_count(&fresh), 1);
    }
}
