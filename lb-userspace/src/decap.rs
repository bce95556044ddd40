//! Loader for the backend decap program (`lb_decap`): it strips the
//! balancer's tunnels on backends, which then need no tunnel drivers.

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use lb_common::{
    Reason,
    maps::{DecapAddr, DecapConfig, FAMILY_V4, FAMILY_V6},
};

use crate::{dataplane::DataplaneError, objects};

pub const PROGRAM: &str = "lb_decap";

/// Address words in network order, as the data path stores them.
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => ([u32::from_ne_bytes(a.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

pub struct Decap {
    ebpf: Ebpf,
    addrs: HashMap<MapData, DecapAddr, u32>,
    config: Array<MapData, DecapConfig>,
    stats: PerCpuArray<MapData, u64>,
}

impl Decap {
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = Ebpf::load(objects::DECAP).map_err(DataplaneError::Load)?;
        let map = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or(DataplaneError::MissingMap { name })
        };
        let addrs = map(&mut ebpf, "DECAP_ADDRS")?
            .try_into()
            .map_err(|source| DataplaneError::Map {
                name: "DECAP_ADDRS",
                source,
            })?;
        let config = map(&mut ebpf, "DECAP_CONFIG")?
            .try_into()
            .map_err(|source| DataplaneError::Map {
                name: "DECAP_CONFIG",
                source,
            })?;
        let stats = map(&mut ebpf, "STATS")?
            .try_into()
            .map_err(|source| DataplaneError::Map {
                name: "STATS",
                source,
            })?;
        let mut d = Self {
            ebpf,
            addrs,
            config,
            stats,
        };
        d.program_mut()?.load().map_err(DataplaneError::Program)?;
        Ok(d)
    }

    pub fn program_mut(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.ebpf
            .program_mut(PROGRAM)
            .ok_or(DataplaneError::Program(
                aya::programs::ProgramError::InvalidName {
                    name: PROGRAM.into(),
                },
            ))?
            .try_into()
            .map_err(DataplaneError::Program)
    }

    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or(DataplaneError::Program(
                aya::programs::ProgramError::InvalidName {
                    name: PROGRAM.into(),
                },
            ))?
            .try_into()
            .map_err(DataplaneError::Program)
    }

    /// Accept tunnels addressed to `addr`.
    pub fn add_local_address(&mut self, addr: IpAddr) -> Result<(), DataplaneError> {
        let (words, family) = addr_words(addr);
        let key = DecapAddr {
            addr: words,
            family: family as u32,
        };
        self.addrs
            .insert(key, 1, 0)
            .map_err(|source| DataplaneError::Map {
                name: "DECAP_ADDRS",
                source,
            })
    }

    /// GUE port (host order; 0 disables GUE) and `DECAP_F_*` flags.
    pub fn configure(&mut self, gue_port: u16, flags: u16) -> Result<(), DataplaneError> {
        let cfg = DecapConfig {
            gue_port: gue_port.to_be(),
            flags,
        };
        self.config
            .set(0, cfg, 0)
            .map_err(|source| DataplaneError::Map {
                name: "DECAP_CONFIG",
                source,
            })
    }

    /// Attaches to `iface` in `mode`; detached when `self` is dropped.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<(), DataplaneError> {
        self.program_mut()?
            .attach(iface, mode)
            .map_err(DataplaneError::Program)?;
        Ok(())
    }

    /// Attaches to `iface` through an XDP link pinned at `link_pin`, so the
    /// program stays after this process exits (backends run no daemon). A
    /// link already pinned there gets the new program atomically.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: XdpMode,
        link_pin: &std::path::Path,
    ) -> Result<(), DataplaneError> {
        use aya::programs::{
            links::{FdLink, PinnedLink},
            xdp::XdpLink,
        };
        let pin_err = |what, e: String| DataplaneError::Pin {
            what,
            path: link_pin.to_path_buf(),
            source: std::io::Error::other(e),
        };
        if let Some(dir) = link_pin.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DataplaneError::Pin {
                what: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let prog = self.program_mut()?;
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.into(),
            mode,
            source,
        };
        if link_pin.exists() {
            let pinned = PinnedLink::from_pin(link_pin)
                .map_err(|e| pin_err("open pinned link", e.to_string()))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| pin_err("adopt pinned link", e.to_string()))?;
            let id = prog.attach_to_link(link).map_err(attach_err)?;
            drop(prog.take_link(id).map_err(attach_err)?);
        } else {
            let id = prog.attach(iface, mode).map_err(attach_err)?;
            let link = prog.take_link(id).map_err(attach_err)?;
            let fd = FdLink::try_from(link).map_err(|e| pin_err("pin link", e.to_string()))?;
            fd.pin(link_pin)
                .map_err(|e| pin_err("pin link", e.to_string()))?;
        }
        Ok(())
    }

    pub fn reason_counters(&self) -> Result<Vec<(Reason, u64)>, DataplaneError> {
        crate::dataplane::reason_totals(&self.stats).map_err(|source| DataplaneError::Map {
            name: "STATS",
            source,
        })
    }
}

