//! `lbctl node`: this LB host's route control — which VIP addresses it
//! announces to its routers and why; drain (withdraw everything, keep
//! forwarding), undrain, and the restart hold an upgrade takes.

use lb::{core::config::parse_duration, daemon::api::wire::NodeState};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::{NodeCmd, Output},
    fail,
    table::{self, Row},
};

#[derive(Serialize)]
struct RouteRow {
    address: String,
    announced: bool,
    wanted: bool,
    reason: String,
}

impl Row for RouteRow {
    const HEADERS: &'static [&'static str] = &["ADDRESS", "ANNOUNCED", "WANTED", "WHY"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.address.clone(),
            yes(self.announced),
            yes(self.wanted),
            self.reason.clone(),
        ]
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn print(ctx: &Ctx<'_>, n: &NodeState) {
    if ctx.output() == Output::Json {
        table::print_json(n);
        return;
    }
    let hold = match (n.holding, n.control.hold_until) {
        (true, Some(t)) => format!("until {}", table::clock(t)),
        _ => "none".into(),
    };
    lb::outln!("drained: {}   restart hold: {hold}", yes(n.control.drained));
    let Some(a) = &n.announce else {
        lb::outln!("route control: off (no announce: section in the configuration)");
        return;
    };
    lb::outln!(
        "BIRD: {}",
        match (&a.last_error, a.bird_up) {
            (_, true) => "up".to_string(),
            (Some(e), false) => format!("not taking routes: {e}"),
            (None, false) => "not contacted yet".into(),
        }
    );
    let rows: Vec<RouteRow> = a
        .routes
        .iter()
        .map(|r| RouteRow {
            address: r.address.to_string(),
            announced: a.announced.contains(&r.address),
            wanted: r.announce,
            reason: r.reason.clone(),
        })
        .collect();
    table::print(Output::Table, &rows);
}

pub async fn run(ctx: &Ctx<'_>, cmd: &NodeCmd) -> Result<(), Fail> {
    let agent = ctx.agent()?;
    let n = match cmd {
        NodeCmd::Status => agent.node().await?,
        NodeCmd::Drain => agent.drain_node(true).await?,
        NodeCmd::Undrain => agent.drain_node(false).await?,
        NodeCmd::Hold { duration, release } => {
            let secs = if *release {
                None
            } else {
                Some(
                    parse_duration(duration)
                        .map_err(|e| fail(2, format!("--for: {e}")))?
                        .as_secs_f64(),
                )
            };
            agent.hold(secs).await?
        }
    };
    print(ctx, &n);
    Ok(())
}
