//! Keys and values of every BPF map. See docs/ARCHITECTURE.md for the maps
//! that hold them.
//!
//! Byte order: every `addr`, `port` and `*_port` field is in network byte
//! order, stored exactly as the bytes appear on the wire. An IPv4 address
//! lives in `addr[0]` with `addr[1..4]` zero.

/// Address family tags used in keys and values (not `AF_*`, which differ
/// between platforms).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Key of the `VIPS` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: [u32; 4],
    /// Destination port; 0 for an all-ports VIP and for the address marker.
    pub port: u16,
    /// `PROTO_TCP`/`PROTO_UDP`; 0 for the address marker.
    pub proto: u8,
    pub family: u8,
}

/// The VIP address filter (`VIP_FILTER`, one value): one bit per hash of a
/// destination address, set for every address that has a `VIPS` entry.
/// A clear bit means "no VIP here": the data path passes the packet
/// without a hash-map lookup, so traffic that is not for a VIP pays for
/// parsing and one array read. A set bit proves nothing (the lookups
/// decide). The agent sets a bit before writing an address's first entry
/// and rebuilds the filter after removing entries, so it is never missing
/// an address that has one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipFilter {
    pub words: [u64; VIP_FILTER_WORDS],
}

pub const VIP_FILTER_WORDS: usize = 1024;

impl Default for VipFilter {
    fn default() -> Self {
        Self {
            words: [0; VIP_FILTER_WORDS],
        }
    }
}

/// The filter bit of an address (network-order words, as in `VipKey`):
/// a multiplicative hash of the folded words, 16 bits.
#[inline(always)]
pub fn vip_filter_bit(family: u8, addr: &[u32; 4]) -> u32 {
    let folded =
        addr[0] ^ addr[1].rotate_left(8) ^ addr[2].rotate_left(16) ^ addr[3].rotate_left(24);
    (folded ^ family as u32).wrapping_mul(0x9e37_79b1) >> 16
}

impl VipFilter {
    pub fn set(&mut self, family: u8, addr: &[u32; 4]) {
        let b = vip_filter_bit(family, addr) as usize;
        self.words[b / 64] |= 1 << (b % 64);
    }

    pub fn may_hold(&self, family: u8, addr: &[u32; 4]) -> bool {
        let b = vip_filter_bit(family, addr) as usize;
        self.words[b / 64] & (1 << (b % 64)) != 0
    }
}

/// This key is the per-address marker, not a service: it tells the data path
/// that the address belongs to a VIP, so ICMP echo is answered and fragments
/// or malformed packets to it are dropped instead of passed.
pub const VIP_F_ADDR_MARKER: u32 = 1 << 0;
/// When a backend is marked down, flows pinned to it in the connection table
/// are re-steered to the ring's choice instead of staying.
pub const VIP_F_MOVE_FLOWS_ON_DOWN: u32 = 1 << 1;
/// Answer ICMP echo requests to this address (address marker only).
pub const VIP_F_ICMP_ECHO: u32 = 1 << 2;
/// The VIP has an access guard (`VIP_GUARD[id]`: allow/deny lists, rate
/// limits); unguarded VIPs pay nothing for the feature.
pub const VIP_F_GUARDED: u32 = 1 << 3;

/// Flow hash over source and destination address, ports and protocol.
pub const HASH_FIVE_TUPLE: u32 = 0;
/// Flow hash over the source address only (client affinity).
pub const HASH_SRC_IP: u32 = 1;
/// Flow hash over the source address and destination port.
pub const HASH_SRC_IP_DST_PORT: u32 = 2;

/// Value of the `VIPS` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// Dense index into `RING_SELECT`, `RINGS` and `VIP_STATS`.
    pub id: u32,
    /// `VIP_F_*`.
    pub flags: u32,
    /// `HASH_*`.
    pub hash_mode: u32,
    pub _pad: u32,
}

/// Value of `VIP_INDEX` (index = VIP id): the service's own `VIPS` key
/// and entry, which the agent derives from `VIPS`. A packet whose
/// connection-table entry names a backend of VIP `id`, and whose
/// destination is exactly `key`, is that service's without a `VIPS`
/// lookup. All zeroes where no service has the id.
///
/// The syscall copies a record in place, so a reader on another CPU can
/// catch one half-written. The agent only ever clears a record or writes
/// one over zeroes, and `seal` covers every other word: a read that mixes
/// zeroes with a record's words never passes [`VipRecord::sealed_words`]
/// (the agent checks that when it seals; see [`VipRecord::new`]), and one
/// that mixes two records' words passes with odds of 2^-32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipRecord {
    pub key: VipKey,
    pub meta: VipMeta,
    pub seal: u32,
}

