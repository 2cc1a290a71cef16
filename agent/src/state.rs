//! The state directory: everything the agent must keep across restarts so
//! that a restart with the same token reuses its registration instead of
//! registering again.
//!
//! ```text
//! DIR/                          0700
//!   crs.bin                     the curator's CRS (canonical bytes), pinned on first use
//!   current                     hex id of the registration being served
//!   status.json                 what is served (for people, tests and the demo)
//!   checkpoint.json             the checkpoint key and the last accepted checkpoint
//!                               (see `crate::transparency`)
//!   outcome.json                the last registration attempt's outcome (e.g.
//!                               `front_run`), written even when nothing is served
//!   registrations/<id hex>/     0700, one per token ever registered (the last two kept)
//!     token                     0600 the JWT, written only once the agent decided to
//!                               reveal it (its binding is the first in the witnessed log)
//!     tls-key.pem               0600 PKCS#8 P-256 key
//!     rbe-secret.bin            0600 mazu_rbe::SecretKey canonical bytes (RBEK)
//!     request.json              0600 the binding request (no token), until it is accepted
//!     registration.json         0600 slot, version, SPKI hash, ... once revealed
//!     openings.bin              0600 mazu_rbe::OpeningHistory canonical bytes (RBEH)
//! ```
//!
//! Every file is written atomically (temporary file, `fsync`, `rename`,
//! `fsync` of the directory), so a crash leaves either the old or the new
//! content. Keys are written *before* the binding is sent: if the curator
//! logs it and the agent dies before hearing so, the keys that match the
//! bound id still exist (a bound id with lost keys would make that token
//! useless). The token is not stored before the agent has checked its
//! binding in the witnessed log: nothing on disk pairs the token with keys
//! whose binding might have been front-run.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use mazu_curator::api::views::BindingRequest;
use mazu_rbe::{OpeningHistory, SecretKey};
use p256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};

use crate::credentials::{key_from_pem, key_to_pem};
use crate::error::{Error, StateError};

/// Mode of secret files.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of directories.
pub const DIR_MODE: u32 = 0o700;

/// Writes `bytes` to `path` atomically with `mode`: a temporary file in the
/// same directory, `fsync`, `rename` over `path`, `fsync` of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| StateError::io("creating", &tmp, e))?;
        // The mode above only applies to a new file; a leftover temporary
        // file keeps its old mode, so set it explicitly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| StateError::io("setting the mode of", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| StateError::io("writing", &tmp, e))?;
        file.sync_all()
            .map_err(|e| StateError::io("syncing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| StateError::io("renaming into", path, e))?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and parents) with mode 0700, and tightens an existing one.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StateError::io("creating directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| StateError::io("setting the mode of", dir, e))
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io("reading", path, e)),
    }
}

/// `status.json`: what the agent serves right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Hex workload id (SHA-256 of the token).
    pub id: String,
    /// The registered slot.
    pub slot: u32,
    /// The certificate's SPIFFE ID.
    pub spiffe_id: String,
    /// Registry version right after this registration.
    pub registered_version: u64,
    /// Hex SHA-256 of the served certificate's SPKI (what the registry holds).
    pub spki_hash: String,
    /// The served certificate's `notAfter`, Unix seconds.
    pub cert_not_after: u64,
    /// The token's `exp`, Unix seconds.
    pub token_exp: u64,
    /// The curator URL.
    pub curator: String,
    /// When this file was written, Unix seconds.
    pub updated_at: u64,
    /// Tree size of the last signed checkpoint the agent accepted (see
    /// `crate::transparency`); absent until one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_size: Option<u64>,
    /// Log index of this registration's entry, once proven included in an
    /// accepted checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// The checkpoint refusal in force (the curator served a checkpoint
    /// inconsistent with what the agent accepted before); absent when the
    /// last check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_refused: Option<CheckpointRefusal>,
    /// The last registration attempt that ended before its token was
    /// revealed (e.g. `front_run`); absent if none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_refused: Option<RegistrationOutcome>,
    /// How many first binds the agent's log view holds: the ids bound and
    /// not yet ended, plus ended ones the opening refresh has not consumed.
    /// It follows the live registrations, not the history.
    #[serde(default)]
    pub first_binds_held: u64,
}

/// A checkpoint refusal, as `status.json` and `checkpoint.json` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRefusal {
    /// Short name (`bad_signature`, `key_changed`, `rollback`, `fork`,
    /// `inconsistent`, `own_entry_missing`).
    pub kind: String,
    /// What is wrong, in words.
    pub reason: String,
    /// How many checks in a row were refused.
    pub count: u64,
    /// When the first of them happened, Unix seconds.
    pub since: u64,
    /// When the last one happened, Unix seconds.
    pub last_at: u64,
    /// Size of the checkpoint the agent keeps (accepted before).
    pub remembered_size: Option<u64>,
    /// Size of the refused checkpoint, if its signature verified.
    pub offered_size: Option<u64>,
}

