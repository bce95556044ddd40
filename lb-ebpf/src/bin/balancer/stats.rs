//! Counters. Per-CPU, so increments are plain adds without atomics.
//!
//! `PROBE` is true on the path of an `lbctl explain` probe, which records
//! nothing: the balancer is compiled once for probes and once for traffic
//! (see `lb_balancer`), so a packet pays no test for it.

use lb_common::{Reason, maps::TrafficStats};

use crate::maps::{BACKEND_STATS, STATS, VIP_STATS};

#[inline(always)]
pub fn count<const PROBE: bool>(reason: Reason) {
    if PROBE {
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
pub fn count_traffic<const PROBE: bool>(vip_id: u32, backend_id: u32, bytes: u64, new_flow: bool) {
    if PROBE {
        return;
    }
    add(VIP_STATS.get_ptr_mut(vip_id), bytes, new_flow);
    add(BACKEND_STATS.get_ptr_mut(backend_id), bytes, new_flow);
}
