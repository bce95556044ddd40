//! End to end on the lab (docs/TESTING.md): real TCP and UDP clients, real
//! servers in six backend namespaces across three "clouds", lbd with
//! examples/lab.yaml, real failures. One lab, scenarios in sequence (each
//! restores what it changed).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    lab::{LAB_BACKENDS, Lab, Talkers, client_v4, lab_config, request},
    procs::Lbd,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address literal")
}

const WEB: &str = "10.100.0.1:80";
const ORDERS: &str = "10.100.0.3:80";
const PARTNERS: &str = "10.100.0.4:80";
const WEB6: &str = "[fd00:100::1]:80";
/// Generous bound for health checks (300 ms × fall 2 or rise 2) plus table
/// update to reach the wire; the measured figures are printed.
const BOUND: Duration = Duration::from_secs(5);

/// `n` new connections to `vip` all land in `cloud`.
fn served_by(lab: &Lab, vip: &str, n: usize, cloud: &str, what: &str) -> Result<()> {
    let counts = lab.spread(addr(vip), n);
    ensure!(
        counts.keys().all(|k| lab.cloud_of(k) == Some(cloud)),
        "{what}: {counts:?}"
    );
    Ok(())
}

fn wait_healthy(agent: &Lbd, vip: &str, backend: &str, want: bool) -> Result<Duration> {
    agent.wait_healthy(vip, backend, want, BOUND * 2)
}

fn share(counts: &BTreeMap<String, usize>, pred: impl Fn(&str) -> bool) -> f64 {
    let total: usize = counts.values().sum();
    counts
        .iter()
        .filter(|(k, _)| pred(k))
        .map(|(_, v)| *v)
        .sum::<usize>() as f64
        / total as f64
}

