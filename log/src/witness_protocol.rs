//! The bodies of C2SP `tlog-witness` `add-checkpoint` requests and answers,
//! encoded and decoded without I/O, for the witness (`mazu-witness`) and its
//! clients (the curator, tests).
//!
//! **Request** (`POST <prefix>/add-checkpoint`):
//!
//! ```text
//! old <size of the checkpoint the witness last cosigned>\n
//! <consistency proof hash, standard base64>\n      (0 to 63 lines; none if old is 0)
//! \n
//! <the signed checkpoint note>
//! ```
//!
//! **Answers** the client acts on:
//! - `200`: one or more cosignature lines (`— <witness> <base64>\n`), to
//!   check with [`crate::cosignature::WitnessVerifier::verify_line`] and
//!   merge with [`crate::cosignature::append_cosignatures`];
//! - `409` with `Content-Type: text/x.tlog.size` ([`SIZE_CONTENT_TYPE`]):
//!   the witness holds another size, given in the body (`<size>\n`); retry
//!   with that old size and a proof from it.
//!
//! Every other status is a refusal ([`ProtocolError::Refused`]): `400`
//! malformed (or old size above the checkpoint's), `403` no trusted log
//! signature, `404` unknown origin, `409` without the size type (same size,
//! different root hash: a fork), `422` the consistency proof does not
//! verify.
//!
//! ```
//! use mazu_log::witness_protocol::{AddCheckpointRequest, AddCheckpointResponse, parse_response};
//!
//! let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: b"...".to_vec() };
//! let body = req.encode();
//! assert_eq!(body, b"old 0\n\n...");
//! assert_eq!(AddCheckpointRequest::parse(&body)?, req);
//!
//! let answer = parse_response(409, Some("text/x.tlog.size"), b"42\n")?;
//! assert_eq!(answer, AddCheckpointResponse::Conflict { witness_size: 42 });
//! # Ok::<(), mazu_log::witness_protocol::ProtocolError>(())
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};

use crate::checkpoint::{MAX_NOTE_LEN, MAX_SIGNATURES, NoteSignature};
use crate::merkle::Hash;

mod records;

pub use records::{
    ADD_CHECKPOINT_WITH_RECORDS_PATH, MAX_WITH_RECORDS_LEN, WithRecords, split_with_records,
    with_records,
};

/// The request path under the witness's submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// The content type of a `409 Conflict` answer carrying the witness's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The longest request body: the old size line, 63 proof lines, the empty
/// line and a note of at most [`MAX_NOTE_LEN`] bytes.
pub const MAX_REQUEST_LEN: usize =
    "old 18446744073709551615\n".len() + MAX_PROOF_LINES * (44 + 1) + 1 + MAX_NOTE_LEN;

/// The longest `200` answer accepted ([`MAX_SIGNATURES`] lines).
pub const MAX_RESPONSE_LEN: usize = MAX_NOTE_LEN;

/// Why a request or an answer could not be decoded, or what the witness
/// refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is longer than the protocol allows.
    #[error("body longer than {0} bytes")]
    TooLarge(usize),
    /// The body does not have the protocol's shape.
    #[error("malformed add-checkpoint body: {0}")]
    Malformed(&'static str),
    /// The witness refused the checkpoint (any status but 200 and a 409
    /// with the size content type).
    #[error("the witness refused the checkpoint: {}", describe_status(*.status))]
    Refused {
        /// The HTTP status.
        status: u16,
    },
}

/// What a status code means in `add-checkpoint` answers.
pub fn describe_status(status: u16) -> &'static str {
    match status {
        200 => "200 cosigned",
        400 => "400 malformed request, or old size above the checkpoint size",
        403 => "403 no signature by a log key the witness trusts",
        404 => "404 the witness does not know this origin",
        409 => "409 conflict (same size, different root hash: a fork)",
        422 => "422 the consistency proof does not verify",
        413 => "413 request too large",
        429 | 503 => "overloaded, retry later",
        _ => "unexpected status",
    }
}