/// The words of a `VipRecord` before its seal.
pub const VIP_RECORD_WORDS: usize = 9;

/// Odd weights: one wrong word always changes the seal.
const SEAL_WEIGHTS: [u32; VIP_RECORD_WORDS] = [
    0x9e37_79b1,
    0x85eb_ca77,
    0xc2b2_ae3d,
    0x27d4_eb2f,
    0x1656_67b1,
    0xd3a2_646d,
    0xfd70_46c5,
    0xb55a_4f09,
    0x6c8e_9cf5,
];
/// The seal of an all-zero record: never zero, so a cleared slot fails.
const SEAL_BASE: u32 = 0x5ea1_ed01;

impl VipRecord {
    /// The record of `key`'s service, or `None` when a half-written copy of
    /// it could pass the check (some set of its words read as zero yields
    /// its own seal, or zero): the service then simply has no record and
    /// its packets take the `VIPS` lookup.
    pub fn new(key: VipKey, meta: VipMeta) -> Option<Self> {
        let mut r = Self { key, meta, seal: 0 };
        let words = r.words();
        let seal = Self::seal(&words);
        // Every combination of words read as zero (2^9), against the seal
        // read whole and read as zero.
        let mut zeroed = 1u32;
        while zeroed < 1 << VIP_RECORD_WORDS {
            let mut torn = words;
            let mut i = 0;
            while i < VIP_RECORD_WORDS {
                if zeroed & (1 << i) != 0 {
                    torn[i] = 0;
                }
                i += 1;
            }
            let s = Self::seal(&torn);
            if (torn != words && s == seal) || s == 0 {
                return None;
            }
            zeroed += 1;
        }
        if seal == 0 {
            return None;
        }
        r.seal = seal;
        Some(r)
    }

    /// The words the seal covers, in memory order.
    pub fn words(&self) -> [u32; VIP_RECORD_WORDS] {
        let k = &self.key;
        let m = &self.meta;
        [
            k.addr[0],
            k.addr[1],
            k.addr[2],
            k.addr[3],
            u32::from_ne_bytes(Self::port_word(k.port, k.proto, k.family)),
            m.id,
            m.flags,
            m.hash_mode,
            m._pad,
        ]
    }

    /// The bytes of the key's word after the address.
    #[inline(always)]
    pub fn port_word(port: u16, proto: u8, family: u8) -> [u8; 4] {
        let p = port.to_ne_bytes();
        [p[0], p[1], proto, family]
    }

    /// Word `i`'s share of the seal: the seal is
    /// `seal_of_sum(Σ seal_term(i, word i))` (wrapping), so the data path
    /// can add the terms up as it reads and compares the words.
    #[inline(always)]
    pub const fn seal_term(i: usize, word: u32) -> u32 {
        word.wrapping_mul(SEAL_WEIGHTS[i])
    }

    /// The seal from the wrapping sum of every word's `seal_term`.
    #[inline(always)]
    pub const fn seal_of_sum(sum: u32) -> u32 {
        sum ^ SEAL_BASE
    }

    /// The seal of `words`.
    #[inline(always)]
    pub fn seal(words: &[u32; VIP_RECORD_WORDS]) -> u32 {
        let mut sum = 0u32;
        let mut i = 0;
        while i < VIP_RECORD_WORDS {
            sum = sum.wrapping_add(Self::seal_term(i, words[i]));
            i += 1;
        }
        Self::seal_of_sum(sum)
    }

    /// Whether `words` (read once) and `seal` are one whole record.
    #[inline(always)]
    pub fn sealed_words(words: &[u32; VIP_RECORD_WORDS], seal: u32) -> bool {
        Self::seal(words) == seal
    }
}

