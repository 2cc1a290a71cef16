//! Trust configuration and JWKS validation: every refusal has its own error.

// Case builders outside #[test] functions unwrap too: a fixture that
// cannot be built is a bug in the test.
#![allow(clippy::unwrap_used)]

mod support;

use mazu_dev_issuer::{DevIssuer, IssuerKey};
use mazu_identity::jwt::Algorithm;
use mazu_identity::trust::{AudienceError, NamespaceScope, ScopeError};
use mazu_identity::{ConfigError, Jwks, JwksError, SpiffeIdError, TrustConfig};
use rand::SeedableRng;
use serde_json::{Value, json};
use support::*;

fn jwks_error(jwks: &Value) -> JwksError {
    Jwks::from_json(jwks.to_string().as_bytes()).unwrap_err()
}

fn rsa_jwk() -> Value {
    serde_json::to_value(rsa().jwk()).unwrap()
}

fn ec_jwk() -> Value {
    serde_json::to_value(ec().jwk()).unwrap()
}

#[test]
fn parses_the_dev_issuer_jwks() {
    let jwks = Jwks::from_json(issuers().jwks_json.as_bytes()).unwrap();
    assert_eq!(jwks.keys().len(), 2);
    assert_eq!(jwks.get(rsa().kid()).unwrap().algorithm(), Algorithm::Rs256);
    assert_eq!(jwks.get(ec().kid()).unwrap().algorithm(), Algorithm::Es256);
    assert!(jwks.get("nope").is_none());
}

#[test]
fn skips_keys_that_cannot_sign_tokens() {
    let mut enc = rsa_jwk();
    enc["use"] = json!("enc");
    let mut rs384 = rsa_jwk();
    rs384["alg"] = json!("RS384");
    let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
    let okp = json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"});
    let jwks = json!({"keys": [enc, rs384, oct, okp, ec_jwk()]});
    let parsed = Jwks::from_json(jwks.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.keys().len(), 1);
    assert_eq!(parsed.keys()[0].kid(), ec().kid());
    let only_unusable = json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]});
    assert_eq!(jwks_error(&only_unusable), JwksError::NoUsableKeys);
    assert_eq!(jwks_error(&json!({"keys": []})), JwksError::NoUsableKeys);
}

#[test]
fn refuses_bad_jwks_documents() {
    let kid = rsa().kid().to_owned();
    let eckid = ec().kid().to_owned();
    assert_eq!(
        Jwks::from_json(b"{\"keys\":[").unwrap_err(),
        JwksError::MalformedJson
    );
    assert_eq!(
        Jwks::from_json(b"{\"keys\":[],\"keys\":[]}").unwrap_err(),
        JwksError::DuplicateJsonKey
    );
    assert_eq!(jwks_error(&json!({"keys": 5})), JwksError::MalformedJwks);
    assert_eq!(jwks_error(&json!({"nokeys": []})), JwksError::MalformedJwks);

    let mut no_kid = rsa_jwk();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        jwks_error(&json!({"keys": [ec_jwk(), no_kid]})),
        JwksError::MissingKid(1)
    );
    assert_eq!(
        jwks_error(&json!({"keys": [rsa_jwk(), rsa_jwk()]})),
        JwksError::DuplicateKid(kid.clone())
    );

    let mut no_n = rsa_jwk();
    no_n.as_object_mut().unwrap().remove("n");
    assert_eq!(
        jwks_error(&json!({"keys": [no_n]})),
        JwksError::MissingKeyParameter {
            kid: kid.clone(),
            param: "n"
        }
    );
    let mut padded = rsa_jwk();
    padded["e"] = json!("AQAB==");
    assert_eq!(
        jwks_error(&json!({"keys": [padded]})),
        JwksError::MalformedKeyParameter {
            kid: kid.clone(),
            param: "e"
        }
    );

    let mut private = rsa_jwk();
    private["d"] = json!("AQAB");
    assert_eq!(
        jwks_error(&json!({"keys": [private]})),
        JwksError::PrivateKeyMaterial { kid: kid.clone() }
    );

    let weak =
        DevIssuer::generate_rsa(1024, ISSUER, &mut rand::rngs::StdRng::seed_from_u64(5)).unwrap();
    assert_eq!(
        Jwks::from_json(weak.jwks_json().as_bytes()).unwrap_err(),
        JwksError::WeakRsaKey {
            kid: weak.kid().to_owned(),
            bits: 1024
        }
    );
    let mut huge = rsa_jwk();
    huge["n"] = json!(support::tamper::b64(&[0xff; 513]));
    assert_eq!(
        jwks_error(&json!({"keys": [huge]})),
        JwksError::InvalidRsaKey { kid: kid.clone() }
    );
    let mut bad_e = rsa_jwk();
    bad_e["e"] = json!("AQ"); // e = 1
    assert_eq!(
        jwks_error(&json!({"keys": [bad_e]})),
        JwksError::InvalidRsaKey { kid: kid.clone() }
    );

    let mut p384 = ec_jwk();
    p384["crv"] = json!("P-384");
    assert_eq!(
        jwks_error(&json!({"keys": [p384]})),
        JwksError::UnsupportedCurve { kid: eckid.clone() }
    );
    let mut no_crv = ec_jwk();
    no_crv.as_object_mut().unwrap().remove("crv");
    assert_eq!(
        jwks_error(&json!({"keys": [no_crv]})),
        JwksError::MissingKeyParameter {
            kid: eckid.clone(),
            param: "crv"
        }
    );
    let mut off_curve = ec_jwk();
    off_curve["y"] = json!(support::tamper::b64(&[1; 32]));
    assert_eq!(
        jwks_error(&json!({"keys": [off_curve]})),
        JwksError::InvalidEcPoint { kid: eckid.clone() }
    );
    let mut short_x = ec_jwk();
    short_x["x"] = json!(support::tamper::b64(&[1; 31]));
    assert_eq!(
        jwks_error(&json!({"keys": [short_x]})),
        JwksError::MalformedKeyParameter {
            kid: eckid,
            param: "x/y"
        }
    );
}

