//! What survives an agent restart or upgrade besides the pinned maps:
//! health verdicts, drain clocks, API drains/maintenance/weights and pushed
//! backend lists, and a running drill, in `<state_dir>/state.json`. The
//! etcd feed keeps its last good revision beside it (`etcd.json`). Files
//! are replaced atomically (write, fsync, rename), so a crash leaves the
//! old or the new file, never half of one.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::{
    announce::NodeControl,
    drill::{Baseline, DrillRun},
};
use crate::core::{
    balancer::{Health, Memory},
    config::BackendCfg,
    sources::{Override, Sources},
};

const VERSION: u32 = 1;

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The state file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    /// Seconds since the Unix epoch.
    pub saved_at: f64,
    pub health: Vec<SavedHealth>,
    pub drains: Vec<SavedDrain>,
    pub overrides: Vec<SavedOverride>,
    pub pushed: BTreeMap<String, Vec<BackendCfg>>,
    pub drill: Option<(DrillRun, Baseline)>,
    /// Drained, restart hold.
    #[serde(default)]
    pub node: NodeControl,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedHealth {
    pub vip: String,
    pub backend: IpAddr,
    #[serde(flatten)]
    pub health: Health,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedDrain {
    pub vip: String,
    pub backend: IpAddr,
    /// When the drain started, seconds since the Unix epoch.
    pub since: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedOverride {
    pub vip: String,
    pub backend: IpAddr,
    #[serde(flatten)]
    pub set: Override,
}

impl Saved {
    /// What to save of a running agent, at `now`.
    pub fn of(
        memory: &Memory,
        sources: &Sources,
        drill: Option<(DrillRun, Baseline)>,
        now: Instant,
    ) -> Self {
        let unix = unix_now();
        Self {
            version: VERSION,
            saved_at: unix,
            health: memory
                .health
                .iter()
                .map(|((vip, backend), health)| SavedHealth {
                    vip: vip.clone(),
                    backend: *backend,
                    health: health.clone(),
                })
                .collect(),
            drains: memory
                .drains
                .iter()
                .map(|((vip, backend), since)| SavedDrain {
                    vip: vip.clone(),
                    backend: *backend,
                    since: unix - now.saturating_duration_since(*since).as_secs_f64(),
                })
                .collect(),
            overrides: sources
                .overrides
                .iter()
                .map(|((vip, backend), set)| SavedOverride {
                    vip: vip.clone(),
                    backend: *backend,
                    set: set.clone(),
                })
                .collect(),
            pushed: sources.pushed.clone(),
            drill,
            node: NodeControl::default(),
        }
    }

    /// Health and drain clocks as the balancer takes them, at `now`.
    pub fn memory(&self, now: Instant) -> Memory {
        let unix = unix_now();
        let instant = |since: f64| {
            let ago = Duration::try_from_secs_f64((unix - since).max(0.0)).unwrap_or_default();
            now.checked_sub(ago).unwrap_or(now)
        };
        Memory {
            health: self
                .health
                .iter()
                .map(|h| ((h.vip.clone(), h.backend), h.health.clone()))
                .collect(),
            drains: self
                .drains
                .iter()
                .map(|d| ((d.vip.clone(), d.backend), instant(d.since)))
                .collect(),
        }
    }

    /// Puts the saved API changes back into `sources`.
    pub fn restore_into(&self, sources: &mut Sources) {
        sources.pushed = self.pushed.clone();
        sources.overrides = self
            .overrides
            .iter()
            .map(|o| ((o.vip.clone(), o.backend), o.set.clone()))
            .collect();
    }
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The saved state, if there is one. A file that does not read is set
/// aside (`.bad`) and the agent starts without it, saying so.
pub fn load(dir: &Path) -> Result<Option<Saved>, String> {
    let path = state_file(dir);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    match serde_json::from_slice::<Saved>(&text) {
        Ok(s) if s.version == VERSION => Ok(Some(s)),
        Ok(s) => Err(format!(
            "{}: version {} (this agent writes {VERSION}); not used",
            path.display(),
            s.version
        )),
        Err(e) => {
            let _ = fs::rename(&path, path.with_extension("json.bad"));
            Err(format!(
                "{}: {e}; set aside as state.json.bad",
                path.display()
            ))
        }
    }
}

/// Replaces `path` with `bytes` atomically: a temporary file beside it,
/// fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_as(path, bytes, None)
}

/// [`write_atomically`] with the file's permission bits set to `mode`
/// (otherwise the process umask decides: 0600 under the unit's UMask).
pub fn write_atomically_as(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        if let Some(m) = mode {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(m))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

pub fn save(dir: &Path, s: &Saved) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    write_atomically(&state_file(dir), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_drain_clocks_keep_counting() {
        let dir = std::env::temp_dir().join(format!("lb-state-{}", std::process::id()));
        let now = Instant::now();
        let mut memory = Memory::default();
        let b: IpAddr = "10.0.1.2".parse().unwrap();
        memory
            .health
            .insert(("web".into(), b), Health::unreachable("connect refused"));
        memory
            .drains
            .insert(("web".into(), b), now - Duration::from_secs(40));
        let config = crate::core::config::parse("vips: []", "t").unwrap();
        let mut sources = Sources::new(config);
        sources.overrides.insert(
            ("web".into(), b),
            Override {
                state: Some(crate::core::config::AdminState::Draining),
                weight: None,
            },
        );
        save(&dir, &Saved::of(&memory, &sources, None, now)).unwrap();
        let back = load(&dir).unwrap().expect("saved");
        let m = back.memory(now);
        assert_eq!(m.health, memory.health);
        let since = m.drains[&("web".into(), b)];
        let off = now.duration_since(since).as_secs_f64();
        assert!((off - 40.0).abs() < 1.0, "drain clock {off}");
        let mut restored = Sources::new(sources.file.clone());
        back.restore_into(&mut restored);
        assert_eq!(restored.overrides, sources.overrides);
        // A torn or foreign file is set aside, not trusted.
        fs::write(state_file(&dir), b"{\"version\": 1, \"saved_at\"").unwrap();
        assert!(load(&dir).is_err());
        assert!(load(&dir).unwrap().is_none(), "set aside");
        let _ = fs::remove_dir_all(&dir);
    }
}
