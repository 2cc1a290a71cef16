//! Slot reservations: `POST /v1/slots` holds a free slot for one workload id
//! for a limited time, so that agents registering at once do not race for the
//! same slot. Reservations live in memory only: after a crash agents simply
//! ask again.
//!
//! Rules: one reservation per id (asking again returns the same one until it
//! expires); a reserved slot is not handed to anyone else and a registration
//! by another id for it is refused (`slot_reserved`) until it expires; a
//! registration releases its id's reservation.

use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// One reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The reserved slot.
    pub slot: u32,
    /// When it lapses (monotonic clock).
    pub expires: Instant,
    /// When it lapses, as Unix seconds (what clients are told).
    pub expires_at: u64,
}

/// The reservation table.
#[derive(Debug)]
pub struct Reservations {
    ttl: Duration,
    by_id: HashMap<[u8; 32], Reservation>,
    by_slot: HashMap<u32, [u8; 32]>,
    /// Reservations in creation order (= expiry order, the TTL is fixed).
    order: VecDeque<([u8; 32], Reservation)>,
    /// Every slot below this one is registered: free-slot search starts here.
    low_water: u32,
}

impl Reservations {
    /// An empty table whose reservations last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_id: HashMap::new(),
            by_slot: HashMap::new(),
            order: VecDeque::new(),
            low_water: 0,
        }
    }

    /// Drops lapsed reservations.
    fn expire(&mut self, now: Instant) {
        while let Some((id, r)) = self.order.front().copied() {
            if r.expires > now {
                break;
            }
            self.order.pop_front();
            // The id may have a newer reservation (after release + re-ask).
            if self.by_id.get(&id) == Some(&r) {
                self.by_id.remove(&id);
                self.by_slot.remove(&r.slot);
            }
        }
    }

    /// The id's current reservation, or a new one on the lowest slot for which
    /// `is_free` holds and that nobody has reserved. `None` if there is none.
    pub fn reserve(
        &mut self,
        id: [u8; 32],
        now: Instant,
        now_unix: u64,
        capacity: u32,
        is_free: impl Fn(u32) -> bool,
    ) -> Option<(Reservation, bool)> {
        self.expire(now);
        if let Some(r) = self.by_id.get(&id) {
            return Some((*r, false));
        }
        // Every slot below the low-water mark is registered; it only rises,
        // except when a binding ends ([`Reservations::slot_freed`]).
        while self.low_water < capacity
            && !is_free(self.low_water)
            && !self.by_slot.contains_key(&self.low_water)
        {
            self.low_water += 1;
        }
        let slot =
            (self.low_water..capacity).find(|s| !self.by_slot.contains_key(s) && is_free(*s))?;
        let r = Reservation {
            slot,
            expires: now + self.ttl,
            expires_at: now_unix + self.ttl.as_secs(),
        };
        self.by_id.insert(id, r);
        self.by_slot.insert(slot, id);
        self.order.push_back((id, r));
        Some((r, true))
    }

    /// Whether `slot` is reserved, at `now`, for an id other than `id`.
    pub fn reserved_for_other(&mut self, slot: u32, id: &[u8; 32], now: Instant) -> bool {
        self.expire(now);
        self.by_slot.get(&slot).is_some_and(|holder| holder != id)
    }

    /// A binding in `slot` ended: the slot may be reserved again.
    pub fn slot_freed(&mut self, slot: u32) {
        self.low_water = self.low_water.min(slot);
    }

    /// Releases `id`'s reservation (after it registered).
    pub fn release(&mut self, id: &[u8; 32]) {
        if let Some(r) = self.by_id.remove(id) {
            self.by_slot.remove(&r.slot);
        }
    }

    /// Number of live reservations (some may have lapsed but not been swept).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no reservations.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_id_same_reservation_others_get_other_slots() {
        let mut t = Reservations::new(Duration::from_secs(10));
        let now = Instant::now();
        let free = |_| true;
        let (a, new_a) = t.reserve([1; 32], now, 0, 4, free).unwrap();
        assert!(new_a);
        let (a2, new_a2) = t
            .reserve([1; 32], now + Duration::from_secs(1), 1, 4, free)
            .unwrap();
        assert!(!new_a2);
        assert_eq!(a, a2);
        let (b, _) = t.reserve([2; 32], now, 0, 4, free).unwrap();
        assert_ne!(a.slot, b.slot);
        assert!(t.reserved_for_other(a.slot, &[2; 32], now));
        assert!(!t.reserved_for_other(a.slot, &[1; 32], now));
    }

    #[test]
    fn skips_registered_and_runs_out() {
        let mut t = Reservations::new(Duration::from_secs(10));
        let now = Instant::now();
        let registered: HashSet<u32> = [0, 1, 3].into();
        let free = |s: u32| !registered.contains(&s);
        assert_eq!(t.reserve([1; 32], now, 0, 4, free).unwrap().0.slot, 2);
        assert!(t.reserve([2; 32], now, 0, 4, free).is_none());
    }

    #[test]
    fn a_freed_slot_below_the_low_water_mark_is_found_again() {
        let mut t = Reservations::new(Duration::from_secs(10));
        let now = Instant::now();
        let mut registered: HashSet<u32> = [0, 1, 2].into();
        assert_eq!(
            t.reserve([1; 32], now, 0, 4, |s| !registered.contains(&s))
                .unwrap()
                .0
                .slot,
            3
        );
        registered.insert(3);
        t.release(&[1; 32]);
        // Slot 1's binding ends.
        registered.remove(&1);
        t.slot_freed(1);
        assert_eq!(
            t.reserve([2; 32], now, 0, 4, |s| !registered.contains(&s))
                .unwrap()
                .0
                .slot,
            1
        );
    }

    #[test]
    fn reservations_lapse_and_release() {
        let mut t = Reservations::new(Duration::from_secs(10));
        let now = Instant::now();
        let free = |_| true;
        let (a, _) = t.reserve([1; 32], now, 0, 2, free).unwrap();
        let (b, _) = t.reserve([2; 32], now, 0, 2, free).unwrap();
        assert!(t.reserve([3; 32], now, 0, 2, free).is_none());
        // After the TTL both slots are free again.
        let later = now + Duration::from_secs(11);
        assert!(!t.reserved_for_other(a.slot, &[3; 32], later));
        let (c, new) = t.reserve([3; 32], later, 11, 2, free).unwrap();
        assert!(new);
        assert_eq!(c.slot, a.slot.min(b.slot));
        t.release(&[3; 32]);
        assert!(t.is_empty());
        assert!(!t.reserved_for_other(c.slot, &[4; 32], later));
    }
}
