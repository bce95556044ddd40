//! ICMP at a VIP address: echo replies, "too big" replies to clients, and
//! steering inbound frag-needed / packet-too-big errors to the backend that
//! owns the flow they are about (so path-MTU discovery works through DSR).

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_csum_diff, programs::XdpContext};
use lb_common::{
    Reason,
    csum::{fold, replace_u16},
    maps::{
        FAMILY_V4, FAMILY_V6, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
        VIP_F_ICMP_ECHO,
    },
    wire::{
        ETH_P_IP, ETH_P_IPV6, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        ICMP_FRAG_NEEDED, ICMP_HLEN, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_PKT_TOOBIG,
        IPV4_HLEN, IPV6_HLEN, IPV6_MIN_MTU, OUTER_TTL, ipv4_header, ipv6_header,
    },
};
use lb_ebpf::{
    l2,
    packet::{len, ptr_at_mut, read, write},
    parse::{Ip, bytes16},
    verdict::Verdict,
};

/// Bytes of the offending packet quoted in a frag-needed (its IPv4 header
/// with the longest options plus 8 bytes of L4: RFC 792).
const QUOTE_V4: usize = 68;
/// Bytes quoted in a packet-too-big (IPv6 header plus 24 bytes of L4).
const QUOTE_V6: usize = 64;

// Out of line: a rare path with its own stack frame, which keeps the hot
// path's frame small.
#[inline(never)]
/// Answers echo requests, passes unrelated ICMP, or returns
/// `Verdict::steer()` with the quoted flow written to `quoted`.
pub fn handle(ctx: &XdpContext, ip: &Ip, marker_flags: u32, quoted: &mut FlowKey) -> Verdict {
    match try_handle(ctx, ip, marker_flags, quoted) {
        Ok(v) => v,
        Err(reason) => Verdict::drop(reason),
    }
}

#[inline(always)]
fn try_handle(
    ctx: &XdpContext,
    ip: &Ip,
    marker_flags: u32,
    quoted: &mut FlowKey,
) -> Result<Verdict, Reason> {
    if !ip.holds(ip.l4_off, ICMP_HLEN) {
        return Err(Reason::DropMalformedIcmp);
    }
    let hdr = read::<[u8; ICMP_HLEN]>(ctx, ip.l4_off).ok_or(Reason::DropMalformedIcmp)?;
    let v4 = ip.family == FAMILY_V4;
    let echo = if v4 {
        hdr[0] == ICMP_ECHO_REQUEST
    } else {
        hdr[0] == ICMPV6_ECHO_REQUEST
    };
    if echo && marker_flags & VIP_F_ICMP_ECHO != 0 {
        let (action, reason) = echo_reply(ctx, ip, hdr)?;
        return Ok(Verdict::done(action, reason));
    }
    let too_big = if v4 {
        hdr[0] == ICMP_DEST_UNREACH && hdr[1] == ICMP_FRAG_NEEDED
    } else {
        hdr[0] == ICMPV6_PKT_TOOBIG
    };
    if too_big {
        *quoted = quoted_flow(ctx, ip).ok_or(Reason::DropMalformedIcmp)?;
        let same = quoted.dst[0] == ip.dst[0]
            && quoted.dst[1] == ip.dst[1]
            && quoted.dst[2] == ip.dst[2]
            && quoted.dst[3] == ip.dst[3];
        // A quote of a packet from another address is not about our VIP.
        if same {
            return Ok(Verdict::steer());
        }
    }
    Ok(Verdict::done(xdp_action::XDP_PASS, Reason::PassIcmpOther))
}

