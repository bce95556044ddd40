//! The facade the agent drives (Katran's `KatranLb`): VIPs and backends in,
//! kernel tables out. It allocates VIP and backend ids, asks the policy for
//! weights, builds Maglev tables, writes only the slots that changed into
//! the inactive half and flips, and adopts the tables a previous agent left
//! pinned so a restart changes nothing for established flows.
//!
//! Generic over [`Tables`], so all of it runs in unit tests without root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Instant,
};

use lb_common::{
    limits::{MAP_LAYOUT_VERSION, NO_BACKEND},
    maps::*,
};
use serde::Serialize;

use crate::{
    config::{AdminState, Config, FlowsOnDown, Protocol, Vip},
    dataplane::DataplaneError,
    decap::addr_words,
    events::EventLog,
    maglev,
    policy::{self, Decision, EventKind, PolicyState},
    sources::FailSelector,
    tables::Tables,
};

/// A VIP's identity in the kernel: (address, port, protocol).
pub type VipIdent = (IpAddr, u16, Protocol);

pub fn vip_ident(v: &Vip) -> VipIdent {
    (v.address, v.port, v.protocol)
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Kernel(#[from] DataplaneError),
    #[error("{0}")]
    Rejected(String),
}

/// Health of one backend as the balancer knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub up: bool,
    pub reason: String,
}

struct VipRuntime {
    id: u32,
    cfg: Vip,
    backend_ids: BTreeMap<IpAddr, u32>,
    health: BTreeMap<IpAddr, Health>,
    policy: PolicyState,
    /// Shadow of the live half.
    live: Vec<u32>,
    /// The inputs `live` was built from; `None` for a table adopted from
    /// the kernel. Equal inputs build an equal table, so a reconcile that
    /// changes nothing for this VIP builds nothing (a Maglev build is
    /// milliseconds, and a change anywhere reconciles every VIP).
    live_from: Option<TableInputs>,
    /// Shadow of the other half; `None` when unknown (after adoption).
    spare: Option<Vec<u32>>,
    digest: String,
    decision: Option<Decision>,
    drain_started: BTreeMap<IpAddr, Instant>,
    released: BTreeSet<IpAddr>,
    written_meta: Option<VipMeta>,
}

/// What a VIP's Maglev table is built from: (address, weight, backend id)
/// per backend, and the hash seed.
type TableInputs = (Vec<(IpAddr, u32, u32)>, u32);

impl VipRuntime {
    /// A VIP's runtime over `live`, its live table as read back from the
    /// tables (zeroed for a VIP id never used).
    fn new(id: u32, cfg: Vip, live: Vec<u32>, written_meta: Option<VipMeta>) -> Self {
        Self {
            id,
            cfg,
            backend_ids: BTreeMap::new(),
            health: BTreeMap::new(),
            policy: PolicyState::default(),
            digest: maglev::digest(&live),
            live,
            live_from: None,
            spare: None,
            decision: None,
            drain_started: BTreeMap::new(),
            released: BTreeSet::new(),
            written_meta,
        }
    }

    /// Gives backend `addr` the slot `id`; its health starts as the VIP's
    /// check says.
    fn add_backend(&mut self, addr: IpAddr, id: u32) {
        self.backend_ids.insert(addr, id);
        self.health.insert(
            addr,
            Health {
                up: self.cfg.health_check.initially_up,
                reason: "no check result yet".into(),
            },
        );
    }
}

/// Allocator of dense ids. Allocation moves a cursor forward, so a freed
/// id is reused as late as possible: connection-table entries that still
/// name a released backend then meet an invalid slot (and are re-steered)
/// rather than a new backend.
#[derive(Debug)]
struct IdPool {
    free: BTreeSet<u32>,
    cursor: u32,
}

