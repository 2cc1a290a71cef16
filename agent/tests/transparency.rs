//! Checkpoint enforcement against the real `mazu-curator` process: the
//! agent accepts and remembers the curator's signed checkpoints, and
//! refuses a curator that rewrites its log or changes its checkpoint key,
//! while it keeps serving its certificate. Every process is killed on drop.

mod common;

use core::time::Duration;
use std::path::Path;

use common::{AgentProcess, FixedCurator, agent_command, http_get, mint, mode, write_token};
use mazu_agent::state::Status;
use mazu_agent::transparency::CheckpointFile;
use mazu_log::checkpoint::CheckpointSigner;
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::free_port;

const WAIT: Duration = Duration::from_secs(60);

/// A curator on its own port, started.
fn curator(mesh: &Mesh) -> FixedCurator {
    let mut curator = FixedCurator::new(mesh, free_port().expect("port")).expect("curator");
    curator.start().expect("start curator");
    curator
}

/// A token file for `ns/sa` in `dir`.
fn token_file(mesh: &Mesh, dir: &Path, service_account: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{service_account}.token"));
    write_token(&path, &mint(mesh, "shop", service_account));
    path
}

fn checkpoint_file(state: &Path) -> CheckpointFile {
    let bytes = std::fs::read(state.join("checkpoint.json")).expect("checkpoint.json");
    serde_json::from_slice(&bytes).expect("checkpoint.json parses")
}

fn served_key(curator: &FixedCurator) -> String {
    let (status, body) = http_get(curator.port, "/v1/checkpoint/key").expect("key");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8").trim().to_owned()
}

fn refused_kind(status: &Status) -> Option<&str> {
    status.checkpoint_refused.as_ref().map(|r| r.kind.as_str())
}

/// (a) A clean run: checkpoints accepted as the log grows, the own entry
/// proven included, `checkpoint.json` persisted, and a restart keeps it.
#[test]
fn checkpoints_are_accepted_remembered_and_kept_across_a_restart() {
    let mesh = Mesh::new();
    let curator = curator(&mesh);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(&mesh, dir.path(), "web");
    let state = dir.path().join("state");
    let mut agent = AgentProcess::start(&curator.url(), &token, &state, &[]);
    let status = agent.wait_status(WAIT, |s| s.log_index.is_some());
    assert_eq!(status.log_index, Some(0), "the first registration's bind");
    // Bind and reveal.
    assert_eq!(status.checkpoint_size, Some(2));
    assert!(status.checkpoint_refused.is_none());
    agent.wait_log(WAIT, "trusting the curator's checkpoint key on first use");

    // Other workloads register (two entries each): the accepted
    // checkpoint follows.
    curator.register(&mesh, "shop", "cart").expect("register");
    curator.register(&mesh, "shop", "pay").expect("register");
    let status = agent.wait_status(WAIT, |s| s.checkpoint_size == Some(6));
    assert_eq!(status.log_index, Some(0));

    let file = checkpoint_file(&state);
    assert_eq!(mode(&state.join("checkpoint.json")), 0o600);
    assert_eq!(
        file.verifier_key.as_deref(),
        Some(served_key(&curator).as_str())
    );
    assert!(!file.pinned);
    let accepted = file.checkpoint.expect("an accepted checkpoint");
    assert_eq!(accepted.size, 6);
    assert!(accepted.note.contains("\n6\n"), "{}", accepted.note);
    assert_eq!(file.own_entry.expect("own entry").included_in, Some(6));
    assert_eq!(agent.terminate(), Some(0));

    // A restart remembers the checkpoint and carries on from it.
    let mut again = AgentProcess::start(&curator.url(), &token, &state, &[]);
    again.wait_log(WAIT, "not registering again");
    let status = again.wait_status(WAIT, |s| s.checkpoint_size == Some(6));
    assert_eq!(status.log_index, Some(0));
    curator.register(&mesh, "shop", "ship").expect("register");
    again.wait_status(WAIT, |s| s.checkpoint_size == Some(8));
    let log = again.log();
    assert!(
        !log.contains("trusting the curator's checkpoint key"),
        "{log}"
    );
    assert!(!log.contains("refusing"), "{log}");
}

