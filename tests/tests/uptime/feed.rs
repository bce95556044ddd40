//! The etcd feed: an outage, a half-open watch, a revision that must apply
//! whole, bad values, and the fleet's view of itself — with real etcd.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_tests::{
    json::find,
    lab::{Prober, lab_config},
    netns::Netns,
    procs::{Etcd, Lbd},
};
use serde_json::Value;

use crate::Env;

const WAIT: Duration = Duration::from_secs(15);
const PORT: u16 = 23790;

fn has_vip(s: &Value, name: &str) -> bool {
    find(&s["vips"], "name", name).is_ok()
}

fn connected(s: &Value) -> bool {
    s["etcd"]["connected"] == true
}

fn etcd_args(e: &Etcd) -> Vec<String> {
    let mut a = e.lbd_args();
    a.extend(["--etcd-prefix".into(), "/lb".into()]);
    a
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A VIP of the lab, from etcd, on the aws backends.
const SHOP: &str = r#"{"name": "shop", "address": "10.100.0.5", "port": 80,
  "health_check": {"type": "tcp", "interval": "300ms", "timeout": "200ms", "rise": 2, "fall": 2},
  "backends": [
    {"address": "10.20.0.11", "forwarding": "l2-dsr", "labels": {"cloud": "aws", "region": "eu-west-1"}},
    {"address": "10.20.0.12", "forwarding": "l2-dsr", "labels": {"cloud": "aws", "region": "eu-west-1"}}]}"#;

pub fn etcd_vips_keep_serving_through_an_etcd_outage_and_an_lbd_restart(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let mut etcd = Etcd::start(&lab.lb, PORT)?;
    etcd.put("/lb/vips/shop", SHOP)?;
    let feed = etcd_args(&etcd);
    let mut a = lab.start_lbd(&lab_config()?, &args(&feed))?;
    a.wait_for("the etcd VIP", WAIT, |s| has_vip(s, "shop") && connected(s))?;
    a.wait_healthy("shop", "10.20.0.11", true, WAIT)?;
    a.wait_healthy("shop", "10.20.0.12", true, WAIT)?;

    let probe = Prober::start(lab, "10.100.0.5:80".parse()?, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(500));
    etcd.stop();
    a.wait_for("the feed to notice", WAIT, |s| !connected(s))?;
    // Restarted while etcd is away: it starts from the saved revision.
    a.stop()?;
    a.spawn(&args(&feed))?;
    let s = a.api_get("/v1/state")?;
    ensure!(
        has_vip(&s, "shop") && !connected(&s),
        "restarted without the etcd VIP: {s}"
    );
    std::thread::sleep(Duration::from_secs(1));
    etcd.spawn()?;
    a.wait_for("the feed to reconnect", WAIT, connected)?;
    std::thread::sleep(Duration::from_millis(500));
    let tally = probe.finish()?;
    ensure!(
        tally.failures.is_empty(),
        "the etcd VIP stopped serving: {:?}",
        tally.failures
    );
    let served: usize = tally.answered.values().sum();
    ensure!(served > 20, "too few probes to tell: {:?}", tally.answered);
    println!("    {served} new connections through the outage and the restart, none failed");
    Ok(())
}

/// An agent on loopback in its own namespace with etcd beside it.
struct Solo {
    etcd: Etcd,
    agent: Lbd,
    ns: Netns,
}

const SOLO: &str = r#"node: {name: NODE, cloud: aws, region: r1}
interfaces: [{name: IFACE}]
limits: {max_vips: 8, max_backends: 32, ring_size: 1021, conntrack_size: 4096}
metrics: {listen: "127.0.0.1:METRICS"}
vips:
  - {name: file, address: 10.100.0.9, port: 80, health_check: {type: none}, backends: [{address: 10.0.9.1}]}
"#;

fn solo_config(node: &str, iface: &str, metrics: u16) -> String {
    SOLO.replace("NODE", node)
        .replace("IFACE", iface)
        .replace("METRICS", &metrics.to_string())
}

