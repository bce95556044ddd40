//! Katran-style packet fixtures for the balancer and decap XDP programs.
//!
//! One provisioned world (VIPs, backends, rings, config) inside a network
//! namespace whose routes and static neighbours make `bpf_fib_lookup`
//! deterministic. Rows run in order through BPF_PROG_TEST_RUN against the
//! real compiled objects and share connection-table state; each is checked
//! byte for byte, and afterwards every counter is checked exactly.
//!
//! `LB_FIXTURE_PCAP=<dir>` writes `<row>.pcap` (input, output, expected)
//! for every row.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use lb::{
    core::{config::Limits, tables::Tables as _},
    kernel::{codec::addr_words, dataplane::Dataplane, decap::Decap},
};
use lb_common::{
    Reason::{self, *},
    hash::flow_hash,
    limits::{MAP_LAYOUT_VERSION, NO_BACKEND},
    maps::*,
};
use lb_tests::{
    fixture::{Fixture, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, check, pcap_dir, run_frame},
    netns::{Netns, require_root},
    packet::*,
};

/// Small prime ring: same code path as 65537, quicker to provision.
const RING_SIZE: u32 = 1021;
const SEED: u32 = 0x5eed_1234;
const GUE_PORT: u16 = 6080;

const LB0_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
const LB1_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x01];
const LB2_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
const CLIENT_MAC: Mac = [0x02, 0xcc, 0, 0, 0, 0x01];
const GW_MAC: Mac = [0x02, 0, 0x0a, 0, 0, 0xfe];
const GW6_MAC: Mac = [0x02, 0, 0xfd, 0, 0, 0xfe];
const LB1_GW_MAC: Mac = [0x02, 0, 0x0a, 0x09, 0, 0xfe];
const LB2_GW_MAC: Mac = [0x02, 0, 0x0a, 0x08, 0, 0xfe];
const I1_MAC: Mac = [0x02, 0, 0, 0x03, 0, 0x09];
const CONFIGURED_GW_MAC: Mac = [0x02, 0, 0, 0x99, 0x99, 0x99];

fn client4() -> Ipv4Addr {
    v4("198.51.100.10")
}
fn client6() -> Ipv6Addr {
    v6("2001:db8::10")
}

/// MAC of on-link neighbour 10.0.0.N / fd00::N (static entries below).
fn neigh_mac(addr: IpAddr) -> Mac {
    match addr {
        IpAddr::V4(a) => [0x02, 0, 0x0a, 0, 0, a.octets()[3]],
        IpAddr::V6(a) => [0x02, 0, 0xfd, 0, 0, a.octets()[15]],
    }
}

#[derive(Clone)]
struct BackendModel {
    name: &'static str,
    addr: IpAddr,
    fwd: u8,
    /// Destination MAC of the frame that leaves, source MAC, and how.
    next_hop: Mac,
    egress_mac: Mac,
    configured_mac: Option<Mac>,
}

#[derive(Clone)]
struct VipModel {
    id: u32,
    addr: IpAddr,
    port: u16,
    proto: u8,
    mode: u32,
    backends: Vec<u32>,
    ring: Vec<u32>,
}

struct World {
    dp: Dataplane,
    ingress: u32,
    cfg: LbConfig,
    backends: Vec<BackendModel>,
    vips: BTreeMap<&'static str, VipModel>,
    /// Outputs of earlier rows, by name, for the decap round trips.
    saved: BTreeMap<&'static str, (u32, Vec<u8>)>,
    /// Undo actions a row registers; run right after that row.
    after: Vec<After>,
}

type After = Box<dyn FnOnce(&mut World) -> Result<()>>;

fn words(a: IpAddr) -> [u32; 4] {
    addr_words(a).0
}

fn family(a: IpAddr) -> u8 {
    addr_words(a).1
}

fn pattern_ring(backends: &[u32]) -> Vec<u32> {
    if backends.is_empty() {
        return vec![NO_BACKEND; RING_SIZE as usize];
    }
    (0..RING_SIZE as usize)
        .map(|i| backends[i % backends.len()])
        .collect()
}

impl World {
    /// Runs `f` after the current row (to restore what the row changed).
    fn after(&mut self, f: impl FnOnce(&mut World) -> Result<()> + 'static) {
        self.after.push(Box::new(f));
    }

    fn restore_ring(&mut self, vip: &'static str) {
        self.after(move |w| {
            let ids = w.vip(vip).backends.clone();
            w.set_ring(vip, pattern_ring(&ids))
        });
    }

    fn backend_id(&self, name: &str) -> u32 {
        self.backends
            .iter()
            .position(|b| b.name == name)
            .expect("backend") as u32
    }

    fn vip(&self, name: &str) -> &VipModel {
        &self.vips[name]
    }

    fn flow(&self, vip: &str, src: IpAddr, sport: u16, dport: Option<u16>) -> FlowKey {
        let v = self.vip(vip);
        FlowKey {
            src: words(src),
            dst: words(v.addr),
            sport: sport.to_be(),
            dport: dport.unwrap_or(v.port).to_be(),
            proto: v.proto,
            family: family(v.addr),
            _pad: [0; 2],
        }
    }

    fn hash(&self, vip: &str, flow: &FlowKey) -> u32 {
        flow_hash(flow, self.vip(vip).mode, self.cfg.hash_seed)
    }

    /// The backend the VIP's ring gives `flow`.
    fn ring_choice(&self, vip: &str, flow: &FlowKey) -> u32 {
        self.vip(vip).ring[(self.hash(vip, flow) % RING_SIZE) as usize]
    }

    fn set_ring(&mut self, vip: &str, ring: Vec<u32>) -> Result<()> {
        let id = self.vip(vip).id;
        self.dp.replace_ring(id, &ring)?;
        self.vips.get_mut(vip).unwrap().ring = ring;
        Ok(())
    }

    fn push_config(&mut self) -> Result<()> {
        self.dp.write_config(&self.cfg)?;
        Ok(())
    }

    fn set_backend_down(&mut self, id: u32, down: bool) -> Result<()> {
        let mut b = self.dp.backend(id)?;
        if down {
            b.flags |= BACKEND_F_DOWN;
        } else {
            b.flags &= !BACKEND_F_DOWN;
        }
        self.dp.write_backend(id, &b)?;
        Ok(())
    }

    fn set_backend_vip(&mut self, id: u32, vip_id: u32) -> Result<()> {
        let mut b = self.dp.backend(id)?;
        b.vip_id = vip_id;
        self.dp.write_backend(id, &b)?;
        Ok(())
    }

    /// The frame the balancer must emit for `input` sent to `backend`.
    fn encapsulated(&self, backend: u32, input: &[u8], hash: u32) -> Vec<u8> {
        let b = &self.backends[backend as usize];
        let (vlan, l3) = split_l2(input);
        let inner_v4 = l3[0] >> 4 == 4;
        let (tos, df) = if inner_v4 {
            (l3[1], l3[6] & 0x40 != 0)
        } else {
            ((l3[0] << 4) | (l3[1] >> 4), true)
        };
        let inner_proto = if inner_v4 { 4 } else { 41 };
        let gue = b.fwd == FWD_GUE;
        let gue_sport = 0xc000 | (hash as u16 & 0x3fff);
        let (ether_type, outer) = match b.addr {
            IpAddr::V4(dst) => {
                let src = Ipv4Addr::from((0xac10_0000u32) | (hash & 0xffff));
                let mut h = V4::new(src, dst, if gue { 17 } else { inner_proto });
                h.tos = tos;
                h.df = df;
                let payload = if gue {
                    udp_zero_checksum(gue_sport, GUE_PORT, l3)
                } else {
                    l3.to_vec()
                };
                (ETH_P_IP, h.packet(&payload))
            }
            IpAddr::V6(dst) => {
                let src = Ipv6Addr::from((0xfd99u128 << 112) | hash as u128);
                let mut h = V6::new(src, dst, if gue { 17 } else { inner_proto });
                h.traffic_class = tos;
                h.flow_label = hash & 0xfffff;
                let payload = if gue {
                    udp_zero_checksum(gue_sport, GUE_PORT, l3)
                } else {
                    l3.to_vec()
                };
                (ETH_P_IPV6, h.packet(&payload))
            }
        };
        ethernet(b.next_hop, b.egress_mac, vlan, ether_type, &outer)
    }
}

