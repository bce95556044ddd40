//! The thin kernel adapter: loads the balancer object, sizes and pins its
//! maps, and reads and writes them. It knows map names and layouts, nothing
//! about policy (that is `crate::balancer`'s job, tested without root).

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    programs::{ProgramError, Xdp},
};
use lb_common::{
    Reason,
    limits::{
        DEFAULT_CONNTRACK_SIZE, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, DEFAULT_RING_SIZE,
        VIP_KEYS_PER_VIP,
    },
    maps::{Backend, ConnEntry, FlowKey, LbConfig, TrafficStats, VipKey, VipMeta},
};

use crate::objects;

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
    #[error("ring of {got} slots does not match ring_size {want}")]
    RingSize { got: usize, want: u32 },
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// The loaded balancer: program and typed handles to every map.
pub struct Dataplane {
    ebpf: Ebpf,
    limits: Limits,
    config: Array<MapData, LbConfig>,
    vips: HashMap<MapData, VipKey, VipMeta>,
    ring_select: Array<MapData, u32>,
    rings: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    conntrack: HashMap<MapData, FlowKey, ConnEntry>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficStats>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
}

/// Every map of the balancer object, with the size it gets.
fn map_sizes(l: &Limits) -> [(&'static str, u32); 9] {
    [
        ("VIPS", l.max_vips * VIP_KEYS_PER_VIP),
        ("RING_SELECT", l.max_vips),
        ("RINGS", l.ring_entries() as u32),
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
    ]
}

/// Maps that hold state worth keeping across an agent restart (pinned).
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
];

impl Dataplane {
    /// Loads the embedded balancer object. With `pin_dir`, every stateful
    /// map is pinned there, and maps already pinned there are reused (the
    /// caller checks their layout first, see `crate::pin`).
    pub fn load(limits: Limits, pin_dir: Option<&Path>) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        loader.override_global("RING_SIZE", &limits.ring_size, true);
        let per_cpu = limits.conntrack_per_cpu as u32;
        loader.override_global("CONNTRACK_PER_CPU", &per_cpu, true);
        for (name, size) in map_sizes(&limits) {
            loader.map_max_entries(name, size);
        }
        let pins: Vec<(&str, PathBuf)> = pin_dir
            .map(|dir| PINNED_MAPS.iter().map(|m| (*m, dir.join(m))).collect())
            .unwrap_or_default();
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
        let config = take!("CONFIG");
        let vips = take!("VIPS");
        let ring_select = take!("RING_SELECT");
        let rings = take!("RINGS");
        let backends = take!("BACKENDS");
        let conntrack = take!("CONNTRACK");
        let tx_ports = take!("TX_PORTS");
        let stats = take!("STATS");
        let vip_stats = take!("VIP_STATS");
        let backend_stats = take!("BACKEND_STATS");
        let mut dp = Self {
            ebpf,
            limits,
            config,
            vips,
            ring_select,
            rings,
            backends,
            conntrack,
            tx_ports,
            stats,
            vip_stats,
            backend_stats,
        };
        dp.program_mut()?.load().map_err(DataplaneError::Program)?;
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

    pub fn set_config(&mut self, cfg: &LbConfig) -> Result<(), DataplaneError> {
        self.config.set(0, cfg, 0).map_err(map_err("CONFIG"))
    }

    pub fn config(&self) -> Result<LbConfig, DataplaneError> {
        self.config.get(&0, 0).map_err(map_err("CONFIG"))
    }

    pub fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.check_vip_id(meta.id)?;
        self.vips.insert(key, meta, 0).map_err(map_err("VIPS"))
    }

    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        match self.vips.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("VIPS")(e)),
        }
    }

    pub fn vips(&self) -> Result<Vec<(VipKey, VipMeta)>, DataplaneError> {
        self.vips
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("VIPS"))
    }

    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        self.backends
            .set(id, backend, 0)
            .map_err(map_err("BACKENDS"))
    }

    pub fn backend(&self, id: u32) -> Result<Backend, DataplaneError> {
        self.backends.get(&id, 0).map_err(map_err("BACKENDS"))
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

    /// The live half (0 or 1) of a VIP's ring pair.
    pub fn live_half(&self, vip_id: u32) -> Result<u32, DataplaneError> {
        self.check_vip_id(vip_id)?;
        Ok(self
            .ring_select
            .get(&vip_id, 0)
            .map_err(map_err("RING_SELECT"))?
            & 1)
    }

    fn slot_index(&self, vip_id: u32, half: u32, slot: u32) -> u32 {
        (vip_id * 2 + half) * self.limits.ring_size + slot
    }

    /// Reads one half of a VIP's ring.
    pub fn read_ring(&self, vip_id: u32, half: u32) -> Result<Vec<u32>, DataplaneError> {
        self.check_vip_id(vip_id)?;
        (0..self.limits.ring_size)
            .map(|slot| {
                self.rings
                    .get(&self.slot_index(vip_id, half, slot), 0)
                    .map_err(map_err("RINGS"))
            })
            .collect()
    }

    /// Writes `changes` (slot, backend id) into one half of a VIP's ring.
    /// Writing the live half would let packets see a half-written table:
    /// callers write the other half and then [`Dataplane::flip`].
    pub fn write_ring_slots(
        &mut self,
        vip_id: u32,
        half: u32,
        changes: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        self.check_vip_id(vip_id)?;
        let mut written = 0;
        for (slot, backend) in changes {
            let index = self.slot_index(vip_id, half, slot);
            self.rings
                .set(index, backend, 0)
                .map_err(map_err("RINGS"))?;
            written += 1;
        }
        Ok(written)
    }

    /// Makes `half` the live ring of the VIP: one word, so a packet sees
    /// either the old table or the new one, never a mix.
    pub fn flip(&mut self, vip_id: u32, half: u32) -> Result<(), DataplaneError> {
        self.check_vip_id(vip_id)?;
        self.ring_select
            .set(vip_id, half & 1, 0)
            .map_err(map_err("RING_SELECT"))
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
        let n = self.write_ring_slots(
            vip_id,
            next,
            ring.iter().enumerate().map(|(s, b)| (s as u32, *b)),
        )?;
        self.flip(vip_id, next)?;
        Ok(n)
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

    /// Outcome counters summed over CPUs, index = `Reason`.
    pub fn reason_counters(&self) -> Result<Vec<(Reason, u64)>, DataplaneError> {
        Reason::ALL
            .iter()
            .map(|r| {
                let per_cpu = self.stats.get(&(*r as u32), 0).map_err(map_err("STATS"))?;
                Ok((*r, per_cpu.iter().sum()))
            })
            .collect()
    }

    pub fn vip_traffic(&self, vip_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(sum(self
            .vip_stats
            .get(&vip_id, 0)
            .map_err(map_err("VIP_STATS"))?))
    }

    pub fn backend_traffic(&self, backend_id: u32) -> Result<TrafficStats, DataplaneError> {
        Ok(sum(self
            .backend_stats
            .get(&backend_id, 0)
            .map_err(map_err("BACKEND_STATS"))?))
    }
}

fn sum(values: PerCpuValues<TrafficStats>) -> TrafficStats {
    values
        .iter()
        .fold(TrafficStats::default(), |a, v| TrafficStats {
            packets: a.packets + v.packets,
            bytes: a.bytes + v.bytes,
            new_flows: a.new_flows + v.new_flows,
        })
}
