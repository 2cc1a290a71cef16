//! `mazu-audit check`: the full audit of one curator (see the crate docs
//! and `docs/audit.md`).

use core::time::Duration;
use std::path::PathBuf;
use std::time::Instant;

use mazu_curator::api::views::LogJson;
use mazu_curator::entry::LogEntry;
use mazu_curator::registry::{EntryFacts, Registry};
use mazu_identity::{RegistrySnapshot, TrustConfig};
use mazu_log::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
use mazu_log::{Checkpoint, CheckpointVerifier};
use mazu_rbe::{Crs, PublicParams, Registration, WellFormedRegistration};
use sha2::Digest as _;

use crate::client::CuratorClient;
use crate::state::{SavedCheckpoint, State};
use crate::{AuditError, Discrepancy};

/// Entries asked for per `GET /v1/log` page.
pub const PAGE: usize = 1000;

/// What to audit and against what.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// The curator's base URL.
    pub curator: String,
    /// The expected CRS digest (from the ceremony).
    pub crs_digest: [u8; 32],
    /// The token policy (issuers' JWKS, audience, trust domain).
    pub trust: TrustConfig,
    /// Where the last verified checkpoint is remembered.
    pub state: Option<PathBuf>,
    /// A checkpoint verifier key to require (otherwise the one in the state
    /// file, otherwise the one the curator serves is trusted on first use).
    pub checkpoint_key: Option<String>,
    /// Threads for the per-entry checks.
    pub threads: usize,
}

/// Progress of a run, for the caller to display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Entries checked so far.
    pub done: u64,
    /// Entries to check.
    pub total: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Everything found wrong (empty: the curator is consistent).
    pub discrepancies: Vec<Discrepancy>,
    /// Entries downloaded and checked.
    pub entries: u64,
    /// The signed checkpoint's size (if it verified).
    pub checkpoint_size: Option<u64>,
    /// The registry version whose parameters and registry were compared.
    pub compared_version: Option<u64>,
    /// Time spent downloading.
    pub download: Duration,
    /// Time spent checking and replaying.
    pub verify: Duration,
    /// Whether the state file was updated.
    pub state_updated: bool,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.discrepancies.is_empty()
    }
}

/// An entry that passed every order-independent check.
struct Checked {
    facts: EntryFacts,
    well_formed: WellFormedRegistration,
    accepted_at_ms: u64,
}

/// The order-independent checks of one entry: decoding, the token as of its
/// acceptance time, the id binding, the proof of possession, and the RBE
/// proof of knowledge and helper values (pairing check).
fn check_entry(crs: &Crs, trust: &TrustConfig, bytes: &[u8]) -> Result<Checked, String> {
    let entry = LogEntry::from_bytes(bytes).map_err(|e| format!("entry does not decode: {e}"))?;
    let registration = Registration::from_bytes(&entry.registration)
        .map_err(|e| format!("RBE registration does not decode: {e}"))?;
    let at = entry.accepted_at_ms / 1000;
    let verified = trust
        .verify_token(&entry.token, at)
        .map_err(|e| format!("token refused as of its acceptance time ({at} s): {e}"))?;
    if verified.workload_id.as_bytes() != &registration.id {
        return Err("registration id is not SHA-256 of the token".into());
    }
    mazu_curator::pop::verify_pop(
        &registration.id,
        registration.slot,
        &entry.registration,
        &entry.tls_spki,
        &entry.tls_signature,
    )
    .map_err(|e| format!("TLS proof of possession: {e}"))?;
    let facts = EntryFacts::with_registration(&entry, registration.clone())
        .map_err(|e| format!("entry facts: {e}"))?;
    let well_formed = registration
        .into_well_formed(crs)
        .map_err(|e| format!("RBE registration refused: {e}"))?;
    Ok(Checked {
        facts,
        well_formed,
        accepted_at_ms: entry.accepted_at_ms,
    })
}

