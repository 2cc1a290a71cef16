use core::cell::Cell;

use super::*;
use crate::config::FilterConfig;
use crate::testing::{Fixture, NOW, Workload, snapshot};
use crate::vouch;

const NOW_MS: u64 = NOW * 1000;

fn engine(fixture: &Fixture, extra: &str) -> Engine {
    Engine::new(FilterConfig::parse(fixture.config_json(extra).as_bytes()).unwrap())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decides `workload` with Envoy's digest, counting certificate reads.
fn decide(engine: &mut Engine, workload: &Workload, reads: &Cell<u32>) -> Decision {
    decide_vouched(engine, workload, None, reads)
}

/// [`decide`] with the validator's word `vouch` (already encoded), if any.
fn decide_vouched(
    engine: &mut Engine,
    workload: &Workload,
    vouch: Option<&str>,
    reads: &Cell<u32>,
) -> Decision {
    use sha2::{Digest, Sha256};
    let digest = hex(&Sha256::digest(&workload.issued.der));
    engine.decide_vouched(
        NOW_MS,
        PeerFacts {
            mtls: Some(true),
            digest_hex: Some(digest.as_bytes()),
        },
        || {
            reads.set(reads.get() + 1);
            Some(workload.pem.clone().into_bytes())
        },
        || vouch.map(|value| value.as_bytes().to_vec()),
    )
}

fn allowed(peer: &str, cached: bool) -> Decision {
    Decision::Allow {
        peer: peer.into(),
        cached,
    }
}

#[test]
fn registered_peer_is_allowed_then_served_from_the_cache() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let mut engine = engine(&fixture, "");
    assert!(engine.install(snapshot(1, &[cart.entry]), NOW_MS));
    let reads = Cell::new(0);
    let peer = "spiffe://cluster.local/ns/shop/sa/cart";
    assert_eq!(decide(&mut engine, &cart, &reads), allowed(peer, false));
    assert_eq!(decide(&mut engine, &cart, &reads), allowed(peer, true));
    assert_eq!(reads.get(), 1, "a cache hit reads no certificate");
    assert_eq!(engine.cached_verdicts(), 1);
}

#[test]
fn a_registry_read_in_place_decides_alike_and_an_unreadable_piece_is_never_a_verdict() {
    use alloc::rc::Rc;

    use crate::shared::tests::fixture::{EnvoyStore, version_of};
    use crate::shared::{Found, SharedKeys, SharedReader, SharedStore, publish};
    use crate::testing::curator_config;

    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let shop = fixture.workload("shop", "shop", 1);
    let version = version_of(&[cart.entry, shop.entry]);
    let store = Rc::new(EnvoyStore::default());
    let mut keys = SharedKeys::new(&curator_config());
    keys.entries_per_chunk = 1;
    publish(&*store, &keys, &curator_config(), &version.publication());
    let Found::Newer { registry, .. } =
        SharedReader::new().poll(&*store, &keys, &curator_config(), None)
    else {
        panic!("not installed");
    };
    let mut engine = engine(&fixture, "");
    let shared: Rc<dyn SharedStore> = store.clone();
    assert!(engine.install(
        HeldRegistry::Shared {
            registry,
            store: shared
        },
        NOW_MS
    ));
    let reads = Cell::new(0);
    let peer = |sa: &str| format!("spiffe://cluster.local/ns/shop/sa/{sa}");
    assert_eq!(
        decide(&mut engine, &cart, &reads),
        allowed(&peer("cart"), false)
    );
    // Another plugin overwrites the piece that holds shop's entry (one
    // entry per piece, in id order).
    let shop_first = shop.entry.workload_id > cart.entry.workload_id;
    let key = keys.chunk(0, if shop_first { 2 } else { 1 });
    let piece = store.get(&key).0.unwrap();
    store.set(&key, &[&piece[..8], &[0u8; 85][..]].concat(), None);
    let unreadable = decide(&mut engine, &shop, &reads);
    assert!(
        matches!(unreadable, Decision::Deny { reason, cached: false, .. } if reason == reason::REGISTRY_UNREADABLE),
        "{unreadable:?}"
    );
    // Not cached: once the piece is back, the peer is decided afresh.
    store.set(&key, &piece, None);
    assert_eq!(
        decide(&mut engine, &shop, &reads),
        allowed(&peer("shop"), false)
    );
    assert_eq!(
        decide(&mut engine, &cart, &reads),
        allowed(&peer("cart"), true)
    );
}

