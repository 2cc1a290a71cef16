//! JSON shapes of the API's responses.

use base64ct::{Base64, Encoding};
use mazu_identity::{RegistryDelta, RegistryEntry, RegistrySnapshot};
use mazu_rbe::{MembershipProof, Opening};
use serde::{Deserialize, Serialize};

use crate::service::SlotGrant;
use crate::writer::Committed;

/// A registry entry: `id`, `spki_hash` as lowercase hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryJson {
    /// Workload id, SHA-256 of the token (hex).
    pub id: String,
    /// RBE slot.
    pub slot: u32,
    /// SHA-256 of the TLS key's DER SubjectPublicKeyInfo (hex).
    pub spki_hash: String,
    /// The token's `exp` (Unix seconds).
    pub token_expiry: u64,
    /// Whether the entry is revoked (always false until revocation exists).
    pub revoked: bool,
}

impl From<&RegistryEntry> for EntryJson {
    fn from(e: &RegistryEntry) -> Self {
        Self {
            id: hex::encode(e.workload_id.as_bytes()),
            slot: e.slot,
            spki_hash: hex::encode(e.spki_hash.as_bytes()),
            token_expiry: e.token_expiry,
            revoked: e.revoked,
        }
    }
}

/// `GET /v1/registry?format=json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotJson {
    /// Registry version (log size).
    pub version: u64,
    /// Entries sorted by id.
    pub entries: Vec<EntryJson>,
}

impl From<&RegistrySnapshot> for SnapshotJson {
    fn from(s: &RegistrySnapshot) -> Self {
        Self {
            version: s.version(),
            entries: s.entries().iter().map(EntryJson::from).collect(),
        }
    }
}

/// `GET /v1/registry?since=V&format=json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaJson {
    /// The version the delta applies to.
    pub from_version: u64,
    /// The version after applying it.
    pub to_version: u64,
    /// New or changed entries, sorted by id.
    pub entries: Vec<EntryJson>,
}

impl From<&RegistryDelta> for DeltaJson {
    fn from(d: &RegistryDelta) -> Self {
        Self {
            from_version: d.from_version(),
            to_version: d.to_version(),
            entries: d.entries().iter().map(EntryJson::from).collect(),
        }
    }
}

/// `POST /v1/slots` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotJson {
    /// The reserved slot.
    pub slot: u32,
    /// The workload id (hex).
    pub id: String,
    /// When the reservation lapses (Unix seconds).
    pub expires_at: u64,
    /// Registry version at the time of the reservation.
    pub version: u64,
}

impl From<&SlotGrant> for SlotJson {
    fn from(g: &SlotGrant) -> Self {
        Self {
            slot: g.slot,
            id: hex::encode(g.id),
            expires_at: g.expires_at,
            version: g.version,
        }
    }
}

/// The accepted entry in a `POST /v1/registrations` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcceptedEntryJson {
    /// The registry entry.
    #[serde(flatten)]
    pub entry: EntryJson,
    /// When the curator accepted it (Unix ms).
    pub accepted_at_ms: u64,
    /// RFC 6962 leaf hash of the log entry bytes (hex).
    pub leaf_hash: String,
}

/// `POST /v1/registrations` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistrationJson {
    /// Log index of the new entry.
    pub index: u64,
    /// Registry version after it.
    pub version: u64,
    /// The entry.
    pub entry: AcceptedEntryJson,
}

impl From<&Committed> for RegistrationJson {
    fn from(c: &Committed) -> Self {
        Self {
            index: c.index,
            version: c.version,
            entry: AcceptedEntryJson {
                entry: EntryJson::from(&c.entry),
                accepted_at_ms: c.accepted_at_ms,
                leaf_hash: hex::encode(c.leaf_hash),
            },
        }
    }
}

/// `GET /v1/openings/{slot}` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpeningJson {
    /// Registry version.
    pub version: u64,
    /// The slot.
    pub slot: u32,
    /// Whether the slot holds a key.
    pub registered: bool,
    /// The opening (rbe crate's JSON form).
    pub opening: Opening,
}

/// `GET /v1/proofs/{id}` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofJson {
    /// Registry version.
    pub version: u64,
    /// The id (hex).
    pub id: String,
    /// Its slot.
    pub slot: u32,
    /// Membership proof (rbe crate's JSON form).
    pub proof: MembershipProof,
}

/// One raw log entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntryJson {
    /// Its index.
    pub index: u64,
    /// RFC 6962 leaf hash, SHA-256(0x00 || entry) (hex).
    pub leaf_hash: String,
    /// The entry's canonical bytes (standard base64).
    pub entry: String,
}

impl LogEntryJson {
    /// Wraps raw entry bytes.
    pub fn new(index: u64, bytes: &[u8]) -> Self {
        Self {
            index,
            leaf_hash: hex::encode(crate::entry::LogEntry::leaf_hash(bytes)),
            entry: Base64::encode_string(bytes),
        }
    }
}

/// `GET /v1/log` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogJson {
    /// Log size (= registry version).
    pub size: u64,
    /// Index of the first entry returned.
    pub start: u64,
    /// The entries.
    pub entries: Vec<LogEntryJson>,
}

/// `GET /readyz` and `GET /healthz` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthJson {
    /// `ok`, `starting` or `unavailable`.
    pub status: String,
    /// Registry version, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Whether the CRS is an insecure development CRS.
    pub dev_crs: bool,
    /// Warnings an operator must see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `GET /v1/proofs/inclusion?index=I&size=N`: the leaf hash of entry `I`
/// and its RFC 9162 inclusion proof (audit path, leaf to root) in the tree
/// of the first `N` entries; hashes as lowercase hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofJson {
    /// The entry's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The entry's leaf hash, SHA-256(0x00 || entry).
    pub leaf_hash: String,
    /// The proof hashes.
    pub proof: Vec<String>,
}

/// `GET /v1/proofs/consistency?from=M&to=N`: the RFC 9162 consistency proof
/// between the trees of the first `M` and `N` entries; hashes as lowercase
/// hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofJson {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof hashes.
    pub proof: Vec<String>,
}
