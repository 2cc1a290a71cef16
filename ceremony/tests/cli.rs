//! The built `mazu-ceremony` binary, end to end: init, contributions, verify,
//! and refusals of tampered transcripts, wrong expectations and bad usage.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use mazu_rbe::Crs;

const CAPACITY: &str = "16";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mazu-ceremony"))
        .args(args)
        .output()
        .expect("run mazu-ceremony")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The hash printed by `contribute`.
fn contribution_hash(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("contribution hash: "))
        .expect("hash line")
        .trim()
        .to_owned()
}

/// init + two contributions; returns the two hashes.
fn ceremony(dir: &Path) -> (String, String) {
    let d = dir.to_str().expect("utf-8 path");
    ok(&["init", "--capacity", CAPACITY, "--out", d]);
    let a = contribution_hash(&ok(&["contribute", "--transcript", d, "--name", "alice"]));
    let noise = dir.join("noise");
    fs::write(&noise, b"dice rolls: 4 1 6 6 2 3").expect("write noise");
    let b = contribution_hash(&ok(&[
        "contribute",
        "--transcript",
        d,
        "--name",
        "bob",
        "--entropy-file",
        noise.to_str().expect("utf-8"),
    ]));
    (a, b)
}

#[test]
fn init_contribute_twice_verify_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let (a, b) = ceremony(dir.path());
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);

    let crs_file = dir.path().join("crs.bin");
    let out = ok(&[
        "verify",
        "--transcript",
        d,
        "--expect-contribution",
        &a,
        "--expect-contribution",
        &b,
        "--out-crs",
        crs_file.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("2 contribution(s)"), "{out}");
    assert!(out.contains(&format!("#1 \"alice\" {a}")), "{out}");
    assert!(out.contains(&format!("#2 \"bob\" {b}")), "{out}");
    assert!(out.trim_end().ends_with("OK"), "{out}");

    // The written CRS is what the curator's --crs reads, and it verifies.
    let crs = Crs::from_bytes(&fs::read(&crs_file).expect("crs file")).expect("decodes");
    crs.verify().expect("well-formed CRS");
    assert_eq!(crs.capacity(), 16);
    let digest_line = format!("final CRS digest: {}", hex::encode(crs.digest()));
    assert!(out.contains(&digest_line), "{out}");

    // The transcript file path works as well as the directory.
    let file = dir.path().join("transcript.bin");
    ok(&["verify", "--transcript", file.to_str().expect("utf-8")]);
    // No lock or temporary file left behind.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["crs.bin", "noise", "transcript.bin"]);
}

#[test]
fn tampered_transcript_fails_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    ceremony(dir.path());
    let path = dir.path().join("transcript.bin");
    let good = fs::read(&path).expect("read");
    // One flipped bit in: the header, the first name, the first proof, the
    // first CRS, the second CRS's last element.
    for pos in [6, 21, 30, 400, good.len() - 5] {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        fs::write(&path, &bad).expect("write");
        let o = run(&["verify", "--transcript", d]);
        assert_eq!(o.status.code(), Some(1), "byte {pos}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains("verification FAILED"), "byte {pos}: {err}");
        assert!(!stdout(&o).contains("OK"), "byte {pos}");
        // Nobody can contribute on top of it either.
        let o = run(&["contribute", "--transcript", d]);
        assert_eq!(o.status.code(), Some(1), "byte {pos}");
        assert!(stderr(&o).contains("refusing to contribute") || stderr(&o).contains("FAILED"));
    }
    // A truncated file.
    fs::write(&path, &good[..good.len() - 100]).expect("write");
    let o = run(&["verify", "--transcript", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    // Restored: verifies again.
    fs::write(&path, &good).expect("write");
    ok(&["verify", "--transcript", d]);
}

#[test]
fn wrong_expected_contribution_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    let (a, _) = ceremony(dir.path());
    let mut wrong = a.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    let crs_file = dir.path().join("crs.bin");
    let o = run(&[
        "verify",
        "--transcript",
        d,
        "--expect-contribution",
        &a,
        "--expect-contribution",
        &wrong,
        "--out-crs",
        crs_file.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "expected contribution {wrong} is not in the transcript"
        )),
        "{err}"
    );
    // Nothing written on failure.
    assert!(!crs_file.exists());
}

#[test]
fn empty_ceremony_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    ok(&["init", "--capacity", CAPACITY, "--out", d]);
    let o = run(&["verify", "--transcript", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no contribution"), "{}", stderr(&o));
    // init refuses to overwrite.
    let o = run(&["init", "--capacity", CAPACITY, "--out", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    for args in [
        &[][..],
        &["init", "--out", d][..],
        &["init", "--capacity", "1", "--out", d][..],
        &["init", "--capacity", "lots", "--out", d][..],
        &["contribute"][..],
        &["contribute", "--transcript", d, "--name", "a\nb"][..],
        &["verify", "--transcript", d, "--expect-contribution", "abcd"][..],
        &["frobnicate"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let help = ok(&["--help"]);
    for sub in ["init", "contribute", "verify"] {
        assert!(help.contains(sub), "{help}");
    }
    assert!(ok(&["verify", "--help"]).contains("--expect-contribution"));
    // A missing transcript is an operational failure, not a usage error.
    let o = run(&["verify", "--transcript", &format!("{d}/nothing")]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn contribute_refuses_while_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    ok(&["init", "--capacity", CAPACITY, "--out", d]);
    fs::write(dir.path().join("transcript.bin.lock"), b"").expect("lock");
    let o = run(&["contribute", "--transcript", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("another contribution is in progress"));
    fs::remove_file(dir.path().join("transcript.bin.lock")).expect("unlock");
    ok(&["contribute", "--transcript", d]);
    ok(&["verify", "--transcript", d]);
}