#[test]
fn revocation_applies_to_the_next_connection_despite_the_cache() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let shop = fixture.workload("shop", "shop", 1);
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(1, &[cart.entry]), NOW_MS);
    let reads = Cell::new(0);
    assert!(matches!(
        decide(&mut engine, &cart, &reads),
        Decision::Allow { cached: false, .. }
    ));

    // An unrelated registration: the cached allow survives (one lookup).
    engine.install(snapshot(2, &[cart.entry, shop.entry]), NOW_MS);
    assert!(matches!(
        decide(&mut engine, &cart, &reads),
        Decision::Allow { cached: true, .. }
    ));
    assert_eq!(reads.get(), 1);

    // Revoked: the cache entry is dropped and the full verdict says why.
    let mut revoked = cart.entry;
    revoked.revoked = true;
    engine.install(snapshot(3, &[revoked, shop.entry]), NOW_MS);
    assert_eq!(
        decide(&mut engine, &cart, &reads),
        Decision::Deny {
            reason: "revoked",
            peer: Some("spiffe://cluster.local/ns/shop/sa/cart".into()),
            cached: false
        }
    );
    assert_eq!(reads.get(), 2);
}

#[test]
fn a_cached_denial_lasts_only_for_its_registry_version() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(0, &[]), NOW_MS);
    let reads = Cell::new(0);
    let denied = |cached| Decision::Deny {
        reason: "not_registered",
        peer: Some("spiffe://cluster.local/ns/shop/sa/cart".into()),
        cached,
    };
    assert_eq!(decide(&mut engine, &cart, &reads), denied(false));
    assert_eq!(decide(&mut engine, &cart, &reads), denied(true));
    engine.install(snapshot(1, &[cart.entry]), NOW_MS);
    assert!(matches!(
        decide(&mut engine, &cart, &reads),
        Decision::Allow { cached: false, .. }
    ));
}

#[test]
fn key_mismatch_is_denied() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let thief = fixture.workload("shop", "cart", 0);
    // The registry binds cart's token to cart's key; the thief presents a
    // certificate with its own key (its token is different here, so bind
    // the thief's workload ID to cart's key to model a stolen token).
    let mut stolen = thief.entry;
    stolen.spki_hash = cart.entry.spki_hash;
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(1, &[stolen]), NOW_MS);
    let reads = Cell::new(0);
    assert!(matches!(
        decide(&mut engine, &thief, &reads),
        Decision::Deny {
            reason: "key_mismatch",
            ..
        }
    ));
}

#[test]
fn no_client_certificate_is_denied() {
    let fixture = Fixture::new();
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(0, &[]), NOW_MS);
    for mtls in [None, Some(false)] {
        let decision = engine.decide(
            NOW_MS,
            PeerFacts {
                mtls,
                digest_hex: None,
            },
            || panic!("must not read a certificate"),
        );
        assert!(matches!(
            decision,
            Decision::Deny {
                reason: reason::NO_CLIENT_CERTIFICATE,
                ..
            }
        ));
    }
    let decision = engine.decide(
        NOW_MS,
        PeerFacts {
            mtls: Some(true),
            digest_hex: None,
        },
        || None,
    );
    assert!(matches!(
        decision,
        Decision::Deny {
            reason: reason::NO_PEER_CERTIFICATE,
            ..
        }
    ));
}

