//! Every map of the XDP objects, once: name, kind, key and value layout,
//! size, and whether it is pinned. The loader sizes and pins from this
//! table, the pinned-state check compares against it, and `inspect` and the
//! decap reader open maps through it. Adding a map is one row here (and the
//! typed handle of whoever uses it).

use aya::maps::MapType;
use lb_common::{
    limits::{
        MAX_DECAP_ADDRS, MAX_DECAP_SOURCES, MAX_DECAP_VIPS, MAX_TX_PORTS, REASON_SLOTS,
        VIP_KEYS_PER_VIP,
    },
    maps::{
        AclKey, Backend, ConnEntry, DecapAddr, DecapConfig, DecapPrefix, Explain, FloodState,
        FlowKey, GuardStats, LbConfig, RateKey, RateState, TrafficStats, VipFilter, VipGuard,
        VipKey, VipMeta, VipRecord,
    },
};

use crate::core::config::Limits;

/// How many entries a map has.
#[derive(Clone, Copy, Debug)]
pub enum Entries {
    /// As the object declares it.
    Object(u32),
    /// Set at load time from the configured limits.
    Limits(fn(&Limits) -> u32),
}

#[derive(Clone, Copy, Debug)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub entries: Entries,
    /// Pinned under `<pin dir>/maps/`: state worth keeping across agent
    /// restarts (tables, connection table, counters), and what `lbctl`
    /// reads. Caches stay private to the program.
    pub pinned: bool,
}

impl MapSpec {
    pub fn entries(&self, limits: &Limits) -> u32 {
        match self.entries {
            Entries::Object(n) => n,
            Entries::Limits(f) => f(limits),
        }
    }
}

const fn spec<K, V>(name: &'static str, kind: MapType, entries: Entries, pinned: bool) -> MapSpec {
    MapSpec {
        name,
        kind,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        entries,
        pinned,
    }
}

pub const CONFIG: MapSpec =
    spec::<u32, LbConfig>("CONFIG", MapType::Array, Entries::Object(1), true);
pub const VIPS: MapSpec = spec::<VipKey, VipMeta>(
    "VIPS",
    MapType::Hash,
    Entries::Limits(|l| l.max_vips * VIP_KEYS_PER_VIP),
    true,
);
pub const RING_SELECT: MapSpec = spec::<u32, u32>(
    "RING_SELECT",
    MapType::Array,
    Entries::Limits(|l| l.max_vips),
    true,
);
/// Two u32 slots per 8-byte element (array elements are 8-byte aligned).
pub const RINGS: MapSpec = spec::<u32, [u32; 2]>(
    "RINGS",
    MapType::Array,
    Entries::Limits(|l| (l.ring_entries() / 2) as u32),
    true,
);
pub const BACKENDS: MapSpec = spec::<u32, Backend>(
    "BACKENDS",
    MapType::Array,
    Entries::Limits(|l| l.max_backends),
    true,
);
/// The shared connection table; the unused one of the pair shrinks to one
/// entry.
pub const CONNTRACK: MapSpec = spec::<FlowKey, ConnEntry>(
    "CONNTRACK",
    MapType::LruHash,
    Entries::Limits(|l| {
        if l.conntrack_per_cpu {
            1
        } else {
            l.conntrack_size
        }
    }),
    true,
);
pub const CONNTRACK_PCPU: MapSpec = spec::<FlowKey, ConnEntry>(
    "CONNTRACK_PCPU",
    MapType::LruPerCpuHash,
    Entries::Limits(|l| {
        if l.conntrack_per_cpu {
            l.conntrack_size
        } else {
            1
        }
    }),
    true,
);
/// `bpf_devmap_val` values (ifindex and an unused program fd).
pub const TX_PORTS: MapSpec = spec::<u32, [u32; 2]>(
    "TX_PORTS",
    MapType::DevMapHash,
    Entries::Object(MAX_TX_PORTS),
    true,
);
pub const STATS: MapSpec = spec::<u32, u64>(
    "STATS",
    MapType::PerCpuArray,
    Entries::Object(REASON_SLOTS),
    true,
);
pub const VIP_STATS: MapSpec = spec::<u32, TrafficStats>(
    "VIP_STATS",
    MapType::PerCpuArray,
    Entries::Limits(|l| l.max_vips),
    true,
);
pub const BACKEND_STATS: MapSpec = spec::<u32, TrafficStats>(
    "BACKEND_STATS",
    MapType::PerCpuArray,
    Entries::Limits(|l| l.max_backends),
    true,
);
pub const FLOOD: MapSpec =
    spec::<u32, FloodState>("FLOOD", MapType::PerCpuArray, Entries::Object(1), true);
