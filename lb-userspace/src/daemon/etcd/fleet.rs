//! The fleet's view of itself: each agent writes its view to
//! `P/agents/<node>` (with a lease, so it vanishes with the agent), and
//! `lbctl fleet` reads them all and shows where hosts disagree.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use crate::core::balancer::State;

/// One agent's view, as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub node: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Withdrawn on purpose (`lbctl node drain`).
    #[serde(default)]
    pub drained: bool,
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
    /// Backend address → healthy, as this agent steers (with the fleet
    /// view: the agreed verdict).
    pub healthy: BTreeMap<String, bool>,
    /// Backend address → what this agent's own probes say: the votes of
    /// the fleet view.
    #[serde(default)]
    pub probes: BTreeMap<String, bool>,
    /// Whether this host announces the VIP's address (`None`: no route
    /// control here).
    #[serde(default)]
    pub announced: Option<bool>,
}

/// What an agent publishes besides its state.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub drained: bool,
    /// (VIP name, backend address) → this agent's own probe verdict.
    pub probes: BTreeMap<(String, IpAddr), bool>,
    /// Announced addresses, with route control.
    pub announced: Option<BTreeSet<IpAddr>>,
}

impl AgentView {
    pub fn of(state: &State, time: f64, extras: &Extras) -> Self {
        Self {
            node: state.node.clone(),
            time,
            drained: extras.drained,
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
                    probes: v
                        .backends
                        .iter()
                        .map(|b| {
                            let own = extras.probes.get(&(v.name.clone(), b.address));
                            (b.address.to_string(), own.copied().unwrap_or(b.healthy))
                        })
                        .collect(),
                    announced: extras.announced.as_ref().map(|a| a.contains(&v.address)),
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
/// backend, whether the VIP is announced (drained hosts aside).
pub fn disagreements(agents: &[AgentView]) -> Vec<Disagreement> {
    let mut by_point: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for a in agents {
        for v in &a.vips {
            by_point
                .entry((v.name.clone(), "digest".into()))
                .or_default()
                .insert(a.node.clone(), v.digest.clone());
            if let (Some(on), false) = (v.announced, a.drained) {
                by_point
                    .entry((v.name.clone(), "announced".into()))
                    .or_default()
                    .insert(a.node.clone(), if on { "yes" } else { "no" }.into());
            }
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
