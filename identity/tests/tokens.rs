//! Token verification at the policy level: both algorithms, the time window,
//! the malleability the claims digest covers, and refusals beyond the verdict table.

// Case builders outside #[test] functions unwrap too: a fixture that
// cannot be built is a bug in the test.
#![allow(clippy::unwrap_used)]

mod support;

use mazu_identity::jwt::{TokenPart, parse_claims_unverified};
use mazu_identity::trust::NamespaceScope;
use mazu_identity::{ClaimsDigest, TokenError, TrustConfig, WorkloadId};
use p256::ecdsa::Signature;
use serde_json::json;
use support::tamper::{b64, join, non_canonical, segments, unb64};
use support::*;

#[test]
fn verifies_rs256_and_es256_tokens() {
    let trust = trust();
    for issuer in [rsa(), ec()] {
        let token = mint(issuer, &request());
        let verified = trust.verify_token(&token, NOW).unwrap();
        let c = &verified.claims;
        assert_eq!(c.issuer, ISSUER);
        assert_eq!(c.subject, "system:serviceaccount:shop:cart");
        assert_eq!(c.audiences, [AUDIENCE]);
        assert_eq!(
            (c.issued_at, c.not_before, c.expires_at),
            (NOW - 60, Some(NOW - 60), TOKEN_EXP)
        );
        assert_eq!(c.kubernetes.namespace, "shop");
        assert_eq!(c.kubernetes.service_account.name, "cart");
        assert_eq!(c.kubernetes.pod.name, "cart-pod");
        assert_eq!(c.kubernetes.node.as_ref().unwrap().name, "node-1");
        assert_eq!(
            c.jwt_id.as_deref(),
            Some("6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24")
        );
        assert_eq!(verified.workload_id, WorkloadId::of_token(&token));
        let [h, p, _] = segments(&token);
        assert_eq!(
            verified.claims_digest,
            ClaimsDigest::of_signing_input(format!("{h}.{p}").as_bytes())
        );
        assert_eq!(
            parse_claims_unverified(&token, 8192).unwrap(),
            verified.claims
        );
    }
}

#[test]
fn accepts_a_single_string_audience() {
    let mut claims = claims_value(rsa(), &request());
    claims["aud"] = json!(AUDIENCE);
    let token = sign_claims(rsa(), &claims.to_string());
    assert_eq!(
        trust().verify_token(&token, NOW).unwrap().claims.audiences,
        [AUDIENCE]
    );
}

#[test]
fn time_window_with_skew() {
    let trust = trust();
    let token = rsa_token(); // nbf = iat = NOW - 60, exp = TOKEN_EXP
    assert!(trust.verify_token(&token, TOKEN_EXP + SKEW - 1).is_ok());
    assert_eq!(
        trust.verify_token(&token, TOKEN_EXP + SKEW),
        Err(TokenError::Expired)
    );
    assert!(trust.verify_token(&token, NOW - 60 - SKEW).is_ok());
    assert_eq!(
        trust.verify_token(&token, NOW - 60 - SKEW - 1),
        Err(TokenError::NotYetValid)
    );
    let strict = TrustConfig::builder(TRUST_DOMAIN)
        .audience(AUDIENCE)
        .issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            NamespaceScope::any(),
        )
        .clock_skew_secs(0)
        .build()
        .unwrap();
    assert!(strict.verify_token(&token, TOKEN_EXP - 1).is_ok());
    assert_eq!(
        strict.verify_token(&token, TOKEN_EXP),
        Err(TokenError::Expired)
    );
    assert_eq!(
        strict.verify_token(&token, NOW - 61),
        Err(TokenError::NotYetValid)
    );
    // Without nbf, iat bounds the start.
    let mut claims = claims_value(rsa(), &request().issued_at(NOW + 100));
    claims.as_object_mut().unwrap().remove("nbf");
    let no_nbf = sign_claims(rsa(), &claims.to_string());
    assert_eq!(
        trust.verify_token(&no_nbf, NOW),
        Err(TokenError::IssuedInFuture)
    );
    assert!(trust.verify_token(&no_nbf, NOW + 40).is_ok());
}

/// The reason for the claims digest: a thief holding an ES256 token can
/// compute (r, n - s), a different valid signature, hence different token
/// bytes and a different workload ID for the same claims. The curator keys
/// on the claims digest to refuse it.
#[test]
fn ecdsa_malleability_changes_the_id_but_not_the_claims_digest() {
    let trust = trust();
    let token = mint(ec(), &request());
    let [h, p, s] = segments(&token);
    let sig = Signature::from_slice(&unb64(&s)).unwrap();
    let (r, s_scalar) = sig.split_scalars();
    let flipped = Signature::from_scalars(r.to_bytes(), (-s_scalar).to_bytes()).unwrap();
    assert_ne!(flipped, sig);
    let twin = join(&h, &p, &b64(&flipped.to_bytes()));
    let a = trust.verify_token(&token, NOW).unwrap();
    let b = trust.verify_token(&twin, NOW).unwrap();
    assert_ne!(a.workload_id, b.workload_id);
    assert_eq!(a.claims_digest, b.claims_digest);
    assert_eq!(a.claims, b.claims);
}

