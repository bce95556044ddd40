//! Failover drills as the agent runs them: a drill fails a cloud, region,
//! zone or backend for a while, then reverts by itself; when it ends, its
//! report sets what the data path did (new flows and packets per backend,
//! read from the maps) beside what the policy predicted.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::maps::TrafficStats;
use serde::{Deserialize, Serialize};

use crate::core::balancer::{DrillPreview, State};

/// A running failover drill.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillRun {
    pub id: u64,
    pub fail: String,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    /// When it reverts by itself.
    pub ends_at: f64,
}

/// What a drill needs to report when it ends: the prediction and the
/// counters at its start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub preview: Vec<DrillPreview>,
    pub counters: Vec<BackendCounters>,
}

/// One backend's traffic counters at a moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendCounters {
    pub vip: String,
    pub address: IpAddr,
    pub packets: u64,
    pub new_flows: u64,
}

/// Every backend's counters, from the state and the maps.
pub fn counters(state: &State, traffic: impl Fn(u32) -> TrafficStats) -> Vec<BackendCounters> {
    state
        .vips
        .iter()
        .flat_map(|v| {
            v.backends.iter().map(|b| {
                let t = traffic(b.id);
                BackendCounters {
                    vip: v.name.clone(),
                    address: b.address,
                    packets: t.packets,
                    new_flows: t.new_flows,
                }
            })
        })
        .collect()
}

/// A finished drill: per VIP and backend, the share of new flows the
/// policy predicted during the drill, the share the data path gave it, and
/// the packets and new flows counted meanwhile.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillReport {
    pub id: u64,
    pub fail: String,
    pub started_at: f64,
    pub ended_at: f64,
    pub vips: Vec<VipReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VipReport {
    pub vip: String,
    /// New flows the VIP saw during the drill (0: nothing to compare).
    pub new_flows: u64,
    pub backends: Vec<BackendReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendReport {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub predicted_share: f64,
    /// Share of the VIP's new flows during the drill (0 when it had none).
    pub measured_share: f64,
    /// measured − predicted.
    pub difference: f64,
    pub packets: u64,
    pub new_flows: u64,
}

/// The report of drill `run` from its baseline and the counters at its end.
pub fn report(
    run: &DrillRun,
    base: &Baseline,
    end: &[BackendCounters],
    ended_at: f64,
) -> DrillReport {
    let start: BTreeMap<(&str, IpAddr), &BackendCounters> = base
        .counters
        .iter()
        .map(|c| ((c.vip.as_str(), c.address), c))
        .collect();
    let moved = |c: &BackendCounters| {
        start
            .get(&(c.vip.as_str(), c.address))
            .map_or((c.packets, c.new_flows), |s| {
                (
                    c.packets.saturating_sub(s.packets),
                    c.new_flows.saturating_sub(s.new_flows),
                )
            })
    };
    let vips = base
        .preview
        .iter()
        .map(|p| {
            let rows: Vec<(&BackendCounters, (u64, u64))> = end
                .iter()
                .filter(|c| c.vip == p.vip)
                .map(|c| (c, moved(c)))
                .collect();
            let total: u64 = rows.iter().map(|(_, (_, nf))| nf).sum();
            let backends = rows
                .iter()
                .map(|(c, (packets, new_flows))| {
                    let predicted = p
                        .backends
                        .iter()
                        .find(|b| b.address == c.address)
                        .map_or(0.0, |b| b.during);
                    let measured = if total > 0 {
                        *new_flows as f64 / total as f64
                    } else {
                        0.0
                    };
                    BackendReport {
                        address: c.address,
                        predicted_share: predicted,
                        measured_share: measured,
                        difference: measured - predicted,
                        packets: *packets,
                        new_flows: *new_flows,
                    }
                })
                .collect();
            VipReport {
                vip: p.vip.clone(),
                new_flows: total,
                backends,
            }
        })
        .collect();
    DrillReport {
        id: run.id,
        fail: run.fail.clone(),
        started_at: run.started_at,
        ended_at,
        vips,
    }
}
