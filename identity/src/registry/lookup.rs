//! Where a verdict finds registrations.

use super::entry::RegistryEntry;
use super::snapshot::RegistrySnapshot;
use crate::digest::WorkloadId;

/// A registry a verdict can consult: a decoded [`RegistrySnapshot`], or one
/// read in place from elsewhere (a filter VM reads the registry from shared
/// data piece by piece).
pub trait RegistryLookup {
    /// The entry registered for `id`, if any.
    fn entry(&self, id: &WorkloadId) -> Option<RegistryEntry>;
}

impl RegistryLookup for RegistrySnapshot {
    fn entry(&self, id: &WorkloadId) -> Option<RegistryEntry> {
        self.get(id).copied()
    }
}
