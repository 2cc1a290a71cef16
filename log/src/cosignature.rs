//! Witness cosignatures in the C2SP `tlog-cosignature` format (v1,
//! Ed25519), and the quorum policy that the data plane applies to them.
//!
//! A cosignature is one more signature line on a checkpoint's signed note:
//!
//! ```text
//! — <witness name> base64(key ID (4) || timestamp (8, big-endian) || Ed25519 signature (64))
//! ```
//!
//! - the **key ID** is the first 4 bytes of
//!   `SHA-256(name || "\n" || 0x04 || public key)` ([`cosignature_key_id`]);
//!   `0x04` is the cosignature/v1 algorithm byte, so a witness key never
//!   collides with a log key (`0x01`, see [`crate::checkpoint`]);
//! - the **timestamp** is the POSIX time (seconds) at which the witness
//!   signed, at most `2^63 - 1`;
//! - the **signed message** ([`signed_message`]) is
//!   `cosignature/v1\ntime <timestamp>\n` followed by the whole checkpoint
//!   body (the note text, extension lines included, with its final newline).
//!
//! Its meaning (the spec's words): *as of the timestamp, the consistent tree
//! head with the largest size the witness has observed for this origin has
//! this root hash.* A witness cosigns a checkpoint only if it is consistent
//! with every checkpoint of that log it cosigned before (C2SP
//! `tlog-witness`, the `mazu-witness` service).
//!
//! A witness's verifier key is written `<name>+<key ID, 8 hex>+<base64(0x04
//! || public key)>` ([`WitnessVerifier::parse`], [`WitnessVerifier::to_vkey`]).
//!
//! ## Quorum and freshness
//!
//! [`WitnessPolicy::check`] counts the **distinct** configured witnesses with a
//! valid cosignature on a note (several lines of one witness count once;
//! lines of unknown keys are ignored; a line that claims a configured
//! witness's name and key ID but does not verify is an error, as in
//! [`crate::checkpoint::CheckpointVerifier`]). At least `quorum` of them are
//! required.
//!
//! The note's **witnessed time** ([`Witnessed::timestamp`]) is the
//! `quorum`-th newest of the per-witness timestamps (each witness's newest
//! valid cosignature). So `quorum` distinct witnesses each stated, at that
//! time or later, that this checkpoint was the largest they had seen: as
//! long as fewer than `quorum` witnesses lie, at least one honest witness
//! vouches for the checkpoint at that time. A minority (up to `quorum - 1`
//! witnesses, e.g. colluding with the curator, or with a fast clock) cannot
//! make a stale checkpoint look fresh; taking the newest timestamp instead
//! would let a single witness do that. Freshness is then
//! `now - timestamp <= max age` ([`Witnessed::is_fresh`]), measured by the
//! caller's clock (this crate reads none). Timestamps in the future are not
//! refused here (no clock): a minority cannot move the witnessed time.
//!
//! ```
//! use mazu_log::checkpoint::CheckpointSigner;
//! use mazu_log::cosignature::{CosignatureSigner, WitnessPolicy, append_cosignatures};
//!
//! let log = CheckpointSigner::new("example.org/log", &[1; 32])?;
//! let note = log.sign(5, &[7; 32]);
//! let checkpoint = log.verifier().verify(note.as_bytes())?;
//!
//! let w1 = CosignatureSigner::new("witness.example/w1", &[2; 32])?;
//! let w2 = CosignatureSigner::new("witness.example/w2", &[3; 32])?;
//! let lines = [
//!     w1.cosign(&checkpoint, 1_700_000_100)?,
//!     w2.cosign(&checkpoint, 1_700_000_000)?,
//! ];
//! let cosigned = append_cosignatures(&note, &lines)?;
//!
//! let policy = WitnessPolicy::new(vec![w1.verifier(), w2.verifier()], 2)?;
//! let (cp, witnessed) = policy.verify(&log.verifier(), cosigned.as_bytes())?;
//! assert_eq!(cp.size, 5);
//! assert_eq!(witnessed.cosigners.len(), 2);
//! // The 2nd newest of the two timestamps.
//! assert_eq!(witnessed.timestamp, 1_700_000_000);
//! assert!(witnessed.is_fresh(1_700_000_060, 300));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{
    Checkpoint, CheckpointVerifier, MAX_NOTE_LEN, MAX_SIGNATURES, Note, NoteError, NoteSignature,
    valid_name,
};

/// The signature algorithm byte of Ed25519 cosignature/v1 keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The first line of the message a cosignature/v1 signs (domain separation).
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";

