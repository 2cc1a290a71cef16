//! The agent against the real `mazu-curator` process on 127.0.0.1, with
//! tokens from the development issuer. Every process is killed on drop.

mod common;

use core::time::Duration;

use common::Curator;
use common::{
    AgentFiles, AgentProcess, FixedCurator, agent_command, id_of, log_entries, mint, mint_with,
    mode, registry, registry_entry, spki_hash_of_pem, write_token,
};
use mazu_curator::entry::EntryBody;
use mazu_log::record::ReleaseReason;
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::free_port;

const WAIT: Duration = Duration::from_secs(60);

fn curator_url(curator: &FixedCurator) -> String {
    format!("http://127.0.0.1:{}", curator.port)
}

#[test]
fn registers_and_serves_files() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let mut agent = AgentProcess::start(
        &curator_url(&curator),
        &files.token_file,
        &files.state,
        &["--cert-dir", files.certs.to_str().expect("utf-8")],
    );
    let status = agent.wait_status(WAIT, |_| true);

    // The registry holds the id with exactly the served certificate's key.
    assert_eq!(status.id, id_of(&token));
    assert_eq!(status.spiffe_id, "spiffe://cluster.local/ns/shop/sa/web");
    let entry = registry_entry(curator.port, &status.id).expect("registered");
    let cert_pem = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert.pem");
    assert_eq!(entry["spki_hash"], spki_hash_of_pem(&cert_pem));
    assert_eq!(entry["slot"], status.slot);
    assert_eq!(status.spki_hash, spki_hash_of_pem(&cert_pem));
    assert!(status.cert_not_after <= status.token_exp);

    // Permissions: private key and files.state 0600/0700.
    assert!(
        std::fs::read_to_string(files.certs.join("key.pem"))
            .expect("key.pem")
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert_eq!(mode(&files.certs.join("key.pem")), 0o600);
    assert_eq!(mode(&files.state), 0o700);
    let reg_dir = files.state.join("registrations").join(&status.id);
    for secret in [
        "tls-key.pem",
        "rbe-secret.bin",
        "token",
        "registration.json",
    ] {
        assert_eq!(mode(&reg_dir.join(secret)), 0o600, "{secret}");
    }

    // `mazu-agent status` prints the same status.
    let out = agent_command(&[
        "status",
        "--state-dir",
        files.state.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let printed: mazu_agent::state::Status =
        serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(printed.id, status.id);

    // SIGTERM: a clean exit.
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn restart_reuses_the_registration() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "cart"));
    let args = ["--cert-dir", files.certs.to_str().expect("utf-8")];

    let mut first = AgentProcess::start(
        &curator_url(&curator),
        &files.token_file,
        &files.state,
        &args,
    );
    let status = first.wait_status(WAIT, |_| true);
    let key_before = std::fs::read_to_string(files.certs.join("key.pem")).expect("key");
    assert_eq!(first.terminate(), Some(0));
    let version_before = registry(curator.port)["version"].clone();

    let mut second = AgentProcess::start(
        &curator_url(&curator),
        &files.token_file,
        &files.state,
        &args,
    );
    second.wait_log(WAIT, "not registering again");
    let again = second.wait_status(WAIT, |s| s.updated_at >= status.updated_at);
    assert_eq!(again.id, status.id);
    assert_eq!(again.slot, status.slot);
    assert_eq!(
        registry(curator.port)["version"],
        version_before,
        "no new registration"
    );
    assert!(!second.log().contains("reserved a slot"));
    let key_after = std::fs::read_to_string(files.certs.join("key.pem")).expect("key");
    assert_eq!(key_before, key_after, "same registered TLS key");
    let cert = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert");
    assert_eq!(spki_hash_of_pem(&cert), status.spki_hash);
}

