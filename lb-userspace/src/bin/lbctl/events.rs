//! `lbctl events [--follow]`: the agent's recent decisions, and with
//! `--follow` each new one as it happens (one JSON object per line with
//! `-o json`, for a pipe).

use std::time::Duration;

use lb::core::events::Event;
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    table::{self, Row, clock},
};

/// How often `--follow` asks the agent.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

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

pub async fn list(ctx: &Ctx<'_>, follow: bool) -> Result<(), Fail> {
    let agent = ctx.agent()?;
    let events = agent.events().await?;
    if !follow {
        let rows: Vec<EventRow> = events.into_iter().map(EventRow).collect();
        table::print(ctx.output(), &rows);
        return Ok(());
    }
    let mut last = None;
    if ctx.output() == Output::Table {
        lb::outln!(
            "{}",
            line(
                &EventRow::HEADERS
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
            )
        );
    }
    let mut batch = events;
    loop {
        for e in after(&batch, last.as_ref()) {
            match ctx.output() {
                Output::Json => lb::outln!("{}", serde_json::to_string(e).expect("serializable")),
                Output::Table => lb::outln!("{}", line(&EventRow(e.clone()).cells())),
            }
        }
        if let Some(e) = batch.last() {
            last = Some(e.clone());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
        batch = agent.events().await?;
    }
}

/// The events of `batch` (oldest first) that come after `last`: after its
/// place in the batch, or, when it has left the agent's window, every later
/// one.
fn after<'a>(batch: &'a [Event], last: Option<&Event>) -> &'a [Event] {
    let Some(last) = last else { return batch };
    match batch.iter().rposition(|e| e == last) {
        Some(i) => &batch[i + 1..],
        None => {
            let first_new = batch.iter().position(|e| e.time > last.time);
            &batch[first_new.unwrap_or(batch.len())..]
        }
    }
}

/// A row in fixed columns: a followed stream cannot align to rows to come.
fn line(cells: &[String]) -> String {
    format!(
        "{:<12}  {:<15}  {:<12}  {:<20}  {}",
        cells[0], cells[1], cells[2], cells[3], cells[4]
    )
}
