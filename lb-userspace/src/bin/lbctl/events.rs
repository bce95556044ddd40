//! `lbctl events`: the agent's recent decisions.

use lb::core::events::Event;
use serde::Serialize;

use crate::{
    Ctx, Fail,
    table::{self, Row, clock},
};

#[derive(Serialize)]
#[serde(transparent)]
struct EventRow(Event);

impl Row for EventRow {
    const HEADERS: &'static [&'static str] = &["TIME (UTC)", "EVENT", "VIP", "BACKEND", "REASON"];
    fn cells(&self) -> Vec<String> {
        let e = &self.0;
        vec![
            clock(e.time),
            e.kind.name().into(),
            e.vip.clone().unwrap_or_else(|| "-".into()),
            e.backend.clone().unwrap_or_else(|| "-".into()),
            e.reason.clone(),
        ]
    }
}

pub async fn list(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let rows: Vec<EventRow> = ctx
        .agent()?
        .events()
        .await?
        .into_iter()
        .map(EventRow)
        .collect();
    table::print(ctx.output(), &rows);
    Ok(())
}
