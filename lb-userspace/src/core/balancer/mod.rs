//! The facade the agent drives (Katran's `KatranLb`): VIPs and backends in,
//! kernel tables out. It allocates VIP and backend ids, asks the policy for
//! weights, builds Maglev tables, writes only the slots that changed into
//! the inactive half and flips, and adopts the tables a previous agent left
//! pinned so a restart changes nothing for established flows.
//!
//! Generic over [`Tables`], so all of it runs in unit tests without root.

mod drill;
mod ids;
mod view;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Instant,
};

use serde::Serialize;

pub use view::{BackendState, DrillPreview, DrillShare, State, VipState, WorkStats};

use ids::{IdPool, alloc_backend_id};

use crate::core::{
    config::{Config, Vip, VipIdent},
    events::{EventKind, EventLog},
    maglev,
    policy::{self, Decision, Drains, PolicyState},
    prefix::Prefix,
    sources::FailSelector,
    tables::{
        AclAction, BackendEntry, GuardEntry, Marker, Settings, Tables, TablesError, VipEntry,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Tables(#[from] TablesError),
    #[error("{0}")]
    Rejected(String),
}

/// Health of one backend as the balancer knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Health {
    pub up: bool,
    /// It answered its last check (even with a failure, e.g. HTTP 503).
    pub reachable: bool,
    pub reason: String,
}

impl Health {
    pub fn up(reason: impl Into<String>) -> Self {
        Self {
            up: true,
            reachable: true,
            reason: reason.into(),
        }
    }

    /// Down, and not answering (refused, timed out).
    pub fn unreachable(reason: impl Into<String>) -> Self {
        Self {
            up: false,
            reachable: false,
            reason: reason.into(),
        }
    }
}

/// What an agent knows that the tables do not hold — health verdicts and
/// drain clocks, by VIP name and backend address — kept across restarts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub health: BTreeMap<(String, IpAddr), Health>,
    pub drains: BTreeMap<(String, IpAddr), Instant>,
}

/// What a VIP's Maglev table is built from: (address, weight, backend id)
/// per backend, and the hash seed.
type TableInputs = (Vec<(IpAddr, u32, u32)>, u32);

struct VipRuntime {
    id: u32,
    cfg: Vip,
    backend_ids: BTreeMap<IpAddr, u32>,
    health: BTreeMap<IpAddr, Health>,
    policy: PolicyState,
    drains: Drains,
    /// Shadow of the live half.
    live: Vec<u32>,
    /// The inputs `live` was built from; `None` for a table adopted from
    /// the kernel. Equal inputs build an equal table, so a reconcile that
    /// changes nothing for this VIP builds nothing (a Maglev build is
    /// milliseconds, and a change anywhere reconciles every VIP).
    live_from: Option<TableInputs>,
    /// Shadow of the other half; `None` when unknown (after adoption).
    spare: Option<Vec<u32>>,
    /// The Maglev table of the configured backends at their configured
    /// weights and the inputs it was built from: rebuilt on planned
    /// changes only; health, drains and tiers remap it (`Plan::serve`).
    plan: Option<(TableInputs, maglev::Plan)>,
    digest: String,
    decision: Option<Decision>,
    /// The service entry as last written (or found in the tables).
    written_entry: Option<VipEntry>,
    /// The live access-list generation and its entries.
    acl: (u32, BTreeMap<Prefix, AclAction>),
    /// The guard as last written (`None`: unknown, write it).
    written_guard: Option<Option<GuardEntry>>,
}

impl VipRuntime {
    /// A VIP's runtime over `live`, its live table as read back from the
    /// tables (zeroed for a VIP id never used).
    fn new(id: u32, cfg: Vip, live: Vec<u32>, written_entry: Option<VipEntry>) -> Self {
        Self {
            id,
            cfg,
            backend_ids: BTreeMap::new(),
            health: BTreeMap::new(),
            policy: PolicyState::default(),
            drains: Drains::default(),
            digest: String::new(),
            live,
            live_from: None,
            spare: None,
            plan: None,
            decision: None,
            written_entry,
            acl: (0, BTreeMap::new()),
            written_guard: None,
        }
    }

