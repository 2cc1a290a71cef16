//! What the curator knows about its log independently of the log's frames,
//! and how it uses that at start-up and in `mazu-curator repair`.
//!
//! Before the curator answers any request with a log index, it durably
//! records the checkpoint that covers that index in
//! `DATA_DIR/acknowledged.checkpoint` ([`AckRecorder`]; one atomic write per
//! published checkpoint, never per entry: under load one write covers many
//! entries). At start-up [`open_log`] reads it back (its signature is
//! checked with the checkpoint key), together with the number of entries
//! the state snapshot covers, and opens the log with that knowledge
//! ([`crate::store::Known`]): every acknowledged entry must be there and hash
//! to the checkpoint's root, and only bytes past them can be a torn tail.
//! A missing log whose acknowledged checkpoint or snapshot remains is an
//! error, not a fresh start.
//!
//! [`repair`] is the operator's tool when the curator refuses to start: it
//! reports what it finds and changes nothing unless asked to, explicitly.

use core::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mazu_log::checkpoint::{Checkpoint, CheckpointVerifier, Note};
use mazu_log::merkle::Hash;

use crate::entry::LogEntry;
use crate::snapshot::SNAPSHOT_FILE;
use crate::store::{FileLogStore, Known, OpenReport, StoreError};

/// Name of the acknowledged checkpoint inside the data directory.
pub const ACKNOWLEDGED_FILE: &str = "acknowledged.checkpoint";

/// Name of the log file inside the data directory (the same as
/// [`crate::server::LOG_FILE`]).
const LOG_FILE: &str = "registrations.log";

/// Files the curator replaces atomically through a `.NAME.tmp<PID>`
/// temporary file; a kill during the write leaves that file behind.
const ATOMIC_FILES: [&str; 2] = [SNAPSHOT_FILE, ACKNOWLEDGED_FILE];

/// Records the newest acknowledged checkpoint durably, before it is
/// published (and so before any answer that names an index it covers).
#[derive(Debug)]
pub struct AckRecorder {
    path: PathBuf,
    /// The size last recorded.
    recorded: Mutex<u64>,
}

impl AckRecorder {
    /// A recorder writing `path`, which already holds (or needs no more
    /// than) a checkpoint of `recorded` entries.
    pub fn new(path: PathBuf, recorded: u64) -> Self {
        Self {
            path,
            recorded: Mutex::new(recorded),
        }
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `note`, a checkpoint of `size` entries, atomically and
    /// durably (temporary file, fsync, rename, fsync of the directory),
    /// unless one of at least that size is already recorded. Only when this
    /// returns `Ok` may the checkpoint be published.
    pub fn record(&self, size: u64, note: &str) -> std::io::Result<()> {
        let mut recorded = self
            .recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A checkpoint of size 0 acknowledges nothing; a refresh of the same
        // size (fresher cosignatures) proves nothing more.
        if size <= *recorded && (size > 0 || self.path.exists()) {
            return Ok(());
        }
        mazu_service::files::write_atomic(&self.path, note.as_bytes())?;
        *recorded = size;
        Ok(())
    }
}

/// The independent evidence about the log found in the data directory.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The acknowledged checkpoint, verified with the checkpoint key.
    pub acknowledged: Option<Checkpoint>,
    /// Entries covered by an intact snapshot made under this CRS.
    pub snapshot_entries: Option<u64>,
    /// Where that snapshot says the frames of its prefix lie (format 3):
    /// the log is opened without scanning them (see
    /// [`crate::store::Known::layout`]).
    pub snapshot_layout: Option<crate::store::FrameLayout>,
}

impl Evidence {
    /// Entries that must be in the log.
    pub fn entries(&self) -> u64 {
        self.acknowledged
            .as_ref()
            .map_or(0, |c| c.size)
            .max(self.snapshot_entries.unwrap_or(0))
    }

    /// Where [`Evidence::entries`] comes from, for messages.
    pub fn describe(&self, data_dir: &Path) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.acknowledged {
            parts.push(format!(
                "the acknowledged checkpoint {} says {}",
                data_dir.join(ACKNOWLEDGED_FILE).display(),
                c.size
            ));
        }
        if let Some(n) = self.snapshot_entries {
            parts.push(format!(
                "the state snapshot {} covers {n}",
                data_dir.join(SNAPSHOT_FILE).display()
            ));
        }
        if parts.is_empty() {
            "no acknowledged checkpoint or snapshot".into()
        } else {
            parts.join("; ")
        }
    }
}

/// The leaf hash of a log entry's payload (its record's).
pub fn entry_leaf(bytes: &[u8]) -> Result<Hash, String> {
    let entry = LogEntry::from_bytes(bytes).map_err(|e| e.to_string())?;
    let record = entry.record(bytes).map_err(|e| e.to_string())?;
    Ok(record.leaf_hash())
}

