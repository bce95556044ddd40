//! VIP lookup: exact (address, port, protocol), then, if any VIP listens on
//! all ports, the all-ports VIP (address, port 0, protocol); the service
//! of an established flow from its connection-table entry; and the
//! per-address marker.

use lb_common::maps::{ConnEntry, FlowKey, VIP_RECORD_WORDS, VipKey, VipMeta, VipRecord};

use crate::maps::{BACKENDS, VIP_FILTER, VIP_INDEX, VIPS};

/// Whether `addr` may be a VIP address (`VIP_FILTER`); false is certain.
#[inline(always)]
pub fn may_be_vip(family: u8, addr: &[u32; 4]) -> bool {
    VIP_FILTER.get(0).is_none_or(|f| f.may_hold(family, addr))
}

#[inline(always)]
pub fn lookup(
    family: u8,
    addr: [u32; 4],
    port: u16,
    proto: u8,
    all_ports_vips: bool,
) -> Option<VipMeta> {
    let mut key = VipKey {
        addr,
        port,
        proto,
        family,
    };
    // SAFETY: values are read once and copied out; the agent replaces VIP
    // entries whole.
    if let Some(meta) = unsafe { VIPS.get(&key) } {
        return Some(*meta);
    }
    if !all_ports_vips {
        return None;
    }
    key.port = 0;
    // SAFETY: as above.
    unsafe { VIPS.get(&key) }.copied()
}

/// The service of a packet whose flow has a connection-table entry: the
/// VIP whose backend the entry names, when the packet is addressed exactly
/// to that VIP's key (`VIP_INDEX` holds each service's `VIPS` key and
/// entry). Array reads only, no hash lookup; the entry is only a hint, so
/// an expired, stale or reused one gives the same answer `lookup` would.
/// `None` (an all-ports service, an entry of another VIP) leaves the
/// answer to `lookup`.
#[inline(always)]
pub fn of_entry(entry: *mut ConnEntry, flow: &FlowKey) -> Option<VipMeta> {
    // SAFETY: a value pointer from this run's connection-table lookup.
    let backend_id = unsafe { (*entry).backend_id };
    let vip_id = BACKENDS.get(backend_id)?.vip_id;
    let r = VIP_INDEX.get_ptr(vip_id)?.cast::<u32>();
    // Each word read once, volatile, and sealed as it is compared: the seal
    // must vouch for exactly the words used (a record may be half-written;
    // see `VipRecord`), and nothing is held that need not be.
    // SAFETY: i < 10 indexes the 40-byte record.
    let word = |i: usize| unsafe { r.add(i).read_volatile() };
    let mut sum = 0u32;
    for (i, want) in flow.dst.iter().enumerate() {
        let w = word(i);
        if w != *want {
            return None;
        }
        sum = sum.wrapping_add(VipRecord::seal_term(i, w));
    }
    // Volatile: LLVM would otherwise merge the three fields into one
    // 4-byte load at a 2-byte-aligned stack offset, which the verifier
    // rejects.
    // SAFETY: fields of a live reference.
    let (dport, proto, family) = unsafe {
        (
            core::ptr::read_volatile(&flow.dport),
            core::ptr::read_volatile(&flow.proto),
            core::ptr::read_volatile(&flow.family),
        )
    };
    let port = u32::from_ne_bytes(VipRecord::port_word(dport, proto, family));
    if word(4) != port {
        return None;
    }
    let (id, flags, hash_mode, pad) = (word(5), word(6), word(7), word(8));
    let sum = sum
        .wrapping_add(VipRecord::seal_term(4, port))
        .wrapping_add(VipRecord::seal_term(5, id))
        .wrapping_add(VipRecord::seal_term(6, flags))
        .wrapping_add(VipRecord::seal_term(7, hash_mode))
        .wrapping_add(VipRecord::seal_term(8, pad));
    if VipRecord::seal_of_sum(sum) != word(VIP_RECORD_WORDS) {
        return None;
    }
    Some(VipMeta {
        id,
        flags,
        hash_mode,
        _pad: pad,
    })
}

/// The marker of a VIP address (port 0, protocol 0), present for every
/// address that has at least one VIP.
#[inline(always)]
pub fn marker(family: u8, addr: [u32; 4]) -> Option<VipMeta> {
    let key = VipKey {
        addr,
        port: 0,
        proto: 0,
        family,
    };
    // SAFETY: as above.
    unsafe { VIPS.get(&key) }.copied()
}
