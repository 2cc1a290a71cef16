//! `mazu-agent encrypt` recomputes the recipient's block commitment from the
//! witnessed log (real `mazu-curator`, real `mazu-witness` in process) and
//! refuses a curator whose `GET /v1/params` serves another one, and
//! recipients whose binding is not live. Every process is killed on drop.

mod common;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use common::{
    AgentFiles, AgentProcess, FixedCurator, Witnesses, agent_command, id_of, mint, write_token,
};
use mazu_rbe::bls12_381_plus::{G1Affine, G1Projective};
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::free_port;

const WAIT: Duration = Duration::from_secs(90);

/// A curator whose checkpoints one witness cosigns (quorum 1), started.
fn witnessed_curator(mesh: &Mesh) -> (FixedCurator, Witnesses) {
    let mut curator = FixedCurator::new(mesh, free_port().expect("port")).expect("curator");
    let log = curator.fix_checkpoint_key(11);
    let witnesses = Witnesses::start(1, &log);
    curator.add_args(witnesses.curator_args());
    curator.add_args(vec!["--witness-quorum".to_owned(), "1".to_owned()]);
    curator.start().expect("start curator");
    (curator, witnesses)
}

/// The log flags of agent and encryptor: pinned checkpoint key, witnesses.
fn log_flags(curator: &FixedCurator, witnesses: &Witnesses) -> Vec<String> {
    let (status, key) = common::http_get(curator.port, "/v1/checkpoint/key").expect("key");
    assert_eq!(status, 200);
    let mut flags = vec![
        "--checkpoint-key".to_owned(),
        String::from_utf8(key).expect("utf-8").trim().to_owned(),
        "--witness-quorum".to_owned(),
        "1".to_owned(),
    ];
    flags.extend(witnesses.agent_args());
    flags
}

