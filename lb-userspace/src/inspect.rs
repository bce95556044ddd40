//! Reading the pinned data path directly, for `lbctl`: it works while the
//! agent is down, and `explain` runs the attached program itself on a
//! synthetic packet (BPF_PROG_TEST_RUN), so its answer cannot disagree with
//! the kernel.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::atomic::Ordering,
};

use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{Reason, limits::NO_BACKEND, maps::*};

use aya_obj::programs::XdpAttachType;

use crate::{
    balancer::words_addr,
    dataplane::{RingMemory, maps_dir, program_pin},
    decap::addr_words,
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

fn open(dir: &Path, name: &'static str) -> Result<MapData, InspectError> {
    MapData::from_pin(dir.join(name)).map_err(|source| InspectError::Map { name, source })
}

fn typed<M: TryFrom<Map, Error = MapError>>(m: Map, name: &'static str) -> Result<M, InspectError> {
    M::try_from(m).map_err(|source| InspectError::Map { name, source })
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
}

/// One VIP as the maps know it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PinnedVip {
    pub id: u32,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: &'static str,
    pub hash_mode: u32,
    pub flags: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PinnedBackend {
    pub id: u32,
    pub vip_id: u32,
    pub address: IpAddr,
    pub forwarding: &'static str,
    pub down: bool,
    pub ring_slots: usize,
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        _ => "?",
    }
}

pub fn fwd_name(f: u8) -> &'static str {
    match f {
        FWD_IPIP => "ipip",
        FWD_GUE => "gue",
        FWD_L2_DSR => "l2-dsr",
        _ => "?",
    }
}

