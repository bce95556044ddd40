//! The agent's state as its tasks share it — the API, the etcd feed, the
//! health checks and the main loop each hold an `Arc<Shared>`, and every
//! change to the running configuration goes through [`Shared::change`]:
//! validated, merged, applied atomically, or refused with nothing changed.
//!
//! Generic over [`Tables`]: the API and every state change run in tests
//! against in-memory tables, without root.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    announce::{AnnounceStatus, NodeControl},
    audit::{self, AuditLog},
    drill::{self, Baseline, DrillReport, DrillRun},
    health::{self, Checker, TrackerKey, Verdict},
    metrics,
    state::{self, Saved},
};
use crate::{
    core::{
        balancer::{ApplyError, Balancer, DrillPreview, Health},
        config::{self, Config, ConfigError, FieldError},
        events::EventKind,
        sources::{FailSelector, Sources},
        tables::Tables,
    },
    kernel::fill::Fill,
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

/// State of the etcd feed, shown in `/v1/state` and metrics.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedStatus {
    pub endpoint: String,
    pub connected: bool,
    pub revision: i64,
    pub last_error: Option<String>,
    pub rejected_keys: BTreeMap<String, String>,
}

/// The balancer on one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attachment {
    pub interface: String,
    /// `driver` (native XDP) or `generic` (skb XDP, much slower).
    pub mode: String,
    /// This agent took over the link a previous one pinned (no gap).
    pub adopted: bool,
}

/// Configuration reloads so far, by result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reloads {
    pub applied: u64,
    /// Applied, except fields read only at start-up.
    #[serde(default)]
    pub needs_restart: u64,
    pub rejected: u64,
    /// Fields changed in the file that take effect at the next restart.
    #[serde(default)]
    pub waiting_for_restart: Vec<String>,
}

impl Reloads {
    /// Counts by result, as `lb_config_reloads_total` labels them.
    pub fn by_result(&self) -> [(&'static str, u64); 3] {
        [
            ("applied", self.applied),
            ("needs_restart", self.needs_restart),
            ("rejected", self.rejected),
        ]
    }
}

pub struct Shared<T: Tables> {
    pub balancer: Mutex<Balancer<T>>,
    pub sources: Mutex<Sources>,
    pub config_path: Option<PathBuf>,
    reloads: Mutex<Reloads>,
    checker: Mutex<Option<Checker>>,
    verdicts: Option<mpsc::Sender<Verdict>>,
    drill: Mutex<Option<(DrillRun, Baseline)>>,
    last_drill: Mutex<Option<DrillReport>>,
    drill_seq: AtomicU64,
    /// The etcd feed's state, when there is a feed.
    pub etcd_status: Mutex<Option<FeedStatus>>,
    /// Where what survives a restart is saved (none in API tests).
    state_dir: Option<PathBuf>,
    saved_at: Mutex<Option<Instant>>,
    unsaved: AtomicBool,
    /// Health a previous agent saw, for the first health checks started.
    known_health: Mutex<BTreeMap<TrackerKey, bool>>,
    /// The operator's decisions for this node (drained, restart hold).
    pub node: Mutex<NodeControl>,
    /// The route control's state, when routes are announced.
    pub announce: Mutex<Option<AnnounceStatus>>,
    /// Wakes the route control: something it decides from changed.
    pub route_wake: tokio::sync::Notify,
    /// This agent's own probe verdicts, by (VIP name, backend).
    local_health: Mutex<BTreeMap<(String, IpAddr), Health>>,
    /// The other agents' probe verdicts, from etcd (the fleet view).
    peers: Mutex<BTreeMap<String, Peer>>,
    /// Wakes the fleet publisher: a local verdict changed.
    pub publish_wake: tokio::sync::Notify,
    /// Every accepted and rejected change (none in API tests without a
    /// state directory: the log stream only).
    audit: Mutex<Option<AuditLog>>,
    /// Seconds since the Unix epoch at start.
    pub started_at: f64,
    /// Where the balancer is attached (none in API tests).
    pub attachments: Vec<Attachment>,
    /// The bounded tables' fill, last counted (see `daemon::fill`).
    pub fill: Mutex<Vec<Fill>>,
}

/// Another agent's own probe verdicts, as it published them.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub probes: BTreeMap<(String, IpAddr), bool>,
}

/// A peer's view older than this does not vote (its agent is gone or cut
/// off; the lease would remove it a few seconds later).
const PEER_FRESH_SECS: f64 = 10.0;

