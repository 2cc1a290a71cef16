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
        ("--dev-crs", false),
    ] {
        let o = run(&without(&args, flag, value));
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        let want = if flag == "--dev-crs" { "--crs" } else { flag };
        assert!(
            stderr(&o).contains(&format!("missing {want}")),
            "{flag}: {}",
            stderr(&o)
        );
    }
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

    // A JWKS file that is missing, then one that is not a JWKS.
    let mut bad = without(&args, "--issuer", true);
    bad.extend([
        "--issuer".into(),
        format!("https://x={}", fx.dir.path().join("nope.json").display()),
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
    bad.extend(["--issuer".into(), format!("https://x={}", junk.display())]);
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
    bad.extend(["--crs".into(), crs.display().to_string()]);
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
    assert!(
        stderr(&o).contains("was written under CRS"),
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

    // A well-framed entry (valid CRC) whose content is not a registration:
    // not a torn tail, so it must not be dropped silently.
    let payload = b"MZLE\x01 tampered";
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
        stderr(&o).contains("log entry #1 cannot be replayed"),
        "{}",
        stderr(&o)
    );
}
