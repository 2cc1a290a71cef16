//! The binary refuses to start, with a clear message, on any missing or
//! malformed setting; `--help` explains every flag.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use std::process::{Command, Output};

use common::{BIN, Curator, Fixture};

fn run(args: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run mazu-curator")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn without(args: &[String], flag: &str, with_value: bool) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == flag) {
        out.drain(i..i + if with_value { 2 } else { 1 });
    }
    out
}

#[test]
fn help_explains_every_flag() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--crs",
        "--dev-crs",
        "--capacity",
        "--issuer",
        "--audience",
        "--trust-domain",
        "--clock-skew-secs",
        "--addr-file",
        "--reservation-ttl-secs",
        "--max-body-bytes",
        "--rate-limit-per-minute",
        "--rate-limit-burst",
        "--max-concurrent-requests",
        "--max-pending-registrations",
        "--verify-threads",
        "--request-timeout-secs",
        "--shutdown-grace-secs",
        "--jwks-refresh-secs",
        "--snapshot-every",
        "--crs-transcript",
        "--checkpoint-key",
        "--checkpoint-origin",
        "--witness",
        "--witness-quorum",
        "--witness-refresh-secs",
        "--witness-timeout-ms",
        "--insecure-no-witness",
        "--insecure-plain-http-witness",
        "tls-pin=",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    assert!(help.contains("INSECURE"));
}

#[test]
fn missing_settings_are_refused_by_name() {
    let fx = Fixture::new();
    let args = fx.args(16);
    for (flag, value) in [
        ("--data-dir", true),
        ("--capacity", true),
        ("--issuer", true),
        ("--audience", true),
        ("--dev-crs", false),
        ("--insecure-no-witness", false),
    ] {
        let o = run(&without(&args, flag, value));
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        let want = match flag {
            "--dev-crs" => "--crs",
            "--insecure-no-witness" => "--witness",
            other => other,
        };
        assert!(
            stderr(&o).contains(&format!("missing {want}")),
            "{flag}: {}",
            stderr(&o)
        );
    }
    // Without witnesses, the explicit development flag is named.
    let o = run(&without(&args, "--insecure-no-witness", false));
    assert!(
        stderr(&o).contains("--insecure-no-witness"),
        "{}",
        stderr(&o)
    );
    // Both at once is refused too.
    let mut both = args.clone();
    both.extend([
        "--witness".into(),
        "http://127.0.0.1:9=w+01020304+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
    ]);
    let o = run(&both);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--witness"), "{}", stderr(&o));
}

