//! Between the core's terms and the maps' words, both ways, in one place:
//! addresses as network-order words with a family tag, VIP keys and
//! markers, backend slots, the runtime knobs. Decoding refuses what this
//! build would not have written (unknown codes), so a value read back from
//! a pinned map is either understood or rewritten.

use std::net::{IpAddr, SocketAddr};

use lb_common::{
    limits::MAP_LAYOUT_VERSION,
    maps::{
        ACL_ALLOW, ACL_DENY, AclKey, BACKEND_F_DOWN, BACKEND_F_HAS_MAC, BACKEND_F_VALID, Backend,
        CFG_F_GW_MAC, CFG_F_NO_ALL_PORTS_VIPS, FAMILY_V4, FAMILY_V6, FWD_GUE, FWD_IPIP, FWD_L2_DSR,
        FlowKey, GUARD_F_ACL, GUARD_F_ALLOW_LIST, HASH_FIVE_TUPLE, HASH_SRC_IP,
        HASH_SRC_IP_DST_PORT, LbConfig, PROTO_TCP, PROTO_UDP, VIP_F_ADDR_MARKER, VIP_F_GUARDED,
        VIP_F_ICMP_ECHO, VIP_F_MOVE_FLOWS_ON_DOWN, VipGuard, VipKey, VipMeta, acl_scope,
    },
};

use crate::core::{
    config::{FlowsOnDown, Forwarding, HashMode, Protocol, VipIdent},
    prefix::Prefix,
    tables::{AclAction, BackendEntry, GuardEntry, Marker, Settings, VipEntry},
};

/// Address words in network order, as the data path stores them, and the
/// family tag.
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

/// The inverse of [`addr_words`].
pub fn words_addr(w: [u32; 4], family: u8) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::from(w[0].to_ne_bytes())),
        FAMILY_V6 => {
            let mut b = [0u8; 16];
            for (i, word) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

pub fn proto_code(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => PROTO_TCP,
        Protocol::Udp => PROTO_UDP,
    }
}

