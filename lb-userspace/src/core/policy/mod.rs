//! Cross-cloud topology policy: from configured backends, their health and
//! this node's place, the weight each backend gets in the VIP's Maglev
//! table. Pure (time is a parameter), so every mode, fail-over and fail-back
//! is unit-tested without a kernel.

use std::{collections::BTreeMap, time::Instant};

use serde::Serialize;

mod drain;
mod panic;

pub use drain::{DrainEvent, Drains, drain_expired};

use crate::core::{
    config::{AdminState, BackendCfg, Locality, Node, PolicyMode, Vip},
    events::EventKind,
};

/// Effective weights are fractions of this (ratios for the Maglev builder).
const SCALE: f64 = 1_000_000.0;

/// What the policy decided for one VIP.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Per backend (config order): weight in the table (0 = out).
    pub weights: Vec<u32>,
    /// Per backend: out of service (health or maintenance), so its
    /// established flows move if the VIP says so.
    pub down: Vec<bool>,
    /// active-passive: the tier taking traffic.
    pub active_tier: Option<usize>,
    /// local-first: fraction of traffic kept local.
    pub local_share: Option<f64>,
    /// Spreading over every backend because too few are healthy.
    pub panic: bool,
    /// Share of traffic each backend should get (for `lbctl`), summing to 1.
    pub shares: Vec<f64>,
}

/// A decision worth an operator's attention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyEvent {
    pub kind: EventKind,
    pub reason: String,
}

/// Memory of one VIP's policy between evaluations (hysteresis).
#[derive(Clone, Debug, Default)]
pub struct PolicyState {
    active_tier: Option<usize>,
    /// Since when each tier has had capacity without interruption.
    tier_ok_since: BTreeMap<usize, Instant>,
    spilling: bool,
    all_remote: bool,
    panic: bool,
}

impl PolicyState {
    pub fn active_tier(&self) -> Option<usize> {
        self.active_tier
    }
}

pub(super) fn is_local(b: &BackendCfg, node: &Node, locality: Locality) -> bool {
    let l = &b.labels;
    match locality {
        Locality::Cloud => l.cloud == node.cloud,
        Locality::Region => l.cloud == node.cloud && l.region == node.region,
        Locality::Zone => l.cloud == node.cloud && l.region == node.region && l.zone == node.zone,
    }
}

/// Sum of configured weights of the backends selected by `f`.
fn weight_of(vip: &Vip, f: impl Fn(usize, &BackendCfg) -> bool) -> f64 {
    vip.backends
        .iter()
        .enumerate()
        .filter(|(i, b)| f(*i, b))
        .map(|(_, b)| b.weight as f64)
        .sum()
}

/// What the health checks see of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub up: bool,
    /// It answers on the network (a refused or timed-out connection is not
    /// an answer). A backend that is down but answers may still take
    /// traffic in panic; one that does not answer never does while another
    /// is healthy.
    pub reachable: bool,
}

impl Seen {
    pub const UP: Seen = Seen {
        up: true,
        reachable: true,
    };
}

