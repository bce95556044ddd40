//! The kernel tables as the agent's core sees them. `Dataplane` implements
//! this against the real maps; [`MemoryTables`] in memory, so the balancer
//! facade (allocation, ring updates, restart adoption) is tested without
//! root, as Katran's testing mode does.

use std::collections::BTreeMap;

use lb_common::{
    Reason,
    limits::NO_BACKEND,
    maps::{BACKEND_F_VALID, Backend, LbConfig, TrafficStats, VipKey, VipMeta},
};

use crate::dataplane::{DataplaneError, Limits};

pub trait Tables {
    fn limits(&self) -> Limits;
    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError>;
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError>;
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError>;
    fn vips(&self) -> Result<Vec<(VipKey, VipMeta)>, DataplaneError>;
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError>;
    /// Valid backend slots.
    fn backends(&self) -> Result<Vec<(u32, Backend)>, DataplaneError>;
    fn live_half(&self, vip_id: u32) -> Result<u32, DataplaneError>;
    fn read_ring(&self, vip_id: u32, half: u32) -> Result<Vec<u32>, DataplaneError>;
    fn write_ring_slots(
        &mut self,
        vip_id: u32,
        half: u32,
        changes: &[(u32, u32)],
    ) -> Result<usize, DataplaneError>;
    fn flip(&mut self, vip_id: u32, half: u32) -> Result<(), DataplaneError>;

    /// Data-path outcome counters (summed over CPUs); none in memory.
    fn reason_counters(&self) -> Result<Vec<(Reason, u64)>, DataplaneError> {
        Ok(Reason::ALL.iter().map(|r| (*r, 0)).collect())
    }
    fn vip_traffic(&self, _vip_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(TrafficStats::default())
    }
    fn backend_traffic(&self, _backend_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(TrafficStats::default())
    }
}

/// Tables in memory, with the same semantics (fixed sizes, zeroed arrays).
#[derive(Clone, Debug)]
pub struct MemoryTables {
    pub limits: Limits,
    pub config: LbConfig,
    pub vips: BTreeMap<VipKey, VipMeta>,
    pub backends: Vec<Backend>,
    pub ring_select: Vec<u32>,
    pub rings: Vec<u32>,
    /// Slots written so far (to check that only changes are written).
    pub slot_writes: usize,
    pub flips: usize,
    /// `VIPS` entries written (services and address markers).
    pub vip_writes: usize,
    /// When set, every write checks what a packet arriving right then
    /// would see, and counts live-table slots of published VIPs that point
    /// at a slot that is not a valid backend of that VIP.
    pub audit: bool,
    pub dangling_seen: usize,
}

impl MemoryTables {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            config: LbConfig::default(),
            vips: BTreeMap::new(),
            backends: vec![Backend::default(); limits.max_backends as usize],
            ring_select: vec![0; limits.max_vips as usize],
            // A fresh kernel array is zeroed: every slot says backend 0.
            rings: vec![0; limits.ring_entries() as usize],
            slot_writes: 0,
            flips: 0,
            vip_writes: 0,
            audit: false,
            dangling_seen: 0,
        }
    }

    /// Live-table slots of published VIPs that a packet could not use.
    pub fn dangling_slots(&self) -> usize {
        self.vips
            .values()
            .filter(|m| m.flags & lb_common::maps::VIP_F_ADDR_MARKER == 0)
            .map(|m| {
                self.live_ring(m.id)
                    .iter()
                    .filter(|&&id| {
                        id != NO_BACKEND
                            && self
                                .backends
                                .get(id as usize)
                                .is_none_or(|b| b.flags & BACKEND_F_VALID == 0 || b.vip_id != m.id)
                    })
                    .count()
            })
            .sum()
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
    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        self.config = *cfg;
        Ok(())
    }
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        if meta.id >= self.limits.max_vips {
            return Err(DataplaneError::VipIdOutOfRange {
                id: meta.id,
                max: self.limits.max_vips,
            });
        }
        self.vips.insert(*key, *meta);
        self.vip_writes += 1;
        self.after_write();
        Ok(())
    }
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.vips.remove(key);
        Ok(())
    }
    fn vips(&self) -> Result<Vec<(VipKey, VipMeta)>, DataplaneError> {
        Ok(self.vips.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        let max = self.limits.max_backends;
        *self
            .backends
            .get_mut(id as usize)
            .ok_or(DataplaneError::BackendIdOutOfRange { id, max })? = *backend;
        self.after_write();
        Ok(())
    }
    fn backends(&self) -> Result<Vec<(u32, Backend)>, DataplaneError> {
        Ok(self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.flags & BACKEND_F_VALID != 0)
            .map(|(i, b)| (i as u32, *b))
            .collect())
    }
    fn live_half(&self, vip_id: u32) -> Result<u32, DataplaneError> {
        Ok(self.ring_select[vip_id as usize] & 1)
    }
    fn read_ring(&self, vip_id: u32, half: u32) -> Result<Vec<u32>, DataplaneError> {
        let start = self.index(vip_id, half, 0);
        Ok(self.rings[start..start + self.limits.ring_size as usize].to_vec())
    }
    fn write_ring_slots(
        &mut self,
        vip_id: u32,
        half: u32,
        changes: &[(u32, u32)],
    ) -> Result<usize, DataplaneError> {
        for (slot, b) in changes {
            let i = self.index(vip_id, half, *slot);
            self.rings[i] = *b;
        }
        self.slot_writes += changes.len();
        Ok(changes.len())
    }
    fn flip(&mut self, vip_id: u32, half: u32) -> Result<(), DataplaneError> {
        self.ring_select[vip_id as usize] = half & 1;
        self.flips += 1;
        self.after_write();
        Ok(())
    }
}
