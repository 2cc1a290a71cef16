//! The agent's certificate builder and the filter's parser agree, and the
//! built certificate has exactly the documented shape.

// Case builders outside #[test] functions unwrap too: a fixture that
// cannot be built is a bug in the test.
#![allow(clippy::unwrap_used)]

mod support;

use der::{Decode, Encode};
use mazu_identity::certificate::{
    BuildError, CertificateError, CertificateRequest, MAZU_IDENTITY_OID, MazuIdentity,
    PeerCertificate, build_certificate,
};
use mazu_identity::{SpiffeIdError, TokenError, WorkloadId};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use serde_json::json;
use support::*;
use x509_cert::Certificate;
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};

const URI: &str = "spiffe://cluster.local/ns/shop/sa/cart";

#[test]
fn builds_the_documented_certificate() {
    let w = workload(rsa_token());
    let cert = Certificate::from_der(&w.cert.der).unwrap();
    let tbs = &cert.tbs_certificate;
    assert_eq!(tbs.version, Version::V3);
    assert_eq!(tbs.serial_number.as_bytes().len(), 16);
    assert_eq!(tbs.serial_number.as_bytes()[0] & 0xc0, 0x40);
    assert_eq!(tbs.issuer.to_string(), "O=mazu");
    assert_eq!(tbs.subject, tbs.issuer);
    assert_eq!(
        tbs.validity.not_before.to_unix_duration().as_secs(),
        NOW - 60
    );
    // The token expires long before the default 24 h lifetime: notAfter = exp.
    assert_eq!(
        tbs.validity.not_after.to_unix_duration().as_secs(),
        TOKEN_EXP
    );

    let (critical, bc) = tbs.get::<BasicConstraints>().unwrap().unwrap();
    assert!(critical && !bc.ca && bc.path_len_constraint.is_none());
    let (critical, ku) = tbs.get::<KeyUsage>().unwrap().unwrap();
    assert!(critical);
    assert!(ku.digital_signature());
    assert_eq!(
        ku.0.bits(),
        KeyUsage(KeyUsages::DigitalSignature.into()).0.bits()
    );
    let (critical, eku) = tbs.get::<ExtendedKeyUsage>().unwrap().unwrap();
    assert!(!critical);
    let eku: Vec<String> = eku.0.iter().map(|o| o.to_string()).collect();
    assert_eq!(eku, ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
    let (critical, san) = tbs.get::<SubjectAltName>().unwrap().unwrap();
    assert!(!critical);
    assert_eq!(san.0.len(), 1);
    let GeneralName::UniformResourceIdentifier(uri) = &san.0[0] else {
        panic!("URI SAN")
    };
    assert_eq!(uri.to_string(), URI);

    let mazu: Vec<_> = tbs
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .filter(|e| e.extn_id == MAZU_IDENTITY_OID)
        .collect();
    assert_eq!(mazu.len(), 1);
    assert!(
        !mazu[0].critical,
        "BoringSSL refuses unknown critical extensions"
    );
    let ext = MazuIdentity::from_der(mazu[0].extn_value.as_bytes()).unwrap();
    assert_eq!(ext.token, &w.token[..]);
    assert_eq!(ext.workload_id, WorkloadId::of_token(&w.token));

    // Self-signed with the workload key, ECDSA with SHA-256.
    assert_eq!(
        cert.signature_algorithm.oid.to_string(),
        "1.2.840.10045.4.3.2"
    );
    let sig = DerSignature::from_bytes(cert.signature.raw_bytes()).unwrap();
    VerifyingKey::from(&w.key)
        .verify(&tbs.to_der().unwrap(), &sig)
        .unwrap();

    assert_eq!(w.cert.spki_hash, spki_hash(&w.key));
    assert_eq!(w.cert.spiffe_id.as_str(), URI);
    assert_eq!(w.cert.workload_id, WorkloadId::of_token(&w.token));
    assert_eq!((w.cert.not_before, w.cert.not_after), (NOW - 60, TOKEN_EXP));
}

#[test]
fn parser_reads_what_the_builder_wrote() {
    let w = workload(mint(ec(), &request()));
    let pem = w.cert.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let crlf = pem.replace('\n', "\r\n");
    let padded = format!("\n  {pem}\n\n");
    // URL-encoded PEM, as Envoy's attribute docs describe the property
    // (every byte outside the unreserved set escaped, lower-case hex too).
    let url_encoded: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'\n' => "%0a".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect();
    assert!(url_encoded.starts_with("-----BEGIN%20CERTIFICATE-----%0a"));
    for input in [
        w.cert.der.clone(),
        pem.clone().into_bytes(),
        crlf.into_bytes(),
        padded.into_bytes(),
        url_encoded.clone().into_bytes(),
    ] {
        let peer = PeerCertificate::parse(&input, 16 * 1024).unwrap();
        assert_eq!(peer.spiffe_id, w.cert.spiffe_id);
        assert_eq!(peer.token, w.token);
        assert_eq!(peer.workload_id, w.cert.workload_id);
        assert_eq!(peer.spki_hash, w.cert.spki_hash);
        assert_eq!(
            (peer.not_before, peer.not_after),
            (w.cert.not_before, w.cert.not_after)
        );
    }
}

#[test]
fn a_malformed_url_encoding_is_refused() {
    let w = workload(mint(ec(), &request()));
    let pem = w.cert.to_pem().unwrap().replace(' ', "%20");
    for broken in [format!("{pem}%"), format!("{pem}%4"), format!("{pem}%zz")] {
        assert_eq!(
            PeerCertificate::parse(broken.as_bytes(), 16 * 1024),
            Err(CertificateError::MalformedPem),
            "{broken}"
        );
    }
}

#[test]
fn validity_never_exceeds_the_token() {
    let token = rsa_token();
    // Shorter requested lifetime wins.
    let w = workload_at(token.clone(), NOW, 600);
    assert_eq!(w.cert.not_after, NOW + 600);
    // A longer one is capped at exp, whatever was asked.
    for lifetime in [3600 * 2, u64::MAX] {
        assert_eq!(
            workload_at(token.clone(), NOW, lifetime).cert.not_after,
            TOKEN_EXP
        );
    }
    // Backdating is configurable.
    let td = trust_domain();
    let req = CertificateRequest::new(&token, &td, NOW, [0; 16]).backdate_secs(0);
    let cert = build_certificate(&req, &tls_key(1)).unwrap();
    assert_eq!(cert.not_before, NOW);
    // Post-2049 times use GeneralizedTime and still parse.
    let late = mint(rsa(), &request().issued_at(2_600_000_000).lifetime(3600));
    let req = CertificateRequest::new(&late, &td, 2_600_000_100, [0; 16]);
    let cert = build_certificate(&req, &tls_key(1)).unwrap();
    let peer = PeerCertificate::parse(&cert.der, 16 * 1024).unwrap();
    assert_eq!(peer.not_after, 2_600_003_600);
}

#[test]
fn builder_refuses_unusable_tokens() {
    let td = trust_domain();
    let key = tls_key(1);
    let build = |token: &[u8], now: u64| {
        build_certificate(&CertificateRequest::new(token, &td, now, [0; 16]), &key)
    };
    let token = rsa_token();
    assert_eq!(build(&token, TOKEN_EXP), Err(BuildError::TokenExpired));
    assert_eq!(
        build_certificate(
            &CertificateRequest::new(&token, &td, NOW, [0; 16]).lifetime_secs(0),
            &key
        ),
        Err(BuildError::ZeroLifetime)
    );
    assert_eq!(
        build(b"not a token", NOW),
        Err(BuildError::Token(TokenError::Malformed))
    );
    let mut claims = claims_value(rsa(), &request());
    claims["kubernetes.io"]["namespace"] = json!("a/b");
    claims["sub"] = json!("system:serviceaccount:a/b:cart");
    let bad_ns = sign_claims(rsa(), &claims.to_string());
    assert_eq!(
        build(&bad_ns, NOW),
        Err(BuildError::SpiffeId(SpiffeIdError::InvalidPathChar))
    );
    let far_future = mint(
        rsa(),
        &request().issued_at(253_402_300_000).lifetime(10_000),
    );
    assert_eq!(
        build(&far_future, 253_402_300_100),
        Err(BuildError::TimeOutOfRange)
    );
}

#[test]
fn validity_check_edges() {
    let w = workload_at(rsa_token(), NOW, 600);
    let peer = PeerCertificate::parse(&w.cert.der, 16 * 1024).unwrap();
    // notBefore = NOW - 60, notAfter = NOW + 600, both inclusive, skew 60.
    assert_eq!(peer.check_validity(NOW - 120, 60), Ok(()));
    assert_eq!(
        peer.check_validity(NOW - 121, 60),
        Err(CertificateError::NotYetValid)
    );
    assert_eq!(peer.check_validity(NOW + 660, 60), Ok(()));
    assert_eq!(
        peer.check_validity(NOW + 661, 60),
        Err(CertificateError::Expired)
    );
    assert_eq!(peer.check_validity(NOW + 600, 0), Ok(()));
    assert_eq!(
        peer.check_validity(NOW + 601, 0),
        Err(CertificateError::Expired)
    );
}

#[test]
fn parser_limits_and_garbage() {
    let w = workload(rsa_token());
    let der = &w.cert.der;
    assert_eq!(
        PeerCertificate::parse(der, der.len() - 1),
        Err(CertificateError::TooLarge {
            len: der.len(),
            max: der.len() - 1
        })
    );
    assert!(PeerCertificate::parse(der, der.len()).is_ok());
    for end in (0..der.len()).step_by(3) {
        assert!(PeerCertificate::parse(&der[..end], 16 * 1024).is_err());
    }
    for pos in (0..der.len()).step_by(5) {
        let mut bad = der.clone();
        bad[pos] ^= 0x55;
        let _ = PeerCertificate::parse(&bad, 16 * 1024);
    }
    assert_eq!(
        PeerCertificate::parse(b"-----BEGIN CERTIFICATE-----\n", 100),
        Err(CertificateError::MalformedPem)
    );
}

#[test]
fn error_names_are_stable() {
    assert_eq!(CertificateError::SanNul.as_str(), "certificate_san_nul");
    assert_eq!(
        CertificateError::InvalidSpiffeId(SpiffeIdError::WrongScheme).to_string(),
        "URI subjectAltName is not a workload SPIFFE ID: SPIFFE ID must start with \"spiffe://\""
    );
}
