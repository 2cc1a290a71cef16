//! What the agent serves: the workload certificate (built by the identity
//! crate from the token and the registered TLS key) with its PEM key, and the
//! throwaway root that goes into Envoy's validation context.

use core::str::FromStr;

use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use mazu_identity::TrustDomain;
use mazu_identity::certificate::{CertificateRequest, IssuedCertificate, build_certificate};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::RngCore;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

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

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A self-signed CA certificate (PEM) whose key is dropped at once, so it
/// can sign nothing, ever.
///
/// Why it exists: Envoy with `trust_chain_verification: ACCEPT_UNTRUSTED`
/// and *no* `trusted_ca` lets a client without any certificate through (see
/// ENVOY-NOTES). Any `trusted_ca` restores `certificate_required`; one that
/// nobody can sign with adds no trust.
pub fn throwaway_root_pem(now: u64) -> Result<String, CredentialsError> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let enc = |_| CredentialsError::Encoding("the throwaway root certificate");
    let spki_der = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .map_err(|_| CredentialsError::Encoding("the throwaway root key"))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(enc)?;
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let name = Name::from_str("CN=mazu-agent unused root (signs nothing),O=mazu").map_err(enc)?;
    let algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };
    let ext =
        |oid: ObjectIdentifier, value: &dyn EncodeDyn| -> Result<Extension, CredentialsError> {
            Ok(Extension {
                extn_id: oid,
                critical: true,
                extn_value: OctetString::new(value.der().map_err(enc)?).map_err(enc)?,
            })
        };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(enc)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: utc_or_general(now.saturating_sub(60))
                .ok_or(CredentialsError::Encoding("the throwaway root's validity"))?,
            // Long-lived: it must outlive the agent; it never vouches for anything.
            not_after: utc_or_general(now.saturating_add(10 * 365 * 24 * 3600))
                .ok_or(CredentialsError::Encoding("the throwaway root's validity"))?,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            ext(
                <BasicConstraints as der::oid::AssociatedOid>::OID,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?,
            ext(
                <KeyUsage as der::oid::AssociatedOid>::OID,
                &KeyUsage(KeyUsages::KeyCertSign.into()),
            )?,
        ]),
    };
    let signature: Signature = key.sign(&tbs.to_der().map_err(enc)?);
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.to_der().as_bytes()).map_err(enc)?,
    };
    let der = certificate.to_der().map_err(enc)?;
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)
        .map_err(|_| CredentialsError::Encoding("the throwaway root certificate as PEM"))
}

/// RFC 5280 time encoding: UTCTime through 2049.
fn utc_or_general(unix: u64) -> Option<Time> {
    let date = der::DateTime::from_unix_duration(core::time::Duration::from_secs(unix)).ok()?;
    if date.year() < 2050 {
        der::asn1::UtcTime::from_date_time(date)
            .ok()
            .map(Time::UtcTime)
    } else {
        Some(Time::GeneralTime(
            der::asn1::GeneralizedTime::from_date_time(date),
        ))
    }
}

/// Object-safe DER encoding for the extension helper.
trait EncodeDyn {
    fn der(&self) -> der::Result<Vec<u8>>;
}

impl<T: Encode> EncodeDyn for T {
    fn der(&self) -> der::Result<Vec<u8>> {
        self.to_der()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_root_is_a_ca_certificate() {
        let pem = throwaway_root_pem(1_800_000_000).expect("root");
        let (label, der) = der::pem::decode_vec(pem.as_bytes()).expect("pem");
        assert_eq!(label, "CERTIFICATE");
        let cert = Certificate::from_der(&der).expect("der");
        let exts = cert.tbs_certificate.extensions.expect("extensions");
        let bc = exts
            .iter()
            .find(|e| e.extn_id == <BasicConstraints as der::oid::AssociatedOid>::OID)
            .expect("basic constraints");
        let bc = BasicConstraints::from_der(bc.extn_value.as_bytes()).expect("bc");
        assert!(bc.ca);
    }

    #[test]
    fn key_pem_round_trips() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key_to_pem(&key).expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(key_from_pem(&pem).expect("decode"), key);
    }
}
