//! Loader for the backend decap program (`lb_decap`): it strips the
//! balancer's tunnels on backends, which then need no tunnel drivers. And
//! the reader of what a pinned decap program is doing, for `lbctl decap`.

use std::{net::IpAddr, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapInfo, PerCpuArray, lpm_trie::Key},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use lb_common::{
    Reason,
    maps::{
        DECAP_F_ANY_DST, DECAP_F_ANY_SOURCE, DECAP_F_ANY_VIP, DECAP_F_DROP_REFUSED, DecapAddr,
        DecapConfig, DecapPrefix,
    },
};
use serde::{Deserialize, Serialize};

use crate::core::prefix::Prefix;

use super::{
    DataplaneError, catalog, codec,
    dataplane::{reason_totals, take, xdp_program, xdp_program_ref},
    error::map_err,
    objects, pins,
};

pub const PROGRAM: &str = "lb_decap";

pub struct Decap {
    ebpf: Ebpf,
    addrs: HashMap<MapData, DecapAddr, u32>,
    sources: LpmTrie<MapData, DecapPrefix, u32>,
    vips: HashMap<MapData, DecapAddr, u32>,
    config: Array<MapData, DecapConfig>,
    stats: PerCpuArray<MapData, u64>,
}

/// Which checks a tunnel must pass, and what happens to one that fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    /// Accept tunnels to any outer destination, not only this host's.
    pub any_destination: bool,
    /// Accept tunnels from anywhere, not only the LB source prefixes.
    pub any_source: bool,
    /// Unwrap packets for any inner destination, not only the VIPs.
    pub any_vip: bool,
    /// Drop refused tunnels (otherwise passed untouched).
    pub drop_refused: bool,
}

impl Checks {
    fn flags(self) -> u16 {
        [
            (self.any_destination, DECAP_F_ANY_DST),
            (self.any_source, DECAP_F_ANY_SOURCE),
            (self.any_vip, DECAP_F_ANY_VIP),
            (self.drop_refused, DECAP_F_DROP_REFUSED),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit)
    }

    fn from_flags(f: u16) -> Self {
        Self {
            any_destination: f & DECAP_F_ANY_DST != 0,
            any_source: f & DECAP_F_ANY_SOURCE != 0,
            any_vip: f & DECAP_F_ANY_VIP != 0,
            drop_refused: f & DECAP_F_DROP_REFUSED != 0,
        }
    }
}

fn addr_key(addr: IpAddr) -> DecapAddr {
    let (words, family) = codec::addr_words(addr);
    DecapAddr {
        addr: words,
        family: family as u32,
    }
}

fn prefix_key(p: Prefix) -> Key<DecapPrefix> {
    let (addr, family) = codec::addr_words(p.addr());
    Key::new(
        32 + u32::from(p.len()),
        DecapPrefix {
            family: u32::from(family),
            addr,
        },
    )
}

fn key_prefix(k: &Key<DecapPrefix>) -> Option<Prefix> {
    let d = k.data();
    let a = codec::words_addr(d.addr, d.family as u8)?;
    format!("{a}/{}", k.prefix_len().checked_sub(32)?)
        .parse()
        .ok()
}

/// The decap object's trace switch: 0 (off) leaves the traced variant of
/// the program dead code, which the verifier removes.
const TRACE_GLOBAL: &str = "TRACE";
/// aya-log's level global: 0 is off, `LOG_DEBUG` lets the trace through.
const LOG_LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";
const LOG_OFF: u8 = 0;
/// aya-log-common's `Level::Debug`, the level the trace logs at.
const LOG_DEBUG: u8 = 4;

