//! The multi-party trusted setup ("powers of tau") that produces a production
//! [`Crs`] whose secret `z` nobody knows.
//!
//! A ceremony starts from a fixed public CRS: every element is its group's
//! generator, i.e. the powers of `z = 1` ([`Transcript::new`]). Each
//! contributor draws a fresh secret `s`, replaces the latest CRS by
//! [`Crs::update`]`(s)` (element `t` times `s^t`, the punctured power never
//! formed), publishes an [`UpdateProof`] and forgets `s`. After contributions
//! `s_1 .. s_k` the secret is `z = s_1 · … · s_k`: unknown to everyone as long
//! as one contributor really forgot its `s`.
//!
//! Anyone checks the whole [`Transcript`] from the start with
//! [`Transcript::verify`]; for every contribution `i`, with `prev` the CRS
//! before it (the public start for `i = 1`):
//!
//! * its CRS is well formed: [`Crs::verify`] (consecutive powers of one secret
//!   in both groups, no identity element, `h_1 != G1`), one randomized batched
//!   pairing check;
//! * `S1 = s·G1` and `S2 = s·G2` with `s ∉ {0, 1}`, and a Schnorr proof of
//!   knowledge of `s` whose challenge binds the capacity, the **digest of
//!   `prev`**, the contributor's name, `S1`, `S2` and the new CRS's digest: a
//!   proof cannot be moved to another position, transcript or name;
//! * `e(S1, G2) = e(G1, S2)` and `e(h_1', G2) = e(h_1, S2)` (the new `h_1'` is
//!   the previous `h_1` times `s`), folded into one two-term pairing product
//!   with a Fiat–Shamir weight. With both CRSs well formed, this forces the new
//!   CRS to be exactly `prev.update(s)`.
//!
//! Why one honest contributor suffices: the proof of knowledge makes every
//! other contributor's `s_i` extractable, so `z = s_j · (their product)` is as
//! unknown as the honest `s_j`. Why the checks refuse a tampered transcript: a
//! changed element breaks its CRS's power structure or (if the whole CRS is
//! replaced by another valid one) the next proof's binding to the previous
//! digest; a removed, swapped or reordered contribution leaves a proof bound to
//! a digest that is no longer the one before it. Dropping contributions from the
//! **end** leaves a shorter valid transcript: contributors therefore keep the
//! hash [`Transcript::contribute`] returns and check it is in the final
//! transcript ([`VerifiedCeremony::contains`]), and deployments pin the final
//! CRS digest.
//!
//! The consumer (the curator) calls [`verify_crs`] with the CRS it loads and
//! the transcript bytes.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use bls12_381_plus::{
    G1Affine, G1Projective, G2Affine, G2Prepared, G2Projective, Gt, Scalar, multi_miller_loop,
};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::crs::{Crs, random_nonzero_scalar};
use crate::encoding::{Codec, G1_LEN, G2_LEN, Reader, SCALAR_LEN, Writer, impl_canonical};
use crate::error::{CrsError, DecodeError};
use crate::params::Dimensions;
use crate::transcript::{Transcript as FsTranscript, expand_weights};

/// Domain tag of the proof of knowledge of an update secret.
const DOMAIN_UPDATE_POK: &[u8] = b"mazu-rbe/v1/ceremony-update-pok";
/// Domain tag of its hedged nonce.
const DOMAIN_UPDATE_NONCE: &[u8] = b"mazu-rbe/v1/ceremony-update-nonce";
/// Domain tag of the weight folding the two update pairing equations.
const DOMAIN_UPDATE_WEIGHT: &[u8] = b"mazu-rbe/v1/ceremony-update-weight";
/// Domain tag of a contribution's public hash.
const DOMAIN_CONTRIBUTION: &[u8] = b"mazu-rbe/v1/ceremony-contribution";

/// Longest contributor name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 256;

/// Most contributions a transcript may hold (bounds what the decoder accepts;
/// real ceremonies have tens to a few thousand).
pub const MAX_CONTRIBUTIONS: usize = 1 << 16;

