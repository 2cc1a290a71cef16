//! Why a registry snapshot or delta was refused.

use crate::digest::WorkloadId;

/// Why a registry snapshot or delta could not be decoded, built or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Shorter than its fixed header.
    #[error("truncated header")]
    Truncated,
    /// Wrong magic bytes (not a snapshot, or a delta where a snapshot was expected).
    #[error("wrong magic bytes")]
    BadMagic,
    /// A format version this decoder does not know.
    #[error("unsupported format version {0}")]
    UnsupportedFormat(u8),
    /// The entry count does not match the remaining bytes (truncated, or trailing bytes).
    #[error("entry count {count} does not match the {remaining} bytes that follow the header")]
    LengthMismatch {
        /// Declared entry count.
        count: u32,
        /// Bytes after the header.
        remaining: usize,
    },
    /// Entries are not in strictly increasing workload-ID order.
    #[error("entries are not sorted by workload ID")]
    Unsorted,
    /// A workload ID appears twice.
    #[error("workload ID {0} appears twice")]
    DuplicateEntry(WorkloadId),
    /// An entry's flags byte has bits this format does not define.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// More entries than log records they could come from (each entry needs at least one).
    #[error("{count} entries cannot come from {records} log records")]
    TooManyEntries {
        /// Entries.
        count: usize,
        /// Log records covered.
        records: u64,
    },
    /// A delta whose `to_version` is before its `from_version`.
    #[error("delta goes backwards ({from} -> {to})")]
    BackwardsDelta {
        /// `from_version`.
        from: u64,
        /// `to_version`.
        to: u64,
    },
    /// The delta starts at a version other than the snapshot's. The snapshot is unchanged.
    #[error("delta starts at version {delta_from}, snapshot is at version {snapshot}")]
    VersionMismatch {
        /// The snapshot's version.
        snapshot: u64,
        /// The delta's `from_version`.
        delta_from: u64,
    },
    /// The delta changes the slot, key or expiry bound to an existing ID. The
    /// curator's log only appends registrations and revocations, so this
    /// can only come from a broken or lying curator. The snapshot is unchanged.
    #[error("delta rebinds workload ID {0}")]
    ConflictingEntry(WorkloadId),
    /// The delta un-revokes a revoked ID. The snapshot is unchanged.
    #[error("delta un-revokes workload ID {0}")]
    Unrevoke(WorkloadId),
}
