//! Parsing and checking the certificate a peer presented.
//!
//! The certificate's own signature is not checked, on purpose: the TLS
//! handshake already proved that the peer holds the private key of the
//! certificate's `SubjectPublicKeyInfo`, and the registry binds the workload ID
//! to the hash of that same SPKI. A self-signature would prove the same thing
//! a second time.

use alloc::vec::Vec;
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;

use super::error::CertificateError;
use super::extension::{MAZU_IDENTITY_OID, MazuIdentity};
use super::san::single_uri_san;
use super::time::from_x509;
use crate::digest::{SpkiHash, WorkloadId};
use crate::spiffe::SpiffeId;

/// Default limit on a peer certificate as handed over (PEM or DER). A
/// Mazu certificate is about 1.5 KiB of DER plus the token; PEM adds a third.
pub const DEFAULT_MAX_CERTIFICATE_LEN: usize = 16 * 1024;

/// The extensions that may be critical: those BoringSSL (Envoy's TLS
/// library) processes in a certificate (`X509_supported_extension`), so
/// that the filter accepts no certificate Envoy's own verification would
/// refuse for a critical extension. Everything else marked critical,
/// the Mazu extension included, is refused.
const PROCESSED_CRITICAL: [der::asn1::ObjectIdentifier; 9] = [
    // keyUsage, subjectAltName, basicConstraints, nameConstraints,
    // certificatePolicies, policyMappings, policyConstraints, extKeyUsage,
    // inhibitAnyPolicy.
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.15"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.30"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.32"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.33"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.36"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.37"),
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.54"),
];

const PEM_PREFIX: &[u8] = b"-----BEGIN ";
/// How a URL-encoded PEM starts (the space after `BEGIN` encoded).
const ENCODED_PEM_PREFIX: &[u8] = b"-----BEGIN%20";

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, since base64
/// uses it). `None` for a malformed escape.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'%' {
            let (&hi, tail) = tail.split_first()?;
            let (&lo, tail) = tail.split_first()?;
            out.push(hex(hi)? << 4 | hex(lo)?);
            rest = tail;
        } else {
            out.push(c);
            rest = tail;
        }
    }
    Some(out)
}
const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// What Mazu reads from a peer certificate. Obtained from
/// [`PeerCertificate::parse`]; nothing in it is trusted until the verdict
/// has checked the token and the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The single URI SAN, parsed.
    pub spiffe_id: SpiffeId,
    /// The token carried in the Mazu extension.
    pub token: Vec<u8>,
    /// The workload ID the Mazu extension claims.
    pub workload_id: WorkloadId,
    /// SHA-256 of the certificate's DER `SubjectPublicKeyInfo`.
    pub spki_hash: SpkiHash,
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
}

impl PeerCertificate {
    /// Parses a certificate given as PEM (one `CERTIFICATE` block, as Envoy
    /// 1.40's `connection.peer_certificate` property gives it), URL-encoded
    /// PEM (as Envoy's attribute documentation describes the value), or DER,
    /// and checks
    /// everything that does not depend on the time, the token's validity or
    /// the registry.
    pub fn parse(input: &[u8], max_len: usize) -> Result<Self, CertificateError> {
        if input.len() > max_len {
            return Err(CertificateError::TooLarge {
                len: input.len(),
                max: max_len,
            });
        }
        let decoded;
        let trimmed = match input.trim_ascii() {
            encoded if encoded.starts_with(ENCODED_PEM_PREFIX) => {
                decoded = percent_decode(encoded).ok_or(CertificateError::MalformedPem)?;
                decoded.trim_ascii()
            }
            plain => plain,
        };
        let pem_der;
        let der_bytes = if trimmed.starts_with(PEM_PREFIX) {
            let (label, der) =
                der::pem::decode_vec(trimmed).map_err(|_| CertificateError::MalformedPem)?;
            if label != CERTIFICATE_LABEL {
                return Err(CertificateError::MalformedPem);
            }
            pem_der = der;
            &pem_der[..]
        } else {
            input
        };
        let cert = Certificate::from_der(der_bytes).map_err(|_| CertificateError::Malformed)?;
        let tbs = &cert.tbs_certificate;
        let extensions = tbs.extensions.as_deref().unwrap_or(&[]);

        let mut mazu = extensions.iter().filter(|e| e.extn_id == MAZU_IDENTITY_OID);
        let (Some(mazu_ext), None) = (mazu.next(), mazu.next()) else {
            return Err(
                if extensions.iter().any(|e| e.extn_id == MAZU_IDENTITY_OID) {
                    CertificateError::DuplicateMazuExtension
                } else {
                    CertificateError::MissingMazuExtension
                },
            );
        };
        // RFC 5280 §4.2: "A certificate MUST NOT include more than one
        // instance of a particular extension." Sorting keeps this O(n log n)
        // for a certificate stuffed with extensions.
        let mut oids: Vec<_> = extensions.iter().map(|e| e.extn_id.as_bytes()).collect();
        oids.sort_unstable();
        if oids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(CertificateError::DuplicateExtension);
        }
        // RFC 5280 §4.2: a critical extension the verifier does not
        // process rejects the certificate. Envoy's chain verification, which
        // would apply this, is off (the filter decides), so it is applied
        // here, with the extensions BoringSSL processes; the Mazu extension
        // is not among them, so a critical one is refused as BoringSSL would.
        if let Some(unknown) = extensions
            .iter()
            .find(|e| e.critical && !PROCESSED_CRITICAL.contains(&e.extn_id))
        {
            return Err(CertificateError::UnknownCriticalExtension(
                alloc::string::ToString::to_string(&unknown.extn_id),
            ));
        }
        let identity = MazuIdentity::from_der(mazu_ext.extn_value.as_bytes())?;

        let san_oid = <SubjectAltName as der::oid::AssociatedOid>::OID;
        let san_ext = extensions
            .iter()
            .find(|e| e.extn_id == san_oid)
            .ok_or(CertificateError::MissingUriSan)?;
        let uri = single_uri_san(san_ext.extn_value.as_bytes())?;
        let spiffe_id = SpiffeId::parse(uri).map_err(CertificateError::InvalidSpiffeId)?;

        let spki_der = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|_| CertificateError::Malformed)?;
        Ok(Self {
            spiffe_id,
            token: identity.token.to_vec(),
            workload_id: identity.workload_id,
            spki_hash: SpkiHash::of_spki_der(&spki_der),
            not_before: from_x509(tbs.validity.not_before),
            not_after: from_x509(tbs.validity.not_after),
        })
    }

    /// Valid while `notBefore - skew <= now <= notAfter + skew` (X.509
    /// validity is inclusive at both ends).
    pub fn check_validity(
        &self,
        now_unix: u64,
        clock_skew_secs: u64,
    ) -> Result<(), CertificateError> {
        check_validity_window(self.not_before, self.not_after, now_unix, clock_skew_secs)
    }
}

/// The validity rule, shared with the verdict cache: inclusive at both ends, widened by the skew.
pub(crate) fn check_validity_window(
    not_before: u64,
    not_after: u64,
    now_unix: u64,
    clock_skew_secs: u64,
) -> Result<(), CertificateError> {
    if now_unix > not_after.saturating_add(clock_skew_secs) {
        return Err(CertificateError::Expired);
    }
    if not_before > now_unix.saturating_add(clock_skew_secs) {
        return Err(CertificateError::NotYetValid);
    }
    Ok(())
}
