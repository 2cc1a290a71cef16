//! Encryption to a slot (KEM over Gt + ChaCha20-Poly1305) and decryption.
//!
//! `ct1 = e(C_k, hh_(n+1-i))^r` (in Gt), `ct2 = r * G2`, key material
//! `Z^r = e(h_1, hh_n)^r`. The recipient computes
//! `(ct1 / e(u_i, ct2))^(1/sk) = Z^r` because
//! `z^(n+1-i) * C_k = sk * z^(n+1) * G1 + u_i`.
//!
//! The ciphertext deliberately carries `ct1` in Gt and never
//! `r * hh_(n+1-i)` in G2: with that point anyone could pair it with the public
//! `h_i` and, knowing the others' contributions, compute `Z^r`.

use alloc::vec::Vec;

use bls12_381_plus::{G1Affine, G1Projective, G2Affine, G2Projective, Gt, Scalar, pairing};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::crs::{Crs, random_nonzero_scalar};
use crate::encoding::{Codec, Reader, Writer, impl_canonical};
use crate::error::DecodeError;
use crate::error::{DecryptError, EncryptError};
use crate::keys::SecretKey;
use crate::opening::Opening;
use crate::params::MAX_CAPACITY;
use crate::public_params::PublicParams;
use crate::transcript::{DOMAIN_KEM, Transcript};

/// Largest AEAD body a ciphertext may carry (16 MiB plus the tag): bounds
/// what a decoder accepts.
pub const MAX_BODY_LEN: usize = (16 << 20) + 16;

/// An RBE ciphertext for one slot, made under one block commitment.
///
/// Fields are private: a value comes only from [`encrypt`] or from a decoder,
/// so `ct1` is always in Gt. (`bls12_381_plus` would accept any Fp12 element;
/// decrypting one outside Gt would turn a decryption oracle into a
/// small-subgroup oracle on the secret key.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    slot: u32,
    commitment: G1Affine,
    ct1: Gt,
    ct2: G2Affine,
    body: Vec<u8>,
}

impl Ciphertext {
    /// The recipient slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The block commitment `C_k` used; decryption needs the opening for it.
    pub fn commitment(&self) -> &G1Affine {
        &self.commitment
    }

    /// `ct1 = e(C_k, hh_(n+1-i))^r`, an element of Gt other than one.
    pub fn ct1(&self) -> &Gt {
        &self.ct1
    }

    /// `ct2 = r * G2`.
    pub fn ct2(&self) -> &G2Affine {
        &self.ct2
    }

    /// ChaCha20-Poly1305 ciphertext and tag of the message.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Everything but the body, as encoded: the AEAD's associated data, so
    /// slot, commitment, `ct1` and `ct2` cannot be swapped independently.
    fn header(&self) -> Vec<u8> {
        let mut w = Writer::new(<Self as Codec>::MAGIC);
        self.write_header(&mut w);
        w.into_bytes()
    }

    fn write_header(&self, w: &mut Writer) {
        w.u32(self.slot);
        w.g1(&self.commitment);
        w.gt(&self.ct1);
        w.g2(&self.ct2);
    }
}

/// AEAD key and nonce from `Z^r`, the CRS and the ciphertext header. The key is
/// fresh for every encryption (it depends on `r`), so a derived nonce is safe.
fn derive_key(crs: &Crs, header: &[u8], shared: &Gt) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let mut shared_bytes = Zeroizing::new(shared.to_bytes());
    let mut t = Transcript::new(DOMAIN_KEM);
    t.append(b"crs", &crs.digest());
    t.append(b"header", header);
    t.append(b"shared", &*shared_bytes);
    shared_bytes.zeroize();
    let mut key_t = t.clone();
    key_t.append(b"output", b"key");
    let key = Zeroizing::new(key_t.finish());
    t.append(b"output", b"nonce");
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&t.finish()[..12]);
    (key, nonce)
}

/// AEAD associated data: the header, then the caller's data (the header has a
/// fixed length, so the concatenation is unambiguous).
fn associated_data(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + aad.len());
    out.extend_from_slice(header);
    out.extend_from_slice(aad);
    out
}