#[test]
fn garbage_certificates_are_denied_not_panicked_on() {
    let fixture = Fixture::new();
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(0, &[]), NOW_MS);
    for input in [
        &b""[..],
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x82\xff\xff",
        &[0xff; 20_000][..],
    ] {
        let decision = engine.decide(
            NOW_MS,
            PeerFacts {
                mtls: Some(true),
                digest_hex: Some(b"zz"),
            },
            || Some(input.to_vec()),
        );
        assert!(
            matches!(decision, Decision::Deny { peer: None, .. }),
            "{decision:?}"
        );
    }
}

#[test]
fn before_the_first_registry() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let reads = Cell::new(0);
    let mut deny = engine(&fixture, "");
    assert_eq!(deny.registry_state(NOW_MS), RegistryState::Missing);
    assert!(matches!(
        decide(&mut deny, &cart, &reads),
        Decision::Deny {
            reason: reason::REGISTRY_UNAVAILABLE,
            ..
        }
    ));
    let mut park = engine(&fixture, r#","before_registry":"park""#);
    assert_eq!(decide(&mut park, &cart, &reads), Decision::Park);
    assert_eq!(reads.get(), 0);
    // The root decides the parked connection once the registry is there.
    assert!(matches!(
        park.decide_parked(NOW_MS, cart.pem.as_bytes(), None),
        Decision::Deny {
            reason: reason::REGISTRY_UNAVAILABLE,
            ..
        }
    ));
    park.install(snapshot(1, &[cart.entry]), NOW_MS);
    assert!(matches!(
        park.decide_parked(NOW_MS, cart.pem.as_bytes(), None),
        Decision::Allow { cached: false, .. }
    ));
}

#[test]
fn staleness() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let reads = Cell::new(0);
    let confirmed = NOW_MS - 901_000; // default max staleness: 900 s
    let mut strict = engine(&fixture, "");
    strict.install(snapshot(1, &[cart.entry]), confirmed);
    assert_eq!(strict.registry_state(NOW_MS), RegistryState::Stale);
    assert!(matches!(
        decide(&mut strict, &cart, &reads),
        Decision::Deny {
            reason: reason::REGISTRY_STALE,
            ..
        }
    ));
    // A 304 from the curator makes it fresh again.
    strict.confirm(NOW_MS);
    assert_eq!(strict.registry_state(NOW_MS), RegistryState::Fresh);
    assert!(matches!(
        decide(&mut strict, &cart, &reads),
        Decision::Allow { .. }
    ));

    let mut lenient = engine(&fixture, r#","when_stale":"enforce_last_known""#);
    lenient.install(snapshot(1, &[cart.entry]), confirmed);
    assert!(matches!(
        decide(&mut lenient, &cart, &reads),
        Decision::Allow { .. }
    ));
}

#[test]
fn older_registries_are_not_installed() {
    let fixture = Fixture::new();
    let mut engine = engine(&fixture, "");
    assert!(engine.install(snapshot(3, &[]), 10));
    assert!(!engine.install(snapshot(2, &[]), 20));
    assert_eq!(engine.registry_version(), Some(3));
    assert_eq!(engine.confirmed_ms(), 20);
}

#[test]
fn hex_digests() {
    let digest = [0xab; 32];
    assert_eq!(parse_hex_digest(hex(&digest).as_bytes()), Some(digest));
    assert_eq!(
        parse_hex_digest(hex(&digest).to_uppercase().as_bytes()),
        Some(digest)
    );
    assert_eq!(parse_hex_digest(b"ab"), None);
    assert_eq!(parse_hex_digest(&[b'g'; 64]), None);
    assert_ne!(fallback_digest(b"x"), fallback_digest(b"y"));
}

