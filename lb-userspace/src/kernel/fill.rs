//! How full the data path's bounded tables are, read from the pins: the
//! connection table (an LRU: when full, the oldest flows are evicted) and
//! the rate limiter's per-source table. A walk of a million-entry table is
//! a million syscalls: callers run it off any lock that matters (the agent
//! on a blocking thread every few seconds, `lbctl status` once).

use std::path::Path;

use aya::maps::{HashMap, Map, MapData, PerCpuHashMap};
use lb_common::maps::{ConnEntry, FlowKey, RateKey, RateState};

use super::{
    catalog::{self, MapSpec},
    pins,
};

/// One table's fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u32,
}

/// The tables that fill with traffic, as pinned under `pin_dir`. The
/// unused one of the connection-table pair (one entry) is left out.
pub fn count(pin_dir: &Path) -> Vec<Fill> {
    let dir = pins::maps_dir(pin_dir);
    let mut out = Vec::new();
    for spec in [
        &catalog::CONNTRACK,
        &catalog::CONNTRACK_PCPU,
        &catalog::RATE,
    ] {
        let Ok(data) = MapData::from_pin(dir.join(spec.name)) else {
            continue;
        };
        let Ok(capacity) = data.info().map(|i| i.max_entries()) else {
            continue;
        };
        if capacity <= 1 {
            continue;
        }
        if let Some(entries) = entries(spec, data) {
            out.push(Fill {
                map: spec.name,
                entries,
                capacity,
            });
        }
    }
    out
}

fn entries(spec: &MapSpec, data: MapData) -> Option<u64> {
    let n = if spec.name == catalog::RATE.name {
        let m: PerCpuHashMap<MapData, RateKey, RateState> =
            PerCpuHashMap::try_from(Map::PerCpuHashMap(data)).ok()?;
        m.keys().filter(Result::is_ok).count()
    } else if spec.name == catalog::CONNTRACK_PCPU.name {
        let m: PerCpuHashMap<MapData, FlowKey, ConnEntry> =
            PerCpuHashMap::try_from(Map::PerCpuLruHashMap(data)).ok()?;
        m.keys().filter(Result::is_ok).count()
    } else {
        let m: HashMap<MapData, FlowKey, ConnEntry> =
            HashMap::try_from(Map::LruHashMap(data)).ok()?;
        m.keys().filter(Result::is_ok).count()
    };
    Some(n as u64)
}
