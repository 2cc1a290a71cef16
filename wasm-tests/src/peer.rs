//! What Envoy reports to the filter for a [`Workload`] of `mazu-testkit`
//! after the handshake: its certificate, or that certificate altered, as
//! the wasmtime host's [`PeerProperties`].

use mazu_filter::vouch::VouchedVerdict;
use mazu_testkit::fixtures::{Workload, hex, pem, replace_once};
use sha2::{Digest, Sha256};

use crate::plugin::PeerProperties;

/// A workload as the filter sees it on a connection.
pub trait WorkloadPeer {
    /// What Envoy reports for this workload after the handshake.
    fn peer(&self) -> PeerProperties;

    /// The same certificate DER, re-encoded as PEM after `edit`, as a peer
    /// presenting that altered certificate (the signature is not checked by
    /// Mazu: the handshake proves the key, the registry binds it).
    fn altered(&self, edit: impl FnOnce(&mut Vec<u8>)) -> PeerProperties;

    /// This certificate with its embedded token replaced by `token` (same
    /// length, so the DER stays well-formed) and the workload ID in the
    /// extension updated to SHA-256 of it: for tokens the builder refuses to
    /// embed (e.g. `alg: none`).
    fn with_token(&self, token: &str) -> PeerProperties;

    /// What the handshake validator vouches for after admitting this
    /// workload's certificate (`mazu_filter::vouch`).
    fn vouched_verdict(&self) -> VouchedVerdict;
}

impl WorkloadPeer for Workload {
    fn vouched_verdict(&self) -> VouchedVerdict {
        VouchedVerdict {
            certificate_digest: Sha256::digest(&self.issued.der).into(),
            workload_id: self.issued.workload_id,
            spki_hash: self.issued.spki_hash,
            valid_until: self.issued.not_after.min(self.entry.token_expiry),
            spiffe_id: self.issued.spiffe_id.clone(),
        }
    }

    fn peer(&self) -> PeerProperties {
        PeerProperties {
            mtls: Some(true),
            peer_certificate: Some(self.cert_pem.clone()),
            digest: Some(hex(&Sha256::digest(&self.issued.der))),
            vouch: None,
            http_chain: false,
        }
    }

    fn altered(&self, edit: impl FnOnce(&mut Vec<u8>)) -> PeerProperties {
        let mut der = self.issued.der.clone();
        edit(&mut der);
        PeerProperties {
            mtls: Some(true),
            peer_certificate: Some(pem("CERTIFICATE", &der)),
            digest: Some(hex(&Sha256::digest(&der))),
            vouch: None,
            http_chain: false,
        }
    }

    fn with_token(&self, token: &str) -> PeerProperties {
        assert_eq!(token.len(), self.token.len(), "same-length tokens only");
        let new_id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.altered(|der| {
            replace_once(der, self.token.as_bytes(), token.as_bytes());
            replace_once(der, self.entry.workload_id.as_bytes(), &new_id);
        })
    }
}