/// An `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The size of the checkpoint the witness last cosigned for this log (0
    /// if none, or unknown: the witness then answers with its size).
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size
    /// (empty if `old_size` is 0 or equals the checkpoint's size).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpointRequest {
    /// The request body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(Base64::encode_string(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Parses a request body (untrusted; bounded by [`MAX_REQUEST_LEN`]).
    /// The checkpoint note is returned as is, not parsed.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let bad = ProtocolError::Malformed;
        if body.len() > MAX_REQUEST_LEN {
            return Err(ProtocolError::TooLarge(MAX_REQUEST_LEN));
        }
        let (old_line, mut rest) = split_line(body).ok_or(bad("no old size line"))?;
        let old = old_line
            .strip_prefix(b"old ")
            .ok_or(bad("the first line is not `old <size>`"))?;
        let old_size = parse_decimal(old).ok_or(bad(
            "the old size is not a decimal number without leading zeros",
        ))?;
        let mut proof = Vec::new();
        loop {
            let (line, next) =
                split_line(rest).ok_or(bad("no empty line before the checkpoint"))?;
            rest = next;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            proof.push(decode_hash(line).ok_or(bad("a proof line is not a base64 32-byte hash"))?);
        }
        if rest.is_empty() {
            return Err(bad("no checkpoint"));
        }
        Ok(Self {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }
}

/// Splits off the first `\n`-terminated line (without its newline).
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// A decimal `u64` without leading zeros (`0` itself is fine).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if s.len() > 1 && s[0] == b'0' {
        return None;
    }
    core::str::from_utf8(s).ok()?.parse().ok()
}

fn decode_hash(line: &[u8]) -> Option<Hash> {
    if line.len() != 44 {
        return None;
    }
    let mut h = [0u8; 32];
    let decoded = Base64::decode(line, &mut h).ok()?;
    (decoded.len() == 32).then_some(h)
}

/// The body of a `409 Conflict` answer: the witness's size and a newline.
pub fn encode_size(size: u64) -> String {
    format!("{size}\n")
}

/// Parses the body of a `409 Conflict` answer ([`SIZE_CONTENT_TYPE`]).
pub fn parse_size(body: &[u8]) -> Result<u64, ProtocolError> {
    let bad = ProtocolError::Malformed("the size answer is not `<decimal>\\n`");
    let digits = body.strip_suffix(b"\n").ok_or(bad.clone())?;
    parse_decimal(digits).ok_or(bad)
}

/// Parses a `200` answer: one or more note signature lines, each ending
/// with a newline. Returns the lines (with their newlines), not verified.
pub fn parse_cosignatures(body: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let bad = ProtocolError::Malformed;
    if body.len() > MAX_RESPONSE_LEN {
        return Err(ProtocolError::TooLarge(MAX_RESPONSE_LEN));
    }
    let text = core::str::from_utf8(body).map_err(|_| bad("the answer is not UTF-8"))?;
    let text = text
        .strip_suffix('\n')
        .ok_or(bad("the answer does not end with a newline"))?;
    let mut lines = Vec::new();
    for line in text.split('\n') {
        if lines.len() == MAX_SIGNATURES {
            return Err(bad("too many signature lines"));
        }
        if line.chars().any(char::is_control) {
            return Err(bad("control characters in a signature line"));
        }
        NoteSignature::parse_line(line).map_err(|_| bad("not a note signature line"))?;
        let mut l = String::from(line);
        l.push('\n');
        lines.push(l);
    }
    Ok(lines)
}

/// What an `add-checkpoint` answer tells the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddCheckpointResponse {
    /// `200`: the witness's signature lines (with their newlines), not yet
    /// verified.
    Cosigned(Vec<String>),
    /// `409` with [`SIZE_CONTENT_TYPE`]: the witness last cosigned a
    /// checkpoint of this size; retry with it as the old size.
    Conflict {
        /// The size the witness holds.
        witness_size: u64,
    },
}