impl Status {
    /// Parses `status.json` content.
    pub fn parse(bytes: &[u8]) -> Result<Status, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// `outcome.json`: how the last registration attempt ended, when it ended
/// without a served certificate for a reason the operator must see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationOutcome {
    /// Hex workload id of the token.
    pub id: String,
    /// Short stable reason: `front_run`, `spki_mismatch`, `not_in_log`.
    pub reason: String,
    /// What happened, in words.
    pub detail: String,
    /// Whether the token was revealed to the curator (never for these
    /// outcomes: they are decided before the reveal).
    pub token_revealed: bool,
    /// When, Unix seconds.
    pub at: u64,
}

/// `registration.json`: a registration the curator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// Hex workload id.
    pub id: String,
    /// The slot.
    pub slot: u32,
    /// Registry version right after it.
    pub registered_version: u64,
    /// Hex SHA-256 of the TLS SPKI.
    pub spki_hash: String,
    /// The token's `exp`.
    pub token_exp: u64,
    /// Log position up to which `openings.bin` has been brought (every log
    /// entry before it has been applied).
    pub openings_version: u64,
    /// Log index of the registration's entry, when the curator said it
    /// (absent in records from before it was kept, and when the agent
    /// learnt of its registration through `already_registered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

impl RegistrationRecord {
    /// Parses `registration.json` content.
    pub fn parse(bytes: &[u8]) -> Result<RegistrationRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The keys of one registration.
pub struct Keys {
    /// TLS key.
    pub tls: SigningKey,
    /// RBE secret key.
    pub rbe: SecretKey,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// One registration's directory.
#[derive(Clone, Debug)]
pub struct RegistrationDir {
    dir: PathBuf,
    id_hex: String,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir, StateError> {
        let root = root.into();
        ensure_private_dir(&root)?;
        ensure_private_dir(&root.join("registrations"))?;
        Ok(StateDir { root })
    }

