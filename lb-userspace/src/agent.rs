//! The running agent: loads or adopts the pinned data path, attaches it,
//! keeps the balancer in step with configuration and health, serves
//! metrics and the API, and exits without touching the data path, so the
//! next agent (a restart or an upgrade) takes over with no flow noticing.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use aya::programs::XdpMode;
use tokio::sync::mpsc;

use crate::{
    balancer::{ApplyError, Balancer},
    config::{self, Config, ConfigError, XdpModeCfg},
    dataplane::{self, Dataplane, DataplaneError, Limits},
    health::{self, Checker, Verdict},
    metrics,
    policy::EventKind,
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
        "lbd must run as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): it loads XDP programs and pins maps under bpffs"
    )]
    NotRoot,
    #[error("{0}")]
    Setup(String),
}

/// State shared by the agent's tasks.
pub struct Shared {
    pub balancer: Mutex<Balancer<Dataplane>>,
    pub config_path: Option<PathBuf>,
    pub reloads_ok: AtomicU64,
    pub reloads_rejected: AtomicU64,
    checker: Mutex<Option<Checker>>,
    verdicts: mpsc::Sender<Verdict>,
    /// Extra gauges other components publish (etcd feed state...).
    pub extra_gauges: Mutex<Vec<(&'static str, &'static str, f64)>>,
}

impl Shared {
    /// Validated configuration → running state, or the reason it was
    /// refused (the running state then stays as it was).
    pub fn apply_config(&self, new: Config, source: &str) -> Result<(), AgentError> {
        let mut b = self.balancer.lock().expect("not poisoned");
        match b.apply(new.clone(), Instant::now()) {
            Ok(()) => {
                b.events.record(
                    EventKind::ConfigApplied,
                    None,
                    None,
                    format!("applied configuration from {source}"),
                );
                drop(b);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.restart_checks(&new);
                Ok(())
            }
            Err(e) => {
                b.events.record(
                    EventKind::ConfigRejected,
                    None,
                    None,
                    format!("{source}: {e}"),
                );
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Re-reads the configuration file (SIGHUP or a change on disk).
    pub fn reload_file(&self) -> Result<(), AgentError> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        match config::load(path) {
            Ok(c) => self.apply_config(c, &path.display().to_string()),
            Err(e) => {
                let mut b = self.balancer.lock().expect("not poisoned");
                b.events.record(
                    EventKind::ConfigRejected,
                    None,
                    None,
                    format!("kept the running configuration: {e}"),
                );
                self.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    fn restart_checks(&self, c: &Config) {
        let mut slot = self.checker.lock().expect("not poisoned");
        let next = Checker::start(
            health::targets(c),
            c.health.max_concurrent_checks,
            self.verdicts.clone(),
            slot.as_ref(),
        );
        *slot = Some(next);
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics(&self) -> String {
        let b = self.balancer.lock().expect("not poisoned");
        let state = b.state();
        let reasons = b.tables().reason_counters().unwrap_or_default();
        let dp = b.tables();
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
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Loads (or adopts) the data path and attaches it to the configured
/// interfaces.
pub fn start_dataplane(c: &Config, reset_state: bool) -> Result<Dataplane, AgentError> {
    if !is_root() {
        return Err(AgentError::NotRoot);
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
/// without forwarding; say so instead of silently dropping.
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
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => match std::fs::write(&path, "1") {
                Ok(()) => tracing::info!(
                    interface = iface,
                    family,
                    "enabled forwarding (bpf_fib_lookup needs it)"
                ),
                Err(e) => {
                    tracing::warn!(interface = iface, family, error = %e, "forwarding is off: next hops will not resolve (drop_no_next_hop)")
                }
            },
            Err(_) => {}
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
            "{} is not on a bpffs mount: mount it with `mount -t bpf bpf /sys/fs/bpf` (or set pin_path)",
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

/// Runs the agent until SIGTERM/SIGINT. The data path stays attached and
/// pinned when it returns.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    reset_state: bool,
) -> Result<(), AgentError> {
    let dp = start_dataplane(&config, reset_state)?;
    let balancer = Balancer::new(dp, config.clone(), Instant::now())?;
    let (tx, mut verdicts) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        balancer: Mutex::new(balancer),
        config_path: config_path.clone(),
        reloads_ok: AtomicU64::new(0),
        reloads_rejected: AtomicU64::new(0),
        checker: Mutex::new(None),
        verdicts: tx,
        extra_gauges: Mutex::new(vec![]),
    });
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
    crate::api::spawn(shared.clone(), &config).await?;

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| AgentError::Setup(format!("SIGHUP handler: {e}")))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Setup(format!("SIGTERM handler: {e}")))?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_mtime = config_path.as_deref().and_then(mtime);
    tracing::info!(vips = config.vips.len(), "lbd running");
    loop {
        tokio::select! {
            Some(v) = verdicts.recv() => {
                let mut b = shared.balancer.lock().expect("not poisoned");
                if b.set_health(&v.vip, v.backend, v.up, &v.reason)
                    && let Err(e) = b.reconcile(Instant::now())
                {
                    tracing::error!(error = %e, "writing the tables after a health change failed");
                }
            }
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
