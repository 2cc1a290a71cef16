//! The canonical binary encoding shared by every public type.
//!
//! Layout of every value: a 4-byte type tag (`MAGIC`), one format-version byte
//! ([`FORMAT_VERSION`]), then the type's fields in a fixed order: integers
//! big-endian (`u32` or `u64`), G1 points as 48-byte and G2 points as 96-byte
//! compressed encodings (zkcrypto / IETF pairing-friendly-curves format), Gt
//! elements as 576 bytes (`bls12_381_plus` order, big-endian field elements),
//! scalars as 32 bytes big-endian and reduced. Variable-length lists are a
//! `u32` count followed by the items. Decoding is strict: exactly one encoding
//! per value, no trailing bytes, every point checked to be in its prime-order
//! subgroup, and a count is checked against the bytes actually present before
//! anything is allocated.

use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G2Affine, Gt, Scalar};

use crate::error::{DecodeError, Group};
use crate::g1_decode::g1_from_compressed;
use crate::gt::is_in_subgroup_vartime;
use crate::params::Dimensions;

/// The format version byte written after each type tag, unless a type says
/// otherwise ([`Canonical::VERSION`]): every type is at version 1 except
/// [`crate::MembershipProof`], which is at version 2 (it gained the
/// registrant's id and proof of knowledge; version 1 proofs are refused).
pub const FORMAT_VERSION: u8 = 1;

/// Compressed G1 point length.
pub(crate) const G1_LEN: usize = 48;
/// Compressed G2 point length.
pub(crate) const G2_LEN: usize = 96;
/// Gt element length.
pub(crate) const GT_LEN: usize = 576;
/// Scalar length.
pub(crate) const SCALAR_LEN: usize = 32;

/// A type with one canonical, versioned binary encoding.
///
/// `from_bytes(to_bytes(x)) == x` for every value, and `from_bytes` accepts
/// nothing else: it never panics and returns a typed [`DecodeError`].
pub trait Canonical: Sized {
    /// The 4-byte type tag the encoding starts with.
    const MAGIC: [u8; 4];

    /// The format version byte after the tag. The decoder accepts this
    /// version only.
    const VERSION: u8 = FORMAT_VERSION;

    /// The canonical encoding.
    fn to_bytes(&self) -> Vec<u8>;

    /// Strictly decode the canonical encoding.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// Field-by-field encoding of a type; the macro [`impl_canonical`] adds the
/// header, the trailing-bytes check and the public [`Canonical`] impl.
pub(crate) trait Codec: Sized {
    /// Type tag.
    const MAGIC: [u8; 4];
    /// Format version byte (the only one the decoder accepts).
    const VERSION: u8 = FORMAT_VERSION;
    /// Write the fields (after the header).
    fn write(&self, w: &mut Writer);
    /// Read the fields (after the header).
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Implement [`Canonical`] and inherent `to_bytes`/`from_bytes` from a [`Codec`].
macro_rules! impl_canonical {
    ($t:ty) => {
        impl $crate::encoding::Canonical for $t {
            const MAGIC: [u8; 4] = <$t as $crate::encoding::Codec>::MAGIC;
            const VERSION: u8 = <$t as $crate::encoding::Codec>::VERSION;

            fn to_bytes(&self) -> alloc::vec::Vec<u8> {
                $crate::encoding::encode_value(self)
            }

            fn from_bytes(bytes: &[u8]) -> Result<Self, $crate::error::DecodeError> {
                $crate::encoding::decode_value(bytes)
            }
        }

        impl $t {
            /// The canonical binary encoding (see [`crate::Canonical`]).
            pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
                $crate::encoding::encode_value(self)
            }

            /// Strictly decode the canonical binary encoding (see [`crate::Canonical`]).
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, $crate::error::DecodeError> {
                $crate::encoding::decode_value(bytes)
            }
        }
    };
}
pub(crate) use impl_canonical;

/// Header + fields.
pub(crate) fn encode_value<T: Codec>(value: &T) -> Vec<u8> {
    let mut w = Writer::with_version(T::MAGIC, T::VERSION);
    value.write(&mut w);
    w.into_bytes()
}

/// Header + fields + nothing else.
pub(crate) fn decode_value<T: Codec>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::open_version(bytes, T::MAGIC, T::VERSION)?;
    let value = T::read(&mut r)?;
    r.finish()?;
    Ok(value)
}

