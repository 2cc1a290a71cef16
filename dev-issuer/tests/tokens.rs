//! Minted tokens: JWKS shape, signatures verified from the JWKS alone, claim shape.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use base64ct::{Base64UrlUnpadded, Encoding};
use mazu_dev_issuer::{
    Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest, decode_unverified, unsigned_token,
};
use p256::ecdsa::signature::Verifier as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

fn b64d(s: &str) -> Vec<u8> {
    Base64UrlUnpadded::decode_vec(s).expect("base64url without padding")
}

fn issuer(alg: Algorithm, seed: u64) -> DevIssuer {
    DevIssuer::generate(alg, DEFAULT_ISSUER_URL, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// Verifies `token` using only the JWKS JSON (looked up by the header's kid).
fn verify_with_jwks(token: &str, jwks_json: &str) -> bool {
    let jwks: Value = serde_json::from_str(jwks_json).unwrap();
    let parts = decode_unverified(token).unwrap();
    let header: Value = serde_json::from_slice(&parts.header).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
    else {
        return false;
    };
    let (h, rest) = token.split_once('.').unwrap();
    let (c, _) = rest.split_once('.').unwrap();
    let input = format!("{h}.{c}");
    match (
        header["alg"].as_str().unwrap(),
        jwk["kty"].as_str().unwrap(),
    ) {
        ("RS256", "RSA") => {
            use rsa::BigUint;
            use rsa::signature::Verifier;
            let n = BigUint::from_bytes_be(&b64d(jwk["n"].as_str().unwrap()));
            let e = BigUint::from_bytes_be(&b64d(jwk["e"].as_str().unwrap()));
            let key = rsa::RsaPublicKey::new(n, e).unwrap();
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
            let Ok(sig) = rsa::pkcs1v15::Signature::try_from(parts.signature.as_slice()) else {
                return false;
            };
            vk.verify(input.as_bytes(), &sig).is_ok()
        }
        ("ES256", "EC") => {
            assert_eq!(jwk["crv"], "P-256");
            let x = b64d(jwk["x"].as_str().unwrap());
            let y = b64d(jwk["y"].as_str().unwrap());
            assert_eq!((x.len(), y.len()), (32, 32));
            let point = p256::EncodedPoint::from_affine_coordinates(
                x.as_slice().into(),
                y.as_slice().into(),
                false,
            );
            let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
            // JOSE form: exactly r || s.
            if parts.signature.len() != 64 {
                return false;
            }
            let Ok(sig) = p256::ecdsa::Signature::from_slice(&parts.signature) else {
                return false;
            };
            vk.verify(input.as_bytes(), &sig).is_ok()
        }
        _ => false,
    }
}

#[test]
fn jwks_shape_rsa() {
    let iss = issuer(Algorithm::Rs256, 1);
    let jwks: Value = serde_json::from_str(&iss.jwks_json()).unwrap();
    let keys = jwks.as_object().unwrap();
    assert_eq!(keys.len(), 1, "only `keys`");
    let key = &jwks["keys"][0];
    let mut members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");
    assert_eq!(key["kid"], iss.kid());
    let n = key["n"].as_str().unwrap();
    assert!(!n.contains('=') && !n.contains('+') && !n.contains('/'));
    let n = b64d(n);
    assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero");
    // kid = RFC 7638 thumbprint, recomputed independently.
    let canonical = format!(
        r#"{{"e":"AQAB","kty":"RSA","n":"{}"}}"#,
        key["n"].as_str().unwrap()
    );
    use sha2::Digest;
    let thumb = Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(canonical));
    assert_eq!(key["kid"], thumb.as_str());
    // Serialization order as documented.
    let text = serde_json::to_string(&iss.jwks().keys[0]).unwrap();
    let order: Vec<usize> = ["\"kty\"", "\"kid\"", "\"use\"", "\"alg\"", "\"n\"", "\"e\""]
        .iter()
        .map(|m| text.find(m).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn jwks_shape_ec() {
    let iss = issuer(Algorithm::Es256, 2);
    let jwks: Value = serde_json::from_str(&iss.jwks_json()).unwrap();
    let key = &jwks["keys"][0];
    let mut members: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        key["x"].as_str().unwrap(),
        key["y"].as_str().unwrap()
    );
    use sha2::Digest;
    let thumb = Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(canonical));
    assert_eq!(key["kid"], thumb.as_str());
}

#[test]
fn merged_jwks_holds_every_issuer() {
    let a = issuer(Algorithm::Es256, 3);
    let b = issuer(Algorithm::Rs256, 4);
    let merged = DevIssuer::merged_jwks([&a, &b, &a]);
    assert_eq!(merged.keys.len(), 2);
    let json = merged.to_json();
    let req = TokenRequest::new("ns", "sa");
    assert!(verify_with_jwks(&a.mint(&req).unwrap(), &json));
    assert!(verify_with_jwks(&b.mint(&req).unwrap(), &json));
    assert!(!verify_with_jwks(&a.mint(&req).unwrap(), &b.jwks_json()));
}

#[test]
fn rs256_and_es256_tokens_verify_against_the_jwks() {
    for (alg, seed) in [(Algorithm::Rs256, 5), (Algorithm::Es256, 6)] {
        let iss = issuer(alg, seed);
        let token = iss.mint(&TokenRequest::new("shop", "cart")).unwrap();
        assert!(verify_with_jwks(&token, &iss.jwks_json()), "{alg}");
        let parts = decode_unverified(&token).unwrap();
        assert_eq!(
            String::from_utf8(parts.header).unwrap(),
            format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, iss.kid())
        );
        if alg == Algorithm::Es256 {
            assert_eq!(parts.signature.len(), 64);
        } else {
            assert_eq!(parts.signature.len(), 256);
        }
        // A different key of the same algorithm does not verify it.
        let other = issuer(alg, seed + 100);
        let mut forged_jwks = other.jwks();
        forged_jwks.keys[0].kid = Some(iss.kid().to_owned());
        assert!(!verify_with_jwks(&token, &forged_jwks.to_json()));
    }
}