/// Value of `VIP_GUARD` (index = VIP id): who may reach the VIP and how
/// fast. Rates are per CPU (the agent divides the configured rate by the
/// number of CPUs) as GCRA parameters: a packet may pass when the bucket's
/// theoretical arrival time is at most `tolerance` ahead of now, and then
/// moves it on by `interval`. An interval of 0 is no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipGuard {
    /// `GUARD_F_*`.
    pub flags: u32,
    /// Which generation of the VIP's `ACL` entries is live (0 or 1).
    pub acl_gen: u32,
    /// New flows per source prefix.
    pub src_flow_interval_ns: u64,
    pub src_flow_tolerance_ns: u64,
    /// Packets per source prefix.
    pub src_pkt_interval_ns: u64,
    pub src_pkt_tolerance_ns: u64,
    /// New flows of the whole VIP.
    pub vip_flow_interval_ns: u64,
    pub vip_flow_tolerance_ns: u64,
    /// What a source address is masked to for its bucket (network order).
    pub src_mask_v4: u32,
    pub _pad: u32,
    pub src_mask_v6: [u32; 4],
}

/// Sources must match an allow entry of `ACL` (an allow list is set).
pub const GUARD_F_ALLOW_LIST: u32 = 1 << 0;
/// `ACL` holds entries for the VIP (allow or deny): look the source up.
pub const GUARD_F_ACL: u32 = 1 << 1;

/// Data of an `ACL` LPM-trie key (after its prefix length): the scope word
/// (VIP id and generation), the family word, then the address in wire
/// order; a prefix length of `64 + n` matches `n` bits of the address
/// within one VIP's live generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclKey {
    /// `acl_scope(vip_id, gen)`.
    pub scope: u32,
    pub family: u32,
    pub addr: [u32; 4],
}

/// The scope word of an `AclKey`, in the byte order the trie compares.
pub const fn acl_scope(vip_id: u32, generation: u32) -> u32 {
    ((vip_id << 1) | (generation & 1)).to_be()
}

/// `ACL` values.
pub const ACL_ALLOW: u32 = 1;
pub const ACL_DENY: u32 = 2;

/// Key of `RATE`: one source prefix of one VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub vip_id: u32,
    pub family: u32,
    /// The source address masked to the VIP's source prefix.
    pub addr: [u32; 4],
}

/// Value of `RATE` (per CPU): the buckets' theoretical arrival times.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub flow_tat_ns: u64,
    pub pkt_tat_ns: u64,
}

/// Per-VIP counters of the access guard and the packet hygiene (index =
/// reason − `Reason::DropMartianSource`).
pub const GUARD_REASONS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    pub drops: [u64; GUARD_REASONS],
}

/// Encapsulate in IP (IPIP, IPv6-in-IPv6, IPv4-in-IPv6 or IPv6-in-IPv4,
/// chosen by the families of the VIP and the backend).
pub const FWD_IPIP: u8 = 0;
/// Encapsulate in UDP (GUE variant 1: the IP packet right after UDP).
pub const FWD_GUE: u8 = 1;
/// Direct server return on the same L2 segment: only the destination MAC
/// changes.
pub const FWD_L2_DSR: u8 = 2;

/// Slot holds a configured backend.
pub const BACKEND_F_VALID: u8 = 1 << 0;
/// Backend failed health checks or is in maintenance; see
/// `VIP_F_MOVE_FLOWS_ON_DOWN`.
pub const BACKEND_F_DOWN: u8 = 1 << 1;
/// `mac` holds a configured next-hop MAC, used when the kernel neighbour
/// table has none.
pub const BACKEND_F_HAS_MAC: u8 = 1 << 2;

/// Value of the `BACKENDS` array (index = backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u32; 4],
    pub family: u8,
    /// `FWD_*`.
    pub fwd_mode: u8,
    /// `BACKEND_F_*`.
    pub flags: u8,
    pub _pad0: u8,
    /// GUE destination port (network order); 0 = global default.
    pub gue_port: u16,
    /// Next-hop MAC fallback (valid when `BACKEND_F_HAS_MAC`).
    pub mac: [u8; 6],
    /// The VIP this slot belongs to: lets a restarted agent rebuild its
    /// allocation from the pinned maps alone.
    pub vip_id: u32,
}

/// Key of the connection table: the full 5-tuple as seen from the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of the connection table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnEntry {
    pub backend_id: u32,
    pub vip_id: u32,
    /// `bpf_ktime_get_coarse_ns()` of the last packet (refreshed for UDP
    /// only, which is the only protocol that expires by idleness).
    pub last_seen_ns: u64,
    /// TCP: the client's sequence number when recorded (refreshed as the
    /// connection moves on). A packet far from it belongs to a later
    /// connection of the same addresses and ports, which another LB host
    /// steered: the entry is stale.
    pub seq: u32,
    /// `CONN_F_*`.
    pub flags: u32,
}