/// (VLAN id, L3 bytes) of a frame.
fn split_l2(frame: &[u8]) -> (Option<u16>, &[u8]) {
    if frame[12..14] == [0x81, 0x00] {
        (
            Some(u16::from_be_bytes([frame[14], frame[15]])),
            &frame[18..],
        )
    } else {
        (None, &frame[14..])
    }
}

fn tcp4_frame(
    src: Ipv4Addr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let IpAddr::V4(dst) = dst else {
        panic!("v4 VIP")
    };
    let seg = tcp(src.into(), dst.into(), sport, dport, flags, payload);
    ethernet(
        LB0_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IP,
        &V4::new(src, dst, 6).packet(&seg),
    )
}

fn tcp6_frame(
    src: Ipv6Addr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let IpAddr::V6(dst) = dst else {
        panic!("v6 VIP")
    };
    let seg = tcp(src.into(), dst.into(), sport, dport, flags, payload);
    ethernet(
        LB0_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IPV6,
        &V6::new(src, dst, 6).packet(&seg),
    )
}

fn udp4_frame(src: Ipv4Addr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let IpAddr::V4(dst) = dst else {
        panic!("v4 VIP")
    };
    let d = udp(src.into(), dst.into(), sport, dport, b"query");
    ethernet(
        LB0_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IP,
        &V4::new(src, dst, 17).packet(&d),
    )
}

/// A forwarded-to-backend row: expected output and counters from the model.
fn forward_row(
    w: &World,
    name: &str,
    vip: &str,
    flow: &FlowKey,
    input: Vec<u8>,
    hit: Option<u32>,
) -> Fixture {
    let v = w.vip(vip);
    let hash = w.hash(vip, flow);
    let (backend, first) = match hit {
        Some(b) => (b, ConntrackHit),
        None => (w.ring_choice(vip, flow), ConntrackMiss),
    };
    let b = &w.backends[backend as usize];
    let (fib, tx) = if b.configured_mac.is_some() && b.next_hop == b.configured_mac.unwrap() {
        (FibFallbackMac, FwdTx)
    } else if b.egress_mac == LB0_MAC {
        (FibOk, FwdTx)
    } else {
        (FibOk, FwdRedirect)
    };
    let action = if tx == FwdTx { XDP_TX } else { XDP_REDIRECT };
    let output = if b.fwd == FWD_L2_DSR {
        let mut f = input.clone();
        f[0..6].copy_from_slice(&b.next_hop);
        f[6..12].copy_from_slice(&b.egress_mac);
        f
    } else {
        w.encapsulated(backend, &input, hash)
    };
    let fwd = if b.fwd == FWD_L2_DSR {
        FwdL2Dsr
    } else {
        FwdEncap
    };
    let len = input.len();
    let _ = len;
    Fixture::new(name, input, action)
        .output(output)
        .reasons(&[first, fib, fwd, tx])
        .traffic(v.id, backend, hit.is_none())
}

fn setup_namespace(ns: &Netns) -> Result<()> {
    let sh = |cmd: &str| -> Result<()> {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        ns.ip(&args)
            .map(|_| ())
            .with_context(|| format!("ip {cmd}"))
    };
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])?;
    for (lb, peer, mac, addr4) in [
        ("lb0", "peer0", LB0_MAC, "10.0.0.1/24"),
        ("lb1", "peer1", LB1_MAC, "10.9.0.1/24"),
        ("lb2", "peer2", LB2_MAC, "10.8.0.1/24"),
    ] {
        sh(&format!("link add {lb} type veth peer name {peer}"))?;
        sh(&format!("link set {lb} address {}", mac_str(mac)))?;
        sh(&format!("addr add {addr4} dev {lb}"))?;
        sh(&format!("link set {lb} up"))?;
        sh(&format!("link set {peer} up"))?;
    }
    sh("addr add fd00::1/64 dev lb0 nodad")?;
    sh("route add 10.1.0.0/16 via 10.0.0.254 dev lb0")?;
    sh("route add fd01::/64 via fd00::fe dev lb0")?;
    sh("route add 10.2.0.0/16 via 10.9.0.254 dev lb1")?;
    sh("route add 10.5.0.0/16 via 10.8.0.254 dev lb2")?;
    let mut neigh = vec![
        ("10.0.0.254".to_string(), GW_MAC, "lb0"),
        ("fd00::fe".to_string(), GW6_MAC, "lb0"),
        ("10.9.0.254".to_string(), LB1_GW_MAC, "lb1"),
        ("10.8.0.254".to_string(), LB2_GW_MAC, "lb2"),
    ];
    for n in [11, 12, 13, 21, 31, 32, 41, 42, 43, 71, 81, 91, 92, 101, 102] {
        let a: IpAddr = format!("10.0.0.{n}").parse()?;
        neigh.push((a.to_string(), neigh_mac(a), "lb0"));
    }
    for n in [0x51, 0x52, 0x61] {
        let a: IpAddr = format!("fd00::{n:x}").parse()?;
        neigh.push((a.to_string(), neigh_mac(a), "lb0"));
    }
    for (addr, mac, dev) in neigh {
        sh(&format!(
            "neigh replace {addr} lladdr {} dev {dev} nud permanent",
            mac_str(mac)
        ))?;
    }
    Ok(())
}