/// The largest timestamp a cosignature may carry (`2^63 - 1`).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The most witnesses a [`WitnessPolicy`] may list (a note carries at most
/// [`MAX_SIGNATURES`] signature lines anyway).
pub const MAX_WITNESSES: usize = MAX_SIGNATURES;

/// Length of the signature bytes after the key ID: timestamp and Ed25519
/// signature.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature, a witness key or a quorum was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The note, a signature line or the checkpoint is malformed, or the
    /// log's own signature does not verify ([`WitnessPolicy::verify`]).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// A witness name is empty or contains whitespace, '+' or control
    /// characters.
    #[error("invalid witness name (empty, or contains whitespace, '+' or control characters)")]
    InvalidName,
    /// The witness verifier key string is malformed.
    #[error("malformed witness verifier key: {0}")]
    MalformedKey(&'static str),
    /// A timestamp above [`MAX_TIMESTAMP`].
    #[error("cosignature timestamp {0} exceeds 2^63 - 1")]
    TimestampOutOfRange(u64),
    /// A signature line names a configured witness (name and key ID) but
    /// does not verify (wrong length, timestamp out of range, or a bad
    /// Ed25519 signature).
    #[error("the cosignature by witness {0} does not verify")]
    BadCosignature(String),
    /// Fewer distinct configured witnesses cosigned than the quorum.
    #[error("{found} of the required {quorum} witnesses cosigned the checkpoint")]
    BelowQuorum {
        /// Distinct configured witnesses with a valid cosignature.
        found: usize,
        /// The policy's quorum.
        quorum: usize,
    },
    /// The policy itself is unusable.
    #[error("invalid witness policy: {0}")]
    InvalidPolicy(&'static str),
    /// Merging signature lines would exceed the note limits.
    #[error("the cosigned note would exceed {MAX_NOTE_LEN} bytes or {MAX_SIGNATURES} signatures")]
    TooManySignatures,
}

/// The 4-byte key ID of a named cosignature/v1 (Ed25519) witness key:
/// `SHA-256(name || "\n" || 0x04 || public key)[..4]`.
pub fn cosignature_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The message a cosignature/v1 signs: `cosignature/v1\ntime <timestamp>\n`
/// followed by the checkpoint body (the note text, ending with a newline).
pub fn signed_message(timestamp: u64, body: &str) -> String {
    format!("{COSIGNATURE_V1_HEADER}\ntime {timestamp}\n{body}")
}

/// Makes cosignature/v1 lines with an Ed25519 witness key.
pub struct CosignatureSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl core::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("public_key", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A signer named `name` (the witness name, e.g. `witness.example/w1`)
    /// from a 32-byte Ed25519 secret key (seed).
    pub fn new(name: &str, secret: &[u8; 32]) -> Result<Self, CosignatureError> {
        if !valid_name(name) {
            return Err(CosignatureError::InvalidName);
        }
        let key = SigningKey::from_bytes(secret);
        let key_id = cosignature_key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> WitnessVerifier {
        WitnessVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// Cosigns `checkpoint` as of `timestamp` (POSIX seconds) and returns
    /// the signature line, `— <name> <base64>\n`, ready to append to the
    /// checkpoint's note ([`append_cosignatures`]).
    ///
    /// The signed body is [`Checkpoint::body`]: a note whose text is not
    /// exactly that (it always is for a checkpoint this crate parsed from a
    /// canonical note) would not carry a valid cosignature.
    pub fn cosign(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<String, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        let message = signed_message(timestamp, &checkpoint.body());
        let sig = self.key.sign(message.as_bytes());
        let mut signature = Vec::with_capacity(TIMESTAMPED_SIGNATURE_LEN);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_hash: self.key_id,
            signature,
        }
        .to_line())
    }
}

/// Verifies the cosignatures of one named witness key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessVerifier {
    name: String,
    key: VerifyingKey,
    key_id: [u8; 4],
}

