//! What a packet must pass before it is steered: hygiene (no martian
//! source, a possible TCP flag set, IPv4 options that fit their header —
//! for every packet to a VIP address) and, for VIPs with an access guard,
//! the allow and deny lists and the rate limits (per source prefix: packets
//! here, new flows at steering; the VIP's own new-flow budget). Every drop
//! is counted by reason, globally and per VIP.

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::maps::lpm_trie::Key;
use lb_common::{
    Reason,
    maps::{
        ACL_ALLOW, ACL_DENY, AclKey, FAMILY_V4, GUARD_F_ACL, GUARD_F_ALLOW_LIST, RateKey,
        RateState, VipGuard, acl_scope,
    },
};
use lb_ebpf::{
    parse::{Ip, TCP_FIN, TCP_RST, TCP_SYN},
    verdict::Verdict,
};

use crate::{
    maps::{ACL, GUARD_STATS, RATE, VIP_BUDGET, VIP_GUARD},
    vip,
};

/// A guard or hygiene drop of a packet to `vip_id`: counted for the VIP
/// here, globally (as every verdict) by the caller's final count.
#[inline(always)]
pub fn dropped<const PROBE: bool>(vip_id: u32, reason: Reason) -> Verdict {
    if !PROBE
        && let Some(s) = GUARD_STATS.get_ptr_mut(vip_id)
    {
        let i = (reason as usize).wrapping_sub(Reason::DropMartianSource as usize);
        // SAFETY: per-CPU slot; the index is bounds-checked.
        if let Some(c) = unsafe { (*s).drops.get_mut(i) } {
            *c += 1;
        }
    }
    Verdict::drop(reason)
}

/// A packet the parser found suspect: dropped and counted if it is to a
/// VIP address, passed untouched otherwise. Out of line: rare.
#[inline(never)]
pub fn reject_suspect<const PROBE: bool>(family: u8, dst: &[u32; 4], suspect: u8) -> Verdict {
    let Some(marker) = vip::marker(family, *dst) else {
        return Verdict::done(xdp_action::XDP_PASS, Reason::PassNotVip);
    };
    let reason = if suspect == Reason::DropMartianSource as u8 {
        Reason::DropMartianSource
    } else {
        Reason::DropBadIpOptions
    };
    dropped::<PROBE>(marker.id, reason)
}

/// SYN+FIN, SYN+RST, or no flag at all: no TCP stack sends these.
#[inline(always)]
pub fn impossible_tcp_flags(f: u8) -> bool {
    f & (TCP_SYN | TCP_FIN) == TCP_SYN | TCP_FIN
        || f & (TCP_SYN | TCP_RST) == TCP_SYN | TCP_RST
        || f == 0
}

/// GCRA: whether one more event fits `interval`/`tolerance` at `now`.
#[inline(always)]
fn admit(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> bool {
    if interval == 0 {
        return true;
    }
    let t = if *tat > now { *tat } else { now };
    if t - now > tolerance {
        return false;
    }
    *tat = t + interval;
    true
}

/// Charges one event to the source's packet bucket (`PACKET`) or new-flow
/// bucket: false if it is over its rate. A source without buckets gets
/// them, this event charged.
#[inline(always)]
fn charge_source<const PACKET: bool>(
    key: &RateKey,
    now: u64,
    interval: u64,
    tolerance: u64,
) -> bool {
    if let Some(st) = RATE.get_ptr_mut(key) {
        // SAFETY: per-CPU value, this run's.
        let st = unsafe { &mut *st };
        let tat = if PACKET {
            &mut st.pkt_tat_ns
        } else {
            &mut st.flow_tat_ns
        };
        return admit(tat, now, interval, tolerance);
    }
    let first = now + interval;
    let st = if PACKET {
        RateState {
            flow_tat_ns: 0,
            pkt_tat_ns: first,
        }
    } else {
        RateState {
            flow_tat_ns: first,
            pkt_tat_ns: 0,
        }
    };
    let _ = RATE.insert(key, &st, 0);
    true
}

/// The source's bucket key under the VIP's source prefix.
#[inline(always)]
fn rate_key(g: &VipGuard, vip_id: u32, family: u8, src: &[u32; 4]) -> RateKey {
    let addr = if family == FAMILY_V4 {
        [src[0] & g.src_mask_v4, 0, 0, 0]
    } else {
        [
            src[0] & g.src_mask_v6[0],
            src[1] & g.src_mask_v6[1],
            src[2] & g.src_mask_v6[2],
            src[3] & g.src_mask_v6[3],
        ]
    };
    RateKey {
        vip_id,
        family: family as u32,
        addr,
    }
}

/// A guarded VIP's allow and deny lists, then the source's packet rate.
/// Out of line: its keys get their own stack frame.
#[inline(never)]
pub fn admit_packet<const PROBE: bool>(vip_id: u32, ip: &Ip, now: u64) -> Verdict {
    let Some(g) = VIP_GUARD.get(vip_id) else {
        return Verdict::proceed();
    };
    if g.flags & GUARD_F_ACL != 0 {
        let bits = if ip.family == FAMILY_V4 { 32 } else { 128 };
        let key = Key::new(
            64 + bits,
            AclKey {
                scope: acl_scope(vip_id, g.acl_gen),
                family: ip.family as u32,
                addr: ip.src,
            },
        );
        match ACL.get(&key).copied() {
            Some(ACL_DENY) => return dropped::<PROBE>(vip_id, Reason::DropDenied),
            Some(ACL_ALLOW) => {}
            _ if g.flags & GUARD_F_ALLOW_LIST != 0 => {
                return dropped::<PROBE>(vip_id, Reason::DropNotAllowed);
            }
            _ => {}
        }
    }
    if g.src_pkt_interval_ns != 0 && !PROBE {
        let key = rate_key(g, vip_id, ip.family, &ip.src);
        if !charge_source::<true>(&key, now, g.src_pkt_interval_ns, g.src_pkt_tolerance_ns) {
            return dropped::<PROBE>(vip_id, Reason::DropSourceRateLimit);
        }
    }
    Verdict::proceed()
}

/// A new flow of a guarded VIP: the source's new-flow rate, then the
/// VIP's budget. Out of line, as above.
#[inline(never)]
pub fn admit_new_flow<const PROBE: bool>(
    vip_id: u32,
    family: u32,
    src: &[u32; 4],
    now: u64,
) -> Verdict {
    let Some(g) = VIP_GUARD.get(vip_id) else {
        return Verdict::proceed();
    };
    if PROBE {
        return Verdict::proceed();
    }
    if g.src_flow_interval_ns != 0 {
        let key = rate_key(g, vip_id, family as u8, src);
        if !charge_source::<false>(&key, now, g.src_flow_interval_ns, g.src_flow_tolerance_ns) {
            return dropped::<PROBE>(vip_id, Reason::DropSourceFlowLimit);
        }
    }
    if g.vip_flow_interval_ns != 0
        && let Some(tat) = VIP_BUDGET.get_ptr_mut(vip_id)
    {
        // SAFETY: per-CPU slot.
        let tat = unsafe { &mut *tat };
        if !admit(tat, now, g.vip_flow_interval_ns, g.vip_flow_tolerance_ns) {
            return dropped::<PROBE>(vip_id, Reason::DropVipFlowBudget);
        }
    }
    Verdict::proceed()
}