/// Why a ceremony operation or a transcript check failed. `index` is the
/// one-based position of the contribution at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// The transcript bytes do not decode (truncated, trailing bytes, wrong
    /// magic or version, a point off the curve or the identity, a bad name).
    #[error("transcript does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// Starting a ceremony or updating a CRS failed (capacity out of range,
    /// zero update secret).
    #[error(transparent)]
    Crs(#[from] CrsError),
    /// The transcript has no contribution: its CRS is the public start
    /// (`z = 1`), which publishes the punctured power.
    #[error("transcript has no contribution: its CRS is the public starting point (z = 1)")]
    NoContributions,
    /// A contribution's CRS is not consecutive powers of one secret, or has an
    /// identity element, or is trivial.
    #[error("contribution #{index}: its CRS is not well formed: {error}")]
    InvalidCrs {
        /// One-based position.
        index: usize,
        /// What [`Crs::verify`] found.
        error: CrsError,
    },
    /// `S1` is the identity or the generator: `s = 0` or `s = 1`, an update
    /// that destroys the CRS or adds no secret.
    #[error("contribution #{index}: degenerate update secret (s = 0 or s = 1)")]
    DegenerateUpdate {
        /// One-based position.
        index: usize,
    },
    /// The proof of knowledge of `s` does not verify for this position: it
    /// was made against another previous CRS (a removed, reordered or spliced
    /// contribution), for another name, or was tampered with.
    #[error(
        "contribution #{index}: proof of knowledge of the update secret is invalid \
         (made against another previous CRS or name, or tampered)"
    )]
    InvalidProofOfKnowledge {
        /// One-based position.
        index: usize,
    },
    /// The pairing checks failed: `S2` is not `s·G2` for the proven `s`, or the
    /// new CRS is not the previous one multiplied by `s`.
    #[error("contribution #{index}: its CRS is not the previous CRS updated by the proven secret")]
    UpdateMismatch {
        /// One-based position.
        index: usize,
    },
    /// A contributor name longer than [`MAX_NAME_LEN`] bytes or containing
    /// control characters (names are printed to terminals).
    #[error("contributor name is longer than {MAX_NAME_LEN} bytes or contains control characters")]
    InvalidName,
    /// The transcript already holds [`MAX_CONTRIBUTIONS`].
    #[error("transcript is full ({MAX_CONTRIBUTIONS} contributions)")]
    TooManyContributions,
    /// The CRS offered is not the one the verified transcript ends with.
    #[error("CRS digest differs from the ceremony transcript's final CRS")]
    CrsMismatch,
}

/// The public proof accompanying one update by secret `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateProof {
    /// `S1 = s·G1`.
    s_g1: G1Affine,
    /// `S2 = s·G2`.
    s_g2: G2Affine,
    /// Schnorr commitment `R = k·G1`.
    commitment: G1Affine,
    /// Schnorr response `u = k + c·s`.
    response: Scalar,
}

impl UpdateProof {
    /// `s·G1`: the contributor's public update key.
    pub fn s_g1(&self) -> &G1Affine {
        &self.s_g1
    }

    /// `s·G2`.
    pub fn s_g2(&self) -> &G2Affine {
        &self.s_g2
    }

    fn write(&self, w: &mut Writer) {
        w.g1(&self.s_g1);
        w.g2(&self.s_g2);
        w.g1(&self.commitment);
        w.scalar(&self.response);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            s_g1: r.g1_nonzero("update s*G1")?,
            s_g2: r.g2_nonzero("update s*G2")?,
            commitment: r.g1_nonzero("update proof commitment")?,
            response: r.scalar("update proof response")?,
        })
    }
}

/// One contribution: who (optional name), the update proof and the CRS after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    name: String,
    proof: UpdateProof,
    crs: Crs,
}

impl Contribution {
    /// The contributor's self-declared name (may be empty). Not authenticated:
    /// it is bound into the proof, so it cannot be changed afterwards, but
    /// anyone can claim any name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The update proof.
    pub fn proof(&self) -> &UpdateProof {
        &self.proof
    }

    /// The CRS after this contribution.
    pub fn crs(&self) -> &Crs {
        &self.crs
    }

    /// The contribution's public hash, given the digest of the CRS it was made
    /// on: SHA-256 over the capacity, that digest, the name, the proof and the
    /// new CRS's digest. Because it covers the previous digest, it also fixes
    /// the contribution's place in the chain.
    fn hash(&self, capacity: u32, prev_digest: &[u8; 32]) -> [u8; 32] {
        let mut t = FsTranscript::new(DOMAIN_CONTRIBUTION);
        t.append(b"capacity", &capacity.to_be_bytes());
        t.append(b"prev", prev_digest);
        t.append(b"name", self.name.as_bytes());
        t.append(b"S1", &self.proof.s_g1.to_compressed());
        t.append(b"S2", &self.proof.s_g2.to_compressed());
        t.append(b"R", &self.proof.commitment.to_compressed());
        t.append(b"u", &self.proof.response.to_be_bytes());
        t.append(b"next", &self.crs.digest());
        t.finish()
    }

    /// Encoded length with an empty name: the least a contribution takes.
    fn min_len(dims: Dimensions) -> usize {
        4 + G1_LEN + G2_LEN + G1_LEN + SCALAR_LEN + Crs::elements_len(dims)
    }
}

/// What the update proof's challenge binds.
struct UpdateStatement<'a> {
    capacity: u32,
    prev_digest: &'a [u8; 32],
    name: &'a str,
    s_g1: &'a G1Affine,
    s_g2: &'a G2Affine,
    next_digest: &'a [u8; 32],
}

