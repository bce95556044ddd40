//! Security scenarios: who may reach a VIP and how fast (allow and deny
//! lists, per-source rate limits, hygiene, on the real data path in the
//! lab, with real TCP clients and servers), who may drive the agent (HTTPS,
//! mTLS, token roles, tenants, quotas, the audit log, with the real lbctl
//! from another namespace), and the etcd feed over TLS with a user.
//!
//! `cargo test --test security -- SUBSTRING` runs some (`lb_tests::harness`).

mod api;
mod datapath;
mod feed;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context as _, Result};
use lb_tests::{
    harness::{self, Scenario},
    lab::Lab,
    netns::require_root,
    pki::{Ca, Pair},
    procs::{Lbd, TempDir, bin},
};

/// The lab's LB host, where the agent's TCP API listens.
pub const LB_ADDR: &str = "10.20.0.2";
pub const API_PORT: u16 = 9443;
pub const SHOP: &str = "10.100.0.1:80";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

/// The lab, and files the scenarios share (a CA, the API's certificate,
/// a client certificate, tokens).
pub struct Env {
    lab: Option<Lab>,
    pub files: TempDir,
    pub ca: Ca,
    pub server: Pair,
    pub client: Pair,
}

impl Env {
    fn new() -> Result<Self> {
        let files = TempDir::new("security")?;
        let ca = Ca::new(&files.0, "api-ca")?;
        let server = ca.issue("api", "lbd", &[&format!("IP:{LB_ADDR}"), "IP:127.0.0.1"])?;
        let client = ca.issue("operator", "oncall-laptop", &["DNS:oncall-laptop"])?;
        Ok(Self {
            lab: None,
            files,
            ca,
            server,
            client,
        })
    }

    pub fn lab(&mut self) -> Result<&mut Lab> {
        if self.lab.is_none() {
            self.lab = Some(Lab::build()?);
        }
        let lab = self.lab.as_mut().expect("just built");
        lab.start_all_servers()?;
        Ok(lab)
    }

    /// A file under the scenarios' directory.
    pub fn file(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let p = self.files.0.join(name);
        std::fs::write(&p, contents)?;
        Ok(p)
    }
}

/// The agent of a scenario, with the shop VIP's backends healthy.
pub fn start_agent(lab: &Lab, config: &str, api_extra: &str, args: &[&str]) -> Result<Lbd> {
    let agent = Lbd::start_with(&lab.lb, config, args, api_extra)?;
    for b in ["10.20.0.11", "10.20.0.12"] {
        agent.wait_healthy("shop", b, true, Duration::from_secs(10))?;
    }
    Ok(agent)
}

/// `lbctl ARGS` run from the client namespace (another host) against the
/// agent's HTTPS API.
pub fn remote_lbctl(
    lab: &Lab,
    token: &std::path::Path,
    tls: &[&str],
    args: &[&str],
) -> Result<Output> {
    let api = format!("https://{LB_ADDR}:{API_PORT}");
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.client.name()))
        .arg(bin("lbctl")?)
        .args(["--api", &api, "--token-file"])
        .arg(token)
        .args(tls)
        .args(args)
        .output()
        .context("run lbctl")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn client_ip(i: u8) -> IpAddr {
    IpAddr::V4(lb_tests::lab::client_v4(i))
}

macro_rules! scenarios {
    ($($module:ident :: $name:ident),+ $(,)?) => {
        &[$(Scenario { name: stringify!($name), run: $module::$name }),+]
    };
}

const SCENARIOS: &[Scenario<Env>] = scenarios![
    datapath::impossible_tcp_flags_from_the_wire_are_dropped_and_counted_on_the_vip,
    datapath::an_allowed_client_is_served_and_a_denied_one_is_not,
    datapath::an_allow_list_change_applies_at_once_and_never_drops_a_source_on_both_lists,
    datapath::a_syn_flood_from_one_source_is_held_to_its_budget_while_other_clients_connect,
    api::the_tcp_api_serves_https_with_its_certificate_and_nothing_in_clear,
    api::with_mtls_a_client_without_a_certificate_is_refused,
    api::a_renewed_certificate_is_served_without_a_restart,
    api::a_read_token_cannot_drain_and_an_operator_cannot_replace_backends,
    api::a_tenant_token_sees_only_its_vips_and_others_are_not_found,
    api::a_push_over_a_tenant_quota_is_refused_with_the_field_and_nothing_changes,
    api::a_config_sharing_a_backend_across_tenants_is_rejected_and_the_running_state_kept,
    api::every_change_accepted_or_refused_is_in_the_audit_log_with_who_and_from_where,
    api::the_unix_socket_stays_0600_and_names_its_peer,
    api::a_bad_tokens_file_stops_the_start_with_the_field_path,
    feed::the_feed_reads_etcd_over_tls_as_its_user,
    feed::etcd_refuses_an_agent_without_a_user_or_with_a_wrong_password,
    feed::etcd_refuses_an_agent_without_a_client_certificate,
];

fn main() -> std::process::ExitCode {
    harness::run("security", SCENARIOS, || {
        require_root()?;
        Env::new()
    })
}
