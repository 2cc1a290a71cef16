//! The holder's signature on a release or a revocation of its binding.
//!
//! Only the holder of a binding may end it early: the agent signs, with the
//! bound TLS key, a fixed-length, domain-separated message naming exactly
//! that binding:
//!
//! ```text
//! offset  length  content
//!      0      32  domain        "mazu-holder-release-v1" or "mazu-holder-revoke-v1",
//!                               each followed by zero bytes up to 32
//!     32      32  id            the workload id, SHA-256(token)
//!     64       4  slot          the RBE slot of the binding, u32 big-endian
//!     68      32  SHA-256(spki) SHA-256 of the bound TLS key's DER SubjectPublicKeyInfo
//! total  100 bytes
//! ```
//!
//! An id is bound at most once in a log's life (first binding wins), so the
//! message names one binding forever and a signature cannot be replayed
//! against another one. The signature scheme is the proof of possession's
//! ([`crate::pop`]): ECDSA P-256 with SHA-256, DER or `r || s`.

use sha2::{Digest, Sha256};

use crate::pop::{PopError, TlsKey};

/// Length of the holder message.
pub const HOLDER_MESSAGE_LEN: usize = 100;

/// What the holder asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HolderAction {
    /// Free the slot (after a rotation, or the pod was deleted).
    Release,
    /// Stop every peer trusting the binding at once, and free the slot.
    Revoke,
}

impl HolderAction {
    /// The domain separation prefix of the action's message.
    pub fn domain(self) -> [u8; 32] {
        let name: &[u8] = match self {
            HolderAction::Release => b"mazu-holder-release-v1",
            HolderAction::Revoke => b"mazu-holder-revoke-v1",
        };
        let mut domain = [0u8; 32];
        domain[..name.len()].copy_from_slice(name);
        domain
    }

    /// A stable lowercase name, for logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            HolderAction::Release => "release",
            HolderAction::Revoke => "revoke",
        }
    }
}

/// Builds the message the bound TLS key signs (see the [module docs](self)).
pub fn holder_message(
    action: HolderAction,
    id: &[u8; 32],
    slot: u32,
    spki_der: &[u8],
) -> [u8; HOLDER_MESSAGE_LEN] {
    let mut m = [0u8; HOLDER_MESSAGE_LEN];
    m[..32].copy_from_slice(&action.domain());
    m[32..64].copy_from_slice(id);
    m[64..68].copy_from_slice(&slot.to_be_bytes());
    m[68..100].copy_from_slice(&Sha256::digest(spki_der));
    m
}

/// Checks a holder signature: parses the bound `spki_der`, rebuilds the
/// message and verifies `signature`.
pub fn verify_holder(
    action: HolderAction,
    id: &[u8; 32],
    slot: u32,
    spki_der: &[u8],
    signature: &[u8],
) -> Result<(), PopError> {
    let key = TlsKey::from_spki_der(spki_der)?;
    key.verify(&holder_message(action, id, slot, spki_der), signature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::EncodePublicKey;

    fn key(seed: u8) -> (SigningKey, Vec<u8>) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let spki = sk
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        (sk, spki)
    }

    #[test]
    fn message_layout() {
        let m = holder_message(HolderAction::Revoke, &[0xaa; 32], 0x0102_0304, b"spki");
        assert_eq!(&m[..21], b"mazu-holder-revoke-v1");
        assert_eq!(&m[21..32], &[0; 11]);
        assert_eq!(&m[32..64], &[0xaa; 32]);
        assert_eq!(&m[64..68], &[1, 2, 3, 4]);
        assert_eq!(m[68..], Sha256::digest(b"spki")[..]);
        let r = holder_message(HolderAction::Release, &[0xaa; 32], 0x0102_0304, b"spki");
        assert_eq!(&r[..22], b"mazu-holder-release-v1");
        assert_ne!(m, r);
    }

    #[test]
    fn verifies_only_the_signed_action_binding_and_key() {
        let (sk, spki) = key(0x42);
        let sig: Signature = sk.sign(&holder_message(HolderAction::Release, &[1; 32], 3, &spki));
        let sig = sig.to_bytes().to_vec();
        verify_holder(HolderAction::Release, &[1; 32], 3, &spki, &sig).unwrap();
        // A release signature is not a revocation, nor for another id or slot.
        for (action, id, slot) in [
            (HolderAction::Revoke, [1; 32], 3),
            (HolderAction::Release, [2; 32], 3),
            (HolderAction::Release, [1; 32], 4),
        ] {
            assert_eq!(
                verify_holder(action, &id, slot, &spki, &sig),
                Err(PopError::BadSignature)
            );
        }
        // Signed by another key than the bound one.
        let (other, _) = key(0x43);
        let forged: Signature =
            other.sign(&holder_message(HolderAction::Release, &[1; 32], 3, &spki));
        assert_eq!(
            verify_holder(
                HolderAction::Release,
                &[1; 32],
                3,
                &spki,
                &forged.to_bytes()
            ),
            Err(PopError::BadSignature)
        );
        assert_eq!(
            verify_holder(HolderAction::Release, &[1; 32], 3, &spki, b""),
            Err(PopError::MalformedSignature)
        );
    }
}