fn mac_str(m: Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn build_world(ns: &Netns) -> Result<World> {
    let limits = Limits {
        max_vips: 32,
        max_backends: 64,
        ring_size: RING_SIZE,
        conntrack_size: 4096,
        conntrack_per_cpu: false,
    };
    let dp = Dataplane::load(limits, None)?;
    let ingress = ns.ifindex("lb0")?;
    let lb1 = ns.ifindex("lb1")?;
    let cfg = LbConfig {
        hash_seed: SEED,
        flood_new_flows_per_sec: 0,
        udp_idle_ns: 10_000_000_000,
        encap_src_v4: u32::from_ne_bytes([172, 16, 0, 0]),
        encap_src_v6: words("fd99::".parse()?),
        encap_src_v4_hash_bits: 16,
        encap_src_v6_hash_bits: 32,
        flags: 0,
        mtu: 1500,
        gue_port: GUE_PORT.to_be(),
        gw_mac: [0; 6],
        _pad: [0; 2],
        layout_version: MAP_LAYOUT_VERSION,
    };
    let mut w = World {
        dp,
        ingress,
        cfg,
        backends: vec![],
        vips: BTreeMap::new(),
        saved: BTreeMap::new(),
        after: vec![],
    };
    w.dp.add_tx_port(lb1)?;

    let on_link = |name, a: &str, fwd| {
        let addr: IpAddr = a.parse().unwrap();
        BackendModel {
            name,
            addr,
            fwd,
            next_hop: neigh_mac(addr),
            egress_mac: LB0_MAC,
            configured_mac: None,
        }
    };
    let routed = |name, a: &str, fwd, next_hop, egress_mac| BackendModel {
        name,
        addr: a.parse().unwrap(),
        fwd,
        next_hop,
        egress_mac,
        configured_mac: None,
    };
    w.backends = vec![
        on_link("a1", "10.0.0.11", FWD_IPIP),
        on_link("a2", "10.0.0.12", FWD_IPIP),
        on_link("a3", "10.0.0.13", FWD_IPIP),
        on_link("b1", "10.0.0.21", FWD_GUE),
        routed("b2", "10.1.0.22", FWD_GUE, GW_MAC, LB0_MAC),
        on_link("c1", "10.0.0.31", FWD_IPIP),
        on_link("c2", "10.0.0.32", FWD_IPIP),
        on_link("d1", "10.0.0.41", FWD_IPIP),
        on_link("d2", "10.0.0.42", FWD_IPIP),
        on_link("d3", "10.0.0.43", FWD_IPIP),
        on_link("e1", "fd00::51", FWD_IPIP),
        on_link("e2", "fd00::52", FWD_GUE),
        on_link("f1", "fd00::61", FWD_IPIP),
        on_link("g1", "10.0.0.71", FWD_IPIP),
        on_link("h1", "10.0.0.81", FWD_L2_DSR),
        BackendModel {
            name: "i1",
            addr: "10.3.0.9".parse()?,
            fwd: FWD_IPIP,
            next_hop: I1_MAC,
            egress_mac: LB0_MAC,
            configured_mac: Some(I1_MAC),
        },
        routed("j1", "10.4.0.10", FWD_IPIP, CONFIGURED_GW_MAC, LB0_MAC),
        routed("k1", "10.2.0.5", FWD_IPIP, LB1_GW_MAC, LB1_MAC),
        routed("k2", "10.5.0.5", FWD_IPIP, LB2_GW_MAC, LB2_MAC),
        on_link("m1", "10.0.0.91", FWD_IPIP),
        on_link("m2", "10.0.0.92", FWD_IPIP),
        on_link("n1", "10.0.0.101", FWD_IPIP),
        on_link("n2", "10.0.0.102", FWD_IPIP),
    ];
    let specs: &[VipSpec] = &[
        (
            "a4",
            "10.100.0.1",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["a1", "a2", "a3"],
        ),
        (
            "b4",
            "10.100.0.2",
            443,
            PROTO_TCP,
            HASH_SRC_IP,
            0,
            &["b1", "b2"],
        ),
        (
            "c4",
            "10.100.0.3",
            53,
            PROTO_UDP,
            HASH_FIVE_TUPLE,
            0,
            &["c1", "c2"],
        ),
        (
            "d4",
            "10.100.0.4",
            0,
            PROTO_TCP,
            HASH_SRC_IP_DST_PORT,
            0,
            &["d1", "d2", "d3"],
        ),
        ("e6", "fd10::1", 80, PROTO_TCP, HASH_FIVE_TUPLE, 0, &["e1"]),
        ("e6g", "fd10::2", 80, PROTO_TCP, HASH_FIVE_TUPLE, 0, &["e2"]),
        (
            "f4",
            "10.100.0.6",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["f1"],
        ),
        ("g6", "fd10::7", 80, PROTO_TCP, HASH_FIVE_TUPLE, 0, &["g1"]),
        (
            "h4",
            "10.100.0.8",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["h1"],
        ),
        (
            "i4",
            "10.100.0.9",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["i1"],
        ),
        (
            "j4",
            "10.100.0.10",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["j1"],
        ),
        (
            "k4",
            "10.100.0.11",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["k1"],
        ),
        (
            "k4b",
            "10.100.0.15",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["k2"],
        ),
        ("l4", "10.100.0.12", 80, PROTO_TCP, HASH_FIVE_TUPLE, 0, &[]),
        (
            "m4",
            "10.100.0.13",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            VIP_F_MOVE_FLOWS_ON_DOWN,
            &["m1", "m2"],
        ),
        (
            "n4",
            "10.100.0.14",
            80,
            PROTO_TCP,
            HASH_FIVE_TUPLE,
            0,
            &["n1", "n2"],
        ),
    ];

    for (id, b) in w.backends.iter().enumerate() {
        let (addr, fam) = addr_words(b.addr);
        let mut flags = BACKEND_F_VALID;
        if b.configured_mac.is_some() {
            flags |= BACKEND_F_HAS_MAC;
        }
        let backend = Backend {
            addr,
            family: fam,
            fwd_mode: b.fwd,
            flags,
            _pad0: 0,
            gue_port: 0,
            mac: b.configured_mac.unwrap_or_default(),
            // The VIP that lists it (each fixture backend serves one VIP,
            // as each agent-allocated id does).
            vip_id: specs
                .iter()
                .position(|s| s.6.contains(&b.name))
                .unwrap_or(0) as u32,
        };
        w.dp.write_backend(id as u32, &backend)?;
    }

    for (id, (name, addr, port, proto, mode, flags, backends)) in specs.iter().enumerate() {
        let addr: IpAddr = addr.parse()?;
        let (a, fam) = addr_words(addr);
        let id = id as u32;
        let key = VipKey {
            addr: a,
            port: port.to_be(),
            proto: *proto,
            family: fam,
        };
        w.dp.write_vip(
            &key,
            &VipMeta {
                id,
                flags: *flags,
                hash_mode: *mode,
                _pad: 0,
            },
        )?;
        let marker = VipKey {
            addr: a,
            port: 0,
            proto: 0,
            family: fam,
        };
        w.dp.write_vip(
            &marker,
            &VipMeta {
                id,
                flags: VIP_F_ADDR_MARKER | VIP_F_ICMP_ECHO,
                hash_mode: 0,
                _pad: 0,
            },
        )?;
        let ids: Vec<u32> = backends.iter().map(|b| w.backend_id(b)).collect();
        let ring = pattern_ring(&ids);
        w.dp.replace_ring(id, &ring)?;
        w.vips.insert(
            name,
            VipModel {
                id,
                addr,
                port: *port,
                proto: *proto,
                mode: *mode,
                backends: ids,
                ring,
            },
        );
    }
    Ok(w)
}

type Step = Box<dyn Fn(&mut World) -> Result<Fixture>>;
type DecapStep = Box<dyn Fn(&World) -> Result<Fixture>>;
/// name, address, port, protocol, hash mode, flags, backends
type VipSpec = (
    &'static str,
    &'static str,
    u16,
    u8,
    u32,
    u32,
    &'static [&'static str],
);

fn step(f: impl Fn(&mut World) -> Result<Fixture> + 'static) -> Step {
    Box::new(f)
}

/// The other backend of a two-or-more backend VIP.
fn other(w: &World, vip: &str, not: u32) -> u32 {
    *w.vip(vip)
        .backends
        .iter()
        .find(|b| **b != not)
        .expect("a second backend")
}

