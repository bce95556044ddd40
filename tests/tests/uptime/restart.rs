//! What an agent knows survives its restart: health (a backend known down
//! stays out until it passes its rise checks), drains, weight overrides,
//! a running drill; a damaged state file costs that memory, not the start.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    json::find,
    lab::{LAB_BACKENDS, Lab, lab_config},
    procs::Lbd,
};

use crate::Env;

const WAIT: Duration = Duration::from_secs(10);
const WEB: &str = "10.100.0.1:80";

/// The lab's lbd with every backend healthy.
fn healthy_agent(lab: &Lab) -> Result<Lbd> {
    let a = lab.start_lbd(&lab_config()?, &[])?;
    for b in LAB_BACKENDS {
        a.wait_healthy("web", b, true, WAIT)?;
    }
    Ok(a)
}

fn restart(a: &mut Lbd) -> Result<()> {
    a.stop()?;
    a.spawn(&[])
}

pub fn restart_with_a_backend_down_sends_it_no_new_connections(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let mut a = healthy_agent(lab)?;
    lab.kill_server("a1");
    a.wait_healthy("web", "10.20.0.11", false, WAIT)?;
    restart(&mut a)?;
    ensure!(
        !a.healthy("web", "10.20.0.11")?,
        "the restarted agent forgot a1 is down"
    );
    // Longer than fall x interval: a forgetful agent would have put a1
    // back for that long.
    let t0 = Instant::now();
    let mut asked = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        let counts = lab.spread(WEB.parse()?, 20);
        asked += 20;
        ensure!(
            !counts.contains_key("a1") && !counts.contains_key("error"),
            "new connections reached the dead backend after the restart: {counts:?}"
        );
    }
    // Back: it must pass its rise checks, then takes traffic again.
    lab.start_server("a1")?;
    a.wait_healthy("web", "10.20.0.11", true, WAIT)?;
    println!("    {asked} new connections after the restart, none to a1 or failed");
    Ok(())
}

fn backend<'a>(s: &'a serde_json::Value, vip: &str, addr: &str) -> Result<&'a serde_json::Value> {
    find(&find(&s["vips"], "name", vip)?["backends"], "address", addr)
}

pub fn drains_and_weight_overrides_survive_a_restart(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let mut a = healthy_agent(lab)?;
    a.api("POST", "/v1/vips/web/backends/10.20.0.12/drain", None)?;
    a.api(
        "PUT",
        "/v1/vips/web/backends/10.32.1.2/weight",
        Some(r#"{"weight": 7}"#),
    )?;
    a.api(
        "POST",
        "/v1/vips/orders/backends/10.33.2.2/maintenance",
        None,
    )?;
    restart(&mut a)?;
    let s = a.api_get("/v1/state")?;
    ensure!(
        backend(&s, "web", "10.20.0.12")?["state"] == "draining",
        "drain lost: {s}"
    );
    ensure!(
        backend(&s, "web", "10.32.1.2")?["weight"] == 7,
        "weight override lost: {s}"
    );
    ensure!(
        backend(&s, "orders", "10.33.2.2")?["state"] == "maintenance",
        "maintenance lost: {s}"
    );
    // And new connections still avoid the drained backend.
    let counts = lab.spread(WEB.parse()?, 40);
    ensure!(
        !counts.contains_key("a2"),
        "new flows to a draining backend: {counts:?}"
    );
    Ok(())
}

pub fn a_running_drill_survives_a_restart(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let mut a = healthy_agent(lab)?;
    let started = a.api(
        "POST",
        "/v1/drill",
        Some(r#"{"fail": "cloud=aws", "duration_secs": 120}"#),
    )?;
    let id = started["drill"]["id"].clone();
    ensure!(id.is_u64(), "no drill started: {started}");
    restart(&mut a)?;
    let d = a.api_get("/v1/drill")?;
    ensure!(d["drill"]["id"] == id, "the drill did not survive: {d}");
    ensure!(
        d["drill"]["ends_at"] == started["drill"]["ends_at"],
        "the drill's end moved: {d} vs {started}"
    );
    let counts = lab.spread(WEB.parse()?, 30);
    ensure!(
        counts.keys().all(|k| lab.cloud_of(k) != Some("aws")),
        "aws still serves during the resumed drill: {counts:?}"
    );
    let stopped = a.api("DELETE", "/v1/drill", None)?;
    ensure!(stopped["report"].is_object(), "no report: {stopped}");
    Ok(())
}

pub fn a_corrupt_state_file_is_set_aside_and_lbd_starts(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let mut a = healthy_agent(lab)?;
    a.stop()?;
    let file = a.state_dir().join("state.json");
    ensure!(file.exists(), "no state saved at {}", file.display());
    std::fs::write(&file, b"{\"version\": 1, \"health\": [tru")?;
    a.spawn(&[])?;
    ensure!(
        a.state_dir().join("state.json.bad").exists(),
        "the damaged file was not set aside"
    );
    let log = a.log_text();
    ensure!(
        log.contains("state.json.bad"),
        "the agent did not say so:\n{log}"
    );
    // It serves (health starts over from the checks).
    a.wait_healthy("web", "10.20.0.11", true, WAIT)
        .context("serving after a damaged state file")?;
    Ok(())
}
