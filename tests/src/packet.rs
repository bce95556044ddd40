//! Frame builders for fixtures, on top of etherparse's header types and
//! checksums: an implementation independent of the data path's, so expected
//! frames are not the program's own output fed back to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpDscp, IpEcn, IpFragOffset, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header,
    TcpHeader, UdpHeader,
};

pub type Mac = [u8; 6];

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;

/// An Ethernet frame, with an optional 802.1Q tag.
pub fn ethernet(dst: Mac, src: Mac, vlan: Option<u16>, ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Fields of an IPv4 header a fixture may want to vary.
#[derive(Clone, Debug)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    pub df: bool,
    pub mf: bool,
    pub frag_offset: u16,
    pub ttl: u8,
    pub options: Vec<u8>,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            tos: 0,
            df: true,
            mf: false,
            frag_offset: 0,
            ttl: 64,
            options: vec![],
        }
    }

    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(
            (payload.len() + self.options.len()) as u16,
            self.ttl,
            IpNumber(self.proto),
            self.src.octets(),
            self.dst.octets(),
        )
        .expect("payload fits");
        h.dscp = IpDscp::try_new(self.tos >> 2).unwrap();
        h.ecn = IpEcn::try_new(self.tos & 3).unwrap();
        h.dont_fragment = self.df;
        h.more_fragments = self.mf;
        h.fragment_offset = IpFragOffset::try_new(self.frag_offset).unwrap();
        h.options =
            Ipv4Options::try_from(self.options.as_slice()).expect("options: multiple of 4, <= 40");
        // Ipv4Header::new counted the options as payload: fix the length.
        h.total_len = (h.header_len() + payload.len()) as u16;
        h.header_checksum = h.calc_header_checksum();
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(payload);
        p
    }
}

/// Fields of an IPv6 header; `ext` are raw extension headers (each with its
/// own next-header byte) placed between the fixed header and the payload.
#[derive(Clone, Debug)]
pub struct V6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    pub hop_limit: u8,
    pub ext: Vec<u8>,
}

impl V6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next: u8) -> Self {
        Self {
            src,
            dst,
            next,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            ext: vec![],
        }
    }

    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let h = Ipv6Header {
            traffic_class: self.traffic_class,
            flow_label: Ipv6FlowLabel::try_new(self.flow_label & 0xfffff).unwrap(),
            payload_length: (self.ext.len() + payload.len()) as u16,
            next_header: IpNumber(self.next),
            hop_limit: self.hop_limit,
            source: self.src.octets(),
            destination: self.dst.octets(),
        };
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(&self.ext);
        p.extend_from_slice(payload);
        p
    }
}

/// An IP packet from `src` to `dst` (both of one family) with default
/// header fields, and the ether type that carries it.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> (u16, Vec<u8>) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (ETH_P_IP, V4::new(s, d, proto).packet(payload)),
        (IpAddr::V6(s), IpAddr::V6(d)) => (ETH_P_IPV6, V6::new(s, d, proto).packet(payload)),
        _ => panic!("mixed address families"),
    }
}

/// TCP flags used by fixtures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};

/// Both ends of a packet, of one family, as header bytes.
enum Ends {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

fn ends(src: IpAddr, dst: IpAddr) -> Ends {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ends::V4(s.octets(), d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ends::V6(s.octets(), d.octets()),
        _ => panic!("mixed address families"),
    }
}

/// A TCP segment with a correct checksum for the given addresses.
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    tcp_seq(src, dst, sport, dport, flags, 1000, payload)
}

/// [`tcp`] with the sequence number `seq`.
pub fn tcp_seq(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: Flags,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = TcpHeader::new(sport, dport, seq, 64240);
    h.syn = flags.syn;
    h.ack = flags.ack;
    h.fin = flags.fin;
    h.rst = flags.rst;
    if flags.ack {
        h.acknowledgment_number = 2000;
    }
    h.checksum = match ends(src, dst) {
        Ends::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, payload),
        Ends::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, payload),
    }
    .expect("a segment that fits");
    [&h.to_bytes()[..], payload].concat()
}

/// A UDP datagram with a correct checksum.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = UdpHeader {
        source_port: sport,
        destination_port: dport,
        length: (8 + payload.len()) as u16,
        checksum: 0,
    };
    h.checksum = match ends(src, dst) {
        Ends::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, payload),
        Ends::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, payload),
    }
    .expect("a datagram that fits");
    [&h.to_bytes()[..], payload].concat()
}

/// A UDP header with a zero checksum followed by `payload` (GUE outer).
pub fn udp_zero_checksum(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// Internet checksum of `data` (RFC 1071), for ICMP messages.
pub fn inet_checksum(data: &[u8]) -> u16 {
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(data)
        .ones_complement()
        .to_be()
}

/// An ICMPv4 message (type, code, 4 bytes of rest-of-header, data) with
/// its checksum.
pub fn icmp4(ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message with its checksum over the pseudo header.
pub fn icmp6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    code: u8,
    rest: [u8; 4],
    data: &[u8],
) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&m);
    let c = inet_checksum(&pseudo);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ARP request frame (who-has `target` tell `sender`).
pub fn arp_request(src_mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&src_mac);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    ethernet([0xff; 6], src_mac, None, ETH_P_ARP, &a)
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4 literal")
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 literal")
}
