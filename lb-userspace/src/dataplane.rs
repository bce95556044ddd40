//! The thin kernel adapter: loads the balancer object, sizes, pins and
//! adopts its maps, attaches it, and reads and writes the tables. It knows
//! map names and layouts, nothing about policy (`crate::balancer` decides,
//! and is tested against [`crate::tables::MemoryTables`] without root).

use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering, fence},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, Map, MapData, MapError, MapInfo, MapType, PerCpuArray,
        PerCpuValues,
    },
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{
    Reason,
    limits::{
        DEFAULT_CONNTRACK_SIZE, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, DEFAULT_RING_SIZE,
        MAP_LAYOUT_VERSION, VIP_KEYS_PER_VIP,
    },
    maps::{BACKEND_F_VALID, Backend, ConnEntry, FlowKey, LbConfig, TrafficStats, VipKey, VipMeta},
};

use crate::{objects, tables::Tables};

/// Name of the balancer program in the object.
pub const PROGRAM: &str = "lb_balancer";

/// Map sizes fixed at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_vips: u32,
    pub max_backends: u32,
    pub ring_size: u32,
    pub conntrack_size: u32,
    /// Per-CPU connection table instead of the shared one.
    pub conntrack_per_cpu: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_vips: DEFAULT_MAX_VIPS,
            max_backends: DEFAULT_MAX_BACKENDS,
            ring_size: DEFAULT_RING_SIZE,
            conntrack_size: DEFAULT_CONNTRACK_SIZE,
            conntrack_per_cpu: false,
        }
    }
}

