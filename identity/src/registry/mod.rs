//! The registry as the filter sees it: workload ID → (slot, key hash, expiry,
//! revoked), at a curator log size, with a canonical binary encoding and
//! incremental deltas, and its derivation from the curator's log ([`derive`]).

mod codec;
mod delta;
pub mod derive;
mod entry;
mod error;
mod lookup;
mod snapshot;

pub use delta::{DELTA_FORMAT, DELTA_HEADER_LEN, DELTA_MAGIC, RegistryDelta};
pub use derive::{
    DerivedRegistry, FollowError, IdState, LogFollower, STATE_ENTRY_LEN, STATE_FORMAT, STATE_MAGIC,
    StateError, StateSummary, StateWalker, VoidReason, VoidRecord, registry_entry_in,
};
pub use entry::{ENTRY_LEN, RegistryEntry};
pub use error::RegistryError;
pub use lookup::RegistryLookup;
pub use snapshot::{RegistrySnapshot, SNAPSHOT_FORMAT, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC};

#[cfg(test)]
mod tests;