/// Asks until `ok` holds for every answer of a window of `n` consecutive
/// new connections; returns how long that took from `since`.
fn until_steady(
    lab: &Lab,
    dst: SocketAddr,
    n: usize,
    since: Instant,
    ok: impl Fn(&str) -> bool,
) -> Result<Duration> {
    let deadline = since + BOUND;
    loop {
        let window = lab.spread(dst, n);
        if window.keys().all(|k| ok(k)) {
            return Ok(since.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "{dst}: still {window:?} after {BOUND:?}"
        );
    }
}

#[test]
fn lab_end_to_end() -> Result<()> {
    let mut lab = Lab::build()?;
    let agent = lab.start_lbd(&lab_config()?, &[])?;
    // Every backend healthy before starting.
    for b in LAB_BACKENDS {
        wait_healthy(&agent, "web", b, true)?;
    }
    distribution(&lab, &agent)?;
    same_flow_same_backend(&lab)?;
    ipv6(&lab)?;
    active_active_and_active_passive(&mut lab, &agent)?;
    drain(&lab, &agent)?;
    backend_failure_under_load(&mut lab, &agent)?;
    cloud_failover_and_failback(&mut lab, &agent)?;
    api_push_reaches_the_wire(&lab, &agent)?;
    decap_counters(&lab)?;
    Ok(())
}

/// Scenario 1: New connections spread over the backends as the Maglev table says.
fn distribution(lab: &Lab, agent: &Lbd) -> Result<()> {
    let n = 400;
    let counts = lab.spread(addr(PARTNERS), n);
    let state = agent.api_get("/v1/state")?;
    let vip = lb_tests::json::find(&state["vips"], "name", "partners")?;
    let names = [
        ("10.20.0.11", "a1"),
        ("10.20.0.12", "a2"),
        ("10.32.1.2", "b1"),
        ("10.32.2.2", "b2"),
        ("10.33.1.2", "c1"),
        ("10.33.2.2", "c2"),
    ];
    println!("distribution over {n} connections to partners: {counts:?}");
    ensure!(
        !counts.contains_key("error"),
        "failed connections: {counts:?}"
    );
    for b in vip["backends"].as_array().unwrap() {
        let name = names.iter().find(|(a, _)| b["address"] == *a).unwrap().1;
        let want = b["ring_share"].as_f64().unwrap();
        let got = *counts.get(name).unwrap_or(&0) as f64 / n as f64;
        // 400 samples: 4 standard deviations of a 35% share is 0.095.
        ensure!(
            (got - want).abs() < 0.1,
            "{name}: {got:.3} of connections, ring share {want:.3}"
        );
    }
    Ok(())
}

/// Scenario 1b: The same 5-tuple always lands on the same backend.
fn same_flow_same_backend(lab: &Lab) -> Result<()> {
    // UDP: every datagram of one socket.
    let sock = lab.udp(IpAddr::V4(client_v4(1)))?;
    let mut seen = BTreeMap::new();
    for i in 0..20 {
        sock.send_to(format!("q{i}").as_bytes(), addr("10.100.0.2:53"))?;
        let mut buf = [0u8; 256];
        let (n, _) = sock.recv_from(&mut buf)?;
        let who = String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        *seen.entry(who).or_insert(0) += 1;
    }
    ensure!(seen.len() == 1, "one UDP flow went to {seen:?}");
    // TCP: the same source port reconnecting (closed with RST so the tuple
    // can be reused at once).
    let mut tcp = BTreeMap::new();
    for _ in 0..5 {
        let mut s = lab.connect(IpAddr::V4(client_v4(2)), 45555, addr(WEB))?;
        let who = request(&mut s, "same")?;
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        drop(s);
        *tcp.entry(who).or_insert(0) += 1;
    }
    ensure!(tcp.len() == 1, "one TCP 5-tuple went to {tcp:?}");
    Ok(())
}

/// Scenario 8: IPv6 VIP end to end (IPv6-in-IPv6 to gcp, GUE over IPv6 to azure).
fn ipv6(lab: &Lab) -> Result<()> {
    let counts = lab.spread(addr(WEB6), 120);
    println!("IPv6 VIP over 120 connections: {counts:?}");
    ensure!(!counts.contains_key("error"), "{counts:?}");
    ensure!(
        counts
            .keys()
            .all(|k| ["b1", "b2", "c1"].contains(&k.as_str())),
        "{counts:?}"
    );
    ensure!(
        counts.len() == 3,
        "all three IPv6 backends serve: {counts:?}"
    );
    Ok(())
}

/// Scenario 4: Active-active weights and active-passive tiers, on the wire.
fn active_active_and_active_passive(lab: &mut Lab, agent: &Lbd) -> Result<()> {
    let counts = lab.spread(addr(PARTNERS), 300);
    let aws = share(&counts, |k| lab.cloud_of(k) == Some("aws"));
    println!("active-active 70/30: aws {aws:.3} ({counts:?})");
    ensure!((aws - 0.7).abs() < 0.1, "aws share {aws}");

    // orders: gcp first, azure second.
    served_by(lab, ORDERS, 60, "gcp", "tier 0 (gcp) serves")?;
    let t0 = Instant::now();
    for s in ["b1", "b2"] {
        lab.kill_server(s);
    }
    let moved = until_steady(lab, addr(ORDERS), 20, t0, |k| {
        lab.cloud_of(k) == Some("azure")
    })?;
    println!("active-passive: gcp lost, azure serving after {moved:?}");
    lab.start_server("b1")?;
    lab.start_server("b2")?;
    // The tier regains capacity with its first healthy backend.
    let started = Instant::now();
    while !agent.healthy("orders", "10.32.1.2")? && !agent.healthy("orders", "10.32.2.2")? {
        ensure!(started.elapsed() < BOUND, "gcp never came back");
        std::thread::sleep(Duration::from_millis(10));
    }
    let healthy_at = Instant::now();
    // Hysteresis: gcp is healthy again but only takes traffic back after
    // failback_after (2 s) of uninterrupted health.
    let early = lab.spread(addr(ORDERS), 10);
    if healthy_at.elapsed() < Duration::from_millis(1500) {
        ensure!(
            early.keys().all(|k| lab.cloud_of(k) == Some("azure")),
            "failed back too early: {early:?}"
        );
    }
    let back = until_steady(lab, addr(ORDERS), 20, healthy_at, |k| {
        lab.cloud_of(k) == Some("gcp")
    })?;
    println!(
        "active-passive: back on gcp {back:?} after the test saw it healthy (failback_after 2s)"
    );
    let events = agent.api_get("/v1/events")?;
    let orders: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vip"] == "orders")
        .collect();
    let kinds: Vec<&str> = orders.iter().filter_map(|e| e["kind"].as_str()).collect();
    ensure!(
        kinds.contains(&"failover") && kinds.contains(&"failback"),
        "events: {kinds:?}"
    );
    // The hysteresis on the agent's own clock: from the first gcp backend
    // back up (the tier has capacity again) to the failback decision. The
    // test's view of "healthy" lags the agent's by its polling.
    let time = |e: &serde_json::Value| e["time"].as_f64().unwrap_or(0.0);
    let last = |kind: &str| {
        orders
            .iter()
            .rev()
            .find(|e| e["kind"] == kind)
            .map(|e| time(e))
            .with_context(|| format!("no {kind} event: {kinds:?}"))
    };
    let (failover, failback) = (last("failover")?, last("failback")?);
    let up = orders
        .iter()
        .filter(|e| {
            e["kind"] == "backend_up"
                && e["backend"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("10.32."))
                && (failover..=failback).contains(&time(e))
        })
        .map(|e| time(e))
        .fold(f64::NAN, f64::min);
    ensure!(
        up.is_finite(),
        "no gcp backend_up before the failback: {kinds:?}"
    );
    let held = failback - up;
    ensure!(
        held >= 1.95,
        "failed back {held:.3} s after gcp came back, before the 2 s hysteresis"
    );
    Ok(())
}

/// Scenario 5: Drain: new flows avoid the backend, an established connection on it
/// keeps working until it is closed.
fn drain(lab: &Lab, agent: &Lbd) -> Result<()> {
    let mut conn = None;
    for i in 0..50 {
        let mut s = lab.connect(IpAddr::V4(client_v4((i % 8) as u8)), 0, addr(WEB))?;
        if request(&mut s, "pick")? == "a1" {
            conn = Some(s);
            break;
        }
    }
    let mut conn = conn.context("no connection landed on a1")?;
    agent.api("POST", "/v1/vips/web/backends/10.20.0.11/drain", None)?;
    let counts = lab.spread(addr(WEB), 60);
    println!("while a1 drains: {counts:?}");
    ensure!(
        !counts.contains_key("a1") && !counts.contains_key("error"),
        "{counts:?}"
    );
    for i in 0..10 {
        ensure!(
            request(&mut conn, &format!("still-{i}"))? == "a1",
            "the drained backend's connection moved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(conn);
    agent.api("POST", "/v1/vips/web/backends/10.20.0.11/undrain", None)?;
    let counts = lab.spread(addr(WEB), 40);
    ensure!(
        counts.contains_key("a1"),
        "a1 back after undrain: {counts:?}"
    );
    Ok(())
}

/// Scenario 2: A backend dies under load: health checks take it out, new
/// connections avoid it within the bound, connections to the others never
/// notice.
fn backend_failure_under_load(lab: &mut Lab, agent: &Lbd) -> Result<()> {
    let talkers = Talkers::start(lab, addr(WEB), 16)?;
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    lab.kill_server("a2");
    let detected = wait_healthy(agent, "web", "10.20.0.12", false)?;
    let avoided = until_steady(lab, addr(WEB), 20, t0, |k| k != "a2" && k != "error")?;
    println!(
        "a2 killed: marked down after {detected:?}, new connections avoid it after {avoided:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let results = talkers.finish();
    let mut survivors = 0;
    for (backend, sent, failure) in &results {
        if backend == "a2" {
            continue; // its server was killed: those connections end.
        }
        ensure!(
            failure.is_none(),
            "a connection to {backend} broke: {failure:?}"
        );
        ensure!(
            *sent > 10,
            "a connection to {backend} stalled ({sent} messages)"
        );
        survivors += 1;
    }
    ensure!(
        survivors > 0,
        "no connection to another backend was tested: {results:?}"
    );
    lab.start_server("a2")?;
    wait_healthy(agent, "web", "10.20.0.12", true)?;
    Ok(())
}

/// Scenario 3: The local cloud fails: traffic moves to the other clouds; it comes
/// back: traffic returns (after rise) and stays.
fn cloud_failover_and_failback(lab: &mut Lab, agent: &Lbd) -> Result<()> {
    served_by(lab, WEB, 40, "aws", "local-first keeps aws")?;
    let t0 = Instant::now();
    for s in ["a1", "a2"] {
        lab.kill_server(s);
    }
    let moved = until_steady(lab, addr(WEB), 30, t0, |k| {
        matches!(lab.cloud_of(k), Some("gcp" | "azure"))
    })?;
    let counts = lab.spread(addr(WEB), 60);
    println!("aws lost: traffic on other clouds after {moved:?}: {counts:?}");
    ensure!(
        counts.keys().any(|k| lab.cloud_of(k) == Some("gcp"))
            && counts.keys().any(|k| lab.cloud_of(k) == Some("azure"))
    );
    let t1 = Instant::now();
    lab.start_server("a1")?;
    lab.start_server("a2")?;
    let back = until_steady(lab, addr(WEB), 30, t1, |k| lab.cloud_of(k) == Some("aws"))?;
    println!("aws back: traffic returned after {back:?}");
    // No flapping: it stays home.
    for _ in 0..3 {
        let c = lab.spread(addr(WEB), 30);
        ensure!(
            c.keys().all(|k| lab.cloud_of(k) == Some("aws")),
            "flapped: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let events = agent.api_get("/v1/events")?;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vip"] == "web")
        .filter_map(|e| e["kind"].as_str())
        .collect();
    ensure!(
        kinds.contains(&"failover") && kinds.contains(&"failback"),
        "events: {kinds:?}"
    );
    Ok(())
}

/// Scenario 7: A backend list pushed through the API reaches the wire.
fn api_push_reaches_the_wire(lab: &Lab, agent: &Lbd) -> Result<()> {
    agent.api(
        "PUT",
        "/v1/vips/web/backends",
        Some(r#"[{"address": "10.33.2.2", "forwarding": "gue", "labels": {"cloud": "azure"}}]"#),
    )?;
    let t0 = Instant::now();
    let took = until_steady(lab, addr(WEB), 20, t0, |k| k == "c2")?;
    println!("API push: all new connections on c2 after {took:?}");
    agent.api("DELETE", "/v1/vips/web/backends", None)?;
    until_steady(lab, addr(WEB), 20, Instant::now(), |k| {
        lab.cloud_of(k) == Some("aws")
    })?;
    Ok(())
}

/// The tunnelled backends stripped the scenarios' packets themselves:
/// `lbctl decap` on them shows the program, what it accepts (the LB's
/// sources, the VIPs), its counters.
fn decap_counters(lab: &Lab) -> Result<()> {
    for (name, gue) in [("b1", false), ("c1", true)] {
        let s = lab.decap_status(name)?;
        let d = &s[0];
        ensure!(d["iface"] == "eth0", "{name}: {s}");
        ensure!(
            d["addresses"].as_array().is_some_and(|a| a
                .iter()
                .any(|x| x.as_str().is_some_and(|x| x.starts_with("10.3")))),
            "{name}: {s}"
        );
        ensure!(
            d["decap_ok"].as_u64().unwrap_or(0) > 0,
            "{name} decapsulated nothing: {s}"
        );
        ensure!(d["decap_drop_malformed"] == 0, "{name}: {s}");
        // Restricted to the LB's sources and the VIPs, and no real tunnel
        // of the scenarios was refused.
        let has = |field: &str, want: &str| {
            d[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == want))
        };
        ensure!(
            has("lb_sources", "172.16.0.0/16") && has("vips", "10.100.0.1"),
            "{name}: {s}"
        );
        ensure!(
            d["any_source"] == false && d["any_vip"] == false,
            "{name}: {s}"
        );
        ensure!(
            d["decap_refused_source"] == 0 && d["decap_refused_inner"] == 0,
            "{name} refused real tunnels: {s}"
        );
        if gue {
            ensure!(d["gue_port"] == 6080, "{name}: {s}");
        }
    }
    Ok(())
}
