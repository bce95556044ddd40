//! Backend choice for a flow: connection table first (unless SYN), then the
//! VIP's live Maglev table.

use lb_common::{
    Reason,
    hash::flow_hash,
    limits::NO_BACKEND,
    maps::{
        BACKEND_F_DOWN, BACKEND_F_VALID, Backend, CFG_F_NO_CONNTRACK, CONN_F_SEQ, ConnEntry,
        EXPLAIN_PATH_RING, EXPLAIN_PATH_TABLE, FlowKey, LbConfig, VIP_F_GUARDED,
        VIP_F_MOVE_FLOWS_ON_DOWN, VipMeta,
    },
};

use crate::{
    conntrack::{self, Lookup},
    guard,
    maps::{BACKENDS, EXPLAIN, RING_SELECT, RING_SIZE, RINGS},
    stats::count,
};

/// The chosen backend.
#[repr(C)]
pub struct Choice {
    pub backend_id: u32,
    /// The ring chose (connection-table miss).
    pub new_flow: bool,
    pub hash: u32,
}

/// The backend in slot `id`, if the slot is in use. A reference into the
/// map, not a copy: the delivery step reads it again by id.
#[inline(always)]
pub fn backend(id: u32) -> Option<&'static Backend> {
    let b = BACKENDS.get(id)?;
    if b.flags & BACKEND_F_VALID == 0 {
        return None;
    }
    Some(b)
}

/// The live ring's slot for `hash`.
#[inline(always)]
pub fn ring_slot(vip: &VipMeta, hash: u32) -> Result<u32, Reason> {
    let m = RING_SIZE.load();
    let half = match RING_SELECT.get(vip.id) {
        Some(h) => *h & 1,
        None => return Err(Reason::DropNoBackend),
    };
    // A zero M is impossible (the agent validates it) but would otherwise be a
    // division the verifier rejects.
    let Some(slot) = hash.checked_rem(m) else {
        return Err(Reason::DropNoBackend);
    };
    let index = (vip.id * 2 + half) * m + slot;
    let Some(pair) = RINGS.get(index / 2) else {
        return Err(Reason::DropNoBackend);
    };
    let id = if index & 1 == 0 { pair[0] } else { pair[1] };
    if id == NO_BACKEND {
        return Err(Reason::DropNoBackend);
    }
    Ok(id)
}

/// For an explain probe, records how the backend was chosen.
#[inline(always)]
fn explain<const PROBE: bool>(vip: &VipMeta, backend_id: u32, hash: u32, path: u32) {
    if !PROBE {
        return;
    }
    let Some(e) = EXPLAIN.get_ptr_mut(0) else {
        return;
    };
    let m = RING_SIZE.load();
    let half = RING_SELECT.get(vip.id).map_or(0, |h| *h & 1);
    // SAFETY: per-CPU slot of this program run.
    unsafe {
        (*e).vip_id = vip.id;
        (*e).backend_id = backend_id;
        (*e).hash = hash;
        (*e).slot = hash.checked_rem(m).unwrap_or(0);
        (*e).half = half;
        (*e).path = path;
    }
}

/// What the caller knows of the packet when it asks for a backend.
#[derive(Clone, Copy)]
pub struct Request {
    /// A TCP SYN: it always takes the ring's choice (a new connection must
    /// never inherit a stale entry) and re-records it.
    pub syn: bool,
    /// Record the choice in the connection table (not for ICMP errors,
    /// which follow their flow's entry but never create one).
    pub record: bool,
    /// The packet's TCP sequence number.
    pub seq: Option<u32>,
    /// The caller's connection-table lookup of the flow, if it made one
    /// (`Some(None)`: it found nothing).
    pub found: Option<Option<*mut ConnEntry>>,
}

/// A TCP packet whose sequence number is further than this from its
/// entry's is another connection of the same 5-tuple: an ECMP change
/// brought it to this host, whose entry was left by an earlier one. 16 MiB:
/// a live flow moves that far between two packets seen here only if it was
/// away meanwhile, and then the ring (identical on every host) sends it to
/// the same backend unless the ring changed too.
const SEQ_WINDOW: u32 = 1 << 24;
/// The entry follows a flow that moved on by this much (a quarter of the
/// window: one write per 4 MiB of client data, not one per packet).
const SEQ_REFRESH: i32 = 1 << 22;

