//! Bind first, reveal later, against the real `mazu-curator` process and
//! real `mazu-witness` servers (in process): the agent reveals its token
//! only once the witnessed log shows its own binding first, and refuses
//! checkpoints without the witness quorum and records that do not give the
//! witnessed root. Every process is killed on drop.

mod common;

use core::time::Duration;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use common::{
    AgentFiles, AgentProcess, FixedCurator, Witnesses, id_of, mint, registry_entry, revealed,
    spki_hash_of_pem, write_token,
};
use mazu_agent::state::RegistrationOutcome;
use mazu_agent::transparency::CheckpointFile;
use mazu_log::cosignature::{WitnessPolicy, WitnessVerifier};
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::free_port;

const WAIT: Duration = Duration::from_secs(90);

/// A curator whose checkpoints `witnesses` cosign (quorum: `curator_quorum`
/// of them), started; and the witnesses.
fn witnessed_curator(
    mesh: &Mesh,
    count: usize,
    curator_quorum: usize,
) -> (FixedCurator, Witnesses) {
    let mut curator = FixedCurator::new(mesh, free_port().expect("port")).expect("curator");
    let log = curator.fix_checkpoint_key(7);
    let witnesses = Witnesses::start(count, &log);
    curator.add_args(witnesses.curator_args());
    curator.add_args(vec![
        "--witness-quorum".to_owned(),
        curator_quorum.to_string(),
    ]);
    curator.start().expect("start curator");
    (curator, witnesses)
}

/// The agent's flags: the curator's pinned checkpoint key and `witnesses`.
fn agent_flags(curator: &FixedCurator, witnesses: &[String], quorum: usize) -> Vec<String> {
    let (status, key) = common::http_get(curator.port, "/v1/checkpoint/key").expect("key");
    assert_eq!(status, 200);
    let mut flags = vec![
        "--checkpoint-key".to_owned(),
        String::from_utf8(key).expect("utf-8").trim().to_owned(),
        "--witness-quorum".to_owned(),
        quorum.to_string(),
    ];
    flags.extend(witnesses.iter().cloned());
    flags
}

fn start_agent(curator_url: &str, files: &AgentFiles, flags: &[String]) -> AgentProcess {
    let mut extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    extra.extend(["--cert-dir", files.certs.to_str().expect("utf-8")]);
    AgentProcess::start(curator_url, &files.token_file, &files.state, &extra)
}

fn outcome(state: &Path) -> Option<RegistrationOutcome> {
    let bytes = std::fs::read(state.join("outcome.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Two witnesses, quorum 2: registered and served, the reveal logged after
/// the bind, and the checkpoint the agent keeps cosigned by both.
#[test]
fn binds_then_reveals_under_a_checkpoint_both_witnesses_cosigned() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh, 2, 2);
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let flags = agent_flags(&curator, &witnesses.agent_args(), 2);
    let mut agent = start_agent(&curator.url(), &files, &flags);
    let status = agent.wait_status(WAIT, |s| s.log_index.is_some());

    assert_eq!(status.id, id_of(&token));
    assert_eq!(
        status.log_index,
        Some(0),
        "the bind is the log's first entry"
    );
    let entry = registry_entry(curator.port, &status.id).expect("bound");
    assert_eq!(entry["revealed"], true);
    let cert = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert");
    assert_eq!(entry["spki_hash"], spki_hash_of_pem(&cert));
    assert_eq!(status.spki_hash, spki_hash_of_pem(&cert));
    // The log: bind at 0, then the reveal.
    let log = common::log_entries(curator.port);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].body.kind_name(), "bind");
    assert_eq!(log[1].body.kind_name(), "reveal");

    // The remembered checkpoint carries both witnesses' cosignatures.
    let file: CheckpointFile = serde_json::from_slice(
        &std::fs::read(files.state.join("checkpoint.json")).expect("checkpoint.json"),
    )
    .expect("json");
    let note = file.checkpoint.expect("accepted").note;
    let verifiers = witnesses
        .servers
        .iter()
        .map(|(_, vkey)| WitnessVerifier::parse(vkey).expect("vkey"))
        .collect();
    let policy = WitnessPolicy::new(verifiers, 2).expect("policy");
    let witnessed = policy.check(note.as_bytes()).expect("cosigned by both");
    assert_eq!(witnessed.cosigners.len(), 2);
    assert!(
        !std::fs::read_to_string(files.state.join("outcome.json"))
            .is_ok_and(|t| t.contains("front_run")),
        "no refusal"
    );
    assert_eq!(agent.terminate(), Some(0));
}

