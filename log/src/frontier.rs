//! The right edge of a Merkle tree: enough to append leaves and compute the
//! root, in O(log n) memory.
//!
//! A verifier that holds every leaf it has accepted does not need proofs to
//! follow a log: it appends the new leaves to its frontier and compares the
//! resulting root with the (witnessed) checkpoint's. Equality means the new
//! checkpoint's tree is exactly the old tree plus these leaves, which is
//! stronger than a consistency proof (it also proves the new leaves). The
//! filter keeps one of these beside the registry it derives.
//!
//! The frontier of a tree of `n` leaves is the list of roots of the perfect
//! subtrees that RFC 6962 splits it into, one per set bit of `n`, largest
//! first; the tree's root folds them from the right:
//! `root = H(s_0, H(s_1, … H(s_{k-2}, s_{k-1})))`.

use alloc::vec::Vec;

use crate::merkle::{Hash, empty_root, node_hash};

/// The right edge of an RFC 6962 Merkle tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as `node`: merge them, like a binary counter's carry.
        let mut size = self.size;
        while size & 1 == 1 {
            // The frontier has one subtree per set bit, so this pop exists.
            let Some(left) = self.subtrees.pop() else {
                break;
            };
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The root of the tree (the empty tree's root when there are no leaves).
    pub fn root(&self) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The root after appending `leaves`, without changing `self`.
    pub fn root_with(&self, leaves: impl IntoIterator<Item = Hash>) -> Hash {
        let mut next = self.clone();
        for leaf in leaves {
            next.push(leaf);
        }
        next.root()
    }

    /// 8 bytes of size, then the subtree roots: for keeping it beside a
    /// registry (e.g. in shared data).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.subtrees.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for subtree in &self.subtrees {
            out.extend_from_slice(subtree);
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s output: the number of roots must be
    /// the number of set bits of the size. `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (size, rest) = bytes.split_first_chunk::<8>()?;
        let size = u64::from_be_bytes(*size);
        let (chunks, tail) = rest.as_chunks::<32>();
        if !tail.is_empty() || chunks.len() != size.count_ones() as usize {
            return None;
        }
        Some(Frontier {
            size,
            subtrees: chunks.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MerkleTree, leaf_hash};

    #[test]
    fn matches_the_tree_root_at_every_size() {
        let mut tree = MerkleTree::new();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for i in 0u32..300 {
            let leaf = leaf_hash(&i.to_be_bytes());
            tree.push(leaf);
            frontier.push(leaf);
            assert_eq!(frontier.size(), tree.len());
            assert_eq!(
                Some(frontier.root()),
                tree.root(tree.len()).ok(),
                "size {}",
                i + 1
            );
            assert_eq!(Frontier::decode(&frontier.encode()), Some(frontier.clone()));
        }
    }

    #[test]
    fn root_with_does_not_change_the_frontier() {
        let mut frontier = Frontier::new();
        frontier.push([1; 32]);
        let before = frontier.clone();
        let root = frontier.root_with([[2; 32], [3; 32]]);
        assert_eq!(frontier, before);
        frontier.push([2; 32]);
        frontier.push([3; 32]);
        assert_eq!(frontier.root(), root);
    }

    #[test]
    fn another_leaf_or_order_gives_another_root() {
        let leaves: Vec<Hash> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
        let root = Frontier::new().root_with(leaves.iter().copied());
        let mut swapped = leaves.clone();
        swapped.swap(2, 3);
        assert_ne!(Frontier::new().root_with(swapped), root);
        let mut changed = leaves.clone();
        changed[6][0] ^= 1;
        assert_ne!(Frontier::new().root_with(changed), root);
        assert_ne!(Frontier::new().root_with(leaves[..6].iter().copied()), root);
    }

    #[test]
    fn decode_refuses_inconsistent_bytes() {
        let mut frontier = Frontier::new();
        for i in 0u8..5 {
            frontier.push([i; 32]);
        }
        let bytes = frontier.encode();
        assert!(Frontier::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Frontier::decode(&bytes[..bytes.len() - 32]).is_none());
        let mut wrong_size = bytes.clone();
        wrong_size[7] = 6; // 6 has two set bits, 5 has two: still two roots
        assert!(Frontier::decode(&wrong_size).is_some());
        wrong_size[7] = 7; // three set bits, two roots
        assert!(Frontier::decode(&wrong_size).is_none());
        assert!(Frontier::decode(&[0; 7]).is_none());
    }
}
