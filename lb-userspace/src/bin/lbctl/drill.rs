//! `lbctl drill`: preview a failure's traffic split, run it for real for a
//! while (the agent reverts it by itself), or stop it.

use std::time::{Duration, Instant};

use lb::{
    core::{
        balancer::{DrillPreview, DrillShare},
        config::parse_duration,
    },
    daemon::{
        api::wire::DrillRequest,
        drill::{BackendReport, DrillReport},
    },
};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    fail,
    table::{self, Row, percent},
};

#[derive(Serialize)]
#[serde(transparent)]
struct ShareRow<'a>(&'a DrillShare);

impl Row for ShareRow<'_> {
    const HEADERS: &'static [&'static str] = &["  BACKEND", "CLOUD", "REGION", "NOW", "DURING"];
    fn cells(&self) -> Vec<String> {
        let b = self.0;
        vec![
            format!("  {}", b.address),
            b.cloud.clone(),
            b.region.clone(),
            percent(b.now, 1),
            percent(b.during, 1),
        ]
    }
}

/// A backend's line of a drill report.
#[derive(Serialize)]
struct ReportRow<'a> {
    vip: &'a str,
    #[serde(flatten)]
    backend: &'a BackendReport,
}

impl Row for ReportRow<'_> {
    const HEADERS: &'static [&'static str] = &[
        "VIP",
        "BACKEND",
        "PREDICTED",
        "MEASURED",
        "DIFFERENCE",
        "NEW FLOWS",
        "PACKETS",
    ];
    fn cells(&self) -> Vec<String> {
        let b = self.backend;
        vec![
            self.vip.into(),
            b.address.to_string(),
            percent(b.predicted_share, 1),
            percent(b.measured_share, 1),
            format!("{:+.1} pts", b.difference * 100.0),
            b.new_flows.to_string(),
            b.packets.to_string(),
        ]
    }
}

/// What the drill did beside what was predicted.
fn print_report(r: &DrillReport) {
    lb::outln!("drill {} ({}): measured during the drill", r.id, r.fail);
    let rows: Vec<ReportRow> = r
        .vips
        .iter()
        .flat_map(|v| {
            v.backends.iter().map(|b| ReportRow {
                vip: &v.vip,
                backend: b,
            })
        })
        .collect();
    table::print(Output::Table, &rows);
    for v in r.vips.iter().filter(|v| v.new_flows == 0) {
        lb::outln!(
            "  {}: no new flows during the drill: nothing measured",
            v.vip
        );
    }
}

fn print_preview(preview: &[DrillPreview]) {
    for v in preview {
        lb::outln!(
            "VIP {}{}",
            v.vip,
            if v.panic {
                " (PANIC: spread over all backends)"
            } else {
                ""
            }
        );
        let rows: Vec<ShareRow> = v.backends.iter().map(ShareRow).collect();
        table::print(Output::Table, &rows);
        for e in &v.events {
            lb::outln!("  would log: {e}");
        }
    }
}

pub async fn run(
    ctx: &Ctx<'_>,
    sel: Option<&str>,
    apply: bool,
    duration: &str,
    detach: bool,
    stop: bool,
) -> Result<(), Fail> {
    let agent = ctx.agent()?;
    if stop {
        let v = agent.stop_drill().await?;
        match (ctx.output(), &v.stopped, &v.report) {
            (Output::Json, ..) => table::print_json(&v),
            (_, None, _) => lb::outln!("no drill was running"),
            (_, Some(d), report) => {
                lb::outln!("drill {} ({}) stopped: reverted", d.id, d.fail);
                report.iter().for_each(print_report);
            }
        }
        return Ok(());
    }
    let sel =
        sel.ok_or_else(|| fail(2, "--fail cloud=X|region=Y|zone=Z|backend=ADDR is required"))?;
    let secs = parse_duration(duration)
        .map_err(|e| fail(2, format!("--for: {e}")))?
        .as_secs_f64();
    let v = agent
        .start_drill(&DrillRequest {
            fail: sel.to_string(),
            duration_secs: Some(secs),
            dry_run: !apply,
        })
        .await?;
    if ctx.output() == Output::Json {
        table::print_json(&v);
    } else {
        match &v.drill {
            Some(d) => lb::outln!(
                "drill {}: failing {sel} for {secs}s; the agent reverts it by itself",
                d.id
            ),
            None => lb::outln!("preview: failing {sel} (nothing changes; add --apply to run it)"),
        }
        print_preview(&v.preview);
    }
    let (Some(run), false) = (&v.drill, detach) else {
        return Ok(());
    };
    // The agent accepted at most a day; never trust arithmetic on it to fit.
    let wait = Duration::try_from_secs_f64(secs + 5.0).unwrap_or(Duration::from_secs(86_405));
    let until = Instant::now()
        .checked_add(wait)
        .unwrap_or_else(Instant::now);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let d = agent.drill().await?;
        if d.drill.is_none() {
            match (ctx.output(), d.last.filter(|r| r.id == run.id)) {
                (Output::Json, Some(r)) => table::print_json(&r),
                (_, Some(r)) => {
                    lb::outln!("drill over: reverted");
                    print_report(&r);
                }
                (_, None) => lb::outln!("drill over: reverted (stopped by someone else)"),
            }
            return Ok(());
        }
    }
    Err(fail(1, format!("drill {} did not end in time", run.id)))
}
