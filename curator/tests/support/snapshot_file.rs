//! Editing a curator snapshot file the way an attacker with disk access
//! would: the change made, then the trailing SHA-256 recomputed, so that
//! only the curator's own checks of the content can refuse it.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Applies `edit` to the snapshot at `path` (its bytes without the trailing
/// SHA-256) and seals it again with a fresh SHA-256.
pub fn reseal(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(bytes.len() - 32);
    edit(&mut bytes);
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    std::fs::write(path, bytes).unwrap();
}
