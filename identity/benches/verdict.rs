//! Verdict cost, native: first sight of a token (signature verified) and a
//! repeat with the verification cached, against baselines measured in the
//! same run (SHA-256 of the certificate, a bare RS256 / ES256 verification).
//!
//! Run: `cargo bench -p mazu-identity --bench verdict`.

// Fixture setup: a failure here is a bug in the benchmark, not input to handle.
#![allow(clippy::unwrap_used)]
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use core::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::certificate::{CertificateRequest, build_certificate};
use mazu_identity::{
    RegistryEntry, RegistrySnapshot, SpkiHash, TrustConfig, TrustDomain, Verifier, WorkloadId,
    verdict,
};
use p256::ecdsa::SigningKey;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_767_225_600;
const REGISTERED: u32 = 100_000;

struct Setup {
    trust: TrustConfig,
    registry: RegistrySnapshot,
    rsa_pem: Vec<u8>,
    rsa_der: Vec<u8>,
    ec_pem: Vec<u8>,
    rsa_token: Vec<u8>,
    rsa_issuer: DevIssuer,
    ec_token: Vec<u8>,
    ec_issuer: DevIssuer,
}

fn setup() -> Setup {
    let mut rng = StdRng::seed_from_u64(42);
    let rsa_issuer = DevIssuer::generate(Algorithm::Rs256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
    let ec_issuer = DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut rng).unwrap();
    let jwks = DevIssuer::merged_jwks([&rsa_issuer, &ec_issuer]).to_json();
    let trust = TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(
            DEFAULT_ISSUER_URL,
            jwks.as_bytes(),
            mazu_identity::trust::NamespaceScope::any(),
        )
        .build()
        .unwrap();
    let td = TrustDomain::new("cluster.local").unwrap();
    let request = TokenRequest::new("shop", "cart")
        .node("node-1", "58456cb0-dd00-45ed-b797-5578fdceaced")
        .issued_at(NOW - 60);
    let key = SigningKey::random(&mut rng);
    let mut entries: Vec<RegistryEntry> = (0..REGISTERED - 2)
        .map(|i| RegistryEntry {
            workload_id: WorkloadId::of_token(&i.to_le_bytes()),
            slot: i + 2,
            spki_hash: SpkiHash::from_bytes([7; 32]),
            token_expiry: NOW + 3600,
            revoked: false,
        })
        .collect();
    let mut make = |issuer: &DevIssuer, slot: u32| {
        let token = issuer.mint(&request).unwrap().into_bytes();
        let cert = build_certificate(
            &CertificateRequest::new(&token, &td, NOW, [slot as u8; 16]),
            &key,
        )
        .unwrap();
        entries.push(RegistryEntry {
            workload_id: cert.workload_id,
            slot,
            spki_hash: cert.spki_hash,
            token_expiry: NOW - 60 + 3600,
            revoked: false,
        });
        (token, cert)
    };
    let (rsa_token, rsa_cert) = make(&rsa_issuer, 0);
    let (ec_token, ec_cert) = make(&ec_issuer, 1);
    let registry = RegistrySnapshot::from_entries(u64::from(REGISTERED), entries).unwrap();
    Setup {
        trust,
        registry,
        rsa_pem: rsa_cert.to_pem().unwrap().into_bytes(),
        rsa_der: rsa_cert.der,
        ec_pem: ec_cert.to_pem().unwrap().into_bytes(),
        rsa_token,
        rsa_issuer,
        ec_token,
        ec_issuer,
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    assert!(verdict(&s.rsa_pem, NOW, &s.trust, &s.registry).is_allow());
    assert!(verdict(&s.ec_pem, NOW, &s.trust, &s.registry).is_allow());

    let mut group = c.benchmark_group("baseline");
    group.bench_function("sha256_certificate_der", |b| {
        b.iter(|| Sha256::digest(black_box(&s.rsa_der)))
    });
    let rsa_public = s.rsa_issuer.key().rsa_public_key().unwrap();
    let rsa_verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(rsa_public);
    let (input, sig) = split(&s.rsa_token);
    let rsa_sig = rsa::pkcs1v15::Signature::try_from(&sig[..]).unwrap();
    group.bench_function("rs256_verify_2048", |b| {
        use rsa::signature::Verifier;
        b.iter(|| rsa_verifier.verify(black_box(input), &rsa_sig).unwrap())
    });
    let ec_verifier = s.ec_issuer.key().ec_verifying_key().unwrap();
    let (ec_input, ec_sig) = split(&s.ec_token);
    let ec_sig = p256::ecdsa::Signature::from_slice(&ec_sig).unwrap();
    group.bench_function("es256_verify", |b| {
        use p256::ecdsa::signature::Verifier;
        b.iter(|| ec_verifier.verify(black_box(ec_input), &ec_sig).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("verdict");
    group.bench_function("cold_rs256_pem", |b| {
        b.iter(|| verdict(black_box(&s.rsa_pem), NOW, &s.trust, &s.registry))
    });
    group.bench_function("cold_es256_pem", |b| {
        b.iter(|| verdict(black_box(&s.ec_pem), NOW, &s.trust, &s.registry))
    });
    let mut verifier = Verifier::new(s.trust.clone(), 4096);
    assert!(verifier.verdict(&s.rsa_pem, NOW, &s.registry).is_allow());
    group.bench_function("cached_rs256_pem", |b| {
        b.iter(|| verifier.verdict(black_box(&s.rsa_pem), NOW, &s.registry))
    });
    // Token cached, certificate not: a new certificate for a known token
    // (e.g. the same certificate first seen as DER, now as PEM).
    let mut token_only = Verifier::new(s.trust.clone(), 4096);
    assert!(token_only.verdict(&s.rsa_der, NOW, &s.registry).is_allow());
    group.bench_function("token_cached_new_certificate_rs256_pem", |b| {
        b.iter_batched(
            || token_only.clone(),
            |mut v| v.verdict(black_box(&s.rsa_pem), NOW, &s.registry),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("cached_rs256_der", |b| {
        b.iter(|| verifier.verdict(black_box(&s.rsa_der), NOW, &s.registry))
    });
    group.finish();

    let mut group = c.benchmark_group("registry");
    let id = WorkloadId::of_token(&s.rsa_token);
    group.bench_function("lookup_100k", |b| b.iter(|| s.registry.get(black_box(&id))));
    let encoded = s.registry.encode();
    group.sample_size(10);
    group.bench_function("decode_100k", |b| {
        b.iter(|| RegistrySnapshot::decode(black_box(&encoded)).unwrap())
    });
    group.finish();
}

/// (signing input, decoded signature) of a compact JWS.
fn split(token: &[u8]) -> (&[u8], Vec<u8>) {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let dot = token.iter().rposition(|&b| b == b'.').unwrap();
    let sig =
        Base64UrlUnpadded::decode_vec(core::str::from_utf8(&token[dot + 1..]).unwrap()).unwrap();
    (&token[..dot], sig)
}

criterion_group!(benches, bench);
criterion_main!(benches);
