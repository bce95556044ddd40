//! Frames mutated by the million through the real programs
//! (BPF_PROG_TEST_RUN): the balancer, provisioned by the agent's own
//! balancer facade, and the decap program, configured as `lbd decap` does.
//! Every result must be a counted XDP_DROP or XDP_PASS, except what the
//! oracle (etherparse) calls a valid packet for a VIP, which may be
//! forwarded; the decap program may unwrap only a tunnel from an LB
//! source, to this host, for a VIP.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use anyhow::{Result, ensure};
use aya::programs::Xdp;
use etherparse::{LaxNetSlice, LaxSlicedPacket, NetSlice, SlicedPacket};
use lb::{
    core::{balancer::Balancer, config, prefix::Prefix},
    kernel::{
        dataplane::Dataplane,
        decap::{Checks, Decap},
    },
};
use lb_tests::{
    fixture::{XDP_ABORTED, XDP_DROP, XDP_PASS, action_name, test_run},
    netns::Netns,
    packet::{
        ACK, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, SYN, V4, V6, arp_request, ethernet, icmp4, icmp6,
        tcp, udp, udp_zero_checksum, v4, v6,
    },
};

use crate::Env;

const BALANCER_FRAMES: usize = 1_000_000;
const DECAP_FRAMES: usize = 250_000;
const GUE_PORT: u16 = 6080;

const CONFIG: &str = r#"
node: {name: fuzz, cloud: aws, region: r1}
limits: {max_vips: 8, max_backends: 32, ring_size: 1021, conntrack_size: 65536}
vips:
  - {name: tcp4, address: 10.100.0.1, port: 80, icmp_echo: true, health_check: {type: none},
     backends: [{address: 10.0.0.11, forwarding: ipip}, {address: 10.0.0.12, forwarding: gue}]}
  - {name: udp4, address: 10.100.0.2, port: 53, protocol: udp, health_check: {type: none},
     backends: [{address: 10.0.0.13, forwarding: l2-dsr, mac: "02:00:00:00:00:13"}]}
  - {name: all4, address: 10.100.0.3, port: all, health_check: {type: none},
     backends: [{address: 10.0.0.14, forwarding: ipip}]}
  - {name: tcp6, address: "fd00:100::1", port: 443, icmp_echo: true, health_check: {type: none},
     backends: [{address: "fd00::11", forwarding: ipip}, {address: "fd00::12", forwarding: gue}]}
"#;

const VIPS: [&str; 4] = ["10.100.0.1", "10.100.0.2", "10.100.0.3", "fd00:100::1"];
const LB_SOURCES: [&str; 2] = ["172.16.0.0/16", "fd00:4c42::/32"];
const LOCAL: [&str; 2] = ["10.0.0.11", "fd00::11"];

const MAC_LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// xorshift64*: fast, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that parsers branch on: versions, IHLs, protocols, flags.
const INTERESTING: [u8; 16] = [
    0x00, 0xff, 0x7f, 0x80, 0x45, 0x46, 0x4f, 0x60, 0x06, 0x11, 0x04, 0x29, 0x3a, 0x01, 0x2c, 0x20,
];
const ETHER_TYPES: [u16; 5] = [ETH_P_IP, ETH_P_IPV6, 0x8100, 0x88a8, ETH_P_ARP];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(7) {
            0 => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(f.len());
                f[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => f.truncate(14 + rng.below(f.len().saturating_sub(13).max(1))),
            3 => f.extend((0..rng.below(64)).map(|_| rng.byte())),
            4 => {
                let t = ETHER_TYPES[rng.below(ETHER_TYPES.len())];
                f[12..14].copy_from_slice(&t.to_be_bytes());
            }
            // A header byte: the IP header's first 40 bytes after L2.
            5 => {
                let i = (14 + rng.below(40)).min(f.len() - 1);
                f[i] = rng.byte();
            }
            _ => {
                let i = rng.below(f.len());
                let v = rng.next().to_ne_bytes();
                let n = (f.len() - i).min(2 + rng.below(3));
                f[i..i + n].copy_from_slice(&v[..n]);
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
    }
    f.truncate(1600);
    f
}

/// A random frame: random bytes behind an IP or IPv6 ether type, often
/// addressed to a VIP.
fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = 14 + rng.below(200);
    let mut f: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
    let t = ETHER_TYPES[rng.below(2)];
    f[12..14].copy_from_slice(&t.to_be_bytes());
    if rng.below(2) == 0 && f.len() >= 54 {
        if t == ETH_P_IP {
            f[14] = 0x45;
            f[30..34].copy_from_slice(&v4(VIPS[rng.below(3)]).octets());
        } else {
            f[14] = 0x60;
            f[38..54].copy_from_slice(&v6(VIPS[3]).octets());
        }
    }
    f
}

