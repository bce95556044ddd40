//! Tunnel headers: IPIP (4in4), IPv6-in-IPv6, IPv4-in-IPv6, IPv6-in-IPv4 and
//! GUE (the same inside UDP). The outer source is derived from the flow hash
//! (Katran's "RSS-friendly" sources) so the backend's NIC spreads flows over
//! its queues; inner DSCP/ECN is copied out.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    Reason,
    maps::{Backend, FAMILY_V4, FWD_GUE, LbConfig},
    wire::{
        ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, IPV4_DF, IPV4_HLEN,
        IPV6_HLEN, UDP_HLEN, gue_source_port, ipv4_header_words, ipv6_header, udp_header,
    },
};
use lb_ebpf::{
    l2::push_front,
    packet::{write, write_words},
    parse::Ip,
};

use crate::nexthop::NextHop;

/// How one packet will be wrapped.
pub struct Outer {
    pub family: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Bytes added in front of the inner IP header.
    pub overhead: u16,
    /// GUE destination port (host order); 0 for plain IP-in-IP.
    pub gue_port: u16,
}

#[inline(always)]
fn with_hash_bits(base_be: u32, bits: u8, hash: u32) -> u32 {
    if bits == 0 {
        return base_be;
    }
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    ((u32::from_be(base_be) & !mask) | (hash & mask)).to_be()
}

#[inline(always)]
pub fn plan(backend: &Backend, cfg: &LbConfig, hash: u32) -> Outer {
    let gue = backend.fwd_mode == FWD_GUE;
    let gue_port = if !gue {
        0
    } else if backend.gue_port != 0 {
        u16::from_be(backend.gue_port)
    } else {
        u16::from_be(cfg.gue_port)
    };
    let udp = if gue { UDP_HLEN as u16 } else { 0 };
    if backend.family == FAMILY_V4 {
        let src = with_hash_bits(cfg.encap_src_v4, cfg.encap_src_v4_hash_bits, hash);
        Outer {
            family: FAMILY_V4,
            src: [src, 0, 0, 0],
            dst: backend.addr,
            overhead: IPV4_HLEN as u16 + udp,
            gue_port,
        }
    } else {
        let mut src = cfg.encap_src_v6;
        src[3] = with_hash_bits(src[3], cfg.encap_src_v6_hash_bits, hash);
        Outer {
            family: backend.family,
            src,
            dst: backend.addr,
            overhead: IPV6_HLEN as u16 + udp,
            gue_port,
        }
    }
}

/// Prepends the outer headers and the (re-addressed) L2 header.
#[inline(always)]
pub fn encapsulate(
    ctx: &XdpContext,
    ip: &Ip,
    outer: &Outer,
    hop: &NextHop,
    hash: u32,
) -> Result<(), Reason> {
    let inner_proto = if ip.family == FAMILY_V4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    };
    let l3 = ip.l3_off;
    let ether_type = if outer.family == FAMILY_V4 {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    push_front(
        ctx,
        l3,
        outer.overhead as usize,
        hop.dmac,
        hop.smac,
        ether_type,
    )?;

    let udp_len = UDP_HLEN as u16 + ip.len;
    let ip_hlen;
    if outer.family == FAMILY_V4 {
        ip_hlen = IPV4_HLEN;
        let proto = if outer.gue_port != 0 {
            IPPROTO_UDP
        } else {
            inner_proto
        };
        // Keep DF as the inner packet had it: too-big DF packets never get
        // here (they got an ICMP), and non-DF ones may be fragmented on the
        // way like the original could have been.
        let frag = if ip.dont_fragment { IPV4_DF } else { 0 };
        let src = outer.src[0].to_ne_bytes();
        let dst = outer.dst[0].to_ne_bytes();
        let h = ipv4_header_words(ip.tos, ip.len + outer.overhead, frag, proto, src, dst);
        write_words(ctx, l3, &h).ok_or(Reason::DropNoHeadroom)?;
    } else {
        ip_hlen = IPV6_HLEN;
        let (next, payload) = if outer.gue_port != 0 {
            (IPPROTO_UDP, udp_len)
        } else {
            (inner_proto, ip.len)
        };
        // The fixed 8 bytes from the golden-tested builder, then the
        // addresses straight from their words (saves 72 bytes of stack).
        let h = ipv6_header([0; 16], [0; 16], payload, next, ip.tos, hash);
        let fixed = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]];
        write(ctx, l3, fixed).ok_or(Reason::DropNoHeadroom)?;
        write_words(ctx, l3 + 8, &outer.src).ok_or(Reason::DropNoHeadroom)?;
        write_words(ctx, l3 + 24, &outer.dst).ok_or(Reason::DropNoHeadroom)?;
    }
    if outer.gue_port != 0 {
        let h = udp_header(gue_source_port(hash), outer.gue_port, udp_len);
        write(ctx, l3 + ip_hlen, h).ok_or(Reason::DropNoHeadroom)?;
    }
    Ok(())
}
