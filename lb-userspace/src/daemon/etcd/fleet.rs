//! The fleet's view of itself: each agent writes its view to
//! `P/agents/<node>` (with a lease, so it vanishes with the agent), and
//! `lbctl fleet` reads them all and shows where hosts disagree.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::core::balancer::State;

/// One agent's view, as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub node: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub vips: Vec<AgentVip>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentVip {
    pub name: String,
    /// The address-based table digest: equal on hosts that steer alike.
    pub digest: String,
    pub active_tier: Option<usize>,
    pub local_share: Option<f64>,
    pub panic: bool,
    /// Backend address → healthy.
    pub healthy: BTreeMap<String, bool>,
}

impl AgentView {
    pub fn of(state: &State, time: f64) -> Self {
        Self {
            node: state.node.clone(),
            time,
            vips: state
                .vips
                .iter()
                .map(|v| AgentVip {
                    name: v.name.clone(),
                    digest: v.digest.clone(),
                    active_tier: v.active_tier,
                    local_share: v.local_share,
                    panic: v.panic,
                    healthy: v
                        .backends
                        .iter()
                        .map(|b| (b.address.to_string(), b.healthy))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A point where agents do not agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disagreement {
    pub vip: String,
    /// `digest`, or the backend address whose health differs.
    pub about: String,
    /// What each agent says, by node.
    pub views: BTreeMap<String, String>,
}

/// Where the agents' views differ: table digests per VIP, health per
/// backend.
pub fn disagreements(agents: &[AgentView]) -> Vec<Disagreement> {
    let mut by_point: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for a in agents {
        for v in &a.vips {
            by_point
                .entry((v.name.clone(), "digest".into()))
                .or_default()
                .insert(a.node.clone(), v.digest.clone());
            for (backend, up) in &v.healthy {
                let word = if *up { "up" } else { "down" };
                by_point
                    .entry((v.name.clone(), backend.clone()))
                    .or_default()
                    .insert(a.node.clone(), word.into());
            }
        }
    }
    by_point
        .into_iter()
        .filter(|(_, views)| views.values().collect::<BTreeSet<_>>().len() > 1)
        .map(|((vip, about), views)| Disagreement { vip, about, views })
        .collect()
}
