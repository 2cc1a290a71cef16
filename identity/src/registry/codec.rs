//! Shared pieces of the snapshot and delta binary formats.

use alloc::vec::Vec;

use super::entry::{ENTRY_LEN, RegistryEntry};
use super::error::RegistryError;

/// A forward-only reader over a byte slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], RegistryError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(RegistryError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    pub(crate) fn magic(&mut self, expected: &[u8; 4]) -> Result<(), RegistryError> {
        if &self.take::<4>()? == expected {
            Ok(())
        } else {
            Err(RegistryError::BadMagic)
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, RegistryError> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, RegistryError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, RegistryError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    /// Reads `count` entries that must fill the rest of the input exactly,
    /// checking the length *before* allocating, and requiring strictly
    /// increasing IDs (the canonical order, which also rules out duplicates).
    pub(crate) fn sorted_entries(self, count: u32) -> Result<Vec<RegistryEntry>, RegistryError> {
        let remaining = self.bytes.len();
        let expected = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(ENTRY_LEN));
        if expected != Some(remaining) {
            return Err(RegistryError::LengthMismatch { count, remaining });
        }
        let mut entries: Vec<RegistryEntry> = Vec::with_capacity(remaining / ENTRY_LEN);
        for chunk in self.bytes.chunks_exact(ENTRY_LEN) {
            let chunk: &[u8; ENTRY_LEN] = chunk.try_into().map_err(|_| RegistryError::Truncated)?;
            let entry = RegistryEntry::decode(chunk)?;
            check_order(entries.last(), &entry)?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// Strictly increasing IDs: equal is a duplicate, smaller is out of order.
pub(crate) fn check_order(
    previous: Option<&RegistryEntry>,
    next: &RegistryEntry,
) -> Result<(), RegistryError> {
    match previous.map(|p| p.workload_id.cmp(&next.workload_id)) {
        None | Some(core::cmp::Ordering::Less) => Ok(()),
        Some(core::cmp::Ordering::Equal) => Err(RegistryError::DuplicateEntry(next.workload_id)),
        Some(core::cmp::Ordering::Greater) => Err(RegistryError::Unsorted),
    }
}

/// Sorts entries by ID and refuses duplicates (for constructors taking any order).
pub(crate) fn sort_unique(
    mut entries: Vec<RegistryEntry>,
) -> Result<Vec<RegistryEntry>, RegistryError> {
    entries.sort_unstable_by_key(|entry| entry.workload_id);
    for pair in entries.windows(2) {
        check_order(Some(&pair[0]), &pair[1])?;
    }
    Ok(entries)
}
