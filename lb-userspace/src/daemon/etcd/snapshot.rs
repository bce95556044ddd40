//! The last good etcd revision the agent applied, kept in
//! `<state_dir>/etcd.json`: an agent restarted while etcd is unreachable
//! starts from it instead of dropping every etcd VIP.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    core::config::{self, Config, Vip},
    daemon::state::write_atomically,
};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The key prefix it was read under (a different `--etcd-prefix`
    /// ignores it).
    pub prefix: String,
    pub revision: i64,
    /// Applied values by key, as etcd held them.
    pub values: BTreeMap<String, String>,
}

fn file(dir: &Path) -> std::path::PathBuf {
    dir.join("etcd.json")
}

impl Snapshot {
    /// The snapshot under `dir` for `prefix`, if any (an unreadable one is
    /// ignored with a warning: etcd will tell again).
    pub fn load(dir: &Path, prefix: &str) -> Option<Snapshot> {
        let text = std::fs::read(file(dir)).ok()?;
        match serde_json::from_slice::<Snapshot>(&text) {
            Ok(s) if s.prefix == prefix => Some(s),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the saved etcd revision does not read; starting without it");
                None
            }
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomically(&file(dir), &bytes)
    }

    /// The VIPs of the snapshot, validated against `base` (a value that
    /// no longer validates is left out).
    pub fn vips(&self, base: &Config) -> BTreeMap<String, Vip> {
        self.values
            .iter()
            .filter_map(|(k, v)| match config::parse_vip(v, &format!("etcd {k}"), base) {
                Ok(vip) => Some((k.clone(), vip)),
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "a saved etcd value no longer validates");
                    None
                }
            })
            .collect()
    }
}
