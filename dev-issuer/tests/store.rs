//! Saving and loading issuer directories; file permissions; atomic writes.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use mazu_dev_issuer::store::{JWKS_FILE, KEY_FILE, METADATA_FILE};
use mazu_dev_issuer::{Algorithm, DevIssuer, Error, TokenRequest, write_atomic};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn save_load_round_trip() {
    for (alg, seed) in [(Algorithm::Rs256, 11), (Algorithm::Es256, 12)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("issuer");
        let iss = DevIssuer::generate(alg, "https://issuer.test", &mut StdRng::seed_from_u64(seed))
            .unwrap();
        assert!(!DevIssuer::exists_in(&dir));
        iss.save(&dir).unwrap();
        assert!(DevIssuer::exists_in(&dir));

        let loaded = DevIssuer::load(&dir).unwrap();
        assert_eq!(loaded.kid(), iss.kid());
        assert_eq!(loaded.algorithm(), alg);
        assert_eq!(loaded.issuer_url(), "https://issuer.test");
        assert_eq!(loaded.jwks_json(), iss.jwks_json());
        assert_eq!(
            *loaded.key().to_pkcs8_pem().unwrap(),
            *iss.key().to_pkcs8_pem().unwrap()
        );
        // Same key: deterministic signatures agree (RS256 PKCS#1 v1.5, ES256 RFC 6979).
        assert_eq!(loaded.sign_bytes(b"msg"), iss.sign_bytes(b"msg"));
        let req = TokenRequest::new("ns", "sa").issued_at(1).jti("j");
        assert_eq!(loaded.mint(&req).unwrap(), iss.mint(&req).unwrap());

        let pem = fs::read_to_string(dir.join(KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8");
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let meta: Value =
            serde_json::from_str(&fs::read_to_string(dir.join(METADATA_FILE)).unwrap()).unwrap();
        assert_eq!(meta["issuer"], "https://issuer.test");
        assert_eq!(meta["alg"], alg.as_str());
        assert_eq!(meta["kid"], iss.kid());
        let jwks = fs::read_to_string(dir.join(JWKS_FILE)).unwrap();
        assert_eq!(jwks.trim_end(), iss.jwks_json());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);
    }
}

#[test]
fn load_rejects_a_kid_that_does_not_match_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let iss = DevIssuer::generate(Algorithm::Es256, "u", &mut StdRng::seed_from_u64(13)).unwrap();
    iss.save(tmp.path()).unwrap();
    let meta_path = tmp.path().join(METADATA_FILE);
    let meta = fs::read_to_string(&meta_path)
        .unwrap()
        .replace(iss.kid(), "other");
    fs::write(&meta_path, meta).unwrap();
    assert!(matches!(
        DevIssuer::load(tmp.path()),
        Err(Error::Metadata { .. })
    ));
}

#[test]
fn load_reports_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let err = DevIssuer::load(tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::Io { op: "read", .. }), "{err}");
    assert!(err.to_string().contains("issuer.json"), "{err}");
}

#[test]
fn write_atomic_replaces_with_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("token");
    write_atomic(&path, b"one", 0o600).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one");
    assert_eq!(mode(&path), 0o600);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    write_atomic(&path, b"two", 0o600).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"two");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    // Missing parent directory: an error, no stray files.
    assert!(write_atomic(&tmp.path().join("no/such/file"), b"x", 0o600).is_err());
}
