//! The kernel tables as the agent's core sees them, in its own terms (VIP
//! identities, addresses, forwarding modes), not in the maps' words: the
//! kernel adapter (`crate::kernel::dataplane`) encodes. [`MemoryTables`]
//! keeps them in memory with the kernel's semantics (fixed sizes, a fresh
//! ring reads as backend 0), so the balancer facade — allocation, ring
//! updates, restart adoption — is tested without root, as Katran's testing
//! mode does.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::{Reason, limits::NO_BACKEND, maps::TrafficStats};

use crate::core::{
    config::{DataplaneCfg, FlowsOnDown, Forwarding, HashMode, Limits, RateLimit, VipIdent},
    prefix::Prefix,
};

/// The data path's runtime knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub dataplane: DataplaneCfg,
    /// Some VIP listens on every port: the data path must look up port 0
    /// after a miss.
    pub all_ports_vips: bool,
}

/// A service entry: what a packet to the VIP needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipEntry {
    pub id: u32,
    pub hash: HashMode,
    pub flows_on_down: FlowsOnDown,
    /// The data path checks the VIP's guard (allow/deny lists, rates).
    pub guarded: bool,
}

/// What an access-list entry does to a matching source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AclAction {
    Allow,
    Deny,
}

/// A guarded VIP's checks, as the data path holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardEntry {
    /// Sources must match an allow entry.
    pub allow_list: bool,
    /// The VIP has access-list entries (in generation `acl_gen`).
    pub acl: bool,
    pub acl_gen: u32,
    pub rate: RateLimit,
}

/// The per-address marker: the address belongs to a VIP (ICMP echo,
/// fragments and malformed packets to it are ours, not the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The id of the address's first VIP.
    pub id: u32,
    pub icmp_echo: bool,
}

/// A backend slot in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendEntry {
    /// The VIP the slot belongs to: a restarted agent rebuilds its
    /// allocation from the tables alone, and the data path follows a
    /// connection-table entry only to a slot of the same VIP.
    pub vip_id: u32,
    pub address: IpAddr,
    pub forwarding: Forwarding,
    /// GUE destination port; `None`: the global one.
    pub gue_port: Option<u16>,
    /// Next-hop MAC used when the kernel has no neighbour entry.
    pub mac: Option<[u8; 6]>,
    /// Out of service: the VIP's `flows_on_backend_down` applies.
    pub down: bool,
}

pub type TablesResult<T> = Result<T, TablesError>;

