//! The transparency side of the log: the Merkle tree over the log entries'
//! leaf records and signed checkpoints (see `docs/protocol.md`).
//!
//! Leaf `i` of the tree (RFC 6962 hashing) is `SHA-256(0x00 || record_i)`,
//! where `record_i` is the leaf record of entry `i` (`LogEntry::record`).
//! The tree and the records are rebuilt at start-up from the log (or the
//! tree restored from the state snapshot, whose prefix's records are then
//! derived from the log's entries until the background check of the prefix
//! has written them) and extended by the writer after every append, so its
//! size is always the number of durable entries. So that memory follows the live registrations
//! and not the history, the records live in a derived file on disk
//! ([`crate::records_file`]) and the tree keeps only its levels above
//! chunks of 64 leaves in memory (`mazu_log::chunked::ChunkedTree`),
//! recomputing a chunk from its records when a proof reaches below; records
//! read back are checked against the tree before they are served or used.
//!
//! Checkpoints are C2SP signed notes by the **checkpoint key**, an Ed25519
//! key that grants no identity power: nothing in Mazu accepts a workload
//! because of it; it only makes the curator accountable (two checkpoints it
//! signed that are not consistent prove it forked or rewrote its log).

use core::sync::atomic::{AtomicBool, Ordering};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;

use mazu_identity::registry::LogFollower;
use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::chunked::{ChunkedError, ChunkedTree};
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, ProofError, leaf_hash};
use mazu_log::record::LeafRecord;
use sha2::{Digest, Sha256};

use crate::entry::LogEntry;
use crate::records_file::RecordsFile;
use crate::store::LogStore;

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

/// Leaves per chunk of the Merkle tree whose lower levels are recomputed
/// from the records on disk (`2^6`: 8 KiB of records per proof below a
/// chunk root; the levels kept in memory are about 1 byte per entry).
pub const CHUNK_BITS: u32 = 6;

/// Why the tree could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The index or sizes are not within the tree.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The records kept on disk could not be read, or do not hash to the
    /// tree held in memory.
    #[error("the leaf records kept on disk cannot be used: {0}")]
    Records(String),
    /// The background check of the snapshot's log prefix found that the
    /// tree or the state restored from it is not the log's: nothing is
    /// served from it any more.
    #[error("the state restored from the snapshot was refuted by the log; restart the curator")]
    Refuted,
}

impl From<ChunkedError<std::io::Error>> for TreeError {
    fn from(e: ChunkedError<std::io::Error>) -> Self {
        match e {
            ChunkedError::Proof(p) => Self::Proof(p),
            other => Self::Records(other.to_string()),
        }
    }
}

/// The tree and the records its leaves hash.
#[derive(Debug)]
struct Leaves {
    /// The upper levels of the tree; the lower ones are recomputed from
    /// `records` when a proof needs them.
    tree: ChunkedTree,
    /// Every record (`LogEntry::record` of each entry) after the prefix
    /// (if any), on disk: record `prefix + i` is the file's record `i`.
    records: RecordsFile,
    /// A log prefix whose records are not in the file (a start from the
    /// state snapshot): they are derived from the log's entries when a
    /// proof or a read needs them, and checked against the tree like the
    /// file's.
    prefix: Option<Prefix>,
    /// The registry derived from the records, as every follower derives it:
    /// its state is what the checkpoints' state line commits to. `None` if
    /// a record did not decode (checkpoints then carry no state line).
    follower: Option<LogFollower>,
}

/// The log prefix a snapshot covered, whose records are derived from the
/// log on demand.
#[derive(Debug)]
struct Prefix {
    store: Arc<dyn LogStore>,
    entries: u64,
    /// The prefix's records from its start, as the background check of
    /// the prefix derives them (`None` once a write failed: they are then
    /// derived from the log again). Read like the other records file, and
    /// checked against the tree the same way.
    filled: Option<RecordsFile>,
}

impl Prefix {
    /// The records of entries `start..end` (all within the prefix): from
    /// the filled file if it holds them all, else derived from the log.
    fn records(&self, start: u64, end: u64) -> std::io::Result<Vec<Vec<u8>>> {
        if let Some(file) = &self.filled
            && let Some(records) = file.read(start, end)?
        {
            return Ok(records);
        }
        self.derive(start, end)
    }