impl Limits {
    /// Entries of the `RINGS` array: two halves per VIP.
    pub fn ring_entries(&self) -> u64 {
        self.max_vips as u64 * 2 * self.ring_size as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the balancer object failed")]
    Load(#[source] aya::EbpfError),
    #[error("map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program {PROGRAM}")]
    Program(#[source] ProgramError),
    #[error("VIP id {id} is outside the VIP table (max_vips {max})")]
    VipIdOutOfRange { id: u32, max: u32 },
    #[error("backend id {id} is outside the backend table (max_backends {max})")]
    BackendIdOutOfRange { id: u32, max: u32 },
    #[error("ring of {got} slots does not match ring_size {want}")]
    RingSize { got: usize, want: u32 },
    #[error(
        "the pinned state in {dir} does not fit this configuration: map {map}: {what}. \
         Restart with --reset-state to discard it (this resets the connection table), \
         or go back to the settings it was created with"
    )]
    IncompatiblePin {
        dir: PathBuf,
        map: &'static str,
        what: String,
    },
    #[error("memory-mapping the ring table failed: {0}")]
    Mmap(std::io::Error),
    #[error("{what} {path}: {source}")]
    Pin {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching to {iface} ({mode:?} mode)")]
    Attach {
        iface: String,
        mode: XdpMode,
        #[source]
        source: ProgramError,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// Every map of the balancer object that is sized at load time.
fn map_sizes(l: &Limits) -> [(&'static str, u32); 10] {
    [
        ("VIPS", l.max_vips * VIP_KEYS_PER_VIP),
        ("RING_SELECT", l.max_vips),
        // Two u32 slots per 8-byte element.
        ("RINGS", (l.ring_entries() / 2) as u32),
        ("BACKENDS", l.max_backends),
        ("VIP_STATS", l.max_vips),
        ("BACKEND_STATS", l.max_backends),
        // The unused connection table shrinks to one entry.
        (
            "CONNTRACK",
            if l.conntrack_per_cpu {
                1
            } else {
                l.conntrack_size
            },
        ),
        (
            "CONNTRACK_PCPU",
            if l.conntrack_per_cpu {
                l.conntrack_size
            } else {
                1
            },
        ),
        ("FIB_SCRATCH", 1),
        ("NEXTHOPS", l.max_backends),
    ]
}

/// Maps that hold state worth keeping across an agent restart (pinned
/// under `<pin dir>/maps/`).
pub const PINNED_MAPS: &[&str] = &[
    "CONFIG",
    "VIPS",
    "RING_SELECT",
    "RINGS",
    "BACKENDS",
    "CONNTRACK",
    "CONNTRACK_PCPU",
    "TX_PORTS",
    "STATS",
    "VIP_STATS",
    "BACKEND_STATS",
    "FLOOD",
    "DRY_RUN",
    "EXPLAIN",
];

/// Where the pieces of the pinned state live.
pub fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}
pub fn program_pin(pin_dir: &Path) -> PathBuf {
    pin_dir.join("prog")
}
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join("links").join(iface)
}

/// What the pinned maps must look like for `limits`: (name, type, key
/// size, value size, max entries or 0 = any).
fn expected_layout(l: &Limits) -> Vec<(&'static str, MapType, u32, u32, u32)> {
    let sizes: std::collections::HashMap<_, _> = map_sizes(l).into_iter().collect();
    let s = |n: &str| sizes.get(n).copied().unwrap_or(0);
    vec![
        ("CONFIG", MapType::Array, 4, size_of::<LbConfig>() as u32, 1),
        (
            "VIPS",
            MapType::Hash,
            size_of::<VipKey>() as u32,
            size_of::<VipMeta>() as u32,
            s("VIPS"),
        ),
        ("RING_SELECT", MapType::Array, 4, 4, s("RING_SELECT")),
        ("RINGS", MapType::Array, 4, 8, s("RINGS")),
        (
            "BACKENDS",
            MapType::Array,
            4,
            size_of::<Backend>() as u32,
            s("BACKENDS"),
        ),
        (
            "CONNTRACK",
            MapType::LruHash,
            size_of::<FlowKey>() as u32,
            size_of::<ConnEntry>() as u32,
            s("CONNTRACK"),
        ),
        (
            "CONNTRACK_PCPU",
            MapType::LruPerCpuHash,
            size_of::<FlowKey>() as u32,
            size_of::<ConnEntry>() as u32,
            0,
        ),
        ("STATS", MapType::PerCpuArray, 4, 8, Reason::COUNT),
        (
            "VIP_STATS",
            MapType::PerCpuArray,
            4,
            size_of::<TrafficStats>() as u32,
            s("VIP_STATS"),
        ),
        (
            "BACKEND_STATS",
            MapType::PerCpuArray,
            4,
            size_of::<TrafficStats>() as u32,
            s("BACKEND_STATS"),
        ),
    ]
}

/// Refuses pinned maps this build or configuration cannot use as they
/// are: a different map layout version, type, key or value size, or size.
/// Missing pins are fine (they are created).
pub fn check_pinned(pin_dir: &Path, limits: &Limits) -> Result<(), DataplaneError> {
    let dir = maps_dir(pin_dir);
    let incompatible = |map, what: String| DataplaneError::IncompatiblePin {
        dir: dir.clone(),
        map,
        what,
    };
    for (name, ty, key, value, entries) in expected_layout(limits) {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(map_err(name))?;
        let got_ty = info.map_type().map_err(map_err(name))?;
        if got_ty != ty {
            return Err(incompatible(
                name,
                format!("type {got_ty:?}, this version uses {ty:?}"),
            ));
        }
        if info.key_size() != key || info.value_size() != value {
            return Err(incompatible(
                name,
                format!(
                    "key/value {}/{} bytes, this version uses {key}/{value} (a different map layout)",
                    info.key_size(),
                    info.value_size()
                ),
            ));
        }
        if entries != 0 && info.max_entries() != entries {
            return Err(incompatible(
                name,
                format!(
                    "{} entries, the configured limits need {entries}",
                    info.max_entries()
                ),
            ));
        }
    }
    let config = dir.join("CONFIG");
    if config.exists() {
        let data = MapData::from_pin(&config).map_err(map_err("CONFIG"))?;
        let arr: Array<MapData, LbConfig> =
            Array::try_from(Map::Array(data)).map_err(map_err("CONFIG"))?;
        let version = arr.get(&0, 0).map_err(map_err("CONFIG"))?.layout_version;
        if version != 0 && version != MAP_LAYOUT_VERSION {
            return Err(incompatible(
                "CONFIG",
                format!("map layout version {version}, this version uses {MAP_LAYOUT_VERSION}"),
            ));
        }
    }
    Ok(())
}

/// Removes every pinned object under `pin_dir` (maps, program, links):
/// the explicit reset. Unpinning a link detaches its program.
pub fn reset_pinned(pin_dir: &Path) -> Result<(), DataplaneError> {
    for sub in ["links", "maps"] {
        let d = pin_dir.join(sub);
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                fs::remove_file(e.path()).map_err(|source| DataplaneError::Pin {
                    what: "unpin",
                    path: e.path(),
                    source,
                })?;
            }
        }
    }
    let prog = program_pin(pin_dir);
    if prog.exists() {
        fs::remove_file(&prog).map_err(|source| DataplaneError::Pin {
            what: "unpin",
            path: prog,
            source,
        })?;
    }
    Ok(())
}

/// The `RINGS` array mapped into our memory.
pub(crate) struct RingMemory {
    ptr: *mut AtomicU32,
    entries: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory accessed through atomics; it
// is not tied to the creating thread.
unsafe impl Send for RingMemory {}
// SAFETY: as above: every access is an atomic load or store.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    pub(crate) fn map(data: &MapData, entries: u64) -> Result<Self, DataplaneError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (entries as usize * 4).div_ceil(page) * page;
        // SAFETY: mapping a BPF_F_MMAPABLE array's fd, shared, at offset 0
        // for at most its size; the kernel validates all of it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Mmap(std::io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: ptr.cast(),
            entries: entries as usize,
            bytes,
        })
    }

    pub(crate) fn slot(&self, index: usize) -> &AtomicU32 {
        assert!(
            index < self.entries,
            "ring index {index} out of {}",
            self.entries
        );
        // SAFETY: index is inside the mapping, which lives as long as self.
        unsafe { &*self.ptr.add(index) }
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

/// The loaded balancer: program and typed handles to every map.
pub struct Dataplane {
    ebpf: Ebpf,
    limits: Limits,
    pin_dir: Option<PathBuf>,
    config: Array<MapData, LbConfig>,
    vips: HashMap<MapData, VipKey, VipMeta>,
    ring_select: Array<MapData, u32>,
    rings: RingMemory,
    _rings_map: MapData,
    backends: Array<MapData, Backend>,
    conntrack: HashMap<MapData, FlowKey, ConnEntry>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficStats>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
}

impl Dataplane {
    /// Loads the embedded balancer object. With `pin_dir`, every stateful
    /// map is pinned under `<pin_dir>/maps`, and maps already pinned there
    /// are adopted (call [`check_pinned`] first) — the connection table and
    /// counters survive the agent.
    pub fn load(limits: Limits, pin_dir: Option<&Path>) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader.override_global("RING_SIZE", &limits.ring_size, true);
        let per_cpu = limits.conntrack_per_cpu as u32;
        loader.override_global("CONNTRACK_PER_CPU", &per_cpu, true);
        for (name, size) in map_sizes(&limits) {
            loader.map_max_entries(name, size);
        }
        let pins: Vec<(&str, PathBuf)> = match pin_dir {
            Some(dir) => {
                let maps = maps_dir(dir);
                fs::create_dir_all(&maps).map_err(|source| DataplaneError::Pin {
                    what: "create",
                    path: maps.clone(),
                    source,
                })?;
                PINNED_MAPS.iter().map(|m| (*m, maps.join(m))).collect()
            }
            None => vec![],
        };
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(objects::BALANCER)
            .map_err(DataplaneError::Load)?;

        macro_rules! take {
            ($name:literal) => {
                ebpf.take_map($name)
                    .ok_or(DataplaneError::MissingMap { name: $name })?
                    .try_into()
                    .map_err(map_err($name))?
            };
        }
        let rings_map = match ebpf
            .take_map("RINGS")
            .ok_or(DataplaneError::MissingMap { name: "RINGS" })?
        {
            Map::Array(data) => data,
            _ => return Err(DataplaneError::MissingMap { name: "RINGS" }),
        };
        let rings = RingMemory::map(&rings_map, limits.ring_entries())?;
        let mut dp = Self {
            config: take!("CONFIG"),
            vips: take!("VIPS"),
            ring_select: take!("RING_SELECT"),
            rings,
            _rings_map: rings_map,
            backends: take!("BACKENDS"),
            conntrack: take!("CONNTRACK"),
            tx_ports: take!("TX_PORTS"),
            stats: take!("STATS"),
            vip_stats: take!("VIP_STATS"),
            backend_stats: take!("BACKEND_STATS"),
            ebpf,
            limits,
            pin_dir: pin_dir.map(Path::to_path_buf),
        };
        dp.program_mut()?.load().map_err(DataplaneError::Program)?;
        if let Some(dir) = &dp.pin_dir {
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
        let prog = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::Program(ProgramError::InvalidName {
                name: PROGRAM.into(),
            }))?;
        prog.try_into().map_err(DataplaneError::Program)
    }

    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        let prog = self.ebpf.program(PROGRAM).ok_or(DataplaneError::Program(
            ProgramError::InvalidName {
                name: PROGRAM.into(),
            },
        ))?;
        prog.try_into().map_err(DataplaneError::Program)
    }

    /// Attaches the program to `iface`. With a pin directory the XDP link
    /// is pinned, so it outlives this process; if a link is already pinned
    /// for `iface` (a previous agent), the new program replaces the old one
    /// in it atomically (`BPF_LINK_UPDATE`): there is no moment without a
    /// program on the interface. Returns whether an existing link was
    /// adopted.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<bool, DataplaneError> {
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.into(),
            mode,
            source,
        };
        let Some(dir) = self.pin_dir.clone() else {
            let prog = self.program_mut()?;
            prog.attach(iface, mode).map_err(attach_err)?;
            return Ok(false);
        };
        let pin = link_pin(&dir, iface);
        if let Some(parent) = pin.parent() {
            fs::create_dir_all(parent).map_err(|source| DataplaneError::Pin {
                what: "create",
                path: parent.into(),
                source,
            })?;
        }
        let prog = self.program_mut()?;
        if pin.exists() {
            let pinned = PinnedLink::from_pin(&pin).map_err(|e| DataplaneError::Pin {
                what: "open pinned link",
                path: pin.clone(),
                source: std::io::Error::other(e),
            })?;
            let link =
                XdpLink::try_from(FdLink::from(pinned)).map_err(|e| DataplaneError::Pin {
                    what: "adopt pinned link",
                    path: pin.clone(),
                    source: std::io::Error::other(e),
                })?;
            let id = prog.attach_to_link(link).map_err(attach_err)?;
            // Keep ownership away from the program: dropping the program
            // would otherwise detach. The pin keeps the link alive.
            let link = prog.take_link(id).map_err(attach_err)?;
            drop(link);
            Ok(true)
        } else {
            let id = prog.attach(iface, mode).map_err(attach_err)?;
            let link = prog.take_link(id).map_err(attach_err)?;
            let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Pin {
                what: "pin link",
                path: pin.clone(),
                source: std::io::Error::other(e),
            })?;
            fd_link.pin(&pin).map_err(|e| DataplaneError::Pin {
                what: "pin link",
                path: pin.clone(),
                source: std::io::Error::other(e),
            })?;
            Ok(false)
        }
    }

    pub fn config(&self) -> Result<LbConfig, DataplaneError> {
        self.config.get(&0, 0).map_err(map_err("CONFIG"))
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

    fn check_vip_id(&self, id: u32) -> Result<(), DataplaneError> {
        if id >= self.limits.max_vips {
            return Err(DataplaneError::VipIdOutOfRange {
                id,
                max: self.limits.max_vips,
            });
        }
        Ok(())
    }

    fn slot_index(&self, vip_id: u32, half: u32, slot: u32) -> usize {
        ((vip_id as usize * 2 + (half & 1) as usize) * self.limits.ring_size as usize)
            + slot as usize
    }

    pub fn backend(&self, id: u32) -> Result<Backend, DataplaneError> {
        self.backends.get(&id, 0).map_err(map_err("BACKENDS"))
    }
}

