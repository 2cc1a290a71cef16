//! The identity side of a [`Registry`] as bytes, for the state snapshot:
//! what the curator keeps beside the id lifecycle (per id the index,
//! content digest and time of its bind, the index and claims digest of its
//! reveal, the index of its end, and the namespace of each live id).
//!
//! The id lifecycle itself is in the follower state (`MZFS`, the same
//! [`DerivedRegistry`] every follower derives); the sets ordered by time
//! (unrevealed, expiring), the claims digests and the per-namespace counts
//! are functions of the two and are rebuilt from them, not stored. Like
//! the follower state, the encoding is canonical (sorted by id), so the
//! background check of a snapshot's prefix compares bytes.
//!
//! ```text
//! "MZCI" | format (1)
//! binds      u32 count, each: id (32) | index u64 | content (32) | at_ms u64
//! reveals    u32 count, each: id (32) | index u64 | claims digest (32)
//! ends       u32 count, each: id (32) | index u64
//! namespaces u32 count, each: id (32) | length u16 | namespace (UTF-8)
//! ```
//!
//! Its length follows the ids the lifecycle still holds (an ended id is
//! forgotten once its token expired), not the history.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use mazu_identity::ClaimsDigest;
use mazu_identity::registry::derive::{DerivedRegistry, IdState};
use mazu_rbe::RegistryState;

use super::{BindInfo, Registry, RevealInfo};

/// Magic of the identity image.
const MAGIC: [u8; 4] = *b"MZCI";
/// Its format.
const FORMAT: u8 = 1;