impl UpdateStatement<'_> {
    fn challenge(&self, commitment: &G1Affine) -> Scalar {
        let mut t = FsTranscript::new(DOMAIN_UPDATE_POK);
        t.append(b"capacity", &self.capacity.to_be_bytes());
        t.append(b"prev", self.prev_digest);
        t.append(b"name", self.name.as_bytes());
        t.append(b"S1", &self.s_g1.to_compressed());
        t.append(b"S2", &self.s_g2.to_compressed());
        t.append(b"next", self.next_digest);
        t.append(b"R", &commitment.to_compressed());
        t.challenge_scalar()
    }
}

/// A summary of one verified contribution, for display and inclusion checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionSummary {
    /// One-based position in the transcript.
    pub index: usize,
    /// The contributor's self-declared name (may be empty).
    pub name: String,
    /// The contribution hash (what the contributor was told to keep).
    pub hash: [u8; 32],
    /// Digest of the CRS after this contribution.
    pub crs_digest: [u8; 32],
}

/// The result of a successful [`Transcript::verify`]: the final CRS, known to
/// be well formed and derived from the public start through every listed
/// contribution.
#[derive(Clone, Debug)]
pub struct VerifiedCeremony {
    crs: Crs,
    contributions: Vec<ContributionSummary>,
}

impl VerifiedCeremony {
    /// The final CRS.
    pub fn crs(&self) -> &Crs {
        &self.crs
    }

    /// The final CRS, by value.
    pub fn into_crs(self) -> Crs {
        self.crs
    }

    /// Every contribution, in order.
    pub fn contributions(&self) -> &[ContributionSummary] {
        &self.contributions
    }

    /// Whether a contribution with this hash is part of the transcript (and
    /// therefore its secret is a factor of the final CRS's secret).
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.contributions.iter().any(|c| &c.hash == hash)
    }

    /// `Ok` iff `crs` is exactly the transcript's final CRS (same digest).
    pub fn check_crs(&self, crs: &Crs) -> Result<(), CeremonyError> {
        if crs.digest() == self.crs.digest() {
            Ok(())
        } else {
            Err(CeremonyError::CrsMismatch)
        }
    }
}

/// A ceremony transcript: the capacity (which fixes the public starting CRS)
/// and the ordered contributions. Canonical binary encoding, magic `RBET`:
/// capacity `u32`, block size `u32`, count `u32`, then per contribution a
/// `u32` name length and the UTF-8 name, `S1` (G1), `S2` (G2), `R` (G1), `u`
/// (scalar) and the new CRS's elements (`h_1..h_n, h_(n+2)..h_(2n)` in G1,
/// `hh_1..hh_n` in G2, as in the CRS encoding but without its header).
/// Decoding checks every point but not the proofs: call [`Transcript::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The powers of `z = 1` for the capacity; derived, never stored.
    start: Crs,
    contributions: Vec<Contribution>,
}

impl Transcript {
    /// A new ceremony for `capacity` with no contribution yet.
    pub fn new(capacity: u32) -> Result<Self, CeremonyError> {
        let dims = Dimensions::for_capacity(capacity)?;
        Ok(Self {
            start: Crs::ceremony_start(dims),
            contributions: Vec::new(),
        })
    }

    /// Capacity N of the CRS this ceremony makes.
    pub fn capacity(&self) -> u32 {
        self.start.capacity()
    }

    /// The public starting CRS (every element a generator).
    pub fn start(&self) -> &Crs {
        &self.start
    }

    /// The contributions, in order.
    pub fn contributions(&self) -> &[Contribution] {
        &self.contributions
    }

    /// The CRS the next contribution builds on: the last contribution's, or
    /// the start. Not verified: see [`Transcript::verify`].
    pub fn latest_crs(&self) -> &Crs {
        self.contributions.last().map_or(&self.start, |c| &c.crs)
    }

    /// Add a contribution with a fresh secret from `rng`, which is forgotten
    /// (zeroized) before returning. Returns the contribution's summary; its
    /// `hash` is what the contributor keeps to check inclusion later.
    ///
    /// Builds on [`Transcript::latest_crs`] without re-checking the earlier
    /// contributions: verify the transcript first, since contributing to a
    /// broken one is wasted. The new contribution itself is checked before it
    /// is appended (a fault in this machine's arithmetic never gets published).
    pub fn contribute<R: RngCore + CryptoRng>(
        &mut self,
        name: &str,
        rng: &mut R,
    ) -> Result<ContributionSummary, CeremonyError> {
        // s = 1 would add no secret (probability 2^-255; drawn again anyway).
        let s = loop {
            let s = Zeroizing::new(random_nonzero_scalar(rng));
            if *s != Scalar::ONE {
                break s;
            }
        };
        self.contribute_with_secret(name, &s, rng)
    }

