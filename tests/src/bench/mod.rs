//! Per-packet cost of the XDP programs through BPF_PROG_TEST_RUN.
//!
//! Every measurement is a loop of single runs (repeat = 1): with repeat > 1
//! the kernel re-runs the program on the buffer the previous run modified,
//! so an encapsulating program would time itself on an already-encapsulated
//! packet. The kernel reports each run's duration in nanoseconds; we take
//! the median over many runs, and the trivial `xdp_tx` program measured the
//! same way is the floor (what the harness itself costs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use aya::programs::Xdp;
use lb::{
    core::config::Limits,
    kernel::{codec::addr_words, dataplane::Dataplane},
};
use lb_common::maps::*;

use crate::{
    netns::Netns,
    packet::{self, ACK, ETH_P_IP, V4, ethernet, tcp, udp},
};

/// The balancer interface's MAC, which the bench frames are addressed to.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x01];
pub const BACKENDS_PER_VIP: u32 = 100;

/// Median, 90th percentile and count of per-run durations in ns.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    pub median_ns: u64,
    pub p90_ns: u64,
    pub runs: usize,
}

pub fn summarize(mut ns: Vec<u64>) -> Cost {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize];
    Cost {
        median_ns: at(0.5),
        p90_ns: at(0.9),
        runs: ns.len(),
    }
}

/// Runs each frame of `frames` in turn, `runs` single runs in all, and
/// returns the kernel-measured duration of each. `expect` is the XDP action
/// every run must return (a benchmark of the wrong path is worthless).
pub fn time_runs(
    prog: &Xdp,
    ingress: u32,
    frames: &[Vec<u8>],
    runs: usize,
    expect: u32,
) -> Result<Vec<u64>> {
    let mut out = vec![0u8; 4096];
    let mut ns = Vec::with_capacity(runs);
    for i in 0..runs {
        let r = crate::fixture::test_run(prog, ingress, &frames[i % frames.len()], &mut out)?;
        anyhow::ensure!(
            r.return_value == expect,
            "run {i} returned action {} (want {expect})",
            r.return_value
        );
        ns.push(r.duration.as_nanos() as u64);
    }
    Ok(ns)
}

/// Gives `ifname` in `ns` the MAC the bench frames are addressed to.
pub fn set_lb_mac(ns: &Netns, ifname: &str) -> Result<()> {
    let mac = LB_MAC.map(|b| format!("{b:02x}")).join(":");
    ns.ip(&["link", "set", ifname, "address", &mac]).map(drop)
}

/// The namespace of the per-packet benchmark: one interface whose
/// neighbours are the backends, so `bpf_fib_lookup` resolves them.
pub fn bench_namespace() -> Result<(Netns, u32)> {
    let ns = Netns::new("bench")?;
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])?;
    ns.ip(&[
        "link", "add", "lb0", "type", "veth", "peer", "name", "peer0",
    ])?;
    set_lb_mac(&ns, "lb0")?;
    ns.ip(&["addr", "add", "10.0.0.1/16", "dev", "lb0"])?;
    ns.ip(&["addr", "add", "fd00::1/64", "dev", "lb0", "nodad"])?;
    ns.ip(&["link", "set", "lb0", "up"])?;
    ns.ip(&["link", "set", "peer0", "up"])?;
    backend_neighbours(&ns, "lb0", true)?;
    let ifindex = ns.ifindex("lb0")?;
    Ok((ns, ifindex))
}