/// Decides the VIP's table weights. `seen[i]`: what the health checks see
/// of backend `i`. `now` drives fail-back hysteresis.
pub fn decide(
    vip: &Vip,
    node: &Node,
    seen: &[Seen],
    state: &mut PolicyState,
    now: Instant,
    events: &mut Vec<PolicyEvent>,
) -> Decision {
    let n = vip.backends.len();
    let seen_of = |i: usize| seen.get(i).copied().unwrap_or(Seen::UP);
    let active = |i: usize, b: &BackendCfg| b.state == AdminState::Active && b.weight > 0 && i < n;
    let up = |i: usize, b: &BackendCfg| active(i, b) && seen_of(i).up;
    let down: Vec<bool> = vip
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| b.state == AdminState::Maintenance || !seen_of(i).up)
        .collect();
    let mut share = vec![0.0f64; n];
    let mut decision = Decision {
        weights: vec![0; n],
        down,
        active_tier: None,
        local_share: None,
        panic: false,
        shares: vec![],
    };

    match &vip.policy.mode {
        PolicyMode::LocalFirst {
            locality,
            overprovisioning,
        } => {
            let local = |i: usize, b: &BackendCfg| is_local(b, node, *locality) && active(i, b);
            let local_total = weight_of(vip, local);
            let local_up = weight_of(vip, |i, b| local(i, b) && up(i, b));
            let remote_up = weight_of(vip, |i, b| !is_local(b, node, *locality) && up(i, b));
            let mut keep = if local_total > 0.0 {
                (local_up / local_total * overprovisioning).min(1.0)
            } else {
                0.0
            };
            if remote_up == 0.0 && local_up > 0.0 {
                keep = 1.0;
            }
            for (i, b) in vip.backends.iter().enumerate() {
                if !up(i, b) {
                    continue;
                }
                share[i] = if is_local(b, node, *locality) {
                    keep * b.weight as f64 / local_up
                } else {
                    (1.0 - keep) * b.weight as f64 / remote_up
                };
            }
            decision.local_share = Some(keep);
            let spilling = keep < 1.0 && remote_up > 0.0;
            let all_remote = keep == 0.0 && remote_up > 0.0;
            if all_remote != state.all_remote {
                events.push(if all_remote {
                    PolicyEvent {
                        kind: EventKind::Failover,
                        reason: format!(
                            "no healthy local backend ({} {}/{}): all traffic to other clouds",
                            locality.name(),
                            node.cloud,
                            node.region
                        ),
                    }
                } else {
                    PolicyEvent {
                        kind: EventKind::Failback,
                        reason: format!(
                            "local backends healthy again: keeping {:.0}% local",
                            keep * 100.0
                        ),
                    }
                });
            } else if spilling != state.spilling {
                events.push(if spilling {
                    PolicyEvent {
                        kind: EventKind::SpilloverStart,
                        reason: format!(
                            "local healthy capacity {:.0}% × overprovisioning {overprovisioning}: {:.0}% of traffic spills to other clouds",
                            100.0 * local_up / local_total.max(1.0),
                            100.0 * (1.0 - keep)
                        ),
                    }
                } else {
                    PolicyEvent { kind: EventKind::SpilloverEnd, reason: "local capacity sufficient: all traffic local".into() }
                });
            }
            state.spilling = spilling;
            state.all_remote = all_remote;
        }
        PolicyMode::ActiveActive {
            cloud_weights,
            overprovisioning,
        } => {
            let mut cloud_share = BTreeMap::new();
            for (cloud, cw) in cloud_weights {
                let in_cloud = |i: usize, b: &BackendCfg| b.labels.cloud == *cloud && active(i, b);
                let t = weight_of(vip, in_cloud);
                let u = weight_of(vip, |i, b| in_cloud(i, b) && up(i, b));
                if u > 0.0 {
                    cloud_share.insert(
                        cloud.clone(),
                        (*cw as f64) * (u / t * overprovisioning).min(1.0),
                    );
                }
            }
            let sum: f64 = cloud_share.values().sum();
            for (i, b) in vip.backends.iter().enumerate() {
                if let Some(cs) = cloud_share.get(&b.labels.cloud)
                    && up(i, b)
                    && sum > 0.0
                {
                    let cloud_up =
                        weight_of(vip, |j, c| c.labels.cloud == b.labels.cloud && up(j, c));
                    share[i] = cs / sum * b.weight as f64 / cloud_up;
                }
            }
        }
        PolicyMode::ActivePassive {
            tiers,
            min_healthy,
            failback_after,
        } => {
            // A backend belongs to the first tier it matches.
            let tier_of = |b: &BackendCfg| tiers.iter().position(|t| t.matches(&b.labels));
            let capacity = |t: usize| {
                let tot = weight_of(vip, |i, b| tier_of(b) == Some(t) && active(i, b));
                let u = weight_of(vip, |i, b| tier_of(b) == Some(t) && up(i, b));
                u > 0.0 && u / tot >= *min_healthy
            };
            for t in 0..tiers.len() {
                if capacity(t) {
                    state.tier_ok_since.entry(t).or_insert(now);
                } else {
                    state.tier_ok_since.remove(&t);
                }
            }
            let best = (0..tiers.len()).find(|t| capacity(*t));
            let next = match (state.active_tier, best) {
                (_, None) => None,
                (None, Some(b)) => Some(b),
                // The live tier lost its capacity: fail over at once.
                (Some(cur), Some(b)) if !capacity(cur) => Some(b),
                // A better tier is back: only after it held for failback_after.
                (Some(cur), Some(b)) if b < cur => {
                    let held = now.saturating_duration_since(state.tier_ok_since[&b]);
                    if held >= *failback_after {
                        Some(b)
                    } else {
                        Some(cur)
                    }
                }
                (Some(cur), Some(_)) => Some(cur),
            };
            if next != state.active_tier {
                let name = |t: Option<usize>| {
                    t.map_or("none".to_string(), |t| format!("tier {t} ({})", tiers[t]))
                };
                let (kind, why) = match (state.active_tier, next) {
                    (Some(a), Some(b)) if b < a => (
                        EventKind::Failback,
                        format!("held capacity for {:?}", failback_after),
                    ),
                    (Some(_), _) => (
                        EventKind::Failover,
                        "the active tier lost its healthy capacity".to_string(),
                    ),
                    (None, _) => (EventKind::TierSwitch, "initial choice".to_string()),
                };
                events.push(PolicyEvent {
                    kind,
                    reason: format!("{} -> {}: {why}", name(state.active_tier), name(next)),
                });
                state.active_tier = next;
            }
            decision.active_tier = state.active_tier;
            if let Some(t) = state.active_tier {
                let u = weight_of(vip, |i, b| tier_of(b) == Some(t) && up(i, b));
                for (i, b) in vip.backends.iter().enumerate() {
                    if tier_of(b) == Some(t) && up(i, b) {
                        share[i] = b.weight as f64 / u;
                    }
                }
            }
        }
    }
    // Panic, the last resort, only once the mode has nowhere left to go.
    let domains = panic::domains(vip, node, &active);
    let panicking = panic::last_resort(vip, &domains, &seen_of, state, events);
    match panicking {
        Some(pool) => {
            share = vec![0.0; n];
            let total: f64 = pool.iter().map(|i| vip.backends[*i].weight as f64).sum();
            for i in pool {
                share[i] = vip.backends[i].weight as f64 / total;
                // Sent traffic again: its flows are not moved away either.
                decision.down[i] = false;
            }
            decision.panic = true;
        }
        None => decision.panic = false,
    }
    finish(decision, share)
}

fn finish(mut d: Decision, share: Vec<f64>) -> Decision {
    d.weights = share
        .iter()
        .map(|s| {
            if *s > 0.0 {
                ((s * SCALE).round() as u32).max(1)
            } else {
                0
            }
        })
        .collect();
    d.shares = share;
    d
}

#[cfg(test)]
mod tests;
