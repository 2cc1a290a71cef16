//! Rewriting a stopped curator's log on disk, the way a curator that lies
//! about its history would: tests of everyone who must catch it (the audit,
//! the filter, the agent) use these. The file is read and written through
//! the curator's own `FileLogStore`, so the frames carry valid checksums
//! and the curator replays the result as its own.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use mazu_curator::recovery::ACKNOWLEDGED_FILE;
use mazu_curator::server::LOG_FILE;
use mazu_curator::snapshot::SNAPSHOT_FILE;
use mazu_curator::store::{FileLogStore, LogStore as _};

/// The log of the curator whose data directory is `data_dir`: its context
/// (the CRS digest in the file header) and every entry, in log order.
pub fn read_log(data_dir: &Path) -> Result<([u8; 32], Vec<Vec<u8>>)> {
    let path = data_dir.join(LOG_FILE);
    let header = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let context: [u8; 32] = header
        .get(8..40)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| anyhow!("{} has no header", path.display()))?;
    let (store, _) = FileLogStore::open(&path, context)?;
    let mut entries = Vec::new();
    while (entries.len() as u64) < store.len() {
        let chunk = store.read_range(entries.len() as u64, 256)?;
        if chunk.is_empty() {
            break;
        }
        entries.extend(chunk);
    }
    Ok((context, entries))
}

/// Replaces the log in `data_dir` by `entries` under `context` (the CRS
/// digest; an old file is kept as `registrations.log.orig`) and removes the
/// state snapshot and the acknowledged checkpoint, so that the curator's
/// next start replays exactly these entries: what a curator's operator who
/// rewrites the log would do to its own evidence (the witnesses, agents and
/// filters keep theirs).
pub fn write_log(data_dir: &Path, context: [u8; 32], entries: &[Vec<u8>]) -> Result<()> {
    let path = data_dir.join(LOG_FILE);
    if path.exists() {
        std::fs::rename(&path, path.with_extension("log.orig"))?;
    }
    let (store, _) = FileLogStore::open(&path, context)?;
    for entry in entries {
        store.append(entry)?;
    }
    for evidence in [SNAPSHOT_FILE, ACKNOWLEDGED_FILE] {
        match std::fs::remove_file(data_dir.join(evidence)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// [`read_log`], `edit` (reorder, drop, replace entries), [`write_log`].
pub fn rewrite_log(data_dir: &Path, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Result<()> {
    let (context, mut entries) = read_log(data_dir)?;
    edit(&mut entries);
    write_log(data_dir, context, &entries)
}
