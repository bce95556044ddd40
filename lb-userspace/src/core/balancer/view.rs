//! What the facade shows: the state of every VIP and backend as the API,
//! `lbctl` and the metrics see it. Serializable both ways, so clients read
//! the agent's answers into these same types.

use std::net::IpAddr;

use lb_common::limits::NO_BACKEND;
use serde::{Deserialize, Serialize};

use super::Balancer;
use crate::core::{
    config::{AdminState, Labels, Protocol},
    maglev,
    tables::Tables,
};

/// Counters of the balancer's own work (for metrics).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkStats {
    pub table_updates: u64,
    pub slots_written: u64,
    pub backend_writes: u64,
    /// Times a failed write made the balancer read the tables back.
    #[serde(default)]
    pub resyncs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct State {
    pub node: String,
    pub vips: Vec<VipState>,
    pub work: WorkStats,
}

impl State {
    pub fn vip_by_id(&self, id: u32) -> Option<&VipState> {
        self.vips.iter().find(|v| v.id == id)
    }

    pub fn vip_by_name(&self, name: &str) -> Option<&VipState> {
        self.vips.iter().find(|v| v.name == name)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VipState {
    pub name: String,
    /// Whose VIP it is.
    #[serde(default)]
    pub tenant: String,
    pub id: u32,
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub digest: String,
    pub empty: bool,
    pub active_tier: Option<usize>,
    pub local_share: Option<f64>,
    pub panic: bool,
    pub backends: Vec<BackendState>,
}

impl VipState {
    pub fn backend_by_id(&self, id: u32) -> Option<&BackendState> {
        self.backends.iter().find(|b| b.id == id)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendState {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub id: u32,
    pub weight: u32,
    pub state: AdminState,
    pub labels: Labels,
    pub healthy: bool,
    pub health_reason: String,
    pub expected_share: f64,
    pub ring_share: f64,
    pub released: bool,
}

/// One VIP's split before and during a drill.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillPreview {
    pub vip: String,
    pub backends: Vec<DrillShare>,
    pub panic: bool,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillShare {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub cloud: String,
    pub region: String,
    pub now: f64,
    pub during: f64,
}

impl<T: Tables> Balancer<T> {
    /// Everything an operator wants to see.
    pub fn state(&self) -> State {
        State {
            node: self.config.node.name.clone(),
            vips: self
                .vips
                .values()
                .map(|rt| {
                    let d = rt.decision.as_ref();
                    let counts = maglev::counts(&rt.live);
                    let m = rt.live.len().max(1) as f64;
                    VipState {
                        name: rt.cfg.name.clone(),
                        tenant: rt.cfg.tenant.clone(),
                        id: rt.id,
                        address: rt.cfg.address,
                        port: rt.cfg.port,
                        protocol: rt.cfg.protocol,
                        digest: rt.digest.clone(),
                        empty: counts.get(&NO_BACKEND).copied().unwrap_or(0) == rt.live.len(),
                        active_tier: d.and_then(|d| d.active_tier),
                        local_share: d.and_then(|d| d.local_share),
                        panic: d.is_some_and(|d| d.panic),
                        backends: rt
                            .cfg
                            .backends
                            .iter()
                            .enumerate()
                            .map(|(i, be)| {
                                let id = rt.backend_ids[&be.address];
                                let h = rt.health.get(&be.address);
                                BackendState {
                                    address: be.address,
                                    id,
                                    weight: be.weight,
                                    state: be.state,
                                    labels: be.labels.clone(),
                                    healthy: h.is_none_or(|h| h.up),
                                    health_reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                                    expected_share: d
                                        .and_then(|d| d.shares.get(i).copied())
                                        .unwrap_or(0.0),
                                    ring_share: counts.get(&id).copied().unwrap_or(0) as f64 / m,
                                    released: rt.drains.is_released(be.address),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
            work: self.work,
        }
    }
}
