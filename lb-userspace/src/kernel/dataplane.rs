//! The thin kernel adapter: loads the balancer object, sizes, pins and
//! adopts its maps (from [`catalog`]), attaches it, and reads and writes
//! the tables, encoding the core's terms with [`codec`]. It knows map names
//! and layouts, nothing about policy (`crate::core::balancer` decides, and
//! is tested against `MemoryTables` without root).
//!
//! Besides the [`Tables`] the core uses, it offers raw access to the same
//! maps in their own words, for the packet fixtures and the benchmarks,
//! which build worlds the agent never would.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::{Ordering, fence},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        lpm_trie::Key,
    },
    programs::{ProgramError, Xdp, XdpMode},
};
use lb_common::{
    Reason,
    maps::{
        AclKey, Backend, ConnEntry, FloodState, FlowKey, GuardStats, LbConfig, RateKey, RateState,
        TrafficStats, VipFilter, VipGuard, VipKey, VipMeta, VipRecord,
    },
};

use super::{
    DataplaneError, catalog, codec,
    error::{map_err, tables_err},
    objects,
    pins::{self, link_pin, maps_dir, program_pin},
    ring::{RingMemory, slot_index},
};
use crate::core::{
    config::{Limits, VipIdent},
    prefix::Prefix,
    tables::{
        AclAction, BackendEntry, GuardEntry, Marker, Settings, Slots, Tables, TablesResult,
        VipEntry, check_backend_id, check_slot, check_vip_id,
    },
};

/// Name of the balancer program in the object.
pub const PROGRAM: &str = "lb_balancer";

/// The loaded balancer: program and typed handles to every map it uses.
pub struct Dataplane {
    ebpf: Ebpf,
    limits: Limits,
    pin_dir: Option<PathBuf>,
    config: Array<MapData, LbConfig>,
    vips: HashMap<MapData, VipKey, VipMeta>,
    vip_filter: Array<MapData, VipFilter>,
    /// The filter as last written.
    filter: VipFilter,
    vip_index: Array<MapData, VipRecord>,
    ring_select: Array<MapData, u32>,
    rings: RingMemory,
    _rings_map: MapData,
    backends: Array<MapData, Backend>,
    conntrack: HashMap<MapData, FlowKey, ConnEntry>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficStats>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
    vip_guard: Array<MapData, VipGuard>,
    acl: LpmTrie<MapData, AclKey, u32>,
    guard_stats: PerCpuArray<MapData, GuardStats>,
    /// CPUs the per-CPU rate buckets split a rate over.
    cpus: u32,
}

/// Takes a map out of a loaded object as its typed handle.
pub(crate) fn take<M: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    spec: &catalog::MapSpec,
) -> Result<M, DataplaneError> {
    ebpf.take_map(spec.name)
        .ok_or(DataplaneError::MissingMap { name: spec.name })?
        .try_into()
        .map_err(map_err(spec.name))
}

/// The program `name` of a loaded object, as XDP.
pub(crate) fn xdp_program_ref<'a>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<&'a Xdp, DataplaneError> {
    let program_err = |source| DataplaneError::Program { name, source };
    ebpf.program(name)
        .ok_or(program_err(ProgramError::InvalidName { name: name.into() }))?
        .try_into()
        .map_err(program_err)
}

/// The program `name` of a loaded object, as XDP, to load or attach.
pub(crate) fn xdp_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut Xdp, DataplaneError> {
    let program_err = |source| DataplaneError::Program { name, source };
    ebpf.program_mut(name)
        .ok_or(program_err(ProgramError::InvalidName { name: name.into() }))?
        .try_into()
        .map_err(program_err)
}

impl Dataplane {
    /// Loads the embedded balancer object. With `pin_dir`, every stateful
    /// map is pinned under `<pin_dir>/maps`, and maps already pinned there
    /// are adopted (call [`pins::check_pinned`] first) — the connection
    /// table and counters survive the agent.
    pub fn load(limits: Limits, pin_dir: Option<&Path>) -> Result<Self, DataplaneError> {
        Self::load_object(objects::BALANCER, limits, pin_dir)
    }

