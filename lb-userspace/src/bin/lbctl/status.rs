//! `lbctl status` and `lbctl version`: which agent runs, since when and
//! where it is attached; the connection table's fill; the feed, the route
//! control and the health of the VIPs; and the warnings an operator
//! should act on, each on one line.

use lb::{
    core::balancer::VipState,
    daemon::{
        api::wire::{AgentState, Health},
        state::unix_now,
    },
    kernel::fill,
};
use serde::Serialize;

use crate::{Ctx, Fail, args::Output, table};

/// Above this share of the connection table, `status` warns: the LRU
/// starts evicting live flows when it is full.
const CONNTRACK_WARN: f64 = 0.8;

#[derive(Serialize)]
struct Versions {
    lbctl: &'static str,
    /// `None`: the agent did not answer.
    agent: Option<String>,
}

pub async fn version(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let agent = match ctx.agent()?.health().await {
        Ok(h) => Some(h.version),
        Err(e) => {
            eprintln!("agent: {e}");
            None
        }
    };
    let v = Versions {
        lbctl: env!("CARGO_PKG_VERSION"),
        agent,
    };
    if ctx.output() == Output::Json {
        table::print_json(&v);
    } else {
        lb::outln!("lbctl {}", v.lbctl);
        lb::outln!("lbd   {}", v.agent.as_deref().unwrap_or("(not answering)"));
    }
    Ok(())
}

