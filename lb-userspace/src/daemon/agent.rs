//! The running agent: loads or adopts the pinned data path, attaches it,
//! starts the API, metrics, health checks and the etcd feed around one
//! [`Shared`] state, and runs the main loop (health verdicts, the periodic
//! reconcile, reloads) until SIGTERM. It exits without touching the data
//! path, so the next agent (a restart or an upgrade) takes over with no
//! flow noticing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use aya::programs::XdpMode;
use tokio::sync::mpsc;

use super::{
    SetupError, announce, api,
    etcd::{self, Snapshot},
    fill,
    health::TrackerKey,
    shared::{Attachment, Shared},
    state,
};
use crate::{
    core::{
        balancer::{ApplyError, Balancer, Memory},
        config::{Config, ConfigError, XdpModeCfg},
        sources::Sources,
    },
    kernel::{DataplaneError, dataplane::Dataplane, host, pins},
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
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Loads (or adopts) the data path and attaches it to the configured
/// interfaces.
pub fn start_dataplane(
    c: &Config,
    reset_state: bool,
) -> Result<(Dataplane, Vec<Attachment>), AgentError> {
    let missing = host::missing_capabilities();
    if !missing.is_empty() {
        return Err(AgentError::MissingCapabilities(missing));
    }
    host::ensure_bpffs(&c.pin_path).map_err(SetupError)?;
    if reset_state {
        tracing::warn!(pin_path = %c.pin_path.display(), "--reset-state: discarding the pinned data path (connection table included)");
        pins::reset_pinned(&c.pin_path)?;
    }
    pins::check_pinned(&c.pin_path, &c.limits)?;
    let adopting = pins::maps_dir(&c.pin_path).join("CONNTRACK").exists();
    let mut dp = Dataplane::load(c.limits, Some(&c.pin_path))?;
    tracing::info!(pin_path = %c.pin_path.display(), adopted = adopting, "data path loaded");
    let mut attachments = Vec::new();
    for iface in &c.interfaces {
        let ifindex = host::ifindex(&iface.name)
            .ok_or_else(|| SetupError(format!("interface {} does not exist", iface.name)))?;
        dp.add_tx_port(ifindex)?;
        let (mode, adopted) = attach(&mut dp, &iface.name, iface.xdp_mode)?;
        host::ensure_forwarding(&iface.name);
        tracing::info!(interface = %iface.name, ?mode, replaced_in_place = adopted, "attached");
        attachments.push(Attachment {
            interface: iface.name.clone(),
            mode: match mode {
                XdpMode::Skb => "generic",
                _ => "driver",
            }
            .into(),
            adopted,
        });
    }
    Ok((dp, attachments))
}

/// Attaches in the configured mode; `auto` tries the driver first and
/// falls back to generic XDP, with a warning, when the driver refuses.
/// Returns the mode used and whether an existing pinned link was reused.
fn attach(
    dp: &mut Dataplane,
    iface: &str,
    mode: XdpModeCfg,
) -> Result<(XdpMode, bool), DataplaneError> {
    let first = match mode {
        XdpModeCfg::Auto | XdpModeCfg::Driver => XdpMode::Driver,
        XdpModeCfg::Generic => XdpMode::Skb,
    };
    match dp.attach(iface, first) {
        Ok(adopted) => Ok((first, adopted)),
        Err(e) if mode == XdpModeCfg::Auto => {
            tracing::warn!(interface = iface, error = %format!("{e:#}"), "the driver refused native XDP: falling back to generic (skb) XDP, which is much slower");
            dp.attach(iface, XdpMode::Skb).map(|a| (XdpMode::Skb, a))
        }
        Err(e) => Err(e),
    }
}

/// Options beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub reset_state: bool,
    pub etcd: Option<etcd::EtcdOptions>,
}

