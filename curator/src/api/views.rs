//! JSON shapes of the API's responses.

use base64ct::{Base64, Encoding};
use mazu_identity::{RegistryEntry, RegistrySnapshot};
use mazu_rbe::{MembershipProof, Opening};
use serde::{Deserialize, Serialize};

use crate::service::SlotGrant;

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

/// `GET /v1/registry?format=json`: the registry derived from the log's
/// records (operators' view; not signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotJson {
    /// The log size it reflects.
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

/// `POST /v1/slots` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotJson {
    /// The reserved slot.
    pub slot: u32,
    /// The workload id (hex).
    pub id: String,
    /// When the reservation lapses (Unix seconds).
    pub expires_at: u64,
    /// Log size at the time of the reservation.
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

/// `GET /v1/openings/{slot}` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpeningJson {
    /// The log size the answer reflects.
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
    /// The log size the answer reflects.
    pub version: u64,
    /// The id (hex).
    pub id: String,
    /// Its slot.
    pub slot: u32,
    /// Membership proof (rbe crate's JSON form).
    pub proof: MembershipProof,
}

/// One raw log entry with the leaf record that summarizes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntryJson {
    /// Its index.
    pub index: u64,
    /// RFC 6962 leaf hash, SHA-256(0x00 || record) (hex).
    pub leaf_hash: String,
    /// The leaf record's bytes (standard base64; `mazu_log::record`).
    pub record: String,
    /// The entry's canonical bytes (standard base64; `crate::entry`).
    pub entry: String,
}

impl LogEntryJson {
    /// Wraps raw entry bytes and their record's bytes.
    pub fn new(index: u64, entry: &[u8], record: &[u8]) -> Self {
        Self {
            index,
            leaf_hash: hex::encode(mazu_log::merkle::leaf_hash(record)),
            record: Base64::encode_string(record),
            entry: Base64::encode_string(entry),
        }
    }
}

/// `POST /v1/slots` body: reserve a slot for an id (no token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    /// The workload id, SHA-256 of its token (64 hex digits).
    pub id: String,
}

/// `POST /v1/bindings` body: bind an id to a TLS key and an RBE key, without
/// the token (`docs/protocol.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// The workload id, SHA-256 of its token (64 hex digits).
    pub id: String,
    /// The slot (must equal `registration.slot`).
    pub slot: u32,
    /// The token's `exp` (Unix seconds): the reveal must match it, and it
    /// must lie within the curator's `--max-token-lifetime-secs` from now.
    pub token_expiry: u64,
    /// The RBE registration in the rbe crate's JSON form.
    pub registration: serde_json::Value,
    /// Standard base64 of the TLS key's DER SubjectPublicKeyInfo.
    pub tls_spki: String,
    /// Standard base64 of the proof-of-possession signature
    /// (`crate::pop::pop_message`).
    pub tls_signature: String,
}

/// `POST /v1/bindings/{id}/reveal` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// The token (compact JWT) whose SHA-256 is the id.
    pub token: String,
}

/// Body of `POST /v1/bindings/{id}/release` and `.../revoke`: the bound TLS
/// key's signature over the holder message (`crate::holder::holder_message`),
/// standard padded base64 of DER or `r || s`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HolderRequest {
    /// The signature, base64.
    pub signature: String,
}

/// Response of `POST /v1/bindings` and `POST /v1/bindings/{id}/reveal`:
/// where the entry is, and a checkpoint that covers it, cosigned by the
/// curator's witness quorum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedJson {
    /// Log index of the entry.
    pub index: u64,
    /// RFC 6962 leaf hash of its record (hex).
    pub leaf_hash: String,
    /// A signed, witnessed checkpoint of a size greater than `index`
    /// (the note text, curator signature and witness cosignature lines).
    pub checkpoint: String,
}

/// `GET /v1/log` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogJson {
    /// Log size.
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
    /// Log size, once known.
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