    /// [`Transcript::contribute`] with a given secret (tests use known ones).
    fn contribute_with_secret<R: RngCore + CryptoRng>(
        &mut self,
        name: &str,
        s: &Scalar,
        rng: &mut R,
    ) -> Result<ContributionSummary, CeremonyError> {
        check_name(name)?;
        if self.contributions.len() >= MAX_CONTRIBUTIONS {
            return Err(CeremonyError::TooManyContributions);
        }
        let capacity = self.capacity();
        let prev = self.latest_crs();
        let prev_digest = prev.digest();
        let crs = prev.update(s)?;
        let s_g1 = G1Affine::from(G1Projective::GENERATOR * s);
        let s_g2 = G2Affine::from(G2Projective::GENERATOR * s);
        let next_digest = crs.digest();
        let statement = UpdateStatement {
            capacity,
            prev_digest: &prev_digest,
            name,
            s_g1: &s_g1,
            s_g2: &s_g2,
            next_digest: &next_digest,
        };
        // Hedged nonce: fresh randomness *and* the secret and statement, so a
        // weak RNG alone does not leak s.
        let mut fresh = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *fresh);
        let s_bytes = Zeroizing::new(s.to_be_bytes());
        let mut t = FsTranscript::new(DOMAIN_UPDATE_NONCE);
        t.append(b"s", &*s_bytes);
        t.append(b"rng", &*fresh);
        t.append(b"prev", &prev_digest);
        t.append(b"name", name.as_bytes());
        let k = Zeroizing::new(t.challenge_scalar());
        let commitment = G1Affine::from(G1Projective::GENERATOR * *k);
        let c = statement.challenge(&commitment);
        let response = *k + c * s;
        let contribution = Contribution {
            name: name.to_owned(),
            proof: UpdateProof {
                s_g1,
                s_g2,
                commitment,
                response,
            },
            crs,
        };
        let index = self.contributions.len() + 1;
        verify_contribution(index, capacity, prev, &contribution)?;
        let summary = ContributionSummary {
            index,
            name: contribution.name.clone(),
            hash: contribution.hash(capacity, &prev_digest),
            crs_digest: next_digest,
        };
        self.contributions.push(contribution);
        Ok(summary)
    }

    /// Check the whole transcript from the public start (see the module
    /// documentation for the checks and why they suffice). Deterministic: every
    /// verifier reaches the same verdict. Cost per contribution: one
    /// [`Crs::verify`], a Schnorr check and a two-term pairing product.
    pub fn verify(&self) -> Result<VerifiedCeremony, CeremonyError> {
        let capacity = self.capacity();
        let mut prev = &self.start;
        let mut summaries = Vec::with_capacity(self.contributions.len());
        for (k, c) in self.contributions.iter().enumerate() {
            let index = k + 1;
            verify_contribution(index, capacity, prev, c)?;
            summaries.push(ContributionSummary {
                index,
                name: c.name.clone(),
                hash: c.hash(capacity, &prev.digest()),
                crs_digest: c.crs.digest(),
            });
            prev = &c.crs;
        }
        if summaries.is_empty() {
            return Err(CeremonyError::NoContributions);
        }
        Ok(VerifiedCeremony {
            crs: prev.clone(),
            contributions: summaries,
        })
    }
}

/// The curator's check: decode and verify `transcript` (the bytes of a
/// [`Transcript`]) and require that `crs` is its final CRS.
pub fn verify_crs(crs: &Crs, transcript: &[u8]) -> Result<VerifiedCeremony, CeremonyError> {
    let verified = Transcript::from_bytes(transcript)?.verify()?;
    verified.check_crs(crs)?;
    Ok(verified)
}

/// Names are printed by every verifier: bounded, and no control characters
/// (which could forge or hide lines of a verification report).
fn check_name(name: &str) -> Result<(), CeremonyError> {
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(CeremonyError::InvalidName);
    }
    Ok(())
}

