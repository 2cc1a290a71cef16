//! A curator that lies: an HTTP front between the mesh's agents and sidecars
//! and the real curator, holding the real curator's checkpoint key, as a
//! compromised control plane would.
//!
//! It forwards every request unchanged until told to [`Lie`]:
//! - [`Lie::FrontRun`]: on every `POST /v1/bindings` it first binds the same
//!   id to its own TLS key (reusing the victim's RBE registration, which binds
//!   the id and slot but not the TLS key), then forwards the victim's request.
//!   The curator logs the attacker's binding first.
//! - [`Lie::Rebind`]: serves records in which the victim's binding holds the
//!   attacker's TLS key, under either the honest witnessed checkpoint (the
//!   records then miss its root) or a checkpoint it signs itself for the
//!   rebound log, carrying the honest witnesses' cosignature lines (which do
//!   not verify for another root).
//! - [`Lie::RebindState`]: serves new sidecars a follower state (the
//!   bootstrap that skips the history) in which the victim's id holds the
//!   attacker's TLS key; the checkpoint and its state line stay honest (the
//!   witnesses would not cosign another line).
//! - [`Lie::Freeze`]: keeps serving the witnessed checkpoint it had when it
//!   froze, and no record past it, to hide everything that happens later.
//! - [`Lie::ForgeParameters`]: rewrites `GET /v1/params` (binary and JSON)
//!   so that the victim's block commitment is `a·h_i` for a scalar `a` the
//!   front knows (`h_i` the base of the victim's position): with it, it
//!   would recover the key of every message encrypted to that commitment.
//!
//! It terminates TLS with the curator's own TLS key (so agents and sidecars
//! that pin the curator accept it, as they would a compromised curator) and
//! relays over TLS pinned to the real curator. Told to
//! [`LyingCurator::present_unpinned_key`], it answers handshakes with a key
//! nobody pinned instead: an impostor that does not hold the curator's key.
//!
//! The front is a small blocking HTTP/1.1 proxy (one thread per connection,
//! `connection: close`); it is test plumbing, not a server to deploy.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::{Context as _, Result, anyhow, bail};
use base64ct::{Base64, Encoding as _};
use mazu_curator::api::views::BindingRequest;
use mazu_log::record::{LeafRecord, RecordBody, decode_records};
use mazu_log::{Checkpoint, CheckpointSigner, Frontier};
use mazu_service::tls::ServerTls;
use mazu_testkit::http::{self, Endpoint};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest as _, Sha256};

/// What the front does to the answers it relays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Lie {
    /// Relays everything unchanged.
    #[default]
    Honest,
    /// Binds every id it sees to the attacker's key before the victim does.
    FrontRun,
    /// Shows `victim`'s binding with the attacker's TLS key.
    Rebind {
        /// The victim's workload id (`None`: every binding).
        victim: Option<[u8; 32]>,
        /// Also sign a checkpoint of the rebound log with the curator's key
        /// (false: serve the honest witnessed checkpoint with rebound records).
        sign_own_checkpoint: bool,
    },
    /// Serves follower states in which `victim` holds the attacker's key.
    RebindState {
        /// The victim's workload id.
        victim: [u8; 32],
    },
    /// Serves the witnessed checkpoint it holds when this is set, forever.
    Freeze,
    /// Serves public parameters in which `victim`'s block commitment is
    /// `a·h_i` (`a` known to the front).
    ForgeParameters {
        /// The recipient's workload id.
        victim: [u8; 32],
    },
}

/// The attacker's TLS key, whose certificates the lies try to get admitted.
#[derive(Clone)]
pub struct AttackerKey {
    signing: p256::ecdsa::SigningKey,
    /// Its DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
}

impl AttackerKey {
    fn generate() -> Result<Self> {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| anyhow!("encoding the attacker's key: {e}"))?
            .as_bytes()
            .to_vec();
        Ok(AttackerKey { signing, spki })
    }

    /// SHA-256 of the SPKI, as in bind records.
    pub fn spki_hash(&self) -> [u8; 32] {
        Sha256::digest(&self.spki).into()
    }

    /// The signing key (for a certificate built by the attacker).
    pub fn signing_key(&self) -> p256::ecdsa::SigningKey {
        self.signing.clone()
    }
}