impl IdPool {
    fn new(size: u32) -> Self {
        Self {
            free: (0..size).collect(),
            cursor: 0,
        }
    }
    fn take(&mut self, id: u32) -> bool {
        self.cursor = self.cursor.max(id + 1);
        self.free.remove(&id)
    }
    fn alloc(&mut self) -> Option<u32> {
        let id = self
            .free
            .range(self.cursor..)
            .next()
            .or_else(|| self.free.iter().next())
            .copied()?;
        self.free.remove(&id);
        self.cursor = id + 1;
        Some(id)
    }
    fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

/// A fresh backend id; when none is free, one of the ids leaving in the same
/// change (its old flows may then briefly reach the new backend).
/// `sources::check_merged` has already bounded the total by the map size.
fn alloc_backend_id(pool: &mut IdPool, retiring: &mut Vec<u32>) -> Result<u32, ApplyError> {
    pool.alloc()
        .or_else(|| retiring.pop())
        .ok_or_else(|| ApplyError::Rejected("no free backend id (limits.max_backends)".into()))
}

/// Counters of the balancer's own work (for metrics).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct WorkStats {
    pub table_updates: u64,
    pub slots_written: u64,
    pub backend_writes: u64,
}

pub struct Balancer<T: Tables> {
    tables: T,
    config: Config,
    vips: BTreeMap<VipIdent, VipRuntime>,
    vip_ids: IdPool,
    backend_ids: IdPool,
    /// Backend slots whose value we last wrote.
    written_backends: BTreeMap<u32, Backend>,
    /// Address markers as last written (or found in the tables).
    markers: BTreeMap<IpAddr, VipMeta>,
    /// A failover drill: backends it matches count as failed.
    drill: Option<FailSelector>,
    pub events: EventLog,
    pub work: WorkStats,
}

fn vip_key(v: &VipIdent) -> VipKey {
    let (addr, family) = addr_words(v.0);
    VipKey {
        addr,
        port: v.1.to_be(),
        proto: v.2.number(),
        family,
    }
}

fn marker_key(a: IpAddr) -> VipKey {
    let (addr, family) = addr_words(a);
    VipKey {
        addr,
        port: 0,
        proto: 0,
        family,
    }
}

fn ident_of(key: &VipKey) -> Option<VipIdent> {
    let addr = words_addr(key.addr, key.family)?;
    let proto = match key.proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    Some((addr, u16::from_be(key.port), proto))
}

/// The address in network-order words, back to an `IpAddr`.
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