/// Turns the echo request into the reply in place and sends it back.
#[inline(always)]
fn echo_reply(ctx: &XdpContext, ip: &Ip, hdr: [u8; ICMP_HLEN]) -> Result<(u32, Reason), Reason> {
    let l3 = ip.l3_off;
    let old_check = u16::from_be_bytes([hdr[2], hdr[3]]);
    let old_word = u16::from_be_bytes([hdr[0], hdr[1]]);
    let reply = if ip.family == FAMILY_V4 {
        write(ctx, l3 + 12, ip.dst[0].to_ne_bytes()).ok_or(Reason::DropMalformedL3)?;
        write(ctx, l3 + 16, ip.src[0].to_ne_bytes()).ok_or(Reason::DropMalformedL3)?;
        // Fresh TTL: fix the header checksum for the TTL/protocol word.
        let ttl_proto = read::<[u8; 2]>(ctx, l3 + 8).ok_or(Reason::DropMalformedL3)?;
        let ip_check =
            u16::from_be_bytes(read::<[u8; 2]>(ctx, l3 + 10).ok_or(Reason::DropMalformedL3)?);
        let new_ttl_proto = [OUTER_TTL, ttl_proto[1]];
        let ip_check = replace_u16(
            ip_check,
            u16::from_be_bytes(ttl_proto),
            u16::from_be_bytes(new_ttl_proto),
        );
        write(ctx, l3 + 8, new_ttl_proto).ok_or(Reason::DropMalformedL3)?;
        write(ctx, l3 + 10, ip_check.to_be_bytes()).ok_or(Reason::DropMalformedL3)?;
        ICMP_ECHO_REPLY
    } else {
        // Swapping the addresses leaves the pseudo-header sum unchanged.
        write(ctx, l3 + 8, bytes16(ip.dst)).ok_or(Reason::DropMalformedL3)?;
        write(ctx, l3 + 24, bytes16(ip.src)).ok_or(Reason::DropMalformedL3)?;
        write(ctx, l3 + 7, OUTER_TTL).ok_or(Reason::DropMalformedL3)?;
        ICMPV6_ECHO_REPLY
    };
    let check = replace_u16(old_check, old_word, u16::from_be_bytes([reply, hdr[1]]));
    let icmp = [reply, hdr[1], (check >> 8) as u8, check as u8];
    write(ctx, ip.l4_off, icmp).ok_or(Reason::DropMalformedIcmp)?;
    swap_macs(ctx)?;
    Ok((xdp_action::XDP_TX, Reason::IcmpEchoReply))
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Result<(), Reason> {
    let macs = read::<[u8; 12]>(ctx, 0).ok_or(Reason::DropMalformedL2)?;
    let swapped = [
        macs[6], macs[7], macs[8], macs[9], macs[10], macs[11], macs[0], macs[1], macs[2], macs[3],
        macs[4], macs[5],
    ];
    write(ctx, 0, swapped).ok_or(Reason::DropMalformedL2)
}

/// Sum (native word order) of `N` bytes of the frame at `offset`, through
/// bpf_csum_diff. The Internet checksum comes out right when the folded sum
/// is stored in the same native order.
#[inline(always)]
fn sum_frame<const N: usize>(ctx: &XdpContext, offset: usize, seed: u32) -> Result<u32, Reason> {
    let p = ptr_at_mut::<[u8; N]>(ctx, offset).ok_or(Reason::DropMalformedIcmp)?;
    // SAFETY: N bytes at p are inside the frame (checked by ptr_at_mut);
    // N is a multiple of 4 as bpf_csum_diff requires.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p.cast(), N as u32, seed) };
    if sum < 0 {
        return Err(Reason::DropMalformedIcmp);
    }
    Ok(sum as u32)
}

/// Replies to the client with ICMP frag-needed (IPv4) or packet-too-big
/// (IPv6) announcing `mtu`, built in place from the offending packet:
/// new IP + ICMP headers in front, the packet's start quoted, the rest cut.
#[inline(never)]
pub fn send_too_big(ctx: &XdpContext, ip: &Ip, mtu: u16) -> Verdict {
    Verdict::from_result(try_send_too_big(ctx, ip, mtu))
}

#[inline(always)]
fn try_send_too_big(ctx: &XdpContext, ip: &Ip, mtu: u16) -> Result<(u32, Reason), Reason> {
    let l3 = ip.l3_off;
    let (src, dst) = (ip.dst, ip.src);
    // Back to where it came from: swap the MACs.
    let (our_mac, peer_mac) = l2::macs(ctx)?;
    if ip.family == FAMILY_V4 {
        let head = IPV4_HLEN + ICMP_HLEN;
        l2::push_front(ctx, l3, head, peer_mac, our_mac, ETH_P_IP)?;
        let total = (head + QUOTE_V4) as u16;
        let h = ipv4_header(
            0,
            total,
            0,
            PROTO_ICMP,
            src[0].to_ne_bytes(),
            dst[0].to_ne_bytes(),
        );
        write(ctx, l3, h).ok_or(Reason::DropMalformedL3)?;
        let m = mtu.to_be_bytes();
        write(
            ctx,
            l3 + IPV4_HLEN,
            [ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0, m[0], m[1]],
        )
        .ok_or(Reason::DropMalformedIcmp)?;
        truncate(ctx, l3 + total as usize)?;
        let sum = sum_frame::<{ ICMP_HLEN + QUOTE_V4 }>(ctx, l3 + IPV4_HLEN, 0)?;
        write(ctx, l3 + IPV4_HLEN + 2, (!fold(sum as u64)).to_ne_bytes())
            .ok_or(Reason::DropMalformedIcmp)?;
    } else {
        let head = IPV6_HLEN + ICMP_HLEN;
        l2::push_front(ctx, l3, head, peer_mac, our_mac, ETH_P_IPV6)?;
        let payload = (ICMP_HLEN + QUOTE_V6) as u16;
        let h = ipv6_header(bytes16(src), bytes16(dst), payload, PROTO_ICMPV6, 0, 0);
        write(ctx, l3, h).ok_or(Reason::DropMalformedL3)?;
        let m = (mtu.max(IPV6_MIN_MTU) as u32).to_be_bytes();
        write(
            ctx,
            l3 + IPV6_HLEN,
            [ICMPV6_PKT_TOOBIG, 0, 0, 0, m[0], m[1], m[2], m[3]],
        )
        .ok_or(Reason::DropMalformedIcmp)?;
        truncate(ctx, l3 + IPV6_HLEN + payload as usize)?;
        // Pseudo header: addresses (in the packet), length and next header.
        let addrs = sum_frame::<32>(ctx, l3 + 8, 0)?;
        let len_word = u32::from_ne_bytes((payload as u32).to_be_bytes());
        let nh_word = u32::from_ne_bytes((PROTO_ICMPV6 as u32).to_be_bytes());
        let sum = sum_frame::<{ ICMP_HLEN + QUOTE_V6 }>(ctx, l3 + IPV6_HLEN, 0)?;
        let total = addrs as u64 + len_word as u64 + nh_word as u64 + sum as u64;
        write(ctx, l3 + IPV6_HLEN + 2, (!fold(total)).to_ne_bytes())
            .ok_or(Reason::DropMalformedIcmp)?;
    }
    Ok((xdp_action::XDP_TX, Reason::IcmpTooBigSent))
}

/// Cuts the frame to `new_len` bytes.
#[inline(always)]
fn truncate(ctx: &XdpContext, new_len: usize) -> Result<(), Reason> {
    let delta = new_len as i32 - len(ctx) as i32;
    if delta > 0 {
        return Err(Reason::DropMalformedIcmp);
    }
    // SAFETY: shrinking the tail only; later accesses re-check bounds.
    if unsafe { aya_ebpf::helpers::generated::bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Reason::DropMalformedIcmp);
    }
    Ok(())
}