impl WitnessVerifier {
    /// A verifier from the witness name and its Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: &[u8; 32]) -> Result<Self, CosignatureError> {
        if !valid_name(name) {
            return Err(CosignatureError::InvalidName);
        }
        let bad = CosignatureError::MalformedKey;
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| bad("not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(bad("weak (small-order) Ed25519 key"));
        }
        Ok(Self {
            name: name.to_string(),
            key_id: cosignature_key_id(name, public_key),
            key,
        })
    }

    /// Parses a witness verifier key `<name>+<key ID hex>+<base64(0x04 ||
    /// public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, CosignatureError> {
        let bad = CosignatureError::MalformedKey;
        if vkey.len() > 2048 {
            return Err(bad("too long"));
        }
        let vkey = vkey.trim_end_matches('\n');
        // The key's base64 may itself contain '+': split at the first two.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not NAME+KEYID+KEY"));
        };
        if !valid_name(name) {
            return Err(CosignatureError::InvalidName);
        }
        let raw = Base64::decode_vec(key_b64).map_err(|_| bad("key is not base64"))?;
        let (&alg, key) = raw.split_first().ok_or(bad("empty key"))?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(bad(
                "not a cosignature/v1 (0x04) Ed25519 key (a log key is 0x01)",
            ));
        }
        let key: [u8; 32] = key.try_into().map_err(|_| bad("key is not 32 bytes"))?;
        let verifier = Self::from_public_key(name, &key)?;
        if id_hex != hex8(&verifier.key_id) {
            return Err(bad("key ID does not match the name and key"));
        }
        Ok(verifier)
    }

    /// The witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex8(&self.key_id),
            Base64::encode_string(&raw)
        )
    }

    /// Whether a signature line names this witness (name and key ID).
    pub fn claims(&self, signature: &NoteSignature) -> bool {
        signature.name == self.name && signature.key_hash == self.key_id
    }

    /// Checks one signature line against the checkpoint body `text` (the
    /// note text, ending with a newline): `Ok(None)` if the line is not this
    /// witness's (another name or key ID), `Ok(Some(timestamp))` if it is a
    /// valid cosignature, and [`CosignatureError::BadCosignature`] if it
    /// claims this witness but does not verify.
    pub fn verify_signature(
        &self,
        text: &str,
        signature: &NoteSignature,
    ) -> Result<Option<u64>, CosignatureError> {
        if !self.claims(signature) {
            return Ok(None);
        }
        let bad = || CosignatureError::BadCosignature(self.name.clone());
        if signature.signature.len() != TIMESTAMPED_SIGNATURE_LEN {
            return Err(bad());
        }
        let (ts, sig) = signature.signature.split_at(8);
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad())?;
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > MAX_TIMESTAMP {
            return Err(bad());
        }
        let sig = Signature::from_slice(sig).map_err(|_| bad())?;
        self.key
            .verify_strict(signed_message(timestamp, text).as_bytes(), &sig)
            .map_err(|_| bad())?;
        Ok(Some(timestamp))
    }

    /// Checks one signature line (`— <name> <base64>`, with or without its
    /// final newline), e.g. from a witness's `add-checkpoint` answer,
    /// against the checkpoint body `text`; see [`Self::verify_signature`].
    pub fn verify_line(&self, text: &str, line: &str) -> Result<Option<u64>, CosignatureError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        self.verify_signature(text, &NoteSignature::parse_line(line)?)
    }

    /// The newest valid cosignature timestamp of this witness on a signed
    /// note, or `None` if the note carries none.
    pub fn verify_note(&self, note: &[u8]) -> Result<Option<u64>, CosignatureError> {
        let note = Note::parse(note)?;
        let mut newest = None;
        for s in &note.signatures {
            if let Some(t) = self.verify_signature(&note.text, s)? {
                newest = newest.max(Some(t));
            }
        }
        Ok(newest)
    }
}

fn hex8(bytes: &[u8; 4]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One witness's valid cosignature on a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessCosignature {
    /// The witness name.
    pub name: String,
    /// Its index in [`WitnessPolicy::witnesses`].
    pub index: usize,
    /// The newest timestamp among this witness's valid cosignatures on the
    /// note.
    pub timestamp: u64,
}

/// What a note's cosignatures establish under a [`WitnessPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// Every configured witness with a valid cosignature (each once), in
    /// policy order.
    pub cosigners: Vec<WitnessCosignature>,
    /// The witnessed time: the `quorum`-th newest of the cosigners'
    /// timestamps (see the [module docs](self)).
    pub timestamp: u64,
}

impl Witnessed {
    /// Whether the witnessed time is at most `max_age` seconds before `now`
    /// (POSIX seconds; a witnessed time after `now` counts as fresh).
    pub fn is_fresh(&self, now: u64, max_age: u64) -> bool {
        now.saturating_sub(self.timestamp) <= max_age
    }
}

/// A quorum policy over known witnesses: which witnesses count, and how many
/// distinct ones must have cosigned a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    /// The known witnesses (distinct names and distinct public keys).
    pub witnesses: Vec<WitnessVerifier>,
    /// How many distinct witnesses must cosign (at least 1, at most the
    /// number of witnesses).
    pub quorum: usize,
}

