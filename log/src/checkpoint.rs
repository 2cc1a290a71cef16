//! Checkpoints in the C2SP `tlog-checkpoint` format, signed as C2SP
//! `signed-note`s with Ed25519.
//!
//! A checkpoint body is three lines (plus optional extension lines, signed
//! but not interpreted here):
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, standard base64>\n
//! ```
//!
//! The signed note is the body, an empty line, and one line per signature:
//! `— <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\n`
//! (the dash is U+2014). The key hash is the first 4 bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`; a verifier key is written
//! `<name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>`.
//!
//! [`CheckpointVerifier::verify`] requires a valid signature by its key and
//! that the checkpoint's origin equals the key's name. Signatures by other
//! keys are ignored (cosigners); a signature line that claims this key but
//! does not verify is an error. Every parser here bounds its input
//! ([`MAX_NOTE_LEN`], [`MAX_SIGNATURES`]).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Longest signed note accepted.
pub const MAX_NOTE_LEN: usize = 64 * 1024;

/// Most signature lines accepted on one note.
pub const MAX_SIGNATURES: usize = 100;

/// Most extension lines accepted in a checkpoint body.
pub const MAX_EXTENSIONS: usize = 100;

/// The signature algorithm byte of Ed25519 in C2SP signed notes.
pub const ALG_ED25519: u8 = 0x01;

pub(crate) const DASH: &str = "\u{2014} ";

/// Why a note, a checkpoint or a verifier key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is longer than [`MAX_NOTE_LEN`].
    #[error("note longer than {MAX_NOTE_LEN} bytes")]
    TooLarge,
    /// The note does not have the signed-note shape.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// The checkpoint body is not origin / size / root hash.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// The verifier key string is malformed.
    #[error("malformed verifier key: {0}")]
    MalformedKey(&'static str),
    /// A key or origin name is empty or contains whitespace or '+'.
    #[error(
        "invalid key name or origin (empty, or contains whitespace, '+' or control characters)"
    )]
    InvalidName,
    /// A signature line names this key (name and key hash) but does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    /// No signature by the verifier's key.
    #[error("the note carries no signature by {0}")]
    NotSigned(String),
    /// The checkpoint's origin is not the verifier key's name.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// The origin in the checkpoint.
        found: String,
        /// The key name.
        expected: String,
    },
}

/// Whether `name` is usable as a key name / checkpoint origin: non-empty,
/// printable, no whitespace and no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The 4-byte key hash of a named Ed25519 key.
pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A checkpoint: the log's name, a tree size and the root hash at that size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The Merkle root of the first `size` leaves.
    pub root: Hash,
    /// Extension lines (signed, not interpreted).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text (body) of this checkpoint, ending with a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            Base64::encode_string(&self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the note text, ending with a newline).
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::MalformedCheckpoint;
        let text = text
            .strip_suffix('\n')
            .ok_or(bad("does not end with a newline"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().ok_or(bad("no origin line"))?;
        if !valid_name(origin) {
            return Err(bad("invalid origin line"));
        }
        let size = lines.next().ok_or(bad("no tree size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(
                "tree size is not a decimal number without leading zeros",
            ));
        }
        let size: u64 = size.parse().map_err(|_| bad("tree size out of range"))?;
        let root_b64 = lines.next().ok_or(bad("no root hash line"))?;
        let mut root = [0u8; 32];
        let decoded =
            Base64::decode(root_b64, &mut root).map_err(|_| bad("root hash is not base64"))?;
        if decoded.len() != 32 {
            return Err(bad("root hash is not 32 bytes"));
        }
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(bad("empty extension line"));
            }
            if extensions.len() == MAX_EXTENSIONS {
                return Err(bad("too many extension lines"));
            }
            extensions.push(line.to_string());
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key hash.
    pub key_hash: [u8; 4],
    /// The signature bytes after the key hash.
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl NoteSignature {
    /// Parses one signature line, without its final newline:
    /// `— <name> <base64(key hash (4 bytes) || signature)>` (untrusted
    /// input; the line is bounded by the caller, e.g. [`MAX_NOTE_LEN`]).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let bad = NoteError::Malformed;
        if line.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge);
        }
        if line.chars().any(char::is_control) {
            return Err(bad("control characters"));
        }
        let rest = line
            .strip_prefix(DASH)
            .ok_or(bad("signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(bad("signature line has no name"))?;
        if !valid_name(name) {
            return Err(NoteError::InvalidName);
        }
        let raw = Base64::decode_vec(b64).map_err(|_| bad("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature too short"));
        }
        Ok(Self {
            name: name.to_string(),
            key_hash: [raw[0], raw[1], raw[2], raw[3]],
            signature: raw[4..].to_vec(),
        })
    }

    /// The signature line, ending with a newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_hash);
        raw.extend_from_slice(&self.signature);
        format!("{DASH}{} {}\n", self.name, Base64::encode_string(&raw))
    }
}

