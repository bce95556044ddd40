//! Fleet scenarios: three LB hosts behind a router that spreads flows over
//! them by ECMP, each host's BIRD announcing the VIPs lbd tells it to;
//! real BIRD, real BGP and BFD, real TCP connections exchanging data while
//! hosts are lost, return, drain and restart.
//!
//! `cargo test --test fleet -- SUBSTRING` runs some (`lb_tests::harness`).

mod scenarios;

use std::process::ExitCode;

use anyhow::Result;
use lb_tests::{
    fleet::{Fleet, base_config},
    harness::{self, Scenario},
    netns::require_root,
};

pub const HOSTS: usize = 3;
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The fleet, built on first use; every scenario gets it with all hosts
/// up, every agent running and every backend healthy and announced.
#[derive(Default)]
pub struct Env {
    fleet: Option<Fleet>,
}

impl Env {
    pub fn fleet(&mut self) -> Result<&mut Fleet> {
        if self.fleet.is_none() {
            self.fleet = Some(Fleet::build(HOSTS)?);
        }
        let f = self.fleet.as_mut().expect("just built");
        f.lab.start_all_servers()?;
        let base = base_config()?;
        for i in 0..HOSTS {
            f.lab
                .router
                .ip(&["link", "set", &lb_tests::lab::lb_host_port(i), "up"])?;
            if f.birds[i].birdc("show status").is_err() {
                f.birds[i].spawn()?;
            }
            match &mut f.agents[i] {
                Some(a) => {
                    if a.exited().is_some() || a.api_get("/v1/health").is_err() {
                        f.respawn_agent(i)?;
                    }
                    f.agent(i).api("POST", "/v1/node/undrain", None)?;
                }
                None => f.start_agent(i, &base)?,
            }
        }
        f.wait_serving()?;
        Ok(f)
    }
}

macro_rules! scenarios {
    ($($name:ident),+ $(,)?) => {
        &[$(Scenario { name: stringify!($name), run: scenarios::$name }),+]
    };
}

const SCENARIOS: &[Scenario<Env>] = scenarios![
    losing_an_lb_host_breaks_no_connection_and_reroutes_within_a_second,
    a_returning_lb_host_takes_flows_back_without_breaking_any,
    a_planned_drain_withdraws_first_and_resets_nothing,
    an_agent_stopped_without_a_hold_withdraws_before_it_exits,
    a_backend_failing_while_an_lb_host_is_lost_breaks_only_its_connections,
    a_vip_without_healthy_backends_is_withdrawn_everywhere_and_returns,
    an_agent_restart_with_a_hold_keeps_the_announcement_and_every_connection,
    lbctl_fleet_shows_every_host_announcing_with_equal_digests,
];

fn main() -> ExitCode {
    harness::run("fleet", SCENARIOS, || {
        require_root()?;
        Ok(Env::default())
    })
}