#[test]
fn claims_have_the_kubernetes_shape() {
    let iss = issuer(Algorithm::Es256, 7);
    let req = TokenRequest::new("shop", "cart")
        .service_account_uid("a087d5a0-e1dd-43ec-93ac-f13d89cd13af")
        .pod("cart-7d9f8-x2x1q", "778a530c-b3f4-47c0-9cd5-ab018fb64f33")
        .node("node-1", "58456cb0-dd00-45ed-b797-5578fdceaced")
        .audiences(["mazu", "other"])
        .issued_at(1_700_000_000)
        .lifetime(600)
        .jti("6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24");
    let token = iss.mint(&req).unwrap();
    let claims_bytes = decode_unverified(&token).unwrap().claims;
    let claims: Value = serde_json::from_slice(&claims_bytes).unwrap();
    assert_eq!(
        claims,
        json!({
            "aud": ["mazu", "other"],
            "exp": 1_700_000_600u64,
            "iat": 1_700_000_000u64,
            "iss": "https://kubernetes.default.svc.cluster.local",
            "jti": "6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24",
            "kubernetes.io": {
                "namespace": "shop",
                "node": {"name": "node-1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"},
                "pod": {"name": "cart-7d9f8-x2x1q", "uid": "778a530c-b3f4-47c0-9cd5-ab018fb64f33"},
                "serviceaccount": {"name": "cart", "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"},
                "warnafter": 1_700_000_600u64
            },
            "nbf": 1_700_000_000u64,
            "sub": "system:serviceaccount:shop:cart"
        })
    );
    // Exact bytes: compact, members in Kubernetes' (alphabetical) order.
    let expected = concat!(
        r#"{"aud":["mazu","other"],"exp":1700000600,"iat":1700000000,"#,
        r#""iss":"https://kubernetes.default.svc.cluster.local","#,
        r#""jti":"6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24","kubernetes.io":{"namespace":"shop","#,
        r#""node":{"name":"node-1","uid":"58456cb0-dd00-45ed-b797-5578fdceaced"},"#,
        r#""pod":{"name":"cart-7d9f8-x2x1q","uid":"778a530c-b3f4-47c0-9cd5-ab018fb64f33"},"#,
        r#""serviceaccount":{"name":"cart","uid":"a087d5a0-e1dd-43ec-93ac-f13d89cd13af"},"#,
        r#""warnafter":1700000600},"nbf":1700000000,"sub":"system:serviceaccount:shop:cart"}"#
    );
    assert_eq!(String::from_utf8(claims_bytes).unwrap(), expected);
}