#[test]
fn rotates_when_the_token_file_changes() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    let first_token = mint(&mesh, "shop", "pay");
    write_token(&files.token_file, &first_token);
    let mut agent = AgentProcess::start(
        &curator_url(&curator),
        &files.token_file,
        &files.state,
        &["--cert-dir", files.certs.to_str().expect("utf-8")],
    );
    let first = agent.wait_status(WAIT, |_| true);
    let first_cert = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert");

    let second_token = mint(&mesh, "shop", "pay");
    write_token(&files.token_file, &second_token);
    let second = agent.wait_status(WAIT, |s| s.id == id_of(&second_token));
    assert_ne!(second.slot, first.slot);
    assert!(second.registered_version > first.registered_version);
    let second_cert = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert");
    assert_ne!(first_cert, second_cert);
    assert_eq!(spki_hash_of_pem(&second_cert), second.spki_hash);
    let entry = registry_entry(curator.port, &second.id).expect("new id registered");
    assert_eq!(entry["spki_hash"], second.spki_hash);
    // Once the new one is served, the agent releases the old one with its
    // key: its slot is free again.
    agent.wait_log(WAIT, "released the previous registration");
    assert!(registry_entry(curator.port, &first.id).is_none());
    let released = log_entries(curator.port)
        .into_iter()
        .find(|e| {
            hex::encode(e.id) == first.id
                && !matches!(e.body, EntryBody::Bind { .. } | EntryBody::Reveal { .. })
        })
        .expect("a release of the first id");
    assert!(
        matches!(
            released.body,
            EntryBody::Release {
                reason: ReleaseReason::Holder,
                ..
            }
        ),
        "{released:?}"
    );
    assert_eq!(agent.terminate(), Some(0));
}

/// `mazu-agent revoke` revokes the served registration with its key: the
/// registry keeps the id flagged revoked, and a second revocation is
/// answered with the same entry.
#[test]
fn revoke_ends_the_served_registration() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "leaky"));
    let mut agent =
        AgentProcess::start(&curator_url(&curator), &files.token_file, &files.state, &[]);
    let status = agent.wait_status(WAIT, |_| true);
    assert_eq!(agent.terminate(), Some(0));

    let url = curator_url(&curator);
    let state = files.state.to_str().expect("utf-8");
    let revoke = || agent_command(&["revoke", "--state-dir", state, "--curator", &url]);
    let out = revoke();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["id"], status.id);
    let entry = registry_entry(curator.port, &status.id).expect("still listed");
    assert_eq!(entry["revoked"], true);
    let again = revoke();
    assert!(again.status.success());
    let printed_again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(
        printed_again["revoked_at_index"],
        printed["revoked_at_index"]
    );
    // A registration that does not exist in the state directory.
    let out = agent_command(&[
        "revoke",
        "--state-dir",
        state,
        "--curator",
        &url,
        "--id",
        &"ab".repeat(32),
    ]);
    assert!(!out.status.success());
}