/// The `i`th frame of a run: one in ten a seed as is, one in ten random,
/// the rest mutated seeds.
fn next_frame(rng: &mut Rng, seeds: &[Vec<u8>], i: usize) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    match i % 10 {
        0 => seed.clone(),
        1 => random_frame(rng),
        _ => mutate(rng, seed),
    }
}

fn frame(ether_type: u16, l3: &[u8]) -> Vec<u8> {
    ethernet(MAC_LB, MAC_PEER, None, ether_type, l3)
}

/// Valid packets for every VIP and kind, some that are not for a VIP, and
/// the tunnels the balancer sends backends.
fn balancer_seeds() -> Vec<Vec<u8>> {
    let c4 = v4("198.51.100.10");
    let c6 = v6("2001:db8::10");
    let mut s = vec![];
    for (vip, port) in [("10.100.0.1", 80), ("10.100.0.3", 8080), ("10.0.0.99", 22)] {
        let d = v4(vip);
        for flags in [SYN, ACK] {
            let seg = tcp(
                c4.into(),
                d.into(),
                40000,
                port,
                flags,
                b"GET / HTTP/1.1\r\n",
            );
            s.push(frame(ETH_P_IP, &V4::new(c4, d, 6).packet(&seg)));
        }
        let mut frag = V4::new(c4, d, 6);
        frag.mf = true;
        s.push(frame(
            ETH_P_IP,
            &frag.packet(&tcp(c4.into(), d.into(), 1, port, SYN, b"")),
        ));
    }
    let d = v4("10.100.0.2");
    s.push(frame(
        ETH_P_IP,
        &V4::new(c4, d, 17).packet(&udp(c4.into(), d.into(), 5353, 53, b"query")),
    ));
    let echo = icmp4(8, 0, [0x12, 0x34, 0, 1], b"ping-data");
    s.push(frame(
        ETH_P_IP,
        &V4::new(c4, v4("10.100.0.1"), 1).packet(&echo),
    ));
    let quoted = V4::new(v4("10.100.0.1"), c4, 6).packet(&tcp(
        v4("10.100.0.1").into(),
        c4.into(),
        80,
        40000,
        ACK,
        b"",
    ));
    let too_big = icmp4(3, 4, [0, 0, 5, 0x78], &quoted[..28]);
    s.push(frame(
        ETH_P_IP,
        &V4::new(v4("203.0.113.1"), v4("10.100.0.1"), 1).packet(&too_big),
    ));
    let d6 = v6("fd00:100::1");
    for flags in [SYN, ACK] {
        let seg = tcp(c6.into(), d6.into(), 40000, 443, flags, b"hello");
        s.push(frame(ETH_P_IPV6, &V6::new(c6, d6, 6).packet(&seg)));
    }
    let mut ext = V6::new(c6, d6, 0);
    ext.ext = vec![6, 0, 1, 4, 0, 0, 0, 0];
    s.push(frame(
        ETH_P_IPV6,
        &ext.packet(&tcp(c6.into(), d6.into(), 40001, 443, SYN, b"")),
    ));
    s.push(frame(
        ETH_P_IPV6,
        &V6::new(c6, d6, 58).packet(&icmp6(c6, d6, 128, 0, [0, 1, 0, 1], b"ping")),
    ));
    let vlan = V4::new(c4, v4("10.100.0.1"), 6).packet(&tcp(
        c4.into(),
        v4("10.100.0.1").into(),
        40002,
        80,
        SYN,
        b"",
    ));
    s.push(ethernet(MAC_LB, MAC_PEER, Some(7), ETH_P_IP, &vlan));
    s.push(arp_request(MAC_PEER, v4("10.0.0.50"), v4("10.100.0.1")));
    s
}

