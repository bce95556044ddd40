//! Dense ids for VIPs and backend slots.

use std::collections::BTreeSet;

use super::ApplyError;

/// Allocator of dense ids. Allocation moves a cursor forward, so a freed
/// id is reused as late as possible: connection-table entries that still
/// name a released backend then meet an invalid slot (and are re-steered)
/// rather than a new backend.
#[derive(Debug)]
pub(super) struct IdPool {
    free: BTreeSet<u32>,
    cursor: u32,
}

impl IdPool {
    pub fn new(size: u32) -> Self {
        Self {
            free: (0..size).collect(),
            cursor: 0,
        }
    }

    /// Marks `id` as in use (found in the tables).
    pub fn take(&mut self, id: u32) -> bool {
        self.cursor = self.cursor.max(id + 1);
        self.free.remove(&id)
    }

    pub fn alloc(&mut self) -> Option<u32> {
        let id = self
            .free
            .range(self.cursor..)
            .next()
            .or_else(|| self.free.iter().next())
            .copied()?;
        self.free.remove(&id);
        self.cursor = id + 1;
        Some(id)
    }

    pub fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

/// A fresh backend id; when none is free, one of the ids leaving in the same
/// change (its old flows may then briefly reach the new backend). The
/// cross-VIP check has already bounded the total by the map size.
pub(super) fn alloc_backend_id(
    pool: &mut IdPool,
    retiring: &mut Vec<u32>,
) -> Result<u32, ApplyError> {
    pool.alloc()
        .or_else(|| retiring.pop())
        .ok_or_else(|| ApplyError::Rejected("no free backend id (limits.max_backends)".into()))
}