/// The audit's running state.
struct Replay<'a> {
    config: &'a CheckConfig,
    client: &'a CuratorClient,
    crs: &'a Crs,
    registry: Registry,
    tree: MerkleTree,
    last_accepted_ms: u64,
    report: Report,
}

impl Replay<'_> {
    fn flag(&mut self, d: Discrepancy) {
        self.report.discrepancies.push(d);
    }

    /// Downloads and checks entries `[tree.len(), to)`. Returns false if the
    /// log ended early (reported).
    async fn extend_to(
        &mut self,
        to: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<bool, AuditError> {
        while self.tree.len() < to {
            let start = self.tree.len();
            let limit = usize::try_from(to - start).unwrap_or(PAGE).min(PAGE);
            let t = Instant::now();
            let page: LogJson = self
                .client
                .get_json(&format!("/v1/log?start={start}&limit={limit}"))
                .await?;
            self.report.download += t.elapsed();
            if page.entries.is_empty() {
                self.flag(Discrepancy::global(format!(
                    "the log ends at {start} entries (it says its size is {}), but {to} are \
                     expected",
                    page.size
                )));
                return Ok(false);
            }
            let mut raw = Vec::with_capacity(page.entries.len());
            for (k, e) in page.entries.into_iter().enumerate() {
                let index = start + k as u64;
                if index >= to {
                    break;
                }
                if e.index != index {
                    self.flag(Discrepancy::at(
                        index,
                        format!("the log page labels this entry {}", e.index),
                    ));
                }
                let bytes = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&e.entry)
                    .map_err(|_| AuditError::Http {
                        path: "/v1/log".into(),
                        reason: format!("entry {index} is not base64"),
                    })?;
                raw.push((index, e.leaf_hash, bytes));
            }
            let t = Instant::now();
            self.check_batch(raw);
            self.report.verify += t.elapsed();
            progress(Progress {
                done: self.tree.len(),
                total: to,
            });
        }
        Ok(true)
    }

    /// Checks a batch: the per-entry checks in parallel, then in log order
    /// the state checks, the apply and the Merkle tree.
    fn check_batch(&mut self, batch: Vec<(u64, String, Vec<u8>)>) {
        let threads = self.config.threads.max(1);
        let crs = self.crs;
        let trust = &self.config.trust;
        let chunk = batch.len().div_ceil(threads).max(1);
        let results: Vec<Result<Checked, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(_, _, bytes)| check_entry(crs, trust, bytes))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err("checking thread panicked".into())])
                })
                .collect()
        });
        for ((index, served_leaf, bytes), result) in batch.into_iter().zip(results) {
            let leaf = leaf_hash(&bytes);
            if served_leaf != hex::encode(leaf) {
                self.flag(Discrepancy::at(
                    index,
                    format!(
                        "served leaf hash {served_leaf} is not SHA-256(0x00 || entry) = {}",
                        hex::encode(leaf)
                    ),
                ));
            }
            self.tree.push(leaf);
            self.report.entries += 1;
            let checked = match result {
                Ok(c) => c,
                Err(message) => {
                    self.flag(Discrepancy::at(index, message));
                    continue;
                }
            };
            if checked.accepted_at_ms < self.last_accepted_ms {
                self.flag(Discrepancy::at(
                    index,
                    format!(
                        "accepted at {} ms, before the previous entry ({} ms): the log is out \
                         of order",
                        checked.accepted_at_ms, self.last_accepted_ms
                    ),
                ));
            }
            self.last_accepted_ms = self.last_accepted_ms.max(checked.accepted_at_ms);
            let slot = checked.facts.registration.slot;
            if let Some(existing) = self.registry.slot_of(&checked.facts.registration.id) {
                self.flag(Discrepancy::at(
                    index,
                    format!("id already registered in slot {existing} by an earlier entry"),
                ));
                continue;
            }
            if self.registry.has_claims(&checked.facts.claims_digest) {
                self.flag(Discrepancy::at(
                    index,
                    "a token with the same signed content is already registered",
                ));
                continue;
            }
            let verified = match self.registry.verify_fresh(checked.well_formed) {
                Ok(v) => v,
                Err(e) => {
                    self.flag(Discrepancy::at(
                        index,
                        format!("registration in slot {slot} conflicts with the state: {e}"),
                    ));
                    continue;
                }
            };
            if let Err(e) = self.registry.apply(&verified, &checked.facts) {
                self.flag(Discrepancy::at(index, format!("cannot apply: {e}")));
            }
        }
    }

    /// Fetches `/v1/params` and `/v1/registry` at one version (retrying if
    /// a registration lands between the two requests).
    async fn served_state(&mut self) -> Result<(u64, Vec<u8>, Vec<u8>), AuditError> {
        let mut last = None;
        for _ in 0..5 {
            let params = self.client.get_bytes("/v1/params?format=binary").await?;
            let registry = self.client.get_bytes("/v1/registry").await?;
            let pv = PublicParams::from_bytes(&params).map(|p| p.version());
            let rv = RegistrySnapshot::decode(&registry).map(|r| r.version());
            match (pv, rv) {
                (Ok(a), Ok(b)) if a == b => return Ok((a, params, registry)),
                (Ok(a), Ok(b)) => last = Some(format!("params version {a}, registry version {b}")),
                (Err(e), _) => last = Some(format!("served parameters do not decode: {e}")),
                (_, Err(e)) => last = Some(format!("served registry does not decode: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(AuditError::Http {
            path: "/v1/params, /v1/registry".into(),
            reason: last.unwrap_or_default(),
        })
    }
}

/// Runs the audit. Discrepancies are in the report; `Err` means the audit
/// could not be carried out (network, configuration).
pub async fn run(
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, AuditError> {
    let client = CuratorClient::new(&config.curator)?;
    let mut report = Report::default();
    let state = match &config.state {
        Some(p) => State::load(p)?,
        None => State::default(),
    };

    // The CRS must be the ceremony's.
    let crs_bytes = client.get_bytes("/v1/crs").await?;
    let crs = Crs::from_bytes(&crs_bytes)
        .map_err(|e| AuditError::Config(format!("the served CRS does not decode: {e}")))?;
    if crs.digest() != config.crs_digest {
        report.discrepancies.push(Discrepancy::global(format!(
            "the curator's CRS has digest {}, not the expected {}: nothing it serves can be \
             checked against the ceremony",
            hex::encode(crs.digest()),
            hex::encode(config.crs_digest)
        )));
        return Ok(report);
    }

    // The checkpoint key: pinned, remembered, or trusted on first use.
    let served_key = client.get_text("/v1/checkpoint/key").await?;
    let served_key = served_key.trim_end().to_owned();
    let pinned = config
        .checkpoint_key
        .clone()
        .or_else(|| state.checkpoint.as_ref().map(|c| c.verifier_key.clone()));
    let key = match &pinned {
        Some(p) if *p != served_key => {
            report.discrepancies.push(Discrepancy::global(format!(
                "the curator now serves checkpoint key {served_key}, not the pinned {p}"
            )));
            p.clone()
        }
        Some(p) => p.clone(),
        None => served_key.clone(),
    };
    let verifier = CheckpointVerifier::parse(&key)
        .map_err(|e| AuditError::Config(format!("checkpoint key {key:?}: {e}")))?;

    let note = client.get_text("/v1/checkpoint").await?;
    let checkpoint: Option<Checkpoint> = match verifier.verify(note.as_bytes()) {
        Ok(cp) => Some(cp),
        Err(e) => {
            report.discrepancies.push(Discrepancy::global(format!(
                "the signed checkpoint does not verify: {e}"
            )));
            None
        }
    };

    let mut replay = Replay {
        config,
        client: &client,
        crs: &crs,
        registry: Registry::new(crs.clone()),
        tree: MerkleTree::new(),
        last_accepted_ms: 0,
        report,
    };

    // The log up to the checkpoint, then its root.
    if let Some(cp) = &checkpoint {
        replay.report.checkpoint_size = Some(cp.size);
        if replay.extend_to(cp.size, progress).await? {
            check_root(&mut replay, cp).await?;
        }
    }

    // The served parameters and registry, recomputed at their version.
    let (version, params, registry) = replay.served_state().await?;
    if let Some(cp) = &checkpoint
        && version < cp.size
    {
        replay.flag(Discrepancy::global(format!(
            "the served parameters are at version {version}, behind the signed checkpoint \
             ({} entries)",
            cp.size
        )));
    } else if replay.extend_to(version, progress).await? {
        replay.report.compared_version = Some(version);
        compare_state(&mut replay, version, &params, &registry);
    }

    // Consistency with the checkpoint remembered from the previous run.
    if let (Some(cp), Some(prev)) = (&checkpoint, &state.checkpoint) {
        check_consistency(&mut replay, prev, cp).await?;
    }

    let mut report = replay.report;
    if report.is_clean()
        && let (Some(path), Some(cp)) = (&config.state, &checkpoint)
    {
        let mut state = state;
        state.checkpoint = Some(SavedCheckpoint {
            verifier_key: key,
            note,
            size: cp.size,
            root: hex::encode(cp.root),
        });
        state.save(path)?;
        report.state_updated = true;
    }
    Ok(report)
}

/// The recomputed root against the checkpoint, the registry it signs
/// against the one recomputed at its size, and a few inclusion proofs from
/// the curator against it.
async fn check_root(replay: &mut Replay<'_>, cp: &Checkpoint) -> Result<(), AuditError> {
    check_registry_binding(replay, cp);
    let root = replay
        .tree
        .root(cp.size)
        .map_err(|e| AuditError::Config(e.to_string()))?;
    if root != cp.root {
        replay.flag(Discrepancy::global(format!(
            "the Merkle root of the log's first {} entries is {}, but the signed checkpoint \
             says {}: entries were dropped, reordered, changed or inserted",
            cp.size,
            hex::encode(root),
            hex::encode(cp.root)
        )));
    }
    let mut sample = vec![0, cp.size / 2, cp.size.saturating_sub(1)];
    sample.dedup();
    for index in sample.into_iter().filter(|i| *i < cp.size) {
        let p: mazu_curator::api::views::InclusionProofJson = replay
            .client
            .get_json(&format!(
                "/v1/proofs/inclusion?index={index}&size={}",
                cp.size
            ))
            .await?;
        let ok = parse_hash(&p.leaf_hash)
            .zip(parse_hashes(&p.proof))
            .is_some_and(|(leaf, proof)| {
                replay.tree.leaf(index) == Some(leaf)
                    && verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).is_ok()
            });
        if !ok {
            replay.flag(Discrepancy::at(
                index,
                "the curator's inclusion proof does not verify against the signed checkpoint",
            ));
        }
    }
    Ok(())
}

/// The checkpoint's registry line (what filters check registries against)
/// must be the digest of the registry the log yields at its size: a
/// different one is the curator's signature on a registry its log does not
/// justify. `replay` must stand at the checkpoint's size.
fn check_registry_binding(replay: &mut Replay<'_>, cp: &Checkpoint) {
    let signed = match mazu_log::evidence::registry_digest(cp) {
        Ok(signed) => signed,
        Err(e) => {
            replay.flag(Discrepancy::global(format!(
                "the signed checkpoint does not bind a registry: {e}"
            )));
            return;
        }
    };
    match replay.registry.snapshot() {
        Ok(ours) => {
            let ours: Hash = sha2::Sha256::digest(ours.encode()).into();
            if ours != signed {
                replay.flag(Discrepancy::global(format!(
                    "the signed checkpoint (size {}) binds registry digest {}, but the registry \
                     recomputed from the log at that size hashes to {}: filters were served a \
                     registry the log does not yield",
                    cp.size,
                    hex::encode(signed),
                    hex::encode(ours)
                )));
            }
        }
        Err(e) => replay.flag(Discrepancy::global(format!(
            "the registry recomputed at size {} does not encode: {e}",
            cp.size
        ))),
    }
}

fn compare_state(replay: &mut Replay<'_>, version: u64, params: &[u8], registry: &[u8]) {
    let ours = replay.registry.rbe().public_params().to_bytes();
    if ours != params {
        let detail = match PublicParams::from_bytes(params) {
            Ok(theirs) => {
                let mine = replay.registry.rbe().public_params();
                let blocks: Vec<String> = mine
                    .commitments()
                    .iter()
                    .zip(theirs.commitments())
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(i, _)| i.to_string())
                    .take(10)
                    .collect();
                format!("block commitments differ in blocks [{}]", blocks.join(", "))
            }
            Err(e) => format!("they do not decode: {e}"),
        };
        replay.flag(Discrepancy::global(format!(
            "the served public parameters (version {version}) are not those recomputed from \
             the log: {detail}"
        )));
    }
    match replay.registry.snapshot() {
        Ok(mine) if mine.encode() == registry => {}
        Ok(mine) => {
            let detail = match RegistrySnapshot::decode(registry) {
                Ok(theirs) => {
                    let mut diffs = Vec::new();
                    for e in mine.entries() {
                        if theirs.get(&e.workload_id) != Some(e) {
                            diffs.push(format!(
                                "{} differs or is missing",
                                hex::encode(e.workload_id.as_bytes())
                            ));
                        }
                    }
                    for e in theirs.entries() {
                        if mine.get(&e.workload_id).is_none() {
                            diffs.push(format!(
                                "{} is served but not in the log",
                                hex::encode(e.workload_id.as_bytes())
                            ));
                        }
                    }
                    diffs.truncate(10);
                    diffs.join("; ")
                }
                Err(e) => format!("it does not decode: {e}"),
            };
            replay.flag(Discrepancy::global(format!(
                "the served registry (version {version}) is not the one recomputed from the \
                 log: {detail}"
            )));
        }
        Err(e) => replay.flag(Discrepancy::global(format!(
            "the recomputed registry is invalid: {e}"
        ))),
    }
}

