//! What the agent serves: the workload certificate (built by the identity
//! crate from the token and the registered TLS key) with its PEM key.

use mazu_identity::TrustDomain;
use mazu_identity::certificate::{CertificateRequest, IssuedCertificate, build_certificate};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::CredentialsError;
use crate::token::Token;

/// The certificate and key Envoy gets, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServedCertificate {
    /// PEM `CERTIFICATE`.
    pub cert_pem: String,
    /// PKCS#8 PEM `PRIVATE KEY`.
    pub key_pem: String,
    /// What was built.
    pub issued: IssuedCertificate,
}

impl core::fmt::Debug for ServedCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServedCertificate")
            .field("spiffe_id", &self.issued.spiffe_id.as_str())
            .field("not_after", &self.issued.not_after)
            .finish_non_exhaustive()
    }
}

impl ServedCertificate {
    /// A short version string for SDS: the first bytes of the certificate's
    /// SHA-256, so the same certificate always has the same version.
    pub fn version(&self) -> String {
        hex::encode(&Sha256::digest(&self.issued.der)[..8])
    }
}

/// Builds the workload certificate for `token` and `key`, valid from `now`
/// for at most `lifetime_secs` and never past the token's expiry (the
/// identity crate enforces that bound).
pub fn build_served(
    token: &Token,
    key: &SigningKey,
    trust_domain: &TrustDomain,
    now: u64,
    lifetime_secs: u64,
) -> Result<ServedCertificate, CredentialsError> {
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    let request = CertificateRequest::new(token.jwt.as_bytes(), trust_domain, now, serial)
        .lifetime_secs(lifetime_secs);
    let issued =
        build_certificate(&request, key).map_err(|e| CredentialsError::Build(e.to_string()))?;
    let cert_pem = issued
        .to_pem()
        .map_err(|_| CredentialsError::Encoding("the certificate as PEM"))?;
    Ok(ServedCertificate {
        cert_pem,
        key_pem: key_to_pem(key)?,
        issued,
    })
}

/// PKCS#8 PEM of a P-256 key.
pub fn key_to_pem(key: &SigningKey) -> Result<String, CredentialsError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|_| CredentialsError::Encoding("the TLS key as PKCS#8"))
}

/// A P-256 key from PKCS#8 PEM.
pub fn key_from_pem(pem: &str) -> Result<SigningKey, CredentialsError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| CredentialsError::Decoding("TLS key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pem_round_trips() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key_to_pem(&key).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(key_from_pem(&pem).expect("decode"), key);
    }
}
