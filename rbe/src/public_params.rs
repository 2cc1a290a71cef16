//! Public parameters: what an encryptor or proof verifier needs besides the CRS.

use alloc::vec::Vec;

use bls12_381_plus::G1Affine;

use crate::encoding::{Codec, G1_LEN, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::params::{Dimensions, MAX_CAPACITY};

/// The registry's public parameters at one version: the CRS digest they belong
/// to, capacity and block size, the number of operations (registrations and
/// releases) applied, and every block commitment `C_k = sum of the public
/// keys live in block k` (the identity for an empty block). A pure function
/// of the CRS and the ordered operations, so any replay produces
/// byte-identical encodings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicParams {
    crs_digest: [u8; 32],
    dims: Dimensions,
    version: u64,
    commitments: Vec<G1Affine>,
}

impl PublicParams {
    /// Assembled by the registry state.
    pub(crate) fn new(
        crs_digest: [u8; 32],
        dims: Dimensions,
        version: u64,
        commitments: Vec<G1Affine>,
    ) -> Self {
        Self {
            crs_digest,
            dims,
            version,
            commitments,
        }
    }

    /// Digest of the CRS these parameters were built on.
    pub fn crs_digest(&self) -> [u8; 32] {
        self.crs_digest
    }

    /// Capacity, block size and block count.
    pub fn dimensions(&self) -> Dimensions {
        self.dims
    }

    /// Number of operations applied (registrations plus releases; only
    /// grows). Without releases, the number of registrations.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// All block commitments, block 0 first.
    pub fn commitments(&self) -> &[G1Affine] {
        &self.commitments
    }

    /// The commitment of block `k`.
    pub fn commitment(&self, block: u32) -> Option<&G1Affine> {
        self.commitments.get(block as usize)
    }

    /// The commitment of the block holding `slot`.
    pub fn commitment_for_slot(&self, slot: u32) -> Option<&G1Affine> {
        self.commitment(self.dims.locate(slot)?.block)
    }
}

impl Codec for PublicParams {
    const MAGIC: [u8; 4] = *b"RBEP";

    fn write(&self, w: &mut Writer) {
        w.bytes(&self.crs_digest);
        w.dimensions(self.dims);
        w.u64(self.version);
        w.count(self.commitments.len());
        for c in &self.commitments {
            w.g1(c);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let crs_digest = r.array::<32>("crs digest")?;
        let dims = r.dimensions()?;
        let version = r.u64("version")?;
        let count = r.count("commitment count", G1_LEN, MAX_CAPACITY as usize)?;
        if count != dims.blocks() as usize {
            return Err(DecodeError::Inconsistent(
                "commitment count is not the block count",
            ));
        }
        // No bound on `version`: it counts releases too, so a registry of
        // capacity N reaches any version with at most N slots taken.
        let mut commitments = Vec::with_capacity(count);
        for _ in 0..count {
            commitments.push(r.g1("block commitment")?);
        }
        Ok(Self::new(crs_digest, dims, version, commitments))
    }
}

impl_canonical!(PublicParams);
