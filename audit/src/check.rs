//! `mazu-audit check`: the full audit of one curator (see the crate docs
//! and `docs/audit.md`).
//!
//! The log is in format 2 (`docs/protocol.md`, "Wire (log format 2)"): each
//! entry (bind, reveal, release, revoke) is summarized by a leaf record, and
//! the Merkle tree is over the records. The audit checks, in this order:
//!
//! 1. the checkpoint: the curator's signature with the pinned key, and the
//!    cosignatures of a quorum of the configured witnesses;
//! 2. every entry on its own ([`examine`], in parallel): strict decoding,
//!    the record recomputed from the entry equal to the served record and
//!    leaf hash, and per kind the checks that need no state (proof of
//!    possession and RBE proof of knowledge of a bind; the token of a reveal,
//!    verified as of the entry's time);
//! 3. every entry in log order ([`Replay::apply`]): time order, the id
//!    lifecycle with the shared rules of [`DerivedRegistry`] (a void record,
//!    e.g. a second binding of a bound id, is a discrepancy: an honest
//!    curator never logs one), the RBE freshness of a bind against the
//!    replayed RBE state, one reveal per signed token, and for a release or
//!    revocation (whose due-ness the lifecycle rules already decide) the
//!    holder's signature by the bound TLS key and the RBE key taken out of
//!    the replayed state;
//! 4. the Merkle root over the records against the checkpoint, sample
//!    inclusion proofs, the checkpoint's state line against the follower
//!    state replayed from the records (what new filters install, trusting
//!    the witnesses' check of it), no record timed after the witnessed time
//!    (plus the allowed skew), the served public parameters and registry
//!    against the replayed ones, and consistency with the checkpoint
//!    remembered from the previous run.

use core::time::Duration;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use base64ct::Encoding as _;
use mazu_curator::api::views::LogJson;
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_curator::holder::{HolderAction, verify_holder};
use mazu_identity::registry::derive::{DerivedRegistry, IdState, MAX_CLOCK_SKEW_MS};
use mazu_identity::{ClaimsDigest, RegistrySnapshot, TrustConfig};
use mazu_log::Frontier;
use mazu_log::evidence::state_digest;
use mazu_log::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency, verify_inclusion};
use mazu_log::record::{LeafRecord, RecordBody, ReleaseReason};
use mazu_log::{Checkpoint, CheckpointVerifier, WitnessPolicy, WitnessVerifier};
use mazu_rbe::{Crs, PublicParams, Registration, RegistryState, WellFormedRegistration};
use mazu_service::tls::ClientTransport;
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
    /// How it is reached (TLS to a pinned key, or plain HTTP).
    pub curator_transport: ClientTransport,
    /// The expected CRS digest (from the ceremony).
    pub crs_digest: [u8; 32],
    /// The token policy (issuers' JWKS, audience, trust domain).
    pub trust: TrustConfig,
    /// Where the last verified checkpoint is remembered.
    pub state: Option<PathBuf>,
    /// A checkpoint verifier key to require (otherwise the one in the state
    /// file, otherwise the one the curator serves is trusted on first use).
    pub checkpoint_key: Option<String>,
    /// The witnesses whose cosignatures count (`--witness VKEY`).
    pub witnesses: Vec<WitnessVerifier>,
    /// How many of them must have cosigned the checkpoint
    /// (`--witness-quorum`; `None`: all).
    pub witness_quorum: Option<usize>,
    /// Accept a checkpoint without witness cosignatures when no witness is
    /// configured (`--insecure-no-witness`, development only).
    pub insecure_no_witness: bool,
    /// Threads for the per-entry checks.
    pub threads: usize,
}

