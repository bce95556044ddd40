//! The balancer's maps. Sizes here are defaults; the agent sets the real
//! `max_entries` at load time from its `limits:` config. Layouts and memory:
//! docs/ARCHITECTURE.md.

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, bpf_fib_lookup as FibParams},
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use lb_common::{
    limits::{
        DEFAULT_CONNTRACK_SIZE, DEFAULT_MAX_ACL_ENTRIES, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS,
        DEFAULT_RATE_SOURCES, DEFAULT_RING_SIZE, MAX_TX_PORTS, REASON_SLOTS, VIP_KEYS_PER_VIP,
    },
    maps::{
        AclKey, Backend, ConnEntry, Explain, FloodState, FlowKey, GuardStats, LbConfig, RateKey,
        RateState, TrafficStats, VipFilter, VipGuard, VipKey, VipMeta, VipRecord,
    },
};

/// Maglev table size M. A load-time constant (in .rodata, so the verifier
/// and JIT see it as a constant): it fixes the layout of `RINGS`.
#[unsafe(no_mangle)]
pub static RING_SIZE: Global<u32> = Global::new(DEFAULT_RING_SIZE);

/// Use the per-CPU connection table instead of the shared one (load-time;
/// see docs/ARCHITECTURE.md "Connection table" for the measurement).
#[unsafe(no_mangle)]
pub static CONNTRACK_PER_CPU: Global<u32> = Global::new(0);

/// Runtime knobs (one entry), changed by the agent without reloading.
#[map]
pub static CONFIG: Array<LbConfig> = Array::with_max_entries(1, 0);

/// Which destination addresses may have a `VIPS` entry (lb_common's
/// `VipFilter`): a clear bit passes the packet without a hash lookup.
#[map]
pub static VIP_FILTER: Array<VipFilter> = Array::with_max_entries(1, 0);

/// (VIP address, port, protocol) → VIP id and flags; also the per-address
/// markers (port 0, protocol 0).
#[map]
pub static VIPS: HashMap<VipKey, VipMeta> =
    HashMap::with_max_entries(DEFAULT_MAX_VIPS * VIP_KEYS_PER_VIP, 0);

/// VIP id → the service's `VIPS` key and entry (derived by the agent): an
/// established flow's packet finds its service from its connection-table
/// entry with an array read instead of a `VIPS` hash lookup.
#[map]
pub static VIP_INDEX: Array<VipRecord> = Array::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Which half of a VIP's ring pair is live (0 or 1), index = VIP id. The
/// agent fills the other half, then flips this one word.
#[map]
pub static RING_SELECT: Array<u32> = Array::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Maglev tables: slot `(vip_id * 2 + half) * M + hash % M` → backend id,
/// two slots per element (array elements are 8-byte aligned, so a lone u32
/// would waste half the memory). Memory-mappable: the agent writes a whole
/// table with plain stores instead of one syscall per slot.
#[map]
pub static RINGS: Array<[u32; 2]> =
    Array::with_max_entries(DEFAULT_MAX_VIPS * DEFAULT_RING_SIZE, BPF_F_MMAPABLE);

/// Backend id → address, forwarding mode, flags.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(DEFAULT_MAX_BACKENDS, 0);

/// Connection table shared by all CPUs: flow → backend.
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, ConnEntry> =
    LruHashMap::with_max_entries(DEFAULT_CONNTRACK_SIZE, 0);

/// Per-CPU connection table (used when `CONNTRACK_PER_CPU` is set; the agent
/// shrinks whichever table is unused to one entry).
#[map]
pub static CONNTRACK_PCPU: LruPerCpuHashMap<FlowKey, ConnEntry> =
    LruPerCpuHashMap::with_max_entries(1, 0);

/// Egress interfaces for XDP_REDIRECT, keyed by ifindex.
#[map]
pub static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_TX_PORTS, 0);

/// Outcome counters, index = `Reason`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_SLOTS, 0);

/// Per-VIP traffic counters, index = VIP id.
#[map]
pub static VIP_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Per-backend traffic counters, index = backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_BACKENDS, 0);

/// Per-CPU scratch space for `bpf_fib_lookup` parameters (64 bytes kept off
/// the 512-byte BPF stack).
#[map]
pub static FIB_SCRATCH: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU cache of each backend's next hop (index = backend id).
#[map]
pub static NEXTHOPS: PerCpuArray<crate::nexthop::CachedHop> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_BACKENDS, 0);

/// How the last explain probe on this CPU was steered.
#[map]
pub static EXPLAIN: PerCpuArray<Explain> = PerCpuArray::with_max_entries(1, 0);

/// New-flow flood guard state, one per CPU.
#[map]
pub static FLOOD: PerCpuArray<FloodState> = PerCpuArray::with_max_entries(1, 0);

/// Access guard of each VIP flagged `VIP_F_GUARDED` (index = VIP id).
#[map]
pub static VIP_GUARD: Array<VipGuard> = Array::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Allow and deny entries of every guarded VIP, two generations each (the
/// agent writes the new one beside the live one and flips `acl_gen`).
#[map]
pub static ACL: LpmTrie<AclKey, u32> = LpmTrie::with_max_entries(DEFAULT_MAX_ACL_ENTRIES, 0);

/// Rate-limit buckets per (VIP, source prefix), per CPU; LRU, so a
/// spoofed flood evicts buckets rather than growing memory.
#[map]
pub static RATE: LruPerCpuHashMap<RateKey, RateState> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_RATE_SOURCES, 0);

/// Each VIP's own new-flow bucket (theoretical arrival time), per CPU.
#[map]
pub static VIP_BUDGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(DEFAULT_MAX_VIPS, 0);

/// Guard and hygiene drops per VIP (index = VIP id).
#[map]
pub static GUARD_STATS: PerCpuArray<GuardStats> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_VIPS, 0);
