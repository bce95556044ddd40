//! Header parsing: Ethernet with one optional 802.1Q/802.1ad tag, IPv4 with
//! options, IPv6 with a short extension-header chain, and the first bytes of
//! TCP/UDP/ICMP.

use lb_common::{
    Reason,
    maps::{FAMILY_V4, FAMILY_V6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
    wire::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, IPPROTO_FRAGMENT, IPV4_DF, IPV4_FRAG_OFFSET_MASK,
        IPV4_HLEN, IPV4_MF, IPV6_HLEN, VLAN_HLEN,
    },
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    packet::{len, ptr_at, read},
    verdict::Verdict,
};
use core::mem::MaybeUninit;

use aya_ebpf::programs::XdpContext;

/// IPv6 extension headers skipped before giving up (hop-by-hop, routing,
/// destination options). Deeper chains to a VIP are dropped and counted.
const MAX_IPV6_EXT_HEADERS: usize = 3;

/// Where the L3 header starts and what it is.
#[derive(Clone, Copy)]
pub struct L2 {
    /// 14, or 18 with a VLAN tag.
    pub l3_off: usize,
    /// Host order.
    pub ether_type: u16,
}

#[inline(always)]
pub fn parse_l2(ctx: &XdpContext) -> Result<L2, Reason> {
    let mut ether_type =
        u16::from_be_bytes(read::<[u8; 2]>(ctx, 12).ok_or(Reason::DropMalformedL2)?);
    let mut l3_off = ETH_HLEN;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        ether_type =
            u16::from_be_bytes(read::<[u8; 2]>(ctx, ETH_HLEN + 2).ok_or(Reason::DropMalformedL2)?);
        l3_off += VLAN_HLEN;
    }
    Ok(L2 { l3_off, ether_type })
}

/// What the balancer needs of an IP header.
#[derive(Clone, Copy)]
pub struct Ip {
    pub family: u8,
    /// L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// DSCP and ECN (IPv4 TOS byte / IPv6 traffic class).
    pub tos: u8,
    pub fragment: bool,
    pub dont_fragment: bool,
    /// The IPv6 extension chain was longer than we walk.
    pub ext_unsupported: bool,
    /// Network order, IPv4 in `[0]`.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub l3_off: usize,
    pub l4_off: usize,
    /// L3 length from the header (IPv4 total length, IPv6 40 + payload).
    pub len: u16,
    /// Why no packet like this may reach a VIP (a martian source, IPv4
    /// options that overrun the header), as a `Reason`, or 0. Found here,
    /// where the work is verified once; the balancer acts on it only for
    /// packets to a VIP address (other traffic passes untouched).
    pub suspect: u8,
}

impl Ip {
    /// Whether `n` bytes at `offset` lie inside the packet as its IP
    /// header measures it (bytes past that are padding, not packet).
    #[inline(always)]
    pub fn holds(&self, offset: usize, n: usize) -> bool {
        offset + n <= self.l3_off + self.len as usize
    }
}

/// Parses L2 and L3 into `ip`: `Verdict::proceed()` when it wrote `ip`,
/// with [`Ip::suspect`] found if `HYGIENE` (the balancer; the decap
/// program checks its tunnels' sources instead),
/// `done(XDP_PASS, PassNotIp)` for other frames, a drop for malformed ones.
/// Out of line so its temporaries never share a stack frame with the
/// forwarding path; an out-parameter rather than a return value because
/// zero-initialising a struct becomes a memset call.
#[inline(never)]
pub fn parse_ip<const HYGIENE: bool>(ctx: &XdpContext, ip: &mut MaybeUninit<Ip>) -> Verdict {
    let l2 = match parse_l2(ctx) {
        Ok(l2) => l2,
        Err(r) => return Verdict::drop(r),
    };
    let parsed = match l2.ether_type {
        lb_common::wire::ETH_P_IP => parse_ipv4::<HYGIENE>(ctx, l2.l3_off),
        lb_common::wire::ETH_P_IPV6 => parse_ipv6::<HYGIENE>(ctx, l2.l3_off),
        _ => return Verdict::done(aya_ebpf::bindings::xdp_action::XDP_PASS, Reason::PassNotIp),
    };
    match parsed {
        Ok(p) => {
            ip.write(p);
            Verdict::proceed()
        }
        Err(r) => Verdict::drop(r),
    }
}

