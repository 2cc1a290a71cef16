//! A fixed world for the fuzz targets: two issuer keys (RS256, ES256), a trust
//! configuration, two registered workloads and their certificates. The
//! `seeds` binary writes these certificates and tokens as starting corpora, so
//! the fuzzer mutates real inputs and reaches the deep checks.

use std::sync::LazyLock;

use mazu_dev_issuer::{DevIssuer, IssuerKey, TokenRequest};
use mazu_identity::certificate::{CertificateRequest, build_certificate};
use mazu_identity::{
    RegistryDelta, RegistryEntry, RegistrySnapshot, TrustConfig, TrustDomain, WorkloadId,
};
use p256::ecdsa::SigningKey;
use rand::SeedableRng;

/// The fixed "now" of every target: 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The fixed world.
pub struct World {
    pub trust: TrustConfig,
    pub registry: RegistrySnapshot,
    pub tokens: Vec<Vec<u8>>,
    pub certificates: Vec<Vec<u8>>,
    pub delta: RegistryDelta,
}

pub static WORLD: LazyLock<World> = LazyLock::new(build);

fn build() -> World {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d617a75);
    let rsa = DevIssuer::from_key(
        IssuerKey::generate_rsa(2048, &mut rng).expect("rsa key"),
        ISSUER,
    );
    let ec = DevIssuer::from_key(IssuerKey::Ec(SigningKey::random(&mut rng)), ISSUER);
    let jwks = DevIssuer::merged_jwks([&rsa, &ec]).to_json();
    let trust = TrustConfig::builder("cluster.local")
        .audience(mazu_dev_issuer::DEV_AUDIENCE)
        .issuer(ISSUER, jwks.as_bytes(), mazu_identity::trust::NamespaceScope::any())
        .build()
        .expect("trust config");
    let td = TrustDomain::new("cluster.local").expect("trust domain");
    let request = TokenRequest::new("shop", "cart")
        .node("node-1", "58456cb0-dd00-45ed-b797-5578fdceaced")
        .issued_at(NOW - 60)
        .jti("6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24");
    let key = SigningKey::random(&mut rng);
    let mut tokens = Vec::new();
    let mut certificates = Vec::new();
    let mut entries = Vec::new();
    for (slot, issuer) in [&rsa, &ec].into_iter().enumerate() {
        let token = issuer.mint(&request).expect("mint").into_bytes();
        let cert = build_certificate(
            &CertificateRequest::new(&token, &td, NOW, [slot as u8; 16]),
            &key,
        )
        .expect("certificate");
        entries.push(RegistryEntry {
            workload_id: cert.workload_id,
            slot: slot as u32,
            spki_hash: cert.spki_hash,
            token_expiry: cert.not_after,
            revoked: false,
        });
        certificates.push(cert.to_pem().expect("pem").into_bytes());
        certificates.push(cert.der);
        tokens.push(token);
    }
    let registry = RegistrySnapshot::from_entries(10, entries.clone()).expect("registry");
    let mut revoked = entries[0];
    revoked.revoked = true;
    let fresh = RegistryEntry {
        workload_id: WorkloadId::of_token(b"fresh"),
        ..entries[1]
    };
    let delta = RegistryDelta::new(10, 12, vec![revoked, fresh]).expect("delta");
    World {
        trust,
        registry,
        tokens,
        certificates,
        delta,
    }
}
