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
    fleet::Fleet,
    harness::{self, Scenario},
    lab::{LAB_BACKENDS, lab_config},
    netns::require_root,
};

pub const HOSTS: usize = 3;

/// The lab's configuration plus `shop`, a VIP on the aws backends alone,
/// so all of one VIP's backends can fail while the others serve.
pub fn base_config() -> Result<String> {
    Ok(format!(
        "{}{}",
        lab_config()?,
        r#"
  - name: shop
    address: 10.100.0.5
    port: 80
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2}
    backends:
      - {address: 10.20.0.11, forwarding: l2-dsr, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.20.0.12, forwarding: l2-dsr, labels: {cloud: aws, region: eu-west-1}}
"#
    ))
}
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
        for i in 0..HOSTS {
            for b in LAB_BACKENDS {
                f.agent(i).wait_healthy("web", b, true, WAIT)?;
            }
        }
        let all = f.all();
        f.wait_nexthops("10.100.0.1".parse()?, &all, WAIT)?;
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