#[inline(always)]
pub fn parse_ipv4<const HYGIENE: bool>(ctx: &XdpContext, l3_off: usize) -> Result<Ip, Reason> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(Reason::DropMalformedL3)?;
    // SAFETY: ptr_at checked the 20-byte header is inside the frame.
    let ip = unsafe { *ip };
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ip.vihl >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(Reason::DropMalformedL3);
    }
    let total = u16::from_be_bytes(ip.tot_len);
    if (total as usize) < ihl || l3_off + total as usize > len(ctx) {
        return Err(Reason::DropMalformedL3);
    }
    let frags = u16::from_be_bytes(ip.frags);
    let bad_options = HYGIENE && ihl > IPV4_HLEN && !options_fit(ctx, l3_off);
    Ok(Ip {
        family: FAMILY_V4,
        proto: ip.proto,
        tos: ip.tos,
        fragment: frags & (IPV4_MF | IPV4_FRAG_OFFSET_MASK) != 0,
        dont_fragment: frags & IPV4_DF != 0,
        ext_unsupported: false,
        src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
        dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        l3_off,
        l4_off: l3_off + ihl,
        len: total,
        suspect: if HYGIENE && martian_v4(ip.src_addr, ip.dst_addr) {
            Reason::DropMartianSource as u8
        } else if bad_options {
            Reason::DropBadIpOptions as u8
        } else {
            0
        },
    })
}

/// 0/8, 127/8, 224/4 multicast, 240/4 reserved and broadcast, or the
/// destination itself: a source no client can have.
#[inline(always)]
fn martian_v4(src: [u8; 4], dst: [u8; 4]) -> bool {
    // `|`, not `||`: no branches, so no extra paths for the verifier.
    (src == dst) | (src[0] == 0) | (src[0] == 127) | (src[0] >= 224)
}

/// `::`, `::1`, `ff00::/8`, IPv4-mapped, or the destination itself.
#[inline(always)]
fn martian_v6(src: &[u8; 16], dst: &[u8; 16]) -> bool {
    let w = addr16(*src);
    let d = addr16(*dst);
    let zero64 = (w[0] | w[1]) == 0;
    let unspecified_or_loopback = zero64 & (w[2] == 0) & ((w[3] == 0) | (w[3] == 1u32.to_be()));
    let v4_mapped = zero64 & (w[2] == 0xffffu32.to_be());
    let itself = ((w[0] ^ d[0]) | (w[1] ^ d[1]) | (w[2] ^ d[2]) | (w[3] ^ d[3])) == 0;
    (src[0] == 0xff) | unspecified_or_loopback | v4_mapped | itself
}

/// Options walked at most: real packets carry one or two (router alert,
/// record route) and their padding; a header with more is refused with the
/// malformed ones (and a bounded walk keeps the verifier's work small).
const MAX_IPV4_OPTIONS: usize = 8;

/// Whether the options of the IPv4 header at `l3_off` have lengths
/// inside the header. It reads the header length again rather than taking
/// the caller's: the verifier links copies of a value, so narrowing the
/// caller's copy here would split every later state of the program by the
/// options' layout.
#[inline(always)]
fn options_fit(ctx: &XdpContext, l3_off: usize) -> bool {
    let Some(vihl) = read::<u8>(ctx, l3_off) else {
        return false;
    };
    let end = l3_off + (vihl & 0x0f) as usize * 4;
    let mut at = l3_off + IPV4_HLEN;
    for _ in 0..MAX_IPV4_OPTIONS {
        if at >= end {
            return true;
        }
        // Two bytes even for a one-byte option: the header ends inside the
        // frame, so this fails only when nothing follows the header — no L4
        // header, nothing to forward.
        let Some(opt) = read::<[u8; 2]>(ctx, at) else {
            return false;
        };
        match opt[0] {
            // End of list: the rest is padding.
            0 => return true,
            // No-op: one byte.
            1 => at += 1,
            _ => {
                let len = opt[1] as usize;
                if len < 2 || at + len > end {
                    return false;
                }
                at += len;
            }
        }
    }
    at >= end
}

