//! A Merkle tree that keeps only its upper levels in memory.
//!
//! [`MerkleTree`] keeps about two hashes per leaf: 64 bytes per log entry,
//! for the whole history. [`ChunkedTree`] cuts the leaves into chunks of
//! `2^chunk_bits` and keeps, per complete chunk, only the levels from the
//! chunk root up (a [`MerkleTree`] over the chunk roots, which is exactly
//! the upper part of the whole tree), plus every level of the last,
//! incomplete chunk. A root, inclusion or consistency proof that needs a
//! hash below a chunk root fetches that chunk's leaf hashes from the caller
//! (who keeps the leaves elsewhere, e.g. on disk), checks that they hash to
//! the chunk root held in memory, and recomputes the chunk: at most a few
//! chunks per proof, `2^chunk_bits` leaf hashes each.
//!
//! The hashes and proofs are those of [`MerkleTree`] over the same leaves
//! (RFC 9162), whatever the chunk size: the tests compare them at every
//! size.

use alloc::vec::Vec;

use crate::merkle::{self, Hash, MerkleTree, ProofError, Subtrees, empty_root};

/// Chunks recomputed during one proof and kept until it is done: a
/// consistency proof touches the chunks at both of its sizes.
const CHUNKS_CACHED: usize = 4;

/// Why a [`ChunkedTree`] could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkedError<E> {
    /// The index or sizes are not within the tree.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The caller could not fetch the leaves of a chunk.
    #[error("cannot fetch leaves {start}..{end}: {error}")]
    Fetch {
        /// First leaf index.
        start: u64,
        /// One past the last leaf index.
        end: u64,
        /// The fetcher's error.
        error: E,
    },
    /// The leaves fetched for a chunk do not hash to the chunk root held in
    /// memory (the leaves' store was changed or damaged): no proof is made
    /// from them.
    #[error("the leaves fetched for {start}..{end} do not hash to the chunk root held in memory")]
    ChunkMismatch {
        /// First leaf index.
        start: u64,
        /// One past the last leaf index.
        end: u64,
    },
}

/// An append-only RFC 9162 Merkle tree that holds the levels above its
/// chunk roots and the whole last chunk; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ChunkedTree {
    chunk_bits: u32,
    /// The tree over the roots of the complete chunks.
    chunks: MerkleTree,
    /// The leaves after the last complete chunk (fewer than a chunk).
    tail: MerkleTree,
}

impl ChunkedTree {
    /// The empty tree with chunks of `2^chunk_bits` leaves (`chunk_bits`
    /// is capped at 32).
    pub fn new(chunk_bits: u32) -> Self {
        Self {
            chunk_bits: chunk_bits.min(32),
            chunks: MerkleTree::new(),
            tail: MerkleTree::new(),
        }
    }

    /// Leaves per chunk.
    pub fn chunk_len(&self) -> u64 {
        1 << self.chunk_bits
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        (self.chunks.len() << self.chunk_bits) + self.tail.len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.tail.push(leaf);
        if self.tail.len() == self.chunk_len() {
            let whole = core::mem::take(&mut self.tail);
            // A complete chunk is a complete subtree: its root is stored.
            if let Some(root) = whole.stored(0, self.chunk_bits) {
                self.chunks.push(root);
            }
        }
    }

    /// The chunk size as a power of two.
    pub fn chunk_bits(&self) -> u32 {
        self.chunk_bits
    }

    /// The roots of the complete chunks, in order: with
    /// [`tail_leaves`](Self::tail_leaves), everything the tree holds (what a
    /// state snapshot keeps to rebuild it with [`from_parts`](Self::from_parts)).
    pub fn chunk_roots(&self) -> Vec<Hash> {
        (0..self.chunks.len())
            .filter_map(|i| self.chunks.stored(i, 0))
            .collect()
    }

    /// The leaf hashes after the last complete chunk (fewer than a chunk).
    pub fn tail_leaves(&self) -> Vec<Hash> {
        (0..self.tail.len())
            .filter_map(|i| self.tail.stored(i, 0))
            .collect()
    }

