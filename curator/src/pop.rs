//! Proof of possession of the workload's TLS key.
//!
//! A registration binds a workload id to a TLS key. The agent proves it holds
//! that key by signing a fixed-length, domain-separated message:
//!
//! ```text
//! offset  length  content
//!      0      32  POP_DOMAIN = "mazu-registration-pop-v2" followed by 8 zero bytes
//!     32      32  id            the workload id, SHA-256(token)
//!     64       4  slot          the RBE slot, u32 big-endian
//!     68       8  token_expiry  the token's `exp`, Unix seconds, u64 big-endian
//!     76      32  SHA-256(rbe)  SHA-256 of the RBE registration's canonical bytes
//!    108      32  SHA-256(spki) SHA-256 of the TLS key's DER SubjectPublicKeyInfo
//! total  140 bytes
//! ```
//!
//! Every field has a fixed length, so the message has exactly one parse. The
//! signature is ECDSA P-256 with SHA-256 over these 140 bytes (the SPKI's
//! algorithm is `id-ecPublicKey` with `prime256v1`), encoded either as ASN.1
//! DER (what TLS libraries produce) or as the 64-byte fixed form `r || s`.
//! Ed25519 keys are not accepted yet.
//!
//! The message is a pure function of public data, so the node agent builds
//! exactly the same bytes with [`pop_message`].

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

/// The domain separation prefix: ASCII `mazu-registration-pop-v1` padded with
/// zero bytes to 32 bytes.
pub const POP_DOMAIN: [u8; 32] = *b"mazu-registration-pop-v2\0\0\0\0\0\0\0\0";

/// Length of the proof-of-possession message.
pub const POP_MESSAGE_LEN: usize = 140;

/// What a proof of possession binds besides the key: the id, its slot, the
/// token's expiry and the RBE registration.
#[derive(Clone, Copy, Debug)]
pub struct PopClaim<'a> {
    /// The workload id, SHA-256(token).
    pub id: &'a [u8; 32],
    /// The RBE slot.
    pub slot: u32,
    /// The token's `exp`, Unix seconds.
    pub token_expiry: u64,
    /// The RBE registration's canonical bytes.
    pub registration_bytes: &'a [u8],
}

/// Builds the message the TLS key signs (see the [module docs](self)).
pub fn pop_message(claim: &PopClaim<'_>, spki_der: &[u8]) -> [u8; POP_MESSAGE_LEN] {
    let mut m = [0u8; POP_MESSAGE_LEN];
    m[..32].copy_from_slice(&POP_DOMAIN);
    m[32..64].copy_from_slice(claim.id);
    m[64..68].copy_from_slice(&claim.slot.to_be_bytes());
    m[68..76].copy_from_slice(&claim.token_expiry.to_be_bytes());
    m[76..108].copy_from_slice(&Sha256::digest(claim.registration_bytes));
    m[108..140].copy_from_slice(&Sha256::digest(spki_der));
    m
}

/// Why a proof of possession was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopError {
    /// The SPKI is not DER, or its key is not a valid point.
    #[error("tls_spki is not a valid DER SubjectPublicKeyInfo for a supported key")]
    InvalidKey,
    /// The SPKI is valid but for a key type this curator does not accept.
    #[error("unsupported TLS key type {0} (only ECDSA P-256 is accepted)")]
    UnsupportedKey(String),
    /// The signature is neither 64 bytes nor valid DER.
    #[error("tls_signature is not an ECDSA signature (64-byte r||s or DER)")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("tls_signature does not verify over the proof-of-possession message")]
    BadSignature,
}

/// OID of `id-ecPublicKey`.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// OID of `prime256v1` (P-256).
const PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// A parsed TLS public key.
#[derive(Clone, Debug)]
pub struct TlsKey(VerifyingKey);

impl TlsKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, PopError> {
        let info =
            spki::SubjectPublicKeyInfoRef::try_from(spki_der).map_err(|_| PopError::InvalidKey)?;
        let alg = info.algorithm.oid.to_string();
        if alg != EC_PUBLIC_KEY {
            return Err(PopError::UnsupportedKey(alg));
        }
        let curve = info
            .algorithm
            .parameters_oid()
            .map_err(|_| PopError::InvalidKey)?
            .to_string();
        if curve != PRIME256V1 {
            return Err(PopError::UnsupportedKey(format!("{alg} on curve {curve}")));
        }
        VerifyingKey::from_public_key_der(spki_der)
            .map(Self)
            .map_err(|_| PopError::InvalidKey)
    }

    /// Verifies `signature` (DER or `r || s`) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), PopError> {
        if signature.len() == 64 {
            let sig = Signature::from_slice(signature).map_err(|_| PopError::MalformedSignature)?;
            return self
                .0
                .verify(message, &sig)
                .map_err(|_| PopError::BadSignature);
        }
        let sig = DerSignature::from_bytes(signature).map_err(|_| PopError::MalformedSignature)?;
        self.0
            .verify(message, &sig)
            .map_err(|_| PopError::BadSignature)
    }
}