    /// [`Dataplane::load`] of another build of the balancer (the bench's
    /// variants); `object` must have the same maps.
    pub fn load_object(
        object: &[u8],
        limits: Limits,
        pin_dir: Option<&Path>,
    ) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader.override_global("RING_SIZE", &limits.ring_size, true);
        let per_cpu = limits.conntrack_per_cpu as u32;
        loader.override_global("CONNTRACK_PER_CPU", &per_cpu, true);
        for spec in catalog::BALANCER {
            if let catalog::Entries::Limits(_) = spec.entries {
                loader.map_max_entries(spec.name, spec.entries(&limits));
            }
        }
        if let Some(dir) = pin_dir {
            let maps = maps_dir(dir);
            fs::create_dir_all(&maps).map_err(|source| DataplaneError::Pin {
                what: "create",
                path: maps.clone(),
                source,
            })?;
            for spec in catalog::pinned() {
                loader.map_pin_path(spec.name, maps.join(spec.name));
            }
        }
        let mut ebpf = loader.load(object).map_err(DataplaneError::Load)?;
        let rings_map = match ebpf.take_map(catalog::RINGS.name) {
            Some(Map::Array(data)) => data,
            _ => return Err(DataplaneError::MissingMap { name: "RINGS" }),
        };
        let rings = RingMemory::map(&rings_map, limits.ring_entries())?;
        let mut dp = Self {
            config: take(&mut ebpf, &catalog::CONFIG)?,
            vips: take(&mut ebpf, &catalog::VIPS)?,
            vip_filter: take(&mut ebpf, &catalog::VIP_FILTER)?,
            filter: VipFilter::default(),
            vip_index: take(&mut ebpf, &catalog::VIP_INDEX)?,
            ring_select: take(&mut ebpf, &catalog::RING_SELECT)?,
            rings,
            _rings_map: rings_map,
            backends: take(&mut ebpf, &catalog::BACKENDS)?,
            conntrack: take(&mut ebpf, &catalog::CONNTRACK)?,
            tx_ports: take(&mut ebpf, &catalog::TX_PORTS)?,
            stats: take(&mut ebpf, &catalog::STATS)?,
            vip_stats: take(&mut ebpf, &catalog::VIP_STATS)?,
            backend_stats: take(&mut ebpf, &catalog::BACKEND_STATS)?,
            vip_guard: take(&mut ebpf, &catalog::VIP_GUARD)?,
            acl: take(&mut ebpf, &catalog::ACL)?,
            guard_stats: take(&mut ebpf, &catalog::GUARD_STATS)?,
            cpus: aya::util::nr_cpus().map_or(1, |n| n as u32),
            ebpf,
            limits,
            pin_dir: pin_dir.map(Path::to_path_buf),
        };
        let program_err = |source| DataplaneError::Program {
            name: PROGRAM,
            source,
        };
        dp.rebuild_filter()?;
        dp.rebuild_index()?;
        dp.program_mut()?.load().map_err(program_err)?;
        if let Some(dir) = &dp.pin_dir {
            for name in catalog::RETIRED {
                let _ = fs::remove_file(maps_dir(dir).join(name));
            }
            // Re-pin the program (an upgrade brings a new one) for lbctl.
            let path = program_pin(dir);
            let _ = fs::remove_file(&path);
            dp.program_mut()?
                .pin(&path)
                .map_err(|e| DataplaneError::Pin {
                    what: "pin program",
                    path,
                    source: std::io::Error::other(e),
                })?;
        }
        Ok(dp)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The balancer program (loaded into the kernel by [`Dataplane::load`]).
    pub fn program_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf, PROGRAM)
    }

    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        xdp_program_ref(&self.ebpf, PROGRAM)
    }

    /// Attaches the program to `iface`. With a pin directory the XDP link
    /// is pinned, so it outlives this process, and a link a previous agent
    /// pinned for `iface` gets the new program in place. Returns whether
    /// an existing link was adopted.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<bool, DataplaneError> {
        match self.pin_dir.clone() {
            Some(dir) => {
                pins::attach_pinned(self.program_mut()?, iface, mode, &link_pin(&dir, iface))
            }
            None => {
                self.program_mut()?.attach(iface, mode).map_err(|source| {
                    DataplaneError::Attach {
                        iface: iface.into(),
                        mode,
                        source,
                    }
                })?;
                Ok(false)
            }
        }
    }

    /// Adds an egress interface for XDP_REDIRECT.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| DataplaneError::Map {
                name: "TX_PORTS",
                source: match e {
                    aya::maps::xdp::XdpMapError::MapError(e) => e,
                    other => MapError::InvalidName {
                        name: other.to_string(),
                    },
                },
            })
    }

    pub fn conntrack_entries(&self) -> Result<Vec<(FlowKey, ConnEntry)>, DataplaneError> {
        self.conntrack
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("CONNTRACK"))
    }

    pub fn conntrack_get(&self, flow: &FlowKey) -> Result<Option<ConnEntry>, DataplaneError> {
        match self.conntrack.get(flow, 0) {
            Ok(e) => Ok(Some(e)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("CONNTRACK")(e)),
        }
    }

    /// Empties the connection table (every flow re-steers on its next
    /// packet).
    pub fn conntrack_clear(&mut self) -> Result<(), DataplaneError> {
        let keys: Vec<FlowKey> = self.conntrack.keys().filter_map(Result::ok).collect();
        for k in keys {
            match self.conntrack.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("CONNTRACK")(e)),
            }
        }
        Ok(())
    }

    /// Forgets every CPU's flood-guard window, as if no new flow had been
    /// recorded lately (a test world starts each case from here).
    pub fn reset_flood_guard(&mut self) -> Result<(), DataplaneError> {
        self.zero_per_cpu::<FloodState>(&catalog::FLOOD, 1)
    }

    /// Forgets every CPU's cached next hops (`NEXTHOPS`): the next packet
    /// to each backend asks the kernel FIB again instead of reusing an
    /// answer for up to its lifetime (a test world starts each case here).
    pub fn forget_next_hops(&mut self) -> Result<(), DataplaneError> {
        // The value is the data path's `CachedHop` (48 bytes), which only the
        // program reads: all zero is an entry that has expired.
        self.zero_per_cpu::<[u64; 6]>(&catalog::NEXTHOPS, self.limits.max_backends)
    }

    /// Zeroes slots `0..slots` of a per-CPU array map on every CPU.
    fn zero_per_cpu<T: aya::Pod + Default>(
        &mut self,
        spec: &catalog::MapSpec,
        slots: u32,
    ) -> Result<(), DataplaneError> {
        let name = spec.name;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut array: PerCpuArray<&mut MapData, T> =
            PerCpuArray::try_from(map).map_err(map_err(name))?;
        for id in 0..slots {
            array
                .set(id, per_cpu_zero::<T>(name, self.cpus)?, 0)
                .map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Clears every VIP's guard, every access-list entry, every rate
    /// bucket and VIP budget: as loaded (a test world starts each case here).
    pub fn reset_guards(&mut self) -> Result<(), DataplaneError> {
        for id in 0..self.limits.max_vips {
            self.vip_guard
                .set(id, VipGuard::default(), 0)
                .map_err(map_err("VIP_GUARD"))?;
        }
        let keys: Vec<Key<AclKey>> = self.acl.keys().filter_map(Result::ok).collect();
        for k in keys {
            match self.acl.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("ACL")(e)),
            }
        }
        let name = catalog::RATE.name;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut rate: aya::maps::PerCpuHashMap<&mut MapData, RateKey, RateState> =
            aya::maps::PerCpuHashMap::try_from(map).map_err(map_err(name))?;
        let keys: Vec<RateKey> = rate.keys().filter_map(Result::ok).collect();
        for k in keys {
            match rate.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(name)(e)),
            }
        }
        self.zero_per_cpu::<u64>(&catalog::VIP_BUDGET, self.limits.max_vips)
    }

    /// CPUs a rate is split over (each CPU's buckets get rate / cpus).
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Replaces a VIP's live ring with `ring` (all slots) through the other
    /// half and a flip; returns the number of slots written.
    pub fn replace_ring(&mut self, vip_id: u32, ring: &[u32]) -> Result<usize, DataplaneError> {
        if ring.len() != self.limits.ring_size as usize {
            return Err(DataplaneError::RingSize {
                got: ring.len(),
                want: self.limits.ring_size,
            });
        }
        let next = self.live_half(vip_id)? ^ 1;
        let changes: Vec<(u32, u32)> = ring
            .iter()
            .enumerate()
            .map(|(s, b)| (s as u32, *b))
            .collect();
        let n = self.write_ring_slots(vip_id, next, &changes)?;
        self.flip(vip_id, next)?;
        Ok(n)
    }

    /// The runtime knobs as the program reads them.
    pub fn config(&self) -> Result<LbConfig, DataplaneError> {
        self.config.get(&0, 0).map_err(map_err("CONFIG"))
    }

    pub fn write_config(&mut self, cfg: &LbConfig) -> TablesResult<()> {
        self.config.set(0, cfg, 0).map_err(tables_err("CONFIG"))
    }

    /// A service entry or marker, in the map's words. The address's filter
    /// bit is set first, so the data path never misses the new entry; a
    /// service's `VIP_INDEX` record is cleared before and written after,
    /// so it never disagrees with `VIPS` while the data path reads it.
    pub fn write_vip(&mut self, key: &VipKey, meta: &VipMeta) -> TablesResult<()> {
        check_vip_id(&self.limits, meta.id)?;
        if !self.filter.may_hold(key.family, &key.addr) {
            let mut f = self.filter;
            f.set(key.family, &key.addr);
            self.vip_filter
                .set(0, f, 0)
                .map_err(tables_err("VIP_FILTER"))?;
            self.filter = f;
        }
        let service = is_service(key);
        if service {
            self.clear_record(key)?;
        }
        self.vips.insert(key, meta, 0).map_err(tables_err("VIPS"))?;
        if service {
            self.write_record(key, meta)?;
        }
        Ok(())
    }

    /// Writes `key`'s record over its id's slot, which holds zeroes or
    /// another service's record (the data path then reads zeroes in
    /// between). A record that could not be read safely (see
    /// `VipRecord::new`) is left out: the service's packets take the `VIPS`
    /// lookup.
    fn write_record(&mut self, key: &VipKey, meta: &VipMeta) -> TablesResult<()> {
        let name = catalog::VIP_INDEX.name;
        let old = self.vip_index.get(&meta.id, 0).map_err(tables_err(name))?;
        if old != VipRecord::default() {
            self.vip_index
                .set(meta.id, VipRecord::default(), 0)
                .map_err(tables_err(name))?;
        }
        if let Some(r) = VipRecord::new(*key, *meta) {
            self.vip_index
                .set(meta.id, r, 0)
                .map_err(tables_err(name))?;
        }
        Ok(())
    }

    /// Clears the record of `key`'s service as `VIPS` holds it now, if it
    /// is still that service's.
    fn clear_record(&mut self, key: &VipKey) -> TablesResult<()> {
        let meta = match self.vips.get(key, 0) {
            Ok(m) => m,
            Err(MapError::KeyNotFound) => return Ok(()),
            Err(e) => return Err(tables_err("VIPS")(e)),
        };
        if check_vip_id(&self.limits, meta.id).is_err() {
            return Ok(());
        }
        let name = catalog::VIP_INDEX.name;
        let r = self.vip_index.get(&meta.id, 0).map_err(tables_err(name))?;
        if r.key == *key && r != VipRecord::default() {
            self.vip_index
                .set(meta.id, VipRecord::default(), 0)
                .map_err(tables_err(name))?;
        }
        Ok(())
    }

    /// Writes `VIP_INDEX` from the `VIPS` entries at load (it is not
    /// pinned; they may be).
    fn rebuild_index(&mut self) -> TablesResult<()> {
        for (k, m) in self.vip_keys()? {
            if is_service(&k) && check_vip_id(&self.limits, m.id).is_ok() {
                self.write_record(&k, &m)?;
            }
        }
        Ok(())
    }

    /// Overwrites VIP `id`'s `VIP_INDEX` record with `r` as it is, for the
    /// fixtures (a missing or half-written record).
    pub fn write_vip_record(&mut self, id: u32, r: &VipRecord) -> TablesResult<()> {
        check_vip_id(&self.limits, id)?;
        self.vip_index
            .set(id, *r, 0)
            .map_err(tables_err(catalog::VIP_INDEX.name))
    }

    /// The `VIP_INDEX` record of VIP `id` as the kernel holds it.
    pub fn vip_record(&self, id: u32) -> TablesResult<VipRecord> {
        self.vip_index
            .get(&id, 0)
            .map_err(tables_err(catalog::VIP_INDEX.name))
    }

    /// The VIP address filter as the kernel holds it.
    pub fn vip_filter(&self) -> TablesResult<VipFilter> {
        self.vip_filter.get(&0, 0).map_err(tables_err("VIP_FILTER"))
    }

    /// Rewrites `VIP_FILTER` from the `VIPS` entries (after removals, and
    /// at load: the filter is not pinned, the entries may be).
    fn rebuild_filter(&mut self) -> TablesResult<()> {
        let mut f = VipFilter::default();
        for (k, _) in self.vip_keys()? {
            f.set(k.family, &k.addr);
        }
        // A fresh (unpinned) map starts zeroed, as `self.filter` does.
        if f != self.filter {
            self.vip_filter
                .set(0, f, 0)
                .map_err(tables_err("VIP_FILTER"))?;
            self.filter = f;
        }
        Ok(())
    }

    pub fn backend(&self, id: u32) -> TablesResult<Backend> {
        self.backends.get(&id, 0).map_err(tables_err("BACKENDS"))
    }

    /// A backend slot, in the map's words.
    pub fn write_backend(&mut self, id: u32, b: &Backend) -> TablesResult<()> {
        check_backend_id(&self.limits, id)?;
        self.backends.set(id, b, 0).map_err(tables_err("BACKENDS"))
    }

    fn remove_key(&mut self, key: &VipKey) -> TablesResult<()> {
        if is_service(key) {
            self.clear_record(key)?;
        }
        match self.vips.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(tables_err("VIPS")(e)),
        }
        self.rebuild_filter()
    }

    fn vip_keys(&self) -> TablesResult<Vec<(VipKey, VipMeta)>> {
        self.vips
            .iter()
            .collect::<Result<_, _>>()
            .map_err(tables_err("VIPS"))
    }
}