impl Note {
    /// Parses a signed note (untrusted bytes; bounded).
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge);
        }
        let bad = NoteError::Malformed;
        let s = core::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("control characters"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or(bad("no blank line before the signatures"))?;
        let text = &s[..=split];
        let sigs = &s[split + 2..];
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(bad("signatures do not end with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        if signatures.is_empty() {
            return Err(bad("no signatures"));
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }
}

/// Signs checkpoints with an Ed25519 key under a name (the log's origin).
///
/// The key only signs checkpoints of the curator's own log: it grants no
/// identity power (nothing in Mazu accepts a workload because of it).
pub struct CheckpointSigner {
    name: String,
    key: SigningKey,
}

impl core::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .field("public_key", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte Ed25519 secret key (seed).
    pub fn new(name: &str, secret: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::InvalidName);
        }
        Ok(Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(secret),
        })
    }

    /// The key name (= the checkpoints' origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs a checkpoint of `size` and `root` and returns the signed note.
    pub fn sign(&self, size: u64, root: &Hash) -> String {
        self.sign_with_extensions(size, root, Vec::new())
    }

    /// Signs a checkpoint of `size` and `root` whose body carries
    /// `extensions` (lines without newlines, e.g. the state line of
    /// [`crate::evidence::state_extension`]) and returns the signed note.
    pub fn sign_with_extensions(&self, size: u64, root: &Hash, extensions: Vec<String>) -> String {
        let cp = Checkpoint {
            origin: self.name.clone(),
            size,
            root: *root,
            extensions,
        };
        let text = cp.body();
        let sig = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&key_hash(&self.name, self.key.verifying_key().as_bytes()));
        raw.extend_from_slice(&sig.to_bytes());
        format!(
            "{text}\n{DASH}{} {}\n",
            self.name,
            Base64::encode_string(&raw)
        )
    }
}

/// Verifies checkpoints signed by one named Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointVerifier {
    name: String,
    key: VerifyingKey,
}

