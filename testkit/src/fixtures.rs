//! Real inputs for the filter: a development token issuer, workload
//! certificates built with the identity crate's builder, registry snapshots,
//! and certificates broken in each way the verdict refuses. (What Envoy
//! reports to the filter for a workload, the peer properties of the
//! wasmtime host, is in `mazu-wasm-tests`' `peer` module.)

use std::time::{SystemTime, UNIX_EPOCH};

use mazu_dev_issuer::{Algorithm, DEFAULT_ISSUER_URL, DevIssuer, TokenRequest};
use mazu_identity::certificate::{CertificateRequest, IssuedCertificate, build_certificate};
use mazu_identity::{RegistryEntry, TrustDomain};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rand::rngs::OsRng;

/// The mesh trust domain of the fixtures.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The callout cluster of the fixtures' configuration.
pub const CURATOR_CLUSTER: &str = "mazu-curator";
/// The audience of the test deployment's tokens, curator and filters.
pub const AUDIENCE: &str = mazu_dev_issuer::DEV_AUDIENCE;

/// The current time, Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A workload's credentials: certificate, key and registry entry.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The token embedded in the certificate.
    pub token: String,
    /// The certificate as built.
    pub issued: IssuedCertificate,
    /// PEM certificate.
    pub cert_pem: String,
    /// PKCS#8 PEM private key (for a real TLS client).
    pub key_pem: String,
    /// The entry that registers it.
    pub entry: RegistryEntry,
}

/// How to make one workload.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Token `iat`.
    pub issued_at: u64,
    /// Token lifetime, seconds.
    pub token_lifetime: u64,
    /// Token `nbf` override.
    pub not_before: Option<u64>,
    /// Token audiences.
    pub audiences: Vec<String>,
    /// The "now" the certificate is built at.
    pub certificate_time: u64,
    /// Certificate lifetime, seconds.
    pub certificate_lifetime: u64,
    /// Trust domain in the certificate's SPIFFE ID.
    pub trust_domain: String,
    /// Registry slot.
    pub slot: u32,
}

impl WorkloadSpec {
    /// `ns/sa`, token issued a minute ago for an hour, certificate now.
    pub fn new(namespace: &str, service_account: &str) -> Self {
        let now = unix_now();
        WorkloadSpec {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            issued_at: now - 60,
            token_lifetime: 3600,
            not_before: None,
            audiences: vec![AUDIENCE.to_owned()],
            certificate_time: now - 60,
            certificate_lifetime: 24 * 3600,
            trust_domain: TRUST_DOMAIN.to_owned(),
            slot: 0,
        }
    }
}

/// A development issuer and everything made with it.
pub struct Mesh {
    /// The token issuer the filter trusts.
    pub issuer: DevIssuer,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new()
    }
}

impl Mesh {
    /// A fresh ES256 issuer.
    pub fn new() -> Self {
        Mesh {
            issuer: DevIssuer::generate(Algorithm::Es256, DEFAULT_ISSUER_URL, &mut OsRng)
                .expect("ES256 key generation cannot fail"),
        }
    }

    /// A registered-looking workload `ns/sa` (token, key, certificate, entry).
    pub fn workload(&self, namespace: &str, service_account: &str) -> Workload {
        self.workload_from(&self.issuer, &WorkloadSpec::new(namespace, service_account))
    }

    /// A workload as `spec` says, with a token from `issuer`.
    pub fn workload_from(&self, issuer: &DevIssuer, spec: &WorkloadSpec) -> Workload {
        let mut request =
            TokenRequest::new(&spec.namespace, &spec.service_account).issued_at(spec.issued_at);
        request.lifetime = spec.token_lifetime;
        request.not_before = spec.not_before;
        request.audiences = spec.audiences.clone();
        let token = issuer.mint(&request).expect("token");
        self.workload_with_token(token, spec)
    }

    /// A workload carrying exactly `token` (any bytes whose claims parse).
    pub fn workload_with_token(&self, token: String, spec: &WorkloadSpec) -> Workload {
        self.workload_with_key(token, spec, SigningKey::random(&mut OsRng))
    }

