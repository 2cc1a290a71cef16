//! Smoke tests of the `mazu-dev-issuer` binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use mazu_dev_issuer::{Claims, DevIssuer, Jwks, decode_unverified};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mazu-dev-issuer"))
        .args(args)
        .output()
        .expect("run mazu-dev-issuer")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
    String::from_utf8(out.stderr).expect("UTF-8 stderr")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn help_warns_and_documents_flags() {
    let help = ok(&["--help"]);
    assert!(help.contains("DEVELOPMENT AND TESTS ONLY"), "{help}");
    let mint = ok(&["mint", "--help"]);
    for flag in [
        "--dir",
        "--namespace",
        "--service-account",
        "--pod",
        "--pod-uid",
        "--sa-uid",
        "--node",
        "--audience",
        "--lifetime",
        "--issued-at",
        "--out",
    ] {
        assert!(mint.contains(flag), "mint --help lacks {flag}");
    }
    let init = ok(&["init", "--help"]);
    for flag in ["--alg", "--rsa-bits", "--issuer", "--force"] {
        assert!(init.contains(flag), "init --help lacks {flag}");
    }
}

#[test]
fn init_jwks_mint() {
    let tmp = tempfile::tempdir().unwrap();
    let rsa = tmp.path().join("rsa");
    let ec = tmp.path().join("ec");
    ok(&["init", "--dir", s(&rsa), "--rsa-bits", "2048"]);
    ok(&[
        "init",
        "--dir",
        s(&ec),
        "--alg",
        "es256",
        "--issuer",
        "https://ec.test",
    ]);
    assert_eq!(
        fs::metadata(rsa.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Refuses to overwrite without --force; --force makes a new key.
    let old_kid = DevIssuer::load(&ec).unwrap().kid().to_owned();
    let e = err(&["init", "--dir", s(&ec), "--alg", "es256"]);
    assert!(e.contains("--force"), "{e}");
    ok(&[
        "init",
        "--dir",
        s(&ec),
        "--alg",
        "es256",
        "--issuer",
        "https://ec.test",
        "--force",
    ]);
    let ec_issuer = DevIssuer::load(&ec).unwrap();
    assert_ne!(ec_issuer.kid(), old_kid);

    // Merged JWKS.
    let jwks = Jwks::from_json(&ok(&["jwks", "--dir", s(&rsa), "--dir", s(&ec)])).unwrap();
    assert_eq!(jwks.keys.len(), 2);
    assert_eq!(jwks.keys[0].kty, "RSA");
    assert_eq!(jwks.keys[1].kid.as_deref(), Some(ec_issuer.kid()));

    // Mint to stdout.
    let token = ok(&[
        "mint",
        "--dir",
        s(&ec),
        "--namespace",
        "shop",
        "--service-account",
        "cart",
        "--pod",
        "cart-1",
        "--pod-uid",
        "p-uid",
        "--sa-uid",
        "sa-uid",
        "--node",
        "n1",
        "--audience",
        "a1",
        "--audience",
        "a2",
        "--lifetime",
        "10m",
        "--issued-at",
        "1700000000",
    ]);
    let token = token.trim_end();
    let claims: Claims = serde_json::from_slice(&decode_unverified(token).unwrap().claims).unwrap();
    assert_eq!(claims.iss, "https://ec.test");
    assert_eq!(claims.sub, "system:serviceaccount:shop:cart");
    assert_eq!(claims.aud, ["a1", "a2"]);
    assert_eq!((claims.iat, claims.exp), (1_700_000_000, 1_700_000_600));
    assert_eq!(claims.kubernetes.pod.unwrap().uid, "p-uid");
    assert_eq!(claims.kubernetes.serviceaccount.uid, "sa-uid");
    assert_eq!(claims.kubernetes.node.unwrap().name, "n1");
    // Same key signs the same input the same way (RFC 6979), so the CLI's token
    // is this issuer's signature.
    let parts = decode_unverified(token).unwrap();
    let (h, rest) = token.split_once('.').unwrap();
    let (c, _) = rest.split_once('.').unwrap();
    assert_eq!(
        ec_issuer.sign_bytes(format!("{h}.{c}").as_bytes()),
        parts.signature
    );

    // Mint to a file: atomic, 0600, no trailing newline.
    let out = tmp.path().join("token");
    assert!(
        ok(&[
            "mint",
            "--dir",
            s(&rsa),
            "--namespace",
            "ns",
            "--service-account",
            "sa",
            "--audience",
            "mazu:test-deployment",
            "--out",
            s(&out),
        ])
        .is_empty()
    );
    let file_token = fs::read_to_string(&out).unwrap();
    assert_eq!(file_token.split('.').count(), 3);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let claims: Claims =
        serde_json::from_slice(&decode_unverified(&file_token).unwrap().claims).unwrap();
    assert_eq!(claims.aud, ["mazu:test-deployment"]);
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(claims.iss, "https://kubernetes.default.svc.cluster.local");
}

#[test]
fn clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let e = err(&[
        "mint",
        "--dir",
        s(&missing),
        "--namespace",
        "a",
        "--service-account",
        "b",
        "--audience",
        "mazu:test-deployment",
    ]);
    assert!(e.contains("does not exist") && e.contains("init"), "{e}");
    let e = err(&["jwks", "--dir", s(&missing)]);
    assert!(e.contains("does not exist"), "{e}");
    let e = err(&["init", "--dir", s(tmp.path()), "--rsa-bits", "100"]);
    assert!(e.contains("RSA modulus size"), "{e}");
    let e = err(&[
        "mint",
        "--dir",
        s(tmp.path()),
        "--namespace",
        "a",
        "--service-account",
        "b",
        "--audience",
        "mazu:test-deployment",
        "--lifetime",
        "1w",
    ]);
    assert!(e.contains("lifetime"), "{e}");
    let e = err(&["init", "--dir", s(tmp.path()), "--alg", "hs256"]);
    assert!(e.contains("hs256"), "{e}");
    // An empty existing directory is not an issuer.
    let e = err(&[
        "mint",
        "--dir",
        s(tmp.path()),
        "--namespace",
        "a",
        "--service-account",
        "b",
        "--audience",
        "mazu:test-deployment",
    ]);
    assert!(e.contains("issuer.json"), "{e}");
    // No audience: refused, there is no default.
    let e = err(&[
        "mint",
        "--dir",
        s(tmp.path()),
        "--namespace",
        "a",
        "--service-account",
        "b",
    ]);
    assert!(e.contains("--audience"), "{e}");
}