/// `ConnEntry::seq` holds a TCP sequence number.
pub const CONN_F_SEQ: u32 = 1 << 0;

/// `gw_mac` holds a configured gateway MAC used when `bpf_fib_lookup` has
/// no neighbour entry.
pub const CFG_F_GW_MAC: u16 = 1 << 0;
/// Skip the connection table entirely (stateless Maglev only).
pub const CFG_F_NO_CONNTRACK: u16 = 1 << 1;
/// No VIP listens on all ports: a packet that misses the exact
/// (address, port, protocol) entry needs no second, port-0 lookup. Set by
/// the agent, so a configuration written before this flag existed (clear)
/// keeps the second lookup.
pub const CFG_F_NO_ALL_PORTS_VIPS: u16 = 1 << 2;

/// The single value of the `CONFIG` array: runtime knobs the agent may change
/// without reloading the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbConfig {
    /// Seed of the flow hash; the same on every host of a fleet so every
    /// host maps a flow to the same backend.
    pub hash_seed: u32,
    /// New connection-table inserts allowed per CPU per second; 0 = no limit.
    pub flood_new_flows_per_sec: u32,
    /// UDP entries idle for longer are ignored (and replaced).
    pub udp_idle_ns: u64,
    /// Outer IPv4 source: base address (network order).
    pub encap_src_v4: u32,
    /// Outer IPv6 source: base address (network order).
    pub encap_src_v6: [u32; 4],
    /// Low bits of the outer source taken from the flow hash (RSS-friendly
    /// sources as in Katran); 0 = use the base address as is.
    pub encap_src_v4_hash_bits: u8,
    pub encap_src_v6_hash_bits: u8,
    /// `CFG_F_*`.
    pub flags: u16,
    /// Largest outer IP packet (L3 bytes) the balancer may emit.
    pub mtu: u16,
    /// Default GUE destination port (network order).
    pub gue_port: u16,
    pub gw_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Must equal `limits::MAP_LAYOUT_VERSION`; lets tools check a pinned map.
    pub layout_version: u32,
}

/// Per-CPU counters of one VIP (`VIP_STATS`, index = vip id) or one backend
/// (`BACKEND_STATS`, index = backend id). Userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    pub packets: u64,
    pub bytes: u64,
    /// Flows steered by the ring (connection-table misses).
    pub new_flows: u64,
}

/// Per-CPU state of the new-flow flood guard.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodState {
    pub window_start_ns: u64,
    pub inserts: u64,
}

/// Key of the decap program's `DECAP_ADDRS` map: a local address tunnels may
/// be addressed to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapAddr {
    pub addr: [u32; 4],
    /// `FAMILY_V4`/`FAMILY_V6`, widened so the key has no padding bytes.
    pub family: u32,
}

/// The decap program's single `DECAP_CONFIG` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapConfig {
    /// GUE port to accept (network order); 0 disables GUE.
    pub gue_port: u16,
    /// `DECAP_F_*`.
    pub flags: u16,
}

/// Accept tunnels to any destination (no `DECAP_ADDRS` check).
pub const DECAP_F_ANY_DST: u16 = 1 << 0;
/// Accept tunnels from any source (no `DECAP_SOURCES` check).
pub const DECAP_F_ANY_SOURCE: u16 = 1 << 1;
/// Accept any inner destination (no `DECAP_VIPS` check).
pub const DECAP_F_ANY_VIP: u16 = 1 << 2;
/// Drop refused tunnels instead of passing them untouched.
pub const DECAP_F_DROP_REFUSED: u16 = 1 << 3;

/// Data of a `DECAP_SOURCES` LPM-trie key (after its prefix length): the
/// family word first, then the address in wire order, so a prefix length
/// of `32 + n` matches the first `n` bits of an address of that family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecapPrefix {
    pub family: u32,
    pub addr: [u32; 4],
}

/// XDP metadata of an `lbctl explain` probe: the balancer then decides as
/// usual but records nothing (no connection-table entry, no counters) and
/// writes its reasoning to `EXPLAIN`. Real traffic carries no metadata.
pub const EXPLAIN_MAGIC: u32 = 0x4c42_4558;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExplainMeta {
    pub magic: u32,
    /// Echoed into `Explain::nonce` so the caller finds its CPU's record.
    pub nonce: u32,
}