impl Tables for Dataplane {
    fn limits(&self) -> Limits {
        self.limits
    }

    fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        self.config.set(0, cfg, 0).map_err(map_err("CONFIG"))
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.check_vip_id(meta.id)?;
        self.vips.insert(key, meta, 0).map_err(map_err("VIPS"))
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        match self.vips.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("VIPS")(e)),
        }
    }

    fn vips(&self) -> Result<Vec<(VipKey, VipMeta)>, DataplaneError> {
        self.vips
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("VIPS"))
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        if id >= self.limits.max_backends {
            return Err(DataplaneError::BackendIdOutOfRange {
                id,
                max: self.limits.max_backends,
            });
        }
        self.backends
            .set(id, backend, 0)
            .map_err(map_err("BACKENDS"))
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>, DataplaneError> {
        let mut out = vec![];
        for (id, b) in self.backends.iter().enumerate() {
            let b = b.map_err(map_err("BACKENDS"))?;
            if b.flags & BACKEND_F_VALID != 0 {
                out.push((id as u32, b));
            }
        }
        Ok(out)
    }

    fn live_half(&self, vip_id: u32) -> Result<u32, DataplaneError> {
        self.check_vip_id(vip_id)?;
        Ok(self
            .ring_select
            .get(&vip_id, 0)
            .map_err(map_err("RING_SELECT"))?
            & 1)
    }

    fn read_ring(&self, vip_id: u32, half: u32) -> Result<Vec<u32>, DataplaneError> {
        self.check_vip_id(vip_id)?;
        Ok((0..self.limits.ring_size)
            .map(|slot| {
                self.rings
                    .slot(self.slot_index(vip_id, half, slot))
                    .load(Ordering::Relaxed)
            })
            .collect())
    }

    fn write_ring_slots(
        &mut self,
        vip_id: u32,
        half: u32,
        changes: &[(u32, u32)],
    ) -> Result<usize, DataplaneError> {
        self.check_vip_id(vip_id)?;
        for (slot, backend) in changes {
            if *slot >= self.limits.ring_size {
                return Err(DataplaneError::RingSize {
                    got: *slot as usize,
                    want: self.limits.ring_size,
                });
            }
            self.rings
                .slot(self.slot_index(vip_id, half, *slot))
                .store(*backend, Ordering::Relaxed);
        }
        Ok(changes.len())
    }

    fn reason_counters(&self) -> Result<Vec<(Reason, u64)>, DataplaneError> {
        reason_totals(&self.stats).map_err(map_err("STATS"))
    }

    fn vip_traffic(&self, vip_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(sum_traffic(
            self.vip_stats
                .get(&vip_id, 0)
                .map_err(map_err("VIP_STATS"))?,
        ))
    }

    fn backend_traffic(&self, backend_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(sum_traffic(
            self.backend_stats
                .get(&backend_id, 0)
                .map_err(map_err("BACKEND_STATS"))?,
        ))
    }

    fn flip(&mut self, vip_id: u32, half: u32) -> Result<(), DataplaneError> {
        self.check_vip_id(vip_id)?;
        // Every slot store must be visible before a packet can select the
        // half (the syscall is a barrier too; this says so in the code).
        fence(Ordering::SeqCst);
        self.ring_select
            .set(vip_id, half & 1, 0)
            .map_err(map_err("RING_SELECT"))
    }
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
