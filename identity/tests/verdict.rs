//! The verdict: the allow paths, and for every deny reason a certificate or
//! token built to fail exactly that check. The same table drives the test
//! that the caching `Verifier` returns the pure function's verdicts.

// Case builders outside #[test] functions unwrap too: a fixture that
// cannot be built is a bug in the test.
#![allow(clippy::unwrap_used)]

mod support;

use mazu_dev_issuer::unsigned_token;
use mazu_identity::certificate::{CertificateRequest, MAZU_IDENTITY_OID, build_certificate};
use mazu_identity::verdict::DenyReason;
use mazu_identity::{RegistrySnapshot, TrustDomain, Verdict, Verifier, WorkloadId, verdict};
use serde_json::json;
use support::certs::{
    self, mazu_ext, mazu_ext_with_id, raw_ext, san_ext, san_uris, standard_exts, tlv,
};
use support::tamper::{b64, flip_signature_bit, hmac_sha256, join, non_canonical, segments};
use support::*;

const URI: &str = "spiffe://cluster.local/ns/shop/sa/cart";

/// One verdict input and the reason it must produce.
struct Case {
    expect: &'static str,
    what: &'static str,
    cert: Vec<u8>,
    now: u64,
    registry: RegistrySnapshot,
}

/// A hand-built certificate for `token` with the standard extensions and a
/// validity from NOW - 60 to the token's expiry.
fn hand_cert(token: &[u8]) -> Vec<u8> {
    certs::build(
        &tls_key(7),
        NOW - 60,
        token_expiry(token).min(NOW + 3600),
        standard_exts(URI, token),
    )
}

/// A case with a hand-built certificate for a token, registered with the right key, at NOW.
fn token_case(expect: &'static str, what: &'static str, token: Vec<u8>) -> Case {
    Case {
        expect,
        what,
        cert: hand_cert(&token),
        now: NOW,
        registry: registered(&token, &tls_key(7)),
        // `token` only lives in the certificate.
    }
}

/// A case with custom extensions for the standard token, registered.
fn ext_case(
    expect: &'static str,
    what: &'static str,
    extensions: Vec<x509_cert::ext::Extension>,
) -> Case {
    let token = rsa_token();
    Case {
        expect,
        what,
        cert: certs::build(&tls_key(7), NOW - 60, TOKEN_EXP, extensions),
        now: NOW,
        registry: registered(&token, &tls_key(7)),
    }
}

fn with_claims(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut claims = claims_value(rsa(), &request());
    edit(&mut claims);
    sign_claims(rsa(), &claims.to_string())
}