/// Whether the entry belongs to an earlier connection of the same 5-tuple;
/// refreshes its sequence number when the flow has moved on. An explain
/// probe's made-up sequence number says nothing: never stale for it.
#[inline(always)]
fn stale<const PROBE: bool>(entry: *mut ConnEntry, seq: Option<u32>) -> bool {
    let Some(seq) = seq else { return false };
    // SAFETY: map value pointer, valid for this run.
    let (flags, stored) = unsafe { ((*entry).flags, (*entry).seq) };
    if flags & CONN_F_SEQ == 0 || PROBE {
        return false;
    }
    let d = seq.wrapping_sub(stored) as i32;
    if d.unsigned_abs() > SEQ_WINDOW {
        count::<PROBE>(Reason::ConntrackStale);
        return true;
    }
    if d > SEQ_REFRESH {
        // SAFETY: as above.
        unsafe { (*entry).seq = seq };
    }
    false
}

/// Picks the backend for a packet of `flow`, or the reason to drop it.
/// Inlined into the program's body: as a BPF function of its own it cost a
/// hot table hit 20–30 ns (arguments and the choice went through the stack;
/// BENCHMARKS.md).
#[inline(always)]
pub fn choose<const PROBE: bool>(
    flow: &FlowKey,
    vip: &VipMeta,
    cfg: &LbConfig,
    req: Request,
) -> Result<Choice, Reason> {
    let Request {
        syn: is_syn,
        record,
        seq,
        found,
    } = req;
    let hash = flow_hash(flow, vip.hash_mode, cfg.hash_seed);
    let use_table = cfg.flags & CFG_F_NO_CONNTRACK == 0;
    let found = if use_table && !is_syn {
        let entry = found.unwrap_or_else(|| conntrack::find(flow));
        conntrack::classify::<PROBE>(entry, flow, cfg)
    } else {
        Lookup::Miss
    };
    if let Lookup::Hit(entry) = found
        && !stale::<PROBE>(entry, seq)
    {
        // SAFETY: map value pointer, valid for this run.
        let id = unsafe { (*entry).backend_id };
        match backend(id) {
            Some(b)
                if b.flags & BACKEND_F_DOWN != 0 && vip.flags & VIP_F_MOVE_FLOWS_ON_DOWN != 0 =>
            {
                count::<PROBE>(Reason::ConntrackBackendDown);
            }
            // A freed id may since belong to another VIP's backend.
            Some(b) if b.vip_id == vip.id => {
                count::<PROBE>(Reason::ConntrackHit);
                explain::<PROBE>(vip, id, hash, EXPLAIN_PATH_TABLE);
                return Ok(Choice {
                    backend_id: id,
                    new_flow: false,
                    hash,
                });
            }
            // The slot was freed under the flow (backend removed) or reused:
            // steer again.
            _ => {}
        }
    }
    // An entry present but not followed is rewritten, not inserted again.
    let present = match found {
        Lookup::Hit(entry) | Lookup::Expired(entry) => Some(entry),
        Lookup::Miss => None,
    };
    count::<PROBE>(Reason::ConntrackMiss);
    // The clock is read here for the new flow's guard and entry (and in
    // `classify` for a UDP entry's idle time): a TCP table hit reads none,
    // which saves a helper call.
    let now = conntrack::now_ns();
    if vip.flags & VIP_F_GUARDED != 0 && record {
        let admitted = guard::admit_new_flow::<PROBE>(vip.id, flow.family as u32, &flow.src, now);
        if admitted.is_done() {
            return Err(admitted.reason());
        }
    }
    let id = ring_slot(vip, hash)?;
    explain::<PROBE>(vip, id, hash, EXPLAIN_PATH_RING);
    backend(id).ok_or(Reason::DropBadBackend)?;
    if use_table && record {
        conntrack::record::<PROBE>(flow, id, vip.id, cfg, now, seq, present);
    }
    Ok(Choice {
        backend_id: id,
        new_flow: true,
        hash,
    })
}
