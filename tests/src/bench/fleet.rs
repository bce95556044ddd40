//! The fleet's reaction times on the three-host lab: how long after an LB
//! host dies the router routes around it (BFD), how long after a VIP's
//! last backend dies every host withdraws it, and how long the hosts
//! disagree about a failed backend with and without the fleet health view
//! (the window in which they would steer a flow differently).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use super::reaction::{Latencies, event_time, latencies, unix};
use crate::{
    fleet::{Fleet, base_config},
    lab::lb_host_v4,
};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Serialize)]
pub struct FleetFigures {
    /// Host lost (link cut, processes killed) → the router's ECMP set
    /// without it.
    pub host_loss_ms: Latencies,
    /// The last backend of a VIP killed → withdrawn from every host.
    pub withdrawal_ms: Latencies,
    /// A backend killed: first host marking it down → last host, each host
    /// on its own probes.
    pub disagreement_local_ms: Latencies,
    /// The same with `health.fleet_view` (majority of the hosts' probes).
    pub disagreement_fleet_view_ms: Latencies,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Kills `a2`'s server and returns first-to-last `backend_down` of web on
/// the hosts, in ms; then restores it.
fn disagreement(f: &mut Fleet) -> Result<f64> {
    let after = unix();
    f.lab.kill_server("a2");
    let t0 = Instant::now();
    let times = loop {
        let mut times = vec![];
        for i in 0..f.hosts() {
            if let Some(t) =
                event_time(f.agent(i), "backend_down", "web", Some("10.20.0.12"), after)?
            {
                times.push(t);
            }
        }
        if times.len() == f.hosts() {
            break times;
        }
        if t0.elapsed() > WAIT {
            bail!("not every host marked a2 down: {times:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    f.lab.start_server("a2")?;
    f.wait_serving()?;
    let (lo, hi) = times
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    Ok((hi - lo) * 1000.0)
}

/// Turns the fleet health view on or off on every host (a reload).
fn fleet_view(f: &Fleet, on: bool) -> Result<()> {
    let base = base_config()?;
    for i in 0..f.hosts() {
        let a = f.agent(i);
        let extra = if on {
            "health: {fleet_view: true}\n"
        } else {
            ""
        };
        a.write_config(&format!("{}{extra}", f.config_for(i, &base)))?;
        a.hup();
        a.wait_for("the reload", WAIT, |s| {
            s["reloads"]["applied"].as_u64().unwrap_or(0)
                + s["reloads"]["needs_restart"].as_u64().unwrap_or(0)
                > 0
        })?;
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

pub fn measure(runs: usize) -> Result<FleetFigures> {
    let mut f = Fleet::build(3)?;
    f.start_all(&base_config()?)?;
    let web = "10.100.0.1".parse()?;

    let mut loss = vec![];
    for r in 0..runs {
        let i = r % f.hosts();
        let mut rest = f.all();
        rest.remove(&lb_host_v4(i));
        let t0 = Instant::now();
        f.lose(i)?;
        f.wait_nexthops(web, &rest, WAIT)?;
        loss.push(ms(t0.elapsed()));
        f.bring_back(i)?;
        f.wait_serving()?;
    }

    let mut withdrawal = vec![];
    for _ in 0..runs {
        withdrawal.push(ms(f.kill_shop_backends()?));
        f.lab.start_all_servers()?;
        f.wait_serving()?;
    }

    let mut local = vec![];
    for _ in 0..runs {
        local.push(disagreement(&mut f)?);
    }
    fleet_view(&f, true)?;
    let mut agreed = vec![];
    for _ in 0..runs {
        agreed.push(disagreement(&mut f)?);
    }
    Ok(FleetFigures {
        host_loss_ms: latencies(loss),
        withdrawal_ms: latencies(withdrawal),
        disagreement_local_ms: latencies(local),
        disagreement_fleet_view_ms: latencies(agreed),
    })
}