    /// Forgets a backend leaving the VIP; returns its slot.
    fn remove_backend(&mut self, addr: IpAddr) -> Option<u32> {
        self.health.remove(&addr);
        self.drains.forget(addr);
        self.backend_ids.remove(&addr)
    }
}

pub struct Balancer<T: Tables> {
    tables: T,
    config: Config,
    vips: BTreeMap<VipIdent, VipRuntime>,
    vip_ids: IdPool,
    backend_ids: IdPool,
    /// Backend slots whose value we last wrote (or found in the tables).
    written_backends: BTreeMap<u32, BackendEntry>,
    /// Address markers as last written (or found in the tables).
    markers: BTreeMap<IpAddr, Marker>,
    settings: Option<Settings>,
    /// Slots found in the tables that belong to no VIP found there:
    /// released by the first `apply`.
    orphans: Vec<u32>,
    /// A failover drill: backends it matches count as failed.
    drill: Option<FailSelector>,
    /// What a previous agent knew, used as backends are (re)created.
    remembered: Memory,
    /// A failed write has not been recovered from yet.
    unsynced: bool,
    pub events: EventLog,
    pub work: WorkStats,
}

impl<T: Tables> Balancer<T> {
    /// Builds the balancer over `tables`, adopting what they already hold
    /// (a previous agent's pinned state), then applies `config`. Adopted
    /// VIPs and backends keep their ids — the connection table refers to
    /// backend ids — and their live rings, so a restart with the same
    /// configuration writes nothing a packet would notice.
    pub fn new(tables: T, config: Config, now: Instant) -> Result<Self, ApplyError> {
        Self::restore(tables, config, Memory::default(), now)
    }

    /// [`Balancer::new`] for an agent that remembers what a previous one
    /// knew: a backend known down starts down (its health checks must pass
    /// `rise` times before it takes traffic again), a drain keeps its
    /// clock. The memory is used before anything is written.
    pub fn restore(
        tables: T,
        config: Config,
        remembered: Memory,
        now: Instant,
    ) -> Result<Self, ApplyError> {
        let limits = tables.limits();
        let mut b = Self {
            vip_ids: IdPool::new(limits.max_vips),
            backend_ids: IdPool::new(limits.max_backends),
            tables,
            config: config.clone(),
            vips: BTreeMap::new(),
            written_backends: BTreeMap::new(),
            markers: BTreeMap::new(),
            settings: None,
            orphans: vec![],
            drill: None,
            remembered,
            unsynced: false,
            events: EventLog::default(),
            work: WorkStats::default(),
        };
        b.adopt()?;
        b.check_fixed(&config)?;
        b.write_config(config, now)?;
        Ok(b)
    }