/// (slot, backend id) pairs to write into one half of a ring.
pub type Slots = [(u32, u32)];

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("VIP id {id} is outside the VIP table (max_vips {max})")]
    VipIdOutOfRange { id: u32, max: u32 },
    #[error("backend id {id} is outside the backend table (max_backends {max})")]
    BackendIdOutOfRange { id: u32, max: u32 },
    #[error("ring slot {slot} is outside a ring of {size} slots")]
    SlotOutOfRange { slot: u32, size: u32 },
    /// Printed whole: these reach events and API answers by `Display`.
    #[error("map {map}: {error}")]
    Map {
        map: &'static str,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `id` is a VIP id the tables have room for.
pub fn check_vip_id(limits: &Limits, id: u32) -> TablesResult<()> {
    let max = limits.max_vips;
    (id < max)
        .then_some(())
        .ok_or(TablesError::VipIdOutOfRange { id, max })
}

/// `id` is a backend slot the tables have.
pub fn check_backend_id(limits: &Limits, id: u32) -> TablesResult<()> {
    let max = limits.max_backends;
    (id < max)
        .then_some(())
        .ok_or(TablesError::BackendIdOutOfRange { id, max })
}

/// `slot` is inside a ring.
pub fn check_slot(limits: &Limits, slot: u32) -> TablesResult<()> {
    let size = limits.ring_size;
    (slot < size)
        .then_some(())
        .ok_or(TablesError::SlotOutOfRange { slot, size })
}

pub trait Tables {
    fn limits(&self) -> Limits;
    fn set_settings(&mut self, s: &Settings) -> TablesResult<()>;
    fn set_vip(&mut self, vip: &VipIdent, e: &VipEntry) -> TablesResult<()>;
    fn remove_vip(&mut self, vip: &VipIdent) -> TablesResult<()>;
    /// Service entries.
    fn vips(&self) -> TablesResult<Vec<(VipIdent, VipEntry)>>;
    fn set_marker(&mut self, addr: IpAddr, m: &Marker) -> TablesResult<()>;
    fn remove_marker(&mut self, addr: IpAddr) -> TablesResult<()>;
    fn markers(&self) -> TablesResult<Vec<(IpAddr, Marker)>>;
    /// Fills slot `id`, or clears it (`None`).
    fn set_backend(&mut self, id: u32, b: Option<&BackendEntry>) -> TablesResult<()>;
    /// Slots in use.
    fn backends(&self) -> TablesResult<Vec<(u32, BackendEntry)>>;
    fn live_half(&self, vip_id: u32) -> TablesResult<u32>;
    fn read_ring(&self, vip_id: u32, half: u32) -> TablesResult<Vec<u32>>;
    /// Writes (slot, backend id) pairs into one half; returns how many.
    fn write_ring_slots(&mut self, vip_id: u32, half: u32, slots: &Slots) -> TablesResult<usize>;
    /// Makes `half` the live one.
    fn flip(&mut self, vip_id: u32, half: u32) -> TablesResult<()>;

    /// A VIP's guard (`None`: clear it).
    fn set_guard(&mut self, vip_id: u32, g: Option<&GuardEntry>) -> TablesResult<()>;
    /// The live access-list generation of a VIP's guard, if it has one.
    fn guard_generation(&self, vip_id: u32) -> TablesResult<Option<u32>>;
    /// Writes access-list entries of one generation of a VIP.
    fn set_acl(
        &mut self,
        vip_id: u32,
        generation: u32,
        entries: &[(Prefix, AclAction)],
    ) -> TablesResult<()>;
    fn remove_acl(&mut self, vip_id: u32, generation: u32, prefixes: &[Prefix])
    -> TablesResult<()>;
    /// The entries of one generation of a VIP's access list.
    fn acl(&self, vip_id: u32, generation: u32) -> TablesResult<Vec<(Prefix, AclAction)>>;

    /// Guard and hygiene drops of a VIP by reason (summed over CPUs).
    fn guard_drops(&self, _vip_id: u32) -> TablesResult<Vec<(Reason, u64)>> {
        Ok(vec![])
    }

    /// Data-path outcome counters (summed over CPUs); none in memory.
    fn reason_counters(&self) -> TablesResult<Vec<(Reason, u64)>> {
        Ok(Reason::ALL.iter().map(|r| (*r, 0)).collect())
    }
    fn vip_traffic(&self, _vip_id: u32) -> TablesResult<TrafficStats> {
        Ok(TrafficStats::default())
    }
    fn backend_traffic(&self, _backend_id: u32) -> TablesResult<TrafficStats> {
        Ok(TrafficStats::default())
    }
}

/// Tables in memory, with the same semantics (fixed sizes, zeroed arrays).
#[derive(Clone, Debug)]
pub struct MemoryTables {
    pub limits: Limits,
    pub settings: Option<Settings>,
    pub vips: BTreeMap<VipIdent, VipEntry>,
    pub markers: BTreeMap<IpAddr, Marker>,
    /// By VIP id.
    pub guards: BTreeMap<u32, GuardEntry>,
    /// (VIP id, generation, prefix) → action.
    pub acls: BTreeMap<(u32, u32, Prefix), AclAction>,
    pub backends: Vec<Option<BackendEntry>>,
    pub ring_select: Vec<u32>,
    pub rings: Vec<u32>,
    /// Slots written so far (to check that only changes are written).
    pub slot_writes: usize,
    pub flips: usize,
    /// Service and marker entries written.
    pub vip_writes: usize,
    /// When set, every write checks what a packet arriving right then
    /// would see, and counts live-table slots of published VIPs that point
    /// at a slot that is not a backend of that VIP.
    pub audit: bool,
    pub dangling_seen: usize,
    /// Fault injection: writes that still succeed before `failures` writes
    /// fail as a kernel map update would (`None`: none fail).
    pub writes_left: Option<usize>,
    pub failures: usize,
}

impl MemoryTables {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            settings: None,
            vips: BTreeMap::new(),
            markers: BTreeMap::new(),
            guards: BTreeMap::new(),
            acls: BTreeMap::new(),
            backends: vec![None; limits.max_backends as usize],
            ring_select: vec![0; limits.max_vips as usize],
            // A fresh kernel array is zeroed: every slot says backend 0.
            rings: vec![0; limits.ring_entries() as usize],
            slot_writes: 0,
            flips: 0,
            vip_writes: 0,
            audit: false,
            dangling_seen: 0,
            writes_left: None,
            failures: 0,
        }
    }

    /// Live-table slots of published VIPs that a packet could not use.
    pub fn dangling_slots(&self) -> usize {
        self.vips
            .values()
            .map(|v| {
                self.live_ring(v.id)
                    .iter()
                    .filter(|&&id| {
                        id != NO_BACKEND
                            && self
                                .backends
                                .get(id as usize)
                                .and_then(Option::as_ref)
                                .is_none_or(|b| b.vip_id != v.id)
                    })
                    .count()
            })
            .sum()
    }

    /// Spends one write of the injected budget.
    fn write(&mut self, map: &'static str) -> TablesResult<()> {
        match &mut self.writes_left {
            Some(0) => {
                self.failures = self.failures.saturating_sub(1);
                if self.failures == 0 {
                    self.writes_left = None;
                }
                Err(TablesError::Map {
                    map,
                    error: "injected write failure".into(),
                })
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn after_write(&mut self) {
        if self.audit {
            self.dangling_seen += self.dangling_slots();
        }
    }

    /// The live table of a VIP.
    pub fn live_ring(&self, vip_id: u32) -> Vec<u32> {
        self.read_ring(vip_id, self.ring_select[vip_id as usize])
            .expect("valid VIP id")
    }

    /// What the data path would pick for `hash` on a VIP.
    pub fn lookup(&self, vip_id: u32, hash: u32) -> Option<u32> {
        let slot = self.live_ring(vip_id)[(hash % self.limits.ring_size) as usize];
        (slot != NO_BACKEND).then_some(slot)
    }

    fn index(&self, vip_id: u32, half: u32, slot: u32) -> usize {
        (vip_id as usize * 2 + half as usize) * self.limits.ring_size as usize + slot as usize
    }
}

impl Tables for MemoryTables {
    fn limits(&self) -> Limits {
        self.limits
    }
    fn set_settings(&mut self, s: &Settings) -> TablesResult<()> {
        self.write("settings")?;
        self.settings = Some(s.clone());
        Ok(())
    }
    fn set_vip(&mut self, vip: &VipIdent, e: &VipEntry) -> TablesResult<()> {
        check_vip_id(&self.limits, e.id)?;
        self.write("vips")?;
        self.vips.insert(*vip, *e);
        self.vip_writes += 1;
        self.after_write();
        Ok(())
    }
    fn remove_vip(&mut self, vip: &VipIdent) -> TablesResult<()> {
        self.write("vips")?;
        self.vips.remove(vip);
        Ok(())
    }
    fn vips(&self) -> TablesResult<Vec<(VipIdent, VipEntry)>> {
        Ok(self.vips.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn set_marker(&mut self, addr: IpAddr, m: &Marker) -> TablesResult<()> {
        check_vip_id(&self.limits, m.id)?;
        self.write("markers")?;
        self.markers.insert(addr, *m);
        self.vip_writes += 1;
        Ok(())
    }
    fn remove_marker(&mut self, addr: IpAddr) -> TablesResult<()> {
        self.write("markers")?;
        self.markers.remove(&addr);
        Ok(())
    }
    fn markers(&self) -> TablesResult<Vec<(IpAddr, Marker)>> {
        Ok(self.markers.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn set_backend(&mut self, id: u32, b: Option<&BackendEntry>) -> TablesResult<()> {
        check_backend_id(&self.limits, id)?;
        self.write("backends")?;
        self.backends[id as usize] = b.copied();
        self.after_write();
        Ok(())
    }
    fn backends(&self) -> TablesResult<Vec<(u32, BackendEntry)>> {
        Ok(self
            .backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i as u32, b)))
            .collect())
    }
    fn live_half(&self, vip_id: u32) -> TablesResult<u32> {
        check_vip_id(&self.limits, vip_id)?;
        Ok(self.ring_select[vip_id as usize] & 1)
    }
    fn read_ring(&self, vip_id: u32, half: u32) -> TablesResult<Vec<u32>> {
        check_vip_id(&self.limits, vip_id)?;
        let start = self.index(vip_id, half & 1, 0);
        Ok(self.rings[start..start + self.limits.ring_size as usize].to_vec())
    }
    fn write_ring_slots(&mut self, vip_id: u32, half: u32, slots: &Slots) -> TablesResult<usize> {
        check_vip_id(&self.limits, vip_id)?;
        self.write("rings")?;
        for (slot, b) in slots {
            check_slot(&self.limits, *slot)?;
            let i = self.index(vip_id, half & 1, *slot);
            self.rings[i] = *b;
        }
        self.slot_writes += slots.len();
        Ok(slots.len())
    }
    fn set_guard(&mut self, vip_id: u32, g: Option<&GuardEntry>) -> TablesResult<()> {
        check_vip_id(&self.limits, vip_id)?;
        self.write("vip_guard")?;
        match g {
            Some(g) => self.guards.insert(vip_id, g.clone()),
            None => self.guards.remove(&vip_id),
        };
        Ok(())
    }
    fn guard_generation(&self, vip_id: u32) -> TablesResult<Option<u32>> {
        Ok(self.guards.get(&vip_id).map(|g| g.acl_gen))
    }
    fn set_acl(
        &mut self,
        vip_id: u32,
        generation: u32,
        entries: &[(Prefix, AclAction)],
    ) -> TablesResult<()> {
        check_vip_id(&self.limits, vip_id)?;
        self.write("acl")?;
        for (p, a) in entries {
            self.acls.insert((vip_id, generation & 1, *p), *a);
        }
        Ok(())
    }
    fn remove_acl(
        &mut self,
        vip_id: u32,
        generation: u32,
        prefixes: &[Prefix],
    ) -> TablesResult<()> {
        self.write("acl")?;
        for p in prefixes {
            self.acls.remove(&(vip_id, generation & 1, *p));
        }
        Ok(())
    }
    fn acl(&self, vip_id: u32, generation: u32) -> TablesResult<Vec<(Prefix, AclAction)>> {
        Ok(self
            .acls
            .iter()
            .filter(|((v, g, _), _)| *v == vip_id && *g == generation & 1)
            .map(|((_, _, p), a)| (*p, *a))
            .collect())
    }
    fn flip(&mut self, vip_id: u32, half: u32) -> TablesResult<()> {
        check_vip_id(&self.limits, vip_id)?;
        self.write("ring_select")?;
        self.ring_select[vip_id as usize] = half & 1;
        self.flips += 1;
        self.after_write();
        Ok(())
    }
}