/// Runs the agent until SIGTERM/SIGINT. The data path stays attached and
/// pinned when it returns.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    opts: RunOptions,
) -> Result<(), AgentError> {
    let (dp, attachments) = start_dataplane(&config, opts.reset_state)?;
    let now = Instant::now();
    // What a previous agent knew besides the pinned maps.
    let saved = state::load(&config.state_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the saved agent state is not used");
        None
    });
    let mut snapshot = opts
        .etcd
        .as_ref()
        .and_then(|e| Snapshot::load(&config.state_dir, &e.prefix));
    let mut sources = Sources::new(config.clone());
    if let Some(s) = &saved {
        s.restore_into(&mut sources);
    }
    if let Some(snap) = &snapshot {
        sources.etcd = snap.vips(&config);
        snap_keep(snap, &sources);
    }
    let merged = merge_what_still_fits(&mut sources);
    if let Some(snap) = snapshot.as_mut() {
        snap.values.retain(|k, _| sources.etcd.contains_key(k));
    }
    let memory = saved.as_ref().map(|s| s.memory(now)).unwrap_or_default();
    let known = known_health(&merged, &memory);
    let balancer = Balancer::restore(dp, merged.clone(), memory, now)?;
    let (tx, mut verdicts) = mpsc::channel(1024);
    let shared = Arc::new(
        Shared::new(balancer, sources, config_path.clone(), Some(tx))
            .persist_to(config.state_dir.clone())
            .attached_to(attachments),
    );
    shared.seed_health(known);
    shared.restart_checks(&merged);
    if let Some(s) = &saved {
        // A drain outlives restarts; a restart hold is spent by this one.
        shared.node.lock().expect("not poisoned").drained = s.node.drained;
    }
    if let Some((run, baseline)) = saved.and_then(|s| s.drill)
        && run.ends_at > state::unix_now()
    {
        tracing::info!(
            drill = run.id,
            "resuming the drill a previous agent started"
        );
        shared.resume_drill(run, baseline);
    }
    shared.save();

    if let Some(addr) = config.metrics_listen {
        // Only the metrics show the fill: without them, no table walks.
        fill::spawn(shared.clone(), config.pin_path.clone());
        serve_metrics(shared.clone(), addr).await?;
    }
    api::serve(shared.clone(), &config).await?;
    if let Some(mut etcd) = opts.etcd.clone() {
        etcd.state_dir = Some(config.state_dir.clone());
        etcd::spawn_feed(shared.clone(), etcd, snapshot);
    }
    // Routes last: only an agent that serves its configuration announces.
    if let Some(a) = &config.announce {
        announce::spawn(shared.clone(), a.clone());
    }

    let signal = |kind: tokio::signal::unix::SignalKind, name: &str| {
        tokio::signal::unix::signal(kind).map_err(|e| SetupError(format!("{name} handler: {e}")))
    };
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup(), "SIGHUP")?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate(), "SIGTERM")?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_mtime = config_path.as_deref().and_then(mtime);
    let reload = |why: &str| {
        tracing::info!("{why}: reloading configuration");
        if let Err(e) = shared.reload_file() {
            tracing::error!("reload rejected, running state kept: {e}");
        }
    };
    let mut notifier = super::notify::Notifier::from_env();
    notifier.ready(shared.status_line());
    tracing::info!(
        vips = config.vips.len(),
        watchdog = ?notifier.watchdog(),
        "lbd running"
    );
    loop {
        tokio::select! {
            Some(v) = verdicts.recv() => shared.on_verdict(&v),
            _ = tick.tick() => {
                // Drain timeouts and fail-back timers advance with time.
                if let Err(e) = shared.balancer().reconcile(Instant::now()) {
                    tracing::error!(error = %e, "periodic reconcile failed");
                }
                shared.save_if_changed();
                notifier.tick(shared.status_line(), Instant::now());
                let m = config_path.as_deref().and_then(mtime);
                if m != last_mtime {
                    last_mtime = m;
                    reload("configuration file changed");
                }
            }
            _ = hup.recv() => reload("SIGHUP"),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    notifier.stopping("stopping: withdrawing routes, the data path stays attached");
    if let Some(a) = &config.announce {
        announce::on_exit(&shared, a).await;
    }
    shared.save();
    tracing::info!("exiting; the data path stays attached and pinned for the next lbd");
    Ok(())
}

/// Logs which saved etcd values are used.
fn snap_keep(snap: &Snapshot, sources: &Sources) {
    tracing::info!(
        revision = snap.revision,
        vips = sources.etcd.len(),
        "starting from the last etcd revision applied (etcd may be away)"
    );
}

/// The sources merged; what a previous agent saved that no longer fits
/// the file (API changes first, then the saved etcd VIPs) is dropped,
/// saying so, rather than refusing to start.
fn merge_what_still_fits(sources: &mut Sources) -> Config {
    if let Ok(c) = sources.merged() {
        return c;
    }
    tracing::warn!("the saved API changes no longer fit the configuration: dropped");
    sources.pushed.clear();
    sources.overrides.clear();
    if let Ok(c) = sources.merged() {
        return c;
    }
    tracing::warn!(
        "the saved etcd VIPs no longer fit the configuration: dropped until etcd answers"
    );
    sources.etcd.clear();
    sources.merged().unwrap_or_else(|_| sources.file.clone())
}

/// What the first health checks start from: the saved verdicts of the
/// backends still configured.
fn known_health(c: &Config, memory: &Memory) -> BTreeMap<TrackerKey, bool> {
    c.vips
        .iter()
        .flat_map(|v| {
            v.backends.iter().filter_map(move |b| {
                let h = memory.health.get(&(v.name.clone(), b.address))?;
                Some(((v.ident(), b.address), h.up))
            })
        })
        .collect()
}

async fn serve_metrics(
    shared: Arc<Shared<Dataplane>>,
    addr: std::net::SocketAddr,
) -> Result<(), SetupError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SetupError(format!("metrics.listen {addr}: {e}")))?;
    tracing::info!(%addr, "serving /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = shared.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], s.metrics()) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