fn solo() -> Result<Solo> {
    let ns = Netns::new("feed")?;
    let etcd = Etcd::start(&ns, PORT)?;
    let agent = Lbd::start(
        &ns,
        &solo_config("edge-1", "lo", 9478),
        &args(&etcd_args(&etcd)),
    )?;
    agent.wait_for("the feed", WAIT, connected)?;
    Ok(Solo { etcd, agent, ns })
}

fn vip_json(name: &str, last_octet: u8, weight: &str) -> String {
    format!(
        r#"{{"name": "{name}", "address": "10.100.1.{last_octet}", "port": 80, "health_check": {{"type": "none"}},
  "backends": [{{"address": "10.0.1.{last_octet}", "weight": {weight}}}]}}"#
    )
}

pub fn a_half_open_etcd_watch_is_detected_and_reconnected(_: &mut Env) -> Result<()> {
    let s = solo()?;
    let gauge = || -> Result<String> {
        let m = s.ns.exec(
            "curl",
            &["-s", "--max-time", "2", "http://127.0.0.1:9478/metrics"],
        )?;
        Ok(m.lines()
            .find(|l| l.starts_with("lb_etcd_connected "))
            .unwrap_or_default()
            .to_string())
    };
    ensure!(gauge()? == "lb_etcd_connected 1", "{}", gauge()?);
    // The process is there, its sockets open, and nothing answers.
    s.etcd.pause();
    let down = s
        .agent
        .wait_for("a silent etcd to be noticed", WAIT, |st| !connected(st));
    let metric = gauge();
    s.etcd.resume();
    let down = down?;
    ensure!(
        down["etcd"]["last_error"].is_string(),
        "no reason given: {}",
        down["etcd"]
    );
    ensure!(
        metric? == "lb_etcd_connected 0",
        "the gauge still says connected"
    );
    s.agent.wait_for("the feed to reconnect", WAIT, connected)?;
    // And the new watch delivers.
    s.etcd.put("/lb/vips/after", &vip_json("after", 1, "100"))?;
    s.agent
        .wait_for("a put after the reconnect", WAIT, |st| has_vip(st, "after"))?;
    Ok(())
}

pub fn one_etcd_revision_applies_whole_or_not_at_all(_: &mut Env) -> Result<()> {
    let s = solo()?;
    // One transaction, one bad value: neither key applies.
    s.etcd.put_all(&[
        ("/lb/vips/a", &vip_json("a", 1, "100")),
        ("/lb/vips/b", &vip_json("b", 2, "-1")),
    ])?;
    let st = s.agent.wait_for("both keys refused", WAIT, |st| {
        st["etcd"]["rejected_keys"]
            .as_object()
            .is_some_and(|r| r.len() == 2)
    })?;
    ensure!(
        !has_vip(&st, "a") && !has_vip(&st, "b"),
        "half a revision applied: {st}"
    );
    let why = &st["etcd"]["rejected_keys"];
    ensure!(
        why["/lb/vips/b"]
            .as_str()
            .is_some_and(|w| w.contains("weight"))
            && why["/lb/vips/a"]
                .as_str()
                .is_some_and(|w| w.contains("/lb/vips/b")),
        "the reasons do not say which value is wrong: {why}"
    );
    // Fixed in one transaction: both at once.
    s.etcd.put_all(&[
        ("/lb/vips/a", &vip_json("a", 1, "100")),
        ("/lb/vips/b", &vip_json("b", 2, "50")),
    ])?;
    let st = s.agent.wait_for("both keys applied", WAIT, |st| {
        has_vip(st, "a") || has_vip(st, "b")
    })?;
    ensure!(
        has_vip(&st, "a") && has_vip(&st, "b"),
        "one key seen without the other: {st}"
    );
    ensure!(
        st["etcd"]["rejected_keys"]
            .as_object()
            .is_some_and(|r| r.is_empty()),
        "{}",
        st["etcd"]
    );
    Ok(())
}