/// (b) The curator rewrites its log on disk (and signs checkpoints over the
/// rewritten log): the agent refuses, keeps its checkpoint and certificate,
/// says so in `status.json` and its log, and accepts again once the
/// original history is back.
#[test]
fn a_curator_that_rewrites_its_log_is_refused() {
    let mesh = Mesh::new();
    let mut curator = curator(&mesh);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(&mesh, dir.path(), "web");
    let state = dir.path().join("state");
    let certs = dir.path().join("certs");
    let mut agent = AgentProcess::start(
        &curator.url(),
        &token,
        &state,
        &["--cert-dir", certs.to_str().expect("utf-8")],
    );
    agent.wait_status(WAIT, |s| s.log_index.is_some());
    curator.register(&mesh, "shop", "cart").expect("register");
    curator.register(&mesh, "shop", "pay").expect("register");
    agent.wait_status(WAIT, |s| s.checkpoint_size == Some(6));
    let cert = std::fs::read_to_string(certs.join("cert.pem")).expect("cert.pem");
    let remembered = checkpoint_file(&state).checkpoint.expect("accepted");
    curator.stop();
    let (header, frames) = curator.read_log();
    assert_eq!(frames.len(), 6, "bind and reveal of three workloads");

    // Two entries swapped (web's reveal and cart's bind: still a valid
    // log): the same size, another root.
    let mut swapped = frames.clone();
    swapped.swap(1, 2);
    curator.write_log(header, &swapped);
    curator.start().expect("restart");
    let status = agent.wait_status(WAIT, |s| refused_kind(s) == Some("fork"));
    assert_eq!(
        status.checkpoint_size,
        Some(6),
        "the remembered checkpoint stays"
    );
    let refusal = status.checkpoint_refused.expect("refusal");
    assert_eq!(
        (refusal.remembered_size, refusal.offered_size),
        (Some(6), Some(6))
    );
    agent.wait_log(WAIT, "refusing the curator's checkpoint");
    // The log line carries both signed notes (the evidence).
    let line = agent
        .log()
        .lines()
        .find(|l| l.contains("refusing the curator's checkpoint"))
        .expect("the line")
        .to_owned();
    assert!(
        line.contains("remembered_checkpoint") && line.contains("offered_checkpoint"),
        "{line}"
    );
    let file = checkpoint_file(&state);
    assert_eq!(file.checkpoint.as_ref(), Some(&remembered));
    assert!(file.refused_note.is_some_and(|n| n.contains("\n6\n")));
    // Refusals continue on the normal schedule and are counted.
    agent.wait_status(WAIT, |s| {
        s.checkpoint_refused.as_ref().is_some_and(|r| r.count >= 3)
    });
    assert!(agent.running());
    assert_eq!(
        std::fs::read_to_string(certs.join("cert.pem")).expect("cert"),
        cert
    );
    curator.stop();

    // The original history back: consistent again, the refusal ends.
    curator.write_log(header, &frames);
    curator.start().expect("restart");
    agent.wait_status(WAIT, |s| s.checkpoint_refused.is_none());
    agent.wait_log(WAIT, "consistent with the accepted one again");
    curator.stop();

    // The agent's own entries (bind and reveal) dropped and the log regrown
    // past the remembered size: no consistency proof can hold.
    curator.write_log(header, &frames[2..]);
    curator.start().expect("restart");
    curator.register(&mesh, "shop", "ship").expect("register");
    curator.register(&mesh, "shop", "mail").expect("register");
    let status = agent.wait_status(WAIT, |s| refused_kind(s) == Some("inconsistent"));
    assert_eq!(status.checkpoint_size, Some(6));
    assert_eq!(
        status.checkpoint_refused.and_then(|r| r.offered_size),
        Some(8)
    );
    assert_eq!(
        checkpoint_file(&state).checkpoint.as_ref(),
        Some(&remembered)
    );
    assert!(agent.running());
    assert_eq!(
        std::fs::read_to_string(certs.join("cert.pem")).expect("cert"),
        cert
    );
}