#[inline(always)]
pub fn parse_ipv6<const HYGIENE: bool>(ctx: &XdpContext, l3_off: usize) -> Result<Ip, Reason> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(Reason::DropMalformedL3)?;
    // SAFETY: ptr_at checked the 40-byte header is inside the frame.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(Reason::DropMalformedL3);
    }
    let payload = u16::from_be_bytes(ip.payload_len) as usize;
    // A zero payload length means a jumbogram (hop-by-hop option): unsupported.
    if payload == 0 || l3_off + IPV6_HLEN + payload > len(ctx) {
        return Err(Reason::DropMalformedL3);
    }
    let mut next = ip.next_hdr;
    let mut l4_off = l3_off + IPV6_HLEN;
    let mut fragment = false;
    let mut ext_unsupported = true;
    for _ in 0..MAX_IPV6_EXT_HEADERS + 1 {
        match next {
            // Hop-by-hop, routing, destination options: [next, len in 8-octet
            // units not counting the first 8].
            0 | 43 | 60 => {
                let hdr = read::<[u8; 2]>(ctx, l4_off).ok_or(Reason::DropMalformedL3)?;
                next = hdr[0];
                l4_off += (hdr[1] as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let hdr = read::<[u8; 4]>(ctx, l4_off).ok_or(Reason::DropMalformedL3)?;
                next = hdr[0];
                l4_off += 8;
                fragment = true;
            }
            _ => {
                ext_unsupported = false;
                break;
            }
        }
    }
    Ok(Ip {
        family: FAMILY_V6,
        proto: next,
        tos: lb_common::wire::ipv6_traffic_class(ip.vcf),
        fragment,
        dont_fragment: true,
        ext_unsupported,
        src: addr16(ip.src_addr),
        dst: addr16(ip.dst_addr),
        l3_off,
        l4_off,
        len: (IPV6_HLEN + payload) as u16,
        suspect: if HYGIENE && martian_v6(&ip.src_addr, &ip.dst_addr) {
            Reason::DropMartianSource as u8
        } else {
            0
        },
    })
}

#[inline(always)]
pub fn addr16(b: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

#[inline(always)]
pub fn bytes16(a: [u32; 4]) -> [u8; 16] {
    let (w0, w1, w2, w3) = (
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    );
    [
        w0[0], w0[1], w0[2], w0[3], w1[0], w1[1], w1[2], w1[3], w2[0], w2[1], w2[2], w2[3], w3[0],
        w3[1], w3[2], w3[3],
    ]
}

/// Ports (network order) and TCP flags byte of a TCP/UDP header.
#[derive(Clone, Copy)]
pub struct L4 {
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (byte 13); 0 for UDP.
    pub tcp_flags: u8,
    /// TCP sequence number (host order); 0 for UDP.
    pub seq: u32,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The first header bytes of TCP (20) or UDP (8); `None` when the header
/// is truncated or disagrees with the IP length (a TCP data offset below 5
/// or past the packet, a UDP length below 8 or past the packet): such a
/// packet is malformed and must not be forwarded.
#[inline(always)]
pub fn parse_l4(ctx: &XdpContext, ip: &Ip) -> Option<L4> {
    let room = (ip.l3_off + ip.len as usize).checked_sub(ip.l4_off)?;
    match ip.proto {
        PROTO_TCP => {
            let h = read::<[u8; 20]>(ctx, ip.l4_off)?;
            let header = (h[12] >> 4) as usize * 4;
            if header < 20 || header > room {
                return None;
            }
            Some(L4 {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                tcp_flags: h[13],
                seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            })
        }
        PROTO_UDP => {
            let h = read::<[u8; 8]>(ctx, ip.l4_off)?;
            let length = u16::from_be_bytes([h[4], h[5]]) as usize;
            if length < 8 || length > room {
                return None;
            }
            Some(L4 {
                sport: u16::from_ne_bytes([h[0], h[1]]),
                dport: u16::from_ne_bytes([h[2], h[3]]),
                tcp_flags: 0,
                seq: 0,
            })
        }
        _ => None,
    }
}

/// Is this an ICMP protocol number of the packet's family?
#[inline(always)]
pub fn is_icmp(ip: &Ip) -> bool {
    (ip.family == FAMILY_V4 && ip.proto == PROTO_ICMP)
        || (ip.family == FAMILY_V6 && ip.proto == PROTO_ICMPV6)
}