pub fn a_bad_etcd_value_is_refused_with_its_key_and_the_feed_stays_up(_: &mut Env) -> Result<()> {
    let mut s = solo()?;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bad = [
        ("/lb/vips/huge", vip_json("huge", 3, "1e20"), "weight"),
        ("/lb/vips/junk", "not json {{{".to_string(), "/lb/vips/junk"),
        ("/lb/vips/deep", deep, "deep"),
        (
            "/lb/vips/timeout",
            vip_json("timeout", 4, "1")
                .replace(r#""type": "none""#, r#""type": "tcp", "interval": "1e20s""#),
            "interval",
        ),
    ];
    for (key, value, _) in &bad {
        s.etcd.put(key, value)?;
    }
    s.etcd.put("/lb/vips/good", &vip_json("good", 5, "100"))?;
    let st = s
        .agent
        .wait_for("the good key after the bad ones", WAIT, |st| {
            has_vip(st, "good")
        })?;
    let rejected = &st["etcd"]["rejected_keys"];
    for (key, _, names) in &bad {
        ensure!(
            rejected[*key].as_str().is_some_and(|w| w.contains(names)),
            "{key}: not refused with {names:?}: {rejected}"
        );
    }
    ensure!(
        connected(&st) && has_vip(&st, "file"),
        "the feed or the file VIPs suffered: {st}"
    );
    ensure!(s.agent.exited().is_none(), "lbd died");
    Ok(())
}

pub fn lbctl_fleet_lists_agents_with_equal_digests_and_no_disagreements(_: &mut Env) -> Result<()> {
    let s = solo()?;
    // A second agent in the same namespace, on its own interface.
    s.ns.ip(&["link", "add", "x0", "type", "veth", "peer", "name", "x1"])?;
    s.ns.ip(&["link", "set", "x0", "up"])?;
    s.ns.ip(&["link", "set", "x1", "up"])?;
    let second = Lbd::start(
        &s.ns,
        &solo_config("edge-2", "x0", 9101),
        &args(&etcd_args(&s.etcd)),
    )?;
    second.wait_for("the feed", WAIT, connected)?;
    s.etcd
        .put("/lb/vips/shared", &vip_json("shared", 6, "100"))?;
    for a in [&s.agent, &second] {
        a.wait_for("the shared VIP", WAIT, |st| has_vip(st, "shared"))?;
    }
    let url = s.etcd.lbd_args();
    let fleet = |want: &dyn Fn(&Value) -> bool| -> Result<Value> {
        let mut last = Value::Null;
        for _ in 0..100 {
            let mut a = vec!["fleet"];
            a.extend(url.iter().map(String::as_str));
            last = s.agent.lbctl_json(&a)?;
            if want(&last) {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the fleet never looked as expected: {last}")
    };
    let both_published = |f: &Value| {
        f["agents"].as_array().is_some_and(|a| a.len() == 2)
            && f["agents"].as_array().is_some_and(|a| {
                a.iter()
                    .all(|v| v["vips"].as_array().is_some_and(|v| v.len() == 2))
            })
    };
    let f =
        fleet(&|f| both_published(f) && f["disagreements"].as_array().is_some_and(Vec::is_empty))?;
    let digests: Vec<&Value> = f["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            find(&a["vips"], "name", "shared")
                .ok()
                .map(|v| &v["digest"])
        })
        .collect();
    ensure!(
        digests.len() == 2 && digests[0] == digests[1],
        "digests differ: {f}"
    );
    // One host steers differently: the fleet says where.
    second.api(
        "PUT",
        "/v1/vips/file/backends/10.0.9.1/weight",
        Some(r#"{"weight": 0}"#),
    )?;
    let f = fleet(&|f| f["disagreements"].as_array().is_some_and(|d| !d.is_empty()))?;
    ensure!(f["disagreements"].to_string().contains("file"), "{f}");
    Ok(())
}