use state::unix_now;

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
            reloads: Mutex::new(Reloads::default()),
            checker: Mutex::new(None),
            verdicts,
            drill: Mutex::new(None),
            last_drill: Mutex::new(None),
            drill_seq: AtomicU64::new(0),
            etcd_status: Mutex::new(None),
            state_dir: None,
            saved_at: Mutex::new(None),
            unsaved: AtomicBool::new(false),
            known_health: Mutex::new(BTreeMap::new()),
            node: Mutex::new(NodeControl::default()),
            announce: Mutex::new(None),
            route_wake: tokio::sync::Notify::new(),
            local_health: Mutex::new(BTreeMap::new()),
            peers: Mutex::new(BTreeMap::new()),
            publish_wake: tokio::sync::Notify::new(),
            audit: Mutex::new(None),
            started_at: unix_now(),
            attachments: Vec::new(),
            fill: Mutex::new(Vec::new()),
        }
    }

    /// Where the data path is attached, for `/v1/health`.
    pub fn attached_to(mut self, attachments: Vec<Attachment>) -> Self {
        self.attachments = attachments;
        self
    }

    /// Saves what survives a restart under `dir` from now on, and keeps
    /// the audit log there.
    pub fn persist_to(mut self, dir: PathBuf) -> Self {
        self.audit = Mutex::new(Some(AuditLog::open(&dir)));
        self.state_dir = Some(dir);
        self
    }

    /// Records a change, accepted or rejected, in the audit log.
    pub fn audit(&self, r: &audit::Record) {
        match &mut *self.audit.lock().expect("not poisoned") {
            Some(log) => log.write(r),
            None => {
                tracing::info!(target: "audit", who = %r.who, source = %r.source, action = %r.action, result = %r.result, detail = %r.detail, "audit")
            }
        }
    }

    /// The first health checks start from what a previous agent saw.
    pub fn seed_health(&self, known: BTreeMap<TrackerKey, bool>) {
        *self.known_health.lock().expect("not poisoned") = known;
    }

    /// Something worth keeping changed: save now, or at the next tick if
    /// the last save was moments ago (a burst of health verdicts).
    pub fn changed(&self) {
        self.route_wake.notify_one();
        self.unsaved.store(true, Ordering::Relaxed);
        let recent = self
            .saved_at
            .lock()
            .expect("not poisoned")
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200));
        if !recent {
            self.save();
        }
    }

    /// Saves if something changed since the last save (the periodic tick).
    pub fn save_if_changed(&self) {
        if self.unsaved.load(Ordering::Relaxed) {
            self.save();
        }
    }

    /// Writes the state file now.
    pub fn save(&self) {
        let Some(dir) = &self.state_dir else { return };
        self.unsaved.store(false, Ordering::Relaxed);
        let drill = self.drill.lock().expect("not poisoned").clone();
        let memory = self.balancer().memory();
        let saved = {
            let sources = self.sources.lock().expect("not poisoned");
            let mut s = Saved::of(&memory, &sources, drill, Instant::now());
            s.node = self.node.lock().expect("not poisoned").clone();
            s
        };
        *self.saved_at.lock().expect("not poisoned") = Some(Instant::now());
        if let Err(e) = state::save(dir, &saved) {
            self.unsaved.store(true, Ordering::Relaxed);
            tracing::warn!(dir = %dir.display(), error = %e, "saving the agent state failed; a restart now would forget health and API changes");
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
                self.changed();
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
    /// invalid file leaves everything as it was. Fields read only at
    /// start-up keep their running values and are reported as waiting for
    /// a restart (see [`config::reload`]).
    pub fn reload_file(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let source = path.display().to_string();
        let mut waiting = vec![];
        let result = config::load(path).map_err(ReloadError::from).and_then(|c| {
            self.change(&source, |s| {
                let serving = s.merged().map_or(0, |m| m.vips.len());
                let mut trial = s.clone();
                trial.file = c.clone();
                // An invalid merge is refused by `change` with its reasons.
                let after = trial.merged().map_or(1, |m| m.vips.len());
                let plan = config::reload::plan(&s.file, c, serving, after)
                    .map_err(|e| ChangeError::Invalid(vec![e]))?;
                s.file = plan.config;
                waiting = plan.needs_restart;
                Ok(())
            })
            .map_err(|error| ReloadError::Change {
                source_name: source.clone(),
                error,
            })
        });
        let mut reloads = self.reloads.lock().expect("not poisoned");
        match &result {
            Ok(()) if waiting.is_empty() => {
                reloads.applied += 1;
                reloads.waiting_for_restart.clear();
            }
            Ok(()) => {
                reloads.needs_restart += 1;
                reloads.waiting_for_restart = waiting.iter().map(|f| f.to_string()).collect();
                drop(reloads);
                self.record(
                    EventKind::ConfigNeedsRestart,
                    format!(
                        "{source}: {} changed; kept at the running values until lbd restarts (the rest applied)",
                        waiting.join(", ")
                    ),
                );
            }
            Err(e) => {
                reloads.rejected += 1;
                drop(reloads);
                self.record(
                    EventKind::ConfigRejected,
                    format!("kept the running configuration: {e}"),
                );
            }
        }
        let record = audit::Record::new(format!("file:{source}"), "file", "reload");
        self.audit(&match &result {
            Ok(()) if waiting.is_empty() => record.accepted(""),
            Ok(()) => record.accepted(format!(
                "applied; {} wait for a restart",
                waiting.join(", ")
            )),
            Err(e) => record.rejected(e.to_string()),
        });
        result
    }

    pub fn reloads(&self) -> Reloads {
        self.reloads.lock().expect("not poisoned").clone()
    }

    pub fn restart_checks(&self, c: &Config) {
        let Some(tx) = &self.verdicts else { return };
        let mut slot = self.checker.lock().expect("not poisoned");
        let known = std::mem::take(&mut *self.known_health.lock().expect("not poisoned"));
        let next = Checker::start(
            health::targets(c),
            c.health.max_concurrent_checks,
            tx.clone(),
            slot.take(),
            &known,
        );
        *slot = Some(next);
    }

    /// Feeds a health verdict and rewrites what changed.
    pub fn on_verdict(&self, v: &Verdict) {
        let local = Health {
            up: v.up,
            reachable: v.reachable,
            reason: v.reason.clone(),
        };
        let Some(name) = self.balancer().vip_name(&v.vip) else {
            return;
        };
        self.local_health
            .lock()
            .expect("not poisoned")
            .insert((name.clone(), v.backend), local.clone());
        self.publish_wake.notify_one();
        let effective = self.effective(&name, v.backend, &local);
        let mut b = self.balancer();
        if b.set_health(&v.vip, v.backend, effective) {
            if let Err(e) = b.reconcile(Instant::now()) {
                tracing::error!(error = %e, "writing the tables after a health change failed");
            }
            drop(b);
            self.changed();
        }
    }

    /// The verdict to steer by: the fleet's majority with
    /// `health.fleet_view`, this agent's own otherwise (or when no live
    /// peer has a verdict).
    fn effective(&self, vip: &str, backend: IpAddr, local: &Health) -> Health {
        if !self.balancer().config().health.fleet_view {
            return local.clone();
        }
        let now = unix_now();
        let key = (vip.to_string(), backend);
        let votes: Vec<bool> = self
            .peers
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|p| now - p.time < PEER_FRESH_SECS)
            .filter_map(|p| p.probes.get(&key).copied())
            .collect();
        if votes.is_empty() {
            return local.clone();
        }
        let (up, why) = crate::core::fleet::agree(local.up, &votes);
        Health {
            up,
            // Down by the fleet's word but answering here: panic may use it.
            reachable: up || local.reachable,
            reason: format!("{why} (here: {})", local.reason),
        }
    }

    /// The other agents' views arrived (the etcd fleet watch; `None`: etcd
    /// did not answer, and the views age): with the fleet view on,
    /// re-judge every backend and rewrite what changed.
    pub fn set_peers(&self, peers: Option<BTreeMap<String, Peer>>) {
        if let Some(p) = peers {
            *self.peers.lock().expect("not poisoned") = p;
        }
        // Every backend, judged from its last local verdict (or, before the
        // first, the state its checks start in).
        let backends: Vec<(String, IpAddr, bool)> = {
            let b = self.balancer();
            b.config()
                .vips
                .iter()
                .flat_map(|v| {
                    v.backends
                        .iter()
                        .map(|be| (v.name.clone(), be.address, v.health_check.initially_up))
                })
                .collect()
        };
        let local = self.local_health.lock().expect("not poisoned").clone();
        let mut changed = false;
        for (vip, backend, initially_up) in backends {
            let own = local
                .get(&(vip.clone(), backend))
                .cloned()
                .unwrap_or(Health {
                    up: initially_up,
                    reachable: initially_up,
                    reason: "no check result yet".into(),
                });
            let effective = self.effective(&vip, backend, &own);
            let mut b = self.balancer();
            if let Some(ident) = b.vip_by_name(&vip) {
                changed |= b.set_health(&ident, backend, effective);
            }
        }
        if changed {
            if let Err(e) = self.balancer().reconcile(Instant::now()) {
                tracing::error!(error = %e, "writing the tables after a fleet health change failed");
            }
            self.changed();
        }
    }

    /// What the fleet publisher adds to this agent's state.
    pub fn fleet_extras(&self) -> super::etcd::fleet::Extras {
        super::etcd::fleet::Extras {
            drained: self.node.lock().expect("not poisoned").drained,
            probes: self
                .local_health
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(k, h)| (k.clone(), h.up))
                .collect(),
            announced: self
                .announce
                .lock()
                .expect("not poisoned")
                .as_ref()
                .map(|a| a.announced.clone()),
        }
    }

    /// `lbctl node drain` (`true`) or `undrain`: withdraw every VIP and
    /// keep forwarding, or announce again what should be.
    pub fn set_drained(&self, drained: bool) {
        let was = std::mem::replace(
            &mut self.node.lock().expect("not poisoned").drained,
            drained,
        );
        if was != drained {
            let (kind, what) = if drained {
                (
                    EventKind::NodeDrain,
                    "node drained: every VIP withdrawn, forwarding continues",
                )
            } else {
                (
                    EventKind::NodeUndrain,
                    "node undrained: VIPs announced again where they should be",
                )
            };
            self.record(kind, what);
        }
        self.changed();
    }

    /// Keeps the routes through an exit within `for_`: a restart follows.
    /// `None` ends a hold.
    pub fn hold(&self, for_: Option<Duration>) -> NodeControl {
        let mut n = self.node.lock().expect("not poisoned");
        n.hold_until = for_.map(|d| unix_now() + d.as_secs_f64());
        let out = n.clone();
        drop(n);
        self.changed();
        out
    }

    pub fn drill(&self) -> Option<DrillRun> {
        self.drill
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|(run, _)| run.clone())
    }

    /// The report of the last drill that ended.
    pub fn last_drill(&self) -> Option<DrillReport> {
        self.last_drill.lock().expect("not poisoned").clone()
    }

    /// Previews a drill without changing anything; a selector that matches
    /// no backend is refused (a typo must not pass for a drill).
    pub fn preview_drill(&self, fail: &FailSelector) -> Result<Vec<DrillPreview>, ChangeError> {
        let b = self.balancer();
        let matched = b
            .config()
            .vips
            .iter()
            .flat_map(|v| &v.backends)
            .any(|be| fail.matches(be.address, &be.labels));
        if !matched {
            return Err(ChangeError::Invalid(vec![FieldError {
                path: "fail".into(),
                message: format!("{fail} matches no backend of any VIP"),
            }]));
        }
        Ok(b.simulate(fail, Instant::now()))
    }

    fn backend_counters(&self) -> Vec<drill::BackendCounters> {
        let b = self.balancer();
        let tables = b.tables();
        drill::counters(&b.state(), |id| {
            tables.backend_traffic(id).unwrap_or_default()
        })
    }

    /// Starts a drill that reverts by itself after `duration`.
    pub fn start_drill(
        self: &Arc<Self>,
        fail: FailSelector,
        duration: Duration,
    ) -> Result<DrillRun, ChangeError> {
        let preview = self.preview_drill(&fail)?;
        let mut slot = self.drill.lock().expect("not poisoned");
        if let Some((d, _)) = slot.as_ref() {
            return Err(ChangeError::Conflict(format!(
                "drill {} ({}) is already running; stop it first",
                d.id, d.fail
            )));
        }
        let id = self.drill_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let now = unix_now();
        let run = DrillRun {
            id,
            fail: fail.to_string(),
            started_at: now,
            ends_at: now + duration.as_secs_f64(),
        };
        let baseline = Baseline {
            preview,
            counters: self.backend_counters(),
        };
        {
            let mut b = self.balancer();
            b.events.record(
                EventKind::DrillStart,
                None,
                None,
                format!("drill {id}: failing {fail} for {duration:?}"),
            );
            b.set_drill(Some(fail), Instant::now())?;
        }
        *slot = Some((run.clone(), baseline));
        drop(slot);
        self.schedule_drill_end(id, duration);
        self.changed();
        Ok(run)
    }

    /// Resumes a drill a previous agent started, until its end.
    pub fn resume_drill(self: &Arc<Self>, run: DrillRun, baseline: Baseline) {
        let left = run.ends_at - state::unix_now();
        let Ok(fail) = FailSelector::parse(&run.fail) else {
            return;
        };
        let left = Duration::try_from_secs_f64(left.max(0.0)).unwrap_or_default();
        if let Err(e) = self.balancer().set_drill(Some(fail), Instant::now()) {
            tracing::warn!(error = %e, "resuming drill {} failed", run.id);
            return;
        }
        self.drill_seq.fetch_max(run.id, Ordering::Relaxed);
        let id = run.id;
        *self.drill.lock().expect("not poisoned") = Some((run, baseline));
        self.schedule_drill_end(id, left);
    }

    fn schedule_drill_end(self: &Arc<Self>, id: u64, after: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = me.stop_drill(Some(id));
        });
    }

    /// Ends the running drill (only drill `id` if given) and reports it.
    pub fn stop_drill(
        &self,
        id: Option<u64>,
    ) -> Result<Option<(DrillRun, DrillReport)>, ChangeError> {
        let mut slot = self.drill.lock().expect("not poisoned");
        let Some((run, baseline)) = slot.as_ref() else {
            return Ok(None);
        };
        if id.is_some_and(|i| i != run.id) {
            return Ok(None);
        }
        let end = self.backend_counters();
        let report = drill::report(run, baseline, &end, unix_now());
        {
            let mut b = self.balancer();
            b.set_drill(None, Instant::now())?;
            b.events.record(
                EventKind::DrillEnd,
                None,
                None,
                format!("drill {} ({}) ended: reverted", run.id, run.fail),
            );
        }
        *self.last_drill.lock().expect("not poisoned") = Some(report.clone());
        let stopped = slot.take().map(|(run, _)| (run, report));
        drop(slot);
        self.changed();
        Ok(stopped)
    }

    /// One line of what the agent serves, for systemd's STATUS and
    /// `systemctl status`: VIPs, healthy backends, the feed and routes.
    pub fn status_line(&self) -> String {
        let state = self.balancer().state();
        let backends: Vec<_> = state.vips.iter().flat_map(|v| &v.backends).collect();
        let healthy = backends.iter().filter(|b| b.healthy).count();
        let mut line = format!(
            "{} VIPs, {healthy}/{} backends healthy",
            state.vips.len(),
            backends.len()
        );
        if let Some(f) = self.etcd_status.lock().expect("not poisoned").as_ref() {
            line.push_str(if f.connected {
                "; etcd connected"
            } else {
                "; etcd disconnected (serving the last revision)"
            });
        }
        if let Some(r) = self.announce.lock().expect("not poisoned").as_ref() {
            line.push_str(&format!(
                "; {} of {} VIP addresses announced{}",
                r.announced.len(),
                r.routes.len(),
                if r.bird_up {
                    ""
                } else {
                    ", BIRD not answering"
                }
            ));
        }
        line
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics(&self) -> String {
        let feed = self.etcd_status.lock().expect("not poisoned").clone();
        let mut extra = feed.map_or_else(Vec::new, |f| {
            metrics::etcd_gauges(f.connected, f.revision, f.rejected_keys.len())
        });
        let routes = self.announce.lock().expect("not poisoned").clone();
        let announced: Vec<_> = routes
            .iter()
            .flat_map(|r| {
                r.routes
                    .iter()
                    .map(|x| (x.address, r.announced.contains(&x.address)))
            })
            .collect();
        if let Some(r) = &routes {
            let drained = self.node.lock().expect("not poisoned").drained;
            extra.extend(metrics::announce_gauges(r.bird_up, drained));
        }
        let latency = self
            .checker
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(Checker::latencies)
            .unwrap_or_default();
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
            reloads: &self.reloads().by_result(),
            extra: &extra,
            announced: &announced,
            vip_drops: &|id| dp.guard_drops(id).unwrap_or_default(),
            fill: &self.fill.lock().expect("not poisoned"),
            probe_latency: &latency,
        })
    }
}
