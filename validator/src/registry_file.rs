//! The registry file: how the node agent hands the validator the registry it
//! derived from the witnessed log.
//!
//! The agent follows the curator's log, accepts only checkpoints cosigned by
//! its witness quorum, derives the registry from the records, and writes it
//! here atomically (temporary file, `fsync`, `rename`). After every
//! successful check of a fresh checkpoint it also sets the file's
//! modification time to now: the validator reads that time as "last
//! verified" and refuses every peer once it is older than its
//! `max_registry_age_ms` (an agent that stopped verifying makes the
//! handshake fail closed, not stay open on an old registry).
//!
//! # Format (version 1)
//!
//! ```text
//! magic     "MZVREG01" (8 bytes; the last two are the version)
//! log size  u64 BE: the witnessed log size the registry was derived at
//! length    u64 BE: length of the registry snapshot
//! snapshot  mazu-identity's canonical RegistrySnapshot encoding
//! checksum  SHA-256 of every byte above (32 bytes)
//! ```
//!
//! The checksum catches a torn or damaged file (the rename makes a torn
//! write unlikely, a damaged disk does not). The file is as trusted as the
//! agent's SDS socket beside it: whoever can write either can already hand
//! Envoy its keys.

use mazu_identity::{RegistryError, RegistrySnapshot};
use sha2::{Digest, Sha256};

/// Magic and version of the file.
pub const REGISTRY_FILE_MAGIC: [u8; 8] = *b"MZVREG01";

/// Magic, log size and snapshot length.
const HEADER_LEN: usize = 8 + 8 + 8;
/// The trailing SHA-256.
const CHECKSUM_LEN: usize = 32;

/// Why a registry file was not read.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryFileError {
    /// Shorter than a header and checksum, or the length field disagrees
    /// with the file's length.
    #[error("registry file is truncated or has trailing bytes")]
    Length,
    /// Not a registry file of this version.
    #[error("not a version 1 registry file (bad magic)")]
    Magic,
    /// The checksum does not match: a damaged file.
    #[error("registry file checksum mismatch")]
    Checksum,
    /// The snapshot inside does not decode.
    #[error("registry snapshot: {0}")]
    Snapshot(RegistryError),
}

impl RegistryFileError {
    /// A stable snake_case name for logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Length => "registry_file_length",
            Self::Magic => "registry_file_magic",
            Self::Checksum => "registry_file_checksum",
            Self::Snapshot(_) => "registry_file_snapshot",
        }
    }
}

/// A registry and the witnessed log size it was derived at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryFile {
    /// Size of the witnessed log the registry is derived from.
    pub log_size: u64,
    /// The live registrations.
    pub registry: RegistrySnapshot,
}

impl RegistryFile {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let snapshot = self.registry.encode();
        let mut out = Vec::with_capacity(HEADER_LEN + snapshot.len() + CHECKSUM_LEN);
        out.extend_from_slice(&REGISTRY_FILE_MAGIC);
        out.extend_from_slice(&self.log_size.to_be_bytes());
        out.extend_from_slice(&(snapshot.len() as u64).to_be_bytes());
        out.extend_from_slice(&snapshot);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Reads a file's bytes; any damage is an error, never a partial registry.
    pub fn decode(bytes: &[u8]) -> Result<RegistryFile, RegistryFileError> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(RegistryFileError::Length);
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if body[..8] != REGISTRY_FILE_MAGIC {
            return Err(RegistryFileError::Magic);
        }
        let log_size = u64_at(body, 8);
        let length = u64_at(body, 16);
        if u64::try_from(body.len() - HEADER_LEN).ok() != Some(length) {
            return Err(RegistryFileError::Length);
        }
        if Sha256::digest(body)[..] != *checksum {
            return Err(RegistryFileError::Checksum);
        }
        let registry =
            RegistrySnapshot::decode(&body[HEADER_LEN..]).map_err(RegistryFileError::Snapshot)?;
        Ok(RegistryFile { log_size, registry })
    }
}

/// The big-endian u64 at `at` (the caller checked the length).
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mazu_identity::RegistryEntry;

    fn file() -> RegistryFile {
        let entries = (0..3u8)
            .map(|i| RegistryEntry {
                workload_id: [i + 1; 32].into(),
                slot: u32::from(i),
                spki_hash: [i + 10; 32].into(),
                token_expiry: 2_000_000_000,
                revoked: i == 2,
            })
            .collect();
        RegistryFile {
            log_size: 9,
            registry: RegistrySnapshot::from_entries(9, entries).expect("sorted entries"),
        }
    }

    #[test]
    fn round_trips() {
        let file = file();
        assert_eq!(RegistryFile::decode(&file.encode()), Ok(file));
    }

    #[test]
    fn every_damage_is_refused() {
        let bytes = file().encode();
        assert_eq!(
            RegistryFile::decode(&bytes[..bytes.len() - 1]),
            Err(RegistryFileError::Length)
        );
        assert_eq!(RegistryFile::decode(&[]), Err(RegistryFileError::Length));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RegistryFile::decode(&longer).is_err());
        let mut magic = bytes.clone();
        magic[7] = b'2';
        assert_eq!(RegistryFile::decode(&magic), Err(RegistryFileError::Magic));
        // Any flipped bit in the header or the snapshot is caught.
        for at in [8, 20, HEADER_LEN, bytes.len() - CHECKSUM_LEN - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert!(RegistryFile::decode(&flipped).is_err(), "byte {at}");
        }
    }
}
