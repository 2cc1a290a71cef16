//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
//!
//! Leaves are given as their 32-byte leaf hashes (`SHA-256(0x00 || entry)`,
//! [`leaf_hash`]); interior nodes are `SHA-256(0x01 || left || right)`
//! ([`node_hash`]). The tree of `n` leaves splits at the largest power of two
//! below `n` (RFC 9162 §2.1.1), so every size has exactly one root.
//!
//! [`MerkleTree`] stores the leaf hashes and every complete aligned subtree
//! (about two hashes per leaf), so the root of any prefix, an inclusion proof
//! or a consistency proof costs O(log² n) hash lookups and O(log n) hashing.
//! [`verify_inclusion`] and [`verify_consistency`] are the RFC 9162 §2.1.3.2
//! and §2.1.4.2 algorithms; they need nothing but the proof.

use alloc::vec::Vec;

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 hash (leaf, node or root).
pub type Hash = [u8; 32];

/// Longest proof accepted by the verifiers: a tree of up to 2^64 leaves has
/// proofs of at most 64 (inclusion) or 128 (consistency) hashes.
pub const MAX_PROOF_LEN: usize = 128;

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The RFC 6962 leaf hash `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// The RFC 6962 interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof was refused or could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The sizes are not `0 <= from <= to <= current size`.
    #[error("tree sizes {from} and {to} are not in order within the tree (size {size})")]
    SizesOutOfRange {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
        /// The tree's size (or `to` when verifying).
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The proof does not lead to the expected root(s).
    #[error("the proof does not match the root hash")]
    RootMismatch,
}

/// An append-only Merkle tree over leaf hashes, keeping every complete
/// aligned subtree hash.
#[derive(Clone, Debug, Default)]
pub struct MerkleTree {
    /// `levels[k][i]` is the hash of leaves `[i·2^k, (i+1)·2^k)`;
    /// `levels[0]` are the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over these leaf hashes, in order.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if any.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let n = self.levels[k].len();
            let parent = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(parent);
            k += 1;
        }
    }

    /// The root hash of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizesOutOfRange {
                from: size,
                to: size,
                size: self.len(),
            });
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.subtree(0, size)
        })
    }

    /// The inclusion proof (audit path) of leaf `index` in the tree of the
    /// first `size` leaves, leaf to root.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.len() {
            return Err(ProofError::SizesOutOfRange {
                from: index,
                to: size,
                size: self.len(),
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    /// The consistency proof between the trees of the first `from` and the
    /// first `to` leaves (empty when `from` is 0 or equals `to`).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        if from > to || to > self.len() {
            return Err(ProofError::SizesOutOfRange {
                from,
                to,
                size: self.len(),
            });
        }
        let mut proof = Vec::new();
        if from > 0 && from < to {
            self.subproof(from, 0, to, true, &mut proof);
        }
        Ok(proof)
    }

    /// MTH of leaves `[lo, hi)`, `lo < hi <= len`.
    fn subtree(&self, lo: u64, hi: u64) -> Hash {
        into_ok(subtree(&mut &*self, lo, hi))
    }

    /// RFC 6962 PATH(m, D[lo:hi]).
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        into_ok(path(&mut &*self, m, lo, hi, out));
    }

    /// RFC 6962 SUBPROOF(m, D[lo:hi], b).
    fn subproof(&self, m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Hash>) {
        into_ok(subproof(&mut &*self, m, lo, hi, b, out));
    }

    /// The stored hash of the complete aligned subtree of `2^k` leaves from
    /// `lo`, if it is within the tree.
    pub(crate) fn stored(&self, lo: u64, k: u32) -> Option<Hash> {
        let level = self.levels.get(usize::try_from(k).ok()?)?;
        level.get(usize::try_from(lo >> k).ok()?).copied()
    }
}

fn into_ok<T>(r: Result<T, core::convert::Infallible>) -> T {
    match r {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

/// Where the RFC 6962 recursions below find the hashes of complete aligned
/// subtrees: a whole [`MerkleTree`] holds them all, a
/// [`ChunkedTree`](crate::chunked::ChunkedTree) the upper levels and
/// recomputes the lower ones from leaves it fetches.
pub(crate) trait Subtrees {
    /// Why a hash could not be had.
    type Error;
    /// The hash of leaves `[lo, lo + 2^k)` (`lo` a multiple of `2^k`, the
    /// range within the tree), or `None` to split it further.
    fn complete(&mut self, lo: u64, k: u32) -> Result<Option<Hash>, Self::Error>;
}

impl Subtrees for &MerkleTree {
    type Error = core::convert::Infallible;
    fn complete(&mut self, lo: u64, k: u32) -> Result<Option<Hash>, Self::Error> {
        Ok(self.stored(lo, k))
    }
}

/// MTH of leaves `[lo, hi)`, `lo < hi <= len`.
pub(crate) fn subtree<S: Subtrees>(s: &mut S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n.is_power_of_two()
        && lo.is_multiple_of(n)
        && let Some(h) = s.complete(lo, n.trailing_zeros())?
    {
        return Ok(h);
    }
    let k = split(n);
    Ok(node_hash(
        &subtree(s, lo, lo + k)?,
        &subtree(s, lo + k, hi)?,
    ))
}

/// RFC 6962 PATH(m, D[lo:hi]).
pub(crate) fn path<S: Subtrees>(
    s: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(s, m, lo, lo + k, out)?;
        out.push(subtree(s, lo + k, hi)?);
    } else {
        path(s, m - k, lo + k, hi, out)?;
        out.push(subtree(s, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 6962 SUBPROOF(m, D[lo:hi], b).
pub(crate) fn subproof<S: Subtrees>(
    s: &mut S,
    m: u64,
    lo: u64,
    hi: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = hi - lo;
    if m == n {
        if !b {
            out.push(subtree(s, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(s, m, lo, lo + k, b, out)?;
        out.push(subtree(s, lo + k, hi)?);
    } else {
        subproof(s, m - k, lo + k, hi, false, out)?;
        out.push(subtree(s, lo, lo + k)?);
    }
    Ok(())
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `from` leaves with root
/// `from_root` is a prefix of the tree of `to` leaves with root `to_root`.
/// `from = 0` is consistent with anything (with an empty proof); `from = to`
/// needs an empty proof and equal roots.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesOutOfRange { from, to, size: to });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    if from == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if from == to {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if from_root == to_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let (first, rest): (Hash, &[Hash]) = if from.is_power_of_two() {
        (*from_root, proof)
    } else {
        match proof.split_first() {
            Some((f, r)) => (*f, r),
            None => return Err(ProofError::WrongLength),
        }
    };
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != from_root || &sr != to_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// The RFC 6962 definition, recursively, as the reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    /// Certificate Transparency's reference test vectors (the leaves of
    /// `merkle_tree_test.cc` and the roots of every prefix).
    #[test]
    fn ct_test_vectors() {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let tree = MerkleTree::from_leaves(data.iter().map(|d| leaf_hash(d)));
        assert_eq!(
            hex::encode(tree.root(0).unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (i, want) in roots.iter().enumerate() {
            assert_eq!(
                &hex::encode(tree.root(i as u64 + 1).unwrap()),
                want,
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn roots_match_the_definition_at_every_size() {
        let l = leaves(70);
        let tree = MerkleTree::from_leaves(l.iter().copied());
        for n in 0..=70 {
            assert_eq!(tree.root(n).unwrap(), mth(&l[..n as usize]), "size {n}");
        }
        assert!(tree.root(71).is_err());
    }

    #[test]
    fn every_inclusion_proof_verifies_and_wrong_ones_fail() {
        let l = leaves(40);
        let tree = MerkleTree::from_leaves(l.iter().copied());
        for size in 1..=40u64 {
            let root = tree.root(size).unwrap();
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = l[index as usize];
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                // Wrong index, wrong leaf, wrong size, tampered hash.
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
                    assert!(
                        verify_inclusion(&l[other as usize], index, size, &proof, &root).is_err()
                    );
                }
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][0] ^= 1;
                    assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
                if !proof.is_empty() {
                    assert!(
                        verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root)
                            .is_err()
                    );
                }
            }
            assert!(tree.inclusion_proof(size, size).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_wrong_ones_fail() {
        let l = leaves(40);
        let tree = MerkleTree::from_leaves(l.iter().copied());
        for to in 0..=40u64 {
            let to_root = tree.root(to).unwrap();
            for from in 0..=to {
                let from_root = tree.root(from).unwrap();
                let proof = tree.consistency_proof(from, to).unwrap();
                verify_consistency(from, to, &from_root, &to_root, &proof)
                    .unwrap_or_else(|e| panic!("{from}->{to}: {e}"));
                if from == 0 {
                    continue;
                }
                // A forked older tree: another leaf at from-1.
                let mut forked = l[..from as usize].to_vec();
                forked[from as usize - 1][0] ^= 1;
                let forked_root = mth(&forked);
                assert!(verify_consistency(from, to, &forked_root, &to_root, &proof).is_err());
                let mut bad_to = to_root;
                bad_to[31] ^= 1;
                assert!(verify_consistency(from, to, &from_root, &bad_to, &proof).is_err());
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][5] ^= 1;
                    assert!(verify_consistency(from, to, &from_root, &to_root, &bad).is_err());
                }
                if from < to {
                    assert!(verify_consistency(from, to, &from_root, &to_root, &[]).is_err());
                }
            }
        }
        assert!(tree.consistency_proof(5, 4).is_err());
        assert!(tree.consistency_proof(1, 41).is_err());
        assert!(verify_consistency(5, 4, &[0; 32], &[0; 32], &[]).is_err());
    }

    #[test]
    fn oversized_proofs_are_refused() {
        let proof = vec![[0u8; 32]; MAX_PROOF_LEN + 1];
        assert_eq!(
            verify_inclusion(&[0; 32], 0, u64::MAX, &proof, &[0; 32]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_consistency(1, u64::MAX, &[0; 32], &[0; 32], &proof),
            Err(ProofError::WrongLength)
        );
    }
}
