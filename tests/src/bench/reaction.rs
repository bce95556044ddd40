//! Reaction times on the lab: how fast a failure or a control-plane change
//! reaches the wire, seen by a real client probing with new connections.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;

use crate::{
    lab::{Lab, client_v4},
    procs::{Etcd, Lbd},
};

/// One probe: milliseconds since the event, and who answered (or "error").
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub ms: f64,
    pub backend: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailoverRun {
    /// Kill → the agent's backend_down event (health checks).
    pub detect_ms: f64,
    /// Kill → first successful new connection after the last failed one.
    pub recovered_ms: f64,
    pub failed_probes: usize,
    pub timeline: Vec<Probe>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latencies {
    pub samples: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn latencies(mut v: Vec<f64>) -> Latencies {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latencies {
        samples: v.len(),
        median_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: *v.last().unwrap_or(&0.0),
    }
}

pub(crate) fn unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn probe_until(
    lab: &Lab,
    dst: SocketAddr,
    t0: Instant,
    done: impl Fn(&[Probe]) -> bool,
    limit: Duration,
) -> Result<Vec<Probe>> {
    let mut probes = vec![];
    let mut i = 0u8;
    while t0.elapsed() < limit {
        let who = lab
            .ask(IpAddr::V4(client_v4(i % 8)), dst)
            .unwrap_or_else(|_| "error".into());
        i = i.wrapping_add(1);
        probes.push(Probe {
            ms: t0.elapsed().as_secs_f64() * 1000.0,
            backend: who,
        });
        if done(&probes) {
            return Ok(probes);
        }
        // Paced, so the probing itself does not starve the agent of CPU.
        std::thread::sleep(Duration::from_millis(2));
    }
    anyhow::bail!(
        "no recovery within {limit:?}: last probes {:?}",
        &probes[probes.len().saturating_sub(5)..]
    )
}

/// Event time (Unix seconds) of the first `kind` for `vip`/`backend` after `after`.
pub(crate) fn event_time(
    agent: &Lbd,
    kind: &str,
    vip: &str,
    backend: Option<&str>,
    after: f64,
) -> Result<Option<f64>> {
    let events = agent.api_get("/v1/events")?;
    Ok(events.as_array().context("events")?.iter().find_map(|e| {
        let t = e["time"].as_f64()?;
        (t >= after
            && e["kind"] == kind
            && e["vip"] == vip
            && backend.is_none_or(|b| e["backend"] == b))
        .then_some(t)
    }))
}

/// How long new connections are watched after a failure: long enough for
/// detection plus a margin, so "clean after" never ends on a lucky streak
/// of probes that happened to hash elsewhere.
const WATCH: Duration = Duration::from_secs(3);

/// Kills `servers`, probes with new connections for [`WATCH`] and reports
/// when the last failure was; then restores them.
pub fn failover(
    lab: &mut Lab,
    agent: &Lbd,
    dst: SocketAddr,
    vip: &str,
    servers: &[&str],
    addr: &str,
) -> Result<FailoverRun> {
    let t_unix = unix();
    let t0 = Instant::now();
    for s in servers {
        lab.kill_server(s);
    }
    let timeline = probe_until(
        lab,
        dst,
        t0,
        |_| t0.elapsed() >= WATCH,
        WATCH + Duration::from_secs(1),
    )?;
    let last_fail = timeline
        .iter()
        .rposition(|p| p.backend == "error" || servers.contains(&p.backend.as_str()));
    let recovered_ms = match last_fail {
        Some(i) => timeline.get(i + 1).map_or(0.0, |p| p.ms),
        None => timeline.first().map_or(0.0, |p| p.ms),
    };
    let mut detect = None;
    for _ in 0..100 {
        if let Some(t) = event_time(agent, "backend_down", vip, Some(addr), t_unix)? {
            detect = Some((t - t_unix) * 1000.0);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed_probes = timeline.iter().filter(|p| p.backend == "error").count();
    for s in servers {
        lab.start_server(s)?;
    }
    // Back to the starting point before the next run.
    let t1 = Instant::now();
    probe_until(
        lab,
        dst,
        t1,
        |p| {
            p.len() >= 20
                && p[p.len() - 20..]
                    .iter()
                    .all(|x| servers.iter().any(|s| x.backend == *s) || x.backend != "error")
        },
        Duration::from_secs(10),
    )?;
    let all_back = Instant::now();
    while all_back.elapsed() < Duration::from_secs(5) {
        let s = agent.api_get("/v1/state")?;
        let backends = &crate::json::find(&s["vips"], "name", vip)?["backends"];
        let healthy = backends
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["healthy"] == true));
        if healthy {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(FailoverRun {
        detect_ms: detect.context("no backend_down event")?,
        recovered_ms,
        failed_probes,
        timeline,
    })
}

/// Makes `changes` changes, each (`change(i)`) naming the backend the
/// wire must reach afterwards, and measures for each how long until probes
/// of `dst` reach it.
fn until_the_wire_follows(
    lab: &Lab,
    dst: SocketAddr,
    changes: usize,
    bound: Duration,
    mut change: impl FnMut(usize) -> Result<&'static str>,
) -> Result<Latencies> {
    let mut ms = vec![];
    for i in 0..changes {
        let t0 = Instant::now();
        let name = change(i)?;
        let reached = |p: &[Probe]| p.last().is_some_and(|x| x.backend == name);
        probe_until(lab, dst, t0, reached, bound)?;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    ensure!(!ms.is_empty());
    Ok(latencies(ms))
}

/// PUTs alternating one-backend lists and measures until the wire follows.
pub fn api_push(lab: &Lab, agent: &Lbd, changes: usize) -> Result<Latencies> {
    let targets = [("c1", "10.33.1.2"), ("c2", "10.33.2.2")];
    let dst = "10.100.0.1:80".parse()?;
    let latencies = until_the_wire_follows(lab, dst, changes, Duration::from_secs(5), |i| {
        let (name, addr) = targets[i % 2];
        let body = format!(
            r#"[{{"address": "{addr}", "forwarding": "gue", "labels": {{"cloud": "azure"}}}}]"#
        );
        agent.api("PUT", "/v1/vips/web/backends", Some(&body))?;
        Ok(name)
    });
    agent.api("DELETE", "/v1/vips/web/backends", None)?;
    latencies
}

/// Puts alternating VIP values into etcd and measures until the wire follows.
pub fn etcd_put(lab: &Lab, etcd: &Etcd, prefix: &str, changes: usize) -> Result<Latencies> {
    let value = |addr: &str| {
        format!(
            r#"{{"name": "feed", "address": "10.100.0.5", "port": 80, "health_check": {{"type": "none"}}, "backends": [{{"address": "{addr}", "forwarding": "gue"}}]}}"#
        )
    };
    let targets = [("c1", "10.33.1.2"), ("c2", "10.33.2.2")];
    let dst = "10.100.0.5:80".parse()?;
    // A client connected once (TLS and authentication done), as a control
    // plane would hold one: starting etcdctl per put would time etcdctl.
    let rt = lb::cli::runtime(None).context("tokio runtime")?;
    let security = lb::daemon::etcd::EtcdSecurity {
        ca_file: Some(etcd.ca.clone()),
        cert_file: Some(etcd.client.cert.clone()),
        key_file: Some(etcd.client.key.clone()),
        user: Some(Etcd::USER.into()),
        password_file: Some(etcd.password_file.clone()),
    };
    let client = {
        let _in = lab.lb.enter()?;
        rt.block_on(lb::daemon::etcd::Client::connect(&etcd.url(), &security))?
    };
    until_the_wire_follows(lab, dst, changes, Duration::from_secs(10), |i| {
        let (name, addr) = targets[i % 2];
        rt.block_on(client.put(&format!("{prefix}/vips/feed"), value(addr).as_bytes(), None))?;
        Ok(name)
    })
}
