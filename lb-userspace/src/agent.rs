//! The running agent: loads or adopts the pinned data path, attaches it,
//! keeps the balancer in step with configuration, health, the API and etcd,
//! serves metrics and the API, and exits without touching the data path, so
//! the next agent (a restart or an upgrade) takes over with no flow noticing.
//!
//! [`Shared`] is generic over [`Tables`]: the API and every state change
//! run in tests against in-memory tables, without root.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use aya::programs::XdpMode;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    balancer::{ApplyError, Balancer, DrillPreview},
    config::{self, Config, ConfigError, FieldError, XdpModeCfg},
    dataplane::{self, Dataplane, DataplaneError, Limits},
    health::{self, Checker, Verdict},
    metrics,
    policy::EventKind,
    sources::{FailSelector, Sources},
    tables::Tables,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(
        "lbd needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing: {}): it loads XDP programs, pins maps under bpffs and attaches to interfaces; run it as root or through the packaged systemd unit",
        .0.join(", ")
    )]
    MissingCapabilities(Vec<&'static str>),
    #[error("{0}")]
    Setup(String),
}

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

/// A running failover drill.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DrillRun {
    pub id: u64,
    pub fail: String,
    /// Seconds since the Unix epoch when it reverts by itself.
    pub ends_at: f64,
}

/// State shared by the agent's tasks.
pub struct Shared<T: Tables> {
    pub balancer: Mutex<Balancer<T>>,
    pub sources: Mutex<Sources>,
    pub config_path: Option<PathBuf>,
    pub reloads_ok: AtomicU64,
    pub reloads_rejected: AtomicU64,
    checker: Mutex<Option<Checker>>,
    verdicts: Option<mpsc::Sender<Verdict>>,
    drill: Mutex<Option<DrillRun>>,
    drill_seq: AtomicU64,
    /// Extra gauges other components publish (etcd feed state...).
    pub extra_gauges: Mutex<Vec<(&'static str, &'static str, f64)>>,
    /// The etcd feed's state, when there is a feed.
    pub etcd_status: Mutex<Option<crate::etcd::FeedStatus>>,
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
            extra_gauges: Mutex::new(vec![]),
            etcd_status: Mutex::new(None),
        }
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
        let mut b = self.balancer.lock().expect("not poisoned");
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
    pub fn reload_file(&self) -> Result<(), AgentError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let source = path.display().to_string();
        let result = config::load(path).map_err(AgentError::from).and_then(|c| {
            self.change(&source, |s| {
                s.file = c;
                Ok(())
            })
            .map_err(|e| AgentError::Setup(format!("{source}: {e}")))
        });
        match &result {
            Ok(()) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                let mut b = self.balancer.lock().expect("not poisoned");
                b.events.record(
                    EventKind::ConfigRejected,
                    None,
                    None,
                    format!("kept the running configuration: {e}"),
                );
            }
        }
        result
    }

    pub fn restart_checks(&self, c: &Config) {
        let Some(tx) = &self.verdicts else { return };
        let mut slot = self.checker.lock().expect("not poisoned");
        let next = Checker::start(
            health::targets(c),
            c.health.max_concurrent_checks,
            tx.clone(),
            slot.take(),
        );
        *slot = Some(next);
    }

    pub fn drill(&self) -> Option<DrillRun> {
        self.drill.lock().expect("not poisoned").clone()
    }

    /// Previews a drill without changing anything.
    pub fn preview_drill(&self, fail: &FailSelector) -> Vec<DrillPreview> {
        self.balancer
            .lock()
            .expect("not poisoned")
            .simulate(fail, Instant::now())
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
            let mut b = self.balancer.lock().expect("not poisoned");
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
                let mut b = self.balancer.lock().expect("not poisoned");
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
        let b = self.balancer.lock().expect("not poisoned");
        let state = b.state();
        let dp = b.tables();
        let reasons = dp.reason_counters().unwrap_or_default();
        let extra = self.extra_gauges.lock().expect("not poisoned").clone();
        metrics::render(&metrics::Snapshot {
            state: &state,
            reasons: &reasons,
            vip_traffic: &|id| dp.vip_traffic(id).unwrap_or_default(),
            backend_traffic: &|id| dp.backend_traffic(id).unwrap_or_default(),
            events: b.events.counts(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_rejected: self.reloads_rejected.load(Ordering::Relaxed),
            extra: &extra,
        })
    }

    /// Feeds a health verdict and rewrites what changed.
    pub fn on_verdict(&self, v: &Verdict) {
        let mut b = self.balancer.lock().expect("not poisoned");
        if b.set_health(&v.vip, v.backend, v.up, &v.reason)
            && let Err(e) = b.reconcile(Instant::now())
        {
            tracing::error!(error = %e, "writing the tables after a health change failed");
        }
    }
}