    /// A workload carrying `token`, with TLS key `key` (e.g. the key an
    /// agent registered at the curator).
    pub fn workload_with_key(
        &self,
        token: String,
        spec: &WorkloadSpec,
        key: SigningKey,
    ) -> Workload {
        let domain = TrustDomain::new(&spec.trust_domain).expect("trust domain");
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut OsRng, &mut serial);
        let request =
            CertificateRequest::new(token.as_bytes(), &domain, spec.certificate_time, serial)
                .lifetime_secs(spec.certificate_lifetime);
        let issued = build_certificate(&request, &key).expect("certificate");
        let claims = mazu_identity::jwt::parse_claims_unverified(token.as_bytes(), 64 * 1024)
            .expect("claims");
        let entry = RegistryEntry {
            workload_id: issued.workload_id,
            slot: spec.slot,
            spki_hash: issued.spki_hash,
            token_expiry: claims.expires_at,
            revoked: false,
        };
        Workload {
            cert_pem: issued.to_pem().expect("PEM"),
            key_pem: key
                .to_pkcs8_pem(LineEnding::LF)
                .expect("PKCS#8")
                .to_string(),
            token,
            issued,
            entry,
        }
    }

    /// The JWKS the filter is configured with.
    pub fn jwks_json(&self) -> String {
        self.issuer.jwks_json()
    }

    /// A plugin configuration: the given `direction`, the fixtures'
    /// curator cluster, log keys ([`crate::witnessed::log_members`]) and
    /// issuer, plus `extra` top-level members (`,"k":v`).
    pub fn config(&self, direction: &str, extra: &str) -> String {
        self.config_with(direction, &crate::witnessed::log_members(), extra)
    }

    /// A plugin configuration whose `curator` object has `curator_members`
    /// (`,"k":v`: the checkpoint key and witnesses, and any other option)
    /// besides the cluster, authority, refresh interval and timeout.
    pub fn config_with(&self, direction: &str, curator_members: &str, extra: &str) -> String {
        format!(
            r#"{{"direction":"{direction}",
                "curator":{{"cluster":"{CURATOR_CLUSTER}","authority":"curator.mazu.test",
                            "refresh_interval_ms":1000,"timeout_ms":500
                            {curator_members}}},
                "trust":{{"trust_domain":"{TRUST_DOMAIN}","audience":"{AUDIENCE}",
                          "issuers":[{{"issuer":"{DEFAULT_ISSUER_URL}","jwks":{},"namespaces":["*"]}}]}}
                {extra}}}"#,
            self.jwks_json()
        )
    }
}

/// A witnessed log whose derived registry holds `entries` (two records
/// each: bind and reveal; three if revoked).
pub fn log(entries: &[RegistryEntry]) -> crate::witnessed::TestLog {
    crate::witnessed::TestLog::with_entries(entries)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// PEM with LF line endings.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let body = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Replaces the first occurrence of `from` in `der` with `to` (same length).
pub fn replace_once(der: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "same-length edits keep the DER valid");
    let at = der
        .windows(from.len())
        .position(|w| w == from)
        .expect("bytes to replace are present");
    der[at..at + to.len()].copy_from_slice(to);
}

/// DER of the Mazu identity extension OID 1.3.6.1.4.1.32473.1.1 (contents only).
pub const MAZU_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x81, 0xfd, 0x59, 0x01, 0x01];

/// Sets the year of the certificate's `notAfter` (a UTCTime) to 2049.
pub fn push_not_after_to_2049(der: &mut [u8]) {
    // Validity is SEQUENCE { UTCTime notBefore, UTCTime notAfter }: the
    // second `17 0d` (UTCTime, 13 bytes) is notAfter.
    let mut seen = 0;
    for i in 0..der.len().saturating_sub(2) {
        if der[i] == 0x17 && der[i + 1] == 0x0d {
            seen += 1;
            if seen == 2 {
                der[i + 2] = b'4';
                der[i + 3] = b'9';
                return;
            }
        }
    }
    panic!("no notAfter UTCTime found");
}
