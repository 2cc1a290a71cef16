//! The transparency side of the log: the Merkle tree over the log entries'
//! leaf hashes and signed checkpoints (see `docs/audit.md`).
//!
//! The tree (`mazu_log::MerkleTree`, RFC 6962 hashing) is rebuilt at
//! start-up from the log and extended by the writer after every append, so
//! its size is always the number of durable entries. Checkpoints are C2SP
//! signed notes by the **checkpoint key**, an Ed25519 key that grants no
//! identity power: nothing in Mazu accepts a workload because of it; it only
//! makes the curator accountable (two checkpoints it signed that are not
//! consistent prove it forked or rewrote its log).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use mazu_log::checkpoint::{CheckpointSigner, CheckpointVerifier};
use mazu_log::merkle::{Hash, MerkleTree, ProofError};

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

/// Why the checkpoint key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("checkpoint key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not 32 raw bytes or 64 hex digits.
    #[error("checkpoint key {0}: not 32 raw bytes or 64 hex digits")]
    Format(PathBuf),
    /// The origin is not a valid key name.
    #[error("invalid checkpoint origin: {0}")]
    Origin(#[from] mazu_log::NoteError),
}

/// Reads the checkpoint key from `path` (32 raw bytes or 64 hex digits and
/// an optional newline); if `generate` and the file does not exist, creates
/// it (mode 0600, 64 hex digits) with a fresh random key. Returns the key
/// and whether it was generated.
pub fn load_or_generate_key(path: &Path, generate: bool) -> Result<([u8; 32], bool), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => parse_key(&bytes)
            .map(|k| (k, false))
            .ok_or_else(|| KeyError::Format(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(path).map_err(io)?;
            f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

fn parse_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let text = core::str::from_utf8(bytes).ok()?.trim_end_matches('\n');
    let decoded = hex::decode(text).ok()?;
    <[u8; 32]>::try_from(decoded.as_slice()).ok()
}

/// The Merkle tree and the checkpoint signer.
#[derive(Debug)]
pub struct Transparency {
    tree: RwLock<MerkleTree>,
    signer: CheckpointSigner,
    verifier_key: String,
    /// The last signed checkpoint (size, registry digest, note).
    cache: Mutex<Option<(u64, Hash, String)>>,
}

impl Transparency {
    /// A tree over `leaves` and a signer with this key and origin.
    pub fn new(
        leaves: MerkleTree,
        origin: &str,
        secret: &[u8; 32],
    ) -> Result<Self, mazu_log::NoteError> {
        let signer = CheckpointSigner::new(origin, secret)?;
        let verifier_key = signer.verifier().to_vkey();
        Ok(Self {
            tree: RwLock::new(leaves),
            signer,
            verifier_key,
            cache: Mutex::new(None),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MerkleTree> {
        self.tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the leaf hash of the entry just made durable.
    pub fn push(&self, leaf: Hash) {
        self.tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(leaf);
    }

    /// The tree size (number of durable entries).
    pub fn size(&self) -> u64 {
        self.read().len()
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

    /// The signed checkpoint of the first `size` entries, binding the
    /// registry snapshot of that version by its SHA-256 `registry_digest`
    /// (an extension line, `mazu_log::evidence`). Signed once per size: the
    /// registry at a version is a function of the log, so the digest is too.
    pub fn checkpoint_at(&self, size: u64, registry_digest: &Hash) -> Result<String, ProofError> {
        let root = self.read().root(size)?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, d, note)) = cache.as_ref()
            && (*s, d) == (size, registry_digest)
        {
            return Ok(note.clone());
        }
        let extension = mazu_log::evidence::registry_extension(registry_digest);
        let note = self
            .signer
            .sign_with_extensions(size, &root, vec![extension]);
        *cache = Some((size, *registry_digest, note.clone()));
        Ok(note)
    }

    /// The leaf hash at `index` and its inclusion proof in the tree of
    /// `size` entries.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), ProofError> {
        let tree = self.read();
        let proof = tree.inclusion_proof(index, size)?;
        let leaf = tree
            .leaf(index)
            .ok_or(ProofError::IndexOutOfRange { index, size })?;
        Ok((leaf, proof))
    }

    /// The consistency proof from `from` to `to` entries, with both roots.
    pub fn consistency(&self, from: u64, to: u64) -> Result<(Hash, Hash, Vec<Hash>), ProofError> {
        let tree = self.read();
        let proof = tree.consistency_proof(from, to)?;
        Ok((tree.root(from)?, tree.root(to)?, proof))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn key_file_is_generated_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_KEY_FILE);
        assert!(matches!(
            load_or_generate_key(&path, false),
            Err(KeyError::Io { .. })
        ));
        let (key, generated) = load_or_generate_key(&path, true).unwrap();
        assert!(generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_generate_key(&path, true).unwrap(), (key, false));
        std::fs::write(&path, [5u8; 32]).unwrap();
        assert_eq!(load_or_generate_key(&path, false).unwrap().0, [5u8; 32]);
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_or_generate_key(&path, false),
            Err(KeyError::Format(_))
        ));
    }

    #[test]
    fn checkpoints_follow_the_tree() {
        let t = Transparency::new(MerkleTree::new(), "mazu-curator/test", &[1; 32]).unwrap();
        let note = t.checkpoint_at(0, &[3; 32]).unwrap();
        let v = CheckpointVerifier::parse(t.verifier_key()).unwrap();
        let cp = v.verify(note.as_bytes()).unwrap();
        assert_eq!(cp.size, 0);
        assert_eq!(mazu_log::evidence::registry_digest(&cp), Ok([3; 32]));
        assert!(t.checkpoint_at(1, &[3; 32]).is_err(), "beyond the tree");
        t.push(mazu_log::merkle::leaf_hash(b"a"));
        t.push(mazu_log::merkle::leaf_hash(b"b"));
        let cp = v
            .verify(t.checkpoint_at(2, &[4; 32]).unwrap().as_bytes())
            .unwrap();
        assert_eq!(cp.size, 2);
        assert_eq!(mazu_log::evidence::registry_digest(&cp), Ok([4; 32]));
        // Any older size can still be signed (the registry version may lag
        // the tree by the entry being applied).
        let one = v
            .verify(t.checkpoint_at(1, &[5; 32]).unwrap().as_bytes())
            .unwrap();
        assert_eq!(one.root, mazu_log::merkle::leaf_hash(b"a"));
        let (leaf, proof) = t.inclusion(1, 2).unwrap();
        mazu_log::merkle::verify_inclusion(&leaf, 1, 2, &proof, &cp.root).unwrap();
        assert!(t.inclusion(2, 2).is_err());
        let (r1, r2, proof) = t.consistency(1, 2).unwrap();
        mazu_log::merkle::verify_consistency(1, 2, &r1, &r2, &proof).unwrap();
    }
}
