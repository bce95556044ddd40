//! Uptime scenarios: the paths by which a service could go down when a
//! backend, a cloud, the control plane or the agent itself fails, or when
//! someone feeds it bad input — each run for real (lbd, etcd, the lab's
//! TCP servers, the kernel programs) and named for what it proves.
//!
//! `cargo test --test uptime -- SUBSTRING` runs some (`lb_tests::harness`).
//! Scenarios that need the lab share one, built on first use; each leaves
//! it as it found it (all servers up, its own lbd stopped).

mod datapath;
mod feed;
mod input;
mod policy;
mod reload;
mod restart;

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
    reload::sighup_applies_a_good_file,
    reload::a_file_change_applies_without_a_signal,
    reload::a_bad_file_keeps_the_running_state_and_names_the_field,
    reload::an_empty_or_truncated_file_is_refused_on_reload,
    reload::a_reload_removing_every_vip_needs_allow_no_vips,
    reload::restart_only_fields_are_reported_as_waiting_not_applied,
    datapath::xdp_auto_falls_back_to_generic_where_the_driver_refuses,
    datapath::decap_refuses_tunnels_from_outside_the_lb_prefixes_on_a_live_backend,
    restart::restart_with_a_backend_down_sends_it_no_new_connections,
    restart::drains_and_weight_overrides_survive_a_restart,
    restart::a_running_drill_survives_a_restart,
    restart::a_corrupt_state_file_is_set_aside_and_lbd_starts,
    policy::losing_the_local_cloud_fails_over_with_the_default_panic_threshold,
    policy::losing_the_active_tier_moves_to_the_next_with_the_default_panic_threshold,
    policy::a_blue_green_cutover_moves_to_green_with_the_default_panic_threshold,
    policy::a_drill_reports_measured_new_flows_beside_its_prediction,
    policy::a_drill_matching_nothing_is_refused,
    feed::etcd_vips_keep_serving_through_an_etcd_outage_and_an_lbd_restart,
    feed::a_half_open_etcd_watch_is_detected_and_reconnected,
    feed::one_etcd_revision_applies_whole_or_not_at_all,
    feed::a_bad_etcd_value_is_refused_with_its_key_and_the_feed_stays_up,
    feed::lbctl_fleet_lists_agents_with_equal_digests_and_no_disagreements,
];

fn main() -> ExitCode {
    harness::run("uptime", SCENARIOS, || {
        require_root()?;
        Ok(Env::default())
    })
}
