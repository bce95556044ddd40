//! The connection table: flow → backend, so established flows keep their
//! backend when the ring changes. Shared LRU by default; a per-CPU variant is
//! selectable at load time for comparison (docs/ARCHITECTURE.md explains the
//! choice and BENCHMARKS.md has the measurement).

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;
use lb_common::{
    Reason,
    maps::{CONN_F_SEQ, ConnEntry, FlowKey, LbConfig, PROTO_UDP},
};

use crate::{
    maps::{CONNTRACK, CONNTRACK_PCPU, CONNTRACK_PER_CPU, FLOOD},
    stats::count,
};

const NS_PER_SEC: u64 = 1_000_000_000;

#[inline(always)]
fn per_cpu() -> bool {
    CONNTRACK_PER_CPU.load() != 0
}

/// Monotonic time at tick resolution (a few ms): all the timeouts here are
/// 100 ms or more, and the coarse clock is a plain memory read.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// What the table holds for a flow.
#[derive(Clone, Copy)]
pub enum Lookup {
    /// A valid entry.
    Hit(*mut ConnEntry),
    /// An entry past its UDP idle timeout: the ring decides again, and the
    /// choice is written over it.
    Expired(*mut ConnEntry),
    Miss,
}

/// The entry for `flow`, if any, valid or not; reads only.
#[inline(always)]
pub fn find(flow: &FlowKey) -> Option<*mut ConnEntry> {
    if per_cpu() {
        CONNTRACK_PCPU.get_ptr_mut(flow)
    } else {
        CONNTRACK.get_ptr_mut(flow)
    }
}

/// Whether `found` (the result of [`find`]) is still valid; counts an
/// expiry and refreshes a UDP entry's idle time (reading the clock for
/// UDP only: TCP entries do not expire by idleness).
#[inline(always)]
pub fn classify<const PROBE: bool>(
    found: Option<*mut ConnEntry>,
    flow: &FlowKey,
    cfg: &LbConfig,
) -> Lookup {
    let Some(entry) = found else {
        return Lookup::Miss;
    };
    // SAFETY: a value pointer returned by a map lookup stays valid for this
    // program run; a racing update can at worst tear the u64 timestamp,
    // which only decides between hit and expiry.
    let last_seen = unsafe { (*entry).last_seen_ns };
    // A per-CPU value never written on this CPU reads as zero.
    if last_seen == 0 {
        return Lookup::Miss;
    }
    if flow.proto == PROTO_UDP {
        let now = now_ns();
        if now.saturating_sub(last_seen) > cfg.udp_idle_ns {
            count::<PROBE>(Reason::ConntrackUdpExpired);
            return Lookup::Expired(entry);
        }
        if !PROBE {
            // SAFETY: as above.
            unsafe { (*entry).last_seen_ns = now };
        }
    }
    Lookup::Hit(entry)
}

/// Records `flow → backend_id` unless the flood guard says the CPU is
/// inserting faster than the configured rate (then an attack's flood of new
/// flows cannot flush the table; the flow is still forwarded by the ring).
/// `present` is the flow's entry when the lookup found one it did not
/// follow (stale, expired, backend gone): it is rewritten in place, since
/// an LRU insert allocates a fresh element even for a key already present
/// (a few hundred ns) and evicts nothing here that the guard must limit.
#[inline(always)]
pub fn record<const PROBE: bool>(
    flow: &FlowKey,
    backend_id: u32,
    vip_id: u32,
    cfg: &LbConfig,
    now: u64,
    seq: Option<u32>,
    present: Option<*mut ConnEntry>,
) {
    if PROBE {
        return;
    }
    let flags = if seq.is_some() { CONN_F_SEQ } else { 0 };
    if let Some(e) = present {
        // SAFETY: a value pointer from this run's lookup. A packet of the
        // flow on another CPU meanwhile reads the old backend or the new
        // one; both are choices the table or the ring made for it.
        unsafe {
            (*e).backend_id = backend_id;
            (*e).vip_id = vip_id;
            (*e).seq = seq.unwrap_or(0);
            (*e).flags = flags;
            (*e).last_seen_ns = now;
        }
        return;
    }
    if cfg.flood_new_flows_per_sec != 0
        && let Some(state) = FLOOD.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot; nothing else runs on this CPU meanwhile.
        let state = unsafe { &mut *state };
        if now.saturating_sub(state.window_start_ns) >= NS_PER_SEC {
            state.window_start_ns = now;
            state.inserts = 0;
        }
        if state.inserts >= cfg.flood_new_flows_per_sec as u64 {
            count::<PROBE>(Reason::FloodGuard);
            return;
        }
        state.inserts += 1;
    }
    let entry = ConnEntry {
        backend_id,
        vip_id,
        last_seen_ns: now,
        seq: seq.unwrap_or(0),
        flags,
    };
    // An insert can only fail for lack of memory; the flow is still
    // forwarded and the next packet retries.
    let _ = if per_cpu() {
        CONNTRACK_PCPU.insert(flow, &entry, 0)
    } else {
        CONNTRACK.insert(flow, &entry, 0)
    };
}
