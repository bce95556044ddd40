//! Wire constants and the outer headers the balancer prepends. The builders
//! return fixed-size arrays so the data path can write them with one copy
//! and the host tests can compare them byte for byte.

use crate::csum;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const ICMP_HLEN: usize = 8;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IP protocol numbers of the tunnels.
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_FRAGMENT: u8 = 44;

/// TTL / hop limit of outer headers.
pub const OUTER_TTL: u8 = 64;

/// IPv4 "don't fragment" flag in the flags/fragment-offset word.
pub const IPV4_DF: u16 = 0x4000;
pub const IPV4_MF: u16 = 0x2000;
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// Minimum IPv6 MTU (RFC 8200); packet-too-big never reports less.
pub const IPV6_MIN_MTU: u16 = 1280;
/// Smallest MTU an ICMP frag-needed may report (RFC 791 minimum).
pub const IPV4_MIN_MTU: u16 = 68;

/// An outer IPv4 header (no options) with its checksum filled in.
#[inline(always)]
pub fn ipv4_header(
    tos: u8,
    total_len: u16,
    frag: u16,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) -> [u8; IPV4_HLEN] {
    let words = ipv4_header_words(tos, total_len, frag, proto, src, dst);
    let mut h = [0u8; IPV4_HLEN];
    let mut i = 0;
    while i < words.len() {
        let w = words[i].to_ne_bytes();
        (h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]) = (w[0], w[1], w[2], w[3]);
        i += 1;
    }
    h
}

/// [`ipv4_header`] as five words in memory order (word `i` holds bytes
/// `4i..4i + 4`), for a writer that stores whole words: LLVM's BPF backend
/// stores a byte array it assembled one byte at a time. The checksum is
/// summed over the words in native order, which RFC 1071 allows (the
/// one's-complement sum is independent of byte order).
#[inline(always)]
pub fn ipv4_header_words(
    tos: u8,
    total_len: u16,
    frag: u16,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) -> [u32; 5] {
    let len = total_len.to_be_bytes();
    let frag = frag.to_be_bytes();
    let w0 = u32::from_ne_bytes([0x45, tos, len[0], len[1]]);
    let w1 = u32::from_ne_bytes([0, 0, frag[0], frag[1]]);
    let ttl_proto = u32::from_ne_bytes([OUTER_TTL, proto, 0, 0]);
    let (w3, w4) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
    let sum = w0 as u64 + w1 as u64 + ttl_proto as u64 + w3 as u64 + w4 as u64;
    let check = (!csum::fold(sum)).to_ne_bytes();
    let w2 = u32::from_ne_bytes([OUTER_TTL, proto, check[0], check[1]]);
    [w0, w1, w2, w3, w4]
}

/// An outer IPv6 header. `traffic_class` carries the inner DSCP/ECN.
#[inline(always)]
pub fn ipv6_header(
    src: [u8; 16],
    dst: [u8; 16],
    payload_len: u16,
    next_header: u8,
    traffic_class: u8,
    flow_label: u32,
) -> [u8; IPV6_HLEN] {
    let vcf = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0x000f_ffff);
    let vcf = vcf.to_be_bytes();
    let len = payload_len.to_be_bytes();
    let mut h = [0u8; IPV6_HLEN];
    h[0] = vcf[0];
    h[1] = vcf[1];
    h[2] = vcf[2];
    h[3] = vcf[3];
    h[4] = len[0];
    h[5] = len[1];
    h[6] = next_header;
    h[7] = OUTER_TTL;
    let mut i = 0;
    while i < 16 {
        h[8 + i] = src[i];
        h[24 + i] = dst[i];
        i += 1;
    }
    h
}

/// A UDP header with a zero checksum: allowed for IPv4, and for IPv6 tunnel
/// traffic by RFC 6935/6936; the decap program does not check it.
#[inline(always)]
pub fn udp_header(sport: u16, dport: u16, len: u16) -> [u8; UDP_HLEN] {
    let s = sport.to_be_bytes();
    let d = dport.to_be_bytes();
    let l = len.to_be_bytes();
    [s[0], s[1], d[0], d[1], l[0], l[1], 0, 0]
}

/// GUE source port from the flow hash: in the ephemeral range, so the
/// backend NIC's RSS spreads flows and the port is never a well-known one.
#[inline(always)]
pub fn gue_source_port(flow_hash: u32) -> u16 {
    0xc000 | (flow_hash as u16 & 0x3fff)
}

/// DSCP+ECN byte of an IPv6 header (traffic class).
#[inline(always)]
pub fn ipv6_traffic_class(first_word: [u8; 4]) -> u8 {
    (first_word[0] << 4) | (first_word[1] >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_ipip_outer_header() {
        // 10.0.0.1 -> 10.0.0.2, proto 4, DF, tos 0xb8 (EF), 40 B of inner.
        let h = ipv4_header(
            0xb8,
            60,
            IPV4_DF,
            IPPROTO_IPIP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        );
        let golden = [
            0x45, 0xb8, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04, 0x26, 0x04, 0x0a, 0x00,
            0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        ];
        assert_eq!(h, golden);
        assert_eq!(csum::checksum(&h), 0);
    }

    #[test]
    fn every_header_carries_its_fields_and_sums_to_zero() {
        // The word-wise checksum against the byte-wise RFC 1071 one, over
        // a xorshift walk of every field and the extremes.
        let check = |tos: u8, len: u16, frag: u16, proto: u8, src: [u8; 4], dst: [u8; 4]| {
            let h = ipv4_header(tos, len, frag, proto, src, dst);
            assert_eq!(csum::checksum(&h), 0, "{h:?}");
            assert_eq!((h[0], h[1], h[8], h[9]), (0x45, tos, OUTER_TTL, proto));
            assert_eq!(u16::from_be_bytes([h[2], h[3]]), len);
            assert_eq!(u16::from_be_bytes([h[6], h[7]]), frag);
            assert_eq!((&h[12..16], &h[16..20]), (&src[..], &dst[..]));
        };
        check(0, 0, 0, 0, [0; 4], [0; 4]);
        check(0xff, 0xffff, 0xffff, 0xff, [0xff; 4], [0xff; 4]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..100_000 {
            let (a, b) = (next(), next());
            check(
                a as u8,
                (a >> 8) as u16,
                (a >> 24) as u16,
                (a >> 40) as u8,
                (b as u32).to_ne_bytes(),
                ((b >> 32) as u32).to_ne_bytes(),
            );
        }
    }

    #[test]
    fn golden_ipv6_outer_header() {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        let h = ipv6_header(src, dst, 100, IPPROTO_IPV6, 0xb9, 0x12345);
        let mut golden = [0u8; 40];
        golden[..8].copy_from_slice(&[0x6b, 0x91, 0x23, 0x45, 0x00, 0x64, 41, 64]);
        golden[8..24].copy_from_slice(&src);
        golden[24..40].copy_from_slice(&dst);
        assert_eq!(h, golden);
        assert_eq!(ipv6_traffic_class([h[0], h[1], h[2], h[3]]), 0xb9);
    }

    #[test]
    fn golden_udp_header() {
        assert_eq!(
            udp_header(0xc123, 6080, 48),
            [0xc1, 0x23, 0x17, 0xc0, 0x00, 0x30, 0, 0]
        );
        assert_eq!(gue_source_port(0xffff_ffff), 0xffff);
        assert_eq!(gue_source_port(0), 0xc000);
    }
}
