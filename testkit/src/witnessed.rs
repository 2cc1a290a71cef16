//! A curator's witnessed log in memory, serving what the curator serves to
//! the filter's callouts (`GET /v1/checkpoint`, `GET /v1/log/records`,
//! `GET /v1/log/state`): leaf records, checkpoints signed with the curator
//! key and carrying the state line, cosignatures by
//! witness keys — all made with `mazu-log`'s own signers, so the filter
//! verifies exactly what a real curator and real witnesses produce. Tests
//! also use it to lie: serve other records than the checkpoint commits to,
//! withhold cosignatures, roll back, freeze.
//!
//! A real Envoy reaches it over HTTP through [`crate::net::RegistryServer`];
//! `mazu-wasm-tests` (its `callouts` module) answers the wasmtime-hosted
//! filter's callouts from it.

use mazu_identity::RegistryEntry;
use mazu_identity::registry::LogFollower;
use mazu_log::cosignature::append_cosignatures;
use mazu_log::evidence::state_extension;
use mazu_log::merkle::{Hash, MerkleTree};
use mazu_log::record::{LeafRecord, RecordBody};
use mazu_log::{CheckpointSigner, CosignatureSigner};

/// The most records the curator serves per page.
pub const PAGE: u64 = 16_384;

/// The origin (curator key name) of the fixtures' log.
pub const ORIGIN: &str = "mazu-curator/test";

/// The fixtures' curator checkpoint key.
pub fn curator_signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, &[42; 32]).expect("curator key")
}

/// Witness `n` of the fixtures (`witness.test/w<n>`).
pub fn witness_signer(n: u8) -> CosignatureSigner {
    CosignatureSigner::new(&format!("witness.test/w{n}"), &[100 + n; 32]).expect("witness key")
}

/// The `curator` members of a filter configuration following the
/// fixtures' log: its key, witnesses 1 and 2, a quorum of 2 (leading comma).
pub fn log_members() -> String {
    format!(
        r#","checkpoint_key":"{}","witnesses":["{}","{}"],"witness_quorum":2"#,
        curator_signer().verifier().to_vkey(),
        witness_signer(1).verifier().to_vkey(),
        witness_signer(2).verifier().to_vkey()
    )
}

/// A log of leaf records under the fixtures' keys.
pub struct TestLog {
    curator: CheckpointSigner,
    /// The records, in log order.
    pub records: Vec<LeafRecord>,
    next_slot: u32,
    /// Whether checkpoints carry the state line (as the curator's do).
    pub state_line: bool,
}

impl Default for TestLog {
    fn default() -> Self {
        TestLog::new()
    }
}

impl TestLog {
    /// The empty log.
    pub fn new() -> Self {
        TestLog {
            curator: curator_signer(),
            records: Vec::new(),
            next_slot: 0,
            state_line: true,
        }
    }

    /// A log whose derived registry holds `entries`: each bound (in a slot
    /// of its own), revealed, and revoked if the entry says so.
    pub fn with_entries(entries: &[RegistryEntry]) -> Self {
        let mut log = TestLog::new();
        for entry in entries {
            log.register(entry);
        }
        log
    }

    /// Appends a record.
    pub fn push(&mut self, body: RecordBody, id: Hash) {
        self.records.push(LeafRecord {
            at_ms: 1_700_000_000_000 + self.records.len() as u64,
            id,
            entry_digest: [0; 32],
            body,
        });
    }

    /// Logs `entry` as a bind and a reveal (and a revocation if it is
    /// revoked).
    pub fn register(&mut self, entry: &RegistryEntry) {
        let id = *entry.workload_id.as_bytes();
        let slot = self.next_slot;
        self.next_slot += 1;
        self.push(
            RecordBody::Bind {
                slot,
                spki_hash: *entry.spki_hash.as_bytes(),
                token_expiry: entry.token_expiry,
            },
            id,
        );
        self.push(
            RecordBody::Reveal {
                token_expiry: entry.token_expiry,
            },
            id,
        );
        if entry.revoked {
            self.push(RecordBody::Revoke, id);
        }
    }

    /// Logs the revocation of `entry`'s id.
    pub fn revoke(&mut self, entry: &RegistryEntry) {
        self.push(RecordBody::Revoke, *entry.workload_id.as_bytes());
    }

    /// The log size.
    pub fn size(&self) -> u64 {
        self.records.len() as u64
    }

    /// The root of the first `size` records.
    pub fn root(&self, size: u64) -> Hash {
        MerkleTree::from_leaves(self.records.iter().map(LeafRecord::leaf_hash))
            .root(size)
            .expect("size within the log")
    }

    /// The follower state after the first `size` records, encoded.
    pub fn state(&self, size: u64) -> Vec<u8> {
        let mut follower = LogFollower::new();
        for record in &self.records[..size as usize] {
            // Void records are void for every follower alike.
            let _ = follower.append_own(record);
        }
        follower.encode_state()
    }

    /// The checkpoint note of the first `size` records (with the state line
    /// unless [`state_line`](Self::state_line) is off), cosigned by
    /// `witnesses` (numbers) at `time` (Unix seconds).
    pub fn note(&self, size: u64, witnesses: &[u8], time: u64) -> String {
        let extensions = if self.state_line {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(self.state(size)).into();
            vec![state_extension(&digest)]
        } else {
            Vec::new()
        };
        let note = self
            .curator
            .sign_with_extensions(size, &self.root(size), extensions);
        let checkpoint = self
            .curator
            .verifier()
            .verify(note.as_bytes())
            .expect("own note");
        let lines: Vec<String> = witnesses
            .iter()
            .map(|&n| witness_signer(n).cosign(&checkpoint, time).expect("cosign"))
            .collect();
        append_cosignatures(&note, &lines).expect("cosigned note")
    }

    /// The newest checkpoint, cosigned by witnesses 1 and 2 at `time`.
    pub fn checkpoint(&self, time: u64) -> String {
        self.note(self.size(), &[1, 2], time)
    }

    /// Records `start..end` (at most [`PAGE`]) as the curator serves them.
    pub fn records_bytes(&self, start: u64, end: u64) -> Vec<u8> {
        let end = end.min(self.size()).min(start.saturating_add(PAGE));
        self.records[start as usize..end.max(start) as usize]
            .iter()
            .flat_map(LeafRecord::to_bytes)
            .collect()
    }
}

/// What a callout asks the curator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /v1/checkpoint`.
    Checkpoint,
    /// `GET /v1/log/records?start=&end=`.
    Records {
        /// First record.
        start: u64,
        /// One past the last.
        end: u64,
    },
    /// `GET /v1/log/state?size=`.
    State {
        /// The checkpoint size.
        size: u64,
    },
    /// Anything else.
    Other(String),
}

/// Parses a callout's `:path`.
pub fn parse_path(path: &str) -> Request {
    if path == "/v1/checkpoint" {
        return Request::Checkpoint;
    }
    if let Some(size) = path
        .strip_prefix("/v1/log/state?size=")
        .and_then(|size| size.parse().ok())
    {
        return Request::State { size };
    }
    let query = path.strip_prefix("/v1/log/records?");
    let param = |name: &str| {
        query?
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
    };
    match (param("start"), param("end")) {
        (Some(start), Some(end)) => Request::Records { start, end },
        _ => Request::Other(path.to_owned()),
    }
}
