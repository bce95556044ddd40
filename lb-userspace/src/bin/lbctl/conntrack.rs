//! `lbctl conntrack list|count`.

use lb::kernel::codec::flow_text;
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::{ConntrackCmd, Output},
    join::{resolve_vip, vip_name},
    table::{self, Row},
};

#[derive(Serialize)]
struct Count {
    entries: usize,
}

#[derive(Serialize)]
struct EntryRow {
    flow: String,
    vip_id: u32,
    #[serde(skip)]
    vip: String,
    backend: String,
    backend_id: u32,
}

impl Row for EntryRow {
    const HEADERS: &'static [&'static str] = &["FLOW", "VIP", "BACKEND"];
    fn cells(&self) -> Vec<String> {
        vec![self.flow.clone(), self.vip.clone(), self.backend.clone()]
    }
}

pub async fn run(ctx: &Ctx<'_>, cmd: &ConntrackCmd) -> Result<(), Fail> {
    let pinned = ctx.pinned()?;
    let (vip, backend, limit) = match cmd {
        ConntrackCmd::Count => {
            let entries = pinned.conntrack_count();
            match ctx.output() {
                Output::Json => table::print_json(&Count { entries }),
                Output::Table => lb::outln!("{entries}"),
            }
            return Ok(());
        }
        ConntrackCmd::List {
            vip,
            backend,
            limit,
        } => (vip, backend, *limit),
    };
    let state = ctx.state().await;
    let vip_id = vip
        .as_deref()
        .map(|v| resolve_vip(state.as_ref(), &pinned, v))
        .transpose()?;
    let backends = pinned.backends()?;
    let backend_ids: Option<Vec<u32>> = backend.map(|a| {
        backends
            .iter()
            .filter(|b| b.address == a && vip_id.is_none_or(|v| v == b.vip_id))
            .map(|b| b.id)
            .collect()
    });
    let entries = pinned.conntrack(limit, |_, e| {
        vip_id.is_none_or(|v| e.vip_id == v)
            && backend_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&e.backend_id))
    })?;
    let rows: Vec<EntryRow> = entries
        .iter()
        .map(|(k, e)| EntryRow {
            flow: flow_text(k),
            vip_id: e.vip_id,
            vip: vip_name(state.as_ref(), e.vip_id, || e.vip_id.to_string()),
            backend: backends.iter().find(|b| b.id == e.backend_id).map_or_else(
                || format!("#{} (released)", e.backend_id),
                |b| b.address.to_string(),
            ),
            backend_id: e.backend_id,
        })
        .collect();
    table::print(ctx.output(), &rows);
    Ok(())
}