#[test]
fn defaults() {
    let iss = issuer(Algorithm::Es256, 8);
    let before = mazu_dev_issuer::now_unix();
    let claims = iss.claims(&TokenRequest::new("ns", "sa"));
    assert_eq!(claims.aud, [mazu_dev_issuer::DEV_AUDIENCE]);
    assert!(claims.iat >= before && claims.iat <= before + 5);
    assert_eq!(claims.exp, claims.iat + 3600);
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.kubernetes.warnafter, Some(claims.exp));
    assert_eq!(claims.kubernetes.node, None);
    assert_eq!(claims.kubernetes.pod.as_ref().unwrap().name, "sa-pod");
    assert_eq!(claims.sub, "system:serviceaccount:ns:sa");
    assert_eq!(claims.jti.len(), 36);
    // Fresh jti per token, stable derived UIDs.
    let again = iss.claims(&TokenRequest::new("ns", "sa"));
    assert_ne!(claims.jti, again.jti);
    assert_eq!(
        claims.kubernetes.serviceaccount,
        again.kubernetes.serviceaccount
    );
    // Custom issuer URL; expired and not-yet-valid tokens are allowed.
    let custom = DevIssuer::from_key(iss.key().clone(), "https://oidc.example");
    let c = custom.claims(
        &TokenRequest::new("ns", "sa")
            .issued_at(1000)
            .lifetime(10)
            .not_before(5000)
            .without_pod(),
    );
    assert_eq!(
        (c.iss.as_str(), c.exp, c.nbf),
        ("https://oidc.example", 1010, 5000)
    );
    assert_eq!(c.kubernetes.pod, None);
}

#[test]
fn raw_signing_for_negative_tests() {
    let iss = issuer(Algorithm::Rs256, 9);
    let jwks = iss.jwks_json();
    // Duplicate keys are signed verbatim.
    let claims = r#"{"sub":"system:serviceaccount:a:b","sub":"system:serviceaccount:c:d"}"#;
    let token = iss.sign_raw(&iss.header_json(), claims);
    assert!(verify_with_jwks(&token, &jwks));
    assert_eq!(decode_unverified(&token).unwrap().claims, claims.as_bytes());
    // alg mismatch: header says ES256, RSA key signs.
    let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, iss.kid());
    assert!(!verify_with_jwks(&iss.sign_raw(&header, claims), &jwks));
    // Tampered claims keep the old signature.
    let good = iss.mint(&TokenRequest::new("a", "b")).unwrap();
    let sig = decode_unverified(&good).unwrap().signature;
    let tampered = unsigned_token(&iss.header_json(), r#"{"sub":"x"}"#, &sig);
    assert!(!verify_with_jwks(&tampered, &jwks));
    // Edited claim struct, signed normally.
    let mut c = iss.claims(&TokenRequest::new("a", "b"));
    c.kubernetes.warnafter = None;
    c.aud.clear();
    let t = iss.sign_claims(&c).unwrap();
    assert!(verify_with_jwks(&t, &jwks));
    let v: Value = serde_json::from_slice(&decode_unverified(&t).unwrap().claims).unwrap();
    assert!(v["kubernetes.io"].get("warnafter").is_none());
    assert_eq!(v["aud"], json!([]));
}
