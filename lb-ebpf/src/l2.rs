//! Growing the frame in front of the L3 header while keeping the Ethernet
//! (and VLAN) header in front. The old header is copied forward from inside
//! the packet rather than saved on the stack: byte arrays held across the
//! helper call become a dozen spilled registers.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{
    Reason,
    wire::{ETH_HLEN, VLAN_HLEN},
};

use crate::packet::{read, write};

/// Moves the start of the frame by `delta` bytes (negative grows it).
#[inline(always)]
pub fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), Reason> {
    // SAFETY: the helper only moves ctx->data within the buffer's headroom
    // and fails otherwise; all later access re-checks bounds via ptr_at.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return Err(Reason::DropNoHeadroom);
    }
    Ok(())
}

/// Grows the frame by `grow` bytes (≥ 18) in front of the L3 header at
/// `l3_off` and writes a fresh L2 header: `dst`/`src` MACs, the VLAN tag
/// copied from the old header if there was one, and `ether_type`.
#[inline(always)]
pub fn push_front(
    ctx: &XdpContext,
    l3_off: usize,
    grow: usize,
    dst: [u8; 6],
    src: [u8; 6],
    ether_type: u16,
) -> Result<(), Reason> {
    adjust_head(ctx, -(grow as i32))?;
    // The old L2 header now starts at `grow`, clear of the new one.
    let et = ether_type.to_be_bytes();
    if l3_off == ETH_HLEN + VLAN_HLEN {
        let tag = read::<[u8; 4]>(ctx, grow + 12).ok_or(Reason::DropMalformedL2)?;
        write(ctx, 12, tag).ok_or(Reason::DropMalformedL2)?;
        write(ctx, 16, et).ok_or(Reason::DropMalformedL2)?;
    } else {
        write(ctx, 12, et).ok_or(Reason::DropMalformedL2)?;
    }
    write(ctx, 0, dst).ok_or(Reason::DropMalformedL2)?;
    write(ctx, 6, src).ok_or(Reason::DropMalformedL2)
}

/// Destination and source MAC of the frame.
#[inline(always)]
pub fn macs(ctx: &XdpContext) -> Result<([u8; 6], [u8; 6]), Reason> {
    let dst = read::<[u8; 6]>(ctx, 0).ok_or(Reason::DropMalformedL2)?;
    let src = read::<[u8; 6]>(ctx, 6).ok_or(Reason::DropMalformedL2)?;
    Ok((dst, src))
}

/// Shrinks the frame by `shrink` bytes right after the L2 header at
/// `l3_off` (removing an outer header) and sets the L2 EtherType.
#[inline(always)]
pub fn pop_front(
    ctx: &XdpContext,
    l3_off: usize,
    shrink: usize,
    ether_type: u16,
) -> Result<(), Reason> {
    // Copy the L2 header forward onto the end of the outer header first,
    // while both are in the frame; then drop the front.
    let (dst, src) = macs(ctx)?;
    let et = ether_type.to_be_bytes();
    if l3_off == ETH_HLEN + VLAN_HLEN {
        let tag = read::<[u8; 4]>(ctx, 12).ok_or(Reason::DropMalformedL2)?;
        write(ctx, shrink + 12, tag).ok_or(Reason::DecapDropMalformed)?;
        write(ctx, shrink + 16, et).ok_or(Reason::DecapDropMalformed)?;
    } else {
        write(ctx, shrink + 12, et).ok_or(Reason::DecapDropMalformed)?;
    }
    write(ctx, shrink, dst).ok_or(Reason::DecapDropMalformed)?;
    write(ctx, shrink + 6, src).ok_or(Reason::DecapDropMalformed)?;
    adjust_head(ctx, shrink as i32)
}
