//! The agent's state as its tasks share it — the API, the etcd feed, the
//! health checks and the main loop each hold an `Arc<Shared>`, and every
//! change to the running configuration goes through [`Shared::change`]:
//! validated, merged, applied atomically, or refused with nothing changed.
//!
//! Generic over [`Tables`]: the API and every state change run in tests
//! against in-memory tables, without root.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    health::{self, Checker, Verdict},
    metrics,
};
use crate::core::{
    balancer::{ApplyError, Balancer, DrillPreview, Health},
    config::{self, Config, ConfigError, FieldError},
    events::EventKind,
    sources::{FailSelector, Sources},
    tables::Tables,
};

/// Why a change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("invalid: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Why a reload of the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{source_name}: {error}")]
    Change {
        source_name: String,
        error: ChangeError,
    },
}

/// A running failover drill.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillRun {
    pub id: u64,
    pub fail: String,
    /// Seconds since the Unix epoch when it reverts by itself.
    pub ends_at: f64,
}

/// State of the etcd feed, shown in `/v1/state` and metrics.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeedStatus {
    pub endpoint: String,
    pub connected: bool,
    pub revision: i64,
    pub last_error: Option<String>,
    pub rejected_keys: BTreeMap<String, String>,
}

/// Configuration reloads so far, by result.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Reloads {
    pub applied: u64,
    pub rejected: u64,
}

pub struct Shared<T: Tables> {
    pub balancer: Mutex<Balancer<T>>,
    pub sources: Mutex<Sources>,
    pub config_path: Option<PathBuf>,
    reloads_ok: AtomicU64,
    reloads_rejected: AtomicU64,
    checker: Mutex<Option<Checker>>,
    verdicts: Option<mpsc::Sender<Verdict>>,
    drill: Mutex<Option<DrillRun>>,
    drill_seq: AtomicU64,
    /// The etcd feed's state, when there is a feed.
    pub etcd_status: Mutex<Option<FeedStatus>>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl<T: Tables + Send + 'static> Shared<T> {
    /// `verdicts`: where health checks report (None: no health checking,
    /// as in API tests).
    pub fn new(
        balancer: Balancer<T>,
        sources: Sources,
        config_path: Option<PathBuf>,
        verdicts: Option<mpsc::Sender<Verdict>>,
    ) -> Self {
        Self {
            balancer: Mutex::new(balancer),
            sources: Mutex::new(sources),
            config_path,
            reloads_ok: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            checker: Mutex::new(None),
            verdicts,
            drill: Mutex::new(None),
            drill_seq: AtomicU64::new(0),
            etcd_status: Mutex::new(None),
        }
    }