    /// Opens an existing state directory without creating or changing it
    /// (for `decrypt` and `status`, which must not race a running agent).
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<StateDir, StateError> {
        let root = root.into();
        fs::metadata(&root).map_err(|e| StateError::io("opening state directory", &root, e))?;
        Ok(StateDir { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of `status.json`.
    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// The stored CRS bytes.
    pub fn crs_bytes(&self) -> Result<Option<Vec<u8>>, StateError> {
        read_opt(&self.root.join("crs.bin"))
    }

    /// Stores the CRS bytes.
    pub fn store_crs(&self, bytes: &[u8]) -> Result<(), StateError> {
        write_atomic(&self.root.join("crs.bin"), bytes, SECRET_MODE)
    }

    /// The id being served, if any.
    pub fn current(&self) -> Result<Option<String>, StateError> {
        let path = self.root.join("current");
        Ok(read_opt(&path)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    /// Records the id being served.
    pub fn set_current(&self, id_hex: &str) -> Result<(), StateError> {
        write_atomic(&self.root.join("current"), id_hex.as_bytes(), SECRET_MODE)
    }

    /// Writes `status.json`.
    pub fn write_status(&self, status: &Status) -> Result<(), StateError> {
        let path = self.status_path();
        let json = serde_json::to_vec_pretty(status).map_err(|e| StateError::corrupt(&path, e))?;
        write_atomic(&path, &json, 0o644)
    }

    /// Writes `outcome.json`.
    pub fn write_outcome(&self, outcome: &RegistrationOutcome) -> Result<(), StateError> {
        let path = self.root.join("outcome.json");
        let json = serde_json::to_vec_pretty(outcome).map_err(|e| StateError::corrupt(&path, e))?;
        write_atomic(&path, &json, 0o644)
    }

    /// Reads `outcome.json`.
    pub fn read_outcome(&self) -> Result<Option<RegistrationOutcome>, StateError> {
        let path = self.root.join("outcome.json");
        read_opt(&path)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()
    }

    /// Reads `status.json`.
    pub fn read_status(&self) -> Result<Option<Status>, StateError> {
        let path = self.status_path();
        read_opt(&path)?
            .map(|b| Status::parse(&b).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()
    }

    /// The directory of registration `id_hex` (created on first use).
    pub fn registration(&self, id_hex: &str) -> Result<RegistrationDir, StateError> {
        // The id is ours (SHA-256 hex), but never let a stored value walk
        // out of the directory.
        if id_hex.len() != 64 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StateError::corrupt(
                self.root.join("current"),
                format!("{id_hex:?} is not a hex workload id"),
            ));
        }
        let dir = self.root.join("registrations").join(id_hex);
        Ok(RegistrationDir {
            dir,
            id_hex: id_hex.to_owned(),
        })
    }

    /// Every stored registration directory, newest first (by modification
    /// time of its `registration.json`).
    pub fn registrations(&self) -> Result<Vec<RegistrationDir>, StateError> {
        let base = self.root.join("registrations");
        let mut found: Vec<(Option<std::time::SystemTime>, RegistrationDir)> = Vec::new();
        let entries = match fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("listing", &base, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(reg) = self.registration(&name) {
                let mtime = fs::metadata(reg.dir.join("registration.json"))
                    .and_then(|m| m.modified())
                    .ok();
                found.push((mtime, reg));
            }
        }
        found.sort_by_key(|(mtime, _)| core::cmp::Reverse(*mtime));
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }

    /// Removes every registration except `keep` (the current and previous
    /// ones: the previous one still decrypts messages sent before rotation).
    pub fn prune(&self, keep: &[&str]) -> Result<(), StateError> {
        for reg in self.registrations()? {
            if !keep.contains(&reg.id_hex.as_str()) {
                fs::remove_dir_all(&reg.dir)
                    .map_err(|e| StateError::io("removing", &reg.dir, e))?;
            }
        }
        Ok(())
    }
}

impl RegistrationDir {
    /// The hex id.
    pub fn id_hex(&self) -> &str {
        &self.id_hex
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stores fresh key material and the binding request (which carries
    /// no token), before it is sent.
    pub fn store_pending(&self, keys: &Keys, request: &BindingRequest) -> Result<(), Error> {
        ensure_private_dir(&self.dir)?;
        // A leftover record from an earlier attempt would describe other keys.
        let _ = fs::remove_file(self.file("registration.json"));
        let _ = fs::remove_file(self.file("openings.bin"));
        let _ = fs::remove_file(self.file("token"));
        write_atomic(
            &self.file("tls-key.pem"),
            key_to_pem(&keys.tls)?.as_bytes(),
            SECRET_MODE,
        )?;
        write_atomic(
            &self.file("rbe-secret.bin"),
            &keys.rbe.to_bytes(),
            SECRET_MODE,
        )?;
        let json = serde_json::to_vec(request)
            .map_err(|e| StateError::corrupt(self.file("request.json"), e))?;
        write_atomic(&self.file("request.json"), &json, SECRET_MODE)?;
        Ok(())
    }

    /// Stores the token: only once the binding is confirmed as the first in
    /// the witnessed log (the reveal is decided).
    pub fn store_token(&self, token: &str) -> Result<(), StateError> {
        ensure_private_dir(&self.dir)?;
        write_atomic(&self.file("token"), token.as_bytes(), SECRET_MODE)
    }

    /// The stored token.
    pub fn token(&self) -> Result<Option<String>, StateError> {
        Ok(read_opt(&self.file("token"))?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The stored keys, if both exist.
    pub fn keys(&self) -> Result<Option<Keys>, Error> {
        let (Some(tls), Some(rbe)) = (
            read_opt(&self.file("tls-key.pem"))?,
            read_opt(&self.file("rbe-secret.bin"))?,
        ) else {
            return Ok(None);
        };
        let tls = key_from_pem(&String::from_utf8_lossy(&tls))?;
        let rbe = SecretKey::from_bytes(&rbe)
            .map_err(|e| StateError::corrupt(self.file("rbe-secret.bin"), e))?;
        Ok(Some(Keys { tls, rbe }))
    }

    /// The pending binding request, if not yet accepted.
    pub fn pending_request(&self) -> Result<Option<BindingRequest>, StateError> {
        let path = self.file("request.json");
        read_opt(&path)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()
    }

    /// The accepted registration, if any.
    pub fn record(&self) -> Result<Option<RegistrationRecord>, StateError> {
        let path = self.file("registration.json");
        read_opt(&path)?
            .map(|b| RegistrationRecord::parse(&b).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()
    }

    /// Stores the accepted registration and drops the pending request.
    pub fn store_record(&self, record: &RegistrationRecord) -> Result<(), StateError> {
        let path = self.file("registration.json");
        let json = serde_json::to_vec_pretty(record).map_err(|e| StateError::corrupt(&path, e))?;
        write_atomic(&path, &json, SECRET_MODE)?;
        let _ = fs::remove_file(self.file("request.json"));
        Ok(())
    }

    /// The stored opening history.
    pub fn openings(&self) -> Result<Option<OpeningHistory>, StateError> {
        let path = self.file("openings.bin");
        read_opt(&path)?
            .map(|b| OpeningHistory::from_bytes(&b).map_err(|e| StateError::corrupt(&path, e)))
            .transpose()
    }

    /// Stores the opening history.
    pub fn store_openings(&self, history: &OpeningHistory) -> Result<(), StateError> {
        write_atomic(&self.file("openings.bin"), &history.to_bytes(), SECRET_MODE)
    }

    /// Moves the directory aside (`<id>.set-aside-<unix seconds>`, which
    /// no listing or pruning touches) instead of deleting it: its keys are
    /// kept when nothing verified shows the binding ended.
    pub fn set_aside(&self, now_unix: u64) -> Result<PathBuf, StateError> {
        let mut aside = self.dir.clone().into_os_string();
        aside.push(format!(".set-aside-{now_unix}"));
        let aside = PathBuf::from(aside);
        fs::rename(&self.dir, &aside).map_err(|e| StateError::io("moving aside", &self.dir, e))?;
        Ok(aside)
    }

    /// Forgets this registration's files (the witnessed log shows its
    /// binding ended, or bound to another key).
    pub fn remove(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::io("removing", &self.dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_rejects_garbage() {
        let status = Status {
            id: "ab".repeat(32),
            slot: 3,
            spiffe_id: "spiffe://cluster.local/ns/a/sa/b".to_owned(),
            registered_version: 4,
            spki_hash: "cd".repeat(32),
            cert_not_after: 10,
            token_exp: 11,
            curator: "http://127.0.0.1:1".to_owned(),
            updated_at: 9,
            checkpoint_size: Some(4),
            log_index: Some(2),
            first_binds_held: 7,
            checkpoint_refused: Some(CheckpointRefusal {
                kind: "fork".to_owned(),
                reason: "r".to_owned(),
                count: 2,
                since: 8,
                last_at: 9,
                remembered_size: Some(4),
                offered_size: Some(4),
            }),
            registration_refused: None,
        };
        let json = serde_json::to_vec(&status).expect("json");
        assert_eq!(Status::parse(&json).expect("parse"), status);
        assert!(Status::parse(b"{\"id\":1}").is_err());
        // A status.json from before the checkpoint fields still parses.
        let mut old = serde_json::to_value(&status).expect("json");
        for field in ["checkpoint_size", "log_index", "checkpoint_refused"] {
            old.as_object_mut().expect("object").remove(field);
        }
        let parsed = Status::parse(old.to_string().as_bytes()).expect("old status");
        assert_eq!(parsed.checkpoint_size, None);
        assert!(RegistrationRecord::parse(b"[]").is_err());
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path().join("s")).expect("open");
        let mode = fs::metadata(state.root())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, DIR_MODE);
        let path = state.root().join("x");
        write_atomic(&path, b"one", SECRET_MODE).expect("write");
        write_atomic(&path, b"two", SECRET_MODE).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, SECRET_MODE);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(state.root()).expect("ls").count(), 2);
    }

    #[test]
    fn the_token_is_stored_only_once_the_reveal_is_decided() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        let reg = state.registration(&"ab".repeat(32)).expect("dir");
        let mut rng = rand::rngs::OsRng;
        let crs = mazu_rbe::Crs::generate_insecure_dev(4, &mut rng).expect("crs");
        let (request, keys) =
            crate::binding::build_binding(&crs, &[0xab; 32], 1_900_000_000, 1, &mut rng)
                .expect("binding");
        reg.store_pending(&keys, &request).expect("pending");
        // Keys and the binding request (which has no token field) are on
        // disk; the token is not.
        assert!(reg.keys().expect("keys").is_some());
        assert_eq!(
            reg.pending_request().expect("request").map(|r| r.slot),
            Some(1)
        );
        assert_eq!(reg.token().expect("token"), None);
        let stored = fs::read_to_string(reg.path().join("request.json")).expect("request.json");
        assert!(!stored.contains("\"token\":"), "{stored}");
        reg.store_token("a.b.c").expect("store token");
        assert_eq!(reg.token().expect("token").as_deref(), Some("a.b.c"));
        // A new attempt for the same id forgets it again.
        reg.store_pending(&keys, &request).expect("pending");
        assert_eq!(reg.token().expect("token"), None);
        // A request.json from before bind-first (with a token) is refused
        // as a binding request.
        fs::write(
            reg.path().join("request.json"),
            br#"{"token":"a.b.c","slot":1,"registration":{},"tls_spki":"","tls_signature":""}"#,
        )
        .expect("old request");
        assert!(reg.pending_request().is_err());
    }

    #[test]
    fn registration_ids_cannot_escape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        assert!(state.registration("../../etc").is_err());
        assert!(state.registration(&"0".repeat(64)).is_ok());
    }
}
