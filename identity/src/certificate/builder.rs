//! The node agent's self-signed workload certificate.
//!
//! Built directly from x509-cert types: its `builder` feature needs std, and
//! this crate must build for wasm32 without it.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::str::FromStr;

use der::asn1::{BitString, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use super::error::BuildError;
use super::extension::{MAZU_IDENTITY_OID, MazuIdentity};
use super::time::to_x509;
use crate::digest::{SpkiHash, WorkloadId};
use crate::jwt::{self, DEFAULT_MAX_TOKEN_LEN};
use crate::spiffe::{SpiffeId, TrustDomain};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// Subject and issuer of every Mazu certificate. The name carries no identity
/// (the URI SAN does, as in Istio); a fixed non-empty name keeps the
/// certificate self-issued in RFC 5280 terms (issuer == subject, non-empty).
pub const CERTIFICATE_NAME: &str = "O=mazu";
/// Default backdating of `notBefore`, seconds, for peers whose clocks lag.
pub const DEFAULT_BACKDATE_SECS: u64 = 60;
/// Default requested lifetime, seconds (Istio's workload default); the token's
/// expiry usually comes first.
pub const DEFAULT_LIFETIME_SECS: u64 = 24 * 3600;

/// What the agent asks for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CertificateRequest<'a> {
    /// The workload's token, exactly as it will be embedded and hashed.
    pub token: &'a [u8],
    /// The mesh trust domain for the SPIFFE ID.
    pub trust_domain: &'a TrustDomain,
    /// Current time, Unix seconds.
    pub now_unix: u64,
    /// Requested lifetime; `notAfter` is `min(now + lifetime, token exp)`.
    pub lifetime_secs: u64,
    /// How far `notBefore` is set before `now`.
    pub backdate_secs: u64,
    /// Random serial number bytes from the caller's CSPRNG (this crate has no
    /// RNG so that it builds without `getrandom`). The top bit is cleared to
    /// keep the INTEGER positive.
    pub serial: [u8; 16],
    /// Token size limit for reading its claims.
    pub max_token_len: usize,
}

impl<'a> CertificateRequest<'a> {
    /// A request with default lifetime, backdating and token limit.
    pub fn new(
        token: &'a [u8],
        trust_domain: &'a TrustDomain,
        now_unix: u64,
        serial: [u8; 16],
    ) -> Self {
        Self {
            token,
            trust_domain,
            now_unix,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            backdate_secs: DEFAULT_BACKDATE_SECS,
            serial,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Sets the requested lifetime.
    pub fn lifetime_secs(mut self, secs: u64) -> Self {
        self.lifetime_secs = secs;
        self
    }

    /// Sets the backdating of `notBefore`.
    pub fn backdate_secs(mut self, secs: u64) -> Self {
        self.backdate_secs = secs;
        self
    }
}

/// A freshly built certificate and what went into it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The DER certificate.
    pub der: Vec<u8>,
    /// The SPIFFE ID in its URI SAN.
    pub spiffe_id: SpiffeId,
    /// SHA-256 of the token.
    pub workload_id: WorkloadId,
    /// SHA-256 of the DER `SubjectPublicKeyInfo`: what the agent registers.
    pub spki_hash: SpkiHash,
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
}

impl IssuedCertificate {
    /// The certificate as one PEM `CERTIFICATE` block (LF line endings).
    pub fn to_pem(&self) -> Result<String, BuildError> {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der)
            .map_err(|_| BuildError::Encoding(der::ErrorKind::Failed.into()))
    }
}

/// Builds and signs (ECDSA P-256 / SHA-256) the workload certificate for
/// `key`: URI SAN = SPIFFE ID from the token's namespace and service account,
/// the Mazu identity extension, CA:false, digitalSignature, serverAuth +
/// clientAuth, and a validity that never extends beyond the token's `exp`.
///
/// The token's signature is *not* checked (the agent got it from kubelet and
/// the curator verifies it at registration); only its claims are read.
pub fn build_certificate(
    request: &CertificateRequest<'_>,
    key: &SigningKey,
) -> Result<IssuedCertificate, BuildError> {
    let claims = jwt::parse_claims_unverified(request.token, request.max_token_len)?;
    let spiffe_id = SpiffeId::new(
        request.trust_domain,
        &claims.kubernetes.namespace,
        &claims.kubernetes.service_account.name,
    )?;
    if request.lifetime_secs == 0 {
        return Err(BuildError::ZeroLifetime);
    }
    if claims.expires_at <= request.now_unix {
        return Err(BuildError::TokenExpired);
    }
    let not_before = request.now_unix.saturating_sub(request.backdate_secs);
    let not_after = request
        .now_unix
        .saturating_add(request.lifetime_secs)
        .min(claims.expires_at);
    let workload_id = WorkloadId::of_token(request.token);

    let spki_der = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .map_err(|_| BuildError::Encoding(der::ErrorKind::Failed.into()))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())?;

    let mut serial = request.serial;
    serial[0] &= 0x7f;
    // A leading zero byte would be stripped; keep the serial 16 bytes long.
    serial[0] |= 0x40;
    let name = Name::from_str(CERTIFICATE_NAME)?;
    let algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };

    let extensions = vec![
        extension(
            <BasicConstraints as der::oid::AssociatedOid>::OID,
            true,
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )?,
        extension(
            <KeyUsage as der::oid::AssociatedOid>::OID,
            true,
            &KeyUsage(KeyUsages::DigitalSignature.into()),
        )?,
        extension(
            <ExtendedKeyUsage as der::oid::AssociatedOid>::OID,
            false,
            &ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH, ID_KP_CLIENT_AUTH]),
        )?,
        extension(
            <SubjectAltName as der::oid::AssociatedOid>::OID,
            false,
            &SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
                Ia5String::new(spiffe_id.as_str())?,
            )]),
        )?,
        Extension {
            extn_id: MAZU_IDENTITY_OID,
            critical: false,
            extn_value: OctetString::new(
                MazuIdentity {
                    workload_id,
                    token: request.token,
                }
                .to_der()?,
            )?,
        },
    ];

    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: to_x509(not_before).ok_or(BuildError::TimeOutOfRange)?,
            not_after: to_x509(not_after).ok_or(BuildError::TimeOutOfRange)?,
        },
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature: Signature = key.sign(&tbs.to_der()?);
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.to_der().as_bytes())?,
    };
    Ok(IssuedCertificate {
        der: certificate.to_der()?,
        spiffe_id,
        workload_id,
        spki_hash: SpkiHash::of_spki_der(spki_der.as_bytes()),
        not_before,
        not_after,
    })
}

fn extension(
    oid: ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension, BuildError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}
