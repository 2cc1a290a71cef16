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

use std::collections::VecDeque;
use std::sync::{Mutex, RwLock};

use axum::body::Bytes;

use mazu_identity::registry::LogFollower;
use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, MerkleTree, ProofError, leaf_hash};
use mazu_log::record::LeafRecord;
use sha2::{Digest, Sha256};

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

/// Follower states kept for `GET /v1/log/state`: the newest few, so that a
/// client that verified a checkpoint just before the next one was signed
/// still finds its state.
const STATES_KEPT: usize = 4;

/// The tree and the records its leaves hash.
#[derive(Debug, Default)]
struct Leaves {
    tree: MerkleTree,
    /// Record `i`'s canonical bytes (~80 to 114 bytes each).
    records: Vec<Vec<u8>>,
    /// The registry derived from the records, as every follower derives it:
    /// its state is what the checkpoints' state line commits to. `None` if
    /// a record did not decode (checkpoints then carry no state line).
    follower: Option<LogFollower>,
}

impl Leaves {
    /// Records `start..end` concatenated; `None` unless
    /// `start <= end <= size`.
    fn concat(&self, start: u64, end: u64) -> Option<Vec<u8>> {
        let (a, b) = (usize::try_from(start).ok()?, usize::try_from(end).ok()?);
        Some(self.records.get(a..b)?.concat())
    }

    fn push(&mut self, record: Vec<u8>) -> Hash {
        let leaf = leaf_hash(&record);
        self.tree.push(leaf);
        if let Some(follower) = &mut self.follower {
            match LeafRecord::from_bytes(&record) {
                // A void record is void for every follower alike.
                Ok(parsed) => drop(follower.append_own(&parsed)),
                Err(e) => {
                    tracing::error!(
                        index = self.records.len(),
                        error = %e,
                        "a log record does not decode; checkpoints will carry no state line"
                    );
                    self.follower = None;
                }
            }
        }
        self.records.push(record);
        leaf
    }
}

/// A follower state as served: its size and canonical encoding.
pub type EncodedState = (u64, Bytes);