fn builder() -> mazu_identity::TrustConfigBuilder {
    TrustConfig::builder(TRUST_DOMAIN)
        .audience(AUDIENCE)
        .issuer(ISSUER, issuers().jwks_json.as_bytes(), any())
}

fn any() -> NamespaceScope {
    NamespaceScope::any()
}

#[test]
fn validates_the_trust_configuration() {
    let config = builder().build().unwrap();
    assert_eq!(config.trust_domain().as_str(), TRUST_DOMAIN);
    assert_eq!(config.token_policy().audience(), AUDIENCE);
    assert_eq!(config.clock_skew_secs(), 60);
    assert_eq!(config.token_policy().max_token_len(), 8192);
    assert_eq!(config.max_certificate_len(), 16384);
    assert_eq!(config.token_policy().issuers()[0].url(), ISSUER);

    let err = |b: mazu_identity::TrustConfigBuilder| b.build().unwrap_err();
    assert_eq!(
        err(TrustConfig::builder("Cluster.Local")
            .audience(AUDIENCE)
            .issuer(ISSUER, issuers().jwks_json.as_bytes(), any())),
        ConfigError::TrustDomain(SpiffeIdError::InvalidTrustDomainChar)
    );
    assert_eq!(
        err(TrustConfig::builder(TRUST_DOMAIN).audience(AUDIENCE)),
        ConfigError::NoIssuers
    );
    assert_eq!(
        err(TrustConfig::builder(TRUST_DOMAIN)
            .audience(AUDIENCE)
            .issuer("https://a b", issuers().jwks_json.as_bytes(), any())),
        ConfigError::InvalidIssuer("https://a b".into())
    );
    assert_eq!(
        err(TrustConfig::builder(TRUST_DOMAIN)
            .audience(AUDIENCE)
            .issuer("", issuers().jwks_json.as_bytes(), any())),
        ConfigError::InvalidIssuer(String::new())
    );
    assert_eq!(
        err(builder().issuer(ISSUER, b"{}", any())),
        ConfigError::DuplicateIssuer(ISSUER.into())
    );
    assert_eq!(
        err(TrustConfig::builder(TRUST_DOMAIN)
            .audience(AUDIENCE)
            .issuer(ISSUER, b"[]", any())),
        ConfigError::Jwks {
            issuer: ISSUER.into(),
            error: JwksError::MalformedJwks
        }
    );
    // The same key published by two issuers: key selection by kid would be ambiguous.
    assert_eq!(
        err(builder().issuer("https://other.example", rsa().jwks_json().as_bytes(), any())),
        ConfigError::Jwks {
            issuer: "https://other.example".into(),
            error: JwksError::DuplicateKid(rsa().kid().into())
        }
    );
    assert_eq!(
        err(builder().audience("")),
        ConfigError::Audience(AudienceError::Empty)
    );
    assert_eq!(
        err(builder().clock_skew_secs(601)),
        ConfigError::ClockSkewTooLarge(601)
    );
    assert_eq!(
        err(builder().max_token_len(511)),
        ConfigError::MaxTokenLenOutOfRange(511)
    );
    assert_eq!(
        err(builder().max_token_len(65537)),
        ConfigError::MaxTokenLenOutOfRange(65537)
    );
    assert_eq!(
        err(builder().max_token_len(10_000).max_certificate_len(9_999)),
        ConfigError::MaxCertificateLenOutOfRange(9_999)
    );
    assert_eq!(
        err(builder().max_certificate_len(256 * 1024 + 1)),
        ConfigError::MaxCertificateLenOutOfRange(256 * 1024 + 1)
    );
    assert!(
        builder()
            .clock_skew_secs(600)
            .max_token_len(512)
            .max_certificate_len(512)
            .build()
            .is_ok()
    );
}

