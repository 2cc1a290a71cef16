//! The `mazu-ceremony` command: a multi-party trusted setup for the RBE CRS.
//!
//! The cryptography (update proofs, transcript format and verification) is in
//! [`mazu_rbe::ceremony`]; this crate is the file handling around it:
//!
//! * a ceremony is a directory holding one file, [`TRANSCRIPT_FILE`];
//! * every write is atomic (temporary file in the same directory, `fsync`,
//!   `rename`, `fsync` of the directory), so a crash leaves the old transcript
//!   or the new one, never a torn file;
//! * `contribute` holds an exclusive lock file ([`LOCK_FILE`]) from before it
//!   reads the transcript until after it renamed the new one, so two
//!   contributors on one directory cannot overwrite each other;
//! * the contribution secret comes from a ChaCha20 generator seeded with
//!   SHA-256 of 64 bytes of operating-system randomness and, optionally, of a
//!   file of extra entropy: either source alone suffices.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use mazu_rbe::Crs;
use mazu_rbe::ceremony::{ContributionSummary, Transcript, VerifiedCeremony};
use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The transcript's file name inside a ceremony directory.
pub const TRANSCRIPT_FILE: &str = "transcript.bin";

/// The lock file `contribute` creates (exclusively) while it works.
pub const LOCK_FILE: &str = "transcript.bin.lock";

/// Domain tag of the contribution RNG seed.
const DOMAIN_SEED: &[u8] = b"mazu-ceremony/v1/contribution-seed";

/// The transcript file for `path`: `path/transcript.bin` if `path` is a
/// directory, otherwise `path` itself (so a bare transcript file works too).
pub fn transcript_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(TRANSCRIPT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Start a ceremony for `capacity` in directory `out` (created if missing).
/// Refuses to overwrite an existing transcript. Returns the transcript path.
pub fn init(capacity: u32, out: &Path) -> Result<(PathBuf, Transcript)> {
    let transcript = Transcript::new(capacity).context("cannot start a ceremony")?;
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(TRANSCRIPT_FILE);
    if path.exists() {
        bail!(
            "{} already exists: refusing to overwrite a ceremony transcript",
            path.display()
        );
    }
    write_atomic(&path, &transcript.to_bytes())?;
    Ok((path, transcript))
}

/// Read and decode a transcript file (no verification).
pub fn read_transcript(path: &Path) -> Result<Transcript> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Transcript::from_bytes(&bytes)
        .map_err(|e| anyhow!("verification FAILED: {}: {e}", path.display()))
}

/// Decode and verify the whole transcript at `path`.
pub fn verify(path: &Path) -> Result<VerifiedCeremony> {
    let transcript = read_transcript(path)?;
    transcript
        .verify()
        .map_err(|e| anyhow!("verification FAILED: {}: {e}", path.display()))
}

/// Check that every hash in `expected` names a contribution of `verified`.
pub fn check_expected(verified: &VerifiedCeremony, expected: &[[u8; 32]]) -> Result<()> {
    for hash in expected {
        if !verified.contains(hash) {
            bail!(
                "verification FAILED: expected contribution {} is not in the transcript",
                hex::encode(hash)
            );
        }
    }
    Ok(())
}

/// Add one contribution to the ceremony at `path` (a directory or a transcript
/// file): verify the transcript so far, update the latest CRS with a fresh
/// secret, and replace the transcript atomically under the lock.
pub fn contribute(
    path: &Path,
    name: &str,
    entropy_file: Option<&Path>,
) -> Result<ContributionSummary> {
    let path = transcript_path(path);
    let _lock = Lock::acquire(&path)?;
    let mut transcript = read_transcript(&path)?;
    // Building on a broken transcript would waste the contribution: the final
    // verification would refuse it anyway. The empty transcript (only the
    // public start) is where the first contributor begins.
    if !transcript.contributions().is_empty() {
        transcript.verify().map_err(|e| {
            anyhow!(
                "verification FAILED: {}: {e}; refusing to contribute",
                path.display()
            )
        })?;
    }
    let mut rng = contribution_rng(entropy_file)?;
    let summary = transcript
        .contribute(name, &mut rng)
        .context("contribution failed")?;
    write_atomic(&path, &transcript.to_bytes())?;
    Ok(summary)
}

/// Write the final CRS of a verified ceremony in the canonical encoding the
/// curator's `--crs` flag reads.
pub fn write_crs(crs: &Crs, path: &Path) -> Result<()> {
    write_atomic(path, &crs.to_bytes())
}

/// Parse a 64-character hex contribution hash.
pub fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|e| format!("not a 32-byte hex hash ({e})"))?;
    Ok(out)
}

/// A generator for one contribution: ChaCha20 keyed by SHA-256 of the domain,
/// 64 bytes from the operating system and the SHA-256 of the extra entropy
/// file (if any). The seed is zeroized once the generator is keyed.
fn contribution_rng(entropy_file: Option<&Path>) -> Result<ChaCha20Rng> {
    let mut os = Zeroizing::new([0u8; 64]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut *os)
        .context("operating-system randomness unavailable")?;
    let mut h = Sha256::new();
    h.update(DOMAIN_SEED);
    h.update(*os);
    match entropy_file {
        Some(p) => {
            let extra = hash_file(p)?;
            h.update([1u8]);
            h.update(*extra);
        }
        None => h.update([0u8]),
    }
    let seed = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    Ok(ChaCha20Rng::from_seed(*seed))
}

/// SHA-256 of a file's contents, streamed (entropy files may be large, e.g.
/// recorded noise).
fn hash_file(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Zeroizing::new(h.finalize().into()))
}

/// Replace `path` with `bytes` atomically: a temporary file in the same
/// directory (same file system, so `rename` is atomic), flushed to disk
/// before the rename, and the directory flushed after it so the rename itself
/// survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    // Transcripts and CRSs are public: readable by everyone (the temporary
    // file is created private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set permissions of {}", tmp.path().display()))?;
    }
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    sync_dir(dir).with_context(|| format!("cannot sync directory {}", dir.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An exclusively created lock file next to the transcript, removed on drop.
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn acquire(transcript: &Path) -> Result<Self> {
        let path = transcript.with_file_name(LOCK_FILE);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    anyhow!(
                        "{} exists: another contribution is in progress (remove the file if \
                         a previous run was killed)",
                        path.display()
                    )
                } else {
                    anyhow!("cannot create lock file {}: {e}", path.display())
                }
            })?;
        Ok(Self { path })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Best effort: a leftover lock only blocks the next contribution,
        // with a message saying how to clear it.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse() {
        let h = [0xab; 32];
        assert_eq!(parse_hash(&hex::encode(h)), Ok(h));
        assert!(parse_hash("abcd").is_err());
        assert!(parse_hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn rng_differs_per_run_and_uses_entropy_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("noise");
        fs::write(&f, b"some extra entropy").expect("write");
        let mut a = contribution_rng(Some(&f)).expect("rng");
        let mut b = contribution_rng(Some(&f)).expect("rng");
        assert_ne!(a.next_u64(), b.next_u64());
        assert!(contribution_rng(Some(&dir.path().join("missing"))).is_err());
    }

    #[test]
    fn lock_is_exclusive_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join(TRANSCRIPT_FILE);
        let lock = Lock::acquire(&t).expect("first lock");
        assert!(Lock::acquire(&t).is_err());
        drop(lock);
        Lock::acquire(&t).expect("lock after release");
    }
}