/// Permanent neighbour entries on `dev` for every benchmark backend (and
/// their IPv6 twins with `v6`), so `bpf_fib_lookup` resolves them at once.
pub fn backend_neighbours(ns: &Netns, dev: &str, v6: bool) -> Result<()> {
    for i in 0..BACKENDS_PER_VIP {
        let (a4, a6) = backend_addrs(i);
        let mac = format!("02:00:0a:00:{:02x}:{:02x}", i >> 8, i & 0xff);
        let addrs: Vec<IpAddr> = if v6 {
            vec![a4.into(), a6.into()]
        } else {
            vec![a4.into()]
        };
        for a in addrs {
            ns.ip(&[
                "neigh",
                "replace",
                &a.to_string(),
                "lladdr",
                &mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
    }
    Ok(())
}

pub fn backend_addrs(i: u32) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::new(10, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i as u16 + 1),
    )
}

/// The VIPs of the benchmark world, each with 100 backends.
pub struct BenchVip {
    pub name: &'static str,
    pub addr: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub fwd: u8,
    pub v6_backends: bool,
}

pub fn bench_vips() -> Vec<BenchVip> {
    let v = |name, addr: &str, port, proto, fwd, v6_backends| BenchVip {
        name,
        addr: addr.parse().unwrap(),
        port,
        proto,
        fwd,
        v6_backends,
    };
    vec![
        v("ipip4", "10.200.0.1", 80, PROTO_TCP, FWD_IPIP, false),
        v("ip6ip6", "fd20::1", 80, PROTO_TCP, FWD_IPIP, true),
        v("udp4", "10.200.0.2", 53, PROTO_UDP, FWD_IPIP, false),
        v("gue4", "10.200.0.3", 80, PROTO_TCP, FWD_GUE, false),
        v("dsr4", "10.200.0.4", 80, PROTO_TCP, FWD_L2_DSR, false),
    ]
}

/// Loads and provisions the balancer for the benchmark (in the current
/// network namespace, which must be the bench namespace).
pub fn provision(per_cpu_conntrack: bool) -> Result<Dataplane> {
    provision_object(lb::kernel::objects::BALANCER, per_cpu_conntrack)
}

/// [`provision`] with another build of the balancer (`object`).
pub fn provision_object(object: &[u8], per_cpu_conntrack: bool) -> Result<Dataplane> {
    let limits = Limits {
        max_vips: 8,
        max_backends: 1024,
        conntrack_per_cpu: per_cpu_conntrack,
        ..Limits::default()
    };
    provision_vips(object, limits, &bench_vips(), false)
}

/// Loads `object` with `limits` and provisions `vips`, 100 backends each;
/// the tables are Maglev's with `maglev`, else backends in turn.
pub fn provision_vips(
    object: &[u8],
    limits: Limits,
    vips: &[BenchVip],
    maglev: bool,
) -> Result<Dataplane> {
    let mut dp = Dataplane::load_object(object, limits, None)?;
    dp.write_config(&LbConfig {
        udp_idle_ns: 30_000_000_000,
        // As the agent writes it for these VIPs (none on all ports).
        flags: CFG_F_NO_ALL_PORTS_VIPS,
        ..crate::fixture::test_config(1)
    })?;
    let mut next_backend = 0;
    for (vip_id, vip) in vips.iter().enumerate() {
        let vip_id = vip_id as u32;
        let mut entries = vec![];
        for i in 0..BACKENDS_PER_VIP {
            let (a4, a6) = backend_addrs(i);
            let addr: IpAddr = if vip.v6_backends {
                a6.into()
            } else {
                a4.into()
            };
            let (words, family) = addr_words(addr);
            let b = Backend {
                addr: words,
                family,
                fwd_mode: vip.fwd,
                flags: BACKEND_F_VALID,
                vip_id,
                ..Backend::default()
            };
            dp.write_backend(next_backend, &b)?;
            entries.push(lb::core::maglev::Entry {
                key: addr.to_string(),
                weight: 1,
                id: next_backend,
            });
            next_backend += 1;
        }
        let (words, family) = addr_words(vip.addr);
        let key = VipKey {
            addr: words,
            port: vip.port.to_be(),
            proto: vip.proto,
            family,
        };
        dp.write_vip(
            &key,
            &VipMeta {
                id: vip_id,
                flags: 0,
                hash_mode: HASH_FIVE_TUPLE,
                _pad: 0,
            },
        )?;
        let m = dp.limits().ring_size;
        let ring: Vec<u32> = if maglev {
            lb::core::maglev::build(&entries, m, 7)
        } else {
            (0..m as usize)
                .map(|s| entries[s % entries.len()].id)
                .collect()
        };
        dp.replace_ring(vip_id, &ring)?;
    }
    Ok(dp)
}

pub fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc633_0000 | (i & 0xffff))
}

/// Source port of flow `i`: with [`client`], distinct for over a billion
/// flows, so "new flow" cases never repeat a 5-tuple.
pub fn client_port(i: u32) -> u16 {
    40000 + (i >> 16) as u16 % 25000
}

pub fn client6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// Client `i` of a VIP's family.
fn client_of(vip: &BenchVip, i: u32) -> IpAddr {
    if vip.addr.is_ipv4() {
        client(i).into()
    } else {
        client6(i).into()
    }
}

/// `n` distinct TCP frames (different client addresses) to a VIP.
pub fn tcp_frames(vip: &BenchVip, flags: packet::Flags, n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let src = client_of(vip, i);
            let seg = tcp(src, vip.addr, client_port(i), vip.port, flags, b"");
            let (ether_type, ip) = packet::ip_packet(src, vip.addr, 6, &seg);
            ethernet(LB_MAC, CLIENT_MAC, None, ether_type, &ip)
        })
        .collect()
}

/// `n` distinct UDP datagrams to a VIP.
pub fn udp_frames(vip: &BenchVip, n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let src = client_of(vip, i);
            let d = udp(src, vip.addr, client_port(i), vip.port, b"0123456789abcdef");
            let (ether_type, ip) = packet::ip_packet(src, vip.addr, 17, &d);
            ethernet(LB_MAC, CLIENT_MAC, None, ether_type, &ip)
        })
        .collect()
}

/// A frame to an address that is not a VIP.
pub fn non_vip_frames() -> Vec<Vec<u8>> {
    let dst = Ipv4Addr::new(10, 0, 0, 1);
    let seg = tcp(client(1).into(), dst.into(), 40000, 22, ACK, b"");
    vec![ethernet(
        LB_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IP,
        &V4::new(client(1), dst, 6).packet(&seg),
    )]
}

pub mod fleet;
pub mod guard;
pub mod katran_world;
pub mod maglev;
pub mod memory;
pub mod reaction;
pub mod svg;
pub mod throughput;
pub mod two_cpu;

/// Writes each case's frames as raw files (`<case>.bin`: the first frame,
/// `<case>.frames`: all of them, each prefixed by its u16 length) and one
/// pcap with the first frame of every case, so any other load balancer can
/// be timed on exactly the same input.
pub fn write_frames(dir: &std::path::Path, cases: &[(&str, &[Vec<u8>])]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut firsts = vec![];
    for (name, frames) in cases {
        let Some(first) = frames.first() else {
            continue;
        };
        std::fs::write(dir.join(format!("{name}.bin")), first)?;
        let mut all = Vec::new();
        for f in frames.iter().take(65536) {
            all.extend_from_slice(&(f.len() as u16).to_le_bytes());
            all.extend_from_slice(f);
        }
        std::fs::write(dir.join(format!("{name}.frames")), all)?;
        firsts.push(first.as_slice());
    }
    crate::pcap::write(&dir.join("cases.pcap"), &firsts)?;
    Ok(())
}