/// Someone who saw the id binds it to another key first (the curator may
/// do it: a bind carries no token). The agent never sends the token, says
/// `front_run`, and registers the next token normally.
#[test]
fn a_front_run_binding_keeps_the_token_secret() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh, 1, 1);
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "victim");
    let id = id_of(&token);
    let thief = curator
        .bind(&id, common::an_hour_from_now())
        .expect("front-running bind");
    write_token(&files.token_file, &token);
    let flags = agent_flags(&curator, &witnesses.agent_args(), 1);
    let mut agent = start_agent(&curator.url(), &files, &flags);
    agent.wait_log(WAIT, "front_run");
    // outcome.json is written right after the log line.
    let start = std::time::Instant::now();
    while outcome(&files.state).is_none() && start.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    let outcome = outcome(&files.state).expect("outcome.json");
    assert_eq!(outcome.reason, "front_run");
    assert_eq!(outcome.id, id);
    assert!(!outcome.token_revealed);
    assert!(outcome.detail.contains(&thief), "{}", outcome.detail);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.running());
    // The token never reached the curator: no reveal of the id in the log,
    // the first binding is the thief's, no certificate served, and the
    // token is not stored.
    assert!(!revealed(curator.port, &id), "{}", agent.log());
    let entry = registry_entry(curator.port, &id).expect("bound by the thief");
    assert_eq!(entry["spki_hash"], thief.as_str());
    assert!(agent.status().is_none());
    assert!(!files.certs.join("cert.pem").exists());
    assert!(
        !files
            .state
            .join("registrations")
            .join(&id)
            .join("token")
            .exists(),
        "the front-run token is not stored"
    );
    // Not retried: one refusal.
    assert_eq!(
        agent.log().matches("reason=\"front_run\"").count(),
        1,
        "{}",
        agent.log()
    );

    // The next token registers.
    let next = mint(&mesh, "shop", "victim");
    write_token(&files.token_file, &next);
    let status = agent.wait_status(WAIT, |s| s.id == id_of(&next));
    assert!(revealed(curator.port, &status.id));
    assert_eq!(
        status.registration_refused.map(|o| o.reason).as_deref(),
        Some("front_run"),
        "status.json keeps reporting the last refusal"
    );
}

/// The only witness is down when the agent binds: the curator logs the
/// bind but answers `503 witness_unavailable`; the agent says what it waits
/// for and re-sends the identical request, and once the witness is up the
/// same entry (not a second bind) is answered and the registration
/// completes.
#[test]
fn a_bind_waiting_for_witnesses_is_resent_identically() {
    let mesh = Mesh::new();
    let mut curator = FixedCurator::new(&mesh, free_port().expect("port")).expect("curator");
    let log = curator.fix_checkpoint_key(9);
    let mut witnesses = Witnesses::start(0, &log);
    let (config, addr, vkey) = witnesses.prepare(&log);
    curator.add_args(vec![
        "--witness".to_owned(),
        format!("http://{addr}={vkey}"),
        "--insecure-plain-http-witness".to_owned(),
        "--witness-timeout-ms".to_owned(),
        "300".to_owned(),
        "--witness-refresh-secs".to_owned(),
        "1".to_owned(),
    ]);
    curator.start().expect("start curator");
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let flags = agent_flags(&curator, &["--witness".to_owned(), vkey], 1);
    let mut agent = start_agent(&curator.url(), &files, &flags);
    agent.wait_log(WAIT, "have not cosigned a checkpoint covering it yet");
    assert!(agent.status().is_none());
    assert!(!revealed(curator.port, &id_of(&token)));

    witnesses.start_config(config);
    let status = agent.wait_status(WAIT, |s| s.log_index.is_some());
    assert_eq!(status.id, id_of(&token));
    let log = common::log_entries(curator.port);
    let binds = log
        .iter()
        .filter(|e| e.body.kind_name() == "bind" && hex::encode(e.id) == status.id)
        .count();
    assert_eq!(binds, 1, "the re-sent request did not bind twice");
    assert!(revealed(curator.port, &status.id));
}

