//! Sizes of the kernel tables and what they cost.
//!
//! The sizes marked "load-time" are only defaults: the agent sets the real
//! `max_entries` when it creates the maps (config `limits:`), so none of them
//! needs a rebuild. The memory figures are for the defaults.

/// Maglev lookup table size per VIP (prime). Load-time.
/// Rings cost `2 (double buffer) × max_vips × ring_size × 4 B`:
/// 128 VIPs × 65537 → 64 MiB.
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// Largest ring size accepted (prime, ~10× the default).
pub const MAX_RING_SIZE: u32 = 655_373;

/// VIPs (address, port, protocol). Load-time. Per VIP: a ring pair, a
/// ring selector word and per-CPU counters (24 B × CPUs).
pub const DEFAULT_MAX_VIPS: u32 = 128;
/// Hard upper bound on `max_vips` (vip ids are dense indexes into arrays).
pub const MAX_VIPS_LIMIT: u32 = 4096;

/// Backend slots (one per VIP × backend pair, so counters are per VIP).
/// Load-time. 28 B each plus per-CPU counters (24 B × CPUs):
/// 16384 slots → 448 KiB + 384 KiB per CPU.
pub const DEFAULT_MAX_BACKENDS: u32 = 16_384;
/// Hard upper bound on `max_backends`.
pub const MAX_BACKENDS_LIMIT: u32 = 1 << 20;

/// Connection-table entries (LRU). Load-time. Key 40 B + value 24 B plus
/// about 64 B of kernel overhead per entry: 1 Mi entries ≈ 128 MiB.
pub const DEFAULT_CONNTRACK_SIZE: u32 = 1 << 20;

/// Entries in the VIP hash map per configured VIP (the VIP itself and its
/// address marker, see [`crate::maps::VIP_F_ADDR_MARKER`]).
pub const VIP_KEYS_PER_VIP: u32 = 2;

/// Local addresses the decap program accepts tunnels for.
pub const MAX_DECAP_ADDRS: u32 = 64;
/// Source prefixes (the LB hosts) the decap program accepts tunnels from.
pub const MAX_DECAP_SOURCES: u32 = 256;
/// VIP addresses the decap program accepts as inner destinations.
pub const MAX_DECAP_VIPS: u32 = 1024;

/// Entries of the access lists (`ACL`, an LPM trie over every VIP). Each
/// list is written twice while it changes (the new generation beside the
/// old), so this bounds twice the largest change. Load-time.
pub const DEFAULT_MAX_ACL_ENTRIES: u32 = 65_536;
/// Source prefixes tracked by the rate limiter (`RATE`, a per-CPU LRU):
/// a spoofed flood evicts old buckets instead of growing memory. Load-time.
pub const DEFAULT_RATE_SOURCES: u32 = 65_536;

/// Slots of the `STATS` outcome counters: more than there are reasons, so
/// a release that adds one does not resize a pinned map.
pub const REASON_SLOTS: u32 = 64;

/// Interfaces the balancer may redirect to (devmap, keyed by ifindex).
pub const MAX_TX_PORTS: u32 = 64;

/// Default largest outer IP packet the balancer emits (bytes, L3).
pub const DEFAULT_MTU: u16 = 1500;

/// Default UDP port for GUE (RFC 8086 direct IP encapsulation, "variant 1").
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// Default idle timeout after which a UDP connection-table entry is ignored.
pub const DEFAULT_UDP_IDLE_SECS: u32 = 30;

/// Version of the pinned map layout. Bump on any change to a map's key or
/// value type, type or meaning; the agent refuses a pinned state with another
/// version instead of reusing it.
/// 2: `STATS` has `REASON_SLOTS` entries; `ConnEntry` carries the client's
/// TCP sequence number.
pub const MAP_LAYOUT_VERSION: u32 = 2;

/// Sentinel in a ring slot: no backend (the VIP has no usable backend).
pub const NO_BACKEND: u32 = u32::MAX;
