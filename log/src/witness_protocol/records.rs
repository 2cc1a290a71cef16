//! Mazu's extension of `add-checkpoint` for checkpoints that carry a state
//! line ([`crate::evidence::state_extension`]): the request also carries the
//! leaf records from the witness's size to the checkpoint's, so that the
//! witness can derive the follower state itself and cosign the line only if
//! it matches (`docs/witness.md`).
//!
//! **Request** (`POST <prefix>/mazu/v1/add-checkpoint`,
//! [`ADD_CHECKPOINT_WITH_RECORDS_PATH`]):
//!
//! ```text
//! length of the add-checkpoint body (u32, big-endian)
//! the C2SP add-checkpoint body (old size, proof, note), as for /add-checkpoint
//! the leaf records old..size, concatenated (crate::record::decode_records)
//! ```
//!
//! Answers are those of `add-checkpoint` (a `409` with the size type: resend
//! from that size, with the records from it), plus `422` when the records do
//! not give the checkpoint's root or the state line does not follow from
//! them.
//!
//! ```
//! use mazu_log::witness_protocol::{split_with_records, with_records};
//!
//! let body = with_records(b"old 0\n\nnote", b"records");
//! let split = split_with_records(&body)?;
//! assert_eq!((split.add_checkpoint, split.records), (&b"old 0\n\nnote"[..], &b"records"[..]));
//! # Ok::<(), mazu_log::witness_protocol::ProtocolError>(())
//! ```

use alloc::vec::Vec;

use super::{MAX_REQUEST_LEN, ProtocolError};

/// The request path under the witness's submission prefix.
pub const ADD_CHECKPOINT_WITH_RECORDS_PATH: &str = "/mazu/v1/add-checkpoint";

/// The longest body: a whole `add-checkpoint` body and 64 MiB of records
/// (about 600,000 records: a witness that joins a large log late, or one
/// that was offline through that many, is brought up to date in one go).
pub const MAX_WITH_RECORDS_LEN: usize = 4 + MAX_REQUEST_LEN + (64 << 20);

/// The two parts of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WithRecords<'a> {
    /// The `add-checkpoint` body.
    pub add_checkpoint: &'a [u8],
    /// The concatenated leaf records.
    pub records: &'a [u8],
}

/// The request body for `add_checkpoint` (an encoded
/// [`super::AddCheckpointRequest`]) and `records`.
pub fn with_records(add_checkpoint: &[u8], records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + add_checkpoint.len() + records.len());
    // An add-checkpoint body is at most MAX_REQUEST_LEN, far below 2^32.
    out.extend_from_slice(&(add_checkpoint.len() as u32).to_be_bytes());
    out.extend_from_slice(add_checkpoint);
    out.extend_from_slice(records);
    out
}

/// Splits a request body (untrusted; bounded by [`MAX_WITH_RECORDS_LEN`]).
/// Neither part is parsed.
pub fn split_with_records(body: &[u8]) -> Result<WithRecords<'_>, ProtocolError> {
    if body.len() > MAX_WITH_RECORDS_LEN {
        return Err(ProtocolError::TooLarge(MAX_WITH_RECORDS_LEN));
    }
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or(ProtocolError::Malformed("no add-checkpoint length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_REQUEST_LEN {
        return Err(ProtocolError::TooLarge(MAX_REQUEST_LEN));
    }
    let (add_checkpoint, records) = rest
        .split_at_checked(len)
        .ok_or(ProtocolError::Malformed("add-checkpoint body cut short"))?;
    Ok(WithRecords {
        add_checkpoint,
        records,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn bodies_split_back_and_bad_lengths_are_refused() {
        for (a, r) in [(&b""[..], &b""[..]), (b"old 3\n\nx", b"\x01\x02")] {
            let body = with_records(a, r);
            let split = split_with_records(&body).unwrap();
            assert_eq!((split.add_checkpoint, split.records), (a, r));
        }
        assert!(split_with_records(b"\x00\x00").is_err());
        assert!(split_with_records(b"\x00\x00\x00\x09short").is_err());
        let huge = (MAX_REQUEST_LEN as u32 + 1).to_be_bytes();
        assert_eq!(
            split_with_records(&huge),
            Err(ProtocolError::TooLarge(MAX_REQUEST_LEN))
        );
    }
}
