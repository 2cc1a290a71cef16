//! The Mazu identity X.509 extension: the workload's token and its ID.
//!
//! ```asn1
//! id-mazu-identity OBJECT IDENTIFIER ::= { 1 3 6 1 4 1 32473 1 1 }  -- PROVISIONAL
//!
//! MazuIdentity ::= SEQUENCE {
//!     version     INTEGER (1),
//!     workloadId  OCTET STRING (SIZE (32)),  -- SHA-256(token)
//!     token       OCTET STRING               -- the compact JWS, byte for byte
//! }
//! ```
//!
//! The extension is non-critical: BoringSSL (Envoy) rejects certificates with
//! unknown critical extensions during the handshake.
//!
//! **The OID is provisional.** The intended OID is the UUID-derived
//! `2.25.198876753649134063100425298743881591761`, which needs no registration;
//! but `const-oid` 0.9 (the generation x509-cert 0.2 uses) stores arcs as
//! `u32` and cannot represent a 128-bit arc, so a certificate carrying it could
//! not even be parsed. Until the stack moves to a generation that can, Mazu uses
//! `1.3.6.1.4.1.32473.1.1` under the RFC 5612 documentation enterprise number.

use alloc::vec::Vec;
use der::asn1::{IntRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Reader, SliceReader};

use super::error::CertificateError;
use crate::digest::WorkloadId;

/// PROVISIONAL OID of the Mazu identity extension (RFC 5612 documentation
/// enterprise number 32473); see the module documentation.
pub const MAZU_IDENTITY_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.1.1");

/// The only `MazuIdentity` version this crate reads and writes.
pub const MAZU_IDENTITY_VERSION: u8 = 1;

/// The decoded content of a Mazu identity extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MazuIdentity<'a> {
    /// The workload ID the certificate claims (checked against SHA-256 of the token).
    pub workload_id: WorkloadId,
    /// The token bytes.
    pub token: &'a [u8],
}

impl<'a> MazuIdentity<'a> {
    /// DER encoding of the extension value (the content of `extnValue`).
    pub fn to_der(&self) -> Result<Vec<u8>, der::Error> {
        let version = IntRef::new(&[MAZU_IDENTITY_VERSION])?;
        let id = OctetStringRef::new(self.workload_id.as_bytes())?;
        let token = OctetStringRef::new(self.token)?;
        let body_len = (version.encoded_len()? + id.encoded_len()?)? + token.encoded_len()?;
        let mut out = Vec::new();
        der::Header::new(der::Tag::Sequence, body_len?)?.encode_to_vec(&mut out)?;
        version.encode_to_vec(&mut out)?;
        id.encode_to_vec(&mut out)?;
        token.encode_to_vec(&mut out)?;
        Ok(out)
    }

    /// Decodes an extension value: strict DER, version 1, a 32-byte ID, no
    /// trailing bytes. The version is read first so that a future version is
    /// reported as such even if its fields differ.
    pub fn from_der(bytes: &'a [u8]) -> Result<Self, CertificateError> {
        let malformed = |_| CertificateError::MalformedMazuExtension;
        let mut reader = SliceReader::new(bytes).map_err(malformed)?;
        let decoded = reader
            .sequence(|r| {
                let version = IntRef::decode(r)?;
                if version.as_bytes() != [MAZU_IDENTITY_VERSION] {
                    // Skip whatever a different version carries.
                    let rest = r.remaining_len();
                    r.read_slice(rest)?;
                    return Ok(None);
                }
                let id = OctetStringRef::decode(r)?;
                let token = OctetStringRef::decode(r)?;
                Ok(Some((id.as_bytes(), token.as_bytes())))
            })
            .map_err(malformed)?;
        let decoded = reader.finish(decoded).map_err(malformed)?;
        let (id, token) = decoded.ok_or(CertificateError::UnsupportedMazuExtensionVersion)?;
        let id = <[u8; 32]>::try_from(id).map_err(|_| CertificateError::MalformedMazuExtension)?;
        Ok(Self {
            workload_id: WorkloadId::from_bytes(id),
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&der::Length::try_from(body.len()).unwrap().to_der().unwrap());
        out.extend_from_slice(body);
        out
    }

    fn encode(version: &[u8], id: &[u8], token: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut body = tlv(0x02, version);
        body.extend(tlv(0x04, id));
        body.extend(tlv(0x04, token));
        body.extend_from_slice(extra);
        tlv(0x30, &body)
    }

    #[test]
    fn round_trips() {
        let ext = MazuIdentity {
            workload_id: WorkloadId::of_token(b"tok"),
            token: b"tok",
        };
        let der = ext.to_der().unwrap();
        assert_eq!(der, encode(&[1], ext.workload_id.as_bytes(), b"tok", &[]));
        assert_eq!(MazuIdentity::from_der(&der), Ok(ext));
        // A 1 KiB token needs a long-form length.
        let token = vec![b'a'; 1024];
        let ext = MazuIdentity {
            workload_id: WorkloadId::of_token(&token),
            token: &token,
        };
        assert_eq!(MazuIdentity::from_der(&ext.to_der().unwrap()), Ok(ext));
    }

    #[test]
    fn rejects_malformed() {
        let id = [7u8; 32];
        let bad = [
            encode(&[1], &id[..31], b"t", &[]),
            encode(&[1], &[7u8; 33], b"t", &[]),
            encode(&[1], &id, b"t", &[0x05, 0x00]),
            encode(&[0, 1], &id, b"t", &[]), // non-minimal INTEGER
            vec![],
            vec![0x30, 0x00],
            vec![0x31, 0x00],
        ];
        for der in bad {
            assert_eq!(
                MazuIdentity::from_der(&der),
                Err(CertificateError::MalformedMazuExtension),
                "{der:?}"
            );
        }
        let mut trailing = encode(&[1], &id, b"t", &[]);
        trailing.push(0);
        assert_eq!(
            MazuIdentity::from_der(&trailing),
            Err(CertificateError::MalformedMazuExtension)
        );
        // Token as UTF8String instead of OCTET STRING.
        let mut body = tlv(0x02, &[1]);
        body.extend(tlv(0x04, &id));
        body.extend(tlv(0x0c, b"t"));
        assert_eq!(
            MazuIdentity::from_der(&tlv(0x30, &body)),
            Err(CertificateError::MalformedMazuExtension)
        );
    }

    #[test]
    fn reports_other_versions() {
        let id = [7u8; 32];
        for version in [&[0u8][..], &[2], &[0x01, 0x00], &[0xff]] {
            assert_eq!(
                MazuIdentity::from_der(&encode(version, &id, b"t", &[])),
                Err(CertificateError::UnsupportedMazuExtensionVersion)
            );
        }
        // A future version may have a different body.
        assert_eq!(
            MazuIdentity::from_der(&tlv(0x30, &tlv(0x02, &[2]))),
            Err(CertificateError::UnsupportedMazuExtensionVersion)
        );
    }
}
