//! `lbctl stats [--watch]`: rates per VIP and backend between two readings
//! of the counters, and the data path's reasons by name.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb::{daemon::api::wire::AgentState, kernel::inspect::Pinned};
use lb_common::{Reason, maps::TrafficStats};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    fail,
    join::vip_name,
    table::{self, Row},
};

/// One reading of the counters.
pub struct Sample {
    pub vips: Vec<(u32, TrafficStats)>,
    /// (VIP id, reason, total) of guard and hygiene drops.
    pub drops: Vec<(u32, Reason, u64)>,
    /// (backend id, VIP id, address, counters).
    pub backends: Vec<(u32, u32, IpAddr, TrafficStats)>,
    pub reasons: Vec<(Reason, u64)>,
}

impl Sample {
    /// VIP `id`'s counters in this reading (zero if it was not there yet).
    pub fn vip(&self, id: u32) -> TrafficStats {
        self.vips
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, t)| *t)
            .unwrap_or_default()
    }

    /// Backend `id`'s counters in this reading (zero if it was not there yet).
    pub fn backend(&self, id: u32) -> TrafficStats {
        self.backends
            .iter()
            .find(|(i, ..)| *i == id)
            .map(|(.., t)| *t)
            .unwrap_or_default()
    }
}

pub fn sample(p: &Pinned) -> Result<Sample, Fail> {
    let vips = p
        .vips()?
        .iter()
        .map(|v| Ok((v.id, p.vip_traffic(v.id)?)))
        .collect::<Result<_, Fail>>()?;
    let backends = p
        .backends()?
        .iter()
        .map(|b| Ok((b.id, b.vip_id, b.address, p.backend_traffic(b.id)?)))
        .collect::<Result<_, Fail>>()?;
    let mut drops = vec![];
    for v in p.vips()? {
        for (r, n) in p.vip_drops(v.id)? {
            drops.push((v.id, r, n));
        }
    }
    Ok(Sample {
        vips,
        drops,
        backends,
        reasons: p.reasons()?,
    })
}

#[derive(Serialize)]
struct Stats {
    vips: Vec<VipRate>,
    /// Packets to a VIP dropped by hygiene, its lists or its rate limits.
    vip_drops: Vec<VipDrop>,
    backends: Vec<BackendRate>,
    reasons: Vec<ReasonRate>,
}

#[derive(Serialize)]
struct VipRate {
    vip: String,
    pps: f64,
    bps: f64,
    new_flows_per_sec: f64,
    packets: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct VipDrop {
    vip: String,
    reason: &'static str,
    total: u64,
    per_sec: f64,
}

impl Row for VipDrop {
    const HEADERS: &'static [&'static str] = &["VIP", "DROPPED BY", "TOTAL", "PER SEC"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.vip.clone(),
            self.reason.into(),
            self.total.to_string(),
            format!("{:.1}", self.per_sec),
        ]
    }
}

#[derive(Serialize)]
struct BackendRate {
    vip: String,
    backend: IpAddr,
    pps: f64,
    bps: f64,
    packets: u64,
}

#[derive(Serialize)]
struct ReasonRate {
    reason: &'static str,
    /// The packet's verdict when it ended on this reason (pass, drop,
    /// forward, answer; these add up to every packet), or `step` for a
    /// reason counted on the way.
    verdict: &'static str,
    total: u64,
    per_sec: f64,
    meaning: &'static str,
}

impl Row for VipRate {
    const HEADERS: &'static [&'static str] = &["VIP", "PPS", "BPS", "NEW/S", "PACKETS"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.vip.clone(),
            format!("{:.1}", self.pps),
            format!("{:.1}", self.bps),
            format!("{:.1}", self.new_flows_per_sec),
            self.packets.to_string(),
        ]
    }
}