#[test]
fn non_canonical_base64_is_refused_in_every_segment() {
    let trust = trust();
    for issuer in [rsa(), ec()] {
        let token = mint(issuer, &request());
        let [h, p, s] = segments(&token);
        // 256- and 64-byte signatures both end in a partial base64 block.
        assert_eq!(
            trust.verify_token(&join(&h, &p, &non_canonical(&s)), NOW),
            Err(TokenError::MalformedBase64(TokenPart::Signature))
        );
        if h.len() % 4 != 0 {
            assert_eq!(
                trust.verify_token(&join(&non_canonical(&h), &p, &s), NOW),
                Err(TokenError::MalformedBase64(TokenPart::Header))
            );
        }
        for bad in [format!("{s}="), format!("{s} "), s.replace(['-', '_'], "+")] {
            if bad != s {
                assert_eq!(
                    trust.verify_token(&join(&h, &p, &bad), NOW),
                    Err(TokenError::MalformedBase64(TokenPart::Signature)),
                    "{bad}"
                );
            }
        }
    }
}

#[test]
fn signatures_from_other_keys_or_encodings_fail() {
    let trust = trust();
    // ES256 header naming the configured EC key, signed by another EC key.
    let other =
        mazu_dev_issuer::DevIssuer::from_key(mazu_dev_issuer::IssuerKey::Ec(tls_key(99)), ISSUER);
    let forged = sign_raw(
        &other,
        &ec().header_json(),
        &claims_value(ec(), &request()).to_string(),
    );
    assert_eq!(
        trust.verify_token(&forged, NOW),
        Err(TokenError::BadSignature)
    );
    // An embedded `jwk` header is ignored: keys only come from the JWKS.
    let header = format!(
        r#"{{"alg":"ES256","kid":"{}","jwk":{}}}"#,
        ec().kid(),
        serde_json::to_string(&other.jwk()).unwrap()
    );
    let embedded = sign_raw(&other, &header, &claims_value(ec(), &request()).to_string());
    assert_eq!(
        trust.verify_token(&embedded, NOW),
        Err(TokenError::BadSignature)
    );
    // ES256 with a DER signature instead of r || s.
    let token = mint(ec(), &request());
    let [h, p, s] = segments(&token);
    let der_sig = Signature::from_slice(&unb64(&s)).unwrap().to_der();
    assert_eq!(
        trust.verify_token(&join(&h, &p, &b64(der_sig.as_bytes())), NOW),
        Err(TokenError::BadSignature)
    );
    // Empty signature.
    assert_eq!(
        trust.verify_token(&join(&h, &p, ""), NOW),
        Err(TokenError::BadSignature)
    );
    // ES256 header naming the RSA key.
    let mismatched = sign_raw(
        ec(),
        &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, rsa().kid()),
        "{}",
    );
    assert_eq!(
        trust.verify_token(&mismatched, NOW),
        Err(TokenError::KeyTypeMismatch)
    );
}

#[test]
fn names_each_missing_claim() {
    let trust = trust();
    let cases: [(&str, &[&str]); 10] = [
        ("iss", &["iss"]),
        ("sub", &["sub"]),
        ("aud", &["aud"]),
        ("exp", &["exp"]),
        ("iat", &["iat"]),
        ("kubernetes.io", &["kubernetes.io"]),
        ("kubernetes.io.namespace", &["kubernetes.io", "namespace"]),
        (
            "kubernetes.io.serviceaccount",
            &["kubernetes.io", "serviceaccount"],
        ),
        (
            "kubernetes.io.serviceaccount.uid",
            &["kubernetes.io", "serviceaccount", "uid"],
        ),
        ("kubernetes.io.pod.uid", &["kubernetes.io", "pod", "uid"]),
    ];
    for (name, path) in cases {
        let mut claims = claims_value(rsa(), &request());
        let mut target = &mut claims;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target.as_object_mut().unwrap().remove(path[path.len() - 1]);
        let token = sign_claims(rsa(), &claims.to_string());
        assert_eq!(
            trust.verify_token(&token, NOW),
            Err(TokenError::MissingClaim(name)),
            "{name}"
        );
    }
}

#[test]
fn limits_and_audience_are_configurable() {
    let token = rsa_token();
    let small = TrustConfig::builder(TRUST_DOMAIN)
        .audience(AUDIENCE)
        .issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            NamespaceScope::any(),
        )
        .max_token_len(512)
        .build()
        .unwrap();
    assert_eq!(
        small.verify_token(&token, NOW),
        Err(TokenError::TooLarge {
            len: token.len(),
            max: 512
        })
    );
    let custom = TrustConfig::builder(TRUST_DOMAIN)
        .issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            NamespaceScope::any(),
        )
        .audience("mesh.example")
        .build()
        .unwrap();
    assert_eq!(
        custom.verify_token(&token, NOW),
        Err(TokenError::WrongAudience)
    );
    let token = mint(rsa(), &request().audiences(["mesh.example"]));
    assert!(custom.verify_token(&token, NOW).is_ok());
}

#[test]
fn names_are_stable() {
    assert_eq!(TokenError::AlgNone.as_str(), "token_alg_none");
    assert_eq!(
        TokenError::MissingClaim("x").to_string(),
        "required claim x is missing"
    );
    assert_eq!(
        TokenError::MalformedBase64(TokenPart::Signature).to_string(),
        "signature is not canonical unpadded base64url"
    );
}

#[test]
fn garbage_never_panics() {
    let trust = trust();
    let token = rsa_token();
    // Every prefix, and every single-byte corruption of a sample of positions.
    for end in 0..token.len() {
        assert!(trust.verify_token(&token[..end], NOW).is_err());
    }
    for pos in (0..token.len()).step_by(7) {
        for byte in [0u8, b'.', b'=', 0xff, b'A'] {
            let mut t = token.clone();
            t[pos] = byte;
            let _ = trust.verify_token(&t, NOW);
        }
    }
}
