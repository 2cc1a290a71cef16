//! Capacity, block size and the slot -> (block, position) layout.

use crate::error::CrsError;

/// Largest supported capacity N (2^30, block size 32,768). Bounds every length
/// a decoder accepts.
pub const MAX_CAPACITY: u32 = 1 << 30;

/// Smallest supported capacity N. With n = 1 the punctured power would be
/// `z^2`, which the CRS construction needs as a scalar (`z^(n+2) = z^n * z^2`);
/// n >= 2 keeps `z^(n+1)` out of every computation.
pub const MIN_CAPACITY: u32 = 2;

/// Where a slot lives: block `k = s / n` and position `i = s mod n + 1` in `[1, n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPosition {
    /// Block index k.
    pub block: u32,
    /// Position i in `[1, n]` (one-based, as in the paper).
    pub position: u32,
}

/// The shape of a deployment: capacity N, block size n = ceil(sqrt N) and
/// block count B = ceil(N / n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dimensions {
    capacity: u32,
    block_size: u32,
    blocks: u32,
}

impl Dimensions {
    /// Dimensions for capacity `capacity` ([`MIN_CAPACITY`] ..= [`MAX_CAPACITY`]).
    pub fn for_capacity(capacity: u32) -> Result<Self, CrsError> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(CrsError::CapacityOutOfRange(u64::from(capacity)));
        }
        let block_size = ceil_sqrt(capacity);
        let blocks = capacity.div_ceil(block_size);
        Ok(Self {
            capacity,
            block_size,
            blocks,
        })
    }

    /// Capacity N: slots are `0..N`.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Block size n.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Number of blocks B.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Block and position of `slot`, or `None` if `slot >= N`.
    pub fn locate(&self, slot: u32) -> Option<SlotPosition> {
        (slot < self.capacity).then(|| SlotPosition {
            block: slot / self.block_size,
            position: slot % self.block_size + 1,
        })
    }

    /// The slot at `position` (one-based) of `block`, if below the capacity.
    pub fn slot_at(&self, block: u32, position: u32) -> Option<u32> {
        if position == 0 || position > self.block_size {
            return None;
        }
        let slot = u64::from(block) * u64::from(self.block_size) + u64::from(position - 1);
        u32::try_from(slot).ok().filter(|s| *s < self.capacity)
    }
}

/// Smallest `r` with `r * r >= x`, exact in integers (no floating point, which
/// would be platform-dependent near perfect squares).
fn ceil_sqrt(x: u32) -> u32 {
    let x = u64::from(x);
    // Newton's method from above converges to floor(sqrt(x)).
    let mut r = x;
    let mut next = r.div_ceil(2);
    while next < r {
        r = next;
        next = (r + x / r) / 2;
    }
    let r = if r * r < x { r + 1 } else { r };
    // x <= 2^30, so r <= 2^15 fits.
    u32::try_from(r).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_sqrt_exact() {
        for x in 1u32..5000 {
            let r = ceil_sqrt(x);
            assert!(r * r >= x && (r - 1) * (r - 1) < x, "x={x} r={r}");
        }
        assert_eq!(ceil_sqrt(MAX_CAPACITY), 1 << 15);
        assert_eq!(ceil_sqrt(65_536), 256);
        assert_eq!(ceil_sqrt(1_048_576), 1024);
        assert_eq!(ceil_sqrt(1_048_577), 1025);
    }

    #[test]
    fn layout() {
        let d = Dimensions::for_capacity(10).unwrap();
        assert_eq!((d.block_size(), d.blocks()), (4, 3));
        assert_eq!(
            d.locate(0),
            Some(SlotPosition {
                block: 0,
                position: 1
            })
        );
        assert_eq!(
            d.locate(9),
            Some(SlotPosition {
                block: 2,
                position: 2
            })
        );
        assert_eq!(d.locate(10), None);
        assert_eq!(d.slot_at(2, 2), Some(9));
        assert_eq!(d.slot_at(2, 3), None);
        assert_eq!(d.slot_at(0, 0), None);
        for s in 0..10 {
            let p = d.locate(s).unwrap();
            assert_eq!(d.slot_at(p.block, p.position), Some(s));
        }
        assert!(Dimensions::for_capacity(0).is_err());
        assert!(Dimensions::for_capacity(1).is_err());
        assert!(Dimensions::for_capacity(MAX_CAPACITY + 1).is_err());
        assert_eq!(Dimensions::for_capacity(2).unwrap().block_size(), 2);
    }
}