/// All the checks of one contribution made on top of `prev`.
fn verify_contribution(
    index: usize,
    capacity: u32,
    prev: &Crs,
    c: &Contribution,
) -> Result<(), CeremonyError> {
    c.crs
        .verify()
        .map_err(|error| CeremonyError::InvalidCrs { index, error })?;
    let p = &c.proof;
    // s = 0 destroys the CRS, s = 1 adds nothing (and for the first
    // contribution would leave z = 1).
    if bool::from(p.s_g1.is_identity())
        || bool::from(p.s_g2.is_identity())
        || p.s_g1 == G1Affine::generator()
    {
        return Err(CeremonyError::DegenerateUpdate { index });
    }
    if bool::from(p.commitment.is_identity()) {
        return Err(CeremonyError::InvalidProofOfKnowledge { index });
    }
    // Schnorr: u·G1 == R + c·S1, the challenge bound to prev's digest.
    let prev_digest = prev.digest();
    let next_digest = c.crs.digest();
    let statement = UpdateStatement {
        capacity,
        prev_digest: &prev_digest,
        name: &c.name,
        s_g1: &p.s_g1,
        s_g2: &p.s_g2,
        next_digest: &next_digest,
    };
    let ch = statement.challenge(&p.commitment);
    if G1Projective::GENERATOR * p.response != G1Projective::from(p.s_g1) * ch + p.commitment {
        return Err(CeremonyError::InvalidProofOfKnowledge { index });
    }
    // e(S1, G2) = e(G1, S2) and e(h_1', G2) = e(h_1, S2), folded with a
    // weight fixed only after every input (random oracle): if either fails,
    // e(S1 + w h_1', G2) · e(-(G1 + w h_1), S2) = 1 holds for at most one w,
    // probability 2^-128.
    let (Some(new_h1), Some(old_h1)) = (c.crs.h(1), prev.h(1)) else {
        // Unreachable for CRSs of this crate (n >= 2), kept total.
        return Err(CeremonyError::UpdateMismatch { index });
    };
    let mut t = FsTranscript::new(DOMAIN_UPDATE_WEIGHT);
    t.append(b"contribution", &c.hash(capacity, &prev_digest));
    let w128 = expand_weights(&t.finish(), 1)[0];
    // From two u64 halves: `Scalar: From<u128>` exists only on 64-bit targets.
    let w = Scalar::from((w128 >> 64) as u64) * Scalar::from(1u64 << 32).square()
        + Scalar::from(w128 as u64);
    let left = G1Affine::from(G1Projective::from(p.s_g1) + G1Projective::from(new_h1) * w);
    let right = G1Affine::from(-(G1Projective::GENERATOR + G1Projective::from(old_h1) * w));
    let s_g2 = G2Prepared::from(p.s_g2);
    let terms = [(&left, c.crs.g2_generator()), (&right, &s_g2)];
    if multi_miller_loop(&terms).final_exponentiation() != Gt::IDENTITY {
        return Err(CeremonyError::UpdateMismatch { index });
    }
    Ok(())
}

impl Codec for Transcript {
    const MAGIC: [u8; 4] = *b"RBET";

    fn write(&self, w: &mut Writer) {
        w.u32(self.start.capacity());
        w.u32(self.start.block_size());
        w.count(self.contributions.len());
        for c in &self.contributions {
            w.count(c.name.len());
            w.bytes(c.name.as_bytes());
            c.proof.write(w);
            c.crs.write_elements(w);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let dims = r.dimensions()?;
        let count = r.count(
            "contributions",
            Contribution::min_len(dims),
            MAX_CONTRIBUTIONS,
        )?;
        let mut contributions = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.count("contributor name", 1, MAX_NAME_LEN)?;
            let name = core::str::from_utf8(r.take("contributor name", len)?)
                .map_err(|_| DecodeError::Inconsistent("contributor name is not UTF-8"))?;
            if check_name(name).is_err() {
                return Err(DecodeError::Inconsistent(
                    "contributor name contains control characters",
                ));
            }
            let proof = UpdateProof::read(r)?;
            let crs = Crs::read_elements(dims, r)?;
            contributions.push(Contribution {
                name: name.to_owned(),
                proof,
                crs,
            });
        }
        Ok(Self {
            start: Crs::ceremony_start(dims),
            contributions,
        })
    }
}

