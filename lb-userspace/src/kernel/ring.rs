//! The `RINGS` array mapped into our memory (`BPF_F_MMAPABLE`): a whole
//! Maglev table is written with plain stores instead of a syscall per slot.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::MapData;

use super::DataplaneError;

pub(crate) struct RingMemory {
    ptr: *mut AtomicU32,
    entries: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory accessed through atomics; it
// is not tied to the creating thread.
unsafe impl Send for RingMemory {}
// SAFETY: as above: every access is an atomic load or store.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    /// Maps `entries` u32 slots of the array behind `data`.
    pub(crate) fn map(data: &MapData, entries: u64) -> Result<Self, DataplaneError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (entries as usize * 4).div_ceil(page) * page;
        // SAFETY: mapping a BPF_F_MMAPABLE array's fd, shared, at offset 0
        // for at most its size; the kernel validates all of it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Mmap(std::io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: ptr.cast(),
            entries: entries as usize,
            bytes,
        })
    }

    /// One half of a VIP's ring pair.
    pub(crate) fn read(&self, ring_size: u32, vip_id: u32, half: u32) -> Vec<u32> {
        (0..ring_size)
            .map(|s| {
                self.slot(slot_index(ring_size, vip_id, half, s))
                    .load(Ordering::Relaxed)
            })
            .collect()
    }

    pub(crate) fn slot(&self, index: usize) -> &AtomicU32 {
        assert!(
            index < self.entries,
            "ring index {index} out of {}",
            self.entries
        );
        // SAFETY: index is inside the mapping, which lives as long as self.
        unsafe { &*self.ptr.add(index) }
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

/// Index of a slot in the array: two halves of `ring_size` slots per VIP.
pub(crate) fn slot_index(ring_size: u32, vip_id: u32, half: u32, slot: u32) -> usize {
    (vip_id as usize * 2 + (half & 1) as usize) * ring_size as usize + slot as usize
}