fn balancer_steps() -> Vec<Step> {
    let mut s: Vec<Step> = vec![];
    let c4 = client4();
    let c6 = client6();

    // --- Traffic that is not ours -------------------------------------
    s.push(step(|_| {
        Ok(Fixture::new(
            "arp request passes",
            arp_request(CLIENT_MAC, v4("10.0.0.50"), v4("10.0.0.1")),
            XDP_PASS,
        )
        .reasons(&[PassNotIp]))
    }));
    s.push(step(move |_| {
        let f = tcp4_frame(c4, "10.0.0.1".parse()?, 40000, 22, SYN, b"");
        Ok(Fixture::new("ipv4 tcp to a non-VIP passes", f, XDP_PASS).reasons(&[PassNotVip]))
    }));
    s.push(step(move |_| {
        let f = tcp6_frame(c6, "fd00::1".parse()?, 40000, 22, SYN, b"");
        Ok(Fixture::new("ipv6 tcp to a non-VIP passes", f, XDP_PASS).reasons(&[PassNotVip]))
    }));
    s.push(step(move |_| {
        let mut h = V4::new(c4, v4("10.0.0.1"), 6);
        h.mf = true;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&[0u8; 24]));
        Ok(Fixture::new("ipv4 fragment to a non-VIP passes", f, XDP_PASS).reasons(&[PassNotVip]))
    }));

    // --- Connection table: SYN, ACK, backend change --------------------
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40000, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 40000, 80, SYN, b"");
        Ok(forward_row(
            w,
            "ipip v4: SYN takes the ring and is recorded",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40000, None);
        let b = w.ring_choice("a4", &flow);
        let f = tcp4_frame(c4, w.vip("a4").addr, 40000, 80, ACK, b"hello");
        Ok(forward_row(
            w,
            "ipip v4: ACK hits the connection table",
            "a4",
            &flow,
            f,
            Some(b),
        ))
    }));
    s.push(step(move |w| {
        // Move the whole ring to another backend: the flow must stay.
        let flow = w.flow("a4", c4.into(), 40000, None);
        let pinned = w.ring_choice("a4", &flow);
        let o = other(w, "a4", pinned);
        w.set_ring("a4", pattern_ring(&[o]))?;
        w.saved.insert("a4-pinned", (pinned, vec![]));
        let f = tcp4_frame(c4, w.vip("a4").addr, 40000, 80, ACK, b"more");
        Ok(forward_row(
            w,
            "ring changed: established flow keeps its backend",
            "a4",
            &flow,
            f,
            Some(pinned),
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40001, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 40001, 80, SYN, b"");
        Ok(forward_row(
            w,
            "ring changed: a new flow takes the new ring",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40000, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 40000, 80, SYN, b"");
        Ok(forward_row(
            w,
            "a SYN on a recorded tuple takes the ring again",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40000, None);
        let now = w.ring_choice("a4", &flow);
        let f = tcp4_frame(c4, w.vip("a4").addr, 40000, 80, ACK, b"");
        let row = forward_row(
            w,
            "and its ACK follows the re-recorded backend",
            "a4",
            &flow,
            f,
            Some(now),
        );
        w.restore_ring("a4");
        Ok(row)
    }));

    // --- Parsing variants -----------------------------------------------
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40100, None);
        let seg = tcp(c4.into(), w.vip("a4").addr, 40100, 80, SYN, b"");
        let mut h = V4::new(c4, v4("10.100.0.1"), 6);
        h.options = vec![1, 1, 1, 1, 1, 1, 1, 0];
        h.tos = 0xb8;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&seg));
        Ok(forward_row(
            w,
            "ipv4 options (IHL 7) and DSCP EF are carried inside",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 40101, None);
        let seg = tcp(c4.into(), w.vip("a4").addr, 40101, 80, SYN, b"");
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            Some(100),
            ETH_P_IP,
            &V4::new(c4, v4("10.100.0.1"), 6).packet(&seg),
        );
        Ok(forward_row(
            w,
            "802.1Q tagged frame keeps its tag outside the tunnel",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("e6", c6.into(), 40102, None);
        let seg = tcp(c6.into(), w.vip("e6").addr, 40102, 80, SYN, b"");
        let mut h = V6::new(c6, v6("fd10::1"), 0);
        // Hop-by-hop header: next = TCP, length 0 (8 bytes), PadN.
        h.ext = vec![6, 0, 1, 4, 0, 0, 0, 0];
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &h.packet(&seg));
        Ok(forward_row(
            w,
            "ipv6 hop-by-hop header is skipped",
            "e6",
            &flow,
            f,
            None,
        ))
    }));

    // --- Every encapsulation ---------------------------------------------
    s.push(step(move |w| {
        let flow = w.flow("b4", c4.into(), 42000, None);
        let f = tcp4_frame(c4, w.vip("b4").addr, 42000, 443, SYN, b"");
        Ok(forward_row(
            w,
            "gue v4 (source-IP hash)",
            "b4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("b4", c4.into(), 42001, None);
        let f = tcp4_frame(c4, w.vip("b4").addr, 42001, 443, SYN, b"");
        Ok(forward_row(
            w,
            "source-IP hash: another port of the client, same backend",
            "b4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        // A client whose source-IP hash lands on the routed backend b2.
        let b2 = w.backend_id("b2");
        let client = (1..=255u8)
            .map(|i| Ipv4Addr::new(198, 51, 100, i))
            .find(|c| {
                let fl = w.flow("b4", (*c).into(), 42002, None);
                w.ring_choice("b4", &fl) == b2
            })
            .context("no client hashes to b2")?;
        let flow = w.flow("b4", client.into(), 42002, None);
        let f = tcp4_frame(client, w.vip("b4").addr, 42002, 443, SYN, b"");
        let row = forward_row(
            w,
            "gue v4 to a routed backend goes to the gateway MAC",
            "b4",
            &flow,
            f,
            None,
        );
        w.saved.insert("gue4", (b2, row.output.clone().unwrap()));
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("d4", c4.into(), 43000, Some(8080));
        let f = tcp4_frame(c4, w.vip("d4").addr, 43000, 8080, SYN, b"");
        Ok(forward_row(
            w,
            "all-ports VIP matches port 8080 (src IP + dst port hash)",
            "d4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("d4", c4.into(), 43001, Some(8080));
        let f = tcp4_frame(c4, w.vip("d4").addr, 43001, 8080, SYN, b"");
        Ok(forward_row(
            w,
            "src IP + dst port hash: other source port, same backend",
            "d4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("d4", c4.into(), 43002, Some(9090));
        let f = tcp4_frame(c4, w.vip("d4").addr, 43002, 9090, SYN, b"");
        Ok(forward_row(
            w,
            "all-ports VIP matches port 9090",
            "d4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        // The agent sets CFG_F_NO_ALL_PORTS_VIPS only when no VIP listens
        // on all ports; with it the port-0 lookup is skipped, which this
        // (deliberately inconsistent) world makes visible.
        w.cfg.flags |= CFG_F_NO_ALL_PORTS_VIPS;
        w.push_config()?;
        w.after(|w| {
            w.cfg.flags &= !CFG_F_NO_ALL_PORTS_VIPS;
            w.push_config()
        });
        let f = tcp4_frame(c4, w.vip("d4").addr, 43003, 8080, SYN, b"");
        Ok(Fixture::new(
            "no all-ports VIPs flagged: the port-0 lookup is skipped",
            f,
            XDP_PASS,
        )
        .reasons(&[PassVipNoService]))
    }));
    s.push(step(move |w| {
        let flow = w.flow("e6", c6.into(), 44000, None);
        let seg = tcp(c6.into(), w.vip("e6").addr, 44000, 80, SYN, b"");
        let mut h = V6::new(c6, v6("fd10::1"), 6);
        h.traffic_class = 0xb9;
        h.flow_label = 0x12345;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &h.packet(&seg));
        let row = forward_row(
            w,
            "ipv6-in-ipv6 copies the traffic class",
            "e6",
            &flow,
            f,
            None,
        );
        w.saved
            .insert("ip6ip6", (w.backend_id("e1"), row.output.clone().unwrap()));
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("e6g", c6.into(), 44001, None);
        let f = tcp6_frame(c6, w.vip("e6g").addr, 44001, 80, SYN, b"");
        let row = forward_row(w, "gue v6", "e6g", &flow, f, None);
        w.saved
            .insert("gue6", (w.backend_id("e2"), row.output.clone().unwrap()));
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("f4", c4.into(), 44002, None);
        let f = tcp4_frame(c4, w.vip("f4").addr, 44002, 80, SYN, b"");
        let row = forward_row(w, "ipv4-in-ipv6", "f4", &flow, f, None);
        w.saved
            .insert("ip4ip6", (w.backend_id("f1"), row.output.clone().unwrap()));
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("g6", c6.into(), 44003, None);
        let f = tcp6_frame(c6, w.vip("g6").addr, 44003, 80, SYN, b"");
        let row = forward_row(w, "ipv6-in-ipv4", "g6", &flow, f, None);
        w.saved
            .insert("ip6ip4", (w.backend_id("g1"), row.output.clone().unwrap()));
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 44004, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 44004, 80, SYN, b"");
        let row = forward_row(w, "ipip v4 for the decap round trip", "a4", &flow, f, None);
        w.saved.insert(
            "ipip",
            (w.ring_choice("a4", &flow), row.output.clone().unwrap()),
        );
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("h4", c4.into(), 44005, None);
        let f = tcp4_frame(c4, w.vip("h4").addr, 44005, 80, SYN, b"");
        Ok(forward_row(
            w,
            "L2 DSR rewrites the destination MAC only",
            "h4",
            &flow,
            f,
            None,
        ))
    }));

    // --- Next hops -------------------------------------------------------
    s.push(step(move |w| {
        let flow = w.flow("i4", c4.into(), 45000, None);
        let f = tcp4_frame(c4, w.vip("i4").addr, 45000, 80, SYN, b"");
        Ok(forward_row(
            w,
            "no route: the backend's configured MAC is used",
            "i4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let v = w.vip("j4").clone();
        let f = tcp4_frame(c4, v.addr, 45001, 80, SYN, b"");
        Ok(Fixture::new(
            "no route, no neighbour, no MAC: dropped and explained",
            f,
            XDP_DROP,
        )
        .reasons(&[ConntrackMiss, DropNoNextHop])
        .traffic(v.id, v.backends[0], true))
    }));
    s.push(step(move |w| {
        w.cfg.flags |= CFG_F_GW_MAC;
        w.cfg.gw_mac = CONFIGURED_GW_MAC;
        w.push_config()?;
        let flow = w.flow("j4", c4.into(), 45001, None);
        let b = w.vip("j4").backends[0];
        let f = tcp4_frame(c4, w.vip("j4").addr, 45001, 80, ACK, b"");
        let mut row = forward_row(
            w,
            "configured gateway MAC as the fallback",
            "j4",
            &flow,
            f,
            Some(b),
        );
        row.reasons = vec![ConntrackHit, FibFallbackMac, FwdEncap, FwdTx];
        w.after(|w| {
            w.cfg.flags &= !CFG_F_GW_MAC;
            w.cfg.gw_mac = [0; 6];
            w.push_config()
        });
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("k4", c4.into(), 45002, None);
        let f = tcp4_frame(c4, w.vip("k4").addr, 45002, 80, SYN, b"");
        Ok(forward_row(
            w,
            "route via another interface: XDP_REDIRECT through the devmap",
            "k4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let v = w.vip("k4b").clone();
        let f = tcp4_frame(c4, v.addr, 45003, 80, SYN, b"");
        Ok(Fixture::new(
            "egress interface missing from the devmap: dropped",
            f,
            XDP_DROP,
        )
        .reasons(&[ConntrackMiss, FibOk, DropRedirect])
        .traffic(v.id, v.backends[0], true))
    }));
    s.push(step(move |w| {
        let f = tcp4_frame(c4, w.vip("l4").addr, 45004, 80, SYN, b"");
        Ok(Fixture::new("VIP without backends: dropped", f, XDP_DROP)
            .reasons(&[ConntrackMiss, DropNoBackend]))
    }));

    // --- UDP expiry --------------------------------------------------------
    s.push(step(move |w| {
        let flow = w.flow("c4", c4.into(), 46000, None);
        let f = udp4_frame(c4, w.vip("c4").addr, 46000, 53);
        Ok(forward_row(
            w,
            "udp: first datagram takes the ring",
            "c4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("c4", c4.into(), 46000, None);
        let pinned = w.ring_choice("c4", &flow);
        let o = other(w, "c4", pinned);
        w.set_ring("c4", pattern_ring(&[o]))?;
        let f = udp4_frame(c4, w.vip("c4").addr, 46000, 53);
        Ok(forward_row(
            w,
            "udp: within the idle timeout the entry holds",
            "c4",
            &flow,
            f,
            Some(pinned),
        ))
    }));
    s.push(step(move |w| {
        // An idle timeout of 1 ns makes the entry stale; the data path's
        // clock is the coarse (tick) clock, so let one tick pass.
        w.cfg.udp_idle_ns = 1;
        w.push_config()?;
        std::thread::sleep(std::time::Duration::from_millis(30));
        let flow = w.flow("c4", c4.into(), 46000, None);
        let f = udp4_frame(c4, w.vip("c4").addr, 46000, 53);
        let mut row = forward_row(
            w,
            "udp: past the idle timeout the ring decides again",
            "c4",
            &flow,
            f,
            None,
        );
        row.reasons.insert(0, ConntrackUdpExpired);
        w.after(|w| {
            w.cfg.udp_idle_ns = 10_000_000_000;
            w.push_config()
        });
        w.restore_ring("c4");
        Ok(row)
    }));

    // --- Backend down ----------------------------------------------------
    s.push(step(move |w| {
        let flow = w.flow("m4", c4.into(), 47000, None);
        let f = tcp4_frame(c4, w.vip("m4").addr, 47000, 80, SYN, b"");
        Ok(forward_row(
            w,
            "move-on-down VIP: flow established",
            "m4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("m4", c4.into(), 47000, None);
        let pinned = w.ring_choice("m4", &flow);
        let o = other(w, "m4", pinned);
        w.set_ring("m4", pattern_ring(&[o]))?;
        w.set_backend_down(pinned, true)?;
        let f = tcp4_frame(c4, w.vip("m4").addr, 47000, 80, ACK, b"");
        let mut row = forward_row(
            w,
            "move-on-down VIP: its backend is down, the flow moves",
            "m4",
            &flow,
            f,
            None,
        );
        row.reasons.insert(0, ConntrackBackendDown);
        w.after(move |w| w.set_backend_down(pinned, false));
        w.restore_ring("m4");
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("n4", c4.into(), 47001, None);
        let f = tcp4_frame(c4, w.vip("n4").addr, 47001, 80, SYN, b"");
        Ok(forward_row(
            w,
            "keep-flows VIP: flow established",
            "n4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("n4", c4.into(), 47001, None);
        let pinned = w.ring_choice("n4", &flow);
        let o = other(w, "n4", pinned);
        w.set_ring("n4", pattern_ring(&[o]))?;
        w.set_backend_down(pinned, true)?;
        let f = tcp4_frame(c4, w.vip("n4").addr, 47001, 80, ACK, b"");
        let row = forward_row(
            w,
            "keep-flows VIP: its backend is down, the flow stays",
            "n4",
            &flow,
            f,
            Some(pinned),
        );
        w.after(move |w| w.set_backend_down(pinned, false));
        w.restore_ring("n4");
        Ok(row)
    }));
    s.push(step(move |w| {
        // The agent freed the flow's backend id and gave it to another
        // VIP's backend: the entry must not send the flow there.
        let flow = w.flow("n4", c4.into(), 47001, None);
        let pinned = w.ring_choice("n4", &flow);
        let o = other(w, "n4", pinned);
        w.set_ring("n4", pattern_ring(&[o]))?;
        let n4 = w.vip("n4").id;
        w.set_backend_vip(pinned, w.vip("a4").id)?;
        let f = tcp4_frame(c4, w.vip("n4").addr, 47001, 80, ACK, b"");
        let row = forward_row(
            w,
            "an entry whose backend id now serves another VIP re-steers",
            "n4",
            &flow,
            f,
            None,
        );
        w.after(move |w| w.set_backend_vip(pinned, n4));
        w.restore_ring("n4");
        Ok(row)
    }));

    // --- Flood guard -------------------------------------------------------
    s.push(step(move |w| {
        w.cfg.flood_new_flows_per_sec = 1;
        w.push_config()?;
        let flow = w.flow("a4", c4.into(), 48000, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 48000, 80, SYN, b"");
        Ok(forward_row(
            w,
            "flood guard: first new flow of the second is recorded",
            "a4",
            &flow,
            f,
            None,
        ))
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 48001, None);
        let f = tcp4_frame(c4, w.vip("a4").addr, 48001, 80, SYN, b"");
        let mut row = forward_row(
            w,
            "flood guard: over the rate, forwarded but not recorded",
            "a4",
            &flow,
            f,
            None,
        );
        row.reasons.insert(1, FloodGuard);
        w.after(|w| {
            w.cfg.flood_new_flows_per_sec = 0;
            w.push_config()
        });
        Ok(row)
    }));
    s.push(step(move |w| {
        let flow = w.flow("a4", c4.into(), 48001, None);
        let was = w.ring_choice("a4", &flow);
        let o = other(w, "a4", was);
        w.set_ring("a4", pattern_ring(&[o]))?;
        let f = tcp4_frame(c4, w.vip("a4").addr, 48001, 80, ACK, b"");
        let row = forward_row(
            w,
            "flood guard: the unrecorded flow follows the ring",
            "a4",
            &flow,
            f,
            None,
        );
        w.restore_ring("a4");
        Ok(row)
    }));

    // --- ICMP ----------------------------------------------------------------
    s.push(step(move |w| {
        let vip = v4("10.100.0.1");
        let mut h = V4::new(c4, vip, 1);
        h.ttl = 50;
        let req = icmp4(8, 0, [0x12, 0x34, 0, 1], b"ping-data");
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&req));
        let mut r = V4::new(vip, c4, 1);
        r.ttl = 64;
        let rep = icmp4(0, 0, [0x12, 0x34, 0, 1], b"ping-data");
        let out = ethernet(CLIENT_MAC, LB0_MAC, None, ETH_P_IP, &r.packet(&rep));
        let _ = w;
        Ok(Fixture::new("icmp echo to a VIP is answered", f, XDP_TX)
            .output(out)
            .reasons(&[IcmpEchoReply]))
    }));
    s.push(step(move |_| {
        let vip = v6("fd10::1");
        let mut h = V6::new(c6, vip, 58);
        h.hop_limit = 50;
        let req = icmp6(c6, vip, 128, 0, [0x12, 0x34, 0, 1], b"ping6");
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &h.packet(&req));
        let r = V6::new(vip, c6, 58);
        let rep = icmp6(vip, c6, 129, 0, [0x12, 0x34, 0, 1], b"ping6");
        let out = ethernet(CLIENT_MAC, LB0_MAC, None, ETH_P_IPV6, &r.packet(&rep));
        Ok(Fixture::new("icmpv6 echo to a VIP is answered", f, XDP_TX)
            .output(out)
            .reasons(&[IcmpEchoReply]))
    }));
    s.push(step(move |_| {
        let req = icmp4(8, 0, [0, 1, 0, 1], b"x");
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IP,
            &V4::new(c4, v4("10.0.0.1"), 1).packet(&req),
        );
        Ok(Fixture::new("icmp echo to a non-VIP passes", f, XDP_PASS).reasons(&[PassNotVip]))
    }));
    s.push(step(move |_| {
        let m = icmp4(13, 0, [0, 1, 0, 1], &[0; 12]);
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IP,
            &V4::new(c4, v4("10.100.0.1"), 1).packet(&m),
        );
        Ok(Fixture::new("other icmp types to a VIP pass", f, XDP_PASS).reasons(&[PassIcmpOther]))
    }));
    s.push(step(move |w| {
        // A router tells the VIP that its reply to the client was too big:
        // the error must reach the backend of client:40000 -> VIP:80.
        let vip = v4("10.100.0.1");
        let quoted_seg = tcp(vip.into(), c4.into(), 80, 40000, ACK, &[0u8; 1400]);
        let quoted = V4::new(vip, c4, 6).packet(&quoted_seg);
        let err = icmp4(3, 4, [0, 0, 0x05, 0x78], &quoted[..28]);
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IP,
            &V4::new(v4("203.0.113.1"), vip, 1).packet(&err),
        );
        let flow = w.flow("a4", c4.into(), 40000, None);
        let pinned =
            w.dp.conntrack_get(&flow)?
                .context("flow 40000 recorded")?
                .backend_id;
        let out = w.encapsulated(pinned, &f, w.hash("a4", &flow));
        Ok(Fixture::new(
            "frag-needed about a VIP flow goes to that flow's backend",
            f,
            XDP_TX,
        )
        .output(out)
        .reasons(&[ConntrackHit, FibOk, FwdEncap, FwdTx, IcmpSteered]))
    }));
    s.push(step(move |w| {
        let vip = v6("fd10::1");
        let quoted_seg = tcp(vip.into(), c6.into(), 80, 44000, ACK, &[0u8; 8]);
        let quoted = V6::new(vip, c6, 6).packet(&quoted_seg);
        let err = icmp6(
            v6("2001:db8:ffff::1"),
            vip,
            2,
            0,
            1280u32.to_be_bytes(),
            &quoted,
        );
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IPV6,
            &V6::new(v6("2001:db8:ffff::1"), vip, 58).packet(&err),
        );
        let flow = w.flow("e6", c6.into(), 44000, None);
        let pinned =
            w.dp.conntrack_get(&flow)?
                .context("flow 44000 recorded")?
                .backend_id;
        let out = w.encapsulated(pinned, &f, w.hash("e6", &flow));
        Ok(Fixture::new(
            "packet-too-big about a VIP flow goes to that flow's backend",
            f,
            XDP_TX,
        )
        .output(out)
        .reasons(&[ConntrackHit, FibOk, FwdEncap, FwdTx, IcmpSteered]))
    }));
    s.push(step(move |w| {
        let v = w.vip("a4").clone();
        let payload = vec![0x5a; 1460];
        let f = tcp4_frame(c4, v.addr, 49000, 80, ACK, &payload);
        let flow = w.flow("a4", c4.into(), 49000, None);
        let backend = w.ring_choice("a4", &flow);
        let l3 = &f[14..];
        let msg = icmp4(
            3,
            4,
            [0, 0, (1480u16 >> 8) as u8, (1480u16 & 0xff) as u8],
            &l3[..68],
        );
        let mut h = V4::new(v4("10.100.0.1"), c4, 1);
        h.df = false;
        let out = ethernet(CLIENT_MAC, LB0_MAC, None, ETH_P_IP, &h.packet(&msg));
        Ok(Fixture::new(
            "too big for the tunnel (DF): frag-needed with MTU 1480",
            f,
            XDP_TX,
        )
        .output(out)
        .reasons(&[ConntrackMiss, FibOk, IcmpTooBigSent])
        .traffic(v.id, backend, true))
    }));
    s.push(step(move |w| {
        let v = w.vip("e6").clone();
        let f = tcp6_frame(c6, v.addr, 49001, 80, ACK, &vec![0x5a; 1420]);
        let flow = w.flow("e6", c6.into(), 49001, None);
        let backend = w.ring_choice("e6", &flow);
        let vip = v6("fd10::1");
        let msg = icmp6(vip, c6, 2, 0, 1460u32.to_be_bytes(), &f[14..14 + 64]);
        let out = ethernet(
            CLIENT_MAC,
            LB0_MAC,
            None,
            ETH_P_IPV6,
            &V6::new(vip, c6, 58).packet(&msg),
        );
        Ok(Fixture::new(
            "too big for the tunnel (IPv6): packet-too-big with MTU 1460",
            f,
            XDP_TX,
        )
        .output(out)
        .reasons(&[ConntrackMiss, FibOk, IcmpTooBigSent])
        .traffic(v.id, backend, true))
    }));
    s.push(step(move |w| {
        let v = w.vip("a4").clone();
        let seg = tcp(c4.into(), v.addr, 49002, 80, ACK, &vec![0x5a; 1460]);
        let mut h = V4::new(c4, v4("10.100.0.1"), 6);
        h.df = false;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&seg));
        let flow = w.flow("a4", c4.into(), 49002, None);
        let mut row = forward_row(
            w,
            "too big without DF: forwarded, may fragment",
            "a4",
            &flow,
            f,
            None,
        );
        row.reasons.insert(2, TooBigNoDf);
        Ok(row)
    }));

    // --- Fragments and malformed input -------------------------------------
    s.push(step(move |w| {
        let seg = tcp(c4.into(), w.vip("a4").addr, 50000, 80, SYN, b"");
        let mut h = V4::new(c4, v4("10.100.0.1"), 6);
        h.mf = true;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&seg));
        Ok(
            Fixture::new("first ipv4 fragment to a VIP: dropped", f, XDP_DROP)
                .reasons(&[DropFragment]),
        )
    }));
    s.push(step(move |_| {
        let mut h = V4::new(c4, v4("10.100.0.1"), 6);
        h.frag_offset = 100;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &h.packet(&[0u8; 40]));
        Ok(
            Fixture::new("later ipv4 fragment to a VIP: dropped", f, XDP_DROP)
                .reasons(&[DropFragment]),
        )
    }));
    s.push(step(move |w| {
        let seg = tcp(c6.into(), w.vip("e6").addr, 50001, 80, SYN, b"");
        let mut h = V6::new(c6, v6("fd10::1"), 44);
        h.ext = vec![6, 0, 0, 1, 0, 0, 0x12, 0x34];
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &h.packet(&seg));
        Ok(Fixture::new("ipv6 fragment to a VIP: dropped", f, XDP_DROP).reasons(&[DropFragment]))
    }));
    s.push(step(move |w| {
        let seg = tcp(c6.into(), w.vip("e6").addr, 50002, 80, SYN, b"");
        let mut h = V6::new(c6, v6("fd10::1"), 60);
        let opt = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
        h.ext = [opt(60), opt(60), opt(60), opt(6)].concat();
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &h.packet(&seg));
        Ok(
            Fixture::new("ipv6 extension chain too long: dropped", f, XDP_DROP)
                .reasons(&[DropIpv6ExtHeaders]),
        )
    }));
    s.push(step(|_| {
        let mut f = ethernet(LB0_MAC, CLIENT_MAC, None, 0x8100, &[0, 100]);
        f.truncate(16);
        Ok(Fixture::new("truncated VLAN tag: dropped", f, XDP_DROP).reasons(&[DropMalformedL2]))
    }));
    s.push(step(|_| {
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &[0x45; 10]);
        Ok(Fixture::new("truncated ipv4 header: dropped", f, XDP_DROP).reasons(&[DropMalformedL3]))
    }));
    s.push(step(move |_| {
        let mut p = V4::new(c4, v4("10.100.0.1"), 6).packet(&[0u8; 20]);
        p[0] = 0x44;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(Fixture::new("ipv4 IHL below 5: dropped", f, XDP_DROP).reasons(&[DropMalformedL3]))
    }));
    s.push(step(move |_| {
        let mut p = V4::new(c4, v4("10.100.0.1"), 6).packet(&[0u8; 20]);
        p[0] = 0x65;
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("version 6 inside an ipv4 ethertype: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedL3]),
        )
    }));
    s.push(step(move |_| {
        let mut p = V4::new(c4, v4("10.100.0.1"), 6).packet(&[0u8; 20]);
        p[2..4].copy_from_slice(&200u16.to_be_bytes());
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("ipv4 total length beyond the frame: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedL3]),
        )
    }));
    s.push(step(move |_| {
        let p = V6::new(c6, v6("fd10::1"), 6).packet(&[0u8; 20]);
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IPV6, &p[..30]);
        Ok(Fixture::new("truncated ipv6 header: dropped", f, XDP_DROP).reasons(&[DropMalformedL3]))
    }));
    s.push(step(move |_| {
        let p = V4::new(c4, v4("10.100.0.1"), 6).packet(&[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0]);
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("truncated tcp header to a VIP: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedL4]),
        )
    }));
    s.push(step(move |_| {
        let p = V4::new(c4, v4("10.100.0.3"), 17).packet(&[0xb3, 0xb0, 0, 53]);
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("truncated udp header to a VIP: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedL4]),
        )
    }));
    s.push(step(move |_| {
        let p = V4::new(c4, v4("10.0.0.1"), 6).packet(&[0x9c, 0x40, 0, 80, 0, 0]);
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("truncated tcp header to a non-VIP passes", f, XDP_PASS)
                .reasons(&[PassNotVip]),
        )
    }));
    s.push(step(move |_| {
        let p = V4::new(c4, v4("10.100.0.1"), 1).packet(&[8, 0, 0, 0]);
        let f = ethernet(LB0_MAC, CLIENT_MAC, None, ETH_P_IP, &p);
        Ok(
            Fixture::new("truncated icmp header to a VIP: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedIcmp]),
        )
    }));
    s.push(step(move |_| {
        // Frag-needed whose quote is cut short.
        let err = icmp4(3, 4, [0, 0, 5, 0x78], &[0x45, 0, 0, 40]);
        let f = ethernet(
            LB0_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IP,
            &V4::new(v4("203.0.113.1"), v4("10.100.0.1"), 1).packet(&err),
        );
        Ok(
            Fixture::new("frag-needed with a truncated quote: dropped", f, XDP_DROP)
                .reasons(&[DropMalformedIcmp]),
        )
    }));
    s.push(step(move |w| {
        let f = tcp4_frame(c4, w.vip("a4").addr, 51000, 81, SYN, b"");
        Ok(
            Fixture::new("VIP address, port without a service: passes", f, XDP_PASS)
                .reasons(&[PassVipNoService]),
        )
    }));
    s.push(step(move |w| {
        let f = udp4_frame(c4, w.vip("a4").addr, 51001, 80);
        Ok(Fixture::new(
            "VIP address, protocol without a service: passes",
            f,
            XDP_PASS,
        )
        .reasons(&[PassVipNoService]))
    }));
    s
}