/// A service's `VIPS` key, not an address marker (protocol 0).
fn is_service(key: &VipKey) -> bool {
    key.proto != 0
}

impl Tables for Dataplane {
    fn limits(&self) -> Limits {
        self.limits
    }

    fn set_settings(&mut self, s: &Settings) -> TablesResult<()> {
        self.write_config(&codec::lb_config(s))
    }

    fn set_vip(&mut self, vip: &VipIdent, e: &VipEntry) -> TablesResult<()> {
        self.write_vip(&codec::vip_key(vip), &codec::vip_meta(e))
    }

    fn remove_vip(&mut self, vip: &VipIdent) -> TablesResult<()> {
        self.remove_key(&codec::vip_key(vip))
    }

    fn vips(&self) -> TablesResult<Vec<(VipIdent, VipEntry)>> {
        Ok(self
            .vip_keys()?
            .iter()
            .filter_map(|(k, m)| Some((codec::vip_ident(k)?, codec::vip_entry(m)?)))
            .collect())
    }

    fn set_marker(&mut self, addr: IpAddr, m: &Marker) -> TablesResult<()> {
        self.write_vip(&codec::marker_key(addr), &codec::marker_meta(m))
    }

    fn remove_marker(&mut self, addr: IpAddr) -> TablesResult<()> {
        self.remove_key(&codec::marker_key(addr))
    }

