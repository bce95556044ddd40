//! `lbctl backend list`.

use std::net::IpAddr;

use lb::core::config::{AdminState, Forwarding};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    join::{resolve_vip, vip_name},
    table::{self, Row, health, or_dash, percent, word},
};

#[derive(Serialize)]
struct BackendRow {
    vip: String,
    id: u32,
    address: IpAddr,
    forwarding: Option<Forwarding>,
    /// The agent's health verdict; without the agent, the data path's
    /// down flag.
    healthy: bool,
    health_reason: Option<String>,
    state: Option<AdminState>,
    weight: Option<u32>,
    cloud: Option<String>,
    ring_share: f64,
    down: bool,
    packets: u64,
    new_flows: u64,
}

impl Row for BackendRow {
    const HEADERS: &'static [&'static str] = &[
        "VIP", "BACKEND", "CLOUD", "MODE", "HEALTH", "STATE", "WEIGHT", "SHARE", "PACKETS",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.vip.clone(),
            self.address.to_string(),
            or_dash(self.cloud.clone()),
            or_dash(self.forwarding.map(|f| word(&f))),
            health(self.healthy),
            or_dash(self.state.map(|s| word(&s))),
            or_dash(self.weight),
            percent(self.ring_share, 2),
            self.packets.to_string(),
        ]
    }
}

pub async fn list(ctx: &Ctx<'_>, vip: Option<&str>) -> Result<(), Fail> {
    let pinned = ctx.pinned()?;
    let state = ctx.state().await;
    let only = vip
        .map(|v| resolve_vip(state.as_ref(), &pinned, v))
        .transpose()?;
    let m = pinned.ring_size() as f64;
    let mut rows = vec![];
    for b in pinned.backends()? {
        if only.is_some_and(|o| o != b.vip_id) {
            continue;
        }
        let agent = state
            .as_ref()
            .and_then(|s| s.state.vip_by_id(b.vip_id)?.backend_by_id(b.id));
        let t = pinned.backend_traffic(b.id)?;
        rows.push(BackendRow {
            vip: vip_name(state.as_ref(), b.vip_id, || b.vip_id.to_string()),
            id: b.id,
            address: b.address,
            forwarding: b.forwarding,
            healthy: agent.map_or(!b.down, |a| a.healthy),
            health_reason: agent.map(|a| a.health_reason.clone()),
            state: agent.map(|a| a.state),
            weight: agent.map(|a| a.weight),
            cloud: agent.map(|a| a.labels.cloud.clone()),
            ring_share: b.ring_slots as f64 / m,
            down: b.down,
            packets: t.packets,
            new_flows: t.new_flows,
        });
    }
    table::print(ctx.output(), &rows);
    if state.is_none() {
        eprintln!(
            "(agent not reachable: health shown from the data path's down flags; state and weight unknown)"
        );
    }
    Ok(())
}