#[test]
fn several_issuers_each_with_their_own_keys() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let tenant = DevIssuer::from_key(
        IssuerKey::Ec(p256::ecdsa::SigningKey::random(&mut rng)),
        "https://tenant.example",
    );
    let jwks = Jwks::from_json(tenant.jwks_json().as_bytes()).unwrap();
    let config = builder()
        .issuer_jwks("https://tenant.example", jwks, any())
        .build()
        .unwrap();
    let token = tenant.mint(&request()).unwrap();
    assert_eq!(
        config
            .verify_token(token.as_bytes(), NOW)
            .unwrap()
            .claims
            .issuer,
        "https://tenant.example"
    );
    assert!(config.verify_token(&rsa_token(), NOW).is_ok());
    // The tenant's key cannot vouch for the cluster issuer.
    let mut claims = serde_json::to_value(tenant.claims(&request())).unwrap();
    claims["iss"] = json!(ISSUER);
    let spoof = tenant.sign_raw(&tenant.header_json(), &claims.to_string());
    assert_eq!(
        config.verify_token(spoof.as_bytes(), NOW),
        Err(mazu_identity::TokenError::WrongIssuer)
    );
}

#[test]
fn the_audience_is_required_and_must_not_be_the_shared_one() {
    let err = |b: mazu_identity::TrustConfigBuilder| b.build().unwrap_err();
    // No default: a builder without an audience is refused.
    assert_eq!(
        err(TrustConfig::builder(TRUST_DOMAIN).issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            any()
        )),
        ConfigError::Audience(AudienceError::Missing)
    );
    // The audience every deployment used to share, in any spelling.
    for shared in ["mazu", "Mazu", "mazu:"] {
        let e = err(builder().audience(shared));
        assert_eq!(
            e,
            ConfigError::Audience(AudienceError::Shared(shared.into()))
        );
        assert!(e.to_string().contains("deployment-unique"), "{e}");
    }
    // The issuer URL is the API server's default audience.
    assert_eq!(
        err(builder().audience(ISSUER)),
        ConfigError::Audience(AudienceError::IsIssuer(ISSUER.into()))
    );
    assert!(matches!(
        err(builder().audience("mazu prod")),
        ConfigError::Audience(AudienceError::NotPrintable(_))
    ));
    // The recommended value: "mazu:" and the curator's log origin.
    let derived = mazu_identity::trust::audience_for_log("mazu-curator/0123456789abcdef");
    assert!(builder().audience(&derived).build().is_ok());
}

#[test]
fn a_token_from_another_deployment_is_refused() {
    // Same issuer, same keys, another deployment's audience: the token seen
    // in that deployment's log cannot be used here.
    let other = mint(
        rsa(),
        &request().audiences(["mazu:mazu-curator/ffffffffffffffff"]),
    );
    assert_eq!(
        trust().verify_token(&other, NOW),
        Err(mazu_identity::TokenError::WrongAudience)
    );
}

#[test]
fn an_issuer_only_asserts_the_namespaces_in_its_scope() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let tenant = DevIssuer::from_key(
        IssuerKey::Ec(p256::ecdsa::SigningKey::random(&mut rng)),
        "https://tenant.example",
    );
    let config = builder()
        .issuer(
            "https://tenant.example",
            tenant.jwks_json().as_bytes(),
            NamespaceScope::parse("tenant-a+tenant-b").unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        config.token_policy().issuers()[1].scope().to_string(),
        "tenant-a+tenant-b"
    );
    let inside = tenant
        .mint(&mazu_dev_issuer::TokenRequest::new("tenant-b", "api").issued_at(NOW - 60))
        .unwrap();
    assert!(config.verify_token(inside.as_bytes(), NOW).is_ok());
    // The tenant's issuer signs a token for the cluster's "shop" namespace:
    // a valid signature, but not its namespace to vouch for.
    let outside = tenant.mint(&request()).unwrap();
    let e = config.verify_token(outside.as_bytes(), NOW).unwrap_err();
    assert_eq!(e, mazu_identity::TokenError::NamespaceOutOfScope);
    assert_eq!(e.as_str(), "token_namespace_out_of_scope");
    // The cluster issuer (scope "*") still vouches for every namespace.
    assert!(config.verify_token(&rsa_token(), NOW).is_ok());
    // A scoped cluster issuer refuses its own tokens outside the scope.
    let scoped = TrustConfig::builder(TRUST_DOMAIN)
        .audience(AUDIENCE)
        .issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            NamespaceScope::namespaces(["payments"]).unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        scoped.verify_token(&rsa_token(), NOW),
        Err(mazu_identity::TokenError::NamespaceOutOfScope)
    );
    // Scopes are explicit: nothing, or "*" among names, is refused.
    assert_eq!(NamespaceScope::parse(""), Err(ScopeError::Empty));
    assert_eq!(
        NamespaceScope::namespaces(["*", "shop"]),
        Err(ScopeError::WildcardNotAlone)
    );
}