    fn markers(&self) -> TablesResult<Vec<(IpAddr, Marker)>> {
        Ok(self
            .vip_keys()?
            .iter()
            .filter(|(k, _)| codec::is_marker(k))
            .filter_map(|(k, m)| Some((codec::words_addr(k.addr, k.family)?, codec::marker(m))))
            .collect())
    }

    fn set_backend(&mut self, id: u32, b: Option<&BackendEntry>) -> TablesResult<()> {
        self.write_backend(id, &codec::backend_value(b))
    }

    fn backends(&self) -> TablesResult<Vec<(u32, BackendEntry)>> {
        let mut out = vec![];
        for (id, b) in self.backends.iter().enumerate() {
            if let Some(e) = codec::backend_entry(&b.map_err(tables_err("BACKENDS"))?) {
                out.push((id as u32, e));
            }
        }
        Ok(out)
    }

    fn live_half(&self, vip_id: u32) -> TablesResult<u32> {
        check_vip_id(&self.limits, vip_id)?;
        Ok(self
            .ring_select
            .get(&vip_id, 0)
            .map_err(tables_err("RING_SELECT"))?
            & 1)
    }

    fn read_ring(&self, vip_id: u32, half: u32) -> TablesResult<Vec<u32>> {
        check_vip_id(&self.limits, vip_id)?;
        Ok(self.rings.read(self.limits.ring_size, vip_id, half))
    }

