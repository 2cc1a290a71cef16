//! Test fixtures: a development issuer, workload certificates and registries
//! made with the identity crate's own builder.

use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DEV_AUDIENCE, DevIssuer, TokenRequest};
use mazu_identity::certificate::{CertificateRequest, IssuedCertificate, build_certificate};
use mazu_identity::{RegistryEntry, RegistrySnapshot, TrustDomain};
use mazu_log::{CheckpointSigner, CosignatureSigner};
use p256::ecdsa::SigningKey;
use rand::rngs::OsRng;

/// The trust domain of every fixture.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// "Now" for the fixtures, Unix seconds.
pub const NOW: u64 = 1_800_000_000;

/// The curator's checkpoint key of every fixture.
pub fn curator_signer() -> CheckpointSigner {
    CheckpointSigner::new("mazu-curator/test", &[42; 32]).expect("curator key")
}

/// Witness `n` of the fixtures (`witness.test/w<n>`).
pub fn witness_signer(n: u8) -> CosignatureSigner {
    CosignatureSigner::new(&format!("witness.test/w{n}"), &[100 + n; 32]).expect("witness key")
}

/// The `curator` members naming the fixtures' log: the checkpoint key and
/// witnesses 1 and 2 with a quorum of 2.
pub fn log_members() -> String {
    format!(
        r#""checkpoint_key":"{}","witnesses":["{}","{}"],"witness_quorum":2"#,
        curator_signer().verifier().to_vkey(),
        witness_signer(1).verifier().to_vkey(),
        witness_signer(2).verifier().to_vkey()
    )
}

/// The fixtures' curator settings: the fixtures' log, witnesses 1 and 2
/// with a quorum of 2.
pub fn curator_config() -> crate::config::CuratorConfig {
    crate::config::CuratorConfig {
        cluster: "mazu-curator".into(),
        authority: "curator.local".into(),
        refresh_interval_ms: 5_000,
        timeout_ms: 2_000,
        max_body_bytes: 1 << 20,
        checkpoint_key: curator_signer().verifier(),
        witnesses: Some(
            mazu_log::WitnessPolicy::new(
                vec![witness_signer(1).verifier(), witness_signer(2).verifier()],
                2,
            )
            .expect("policy"),
        ),
    }
}

/// An issuer and helpers to make workloads.
pub struct Fixture {
    pub issuer: DevIssuer,
}

/// One workload: its certificate (PEM) and the registry entry registering it.
pub struct Workload {
    pub pem: String,
    pub issued: IssuedCertificate,
    pub entry: RegistryEntry,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            issuer: DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut OsRng)
                .expect("issuer"),
        }
    }

    /// A plugin configuration trusting this issuer and the fixtures' log.
    pub fn config_json(&self, extra: &str) -> String {
        format!(
            r#"{{"direction":"inbound",
                "curator":{{"cluster":"mazu-curator","authority":"curator.local",{}}},
                "trust":{{"trust_domain":"{TRUST_DOMAIN}","audience":"{DEV_AUDIENCE}",
                  "issuers":[{{"issuer":"{DEFAULT_ISSUER_URL}","jwks":{},"namespaces":["*"]}}]}}
                {extra}}}"#,
            log_members(),
            self.issuer.jwks_json()
        )
    }

    /// A registered workload `ns/sa` with a token issued at `NOW`.
    pub fn workload(&self, ns: &str, sa: &str, slot: u32) -> Workload {
        let token = self
            .issuer
            .mint(&TokenRequest::new(ns, sa).issued_at(NOW - 60))
            .expect("token");
        let key = SigningKey::random(&mut OsRng);
        let domain = TrustDomain::new(TRUST_DOMAIN).expect("domain");
        let issued = build_certificate(
            &CertificateRequest::new(token.as_bytes(), &domain, NOW - 60, [7; 16]),
            &key,
        )
        .expect("certificate");
        let claims = mazu_dev_issuer::decode_unverified(&token).expect("parts");
        let claims: mazu_dev_issuer::Claims =
            serde_json::from_slice(&claims.claims).expect("claims");
        let entry = RegistryEntry {
            workload_id: issued.workload_id,
            slot,
            spki_hash: issued.spki_hash,
            token_expiry: claims.exp,
            revoked: false,
        };
        Workload {
            pem: issued.to_pem().expect("pem"),
            issued,
            entry,
        }
    }
}

/// A snapshot at `version` holding `entries`.
pub fn snapshot(version: u64, entries: &[RegistryEntry]) -> RegistrySnapshot {
    RegistrySnapshot::from_entries(version, entries.to_vec()).expect("snapshot")
}
