//! Error types: one crate-wide [`Error`] wrapping a typed enum per operation.
//!
//! Functions return the narrow enum for what they do (a decoder returns
//! [`DecodeError`], registration verification returns [`RegistrationError`], ...);
//! `From` impls let callers funnel everything into [`Error`] with `?`.

use core::fmt;

/// Which group a point belongs to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Group {
    /// The source group G1 (48-byte compressed points).
    G1,
    /// The source group G2 (96-byte compressed points).
    G2,
    /// The target group Gt (576-byte elements).
    Gt,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::G1 => "G1",
            Group::G2 => "G2",
            Group::Gt => "Gt",
        })
    }
}

/// Any error this crate returns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes (binary or JSON) did not decode to a valid value.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// CRS generation, update or verification failed.
    #[error(transparent)]
    Crs(#[from] CrsError),
    /// Key generation failed.
    #[error(transparent)]
    KeyGen(#[from] KeyGenError),
    /// A registration was rejected.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// Replaying a registration log failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A release was rejected.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// Replaying a sequence of registrations and releases failed.
    #[error(transparent)]
    ReplayOperations(#[from] OperationsReplayError),
    /// A state image was refused.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// An opening could not be updated.
    #[error(transparent)]
    Opening(#[from] OpeningError),
    /// A membership or non-membership proof did not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Encryption failed.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    /// Decryption failed.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
}

/// Why bytes did not decode. Decoders never panic and never allocate more than
/// the input's own length justifies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input truncated: {needed} more bytes needed for {field}")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// Bytes were left after a complete value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// Number of unexpected bytes.
        count: usize,
    },
    /// The 4-byte type tag is not the one for this type.
    #[error("wrong magic: expected {expected:?}, found {found:?}")]
    BadMagic {
        /// The tag this type uses.
        expected: [u8; 4],
        /// The tag found.
        found: [u8; 4],
    },
    /// The format version byte is not one this code reads.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Not the canonical compressed encoding of a point of the prime-order
    /// subgroup (bad flag bits, x not canonical, not on the curve, or not in the
    /// subgroup; the library's checked decoder does not say which).
    #[error(
        "{field}: invalid {group} point encoding (malformed, off the curve or outside the prime-order subgroup)"
    )]
    InvalidPoint {
        /// Which field.
        field: &'static str,
        /// Which group.
        group: Group,
    },
    /// A well-formed Fp12 element that is not in the order-r subgroup Gt.
    #[error("{field}: Fp12 element is not in the prime-order subgroup Gt")]
    NotInSubgroup {
        /// Which field.
        field: &'static str,
    },
    /// The identity element where it is never valid.
    #[error("{field}: identity element not allowed")]
    IdentityPoint {
        /// Which field.
        field: &'static str,
    },
    /// A scalar that is not the canonical (reduced) big-endian encoding.
    #[error("{field}: scalar is not canonical (not below the group order)")]
    NonCanonicalScalar {
        /// Which field.
        field: &'static str,
    },
    /// A zero scalar where it is never valid (a secret key).
    #[error("{field}: zero scalar not allowed")]
    ZeroScalar {
        /// Which field.
        field: &'static str,
    },
    /// A length or count outside what the format allows.
    #[error("{field}: length {value} out of range")]
    LengthOutOfRange {
        /// Which field.
        field: &'static str,
        /// The length or count found.
        value: u64,
    },
    /// Fields that are each valid but inconsistent with each other (for example
    /// a block size that does not match the capacity).
    #[error("inconsistent value: {0}")]
    Inconsistent(&'static str),
    /// A JSON string field was not valid standard padded base64 or had the wrong
    /// decoded length.
    #[error("{field}: invalid base64 or wrong decoded length")]
    Base64 {
        /// Which field.
        field: &'static str,
    },
}

