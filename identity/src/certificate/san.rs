//! subjectAltName: finding the one URI SAN, refusing NUL and non-ASCII bytes.
//!
//! GeneralNames is walked by hand rather than through x509-cert's typed
//! decoder because that decoder fails on a non-ASCII IA5String without saying
//! why; Mazu wants the named reasons `san_nul` and `san_non_ascii`, and wants
//! them for every string-valued SAN, not just the URI.

use der::asn1::AnyRef;
use der::{Decode, Reader, SliceReader, Tag, TagNumber};

use super::error::CertificateError;

/// Returns the single URI SAN of a DER `GeneralNames` (the extension value).
pub(crate) fn single_uri_san(general_names_der: &[u8]) -> Result<&str, CertificateError> {
    let malformed = |_| CertificateError::MalformedSan;
    let mut reader = SliceReader::new(general_names_der).map_err(malformed)?;
    let found = reader
        .sequence(|r| {
            let mut uri: Option<&[u8]> = None;
            let mut uri_count = 0usize;
            let mut bad: Option<CertificateError> = None;
            while !r.is_finished() {
                let name = AnyRef::decode(r)?;
                let Tag::ContextSpecific {
                    constructed,
                    number,
                } = der::Tagged::tag(&name)
                else {
                    return Err(der::ErrorKind::TagUnexpected {
                        expected: None,
                        actual: der::Tagged::tag(&name),
                    }
                    .into());
                };
                // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]:
                // IMPLICIT IA5String, so primitive.
                let is_string = matches!(number, TagNumber::N1 | TagNumber::N2 | TagNumber::N6);
                if !is_string {
                    continue;
                }
                if constructed {
                    return Err(der::Tag::Ia5String.value_error());
                }
                let bytes = name.value();
                if bad.is_none() {
                    if bytes.contains(&0) {
                        bad = Some(CertificateError::SanNul);
                    } else if !bytes.is_ascii() {
                        bad = Some(CertificateError::SanNonAscii);
                    }
                }
                if number == TagNumber::N6 {
                    uri_count += 1;
                    uri = Some(bytes);
                }
            }
            Ok((uri, uri_count, bad))
        })
        .map_err(malformed)?;
    let (uri, uri_count, bad) = reader.finish(found).map_err(malformed)?;
    if let Some(err) = bad {
        return Err(err);
    }
    match (uri, uri_count) {
        (Some(uri), 1) => core::str::from_utf8(uri).map_err(|_| CertificateError::SanNonAscii),
        (_, 0) => Err(CertificateError::MissingUriSan),
        _ => Err(CertificateError::MultipleUriSans),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(
            &der::Encode::to_der(&der::Length::try_from(body.len()).unwrap()).unwrap(),
        );
        out.extend_from_slice(body);
        out
    }

    fn names(items: &[(u8, &[u8])]) -> Vec<u8> {
        let body: Vec<u8> = items
            .iter()
            .flat_map(|(tag, value)| tlv(*tag, value))
            .collect();
        tlv(0x30, &body)
    }

    const URI: u8 = 0x86;
    const DNS: u8 = 0x82;

    #[test]
    fn finds_the_uri() {
        let der = names(&[(DNS, b"web.default.svc"), (URI, b"spiffe://td/ns/a/sa/b")]);
        assert_eq!(single_uri_san(&der), Ok("spiffe://td/ns/a/sa/b"));
        // directoryName [4] (constructed) is skipped.
        let der = names(&[(0xa4, &tlv(0x30, &[])), (URI, b"spiffe://td/ns/a/sa/b")]);
        assert_eq!(single_uri_san(&der), Ok("spiffe://td/ns/a/sa/b"));
    }

    #[test]
    fn counts_uris() {
        assert_eq!(
            single_uri_san(&names(&[])),
            Err(CertificateError::MissingUriSan)
        );
        assert_eq!(
            single_uri_san(&names(&[(DNS, b"x")])),
            Err(CertificateError::MissingUriSan)
        );
        let two_same = names(&[
            (URI, b"spiffe://td/ns/a/sa/b"),
            (URI, b"spiffe://td/ns/a/sa/b"),
        ]);
        assert_eq!(
            single_uri_san(&two_same),
            Err(CertificateError::MultipleUriSans)
        );
        let two = names(&[
            (URI, b"spiffe://td/ns/a/sa/b"),
            (URI, b"spiffe://td/ns/a/sa/c"),
        ]);
        assert_eq!(single_uri_san(&two), Err(CertificateError::MultipleUriSans));
    }

    #[test]
    fn refuses_nul_and_non_ascii_anywhere() {
        let der = names(&[(URI, b"spiffe://td/ns/a\0/sa/b")]);
        assert_eq!(single_uri_san(&der), Err(CertificateError::SanNul));
        let der = names(&[(DNS, b"a\0.example"), (URI, b"spiffe://td/ns/a/sa/b")]);
        assert_eq!(single_uri_san(&der), Err(CertificateError::SanNul));
        let der = names(&[(URI, "spiffe://td/ns/\u{e9}/sa/b".as_bytes())]);
        assert_eq!(single_uri_san(&der), Err(CertificateError::SanNonAscii));
        let der = names(&[(0x81, b"\xffa@b"), (URI, b"spiffe://td/ns/a/sa/b")]);
        assert_eq!(single_uri_san(&der), Err(CertificateError::SanNonAscii));
    }

    #[test]
    fn refuses_malformed() {
        for der in [
            vec![],
            vec![0x30],
            vec![0x31, 0x00],
            names(&[(0x04, b"not context specific")]),
            names(&[(0xa6, &tlv(0x16, b"constructed uri"))]),
            {
                let mut d = names(&[(URI, b"spiffe://td/ns/a/sa/b")]);
                d.push(0);
                d
            },
        ] {
            assert_eq!(
                single_uri_san(&der),
                Err(CertificateError::MalformedSan),
                "{der:?}"
            );
        }
    }
}