/// What in `data_dir` shows it was used (a non-empty log, an acknowledged
/// checkpoint, a state snapshot): names for an error message. Empty for a
/// fresh directory.
pub fn held_state(data_dir: &Path) -> Vec<String> {
    let mut held = Vec::new();
    let non_empty = |name: &str| std::fs::metadata(data_dir.join(name)).is_ok_and(|m| m.len() > 0);
    if non_empty(LOG_FILE) {
        held.push(format!("a log ({LOG_FILE})"));
    }
    if non_empty(ACKNOWLEDGED_FILE) {
        held.push(format!("an acknowledged checkpoint ({ACKNOWLEDGED_FILE})"));
    }
    if non_empty(crate::snapshot::SNAPSHOT_FILE) {
        held.push(format!(
            "a state snapshot ({})",
            crate::snapshot::SNAPSHOT_FILE
        ));
    }
    held
}

/// Removes `.state.snapshot.tmp<PID>` and `.acknowledged.checkpoint.tmp<PID>`
/// files left by a kill during an atomic write (call before anything is
/// written). Returns the removed files.
pub fn remove_stale_temp_files(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = ATOMIC_FILES.iter().any(|f| {
            name.strip_prefix(&format!(".{f}.tmp"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if stale && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        mazu_service::files::sync_dir(data_dir)?;
    }
    Ok(removed)
}

/// Reads the acknowledged checkpoint at `path` and checks its signature
/// with `verifier` (`Ok(None)`: no file).
pub fn load_acknowledged(
    path: &Path,
    verifier: &CheckpointVerifier,
) -> Result<Option<Checkpoint>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    verifier
        .verify(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Acknowledged {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Reads the evidence in `data_dir` (see the module docs).
pub fn evidence(
    data_dir: &Path,
    crs_digest: &[u8; 32],
    verifier: &CheckpointVerifier,
) -> Result<Evidence, StoreError> {
    let acknowledged = load_acknowledged(&data_dir.join(ACKNOWLEDGED_FILE), verifier)?;
    let (snapshot_entries, snapshot_layout) =
        crate::snapshot::covered_prefix(&data_dir.join(SNAPSHOT_FILE), crs_digest)?
            .map_or((None, None), |(entries, layout)| (Some(entries), layout));
    Ok(Evidence {
        acknowledged,
        snapshot_entries,
        snapshot_layout,
    })
}

/// Opens `DATA_DIR/registrations.log` under the evidence in `data_dir`:
/// refuses a missing log if anything proves it had entries, and refuses
/// (changing nothing) a log that lost or changed any acknowledged entry.
pub fn open_log(
    data_dir: &Path,
    crs_digest: [u8; 32],
    verifier: &CheckpointVerifier,
) -> Result<(FileLogStore, OpenReport, Evidence), StoreError> {
    let evidence = evidence(data_dir, &crs_digest, verifier)?;
    let source = evidence.describe(data_dir);
    let leaf: &dyn Fn(&[u8]) -> Result<Hash, String> = &entry_leaf;
    let known = Known {
        entries: evidence.entries(),
        source: &source,
        root: evidence
            .acknowledged
            .as_ref()
            .map(|c| (c.size, c.root, leaf)),
        layout: evidence.snapshot_layout.as_ref(),
    };
    let (store, report) = FileLogStore::open_with(&data_dir.join(LOG_FILE), crs_digest, &known)?;
    Ok((store, report, evidence))
}

/// What the repair subcommand does besides reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// Report only (the default).
    Report,
    /// Truncate the log at this offset, which must be the end of its last
    /// intact frame; acknowledged entries past it are given up, and the
    /// evidence of them (acknowledged checkpoint, snapshot) is moved aside
    /// (renamed with a `.lost-<unix time>` suffix, never deleted).
    TruncateAt(u64),
}

/// Why the repair did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The log cannot be read or is not a log.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Renaming or truncating failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The operator's choice does not match what was found.
    #[error("{0}")]
    Refused(String),
}

/// The repair subcommand: reports what the data directory holds (log
/// frames, first damage, acknowledged checkpoint, snapshot) and performs
/// `action` if it matches what was found. Returns the report text.
pub fn repair(data_dir: &Path, action: RepairAction) -> Result<String, RepairError> {
    let log_path = data_dir.join(LOG_FILE);
    let mut out = String::new();
    let (len, context, scan) = crate::store::inspect(&log_path)?;
    let valid = scan.frames.len();
    let _ = writeln!(out, "log:        {} ({len} bytes)", log_path.display());
    let _ = writeln!(out, "CRS digest: {}", hex::encode(context));
    let _ = writeln!(
        out,
        "intact:     {valid} entries, ending at byte offset {}",
        scan.end
    );
    match &scan.damage {
        None => {
            let _ = writeln!(out, "damage:     none");
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "damage:     entry #{valid} at byte offset {} ({}), {} bytes to the end of the \
                 file; {}",
                d.offset,
                d.reason,
                len - d.offset,
                if d.torn {
                    "an incomplete last frame (what a crash leaves)"
                } else {
                    "not a torn tail: corruption"
                }
            );
        }
    }
    // The acknowledged checkpoint, unverified here (the signature is checked
    // by the server, which has the key).
    let ack_path = data_dir.join(ACKNOWLEDGED_FILE);
    let acknowledged = match std::fs::read(&ack_path) {
        Ok(bytes) => {
            let parsed = Note::parse(&bytes).and_then(|n| Checkpoint::parse_body(&n.text));
            match parsed {
                Ok(c) => {
                    let _ = writeln!(
                        out,
                        "acknowledged checkpoint: {} entries (root {}, signature not checked here)",
                        c.size,
                        hex::encode(c.root)
                    );
                    Some(c.size)
                }
                Err(e) => {
                    let _ = writeln!(out, "acknowledged checkpoint: unreadable ({e})");
                    None
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = writeln!(out, "acknowledged checkpoint: none");
            None
        }
        Err(e) => {
            return Err(RepairError::Io {
                what: format!("cannot read {}", ack_path.display()),
                source: e,
            });
        }
    };
    let snap_path = data_dir.join(SNAPSHOT_FILE);
    let snapshot =
        crate::snapshot::covered_entries(&snap_path, &context).map_err(|e| RepairError::Io {
            what: format!("cannot read {}", snap_path.display()),
            source: e,
        })?;
    match snapshot {
        Some(n) => {
            let _ = writeln!(out, "state snapshot: covers {n} entries");
        }
        None => {
            let _ = writeln!(out, "state snapshot: none usable");
        }
    }
    let proven = acknowledged.unwrap_or(0).max(snapshot.unwrap_or(0));
    let lost = proven.saturating_sub(valid);
    if lost > 0 {
        let _ = writeln!(
            out,
            "LOSS:       {lost} acknowledged entries (#{valid}..#{}) are missing or damaged",
            proven - 1
        );
    }
    match action {
        RepairAction::Report => {
            if scan.damage.is_some() || lost > 0 {
                let _ = writeln!(
                    out,
                    "\nNothing was changed. To keep the {valid} intact entries and give up \
                     everything after them, run again with --truncate-at-offset {} --yes \
                     (restoring from a backup first is better when one exists).",
                    scan.end
                );
            } else {
                let _ = writeln!(out, "\nNothing was changed.");
            }
        }
        RepairAction::TruncateAt(offset) => {
            if offset != scan.end {
                return Err(RepairError::Refused(format!(
                    "{out}\nrefused: --truncate-at-offset {offset} is not the end of the last \
                     intact frame ({}); nothing was changed",
                    scan.end
                )));
            }
            let stamp = crate::service::now_unix();
            if acknowledged.is_some_and(|a| a > valid) {
                move_aside(&ack_path, stamp, &mut out)?;
            }
            if snapshot.is_some_and(|s| s > valid) {
                move_aside(&snap_path, stamp, &mut out)?;
            }
            if offset == len {
                let _ = writeln!(out, "\nthe log already ends there; nothing to truncate");
                return Ok(out);
            }
            crate::store::truncate(&log_path, offset).map_err(|e| RepairError::Io {
                what: format!("cannot truncate {}", log_path.display()),
                source: e,
            })?;
            let _ = writeln!(
                out,
                "\ntruncated {} at byte offset {offset}: {} bytes removed, {valid} entries kept",
                log_path.display(),
                len - offset
            );
        }
    }
    Ok(out)
}

/// Renames `path` to `path.lost-<stamp>` (kept as evidence) and syncs the
/// directory.
fn move_aside(path: &Path, stamp: u64, out: &mut String) -> Result<(), RepairError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".lost-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|e| RepairError::Io {
        what: format!("cannot move {} aside", path.display()),
        source: e,
    })?;
    if let Some(dir) = path.parent() {
        mazu_service::files::sync_dir(dir).map_err(|e| RepairError::Io {
            what: format!("cannot sync {}", dir.display()),
            source: e,
        })?;
    }
    let _ = writeln!(
        out,
        "moved {} aside to {} (it proves more entries than are kept)",
        path.display(),
        aside.display()
    );
    Ok(())
}