/// The curator's witness quorum is 1 of 2, the agent's is 2: the bind
/// answer's checkpoint lacks the agent's quorum, so the agent never
/// reveals.
#[test]
fn a_checkpoint_below_the_quorum_is_refused() {
    let mesh = Mesh::new();
    let mut curator = FixedCurator::new(&mesh, free_port().expect("port")).expect("curator");
    let log = curator.fix_checkpoint_key(8);
    let witnesses = Witnesses::start(2, &log);
    // The curator only asks the first witness.
    let first = &witnesses.servers[0];
    curator.add_args(vec![
        "--witness".to_owned(),
        format!("http://{}={}", first.0, first.1),
        "--insecure-plain-http-witness".to_owned(),
    ]);
    curator.start().expect("start curator");
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let flags = agent_flags(&curator, &witnesses.agent_args(), 2);
    let mut agent = start_agent(&curator.url(), &files, &flags);
    agent.wait_log(WAIT, "not cosigned by the witness quorum");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(agent.running());
    assert!(!revealed(curator.port, &id_of(&token)), "{}", agent.log());
    assert!(agent.status().is_none());
    assert!(
        agent.log().contains("1 of the required 2"),
        "{}",
        agent.log()
    );
}

/// An attacker between agent and curator rewrites the follower state and
/// one record of every `GET /v1/log/records` answer: the state does not
/// hash to the witnessed checkpoint's state line (not used), the records
/// do not give its root, so the agent never reveals.
#[test]
fn records_that_do_not_give_the_witnessed_root_are_refused() {
    let mesh = Mesh::new();
    let (curator, witnesses) = witnessed_curator(&mesh, 1, 1);
    let proxy = TamperingProxy::start(curator.port);
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let flags = agent_flags(&curator, &witnesses.agent_args(), 1);
    let mut agent = start_agent(&format!("http://127.0.0.1:{}", proxy.port), &files, &flags);
    agent.wait_log(
        WAIT,
        "the follower state it served for a witnessed checkpoint does not hash to the \
         checkpoint's state line; not used",
    );
    agent.wait_log(WAIT, "do not give its signed checkpoint's root");
    // Refused like a polled checkpoint: with its kind and the offered note.
    agent.wait_log(WAIT, "refusing the curator's checkpoint");
    let log = agent.log();
    assert!(log.contains("kind=\"records_mismatch\""), "{log}");
    assert!(log.contains("offered_checkpoint=Some("), "{log}");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(agent.running());
    assert!(!revealed(curator.port, &id_of(&token)), "{}", agent.log());
    assert!(agent.status().is_none());
}

/// `--insecure-no-witness` is required without `--witness`, and excludes it.
#[test]
fn no_witness_needs_the_explicit_development_flag() {
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s");
        let mut args = vec![
            "run",
            "--curator",
            "http://127.0.0.1:1",
            "--token-file",
            "/nonexistent/token",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ];
        args.extend(extra);
        let out = common::agent_command(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            state.exists(),
        )
    };
    let (code, stderr, created) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--insecure-no-witness"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!created, "refused before touching the state directory");
    let w = mazu_log::CosignatureSigner::new("w.example", &[3; 32]).expect("witness");
    let vkey = w.verifier().to_vkey();
    let (code, stderr, _) = run(&["--witness", &vkey, "--insecure-no-witness"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr, _) = run(&["--witness", &vkey, "--witness-quorum", "2"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--witness-quorum"), "{stderr}");
}

/// A man in the middle: forwards every request to the curator and changes
/// the first record of each `GET /v1/log/records` answer (its time), which
/// still decodes but has another leaf hash, and the last byte of each
/// `GET /v1/log/state` answer.
struct TamperingProxy {
    port: u16,
}

impl TamperingProxy {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = forward(stream, upstream);
                });
            }
        });
        TamperingProxy { port }
    }
}

fn forward(mut stream: TcpStream, upstream: u16) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or("GET"), words.next().unwrap_or("/"));
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let (status, mut answer) = mazu_testkit::http::request(
        upstream,
        method,
        path,
        (method == "POST").then_some(body.as_str()),
    )
    .map_err(std::io::Error::other)?;
    if status == 200
        && path.starts_with("/v1/log/records")
        && let Ok(mut records) = mazu_log::record::decode_records(&answer)
        && let Some(first) = records.first_mut()
    {
        first.at_ms ^= 1;
        answer = records.iter().flat_map(|r| r.to_bytes()).collect();
    }
    if status == 200
        && path.starts_with("/v1/log/state")
        && let Some(last) = answer.last_mut()
    {
        *last ^= 1;
    }
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    )?;
    stream.write_all(&answer)?;
    stream.flush()
}