#[test]
fn malformed_files_and_values_are_refused() {
    let fx = Fixture::new();
    let args = fx.args(16);

    // Values clap rejects.
    let mut bad = args.clone();
    bad.extend(["--capacity".into(), "many".into()]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--capacity"), "{}", stderr(&o));

    // An issuer without a JWKS path.
    let mut bad = without(&args, "--issuer", true);
    bad.extend(["--issuer".into(), "https://x".into()]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ISSUER=JWKS_FILE"), "{}", stderr(&o));

    // An issuer without a namespace scope: refused, naming the syntax.
    let mut bad = without(&args, "--issuer", true);
    bad.extend([
        "--issuer".into(),
        format!("https://x={}", fx.jwks_path.display()),
    ]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(";namespaces="), "{}", stderr(&o));

    // The audience every deployment used to share.
    let mut bad = without(&args, "--audience", true);
    bad.extend(["--audience".into(), "mazu".into()]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("shared by every Mazu deployment"),
        "{}",
        stderr(&o)
    );

    // A JWKS file that is missing, then one that is not a JWKS.
    let mut bad = without(&args, "--issuer", true);
    bad.extend([
        "--issuer".into(),
        format!(
            "https://x={};namespaces=*",
            fx.dir.path().join("nope.json").display()
        ),
    ]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("reading the JWKS file"),
        "{}",
        stderr(&o)
    );
    let junk = fx.dir.path().join("junk.json");
    std::fs::write(&junk, "{\"keys\": 5}").unwrap();
    let mut bad = without(&args, "--issuer", true);
    bad.extend([
        "--issuer".into(),
        format!("https://x={};namespaces=*", junk.display()),
    ]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("JWKS") || stderr(&o).contains("jwks"),
        "{}",
        stderr(&o)
    );

    // A CRS file that is not a CRS.
    let crs = fx.dir.path().join("crs.bin");
    std::fs::write(&crs, b"not a crs").unwrap();
    let mut bad = without(&args, "--dev-crs", false);
    bad.extend([
        "--crs".into(),
        crs.display().to_string(),
        "--crs-transcript".into(),
        crs.display().to_string(),
    ]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a valid CRS encoding"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn crs_must_match_capacity_and_the_log() {
    let fx = Fixture::new();
    let args = fx.args(16);
    // First start generates the dev CRS and creates the log.
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    assert!(c.terminate().success());

    // The same CRS with another --capacity.
    let mut bad = without(&args, "--capacity", true);
    bad.extend(["--capacity".into(), "32".into()]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has capacity 16, but --capacity is 32"),
        "{}",
        stderr(&o)
    );

    // Another CRS for the existing log.
    let other = fx.dir.path().join("other-crs.bin");
    let mut bad = without(&args, "--dev-crs", false);
    bad.extend([
        "--dev-crs".into(),
        "--crs".into(),
        other.display().to_string(),
    ]);
    let o = run(&bad);
    assert_eq!(o.status.code(), Some(1));
    // The log's CRS check or, first, the acknowledged checkpoint (whose
    // origin derives from the CRS digest) refuses it.
    assert!(
        stderr(&o).contains("was written under CRS")
            || stderr(&o).contains("acknowledged checkpoint"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_log_entry_that_does_not_replay_stops_the_process() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    c.register(&crs, &fx.token("a")).await;
    assert!(c.terminate().success());

    // A well-framed entry (valid CRC) whose content is not an entry: not a
    // torn tail, so it must not be dropped silently.
    let payload = b"MZLE\x02 tampered";
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    frame.extend_from_slice(payload);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(fx.data_dir().join("registrations.log"))
            .unwrap();
        f.write_all(&frame).unwrap();
    }
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("log entry #2 cannot be replayed"),
        "{}",
        stderr(&o)
    );
}

/// A ceremony of capacity 16 with `contributions` contributions: the
/// transcript bytes and the final CRS bytes.
fn ceremony(contributions: usize) -> (Vec<u8>, Vec<u8>) {
    use mazu_rbe::ceremony::Transcript;
    let mut t = Transcript::new(16).unwrap();
    for i in 0..contributions {
        t.contribute(&format!("party-{i}"), &mut rand::rngs::OsRng)
            .unwrap();
    }
    (t.to_bytes(), t.latest_crs().to_bytes())
}

/// The curator starts only on a CRS that a verified ceremony transcript ends
/// in; without --dev-crs, a transcript is required.
#[tokio::test]
async fn a_ceremony_crs_needs_a_transcript_that_verifies() {
    let fx = Fixture::new();
    let (transcript, crs) = ceremony(2);
    let crs_path = fx.dir.path().join("crs.bin");
    let transcript_path = fx.dir.path().join("transcript.bin");
    std::fs::write(&crs_path, &crs).unwrap();
    std::fs::write(&transcript_path, &transcript).unwrap();
    let base = without(&fx.args(16), "--dev-crs", false);
    let with = |crs: &std::path::Path, transcript: Option<&std::path::Path>| {
        let mut a = base.clone();
        a.extend(["--crs".into(), crs.display().to_string()]);
        if let Some(t) = transcript {
            a.extend(["--crs-transcript".into(), t.display().to_string()]);
        }
        a
    };

    // Valid: starts, serves that CRS, says so in its log.
    let mut c = Curator::spawn(fx.dir.path(), &with(&crs_path, Some(&transcript_path)));
    c.ready().await;
    assert_eq!(c.get_bytes("/v1/crs").await, crs);
    assert!(
        c.log().contains("ceremony transcript verified"),
        "{}",
        c.log()
    );
    let health = c.get_json("/readyz").await;
    assert_eq!(health["dev_crs"], false, "{health}");
    assert!(c.terminate().success());

    // Missing: refused by name (exit 2), also through the environment.
    let o = run(&with(&crs_path, None));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("missing --crs-transcript"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(BIN)
        .args(with(&crs_path, None))
        .args(["--listen", "127.0.0.1:0"])
        .env("MAZU_CURATOR_CRS_TRANSCRIPT", &transcript_path)
        .env("RUST_LOG", "error")
        .arg("--addr-file")
        .arg(fx.dir.path().join("never"))
        .spawn()
        .map(|mut child| {
            // It gets past validation (it would serve): stop it.
            std::thread::sleep(core::time::Duration::from_millis(300));
            let early = child.try_wait().unwrap();
            let _ = child.kill();
            let _ = child.wait();
            early
        })
        .unwrap();
    assert!(
        o.is_none(),
        "env MAZU_CURATOR_CRS_TRANSCRIPT not honoured: {o:?}"
    );

    let refused = |args: Vec<String>, what: &str| {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("does not vouch for it"), "{what}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("mazu-curator:"))
            .collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {err}");
        assert!(lines[0].contains("does not vouch for it"), "{what}: {err}");
        err
    };

    // Tampered: one byte of the last contribution's CRS changed (a valid
    // point encoding cannot be guaranteed, so any refusal counts), and the
    // first contribution's name changed (decodes, but its proof breaks).
    let mut t = transcript.clone();
    let n = t.len();
    t[n - 20] ^= 0x01;
    let tampered = fx.dir.path().join("tampered.bin");
    std::fs::write(&tampered, &t).unwrap();
    refused(with(&crs_path, Some(&tampered)), "flipped byte");
    let renamed: Vec<u8> = {
        let needle = b"party-0";
        let i = transcript
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        let mut t = transcript.clone();
        t[i + 6] = b'9';
        t
    };
    std::fs::write(&tampered, &renamed).unwrap();
    let err = refused(with(&crs_path, Some(&tampered)), "renamed contributor");
    assert!(err.contains("contribution #1"), "{err}");

    // A valid transcript of another ceremony: does not end in this CRS.
    let (other_transcript, _) = ceremony(1);
    std::fs::write(&tampered, &other_transcript).unwrap();
    let err = refused(with(&crs_path, Some(&tampered)), "other ceremony");
    assert!(err.contains("CRS digest differs"), "{err}");

    // A truncated transcript.
    std::fs::write(&tampered, &transcript[..transcript.len() / 2]).unwrap();
    refused(with(&crs_path, Some(&tampered)), "truncated");

    // A missing transcript file.
    let o = run(&with(&crs_path, Some(&fx.dir.path().join("nope.bin"))));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("reading the ceremony transcript"),
        "{}",
        stderr(&o)
    );
}

/// `tls-pin` makes a key only when asked, never replaces one, and prints
/// the pin the served certificate carries (what clients pin).
#[test]
fn tls_pin_creates_a_key_only_on_request_and_prints_its_pin() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    let key_arg = key.display().to_string();
    let tls_pin = |extra: &[&str]| {
        Command::new(BIN)
            .args(["tls-pin", "--tls-key", &key_arg])
            .args(extra)
            .output()
            .unwrap()
    };
    let missing = tls_pin(&[]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("--create-key"),
        "{}",
        stderr(&missing)
    );
    assert!(!key.exists());

    let created = tls_pin(&["--create-key"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let pin = String::from_utf8(created.stdout).unwrap();
    let pin: mazu_service::tls::SpkiPin = pin.trim().parse().unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The same key, the same pin; the pin is the served certificate's.
    let again = tls_pin(&["--create-key"]);
    assert_eq!(
        String::from_utf8(again.stdout).unwrap().trim(),
        pin.to_string()
    );
    let secret = mazu_service::files::parse_key(&std::fs::read(&key).unwrap()).unwrap();
    let served = mazu_service::tls::ServerTls::from_secret(&secret).unwrap();
    assert_eq!(served.pin(), pin);
}

/// A deleted checkpoint key beside an existing log is an error, not a new
/// key: witnesses, auditors and filters pinned the old one. The files are
/// left as they were; `--create-checkpoint-key` is the operator's explicit
/// choice (and then the acknowledged checkpoint, signed by the old key,
/// still has to be dealt with: it is refused, not overwritten).
#[tokio::test]
async fn a_missing_checkpoint_key_beside_a_log_is_refused() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    c.register(&crs, &fx.token("web")).await;
    assert!(c.terminate().success());
    let data = fx.data_dir();
    let log_before = std::fs::read(data.join("registrations.log")).unwrap();
    std::fs::remove_file(data.join("checkpoint.key")).unwrap();

    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let message = stderr(&o);
    assert!(
        message.contains("checkpoint key") && message.contains("--create-checkpoint-key"),
        "{message}"
    );
    assert!(message.contains("a log (registrations.log)"), "{message}");
    assert!(!data.join("checkpoint.key").exists(), "a key was created");
    assert_eq!(
        std::fs::read(data.join("registrations.log")).unwrap(),
        log_before
    );

    // The explicit flag makes a new key; the acknowledged checkpoint the
    // old key signed is then refused by name, never rewritten.
    let ack_before = std::fs::read(data.join("acknowledged.checkpoint")).unwrap();
    let mut create = args.clone();
    create.push("--create-checkpoint-key".into());
    let o = run(&create);
    assert_ne!(o.status.code(), Some(0));
    assert!(data.join("checkpoint.key").exists());
    assert!(stderr(&o).contains("acknowledged"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(data.join("acknowledged.checkpoint")).unwrap(),
        ack_before
    );
}
