//! An in-memory [`LogStore`] for tests, with failure injection.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{LogStore, StoreError};
use crate::store::file::encode_frame;

/// Entries in a vector. Not durable: for unit tests and benchmarks only.
#[derive(Debug, Default)]
pub struct MemoryLogStore {
    entries: Mutex<Vec<Vec<u8>>>,
    fail_next: AtomicBool,
}

impl MemoryLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next [`LogStore::append`] fail with [`StoreError::Simulated`]
    /// (and leave the log unchanged), as a full or failing disk would.
    pub fn fail_next_append(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LogStore for MemoryLogStore {
    fn append(&self, entry: &[u8]) -> Result<u64, StoreError> {
        // Same length rules as the file store.
        encode_frame(entry)?;
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Simulated);
        }
        let mut entries = self.lock();
        entries.push(entry.to_vec());
        Ok(entries.len() as u64 - 1)
    }

    fn read_range(&self, start: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let entries = self.lock();
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(entries.len());
        let stop = start.saturating_add(limit).min(entries.len());
        Ok(entries[start..stop].to_vec())
    }

    fn len(&self) -> u64 {
        self.lock().len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_fail() {
        let store = MemoryLogStore::new();
        assert_eq!(store.append(b"a").unwrap(), 0);
        store.fail_next_append();
        assert!(matches!(store.append(b"b"), Err(StoreError::Simulated)));
        assert_eq!(store.append(b"c").unwrap(), 1);
        assert_eq!(
            store.read_range(0, 5).unwrap(),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        assert!(store.read_range(7, 5).unwrap().is_empty());
    }
}