impl CheckConfig {
    /// The witness policy, or `None` when witnessing is explicitly switched
    /// off. Without witnesses (or with a quorum of 0) the audit refuses to
    /// run unless [`insecure_no_witness`](Self::insecure_no_witness) is set:
    /// a checkpoint only the curator signed may be a fork shown to the
    /// auditor alone.
    pub fn witness_policy(&self) -> Result<Option<WitnessPolicy>, AuditError> {
        let quorum = self.witness_quorum.unwrap_or(self.witnesses.len());
        if self.witnesses.is_empty() || quorum == 0 {
            if self.insecure_no_witness {
                return Ok(None);
            }
            return Err(AuditError::Config(
                "no witness quorum configured (--witness VKEY, --witness-quorum K): refusing to \
                 audit checkpoints only the curator signed without --insecure-no-witness"
                    .into(),
            ));
        }
        WitnessPolicy::new(self.witnesses.clone(), quorum)
            .map(Some)
            .map_err(|e| AuditError::Config(format!("witness policy: {e}")))
    }
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
    /// The verified checkpoint's size (signature and witness quorum).
    pub checkpoint_size: Option<u64>,
    /// The checkpoint's witnessed time (Unix seconds: the quorum-th newest
    /// cosignature timestamp), if witnesses are configured and it verified.
    pub witnessed_at: Option<u64>,
    /// The names of the witnesses that cosigned it.
    pub cosigners: Vec<String>,
    /// The log size at which parameters and registry were compared.
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

/// One served log entry, as downloaded.
struct Served {
    index: u64,
    leaf_hash: String,
    record: Vec<u8>,
    entry: Vec<u8>,
}

/// What the order-independent checks found about one entry.
#[derive(Default)]
struct Examined {
    /// The decoded entry.
    entry: Option<LogEntry>,
    /// The record recomputed from the entry.
    recomputed: Option<LeafRecord>,
    /// The served record, if it decodes.
    served: Option<LeafRecord>,
    /// Everything wrong with the entry on its own.
    problems: Vec<String>,
    /// A bind's registration that passed every stateless check.
    well_formed: Option<WellFormedRegistration>,
    /// A reveal's verified token's claims digest.
    claims: Option<ClaimsDigest>,
}

/// The checks of one entry that need no state: strict decoding, the record
/// recomputed from the entry against the served one, and per kind the
/// proof of possession and RBE well-formedness (bind) or the token as of the
/// entry's time (reveal).
fn examine(crs: &Crs, trust: &TrustConfig, served: &Served) -> Examined {
    let mut out = Examined::default();
    match LeafRecord::from_bytes(&served.record) {
        Ok(r) => out.served = Some(r),
        Err(e) => out
            .problems
            .push(format!("the served record does not decode: {e}")),
    }
    let entry = match LogEntry::from_bytes(&served.entry) {
        Ok(e) => e,
        Err(e) => {
            out.problems.push(format!("entry does not decode: {e}"));
            return out;
        }
    };
    match entry.record(&served.entry) {
        Ok(r) => {
            if r.to_bytes() != served.record {
                out.problems.push(format!(
                    "the served record is not the record of its entry ({} {}): the log \
                     commits to a record its entry does not support",
                    entry.body.kind_name(),
                    hex::encode(entry.id)
                ));
            }
            out.recomputed = Some(r);
        }
        Err(e) => out
            .problems
            .push(format!("the entry has no valid record: {e}")),
    }
    match &entry.body {
        EntryBody::Bind {
            slot,
            token_expiry,
            tls_spki,
            tls_signature,
            registration,
        } => match check_bind(
            crs,
            &mazu_curator::pop::PopClaim {
                id: &entry.id,
                slot: *slot,
                token_expiry: *token_expiry,
                registration_bytes: registration,
            },
            tls_spki,
            tls_signature,
        ) {
            Ok(w) => out.well_formed = Some(w),
            Err(e) => out.problems.push(e),
        },
        EntryBody::Reveal { token } => {
            let at = entry.at_ms / 1000;
            match trust.verify_token(token, at) {
                Ok(v) if v.workload_id.as_bytes() == &entry.id => {
                    out.claims = Some(v.claims_digest);
                }
                Ok(_) => out
                    .problems
                    .push("the revealed token's SHA-256 is not the entry's id".into()),
                Err(e) => out.problems.push(format!(
                    "revealed token refused as of the entry's time ({at} s): {e}"
                )),
            }
        }
        EntryBody::Release { .. } | EntryBody::Revoke { .. } => {}
    }
    out.entry = Some(entry);
    out
}

/// A bind's stateless checks: the registration decodes and is for the
/// entry's id and slot, the TLS proof of possession (over the id, slot,
/// token expiry and registration) verifies, and the RBE proof of knowledge
/// and helper values pass (pairing check).
fn check_bind(
    crs: &Crs,
    claim: &mazu_curator::pop::PopClaim<'_>,
    tls_spki: &[u8],
    tls_signature: &[u8],
) -> Result<WellFormedRegistration, String> {
    let decoded = Registration::from_bytes(claim.registration_bytes)
        .map_err(|e| format!("RBE registration does not decode: {e}"))?;
    if decoded.id != *claim.id || decoded.slot != claim.slot {
        return Err("the RBE registration's id or slot is not the bind's".into());
    }
    mazu_curator::pop::verify_pop(claim, tls_spki, tls_signature)
        .map_err(|e| format!("TLS proof of possession: {e}"))?;
    decoded
        .into_well_formed(crs)
        .map_err(|e| format!("RBE registration refused: {e}"))
}

/// The audit's running state.
struct Replay<'a> {
    config: &'a CheckConfig,
    client: &'a CuratorClient,
    crs: &'a Crs,
    /// The id lifecycle, derived from the records as every filter does.
    ids: DerivedRegistry,
    /// The RBE state, replayed from the binds the lifecycle accepted.
    rbe: RegistryState,
    /// Claims digests of the revealed tokens (one reveal per signed token).
    revealed_claims: HashSet<ClaimsDigest>,
    /// Per id holding a slot: its bind entry's TLS key and RBE registration
    /// bytes, to check a holder's signature on its release or revocation
    /// and to take the key out of the replayed RBE state. Memory grows with
    /// the live bindings, not with history.
    bound: HashMap<[u8; 32], (Vec<u8>, Vec<u8>)>,
    /// Merkle tree over the served records.
    tree: MerkleTree,
    /// Its frontier, for the follower state.
    frontier: Frontier,
    last_at_ms: u64,
    /// Entries whose record could not be applied at all (neither the served
    /// nor the recomputed record decodes): the replayed registry's version
    /// then lags the log.
    unapplied: u64,
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
            let mut batch = Vec::with_capacity(page.entries.len());
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
                let b64 = |what: &str, text: &str| {
                    base64ct::Base64::decode_vec(text).map_err(|_| AuditError::Http {
                        path: "/v1/log".into(),
                        reason: format!("the {what} of entry {index} is not base64"),
                    })
                };
                batch.push(Served {
                    index,
                    record: b64("record", &e.record)?,
                    entry: b64("entry", &e.entry)?,
                    leaf_hash: e.leaf_hash,
                });
            }
            let t = Instant::now();
            self.check_batch(batch);
            self.report.verify += t.elapsed();
            progress(Progress {
                done: self.tree.len(),
                total: to,
            });
        }
        Ok(true)
    }

    /// Checks a batch: [`examine`] in parallel, then in log order the
    /// Merkle tree and [`Replay::apply`].
    fn check_batch(&mut self, batch: Vec<Served>) {
        let threads = self.config.threads.max(1);
        let crs = self.crs;
        let trust = &self.config.trust;
        let chunk = batch.len().div_ceil(threads).max(1);
        let results: Vec<Option<Examined>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|s| examine(crs, trust, s))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(batch.chunks(chunk))
                .flat_map(|(h, part)| match h.join() {
                    Ok(v) => v.into_iter().map(Some).collect::<Vec<_>>(),
                    Err(_) => part.iter().map(|_| None).collect(),
                })
                .collect()
        });
        for (served, examined) in batch.into_iter().zip(results) {
            let index = served.index;
            let leaf = leaf_hash(&served.record);
            if served.leaf_hash != hex::encode(leaf) {
                self.flag(Discrepancy::at(
                    index,
                    format!(
                        "served leaf hash {} is not SHA-256(0x00 || record) = {}",
                        served.leaf_hash,
                        hex::encode(leaf)
                    ),
                ));
            }
            // The tree is over the served records: they are what the
            // checkpoint commits to and what filters act on.
            self.tree.push(leaf);
            self.frontier.push(leaf);
            self.report.entries += 1;
            let Some(examined) = examined else {
                self.flag(Discrepancy::at(index, "the checking thread panicked"));
                self.unapplied += 1;
                continue;
            };
            self.apply(index, examined);
        }
    }

    /// The in-order checks of one examined entry, and its effect on the
    /// replayed state.
    fn apply(&mut self, index: u64, examined: Examined) {
        let Examined {
            entry,
            recomputed,
            served,
            problems,
            well_formed,
            claims,
        } = examined;
        for p in problems {
            self.flag(Discrepancy::at(index, p));
        }
        if let Some(entry) = &entry {
            if entry.at_ms < self.last_at_ms {
                self.flag(Discrepancy::at(
                    index,
                    format!(
                        "logged at {} ms, before the previous entry ({} ms): the log is out of \
                         order",
                        entry.at_ms, self.last_at_ms
                    ),
                ));
            }
            self.last_at_ms = self.last_at_ms.max(entry.at_ms);
        }
        // Filters apply the served record; so does the replay (a mismatch
        // with the entry is reported above).
        let Some(record) = served.or(recomputed) else {
            self.unapplied += 1;
            return;
        };
        let before = self.ids.state(&record.id).copied();
        if let Err(reason) = self.ids.apply(&record) {
            let earlier = match before {
                Some(IdState::Bound { bound_at, .. } | IdState::Live { bound_at, .. }) => {
                    format!(" (bound at index {bound_at})")
                }
                Some(IdState::Revoked { .. }) => " (revoked earlier)".into(),
                Some(IdState::Released { reason, .. }) => {
                    format!(" (released earlier: {})", reason.as_str())
                }
                None => String::new(),
            };
            self.flag(Discrepancy::at(
                index,
                format!(
                    "void {} of {}: {reason}{earlier}; an honest curator never logs it",
                    record.body.kind_name(),
                    hex::encode(record.id)
                ),
            ));
            return;
        }
        match record.body {
            RecordBody::Bind { slot, .. } => {
                // The lifecycle accepted the binding: the RBE key must be
                // fresh against the replayed RBE state too.
                let Some(well_formed) = well_formed else {
                    return;
                };
                match self.rbe.verify_fresh(well_formed) {
                    Ok(verified) => {
                        if let Err(e) = self.rbe.apply(&verified) {
                            self.flag(Discrepancy::at(index, format!("cannot apply: {e}")));
                        } else if let Some(LogEntry {
                            body:
                                EntryBody::Bind {
                                    tls_spki,
                                    registration,
                                    ..
                                },
                            ..
                        }) = entry
                        {
                            self.bound.insert(record.id, (tls_spki, registration));
                        }
                    }
                    Err(e) => self.flag(Discrepancy::at(
                        index,
                        format!("RBE registration in slot {slot} conflicts with the state: {e}"),
                    )),
                }
            }
            RecordBody::Reveal { .. } => {
                if let Some(claims) = claims
                    && !self.revealed_claims.insert(claims)
                {
                    self.flag(Discrepancy::at(
                        index,
                        "a token with the same signed content was revealed before",
                    ));
                }
            }
            RecordBody::Release { .. } | RecordBody::Revoke => {
                // The lifecycle rules (due or not) were applied above, as
                // every filter applies them; what a filter cannot check is
                // the holder's signature and the RBE side.
                self.check_end(index, &record, entry.as_ref());
            }
        }
    }

    /// A release or revocation the lifecycle rules accepted: a holder's
    /// release or a revocation must carry the bound key's signature, and
    /// the bound RBE key is taken out of the replayed state (which must
    /// hold exactly that registration in its slot).
    fn check_end(&mut self, index: u64, record: &LeafRecord, entry: Option<&LogEntry>) {
        let Some((tls_spki, registration)) = self.bound.remove(&record.id) else {
            self.flag(Discrepancy::at(
                index,
                format!(
                    "{} of {}, whose binding the replayed RBE state does not hold",
                    record.body.kind_name(),
                    hex::encode(record.id)
                ),
            ));
            return;
        };
        let decoded = match Registration::from_bytes(&registration) {
            Ok(r) => r,
            Err(e) => {
                self.flag(Discrepancy::at(
                    index,
                    format!("the ended binding's registration does not decode: {e}"),
                ));
                return;
            }
        };
        let signed = match entry.map(|e| &e.body) {
            Some(EntryBody::Release {
                reason: ReleaseReason::Holder,
                signature,
            }) => Some((HolderAction::Release, signature)),
            Some(EntryBody::Revoke { signature }) => Some((HolderAction::Revoke, signature)),
            _ => None,
        };
        if let Some((action, signature)) = signed
            && let Err(e) = verify_holder(action, &record.id, decoded.slot, &tls_spki, signature)
        {
            self.flag(Discrepancy::at(
                index,
                format!(
                    "{} of {} not signed by the bound TLS key ({e}): the curator ended a \
                     binding its holder did not ask to end",
                    action.as_str(),
                    hex::encode(record.id)
                ),
            ));
        }
        if let Err(e) = self.rbe.release(&decoded) {
            self.flag(Discrepancy::at(
                index,
                format!("RBE release of slot {}: {e}", decoded.slot),
            ));
        }
    }

    /// Fetches `/v1/params` and `/v1/registry` at one log size: the
    /// registry's version is the log size; the parameters change only with
    /// a bind, so parameters fetched before and after the registry that are
    /// equal are those of the registry's log size. Retries if a bind lands
    /// in between.
    async fn served_state(&mut self) -> Result<(u64, Vec<u8>, Vec<u8>), AuditError> {
        let mut last = None;
        for _ in 0..5 {
            let before = self.client.get_bytes("/v1/params?format=binary").await?;
            let registry = self.client.get_bytes("/v1/registry").await?;
            let after = self.client.get_bytes("/v1/params?format=binary").await?;
            match RegistrySnapshot::decode(&registry) {
                Ok(r) if before == after => return Ok((r.version(), after, registry)),
                Ok(_) => last = Some("the parameters changed during the download".to_owned()),
                Err(e) => last = Some(format!("served registry does not decode: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(AuditError::Http {
            path: "/v1/params, /v1/registry".into(),
            reason: last.unwrap_or_default(),
        })
    }
}

/// The checkpoint, verified: the curator's signature and the witness quorum.
struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

/// Verifies the served checkpoint note; reports what fails.
fn verify_checkpoint(
    report: &mut Report,
    verifier: &CheckpointVerifier,
    policy: Option<&WitnessPolicy>,
    note: String,
) -> Option<VerifiedCheckpoint> {
    let checkpoint = match verifier.verify(note.as_bytes()) {
        Ok(cp) => cp,
        Err(e) => {
            report.discrepancies.push(Discrepancy::global(format!(
                "the signed checkpoint does not verify: {e}"
            )));
            return None;
        }
    };
    if let Some(policy) = policy {
        match policy.check(note.as_bytes()) {
            Ok(w) => {
                report.witnessed_at = Some(w.timestamp);
                report.cosigners = w.cosigners.into_iter().map(|c| c.name).collect();
            }
            Err(e) => {
                report.discrepancies.push(Discrepancy::global(format!(
                    "the checkpoint (size {}) is refused: it lacks the witness quorum ({e})",
                    checkpoint.size
                )));
                return None;
            }
        }
    }
    Some(VerifiedCheckpoint { checkpoint, note })
}

/// Runs the audit. Discrepancies are in the report; `Err` means the audit
/// could not be carried out (network, configuration).
pub async fn run(
    config: &CheckConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, AuditError> {
    let policy = config.witness_policy()?;
    let client = CuratorClient::new(&config.curator, &config.curator_transport)?;
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
    let verified = verify_checkpoint(&mut report, &verifier, policy.as_ref(), note);
    let checkpoint = verified.as_ref().map(|v| v.checkpoint.clone());

    let mut replay = Replay {
        config,
        client: &client,
        crs: &crs,
        ids: DerivedRegistry::new(),
        rbe: RegistryState::new(crs.clone()),
        revealed_claims: HashSet::new(),
        bound: HashMap::new(),
        tree: MerkleTree::new(),
        frontier: Frontier::new(),
        last_at_ms: 0,
        unapplied: 0,
        report,
    };

    // The log up to the checkpoint, then its root.
    if let Some(cp) = &checkpoint {
        replay.report.checkpoint_size = Some(cp.size);
        if replay.extend_to(cp.size, progress).await? {
            check_root(&mut replay, cp).await?;
            check_state_line(&mut replay, cp);
            check_record_times(&mut replay);
        }
    }

    // The served parameters and registry, recomputed at their log size.
    let (version, params, registry) = replay.served_state().await?;
    if let Some(cp) = &checkpoint
        && version < cp.size
    {
        replay.flag(Discrepancy::global(format!(
            "the served registry is at log size {version}, behind the signed checkpoint \
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
        && let (Some(path), Some(v)) = (&config.state, verified)
    {
        let mut state = state;
        state.checkpoint = Some(SavedCheckpoint {
            verifier_key: key,
            size: v.checkpoint.size,
            root: hex::encode(v.checkpoint.root),
            note: v.note,
        });
        state.save(path)?;
        report.state_updated = true;
    }
    Ok(report)
}

/// The recomputed root against the checkpoint, and a few inclusion proofs
/// from the curator against it.
async fn check_root(replay: &mut Replay<'_>, cp: &Checkpoint) -> Result<(), AuditError> {
    let root = replay
        .tree
        .root(cp.size)
        .map_err(|e| AuditError::Config(e.to_string()))?;
    if root != cp.root {
        replay.flag(Discrepancy::global(format!(
            "the Merkle root of the log's first {} records is {}, but the signed checkpoint \
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

/// The checkpoint's state line against the follower state replayed from
/// its records: a false line would let the curator hand new filters a
/// registry the log does not give (witnesses that cosigned it did not
/// check).
fn check_state_line(replay: &mut Replay<'_>, cp: &Checkpoint) {
    let line = match state_digest(cp) {
        Ok(Some(line)) => line,
        Ok(None) => return,
        Err(e) => {
            replay.flag(Discrepancy::global(format!("the signed checkpoint: {e}")));
            return;
        }
    };
    if replay.unapplied > 0 {
        // Already reported: the replay lags the log.
        return;
    }
    let Some(state) = replay.ids.follower_state(&replay.frontier) else {
        return;
    };
    let derived: Hash = sha2::Sha256::digest(&state).into();
    if derived != line {
        replay.flag(Discrepancy::global(format!(
            "the signed checkpoint's state line (SHA-256 {}) is not the follower state derived \
             from its {} records ({}): new filters bootstrapping from it would install a \
             registry the log does not give",
            hex::encode(line),
            cp.size,
            hex::encode(derived)
        )));
    }
}

/// No record may be timed after the checkpoint's witnessed time (plus the
/// allowed skew): a curator moving the registry's clock ahead would have
/// every follower forget revoked ids whose tokens are still valid.
fn check_record_times(replay: &mut Replay<'_>) {
    let Some(witnessed) = replay.report.witnessed_at else {
        return;
    };
    let latest = witnessed
        .saturating_mul(1000)
        .saturating_add(MAX_CLOCK_SKEW_MS);
    if replay.last_at_ms > latest {
        replay.flag(Discrepancy::global(format!(
            "a record is timed {} ms, after the checkpoint's witnessed time {} s (plus {} ms of \
             allowed skew): the curator moved the registry's clock ahead",
            replay.last_at_ms, witnessed, MAX_CLOCK_SKEW_MS
        )));
    }
}

fn compare_state(replay: &mut Replay<'_>, version: u64, params: &[u8], registry: &[u8]) {
    let mine = replay.rbe.public_params();
    if mine.to_bytes() != params {
        let detail = match PublicParams::from_bytes(params) {
            Ok(theirs) => {
                let blocks: Vec<String> = mine
                    .commitments()
                    .iter()
                    .zip(theirs.commitments())
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(i, _)| i.to_string())
                    .take(10)
                    .collect();
                format!(
                    "versions {} (replayed) and {} (served); block commitments differ in \
                     blocks [{}]",
                    mine.version(),
                    theirs.version(),
                    blocks.join(", ")
                )
            }
            Err(e) => format!("they do not decode: {e}"),
        };
        replay.flag(Discrepancy::global(format!(
            "the served public parameters (at log size {version}) are not those recomputed \
             from the log: {detail}"
        )));
    }
    if replay.unapplied > 0 {
        replay.flag(Discrepancy::global(format!(
            "the served registry cannot be compared: {} entries had no usable record",
            replay.unapplied
        )));
        return;
    }
    let mine = replay.ids.snapshot();
    if mine.encode() == registry {
        return;
    }
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
                        "{} is served but not live in the log",
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
        "the served registry (version {version}) is not the one recomputed from the log: \
         {detail}"
    )));
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
