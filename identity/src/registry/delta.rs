//! Incremental registry updates between two curator log sizes.

use alloc::vec::Vec;

use super::codec::{Cursor, sort_unique};
use super::entry::{ENTRY_LEN, RegistryEntry};
use super::error::RegistryError;

/// Delta magic, "MZRD".
pub const DELTA_MAGIC: [u8; 4] = *b"MZRD";
/// Delta format written and read by this version.
pub const DELTA_FORMAT: u8 = 1;
/// Header length: magic (4) + format (1) + from (8) + to (8) + count (4).
pub const DELTA_HEADER_LEN: usize = 4 + 1 + 8 + 8 + 4;

/// The changes between log sizes `from_version` and `to_version`: one upsert
/// per workload ID that was registered or revoked in between, sorted by ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryDelta {
    from_version: u64,
    to_version: u64,
    entries: Vec<RegistryEntry>,
}

impl RegistryDelta {
    /// A delta from upserts in any order. Each covered log record yields at
    /// most one upsert, so there are at most `to - from` of them.
    pub fn new(
        from_version: u64,
        to_version: u64,
        entries: Vec<RegistryEntry>,
    ) -> Result<Self, RegistryError> {
        let entries = sort_unique(entries)?;
        check_range(from_version, to_version, entries.len())?;
        Ok(Self {
            from_version,
            to_version,
            entries,
        })
    }

    /// The snapshot version this delta applies to.
    pub fn from_version(&self) -> u64 {
        self.from_version
    }

    /// The snapshot version after applying it.
    pub fn to_version(&self) -> u64 {
        self.to_version
    }

    /// The upserts, sorted by workload ID.
    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    /// The canonical encoding (see docs/identity.md, "Registry delta").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DELTA_HEADER_LEN + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(&DELTA_MAGIC);
        out.push(DELTA_FORMAT);
        out.extend_from_slice(&self.from_version.to_be_bytes());
        out.extend_from_slice(&self.to_version.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.entries.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for entry in &self.entries {
            entry.encode_into(&mut out);
        }
        out
    }

    /// Decodes the canonical encoding with the same strictness as
    /// [`RegistrySnapshot::decode`](super::RegistrySnapshot::decode).
    pub fn decode(bytes: &[u8]) -> Result<Self, RegistryError> {
        let mut cursor = Cursor::new(bytes);
        cursor.magic(&DELTA_MAGIC)?;
        let format = cursor.u8()?;
        if format != DELTA_FORMAT {
            return Err(RegistryError::UnsupportedFormat(format));
        }
        let from_version = cursor.u64()?;
        let to_version = cursor.u64()?;
        let count = cursor.u32()?;
        // Cheap header checks before reading (and allocating for) entries.
        if to_version < from_version {
            return Err(RegistryError::BackwardsDelta {
                from: from_version,
                to: to_version,
            });
        }
        let entries = cursor.sorted_entries(count)?;
        check_range(from_version, to_version, entries.len())?;
        Ok(Self {
            from_version,
            to_version,
            entries,
        })
    }
}

fn check_range(from: u64, to: u64, count: usize) -> Result<(), RegistryError> {
    let records = to
        .checked_sub(from)
        .ok_or(RegistryError::BackwardsDelta { from, to })?;
    if u64::try_from(count).map_or(true, |c| c > records) {
        return Err(RegistryError::TooManyEntries { count, records });
    }
    Ok(())
}