    /// Seeds the id pools and the runtimes from what the tables hold. A
    /// VIP found there is known only by its identity until `apply` gives
    /// it its configuration (or removes it).
    fn adopt(&mut self) -> Result<(), ApplyError> {
        self.markers = self.tables.markers()?.into_iter().collect();
        for (ident, entry) in self.tables.vips()? {
            self.vip_ids.take(entry.id);
            let live = self
                .tables
                .read_ring(entry.id, self.tables.live_half(entry.id)?)?;
            let found = Vip::new(ident.0, ident.1, ident.2);
            let mut rt = VipRuntime::new(entry.id, found, live, Some(entry));
            match self.tables.guard_generation(entry.id)? {
                // Its rates are rewritten by the first apply; the lists are
                // read back, so an unchanged list is not rewritten.
                Some(generation) => {
                    let live = self.tables.acl(entry.id, generation)?;
                    rt.acl = (generation, live.into_iter().collect());
                }
                None => rt.written_guard = Some(None),
            }
            self.vips.insert(ident, rt);
        }
        let owner: BTreeMap<u32, VipIdent> = self.vips.iter().map(|(i, rt)| (rt.id, *i)).collect();
        for (id, be) in self.tables.backends()? {
            self.backend_ids.take(id);
            self.written_backends.insert(id, be);
            match owner.get(&be.vip_id).and_then(|i| self.vips.get_mut(i)) {
                Some(rt) if !rt.backend_ids.contains_key(&be.address) => {
                    rt.backend_ids.insert(be.address, id);
                }
                _ => self.orphans.push(id),
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What this agent knows that the tables do not hold.
    pub fn memory(&self) -> Memory {
        let mut m = Memory::default();
        for rt in self.vips.values() {
            for (addr, h) in &rt.health {
                m.health.insert((rt.cfg.name.clone(), *addr), h.clone());
            }
            for (addr, since) in rt.drains.started() {
                m.drains.insert((rt.cfg.name.clone(), addr), since);
            }
        }
        m
    }

    pub fn tables(&self) -> &T {
        &self.tables
    }

    pub fn tables_mut(&mut self) -> &mut T {
        &mut self.tables
    }

    /// Applies a new, already validated configuration. Limits and the pin
    /// path cannot change without a restart (the maps are sized by them).
    ///
    /// A write that fails part-way leaves the kernel holding some of the
    /// change: the balancer then reads the tables back and re-applies the
    /// configuration it was running, so its shadows describe the maps
    /// again, and returns the error.
    pub fn apply(&mut self, config: Config, now: Instant) -> Result<(), ApplyError> {
        self.check_fixed(&config)?;
        let running = self.config.clone();
        if self.unsynced {
            self.resync(running.clone(), now).map_err(|e| {
                ApplyError::Rejected(format!("tables still out of sync, nothing applied: {e}"))
            })?;
        }
        match self.write_config(config, now) {
            Err(e) => Err(self.recover(e, running, now)),
            ok => ok,
        }
    }

    /// Recomputes every VIP's weights and writes what changed; a failed
    /// write is recovered from as in [`Balancer::apply`], and a failed
    /// recovery is retried here first.
    pub fn reconcile(&mut self, now: Instant) -> Result<(), ApplyError> {
        if self.unsynced {
            self.resync(self.config.clone(), now)?;
            self.events
                .record(EventKind::TablesResynced, None, None, "tables back in sync");
            return Ok(());
        }
        match self.write_all(now) {
            Err(e) => Err(self.recover(e, self.config.clone(), now)),
            ok => ok,
        }
    }

    /// Whether the shadows describe the maps (false while a failed write
    /// could not be recovered from; every reconcile retries).
    pub fn in_sync(&self) -> bool {
        !self.unsynced
    }

    /// After `failed`: forgets every shadow, adopts the tables as they are
    /// and applies `running` over them. Health, drain clocks and policy
    /// hysteresis are kept. Returns the error to report.
    fn recover(&mut self, failed: ApplyError, running: Config, now: Instant) -> ApplyError {
        self.work.resyncs += 1;
        let resynced = self.resync(running, now);
        let detail = match &resynced {
            Ok(()) => format!("{failed}: tables read back, running configuration re-applied"),
            Err(again) => format!(
                "{failed}: tables read back; re-applying failed too ({again}), retried on every reconcile"
            ),
        };
        self.events
            .record(EventKind::TablesResynced, None, None, &detail);
        match resynced {
            Ok(()) => failed,
            Err(_) => ApplyError::Rejected(detail),
        }
    }

    /// Until it succeeds, nothing but another resync writes: the shadows
    /// cannot be trusted to say what a write would change.
    fn resync(&mut self, running: Config, now: Instant) -> Result<(), ApplyError> {
        self.unsynced = true;
        let mut memory = std::mem::take(&mut self.remembered);
        let mine = self.memory();
        memory.health.extend(mine.health);
        memory.drains.extend(mine.drains);
        let mut policies: BTreeMap<VipIdent, PolicyState> = self
            .vips
            .iter()
            .map(|(ident, rt)| (*ident, rt.policy.clone()))
            .collect();
        let limits = self.tables.limits();
        self.vips.clear();
        self.vip_ids = IdPool::new(limits.max_vips);
        self.backend_ids = IdPool::new(limits.max_backends);
        self.written_backends.clear();
        self.markers.clear();
        self.settings = None;
        self.orphans.clear();
        self.remembered = memory;
        self.config = running.clone();
        self.adopt()?;
        for (ident, rt) in self.vips.iter_mut() {
            if let Some(p) = policies.remove(ident) {
                rt.policy = p;
            }
        }
        self.write_config(running, now)?;
        self.unsynced = false;
        Ok(())
    }

    /// Refuses a change to what sizes or places the maps.
    fn check_fixed(&self, config: &Config) -> Result<(), ApplyError> {
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
        Ok(())
    }

    fn write_config(&mut self, config: Config, now: Instant) -> Result<(), ApplyError> {
        let wanted: BTreeMap<VipIdent, &Vip> = config.vips.iter().map(|v| (v.ident(), v)).collect();
        // Removals first, so their ids can be reused by additions. No
        // packet reaches a removed VIP's table, so its slots go at once.
        for ident in self.vips.keys().copied().collect::<Vec<_>>() {
            if wanted.contains_key(&ident) {
                continue;
            }
            let rt = self.vips.remove(&ident).expect("present");
            self.tables.remove_vip(&ident)?;
            // No packet reaches its guard now.
            let listed: Vec<Prefix> = rt.acl.1.keys().copied().collect();
            self.tables.remove_acl(rt.id, rt.acl.0, &listed)?;
            self.tables.set_guard(rt.id, None)?;
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
        let mut retiring: Vec<u32> = std::mem::take(&mut self.orphans);
        for (ident, v) in &wanted {
            let rt = match self.vips.get_mut(ident) {
                Some(rt) => rt,
                None => {
                    let id = self.vip_ids.alloc().ok_or_else(|| {
                        ApplyError::Rejected("no free VIP id (limits.max_vips)".into())
                    })?;
                    let live = self.tables.read_ring(id, self.tables.live_half(id)?)?;
                    self.events
                        .record(EventKind::ConfigApplied, Some(&v.name), None, "VIP added");
                    self.vips
                        .entry(*ident)
                        .or_insert(VipRuntime::new(id, (*v).clone(), live, None))
                }
            };
            let keep: BTreeSet<IpAddr> = v.backends.iter().map(|b| b.address).collect();
            let leaving: Vec<IpAddr> = rt
                .backend_ids
                .keys()
                .filter(|a| !keep.contains(a))
                .copied()
                .collect();
            retiring.extend(leaving.into_iter().filter_map(|a| rt.remove_backend(a)));
            rt.cfg = (*v).clone();
            for be in &v.backends {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    rt.backend_ids.entry(be.address)
                {
                    slot.insert(alloc_backend_id(&mut self.backend_ids, &mut retiring)?);
                }
                let key = (v.name.clone(), be.address);
                let known = self.remembered.health.get(&key);
                rt.health.entry(be.address).or_insert_with(|| {
                    known.cloned().unwrap_or_else(|| Health {
                        up: v.health_check.initially_up,
                        reachable: v.health_check.initially_up,
                        reason: "no check result yet".into(),
                    })
                });
                if let Some(since) = self.remembered.drains.get(&key) {
                    rt.drains.resume(be.address, *since);
                }
            }
        }
        let settings = Settings {
            dataplane: config.dataplane.clone(),
            all_ports_vips: config.vips.iter().any(|v| v.port == 0),
        };
        if self.settings.as_ref() != Some(&settings) {
            self.tables.set_settings(&settings)?;
            self.settings = Some(settings);
        }
        self.config = config;
        let result = self.write_all(now);
        for id in retiring {
            self.release_backend(id)?;
        }
        result
    }

    fn release_backend(&mut self, id: u32) -> Result<(), ApplyError> {
        self.tables.set_backend(id, None)?;
        self.written_backends.remove(&id);
        self.backend_ids.release(id);
        Ok(())
    }

    /// Records a health verdict; returns whether it changes the tables
    /// (up/down, or whether a down backend answers, which panic uses).
    pub fn set_health(&mut self, vip: &VipIdent, backend: IpAddr, h: Health) -> bool {
        let Some(rt) = self.vips.get_mut(vip) else {
            return false;
        };
        let Some(known) = rt.health.get_mut(&backend) else {
            return false;
        };
        let changed = known.up != h.up || known.reachable != h.reachable;
        if known.up != h.up {
            let kind = if h.up {
                EventKind::BackendUp
            } else {
                EventKind::BackendDown
            };
            self.events.record(
                kind,
                Some(&rt.cfg.name),
                Some(&backend.to_string()),
                &h.reason,
            );
        }
        *known = h;
        changed
    }

    fn write_all(&mut self, now: Instant) -> Result<(), ApplyError> {
        let idents: Vec<VipIdent> = self.vips.keys().copied().collect();
        for ident in idents {
            self.reconcile_vip(&ident, now)?;
        }
        self.sync_markers()
    }

    /// One marker per VIP address (the id of its first VIP; ICMP echo if
    /// any of its VIPs answers pings), written only when it changed: this
    /// runs on every reconcile, the periodic tick included.
    fn sync_markers(&mut self) -> Result<(), ApplyError> {
        let mut wanted: BTreeMap<IpAddr, Marker> = BTreeMap::new();
        for rt in self.vips.values() {
            let m = wanted.entry(rt.cfg.address).or_insert(Marker {
                id: rt.id,
                icmp_echo: false,
            });
            m.icmp_echo |= rt.cfg.icmp_echo;
        }
        for (addr, m) in &wanted {
            if self.markers.get(addr) != Some(m) {
                self.tables.set_marker(*addr, m)?;
            }
        }
        for addr in self.markers.keys().filter(|a| !wanted.contains_key(a)) {
            self.tables.remove_marker(*addr)?;
        }
        self.markers = wanted;
        Ok(())
    }

    fn reconcile_vip(&mut self, ident: &VipIdent, now: Instant) -> Result<(), ApplyError> {
        let node = self.config.node.clone();
        let seed = self.config.dataplane.hash_seed;
        let m = self.tables.limits().ring_size;
        let rt = self.vips.get_mut(ident).expect("known VIP");
        let seen = rt.seen(&self.drill.iter().collect::<Vec<_>>());
        let mut pevents = vec![];
        let decision = policy::decide(&rt.cfg, &node, &seen, &mut rt.policy, now, &mut pevents);
        for e in pevents {
            self.events
                .record(e.kind, Some(&rt.cfg.name), None, e.reason);
        }
        for d in rt
            .drains
            .advance(&rt.cfg.backends, rt.cfg.policy.drain_timeout, now)
        {
            self.events.record(
                d.event.kind,
                Some(&rt.cfg.name),
                Some(&d.backend.to_string()),
                d.event.reason,
            );
        }

        // Backend slots before the table that points at them.
        for (i, be) in rt.cfg.backends.iter().enumerate() {
            let id = rt.backend_ids[&be.address];
            let value = (!rt.drains.is_released(be.address)).then(|| BackendEntry {
                vip_id: rt.id,
                address: be.address,
                forwarding: be.forwarding.unwrap_or(rt.cfg.forwarding),
                gue_port: be.gue_port,
                mac: be.mac,
                down: decision.down[i],
            });
            if self.written_backends.get(&id) != value.as_ref() {
                self.tables.set_backend(id, value.as_ref())?;
                self.work.backend_writes += 1;
                match value {
                    Some(v) => self.written_backends.insert(id, v),
                    None => self.written_backends.remove(&id),
                };
            }
        }

        // The table, rebuilt only when its inputs changed.
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
            let planned: TableInputs = (
                rt.cfg
                    .backends
                    .iter()
                    .map(|be| (be.address, be.weight, rt.backend_ids[&be.address]))
                    .collect(),
                seed,
            );
            if rt.plan.as_ref().is_some_and(|p| p.0 != planned) {
                rt.plan = None;
            }
            let (_, plan) = rt.plan.get_or_insert_with(|| {
                let entries: Vec<maglev::Entry> = planned
                    .0
                    .iter()
                    .map(|&(address, weight, id)| maglev::Entry {
                        key: address.to_string(),
                        weight,
                        id,
                    })
                    .collect();
                let plan = maglev::Plan::new(&entries, m, seed);
                (planned, plan)
            });
            let now: BTreeMap<u32, u32> = inputs.0.iter().map(|&(_, w, id)| (id, w)).collect();
            let table = plan.serve(|id| now.get(&id).copied().unwrap_or(0));
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
            }
            let address: BTreeMap<u32, IpAddr> =
                rt.backend_ids.iter().map(|(a, id)| (*id, *a)).collect();
            rt.digest = maglev::digest(&rt.live, |id| address.get(&id).copied());
            rt.live_from = Some(inputs);
        }

        let guarded = sync_guard(&mut self.tables, rt)?;

        // The service entry last: by now its table, backends and guard
        // are in place.
        let entry = VipEntry {
            id: rt.id,
            hash: rt.cfg.hash,
            flows_on_down: rt.cfg.flows_on_backend_down,
            guarded,
        };
        if rt.written_entry != Some(entry) {
            self.tables.set_vip(ident, &entry)?;
            rt.written_entry = Some(entry);
        }
        rt.decision = Some(decision);
        Ok(())
    }

    /// The VIP runtime's identity by name (API and health use names).
    pub fn vip_by_name(&self, name: &str) -> Option<VipIdent> {
        self.vips
            .iter()
            .find(|(_, rt)| rt.cfg.name == name)
            .map(|(k, _)| *k)
    }

    /// The name of a VIP by its identity (health verdicts carry identities).
    pub fn vip_name(&self, ident: &VipIdent) -> Option<String> {
        self.vips.get(ident).map(|rt| rt.cfg.name.clone())
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

/// Brings a VIP's access lists and guard in the tables in line with its
/// configuration; returns whether the VIP is guarded. A changed list is
/// written as the other generation, then the guard flips to it, then the
/// old generation is removed: a packet sees the old list or the new one,
/// never half of either.
fn sync_guard<T: Tables>(tables: &mut T, rt: &mut VipRuntime) -> Result<bool, ApplyError> {
    let access = &rt.cfg.access;
    let mut want: BTreeMap<Prefix, AclAction> = access
        .allow
        .iter()
        .map(|p| (*p, AclAction::Allow))
        .collect();
    // A prefix on both lists is denied.
    want.extend(access.deny.iter().map(|p| (*p, AclAction::Deny)));
    let guarded = !access.is_open();
    let guard = |generation: u32| GuardEntry {
        allow_list: !access.allow.is_empty(),
        acl: !want.is_empty(),
        acl_gen: generation,
        rate: access.rate_limit.clone(),
    };
    if want != rt.acl.1 {
        let (old, next) = (rt.acl.0, rt.acl.0 ^ 1);
        let leftovers: Vec<Prefix> = tables.acl(rt.id, next)?.into_iter().map(|e| e.0).collect();
        tables.remove_acl(rt.id, next, &leftovers)?;
        let entries: Vec<(Prefix, AclAction)> = want.iter().map(|(p, a)| (*p, *a)).collect();
        tables.set_acl(rt.id, next, &entries)?;
        let g = guard(next);
        tables.set_guard(rt.id, Some(&g))?;
        rt.written_guard = Some(Some(g));
        let stale: Vec<Prefix> = rt.acl.1.keys().copied().collect();
        tables.remove_acl(rt.id, old, &stale)?;
        rt.acl = (next, want.clone());
    }
    let g = guarded.then(|| guard(rt.acl.0));
    if rt.written_guard.as_ref() != Some(&g) {
        tables.set_guard(rt.id, g.as_ref())?;
        rt.written_guard = Some(g);
    }
    Ok(guarded)
}

#[cfg(test)]
mod tests;
