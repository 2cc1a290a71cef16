//! The workload's projected service-account token: reading it, its id, and
//! noticing when the kubelet replaces it.
//!
//! The kubelet rewrites a projected token by writing a new timestamped
//! directory and atomically swapping the `..data` symlink, so the token's path
//! never holds a half-written file but its inode changes. Watching inodes or
//! directory events is fragile across that swap; the agent instead re-reads
//! the path every poll interval and compares a hash of the content, which is
//! cheap (a token is ~1 KB) and sees every replacement however it was made.

use std::path::{Path, PathBuf};

use mazu_identity::jwt::{DEFAULT_MAX_TOKEN_LEN, parse_claims_unverified};
use sha2::{Digest, Sha256};

use crate::error::TokenError;

/// A token as read from the file, with the facts the agent needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The compact JWT. Surrounding ASCII whitespace (a trailing newline
    /// written by hand or by a test) is removed: a JWT never contains
    /// whitespace, and the curator hashes exactly the string it is sent.
    pub jwt: String,
    /// The workload id, SHA-256 of `jwt`.
    pub id: [u8; 32],
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// The namespace claim.
    pub namespace: String,
    /// The service-account claim.
    pub service_account: String,
}

impl core::fmt::Debug for Token {
    // The token is a bearer credential: never print it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Token")
            .field("id", &hex::encode(self.id))
            .field("expires_at", &self.expires_at)
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Parses token bytes as read from `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Token, TokenError> {
        let text = core::str::from_utf8(bytes).map_err(|_| TokenError::Malformed {
            path: path.to_owned(),
            reason: "not UTF-8".to_owned(),
        })?;
        let jwt = text.trim_ascii();
        if jwt.is_empty() {
            return Err(TokenError::Empty(path.to_owned()));
        }
        let claims =
            parse_claims_unverified(jwt.as_bytes(), DEFAULT_MAX_TOKEN_LEN).map_err(|e| {
                TokenError::Malformed {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        Ok(Token {
            jwt: jwt.to_owned(),
            id: Sha256::digest(jwt.as_bytes()).into(),
            expires_at: claims.expires_at,
            namespace: claims.kubernetes.namespace,
            service_account: claims.kubernetes.service_account.name,
        })
    }

    /// Reads and parses the token at `path`.
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let bytes = read_bytes(path)?;
        Token::parse(path, &bytes)
    }

    /// The id as lowercase hex (the curator's form).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TokenError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TokenError::Missing(path.to_owned())
        } else {
            TokenError::Unreadable {
                path: path.to_owned(),
                error: e,
            }
        }
    })
}

/// What one poll of the token file found.
#[derive(Debug)]
pub enum TokenEvent {
    /// Same content as last time.
    Unchanged,
    /// New content (or the first read) that parses.
    Changed(Token),
    /// The file cannot be read or does not parse; `first` is true the first
    /// time this exact failure is seen (so it is logged once, not every poll).
    Unusable {
        /// The failure.
        error: TokenError,
        /// Whether it differs from the previous poll's outcome.
        first: bool,
    },
}

/// Polls a token file and reports content changes.
#[derive(Debug)]
pub struct TokenWatcher {
    path: PathBuf,
    last: Option<[u8; 32]>,
    last_error: Option<String>,
}

/// Whether content hashing to `current` is a change from `previous`: pure,
/// so the decision is unit-tested apart from the file system.
pub fn is_change(previous: Option<&[u8; 32]>, current: &[u8; 32]) -> bool {
    previous != Some(current)
}

impl TokenWatcher {
    /// Watches `path`; the first [`poll`](Self::poll) reports the content as
    /// changed.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenWatcher {
            path: path.into(),
            last: None,
            last_error: None,
        }
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file once.
    pub fn poll(&mut self) -> TokenEvent {
        let result = read_bytes(&self.path).and_then(|bytes| {
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if !is_change(self.last.as_ref(), &hash) {
                return Ok(None);
            }
            let token = Token::parse(&self.path, &bytes)?;
            self.last = Some(hash);
            Ok(Some(token))
        });
        match result {
            Ok(None) => TokenEvent::Unchanged,
            Ok(Some(token)) => {
                self.last_error = None;
                TokenEvent::Changed(token)
            }
            Err(error) => {
                let text = error.to_string();
                let first = self.last_error.as_deref() != Some(text.as_str());
                self.last_error = Some(text);
                // Forget the last good content so that the same token coming
                // back after a failure is reported again.
                self.last = None;
                TokenEvent::Unusable { error, first }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_detection_is_by_content() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert!(is_change(None, &a));
        assert!(!is_change(Some(&a), &a));
        assert!(is_change(Some(&a), &b));
    }

    #[test]
    fn garbage_is_malformed_and_empty_is_empty() {
        let p = Path::new("/t");
        assert!(matches!(
            Token::parse(p, b"  \n"),
            Err(TokenError::Empty(_))
        ));
        assert!(matches!(
            Token::parse(p, b"not.a.jwt"),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn watcher_reports_missing_then_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let mut w = TokenWatcher::new(&path);
        assert!(matches!(
            w.poll(),
            TokenEvent::Unusable {
                error: TokenError::Missing(_),
                first: true
            }
        ));
        assert!(matches!(
            w.poll(),
            TokenEvent::Unusable { first: false, .. }
        ));
        std::fs::write(&path, "garbage").expect("write");
        assert!(matches!(w.poll(), TokenEvent::Unusable { first: true, .. }));
    }
}