/// Encrypt `msg` to `slot` under the current commitment of its block in `pp`.
/// `aad` is authenticated, not encrypted, and must be given again to decrypt.
/// Anyone can encrypt; only the holder of the slot's key (and an opening for
/// this commitment) can decrypt. Encrypting to a free slot of a non-empty block
/// succeeds but nobody can decrypt.
pub fn encrypt<R: RngCore + CryptoRng>(
    crs: &Crs,
    pp: &PublicParams,
    slot: u32,
    msg: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Result<Ciphertext, EncryptError> {
    if pp.crs_digest() != crs.digest() || pp.dimensions() != crs.dimensions() {
        return Err(EncryptError::ParamsMismatch);
    }
    let commitment = *pp
        .commitment_for_slot(slot)
        .ok_or(EncryptError::SlotOutOfRange {
            slot,
            capacity: crs.capacity(),
        })?;
    encrypt_to_commitment(crs, slot, &commitment, msg, aad, rng)
}

/// Encrypt under a given block commitment (for a sender that caches
/// commitments rather than whole public parameters).
pub fn encrypt_to_commitment<R: RngCore + CryptoRng>(
    crs: &Crs,
    slot: u32,
    commitment: &G1Affine,
    msg: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Result<Ciphertext, EncryptError> {
    let dims = crs.dimensions();
    let out_of_range = EncryptError::SlotOutOfRange {
        slot,
        capacity: dims.capacity(),
    };
    let pos = dims.locate(slot).ok_or(out_of_range.clone())?;
    let hh = crs
        .hh(dims.block_size() + 1 - pos.position)
        .ok_or(out_of_range)?;
    if bool::from(commitment.is_identity()) {
        return Err(EncryptError::EmptyBlock(slot));
    }
    let r = Zeroizing::new(random_nonzero_scalar(rng));
    // e(r * C_k, hh) = e(C_k, hh)^r, cheaper than exponentiating in Gt.
    let ct1 = pairing(&G1Affine::from(G1Projective::from(commitment) * *r), hh);
    let ct2 = G2Affine::from(G2Projective::GENERATOR * *r);
    let mut shared = *crs.z_gt() * *r;

    let mut ct = Ciphertext {
        slot,
        commitment: *commitment,
        ct1,
        ct2,
        body: Vec::new(),
    };
    let header = ct.header();
    let (key, nonce) = derive_key(crs, &header, &shared);
    shared.zeroize();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&*key));
    ct.body = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg,
                aad: &associated_data(&header, aad),
            },
        )
        .map_err(|_| EncryptError::MessageTooLong)?;
    if ct.body.len() > MAX_BODY_LEN {
        return Err(EncryptError::MessageTooLong);
    }
    Ok(ct)
}

/// Decrypt with the slot's secret key and the opening for the commitment the
/// ciphertext was made under. An opening for another commitment gives
/// [`DecryptError::StaleOpening`] (look it up with
/// [`crate::OpeningHistory::opening_for`]); a wrong key or opening, wrong
/// `aad` or any tampering gives [`DecryptError::Authentication`].
pub fn decrypt(
    crs: &Crs,
    sk: &SecretKey,
    opening: &Opening,
    ct: &Ciphertext,
    aad: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    if sk.slot() != ct.slot || opening.slot != ct.slot {
        let key = if sk.slot() != ct.slot {
            sk.slot()
        } else {
            opening.slot
        };
        return Err(DecryptError::SlotMismatch {
            ciphertext: ct.slot,
            key,
        });
    }
    if opening.commitment != ct.commitment {
        return Err(DecryptError::StaleOpening);
    }
    // Z^(r sk) = ct1 / e(u_i, ct2); then raise to 1/sk (constant time in sk).
    let blinded = ct.ct1 - pairing(&opening.value, &ct.ct2);
    let inv = Zeroizing::new(
        Option::<Scalar>::from(sk.scalar().invert()).ok_or(DecryptError::Authentication)?,
    );
    let mut shared = blinded * *inv;
    let header = ct.header();
    let (key, nonce) = derive_key(crs, &header, &shared);
    shared.zeroize();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&*key));
    cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct.body,
                aad: &associated_data(&header, aad),
            },
        )
        .map_err(|_| DecryptError::Authentication)
}

impl Codec for Ciphertext {
    const MAGIC: [u8; 4] = *b"RBEX";

    fn write(&self, w: &mut Writer) {
        self.write_header(w);
        w.count(self.body.len());
        w.bytes(&self.body);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let slot = r.u32("slot")?;
        if slot >= MAX_CAPACITY {
            return Err(DecodeError::LengthOutOfRange {
                field: "slot",
                value: u64::from(slot),
            });
        }
        let commitment = r.g1_nonzero("commitment")?;
        let ct1 = r.gt_nonidentity("ct1")?;
        let ct2 = r.g2_nonzero("ct2")?;
        let len = r.count("body length", 1, MAX_BODY_LEN)?;
        if len < 16 {
            return Err(DecodeError::LengthOutOfRange {
                field: "body length",
                value: len as u64,
            });
        }
        let body = r.take("body", len)?.to_vec();
        Ok(Self {
            slot,
            commitment,
            ct1,
            ct2,
            body,
        })
    }
}

impl_canonical!(Ciphertext);