/// The flow (as the client sent it) that an inbound frag-needed /
/// packet-too-big is about: the quoted packet went VIP → client.
#[inline(always)]
fn quoted_flow(ctx: &XdpContext, ip: &Ip) -> Option<FlowKey> {
    let inner = ip.l4_off + ICMP_HLEN;
    let (proto, vip_addr, client, l4) = if ip.family == FAMILY_V4 {
        let h = read::<[u8; IPV4_HLEN]>(ctx, inner)?;
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if h[0] >> 4 != 4 || ihl < IPV4_HLEN {
            return None;
        }
        let s = u32::from_ne_bytes([h[12], h[13], h[14], h[15]]);
        let d = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
        (h[9], [s, 0, 0, 0], [d, 0, 0, 0], inner + ihl)
    } else {
        let h = read::<[u8; IPV6_HLEN]>(ctx, inner)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&h[8..24]);
        d.copy_from_slice(&h[24..40]);
        (
            h[6],
            lb_ebpf::parse::addr16(s),
            lb_ebpf::parse::addr16(d),
            inner + IPV6_HLEN,
        )
    };
    if proto != PROTO_TCP && proto != PROTO_UDP || !ip.holds(l4, 4) {
        return None;
    }
    let ports = read::<[u8; 4]>(ctx, l4)?;
    Some(FlowKey {
        src: client,
        dst: vip_addr,
        sport: u16::from_ne_bytes([ports[2], ports[3]]),
        dport: u16::from_ne_bytes([ports[0], ports[1]]),
        proto,
        family: if ip.family == FAMILY_V4 {
            FAMILY_V4
        } else {
            FAMILY_V6
        },
        _pad: [0; 2],
    })
}