/// What the front has done, for the test's assertions.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Ids it front-ran, with the curator's status for its own binding.
    pub front_runs: Vec<(String, u16)>,
    /// Reveals it relayed (`POST /v1/bindings/{id}/reveal`), by id.
    pub reveals: Vec<String>,
    /// Record pages and checkpoints it altered.
    pub altered_answers: u64,
    /// Parameter answers it forged.
    pub forged_parameters: u64,
    /// Requests that reached it through a TLS handshake (whatever it did
    /// with them).
    pub requests: u64,
    /// Handshakes that failed (the client refused its key, or gave up).
    pub failed_handshakes: u64,
}

struct Shared {
    lie: Mutex<Lie>,
    frozen: Mutex<Option<(u64, Vec<u8>)>>,
    journal: Mutex<Journal>,
    attacker: AttackerKey,
    upstream: Endpoint,
    curator_data_dir: PathBuf,
    stop: AtomicBool,
    /// The curator's TLS identity (its key, read from its data directory).
    curator_tls: ServerTls,
    /// A TLS identity nobody pinned.
    impostor_tls: ServerTls,
    /// Whether handshakes get `impostor_tls`.
    impostor: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running lying front (stopped on drop).
pub struct LyingCurator {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl LyingCurator {
    /// Starts a front on a free port, relaying to the curator on `upstream`,
    /// whose data directory (with its checkpoint key) is `curator_data_dir`.
    pub fn start(upstream: u16, curator_data_dir: &Path) -> Result<LyingCurator> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let key_path = curator_data_dir.join("tls.key");
        let key = std::fs::read(&key_path)
            .ok()
            .and_then(|bytes| mazu_service::files::parse_key(&bytes))
            .ok_or_else(|| anyhow!("no TLS key in {}", key_path.display()))?;
        let curator_tls = ServerTls::from_secret(&key)?;
        let impostor_tls = ServerTls::from_secret(&rand::random())?;
        let shared = Arc::new(Shared {
            lie: Mutex::new(Lie::Honest),
            frozen: Mutex::new(None),
            journal: Mutex::new(Journal::default()),
            attacker: AttackerKey::generate()?,
            upstream: Endpoint::pinned(upstream, curator_tls.pin()),
            curator_data_dir: curator_data_dir.to_owned(),
            stop: AtomicBool::new(false),
            curator_tls,
            impostor_tls,
            impostor: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                thread::spawn(move || {
                    // A client that hung up is not the test's failure.
                    let _ = serve(&shared, stream);
                });
            }
        });
        Ok(LyingCurator {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// The port agents and sidecars use as "the curator".
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts telling `lie` (from the next request on).
    pub fn set(&self, lie: Lie) {
        *lock(&self.shared.frozen) = None;
        *lock(&self.shared.lie) = lie;
    }

    /// From the next connection on, answers handshakes with a key nobody
    /// pinned (`true`) or with the curator's key (`false`).
    pub fn present_unpinned_key(&self, unpinned: bool) {
        self.shared.impostor.store(unpinned, Ordering::SeqCst);
    }

    /// The attacker's TLS key.
    pub fn attacker(&self) -> &AttackerKey {
        &self.shared.attacker
    }

    /// What it has done so far.
    pub fn journal(&self) -> Journal {
        lock(&self.shared.journal).clone()
    }
}

impl Drop for LyingCurator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One request as read from a client.
struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// One answer to relay.
struct Answer {
    status: u16,
    content_type: String,
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn serve(shared: &Shared, stream: TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let identity = if shared.impostor.load(Ordering::SeqCst) {
        &shared.impostor_tls
    } else {
        &shared.curator_tls
    };
    let mut tls =
        rustls::StreamOwned::new(rustls::ServerConnection::new(identity.config())?, stream);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            lock(&shared.journal).failed_handshakes += 1;
            return Err(e.into());
        }
    }
    let mut reader = BufReader::new(tls);
    let request = read_request(&mut reader)?;
    lock(&shared.journal).requests += 1;
    let answer = respond(shared, &request)?;
    let out = reader.get_mut();
    write!(
        out,
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    )?;
    for (name, value) in &answer.extra_headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    out.write_all(b"\r\n")?;
    out.write_all(&answer.body)?;
    out.conn.send_close_notify();
    out.flush()?;
    Ok(())
}

fn read_request(reader: &mut impl BufRead) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().ok_or_else(|| anyhow!("no method"))?.to_owned();
    let target = parts.next().ok_or_else(|| anyhow!("no target"))?.to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        target,
        body,
    })
}

