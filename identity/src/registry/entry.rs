//! One registered workload, as the filter needs it.

use crate::digest::{SpkiHash, WorkloadId};

/// Encoded size of one entry: id (32) + slot (4) + SPKI hash (32) + expiry (8) + flags (1).
pub const ENTRY_LEN: usize = 32 + 4 + 32 + 8 + 1;

const FLAG_REVOKED: u8 = 0x01;

/// A registered workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegistryEntry {
    /// SHA-256 of the registered token.
    pub workload_id: WorkloadId,
    /// The RBE slot the curator assigned.
    pub slot: u32,
    /// SHA-256 of the DER `SubjectPublicKeyInfo` of the TLS key that registered.
    pub spki_hash: SpkiHash,
    /// The token's `exp`, Unix seconds: the registration is worthless after it.
    pub token_expiry: u64,
    /// Revoked by the curator's log.
    pub revoked: bool,
}

impl RegistryEntry {
    /// Same ID, slot, key and expiry: `other` may differ only in `revoked`.
    pub(crate) fn same_binding(&self, other: &Self) -> bool {
        self.workload_id == other.workload_id
            && self.slot == other.slot
            && self.spki_hash == other.spki_hash
            && self.token_expiry == other.token_expiry
    }

    pub(crate) fn encode_into(&self, out: &mut alloc::vec::Vec<u8>) {
        out.extend_from_slice(self.workload_id.as_bytes());
        out.extend_from_slice(&self.slot.to_be_bytes());
        out.extend_from_slice(self.spki_hash.as_bytes());
        out.extend_from_slice(&self.token_expiry.to_be_bytes());
        out.push(if self.revoked { FLAG_REVOKED } else { 0 });
    }

    /// Decodes exactly [`ENTRY_LEN`] bytes.
    pub(crate) fn decode(bytes: &[u8; ENTRY_LEN]) -> Result<Self, super::RegistryError> {
        let (id, rest) = bytes
            .split_first_chunk::<32>()
            .ok_or(super::RegistryError::Truncated)?;
        let (slot, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(super::RegistryError::Truncated)?;
        let (spki, rest) = rest
            .split_first_chunk::<32>()
            .ok_or(super::RegistryError::Truncated)?;
        let (expiry, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(super::RegistryError::Truncated)?;
        let flags = *rest.first().ok_or(super::RegistryError::Truncated)?;
        if flags & !FLAG_REVOKED != 0 {
            return Err(super::RegistryError::UnknownFlags(flags));
        }
        Ok(Self {
            workload_id: WorkloadId::from_bytes(*id),
            slot: u32::from_be_bytes(*slot),
            spki_hash: SpkiHash::from_bytes(*spki),
            token_expiry: u64::from_be_bytes(*expiry),
            revoked: flags & FLAG_REVOKED != 0,
        })
    }
}
