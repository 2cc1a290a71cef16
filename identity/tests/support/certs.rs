//! Hand-built certificates with every knob the real builder refuses to turn:
//! duplicate or missing extensions, raw SAN bytes, any validity.

use core::str::FromStr;
use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use mazu_identity::WorkloadId;
use mazu_identity::certificate::{MAZU_IDENTITY_OID, MazuIdentity};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub const SAN_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
pub const BASIC_CONSTRAINTS_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der::Length::try_from(body.len()).unwrap().to_der().unwrap());
    out.extend_from_slice(body);
    out
}

pub fn raw_ext(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    }
}

/// A SAN extension whose GeneralNames are the given (tag, raw bytes) pairs.
pub fn san_ext(names: &[(u8, &[u8])]) -> Extension {
    let body: Vec<u8> = names
        .iter()
        .flat_map(|(tag, value)| tlv(*tag, value))
        .collect();
    raw_ext(SAN_OID, false, tlv(0x30, &body))
}

/// A SAN extension with these URIs.
pub fn san_uris(uris: &[&str]) -> Extension {
    let names: Vec<(u8, &[u8])> = uris.iter().map(|u| (0x86u8, u.as_bytes())).collect();
    san_ext(&names)
}

pub fn mazu_ext_with_id(id: WorkloadId, token: &[u8]) -> Extension {
    let value = MazuIdentity {
        workload_id: id,
        token,
    }
    .to_der()
    .unwrap();
    raw_ext(MAZU_IDENTITY_OID, false, value)
}

pub fn mazu_ext(token: &[u8]) -> Extension {
    mazu_ext_with_id(WorkloadId::of_token(token), token)
}

pub fn basic_constraints() -> Extension {
    raw_ext(BASIC_CONSTRAINTS_OID, true, vec![0x30, 0x00])
}

/// The extensions a correct certificate for `token` claiming `uri` has.
pub fn standard_exts(uri: &str, token: &[u8]) -> Vec<Extension> {
    vec![basic_constraints(), san_uris(&[uri]), mazu_ext(token)]
}

fn time(unix: u64) -> Time {
    let dt = der::DateTime::from_unix_duration(core::time::Duration::from_secs(unix)).unwrap();
    Time::UtcTime(der::asn1::UtcTime::from_date_time(dt).unwrap())
}

/// A self-signed certificate for `key` with exactly these extensions and validity.
pub fn build(
    key: &SigningKey,
    not_before: u64,
    not_after: u64,
    extensions: Vec<Extension>,
) -> Vec<u8> {
    let spki_der = p256::PublicKey::from(key.verifying_key())
        .to_public_key_der()
        .unwrap();
    let name = Name::from_str("O=mazu").unwrap();
    let algorithm = AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0x42; 16]).unwrap(),
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: time(not_before),
            not_after: time(not_after),
        },
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: if extensions.is_empty() {
            None
        } else {
            Some(extensions)
        },
    };
    let signature: Signature = key.sign(&tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature.to_der().as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

pub fn to_pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap()
}