impl CheckpointVerifier {
    /// Parses a verifier key `<name>+<hash hex>+<base64(0x01 || key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = NoteError::MalformedKey;
        let vkey = vkey.trim_end_matches('\n');
        // The key's base64 may itself contain '+': split at the first two.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not NAME+HASH+KEY"));
        };
        if !valid_name(name) {
            return Err(NoteError::InvalidName);
        }
        let raw = Base64::decode_vec(key_b64).map_err(|_| bad("key is not base64"))?;
        let (&alg, key) = raw.split_first().ok_or(bad("empty key"))?;
        if alg != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let key: [u8; 32] = key.try_into().map_err(|_| bad("key is not 32 bytes"))?;
        let hash = key_hash(name, &key);
        let want: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        if hash_hex != want {
            return Err(bad("key hash does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(bad("weak (small-order) Ed25519 key"));
        }
        Ok(Self {
            name: name.to_string(),
            key,
        })
    }

    /// The key name (= the expected origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        let hash = key_hash(&self.name, self.key.as_bytes());
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{hex}+{}", self.name, Base64::encode_string(&raw))
    }

    /// Verifies a signed checkpoint note and returns the checkpoint.
    pub fn verify(&self, note: &[u8]) -> Result<Checkpoint, NoteError> {
        let note = Note::parse(note)?;
        let hash = key_hash(&self.name, self.key.as_bytes());
        let mut signed = false;
        for s in &note.signatures {
            if s.name != self.name || s.key_hash != hash {
                continue; // another signer (e.g. a witness)
            }
            let sig = Signature::from_slice(&s.signature)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            self.key
                .verify_strict(note.text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            signed = true;
        }
        if !signed {
            return Err(NoteError::NotSigned(self.name.clone()));
        }
        let cp = Checkpoint::parse_body(&note.text)?;
        if cp.origin != self.name {
            return Err(NoteError::WrongOrigin {
                found: cp.origin,
                expected: self.name.clone(),
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn signer(name: &str, seed: u8) -> CheckpointSigner {
        CheckpointSigner::new(name, &[seed; 32]).unwrap()
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let s = signer("example.com/log", 7);
        let note = s.sign(42, &[9; 32]);
        let v = CheckpointVerifier::parse(&s.verifier().to_vkey()).unwrap();
        let cp = v.verify(note.as_bytes()).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size, cp.root),
            ("example.com/log", 42, [9; 32])
        );
        assert!(note.starts_with("example.com/log\n42\nCQkJ"));
        assert!(note.contains("\n\n\u{2014} example.com/log "));
    }

    /// The format as in the C2SP signed-note spec's Go reference: the key
    /// hash and the verifier-key string are derived as documented.
    #[test]
    fn verifier_key_format() {
        let s = signer("PeterNeumann", 1);
        let vkey = s.verifier().to_vkey();
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts[0], "PeterNeumann");
        assert_eq!(parts[1].len(), 8);
        let raw = Base64::decode_vec(parts[2]).unwrap();
        assert_eq!(raw.len(), 33);
        assert_eq!(raw[0], 1);
        assert!(CheckpointVerifier::parse(&vkey.replacen("+", "+0", 1)).is_err());
        // Keys whose base64 contains '+' parse (only the first two '+' split).
        let mut seen_plus = false;
        for seed in 0..64u8 {
            let vk = signer("n", seed).verifier().to_vkey();
            seen_plus |= vk.matches('+').count() > 2;
            assert_eq!(CheckpointVerifier::parse(&vk).unwrap().to_vkey(), vk);
        }
        assert!(seen_plus);
    }

    #[test]
    fn tampered_notes_are_refused() {
        let s = signer("log", 7);
        let v = s.verifier();
        let note = s.sign(42, &[9; 32]);
        // Another size in the text.
        let t = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            v.verify(t.as_bytes()),
            Err(NoteError::BadSignature("log".into()))
        );
        // Another root.
        let t = note.replacen("CQkJ", "CQkK", 1);
        assert!(v.verify(t.as_bytes()).is_err());
        // Signed by another key of the same name: not our key hash.
        let other = signer("log", 8).sign(42, &[9; 32]);
        assert_eq!(
            v.verify(other.as_bytes()),
            Err(NoteError::NotSigned("log".into()))
        );
        // A flipped signature byte.
        let line_start = note.rfind('\u{2014}').unwrap();
        let mut bytes = note.clone().into_bytes();
        let i = bytes.len() - 10;
        assert!(i > line_start);
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(v.verify(&bytes).is_err());
        // Another origin under the right key name is impossible to sign
        // without the key; a checkpoint of another origin signed by this key
        // is refused.
        let foreign = CheckpointSigner {
            name: "log".into(),
            key: SigningKey::from_bytes(&[7; 32]),
        };
        let mut cp_text = Checkpoint {
            origin: "other".into(),
            size: 1,
            root: [0; 32],
            extensions: Vec::new(),
        }
        .body();
        let sig = foreign.key.sign(cp_text.as_bytes());
        let mut raw = key_hash("log", foreign.key.verifying_key().as_bytes()).to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        cp_text.push_str(&format!("\n\u{2014} log {}\n", Base64::encode_string(&raw)));
        assert!(matches!(
            v.verify(cp_text.as_bytes()),
            Err(NoteError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn cosignatures_are_ignored() {
        let s = signer("log", 7);
        let mut note = s.sign(3, &[1; 32]);
        note.push_str(&format!(
            "\u{2014} witness {}\n",
            Base64::encode_string(&[0u8; 68])
        ));
        assert_eq!(s.verifier().verify(note.as_bytes()).unwrap().size, 3);
    }

    #[test]
    fn malformed_inputs() {
        let v = signer("log", 7).verifier();
        for bad in [
            "",
            "log\n1\n",
            "log\n1\nAAAA\n\n",
            "log\n1\nAAAA\n\n\u{2014} log\n",
            "log\n1\nAAAA\n\n- log AAAA\n",
            "log\n1\nAAAA\n\n\u{2014} log !!!!\n",
            "log\n1\nAAAA\n\n\u{2014} log AAAAAAAA",
            "log\r\n1\nAAAA\n\n\u{2014} log AAAAAAAA\n",
        ] {
            assert!(v.verify(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            v.verify(&vec![b'a'; MAX_NOTE_LEN + 1]),
            Err(NoteError::TooLarge)
        );
        for body in [
            "log\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "log\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "log\n99999999999999999999999\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "log\n1\nAAAA\n",
            "log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
            "lo g\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        ] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
        let ok = Checkpoint::parse_body(
            "log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next one\n",
        )
        .unwrap();
        assert_eq!(ok.extensions, vec!["ext one".to_string()]);
        for key in ["", "a+b", "log+00000000+AQ==", "log+zz+AAAA", "a b+00+AA"] {
            assert!(CheckpointVerifier::parse(key).is_err(), "{key:?}");
        }
        assert!(CheckpointSigner::new("has space", &[1; 32]).is_err());
    }
}
