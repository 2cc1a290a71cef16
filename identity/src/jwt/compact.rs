//! Splitting a compact JWS into its three segments.

use super::error::TokenError;

/// The three segments of `header.payload.signature`, still base64url.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compact<'t> {
    pub(crate) header: &'t [u8],
    pub(crate) payload: &'t [u8],
    pub(crate) signature: &'t [u8],
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t [u8],
}

impl<'t> Compact<'t> {
    /// Splits at exactly two dots; header and payload must be non-empty.
    /// The signature may be empty here so that `alg: none` tokens reach the
    /// header check and get their own reason.
    pub(crate) fn split(token: &'t [u8]) -> Result<Self, TokenError> {
        let mut dots = token
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| i);
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            return Err(TokenError::Malformed);
        };
        let header = token.get(..first).ok_or(TokenError::Malformed)?;
        let payload = token.get(first + 1..second).ok_or(TokenError::Malformed)?;
        let signature = token.get(second + 1..).ok_or(TokenError::Malformed)?;
        let signing_input = token.get(..second).ok_or(TokenError::Malformed)?;
        if header.is_empty() || payload.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            header,
            payload,
            signature,
            signing_input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_segments() {
        let c = Compact::split(b"aa.bb.cc").unwrap();
        assert_eq!(
            (c.header, c.payload, c.signature),
            (&b"aa"[..], &b"bb"[..], &b"cc"[..])
        );
        assert_eq!(c.signing_input, b"aa.bb");
        assert_eq!(Compact::split(b"aa.bb.").unwrap().signature, b"");
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            &b""[..],
            b"aa",
            b"aa.bb",
            b"aa.bb.cc.dd",
            b".bb.cc",
            b"aa..cc",
            b"..",
            b"a.b.c.d.e",
        ] {
            assert_eq!(
                Compact::split(bad).err(),
                Some(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }
}