/// What a decap program pinned by `lbd decap` is doing on one interface,
/// read back from the kernel (`lbctl decap`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttachedDecap {
    pub iface: String,
    pub program_id: u32,
    /// GUE port accepted (host order); 0 when GUE is off.
    pub gue_port: u16,
    pub any_destination: bool,
    pub addresses: Vec<IpAddr>,
    /// Packets, summed over CPUs: tunnels stripped, packets passed
    /// untouched (not a tunnel to this host), malformed tunnels dropped.
    pub decap_ok: u64,
    pub decap_pass: u64,
    pub decap_drop_malformed: u64,
}

/// Every decap program pinned under `pin_dir` (one link per interface).
/// The program's maps are not pinned; they are found through the link's
/// program, so this works for any `lbd decap` that ran on the host.
pub fn attached(pin_dir: &std::path::Path) -> Result<Vec<AttachedDecap>, DataplaneError> {
    use aya::{
        maps::{Map, MapInfo},
        programs::links::{FdLink, PinnedLink},
    };
    let pin_err = |path: &std::path::Path, e: String| DataplaneError::Pin {
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
            .map_err(DataplaneError::Program)?
            .unwrap_or_default();
        let mut status = AttachedDecap {
            iface,
            program_id,
            gue_port: 0,
            any_destination: false,
            addresses: vec![],
            decap_ok: 0,
            decap_pass: 0,
            decap_drop_malformed: 0,
        };
        for id in map_ids {
            let name = MapInfo::from_id(id)
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_string))
                .unwrap_or_default();
            let map_err = |source| DataplaneError::Map {
                name: "decap map",
                source,
            };
            let data = MapData::from_id(id).map_err(map_err)?;
            let map = Map::from_map_data(data).map_err(map_err)?;
            match name.as_str() {
                "DECAP_CONFIG" => {
                    let a: Array<MapData, DecapConfig> = Array::try_from(map).map_err(map_err)?;
                    let c = a.get(&0, 0).map_err(map_err)?;
                    status.gue_port = u16::from_be(c.gue_port);
                    status.any_destination = c.flags & lb_common::maps::DECAP_F_ANY_DST != 0;
                }
                "DECAP_ADDRS" => {
                    let h: HashMap<MapData, DecapAddr, u32> =
                        HashMap::try_from(map).map_err(map_err)?;
                    status.addresses = h
                        .keys()
                        .flatten()
                        .filter_map(|k| crate::balancer::words_addr(k.addr, k.family as u8))
                        .collect();
                    status.addresses.sort();
                }
                "STATS" => {
                    let s: PerCpuArray<MapData, u64> =
                        PerCpuArray::try_from(map).map_err(map_err)?;
                    let totals = crate::dataplane::reason_totals(&s).map_err(map_err)?;
                    let count = |r: Reason| totals.iter().find(|t| t.0 == r).map_or(0, |t| t.1);
                    status.decap_ok = count(Reason::DecapOk);
                    status.decap_pass = count(Reason::DecapPass);
                    status.decap_drop_malformed = count(Reason::DecapDropMalformed);
                }
                _ => {}
            }
        }
        out.push(status);
    }
    Ok(out)
}