    /// The tree whose complete chunks have these roots, followed by these
    /// leaves: the inverse of [`chunk_roots`](Self::chunk_roots) and
    /// [`tail_leaves`](Self::tail_leaves). `None` if `chunk_bits` is above
    /// 32 or `tail` is not shorter than a chunk. Only the upper levels are
    /// hashed (one hash per chunk); whether the chunk roots are those of
    /// some leaves is for the caller to check, e.g. against a signed root.
    pub fn from_parts(
        chunk_bits: u32,
        chunk_roots: impl IntoIterator<Item = Hash>,
        tail: &[Hash],
    ) -> Option<Self> {
        if chunk_bits > 32 || tail.len() as u64 >= 1u64 << chunk_bits {
            return None;
        }
        Some(Self {
            chunk_bits,
            chunks: MerkleTree::from_leaves(chunk_roots),
            tail: MerkleTree::from_leaves(tail.iter().copied()),
        })
    }

    /// The root hash of the first `size` leaves. `fetch(start, end)` returns
    /// the leaf hashes `start..end` of one chunk when they are needed.
    pub fn root<E>(
        &self,
        size: u64,
        fetch: impl FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Hash, ChunkedError<E>> {
        self.reader(fetch).root(size)
    }

    /// The leaf hash at `index`.
    pub fn leaf<E>(
        &self,
        index: u64,
        fetch: impl FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Hash, ChunkedError<E>> {
        self.reader(fetch).leaf(index)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size`
    /// leaves, leaf to root ([`MerkleTree::inclusion_proof`]).
    pub fn inclusion_proof<E>(
        &self,
        index: u64,
        size: u64,
        fetch: impl FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Vec<Hash>, ChunkedError<E>> {
        self.reader(fetch).inclusion_proof(index, size)
    }

    /// The consistency proof between the first `from` and the first `to`
    /// leaves ([`MerkleTree::consistency_proof`]).
    pub fn consistency_proof<E>(
        &self,
        from: u64,
        to: u64,
        fetch: impl FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Vec<Hash>, ChunkedError<E>> {
        self.reader(fetch).consistency_proof(from, to)
    }

    /// A reader answering several questions with one `fetch` and one set
    /// of recomputed chunks (a leaf and its proof, a proof and its two
    /// roots), so no chunk is fetched twice.
    pub fn reader<E, F>(&self, fetch: F) -> ChunkedReader<'_, F>
    where
        F: FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    {
        ChunkedReader {
            tree: self,
            fetch,
            cache: Vec::new(),
        }
    }

    /// Whether `leaves` are this tree's leaf hashes from `start` on, where
    /// `start` is a chunk boundary and the range ends at a chunk boundary
    /// or at the tree's length: each complete chunk is hashed and compared
    /// with its root, the leaves of the last, incomplete one with those
    /// held. (For leaves kept elsewhere, checked before they are served.)
    pub fn holds(&self, start: u64, leaves: &[Hash]) -> bool {
        let n = self.chunk_len();
        let end = start.saturating_add(leaves.len() as u64);
        if !start.is_multiple_of(n)
            || end > self.len()
            || !(end.is_multiple_of(n) || end == self.len())
        {
            return false;
        }
        let Ok(per_chunk) = usize::try_from(n) else {
            return false;
        };
        for (chunk, chunk_leaves) in (start / n..).zip(leaves.chunks(per_chunk)) {
            let held = if chunk < self.chunks.len() {
                let recomputed = MerkleTree::from_leaves(chunk_leaves.iter().copied());
                recomputed.len() == n
                    && recomputed.stored(0, self.chunk_bits) == self.chunks.stored(chunk, 0)
            } else {
                (0..)
                    .zip(chunk_leaves)
                    .all(|(i, leaf)| self.tail.stored(i, 0) == Some(*leaf))
            };
            if !held {
                return false;
            }
        }
        true
    }
}

/// Answers from a [`ChunkedTree`] ([`ChunkedTree::reader`]): the stored
/// hashes from the tree, the others recomputed from fetched chunks, kept
/// for the reader's lifetime.
pub struct ChunkedReader<'a, F> {
    tree: &'a ChunkedTree,
    fetch: F,
    /// Recomputed chunks (chunk number, tree over its leaves).
    cache: Vec<(u64, MerkleTree)>,
}

impl<F, E> ChunkedReader<'_, F>
where
    F: FnMut(u64, u64) -> Result<Vec<Hash>, E>,
{
    /// [`ChunkedTree::root`].
    pub fn root(&mut self, size: u64) -> Result<Hash, ChunkedError<E>> {
        let len = self.tree.len();
        if size > len {
            return Err(ProofError::SizesOutOfRange {
                from: size,
                to: size,
                size: len,
            }
            .into());
        }
        if size == 0 {
            return Ok(empty_root());
        }
        merkle::subtree(self, 0, size)
    }

    /// [`ChunkedTree::leaf`].
    pub fn leaf(&mut self, index: u64) -> Result<Hash, ChunkedError<E>> {
        let len = self.tree.len();
        if index >= len {
            return Err(ProofError::IndexOutOfRange { index, size: len }.into());
        }
        merkle::subtree(self, index, index + 1)
    }

    /// [`ChunkedTree::inclusion_proof`].
    pub fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, ChunkedError<E>> {
        let len = self.tree.len();
        if size > len {
            return Err(ProofError::SizesOutOfRange {
                from: index,
                to: size,
                size: len,
            }
            .into());
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let mut proof = Vec::new();
        merkle::path(self, index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// [`ChunkedTree::consistency_proof`].
    pub fn consistency_proof(&mut self, from: u64, to: u64) -> Result<Vec<Hash>, ChunkedError<E>> {
        let len = self.tree.len();
        if from > to || to > len {
            return Err(ProofError::SizesOutOfRange {
                from,
                to,
                size: len,
            }
            .into());
        }
        let mut proof = Vec::new();
        if from > 0 && from < to {
            merkle::subproof(self, from, 0, to, true, &mut proof)?;
        }
        Ok(proof)
    }
}

impl<F, E> Subtrees for ChunkedReader<'_, F>
where
    F: FnMut(u64, u64) -> Result<Vec<Hash>, E>,
{
    type Error = ChunkedError<E>;

    fn complete(&mut self, lo: u64, k: u32) -> Result<Option<Hash>, Self::Error> {
        let bits = self.tree.chunk_bits;
        let chunk = lo >> bits;
        if k >= bits {
            return Ok(self.tree.chunks.stored(chunk, k - bits));
        }
        let offset = lo - (chunk << bits);
        if chunk == self.tree.chunks.len() {
            return Ok(self.tree.tail.stored(offset, k));
        }
        if let Some((_, t)) = self.cache.iter().find(|(c, _)| *c == chunk) {
            return Ok(t.stored(offset, k));
        }
        let start = chunk << bits;
        let end = start + self.tree.chunk_len();
        let leaves =
            (self.fetch)(start, end).map_err(|error| ChunkedError::Fetch { start, end, error })?;
        let recomputed = MerkleTree::from_leaves(leaves);
        if recomputed.len() != self.tree.chunk_len()
            || recomputed.stored(0, bits) != self.tree.chunks.stored(chunk, 0)
        {
            return Err(ChunkedError::ChunkMismatch { start, end });
        }
        let hash = recomputed.stored(offset, k);
        if self.cache.len() == CHUNKS_CACHED {
            self.cache.remove(0);
        }
        self.cache.push((chunk, recomputed));
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion};
    use core::cell::Cell;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    fn build(bits: u32, l: &[Hash]) -> ChunkedTree {
        let mut t = ChunkedTree::new(bits);
        for leaf in l {
            t.push(*leaf);
        }
        t
    }

    /// Every root, leaf, inclusion and consistency proof equals the whole
    /// tree's, for chunk sizes 1 to 8, at every size up to 40.
    #[test]
    fn answers_equal_the_whole_trees_at_every_size_and_chunk_size() {
        let l = leaves(40);
        let whole = MerkleTree::from_leaves(l.iter().copied());
        let fetch = |s: u64, e: u64| Ok::<_, ()>(l[s as usize..e as usize].to_vec());
        for bits in 0..=3 {
            let t = build(bits, &l);
            assert_eq!(t.len(), 40);
            for to in 0..=40u64 {
                assert_eq!(t.root(to, fetch).unwrap(), whole.root(to).unwrap());
                for i in 0..to {
                    assert_eq!(
                        t.inclusion_proof(i, to, fetch).unwrap(),
                        whole.inclusion_proof(i, to).unwrap(),
                        "bits {bits} index {i} size {to}"
                    );
                }
                for from in 0..=to {
                    assert_eq!(
                        t.consistency_proof(from, to, fetch).unwrap(),
                        whole.consistency_proof(from, to).unwrap(),
                        "bits {bits} {from}->{to}"
                    );
                }
            }
            for i in 0..40 {
                assert_eq!(t.leaf(i, fetch).unwrap(), l[i as usize]);
            }
            assert!(t.root(41, fetch).is_err());
            assert!(t.leaf(40, fetch).is_err());
            assert!(t.inclusion_proof(3, 3, fetch).is_err());
            assert!(t.consistency_proof(5, 4, fetch).is_err());
        }
    }

    /// The proofs verify (a sanity check independent of the whole tree).
    #[test]
    fn proofs_verify() {
        let l = leaves(100);
        let fetch = |s: u64, e: u64| Ok::<_, ()>(l[s as usize..e as usize].to_vec());
        let t = build(4, &l);
        let root = t.root(100, fetch).unwrap();
        for i in [0u64, 15, 16, 63, 99] {
            let proof = t.inclusion_proof(i, 100, fetch).unwrap();
            verify_inclusion(&l[i as usize], i, 100, &proof, &root).unwrap();
        }
        let old = t.root(37, fetch).unwrap();
        let proof = t.consistency_proof(37, 100, fetch).unwrap();
        verify_consistency(37, 100, &old, &root, &proof).unwrap();
    }

    /// Memory: the upper levels only. A proof fetches at most the chunks it
    /// needs, each once.
    #[test]
    fn fetches_only_the_chunks_a_proof_needs() {
        let l = leaves(1000);
        let t = build(6, &l);
        let fetched = Cell::new(0u32);
        let fetch = |s: u64, e: u64| {
            fetched.set(fetched.get() + 1);
            Ok::<_, ()>(l[s as usize..e as usize].to_vec())
        };
        // The root of the whole tree: the chunk roots and the tail.
        t.root(1000, fetch).unwrap();
        assert_eq!(fetched.get(), 0);
        // A proof for an old leaf: its chunk.
        t.inclusion_proof(5, 1000, fetch).unwrap();
        assert_eq!(fetched.get(), 1);
        // Between two sizes inside complete chunks: those two chunks.
        fetched.set(0);
        t.consistency_proof(100, 700, fetch).unwrap();
        assert_eq!(fetched.get(), 2);
        // One reader: a leaf and its proof, a proof and its two roots, each
        // chunk fetched once.
        fetched.set(0);
        let mut reader = t.reader(fetch);
        reader.inclusion_proof(5, 1000).unwrap();
        reader.leaf(5).unwrap();
        reader.consistency_proof(100, 700).unwrap();
        reader.root(100).unwrap();
        reader.root(700).unwrap();
        assert_eq!(fetched.get(), 3);
    }

    /// Leaves that do not hash to the chunk root held in memory make no
    /// proof; a fetch error is passed on.
    #[test]
    fn wrong_or_missing_leaves_are_refused() {
        let l = leaves(200);
        let t = build(5, &l);
        let tampered = |s: u64, e: u64| {
            let mut v = l[s as usize..e as usize].to_vec();
            v[3][0] ^= 1;
            Ok::<_, ()>(v)
        };
        assert_eq!(
            t.inclusion_proof(40, 200, tampered),
            Err(ChunkedError::ChunkMismatch { start: 32, end: 64 })
        );
        let short = |s: u64, e: u64| Ok::<_, ()>(l[s as usize..e as usize - 1].to_vec());
        assert_eq!(
            t.leaf(0, short),
            Err(ChunkedError::ChunkMismatch { start: 0, end: 32 })
        );
        let failing = |_: u64, _: u64| Err::<Vec<Hash>, _>("disk gone");
        assert_eq!(
            t.root(150, failing),
            Err(ChunkedError::Fetch {
                start: 128,
                end: 160,
                error: "disk gone"
            })
        );
        // Nothing below a chunk root is needed for the whole tree's root.
        assert!(t.root(200, failing).is_ok());
    }

    /// A tree rebuilt from its chunk roots and tail answers as the one it
    /// was taken from; a tail of a whole chunk is refused.
    #[test]
    fn parts_rebuild_the_same_tree() {
        let l = leaves(150);
        let fetch = |s: u64, e: u64| Ok::<_, ()>(l[s as usize..e as usize].to_vec());
        for n in [0usize, 1, 31, 32, 33, 64, 150] {
            let t = build(5, &l[..n]);
            let rebuilt = ChunkedTree::from_parts(5, t.chunk_roots(), &t.tail_leaves()).unwrap();
            assert_eq!(rebuilt.len(), n as u64);
            assert_eq!(
                rebuilt.root(n as u64, fetch).unwrap(),
                t.root(n as u64, fetch).unwrap()
            );
            if n > 0 {
                let i = n as u64 - 1;
                assert_eq!(
                    rebuilt.inclusion_proof(0, i + 1, fetch).unwrap(),
                    t.inclusion_proof(0, i + 1, fetch).unwrap()
                );
            }
        }
        assert!(ChunkedTree::from_parts(5, [], &l[..32]).is_none());
        assert!(ChunkedTree::from_parts(33, [], &[]).is_none());
        // A changed chunk root changes the root (what a snapshot check
        // against a signed root relies on).
        let t = build(5, &l[..100]);
        let mut roots = t.chunk_roots();
        roots[1][0] ^= 1;
        let lying = ChunkedTree::from_parts(5, roots, &t.tail_leaves()).unwrap();
        assert_ne!(lying.root(100, fetch), t.root(100, fetch));
        // ... and proofs below it fail against the real leaves.
        assert!(matches!(
            lying.inclusion_proof(40, 100, fetch),
            Err(ChunkedError::ChunkMismatch { .. })
        ));
    }

    /// Leaves kept elsewhere are checked against the chunk roots and the
    /// tail; a changed leaf, a misaligned or overlong range is refused.
    #[test]
    fn holds_only_the_trees_own_leaves() {
        let l = leaves(200);
        let t = build(5, &l);
        assert!(t.holds(0, &l));
        assert!(t.holds(32, &l[32..96]));
        assert!(t.holds(192, &l[192..]));
        assert!(t.holds(160, &l[160..]));
        assert!(t.holds(64, &[]));
        let mut changed = l.clone();
        changed[40][0] ^= 1;
        assert!(!t.holds(32, &changed[32..64]));
        changed = l.clone();
        changed[195][0] ^= 1;
        assert!(!t.holds(192, &changed[192..]));
        assert!(!t.holds(1, &l[1..33]), "not a chunk boundary");
        assert!(!t.holds(32, &l[32..40]), "ends inside a complete chunk");
        let mut longer = l.clone();
        longer.push([0; 32]);
        assert!(!t.holds(192, &longer[192..]), "past the tree");
    }
}