/// The runtime knobs of `CONFIG` from the configuration.
pub fn lb_config(c: &Config) -> LbConfig {
    let d = &c.dataplane;
    let mut flags = 0;
    if d.gateway_mac.is_some() {
        flags |= CFG_F_GW_MAC;
    }
    if c.vips.iter().all(|v| v.port != 0) {
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

impl<T: Tables> Balancer<T> {
    /// Builds the balancer over `tables`, adopting what they already hold:
    /// VIPs and backends keep their ids (the connection table refers to
    /// backend ids), and the live rings are read back, so an agent restart
    /// with the same configuration writes nothing a packet would notice.
    pub fn new(tables: T, config: Config, now: Instant) -> Result<Self, ApplyError> {
        let limits = tables.limits();
        let mut b = Self {
            vip_ids: IdPool::new(limits.max_vips),
            backend_ids: IdPool::new(limits.max_backends),
            tables,
            config: config.clone(),
            vips: BTreeMap::new(),
            written_backends: BTreeMap::new(),
            markers: BTreeMap::new(),
            drill: None,
            events: EventLog::default(),
            work: WorkStats::default(),
        };
        // What a previous agent left.
        let mut old_vips: BTreeMap<VipIdent, VipMeta> = BTreeMap::new();
        for (key, meta) in b.tables.vips()? {
            if key.proto == 0 {
                if let Some(a) = words_addr(key.addr, key.family) {
                    b.markers.insert(a, meta);
                }
            } else if let Some(ident) = ident_of(&key) {
                old_vips.insert(ident, meta);
            }
        }
        let mut old_backends: BTreeMap<(u32, IpAddr), u32> = BTreeMap::new();
        for (id, be) in b.tables.backends()? {
            if let Some(a) = words_addr(be.addr, be.family) {
                old_backends.insert((be.vip_id, a), id);
                b.written_backends.insert(id, be);
            }
        }
        // Claim the ids of VIPs and backends that stay, before allocating.
        let wanted: BTreeSet<VipIdent> = config.vips.iter().map(vip_ident).collect();
        for (ident, meta) in &old_vips {
            if wanted.contains(ident) {
                b.vip_ids.take(meta.id);
            }
        }
        let adopted: Vec<(VipIdent, u32)> = old_vips
            .iter()
            .filter(|(i, _)| wanted.contains(i))
            .map(|(i, m)| (*i, m.id))
            .collect();
        for (ident, vip_id) in &adopted {
            let cfg = config
                .vips
                .iter()
                .find(|v| vip_ident(v) == *ident)
                .expect("wanted");
            for be in &cfg.backends {
                if let Some(id) = old_backends.get(&(*vip_id, be.address)) {
                    b.backend_ids.take(*id);
                }
            }
        }
        // Forget what is no longer configured.
        for (ident, meta) in &old_vips {
            if !wanted.contains(ident) {
                b.tables.remove_vip(&vip_key(ident))?;
                b.events.record(
                    EventKind::ConfigApplied,
                    None,
                    None,
                    format!(
                        "removed stale VIP {}:{} from the pinned state",
                        ident.0, ident.1
                    ),
                );
                let _ = meta;
            }
        }
        // Backends no longer configured: cleared once the new tables no
        // longer point at them, as in `apply`.
        let mut retiring: Vec<u32> = vec![];
        for ((vip_id, addr), id) in &old_backends {
            let keep = adopted.iter().any(|(ident, vid)| {
                vid == vip_id
                    && config.vips.iter().any(|v| {
                        vip_ident(v) == *ident && v.backends.iter().any(|be| be.address == *addr)
                    })
            });
            if !keep {
                b.backend_ids.take(*id);
                retiring.push(*id);
            }
        }
        // Runtime state per configured VIP.
        for v in &config.vips {
            let ident = vip_ident(v);
            let id = match adopted.iter().find(|(i, _)| *i == ident) {
                Some((_, id)) => *id,
                None => b.vip_ids.alloc().ok_or_else(|| {
                    ApplyError::Rejected("no free VIP id (limits.max_vips)".into())
                })?,
            };
            let half = b.tables.live_half(id)?;
            let live = b.tables.read_ring(id, half)?;
            let mut rt = VipRuntime::new(id, v.clone(), live, old_vips.get(&ident).copied());
            for be in &v.backends {
                let bid = match old_backends.get(&(id, be.address)) {
                    Some(bid) if adopted.iter().any(|(_, vid)| *vid == id) => *bid,
                    _ => alloc_backend_id(&mut b.backend_ids, &mut retiring)?,
                };
                rt.add_backend(be.address, bid);
            }
            b.vips.insert(ident, rt);
        }
        b.tables.set_config(&lb_config(&config))?;
        let result = b.reconcile(now);
        for id in retiring {
            b.release_backend(id)?;
        }
        result?;
        Ok(b)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tables(&self) -> &T {
        &self.tables
    }

    pub fn tables_mut(&mut self) -> &mut T {
        &mut self.tables
    }

    /// Applies a new, already validated configuration. Limits and the pin
    /// path cannot change without a restart (the maps are sized by them).
    pub fn apply(&mut self, config: Config, now: Instant) -> Result<(), ApplyError> {
        if config.limits != self.config.limits {
            return Err(ApplyError::Rejected(
                "limits changed: map sizes are fixed while running; restart lbd with --reset-state to resize (this resets the connection table)".into(),
            ));
        }
        if config.pin_path != self.config.pin_path {
            return Err(ApplyError::Rejected(
                "pin_path changed: restart lbd to move the pinned state".into(),
            ));
        }
        let wanted: BTreeMap<VipIdent, &Vip> =
            config.vips.iter().map(|v| (vip_ident(v), v)).collect();
        // Removals first, so their ids can be reused by additions.
        let gone: Vec<VipIdent> = self
            .vips
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for ident in gone {
            let rt = self.vips.remove(&ident).expect("present");
            self.tables.remove_vip(&vip_key(&ident))?;
            for id in rt.backend_ids.values() {
                self.release_backend(*id)?;
            }
            self.vip_ids.release(rt.id);
            self.events.record(
                EventKind::ConfigApplied,
                Some(&rt.cfg.name),
                None,
                "VIP removed",
            );
        }
        // Backends leaving a VIP keep their slots until the new table no
        // longer points at them; only then are the slots cleared (their flows
        // re-steer on the next packet) and the ids freed.
        let mut retiring: Vec<u32> = vec![];
        for (ident, v) in &wanted {
            match self.vips.get_mut(ident) {
                Some(rt) => {
                    let keep: BTreeSet<IpAddr> = v.backends.iter().map(|b| b.address).collect();
                    let leaving: Vec<(IpAddr, u32)> = rt
                        .backend_ids
                        .iter()
                        .filter(|(a, _)| !keep.contains(a))
                        .map(|(a, id)| (*a, *id))
                        .collect();
                    for (addr, id) in leaving {
                        rt.backend_ids.remove(&addr);
                        rt.health.remove(&addr);
                        rt.drain_started.remove(&addr);
                        rt.released.remove(&addr);
                        retiring.push(id);
                    }
                    rt.cfg = (*v).clone();
                    for be in &v.backends {
                        if !rt.backend_ids.contains_key(&be.address) {
                            let id = alloc_backend_id(&mut self.backend_ids, &mut retiring)?;
                            rt.add_backend(be.address, id);
                        }
                    }
                }
                None => {
                    let id = self.vip_ids.alloc().ok_or_else(|| {
                        ApplyError::Rejected("no free VIP id (limits.max_vips)".into())
                    })?;
                    let half = self.tables.live_half(id)?;
                    let live = self.tables.read_ring(id, half)?;
                    let mut rt = VipRuntime::new(id, (*v).clone(), live, None);
                    for be in &v.backends {
                        let bid = alloc_backend_id(&mut self.backend_ids, &mut retiring)?;
                        rt.add_backend(be.address, bid);
                    }
                    self.events
                        .record(EventKind::ConfigApplied, Some(&v.name), None, "VIP added");
                    self.vips.insert(*ident, rt);
                }
            }
        }
        if lb_config(&config) != lb_config(&self.config) {
            self.tables.set_config(&lb_config(&config))?;
        }
        self.config = config;
        let result = self.reconcile(now);
        for id in retiring {
            self.release_backend(id)?;
        }
        result
    }

    fn release_backend(&mut self, id: u32) -> Result<(), ApplyError> {
        self.tables.set_backend(id, &Backend::default())?;
        self.written_backends.remove(&id);
        self.backend_ids.release(id);
        Ok(())
    }

    /// Records a health verdict; returns whether it changed anything.
    pub fn set_health(&mut self, vip: &VipIdent, backend: IpAddr, up: bool, reason: &str) -> bool {
        let Some(rt) = self.vips.get_mut(vip) else {
            return false;
        };
        let Some(h) = rt.health.get_mut(&backend) else {
            return false;
        };
        if h.up == up {
            h.reason = reason.to_string();
            return false;
        }
        *h = Health {
            up,
            reason: reason.to_string(),
        };
        let kind = if up {
            EventKind::BackendUp
        } else {
            EventKind::BackendDown
        };
        self.events
            .record(kind, Some(&rt.cfg.name), Some(&backend.to_string()), reason);
        true
    }

    /// Recomputes every VIP's weights and writes what changed.
    pub fn reconcile(&mut self, now: Instant) -> Result<(), ApplyError> {
        let idents: Vec<VipIdent> = self.vips.keys().copied().collect();
        for ident in idents {
            self.reconcile_vip(&ident, now)?;
        }
        self.sync_markers()?;
        Ok(())
    }

    /// One marker per VIP address (the id of its first VIP; ICMP echo if
    /// any of its VIPs answers pings), written only when it changed: this
    /// runs on every reconcile, the periodic tick included.
    fn sync_markers(&mut self) -> Result<(), ApplyError> {
        let mut wanted: BTreeMap<IpAddr, VipMeta> = BTreeMap::new();
        for rt in self.vips.values() {
            let meta = wanted.entry(rt.cfg.address).or_insert(VipMeta {
                id: rt.id,
                flags: VIP_F_ADDR_MARKER,
                hash_mode: 0,
                _pad: 0,
            });
            if rt.cfg.icmp_echo {
                meta.flags |= VIP_F_ICMP_ECHO;
            }
        }
        for (addr, meta) in &wanted {
            if self.markers.get(addr) != Some(meta) {
                self.tables.set_vip(&marker_key(*addr), meta)?;
            }
        }
        for addr in self.markers.keys().filter(|a| !wanted.contains_key(a)) {
            self.tables.remove_vip(&marker_key(*addr))?;
        }
        self.markers = wanted;
        Ok(())
    }

    fn reconcile_vip(&mut self, ident: &VipIdent, now: Instant) -> Result<(), ApplyError> {
        let node = self.config.node.clone();
        let seed = self.config.dataplane.hash_seed;
        let m = self.tables.limits().ring_size;
        let rt = self.vips.get_mut(ident).expect("known VIP");
        // A drill makes the backends it selects count as failed.
        let drill = &self.drill;
        let healthy: Vec<bool> = rt
            .cfg
            .backends
            .iter()
            .map(|b| {
                rt.health.get(&b.address).map(|h| h.up).unwrap_or(true)
                    && !drill
                        .as_ref()
                        .is_some_and(|d| d.matches(b.address, &b.labels))
            })
            .collect();
        let mut pevents = vec![];
        let decision = policy::decide(&rt.cfg, &node, &healthy, &mut rt.policy, now, &mut pevents);
        for e in pevents {
            self.events
                .record(e.kind, Some(&rt.cfg.name), None, e.reason);
        }
        // Draining: new flows stop at once (weight 0); after the timeout the
        // slot is released and the data path re-steers the remaining flows.
        for be in &rt.cfg.backends {
            if be.state == AdminState::Draining {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    rt.drain_started.entry(be.address)
                {
                    slot.insert(now);
                    self.events.record(
                        EventKind::DrainStart,
                        Some(&rt.cfg.name),
                        Some(&be.address.to_string()),
                        format!(
                            "no new flows; established ones may stay {:?}",
                            rt.cfg.policy.drain_timeout
                        ),
                    );
                }
                let started = rt.drain_started[&be.address];
                if !rt.released.contains(&be.address)
                    && policy::drain_expired(started, now, rt.cfg.policy.drain_timeout)
                {
                    rt.released.insert(be.address);
                    self.events.record(
                        EventKind::DrainTimeout,
                        Some(&rt.cfg.name),
                        Some(&be.address.to_string()),
                        "drain timeout: remaining flows move to other backends",
                    );
                }
            } else {
                rt.drain_started.remove(&be.address);
                rt.released.remove(&be.address);
            }
        }

        // Backend slots before the table that points at them.
        for (i, be) in rt.cfg.backends.iter().enumerate() {
            let id = rt.backend_ids[&be.address];
            let (addr, family) = addr_words(be.address);
            let value = if rt.released.contains(&be.address) {
                Backend::default()
            } else {
                let mut flags = BACKEND_F_VALID;
                if decision.down[i] {
                    flags |= BACKEND_F_DOWN;
                }
                if be.mac.is_some() {
                    flags |= BACKEND_F_HAS_MAC;
                }
                Backend {
                    addr,
                    family,
                    fwd_mode: be.forwarding.unwrap_or(rt.cfg.forwarding).code(),
                    flags,
                    _pad0: 0,
                    gue_port: be.gue_port.unwrap_or(0).to_be(),
                    mac: be.mac.unwrap_or_default(),
                    vip_id: rt.id,
                }
            };
            if self.written_backends.get(&id) != Some(&value) {
                self.tables.set_backend(id, &value)?;
                self.work.backend_writes += 1;
                if value.flags & BACKEND_F_VALID != 0 {
                    self.written_backends.insert(id, value);
                } else {
                    self.written_backends.remove(&id);
                }
            }
        }

        // The table: (address, weight, backend id) per backend, and the seed.
        let inputs: TableInputs = (
            rt.cfg
                .backends
                .iter()
                .zip(&decision.weights)
                .map(|(be, w)| (be.address, *w, rt.backend_ids[&be.address]))
                .collect(),
            seed,
        );
        if rt.live_from.as_ref() != Some(&inputs) {
            let entries: Vec<maglev::Entry> = inputs
                .0
                .iter()
                .map(|&(address, weight, id)| maglev::Entry {
                    key: address.to_string(),
                    weight,
                    id,
                })
                .collect();
            let table = maglev::build(&entries, m, seed);
            if table != rt.live {
                let half = self.tables.live_half(rt.id)? ^ 1;
                let changes = match &rt.spare {
                    Some(spare) => maglev::changed_slots(spare, &table),
                    None => table
                        .iter()
                        .enumerate()
                        .map(|(s, b)| (s as u32, *b))
                        .collect(),
                };
                let n = self.tables.write_ring_slots(rt.id, half, &changes)?;
                self.tables.flip(rt.id, half)?;
                self.work.table_updates += 1;
                self.work.slots_written += n as u64;
                rt.spare = Some(std::mem::replace(&mut rt.live, table));
                rt.digest = maglev::digest(&rt.live);
            }
            rt.live_from = Some(inputs);
        }

        // The VIP entry last: by now its table and backends are in place.
        let mut flags = 0;
        if rt.cfg.flows_on_backend_down == FlowsOnDown::Move {
            flags |= VIP_F_MOVE_FLOWS_ON_DOWN;
        }
        let meta = VipMeta {
            id: rt.id,
            flags,
            hash_mode: rt.cfg.hash.code(),
            _pad: 0,
        };
        if rt.written_meta != Some(meta) {
            self.tables.set_vip(&vip_key(ident), &meta)?;
            rt.written_meta = Some(meta);
        }
        rt.decision = Some(decision);
        Ok(())
    }

    /// Starts (Some) or ends (None) a failover drill and applies it.
    pub fn set_drill(
        &mut self,
        drill: Option<FailSelector>,
        now: Instant,
    ) -> Result<(), ApplyError> {
        self.drill = drill;
        self.reconcile(now)
    }

    pub fn drill(&self) -> Option<&FailSelector> {
        self.drill.as_ref()
    }

    /// What each VIP's traffic split would become if `fail` failed, without
    /// changing anything.
    pub fn simulate(&self, fail: &FailSelector, now: Instant) -> Vec<DrillPreview> {
        let node = &self.config.node;
        self.vips
            .values()
            .map(|rt| {
                let healthy = |extra: Option<&FailSelector>| -> Vec<bool> {
                    rt.cfg
                        .backends
                        .iter()
                        .map(|b| {
                            rt.health.get(&b.address).map(|h| h.up).unwrap_or(true)
                                && !self
                                    .drill
                                    .as_ref()
                                    .is_some_and(|d| d.matches(b.address, &b.labels))
                                && !extra.is_some_and(|d| d.matches(b.address, &b.labels))
                        })
                        .collect()
                };
                let mut st = rt.policy.clone();
                let mut ev = vec![];
                let before = policy::decide(
                    &rt.cfg,
                    node,
                    &healthy(None),
                    &mut st.clone(),
                    now,
                    &mut vec![],
                );
                let after =
                    policy::decide(&rt.cfg, node, &healthy(Some(fail)), &mut st, now, &mut ev);
                DrillPreview {
                    vip: rt.cfg.name.clone(),
                    backends: rt
                        .cfg
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| DrillShare {
                            address: b.address,
                            cloud: b.labels.cloud.clone(),
                            region: b.labels.region.clone(),
                            now: before.shares.get(i).copied().unwrap_or(0.0),
                            during: after.shares.get(i).copied().unwrap_or(0.0),
                        })
                        .collect(),
                    panic: after.panic,
                    events: ev
                        .into_iter()
                        .map(|e| format!("{}: {}", e.kind.name(), e.reason))
                        .collect(),
                }
            })
            .collect()
    }

    /// Everything an operator wants to see, serializable for the API.
    pub fn state(&self) -> State {
        State {
            node: self.config.node.name.clone(),
            vips: self
                .vips
                .values()
                .map(|rt| {
                    let d = rt.decision.clone();
                    let counts = maglev::counts(&rt.live);
                    let m = rt.live.len().max(1) as f64;
                    VipState {
                        name: rt.cfg.name.clone(),
                        id: rt.id,
                        address: rt.cfg.address,
                        port: rt.cfg.port,
                        protocol: rt.cfg.protocol,
                        digest: rt.digest.clone(),
                        empty: counts.get(&NO_BACKEND).copied().unwrap_or(0) == rt.live.len(),
                        active_tier: d.as_ref().and_then(|d| d.active_tier),
                        local_share: d.as_ref().and_then(|d| d.local_share),
                        panic: d.as_ref().is_some_and(|d| d.panic),
                        backends: rt
                            .cfg
                            .backends
                            .iter()
                            .enumerate()
                            .map(|(i, be)| {
                                let id = rt.backend_ids[&be.address];
                                let h = rt.health.get(&be.address);
                                BackendState {
                                    address: be.address,
                                    id,
                                    weight: be.weight,
                                    state: be.state,
                                    labels: be.labels.clone(),
                                    healthy: h.map(|h| h.up).unwrap_or(true),
                                    health_reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                                    expected_share: d
                                        .as_ref()
                                        .map(|d| d.shares.get(i).copied().unwrap_or(0.0))
                                        .unwrap_or(0.0),
                                    ring_share: counts.get(&id).copied().unwrap_or(0) as f64 / m,
                                    released: rt.released.contains(&be.address),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
            work: self.work,
        }
    }

    /// The VIP runtime's identity by name (API and health use names).
    pub fn vip_by_name(&self, name: &str) -> Option<VipIdent> {
        self.vips
            .iter()
            .find(|(_, rt)| rt.cfg.name == name)
            .map(|(k, _)| *k)
    }

    pub fn vip_id(&self, ident: &VipIdent) -> Option<u32> {
        self.vips.get(ident).map(|rt| rt.id)
    }

    pub fn backend_id(&self, ident: &VipIdent, addr: IpAddr) -> Option<u32> {
        self.vips
            .get(ident)
            .and_then(|rt| rt.backend_ids.get(&addr).copied())
    }

    /// The live table of a VIP (its shadow; equal to the kernel's).
    pub fn live_table(&self, ident: &VipIdent) -> Option<&[u32]> {
        self.vips.get(ident).map(|rt| rt.live.as_slice())
    }
}

/// One VIP's split before and during a drill.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DrillPreview {
    pub vip: String,
    pub backends: Vec<DrillShare>,
    pub panic: bool,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DrillShare {
    pub address: IpAddr,
    pub cloud: String,
    pub region: String,
    pub now: f64,
    pub during: f64,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct State {
    pub node: String,
    pub vips: Vec<VipState>,
    pub work: WorkStats,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct VipState {
    pub name: String,
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub digest: String,
    pub empty: bool,
    pub active_tier: Option<usize>,
    pub local_share: Option<f64>,
    pub panic: bool,
    pub backends: Vec<BackendState>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BackendState {
    pub address: IpAddr,
    pub id: u32,
    pub weight: u32,
    pub state: AdminState,
    pub labels: crate::config::Labels,
    pub healthy: bool,
    pub health_reason: String,
    pub expected_share: f64,
    pub ring_share: f64,
    pub released: bool,
}

#[cfg(test)]
mod tests;
