//! The pinned state under bpffs: where its pieces live, the check that a
//! state found on start fits this build and configuration, the explicit
//! reset, and attaching through a pinned XDP link so a program outlives
//! the process that attached it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{limits::MAP_LAYOUT_VERSION, maps::LbConfig};

use super::{DataplaneError, catalog, error::map_err};
use crate::core::config::Limits;

pub fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}

pub fn program_pin(pin_dir: &Path) -> PathBuf {
    pin_dir.join("prog")
}

pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join("links").join(iface)
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
    for spec in catalog::pinned() {
        let path = dir.join(spec.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(map_err(spec.name))?;
        let got_ty = info.map_type().map_err(map_err(spec.name))?;
        if got_ty != spec.kind {
            return Err(incompatible(
                spec.name,
                format!("type {got_ty:?}, this version uses {:?}", spec.kind),
            ));
        }
        if info.key_size() != spec.key_size || info.value_size() != spec.value_size {
            return Err(incompatible(
                spec.name,
                format!(
                    "key/value {}/{} bytes, this version uses {}/{} (a different map layout)",
                    info.key_size(),
                    info.value_size(),
                    spec.key_size,
                    spec.value_size
                ),
            ));
        }
        let entries = spec.entries(limits);
        if info.max_entries() != entries {
            return Err(incompatible(
                spec.name,
                format!(
                    "{} entries, the configured limits need {entries}",
                    info.max_entries()
                ),
            ));
        }
    }
    let config = dir.join(catalog::CONFIG.name);
    if config.exists() {
        let name = catalog::CONFIG.name;
        let data = MapData::from_pin(&config).map_err(map_err(name))?;
        let arr: Array<MapData, LbConfig> =
            Array::try_from(Map::Array(data)).map_err(map_err(name))?;
        let version = arr.get(&0, 0).map_err(map_err(name))?.layout_version;
        if version != 0 && version != MAP_LAYOUT_VERSION {
            return Err(incompatible(
                name,
                format!("map layout version {version}, this version uses {MAP_LAYOUT_VERSION}"),
            ));
        }
    }
    Ok(())
}

/// Removes every pinned object under `pin_dir` (maps, program, links):
/// the explicit reset. Unpinning a link detaches its program.
pub fn reset_pinned(pin_dir: &Path) -> Result<(), DataplaneError> {
    let unpin = |path: PathBuf| {
        fs::remove_file(&path).map_err(|source| DataplaneError::Pin {
            what: "unpin",
            path,
            source,
        })
    };
    for sub in ["links", "maps"] {
        if let Ok(entries) = fs::read_dir(pin_dir.join(sub)) {
            for e in entries.flatten() {
                unpin(e.path())?;
            }
        }
    }
    let prog = program_pin(pin_dir);
    if prog.exists() {
        unpin(prog)?;
    }
    Ok(())
}

/// Attaches `prog` to `iface` through an XDP link pinned at `pin`, so it
/// stays attached after this process exits. A link already pinned there (a
/// previous agent's) gets the new program atomically (`BPF_LINK_UPDATE`):
/// there is no moment without a program on the interface. Returns whether
/// an existing link was reused.
pub fn attach_pinned(
    prog: &mut Xdp,
    iface: &str,
    mode: XdpMode,
    pin: &Path,
) -> Result<bool, DataplaneError> {
    let pin_err = |what, e: String| DataplaneError::Pin {
        what,
        path: pin.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let attach_err = |source| DataplaneError::Attach {
        iface: iface.into(),
        mode,
        source,
    };
    if let Some(dir) = pin.parent() {
        fs::create_dir_all(dir).map_err(|source| DataplaneError::Pin {
            what: "create",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if pin.exists() {
        let pinned =
            PinnedLink::from_pin(pin).map_err(|e| pin_err("open pinned link", e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| pin_err("adopt pinned link", e.to_string()))?;
        let id = prog.attach_to_link(link).map_err(attach_err)?;
        // Keep ownership away from the program: dropping the program would
        // otherwise detach. The pin keeps the link alive.
        drop(prog.take_link(id).map_err(attach_err)?);
        Ok(true)
    } else {
        let id = prog.attach(iface, mode).map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let fd = FdLink::try_from(link).map_err(|e| pin_err("pin link", e.to_string()))?;
        fd.pin(pin)
            .map_err(|e| pin_err("pin link", e.to_string()))?;
        Ok(false)
    }
}