impl Decap {
    /// Loads the program; with `trace`, it logs every IP packet's verdict
    /// for `lbctl trace` (read with `lbctl trace`).
    pub fn load(trace: bool) -> Result<Self, DataplaneError> {
        let level = if trace { LOG_DEBUG } else { LOG_OFF };
        let mut ebpf = EbpfLoader::new()
            .override_global(TRACE_GLOBAL, &u8::from(trace), true)
            .override_global(LOG_LEVEL_GLOBAL, &level, true)
            .load(objects::DECAP)
            .map_err(DataplaneError::Load)?;
        let mut d = Self {
            addrs: take(&mut ebpf, &catalog::DECAP_ADDRS)?,
            sources: take(&mut ebpf, &catalog::DECAP_SOURCES)?,
            vips: take(&mut ebpf, &catalog::DECAP_VIPS)?,
            config: take(&mut ebpf, &catalog::DECAP_CONFIG)?,
            stats: take(&mut ebpf, &catalog::DECAP_STATS)?,
            ebpf,
        };
        d.program_mut()?
            .load()
            .map_err(|source| DataplaneError::Program {
                name: PROGRAM,
                source,
            })?;
        Ok(d)
    }

    pub fn program_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf, PROGRAM)
    }

    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        xdp_program_ref(&self.ebpf, PROGRAM)
    }

    /// Accept tunnels addressed to `addr`.
    pub fn add_local_address(&mut self, addr: IpAddr) -> Result<(), DataplaneError> {
        self.addrs
            .insert(addr_key(addr), 1, 0)
            .map_err(map_err(catalog::DECAP_ADDRS.name))
    }

    /// Accept tunnels from `p` (an LB host or the LB fleet's prefix).
    pub fn add_lb_source(&mut self, p: Prefix) -> Result<(), DataplaneError> {
        self.sources
            .insert(&prefix_key(p), 1, 0)
            .map_err(map_err(catalog::DECAP_SOURCES.name))
    }

    /// Unwrap packets whose inner destination is the VIP address `addr`.
    pub fn add_vip(&mut self, addr: IpAddr) -> Result<(), DataplaneError> {
        self.vips
            .insert(addr_key(addr), 1, 0)
            .map_err(map_err(catalog::DECAP_VIPS.name))
    }

    /// GUE port (host order; 0 disables GUE) and the checks.
    pub fn configure(&mut self, gue_port: u16, checks: Checks) -> Result<(), DataplaneError> {
        let cfg = DecapConfig {
            gue_port: gue_port.to_be(),
            flags: checks.flags(),
        };
        self.config
            .set(0, cfg, 0)
            .map_err(map_err(catalog::DECAP_CONFIG.name))
    }

    /// Attaches to `iface` in `mode`; detached when `self` is dropped.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<(), DataplaneError> {
        self.program_mut()?
            .attach(iface, mode)
            .map_err(|source| DataplaneError::Attach {
                iface: iface.into(),
                mode,
                source,
            })?;
        Ok(())
    }

    /// Attaches to `iface` through an XDP link pinned at `link_pin`, so the
    /// program stays after this process exits (backends run no daemon). A
    /// link already pinned there gets the new program atomically.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: XdpMode,
        link_pin: &Path,
    ) -> Result<(), DataplaneError> {
        pins::attach_pinned(self.program_mut()?, iface, mode, link_pin).map(|_| ())
    }

    pub fn reason_counters(&self) -> Result<Vec<(Reason, u64)>, DataplaneError> {
        reason_totals(&self.stats).map_err(map_err(catalog::DECAP_STATS.name))
    }
}

/// What a decap program pinned by `lbd decap` is doing on one interface,
/// read back from the kernel (`lbctl decap`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachedDecap {
    pub iface: String,
    pub program_id: u32,
    /// GUE port accepted (host order); 0 when GUE is off.
    pub gue_port: u16,
    #[serde(flatten)]
    pub checks: Checks,
    pub addresses: Vec<IpAddr>,
    pub lb_sources: Vec<Prefix>,
    pub vips: Vec<IpAddr>,
    /// Packets, summed over CPUs: tunnels stripped, packets passed
    /// untouched (not a tunnel to this host), malformed tunnels dropped,
    /// tunnels refused for their source or their inner destination.
    pub decap_ok: u64,
    pub decap_pass: u64,
    pub decap_drop_malformed: u64,
    pub decap_refused_source: u64,
    pub decap_refused_inner: u64,
}