impl_canonical!(Transcript);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RegistryState, decrypt, encrypt, keygen};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    /// An honest transcript with one contribution per name.
    fn honest(capacity: u32, names: &[&str], seed: u64) -> Transcript {
        let mut t = Transcript::new(capacity).unwrap();
        let mut rng = rng(seed);
        for name in names {
            t.contribute(name, &mut rng).unwrap();
        }
        t
    }

    /// Re-encode and decode, as a verifier reading a file would.
    fn reread(t: &Transcript) -> Transcript {
        Transcript::from_bytes(&t.to_bytes()).unwrap()
    }

    #[test]
    fn honest_three_contributors_verify_and_crs_works() {
        let t = honest(16, &["alice", "bob", ""], 1);
        let t = reread(&t);
        let v = t.verify().unwrap();
        assert_eq!(v.contributions().len(), 3);
        assert_eq!(v.contributions()[1].name, "bob");
        assert_eq!(v.contributions()[2].index, 3);
        let crs = v.crs().clone();
        crs.verify().unwrap();
        assert_eq!(crs, *t.latest_crs());
        verify_crs(&crs, &t.to_bytes()).unwrap();

        // The ceremony CRS is an ordinary CRS for keygen, registration,
        // encryption and decryption.
        let crs = Crs::from_bytes(&crs.to_bytes()).unwrap();
        let mut rng = rng(9);
        let mut state = RegistryState::new(crs.clone());
        let (sk, reg) = keygen(&crs, 5, [1u8; 32], &mut rng).unwrap();
        state.verify_and_apply(reg).unwrap();
        let (_, reg) = keygen(&crs, 6, [2u8; 32], &mut rng).unwrap();
        state.verify_and_apply(reg).unwrap();
        let pp = state.public_params();
        let ct = encrypt(&crs, &pp, 5, b"hello", b"aad", &mut rng).unwrap();
        let opening = state.opening(5).unwrap();
        assert_eq!(decrypt(&crs, &sk, &opening, &ct, b"aad").unwrap(), b"hello");
    }

    #[test]
    fn contribution_hash_is_returned_and_listed() {
        let mut t = Transcript::new(9).unwrap();
        let mut rng = rng(2);
        let a = t.contribute("a", &mut rng).unwrap();
        let b = t.contribute("b", &mut rng).unwrap();
        assert_ne!(a.hash, b.hash);
        let v = reread(&t).verify().unwrap();
        assert_eq!(v.contributions(), &[a.clone(), b.clone()]);
        assert!(v.contains(&a.hash) && v.contains(&b.hash));
        assert!(!v.contains(&[0; 32]));
    }

    #[test]
    fn secrets_multiply() {
        let mut t = Transcript::new(9).unwrap();
        let mut rng = rng(3);
        let (a, b) = (Scalar::from(5u64), Scalar::from(11u64));
        t.contribute_with_secret("a", &a, &mut rng).unwrap();
        t.contribute_with_secret("b", &b, &mut rng).unwrap();
        let crs = t.verify().unwrap().into_crs();
        let z = a * b;
        assert_eq!(
            *crs.h(1).unwrap(),
            G1Affine::from(G1Projective::GENERATOR * z)
        );
        let z5 = z.pow_vartime(&[5, 0, 0, 0]);
        assert_eq!(
            *crs.h(5).unwrap(),
            G1Affine::from(G1Projective::GENERATOR * z5)
        );
        assert_eq!(
            *crs.hh(3).unwrap(),
            G2Affine::from(G2Projective::GENERATOR * z.pow_vartime(&[3, 0, 0, 0]))
        );
    }

    #[test]
    fn refuses_empty_transcript() {
        let t = Transcript::new(16).unwrap();
        assert_eq!(t.verify().unwrap_err(), CeremonyError::NoContributions);
        assert_eq!(
            reread(&t).verify().unwrap_err(),
            CeremonyError::NoContributions
        );
        // The start itself is refused as a CRS.
        assert_eq!(t.start().verify(), Err(CrsError::TrivialSecret));
    }

    #[test]
    fn refuses_degenerate_secrets() {
        let mut t = Transcript::new(16).unwrap();
        let mut rng = rng(4);
        assert_eq!(
            t.contribute_with_secret("x", &Scalar::ZERO, &mut rng),
            Err(CeremonyError::Crs(CrsError::ZeroUpdate))
        );
        // s = 1 as the first contribution leaves z = 1: the CRS check fires.
        assert_eq!(
            t.contribute_with_secret("x", &Scalar::ONE, &mut rng),
            Err(CeremonyError::InvalidCrs {
                index: 1,
                error: CrsError::TrivialSecret
            })
        );
        // s = 1 later: the CRS is fine but nothing was added.
        t.contribute("ok", &mut rng).unwrap();
        assert_eq!(
            t.contribute_with_secret("x", &Scalar::ONE, &mut rng),
            Err(CeremonyError::DegenerateUpdate { index: 2 })
        );
        // Refused contributions were not appended.
        assert_eq!(t.contributions().len(), 1);
        t.verify().unwrap();
    }

    #[test]
    fn refuses_proof_made_against_another_previous_crs() {
        // Capacities 10 and 12 both have n = 4: identical starting elements,
        // different digests. A contribution made for the capacity-12 ceremony,
        // spliced into a capacity-10 transcript, has a CRS that is well formed
        // and an update that is algebraically right; only the binding of its
        // proof to the previous digest catches it.
        let other = honest(12, &["mallory"], 5);
        let mut bytes = other.to_bytes();
        bytes[5..9].copy_from_slice(&10u32.to_be_bytes());
        let spliced = Transcript::from_bytes(&bytes).unwrap();
        assert_eq!(spliced.capacity(), 10);
        assert_eq!(
            spliced.verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 1 }
        );

        // Two ceremonies that diverge after the first contribution: B's second
        // contribution placed after A's first.
        let a = honest(16, &["alice", "x"], 6);
        let mut b = a.clone();
        b.contributions.pop();
        b.contributions.pop();
        let mut rng = rng(7);
        b.contribute("bob", &mut rng).unwrap();
        b.contribute("carol", &mut rng).unwrap();
        let mut mixed = a.clone();
        mixed.contributions[1] = b.contributions[1].clone();
        assert_eq!(
            reread(&mixed).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 2 }
        );
    }

    #[test]
    fn refuses_reordered_removed_and_swapped_contributions() {
        let t = honest(16, &["a", "b", "c"], 8);
        let v = t.verify().unwrap();

        let mut reordered = t.clone();
        reordered.contributions.swap(1, 2);
        assert_eq!(
            reread(&reordered).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 2 }
        );
        let mut reordered = t.clone();
        reordered.contributions.swap(0, 1);
        assert_eq!(
            reread(&reordered).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 1 }
        );

        let mut removed = t.clone();
        removed.contributions.remove(1);
        assert_eq!(
            reread(&removed).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 2 }
        );
        let mut removed = t.clone();
        removed.contributions.remove(0);
        assert_eq!(
            reread(&removed).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 1 }
        );

        // Dropping the *last* contribution leaves a valid, shorter transcript:
        // the dropped contributor's hash is missing and the final CRS differs.
        let mut truncated = t.clone();
        truncated.contributions.pop();
        let short = reread(&truncated).verify().unwrap();
        assert!(!short.contains(&v.contributions()[2].hash));
        assert_eq!(short.check_crs(v.crs()), Err(CeremonyError::CrsMismatch));

        // Another contributor's valid-looking contribution in place of #2:
        // a proof copied from elsewhere with the original CRS kept.
        let other = honest(16, &["a", "b"], 9);
        let mut swapped = t.clone();
        swapped.contributions[1].proof = other.contributions[1].proof;
        assert!(reread(&swapped).verify().is_err());
        // Only the name changed: the proof binds it.
        let mut renamed = t.clone();
        renamed.contributions[1].name = "b2".to_owned();
        assert_eq!(
            reread(&renamed).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 2 }
        );
    }

    #[test]
    fn refuses_tampered_elements_and_proofs() {
        let t = honest(9, &["a", "b", "c"], 10);
        let two = Scalar::from(2u64);
        // A scaled CRS element in the middle contribution, each group.
        for k in 0..5 {
            let mut bad = t.clone();
            let crs = &bad.contributions[1].crs;
            let p = G1Affine::from(
                G1Projective::from(
                    crs.h(if k < 3 { k as u32 + 1 } else { k as u32 + 2 })
                        .unwrap(),
                ) * two,
            );
            bad.contributions[1].crs = crs.with_elements_replaced(Some((k, p)), None);
            assert_eq!(
                reread(&bad).verify().unwrap_err(),
                CeremonyError::InvalidCrs {
                    index: 2,
                    error: CrsError::NotPowers
                },
                "g1[{k}]"
            );
        }
        let mut bad = t.clone();
        let crs = &bad.contributions[2].crs;
        let p = G2Affine::from(G2Projective::from(crs.hh(2).unwrap()) * two);
        bad.contributions[2].crs = crs.with_elements_replaced(None, Some((1, p)));
        assert_eq!(
            reread(&bad).verify().unwrap_err(),
            CeremonyError::InvalidCrs {
                index: 3,
                error: CrsError::NotPowers
            }
        );
        // A whole CRS replaced by another well-formed one (a fresh secret):
        // the update check fails for it (and the next proof would too).
        let mut bad = t.clone();
        bad.contributions[1].crs = t.contributions[1].crs.update(&two).unwrap();
        assert_eq!(
            reread(&bad).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 2 }
        );
        // Proof fields.
        let mut bad = t.clone();
        bad.contributions[0].proof.response += Scalar::ONE;
        assert_eq!(
            reread(&bad).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 1 }
        );
        let mut bad = t.clone();
        bad.contributions[0].proof.s_g2 =
            G2Affine::from(G2Projective::from(bad.contributions[0].proof.s_g2) * two);
        assert_eq!(
            reread(&bad).verify().unwrap_err(),
            CeremonyError::InvalidProofOfKnowledge { index: 1 }
        );
    }

    #[test]
    fn refuses_update_not_matching_proven_secret() {
        // A contributor proves knowledge of s but publishes a CRS updated by
        // another secret, re-proving honestly over the published CRS: only the
        // pairing check ties the CRS to the proven s.
        let mut t = honest(9, &["a"], 11);
        let prev = t.latest_crs().clone();
        let mut rng = rng(12);
        t.contribute_with_secret("b", &Scalar::from(3u64), &mut rng)
            .unwrap();
        let crs = prev.update(&Scalar::from(4u64)).unwrap();
        let s = Scalar::from(3u64);
        let c = &mut t.contributions[1];
        c.crs = crs;
        let st = UpdateStatement {
            capacity: 9,
            prev_digest: &prev.digest(),
            name: "b",
            s_g1: &c.proof.s_g1,
            s_g2: &c.proof.s_g2,
            next_digest: &c.crs.digest(),
        };
        let k = Scalar::from(77u64);
        let commitment = G1Affine::from(G1Projective::GENERATOR * k);
        let ch = st.challenge(&commitment);
        c.proof.commitment = commitment;
        c.proof.response = k + ch * s;
        assert_eq!(
            reread(&t).verify().unwrap_err(),
            CeremonyError::UpdateMismatch { index: 2 }
        );
    }

    #[test]
    fn refuses_identity_elements() {
        let t = honest(9, &["a", "b"], 13);
        // In memory (what a decoder would never produce).
        let mut bad = t.clone();
        bad.contributions[1].crs = t.contributions[1]
            .crs
            .with_elements_replaced(Some((3, G1Affine::identity())), None);
        assert!(matches!(
            bad.verify().unwrap_err(),
            CeremonyError::InvalidCrs {
                index: 2,
                error: CrsError::IdentityElement { .. }
            }
        ));
        let mut bad = t.clone();
        bad.contributions[0].proof.s_g1 = G1Affine::identity();
        assert_eq!(
            bad.verify().unwrap_err(),
            CeremonyError::DegenerateUpdate { index: 1 }
        );
        // In the file: the identity encoding is refused by the decoder.
        let bytes = t.to_bytes();
        // Header 5 + 12, name length 4 + "a", then S1.
        let off = 5 + 12 + 4 + 1;
        assert_eq!(
            &bytes[off..off + 48],
            &t.contributions[0].proof.s_g1.to_compressed()
        );
        let mut b = bytes.clone();
        b[off..off + 48].copy_from_slice(&G1Affine::identity().to_compressed());
        assert!(matches!(
            Transcript::from_bytes(&b),
            Err(DecodeError::IdentityPoint { .. })
        ));
        // The first CRS element of contribution 1.
        let off = off + 48 + 96 + 48 + 32;
        assert_eq!(
            &bytes[off..off + 48],
            &t.contributions[0].crs.h(1).unwrap().to_compressed()
        );
        let mut b = bytes.clone();
        b[off..off + 48].copy_from_slice(&G1Affine::identity().to_compressed());
        assert!(matches!(
            verify_crs(t.latest_crs(), &b),
            Err(CeremonyError::Decode(DecodeError::IdentityPoint { .. }))
        ));
    }

    #[test]
    fn refuses_truncated_and_extended_files() {
        let t = honest(4, &["a", "b"], 14);
        let bytes = t.to_bytes();
        for cut in [0, 4, 5, 10, 17, 21, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Transcript::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // Cut exactly after the first contribution: the count still says 2.
        let one = Contribution::min_len(Dimensions::for_capacity(4).unwrap()) + 1;
        assert!(matches!(
            Transcript::from_bytes(&bytes[..17 + one]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Transcript::from_bytes(&long),
            Err(DecodeError::TrailingBytes { count: 1 })
        ));
        // A count far beyond the bytes present is refused before allocating.
        let mut huge = bytes.clone();
        huge[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Transcript::from_bytes(&huge).is_err());
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let t = honest(4, &["ab", "cd"], 15);
        let bytes = t.to_bytes();
        let final_crs = t.latest_crs().clone();
        for pos in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[pos] ^= 0x01;
            assert!(verify_crs(&final_crs, &b).is_err(), "byte {pos} flipped");
        }
        verify_crs(&final_crs, &bytes).unwrap();
    }

    #[test]
    fn names_are_checked() {
        let mut t = Transcript::new(4).unwrap();
        let mut rng = rng(16);
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            t.contribute(&long, &mut rng),
            Err(CeremonyError::InvalidName)
        );
        assert_eq!(
            t.contribute("a\nb", &mut rng),
            Err(CeremonyError::InvalidName)
        );
        t.contribute("ünïcode ok", &mut rng).unwrap();
        t.contribute(&"y".repeat(MAX_NAME_LEN), &mut rng).unwrap();
        // A control character smuggled into the file.
        let mut b = t.to_bytes();
        b[5 + 12 + 4] = b'\n';
        assert!(matches!(
            Transcript::from_bytes(&b),
            Err(DecodeError::Inconsistent(_))
        ));
        let mut b = t.to_bytes();
        b[5 + 12 + 4] = 0xff;
        assert!(matches!(
            Transcript::from_bytes(&b),
            Err(DecodeError::Inconsistent(_))
        ));
    }

    #[test]
    fn verify_crs_refuses_another_crs() {
        let t = honest(16, &["a"], 17);
        let dev = Crs::generate_insecure_dev(16, &mut rng(18)).unwrap();
        assert_eq!(
            verify_crs(&dev, &t.to_bytes()).unwrap_err(),
            CeremonyError::CrsMismatch
        );
        assert_eq!(<Transcript as crate::Canonical>::MAGIC, *b"RBET");
    }
}