/// Why bytes are not an identity image that fits the id lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Truncated, extended, a bad header, or a field out of range.
    #[error("identity image does not decode: {0}")]
    Decode(&'static str),
    /// Decodes but does not fit the id lifecycle it is given with.
    #[error("identity image is inconsistent with the id lifecycle: {0}")]
    Inconsistent(&'static str),
}

/// A decoded identity image, before it is joined with the lifecycle.
#[derive(Debug, Clone, Default)]
pub struct IdentityImage {
    binds: BTreeMap<[u8; 32], BindInfo>,
    reveals: BTreeMap<[u8; 32], RevealInfo>,
    ends: BTreeMap<[u8; 32], u64>,
    namespaces: BTreeMap<[u8; 32], String>,
}

impl Registry {
    /// The identity image of this state (`MZCI`: the maps beside the id
    /// lifecycle, sorted by id; format in `docs/curator.md`, "State snapshot").
    pub fn identity_image(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT);
        let binds = sorted(self.binds.keys());
        put_count(&mut out, binds.len());
        for id in binds {
            let b = &self.binds[id];
            out.extend_from_slice(id);
            out.extend_from_slice(&b.index.to_be_bytes());
            out.extend_from_slice(&b.content);
            out.extend_from_slice(&b.at_ms.to_be_bytes());
        }
        let reveals = sorted(self.reveals.keys());
        put_count(&mut out, reveals.len());
        for id in reveals {
            let r = &self.reveals[id];
            out.extend_from_slice(id);
            out.extend_from_slice(&r.index.to_be_bytes());
            out.extend_from_slice(r.claims.as_bytes());
        }
        let ends = sorted(self.ends.keys());
        put_count(&mut out, ends.len());
        for id in ends {
            out.extend_from_slice(id);
            out.extend_from_slice(&self.ends[id].to_be_bytes());
        }
        let namespaces = sorted(self.live_namespace.keys());
        put_count(&mut out, namespaces.len());
        for id in namespaces {
            let ns = self.live_namespace[id].as_bytes();
            out.extend_from_slice(id);
            // A namespace is a DNS label (at most 63 bytes).
            let len = u16::try_from(ns.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&ns[..usize::from(len)]);
        }
        out
    }

    /// The state made of an RBE state, an id lifecycle and an identity
    /// image, after checking that the image fits the lifecycle: every id
    /// holding a slot has its bind, every live one its reveal and
    /// namespace, every ended one its end, no index beyond the log size.
    /// Whether the three are the log's is not checked here (the caller
    /// checks the RBE state against the live bind entries, and the prefix
    /// in the background).
    pub fn from_image(
        rbe: RegistryState,
        ids: DerivedRegistry,
        image: IdentityImage,
    ) -> Result<Self, ImageError> {
        let size = ids.size();
        let IdentityImage {
            binds,
            reveals,
            ends,
            namespaces,
        } = image;
        let in_log = binds.values().map(|b| b.index).all(|i| i < size)
            && reveals.values().map(|r| r.index).all(|i| i < size)
            && ends.values().all(|i| *i < size);
        if !in_log {
            return Err(ImageError::Inconsistent("an index beyond the log size"));
        }
        let mut unrevealed = BTreeSet::new();
        let mut expiring = BTreeSet::new();
        let mut held = 0usize;
        for (id, bind) in &binds {
            let state = ids.state(id).ok_or(ImageError::Inconsistent(
                "a bind of an id the lifecycle lacks",
            ))?;
            let (revealed, ended) = match state {
                IdState::Bound { .. } => {
                    held += 1;
                    unrevealed.insert((bind.at_ms, *id));
                    (false, false)
                }
                IdState::Live { token_expiry, .. } => {
                    held += 1;
                    expiring.insert((*token_expiry, *id));
                    (true, false)
                }
                IdState::Revoked { .. } | IdState::Released { .. } => {
                    (reveals.contains_key(id), true)
                }
            };
            // A live id's namespace is read from its token, which the
            // curator verified when it logged it: it is there unless that
            // token did not parse again, so only the converse is refused.
            let live = revealed && !ended;
            if ended != ends.contains_key(id)
                || (!ended && revealed != reveals.contains_key(id))
                || (!live && namespaces.contains_key(id))
            {
                return Err(ImageError::Inconsistent(
                    "an id's reveal, end or namespace does not fit its state",
                ));
            }
        }
        if held != ids.held_slots()
            || !reveals.keys().all(|id| binds.contains_key(id))
            || !ends.keys().all(|id| binds.contains_key(id))
            || !namespaces.keys().all(|id| binds.contains_key(id))
        {
            return Err(ImageError::Inconsistent(
                "the binds do not cover the ids the lifecycle holds",
            ));
        }
        let claims: HashSet<ClaimsDigest> = reveals.values().map(|r| r.claims).collect();
        if claims.len() != reveals.len() {
            return Err(ImageError::Inconsistent("a claims digest revealed twice"));
        }
        let mut live_per_namespace: HashMap<String, usize> = HashMap::new();
        for ns in namespaces.values() {
            *live_per_namespace.entry(ns.clone()).or_insert(0) += 1;
        }
        Ok(Self {
            rbe,
            ids,
            binds: binds.into_iter().collect(),
            reveals: reveals.into_iter().collect(),
            ends: ends.into_iter().collect(),
            claims,
            unrevealed,
            expiring,
            live_namespace: namespaces.into_iter().collect(),
            live_per_namespace,
        })
    }
}

impl IdentityImage {
    /// Decodes an image (canonical: sorted by id, each id once).
    pub fn decode(bytes: &[u8]) -> Result<Self, ImageError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC || r.take(1)? != [FORMAT] {
            return Err(ImageError::Decode("bad magic or format"));
        }
        let mut image = Self::default();
        for _ in 0..r.count()? {
            let id = r.id()?;
            let bind = BindInfo {
                index: r.u64()?,
                content: r.id()?,
                at_ms: r.u64()?,
            };
            insert_sorted(&mut image.binds, id, bind)?;
        }
        for _ in 0..r.count()? {
            let id = r.id()?;
            let reveal = RevealInfo {
                index: r.u64()?,
                claims: ClaimsDigest::from_bytes(r.id()?),
            };
            insert_sorted(&mut image.reveals, id, reveal)?;
        }
        for _ in 0..r.count()? {
            let id = r.id()?;
            let index = r.u64()?;
            insert_sorted(&mut image.ends, id, index)?;
        }
        for _ in 0..r.count()? {
            let id = r.id()?;
            let len = u16::from_be_bytes(r.array()?);
            let ns = core::str::from_utf8(r.take(usize::from(len))?)
                .map_err(|_| ImageError::Decode("a namespace is not UTF-8"))?;
            insert_sorted(&mut image.namespaces, id, ns.to_owned())?;
        }
        if !r.0.is_empty() {
            return Err(ImageError::Decode("trailing bytes"));
        }
        Ok(image)
    }

    /// The binds of the ids that hold a slot in `ids` (bound or live),
    /// whose entries carry the RBE registrations live after the prefix.
    pub fn slot_holders(&self, ids: &DerivedRegistry) -> Vec<([u8; 32], BindInfo)> {
        self.binds
            .iter()
            .filter(|(id, _)| {
                matches!(
                    ids.state(id),
                    Some(IdState::Bound { .. } | IdState::Live { .. })
                )
            })
            .map(|(id, b)| (*id, *b))
            .collect()
    }
}

