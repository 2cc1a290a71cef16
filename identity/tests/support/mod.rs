//! Fixtures shared by the integration tests: a dev issuer (RS256 + ES256),
//! workloads with certificates from the real builder, registries, and
//! hand-built certificates for the malformed cases (`certs`).

// Each test binary uses a different subset of these helpers, and a fixture
// that cannot be built is a bug in the test, so unwrapping is the right call.
#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod tamper;

use std::sync::OnceLock;

use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DEV_AUDIENCE, DevIssuer, TokenRequest};
use mazu_identity::certificate::{CertificateRequest, IssuedCertificate, build_certificate};
use mazu_identity::trust::NamespaceScope;
use mazu_identity::{
    RegistryEntry, RegistrySnapshot, SpkiHash, TrustConfig, TrustDomain, WorkloadId,
};
use p256::ecdsa::SigningKey;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// 2026-01-01T00:00:00Z.
pub const NOW: u64 = 1_767_225_600;
pub const TRUST_DOMAIN: &str = "cluster.local";
pub const ISSUER: &str = DEFAULT_ISSUER_URL;
pub const SKEW: u64 = 60;
/// The audience of the fixture tokens and trust configuration.
pub const AUDIENCE: &str = DEV_AUDIENCE;
/// The fixture token: iat = nbf = NOW - 60, exp = iat + 3600.
pub const TOKEN_EXP: u64 = NOW - 60 + 3600;

pub struct Issuers {
    pub rsa: DevIssuer,
    pub ec: DevIssuer,
    pub jwks_json: String,
}

/// One RS256 (2048-bit) and one ES256 key under the same issuer URL, as a
/// cluster rotating its key would publish them. Deterministic.
pub fn issuers() -> &'static Issuers {
    static ISSUERS: OnceLock<Issuers> = OnceLock::new();
    ISSUERS.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x6d617a75);
        let rsa = DevIssuer::generate(Algorithm::Rs256, ISSUER, &mut rng).expect("rsa issuer");
        let ec = DevIssuer::generate(Algorithm::Es256, ISSUER, &mut rng).expect("ec issuer");
        let jwks_json = DevIssuer::merged_jwks([&rsa, &ec]).to_json();
        Issuers { rsa, ec, jwks_json }
    })
}

pub fn rsa() -> &'static DevIssuer {
    &issuers().rsa
}

pub fn ec() -> &'static DevIssuer {
    &issuers().ec
}

/// A tenant's issuer, trusted only for namespace [`TENANT_NAMESPACE`].
pub const TENANT_ISSUER: &str = "https://tenant.example";
/// The one namespace the tenant issuer may assert.
pub const TENANT_NAMESPACE: &str = "tenant";

/// A tenant's own OIDC issuer (ES256), deterministic.
pub fn tenant() -> &'static DevIssuer {
    static TENANT: OnceLock<DevIssuer> = OnceLock::new();
    TENANT.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x7465_6e61);
        DevIssuer::generate(Algorithm::Es256, TENANT_ISSUER, &mut rng).expect("tenant issuer")
    })
}

/// The fixture configuration: the cluster issuer for every namespace, the
/// tenant issuer for [`TENANT_NAMESPACE`] only.
pub fn trust() -> TrustConfig {
    TrustConfig::builder(TRUST_DOMAIN)
        .audience(AUDIENCE)
        .issuer(
            ISSUER,
            issuers().jwks_json.as_bytes(),
            NamespaceScope::any(),
        )
        .issuer(
            TENANT_ISSUER,
            tenant().jwks_json().as_bytes(),
            NamespaceScope::namespaces([TENANT_NAMESPACE]).expect("scope"),
        )
        .build()
        .expect("trust config")
}

pub fn trust_domain() -> TrustDomain {
    TrustDomain::new(TRUST_DOMAIN).expect("trust domain")
}

/// The standard request: shop/cart, pod and node bound, issued a minute before NOW.
pub fn request() -> TokenRequest {
    TokenRequest::new("shop", "cart")
        .node("node-1", "58456cb0-dd00-45ed-b797-5578fdceaced")
        .issued_at(NOW - 60)
        .lifetime(3600)
        .jti("6f4d6a7e-2c1b-4c8e-9a3f-0b5d8e7c1a24")
}

pub fn mint(issuer: &DevIssuer, request: &TokenRequest) -> Vec<u8> {
    issuer.mint(request).expect("mint").into_bytes()
}

/// The standard token from the RSA key.
pub fn rsa_token() -> Vec<u8> {
    mint(rsa(), &request())
}

/// The claims of `request` as a JSON value, to tamper with before signing.
pub fn claims_value(issuer: &DevIssuer, request: &TokenRequest) -> serde_json::Value {
    serde_json::to_value(issuer.claims(request)).expect("claims to JSON")
}

/// Signs claims JSON verbatim under the issuer's standard header.
pub fn sign_claims(issuer: &DevIssuer, claims_json: &str) -> Vec<u8> {
    issuer
        .sign_raw(&issuer.header_json(), claims_json)
        .into_bytes()
}

/// Signs header and claims JSON verbatim.
pub fn sign_raw(issuer: &DevIssuer, header_json: &str, claims_json: &str) -> Vec<u8> {
    issuer.sign_raw(header_json, claims_json).into_bytes()
}

/// A deterministic workload TLS key.
pub fn tls_key(seed: u64) -> SigningKey {
    SigningKey::random(&mut StdRng::seed_from_u64(seed))
}

pub struct Workload {
    pub key: SigningKey,
    pub token: Vec<u8>,
    pub cert: IssuedCertificate,
}

/// A certificate from the real builder at NOW for `token`.
pub fn workload(token: Vec<u8>) -> Workload {
    workload_at(token, NOW, 24 * 3600)
}

pub fn workload_at(token: Vec<u8>, now: u64, lifetime: u64) -> Workload {
    let key = tls_key(7);
    let td = trust_domain();
    let request = CertificateRequest::new(&token, &td, now, [0x5a; 16]).lifetime_secs(lifetime);
    let cert = build_certificate(&request, &key).expect("build certificate");
    Workload { key, token, cert }
}

/// The SPKI hash of a key's certificate SPKI.
pub fn spki_hash(key: &SigningKey) -> SpkiHash {
    use p256::pkcs8::EncodePublicKey;
    let der = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .expect("spki");
    SpkiHash::of_spki_der(der.as_bytes())
}

/// The token's `exp` read without verification, or NOW + 3600 for tokens whose claims are unreadable.
pub fn token_expiry(token: &[u8]) -> u64 {
    mazu_identity::jwt::parse_claims_unverified(token, 64 * 1024)
        .map(|c| c.expires_at)
        .unwrap_or(NOW + 3600)
}

/// A registry entry as the curator would record for `token` registered by `key`.
pub fn entry(token: &[u8], key: &SigningKey, slot: u32) -> RegistryEntry {
    RegistryEntry {
        workload_id: WorkloadId::of_token(token),
        slot,
        spki_hash: spki_hash(key),
        token_expiry: token_expiry(token),
        revoked: false,
    }
}

pub fn registry(entries: Vec<RegistryEntry>) -> RegistrySnapshot {
    let version = entries.len() as u64 + 10;
    RegistrySnapshot::from_entries(version, entries).expect("registry")
}

/// A registry with exactly this token registered by this key.
pub fn registered(token: &[u8], key: &SigningKey) -> RegistrySnapshot {
    registry(vec![entry(token, key, 3)])
}