/// The Merkle tree over the log's leaf records, the records themselves, and
/// the checkpoint signer.
#[derive(Debug)]
pub struct Transparency {
    leaves: RwLock<Leaves>,
    signer: CheckpointSigner,
    verifier_key: String,
    /// The last signed checkpoint (size, note).
    cache: Mutex<Option<(u64, String)>>,
    /// The follower states of the newest signed checkpoints, oldest first.
    states: Mutex<VecDeque<EncodedState>>,
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
        let mut leaves = Leaves {
            follower: Some(LogFollower::new()),
            ..Leaves::default()
        };
        for r in records {
            leaves.push(r);
        }
        Ok(Self {
            leaves: RwLock::new(leaves),
            signer,
            verifier_key,
            cache: Mutex::new(None),
            states: Mutex::new(VecDeque::new()),
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
        self.leaves
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record)
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

    /// The curator-signed checkpoint of the whole log as it is now, and its
    /// size: a C2SP checkpoint (origin, size, root) whose one extension line
    /// commits to the follower state after these records
    /// ([`state_extension`]; the state is then served by
    /// [`state`](Self::state)), before any witness cosigned it. Signed once
    /// per size.
    pub fn sign_latest(&self) -> Result<(u64, String), ProofError> {
        let leaves = self.read();
        let size = leaves.tree.len();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, note)) = cache.as_ref()
            && *s == size
        {
            return Ok((size, note.clone()));
        }
        let root = leaves.tree.root(size)?;
        let extensions = match &leaves.follower {
            Some(follower) => {
                let state = follower.encode_state();
                let line = state_extension(&Sha256::digest(&state).into());
                let mut states = self
                    .states
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if states.len() == STATES_KEPT {
                    states.pop_front();
                }
                states.push_back((size, Bytes::from(state)));
                vec![line]
            }
            None => Vec::new(),
        };
        let note = self.signer.sign_with_extensions(size, &root, extensions);
        *cache = Some((size, note.clone()));
        Ok((size, note))
    }

    /// The follower state (canonical encoding) at `size`, if it is one of the
    /// newest signed checkpoints' ([`sign_latest`](Self::sign_latest)).
    pub fn state(&self, size: u64) -> Option<Bytes> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, state)| state.clone())
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
        Some((size, stop - start, leaves.concat(start, stop)?))
    }

    /// Records `start..end` concatenated, unpaged (what a witness is sent
    /// with a checkpoint); `None` unless `start <= end <= size`.
    pub fn records_between(&self, start: u64, end: u64) -> Option<Vec<u8>> {
        self.read().concat(start, end)
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
    use mazu_log::evidence::state_digest;
    use mazu_log::record::RecordBody;

    use super::*;

    fn bind(id: u8) -> Vec<u8> {
        LeafRecord {
            at_ms: 1_700_000_000_000,
            id: [id; 32],
            entry_digest: [0; 32],
            body: RecordBody::Bind {
                slot: u32::from(id),
                spki_hash: [id; 32],
                token_expiry: 1_800_000_000,
            },
        }
        .to_bytes()
    }

    #[test]
    fn checkpoints_follow_the_tree_and_commit_to_the_derived_state() {
        let t = Transparency::new(vec![bind(1)], "mazu-curator/test", &[1; 32]).unwrap();
        let v = CheckpointVerifier::parse(t.verifier_key()).unwrap();
        let (size, note) = t.sign_latest().unwrap();
        let cp = v.verify(note.as_bytes()).unwrap();
        assert_eq!((size, cp.size), (1, 1));
        assert_eq!(cp.root, leaf_hash(&bind(1)));
        let state = t.state(1).unwrap();
        let digest: Hash = Sha256::digest(&state).into();
        assert_eq!(state_digest(&cp).unwrap(), Some(digest));
        let follower = LogFollower::decode_state(&state).unwrap();
        assert_eq!((follower.size(), follower.root()), (1, cp.root));
        assert!(follower.registry().state(&[1; 32]).is_some());

        t.push(bind(2));
        let (size, note) = t.sign_latest().unwrap();
        let cp = v.verify(note.as_bytes()).unwrap();
        assert_eq!(size, 2);
        assert!(t.state(1).is_some() && t.state(2).is_some() && t.state(3).is_none());
        let (leaf, proof) = t.inclusion(1, 2).unwrap();
        mazu_log::merkle::verify_inclusion(&leaf, 1, 2, &proof, &cp.root).unwrap();
        assert!(t.inclusion(2, 2).is_err());
        let (r1, r2, proof) = t.consistency(1, 2).unwrap();
        mazu_log::merkle::verify_consistency(1, 2, &r1, &r2, &proof).unwrap();
        let both = [bind(1), bind(2)].concat();
        assert_eq!(t.records(0, 10).unwrap(), (2, 2, both.clone()));
        assert_eq!(t.records(1, 1).unwrap(), (2, 0, Vec::new()));
        assert_eq!(t.records(2, 5).unwrap(), (2, 0, Vec::new()));
        assert!(t.records(3, 5).is_none());
        assert_eq!(t.records_between(0, 2).unwrap(), both);
        assert!(t.records_between(1, 3).is_none());
    }

    #[test]
    fn a_record_that_does_not_decode_drops_the_state_line() {
        let t = Transparency::new(vec![bind(1)], "mazu-curator/test", &[1; 32]).unwrap();
        t.push(b"not a record".to_vec());
        let (_, note) = t.sign_latest().unwrap();
        let cp = CheckpointVerifier::parse(t.verifier_key())
            .unwrap()
            .verify(note.as_bytes())
            .unwrap();
        assert!(cp.extensions.is_empty());
        assert!(t.state(2).is_none());
    }
}