    /// The records of entries `start..end`, derived from the log's entries.
    fn derive(&self, start: u64, end: u64) -> std::io::Result<Vec<Vec<u8>>> {
        let count = usize::try_from(end - start).map_err(std::io::Error::other)?;
        let entries = self
            .store
            .read_range(start, count)
            .map_err(std::io::Error::other)?;
        if entries.len() != count {
            return Err(std::io::Error::other(format!(
                "the log has no entries {start}..{end}"
            )));
        }
        entries
            .iter()
            .map(|bytes| {
                LogEntry::from_bytes(bytes)
                    .and_then(|e| e.record(bytes))
                    .map(|r| r.to_bytes())
                    .map_err(std::io::Error::other)
            })
            .collect()
    }
}

impl Leaves {
    /// Records `start..end` (`start <= end`), from the log below the
    /// prefix's end and from the file above it, unchecked; `None` if they
    /// are not all held.
    fn read_records(&self, start: u64, end: u64) -> std::io::Result<Option<Vec<Vec<u8>>>> {
        let (split, mut out) = match &self.prefix {
            Some(p) if start < p.entries => {
                let split = end.min(p.entries);
                (split, p.records(start, split)?)
            }
            Some(_) | None => (start, Vec::new()),
        };
        let base = self.prefix.as_ref().map_or(0, |p| p.entries);
        if end > split {
            match self.records.read(split - base, end - base)? {
                Some(records) => out.extend(records),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// The index the next record gets.
    fn next_index(&self) -> u64 {
        self.prefix.as_ref().map_or(0, |p| p.entries) + self.records.len()
    }

    /// Records `start..end` (`start <= end <= size`), read from disk and
    /// checked against the tree held in memory before they are served (the
    /// chunks they touch are read whole and hashed): what the curator
    /// serves is always what its checkpoints commit to.
    fn checked_records(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, TreeError> {
        let size = self.tree.len();
        if start > end || end > size {
            return Err(ProofError::SizesOutOfRange {
                from: start,
                to: end,
                size,
            }
            .into());
        }
        let chunk = self.tree.chunk_len();
        let lo = start - start % chunk;
        let hi = end.div_ceil(chunk).saturating_mul(chunk).min(size);
        let mut records = self
            .read_records(lo, hi)
            .map_err(records_error)?
            .ok_or_else(|| TreeError::Records(format!("records {lo}..{hi} are not all held")))?;
        let hashes: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
        if !self.tree.holds(lo, &hashes) {
            return Err(TreeError::Records(format!(
                "records {lo}..{hi} on disk do not hash to the tree held in memory"
            )));
        }
        // lo <= start <= end <= hi: both fit the records read.
        records.truncate(usize::try_from(end - lo).unwrap_or(usize::MAX));
        records.drain(..usize::try_from(start - lo).unwrap_or(0));
        Ok(records)
    }

    /// Leaf hashes `start..end`, from the records on disk.
    fn leaf_hashes(&self, start: u64, end: u64) -> std::io::Result<Vec<Hash>> {
        let records = self.read_records(start, end)?.ok_or_else(|| {
            std::io::Error::other(format!("records {start}..{end} are not all held"))
        })?;
        Ok(records.iter().map(|r| leaf_hash(r)).collect())
    }

    fn push(&mut self, record: Vec<u8>, batched: bool) -> Hash {
        let leaf = leaf_hash(&record);
        self.tree.push(leaf);
        if let Some(follower) = &mut self.follower {
            match LeafRecord::from_bytes(&record) {
                // A void record is void for every follower alike.
                Ok(parsed) => drop(follower.append_own(&parsed)),
                Err(e) => {
                    tracing::error!(
                        index = self.next_index(),
                        error = %e,
                        "a log record does not decode; checkpoints will carry no state line"
                    );
                    self.follower = None;
                }
            }
        }
        let written = if batched {
            self.records.push_batched(&record)
        } else {
            self.records.push(&record)
        };
        if let Err(e) = written {
            // Kept in memory and retried with the next record.
            tracing::warn!(
                index = self.next_index() - 1,
                error = %e,
                "cannot write a leaf record to the records file"
            );
        }
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
    /// Set when the background check refuted the snapshot's prefix:
    /// nothing is served any more.
    refuted: AtomicBool,
}

impl Transparency {
    /// An empty tree whose records are kept in an unlinked file in
    /// `records_dir` (the data directory), and a signer with this key and
    /// origin. The log's records are then added with
    /// [`push_batched`](Self::push_batched) and [`flush`](Self::flush).
    pub fn new(
        origin: &str,
        secret: &[u8; 32],
        records_dir: &std::path::Path,
    ) -> Result<Self, TransparencyInitError> {
        let signer = CheckpointSigner::new(origin, secret)?;
        let verifier_key = signer.verifier().to_vkey();
        let leaves = Leaves {
            tree: ChunkedTree::new(CHUNK_BITS),
            records: RecordsFile::create_in(records_dir).map_err(|error| {
                TransparencyInitError::RecordsFile {
                    dir: records_dir.to_owned(),
                    error,
                }
            })?,
            follower: Some(LogFollower::new()),
            prefix: None,
        };
        Ok(Self {
            leaves: RwLock::new(leaves),
            signer,
            verifier_key,
            cache: Mutex::new(None),
            states: Mutex::new(VecDeque::new()),
            refuted: AtomicBool::new(false),
        })
    }

    /// The tree restored from a state snapshot over the first `tree.len()`
    /// entries of `store`, with the follower after them: their records are
    /// not written to the records file but derived from `store` when
    /// needed (and checked against the tree like the file's). The entries
    /// after them are then added with [`push_batched`](Self::push_batched).
    pub fn restored(
        origin: &str,
        secret: &[u8; 32],
        records_dir: &std::path::Path,
        tree: ChunkedTree,
        follower: LogFollower,
        store: Arc<dyn LogStore>,
    ) -> Result<Self, TransparencyInitError> {
        let this = Self::new(origin, secret, records_dir)?;
        {
            let mut leaves = this.write();
            leaves.prefix = Some(Prefix {
                store,
                entries: tree.len(),
                filled: RecordsFile::create_in(records_dir)
                    .map_err(|e| tracing::warn!(error = %e, "cannot create the prefix records file; the prefix's records are derived from the log"))
                    .ok(),
            });
            leaves.tree = tree;
            leaves.follower = Some(follower);
        }
        Ok(this)
    }

    /// Appends the next records of the restored prefix (in log order, from
    /// its first entry) to the file that serves them from then on: what
    /// the background check of the prefix derives anyway. Past the prefix,
    /// or after a failed write (the file is then dropped: the records are
    /// derived from the log again, memory does not hold them), nothing.
    pub fn fill_prefix(&self, records: &[Vec<u8>]) {
        let mut leaves = self.write();
        let Some(prefix) = &mut leaves.prefix else {
            return;
        };
        let entries = prefix.entries;
        let Some(file) = &mut prefix.filled else {
            return;
        };
        let room = usize::try_from(entries - file.len().min(entries)).unwrap_or(usize::MAX);
        let mut written = Ok(());
        for record in records.iter().take(room) {
            written = file.push_batched(record);
            if written.is_err() {
                break;
            }
        }
        if let Err(e) = written.and_then(|()| file.flush()) {
            tracing::warn!(
                error = %e,
                "cannot write the prefix records file; the prefix's records are derived from the \
                 log"
            );
            prefix.filled = None;
        }
    }

    /// What a state snapshot keeps of the tree at size `size`: the
    /// follower state, the chunk roots and the leaves after them; `None`
    /// if the tree is not at that size or has no follower state.
    pub fn capture(&self, size: u64) -> Option<(Vec<u8>, Vec<Hash>, Vec<Hash>)> {
        let leaves = self.read();
        if leaves.tree.len() != size {
            return None;
        }
        let follower = leaves.follower.as_ref()?.encode_state();
        Some((
            follower,
            leaves.tree.chunk_roots(),
            leaves.tree.tail_leaves(),
        ))
    }

    /// Stops serving anything: the background check refuted the prefix
    /// the tree was restored from.
    pub fn refute(&self) {
        self.refuted.store(true, Ordering::SeqCst);
        *self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// `Err(Refuted)` once [`refute`](Self::refute) was called.
    fn usable(&self) -> Result<(), TreeError> {
        if self.refuted.load(Ordering::SeqCst) {
            return Err(TreeError::Refuted);
        }
        Ok(())
    }

    /// The root of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.usable()?;
        let leaves = self.read();
        Ok(leaves.tree.root(size, |a, b| leaves.leaf_hashes(a, b))?)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Leaves> {
        self.leaves
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the record of the entry just made durable; returns its leaf
    /// hash.
    pub fn push(&self, record: Vec<u8>) -> Hash {
        self.write().push(record, false)
    }

    /// Appends a record at start-up, written to disk in batches;
    /// [`flush`](Self::flush) writes the last batch.
    pub fn push_batched(&self, record: Vec<u8>) {
        self.write().push(record, true);
    }

    /// Writes the records not yet on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        self.write().records.flush()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Leaves> {
        self.leaves
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    pub fn sign_latest(&self) -> Result<(u64, String), TreeError> {
        self.usable()?;
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
        let root = leaves.tree.root(size, |a, b| leaves.leaf_hashes(a, b))?;
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
        if self.usable().is_err() {
            return None;
        }
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, state)| state.clone())
    }

    /// The leaf hash of entry `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, TreeError> {
        self.usable()?;
        let leaves = self.read();
        Ok(leaves.tree.leaf(index, |a, b| leaves.leaf_hashes(a, b))?)
    }

    /// The records of entries `start..min(end, size)`, each on its own
    /// (none if `start >= size`).
    pub fn records_each(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, TreeError> {
        self.usable()?;
        let leaves = self.read();
        let end = end.min(leaves.tree.len());
        if start >= end {
            return Ok(Vec::new());
        }
        leaves.checked_records(start, end)
    }

    /// Records `start..min(end, size, start + MAX_RECORDS_PAGE)`
    /// concatenated, the tree size and the count; `None` if `start > size`.
    pub fn records(&self, start: u64, end: u64) -> Result<Option<(u64, u64, Vec<u8>)>, TreeError> {
        self.usable()?;
        let leaves = self.read();
        let size = leaves.tree.len();
        if start > size {
            return Ok(None);
        }
        let stop = end
            .min(size)
            .min(start.saturating_add(MAX_RECORDS_PAGE))
            .max(start);
        let bytes = leaves.checked_records(start, stop)?.concat();
        Ok(Some((size, stop - start, bytes)))
    }

    /// Records `start..end` concatenated, unpaged (what a witness is sent
    /// with a checkpoint); `None` unless `start <= end <= size`.
    pub fn records_between(&self, start: u64, end: u64) -> Result<Option<Vec<u8>>, TreeError> {
        self.usable()?;
        let leaves = self.read();
        if start > end || end > leaves.tree.len() {
            return Ok(None);
        }
        Ok(Some(leaves.checked_records(start, end)?.concat()))
    }

    /// The leaf hash at `index` and its inclusion proof in the tree of
    /// `size` entries.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), TreeError> {
        self.usable()?;
        let leaves = self.read();
        let mut reader = leaves.tree.reader(|a, b| leaves.leaf_hashes(a, b));
        let proof = reader.inclusion_proof(index, size)?;
        let leaf = reader.leaf(index)?;
        Ok((leaf, proof))
    }

    /// The consistency proof from `from` to `to` entries, with both roots.
    pub fn consistency(&self, from: u64, to: u64) -> Result<(Hash, Hash, Vec<Hash>), TreeError> {
        self.usable()?;
        let leaves = self.read();
        let mut reader = leaves.tree.reader(|a, b| leaves.leaf_hashes(a, b));
        let proof = reader.consistency_proof(from, to)?;
        Ok((reader.root(from)?, reader.root(to)?, proof))
    }
}

fn records_error(e: std::io::Error) -> TreeError {
    TreeError::Records(e.to_string())
}

/// Why a [`Transparency`] could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransparencyInitError {
    /// The checkpoint signer cannot be set up (invalid origin).
    #[error("cannot set up checkpoint signing: {0}")]
    Checkpoint(#[from] mazu_log::NoteError),
    /// The records file cannot be created.
    #[error("cannot create the records file in {}: {error}", dir.display())]
    RecordsFile {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
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

    fn tree_with(records: impl IntoIterator<Item = Vec<u8>>) -> Transparency {
        let t = Transparency::new("mazu-curator/test", &[1; 32], &std::env::temp_dir()).unwrap();
        for r in records {
            t.push_batched(r);
        }
        t.flush().unwrap();
        t
    }

    #[test]
    fn checkpoints_follow_the_tree_and_commit_to_the_derived_state() {
        let t = tree_with([bind(1)]);
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
        assert_eq!(t.records(0, 10).unwrap(), Some((2, 2, both.clone())));
        assert_eq!(t.records(1, 1).unwrap(), Some((2, 0, Vec::new())));
        assert_eq!(t.records(2, 5).unwrap(), Some((2, 0, Vec::new())));
        assert!(t.records(3, 5).unwrap().is_none());
        assert_eq!(t.records_between(0, 2).unwrap(), Some(both));
        assert!(t.records_between(1, 3).unwrap().is_none());
        assert_eq!(t.records_each(1, 5).unwrap(), vec![bind(2)]);
        assert!(t.records_each(2, 5).unwrap().is_empty());
    }

    /// `n` bind records of distinct ids.
    fn binds(n: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut r = LeafRecord::from_bytes(&bind(1)).unwrap();
                r.id = Sha256::digest(i.to_be_bytes()).into();
                r.to_bytes()
            })
            .collect()
    }

    /// Past the first chunks (records on disk, lower levels recomputed):
    /// every answer is the whole in-memory tree's.
    #[test]
    fn answers_below_the_chunks_equal_the_whole_trees() {
        let records = binds(300);
        let t = tree_with(records[..250].iter().cloned());
        for r in &records[250..] {
            t.push(r.clone());
        }
        let whole = mazu_log::MerkleTree::from_leaves(records.iter().map(|r| leaf_hash(r)));
        for (index, size) in [(0, 300), (63, 64), (64, 65), (100, 257), (299, 300)] {
            let (leaf, proof) = t.inclusion(index, size).unwrap();
            assert_eq!(leaf, leaf_hash(&records[index as usize]));
            assert_eq!(proof, whole.inclusion_proof(index, size).unwrap());
        }
        for (from, to) in [(1, 300), (64, 128), (100, 200), (257, 299)] {
            let (r1, r2, proof) = t.consistency(from, to).unwrap();
            assert_eq!(
                (r1, r2),
                (whole.root(from).unwrap(), whole.root(to).unwrap())
            );
            assert_eq!(proof, whole.consistency_proof(from, to).unwrap());
        }
        let (_, _, page) = t.records(120, 130).unwrap().unwrap();
        assert_eq!(page, records[120..130].concat());
        assert_eq!(
            t.records_each(250, 400).unwrap(),
            records[250..300].to_vec()
        );
        assert!(matches!(t.inclusion(300, 300), Err(TreeError::Proof(_))));
    }

    /// A record changed on disk is never served, nor used in a proof: every
    /// read is checked against the tree held in memory.
    #[test]
    fn a_damaged_records_file_serves_nothing_wrong() {
        let records = binds(200);
        let t = tree_with(records.iter().cloned());
        t.read().records.damage(70);
        for result in [
            t.records(60, 80).map(|_| ()),
            t.records(70, 71).map(|_| ()),
            t.records_between(0, 200).map(|_| ()),
            t.records_each(64, 65).map(|_| ()),
            t.inclusion(70, 200).map(|_| ()),
            t.consistency(70, 200).map(|_| ()),
            t.leaf(64).map(|_| ()),
        ] {
            assert!(matches!(result, Err(TreeError::Records(_))), "{result:?}");
        }
        // Chunks it does not touch are served, and the root needs no record.
        assert_eq!(t.records(0, 64).unwrap().unwrap().2, records[..64].concat());
        assert_eq!(
            t.records_each(130, 140).unwrap(),
            records[130..140].to_vec()
        );
        assert!(t.sign_latest().is_ok());
    }

    #[test]
    fn a_record_that_does_not_decode_drops_the_state_line() {
        let t = tree_with([bind(1)]);
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