/// Decodes an `add-checkpoint` answer from its status, `Content-Type` (if
/// any) and body. Statuses other than `200` and a size `409` are
/// [`ProtocolError::Refused`].
pub fn parse_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<AddCheckpointResponse, ProtocolError> {
    let is_size = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case(SIZE_CONTENT_TYPE));
    match status {
        200 => parse_cosignatures(body).map(AddCheckpointResponse::Cosigned),
        409 if is_size => {
            parse_size(body).map(|witness_size| AddCheckpointResponse::Conflict { witness_size })
        }
        status => Err(ProtocolError::Refused { status }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::cosignature::CosignatureSigner;
    use crate::merkle::{MerkleTree, leaf_hash};
    use alloc::vec;

    #[test]
    fn spec_example_request() {
        let body = "old 20852014\n\
            PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
            jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
            /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
            \n\
            example.com/behind-the-sofa\n\
            20852163\n\
            CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
            \n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let req = AddCheckpointRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(req.old_size, 20_852_014);
        assert_eq!(req.proof.len(), 4);
        assert!(
            req.checkpoint
                .starts_with(b"example.com/behind-the-sofa\n20852163\n")
        );
        assert_eq!(req.encode(), body.as_bytes());
        let answer = "\u{2014} witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n\
            \u{2014} witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n\
            \u{2014} witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";
        match parse_response(200, Some("text/plain"), answer.as_bytes()).unwrap() {
            AddCheckpointResponse::Cosigned(lines) => {
                assert_eq!(lines.len(), 3);
                assert_eq!(lines.concat(), answer);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_with_a_real_checkpoint() {
        let mut tree = MerkleTree::new();
        for i in 0..9u8 {
            tree.push(leaf_hash(&[i]));
        }
        let log = CheckpointSigner::new("example.org/log", &[1; 32]).unwrap();
        let note = log.sign(9, &tree.root(9).unwrap());
        let req = AddCheckpointRequest {
            old_size: 5,
            proof: tree.consistency_proof(5, 9).unwrap(),
            checkpoint: note.clone().into_bytes(),
        };
        let parsed = AddCheckpointRequest::parse(&req.encode()).unwrap();
        assert_eq!(parsed, req);
        let cp = log.verifier().verify(&parsed.checkpoint).unwrap();
        let w = CosignatureSigner::new("w", &[2; 32]).unwrap();
        let line = w.cosign(&cp, 7).unwrap();
        let AddCheckpointResponse::Cosigned(lines) =
            parse_response(200, None, line.as_bytes()).unwrap()
        else {
            panic!("not cosigned")
        };
        assert_eq!(w.verifier().verify_line(&cp.body(), &lines[0]), Ok(Some(7)));
    }

    #[test]
    fn malformed_requests() {
        let h = Base64::encode_string(&[0u8; 32]);
        for bad in [
            String::new(),
            "old 0".into(),
            "old 0\n".into(),
            "old 0\n\n".into(),
            "old 01\n\nx".into(),
            "old -1\n\nx".into(),
            "old  1\n\nx".into(),
            "old 1 \n\nx".into(),
            "Old 1\n\nx".into(),
            "old 18446744073709551616\n\nx".into(),
            "old 1\nAAAA\n\nx".into(),
            format!("old 1\n{h}\r\n\nx"),
            format!("old 1\n{h}"),
            format!("old 1\n{}\n\nx", &h[..43]),
            format!("old 1\n{}\n\nx", Base64::encode_string(&[0u8; 33])),
            format!("old 1\n{}\n\nx", vec![h.as_str(); 64].join("\n")),
        ] {
            assert!(
                AddCheckpointRequest::parse(bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        let ok = format!("old 1\n{}\n\nx", vec![h.as_str(); 63].join("\n"));
        assert_eq!(
            AddCheckpointRequest::parse(ok.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
        let huge = vec![b'a'; MAX_REQUEST_LEN + 1];
        assert_eq!(
            AddCheckpointRequest::parse(&huge),
            Err(ProtocolError::TooLarge(MAX_REQUEST_LEN))
        );
    }

    #[test]
    fn answers() {
        assert_eq!(encode_size(42), "42\n");
        assert_eq!(
            parse_response(409, Some("text/x.tlog.size; charset=utf-8"), b"42\n"),
            Ok(AddCheckpointResponse::Conflict { witness_size: 42 })
        );
        assert_eq!(
            parse_response(409, Some("text/x.tlog.size"), b"0\n"),
            Ok(AddCheckpointResponse::Conflict { witness_size: 0 })
        );
        for bad in [&b"42"[..], b"042\n", b"\n", b"4 2\n", b"-1\n"] {
            assert!(parse_response(409, Some(SIZE_CONTENT_TYPE), bad).is_err());
        }
        // A 409 without the size type is a fork refusal.
        assert_eq!(
            parse_response(409, Some("text/plain"), b"fork\n"),
            Err(ProtocolError::Refused { status: 409 })
        );
        for status in [400, 403, 404, 422, 500] {
            assert_eq!(
                parse_response(status, None, b""),
                Err(ProtocolError::Refused { status })
            );
        }
        for bad in [
            &b""[..],
            b"\n",
            b"- w AAAAAAAA\n",
            b"\xe2\x80\x94 w AAAAAAAA",
            b"\xe2\x80\x94 w AAAAAAAA\n\n",
            b"\xe2\x80\x94 w AAAAAAAA\r\n",
        ] {
            assert!(parse_response(200, None, bad).is_err(), "{bad:?}");
        }
    }
}