/// The size of the curator's witnessed checkpoint.
fn witnessed_size(port: u16) -> u64 {
    let (_, note) = common::http_get(port, "/v1/checkpoint").expect("checkpoint");
    String::from_utf8_lossy(&note)
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

fn wait_witnessed(port: u16, size: u64) {
    let start = Instant::now();
    while witnessed_size(port) < size {
        assert!(
            start.elapsed() < WAIT,
            "the log was never witnessed at {size}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A registered agent (bind and reveal witnessed); its id.
fn registered_agent(
    mesh: &Mesh,
    curator: &FixedCurator,
    flags: &[String],
    files: &AgentFiles,
) -> (AgentProcess, String) {
    let token = mint(mesh, "shop", "reader");
    write_token(&files.token_file, &token);
    let extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut agent = AgentProcess::start(&curator.url(), &files.token_file, &files.state, &extra);
    let status = agent.wait_status(WAIT, |s| s.log_index.is_some());
    assert_eq!(status.id, id_of(&token));
    let start = Instant::now();
    while !common::revealed(curator.port, &status.id) {
        assert!(start.elapsed() < WAIT, "never revealed");
        thread::sleep(Duration::from_millis(100));
    }
    wait_witnessed(curator.port, 2);
    (agent, status.id)
}

fn crs_digest(state: &Path) -> String {
    let crs = mazu_rbe::Crs::from_bytes(&std::fs::read(state.join("crs.bin")).expect("crs"))
        .expect("crs");
    hex::encode(crs.digest())
}

/// `mazu-agent encrypt` of `msg` to `id` through `url`, written to `out`.
fn encrypt(
    url: &str,
    flags: &[String],
    digest: &str,
    id: &str,
    msg: &Path,
    out: &Path,
) -> std::process::Output {
    let mut args: Vec<&str> = vec![
        "encrypt",
        "--curator",
        url,
        "--crs-sha256",
        digest,
        "--id",
        id,
        "--in",
        msg.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(flags.iter().map(String::as_str));
    agent_command(&args)
}

fn decrypt(url: &str, state: &Path, ct: &Path) -> std::process::Output {
    agent_command(&[
        "decrypt",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--curator",
        url,
        "--in",
        ct.to_str().expect("utf-8"),
    ])
}

#[track_caller]
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The honest path: the served commitment agrees with the witnessed log,
/// the recipient decrypts; again after another workload joins its block.
#[test]
fn encrypts_to_the_witnessed_commitment_and_the_recipient_decrypts() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh);
    let flags = log_flags(&curator, &witnesses);
    let files = AgentFiles::new();
    let (mut agent, id) = registered_agent(&mesh, &curator, &flags, &files);
    let digest = crs_digest(&files.state);
    let dir = files.dir.path();
    std::fs::write(dir.join("msg"), b"attack at dawn").expect("write");

    let out = encrypt(
        &curator.url(),
        &flags,
        &digest,
        &id,
        &dir.join("msg"),
        &dir.join("ct1"),
    );
    assert_ok(&out);
    // Another workload takes a slot of the same block (capacity 16: blocks
    // of 4, slots handed out in order): the commitment changes, and is
    // recomputed from both bind entries.
    curator.register(&mesh, "shop", "writer").expect("second");
    wait_witnessed(curator.port, 4);
    let out = encrypt(
        &curator.url(),
        &flags,
        &digest,
        &id,
        &dir.join("msg"),
        &dir.join("ct2"),
    );
    assert_ok(&out);
    let commitment = |name: &str| {
        mazu_rbe::Ciphertext::from_bytes(&std::fs::read(dir.join(name)).expect("ct"))
            .expect("ciphertext")
            .commitment()
            .to_compressed()
    };
    assert_ne!(commitment("ct1"), commitment("ct2"));
    for ct in ["ct1", "ct2"] {
        let out = decrypt(&curator.url(), &files.state, &dir.join(ct));
        assert_ok(&out);
        assert_eq!(out.stdout, b"attack at dawn");
    }
    assert_eq!(agent.terminate(), Some(0));
}

/// A curator (here: a front before the honest one) serving parameters in
/// which the recipient's block commitment is `a·h_i` is refused by name;
/// nothing is written. The same request through the honest curator works.
#[test]
fn a_forged_block_commitment_in_the_parameters_is_refused() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh);
    let flags = log_flags(&curator, &witnesses);
    let files = AgentFiles::new();
    let (mut agent, id) = registered_agent(&mesh, &curator, &flags, &files);
    let digest = crs_digest(&files.state);
    let dir = files.dir.path();
    std::fs::write(dir.join("msg"), b"attack at dawn").expect("write");

    let front = ForgingFront::start(curator.port);
    let out = encrypt(
        &front.url(),
        &flags,
        &digest,
        &id,
        &dir.join("msg"),
        &dir.join("forged"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("commitment_mismatch"), "{stderr}");
    assert!(
        std::fs::read(dir.join("forged")).map_or(true, |b| b.is_empty()),
        "no ciphertext under the forged commitment"
    );
    assert!(front.forged() > 0, "the front forged the parameters");

    let out = encrypt(
        &curator.url(),
        &flags,
        &digest,
        &id,
        &dir.join("msg"),
        &dir.join("ct"),
    );
    assert_ok(&out);
    let out = decrypt(&curator.url(), &files.state, &dir.join("ct"));
    assert_ok(&out);
    assert_eq!(out.stdout, b"attack at dawn");
    assert_eq!(agent.terminate(), Some(0));
}

/// Only a live binding is encrypted to: an id bound but never revealed
/// (anyone who saw it, the curator included, may have bound it) and an id
/// the log does not know are refused.
#[test]
fn an_unrevealed_or_unknown_recipient_is_refused() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh);
    let flags = log_flags(&curator, &witnesses);
    let files = AgentFiles::new();
    let (mut agent, _) = registered_agent(&mesh, &curator, &flags, &files);
    let digest = crs_digest(&files.state);
    let dir = files.dir.path();
    std::fs::write(dir.join("msg"), b"attack at dawn").expect("write");

    let bound_only = id_of(&mint(&mesh, "shop", "victim"));
    curator
        .bind(&bound_only, common::an_hour_from_now())
        .expect("bind");
    wait_witnessed(curator.port, 3);
    let out = encrypt(
        &curator.url(),
        &flags,
        &digest,
        &bound_only,
        &dir.join("msg"),
        &dir.join("a"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never revealed"), "{stderr}");

    let unknown = "ab".repeat(32);
    let out = encrypt(
        &curator.url(),
        &flags,
        &digest,
        &unknown,
        &dir.join("msg"),
        &dir.join("b"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no binding in the witnessed log"),
        "{stderr}"
    );

    // Without witnesses (and without the explicit development flag) the
    // encryptor refuses to start: configuration error.
    let out = encrypt(
        &curator.url(),
        &[],
        &digest,
        &unknown,
        &dir.join("msg"),
        &dir.join("c"),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(agent.terminate(), Some(0));
}

/// An HTTP front that relays GETs to the curator and rewrites the binary
/// `GET /v1/params` answer: every non-empty block's commitment becomes
/// `7·h_1` (a point whose discrete log over `h_1` the front knows).
struct ForgingFront {
    port: u16,
    forged: Arc<AtomicU64>,
}

impl ForgingFront {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let forged = Arc::new(AtomicU64::new(0));
        let count = forged.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                thread::spawn(move || {
                    let _ = relay(stream, upstream, &count);
                });
            }
        });
        ForgingFront { port, forged }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn forged(&self) -> u64 {
        self.forged.load(Ordering::SeqCst)
    }
}

fn relay(stream: TcpStream, upstream: u16, count: &AtomicU64) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
    }
    let (status, mut body) = mazu_testkit::http::get(upstream, &target)?;
    if status == 200 && target.starts_with("/v1/params") {
        let (_, crs) = mazu_testkit::http::get(upstream, "/v1/crs")?;
        let crs = mazu_rbe::Crs::from_bytes(&crs).map_err(|e| anyhow::anyhow!("{e}"))?;
        body = forge_params(&body, &crs)?;
        count.fetch_add(1, Ordering::SeqCst);
    }
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(&body)?;
    out.flush()?;
    Ok(())
}

/// The canonical parameters with every non-identity commitment replaced by
/// `7·h_1` (the commitments are the encoding's last `blocks × 48` bytes).
fn forge_params(bytes: &[u8], crs: &mazu_rbe::Crs) -> anyhow::Result<Vec<u8>> {
    let params = mazu_rbe::PublicParams::from_bytes(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let forged = G1Affine::from(
        G1Projective::from(crs.h(1).ok_or_else(|| anyhow::anyhow!("h_1"))?)
            * mazu_rbe::Scalar::from(7u64),
    )
    .to_compressed();
    let blocks = params.commitments().len();
    let mut out = bytes.to_vec();
    let first = out.len() - blocks * 48;
    for (k, c) in params.commitments().iter().enumerate() {
        if !bool::from(c.is_identity()) {
            out[first + k * 48..first + (k + 1) * 48].copy_from_slice(&forged);
        }
    }
    let check = mazu_rbe::PublicParams::from_bytes(&out).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(check.version() == params.version() && check != params);
    Ok(out)
}