pub fn protocol(code: u8) -> Option<Protocol> {
    match code {
        PROTO_TCP => Some(Protocol::Tcp),
        PROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

pub fn hash_code(h: HashMode) -> u32 {
    match h {
        HashMode::FiveTuple => HASH_FIVE_TUPLE,
        HashMode::SourceIp => HASH_SRC_IP,
        HashMode::SourceIpDestPort => HASH_SRC_IP_DST_PORT,
    }
}

pub fn hash_mode(code: u32) -> Option<HashMode> {
    match code {
        HASH_FIVE_TUPLE => Some(HashMode::FiveTuple),
        HASH_SRC_IP => Some(HashMode::SourceIp),
        HASH_SRC_IP_DST_PORT => Some(HashMode::SourceIpDestPort),
        _ => None,
    }
}

pub fn fwd_code(f: Forwarding) -> u8 {
    match f {
        Forwarding::Ipip => FWD_IPIP,
        Forwarding::Gue => FWD_GUE,
        Forwarding::L2Dsr => FWD_L2_DSR,
    }
}

pub fn forwarding(code: u8) -> Option<Forwarding> {
    match code {
        FWD_IPIP => Some(Forwarding::Ipip),
        FWD_GUE => Some(Forwarding::Gue),
        FWD_L2_DSR => Some(Forwarding::L2Dsr),
        _ => None,
    }
}

pub fn vip_key(v: &VipIdent) -> VipKey {
    let (addr, family) = addr_words(v.0);
    VipKey {
        addr,
        port: v.1.to_be(),
        proto: proto_code(v.2),
        family,
    }
}

/// The VIP a service key names; `None` for a marker or an unknown protocol.
pub fn vip_ident(key: &VipKey) -> Option<VipIdent> {
    Some((
        words_addr(key.addr, key.family)?,
        u16::from_be(key.port),
        protocol(key.proto)?,
    ))
}

pub fn vip_meta(e: &VipEntry) -> VipMeta {
    let mut flags = 0;
    if e.flows_on_down == FlowsOnDown::Move {
        flags |= VIP_F_MOVE_FLOWS_ON_DOWN;
    }
    if e.guarded {
        flags |= VIP_F_GUARDED;
    }
    VipMeta {
        id: e.id,
        flags,
        hash_mode: hash_code(e.hash),
        _pad: 0,
    }
}

pub fn vip_entry(m: &VipMeta) -> Option<VipEntry> {
    Some(VipEntry {
        id: m.id,
        hash: hash_mode(m.hash_mode)?,
        flows_on_down: if m.flags & VIP_F_MOVE_FLOWS_ON_DOWN != 0 {
            FlowsOnDown::Move
        } else {
            FlowsOnDown::Keep
        },
        guarded: m.flags & VIP_F_GUARDED != 0,
    })
}

/// A source mask for `len` bits, per word, in network order.
fn mask_words(len: u8, bits: u32) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut left = u32::from(len.min(bits as u8));
    for w in out.iter_mut().take((bits / 32) as usize) {
        let n = left.min(32);
        let host = if n == 0 { 0 } else { u32::MAX << (32 - n) };
        *w = u32::from_ne_bytes(host.to_be_bytes());
        left -= n;
    }
    out
}

/// The least burst a bucket gets: the data path reads the kernel's coarse
/// clock, which moves in ticks (up to 10 ms at HZ=100), and a bucket with
/// less slack than a tick would admit one event per tick whatever its rate.
pub const MIN_BURST: std::time::Duration = std::time::Duration::from_millis(10);

/// GCRA parameters of `per_sec` over `cpus` CPUs (each CPU takes its
/// share) with `burst` of slack (at least [`MIN_BURST`]): (interval,
/// tolerance) in ns.
fn gcra(per_sec: Option<u32>, burst: std::time::Duration, cpus: u32) -> (u64, u64) {
    match per_sec {
        None | Some(0) => (0, 0),
        Some(r) => {
            let interval = (1_000_000_000u64 * u64::from(cpus.max(1))).div_ceil(u64::from(r));
            let burst = burst.max(MIN_BURST);
            (
                interval,
                u64::try_from(burst.as_nanos()).unwrap_or(u64::MAX),
            )
        }
    }
}

/// A VIP's guard as the data path takes it, for `cpus` CPUs.
pub fn vip_guard(g: &GuardEntry, cpus: u32) -> VipGuard {
    let r = &g.rate;
    let (sfi, sft) = gcra(r.source_new_flows_per_sec, r.burst, cpus);
    let (spi, spt) = gcra(r.source_packets_per_sec, r.burst, cpus);
    let (vfi, vft) = gcra(r.new_flows_per_sec, r.burst, cpus);
    let mut flags = 0;
    if g.allow_list {
        flags |= GUARD_F_ALLOW_LIST;
    }
    if g.acl {
        flags |= GUARD_F_ACL;
    }
    VipGuard {
        flags,
        acl_gen: g.acl_gen & 1,
        src_flow_interval_ns: sfi,
        src_flow_tolerance_ns: sft,
        src_pkt_interval_ns: spi,
        src_pkt_tolerance_ns: spt,
        vip_flow_interval_ns: vfi,
        vip_flow_tolerance_ns: vft,
        src_mask_v4: mask_words(r.source_prefix_v4, 32)[0],
        _pad: 0,
        src_mask_v6: mask_words(r.source_prefix_v6, 128),
    }
}

/// An access-list entry's trie key.
pub fn acl_key(vip_id: u32, generation: u32, p: Prefix) -> (u32, AclKey) {
    let (addr, family) = addr_words(p.addr());
    (
        64 + u32::from(p.len()),
        AclKey {
            scope: acl_scope(vip_id, generation),
            family: u32::from(family),
            addr,
        },
    )
}

/// The (VIP id, generation, prefix) of a trie key; `None` if it is none.
pub fn acl_entry(prefix_len: u32, k: &AclKey) -> Option<(u32, u32, Prefix)> {
    let scope = u32::from_be(k.scope);
    let a = words_addr(k.addr, k.family as u8)?;
    let p = format!("{a}/{}", prefix_len.checked_sub(64)?)
        .parse()
        .ok()?;
    Some((scope >> 1, scope & 1, p))
}

pub fn acl_value(a: AclAction) -> u32 {
    match a {
        AclAction::Allow => ACL_ALLOW,
        AclAction::Deny => ACL_DENY,
    }
}

pub fn acl_action(v: u32) -> Option<AclAction> {
    match v {
        ACL_ALLOW => Some(AclAction::Allow),
        ACL_DENY => Some(AclAction::Deny),
        _ => None,
    }
}

/// The marker's key: the address with port and protocol 0.
pub fn marker_key(a: IpAddr) -> VipKey {
    let (addr, family) = addr_words(a);
    VipKey {
        addr,
        port: 0,
        proto: 0,
        family,
    }
}

pub fn is_marker(key: &VipKey) -> bool {
    key.proto == 0
}

pub fn marker_meta(m: &Marker) -> VipMeta {
    let mut flags = VIP_F_ADDR_MARKER;
    if m.icmp_echo {
        flags |= VIP_F_ICMP_ECHO;
    }
    VipMeta {
        id: m.id,
        flags,
        hash_mode: 0,
        _pad: 0,
    }
}

pub fn marker(m: &VipMeta) -> Marker {
    Marker {
        id: m.id,
        icmp_echo: m.flags & VIP_F_ICMP_ECHO != 0,
    }
}

/// A slot's value; `None` clears it.
pub fn backend_value(b: Option<&BackendEntry>) -> Backend {
    let Some(b) = b else {
        return Backend::default();
    };
    let (addr, family) = addr_words(b.address);
    let mut flags = BACKEND_F_VALID;
    if b.down {
        flags |= BACKEND_F_DOWN;
    }
    if b.mac.is_some() {
        flags |= BACKEND_F_HAS_MAC;
    }
    Backend {
        addr,
        family,
        fwd_mode: fwd_code(b.forwarding),
        flags,
        _pad0: 0,
        gue_port: b.gue_port.unwrap_or(0).to_be(),
        mac: b.mac.unwrap_or_default(),
        vip_id: b.vip_id,
    }
}

/// A slot in use, as the core knows it; `None` for a free slot or one this
/// build cannot read.
pub fn backend_entry(b: &Backend) -> Option<BackendEntry> {
    if b.flags & BACKEND_F_VALID == 0 {
        return None;
    }
    Some(BackendEntry {
        vip_id: b.vip_id,
        address: words_addr(b.addr, b.family)?,
        forwarding: forwarding(b.fwd_mode)?,
        gue_port: (b.gue_port != 0).then(|| u16::from_be(b.gue_port)),
        mac: (b.flags & BACKEND_F_HAS_MAC != 0).then_some(b.mac),
        down: b.flags & BACKEND_F_DOWN != 0,
    })
}

/// The runtime knobs of `CONFIG`.
pub fn lb_config(s: &Settings) -> LbConfig {
    let d = &s.dataplane;
    let mut flags = 0;
    if d.gateway_mac.is_some() {
        flags |= CFG_F_GW_MAC;
    }
    if !s.all_ports_vips {
        flags |= CFG_F_NO_ALL_PORTS_VIPS;
    }
    LbConfig {
        hash_seed: d.hash_seed,
        flood_new_flows_per_sec: d.flood_new_flows_per_sec,
        udp_idle_ns: d.udp_idle_timeout.as_nanos().min(u64::MAX as u128) as u64,
        encap_src_v4: u32::from_ne_bytes(d.encap_source_v4.base.octets()),
        encap_src_v6: addr_words(d.encap_source_v6.base.into()).0,
        encap_src_v4_hash_bits: d.encap_source_v4.hash_bits,
        encap_src_v6_hash_bits: d.encap_source_v6.hash_bits,
        flags,
        mtu: d.mtu,
        gue_port: d.gue_port.to_be(),
        gw_mac: d.gateway_mac.unwrap_or_default(),
        _pad: [0; 2],
        layout_version: MAP_LAYOUT_VERSION,
    }
}

/// The connection-table key of a flow as the client sends it.
pub fn flow_key(src: SocketAddr, dst: SocketAddr, proto: Protocol) -> FlowKey {
    let (s, family) = addr_words(src.ip());
    FlowKey {
        src: s,
        dst: addr_words(dst.ip()).0,
        sport: src.port().to_be(),
        dport: dst.port().to_be(),
        proto: proto_code(proto),
        family,
        _pad: [0; 2],
    }
}

/// `198.51.100.7:40000 -> 10.100.0.1:80 tcp`.
pub fn flow_text(k: &FlowKey) -> String {
    let ends = words_addr(k.src, k.family).zip(words_addr(k.dst, k.family));
    let Some((s, d)) = ends else {
        return format!("(family {})", k.family);
    };
    let proto = protocol(k.proto).map_or("?", Protocol::name);
    format!(
        "{} -> {} {proto}",
        SocketAddr::new(s, u16::from_be(k.sport)),
        SocketAddr::new(d, u16::from_be(k.dport))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{self, Config};

    const CFG: &str = "vips: [{name: a, address: 10.100.0.1, port: 80}, {name: b, address: 10.100.0.2, port: 53, protocol: udp}]";

    fn settings(c: &Config) -> Settings {
        Settings {
            dataplane: c.dataplane.clone(),
            all_ports_vips: c.vips.iter().any(|v| v.port == 0),
        }
    }

    #[test]
    fn the_config_carries_the_layout_version() {
        let c = config::parse(CFG, "t").unwrap();
        assert_eq!(lb_config(&settings(&c)).layout_version, MAP_LAYOUT_VERSION);
    }

    #[test]
    fn the_all_ports_lookup_is_skipped_only_without_all_ports_vips() {
        let c = config::parse(CFG, "t").unwrap();
        assert_ne!(lb_config(&settings(&c)).flags & CFG_F_NO_ALL_PORTS_VIPS, 0);
        let all_ports = config::parse(&CFG.replace("port: 53", "port: all"), "t").unwrap();
        assert_eq!(all_ports.vips[1].port, 0);
        assert_eq!(
            lb_config(&settings(&all_ports)).flags & CFG_F_NO_ALL_PORTS_VIPS,
            0
        );
    }

    #[test]
    fn addresses_and_entries_round_trip() {
        for a in ["10.0.1.5", "fd00::1:5", "255.255.255.254"] {
            let a: IpAddr = a.parse().unwrap();
            let (w, f) = addr_words(a);
            assert_eq!(words_addr(w, f), Some(a));
        }
        let entry = BackendEntry {
            vip_id: 3,
            address: "fd00::9".parse().unwrap(),
            forwarding: Forwarding::Gue,
            gue_port: Some(7000),
            mac: Some([2, 0, 0, 0, 0, 9]),
            down: true,
        };
        let v = backend_value(Some(&entry));
        assert_eq!(v.gue_port, 7000u16.to_be(), "network order in the map");
        assert_eq!(backend_entry(&v), Some(entry));
        assert_eq!(backend_entry(&backend_value(None)), None);
        let ident = ("10.100.0.1".parse().unwrap(), 443, Protocol::Tcp);
        assert_eq!(vip_ident(&vip_key(&ident)), Some(ident));
        assert_eq!(
            vip_ident(&marker_key(ident.0)),
            None,
            "a marker is no service"
        );
        let e = VipEntry {
            id: 7,
            hash: HashMode::SourceIpDestPort,
            flows_on_down: FlowsOnDown::Move,
            guarded: true,
        };
        assert_eq!(vip_entry(&vip_meta(&e)), Some(e));
    }

    #[test]
    fn guards_and_access_lists_encode_as_the_data_path_reads_them() {
        use crate::core::config::RateLimit;
        let g = GuardEntry {
            allow_list: true,
            acl: true,
            acl_gen: 1,
            rate: RateLimit {
                source_packets_per_sec: Some(1000),
                new_flows_per_sec: Some(3),
                source_prefix_v4: 24,
                source_prefix_v6: 48,
                ..RateLimit::default()
            },
        };
        // Two CPUs: each takes half of the rate.
        let v = vip_guard(&g, 2);
        assert_eq!(v.flags, GUARD_F_ALLOW_LIST | GUARD_F_ACL);
        assert_eq!(
            (v.src_pkt_interval_ns, v.src_pkt_tolerance_ns),
            (2_000_000, 100_000_000)
        );
        assert_eq!(v.vip_flow_interval_ns, 666_666_667);
        assert_eq!(v.src_flow_interval_ns, 0, "no source new-flow limit");
        assert_eq!(v.src_mask_v4.to_ne_bytes(), [255, 255, 255, 0]);
        let m6: Vec<u8> = v.src_mask_v6.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&m6[..8], &[255, 255, 255, 255, 255, 255, 0, 0]);
        assert!(m6[8..].iter().all(|b| *b == 0));
        for p in ["10.1.0.0/16", "fd00:1::/32", "192.0.2.7/32"] {
            let p: Prefix = p.parse().unwrap();
            let (len, key) = acl_key(9, 1, p);
            assert_eq!(acl_entry(len, &key), Some((9, 1, p)));
        }
        assert_eq!(
            acl_action(acl_value(AclAction::Deny)),
            Some(AclAction::Deny)
        );
    }

    #[test]
    fn flows_read_as_text() {
        let k = flow_key(
            "198.51.100.7:40000".parse().unwrap(),
            "10.100.0.1:80".parse().unwrap(),
            Protocol::Tcp,
        );
        assert_eq!(flow_text(&k), "198.51.100.7:40000 -> 10.100.0.1:80 tcp");
    }
}
