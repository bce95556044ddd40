//! VIP lookup: exact (address, port, protocol), then, if any VIP listens on
//! all ports, the all-ports VIP (address, port 0, protocol); and the
//! per-address marker.

use lb_common::maps::{VipKey, VipMeta};

use crate::maps::{VIP_FILTER, VIPS};

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