async fn check_consistency(
    replay: &mut Replay<'_>,
    prev: &SavedCheckpoint,
    cp: &Checkpoint,
) -> Result<(), AuditError> {
    let Some(prev_root) = parse_hash(&prev.root) else {
        return Err(AuditError::Config(
            "the state file's root is not hex".into(),
        ));
    };
    if prev.size > cp.size {
        replay.flag(Discrepancy::global(format!(
            "the signed checkpoint has {} entries, fewer than the {} of the checkpoint seen \
             before: the log was rolled back",
            cp.size, prev.size
        )));
        return Ok(());
    }
    if replay.tree.root(prev.size).ok() != Some(prev_root) {
        replay.flag(Discrepancy::global(format!(
            "the log's first {} entries no longer hash to the checkpoint seen before ({}): \
             the log was rewritten (a fork)",
            prev.size, prev.root
        )));
    }
    let p: mazu_curator::api::views::ConsistencyProofJson = replay
        .client
        .get_json(&format!(
            "/v1/proofs/consistency?from={}&to={}",
            prev.size, cp.size
        ))
        .await?;
    let ok = parse_hashes(&p.proof).is_some_and(|proof| {
        verify_consistency(prev.size, cp.size, &prev_root, &cp.root, &proof).is_ok()
    });
    if !ok {
        replay.flag(Discrepancy::global(format!(
            "the curator's consistency proof from the checkpoint seen before ({} entries) to \
             the current one ({} entries) does not verify",
            prev.size, cp.size
        )));
    }
    Ok(())
}

fn parse_hash(h: &str) -> Option<Hash> {
    hex::decode(h).ok()?.try_into().ok()
}

fn parse_hashes(v: &[String]) -> Option<Vec<Hash>> {
    v.iter().map(|h| parse_hash(h)).collect()
}
