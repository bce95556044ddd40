//! The etcd feed against a real etcd (Debian's etcd-server) started by the
//! test: initial load, update, delete, an invalid value, an etcd restart,
//! and the agent's published view.

use std::time::Duration;

use anyhow::Result;
use lb_tests::{
    netns::{Netns, require_root},
    procs::{Etcd, Lbd},
};

const CONFIG: &str = r#"
node: {name: edge-etcd, cloud: aws, region: r1}
# Loopback has no native XDP: the default `xdp_mode: auto` falls back to
# generic mode.
interfaces: [{name: lo}]
limits: {max_vips: 8, max_backends: 64, ring_size: 1021, conntrack_size: 4096}
vips:
  - name: from-file
    address: 10.100.0.9
    port: 80
    health_check: {type: none}
    backends: [{address: 10.0.9.1}]
"#;

const API_V1: &str = r#"{"name": "api", "address": "10.100.0.1", "port": 443, "health_check": {"type": "none"},
  "backends": [{"address": "10.0.1.1", "labels": {"cloud": "aws", "region": "r1"}}]}"#;
const API_V2: &str = r#"{"name": "api", "address": "10.100.0.1", "port": 443, "health_check": {"type": "none"},
  "backends": [{"address": "10.0.1.1", "labels": {"cloud": "aws", "region": "r1"}},
               {"address": "10.0.1.2", "weight": 50, "labels": {"cloud": "aws", "region": "r1"}}]}"#;
const API_BAD: &str = r#"{"name": "api", "address": "10.100.0.1", "port": 443,
  "backends": [{"address": "10.0.1.1", "weight": -1}]}"#;

fn vip<'a>(s: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    s["vips"].as_array()?.iter().find(|v| v["name"] == name)
}

fn backends(s: &serde_json::Value, name: &str) -> usize {
    vip(s, name)
        .and_then(|v| v["backends"].as_array())
        .map_or(0, |b| b.len())
}

#[test]
fn etcd_feeds_vips_and_survives_etcd_restarts() -> Result<()> {
    require_root()?;
    let ns = Netns::new("etcd")?;
    let mut etcd = Etcd::start(&ns, 23790)?;
    etcd.put("/lb/vips/api", API_V1)?;
    let mut etcd_args = etcd.lbd_args();
    etcd_args.extend(["--etcd-prefix".into(), "/lb".into()]);
    let etcd_args: Vec<&str> = etcd_args.iter().map(String::as_str).collect();
    let agent = Lbd::start(&ns, CONFIG, &etcd_args)?;
    let long = Duration::from_secs(15);

    // Initial load: the etcd VIP joins the file's.
    let s = agent.wait_for("initial etcd load", long, |s| vip(s, "api").is_some())?;
    assert!(vip(&s, "from-file").is_some(), "file VIPs stay");
    assert_eq!(backends(&s, "api"), 1);
    assert_eq!(s["etcd"]["connected"], true);

    // Update.
    etcd.put("/lb/vips/api", API_V2)?;
    let s = agent.wait_for("etcd update", long, |s| backends(s, "api") == 2)?;
    let digest = vip(&s, "api").unwrap()["digest"].clone();

    // An invalid value is rejected for that key; the last good one stays.
    etcd.put("/lb/vips/api", API_BAD)?;
    let s = agent.wait_for("rejection recorded", long, |s| {
        s["etcd"]["rejected_keys"]["/lb/vips/api"].is_string()
    })?;
    let why = s["etcd"]["rejected_keys"]["/lb/vips/api"].as_str().unwrap();
    assert!(
        why.contains("backends[0].weight: must be 0..=65535, got -1"),
        "{why}"
    );
    assert_eq!(backends(&s, "api"), 2);
    assert_eq!(
        vip(&s, "api").unwrap()["digest"],
        digest,
        "running state untouched"
    );
    let events = agent.api_get("/v1/events")?;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "config_rejected"
                && e["reason"].as_str().unwrap().contains("/lb/vips/api"))
    );

    // A conflicting VIP (same address and port as a file VIP) is refused too.
    etcd.put(
        "/lb/vips/clash",
        r#"{"name": "clash", "address": "10.100.0.9", "port": 80}"#,
    )?;
    agent.wait_for("conflict rejected", long, |s| {
        s["etcd"]["rejected_keys"]["/lb/vips/clash"].is_string()
    })?;

    // Fixing the value applies it and clears the rejection.
    etcd.put("/lb/vips/api", API_V1)?;
    agent.wait_for("fixed value applied", long, |s| {
        backends(s, "api") == 1 && s["etcd"]["rejected_keys"]["/lb/vips/api"].is_null()
    })?;

    // The agent publishes its view for the fleet.
    let deadline = std::time::Instant::now() + long;
    let view = loop {
        if let Some(v) = etcd.get("/lb/agents/edge-etcd")? {
            let v: serde_json::Value = serde_json::from_str(&v)?;
            if vip(&v, "api").is_some() {
                break v;
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no agent view published"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let now = agent.api_get("/v1/state")?;
    assert_eq!(
        vip(&view, "api").unwrap()["digest"],
        vip(&now, "api").unwrap()["digest"]
    );

    // Delete.
    etcd.delete("/lb/vips/api")?;
    agent.wait_for("etcd delete", long, |s| vip(s, "api").is_none())?;
    etcd.put("/lb/vips/api", API_V2)?;
    let s = agent.wait_for("re-added", long, |s| backends(s, "api") == 2)?;
    let digest = vip(&s, "api").unwrap()["digest"].clone();

    // etcd goes away: the agent keeps the last good state and says so.
    etcd.stop();
    let s = agent.wait_for("disconnect noticed", long, |s| {
        s["etcd"]["connected"] == false
    })?;
    assert_eq!(
        vip(&s, "api").unwrap()["digest"],
        digest,
        "forwarding state kept while etcd is down"
    );
    let metrics = agent.api_get("/v1/state")?;
    assert!(metrics["etcd"]["last_error"].is_string());
    // etcd comes back with a change made before the agent reconnects: the
    // resync at the current revision picks it up (no missed update).
    etcd.spawn()?;
    etcd.put("/lb/vips/late", r#"{"name": "late", "address": "10.100.0.3", "port": 80, "health_check": {"type": "none"}, "backends": [{"address": "10.0.3.1"}]}"#)?;
    etcd.delete("/lb/vips/clash")?;
    agent.wait_for("resync after etcd restart", long, |s| {
        s["etcd"]["connected"] == true && vip(s, "late").is_some()
    })?;
    assert_eq!(backends(&agent.api_get("/v1/state")?, "api"), 2);
    Ok(())
}