/// Every decap program pinned under `pin_dir` (one link per interface).
/// The program's maps are not pinned; they are found through the link's
/// program, so this works for any `lbd decap` that ran on the host.
pub fn attached(pin_dir: &Path) -> Result<Vec<AttachedDecap>, DataplaneError> {
    let pin_err = |path: &Path, e: String| DataplaneError::Pin {
        what: "read",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Ok(out);
    };
    let mut links: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    links.sort();
    for path in links {
        let iface = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let link =
            FdLink::from(PinnedLink::from_pin(&path).map_err(|e| pin_err(&path, e.to_string()))?);
        let program_id = link
            .info()
            .map_err(|e| pin_err(&path, e.to_string()))?
            .program_id();
        let program = aya::programs::loaded_programs()
            .flatten()
            .find(|p| p.id() == program_id)
            .ok_or_else(|| pin_err(&path, format!("program {program_id} not found")))?;
        let map_ids = program
            .map_ids()
            .map_err(|source| DataplaneError::Program {
                name: PROGRAM,
                source,
            })?
            .unwrap_or_default();
        let mut status = AttachedDecap {
            iface,
            program_id,
            gue_port: 0,
            checks: Checks::default(),
            addresses: vec![],
            lb_sources: vec![],
            vips: vec![],
            decap_ok: 0,
            decap_pass: 0,
            decap_drop_malformed: 0,
            decap_refused_source: 0,
            decap_refused_inner: 0,
        };
        for id in map_ids {
            let name = MapInfo::from_id(id)
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_string))
                .unwrap_or_default();
            let e = || map_err("decap map");
            let map = Map::from_map_data(MapData::from_id(id).map_err(e())?).map_err(e())?;
            if name == catalog::DECAP_CONFIG.name {
                let a: Array<MapData, DecapConfig> = Array::try_from(map).map_err(e())?;
                let c = a.get(&0, 0).map_err(e())?;
                status.gue_port = u16::from_be(c.gue_port);
                status.checks = Checks::from_flags(c.flags);
            } else if name == catalog::DECAP_ADDRS.name || name == catalog::DECAP_VIPS.name {
                let h: HashMap<MapData, DecapAddr, u32> = HashMap::try_from(map).map_err(e())?;
                let mut addrs: Vec<IpAddr> = h
                    .keys()
                    .flatten()
                    .filter_map(|k| codec::words_addr(k.addr, k.family as u8))
                    .collect();
                addrs.sort();
                if name == catalog::DECAP_VIPS.name {
                    status.vips = addrs;
                } else {
                    status.addresses = addrs;
                }
            } else if name == catalog::DECAP_SOURCES.name {
                let t: LpmTrie<MapData, DecapPrefix, u32> = LpmTrie::try_from(map).map_err(e())?;
                status.lb_sources = t.keys().flatten().filter_map(|k| key_prefix(&k)).collect();
                status.lb_sources.sort();
            } else if name == catalog::DECAP_STATS.name {
                let s: PerCpuArray<MapData, u64> = PerCpuArray::try_from(map).map_err(e())?;
                let totals = reason_totals(&s).map_err(e())?;
                let count = |r: Reason| totals.iter().find(|t| t.0 == r).map_or(0, |t| t.1);
                status.decap_ok = count(Reason::DecapOk);
                status.decap_pass = count(Reason::DecapPass);
                status.decap_drop_malformed = count(Reason::DecapDropMalformed);
                status.decap_refused_source = count(Reason::DecapRefusedSource);
                status.decap_refused_inner = count(Reason::DecapRefusedInner);
            }
        }
        out.push(status);
    }
    Ok(out)
}