/// CRS generation, update or verification failures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrsError {
    /// The capacity is outside [`crate::MIN_CAPACITY`] ..= [`crate::MAX_CAPACITY`].
    #[error("capacity {0} out of range")]
    CapacityOutOfRange(u64),
    /// The number of G1 or G2 elements does not match the block size.
    #[error("{group} element count {found}, expected {expected}")]
    WrongLength {
        /// Which list.
        group: Group,
        /// The count required by the block size.
        expected: usize,
        /// The count present.
        found: usize,
    },
    /// An element is the identity (the exponent would be zero).
    #[error("{group} element for power {power} is the identity")]
    IdentityElement {
        /// Which list.
        group: Group,
        /// The exponent t of the element z^t.
        power: u32,
    },
    /// `h_1` is the generator itself, i.e. `z = 1`, which publishes `z^(n+1)`.
    #[error("h_1 is the generator: z = 1 would publish the punctured power")]
    TrivialSecret,
    /// The secret is a root of unity of small order: `z^power = value` with
    /// `value` 1 or -1 and `power <= 2n + 1`. Then the punctured power is
    /// (up to sign) a published element or `G1`, or `z` itself is found by
    /// trying the at most `4n + 2` roots of unity of that order (see
    /// [`crate::Crs::verify`]).
    #[error(
        "the secret is a small-order root of unity (z^{power} = {value}): the punctured power is computable"
    )]
    SmallOrderSecret {
        /// The exponent `t` found with `z^t = value`.
        power: u32,
        /// `1` or `-1`.
        value: i8,
    },
    /// The batched pairing check failed: the elements are not consecutive powers
    /// of one secret in both groups.
    #[error("CRS elements are not consecutive powers of one secret")]
    NotPowers,
    /// A ceremony update with the zero scalar.
    #[error("update scalar is zero")]
    ZeroUpdate,
}

/// Key generation failures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyGenError {
    /// The slot is not below the CRS capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot asked for.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
}

/// Why a registration was rejected. Each check has its own variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The slot already holds a key.
    #[error("slot {0} is already registered")]
    SlotTaken(u32),
    /// The workload id is already registered (in the given slot).
    #[error("id already registered in slot {existing_slot}")]
    DuplicateId {
        /// Where the id is registered.
        existing_slot: u32,
    },
    /// The public key is the identity (secret key zero).
    #[error("public key is the identity")]
    IdentityPublicKey,
    /// The registration does not carry exactly n-1 helper values.
    #[error("helper count {found}, expected {expected}")]
    HelperCount {
        /// n - 1.
        expected: usize,
        /// The count present.
        found: usize,
    },
    /// The Schnorr proof of knowledge of the secret key does not verify (or was
    /// made for another id, slot, key or CRS).
    #[error("proof of knowledge of the secret key is invalid")]
    InvalidProofOfKnowledge,
    /// The batched pairing check of the helper values failed: at least one
    /// helper is not `sk * h_(n+1+i-j)`.
    #[error("helper values are not well-formed")]
    InvalidHelpers,
    /// A [`crate::VerifiedRegistration`] was applied to a state other than
    /// exactly the one it was verified against (a later version, another log or
    /// another CRS).
    #[error("registration was verified against another state")]
    StaleVerification,
    /// A [`crate::WellFormedRegistration`] checked against another CRS than
    /// the state's.
    #[error("registration was checked against another CRS")]
    CrsMismatch,
}

/// Why a release was rejected. Each check has its own variant; a refused
/// release leaves the state unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// Nothing is registered in the slot (never registered, or already
    /// released).
    #[error("slot {0} holds no registration")]
    SlotFree(u32),
    /// The slot holds a registration for another workload id.
    #[error("slot {0} holds a registration for another id")]
    IdMismatch(u32),
    /// The slot holds a registration with another public key.
    #[error("slot {0} holds a registration with another public key")]
    KeyMismatch(u32),
    /// The slot holds a registration with another proof of knowledge.
    #[error("slot {0} holds a registration with another proof of knowledge")]
    ProofMismatch(u32),
    /// Same slot, id, key and proof, but the canonical encoding differs (the
    /// helper values): not the registration that was applied.
    #[error("slot {0} holds another registration (helper values differ)")]
    RegistrationMismatch(u32),
    /// A [`crate::VerifiedRelease`] was applied to a state other than exactly
    /// the one it was verified against.
    #[error("release was verified against another state")]
    StaleVerification,
}

/// Why one operation of a registration/release sequence was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperationError {
    /// A registration was rejected.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// A release was rejected.
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// A sequence of registrations and releases could not be replayed
/// ([`crate::RegistryState::replay_operations`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("operation #{index} rejected: {error}")]
pub struct OperationsReplayError {
    /// Zero-based position in the sequence.
    pub index: usize,
    /// Why it was rejected.
    pub error: OperationError,
}

