//! Token signatures checked with `ring` (BoringSSL's constant-time assembly)
//! instead of the pure-Rust default: a client's first verdict in the
//! handshake is mostly its token's signature, and `ring` checks it several
//! times faster (docs/validator.md, "Cost"). Same answers as the built-in
//! check: the tests below compare the two on genuine, tampered and
//! high-`s` signatures.

use mazu_identity::jwks::{Jwk, PublicKeyParams};
use mazu_identity::jwt::SignatureBackend;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};

/// The `ring` [`SignatureBackend`].
#[derive(Debug)]
pub struct RingSignatures;

/// The one instance verifiers use.
pub static RING: RingSignatures = RingSignatures;

impl SignatureBackend for RingSignatures {
    fn verify(&self, key: &Jwk, signing_input: &[u8], signature: &[u8]) -> bool {
        match key.params() {
            // The JWKS parser admits 2048- to 4096-bit moduli only.
            PublicKeyParams::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, signing_input, signature)
                .is_ok(),
            // JOSE `r || s`, exactly 64 bytes; ring accepts high `s`.
            PublicKeyParams::P256 { uncompressed } => {
                signature.len() == 64
                    && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, uncompressed)
                        .verify(signing_input, signature)
                        .is_ok()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use mazu_dev_issuer::{Algorithm, DevIssuer, TokenRequest};
    use mazu_identity::TrustConfig;
    use mazu_identity::trust::NamespaceScope;

    use super::*;

    const ISSUER: &str = "https://issuer.test";

    fn trust(issuer: &DevIssuer) -> TrustConfig {
        TrustConfig::builder("cluster.local")
            .audience(mazu_dev_issuer::DEV_AUDIENCE)
            .issuer(ISSUER, issuer.jwks_json().as_bytes(), NamespaceScope::any())
            .build()
            .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The token with its signature segment replaced by `signature`.
    fn resigned(token: &str, signature: &[u8]) -> String {
        let cut = token.rfind('.').unwrap();
        format!(
            "{}.{}",
            &token[..cut],
            Base64UrlUnpadded::encode_string(signature)
        )
    }

    fn signature(token: &str) -> Vec<u8> {
        let cut = token.rfind('.').unwrap();
        Base64UrlUnpadded::decode_vec(&token[cut + 1..]).unwrap()
    }

    /// ES256 `r || s` with `s` replaced by `n - s`: the other valid
    /// signature, the one Go's crypto/ecdsa may emit.
    fn high_s(signature: &[u8]) -> Vec<u8> {
        use p256::elliptic_curve::PrimeField as _;
        let s_bytes: [u8; 32] = signature[32..].try_into().unwrap();
        let s = p256::Scalar::from_repr(s_bytes.into()).unwrap();
        let mut flipped = signature[..32].to_vec();
        flipped.extend_from_slice(&(-s).to_repr());
        flipped
    }

    #[test]
    fn ring_accepts_exactly_what_the_builtin_check_accepts() {
        let mut rng = rand::rngs::OsRng;
        let mut compared = 0;
        for algorithm in [Algorithm::Rs256, Algorithm::Es256] {
            let issuer = DevIssuer::generate(algorithm, ISSUER, &mut rng).unwrap();
            let trust = trust(&issuer);
            let other = DevIssuer::generate(algorithm, ISSUER, &mut rng).unwrap();
            let token = issuer.mint(&TokenRequest::new("shop", "cart")).unwrap();
            let good = signature(&token);
            let mut flipped = good.clone();
            flipped[7] ^= 0x10;
            let foreign = signature(&other.mint(&TokenRequest::new("shop", "cart")).unwrap());
            let mut candidates = vec![
                ("genuine", good.clone(), true),
                ("a bit flipped", flipped, false),
                ("one byte short", good[..good.len() - 1].to_vec(), false),
                ("one byte long", [good.as_slice(), &[0]].concat(), false),
                ("another key's", foreign, false),
                ("empty", Vec::new(), false),
                ("zeros", vec![0; good.len()], false),
            ];
            if algorithm == Algorithm::Es256 {
                candidates.push(("high s", high_s(&good), true));
                // DER instead of JOSE r || s.
                let der = p256::ecdsa::Signature::from_slice(&good).unwrap().to_der();
                candidates.push(("DER-encoded", der.as_bytes().to_vec(), false));
            }
            for (what, candidate, expected) in candidates {
                let token = resigned(&token, &candidate);
                let builtin = trust.verify_token(token.as_bytes(), now());
                let native = trust.verify_token_with(token.as_bytes(), now(), &RING);
                assert_eq!(
                    builtin.is_ok(),
                    expected,
                    "{algorithm:?} {what}: {builtin:?}"
                );
                assert_eq!(native, builtin, "{algorithm:?} {what}");
                compared += 1;
            }
        }
        assert_eq!(compared, 16);
    }
}
