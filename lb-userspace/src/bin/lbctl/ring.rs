//! `lbctl ring show`.

use std::net::IpAddr;

use lb::core::maglev;
use lb_common::limits::NO_BACKEND;
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    join::resolve_vip,
    table::{self, Row, or_dash, percent},
};

#[derive(Serialize)]
struct Ring {
    vip: String,
    id: u32,
    ring_size: usize,
    digest: String,
    empty_slots: usize,
    backends: Vec<SlotsRow>,
}

#[derive(Serialize)]
struct SlotsRow {
    backend: IpAddr,
    id: u32,
    slots: usize,
    share: f64,
    /// What the agent's policy wants (unknown without the agent).
    expected_share: Option<f64>,
}

impl Row for SlotsRow {
    const HEADERS: &'static [&'static str] = &["BACKEND", "SLOTS", "SHARE", "EXPECTED"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.backend.to_string(),
            self.slots.to_string(),
            percent(self.share, 3),
            or_dash(self.expected_share.map(|e| percent(e, 3))),
        ]
    }
}

pub async fn show(ctx: &Ctx<'_>, vip: &str) -> Result<(), Fail> {
    let pinned = ctx.pinned()?;
    let state = ctx.state().await;
    let id = resolve_vip(state.as_ref(), &pinned, vip)?;
    let live = pinned.live_ring(id)?;
    let counts = maglev::counts(&live);
    let m = live.len() as f64;
    let agent_vip = state.as_ref().and_then(|s| s.state.vip_by_id(id));
    let all = pinned.backends()?;
    let address = |id: u32| all.iter().find(|b| b.id == id).map(|b| b.address);
    let digest = maglev::digest(&live, address);
    let backends = all
        .iter()
        .filter(|b| b.vip_id == id)
        .map(|b| {
            let slots = counts.get(&b.id).copied().unwrap_or(0);
            SlotsRow {
                backend: b.address,
                id: b.id,
                slots,
                share: slots as f64 / m,
                expected_share: agent_vip
                    .and_then(|v| v.backend_by_id(b.id))
                    .map(|x| x.expected_share),
            }
        })
        .collect();
    let ring = Ring {
        vip: vip.to_string(),
        id,
        ring_size: live.len(),
        digest,
        empty_slots: counts.get(&NO_BACKEND).copied().unwrap_or(0),
        backends,
    };
    if ctx.output() == Output::Json {
        table::print_json(&ring);
        return Ok(());
    }
    lb::outln!(
        "VIP {vip} (id {id}): ring size {}, digest {}{}",
        ring.ring_size,
        ring.digest,
        if ring.empty_slots > 0 {
            format!(", {} empty slots", ring.empty_slots)
        } else {
            String::new()
        }
    );
    table::print(Output::Table, &ring.backends);
    Ok(())
}