/// The connection table gave the backend.
pub const EXPLAIN_PATH_TABLE: u32 = 1;
/// The ring gave the backend (miss, SYN, or a stale entry).
pub const EXPLAIN_PATH_RING: u32 = 2;

/// Per-CPU record of how the last explain probe was steered.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Explain {
    pub nonce: u32,
    pub vip_id: u32,
    pub backend_id: u32,
    pub hash: u32,
    /// Ring slot (`hash mod M`) and half consulted (ring path only).
    pub slot: u32,
    pub half: u32,
    /// `EXPLAIN_PATH_*`; 0 = never reached backend choice.
    pub path: u32,
    pub _pad: u32,
}

// The kernel and userspace must agree on these sizes; a change here is a map
// layout change (bump `MAP_LAYOUT_VERSION`).
const _: () = {
    assert!(size_of::<VipKey>() == 20);
    assert!(size_of::<VipMeta>() == 16);
    assert!(size_of::<Backend>() == 32);
    assert!(size_of::<FlowKey>() == 40);
    assert!(size_of::<ConnEntry>() == 24);
    assert!(size_of::<LbConfig>() == 56);
    assert!(size_of::<TrafficStats>() == 24);
    assert!(size_of::<FloodState>() == 16);
    assert!(size_of::<DecapAddr>() == 20);
    assert!(size_of::<DecapConfig>() == 4);
    assert!(size_of::<DecapPrefix>() == 20);
    assert!(size_of::<VipRecord>() == 40);
    assert!(size_of::<VipGuard>() == 80);
    assert!(size_of::<AclKey>() == 24);
    assert!(size_of::<RateKey>() == 24);
    assert!(size_of::<RateState>() == 16);
    assert!(size_of::<GuardStats>() == 64);
    assert!(size_of::<ExplainMeta>() == 8);
    assert!(size_of::<Explain>() == 32);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers
    // and integer arrays with explicit padding fields, so every bit pattern
    // is a valid value and there are no implicit padding bytes.
    unsafe impl aya::Pod for VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ConnEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LbConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TrafficStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FloodState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DecapAddr {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DecapConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DecapPrefix {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipGuard {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AclKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RateKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RateState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for GuardStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ExplainMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Explain {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VipFilter {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(port: u16, id: u32, flags: u32) -> (VipKey, VipMeta) {
        let key = VipKey {
            addr: [u32::from_ne_bytes([10, 0, 0, 10]), 0, 0, 0],
            port: port.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
        };
        let meta = VipMeta {
            id,
            flags,
            hash_mode: HASH_SRC_IP,
            _pad: 0,
        };
        (key, meta)
    }

    #[test]
    fn a_sealed_record_passes_and_a_cleared_one_does_not() {
        let (k, m) = service(80, 3, VIP_F_GUARDED);
        let r = VipRecord::new(k, m).unwrap();
        assert!(VipRecord::sealed_words(&r.words(), r.seal));
        let zero = VipRecord::default();
        assert!(!VipRecord::sealed_words(&zero.words(), zero.seal));
    }

    #[test]
    fn a_record_read_half_written_over_zeroes_never_passes() {
        let (k, m) = service(443, 7, VIP_F_GUARDED | VIP_F_MOVE_FLOWS_ON_DOWN);
        let r = VipRecord::new(k, m).unwrap();
        let words = r.words();
        for zeroed in 1u32..1 << VIP_RECORD_WORDS {
            let mut torn = words;
            for (i, w) in torn.iter_mut().enumerate() {
                if zeroed & (1 << i) != 0 {
                    *w = 0;
                }
            }
            if torn == words {
                continue;
            }
            assert!(!VipRecord::sealed_words(&torn, r.seal), "{zeroed:#x}");
            assert!(!VipRecord::sealed_words(&torn, 0), "{zeroed:#x}");
        }
    }

    #[test]
    fn a_read_mixing_two_services_words_fails() {
        let (ka, ma) = service(80, 3, 0);
        let (kb, mb) = service(8080, 3, VIP_F_GUARDED);
        let (a, b) = (
            VipRecord::new(ka, ma).unwrap(),
            VipRecord::new(kb, mb).unwrap(),
        );
        // The old key with the new flags, under either seal.
        let mut mixed = a.words();
        mixed[6] = b.words()[6];
        assert!(!VipRecord::sealed_words(&mixed, a.seal));
        assert!(!VipRecord::sealed_words(&mixed, b.seal));
    }
}
