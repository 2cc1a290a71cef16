//! The `mazu-witness` binary serving TLS pinned to its key: a client pinning
//! that key gets cosignatures, plain HTTP and other pins get nothing, and
//! the transport flags are exactly one of `--tls-key` and
//! `--insecure-plain-http`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use core::net::SocketAddr;
use core::time::Duration;
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::TestLog;
use mazu_log::cosignature::WitnessVerifier;
use mazu_log::witness_protocol::{ADD_CHECKPOINT_PATH, AddCheckpointResponse, parse_response};
use mazu_service::tls::{SpkiPin, pinned_client_config};

const BIN: &str = env!("CARGO_BIN_EXE_mazu-witness");

fn command(dir: &Path, log: &TestLog) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("RUST_LOG", "info")
        .args(["--name", common::WITNESS_NAME])
        .args(["--log", &log.signer.verifier().to_vkey()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--create-key"]);
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

impl Guard {
    /// Stops the process and returns its stderr.
    fn stop(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut stderr = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    }
}

fn wait_for_addr(guard: &mut Guard, addr_file: &Path) -> SocketAddr {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(addr_file)
            && let Ok(addr) = text.parse()
        {
            return addr;
        }
        if let Some(status) = guard.0.try_wait().unwrap() {
            let mut stderr = String::new();
            let _ = guard.0.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("mazu-witness exited early: {status}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no address file");
}

fn client(pin: SpkiPin) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(pinned_client_config(&[pin]).unwrap())
        .https_only(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The chain of causes of a reqwest error, as the curator logs it.
fn causes(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = core::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[test]
fn a_tls_witness_cosigns_for_a_pinned_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(common::ORIGIN, 1, 6);
    let (addr_file, key, pin_file) = (
        dir.path().join("addr"),
        dir.path().join("tls.key"),
        dir.path().join("tls.pin"),
    );
    let child = command(dir.path(), &log)
        .arg("--tls-key")
        .arg(&key)
        .arg("--create-tls-key")
        .arg("--tls-pin-file")
        .arg(&pin_file)
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let addr = wait_for_addr(&mut guard, &addr_file);
    let pin_text = std::fs::read_to_string(&pin_file).unwrap();
    let pin: SpkiPin = pin_text.trim().parse().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // --print-tls-pin prints the same pin from the key file.
    let out = Command::new(BIN)
        .args(["--name", "w", "--log", "x", "--data-dir"])
        .arg(dir.path().join("unused"))
        .arg("--tls-key")
        .arg(&key)
        .arg("--print-tls-pin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        pin.to_string()
    );

    let out = command(dir.path(), &log)
        .args(["--tls-key"])
        .arg(&key)
        .arg("--print-vkey")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let verifier = WitnessVerifier::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The pinned client: a cosignature by the witness's key.
        let r = client(pin)
            .post(format!("https://{addr}{ADD_CHECKPOINT_PATH}"))
            .body(log.request(0, 6))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.bytes().await.unwrap();
        let Ok(AddCheckpointResponse::Cosigned(lines)) =
            parse_response(status, content_type.as_deref(), &body)
        else {
            panic!("{status}: {}", String::from_utf8_lossy(&body))
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

        // Another pin: the handshake fails, naming the key seen.
        let other = SpkiPin([7; 32]);
        let e = client(other)
            .post(format!("https://{addr}{ADD_CHECKPOINT_PATH}"))
            .body(log.request(6, 6))
            .send()
            .await
            .unwrap_err();
        let msg = causes(&e);
        assert!(
            msg.contains(&format!(
                "the server's TLS key (pin {pin}) is not a pinned key"
            )),
            "{msg}"
        );

        // Plain HTTP to the TLS port: no answer.
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .post(format!("http://{addr}{ADD_CHECKPOINT_PATH}"))
            .body(log.request(6, 6))
            .send()
            .await;
        assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    });

    let stderr = guard.stop();
    assert!(
        stderr.contains(&pin.to_string()),
        "the pin is not logged: {stderr}"
    );
    assert!(stderr.contains("TLS key loaded"), "{stderr}");
}

fn exit(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn transport_flags_are_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(common::ORIGIN, 1, 1);
    let key = dir.path().join("tls.key");
    let key = key.to_str().unwrap();
    for (flags, says) in [
        (&[][..], "no transport: give --tls-key FILE"),
        (
            &["--tls-key", key, "--insecure-plain-http"][..],
            "--tls-key and --insecure-plain-http exclude each other",
        ),
        (
            &["--insecure-plain-http", "--tls-pin-file", "pin"][..],
            "need --tls-key",
        ),
        (
            &["--insecure-plain-http", "--create-tls-key"][..],
            "need --tls-key",
        ),
    ] {
        let (code, stderr) = exit(&command(dir.path(), &log).args(flags).output().unwrap());
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
        assert_eq!(
            stderr.lines().next().map(|l| l.contains(says)),
            Some(true),
            "one line: {stderr}"
        );
    }
    // A TLS key that does not exist is created only on request.
    let (code, stderr) = exit(
        &command(dir.path(), &log)
            .args(["--tls-key", key])
            .output()
            .unwrap(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--create-tls-key"), "{stderr}");
    assert!(!Path::new(key).exists());
}