    fn write_ring_slots(&mut self, vip_id: u32, half: u32, slots: &Slots) -> TablesResult<usize> {
        check_vip_id(&self.limits, vip_id)?;
        let m = self.limits.ring_size;
        for (slot, backend) in slots {
            check_slot(&self.limits, *slot)?;
            self.rings
                .slot(slot_index(m, vip_id, half, *slot))
                .store(*backend, Ordering::Relaxed);
        }
        Ok(slots.len())
    }

    fn flip(&mut self, vip_id: u32, half: u32) -> TablesResult<()> {
        check_vip_id(&self.limits, vip_id)?;
        // Every slot store must be visible before a packet can select the
        // half (the syscall is a barrier too; this says so in the code).
        fence(Ordering::SeqCst);
        self.ring_select
            .set(vip_id, half & 1, 0)
            .map_err(tables_err("RING_SELECT"))
    }

    fn set_guard(&mut self, vip_id: u32, g: Option<&GuardEntry>) -> TablesResult<()> {
        check_vip_id(&self.limits, vip_id)?;
        let v = g.map_or(VipGuard::default(), |g| codec::vip_guard(g, self.cpus));
        self.vip_guard
            .set(vip_id, v, 0)
            .map_err(tables_err("VIP_GUARD"))
    }

    fn guard_generation(&self, vip_id: u32) -> TablesResult<Option<u32>> {
        check_vip_id(&self.limits, vip_id)?;
        let g = self
            .vip_guard
            .get(&vip_id, 0)
            .map_err(tables_err("VIP_GUARD"))?;
        Ok((g != VipGuard::default()).then_some(g.acl_gen))
    }