impl Row for BackendRate {
    const HEADERS: &'static [&'static str] = &["VIP", "BACKEND", "PPS", "BPS", "PACKETS"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.vip.clone(),
            self.backend.to_string(),
            format!("{:.1}", self.pps),
            format!("{:.1}", self.bps),
            self.packets.to_string(),
        ]
    }
}

impl Row for ReasonRate {
    const HEADERS: &'static [&'static str] = &["REASON", "VERDICT", "TOTAL", "PER SEC", "MEANING"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.reason.into(),
            self.verdict.into(),
            self.total.to_string(),
            format!("{:.1}", self.per_sec),
            self.meaning.into(),
        ]
    }
}

fn rates(state: Option<&AgentState>, a: &Sample, b: &Sample, dt: f64) -> Stats {
    let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
    let name = |id: u32| vip_name(state, id, || id.to_string());
    Stats {
        vips: b
            .vips
            .iter()
            .map(|(id, t)| {
                let before = a.vip(*id);
                VipRate {
                    vip: name(*id),
                    pps: rate(before.packets, t.packets),
                    bps: 8.0 * rate(before.bytes, t.bytes),
                    new_flows_per_sec: rate(before.new_flows, t.new_flows),
                    packets: t.packets,
                    bytes: t.bytes,
                }
            })
            .collect(),
        vip_drops: b
            .drops
            .iter()
            .filter(|(.., total)| *total > 0)
            .map(|(id, r, total)| {
                let before = a
                    .drops
                    .iter()
                    .find(|(i, q, _)| i == id && q == r)
                    .map_or(0, |(.., n)| *n);
                VipDrop {
                    vip: name(*id),
                    reason: r.name(),
                    total: *total,
                    per_sec: rate(before, *total),
                }
            })
            .collect(),
        backends: b
            .backends
            .iter()
            .map(|(id, vip, addr, t)| {
                let before = a.backend(*id);
                BackendRate {
                    vip: name(*vip),
                    backend: *addr,
                    pps: rate(before.packets, t.packets),
                    bps: 8.0 * rate(before.bytes, t.bytes),
                    packets: t.packets,
                }
            })
            .collect(),
        reasons: b
            .reasons
            .iter()
            .zip(&a.reasons)
            .filter(|((_, total), _)| *total > 0)
            .map(|((r, total), (_, before))| ReasonRate {
                reason: r.name(),
                verdict: r.verdict().map_or("step", |v| v.name()),
                total: *total,
                per_sec: rate(*before, *total),
                meaning: r.describe().trim(),
            })
            .collect(),
    }
}

pub async fn run(ctx: &Ctx<'_>, watch: bool, interval: f64) -> Result<(), Fail> {
    let pinned = ctx.pinned()?;
    let state = ctx.state().await;
    let interval = Duration::try_from_secs_f64(interval.max(0.1)).map_err(|_| {
        fail(
            2,
            format!("--interval: {interval} is not a number of seconds"),
        )
    })?;
    loop {
        let first = sample(&pinned)?;
        let t0 = Instant::now();
        tokio::time::sleep(interval).await;
        let second = sample(&pinned)?;
        let stats = rates(state.as_ref(), &first, &second, t0.elapsed().as_secs_f64());
        if ctx.output() == Output::Json && watch {
            // One object per line and interval, with its time: a stream
            // for `jq -c`, a log shipper or a file.
            let line = serde_json::json!({"time": lb::daemon::state::unix_now(), "interval_secs": interval.as_secs_f64(), "stats": stats});
            lb::outln!("{line}");
        } else if ctx.output() == Output::Json {
            table::print_json(&stats);
        } else {
            if watch {
                lb::out!("\x1b[2J\x1b[H");
            }
            table::print(Output::Table, &stats.vips);
            lb::outln!();
            if !stats.vip_drops.is_empty() {
                table::print(Output::Table, &stats.vip_drops);
                lb::outln!();
            }
            table::print(Output::Table, &stats.backends);
            lb::outln!();
            table::print(Output::Table, &stats.reasons);
        }
        if !watch {
            return Ok(());
        }
    }
}