fn decap_steps() -> Vec<DecapStep> {
    let mut s: Vec<DecapStep> = vec![];
    let c4 = client4();
    let c6 = client6();
    let backend_mac = neigh_mac("10.0.0.11".parse().unwrap());
    let inner4 = move || {
        V4::new(c4, v4("10.100.0.1"), 6).packet(&tcp(
            c4.into(),
            v4("10.100.0.1").into(),
            1234,
            80,
            SYN,
            b"",
        ))
    };
    let inner6 = move || {
        V6::new(c6, v6("fd10::1"), 6).packet(&tcp(
            c6.into(),
            v6("fd10::1").into(),
            1234,
            80,
            SYN,
            b"",
        ))
    };
    let frame = move |vlan, et, l3: &[u8]| ethernet(backend_mac, LB0_MAC, vlan, et, l3);

    for (name, saved) in [
        ("decap round trip: ipip v4", "ipip"),
        ("decap round trip: gue v4", "gue4"),
        ("decap round trip: ipv6-in-ipv6", "ip6ip6"),
        ("decap round trip: gue v6", "gue6"),
        ("decap round trip: ipv4-in-ipv6", "ip4ip6"),
        ("decap round trip: ipv6-in-ipv4", "ip6ip4"),
    ] {
        s.push(Box::new(move |w: &World| {
            let (_, encapsulated) = w
                .saved
                .get(saved)
                .with_context(|| format!("no saved {saved}"))?;
            let (vlan, outer) = split_l2(encapsulated);
            let v4_outer = outer[0] >> 4 == 4;
            let mut off = if v4_outer {
                ((outer[0] & 0xf) * 4) as usize
            } else {
                40
            };
            let proto = if v4_outer { outer[9] } else { outer[6] };
            if proto == 17 {
                off += 8;
            }
            let inner = &outer[off..];
            let et = if inner[0] >> 4 == 4 {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            let out = ethernet(
                encapsulated[0..6].try_into()?,
                encapsulated[6..12].try_into()?,
                vlan,
                et,
                inner,
            );
            Ok(Fixture::new(name, encapsulated.clone(), XDP_PASS)
                .output(out)
                .reasons(&[DecapOk]))
        }));
    }
    s.push(Box::new(move |_| {
        let outer = V4::new(v4("172.16.1.2"), v4("10.0.0.11"), 4).packet(&inner4());
        let f = frame(Some(7), ETH_P_IP, &outer);
        Ok(Fixture::new("decap keeps the VLAN tag", f, XDP_PASS)
            .output(frame(Some(7), ETH_P_IP, &inner4()))
            .reasons(&[DecapOk]))
    }));
    s.push(Box::new(move |_| {
        let outer = V4::new(v4("172.16.1.2"), v4("10.0.0.99"), 4).packet(&inner4());
        Ok(Fixture::new(
            "ipip to another host's address passes untouched",
            frame(None, ETH_P_IP, &outer),
            XDP_PASS,
        )
        .reasons(&[DecapPass]))
    }));
    s.push(Box::new(move |_| {
        let u = udp_zero_checksum(50000, 5353, &inner4());
        let outer = V4::new(v4("172.16.1.2"), v4("10.0.0.11"), 17).packet(&u);
        Ok(Fixture::new(
            "udp to another port passes untouched",
            frame(None, ETH_P_IP, &outer),
            XDP_PASS,
        )
        .reasons(&[DecapPass]))
    }));
    s.push(Box::new(move |_| {
        let f = frame(None, ETH_P_IP, &inner4());
        Ok(Fixture::new("plain tcp passes untouched", f, XDP_PASS).reasons(&[DecapPass]))
    }));
    s.push(Box::new(move |_| {
        let f = arp_request(CLIENT_MAC, v4("10.0.0.50"), v4("10.0.0.11"));
        Ok(Fixture::new("arp passes untouched through decap", f, XDP_PASS).reasons(&[DecapPass]))
    }));
    s.push(Box::new(move |_| {
        let outer = V4::new(v4("172.16.1.2"), v4("10.0.0.11"), 4).packet(&inner4()[..10]);
        Ok(Fixture::new(
            "ipip with a truncated inner header: dropped",
            frame(None, ETH_P_IP, &outer),
            XDP_DROP,
        )
        .reasons(&[DecapDropMalformed]))
    }));
    s.push(Box::new(move |_| {
        let mut bad = inner4();
        bad[0] = 0x75;
        let u = udp_zero_checksum(50000, GUE_PORT, &bad);
        let outer = V4::new(v4("172.16.1.2"), v4("10.0.0.11"), 17).packet(&u);
        Ok(Fixture::new(
            "gue with an unknown inner version: dropped",
            frame(None, ETH_P_IP, &outer),
            XDP_DROP,
        )
        .reasons(&[DecapDropMalformed]))
    }));
    s.push(Box::new(move |_| {
        let outer = V6::new(v6("fd99::1"), v6("fd00::51"), 41).packet(&inner6()[..20]);
        Ok(Fixture::new(
            "ipv6-in-ipv6 with a truncated inner header: dropped",
            frame(None, ETH_P_IPV6, &outer),
            XDP_DROP,
        )
        .reasons(&[DecapDropMalformed]))
    }));
    s
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    reasons: BTreeMap<Reason, u64>,
    vip: BTreeMap<u32, TrafficStats>,
    backend: BTreeMap<u32, TrafficStats>,
}

impl Tally {
    fn record(&mut self, f: &Fixture) {
        for r in &f.reasons {
            *self.reasons.entry(*r).or_default() += 1;
        }
        if let Some((vip, backend, new)) = f.traffic {
            for s in [
                self.vip.entry(vip).or_default(),
                self.backend.entry(backend).or_default(),
            ] {
                s.packets += 1;
                s.bytes += f.input.len() as u64;
                s.new_flows += new as u64;
            }
        }
    }

    fn compare_reasons(&mut self, what: &str, actual: &[(Reason, u64)]) {
        for (r, got) in actual {
            let want = self.reasons.get(r).copied().unwrap_or(0);
            if want != *got {
                println!("FAIL counters: {what} {}: {got} (want {want})", r.name());
                self.failed += 1;
            }
        }
    }
}

fn run_one(tally: &mut Tally, prog: &aya::programs::Xdp, ingress: u32, f: Fixture) -> Result<()> {
    let (action, out) = run_frame(prog, ingress, &f.input)?;
    if let Some(dir) = pcap_dir() {
        std::fs::create_dir_all(&dir)?;
        let file: String = f
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let want = f.output.clone().unwrap_or_else(|| f.input.clone());
        lb_tests::pcap::write(&dir.join(format!("{file}.pcap")), &[&f.input, &out, &want])?;
    }
    // A dropped frame's bytes do not matter; everything else must match.
    let verdict = if f.action == XDP_DROP && action == XDP_DROP {
        Ok(())
    } else {
        check(&f, action, &out)
    };
    match verdict {
        Ok(()) => {
            println!("ok   {}", f.name);
            tally.passed += 1;
        }
        Err(why) => {
            println!("FAIL {}: {why}", f.name);
            tally.failed += 1;
        }
    }
    tally.record(&f);
    Ok(())
}

fn run() -> Result<Tally> {
    require_root()?;
    pin_to_one_cpu()?;
    let ns = Netns::new("fixtures")?;
    setup_namespace(&ns)?;
    let _inside = ns.enter()?;
    let mut w = build_world(&ns)?;
    let mut t = Tally::default();

    // Before the agent writes a configuration, nothing is touched.
    {
        let saved_cfg = w.cfg;
        w.dp.write_config(&LbConfig::default())?;
        let f = tcp4_frame(client4(), "10.100.0.1".parse()?, 39999, 80, SYN, b"");
        let fx = Fixture::new("unconfigured program passes VIP traffic", f, XDP_PASS)
            .reasons(&[PassNotConfigured]);
        run_one(&mut t, w.dp.program()?, w.ingress, fx)?;
        w.cfg = saved_cfg;
        w.push_config()?;
    }

    for s in balancer_steps() {
        let f = s(&mut w)?;
        run_one(&mut t, w.dp.program()?, w.ingress, f)?;
        for undo in std::mem::take(&mut w.after) {
            undo(&mut w)?;
        }
    }
    let failed_rows = t.failed;
    let actual = w.dp.reason_counters()?;
    t.compare_reasons("balancer", &actual);
    for (id, want) in &t.vip {
        let got = w.dp.vip_traffic(*id)?;
        if got != *want {
            println!("FAIL counters: VIP {id}: {got:?} (want {want:?})");
            t.failed += 1;
        }
    }
    for (id, want) in &t.backend {
        let got = w.dp.backend_traffic(*id)?;
        if got != *want {
            println!("FAIL counters: backend {id}: {got:?} (want {want:?})");
            t.failed += 1;
        }
    }
    // Slots of VIPs and backends no row touched must read zero.
    for id in 0..w.dp.limits().max_vips {
        if !t.vip.contains_key(&id) && w.dp.vip_traffic(id)? != TrafficStats::default() {
            println!("FAIL counters: VIP {id} counted traffic no fixture sent");
            t.failed += 1;
        }
    }
    if t.failed == failed_rows {
        println!(
            "ok   counters: reasons, {} VIPs and {} backends exact",
            t.vip.len(),
            t.backend.len()
        );
    }

    // The decap program, with its own counters.
    let mut decap = Decap::load()?;
    decap.configure(GUE_PORT, 0)?;
    for b in &w.backends {
        decap.add_local_address(b.addr)?;
    }
    let mut dt = Tally::default();
    for s in decap_steps() {
        let f = s(&w)?;
        run_one(&mut dt, decap.program()?, w.ingress, f)?;
    }
    dt.compare_reasons("decap", &decap.reason_counters()?);
    t.passed += dt.passed;
    t.failed += dt.failed;
    Ok(t)
}

/// Per-CPU state (flood guard, counters) must be on one CPU for the rows
/// to share it: pin this thread.
fn pin_to_one_cpu() -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects only
    // this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(t) => {
            println!("fixtures: {} passed, {} failed", t.passed, t.failed);
            if t.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("fixtures: setup failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
