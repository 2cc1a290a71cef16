//! The registry a VM decides with: decoded in the VM, or read in place from
//! shared data.

use alloc::rc::Rc;
use core::cell::Cell;
use core::fmt;

use mazu_identity::{RegistryEntry, RegistryLookup, RegistrySnapshot, WorkloadId};

use crate::shared::{SharedRegistry, SharedStore, Unreadable};

/// The registry a VM holds.
pub enum HeldRegistry {
    /// Decoded in this VM: the VM that follows the log keeps the registry
    /// it derived.
    Whole(RegistrySnapshot),
    /// Verified in shared data and read there in place: every other VM.
    Shared {
        /// Where its pieces are and what they hash to.
        registry: SharedRegistry,
        /// The shared data it is read from.
        store: Rc<dyn SharedStore>,
    },
}

impl HeldRegistry {
    /// The registry's version (the log size).
    pub fn version(&self) -> u64 {
        match self {
            HeldRegistry::Whole(snapshot) => snapshot.version(),
            HeldRegistry::Shared { registry, .. } => registry.version(),
        }
    }

    /// Number of registry entries.
    pub fn len(&self) -> usize {
        match self {
            HeldRegistry::Whole(snapshot) => snapshot.len(),
            HeldRegistry::Shared { registry, .. } => registry.len(),
        }
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry of `id`; [`Unreadable`] if shared data no longer holds
    /// the verified piece that would answer.
    pub fn get(&self, id: &WorkloadId) -> Result<Option<RegistryEntry>, Unreadable> {
        match self {
            HeldRegistry::Whole(snapshot) => Ok(snapshot.get(id).copied()),
            HeldRegistry::Shared { registry, store } => registry.get(&**store, id),
        }
    }
}

impl From<RegistrySnapshot> for HeldRegistry {
    fn from(snapshot: RegistrySnapshot) -> Self {
        HeldRegistry::Whole(snapshot)
    }
}

impl fmt::Debug for HeldRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            HeldRegistry::Whole(_) => "whole",
            HeldRegistry::Shared { .. } => "shared",
        };
        f.debug_struct("HeldRegistry")
            .field("kind", &kind)
            .field("version", &self.version())
            .field("len", &self.len())
            .finish()
    }
}

/// The registry as one verdict sees it: remembers whether a lookup could
/// not be answered, so that the verdict is not used (nor cached).
pub(super) struct VerdictLookup<'a> {
    held: &'a HeldRegistry,
    unreadable: Cell<bool>,
}

impl<'a> VerdictLookup<'a> {
    pub(super) fn new(held: &'a HeldRegistry) -> Self {
        VerdictLookup {
            held,
            unreadable: Cell::new(false),
        }
    }

    /// Whether a lookup failed.
    pub(super) fn was_unreadable(&self) -> bool {
        self.unreadable.get()
    }
}

impl RegistryLookup for VerdictLookup<'_> {
    fn entry(&self, id: &WorkloadId) -> Option<RegistryEntry> {
        self.held.get(id).unwrap_or_else(|Unreadable| {
            self.unreadable.set(true);
            None
        })
    }
}