/// Tunnels as backends receive them (valid, refused for their source or
/// inner destination, GUE), and plain traffic.
fn decap_seeds() -> Vec<Vec<u8>> {
    let c4 = v4("198.51.100.10");
    let inner4 = |dst: Ipv4Addr| {
        V4::new(c4, dst, 6).packet(&tcp(c4.into(), dst.into(), 1234, 80, SYN, b"x"))
    };
    let c6 = v6("2001:db8::10");
    let inner6 = |dst: Ipv6Addr| {
        V6::new(c6, dst, 6).packet(&tcp(c6.into(), dst.into(), 1234, 443, SYN, b"x"))
    };
    let (lb4, lb6) = (v4("172.16.3.4"), v6("fd00:4c42::9"));
    let (me4, me6) = (v4(LOCAL[0]), v6(LOCAL[1]));
    let mut s = vec![];
    for (src, inner) in [
        (lb4, inner4(v4("10.100.0.1"))),
        (v4("203.0.113.9"), inner4(v4("10.100.0.1"))),
        (lb4, inner4(me4)),
    ] {
        s.push(frame(ETH_P_IP, &V4::new(src, me4, 4).packet(&inner)));
        let u = udp_zero_checksum(50000, GUE_PORT, &inner);
        s.push(frame(ETH_P_IP, &V4::new(src, me4, 17).packet(&u)));
    }
    for (src, inner) in [
        (lb6, inner6(v6("fd00:100::1"))),
        (v6("2001:db8::66"), inner6(v6("fd00:100::1"))),
        (lb6, inner6(me6)),
    ] {
        s.push(frame(ETH_P_IPV6, &V6::new(src, me6, 41).packet(&inner)));
    }
    s.push(frame(
        ETH_P_IPV6,
        &V6::new(lb6, me6, 4).packet(&inner4(v4("10.100.0.2"))),
    ));
    s.push(frame(
        ETH_P_IP,
        &V4::new(lb4, me4, 41).packet(&inner6(v6("fd00:100::1"))),
    ));
    s.push(frame(ETH_P_IP, &inner4(me4)));
    s
}

/// The oracle's view of a frame: its destination, if it is a whole,
/// unfragmented IPv4/IPv6 packet with a complete transport header.
fn valid_destination(f: &[u8]) -> Option<IpAddr> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    match p.net? {
        NetSlice::Ipv4(ip) => {
            (!ip.payload().fragmented).then(|| IpAddr::V4(ip.header().destination_addr()))
        }
        NetSlice::Ipv6(ip) => {
            (!ip.payload().fragmented).then(|| IpAddr::V6(ip.header().destination_addr()))
        }
        _ => None,
    }
}

/// What an unwrapped tunnel must be: from an LB source, to this host, for
/// a VIP (the fuzz world has every check on). Only the outer header is
/// taken from etherparse (leniently: lengths are the kernel stack's
/// business after the unwrap); the inner destination is read where the
/// program reads it, right behind the outer headers.
fn acceptable_tunnel(f: &[u8], sources: &[Prefix], vips: &BTreeSet<IpAddr>) -> bool {
    let Ok(p) = LaxSlicedPacket::from_ethernet(f) else {
        return false;
    };
    let (src, dst, payload) = match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.payload(),
        ),
        Some(LaxNetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.payload(),
        ),
        _ => return false,
    };
    let at = payload.payload.as_ptr() as usize - f.as_ptr() as usize;
    let inner = match payload.ip_number.0 {
        4 | 41 => at,
        17 if f.get(at + 2..at + 4) == Some(&GUE_PORT.to_be_bytes()[..]) => at + 8,
        _ => return false,
    };
    let inner_dst: Option<IpAddr> = match f.get(inner).map(|b| b >> 4) {
        Some(4) => <[u8; 4]>::try_from(f.get(inner + 16..inner + 20).unwrap_or_default())
            .ok()
            .map(IpAddr::from),
        Some(6) => <[u8; 16]>::try_from(f.get(inner + 24..inner + 40).unwrap_or_default())
            .ok()
            .map(IpAddr::from),
        _ => None,
    };
    sources.iter().any(|s| s.contains(src))
        && LOCAL.iter().any(|l| l.parse::<IpAddr>().ok() == Some(dst))
        && inner_dst.is_some_and(|d| vips.contains(&d))
}

struct Tally {
    runs: usize,
    refused_by_kernel: usize,
    by_action: [usize; 5],
}

impl Tally {
    fn new() -> Self {
        Self {
            runs: 0,
            refused_by_kernel: 0,
            by_action: [0; 5],
        }
    }
    fn summary(&self) -> String {
        let a = |i: u32| self.by_action[i as usize];
        format!(
            "{} frames: {} dropped, {} passed, {} tx, {} redirected ({} too odd for the kernel's test run)",
            self.runs,
            a(XDP_DROP),
            a(XDP_PASS),
            a(3),
            a(4),
            self.refused_by_kernel
        )
    }
}