    fn set_acl(
        &mut self,
        vip_id: u32,
        generation: u32,
        entries: &[(Prefix, AclAction)],
    ) -> TablesResult<()> {
        for (p, a) in entries {
            let (len, data) = codec::acl_key(vip_id, generation, *p);
            self.acl
                .insert(&Key::new(len, data), codec::acl_value(*a), 0)
                .map_err(tables_err("ACL"))?;
        }
        Ok(())
    }

    fn remove_acl(
        &mut self,
        vip_id: u32,
        generation: u32,
        prefixes: &[Prefix],
    ) -> TablesResult<()> {
        for p in prefixes {
            let (len, data) = codec::acl_key(vip_id, generation, *p);
            match self.acl.remove(&Key::new(len, data)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(tables_err("ACL")(e)),
            }
        }
        Ok(())
    }

    fn acl(&self, vip_id: u32, generation: u32) -> TablesResult<Vec<(Prefix, AclAction)>> {
        let mut out = vec![];
        for kv in self.acl.iter() {
            let (k, v) = kv.map_err(tables_err("ACL"))?;
            let data = k.data();
            if let (Some((id, g, p)), Some(a)) = (
                codec::acl_entry(k.prefix_len(), &data),
                codec::acl_action(v),
            ) && id == vip_id
                && g == generation & 1
            {
                out.push((p, a));
            }
        }
        Ok(out)
    }