    /// The balancer, locked.
    pub fn balancer(&self) -> MutexGuard<'_, Balancer<T>> {
        self.balancer.lock().expect("not poisoned")
    }

    /// Records an event in the balancer's log.
    pub fn record(&self, kind: EventKind, reason: impl Into<String>) {
        self.balancer().events.record(kind, None, None, reason);
    }

    /// Changes the sources with `f`, then applies what they add up to. If
    /// the result is invalid or cannot be applied, nothing changes.
    pub fn change(
        &self,
        source: &str,
        f: impl FnOnce(&mut Sources) -> Result<(), ChangeError>,
    ) -> Result<(), ChangeError> {
        let mut sources = self.sources.lock().expect("not poisoned");
        let mut next = sources.clone();
        f(&mut next)?;
        let merged = next.merged().map_err(ChangeError::Invalid)?;
        let mut b = self.balancer();
        match b.apply(merged.clone(), Instant::now()) {
            Ok(()) => {
                b.events.record(
                    EventKind::ConfigApplied,
                    None,
                    None,
                    format!("applied change from {source}"),
                );
                drop(b);
                *sources = next;
                drop(sources);
                self.restart_checks(&merged);
                Ok(())
            }
            Err(e) => {
                b.events.record(
                    EventKind::ConfigRejected,
                    None,
                    None,
                    format!("{source}: {e}"),
                );
                Err(e.into())
            }
        }
    }

    /// Re-reads the configuration file (SIGHUP or a change on disk); an
    /// invalid file leaves everything as it was.
    pub fn reload_file(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let source = path.display().to_string();
        let result = config::load(path).map_err(ReloadError::from).and_then(|c| {
            self.change(&source, |s| {
                s.file = c;
                Ok(())
            })
            .map_err(|error| ReloadError::Change {
                source_name: source.clone(),
                error,
            })
        });
        match &result {
            Ok(()) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                self.record(
                    EventKind::ConfigRejected,
                    format!("kept the running configuration: {e}"),
                );
            }
        }
        result
    }

    pub fn reloads(&self) -> Reloads {
        Reloads {
            applied: self.reloads_ok.load(Ordering::Relaxed),
            rejected: self.reloads_rejected.load(Ordering::Relaxed),
        }
    }

    pub fn restart_checks(&self, c: &Config) {
        let Some(tx) = &self.verdicts else { return };
        let mut slot = self.checker.lock().expect("not poisoned");
        let next = Checker::start(
            health::targets(c),
            c.health.max_concurrent_checks,
            tx.clone(),
            slot.take(),
            &std::collections::BTreeMap::new(),
        );
        *slot = Some(next);
    }

    /// Feeds a health verdict and rewrites what changed.
    pub fn on_verdict(&self, v: &Verdict) {
        let mut b = self.balancer();
        let health = Health {
            up: v.up,
            reachable: v.reachable,
            reason: v.reason.clone(),
        };
        if b.set_health(&v.vip, v.backend, health)
            && let Err(e) = b.reconcile(Instant::now())
        {
            tracing::error!(error = %e, "writing the tables after a health change failed");
        }
    }

    pub fn drill(&self) -> Option<DrillRun> {
        self.drill.lock().expect("not poisoned").clone()
    }

    /// Previews a drill without changing anything.
    pub fn preview_drill(&self, fail: &FailSelector) -> Vec<DrillPreview> {
        self.balancer().simulate(fail, Instant::now())
    }

    /// Starts a drill that reverts by itself after `duration`.
    pub fn start_drill(
        self: &Arc<Self>,
        fail: FailSelector,
        duration: Duration,
    ) -> Result<DrillRun, ChangeError> {
        let mut slot = self.drill.lock().expect("not poisoned");
        if let Some(d) = slot.as_ref() {
            return Err(ChangeError::Conflict(format!(
                "drill {} ({}) is already running; stop it first",
                d.id, d.fail
            )));
        }
        let id = self.drill_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let run = DrillRun {
            id,
            fail: fail.to_string(),
            ends_at: unix_now() + duration.as_secs_f64(),
        };
        {
            let mut b = self.balancer();
            b.events.record(
                EventKind::TierSwitch,
                None,
                None,
                format!("drill {id}: failing {fail} for {duration:?}"),
            );
            b.set_drill(Some(fail), Instant::now())?;
        }
        *slot = Some(run.clone());
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            let _ = me.stop_drill(Some(id));
        });
        Ok(run)
    }

    /// Ends the running drill (only drill `id` if given).
    pub fn stop_drill(&self, id: Option<u64>) -> Result<Option<DrillRun>, ChangeError> {
        let mut slot = self.drill.lock().expect("not poisoned");
        match slot.as_ref() {
            Some(d) if id.is_none_or(|i| i == d.id) => {
                let mut b = self.balancer();
                b.set_drill(None, Instant::now())?;
                b.events.record(
                    EventKind::TierSwitch,
                    None,
                    None,
                    format!("drill {} ({}) ended: reverted", d.id, d.fail),
                );
                Ok(slot.take())
            }
            _ => Ok(None),
        }
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics(&self) -> String {
        let feed = self.etcd_status.lock().expect("not poisoned").clone();
        let b = self.balancer();
        let state = b.state();
        let dp = b.tables();
        let reasons = dp.reason_counters().unwrap_or_default();
        metrics::render(&metrics::Snapshot {
            state: &state,
            reasons: &reasons,
            vip_traffic: &|id| dp.vip_traffic(id).unwrap_or_default(),
            backend_traffic: &|id| dp.backend_traffic(id).unwrap_or_default(),
            events: b.events.counts(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_rejected: self.reloads_rejected.load(Ordering::Relaxed),
            extra: &feed.map_or_else(Vec::new, |f| {
                metrics::etcd_gauges(f.connected, f.revision, f.rejected_keys.len())
            }),
        })
    }
}
