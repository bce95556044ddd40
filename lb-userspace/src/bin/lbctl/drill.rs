//! `lbctl drill`: preview a failure's traffic split, run it for real for a
//! while (the agent reverts it by itself), or stop it.

use std::time::{Duration, Instant};

use lb::{
    core::{
        balancer::{DrillPreview, DrillShare},
        config::parse_duration,
    },
    daemon::api::wire::DrillRequest,
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

fn print_preview(preview: &[DrillPreview]) {
    for v in preview {
        println!(
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
            println!("  would log: {e}");
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
        match (ctx.output(), &v.stopped) {
            (Output::Json, _) => table::print_json(&v),
            (_, None) => println!("no drill was running"),
            (_, Some(d)) => println!("drill {} ({}) stopped: reverted", d.id, d.fail),
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
            Some(d) => println!(
                "drill {}: failing {sel} for {secs}s; the agent reverts it by itself",
                d.id
            ),
            None => println!("preview: failing {sel} (nothing changes; add --apply to run it)"),
        }
        print_preview(&v.preview);
    }
    if apply && !detach {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if agent.drill().await?.drill.is_none() {
                break;
            }
        }
        if ctx.output() == Output::Table {
            println!("drill over: reverted");
        }
    }
    Ok(())
}
