//! Reading the pinned data path directly, for `lbctl`: it works while the
//! agent is down, and `explain` runs the attached program itself on a
//! synthetic packet (BPF_PROG_TEST_RUN), so its answer cannot disagree with
//! the kernel.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp},
};
use aya_obj::programs::XdpAttachType;
use lb_common::{Reason, limits::NO_BACKEND, maps::*};

use super::{
    catalog::{self, MapSpec},
    codec,
    dataplane::{reason_totals, sum_traffic},
    pins::{maps_dir, program_pin},
    ring::RingMemory,
};
use crate::core::{
    config::{Forwarding, HashMode, Protocol},
    maglev,
};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("reading pinned BPF maps needs root (CAP_BPF): run lbctl as root")]
    NotRoot,
    #[error(
        "no pinned data path at {0}: is lbd running (or has it run) with this pin_path? (--pin-path)"
    )]
    NotPinned(PathBuf),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("program: {0}")]
    Program(#[from] ProgramError),
    #[error("{0}")]
    Other(String),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> InspectError {
    move |source| InspectError::Map { name, source }
}

fn open(dir: &Path, spec: &MapSpec) -> Result<MapData, InspectError> {
    MapData::from_pin(dir.join(spec.name)).map_err(map_err(spec.name))
}

/// A pinned map as its typed handle; `wrap` is the `Map` kind it is.
fn typed<M: TryFrom<Map, Error = MapError>>(
    dir: &Path,
    spec: &MapSpec,
    wrap: fn(MapData) -> Map,
) -> Result<M, InspectError> {
    M::try_from(wrap(open(dir, spec)?)).map_err(map_err(spec.name))
}

/// The pinned maps.
pub struct Pinned {
    pub pin_dir: PathBuf,
    pub config: LbConfig,
    vips: HashMap<MapData, VipKey, VipMeta>,
    ring_select: Array<MapData, u32>,
    rings: RingMemory,
    _rings_map: MapData,
    ring_size: u32,
    backends: Array<MapData, Backend>,
    conntrack: HashMap<MapData, FlowKey, ConnEntry>,
    stats: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, TrafficStats>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
    explain: PerCpuArray<MapData, Explain>,
    guard_stats: PerCpuArray<MapData, lb_common::maps::GuardStats>,
}

/// One VIP as the maps know it.
#[derive(Clone, Debug)]
pub struct PinnedVip {
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// `None`: a hash mode this build does not know.
    pub hash: Option<HashMode>,
    pub move_flows_on_down: bool,
}

#[derive(Clone, Debug)]
pub struct PinnedBackend {
    pub id: u32,
    pub vip_id: u32,
    pub address: IpAddr,
    pub forwarding: Option<Forwarding>,
    pub down: bool,
    pub ring_slots: usize,
}

impl Pinned {
    pub fn open(pin_dir: &Path) -> Result<Self, InspectError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(InspectError::NotRoot);
        }
        let dir = maps_dir(pin_dir);
        if !dir.join(catalog::VIPS.name).exists() {
            return Err(InspectError::NotPinned(pin_dir.to_path_buf()));
        }
        let config: Array<MapData, LbConfig> = typed(&dir, &catalog::CONFIG, Map::Array)?;
        let config = config.get(&0, 0).map_err(map_err("CONFIG"))?;
        let rings_map = open(&dir, &catalog::RINGS)?;
        let info = rings_map.info().map_err(map_err("RINGS"))?;
        let ring_select: Array<MapData, u32> = typed(&dir, &catalog::RING_SELECT, Map::Array)?;
        let max_vips = ring_select.len();
        let entries = info.max_entries() as u64 * 2;
        let ring_size = (entries / (2 * max_vips as u64).max(1)) as u32;
        let rings =
            RingMemory::map(&rings_map, entries).map_err(|e| InspectError::Other(e.to_string()))?;
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            config,
            vips: typed(&dir, &catalog::VIPS, Map::HashMap)?,
            ring_select,
            rings,
            _rings_map: rings_map,
            ring_size,
            backends: typed(&dir, &catalog::BACKENDS, Map::Array)?,
            conntrack: typed(&dir, &catalog::CONNTRACK, Map::LruHashMap)?,
            stats: typed(&dir, &catalog::STATS, Map::PerCpuArray)?,
            vip_stats: typed(&dir, &catalog::VIP_STATS, Map::PerCpuArray)?,
            backend_stats: typed(&dir, &catalog::BACKEND_STATS, Map::PerCpuArray)?,
            explain: typed(&dir, &catalog::EXPLAIN, Map::PerCpuArray)?,
            guard_stats: typed(&dir, &catalog::GUARD_STATS, Map::PerCpuArray)?,
        })
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    pub fn vips(&self) -> Result<Vec<PinnedVip>, InspectError> {
        let mut out = vec![];
        for item in self.vips.iter() {
            let (k, m) = item.map_err(map_err("VIPS"))?;
            let Some((address, port, protocol)) = codec::vip_ident(&k) else {
                continue;
            };
            out.push(PinnedVip {
                id: m.id,
                address,
                port,
                protocol,
                hash: codec::hash_mode(m.hash_mode),
                move_flows_on_down: m.flags & VIP_F_MOVE_FLOWS_ON_DOWN != 0,
            });
        }
        out.sort_by_key(|v| v.id);
        Ok(out)
    }

    /// The live table of a VIP.
    pub fn live_ring(&self, vip_id: u32) -> Result<Vec<u32>, InspectError> {
        if vip_id >= self.ring_select.len() {
            return Err(InspectError::Other(format!(
                "VIP id {vip_id} is out of range"
            )));
        }
        let half = self
            .ring_select
            .get(&vip_id, 0)
            .map_err(map_err("RING_SELECT"))?;
        Ok(self.rings.read(self.ring_size, vip_id, half))
    }

    pub fn backends(&self) -> Result<Vec<PinnedBackend>, InspectError> {
        let mut out = vec![];
        let mut rings: BTreeMap<u32, BTreeMap<u32, usize>> = BTreeMap::new();
        for (id, item) in self.backends.iter().enumerate() {
            let b = item.map_err(map_err("BACKENDS"))?;
            if b.flags & BACKEND_F_VALID == 0 {
                continue;
            }
            let Some(address) = codec::words_addr(b.addr, b.family) else {
                continue;
            };
            if let std::collections::btree_map::Entry::Vacant(e) = rings.entry(b.vip_id) {
                e.insert(maglev::counts(&self.live_ring(b.vip_id)?));
            }
            out.push(PinnedBackend {
                id: id as u32,
                vip_id: b.vip_id,
                address,
                forwarding: codec::forwarding(b.fwd_mode),
                down: b.flags & BACKEND_F_DOWN != 0,
                ring_slots: rings[&b.vip_id].get(&(id as u32)).copied().unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub fn backend(&self, id: u32) -> Result<Backend, InspectError> {
        self.backends.get(&id, 0).map_err(map_err("BACKENDS"))
    }

    /// Connection-table entries, at most `limit`, optionally filtered.
    pub fn conntrack(
        &self,
        limit: usize,
        filter: impl Fn(&FlowKey, &ConnEntry) -> bool,
    ) -> Result<Vec<(FlowKey, ConnEntry)>, InspectError> {
        let mut out = vec![];
        for item in self.conntrack.iter() {
            let (k, v) = match item {
                Ok(kv) => kv,
                // An LRU entry may vanish between listing and reading.
                Err(MapError::KeyNotFound) => continue,
                Err(source) => return Err(map_err("CONNTRACK")(source)),
            };
            if v.last_seen_ns != 0 && filter(&k, &v) {
                out.push((k, v));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn conntrack_count(&self) -> usize {
        self.conntrack.keys().filter(|k| k.is_ok()).count()
    }

    pub fn reasons(&self) -> Result<Vec<(Reason, u64)>, InspectError> {
        reason_totals(&self.stats).map_err(map_err("STATS"))
    }

    pub fn vip_traffic(&self, id: u32) -> Result<TrafficStats, InspectError> {
        Ok(sum_traffic(
            self.vip_stats.get(&id, 0).map_err(map_err("VIP_STATS"))?,
        ))
    }

    /// Guard and hygiene drops of a VIP (summed over CPUs), by reason.
    pub fn vip_drops(&self, id: u32) -> Result<Vec<(Reason, u64)>, InspectError> {
        let per_cpu = self
            .guard_stats
            .get(&id, 0)
            .map_err(map_err("GUARD_STATS"))?;
        Ok(super::dataplane::guard_totals(&per_cpu))
    }

    pub fn backend_traffic(&self, id: u32) -> Result<TrafficStats, InspectError> {
        Ok(sum_traffic(
            self.backend_stats
                .get(&id, 0)
                .map_err(map_err("BACKEND_STATS"))?,
        ))
    }

    /// Runs the attached program on a synthetic packet of the flow and
    /// reports its decision. Nothing is recorded: the packet carries the
    /// explain metadata, so the program writes no connection-table entry
    /// and no counter (see `lb_common::maps::EXPLAIN_MAGIC`).
    pub fn explain(&self, flow: &ExplainRequest) -> Result<ExplainAnswer, InspectError> {
        let mut prog = Xdp::from_pin(program_pin(&self.pin_dir), XdpAttachType::Interface)?;
        let nonce = std::process::id()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(1));
        let frame = flow.frame();
        let mut data = Vec::with_capacity(8 + frame.len());
        data.extend_from_slice(&EXPLAIN_MAGIC.to_ne_bytes());
        data.extend_from_slice(&nonce.to_ne_bytes());
        data.extend_from_slice(&frame);
        // xdp_md: data_meta = 0, data = 8 (the metadata), data_end.
        let mut ctx = [0u8; 24];
        ctx[0..4].copy_from_slice(&8u32.to_ne_bytes());
        ctx[4..8].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&flow.ingress_ifindex.to_ne_bytes());
        let mut out = vec![0u8; data.len() + 256];
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&data),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })?;
        out.truncate(r.data_size_out as usize);
        let records = self.explain.get(&0, 0).map_err(map_err("EXPLAIN"))?;
        let record = records
            .iter()
            .find(|e| e.nonce == nonce)
            .copied()
            .unwrap_or_default();
        // The program was only borrowed from its pin: don't unload anything.
        let _ = &mut prog;
        Ok(ExplainAnswer {
            action: r.return_value,
            record,
            output: out.get(8..).map(<[u8]>::to_vec).unwrap_or_default(),
        })
    }
}

/// The flow `lbctl explain` asks about.
#[derive(Clone, Debug)]
pub struct ExplainRequest {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub proto: Protocol,
    /// Send a TCP SYN (a new connection) rather than an ACK.
    pub syn: bool,
    pub ingress_ifindex: u32,
}

impl ExplainRequest {
    /// A minimal Ethernet frame of the flow (checksums are not checked by
    /// the balancer).
    pub fn frame(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        if self.proto == Protocol::Tcp {
            l4.extend_from_slice(&[
                0,
                0,
                0,
                1,
                0,
                0,
                0,
                0,
                0x50,
                if self.syn { 0x02 } else { 0x10 },
                0xff,
                0xff,
                0,
                0,
                0,
                0,
            ]);
        } else {
            l4.extend_from_slice(&[0, 8, 0, 0]);
        }
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = (20 + l4.len()) as u16;
                let proto = codec::proto_code(self.proto);
                let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let c = lb_common::csum::checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                f.extend_from_slice(&[codec::proto_code(self.proto), 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => {}
        }
        f.extend_from_slice(&l4);
        f
    }

    pub fn flow_key(&self) -> FlowKey {
        codec::flow_key(self.src, self.dst, self.proto)
    }
}

/// What the program decided.
#[derive(Clone, Debug)]
pub struct ExplainAnswer {
    pub action: u32,
    pub record: Explain,
    /// The frame as the program would have sent it.
    pub output: Vec<u8>,
}

impl ExplainAnswer {
    pub fn path(&self) -> &'static str {
        match self.record.path {
            EXPLAIN_PATH_TABLE => "connection table",
            EXPLAIN_PATH_RING => "Maglev ring",
            _ => "none",
        }
    }

    pub fn backend(&self) -> Option<u32> {
        (self.record.path != 0 && self.record.backend_id != NO_BACKEND)
            .then_some(self.record.backend_id)
    }
}