impl Pinned {
    pub fn open(pin_dir: &Path) -> Result<Self, InspectError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(InspectError::NotRoot);
        }
        let dir = maps_dir(pin_dir);
        if !dir.join("VIPS").exists() {
            return Err(InspectError::NotPinned(pin_dir.to_path_buf()));
        }
        let config: Array<MapData, LbConfig> = typed(Map::Array(open(&dir, "CONFIG")?), "CONFIG")?;
        let config = config.get(&0, 0).map_err(|source| InspectError::Map {
            name: "CONFIG",
            source,
        })?;
        let rings_map = open(&dir, "RINGS")?;
        let info = rings_map.info().map_err(|source| InspectError::Map {
            name: "RINGS",
            source,
        })?;
        let ring_select: Array<MapData, u32> =
            typed(Map::Array(open(&dir, "RING_SELECT")?), "RING_SELECT")?;
        let max_vips = ring_select.len();
        let entries = info.max_entries() as u64 * 2;
        let ring_size = (entries / (2 * max_vips as u64).max(1)) as u32;
        let rings =
            RingMemory::map(&rings_map, entries).map_err(|e| InspectError::Other(e.to_string()))?;
        Ok(Self {
            pin_dir: pin_dir.to_path_buf(),
            config,
            vips: typed(Map::HashMap(open(&dir, "VIPS")?), "VIPS")?,
            ring_select,
            rings,
            _rings_map: rings_map,
            ring_size,
            backends: typed(Map::Array(open(&dir, "BACKENDS")?), "BACKENDS")?,
            conntrack: typed(Map::LruHashMap(open(&dir, "CONNTRACK")?), "CONNTRACK")?,
            stats: typed(Map::PerCpuArray(open(&dir, "STATS")?), "STATS")?,
            vip_stats: typed(Map::PerCpuArray(open(&dir, "VIP_STATS")?), "VIP_STATS")?,
            backend_stats: typed(
                Map::PerCpuArray(open(&dir, "BACKEND_STATS")?),
                "BACKEND_STATS",
            )?,
            explain: typed(Map::PerCpuArray(open(&dir, "EXPLAIN")?), "EXPLAIN")?,
        })
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    pub fn vips(&self) -> Result<Vec<PinnedVip>, InspectError> {
        let mut out = vec![];
        for item in self.vips.iter() {
            let (k, m) = item.map_err(|source| InspectError::Map {
                name: "VIPS",
                source,
            })?;
            if k.proto == 0 {
                continue;
            }
            let Some(address) = words_addr(k.addr, k.family) else {
                continue;
            };
            out.push(PinnedVip {
                id: m.id,
                address,
                port: u16::from_be(k.port),
                protocol: proto_name(k.proto),
                hash_mode: m.hash_mode,
                flags: m.flags,
            });
        }
        out.sort_by_key(|v| v.id);
        Ok(out)
    }

    /// The live table of a VIP.
    pub fn live_ring(&self, vip_id: u32) -> Result<Vec<u32>, InspectError> {
        let half = self
            .ring_select
            .get(&vip_id, 0)
            .map_err(|source| InspectError::Map {
                name: "RING_SELECT",
                source,
            })?
            & 1;
        let m = self.ring_size as usize;
        let start = (vip_id as usize * 2 + half as usize) * m;
        Ok((start..start + m)
            .map(|i| self.rings.slot(i).load(Ordering::Relaxed))
            .collect())
    }

    pub fn backends(&self) -> Result<Vec<PinnedBackend>, InspectError> {
        let mut out = vec![];
        let mut rings: std::collections::BTreeMap<u32, std::collections::BTreeMap<u32, usize>> =
            Default::default();
        for (id, item) in self.backends.iter().enumerate() {
            let b = item.map_err(|source| InspectError::Map {
                name: "BACKENDS",
                source,
            })?;
            if b.flags & BACKEND_F_VALID == 0 {
                continue;
            }
            let Some(address) = words_addr(b.addr, b.family) else {
                continue;
            };
            if let std::collections::btree_map::Entry::Vacant(e) = rings.entry(b.vip_id) {
                e.insert(crate::maglev::counts(&self.live_ring(b.vip_id)?));
            }
            out.push(PinnedBackend {
                id: id as u32,
                vip_id: b.vip_id,
                address,
                forwarding: fwd_name(b.fwd_mode),
                down: b.flags & BACKEND_F_DOWN != 0,
                ring_slots: rings[&b.vip_id].get(&(id as u32)).copied().unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub fn backend(&self, id: u32) -> Result<Backend, InspectError> {
        self.backends
            .get(&id, 0)
            .map_err(|source| InspectError::Map {
                name: "BACKENDS",
                source,
            })
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
                Err(source) => {
                    return Err(InspectError::Map {
                        name: "CONNTRACK",
                        source,
                    });
                }
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
        crate::dataplane::reason_totals(&self.stats).map_err(|source| InspectError::Map {
            name: "STATS",
            source,
        })
    }

    pub fn vip_traffic(&self, id: u32) -> Result<TrafficStats, InspectError> {
        Ok(crate::dataplane::sum_traffic(
            self.vip_stats
                .get(&id, 0)
                .map_err(|source| InspectError::Map {
                    name: "VIP_STATS",
                    source,
                })?,
        ))
    }

    pub fn backend_traffic(&self, id: u32) -> Result<TrafficStats, InspectError> {
        Ok(crate::dataplane::sum_traffic(
            self.backend_stats
                .get(&id, 0)
                .map_err(|source| InspectError::Map {
                    name: "BACKEND_STATS",
                    source,
                })?,
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
        let records = self
            .explain
            .get(&0, 0)
            .map_err(|source| InspectError::Map {
                name: "EXPLAIN",
                source,
            })?;
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
    pub proto: u8,
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
        if self.proto == PROTO_TCP {
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
                let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, self.proto, 0, 0];
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
                f.extend_from_slice(&[self.proto, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => {}
        }
        f.extend_from_slice(&l4);
        f
    }

    pub fn flow_key(&self) -> FlowKey {
        let (src, family) = addr_words(self.src.ip());
        FlowKey {
            src,
            dst: addr_words(self.dst.ip()).0,
            sport: self.src.port().to_be(),
            dport: self.dst.port().to_be(),
            proto: self.proto,
            family,
            _pad: [0; 2],
        }
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
