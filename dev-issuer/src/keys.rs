//! Signing keys: generation, JOSE signatures, PKCS#8 PEM encoding.

use core::fmt;
use core::str::FromStr;

use p256::ecdsa::{Signature as EcSignature, SigningKey as EcSigningKey, VerifyingKey};
use rand::CryptoRng;
use rand::RngCore;
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The default RSA modulus size.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// A JWS signature algorithm this issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what Kubernetes uses by default).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA over P-256 with SHA-256; signatures in JOSE form (`r || s`, 64 bytes).
    #[serde(rename = "ES256")]
    Es256,
}

impl Algorithm {
    /// The JOSE name: `"RS256"` or `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Accepts `RS256` / `ES256`, case-insensitively.
    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("RS256") {
            Ok(Algorithm::Rs256)
        } else if s.eq_ignore_ascii_case("ES256") {
            Ok(Algorithm::Es256)
        } else {
            Err(Error::UnknownAlgorithm(s.to_owned()))
        }
    }
}

/// An issuer's private signing key.
#[derive(Clone)]
pub enum IssuerKey {
    /// An RSA key (signs RS256).
    Rsa(Box<RsaPrivateKey>),
    /// A P-256 key (signs ES256).
    Ec(EcSigningKey),
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        write!(f, "IssuerKey({})", self.algorithm())
    }
}

impl IssuerKey {
    /// Generates a key for `alg` (RSA keys get [`DEFAULT_RSA_BITS`]).
    pub fn generate<R: RngCore + CryptoRng>(alg: Algorithm, rng: &mut R) -> Result<Self> {
        match alg {
            Algorithm::Rs256 => Self::generate_rsa(DEFAULT_RSA_BITS, rng),
            Algorithm::Es256 => Ok(IssuerKey::Ec(EcSigningKey::random(rng))),
        }
    }

    /// Generates an RSA key with a `bits`-bit modulus (1024..=8192, a multiple of 8).
    pub fn generate_rsa<R: RngCore + CryptoRng>(bits: usize, rng: &mut R) -> Result<Self> {
        if !(1024..=8192).contains(&bits) || !bits.is_multiple_of(8) {
            return Err(Error::RsaBits(bits));
        }
        let key = RsaPrivateKey::new(rng, bits).map_err(Error::RsaKeygen)?;
        Ok(IssuerKey::Rsa(Box::new(key)))
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            IssuerKey::Rsa(_) => Algorithm::Rs256,
            IssuerKey::Ec(_) => Algorithm::Es256,
        }
    }

    /// Signs `message` and returns the JWS signature bytes: PKCS#1 v1.5 for RSA,
    /// `r || s` (64 bytes, not DER) for P-256.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            IssuerKey::Rsa(key) => {
                let signer = RsaSigningKey::<Sha256>::new(key.as_ref().clone());
                signer.sign(message).to_vec()
            }
            IssuerKey::Ec(key) => {
                let signature: EcSignature = key.sign(message);
                signature.to_bytes().to_vec()
            }
        }
    }

    /// The RSA public key, if this is an RSA key.
    pub fn rsa_public_key(&self) -> Option<RsaPublicKey> {
        match self {
            IssuerKey::Rsa(key) => Some(key.to_public_key()),
            IssuerKey::Ec(_) => None,
        }
    }

    /// The P-256 verifying key, if this is an EC key.
    pub fn ec_verifying_key(&self) -> Option<VerifyingKey> {
        match self {
            IssuerKey::Rsa(_) => None,
            IssuerKey::Ec(key) => Some(*key.verifying_key()),
        }
    }

    /// The private key as PKCS#8 PEM (zeroized when dropped).
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>> {
        match self {
            IssuerKey::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
            IssuerKey::Ec(key) => key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(Error::KeyEncoding)
    }

    /// Parses a PKCS#8 PEM private key of algorithm `alg`.
    pub fn from_pkcs8_pem(alg: Algorithm, pem: &str) -> Result<Self, rsa::pkcs8::Error> {
        Ok(match alg {
            Algorithm::Rs256 => IssuerKey::Rsa(Box::new(RsaPrivateKey::from_pkcs8_pem(pem)?)),
            Algorithm::Es256 => IssuerKey::Ec(EcSigningKey::from_pkcs8_pem(pem)?),
        })
    }
}