#[test]
fn a_flood_of_denied_certificates_never_evicts_an_allowed_peer() {
    use mazu_identity::certificate::{CertificateRequest, build_certificate};
    use sha2::{Digest, Sha256};

    const CAPACITY: usize = 16;
    let fixture = Fixture::new();
    let mut engine = engine(&fixture, &format!(r#","verdict_cache_entries":{CAPACITY}"#));
    let workloads: Vec<Workload> = (0..CAPACITY as u32)
        .map(|i| fixture.workload("shop", &format!("sa{i}"), i))
        .collect();
    let entries: Vec<_> = workloads.iter().map(|w| w.entry).collect();
    let mut sorted = entries.clone();
    sorted.sort_by_key(|e| e.workload_id);
    assert!(engine.install(snapshot(CAPACITY as u64, &sorted), NOW_MS));
    let reads = Cell::new(0);
    for (i, w) in workloads.iter().enumerate() {
        let peer = format!("spiffe://cluster.local/ns/shop/sa/sa{i}");
        assert_eq!(decide(&mut engine, w, &reads), allowed(&peer, false));
    }
    assert_eq!(engine.cached_allows(), CAPACITY);

    // Ten times the capacity of distinct denied certificates: the allowed
    // peers' public tokens in certificates for attackers' fresh keys.
    let domain = mazu_identity::TrustDomain::new("cluster.local").unwrap();
    for n in 0..10 * CAPACITY {
        let victim = &workloads[n % CAPACITY];
        let token = victim_token(victim);
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let issued = build_certificate(
            &CertificateRequest::new(token.as_bytes(), &domain, NOW - 60, [9; 16]),
            &key,
        )
        .unwrap();
        let digest = hex(&Sha256::digest(&issued.der));
        let pem = issued.to_pem().unwrap();
        let decision = engine.decide(
            NOW_MS,
            PeerFacts {
                mtls: Some(true),
                digest_hex: Some(digest.as_bytes()),
            },
            || Some(pem.clone().into_bytes()),
        );
        assert!(
            matches!(
                decision,
                Decision::Deny {
                    reason: "key_mismatch",
                    cached: false,
                    ..
                }
            ),
            "{decision:?}"
        );
    }
    assert!(engine.cached_verdicts() - engine.cached_allows() <= CAPACITY / DENY_CACHE_DIVISOR);

    // Every allowed peer is still answered from the cache.
    let before = reads.get();
    for (i, w) in workloads.iter().enumerate() {
        let peer = format!("spiffe://cluster.local/ns/shop/sa/sa{i}");
        assert_eq!(decide(&mut engine, w, &reads), allowed(&peer, true));
    }
    assert_eq!(reads.get(), before, "no certificate was read again");
}

/// The token inside a workload's certificate.
fn victim_token(workload: &Workload) -> String {
    let cert = mazu_identity::PeerCertificate::parse(&workload.issued.der, 1 << 16).unwrap();
    String::from_utf8(cert.token.clone()).unwrap()
}

/// What the handshake validator vouches for on `workload`'s connection.
fn validator_verdict(workload: &Workload) -> vouch::VouchedVerdict {
    use sha2::{Digest, Sha256};
    vouch::VouchedVerdict {
        certificate_digest: Sha256::digest(&workload.issued.der).into(),
        workload_id: workload.issued.workload_id,
        spki_hash: workload.issued.spki_hash,
        valid_until: workload.issued.not_after.min(workload.entry.token_expiry),
        spiffe_id: workload.issued.spiffe_id.clone(),
    }
}

#[test]
fn the_validators_verdict_is_taken_without_reading_the_certificate_when_the_registry_agrees() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(1, &[cart.entry]), NOW_MS);
    let trust = engine.config().trust_digest;
    let value = vouch::encode_verdict(&trust, &validator_verdict(&cart));
    let reads = Cell::new(0);
    let peer = "spiffe://cluster.local/ns/shop/sa/cart";
    assert_eq!(
        decide_vouched(&mut engine, &cart, Some(&value), &reads),
        allowed(peer, false)
    );
    assert_eq!(reads.get(), 0, "the certificate was not read");
    assert_eq!(engine.vouched_verdicts(), 1);
    assert_eq!(engine.token_signatures(), (0, 0));
    // Cached like any allow; revoked later, the next connection is refused.
    assert_eq!(decide(&mut engine, &cart, &reads), allowed(peer, true));
    let mut revoked = cart.entry;
    revoked.revoked = true;
    engine.install(snapshot(2, &[revoked]), NOW_MS);
    assert!(matches!(
        decide_vouched(&mut engine, &cart, Some(&value), &reads),
        Decision::Deny {
            reason: "revoked",
            ..
        }
    ));
}

