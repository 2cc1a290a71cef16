//! Connections held (paused) until the first registry arrives.
//!
//! A connection is parked at its first data event when the configuration
//! says `before_registry: "park"` and no registry exists yet. The root
//! context later either decides each parked connection (registry arrived) or
//! closes it (timeout). This module is the bookkeeping only: bounded, keyed by
//! the stream's context id, with a deadline per entry.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// One parked connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked<T> {
    /// When it is closed if still parked, milliseconds since the epoch.
    pub deadline_ms: u64,
    /// What the root needs to decide it later (the peer certificate).
    pub payload: T,
}

/// Why a connection could not be parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LotFull;

/// The parked connections of one VM.
#[derive(Clone, Debug)]
pub struct ParkingLot<T> {
    entries: BTreeMap<u32, Parked<T>>,
    capacity: usize,
}

impl<T> ParkingLot<T> {
    /// An empty lot holding at most `capacity` connections.
    pub fn new(capacity: usize) -> Self {
        ParkingLot {
            entries: BTreeMap::new(),
            capacity,
        }
    }

    /// Parks `context_id` until `deadline_ms`. Re-parking the same id
    /// replaces its entry.
    pub fn park(&mut self, context_id: u32, deadline_ms: u64, payload: T) -> Result<(), LotFull> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&context_id) {
            return Err(LotFull);
        }
        self.entries.insert(
            context_id,
            Parked {
                deadline_ms,
                payload,
            },
        );
        Ok(())
    }

    /// Forgets `context_id` (its connection closed on its own).
    pub fn remove(&mut self, context_id: u32) -> Option<Parked<T>> {
        self.entries.remove(&context_id)
    }

    /// Whether `context_id` is parked.
    pub fn contains(&self, context_id: u32) -> bool {
        self.entries.contains_key(&context_id)
    }

    /// Removes and returns the connections whose deadline is at or before
    /// `now_ms`, in context-id order.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<(u32, Parked<T>)> {
        let expired: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, parked)| parked.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|parked| (id, parked)))
            .collect()
    }

    /// Removes and returns every parked connection, in context-id order.
    pub fn take_all(&mut self) -> Vec<(u32, Parked<T>)> {
        core::mem::take(&mut self.entries).into_iter().collect()
    }

    /// Number parked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing parked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_expire_and_release() {
        let mut lot = ParkingLot::new(3);
        lot.park(7, 1_000, "a").unwrap();
        lot.park(8, 2_000, "b").unwrap();
        lot.park(9, 3_000, "c").unwrap();
        assert_eq!(lot.park(10, 4_000, "d"), Err(LotFull));
        // Re-parking an id already present is not refused.
        lot.park(9, 3_500, "c2").unwrap();

        let expired = lot.take_expired(2_000);
        assert_eq!(
            expired.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [7, 8]
        );
        assert!(lot.contains(9));
        assert_eq!(lot.remove(9).map(|p| p.payload), Some("c2"));
        assert!(lot.is_empty());
    }

    #[test]
    fn take_all_empties_the_lot() {
        let mut lot = ParkingLot::new(8);
        for id in [5, 3, 4] {
            lot.park(id, 10, id).unwrap();
        }
        let all = lot.take_all();
        assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(lot.len(), 0);
        assert!(lot.take_expired(u64::MAX).is_empty());
    }
}