pub const EXPLAIN: MapSpec =
    spec::<u32, Explain>("EXPLAIN", MapType::PerCpuArray, Entries::Object(1), true);
/// The access guard of each guarded VIP.
pub const VIP_GUARD: MapSpec = spec::<u32, VipGuard>(
    "VIP_GUARD",
    MapType::Array,
    Entries::Limits(|l| l.max_vips),
    true,
);
/// LPM-trie keys are the prefix length, then the data.
pub const ACL: MapSpec = spec::<(u32, AclKey), u32>(
    "ACL",
    MapType::LpmTrie,
    Entries::Limits(|l| l.max_acl_entries),
    true,
);
pub const RATE: MapSpec = spec::<RateKey, RateState>(
    "RATE",
    MapType::LruPerCpuHash,
    Entries::Limits(|l| l.rate_sources),
    true,
);
pub const VIP_BUDGET: MapSpec = spec::<u32, u64>(
    "VIP_BUDGET",
    MapType::PerCpuArray,
    Entries::Limits(|l| l.max_vips),
    true,
);
pub const GUARD_STATS: MapSpec = spec::<u32, GuardStats>(
    "GUARD_STATS",
    MapType::PerCpuArray,
    Entries::Limits(|l| l.max_vips),
    true,
);
/// Scratch space and the next-hop cache: private to the program.
pub const FIB_SCRATCH: MapSpec = MapSpec {
    name: "FIB_SCRATCH",
    kind: MapType::PerCpuArray,
    key_size: 4,
    // struct bpf_fib_lookup
    value_size: 64,
    entries: Entries::Object(1),
    pinned: false,
};
pub const NEXTHOPS: MapSpec = MapSpec {
    name: "NEXTHOPS",
    kind: MapType::PerCpuArray,
    key_size: 4,
    // lb-ebpf's `nexthop::CachedHop`, which only the program reads.
    value_size: 48,
    entries: Entries::Limits(|l| l.max_backends),
    pinned: false,
};

/// Derived from `VIPS` (rebuilt at every load), so never pinned.
pub const VIP_FILTER: MapSpec =
    spec::<u32, VipFilter>("VIP_FILTER", MapType::Array, Entries::Object(1), false);

/// Each service's `VIPS` key and entry by VIP id: derived from `VIPS`
/// (rebuilt at every load), so never pinned.
pub const VIP_INDEX: MapSpec = spec::<u32, VipRecord>(
    "VIP_INDEX",
    MapType::Array,
    Entries::Limits(|l| l.max_vips),
    false,
);

/// The balancer object's maps.
pub const BALANCER: &[MapSpec] = &[
    CONFIG,
    VIPS,
    VIP_FILTER,
    VIP_INDEX,
    RING_SELECT,
    RINGS,
    BACKENDS,
    CONNTRACK,
    CONNTRACK_PCPU,
    TX_PORTS,
    STATS,
    VIP_STATS,
    BACKEND_STATS,
    FLOOD,
    EXPLAIN,
    VIP_GUARD,
    ACL,
    RATE,
    VIP_BUDGET,
    GUARD_STATS,
    FIB_SCRATCH,
    NEXTHOPS,
];

/// The decap object's maps (never pinned: found through its pinned link).
pub const DECAP_ADDRS: MapSpec = spec::<DecapAddr, u32>(
    "DECAP_ADDRS",
    MapType::Hash,
    Entries::Object(MAX_DECAP_ADDRS),
    false,
);
/// LPM-trie keys are the prefix length, then the data.
pub const DECAP_SOURCES: MapSpec = spec::<(u32, DecapPrefix), u32>(
    "DECAP_SOURCES",
    MapType::LpmTrie,
    Entries::Object(MAX_DECAP_SOURCES),
    false,
);
pub const DECAP_VIPS: MapSpec = spec::<DecapAddr, u32>(
    "DECAP_VIPS",
    MapType::Hash,
    Entries::Object(MAX_DECAP_VIPS),
    false,
);
pub const DECAP_CONFIG: MapSpec =
    spec::<u32, DecapConfig>("DECAP_CONFIG", MapType::Array, Entries::Object(1), false);
/// The decap program's outcome counters (same layout as the balancer's).
pub const DECAP_STATS: MapSpec = MapSpec {
    pinned: false,
    ..STATS
};

/// The balancer's pinned maps: the pinned state, and the layout a pinned
/// state found on start must have.
/// Maps earlier versions pinned and this one no longer has: unpinned at
/// load (a program still attached keeps its own reference until replaced).
/// `DRY_RUN` was the per-CPU explain flag, now a second compiled path.
pub const RETIRED: &[&str] = &["DRY_RUN"];

pub fn pinned() -> impl Iterator<Item = &'static MapSpec> {
    BALANCER.iter().filter(|m| m.pinned)
}
