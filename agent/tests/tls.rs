//! The agent reaches the curator over TLS to a pinned key, as deployed: it
//! registers with the curator whose key it pins, refuses a server holding
//! any other key before a byte of HTTP (let alone a token) is sent, and
//! refuses flags that would drop TLS by accident.

mod common;

use core::time::Duration;
use std::thread;

use common::{AgentFiles, AgentProcess, FixedCurator, agent_command, mint, write_token};
use mazu_service::tls::SpkiPin;
use mazu_testkit::fixtures::Mesh;
use mazu_testkit::net::free_port;

const WAIT: Duration = Duration::from_secs(60);

fn tls_curator(mesh: &Mesh) -> FixedCurator {
    let mut curator = FixedCurator::new_tls(mesh, free_port().expect("port")).expect("curator");
    curator.start().expect("start the curator");
    curator
}

/// The size of the curator's log, asked over pinned TLS.
fn log_size(curator: &FixedCurator) -> u64 {
    let note = curator
        .endpoint()
        .get_text("/v1/checkpoint")
        .expect("checkpoint");
    note.lines()
        .nth(1)
        .and_then(|size| size.parse().ok())
        .expect("checkpoint size line")
}

#[test]
fn the_agent_registers_with_the_curator_whose_key_it_pins() {
    let mesh = Mesh::new();
    let curator = tls_curator(&mesh);
    let pin = curator.tls_pin().expect("pin").to_string();
    let files = AgentFiles::new();
    let token = mint(&mesh, "shop", "web");
    write_token(&files.token_file, &token);
    let mut agent = AgentProcess::start(
        &curator.url(),
        &files.token_file,
        &files.state,
        &["--curator-tls-pin", &pin],
    );
    let status = agent.wait_status(WAIT, |_| true);
    assert_eq!(status.id, common::id_of(&token));
    // Bind and reveal reached the log, over TLS.
    assert!(log_size(&curator) >= 2, "{}", agent.log());
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn the_agent_refuses_a_curator_holding_another_key() {
    let mesh = Mesh::new();
    let curator = tls_curator(&mesh);
    let real = curator.tls_pin().expect("pin");
    // The agent pins a key the server does not hold: the server is an
    // impostor as far as the agent knows.
    let other = SpkiPin([7; 32]);
    assert_ne!(real, other);
    let files = AgentFiles::new();
    write_token(&files.token_file, &mint(&mesh, "shop", "web"));
    let mut agent = AgentProcess::start(
        &curator.url(),
        &files.token_file,
        &files.state,
        &["--curator-tls-pin", &other.to_string()],
    );
    // The refusal names the key the server holds (so that an operator can
    // tell a rotated key from an impostor) ...
    agent.wait_log(WAIT, &format!("pin {real}) is not a pinned key"));
    // ... and the agent keeps retrying, sending nothing: no binding, no
    // token reached the server, and no certificate is served.
    thread::sleep(Duration::from_secs(2));
    assert!(agent.running(), "{}", agent.log());
    assert!(agent.status().is_none(), "{}", agent.log());
    assert_eq!(log_size(&curator), 0, "{}", curator.log());
}

/// A configuration that would drop TLS (or pin nothing) is refused at
/// start, exit code 2, with one line saying why.
#[test]
fn flags_that_drop_or_lack_the_pin_are_refused() {
    let files = AgentFiles::new();
    let pin = SpkiPin([1; 32]).to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--token-file",
            files.token_file.to_str().expect("utf-8"),
            "--state-dir",
            files.state.to_str().expect("utf-8"),
            "--insecure-no-witness",
        ];
        args.extend_from_slice(extra);
        agent_command(&args)
    };
    let cases: [(&[&str], &str); 5] = [
        (&["--curator", "https://127.0.0.1:1"], "no TLS pin"),
        (
            &["--curator", "http://127.0.0.1:1", "--curator-tls-pin", &pin],
            "use an https:// URL",
        ),
        (
            &["--curator", "https://127.0.0.1:1", "--insecure-plain-http"],
            "takes an http:// URL",
        ),
        (
            &[
                "--curator",
                "https://127.0.0.1:1",
                "--curator-tls-pin",
                &pin,
                "--insecure-plain-http",
            ],
            "exclude each other",
        ),
        (
            &[
                "--curator",
                "https://127.0.0.1:1",
                "--curator-tls-pin",
                "not-a-pin",
            ],
            "base64 SHA-256",
        ),
    ];
    for (extra, expected) in cases {
        let out = run(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}
