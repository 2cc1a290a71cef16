//! The transparency side of the log: the Merkle tree over the log entries'
//! leaf records and signed checkpoints (see `docs/protocol.md`).
//!
//! Leaf `i` of the tree (`mazu_log::MerkleTree`, RFC 6962 hashing) is
//! `SHA-256(0x00 || record_i)`, where `record_i` is the leaf record of entry
//! `i` (`LogEntry::record`). The tree and the records are rebuilt at
//! start-up from the log and extended by the writer after every append, so
//! its size is always the number of durable entries. Checkpoints are C2SP
//! signed notes by the **checkpoint key**, an Ed25519 key that grants no
//! identity power: nothing in Mazu accepts a workload because of it; it only
//! makes the curator accountable (two checkpoints it signed that are not
//! consistent prove it forked or rewrote its log).

use std::sync::{Mutex, RwLock};

use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::merkle::{Hash, MerkleTree, ProofError, leaf_hash};

/// Name of the generated checkpoint key inside the data directory.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";

/// Whether `origin` is usable as the checkpoint origin (key name).
pub fn valid_origin(origin: &str) -> bool {
    mazu_log::checkpoint::valid_name(origin)
}

/// The default origin: `mazu-curator/` and the first 16 hex digits of the
/// CRS digest.
pub fn default_origin(crs_digest: &[u8; 32]) -> String {
    format!("mazu-curator/{}", hex::encode(&crs_digest[..8]))
}

/// Records served per `GET /v1/log/records` page at most.
pub const MAX_RECORDS_PAGE: u64 = 16384;

/// The tree and the records its leaves hash.
#[derive(Debug, Default)]
struct Leaves {
    tree: MerkleTree,
    /// Record `i`'s canonical bytes (~80 to 114 bytes each).
    records: Vec<Vec<u8>>,
}

/// The Merkle tree over the log's leaf records, the records themselves, and
/// the checkpoint signer.
#[derive(Debug)]
pub struct Transparency {
    leaves: RwLock<Leaves>,
    signer: CheckpointSigner,
    verifier_key: String,
    /// The last signed checkpoint (size, note).
    cache: Mutex<Option<(u64, String)>>,
}

impl Transparency {
    /// A tree over `records` (canonical record bytes, in log order) and a
    /// signer with this key and origin.
    pub fn new(
        records: Vec<Vec<u8>>,
        origin: &str,
        secret: &[u8; 32],
    ) -> Result<Self, mazu_log::NoteError> {
        let signer = CheckpointSigner::new(origin, secret)?;
        let verifier_key = signer.verifier().to_vkey();
        let mut tree = MerkleTree::new();
        for r in &records {
            tree.push(leaf_hash(r));
        }
        Ok(Self {
            leaves: RwLock::new(Leaves { tree, records }),
            signer,
            verifier_key,
            cache: Mutex::new(None),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Leaves> {
        self.leaves
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the record of the entry just made durable; returns its leaf
    /// hash.
    pub fn push(&self, record: Vec<u8>) -> Hash {
        let leaf = leaf_hash(&record);
        let mut leaves = self
            .leaves
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        leaves.tree.push(leaf);
        leaves.records.push(record);
        leaf
    }

    /// The tree size (number of durable entries).
    pub fn size(&self) -> u64 {
        self.read().tree.len()
    }

    /// The origin (checkpoint key name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key, C2SP note format.
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// The verifier.
    pub fn verifier(&self) -> CheckpointVerifier {
        self.signer.verifier()
    }

    /// The curator-signed checkpoint of the first `size` entries: a plain
    /// C2SP checkpoint (origin, size, root; no extension lines), before any
    /// witness cosigned it. Signed once per size.
    pub fn sign(&self, size: u64) -> Result<String, ProofError> {
        let root = self.read().tree.root(size)?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, note)) = cache.as_ref()
            && *s == size
        {
            return Ok(note.clone());
        }
        let note = self.signer.sign(size, &root);
        *cache = Some((size, note.clone()));
        Ok(note)
    }

    /// The leaf hash of entry `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.read().tree.leaf(index)
    }

    /// The record bytes of entry `index`.
    pub fn record(&self, index: u64) -> Option<Vec<u8>> {
        let i = usize::try_from(index).ok()?;
        self.read().records.get(i).cloned()
    }

    /// Records `start..min(end, size, start + MAX_RECORDS_PAGE)`
    /// concatenated, and the tree size; `None` if `start > size`.
    pub fn records(&self, start: u64, end: u64) -> Option<(u64, u64, Vec<u8>)> {
        let leaves = self.read();
        let size = leaves.records.len() as u64;
        if start > size {
            return None;
        }
        let stop = end
            .min(size)
            .min(start.saturating_add(MAX_RECORDS_PAGE))
            .max(start);
        let (a, b) = (usize::try_from(start).ok()?, usize::try_from(stop).ok()?);
        let mut out = Vec::with_capacity((b - a) * mazu_log::record::MAX_RECORD_LEN);
        for r in &leaves.records[a..b] {
            out.extend_from_slice(r);
        }
        Some((size, stop - start, out))
    }

    /// The leaf hash at `index` and its inclusion proof in the tree of
    /// `size` entries.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), ProofError> {
        let leaves = self.read();
        let proof = leaves.tree.inclusion_proof(index, size)?;
        let leaf = leaves
            .tree
            .leaf(index)
            .ok_or(ProofError::IndexOutOfRange { index, size })?;
        Ok((leaf, proof))
    }

    /// The consistency proof from `from` to `to` entries, with both roots.
    pub fn consistency(&self, from: u64, to: u64) -> Result<(Hash, Hash, Vec<Hash>), ProofError> {
        let leaves = self.read();
        let proof = leaves.tree.consistency_proof(from, to)?;
        Ok((leaves.tree.root(from)?, leaves.tree.root(to)?, proof))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn checkpoints_follow_the_tree() {
        let t = Transparency::new(Vec::new(), "mazu-curator/test", &[1; 32]).unwrap();
        let note = t.sign(0).unwrap();
        let v = CheckpointVerifier::parse(t.verifier_key()).unwrap();
        let cp = v.verify(note.as_bytes()).unwrap();
        assert_eq!(cp.size, 0);
        assert!(
            cp.extensions.is_empty(),
            "plain checkpoint: no extension lines"
        );
        assert!(t.sign(1).is_err(), "beyond the tree");
        t.push(b"a".to_vec());
        t.push(b"b".to_vec());
        let cp = v.verify(t.sign(2).unwrap().as_bytes()).unwrap();
        assert_eq!(cp.size, 2);
        let one = v.verify(t.sign(1).unwrap().as_bytes()).unwrap();
        assert_eq!(one.root, leaf_hash(b"a"));
        let (leaf, proof) = t.inclusion(1, 2).unwrap();
        mazu_log::merkle::verify_inclusion(&leaf, 1, 2, &proof, &cp.root).unwrap();
        assert!(t.inclusion(2, 2).is_err());
        let (r1, r2, proof) = t.consistency(1, 2).unwrap();
        mazu_log::merkle::verify_consistency(1, 2, &r1, &r2, &proof).unwrap();
        assert_eq!(t.records(0, 10).unwrap(), (2, 2, b"ab".to_vec()));
        assert_eq!(t.records(1, 1).unwrap(), (2, 0, Vec::new()));
        assert_eq!(t.records(2, 5).unwrap(), (2, 0, Vec::new()));
        assert!(t.records(3, 5).is_none());
    }
}