/// Append-only byte writer.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer that has already written the header (version
    /// [`FORMAT_VERSION`]).
    pub(crate) fn new(magic: [u8; 4]) -> Self {
        Self::with_version(magic, FORMAT_VERSION)
    }

    /// A writer that has already written the header with this version byte.
    pub(crate) fn with_version(magic: [u8; 4], version: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&magic);
        buf.push(version);
        Self { buf }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    /// The capacity, then the block size ([`Reader::dimensions`] reads them).
    pub(crate) fn dimensions(&mut self, dims: Dimensions) {
        self.u32(dims.capacity());
        self.u32(dims.block_size());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    /// A list count. Lists in this crate are bounded by [`crate::MAX_CAPACITY`]
    /// or the block size, both far below `u32::MAX`.
    pub(crate) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(crate) fn g1(&mut self, p: &G1Affine) {
        self.bytes(&p.to_compressed());
    }

    pub(crate) fn g2(&mut self, p: &G2Affine) {
        self.bytes(&p.to_compressed());
    }

    pub(crate) fn gt(&mut self, x: &Gt) {
        self.bytes(&x.to_bytes());
    }

    pub(crate) fn scalar(&mut self, s: &Scalar) {
        self.bytes(&s.to_be_bytes());
    }
}

/// Strict cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Check the header (tag and version [`FORMAT_VERSION`]) and position
    /// after it.
    pub(crate) fn open(bytes: &'a [u8], magic: [u8; 4]) -> Result<Self, DecodeError> {
        Self::open_version(bytes, magic, FORMAT_VERSION)
    }

    /// Check the header (tag and exactly this version) and position after it.
    pub(crate) fn open_version(
        bytes: &'a [u8],
        magic: [u8; 4],
        expected_version: u8,
    ) -> Result<Self, DecodeError> {
        let mut r = Self { rest: bytes };
        let found: [u8; 4] = r.array("magic")?;
        if found != magic {
            return Err(DecodeError::BadMagic {
                expected: magic,
                found,
            });
        }
        let [version] = r.array::<1>("version")?;
        if version != expected_version {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(r)
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fail unless everything was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }

    pub(crate) fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A capacity and the block size it implies (`ceil(sqrt(capacity))`,
    /// stored redundantly so a reader can check it).
    pub(crate) fn dimensions(&mut self) -> Result<Dimensions, DecodeError> {
        let capacity = self.u32("capacity")?;
        let dims =
            Dimensions::for_capacity(capacity).map_err(|_| DecodeError::LengthOutOfRange {
                field: "capacity",
                value: u64::from(capacity),
            })?;
        if self.u32("block_size")? != dims.block_size() {
            return Err(DecodeError::Inconsistent(
                "block size is not ceil(sqrt(capacity))",
            ));
        }
        Ok(dims)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A list count of items of `item_len` bytes each: at most `max`, and no
    /// more items than the remaining bytes can hold, so callers may allocate
    /// `count` items without trusting the input.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        item_len: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let raw = self.u32(field)?;
        let n = usize::try_from(raw).map_err(|_| DecodeError::LengthOutOfRange {
            field,
            value: u64::from(raw),
        })?;
        if n > max {
            return Err(DecodeError::LengthOutOfRange {
                field,
                value: u64::from(raw),
            });
        }
        let need = n.saturating_mul(item_len);
        if need > self.rest.len() {
            return Err(DecodeError::Truncated {
                field,
                needed: need - self.rest.len(),
            });
        }
        Ok(n)
    }

    /// Any point of G1, including the identity.
    pub(crate) fn g1(&mut self, field: &'static str) -> Result<G1Affine, DecodeError> {
        let bytes: [u8; G1_LEN] = self.array(field)?;
        decode_g1(field, &bytes)
    }

    /// A point of G1 other than the identity.
    pub(crate) fn g1_nonzero(&mut self, field: &'static str) -> Result<G1Affine, DecodeError> {
        let p = self.g1(field)?;
        if bool::from(p.is_identity()) {
            return Err(DecodeError::IdentityPoint { field });
        }
        Ok(p)
    }

    /// Any point of G2, including the identity.
    pub(crate) fn g2(&mut self, field: &'static str) -> Result<G2Affine, DecodeError> {
        let bytes: [u8; G2_LEN] = self.array(field)?;
        decode_g2(field, &bytes)
    }

    /// A point of G2 other than the identity.
    pub(crate) fn g2_nonzero(&mut self, field: &'static str) -> Result<G2Affine, DecodeError> {
        let p = self.g2(field)?;
        if bool::from(p.is_identity()) {
            return Err(DecodeError::IdentityPoint { field });
        }
        Ok(p)
    }

    /// An element of Gt other than one.
    pub(crate) fn gt_nonidentity(&mut self, field: &'static str) -> Result<Gt, DecodeError> {
        let bytes: [u8; GT_LEN] = self.array(field)?;
        decode_gt_nonidentity(field, &bytes)
    }

    /// A canonical scalar.
    pub(crate) fn scalar(&mut self, field: &'static str) -> Result<Scalar, DecodeError> {
        let bytes: [u8; SCALAR_LEN] = self.array(field)?;
        decode_scalar(field, &bytes)
    }
}

/// Checked G1 decoding (on curve and in the prime-order subgroup): accepts
/// exactly what `G1Affine::from_compressed` accepts, in variable time (see
/// `g1_decode`).
pub(crate) fn decode_g1(
    field: &'static str,
    bytes: &[u8; G1_LEN],
) -> Result<G1Affine, DecodeError> {
    g1_from_compressed(bytes).ok_or(DecodeError::InvalidPoint {
        field,
        group: Group::G1,
    })
}

/// Checked G2 decoding (on curve and in the prime-order subgroup).
pub(crate) fn decode_g2(
    field: &'static str,
    bytes: &[u8; G2_LEN],
) -> Result<G2Affine, DecodeError> {
    Option::from(G2Affine::from_compressed(bytes)).ok_or(DecodeError::InvalidPoint {
        field,
        group: Group::G2,
    })
}

/// Gt decoding with our own subgroup check (the library's does none); the
/// identity is rejected because no honest value in this crate is one.
pub(crate) fn decode_gt_nonidentity(
    field: &'static str,
    bytes: &[u8; GT_LEN],
) -> Result<Gt, DecodeError> {
    let x: Gt = Option::from(Gt::from_bytes(bytes)).ok_or(DecodeError::InvalidPoint {
        field,
        group: Group::Gt,
    })?;
    if !is_in_subgroup_vartime(&x) {
        return Err(DecodeError::NotInSubgroup { field });
    }
    if x == Gt::IDENTITY {
        return Err(DecodeError::IdentityPoint { field });
    }
    Ok(x)
}

/// Canonical big-endian scalar.
pub(crate) fn decode_scalar(
    field: &'static str,
    bytes: &[u8; SCALAR_LEN],
) -> Result<Scalar, DecodeError> {
    Option::from(Scalar::from_be_bytes(bytes)).ok_or(DecodeError::NonCanonicalScalar { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair(u32, G1Affine);

    impl Codec for Pair {
        const MAGIC: [u8; 4] = *b"TEST";
        fn write(&self, w: &mut Writer) {
            w.u32(self.0);
            w.g1(&self.1);
        }
        fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
            Ok(Pair(r.u32("a")?, r.g1("b")?))
        }
    }

    #[test]
    fn header_and_trailing() {
        let bytes = encode_value(&Pair(7, G1Affine::generator()));
        assert_eq!(&bytes[..5], b"TEST\x01");
        assert_eq!(bytes.len(), 5 + 4 + 48);
        let back: Pair = decode_value(&bytes).unwrap();
        assert_eq!(back.0, 7);

        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode_value::<Pair>(&long),
            Err(DecodeError::TrailingBytes { count: 1 })
        ));
        assert!(matches!(
            decode_value::<Pair>(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(matches!(
            decode_value::<Pair>(&magic),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut ver = bytes.clone();
        ver[4] = 2;
        assert!(matches!(
            decode_value::<Pair>(&ver),
            Err(DecodeError::UnsupportedVersion(2))
        ));
        assert!(decode_value::<Pair>(&[]).is_err());
    }

    #[test]
    fn count_is_bounded_by_input() {
        let mut w = Writer::new(*b"TEST");
        w.u32(u32::MAX);
        let bytes = w.into_bytes();
        let mut r = Reader::open(&bytes, *b"TEST").unwrap();
        assert!(matches!(
            r.count("items", 48, usize::MAX),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Reader::open(&bytes, *b"TEST").unwrap();
        assert!(matches!(
            r.count("items", 48, 10),
            Err(DecodeError::LengthOutOfRange { .. })
        ));
    }

    #[test]
    fn scalar_must_be_reduced() {
        assert!(decode_scalar("s", &[0xff; 32]).is_err());
        assert_eq!(
            decode_scalar("s", &Scalar::from(5u64).to_be_bytes()).unwrap(),
            Scalar::from(5u64)
        );
    }
}