fn fuzz_netns() -> Result<Netns> {
    let ns = Netns::new("fuzz")?;
    ns.ip(&["link", "add", "lb0", "type", "veth", "peer", "name", "lb1"])?;
    ns.ip(&["link", "set", "lb0", "up"])?;
    ns.ip(&["link", "set", "lb1", "up"])?;
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "lb0"])?;
    Ok(ns)
}

/// Runs `n` frames (seeded `seed`) through `prog`; `check` judges each
/// (frame, action, output). `XDP_ABORTED` fails the run whatever `check`
/// says.
fn fuzz(
    prog: &Xdp,
    ingress: u32,
    seeds: &[Vec<u8>],
    (n, seed): (usize, u64),
    mut check: impl FnMut(&[u8], u32, &[u8]) -> Result<()>,
) -> Result<Tally> {
    let mut rng = Rng(seed);
    let mut out = vec![0u8; 2200];
    let mut t = Tally::new();
    for i in 0..n {
        let f = next_frame(&mut rng, seeds, i);
        t.runs += 1;
        let Ok(r) = test_run(prog, ingress, &f, &mut out) else {
            t.refused_by_kernel += 1;
            continue;
        };
        let action = r.return_value;
        ensure!(
            action != XDP_ABORTED && action <= 4,
            "{} on {}",
            action_name(action),
            hex(&f)
        );
        t.by_action[action as usize] += 1;
        check(&f, action, &out[..r.data_size_out as usize])?;
    }
    Ok(t)
}

fn vip_set() -> BTreeSet<IpAddr> {
    VIPS.iter().map(|v| v.parse().expect("literal")).collect()
}

pub fn a_million_mutated_frames_never_abort_and_only_vip_packets_are_forwarded(
    _: &mut Env,
) -> Result<()> {
    let ns = fuzz_netns()?;
    let _inside = ns.enter()?;
    let c = config::parse(CONFIG, "fuzz").map_err(|e| anyhow::anyhow!("{e}"))?;
    let dp = Dataplane::load(c.limits, None)?;
    let b = Balancer::new(dp, c, Instant::now()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let vips = vip_set();
    let t0 = Instant::now();
    let run = (BALANCER_FRAMES, 0x6c62_2d66_757a_7a31);
    let t = fuzz(
        b.tables().program()?,
        ns.ifindex("lb0")?,
        &balancer_seeds(),
        run,
        |f, action, _| {
            ensure!(
                action == XDP_DROP
                    || action == XDP_PASS
                    || valid_destination(f).is_some_and(|d| vips.contains(&d)),
                "{} of a frame that is not a valid VIP packet: {}",
                action_name(action),
                hex(f)
            );
            Ok(())
        },
    )?;
    ensure!(
        t.by_action[3] + t.by_action[4] > 10_000,
        "too little forwarded to mean anything: {}",
        t.summary()
    );
    println!("    balancer: {} in {:.1?}", t.summary(), t0.elapsed());
    Ok(())
}

pub fn mutated_tunnels_never_abort_decap_and_only_lb_tunnels_to_vips_are_unwrapped(
    _: &mut Env,
) -> Result<()> {
    let ns = fuzz_netns()?;
    let _inside = ns.enter()?;
    let mut d = Decap::load(false)?;
    d.configure(GUE_PORT, Checks::default())?;
    let sources: Vec<Prefix> = LB_SOURCES
        .iter()
        .map(|p| p.parse().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    for p in &sources {
        d.add_lb_source(*p)?;
    }
    let vips = vip_set();
    for v in &vips {
        d.add_vip(*v)?;
    }
    for l in LOCAL {
        d.add_local_address(l.parse()?)?;
    }
    let mut unwrapped = 0;
    let run = (DECAP_FRAMES, 0x6c62_2d64_6563_6170);
    let t = fuzz(
        d.program()?,
        ns.ifindex("lb0")?,
        &decap_seeds(),
        run,
        |f, action, out| {
            ensure!(
                action == XDP_DROP || action == XDP_PASS,
                "{} from decap on {}",
                action_name(action),
                hex(f)
            );
            if action == XDP_PASS && out != f {
                unwrapped += 1;
                ensure!(
                    acceptable_tunnel(f, &sources, &vips),
                    "unwrapped a tunnel it must refuse: {}",
                    hex(f)
                );
            }
            Ok(())
        },
    )?;
    ensure!(
        unwrapped > 1000,
        "too few tunnels unwrapped to mean anything ({unwrapped})"
    );
    println!("    decap: {}, {unwrapped} unwrapped", t.summary());
    Ok(())
}

fn hex(f: &[u8]) -> String {
    f.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("")
}
