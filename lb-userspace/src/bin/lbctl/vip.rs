//! `lbctl vip list`.

use std::net::IpAddr;

use lb::core::{
    config::{HashMode, Protocol},
    maglev,
};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    join::{address_name, vip_name},
    table::{self, Row, or_dash, word},
};

#[derive(Serialize)]
struct VipRow {
    name: String,
    id: u32,
    address: IpAddr,
    port: u16,
    protocol: Protocol,
    hash_mode: Option<HashMode>,
    move_flows_on_down: bool,
    digest: String,
    packets: u64,
    bytes: u64,
    new_flows: u64,
}

impl Row for VipRow {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "ID",
        "ADDRESS",
        "PROTO",
        "HASH",
        "DIGEST",
        "PACKETS",
        "NEW FLOWS",
    ];
    fn cells(&self) -> Vec<String> {
        let port = if self.port == 0 {
            "*".into()
        } else {
            self.port.to_string()
        };
        vec![
            self.name.clone(),
            self.id.to_string(),
            format!("{}:{port}", self.address),
            self.protocol.name().into(),
            or_dash(self.hash_mode.map(|h| word(&h))),
            self.digest.clone(),
            self.packets.to_string(),
            self.new_flows.to_string(),
        ]
    }
}

pub async fn list(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let pinned = ctx.pinned()?;
    let state = ctx.state().await;
    let backends = pinned.backends()?;
    let address = |id: u32| backends.iter().find(|b| b.id == id).map(|b| b.address);
    let mut rows = vec![];
    for v in pinned.vips()? {
        let t = pinned.vip_traffic(v.id)?;
        rows.push(VipRow {
            name: vip_name(state.as_ref(), v.id, || address_name(&v)),
            id: v.id,
            address: v.address,
            port: v.port,
            protocol: v.protocol,
            hash_mode: v.hash,
            move_flows_on_down: v.move_flows_on_down,
            digest: maglev::digest(&pinned.live_ring(v.id)?, address),
            packets: t.packets,
            bytes: t.bytes,
            new_flows: t.new_flows,
        });
    }
    table::print(ctx.output(), &rows);
    if state.is_none() {
        eprintln!("(agent not reachable: names, health and weights are not shown)");
    }
    Ok(())
}