/// Why a state image ([`crate::SnapshotRestore`]) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not decode (truncated, trailing bytes, bad magic or
    /// version, a point off the curve, a count out of range).
    #[error("state image does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The image was made under another CRS.
    #[error("state image was made under another CRS")]
    CrsMismatch,
    /// Fields that decode but contradict each other or the CRS.
    #[error("state image is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// Operation `index` of the log cannot follow the ones before it: a
    /// registration for a slot (or id) still live, or a release of a
    /// registration that is not the one live in its slot.
    #[error("log operation #{index} does not follow from the operations before it")]
    PrefixMismatch {
        /// Zero-based log position.
        index: u64,
    },
    /// More or fewer operations were pushed than the image covers.
    #[error("state image covers {covers} operations, {pushed} were pushed")]
    PrefixLength {
        /// Operations (registrations and releases) the image covers.
        covers: u64,
        /// Operations pushed.
        pushed: u64,
    },
    /// The log digest recomputed from the pushed operations is not the
    /// image's (same operations in another order, another log, or a
    /// tampered digest).
    #[error("log digest of the pushed operations differs from the state image's")]
    LogDigestMismatch,
    /// The registrations live after the pushed operations (slot, id, key)
    /// are not the image's table.
    #[error("live registrations of the pushed operations differ from the state image's")]
    LiveSetMismatch,
}

/// A registration log could not be replayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("registration #{index} rejected: {error}")]
pub struct ReplayError {
    /// Zero-based position in the log.
    pub index: usize,
    /// Why it was rejected.
    pub error: RegistrationError,
}

/// Why an opening could not be updated or derived.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpeningError {
    /// The registration is for a slot in another block: it does not change
    /// this opening.
    #[error("registration slot {0} is in another block")]
    OtherBlock(u32),
    /// The registration is for the opening's own slot.
    #[error("registration is for the opening's own slot")]
    OwnSlot,
    /// The registration's slot already holds a registration applied to this
    /// history (the same one applied twice, or a second one without a
    /// release in between).
    #[error("slot {0} already applied")]
    AlreadyApplied(u32),
    /// A release of a registration that is not the one applied to this
    /// history in its slot (never applied, already released, or another
    /// registration of that slot).
    #[error("slot {0}: the released registration is not the one applied")]
    NotApplied(u32),
    /// The history's own registration was released in the operations it was
    /// built from: it has no current opening.
    #[error("the registration of slot {0} was released")]
    Released(u32),
    /// The registration does not carry n-1 helper values (or its slot is out of
    /// range), so the helper for this position cannot be found.
    #[error("registration is malformed for this CRS")]
    MalformedRegistration,
    /// The slot never registered in the given registration list.
    #[error("slot {0} does not appear in the registrations")]
    NotRegistered(u32),
}

/// Why a membership or non-membership proof did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The public parameters were not made for this CRS.
    #[error("public parameters belong to another CRS")]
    ParamsMismatch,
    /// The proof's opening is for another commitment than the one published
    /// for its block (an older or newer version).
    #[error("opening is for another commitment than the published one")]
    StaleCommitment,
    /// A membership proof for the identity key (that is non-membership).
    #[error("membership proof for the identity key")]
    IdentityPublicKey,
    /// The proof of knowledge of the key's secret does not verify for this
    /// CRS, id, slot and key: the key is not one its claimant registered at
    /// that slot (for example the block commitment, or a registered key
    /// shifted by a multiple of `G1`).
    #[error("proof of knowledge of the secret key is invalid")]
    InvalidProofOfKnowledge,
    /// The membership proof is for another workload id than the one asked
    /// about.
    #[error("membership proof is for another id")]
    IdMismatch,
    /// The pairing equation does not hold.
    #[error("pairing check failed")]
    Invalid,
}

/// Why encryption failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The slot is not below the capacity.
    #[error("slot {slot} out of range (capacity {capacity})")]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The capacity.
        capacity: u32,
    },
    /// The public parameters were not made for this CRS.
    #[error("public parameters belong to another CRS")]
    ParamsMismatch,
    /// Nobody has registered in the slot's block yet: nobody could decrypt.
    #[error("block of slot {0} is empty: nobody could decrypt")]
    EmptyBlock(u32),
    /// The AEAD refused the message (too long).
    #[error("message too long for the AEAD")]
    MessageTooLong,
}

/// Why decryption failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The ciphertext, key and opening are not all for the same slot.
    #[error("slot mismatch: ciphertext for {ciphertext}, key/opening for {key}")]
    SlotMismatch {
        /// The ciphertext's slot.
        ciphertext: u32,
        /// The key's or opening's slot.
        key: u32,
    },
    /// The opening is for another commitment than the one the ciphertext was
    /// made under. Use the opening from the matching version (see
    /// [`crate::OpeningHistory::opening_for`]).
    #[error("opening is for another commitment than the ciphertext's")]
    StaleOpening,
    /// Authentication failed: wrong secret key, wrong opening, wrong associated
    /// data or a tampered ciphertext.
    #[error("decryption failed (authentication)")]
    Authentication,
}