/// Sends one request to the real curator; its answer.
fn upstream(shared: &Shared, method: &str, target: &str, body: &[u8]) -> Result<Answer> {
    let mut stream = shared
        .upstream
        .connect()
        .context("connecting to the real curator")?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nhost: mazu-curator\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status from the curator: {status_line:?}"))?;
    let mut content_type = "application/octet-stream".to_owned();
    let mut extra_headers = Vec::new();
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        match name.as_str() {
            "content-type" => content_type = value,
            "content-length" => length = Some(value.parse::<usize>()?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" | "date" => {}
            _ => extra_headers.push((name, value)),
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(length) = length {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        http::read_until_closed(&mut reader)?
    };
    Ok(Answer {
        status,
        content_type,
        extra_headers,
        body,
    })
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)?;
        if size == 0 {
            let mut end = String::new();
            reader.read_line(&mut end)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn respond(shared: &Shared, request: &Request) -> Result<Answer> {
    let lie = lock(&shared.lie).clone();
    let path = request.target.split('?').next().unwrap_or("");
    if request.method == "POST"
        && let Some(id) = path
            .strip_prefix("/v1/bindings/")
            .and_then(|rest| rest.strip_suffix("/reveal"))
    {
        lock(&shared.journal).reveals.push(id.to_owned());
    }
    match (&lie, request.method.as_str(), path) {
        (Lie::FrontRun, "POST", "/v1/bindings") => {
            front_run(shared, &request.body)?;
            upstream(shared, "POST", &request.target, &request.body)
        }
        (Lie::Rebind { victim, .. }, "GET", "/v1/log/records") => {
            let mut answer = upstream(shared, "GET", &request.target, &[])?;
            if answer.status == 200 {
                let mut records = decode_records(&answer.body)
                    .map_err(|e| anyhow!("the curator's records: {e}"))?;
                rebind(&mut records, victim, &shared.attacker.spki_hash());
                answer.body = records.iter().flat_map(LeafRecord::to_bytes).collect();
                lock(&shared.journal).altered_answers += 1;
            }
            Ok(answer)
        }
        (
            Lie::Rebind {
                victim,
                sign_own_checkpoint: true,
            },
            "GET",
            "/v1/checkpoint",
        ) => {
            let answer = upstream(shared, "GET", &request.target, &[])?;
            if answer.status != 200 {
                return Ok(answer);
            }
            let forged = forge_checkpoint(shared, &answer.body, victim)?;
            lock(&shared.journal).altered_answers += 1;
            Ok(Answer {
                body: forged,
                ..answer
            })
        }
        (Lie::RebindState { victim }, "GET", "/v1/log/state") => {
            let mut answer = upstream(shared, "GET", &request.target, &[])?;
            if answer.status == 200
                && rebind_state(&mut answer.body, victim, &shared.attacker.spki_hash())
            {
                lock(&shared.journal).altered_answers += 1;
            }
            Ok(answer)
        }
        (Lie::Freeze, "GET", "/v1/checkpoint") => {
            let mut frozen = lock(&shared.frozen);
            if frozen.is_none() {
                let answer = upstream(shared, "GET", &request.target, &[])?;
                if answer.status != 200 {
                    return Ok(answer);
                }
                *frozen = Some((note_size(&answer.body)?, answer.body));
            }
            let (_, note) = frozen.as_ref().ok_or_else(|| anyhow!("just set"))?;
            Ok(Answer {
                status: 200,
                content_type: "text/plain; charset=utf-8".to_owned(),
                extra_headers: Vec::new(),
                body: note.clone(),
            })
        }
        (Lie::Freeze, "GET", "/v1/log/records") => {
            let frozen_size = lock(&shared.frozen).as_ref().map(|(size, _)| *size);
            let target = match frozen_size {
                Some(size) => cap_records_end(&request.target, size),
                None => request.target.clone(),
            };
            upstream(shared, "GET", &target, &[])
        }
        (Lie::ForgeParameters { victim }, "GET", "/v1/params") => {
            let mut answer = upstream(shared, "GET", &request.target, &[])?;
            if answer.status == 200 {
                answer.body = forge_parameters(shared, &answer.body, victim)?;
                // The curator's ETag named the honest parameters.
                answer.extra_headers.retain(|(name, _)| name != "etag");
                lock(&shared.journal).forged_parameters += 1;
            }
            Ok(answer)
        }
        _ => upstream(shared, &request.method, &request.target, &request.body),
    }
}

/// The parameters `honest` (binary or JSON, as served) with the commitment
/// of `victim`'s block replaced by `a·h_i`: `a` random (the front would
/// keep it), `h_i` the CRS base of the victim's position (its slot from
/// `GET /v1/proofs/{id}`, the CRS from `GET /v1/crs`).
fn forge_parameters(shared: &Shared, honest: &[u8], victim: &[u8; 32]) -> Result<Vec<u8>> {
    use mazu_rbe::bls12_381_plus::{G1Affine, G1Projective};

    let proof = upstream(
        shared,
        "GET",
        &format!("/v1/proofs/{}", fixtures_hex(victim)),
        &[],
    )?;
    if proof.status != 200 {
        bail!("the victim's proof answered {}", proof.status);
    }
    let proof: serde_json::Value = serde_json::from_slice(&proof.body)?;
    let slot = proof["slot"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| anyhow!("no slot in the victim's proof"))?;
    let crs = upstream(shared, "GET", "/v1/crs", &[])?;
    let crs = mazu_rbe::Crs::from_bytes(&crs.body).map_err(|e| anyhow!("the CRS: {e}"))?;
    let position = crs
        .dimensions()
        .locate(slot)
        .ok_or_else(|| anyhow!("slot {slot} out of range"))?;
    let base = crs
        .h(position.position)
        .ok_or_else(|| anyhow!("no h_{}", position.position))?;
    // Any scalar the front knows; zero would give the identity.
    let a = mazu_rbe::Scalar::from(rand::random::<u64>() | 1);
    let forged = G1Affine::from(G1Projective::from(base) * a).to_compressed();
    let block = position.block as usize;

    if let Ok(params) = mazu_rbe::PublicParams::from_bytes(honest) {
        // Binary: the commitments are the encoding's last `blocks × 48` bytes.
        let blocks = params.commitments().len();
        let first = honest
            .len()
            .checked_sub(blocks * 48)
            .ok_or_else(|| anyhow!("parameters shorter than their commitments"))?;
        let mut out = honest.to_vec();
        out[first + block * 48..first + (block + 1) * 48].copy_from_slice(&forged);
        mazu_rbe::PublicParams::from_bytes(&out).map_err(|e| anyhow!("forged params: {e}"))?;
        return Ok(out);
    }
    let mut json: serde_json::Value =
        serde_json::from_slice(honest).context("the parameters are neither binary nor JSON")?;
    let slot_value = json
        .get_mut("commitments")
        .and_then(|c| c.get_mut(block))
        .ok_or_else(|| anyhow!("no commitment {block} in the JSON parameters"))?;
    *slot_value = serde_json::Value::String(Base64::encode_string(&forged));
    Ok(serde_json::to_vec(&json)?)
}

fn fixtures_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binds the id of the victim's binding request to the attacker's key first.
fn front_run(shared: &Shared, victim_body: &[u8]) -> Result<()> {
    let request: BindingRequest =
        serde_json::from_slice(victim_body).context("the victim's binding request")?;
    let registration: mazu_rbe::Registration =
        serde_json::from_value(request.registration.clone()).context("its RBE registration")?;
    let id: [u8; 32] = hex_id(&request.id)?;
    let registration_bytes = registration.to_bytes();
    let message = mazu_curator::pop::pop_message(
        &mazu_curator::pop::PopClaim {
            id: &id,
            slot: request.slot,
            token_expiry: request.token_expiry,
            registration_bytes: &registration_bytes,
        },
        &shared.attacker.spki,
    );
    let signature: p256::ecdsa::Signature = shared.attacker.signing.sign(&message);
    let forged = BindingRequest {
        tls_spki: Base64::encode_string(&shared.attacker.spki),
        tls_signature: Base64::encode_string(&signature.to_bytes()),
        ..request
    };
    let body = serde_json::to_vec(&forged)?;
    let answer = upstream(shared, "POST", "/v1/bindings", &body)?;
    lock(&shared.journal)
        .front_runs
        .push((forged.id, answer.status));
    Ok(())
}

fn hex_id(text: &str) -> Result<[u8; 32]> {
    let bytes = hex_decode(text).ok_or_else(|| anyhow!("not a hex id: {text}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| anyhow!("not a 32-byte id: {text}"))
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Makes every bind record of `victim` (of every id if `None`) name the
/// attacker's key.
fn rebind(records: &mut [LeafRecord], victim: &Option<[u8; 32]>, attacker: &[u8; 32]) {
    for record in records
        .iter_mut()
        .filter(|r| victim.is_none_or(|v| v == r.id))
    {
        if let RecordBody::Bind { spki_hash, .. } = &mut record.body {
            *spki_hash = *attacker;
        }
    }
}

/// Makes `victim`'s entry of an encoded follower state
/// (`LogFollower::encode_state`) name the attacker's key, in place; false if
/// the state does not hold the victim.
fn rebind_state(state: &mut [u8], victim: &[u8; 32], attacker: &[u8; 32]) -> bool {
    use mazu_identity::registry::STATE_ENTRY_LEN;
    // Magic, format, clock, then the frontier: its size and one hash per set
    // bit of it, then the entry count.
    let Some(size) = state.get(13..21).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return false;
    };
    let entries_at = 21 + 32 * u64::from_be_bytes(size).count_ones() as usize + 4;
    let Some(entries) = state.get_mut(entries_at..) else {
        return false;
    };
    for entry in entries.chunks_exact_mut(STATE_ENTRY_LEN) {
        if entry[..32] == victim[..] {
            // id (32), kind (1), slot (4), then the key's hash.
            entry[37..69].copy_from_slice(attacker);
            return true;
        }
    }
    false
}

/// The size of a checkpoint note.
fn note_size(note: &[u8]) -> Result<u64> {
    let text = core::str::from_utf8(note)?;
    let body_end = text
        .find("\n\n")
        .ok_or_else(|| anyhow!("not a signed note"))?;
    Ok(Checkpoint::parse_body(&text[..=body_end])
        .map_err(|e| anyhow!("checkpoint body: {e}"))?
        .size)
}

fn cap_records_end(target: &str, size: u64) -> String {
    let start = target
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("start="))
        .unwrap_or("0");
    format!("/v1/log/records?start={start}&end={size}")
}

/// Signs, with the curator's own key, a checkpoint of the honest log's size
/// whose root is that of the rebound records, and appends the honest note's
/// witness cosignature lines.
fn forge_checkpoint(
    shared: &Shared,
    honest_note: &[u8],
    victim: &Option<[u8; 32]>,
) -> Result<Vec<u8>> {
    let text = core::str::from_utf8(honest_note)?;
    let (body, signatures) = text
        .split_once("\n\n")
        .ok_or_else(|| anyhow!("not a signed note"))?;
    let checkpoint = Checkpoint::parse_body(&format!("{body}\n"))
        .map_err(|e| anyhow!("checkpoint body: {e}"))?;
    let mut frontier = Frontier::new();
    while frontier.size() < checkpoint.size {
        let page = upstream(
            shared,
            "GET",
            &format!(
                "/v1/log/records?start={}&end={}",
                frontier.size(),
                checkpoint.size
            ),
            &[],
        )?;
        if page.status != 200 {
            bail!("records answered {}", page.status);
        }
        let mut records =
            decode_records(&page.body).map_err(|e| anyhow!("the curator's records: {e}"))?;
        if records.is_empty() {
            bail!("an empty records page below the checkpoint size");
        }
        rebind(&mut records, victim, &shared.attacker.spki_hash());
        for record in &records {
            frontier.push(record.leaf_hash());
        }
    }
    let key = std::fs::read_to_string(
        shared
            .curator_data_dir
            .join(mazu_curator::checkpoint::CHECKPOINT_KEY_FILE),
    )
    .context("reading the curator's checkpoint key")?;
    let secret = hex_id(key.trim())?;
    let signer = CheckpointSigner::new(&checkpoint.origin, &secret)
        .map_err(|e| anyhow!("the curator's key: {e}"))?;
    let signed = signer.sign(checkpoint.size, &frontier.root());
    // Keep the witnesses' lines (they cosigned the honest root, not this one).
    let witness_lines: String = signatures
        .lines()
        .filter(|line| !line.contains(&format!(" {} ", checkpoint.origin)))
        .map(|line| format!("{line}\n"))
        .collect();
    Ok(format!("{signed}{witness_lines}").into_bytes())
}
