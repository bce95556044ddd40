//! Delivering a packet to its chosen backend: L2 DSR or a tunnel, with the
//! next hop from the FIB and the too-big check.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Reason,
    maps::{BACKEND_F_HAS_MAC, Backend, FAMILY_V4, FWD_L2_DSR, LbConfig},
};
use lb_ebpf::{l2, packet::write, parse::Ip, verdict::Verdict};

use crate::{encap, nexthop, stats::count, steer::Choice};

#[inline(always)]
fn backend_mac(b: &Backend) -> Option<[u8; 6]> {
    (b.flags & BACKEND_F_HAS_MAC != 0).then_some(b.mac)
}

/// Sends the packet to `choice`'s backend; `ingress` is the receiving
/// ifindex. Returns the XDP action with its reason, a drop, or
/// `Verdict::too_big(mtu)` when the packet may not be fragmented and does
/// not fit (the caller answers with ICMP). Out of line so the hot path's
/// parsing and its delivery each get their own stack frame.
#[inline(never)]
pub fn deliver<const PROBE: bool>(
    ctx: &XdpContext,
    ip: &Ip,
    cfg: &LbConfig,
    choice: &Choice,
    ingress: u32,
) -> Verdict {
    match try_deliver::<PROBE>(ctx, ip, cfg, choice, ingress) {
        Ok(v) => v,
        Err(reason) => Verdict::drop(reason),
    }
}

#[inline(always)]
fn try_deliver<const PROBE: bool>(
    ctx: &XdpContext,
    ip: &Ip,
    cfg: &LbConfig,
    choice: &Choice,
    ingress: u32,
) -> Result<Verdict, Reason> {
    let b = crate::steer::backend(choice.backend_id).ok_or(Reason::DropBadBackend)?;
    let (our_mac, _) = l2::macs(ctx)?;

    if b.fwd_mode == FWD_L2_DSR {
        let hop = nexthop::resolve::<PROBE>(
            ctx,
            ingress,
            choice.backend_id,
            b.family,
            b.addr,
            our_mac,
            backend_mac(b),
        )?;
        write(ctx, 0, hop.dmac).ok_or(Reason::DropMalformedL2)?;
        write(ctx, 6, hop.smac).ok_or(Reason::DropMalformedL2)?;
        let (action, reason) = nexthop::transmit(ingress, &hop)?;
        count::<PROBE>(Reason::FwdL2Dsr);
        return Ok(Verdict::done(action, reason));
    }

    let outer = encap::plan(b, cfg, choice.hash);
    let fallback = backend_mac(b).or(nexthop::gateway(cfg));
    let hop = nexthop::resolve::<PROBE>(
        ctx,
        ingress,
        choice.backend_id,
        outer.family,
        outer.dst,
        our_mac,
        fallback,
    )?;
    if ip.len as u32 + outer.overhead as u32 > cfg.mtu as u32 {
        if ip.family == FAMILY_V4 && !ip.dont_fragment {
            count::<PROBE>(Reason::TooBigNoDf);
        } else {
            return Ok(Verdict::too_big(cfg.mtu.saturating_sub(outer.overhead)));
        }
    }
    encap::encapsulate(ctx, ip, &outer, &hop, choice.hash)?;
    let (action, reason) = nexthop::transmit(ingress, &hop)?;
    count::<PROBE>(Reason::FwdEncap);
    Ok(Verdict::done(action, reason))
}