impl WitnessPolicy {
    /// A policy, validated (see [`Self::validate`]).
    pub fn new(witnesses: Vec<WitnessVerifier>, quorum: usize) -> Result<Self, CosignatureError> {
        let policy = Self { witnesses, quorum };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the policy: `1 <= quorum <= witnesses`, at most
    /// [`MAX_WITNESSES`] witnesses, no two with the same name or the same
    /// public key (one key must not count twice toward the quorum).
    pub fn validate(&self) -> Result<(), CosignatureError> {
        let bad = CosignatureError::InvalidPolicy;
        if self.quorum == 0 {
            return Err(bad("the quorum must be at least 1"));
        }
        if self.quorum > self.witnesses.len() {
            return Err(bad("the quorum exceeds the number of witnesses"));
        }
        if self.witnesses.len() > MAX_WITNESSES {
            return Err(bad("too many witnesses"));
        }
        for (i, a) in self.witnesses.iter().enumerate() {
            for b in &self.witnesses[..i] {
                if a.name == b.name {
                    return Err(bad("two witnesses have the same name"));
                }
                if a.key == b.key {
                    return Err(bad("two witnesses have the same public key"));
                }
            }
        }
        Ok(())
    }

    /// Checks the cosignatures on a signed checkpoint note whose log
    /// signature the caller already verified (e.g. with
    /// [`CheckpointVerifier::verify`]; [`Self::verify`] does both).
    ///
    /// Lines of unknown keys are ignored; a line that claims a configured
    /// witness (name and key ID) but does not verify is an error; several
    /// valid lines of one witness count once (with the newest timestamp).
    /// Fails with [`CosignatureError::BelowQuorum`] if fewer than `quorum`
    /// distinct witnesses cosigned; otherwise returns them and the witnessed
    /// time (the `quorum`-th newest of their timestamps).
    pub fn check(&self, note: &[u8]) -> Result<Witnessed, CosignatureError> {
        self.validate()?;
        let note = Note::parse(note)?;
        let mut newest: Vec<Option<u64>> = alloc::vec![None; self.witnesses.len()];
        for s in &note.signatures {
            for (i, w) in self.witnesses.iter().enumerate() {
                if let Some(t) = w.verify_signature(&note.text, s)? {
                    newest[i] = newest[i].max(Some(t));
                }
            }
        }
        let cosigners: Vec<WitnessCosignature> = newest
            .iter()
            .enumerate()
            .filter_map(|(index, t)| {
                t.map(|timestamp| WitnessCosignature {
                    name: self.witnesses[index].name.clone(),
                    index,
                    timestamp,
                })
            })
            .collect();
        if cosigners.len() < self.quorum {
            return Err(CosignatureError::BelowQuorum {
                found: cosigners.len(),
                quorum: self.quorum,
            });
        }
        let mut times: Vec<u64> = cosigners.iter().map(|c| c.timestamp).collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        let timestamp = times[self.quorum - 1];
        Ok(Witnessed {
            cosigners,
            timestamp,
        })
    }

    /// Verifies the log's signature with `log` and then the cosignatures
    /// ([`Self::check`]); returns the checkpoint and what the witnesses
    /// establish.
    pub fn verify(
        &self,
        log: &CheckpointVerifier,
        note: &[u8],
    ) -> Result<(Checkpoint, Witnessed), CosignatureError> {
        let checkpoint = log.verify(note)?;
        let witnessed = self.check(note)?;
        Ok((checkpoint, witnessed))
    }
}

/// Appends signature lines (e.g. the cosignatures from witnesses'
/// `add-checkpoint` answers, [`crate::witness_protocol`]) to a signed note
/// and returns the merged note.
///
/// Each line is `— <name> <base64>`, with or without its final newline.
/// Lines already on the note are not repeated. The note text is unchanged,
/// so the log's signature still verifies; this function does **not** verify
/// the new lines: check each witness's answer with
/// [`WitnessVerifier::verify_line`] before merging it (a line that claims a
/// configured witness but does not verify makes [`WitnessPolicy::check`]
/// refuse the whole note). Fails if the result would exceed
/// [`MAX_NOTE_LEN`] or [`MAX_SIGNATURES`].
pub fn append_cosignatures<S: AsRef<str>>(
    note: &str,
    lines: &[S],
) -> Result<String, CosignatureError> {
    let parsed = Note::parse(note.as_bytes())?;
    let mut present: Vec<NoteSignature> = parsed.signatures;
    let mut out = String::from(note);
    for line in lines {
        let line = line.as_ref();
        let line = line.strip_suffix('\n').unwrap_or(line);
        let sig = NoteSignature::parse_line(line)?;
        if present.contains(&sig) {
            continue;
        }
        if present.len() == MAX_SIGNATURES {
            return Err(CosignatureError::TooManySignatures);
        }
        out.push_str(&sig.to_line());
        if out.len() > MAX_NOTE_LEN {
            return Err(CosignatureError::TooManySignatures);
        }
        present.push(sig);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
