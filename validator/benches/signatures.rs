//! A token signature check, built-in (pure Rust: `rsa`, `p256`) against the
//! `ring` backend the validator uses, measured in the same run:
//! `cargo bench -p mazu-validator --bench signatures`. Each iteration is a
//! whole `TrustConfig::verify_token` (parse, key look-up, signature, claims).

#![allow(missing_docs)] // criterion's generated functions

use criterion::{Criterion, criterion_group, criterion_main};
use mazu_dev_issuer::{Algorithm, DevIssuer, TokenRequest};
use mazu_identity::TrustConfig;
use mazu_identity::trust::NamespaceScope;
use mazu_validator::signatures::RING;

const ISSUER: &str = "https://issuer.bench";

fn signatures(c: &mut Criterion) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut group = c.benchmark_group("token_signature");
    for algorithm in [Algorithm::Es256, Algorithm::Rs256] {
        let issuer =
            DevIssuer::generate(algorithm, ISSUER, &mut rand::rngs::OsRng).expect("issuer");
        let trust = TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(ISSUER, issuer.jwks_json().as_bytes(), NamespaceScope::any())
            .build()
            .expect("trust");
        let token = issuer
            .mint(&TokenRequest::new("shop", "cart"))
            .expect("token");
        let name = algorithm.as_str();
        group.bench_function(format!("{name}/builtin"), |b| {
            b.iter(|| trust.verify_token(token.as_bytes(), now).expect("valid"))
        });
        group.bench_function(format!("{name}/ring"), |b| {
            b.iter(|| {
                trust
                    .verify_token_with(token.as_bytes(), now, &RING)
                    .expect("valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