/// The capabilities the agent needs that its effective set lacks:
/// CAP_BPF to create maps and programs and to pin them; CAP_PERFMON, without
/// which the verifier refuses the balancer ("pointer arithmetic prohibited
/// for !root" on its packet bounds checks); CAP_NET_ADMIN to attach XDP and
/// set the interfaces' forwarding sysctls. CAP_SYS_ADMIN stands in for the
/// first two, as it does in the kernel; the agent does not need it.
pub fn missing_capabilities() -> Vec<&'static str> {
    const NET_ADMIN: u32 = 12;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| effective & (1 << bit) != 0;
    [
        (has(BPF) || has(SYS_ADMIN), "CAP_BPF"),
        (has(PERFMON) || has(SYS_ADMIN), "CAP_PERFMON"),
        (has(NET_ADMIN), "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, name)| name)
    .collect()
}

/// Loads (or adopts) the data path and attaches it to the configured
/// interfaces.
pub fn start_dataplane(c: &Config, reset_state: bool) -> Result<Dataplane, AgentError> {
    let missing = missing_capabilities();
    if !missing.is_empty() {
        return Err(AgentError::MissingCapabilities(missing));
    }
    ensure_bpffs(&c.pin_path)?;
    let limits = Limits::from(c.limits);
    if reset_state {
        tracing::warn!(pin_path = %c.pin_path.display(), "--reset-state: discarding the pinned data path (connection table included)");
        dataplane::reset_pinned(&c.pin_path)?;
    }
    dataplane::check_pinned(&c.pin_path, &limits)?;
    let adopting = dataplane::maps_dir(&c.pin_path).join("CONNTRACK").exists();
    let mut dp = Dataplane::load(limits, Some(&c.pin_path))?;
    tracing::info!(pin_path = %c.pin_path.display(), adopted = adopting, "data path loaded");
    for iface in &c.interfaces {
        let ifindex = ifindex(&iface.name)
            .ok_or_else(|| AgentError::Setup(format!("interface {} does not exist", iface.name)))?;
        dp.add_tx_port(ifindex)?;
        let mode = match iface.xdp_mode {
            XdpModeCfg::Driver => XdpMode::Driver,
            XdpModeCfg::Generic => XdpMode::Skb,
        };
        let adopted = dp.attach(&iface.name, mode)?;
        ensure_forwarding(&iface.name);
        tracing::info!(interface = %iface.name, ?mode, replaced_in_place = adopted, "attached");
    }
    Ok(dp)
}

/// The kernel's FIB helper refuses to resolve next hops for interfaces
/// without forwarding; turn it on, or say so.
fn ensure_forwarding(iface: &str) {
    for (family, path) in [
        (
            "ipv4",
            format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"),
        ),
        (
            "ipv6",
            format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"),
        ),
    ] {
        if let Ok(v) = std::fs::read_to_string(&path)
            && v.trim() != "1"
        {
            match std::fs::write(&path, "1") {
                Ok(()) => tracing::info!(
                    interface = iface,
                    family,
                    "enabled forwarding (bpf_fib_lookup needs it)"
                ),
                Err(e) => {
                    tracing::warn!(interface = iface, family, error = %e, "forwarding is off: next hops will not resolve (drop_no_next_hop)")
                }
            }
        }
    }
}

fn ensure_bpffs(pin_path: &Path) -> Result<(), AgentError> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let on_bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(mnt), Some(fs)) = (f.nth(1), f.next()) else {
            return false;
        };
        fs == "bpf" && pin_path.starts_with(mnt)
    });
    if !on_bpffs {
        return Err(AgentError::Setup(format!(
            "{} is not on a bpffs mount: mount it with `mount -t bpf bpf /sys/fs/bpf` (or set pin_path); \
             inside `ip netns exec` /sys is remounted, use `nsenter --net=/var/run/netns/NAME` instead",
            pin_path.display()
        )));
    }
    std::fs::create_dir_all(pin_path)
        .map_err(|e| AgentError::Setup(format!("create {}: {e}", pin_path.display())))?;
    Ok(())
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Options beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub reset_state: bool,
    pub etcd: Option<crate::etcd::EtcdOptions>,
}

/// Runs the agent until SIGTERM/SIGINT. The data path stays attached and
/// pinned when it returns.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    opts: RunOptions,
) -> Result<(), AgentError> {
    let dp = start_dataplane(&config, opts.reset_state)?;
    let balancer = Balancer::new(dp, config.clone(), Instant::now())?;
    let (tx, mut verdicts) = mpsc::channel(1024);
    let shared = Arc::new(Shared::new(
        balancer,
        Sources::new(config.clone()),
        config_path.clone(),
        Some(tx),
    ));
    shared.restart_checks(&config);

    if let Some(addr) = config.metrics_listen {
        let s = shared.clone();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Setup(format!("metrics.listen {addr}: {e}")))?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let s = s.clone();
                    async move { ([("content-type", "text/plain; version=0.0.4")], s.metrics()) }
                }),
            );
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
    }
    crate::api::serve(shared.clone(), &config).await?;
    if let Some(etcd) = opts.etcd.clone() {
        crate::etcd::spawn_feed(shared.clone(), etcd);
    }

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| AgentError::Setup(format!("SIGHUP handler: {e}")))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Setup(format!("SIGTERM handler: {e}")))?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_mtime = config_path.as_deref().and_then(mtime);
    tracing::info!(vips = config.vips.len(), "lbd running");
    loop {
        tokio::select! {
            Some(v) = verdicts.recv() => shared.on_verdict(&v),
            _ = tick.tick() => {
                // Drain timeouts and fail-back timers advance with time.
                if let Err(e) = shared.balancer.lock().expect("not poisoned").reconcile(Instant::now()) {
                    tracing::error!(error = %e, "periodic reconcile failed");
                }
                let m = config_path.as_deref().and_then(mtime);
                if m != last_mtime {
                    last_mtime = m;
                    tracing::info!("configuration file changed: reloading");
                    if let Err(e) = shared.reload_file() {
                        tracing::error!("reload rejected, running state kept: {e}");
                    }
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                if let Err(e) = shared.reload_file() {
                    tracing::error!("reload rejected, running state kept: {e}");
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("exiting; the data path stays attached and pinned for the next lbd");
    Ok(())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
