//! A bounded map from certificate digest (SHA-256 of the DER) to a cached
//! verdict, with an expiry per entry.
//!
//! A `BTreeMap` rather than a `HashMap`: no hash seed to draw from the
//! sandbox, no hash flooding, and eviction by key order is as good as random
//! since keys are digests. What is stored and when an entry still applies
//! (registry version, revocation) is the engine's business; this module only
//! bounds memory and drops expired entries.

use alloc::collections::BTreeMap;

/// SHA-256 of a DER certificate.
pub type CertDigest = [u8; 32];

/// One cached value and the Unix second after which it no longer applies.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot<V> {
    value: V,
    valid_until: u64,
}

/// The cache. Capacity is a hard bound: inserting into a full cache first
/// drops expired entries, then, if still full, an eighth of the entries.
#[derive(Clone, Debug)]
pub struct VerdictCache<V> {
    entries: BTreeMap<CertDigest, Slot<V>>,
    capacity: usize,
}

impl<V> VerdictCache<V> {
    /// An empty cache holding at most `capacity` (at least 1) entries.
    pub fn new(capacity: usize) -> Self {
        VerdictCache {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value for `digest` if it is still valid at `now_unix`; an expired
    /// entry is removed.
    pub fn get_mut(&mut self, digest: &CertDigest, now_unix: u64) -> Option<&mut V> {
        let expired = self.entries.get(digest)?.valid_until < now_unix;
        if expired {
            self.entries.remove(digest);
            return None;
        }
        self.entries.get_mut(digest).map(|slot| &mut slot.value)
    }

    /// Stores `value` for `digest` until `valid_until` (Unix seconds, inclusive).
    pub fn insert(&mut self, digest: CertDigest, value: V, valid_until: u64, now_unix: u64) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.make_room(now_unix);
        }
        self.entries.insert(digest, Slot { value, valid_until });
    }

    /// Removes the entry for `digest`.
    pub fn remove(&mut self, digest: &CertDigest) {
        self.entries.remove(digest);
    }

    /// Number of entries (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn make_room(&mut self, now_unix: u64) {
        self.entries.retain(|_, slot| slot.valid_until >= now_unix);
        if self.entries.len() < self.capacity {
            return;
        }
        // Keys are digests, so dropping a run of them is an unbiased sample.
        let drop = (self.capacity / 8).max(1);
        let victims: alloc::vec::Vec<CertDigest> =
            self.entries.keys().take(drop).copied().collect();
        for key in victims {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> CertDigest {
        [n; 32]
    }

    #[test]
    fn hit_until_expiry_then_gone() {
        let mut cache = VerdictCache::new(4);
        cache.insert(digest(1), "a", 100, 50);
        assert_eq!(cache.get_mut(&digest(1), 100).map(|v| *v), Some("a"));
        assert_eq!(cache.get_mut(&digest(1), 101), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let mut cache = VerdictCache::new(16);
        for n in 0..=255u8 {
            cache.insert(digest(n), n, 1_000, 0);
            assert!(cache.len() <= 16);
        }
        // The newest entry is always kept.
        assert_eq!(cache.get_mut(&digest(255), 0).map(|v| *v), Some(255));
    }

    #[test]
    fn full_cache_drops_expired_entries_first() {
        let mut cache = VerdictCache::new(2);
        cache.insert(digest(1), 1, 10, 0);
        cache.insert(digest(2), 2, 1_000, 0);
        cache.insert(digest(3), 3, 1_000, 500);
        assert_eq!(cache.len(), 2);
        assert!(cache.get_mut(&digest(2), 500).is_some());
        assert!(cache.get_mut(&digest(3), 500).is_some());
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut cache = VerdictCache::new(0);
        cache.insert(digest(1), 1, 10, 0);
        cache.insert(digest(2), 2, 10, 0);
        assert_eq!(cache.len(), 1);
    }
}