/// (c) After trust on first use, a curator restarted with another
/// checkpoint key is refused.
#[test]
fn a_changed_checkpoint_key_is_refused_after_first_use() {
    let mesh = Mesh::new();
    let mut curator = curator(&mesh);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_file(&mesh, dir.path(), "web");
    let state = dir.path().join("state");
    let mut agent = AgentProcess::start(&curator.url(), &token, &state, &[]);
    agent.wait_status(WAIT, |s| {
        s.checkpoint_size == Some(2) && s.log_index.is_some()
    });
    let first_key = served_key(&curator);
    curator.stop();
    std::fs::write(
        curator.data_dir().join("checkpoint.key"),
        format!("{}\n", "42".repeat(32)),
    )
    .expect("new key");
    // The curator refuses its own acknowledged checkpoint under another key;
    // whoever swaps the key deletes that evidence too.
    std::fs::remove_file(
        curator
            .data_dir()
            .join(mazu_curator::recovery::ACKNOWLEDGED_FILE),
    )
    .expect("remove the acknowledged checkpoint");
    curator.start().expect("restart");
    assert_ne!(served_key(&curator), first_key);
    let status = agent.wait_status(WAIT, |s| refused_kind(s) == Some("key_changed"));
    assert_eq!(status.checkpoint_size, Some(2));
    let reason = status.checkpoint_refused.expect("refusal").reason;
    assert!(reason.contains("trusted on first use"), "{reason}");
    assert_eq!(checkpoint_file(&state).verifier_key, Some(first_key));
    assert!(agent.running());
}

/// (d) A pinned key the curator does not sign with is refused from the
/// start: the bind answer's checkpoint does not verify, so the token is
/// never revealed and nothing is served; the right pinned key is accepted;
/// a malformed one is a configuration error.
#[test]
fn a_pinned_checkpoint_key_is_enforced_from_the_start() {
    let mesh = Mesh::new();
    let curator = curator(&mesh);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = served_key(&curator);
    let origin = served.split('+').next().expect("name").to_owned();
    let wrong = CheckpointSigner::new(&origin, &[7; 32])
        .expect("signer")
        .verifier()
        .to_vkey();

    let state = dir.path().join("wrong");
    let token = token_file(&mesh, dir.path(), "web");
    let mut agent = AgentProcess::start(
        &curator.url(),
        &token,
        &state,
        &["--checkpoint-key", &wrong],
    );
    agent.wait_log(WAIT, "does not verify with the pinned checkpoint key");
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.running());
    assert!(agent.status().is_none(), "nothing served");
    // Nothing accepted (the file may not even exist yet).
    let accepted = std::fs::read(state.join("checkpoint.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<CheckpointFile>(&b).ok())
        .and_then(|f| f.checkpoint);
    assert_eq!(accepted, None, "nothing accepted");
    let wrong_id = common::id_of(&std::fs::read_to_string(&token).expect("token"));
    assert!(
        !common::revealed(curator.port, &wrong_id),
        "the token was not revealed"
    );
    assert!(
        !agent
            .log()
            .contains("trusting the curator's checkpoint key")
    );

    let state = dir.path().join("right");
    let token = token_file(&mesh, dir.path(), "cart");
    let mut agent = AgentProcess::start(
        &curator.url(),
        &token,
        &state,
        &["--checkpoint-key", &served],
    );
    let status = agent.wait_status(WAIT, |s| s.log_index.is_some());
    assert!(status.checkpoint_refused.is_none());
    assert!(checkpoint_file(&state).pinned);

    let token_arg = token.to_str().expect("utf-8").to_owned();
    let state_arg = dir.path().join("bad").to_str().expect("utf-8").to_owned();
    let out = agent_command(&[
        "run",
        "--curator",
        &curator.url(),
        "--token-file",
        &token_arg,
        "--state-dir",
        &state_arg,
        "--checkpoint-key",
        "not-a-key",
        "--insecure-no-witness",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--checkpoint-key"), "{stderr}");
}