    fn guard_drops(&self, vip_id: u32) -> TablesResult<Vec<(Reason, u64)>> {
        let per_cpu = self
            .guard_stats
            .get(&vip_id, 0)
            .map_err(tables_err("GUARD_STATS"))?;
        Ok(guard_totals(&per_cpu))
    }

    fn reason_counters(&self) -> TablesResult<Vec<(Reason, u64)>> {
        reason_totals(&self.stats).map_err(tables_err("STATS"))
    }

    fn vip_traffic(&self, vip_id: u32) -> TablesResult<TrafficStats> {
        Ok(sum_traffic(
            self.vip_stats
                .get(&vip_id, 0)
                .map_err(tables_err("VIP_STATS"))?,
        ))
    }

    fn backend_traffic(&self, backend_id: u32) -> TablesResult<TrafficStats> {
        Ok(sum_traffic(
            self.backend_stats
                .get(&backend_id, 0)
                .map_err(tables_err("BACKEND_STATS"))?,
        ))
    }
}

/// A zero value for every one of `cpus` CPUs, for a per-CPU map `name`.
fn per_cpu_zero<T: aya::Pod + Default>(
    name: &'static str,
    cpus: u32,
) -> Result<PerCpuValues<T>, DataplaneError> {
    PerCpuValues::try_from(vec![T::default(); cpus as usize]).map_err(|e| DataplaneError::Map {
        name,
        source: MapError::SyscallError(aya::sys::SyscallError {
            call: "per-cpu values",
            io_error: e,
        }),
    })
}

/// A program's outcome counters (a per-CPU `STATS` array indexed by
/// `Reason`, in the balancer and the decap program alike), summed over CPUs.
pub(crate) fn reason_totals(
    stats: &PerCpuArray<MapData, u64>,
) -> Result<Vec<(Reason, u64)>, MapError> {
    Reason::ALL
        .iter()
        .map(|r| Ok((*r, stats.get(&(*r as u32), 0)?.iter().sum())))
        .collect()
}

/// A VIP's per-CPU `GuardStats` slot summed over CPUs, by reason.
pub(crate) fn guard_totals(values: &PerCpuValues<GuardStats>) -> Vec<(Reason, u64)> {
    let first = Reason::DropMartianSource as u32;
    (0..lb_common::maps::GUARD_REASONS)
        .filter_map(|i| {
            let r = Reason::from_index(first + i as u32)?;
            Some((r, values.iter().map(|s| s.drops[i]).sum()))
        })
        .collect()
}

/// A per-CPU `TrafficStats` slot summed over CPUs.
pub(crate) fn sum_traffic(values: PerCpuValues<TrafficStats>) -> TrafficStats {
    values
        .iter()
        .fold(TrafficStats::default(), |a, v| TrafficStats {
            packets: a.packets + v.packets,
            bytes: a.bytes + v.bytes,
            new_flows: a.new_flows + v.new_flows,
        })
}
