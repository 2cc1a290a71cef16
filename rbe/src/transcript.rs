//! Domain-separated SHA-256 transcripts for Fiat–Shamir challenges, batching
//! weights and key derivation.

use alloc::vec::Vec;

use bls12_381_plus::Scalar;
use sha2::{Digest, Sha256};

/// Domain tag of the Schnorr proof of knowledge in a registration.
pub(crate) const DOMAIN_POK: &[u8] = b"mazu-rbe/v1/registration-pok";
/// Domain tag of the weights batching a registration's chained helper checks
/// (`e(xi_j, G2) == e(pred_j, hh_s)`, see `Registration::helpers_consistent`).
/// The earlier check against the key alone used `mazu-rbe/v1/helper-weights`;
/// do not reuse that tag.
pub(crate) const DOMAIN_HELPER_CHAIN_WEIGHTS: &[u8] = b"mazu-rbe/v1/helper-chain-weights";
/// Domain tag of the weights batching the CRS power checks.
pub(crate) const DOMAIN_CRS_WEIGHTS: &[u8] = b"mazu-rbe/v1/crs-weights";
/// Domain tag of the KEM key derivation.
pub(crate) const DOMAIN_KEM: &[u8] = b"mazu-rbe/v1/kem";
/// Domain tag of the weight expansion from a seed.
const DOMAIN_EXPAND: &[u8] = b"mazu-rbe/v1/expand-weights";

/// A running hash in which every input is length-prefixed, so that distinct
/// sequences of (label, data) never hash the same bytes.
#[derive(Clone)]
pub(crate) struct Transcript {
    hash: Sha256,
}

impl Transcript {
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut t = Self {
            hash: Sha256::new(),
        };
        t.append(b"domain", domain);
        t
    }

    pub(crate) fn append(&mut self, label: &[u8], data: &[u8]) {
        self.hash.update((label.len() as u64).to_be_bytes());
        self.hash.update(label);
        self.hash.update((data.len() as u64).to_be_bytes());
        self.hash.update(data);
    }

    /// 32 bytes that depend on everything appended.
    pub(crate) fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }

    /// A scalar from 512 bits of hash output (bias ~2^-256).
    pub(crate) fn challenge_scalar(self) -> Scalar {
        let seed = self.finish();
        let mut wide = [0u8; 64];
        for (half, chunk) in wide.chunks_exact_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(seed);
            h.update([half as u8]);
            chunk.copy_from_slice(&h.finalize());
        }
        Scalar::from_bytes_wide(&wide)
    }
}

/// `count` nonzero 128-bit weights expanded from `seed` (two per hash call).
/// A zero weight (probability 2^-128) is replaced by one so that no term is
/// ever dropped from a batch.
pub(crate) fn expand_weights(seed: &[u8; 32], count: usize) -> Vec<u128> {
    let mut out = Vec::with_capacity(count);
    let mut block: u64 = 0;
    while out.len() < count {
        let mut h = Sha256::new();
        h.update(DOMAIN_EXPAND);
        h.update(seed);
        h.update(block.to_be_bytes());
        let d = h.finalize();
        for half in d.chunks_exact(16) {
            if out.len() == count {
                break;
            }
            let mut b = [0u8; 16];
            b.copy_from_slice(half);
            out.push(u128::from_be_bytes(b).max(1));
        }
        block += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_separates() {
        let mut a = Transcript::new(b"d");
        a.append(b"x", b"ab");
        a.append(b"y", b"c");
        let mut b = Transcript::new(b"d");
        b.append(b"x", b"a");
        b.append(b"y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn weights_deterministic_and_distinct() {
        let w1 = expand_weights(&[1; 32], 5);
        let w2 = expand_weights(&[1; 32], 5);
        let w3 = expand_weights(&[2; 32], 5);
        assert_eq!(w1, w2);
        assert_ne!(w1, w3);
        assert_eq!(w1.len(), 5);
        assert!(w1.iter().all(|w| *w != 0));
        assert_eq!(expand_weights(&[1; 32], 3)[..], w1[..3]);
    }
}
