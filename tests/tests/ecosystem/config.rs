//! The configuration as operators handle it: `lbd check` and its JSON
//! form, humane durations, and the etcd feed set in `lb.yaml` rather than
//! on the command line (which a systemd unit cannot change without
//! overriding `ExecStart`).

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    netns::Netns,
    procs::{Etcd, Lbd, TempDir, bin},
};

use super::Env;

/// Every section set, several VIPs in different modes.
const FULL: &str = r#"node: {name: edge-1, cloud: aws, region: eu-west-1, zone: a}
interfaces: [{name: eth0, xdp_mode: driver}]
limits: {max_vips: 8, max_backends: 64, ring_size: 251}
dataplane: {udp_idle_timeout: 1m30s, encap_source_v4: 172.16.0.0/20}
metrics: {listen: "127.0.0.1:9478"}
announce: {drain_time: 2.5s}
etcd: {endpoints: ["https://10.0.0.5:2379"], prefix: /edge, ca_file: /etc/lb/etcd/ca.pem}
log: {level: debug}
tenants: {shop: {max_vips: 2}}
vips:
  - name: web
    address: 10.100.0.1
    port: 443
    tenant: shop
    allow: [10.0.0.0/8]
    rate_limit: {new_flows_per_sec: 1000, burst: 250ms}
    policy: {mode: active-passive, tiers: [{cloud: aws}, {cloud: gcp}], failback_after: 1m}
    health_check: {type: http, path: /healthz, interval: 1500ms, timeout: 1s}
    backends:
      - {address: 10.0.1.1, weight: 50, labels: {cloud: aws}, state: draining}
      - {address: 10.0.1.2, forwarding: gue, labels: {cloud: gcp}}
  - address: "2001:db8::1"
    port: all
    protocol: udp
    forwarding: l2-dsr
    policy: {mode: active-active, cloud_weights: {aws: 2, gcp: 1}}
    health_check: {type: dns}
    backends: [{address: "2001:db8::10", mac: "02:00:00:00:00:10"}]
"#;

fn lbd_check(config: &Path, json: bool) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(bin("lbd")?);
    cmd.args(["check", "--config"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().context("run lbd check")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub fn check_json_output_is_a_configuration_that_reads_back_to_the_same_plan(
    _: &mut Env,
) -> Result<()> {
    let dir = TempDir::new("check")?;
    let first = dir.0.join("lb.yaml");
    std::fs::write(&first, FULL)?;
    let (ok, json, err) = lbd_check(&first, true)?;
    ensure!(ok, "lbd check --json refused the file: {err}");
    let doc: serde_json::Value = serde_json::from_str(&json).context("check --json is JSON")?;
    ensure!(
        doc["dataplane"]["udp_idle_timeout"] == "1m 30s"
            && doc["vips"][0]["health_check"]["interval"] == "1s 500ms",
        "durations are not written as text: {json}"
    );
    let second = dir.0.join("printed.json");
    std::fs::write(&second, &json)?;
    let (ok, again, err) = lbd_check(&second, true)?;
    ensure!(
        ok,
        "lbd check refused what check --json printed: {err}\n{json}"
    );
    ensure!(again == json, "the printed form is not a fixed point");
    let (_, plan_a, _) = lbd_check(&first, false)?;
    let (_, plan_b, _) = lbd_check(&second, false)?;
    ensure!(plan_a == plan_b, "plans differ:\n{plan_a}\n---\n{plan_b}");
    for words in [
        "policy active-passive (tiers cloud=aws then cloud=gcp)",
        "forwarding l2-dsr",
        "health_check http every 1s 500ms",
        "etcd: https://10.0.0.5:2379 under /edge",
    ] {
        ensure!(
            plan_a.contains(words),
            "the plan lacks {words:?}:\n{plan_a}"
        );
    }
    for rust in ["Some(", "ActivePassive", "L2Dsr", "secs:"] {
        ensure!(
            !plan_a.contains(rust),
            "Rust's words in the plan:\n{plan_a}"
        );
    }
    Ok(())
}

pub fn durations_written_as_1m30s_are_accepted_and_a_bad_one_names_its_field(
    _: &mut Env,
) -> Result<()> {
    let dir = TempDir::new("check")?;
    let file = dir.0.join("lb.yaml");
    let with = |interval: &str| {
        format!(
            "interfaces: [{{name: eth0}}]\nvips:\n  - {{name: w, address: 10.0.0.1, port: 80, health_check: {{interval: {interval}, timeout: 1s}}, backends: [{{address: 10.0.1.1}}]}}\n"
        )
    };
    std::fs::write(&file, with("1m30s"))?;
    let (ok, plan, err) = lbd_check(&file, false)?;
    ensure!(ok, "1m30s refused: {err}");
    ensure!(plan.contains("every 1m 30s"), "{plan}");
    std::fs::write(&file, with("\"90 seconds please\""))?;
    let (ok, _, err) = lbd_check(&file, false)?;
    ensure!(!ok, "a bad duration was accepted");
    ensure!(
        err.contains("vips[0].health_check.interval: expected a duration like"),
        "the error does not name the field: {err}"
    );
    Ok(())
}

const FED: &str = r#"interfaces: [{name: lo}]
limits: {max_vips: 4, max_backends: 16, ring_size: 251, conntrack_size: 4096}
vips:
  - {name: file, address: 10.100.0.9, port: 80, health_check: {type: none}, backends: [{address: 10.0.9.1}]}
"#;

pub fn the_etcd_feed_named_only_in_lb_yaml_connects_and_serves_its_vips(_: &mut Env) -> Result<()> {
    let ns = Netns::new("etcdcfg")?;
    let etcd = Etcd::start(&ns, 23791)?;
    let config = format!("{}{FED}", etcd.lb_yaml("/eco"));
    // No --etcd flag: the file alone names etcd, its TLS files and user.
    let agent = Lbd::start(&ns, &config, &[])?;
    let wait = Duration::from_secs(20);
    agent.wait_for("the feed named in lb.yaml", wait, |s| {
        s["etcd"]["connected"] == true
    })?;
    etcd.put(
        "/eco/vips/fed",
        r#"{"name": "fed", "address": "10.100.0.10", "port": 80, "health_check": {"type": "none"}, "backends": [{"address": "10.0.9.2"}]}"#,
    )?;
    agent.wait_for("the VIP put under the file's prefix", wait, |s| {
        s["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == "fed"))
    })?;
    Ok(())
}
