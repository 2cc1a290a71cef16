//! The `mazu-witness` binary as a process: refuses to start without a key
//! unless `--create-key`, serves on port 0 with `--addr-file`, cosigns,
//! stops on SIGTERM.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use core::time::Duration;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{TestLog, add_checkpoint};
use mazu_log::cosignature::WitnessVerifier;
use mazu_log::witness_protocol::{AddCheckpointResponse, parse_response};

const BIN: &str = env!("CARGO_BIN_EXE_mazu-witness");

fn command(dir: &Path, log: &TestLog) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("RUST_LOG", "info")
        .args(["--name", common::WITNESS_NAME])
        .args(["--log", &log.signer.verifier().to_vkey()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        // TLS is covered by tests/tls.rs.
        .arg("--insecure-plain-http");
    c
}

/// Kills the child on drop (a failed test leaves no process behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn missing_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(common::ORIGIN, 1, 1);
    let out = command(dir.path(), &log)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("--create-key"), "{stderr}");
    assert!(!dir.path().join("data/witness.key").exists());

    // Bad flags: exit 2 with the reason.
    let out = Command::new(BIN)
        .args(["--name", "a b", "--log", "x", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(common::ORIGIN, 1, 6);
    let addr_file = dir.path().join("addr");
    let child = command(dir.path(), &log)
        .args(["--listen", "127.0.0.1:0", "--create-key"])
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let mut addr = None;
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&addr_file) {
            addr = text.parse::<core::net::SocketAddr>().ok();
            if addr.is_some() {
                break;
            }
        }
        if let Some(status) = guard.0.try_wait().unwrap() {
            panic!("mazu-witness exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = addr.expect("no address file");

    // The verifier key, from the key the process created.
    let out = command(dir.path(), &log)
        .arg("--print-vkey")
        .output()
        .unwrap();
    assert!(out.status.success());
    let vkey = String::from_utf8(out.stdout).unwrap();
    let verifier = WitnessVerifier::parse(vkey.trim_end()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/witness.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(add_checkpoint(addr, log.request(0, 6)));
    assert_eq!(a.status, 200, "{}", a.text());
    let Ok(AddCheckpointResponse::Cosigned(lines)) =
        parse_response(a.status, a.content_type.as_deref(), &a.body)
    else {
        panic!("{}", a.text())
    };
    let cp = log
        .signer
        .verifier()
        .verify(log.note(6).as_bytes())
        .unwrap();
    assert!(
        verifier
            .verify_line(&cp.body(), &lines[0])
            .unwrap()
            .is_some()
    );

    // SIGTERM: a clean exit.
    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    for _ in 0..200 {
        status = guard.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("mazu-witness did not stop on SIGTERM");
    let mut stderr = String::new();
    use std::io::Read;
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(
        stderr.contains("outcome=\"cosigned\"") || stderr.contains("outcome=cosigned"),
        "{stderr}"
    );

    // The state survived the process.
    let data = dir.path().join("data/logs");
    assert_eq!(std::fs::read_dir(data).unwrap().count(), 1);
}
