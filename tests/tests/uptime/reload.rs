//! Reloads: SIGHUP and a changed file apply a good configuration; a bad,
//! empty or cut file, or one that would drop every VIP by accident, is
//! refused with the running state kept; fields read only at start-up are
//! reported as waiting for a restart, never counted as applied.

use std::time::{Duration, SystemTime};

use anyhow::{Result, ensure};
use lb_tests::{json::find, netns::Netns, procs::Lbd};
use serde_json::Value;

use crate::Env;

const WAIT: Duration = Duration::from_secs(10);

/// A file for an agent on loopback; `{weight}` and `{extra}` vary.
fn file(weight: &str, extra: &str) -> String {
    format!(
        r#"node: {{name: reload, cloud: aws, region: r1}}
interfaces: [{{name: lo}}]
limits: {{max_vips: 8, max_backends: 32, ring_size: 1021, conntrack_size: 4096}}
vips:
  - name: web
    address: 10.100.0.1
    port: 80
    health_check: {{type: none}}
    backends:
      - {{address: 10.0.1.1, weight: {weight}}}
      - {{address: 10.0.1.2}}
  - name: api
    address: 10.100.0.2
    port: 443
    health_check: {{type: none}}
    backends: [{{address: 10.0.2.1}}]
{extra}"#
    )
}

fn agent(ns: &Netns) -> Result<Lbd> {
    Lbd::start(ns, &file("100", ""), &[])
}

fn weight_of(s: &Value, vip: &str, backend: &str) -> Option<u64> {
    let v = find(&s["vips"], "name", vip).ok()?;
    find(&v["backends"], "address", backend).ok()?["weight"].as_u64()
}

fn reloads(s: &Value, result: &str) -> u64 {
    s["reloads"][result].as_u64().unwrap_or(0)
}

/// The VIPs and backends the agent serves, as (vip, backend, weight).
fn serving(s: &Value) -> Vec<(String, String, u64)> {
    let mut out = vec![];
    for v in s["vips"].as_array().into_iter().flatten() {
        for b in v["backends"].as_array().into_iter().flatten() {
            out.push((
                v["name"].as_str().unwrap_or_default().into(),
                b["address"].as_str().unwrap_or_default().into(),
                b["weight"].as_u64().unwrap_or(0),
            ));
        }
    }
    out
}

/// Writes `body` but keeps the file's modification time, so only a signal
/// can make the agent read it.
fn write_unnoticed(a: &Lbd, body: &str) -> Result<()> {
    let before = std::fs::metadata(&a.config)?.modified()?;
    a.write_config(body)?;
    std::fs::File::options()
        .write(true)
        .open(&a.config)?
        .set_modified(before)?;
    Ok(())
}

/// Offers `body` on SIGHUP and waits until the reload is counted as
/// `result`; returns the state then.
fn reload(a: &Lbd, body: &str, result: &str) -> Result<Value> {
    let before = reloads(&a.api_get("/v1/state")?, result);
    write_unnoticed(a, body)?;
    a.hup();
    a.wait_for(&format!("a reload counted {result}"), WAIT, |s| {
        reloads(s, result) > before
    })
}

fn events_text(a: &Lbd) -> Result<String> {
    Ok(a.api_get("/v1/events")?.to_string())
}

pub fn sighup_applies_a_good_file(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    let s = reload(&a, &file("40", ""), "applied")?;
    ensure!(
        weight_of(&s, "web", "10.0.1.1") == Some(40),
        "weight not applied: {s}"
    );
    Ok(())
}

pub fn a_file_change_applies_without_a_signal(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    // A later modification time than the one the agent read.
    std::thread::sleep(Duration::from_millis(20));
    a.write_config(&file("70", ""))?;
    std::fs::File::options()
        .write(true)
        .open(&a.config)?
        .set_modified(SystemTime::now())?;
    // The reload is counted just after it applies: wait for both.
    let s = a.wait_for("the changed file applied", WAIT, |s| {
        weight_of(s, "web", "10.0.1.1") == Some(70) && reloads(s, "applied") >= 1
    })?;
    ensure!(reloads(&s, "applied") == 1, "{}", s["reloads"]);
    Ok(())
}

