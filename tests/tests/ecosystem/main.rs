//! Ecosystem scenarios: the agent among the tools SREs already run —
//! systemd's notify protocol and watchdog (a `NOTIFY_SOCKET` listener of
//! the test's own, as PID 1 here is not systemd), journald (a real
//! `systemd-journald` in a private mount namespace), Prometheus (`promtool`
//! on the shipped rules, a real server scraping the agent), the configuration as
//! `lbd check` prints it, and the etcd feed named in `lb.yaml` — each with
//! the real `lbd`, the real kernel program and a real etcd.
//!
//! `cargo test --test ecosystem -- SUBSTRING` runs some (`lb_tests::harness`).

mod cli;
mod config;
mod journald;
mod lab;
mod libbpf;
mod openapi;
mod prometheus;
mod stock;
mod systemd;
mod trace;

use std::process::ExitCode;

use lb_tests::{
    harness::{self, Scenario},
    netns::require_root,
};

/// An agent on loopback in a namespace of its own: one VIP, two backends
/// that need no probe.
pub const SHOP_ON_LO: &str = r#"interfaces: [{name: lo}]
limits: {max_vips: 4, max_backends: 16, ring_size: 251, conntrack_size: 4096}
vips:
  - name: shop
    address: 10.100.0.1
    port: 80
    health_check: {type: none}
    backends: [{address: 10.0.1.1}, {address: 10.0.1.2}]
"#;

/// Each scenario builds what it uses.
#[derive(Default)]
pub struct Env;

macro_rules! scenarios {
    ($($module:ident :: $name:ident),+ $(,)?) => {
        &[$(Scenario { name: stringify!($name), run: $module::$name }),+]
    };
}

const SCENARIOS: &[Scenario<Env>] = scenarios![
    systemd::systemd_hears_ready_with_a_status_naming_vips_and_backends,
    systemd::the_watchdog_is_fed_from_the_main_loop_and_a_frozen_agent_misses_it,
    systemd::a_stopping_agent_says_so_before_it_exits,
    journald::journald_gets_priorities_and_fields_so_journalctl_p_warning_shows_only_warnings,
    prometheus::the_shipped_alert_rules_pass_promtool_check_and_their_unit_tests,
    prometheus::a_real_prometheus_scrapes_lbd_evaluates_the_shipped_rules_and_runs_the_dashboard_queries,
    config::check_json_output_is_a_configuration_that_reads_back_to_the_same_plan,
    config::durations_written_as_1m30s_are_accepted_and_a_bad_one_names_its_field,
    config::the_etcd_feed_named_only_in_lb_yaml_connects_and_serves_its_vips,
    openapi::the_committed_openapi_document_is_generated_and_every_live_answer_fits_its_schema,
    cli::lbctl_top_on_a_pty_shows_live_rates_health_and_intended_shares_and_sorts_from_the_keyboard,
    cli::lbctl_status_version_and_the_json_streams_of_events_follow_and_stats_watch,
    libbpf::a_libbpf_tool_opens_the_pinned_maps_program_and_links_and_reads_what_lbctl_shows,
    trace::lbd_decap_trace_shows_in_lbctl_trace_why_each_tunnel_was_unwrapped_or_refused,
    stock::curl_and_iperf3_reach_nginx_and_iperf3_s_through_every_forwarding_mode,
    lab::lab_up_prints_ways_in_that_work_as_printed_and_lab_down_leaves_nothing_behind,
    lab::lab_up_stock_serves_the_vips_from_nginx_and_lab_down_leaves_nothing_behind,
];

fn main() -> ExitCode {
    harness::run("ecosystem", SCENARIOS, || {
        require_root()?;
        Ok(Env)
    })
}
