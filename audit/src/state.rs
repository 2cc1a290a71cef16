//! What the auditor remembers between runs (`--state FILE`, JSON): the last
//! checkpoint it verified (and the key that signed it), and the monitor's
//! position in the log.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// The state file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The last checkpoint `check` verified and found consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<SavedCheckpoint>,
    /// The next log index `monitor` will look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_next: Option<u64>,
}

/// A verified checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SavedCheckpoint {
    /// The verifier key that signed it (pinned: another key is reported).
    pub verifier_key: String,
    /// The signed note, as served.
    pub note: String,
    /// Its tree size.
    pub size: u64,
    /// Its root hash (hex).
    pub root: String,
}

impl State {
    /// Reads the state file; a missing file is the empty state.
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                AuditError::Config(format!("state file {} is not valid: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(AuditError::Io {
                what: "reading the state file",
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes the state file atomically (temporary file and rename).
    pub fn save(&self, path: &Path) -> Result<(), AuditError> {
        let io = |source| AuditError::Io {
            what: "writing the state file",
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| AuditError::Config(format!("cannot encode the state: {e}")))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
