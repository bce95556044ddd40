//! Uptime scenarios: the paths by which a service could go down when a
//! backend, a cloud, the control plane or the agent itself fails, or when
//! someone feeds it bad input — each run for real (lbd, etcd, the lab's
//! TCP servers, the kernel programs) and named for what it proves.
//!
//! `cargo test --test uptime -- SUBSTRING` runs some (`lb_tests::harness`).
//! Scenarios that need the lab share one, built on first use; each leaves
//! it as it found it (all servers up, its own lbd stopped).

mod input;

use std::process::ExitCode;

use anyhow::Result;
use lb_tests::{
    harness::{self, Scenario},
    lab::Lab,
    netns::require_root,
};

/// What the scenarios share.
#[derive(Default)]
pub struct Env {
    lab: Option<Lab>,
}

impl Env {
    /// The lab, every backend's server up.
    pub fn lab(&mut self) -> Result<&mut Lab> {
        if self.lab.is_none() {
            self.lab = Some(Lab::build()?);
        }
        let lab = self.lab.as_mut().expect("just built");
        lab.start_all_servers()?;
        Ok(lab)
    }
}

macro_rules! scenarios {
    ($($module:ident :: $name:ident),+ $(,)?) => {
        &[$(Scenario { name: stringify!($name), run: $module::$name }),+]
    };
}

const SCENARIOS: &[Scenario<Env>] = scenarios![
    input::lbd_check_exits_0_or_2_on_hostile_configs_within_seconds,
    input::output_into_a_closed_pipe_ends_quietly,
    input::a_million_mutated_frames_never_abort_and_only_vip_packets_are_forwarded,
    input::mutated_tunnels_never_abort_decap_and_only_lb_tunnels_to_vips_are_unwrapped,
];

fn main() -> ExitCode {
    harness::run("uptime", SCENARIOS, || {
        require_root()?;
        Ok(Env::default())
    })
}
