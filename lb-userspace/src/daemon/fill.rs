//! How full the data path's bounded tables are: the connection table (an
//! LRU: when full, the oldest flows are evicted) and the rate limiter's
//! per-source table. Counted off the agent's locks from the pinned maps
//! every [`EVERY`] on a blocking thread (a walk of a million-entry table
//! is a million syscalls), shown as `lb_map_entries` / `lb_map_capacity`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use aya::maps::{HashMap, Map, MapData, PerCpuHashMap};
use lb_common::maps::{ConnEntry, FlowKey, RateKey, RateState};

use super::shared::Shared;
use crate::{
    core::tables::Tables,
    kernel::{
        catalog::{self, MapSpec},
        pins,
    },
};

/// How often the tables are counted.
pub const EVERY: Duration = Duration::from_secs(10);

/// One table's fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u32,
}

/// The tables that fill with traffic, as pinned under `pin_dir`. The
/// unused one of the connection-table pair (one entry) is left out.
pub fn count(pin_dir: &std::path::Path) -> Vec<Fill> {
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

/// Counts every [`EVERY`] into `shared.fill`; returns at once.
pub fn spawn<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, pin_dir: PathBuf) {
    tokio::spawn(async move {
        loop {
            let dir = pin_dir.clone();
            if let Ok(fill) = tokio::task::spawn_blocking(move || count(&dir)).await {
                *shared.fill.lock().expect("not poisoned") = fill;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