fn rsa_header(extra: &str) -> String {
    format!(r#"{{"alg":"RS256","kid":"{}"{extra}}}"#, rsa().kid())
}

fn claims_json() -> String {
    claims_value(rsa(), &request()).to_string()
}

fn token_cases() -> Vec<Case> {
    let good = rsa_token();
    let [h, p, s] = segments(&good);
    let mut cases = vec![
        token_case(
            "token_too_large",
            "a valid signature over 9 KiB of claims",
            with_claims(|c| c["padding"] = json!("x".repeat(9000))),
        ),
        token_case(
            "token_malformed",
            "two segments",
            format!("{h}.{p}").into_bytes(),
        ),
        token_case(
            "token_malformed",
            "four segments",
            format!("{h}.{p}.{s}.{s}").into_bytes(),
        ),
        token_case(
            "token_malformed_base64",
            "padded header",
            join(&format!("{h}="), &p, &s),
        ),
        token_case(
            "token_malformed_base64",
            "signature with a non-zero trailing bit (same bytes, new ID)",
            join(&h, &p, &non_canonical(&s)),
        ),
        token_case(
            "token_malformed_json",
            "header is not JSON",
            join(&b64(br#"{"alg":"RS256""#), &p, &s),
        ),
        token_case(
            "token_malformed_json",
            "claims are not JSON",
            sign_claims(rsa(), "{claims"),
        ),
        token_case(
            "token_duplicate_json_key",
            "header repeats kid",
            sign_raw(
                rsa(),
                &rsa_header(&format!(r#","kid":"{}""#, rsa().kid())),
                &claims_json(),
            ),
        ),
        token_case(
            "token_duplicate_json_key",
            "claims repeat sub",
            sign_claims(
                rsa(),
                &claims_json().replacen(
                    r#""sub":"#,
                    r#""sub":"system:serviceaccount:shop:admin","sub":"#,
                    1,
                ),
            ),
        ),
        token_case(
            "token_duplicate_json_key",
            "kubernetes.io repeats namespace",
            sign_claims(
                rsa(),
                &claims_json().replacen(
                    r#""namespace":"#,
                    r#""namespace":"kube-system","namespace":"#,
                    1,
                ),
            ),
        ),
        token_case(
            "token_malformed_header",
            "kid is a number",
            sign_raw(rsa(), r#"{"alg":"RS256","kid":5}"#, &claims_json()),
        ),
        token_case(
            "token_alg_none",
            "unsigned",
            unsigned_token(
                &format!(r#"{{"alg":"none","kid":"{}"}}"#, rsa().kid()),
                &claims_json(),
                b"",
            )
            .into_bytes(),
        ),
        token_case(
            "token_alg_hmac",
            "HS256 keyed with the RSA public key PEM",
            {
                use mazu_dev_issuer::reexports::rsa::pkcs8::{EncodePublicKey, LineEnding};
                let pem = rsa()
                    .key()
                    .rsa_public_key()
                    .unwrap()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap();
                let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, rsa().kid());
                let input = format!(
                    "{}.{}",
                    b64(header.as_bytes()),
                    b64(claims_json().as_bytes())
                );
                let mac = hmac_sha256(pem.as_bytes(), input.as_bytes());
                format!("{input}.{}", b64(&mac)).into_bytes()
            },
        ),
        token_case(
            "token_alg_unsupported",
            "RS384",
            sign_raw(
                rsa(),
                &format!(r#"{{"alg":"RS384","kid":"{}"}}"#, rsa().kid()),
                &claims_json(),
            ),
        ),
        token_case(
            "token_critical_header",
            "crit names an extension",
            sign_raw(rsa(), &rsa_header(r#","crit":["exp"]"#), &claims_json()),
        ),
        token_case(
            "token_missing_kid",
            "no kid",
            sign_raw(rsa(), r#"{"alg":"RS256"}"#, &claims_json()),
        ),
        token_case(
            "token_unknown_kid",
            "kid of no configured key",
            sign_raw(
                rsa(),
                r#"{"alg":"RS256","kid":"not-a-key"}"#,
                &claims_json(),
            ),
        ),
        token_case(
            "token_key_type_mismatch",
            "RS256 header naming the EC key",
            sign_raw(
                rsa(),
                &format!(r#"{{"alg":"RS256","kid":"{}"}}"#, ec().kid()),
                &claims_json(),
            ),
        ),
        token_case(
            "token_bad_signature",
            "one bit flipped",
            flip_signature_bit(&good),
        ),
        token_case("token_bad_signature", "claims swapped after signing", {
            let other = with_claims(|c| c["kubernetes.io"]["pod"]["name"] = json!("other"));
            let [_, other_payload, _] = segments(&other);
            join(&h, &other_payload, &s)
        }),
        token_case("token_bad_signature", "ES256 signature of 63 bytes", {
            let es = mint(ec(), &request());
            let [eh, ep, es_sig] = segments(&es);
            let mut sig = support::tamper::unb64(&es_sig);
            sig.pop();
            join(&eh, &ep, &b64(&sig))
        }),
        token_case(
            "token_malformed_base64",
            "payload with a non-zero trailing bit, validly signed",
            {
                let payload = if p.len() % 4 == 0 {
                    // Make the payload end in a partial block by adding a space to the JSON.
                    let [_, p2, _] = segments(&sign_claims(rsa(), &format!("{} ", claims_json())));
                    p2
                } else {
                    p.clone()
                };
                let payload = if payload.len() % 4 == 0 {
                    let [_, p3, _] = segments(&sign_claims(rsa(), &format!("{}  ", claims_json())));
                    p3
                } else {
                    payload
                };
                let bad = non_canonical(&payload);
                let signature = rsa().sign_bytes(format!("{h}.{bad}").as_bytes());
                join(&h, &bad, &b64(&signature))
            },
        ),
        token_case(
            "token_malformed_claims",
            "exp is a string",
            with_claims(|c| c["exp"] = json!(TOKEN_EXP.to_string())),
        ),
        token_case(
            "token_missing_claim",
            "no pod binding",
            with_claims(|c| {
                c["kubernetes.io"].as_object_mut().unwrap().remove("pod");
            }),
        ),
        token_case(
            "token_subject_mismatch",
            "sub names another service account",
            with_claims(|c| c["sub"] = json!("system:serviceaccount:shop:admin")),
        ),
        token_case(
            "token_wrong_issuer",
            "iss of another cluster, signed by this key",
            with_claims(|c| c["iss"] = json!("https://evil.example")),
        ),
        token_case(
            "token_wrong_audience",
            "API server audience only",
            mint(
                rsa(),
                &request().audiences(["https://kubernetes.default.svc.cluster.local"]),
            ),
        ),
        token_case(
            "token_extra_audience",
            "Mazu and the API server",
            mint(
                rsa(),
                &request().audiences([AUDIENCE, "https://kubernetes.default.svc.cluster.local"]),
            ),
        ),
        token_case(
            "token_not_yet_valid",
            "nbf 1000 s ahead",
            mint(rsa(), &request().not_before(NOW + 1000)),
        ),
        token_case(
            "token_issued_in_future",
            "iat 1000 s ahead, nbf in the past",
            mint(rsa(), &request().issued_at(NOW + 1000).not_before(NOW - 60)),
        ),
    ];
    // The same refusals for ES256 tokens.
    let es = mint(ec(), &request());
    cases.push(token_case(
        "token_bad_signature",
        "ES256, one bit flipped",
        flip_signature_bit(&es),
    ));
    cases.push(token_case(
        "token_key_type_mismatch",
        "ES256 header naming the RSA key",
        sign_raw(
            ec(),
            &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, rsa().kid()),
            &claims_json(),
        ),
    ));
    cases.push(token_case(
        "token_extra_audience",
        "ES256, Mazu and the API server",
        mint(
            ec(),
            &request().audiences([AUDIENCE, "https://kubernetes.default.svc.cluster.local"]),
        ),
    ));
    cases.push(token_case(
        "token_malformed_base64",
        "ES256 signature with a non-zero trailing bit",
        {
            let [eh, ep, esig] = segments(&es);
            join(&eh, &ep, &non_canonical(&esig))
        },
    ));
    // Expired: the certificate may not outlive the token by more than the
    // skew, so the only instant where the token is expired and the
    // certificate is not is notAfter = exp + skew, now = exp + skew.
    let token = rsa_token();
    cases.push(Case {
        expect: "token_expired",
        what: "now = exp + skew, certificate valid to exactly then",
        cert: certs::build(
            &tls_key(7),
            NOW - 60,
            TOKEN_EXP + SKEW,
            standard_exts(URI, &token),
        ),
        now: TOKEN_EXP + SKEW,
        registry: registered(&token, &tls_key(7)),
    });
    cases
}

fn certificate_cases() -> Vec<Case> {
    let token = rsa_token();
    let der = hand_cert(&token);
    let pem = certs::to_pem(&der);
    let registry = || registered(&token, &tls_key(7));
    let mut cases = vec![
        ext_case("certificate_too_large", "17 KiB unknown extension", {
            let mut exts = standard_exts(URI, &token);
            exts.push(raw_ext(
                der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.9"),
                false,
                vec![0; 17_000],
            ));
            exts
        }),
        Case {
            expect: "certificate_malformed_pem",
            what: "label PRIVATE KEY",
            cert: pem.replace("CERTIFICATE", "PRIVATE KEY").into_bytes(),
            now: NOW,
            registry: registry(),
        },
        Case {
            expect: "certificate_malformed_pem",
            what: "two certificates",
            cert: format!("{pem}{pem}").into_bytes(),
            now: NOW,
            registry: registry(),
        },
        Case {
            expect: "certificate_malformed_pem",
            what: "corrupt base64",
            cert: pem.replacen("MII", "M!I", 1).into_bytes(),
            now: NOW,
            registry: registry(),
        },
        Case {
            expect: "certificate_malformed",
            what: "truncated DER",
            cert: der[..der.len() - 1].to_vec(),
            now: NOW,
            registry: registry(),
        },
        Case {
            expect: "certificate_malformed",
            what: "trailing byte after DER",
            cert: [&der[..], &[0]].concat(),
            now: NOW,
            registry: registry(),
        },
        Case {
            expect: "certificate_malformed",
            what: "empty input",
            cert: Vec::new(),
            now: NOW,
            registry: registry(),
        },
        ext_case(
            "certificate_duplicate_extension",
            "basicConstraints twice",
            {
                let mut exts = standard_exts(URI, &token);
                exts.push(certs::basic_constraints());
                exts
            },
        ),
        ext_case(
            "certificate_unknown_critical_extension",
            "an unknown extension marked critical (RFC 5280 §4.2)",
            {
                let mut exts = standard_exts(URI, &token);
                exts.push(certs::raw_ext(
                    "1.3.6.1.4.1.99999.1".parse().unwrap(),
                    true,
                    vec![0x05, 0x00],
                ));
                exts
            },
        ),
        ext_case(
            "certificate_unknown_critical_extension",
            "the Mazu extension marked critical (BoringSSL would refuse it)",
            {
                let mut exts = standard_exts(URI, &token);
                if let Some(mazu) = exts.last_mut() {
                    mazu.critical = true;
                }
                exts
            },
        ),
        ext_case(
            "certificate_missing_mazu_extension",
            "no Mazu extension",
            vec![certs::basic_constraints(), san_uris(&[URI])],
        ),
        ext_case(
            "certificate_duplicate_mazu_extension",
            "Mazu extension twice",
            {
                let mut exts = standard_exts(URI, &token);
                exts.push(mazu_ext(&token));
                exts
            },
        ),
        ext_case(
            "certificate_malformed_mazu_extension",
            "extension value is not DER",
            vec![
                san_uris(&[URI]),
                raw_ext(MAZU_IDENTITY_OID, false, b"junk".to_vec()),
            ],
        ),
        ext_case(
            "certificate_malformed_mazu_extension",
            "31-byte workload ID",
            {
                let mut body = tlv(0x02, &[1]);
                body.extend(tlv(0x04, &[0; 31]));
                body.extend(tlv(0x04, &token));
                vec![
                    san_uris(&[URI]),
                    raw_ext(MAZU_IDENTITY_OID, false, tlv(0x30, &body)),
                ]
            },
        ),
        ext_case("certificate_mazu_extension_version", "version 2", {
            let mut body = tlv(0x02, &[2]);
            body.extend(tlv(0x04, WorkloadId::of_token(&token).as_bytes()));
            body.extend(tlv(0x04, &token));
            vec![
                san_uris(&[URI]),
                raw_ext(MAZU_IDENTITY_OID, false, tlv(0x30, &body)),
            ]
        }),
        ext_case(
            "certificate_malformed_san",
            "SAN value is not DER",
            vec![
                raw_ext(certs::SAN_OID, false, b"junk".to_vec()),
                mazu_ext(&token),
            ],
        ),
        ext_case(
            "certificate_san_nul",
            "NUL inside the URI SAN",
            vec![
                san_ext(&[(0x86, b"spiffe://cluster.local/ns/shop/sa/cart\0.evil")]),
                mazu_ext(&token),
            ],
        ),
        ext_case(
            "certificate_san_nul",
            "NUL inside a DNS SAN next to a good URI",
            vec![
                san_ext(&[(0x82, b"cart\0.evil"), (0x86, URI.as_bytes())]),
                mazu_ext(&token),
            ],
        ),
        ext_case(
            "certificate_san_non_ascii",
            "non-ASCII byte in the URI SAN",
            vec![
                san_ext(&[(
                    0x86,
                    "spiffe://cluster.local/ns/shop/sa/c\u{e4}rt".as_bytes(),
                )]),
                mazu_ext(&token),
            ],
        ),
        ext_case(
            "certificate_missing_uri_san",
            "no SAN extension",
            vec![mazu_ext(&token)],
        ),
        ext_case(
            "certificate_missing_uri_san",
            "DNS SAN only",
            vec![san_ext(&[(0x82, b"cart.shop.svc")]), mazu_ext(&token)],
        ),
        ext_case(
            "certificate_multiple_uri_sans",
            "the same URI twice",
            vec![san_uris(&[URI, URI]), mazu_ext(&token)],
        ),
        ext_case(
            "certificate_multiple_uri_sans",
            "two conflicting URIs",
            vec![
                san_uris(&[URI, "spiffe://cluster.local/ns/shop/sa/admin"]),
                mazu_ext(&token),
            ],
        ),
        ext_case(
            "certificate_invalid_spiffe_id",
            "https URI",
            vec![
                san_uris(&["https://cluster.local/ns/shop/sa/cart"]),
                mazu_ext(&token),
            ],
        ),
    ];
    // Expired certificate, token still valid: a 600 s certificate checked
    // after its end (plus skew) but before the token's.
    let short = workload_at(token.clone(), NOW, 600);
    cases.push(Case {
        expect: "certificate_expired",
        what: "notAfter + skew passed, token valid",
        cert: short.cert.der.clone(),
        now: NOW + 600 + SKEW + 1,
        registry: registered(&token, &short.key),
    });
    // Not yet valid: a token issued long ago, a certificate made at NOW
    // (notBefore = NOW - 60), checked 200 s before NOW.
    let old_token = mint(rsa(), &request().issued_at(NOW - 1000));
    let fresh = workload(old_token.clone());
    cases.push(Case {
        expect: "certificate_not_yet_valid",
        what: "notBefore - skew in the future, token valid",
        cert: fresh.cert.der.clone(),
        now: NOW - 200,
        registry: registered(&old_token, &fresh.key),
    });
    cases
}

fn binding_cases() -> Vec<Case> {
    let token = rsa_token();
    let w = workload(token.clone());
    let mut cases = vec![
        ext_case(
            "workload_id_mismatch",
            "extension ID of another token",
            vec![
                san_uris(&[URI]),
                mazu_ext_with_id(WorkloadId::of_token(b"another token"), &token),
            ],
        ),
        Case {
            expect: "certificate_outlives_token",
            what: "notAfter = exp + skew + 1",
            cert: certs::build(
                &tls_key(7),
                NOW - 60,
                TOKEN_EXP + SKEW + 1,
                standard_exts(URI, &token),
            ),
            now: NOW,
            registry: registered(&token, &tls_key(7)),
        },
        Case {
            expect: "spiffe_id_mismatch",
            what: "URI SAN names another service account",
            cert: certs::build(
                &tls_key(7),
                NOW - 60,
                TOKEN_EXP,
                standard_exts("spiffe://cluster.local/ns/shop/sa/admin", &token),
            ),
            now: NOW,
            registry: registered(&token, &tls_key(7)),
        },
        Case {
            expect: "spiffe_id_mismatch",
            what: "certificate built for another trust domain",
            cert: {
                let td = TrustDomain::new("evil.example").unwrap();
                let request = CertificateRequest::new(&token, &td, NOW, [1; 16]);
                build_certificate(&request, &tls_key(7)).unwrap().der
            },
            now: NOW,
            registry: registered(&token, &tls_key(7)),
        },
        Case {
            expect: "not_registered",
            what: "empty registry",
            cert: w.cert.der.clone(),
            now: NOW,
            registry: RegistrySnapshot::empty(),
        },
        Case {
            expect: "not_registered",
            what: "only other workloads registered",
            cert: w.cert.der.clone(),
            now: NOW,
            registry: registered(&mint(rsa(), &request().jti("other")), &w.key),
        },
        Case {
            expect: "revoked",
            what: "entry revoked",
            cert: w.cert.der.clone(),
            now: NOW,
            registry: {
                let mut e = entry(&token, &w.key, 3);
                e.revoked = true;
                registry(vec![e])
            },
        },
        Case {
            expect: "registration_expired",
            what: "registered expiry earlier than the token's and passed",
            cert: w.cert.der.clone(),
            now: NOW,
            registry: {
                let mut e = entry(&token, &w.key, 3);
                e.token_expiry = NOW - SKEW;
                registry(vec![e])
            },
        },
        Case {
            expect: "key_mismatch",
            what: "stolen token in a certificate for the thief's key",
            cert: workload_with_key(token.clone(), 8),
            now: NOW,
            registry: registered(&token, &w.key),
        },
    ];
    let es = workload(mint(ec(), &request()));
    cases.push(Case {
        expect: "key_mismatch",
        what: "ES256 token registered under another key",
        cert: es.cert.der.clone(),
        now: NOW,
        registry: registered(&es.token, &tls_key(8)),
    });
    // The tenant's issuer vouching for the cluster's "shop" namespace.
    cases.push(token_case(
        "token_namespace_out_of_scope",
        "tenant issuer, namespace outside its scope",
        mint(tenant(), &request()),
    ));
    // A token whose namespace is not a valid SPIFFE path segment.
    let bad_ns = with_claims(|c| {
        c["kubernetes.io"]["namespace"] = json!("..");
        c["sub"] = json!("system:serviceaccount:..:cart");
    });
    cases.push(token_case(
        "token_identity_invalid",
        "namespace \"..\"",
        bad_ns,
    ));
    cases
}

fn workload_with_key(token: Vec<u8>, seed: u64) -> Vec<u8> {
    let td = trust_domain();
    let request = CertificateRequest::new(&token, &td, NOW, [2; 16]);
    build_certificate(&request, &tls_key(seed)).unwrap().der
}

fn allow_cases() -> Vec<Case> {
    let rs = workload(rsa_token());
    let es = workload(mint(ec(), &request()));
    vec![
        Case {
            expect: "allow",
            what: "RS256, DER",
            cert: rs.cert.der.clone(),
            now: NOW,
            registry: registered(&rs.token, &rs.key),
        },
        Case {
            expect: "allow",
            what: "RS256, PEM as Envoy gives it",
            cert: rs.cert.to_pem().unwrap().into_bytes(),
            now: NOW,
            registry: registered(&rs.token, &rs.key),
        },
        Case {
            expect: "allow",
            what: "ES256, DER",
            cert: es.cert.der.clone(),
            now: NOW,
            registry: registered(&es.token, &es.key),
        },
        Case {
            expect: "allow",
            what: "hand-built, notAfter = exp + skew exactly",
            cert: certs::build(
                &tls_key(7),
                NOW - 60,
                TOKEN_EXP + SKEW,
                standard_exts(URI, &rs.token),
            ),
            now: NOW,
            registry: registered(&rs.token, &tls_key(7)),
        },
        Case {
            expect: "allow",
            what: "registered among many",
            cert: rs.cert.der.clone(),
            now: NOW,
            registry: {
                let mut entries: Vec<_> = (0..1000u32)
                    .map(|i| mazu_identity::RegistryEntry {
                        workload_id: WorkloadId::of_token(&i.to_be_bytes()),
                        slot: i + 100,
                        spki_hash: spki_hash(&tls_key(9)),
                        token_expiry: TOKEN_EXP,
                        revoked: i % 3 == 0,
                    })
                    .collect();
                entries.push(entry(&rs.token, &rs.key, 3));
                registry(entries)
            },
        },
    ]
}

fn all_cases() -> Vec<Case> {
    let mut cases = allow_cases();
    cases.extend(token_cases());
    cases.extend(certificate_cases());
    cases.extend(binding_cases());
    cases
}

/// Every deny reason's stable name. A new reason must be added here (and to
/// docs/identity.md), and the coverage test then demands a case for it.
const ALL_REASONS: &[&str] = &[
    "certificate_too_large",
    "certificate_malformed_pem",
    "certificate_malformed",
    "certificate_duplicate_extension",
    "certificate_unknown_critical_extension",
    "certificate_missing_mazu_extension",
    "certificate_duplicate_mazu_extension",
    "certificate_malformed_mazu_extension",
    "certificate_mazu_extension_version",
    "certificate_malformed_san",
    "certificate_san_nul",
    "certificate_san_non_ascii",
    "certificate_missing_uri_san",
    "certificate_multiple_uri_sans",
    "certificate_invalid_spiffe_id",
    "certificate_expired",
    "certificate_not_yet_valid",
    "token_too_large",
    "token_malformed",
    "token_malformed_base64",
    "token_malformed_json",
    "token_duplicate_json_key",
    "token_malformed_header",
    "token_alg_none",
    "token_alg_hmac",
    "token_alg_unsupported",
    "token_critical_header",
    "token_missing_kid",
    "token_unknown_kid",
    "token_key_type_mismatch",
    "token_bad_signature",
    "token_malformed_claims",
    "token_missing_claim",
    "token_subject_mismatch",
    "token_wrong_issuer",
    "token_namespace_out_of_scope",
    "token_wrong_audience",
    "token_extra_audience",
    "token_expired",
    "token_not_yet_valid",
    "token_issued_in_future",
    "workload_id_mismatch",
    "certificate_outlives_token",
    "token_identity_invalid",
    "spiffe_id_mismatch",
    "not_registered",
    "revoked",
    "registration_expired",
    "key_mismatch",
];

#[test]
fn every_case_gets_its_reason() {
    let trust = trust();
    let mut failures = Vec::new();
    for case in all_cases() {
        let got = verdict(&case.cert, case.now, &trust, &case.registry);
        if got.as_str() != case.expect {
            failures.push(format!("{} ({}): got {got:?}", case.expect, case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong verdicts:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_deny_reason_has_a_case() {
    let cases = all_cases();
    for reason in ALL_REASONS {
        assert!(
            cases.iter().any(|c| c.expect == *reason),
            "no case for {reason}"
        );
    }
    for case in &cases {
        assert!(
            case.expect == "allow" || ALL_REASONS.contains(&case.expect),
            "{} not listed",
            case.expect
        );
    }
}

#[test]
fn reason_names_are_unique_and_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/identity.md"))
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for reason in ALL_REASONS {
        assert!(seen.insert(reason), "{reason} listed twice");
        assert!(
            docs.contains(&format!("`{reason}`")),
            "{reason} missing from docs/identity.md"
        );
    }
}

#[test]
fn allow_carries_the_identity() {
    let w = workload(rsa_token());
    let registry = registered(&w.token, &w.key);
    let Verdict::Allow(peer) = verdict(&w.cert.der, NOW, &trust(), &registry) else {
        panic!("expected allow");
    };
    assert_eq!(peer.spiffe_id.as_str(), URI);
    assert_eq!(peer.workload_id, WorkloadId::of_token(&w.token));
    assert_eq!(peer.slot, 3);
    assert_eq!(peer.token_expiry, TOKEN_EXP);
    assert_eq!(peer.certificate_not_after, TOKEN_EXP);
    assert_eq!(peer.valid_until, TOKEN_EXP);
    let verified = trust().verify_token(&w.token, NOW).unwrap();
    assert_eq!(peer.claims_digest, verified.claims_digest);
}

#[test]
fn deny_reasons_display_and_nest() {
    let trust = trust();
    let reason = verdict(b"junk", NOW, &trust, &RegistrySnapshot::empty());
    let Verdict::Deny(reason) = reason else {
        panic!()
    };
    assert_eq!(reason.as_str(), "certificate_malformed");
    assert_eq!(
        reason.to_string(),
        "certificate: not a DER-encoded X.509 certificate"
    );
    assert!(matches!(reason, DenyReason::Certificate(_)));
    let err: mazu_identity::Error = reason.into();
    assert_eq!(
        err.to_string(),
        "certificate: not a DER-encoded X.509 certificate"
    );
}

#[test]
fn cached_verifier_matches_the_pure_function() {
    let trust = trust();
    // One verifier across every case and several instants, so cache entries
    // made for one case are hit by others and re-checked against new times.
    let mut verifier = Verifier::new(trust.clone(), 8);
    let times = [
        NOW - 7200,
        NOW - 200,
        NOW,
        NOW + 600 + SKEW + 1,
        TOKEN_EXP - 1,
        TOKEN_EXP + SKEW,
        NOW + 86_400,
    ];
    let cases = all_cases();
    let mut compared = 0;
    for round in 0..2 {
        for case in &cases {
            for now in core::iter::once(case.now).chain(times) {
                let pure = verdict(&case.cert, now, &trust, &case.registry);
                let cached = verifier.verdict(&case.cert, now, &case.registry);
                assert_eq!(
                    cached, pure,
                    "round {round}, {} ({}), now {now}",
                    case.expect, case.what
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 500);
    assert!(verifier.cached_tokens() <= 8);
    assert!(verifier.cached_certificates() <= 8);
}

#[test]
fn cache_hits_recheck_time_and_expire() {
    let w = workload(rsa_token());
    let registry = registered(&w.token, &w.key);
    let mut verifier = Verifier::new(trust(), 4);
    assert!(verifier.verdict(&w.cert.der, NOW, &registry).is_allow());
    assert_eq!(verifier.cached_tokens(), 1);
    assert!(
        verifier
            .verdict(&w.cert.der, NOW + 10, &registry)
            .is_allow()
    );
    // Past the certificate and the token: denied like the pure function, and the entry goes.
    let late = TOKEN_EXP + SKEW;
    let hand = certs::build(
        &tls_key(7),
        NOW - 60,
        TOKEN_EXP + SKEW,
        standard_exts(URI, &w.token),
    );
    let hand_registry = registered(&w.token, &tls_key(7));
    assert_eq!(
        verifier.verdict(&hand, late, &hand_registry).as_str(),
        "token_expired"
    );
    assert_eq!(verifier.cached_tokens(), 0);
    // The first certificate is still cached (its static checks passed), and
    // a hit re-checks the time.
    assert_eq!(verifier.cached_certificates(), 1);
    assert!(verifier.verdict(&w.cert.der, NOW, &registry).is_allow());
    assert_eq!(
        verifier.verdict(&w.cert.der, late + 1, &registry).as_str(),
        "certificate_expired"
    );
    // The same certificate as PEM is another cache entry, sharing the cached token.
    let pem = w.cert.to_pem().unwrap();
    assert!(verifier.verdict(pem.as_bytes(), NOW, &registry).is_allow());
    assert_eq!(verifier.cached_certificates(), 2);
    assert_eq!(verifier.cached_tokens(), 1);
    // A registry change is seen on a hit: revocation denies at once.
    let mut revoked = entry(&w.token, &w.key, 3);
    revoked.revoked = true;
    let revoked = registry_with(vec![revoked]);
    assert_eq!(
        verifier.verdict(&w.cert.der, NOW, &revoked).as_str(),
        "revoked"
    );
    // Purging.
    verifier.purge_expired(NOW);
    assert_eq!(
        (verifier.cached_tokens(), verifier.cached_certificates()),
        (1, 2)
    );
    verifier.purge_expired(TOKEN_EXP + SKEW);
    assert_eq!(
        (verifier.cached_tokens(), verifier.cached_certificates()),
        (0, 0)
    );
}

fn registry_with(entries: Vec<mazu_identity::RegistryEntry>) -> RegistrySnapshot {
    registry(entries)
}

#[test]
fn cache_is_bounded_and_evicts_soonest_expiry() {
    let trust = trust();
    let mut verifier = Verifier::new(trust.clone(), 3);
    let mut workloads = Vec::new();
    for i in 0..5u64 {
        let token = mint(
            rsa(),
            &request().lifetime(3600 + i * 100).jti(format!("jti-{i}")),
        );
        let w = workload(token);
        let registry = registered(&w.token, &w.key);
        assert!(verifier.verdict(&w.cert.der, NOW, &registry).is_allow());
        assert!(verifier.cached_tokens() <= 3);
        workloads.push((w, registry));
    }
    assert_eq!(verifier.cached_tokens(), 3);
    assert_eq!(verifier.cached_certificates(), 3);
    // Zero capacity: no caching, same verdicts.
    let mut uncached = Verifier::new(trust, 0);
    for (w, registry) in &workloads {
        assert!(uncached.verdict(&w.cert.der, NOW, registry).is_allow());
    }
    assert_eq!(uncached.cached_tokens(), 0);
    assert_eq!(uncached.cached_certificates(), 0);
}

/// A certificate for `token` under a fresh TLS key (seed), built at NOW.
fn under_key(token: &[u8], seed: u64) -> Vec<u8> {
    workload_with_key(token.to_vec(), seed)
}

#[test]
fn registry_binding_is_checked_before_the_token_signature() {
    let trust = trust();
    let good = rsa_token();
    // A token with a broken signature, in a certificate for a key nobody
    // registered: the registry refuses it, no signature is verified.
    let forged = flip_signature_bit(&good);
    let cert = workload_with_key(forged.clone(), 8);
    assert_eq!(
        verdict(&cert, NOW, &trust, &RegistrySnapshot::empty()).as_str(),
        "not_registered"
    );
    // The same forged token registered under another key.
    assert_eq!(
        verdict(&cert, NOW, &trust, &registered(&forged, &tls_key(9))).as_str(),
        "key_mismatch"
    );
    // Only with the right key registered does the signature get checked.
    assert_eq!(
        verdict(&cert, NOW, &trust, &registered(&forged, &tls_key(8))).as_str(),
        "token_bad_signature"
    );

    // A flood of certificates carrying the victim's valid (public) token
    // under attackers' keys, and of valid but unregistered tokens: not one
    // RSA/ECDSA verification.
    let victim = workload(good.clone());
    let registry = registered(&victim.token, &victim.key);
    let mut verifier = Verifier::new(trust.clone(), 0);
    for seed in 100..110 {
        assert_eq!(
            verifier
                .verdict(&under_key(&good, seed), NOW, &registry)
                .as_str(),
            "key_mismatch"
        );
        let unregistered = mint(rsa(), &request().jti(format!("flood-{seed}")));
        assert_eq!(
            verifier
                .verdict(&under_key(&unregistered, seed), NOW, &registry)
                .as_str(),
            "not_registered"
        );
    }
    assert_eq!(verifier.token_verifications(), 0);
    // The legitimate holder costs one verification.
    assert!(
        verifier
            .verdict(&victim.cert.der, NOW, &registry)
            .is_allow()
    );
    assert_eq!(verifier.token_verifications(), 1);
}

#[test]
fn a_flood_of_denied_certificates_never_evicts_an_allowed_entry() {
    const CAPACITY: usize = 4;
    let trust = trust();
    let mut verifier = Verifier::new(trust, CAPACITY);
    // Fill both caches with allowed peers.
    let allowed: Vec<_> = (0..CAPACITY as u64)
        .map(|i| {
            let token = mint(rsa(), &request().jti(format!("allowed-{i}")));
            let key = tls_key(200 + i);
            let cert = under_key(&token, 200 + i);
            (entry(&token, &key, i as u32), cert, token)
        })
        .collect();
    let mut entries: Vec<_> = allowed.iter().map(|(e, _, _)| *e).collect();
    entries.sort_by_key(|e| e.workload_id);
    let registry = registry(entries);
    for (_, cert, _) in &allowed {
        assert!(verifier.verdict(cert, NOW, &registry).is_allow());
    }
    assert_eq!(verifier.cached_certificates(), CAPACITY);
    assert_eq!(verifier.cached_tokens(), CAPACITY);

    // Ten times the capacity of distinct denied certificates: allowed
    // peers' public tokens under fresh keys (every token and certificate
    // check but the binding would pass), and certificates that fail late
    // (registered under the right key, wrong SPIFFE ID).
    for n in 0..(10 * CAPACITY as u64) {
        let (_, _, token) = &allowed[(n % CAPACITY as u64) as usize];
        let denied = verifier.verdict(&under_key(token, 1000 + n), NOW, &registry);
        assert_eq!(denied.as_str(), "key_mismatch");
    }
    for (i, (_, _, token)) in allowed.iter().enumerate() {
        let wrong_san = certs::build(
            &tls_key(200 + i as u64),
            NOW - 60,
            TOKEN_EXP,
            standard_exts("spiffe://cluster.local/ns/shop/sa/admin", token),
        );
        assert_eq!(
            verifier.verdict(&wrong_san, NOW, &registry).as_str(),
            "spiffe_id_mismatch"
        );
    }
    assert_eq!(verifier.cached_certificates(), CAPACITY);
    assert_eq!(verifier.cached_tokens(), CAPACITY);

    // Every allowed peer is still a cache hit: still cached, allowed, and
    // not one more signature verification.
    let before = verifier.token_verifications();
    for (_, cert, _) in &allowed {
        assert!(verifier.is_cached(cert));
        assert!(verifier.verdict(cert, NOW, &registry).is_allow());
    }
    assert_eq!(verifier.token_verifications(), before);
}

#[test]
fn a_vouched_signature_skips_the_signature_check_and_nothing_else() {
    let good = rsa_token();
    let forged = flip_signature_bit(&good);
    let cert = workload_with_key(forged.clone(), 8);
    let registry = registered(&forged, &tls_key(8));
    let mut verifier = Verifier::new(trust(), 4);
    // Not vouched, or vouched for another token: the signature is checked.
    assert_eq!(
        verifier
            .verdict_vouched(&cert, NOW, &registry, None)
            .as_str(),
        "token_bad_signature"
    );
    assert_eq!(
        verifier
            .verdict_vouched(&cert, NOW, &registry, Some(WorkloadId::of_token(&good)))
            .as_str(),
        "token_bad_signature"
    );
    assert_eq!(verifier.token_verifications(), 2);
    assert_eq!(verifier.vouched_tokens(), 0);
    // Vouched for this very token: the (broken) signature is not looked at.
    let vouched = Some(WorkloadId::of_token(&forged));
    assert!(
        verifier
            .verdict_vouched(&cert, NOW, &registry, vouched)
            .is_allow()
    );
    assert_eq!(
        (verifier.token_verifications(), verifier.vouched_tokens()),
        (2, 1)
    );

    // Every other check still runs on a vouched token: the registry...
    let mut fresh = Verifier::new(trust(), 0);
    assert_eq!(
        fresh
            .verdict_vouched(&cert, NOW, &RegistrySnapshot::empty(), vouched)
            .as_str(),
        "not_registered"
    );
    assert_eq!(
        fresh
            .verdict_vouched(&cert, NOW, &registered(&forged, &tls_key(9)), vouched)
            .as_str(),
        "key_mismatch"
    );
    // ...the certificate's times...
    assert_eq!(
        fresh
            .verdict_vouched(&cert, TOKEN_EXP + SKEW + 1, &registry, vouched)
            .as_str(),
        "certificate_expired"
    );
    // ...and its claims: another audience is refused though vouched for.
    let api_only = flip_signature_bit(&mint(
        rsa(),
        &request().audiences(["https://kubernetes.default.svc.cluster.local"]),
    ));
    let api_cert = workload_with_key(api_only.clone(), 10);
    assert_eq!(
        fresh
            .verdict_vouched(
                &api_cert,
                NOW,
                &registered(&api_only, &tls_key(10)),
                Some(WorkloadId::of_token(&api_only)),
            )
            .as_str(),
        "token_wrong_audience"
    );
    // An issuer trusted for other namespaces only is refused too.
    let unknown = flip_signature_bit(&mint(tenant(), &request()));
    let unknown_cert = workload_with_key(unknown.clone(), 11);
    let refused = fresh.verdict_vouched(
        &unknown_cert,
        NOW,
        &registered(&unknown, &tls_key(11)),
        Some(WorkloadId::of_token(&unknown)),
    );
    assert_eq!(refused.as_str(), "token_namespace_out_of_scope");
    assert_eq!(fresh.token_verifications(), 0);
}