/// Checks a proof of possession end to end: parses `spki_der`, rebuilds the
/// message and verifies `signature`.
pub fn verify_pop(claim: &PopClaim<'_>, spki_der: &[u8], signature: &[u8]) -> Result<(), PopError> {
    let key = TlsKey::from_spki_der(spki_der)?;
    key.verify(&pop_message(claim, spki_der), signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    fn key() -> (SigningKey, Vec<u8>) {
        let sk = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let spki = sk
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        (sk, spki)
    }

    fn claim<'a>(id: &'a [u8; 32], slot: u32, token_expiry: u64, reg: &'a [u8]) -> PopClaim<'a> {
        PopClaim {
            id,
            slot,
            token_expiry,
            registration_bytes: reg,
        }
    }

    #[test]
    fn message_layout() {
        let m = pop_message(&claim(&[0xaa; 32], 0x0102_0304, 0x0506, b"reg"), b"spki");
        assert_eq!(&m[..24], b"mazu-registration-pop-v2");
        assert_eq!(&m[24..32], &[0; 8]);
        assert_eq!(&m[32..64], &[0xaa; 32]);
        assert_eq!(&m[64..68], &[1, 2, 3, 4]);
        assert_eq!(&m[68..76], &[0, 0, 0, 0, 0, 0, 5, 6]);
        assert_eq!(m[76..108], Sha256::digest(b"reg")[..]);
        assert_eq!(m[108..], Sha256::digest(b"spki")[..]);
    }

    /// The test vector in docs/curator.md (computed independently).
    #[test]
    fn known_answer() {
        let m = pop_message(
            &claim(&[0x11; 32], 5, 1_800_000_000, b"registration"),
            b"spki",
        );
        assert_eq!(
            hex::encode(m),
            "6d617a752d726567697374726174696f6e2d706f702d76320000000000000000111111111111111111111111111111111111111111111111111111111111111100000005000000006b49d20029c9c30e0604515ced98b3d14fd88751a8f8e4b9bc69d483a67a257c14ab79fb6feecc8c16c5551d9feb3eb5f77e2da773bf68bd9ef9c52927ceb2c86e56892b"
        );
    }

    #[test]
    fn accepts_der_and_fixed_signatures() {
        let (sk, spki) = key();
        let c = claim(&[1; 32], 3, 9, b"reg");
        let msg = pop_message(&c, &spki);
        let sig: Signature = sk.sign(&msg);
        verify_pop(&c, &spki, &sig.to_bytes()).unwrap();
        verify_pop(&c, &spki, sig.to_der().as_bytes()).unwrap();
    }

    #[test]
    fn refuses_anything_else() {
        let (sk, spki) = key();
        let msg = pop_message(&claim(&[1; 32], 3, 9, b"reg"), &spki);
        let sig: Signature = sk.sign(&msg);
        let sig = sig.to_bytes().to_vec();
        // Any other bound value.
        for (id, slot, expiry, reg) in [
            ([2; 32], 3, 9, &b"reg"[..]),
            ([1; 32], 4, 9, b"reg"),
            ([1; 32], 3, 10, b"reg"),
            ([1; 32], 3, 9, b"rex"),
        ] {
            assert_eq!(
                verify_pop(&claim(&id, slot, expiry, reg), &spki, &sig),
                Err(PopError::BadSignature)
            );
        }
        // Another key.
        let other = SigningKey::from_slice(&[0x43; 32]).unwrap();
        let other_sig: Signature = other.sign(&msg);
        assert_eq!(
            verify_pop(&claim(&[1; 32], 3, 9, b"reg"), &spki, &other_sig.to_bytes()),
            Err(PopError::BadSignature)
        );
        // Garbage.
        assert_eq!(
            verify_pop(&claim(&[1; 32], 3, 9, b"reg"), &spki, b"nope"),
            Err(PopError::MalformedSignature)
        );
        assert_eq!(
            verify_pop(
                &claim(&[1; 32], 3, 9, b"reg"),
                b"\x30\x03\x02\x01\x00",
                &sig
            ),
            Err(PopError::InvalidKey)
        );
        let mut trailing = spki.clone();
        trailing.push(0);
        assert_eq!(
            verify_pop(&claim(&[1; 32], 3, 9, b"reg"), &trailing, &sig),
            Err(PopError::InvalidKey)
        );
    }

    #[test]
    fn names_unsupported_key_types() {
        // An Ed25519 SubjectPublicKeyInfo (RFC 8410 example key).
        let ed = hex::decode(
            "302a300506032b657003210019bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1",
        )
        .unwrap();
        assert!(matches!(
            TlsKey::from_spki_der(&ed),
            Err(PopError::UnsupportedKey(oid)) if oid == "1.3.101.112"
        ));
    }
}