#[test]
fn the_validators_verdict_is_not_taken_unless_this_registry_and_this_certificate_agree() {
    let fixture = Fixture::new();
    let cart = fixture.workload("shop", "cart", 0);
    let other = fixture.workload("shop", "other", 1);
    let vouched = validator_verdict(&cart);
    let expired_registration = {
        let mut entry = cart.entry;
        entry.token_expiry = NOW - 3600;
        entry
    };
    let revoked = mazu_identity::RegistryEntry {
        revoked: true,
        ..cart.entry
    };
    let bound_elsewhere = mazu_identity::RegistryEntry {
        spki_hash: other.entry.spki_hash,
        ..cart.entry
    };
    let the_real_key_registered_other_key_vouched = vouch::VouchedVerdict {
        spki_hash: other.entry.spki_hash,
        ..vouched.clone()
    };
    let another_certificate = vouch::VouchedVerdict {
        certificate_digest: [7; 32],
        ..vouched.clone()
    };
    let over = vouch::VouchedVerdict {
        valid_until: NOW - 1,
        ..vouched.clone()
    };
    // (case, registry, the validator's word, what the whole verdict then says)
    let cases: [(
        &str,
        Vec<mazu_identity::RegistryEntry>,
        &vouch::VouchedVerdict,
        &str,
    ); 7] = [
        (
            "not in this registry",
            vec![other.entry],
            &vouched,
            "not_registered",
        ),
        ("revoked here", vec![revoked], &vouched, "revoked"),
        (
            "bound to another key here",
            vec![bound_elsewhere],
            &vouched,
            "key_mismatch",
        ),
        (
            "registration expired here",
            vec![expired_registration],
            &vouched,
            "registration_expired",
        ),
        (
            "another key vouched",
            vec![cart.entry],
            &the_real_key_registered_other_key_vouched,
            "allow",
        ),
        (
            "another certificate",
            vec![cart.entry],
            &another_certificate,
            "allow",
        ),
        ("no longer valid", vec![cart.entry], &over, "allow"),
    ];
    for (case, entries, verdict, outcome) in cases {
        let mut engine = engine(&fixture, "");
        let mut entries = entries;
        entries.sort_by_key(|entry| entry.slot);
        engine.install(snapshot(2, &entries), NOW_MS);
        let value = vouch::encode_verdict(&engine.config().trust_digest, verdict);
        let reads = Cell::new(0);
        let decision = decide_vouched(&mut engine, &cart, Some(&value), &reads);
        let said = match &decision {
            Decision::Allow { .. } => "allow",
            Decision::Deny { reason, .. } => reason,
            Decision::Park => "park",
        };
        assert_eq!(said, outcome, "{case}: {decision:?}");
        assert_eq!(reads.get(), 1, "{case}: the whole verdict ran");
        assert_eq!(engine.vouched_verdicts(), 0, "{case}");
        // The signature is still taken as vouched for.
        assert_eq!(engine.token_signatures().0, 0, "{case}");
    }

    // Under another trust object the word is ignored altogether: the
    // signature is verified here.
    let mut engine = engine(&fixture, "");
    engine.install(snapshot(1, &[cart.entry]), NOW_MS);
    let foreign = vouch::TrustDigest::of_json(br#"{"trust_domain":"elsewhere"}"#).unwrap();
    let value = vouch::encode_verdict(&foreign, &vouched);
    let reads = Cell::new(0);
    assert!(matches!(
        decide_vouched(&mut engine, &cart, Some(&value), &reads),
        Decision::Allow { cached: false, .. }
    ));
    assert_eq!((reads.get(), engine.vouched_verdicts()), (1, 0));
    assert_eq!(engine.token_signatures(), (1, 0));
}