#[test]
fn curator_down_then_up_and_old_certificate_kept_until_the_new_one_is_registered() {
    let mesh = Mesh::new();
    let port = free_port().expect("port");
    let mut curator = FixedCurator::new(&mesh, port).expect("curator");
    let files = AgentFiles::new();
    let first_token = mint(&mesh, "shop", "stock");
    write_token(&files.token_file, &first_token);

    // The agent starts before the curator: it retries, serving nothing yet.
    let mut agent = AgentProcess::start(
        &curator.url(),
        &files.token_file,
        &files.state,
        &["--cert-dir", files.certs.to_str().expect("utf-8")],
    );
    agent.wait_log(WAIT, "curator unreachable");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.running());
    assert!(agent.status().is_none());
    assert!(
        agent.log().matches("retrying").count() >= 2,
        "{}",
        agent.log()
    );

    curator.start().expect("start curator");
    let first = agent.wait_status(WAIT, |_| true);
    assert_eq!(first.id, id_of(&first_token));
    let first_cert = std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert");

    // The curator goes away; the token rotates: the old certificate stays.
    curator.stop();
    let second_token = mint(&mesh, "shop", "stock");
    write_token(&files.token_file, &second_token);
    agent.wait_log(WAIT, &format!("id={}", id_of(&second_token)));
    std::thread::sleep(Duration::from_secs(2));
    assert!(agent.running());
    assert_eq!(agent.status().expect("status").id, first.id);
    assert_eq!(
        std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert"),
        first_cert,
        "the old certificate is served while the curator is down"
    );

    // Back up (same log, same CRS): the new token gets registered.
    curator.start().expect("restart curator");
    let second = agent.wait_status(WAIT, |s| s.id == id_of(&second_token));
    assert_eq!(
        registry_entry(port, &second.id).expect("registered")["spki_hash"],
        second.spki_hash
    );
    assert_ne!(
        std::fs::read_to_string(files.certs.join("cert.pem")).expect("cert"),
        first_cert
    );
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn encrypted_to_the_id_decrypted_by_the_agent() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let url = curator_url(&curator);
    let files = AgentFiles::new();
    let token = mint(&mesh, "vault", "reader");
    write_token(&files.token_file, &token);
    let mut agent = AgentProcess::start(&url, &files.token_file, &files.state, &[]);
    let status = agent.wait_status(WAIT, |_| true);
    let path = |name: &str| {
        files
            .dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_owned()
    };

    // The sender pins the CRS (here: the one the agent verified and stored).
    let crs = mazu_rbe::Crs::from_bytes(&std::fs::read(files.state.join("crs.bin")).expect("crs"))
        .expect("crs");
    let digest = hex::encode(crs.digest());

    // Encrypting under another CRS digest is refused, and so is encrypting
    // with no pin at all (unless explicitly insecure).
    std::fs::write(path("msg"), b"attack at dawn").expect("write");
    let out = agent_command(&[
        "encrypt",
        "--insecure-no-witness",
        "--curator",
        &url,
        "--id",
        &status.id,
        "--in",
        &path("msg"),
        "--out",
        &path("bad"),
        "--crs-sha256",
        &"00".repeat(32),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing it"), "{stderr}");
    assert!(
        !files.dir.path().join("bad").exists()
            || std::fs::read(path("bad")).is_ok_and(|b| b.is_empty())
    );
    let out = agent_command(&[
        "encrypt",
        "--insecure-no-witness",
        "--curator",
        &url,
        "--id",
        &status.id,
        "--in",
        &path("msg"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--crs-sha256"));

    // Encrypted with public parameters only, to the id (from --token-file).
    let out = agent_command(&[
        "encrypt",
        "--insecure-no-witness",
        "--crs-sha256",
        &digest,
        "--curator",
        &url,
        "--token-file",
        &path("token"),
        "--in",
        &path("msg"),
        "--out",
        &path("ct1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&std::fs::read(path("ct1")).expect("ct")[..4], b"RBEX");

    // Another workload registers in the same block: the commitment changes.
    curator
        .register(&mesh, "vault", "writer")
        .expect("second workload");
    let out = agent_command(&[
        "encrypt",
        "--insecure-no-witness",
        "--crs-sha256",
        &digest,
        "--curator",
        &url,
        "--id",
        &status.id,
        "--in",
        &path("msg"),
        "--out",
        &path("ct2"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both decrypt: the old one with the opening kept in the history, the
    // new one after the refresh.
    for ct in ["ct1", "ct2"] {
        let out = agent_command(&[
            "decrypt",
            "--state-dir",
            &path("state"),
            "--curator",
            &url,
            "--in",
            &path(ct),
        ]);
        assert!(
            out.status.success(),
            "{ct}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            agent.log()
        );
        assert_eq!(out.stdout, b"attack at dawn", "{ct}");
    }

    // A wrong AAD does not decrypt.
    let out = agent_command(&[
        "decrypt",
        "--state-dir",
        &path("state"),
        "--curator",
        &url,
        "--in",
        &path("ct1"),
        "--aad",
        "other",
    ]);
    assert!(!out.status.success());
}

#[test]
fn refused_token_is_logged_and_the_agent_keeps_running() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    // A token for another audience: the curator refuses it (401).
    let wrong = mint_with(&mesh, "shop", "web", |r| {
        r.audiences = vec!["other".to_owned()]
    });
    write_token(&files.token_file, &wrong);
    let mut agent =
        AgentProcess::start(&curator_url(&curator), &files.token_file, &files.state, &[]);
    agent.wait_log(WAIT, "token_wrong_audience");
    agent.wait_log(WAIT, "waiting for the token file to change");
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.running());
    // Not hammered: one refusal, no retry loop.
    assert_eq!(
        agent.log().matches("token_wrong_audience").count(),
        1,
        "{}",
        agent.log()
    );

    // The kubelet writes a good token: registered.
    let good = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &good);
    let status = agent.wait_status(WAIT, |s| s.id == id_of(&good));
    assert!(registry_entry(curator.port, &status.id).is_some());
}

#[test]
fn missing_token_file_is_waited_for() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    let mut agent =
        AgentProcess::start(&curator_url(&curator), &files.token_file, &files.state, &[]);
    agent.wait_log(WAIT, "waiting for a usable token file");
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.running());
    let token = mint(&mesh, "shop", "late");
    write_token(&files.token_file, &token);
    agent.wait_status(WAIT, |s| s.id == id_of(&token));
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let out = agent_command(&["run", "--token-file", "/t", "--state-dir", "/s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--curator"));

    let out = agent_command(&[
        "run",
        "--curator",
        "http://x",
        "--token-file",
        "/t",
        "--state-dir",
        "/s",
        "--crs-digest",
        "zz",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--crs-digest"));

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("s");
    let out = agent_command(&[
        "run",
        "--curator",
        "ftp://x",
        "--token-file",
        "/t",
        "--state-dir",
        state.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("mazu-agent: configuration: --curator"),
        "{stderr}"
    );

    let out = agent_command(&[
        "run",
        "--curator",
        "http://x",
        "--token-file",
        "/t",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--trust-domain",
        "Not A Domain",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let out = agent_command(&["--help"]);
    assert!(out.status.success());
}

#[test]
fn a_crs_other_than_the_pinned_one_is_refused() {
    let mesh = Mesh::new();
    let curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "pinned"));
    let pinned = "00".repeat(32);
    let mut agent = AgentProcess::start(
        &curator_url(&curator),
        &files.token_file,
        &files.state,
        &["--crs-digest", &pinned],
    );
    agent.wait_log(WAIT, &format!("expected {pinned}: refusing it"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.running());
    assert!(
        agent.status().is_none(),
        "nothing registered under a foreign CRS"
    );
    assert_eq!(registry(curator.port)["version"], 0);
}

/// A stored registration the (new, reset) curator's log does not show is
/// registered again, but its keys are only moved aside, never deleted: the
/// log shows no evidence that the binding ended.
#[test]
fn a_registration_missing_from_a_reset_log_keeps_its_keys_aside() {
    let mesh = Mesh::new();
    let mut curator = Curator::start(&mesh).expect("curator");
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "kept"));
    let mut agent =
        AgentProcess::start(&curator_url(&curator), &files.token_file, &files.state, &[]);
    let first = agent.wait_status(WAIT, |_| true);
    assert_eq!(agent.terminate(), Some(0));

    // The curator loses its log and everything about it (a new log over
    // the same CRS), and the agent its remembered checkpoint: nothing
    // proves the binding ended.
    curator.stop();
    for entry in std::fs::read_dir(curator.data_dir()).unwrap().flatten() {
        if entry.file_name() != "dev-crs.bin" {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    std::fs::remove_file(files.state.join("checkpoint.json")).unwrap();
    curator.start().unwrap();

    let mut again =
        AgentProcess::start(&curator_url(&curator), &files.token_file, &files.state, &[]);
    again.wait_log(WAIT, "kept the stored registration's keys aside");
    // Registered again: the same id (same token), new keys.
    again.wait_status(WAIT, |s| s.id == first.id && s.spki_hash != first.spki_hash);
    let aside: Vec<_> = std::fs::read_dir(files.state.join("registrations"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{}.set-aside-", first.id))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{}", again.log());
    assert!(aside[0].path().join("tls-key.pem").exists());
    assert_eq!(again.terminate(), Some(0));
}