pub fn a_bad_file_keeps_the_running_state_and_names_the_field(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    let before = serving(&a.api_get("/v1/state")?);
    for (bad, field) in [
        (file("-5", ""), "vips[0].backends[0].weight"),
        (
            file("100", "dataplane: {udp_idle_timeout: 1e20s}\n"),
            "dataplane.udp_idle_timeout",
        ),
        (file("100", "surprise: 1\n"), "surprise"),
    ] {
        let s = reload(&a, &bad, "rejected")?;
        ensure!(
            serving(&s) == before,
            "running state changed by a bad file: {s}"
        );
        let ev = events_text(&a)?;
        ensure!(
            ev.contains(field),
            "the rejection does not name {field}: {ev}"
        );
    }
    ensure!(a.api_get("/v1/health")?["status"] == "ok");
    Ok(())
}

pub fn an_empty_or_truncated_file_is_refused_on_reload(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    let good = file("100", "");
    let before = serving(&a.api_get("/v1/state")?);
    let cut_in_vip = &good[..good.find("port: 80").expect("in the file") + 4];
    for (what, body) in [
        ("empty", ""),
        ("cut before the interfaces", &good[..20]),
        ("cut inside a VIP", cut_in_vip),
    ] {
        let s = reload(&a, body, "rejected")?;
        ensure!(serving(&s) == before, "{what}: running state changed: {s}");
    }
    Ok(())
}

pub fn a_reload_removing_every_vip_needs_allow_no_vips(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    let empty = "node: {name: reload, cloud: aws, region: r1}\ninterfaces: [{name: lo}]\nlimits: {max_vips: 8, max_backends: 32, ring_size: 1021, conntrack_size: 4096}\nvips: []\n";
    let s = reload(&a, empty, "rejected")?;
    ensure!(serving(&s).len() == 3, "VIPs dropped without the flag: {s}");
    let ev = events_text(&a)?;
    ensure!(
        ev.contains("allow_no_vips"),
        "the refusal does not say how: {ev}"
    );
    let s = reload(&a, &format!("{empty}allow_no_vips: true\n"), "applied")?;
    ensure!(
        s["vips"].as_array().is_some_and(Vec::is_empty),
        "meant, but not applied: {s}"
    );
    Ok(())
}

pub fn restart_only_fields_are_reported_as_waiting_not_applied(_: &mut Env) -> Result<()> {
    let ns = Netns::new("reload")?;
    let a = agent(&ns)?;
    let changed = file("100", "metrics: {listen: \"127.0.0.1:9999\"}\n")
        .replace("max_vips: 8", "max_vips: 9")
        .replace("{address: 10.0.1.2}", "{address: 10.0.1.2, weight: 5}");
    let s = reload(&a, &changed, "needs_restart")?;
    ensure!(
        reloads(&s, "applied") == 0,
        "counted as applied: {}",
        s["reloads"]
    );
    let waiting: Vec<&str> = s["reloads"]["waiting_for_restart"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(waiting == ["metrics", "limits"], "waiting: {waiting:?}");
    // What can change live did.
    ensure!(weight_of(&s, "web", "10.0.1.2") == Some(5), "{s}");
    let ev = events_text(&a)?;
    ensure!(ev.contains("config_needs_restart"), "{ev}");
    // Nothing listens on the new metrics address until a restart.
    let probe = ns.exec(
        "curl",
        &["-s", "--max-time", "1", "http://127.0.0.1:9999/metrics"],
    );
    ensure!(
        probe.map_or(true, |o| o.is_empty()),
        "metrics moved without a restart"
    );
    Ok(())
}