/// The ids in increasing order (the encoding is canonical).
fn sorted<'a>(ids: impl Iterator<Item = &'a [u8; 32]>) -> Vec<&'a [u8; 32]> {
    let mut ids: Vec<_> = ids.collect();
    ids.sort_unstable();
    ids
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// Inserts `id` after every id before it (the encoding is sorted).
fn insert_sorted<T>(
    map: &mut BTreeMap<[u8; 32], T>,
    id: [u8; 32],
    value: T,
) -> Result<(), ImageError> {
    if map.last_key_value().is_some_and(|(last, _)| *last >= id) {
        return Err(ImageError::Decode("ids not sorted or repeated"));
    }
    map.insert(id, value);
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ImageError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(ImageError::Decode("truncated"))?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ImageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn id(&mut self) -> Result<[u8; 32], ImageError> {
        self.array()
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A count, bounded by the bytes left (each item takes at least 34).
    fn count(&mut self) -> Result<usize, ImageError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n.saturating_mul(34) > self.0.len() {
            return Err(ImageError::Decode("a count beyond the bytes left"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn image(binds: &[[u8; 32]], tail: &[u8]) -> Vec<u8> {
        let mut out = b"MZCI\x01".to_vec();
        put_count(&mut out, binds.len());
        for id in binds {
            out.extend_from_slice(id);
            out.extend_from_slice(&[0; 48]);
        }
        out.extend_from_slice(tail);
        out
    }

    const EMPTY_REST: [u8; 12] = [0; 12];

    /// Only the canonical encoding decodes: sorted ids, each once, exact
    /// length.
    #[test]
    fn only_canonical_images_decode() {
        let ok = image(&[[1; 32], [2; 32]], &EMPTY_REST);
        let decoded = IdentityImage::decode(&ok).unwrap();
        assert_eq!(decoded.binds.len(), 2);
        let unsorted = image(&[[2; 32], [1; 32]], &EMPTY_REST);
        assert_eq!(
            IdentityImage::decode(&unsorted).unwrap_err(),
            ImageError::Decode("ids not sorted or repeated")
        );
        let repeated = image(&[[1; 32], [1; 32]], &EMPTY_REST);
        assert!(IdentityImage::decode(&repeated).is_err());
        assert!(IdentityImage::decode(&ok[..ok.len() - 1]).is_err());
        let mut longer = ok.clone();
        longer.push(0);
        assert_eq!(
            IdentityImage::decode(&longer).unwrap_err(),
            ImageError::Decode("trailing bytes")
        );
        let mut other = ok;
        other[4] = 2;
        assert!(IdentityImage::decode(&other).is_err());
    }

    /// An image that does not fit the lifecycle it comes with is refused
    /// (here a bind at an index beyond the empty log); an empty one fits
    /// the empty lifecycle and encodes back to the same bytes.
    #[test]
    fn an_image_must_fit_the_lifecycle() {
        let crs = mazu_rbe::Crs::generate_insecure_dev(4, &mut rand::rngs::OsRng).unwrap();
        let rbe = RegistryState::new(crs);
        let decoded = IdentityImage::decode(&image(&[[1; 32]], &EMPTY_REST)).unwrap();
        assert_eq!(
            Registry::from_image(rbe.clone(), DerivedRegistry::new(), decoded).unwrap_err(),
            ImageError::Inconsistent("an index beyond the log size")
        );
        let empty = IdentityImage::decode(&image(&[], &EMPTY_REST)).unwrap();
        let registry = Registry::from_image(rbe, DerivedRegistry::new(), empty).unwrap();
        assert_eq!(registry.identity_image(), image(&[], &EMPTY_REST));
    }
}
