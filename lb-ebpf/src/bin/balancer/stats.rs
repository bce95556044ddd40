//! Counters. Per-CPU, so increments are plain adds without atomics.

use lb_common::{Reason, maps::TrafficStats};

use crate::maps::{BACKEND_STATS, DRY_RUN, STATS, VIP_STATS};

/// Is this packet an `lbctl explain` probe (record nothing)?
#[inline(always)]
pub fn dry_run() -> bool {
    DRY_RUN.get(0).is_some_and(|d| *d != 0)
}

#[inline(always)]
pub fn count(reason: Reason) {
    if dry_run() {
        return;
    }
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot; nothing else runs on this CPU meanwhile.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add(stats: Option<*mut TrafficStats>, bytes: u64, new_flow: bool) {
    if let Some(s) = stats {
        // SAFETY: per-CPU slot, as above.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += bytes;
            if new_flow {
                (*s).new_flows += 1;
            }
        }
    }
}

#[inline(always)]
pub fn count_traffic(vip_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    if dry_run() {
        return;
    }
    add(VIP_STATS.get_ptr_mut(vip_id), bytes, new_flow);
    add(BACKEND_STATS.get_ptr_mut(backend_id), bytes, new_flow);
}