#[derive(Serialize)]
struct Status {
    lbctl_version: &'static str,
    agent: Option<AgentInfo>,
    conntrack: Option<ConntrackFill>,
    vips: usize,
    backends: usize,
    healthy_backends: usize,
    /// `None`: no etcd feed.
    feed: Option<String>,
    /// `None`: no route control.
    announce: Option<String>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct AgentInfo {
    version: String,
    node: String,
    started_at: f64,
    uptime_secs: f64,
    interfaces: Vec<lb::daemon::shared::Attachment>,
}

#[derive(Serialize)]
struct ConntrackFill {
    entries: u64,
    capacity: u32,
    share: f64,
}

pub async fn show(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let agent = ctx.agent()?;
    let health = agent.health().await;
    let state = agent.state().await.ok();
    let pinned = ctx.pinned();
    // Counted as the agent counts them for its metrics.
    let tables = pinned.as_ref().ok().map(|p| fill::count(&p.pin_dir));
    let mut status = summarise(
        health.as_ref().ok(),
        state.as_ref(),
        tables.as_deref(),
        unix_now(),
    );
    if let Err(e) = &health {
        status
            .warnings
            .insert(0, format!("agent not answering: {e}"));
    }
    if let Err(f) = &pinned {
        status
            .warnings
            .push(format!("the pinned data path: {}", f.message));
    }
    if ctx.output() == Output::Json {
        table::print_json(&status);
    } else {
        print(&status);
    }
    Ok(())
}

fn summarise(
    health: Option<&Health>,
    state: Option<&AgentState>,
    tables: Option<&[fill::Fill]>,
    now: f64,
) -> Status {
    let mut warnings = Vec::new();
    let agent = health.map(|h| AgentInfo {
        version: h.version.clone(),
        node: state.map(|s| s.state.node.clone()).unwrap_or_default(),
        started_at: h.started_at,
        uptime_secs: h.uptime(now).as_secs_f64(),
        interfaces: h.interfaces.clone(),
    });
    for a in health.iter().flat_map(|h| &h.interfaces) {
        if a.mode == "generic" {
            warnings.push(format!(
                "{}: generic (skb) XDP, much slower than the driver's",
                a.interface
            ));
        }
    }
    // CONNTRACK, or CONNTRACK_PCPU with `limits.conntrack_per_cpu`.
    let conntrack = tables
        .into_iter()
        .flatten()
        .find(|f| f.map.starts_with("CONNTRACK"))
        .map(|f| ConntrackFill {
            entries: f.entries,
            capacity: f.capacity,
            share: f.entries as f64 / f64::from(f.capacity.max(1)),
        });
    if let Some(f) = &conntrack
        && f.share >= CONNTRACK_WARN
    {
        warnings.push(format!(
            "connection table {} full ({} of {}): the oldest flows are evicted when it fills",
            table::percent(f.share, 0),
            f.entries,
            f.capacity
        ));
    }
    let vips: &[VipState] = state.map_or(&[], |s| &s.state.vips);
    let backends = vips.iter().map(|v| v.backends.len()).sum();
    let healthy_backends = vips
        .iter()
        .flat_map(|v| &v.backends)
        .filter(|b| b.healthy)
        .count();
    for v in vips {
        if !v.backends.is_empty() && v.backends.iter().all(|b| !b.healthy) {
            warnings.push(format!("VIP {}: no healthy backend", v.name));
        } else if v.panic {
            warnings.push(format!(
                "VIP {}: in panic (too few healthy backends, all used)",
                v.name
            ));
        }
        for b in v.backends.iter().filter(|b| !b.healthy) {
            warnings.push(format!(
                "VIP {}: backend {} down: {}",
                v.name, b.address, b.health_reason
            ));
        }
    }
    let feed = state.and_then(|s| s.etcd.as_ref()).map(|f| {
        if !f.connected {
            warnings.push(format!(
                "etcd feed {} disconnected: {}",
                f.endpoint,
                f.last_error.as_deref().unwrap_or("-")
            ));
        }
        for (key, why) in &f.rejected_keys {
            warnings.push(format!("etcd key {key} rejected: {why}"));
        }
        format!(
            "etcd {}: {}, revision {}",
            f.endpoint,
            if f.connected {
                "connected"
            } else {
                "DISCONNECTED"
            },
            f.revision
        )
    });
    let announce = state.map(|s| &s.node_control).and_then(|n| {
        if n.control.drained {
            warnings.push("node drained: no VIP announced (lbctl node undrain)".into());
        }
        n.announce.as_ref().map(|a| {
            if !a.bird_up {
                warnings.push(format!(
                    "BIRD not answering: {}",
                    a.last_error.as_deref().unwrap_or("-")
                ));
            }
            let wanted = a.routes.iter().filter(|r| r.announce).count();
            format!(
                "{} of {} addresses announced ({wanted} wanted), BIRD {}",
                a.announced.len(),
                a.routes.len(),
                if a.bird_up { "up" } else { "DOWN" }
            )
        })
    });
    if let Some(s) = state
        && !s.reloads.waiting_for_restart.is_empty()
    {
        warnings.push(format!(
            "changed in the file, in effect at the next restart: {}",
            s.reloads.waiting_for_restart.join(", ")
        ));
    }
    Status {
        lbctl_version: env!("CARGO_PKG_VERSION"),
        agent,
        conntrack,
        vips: vips.len(),
        backends,
        healthy_backends,
        feed,
        announce,
        warnings,
    }
}

fn print(s: &Status) {
    match &s.agent {
        Some(a) => {
            lb::outln!(
                "agent      lbd {} on node {}, up {} (since {} UTC)",
                a.version,
                a.node,
                humantime::format_duration(std::time::Duration::from_secs(a.uptime_secs as u64)),
                table::clock(a.started_at)
            );
            let attached: Vec<String> = a
                .interfaces
                .iter()
                .map(|i| {
                    format!(
                        "{} {}{}",
                        i.interface,
                        i.mode,
                        if i.adopted { " (adopted)" } else { "" }
                    )
                })
                .collect();
            lb::outln!("data path  {}", or_none(&attached.join(", ")));
        }
        None => lb::outln!("agent      not answering"),
    }
    lb::outln!("lbctl      {}", s.lbctl_version);
    if let Some(f) = &s.conntrack {
        lb::outln!(
            "conntrack  {} of {} entries ({})",
            f.entries,
            f.capacity,
            table::percent(f.share, 1)
        );
    }
    lb::outln!(
        "vips       {}, backends {} of {} healthy",
        s.vips,
        s.healthy_backends,
        s.backends
    );
    lb::outln!("feed       {}", s.feed.as_deref().unwrap_or("none"));
    lb::outln!(
        "announce   {}",
        s.announce.as_deref().unwrap_or("not configured")
    );
    if s.warnings.is_empty() {
        lb::outln!("warnings   none");
    } else {
        lb::outln!("warnings   {}", s.warnings.len());
        for w in &s.warnings {
            lb::outln!("  - {w}");
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "not attached" } else { s }
}
