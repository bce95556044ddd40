//! The cross-cloud policy on the lab with the shipped defaults (no
//! `panic_threshold` anywhere): losing a cloud or a tier fails over instead
//! of panicking onto dead backends; drills say what they measured.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use lb_tests::{
    json::find,
    lab::{LAB_BACKENDS, Lab, lab_config},
    procs::Lbd,
};

use crate::Env;

const WAIT: Duration = Duration::from_secs(10);

fn healthy_agent(lab: &Lab) -> Result<Lbd> {
    let config = lab_config()?;
    ensure!(
        !config.contains("panic_threshold:"),
        "the lab must run with the default panic threshold"
    );
    let a = lab.start_lbd(&config, &[])?;
    for b in LAB_BACKENDS {
        a.wait_healthy("web", b, true, WAIT)?;
    }
    Ok(a)
}

/// Kills the servers of `names` and waits until the agent sees them down.
fn fail(lab: &mut Lab, a: &Lbd, vip: &str, names: &[&str]) -> Result<()> {
    for n in names {
        lab.kill_server(n);
    }
    for n in names {
        a.wait_healthy(vip, &lab.backend(n).v4.to_string(), false, WAIT)?;
    }
    Ok(())
}

fn vip_panics(a: &Lbd, vip: &str) -> Result<bool> {
    Ok(find(&a.api_get("/v1/state")?["vips"], "name", vip)?["panic"] == true)
}

pub fn losing_the_local_cloud_fails_over_with_the_default_panic_threshold(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let a = healthy_agent(lab)?;
    // aws holds 600 of web's 1000 weight: more than the default 0.5.
    fail(lab, &a, "web", &["a1", "a2"])?;
    let counts = lab.spread("10.100.0.1:80".parse()?, 60);
    ensure!(
        counts
            .keys()
            .all(|k| matches!(lab.cloud_of(k), Some("gcp" | "azure"))),
        "new connections went to the dead cloud: {counts:?}"
    );
    ensure!(
        !vip_panics(&a, "web")?,
        "web panicked instead of failing over"
    );
    Ok(())
}

pub fn losing_the_active_tier_moves_to_the_next_with_the_default_panic_threshold(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let a = healthy_agent(lab)?;
    fail(lab, &a, "orders", &["b1", "b2"])?;
    let counts = lab.spread("10.100.0.3:80".parse()?, 60);
    ensure!(
        counts.keys().all(|k| lab.cloud_of(k) == Some("azure")),
        "orders did not move to its next tier: {counts:?}"
    );
    let s = a.api_get("/v1/state")?;
    let orders = find(&s["vips"], "name", "orders")?;
    ensure!(
        orders["active_tier"] == 1 && orders["panic"] == false,
        "{orders}"
    );
    Ok(())
}

/// Blue (4 of 6 backends, two thirds of the weight) is stopped for a
/// cutover; green takes everything, nothing is spread over the stopped blue.
const BLUE_GREEN: &str = r#"
  - name: shop
    address: 10.100.0.5
    port: 80
    policy: {mode: active-passive, tiers: [{zone: blue}, {zone: green}]}
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2}
    backends:
      - {address: 10.20.0.11, forwarding: l2-dsr, labels: {zone: blue}}
      - {address: 10.20.0.12, forwarding: l2-dsr, labels: {zone: blue}}
      - {address: 10.32.1.2, forwarding: ipip, labels: {zone: blue}}
      - {address: 10.32.2.2, forwarding: ipip, labels: {zone: blue}}
      - {address: 10.33.1.2, forwarding: gue, labels: {zone: green}}
      - {address: 10.33.2.2, forwarding: gue, labels: {zone: green}}
"#;

pub fn a_blue_green_cutover_moves_to_green_with_the_default_panic_threshold(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let a = lab.start_lbd(&format!("{}{BLUE_GREEN}", lab_config()?), &[])?;
    for b in LAB_BACKENDS {
        a.wait_healthy("shop", b, true, WAIT)?;
    }
    let before = lab.spread("10.100.0.5:80".parse()?, 40);
    ensure!(
        before
            .keys()
            .all(|k| ["a1", "a2", "b1", "b2"].contains(&k.as_str())),
        "blue does not serve before the cutover: {before:?}"
    );
    fail(lab, &a, "shop", &["a1", "a2", "b1", "b2"])?;
    let after = lab.spread("10.100.0.5:80".parse()?, 60);
    ensure!(
        after.keys().all(|k| lab.cloud_of(k) == Some("azure")),
        "the cutover did not land on green alone: {after:?}"
    );
    ensure!(!vip_panics(&a, "shop")?, "the cutover panicked");
    Ok(())
}

pub fn a_drill_reports_measured_new_flows_beside_its_prediction(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let a = healthy_agent(lab)?;
    let started = a.api(
        "POST",
        "/v1/drill",
        Some(r#"{"fail": "cloud=aws", "duration_secs": 3}"#),
    )?;
    ensure!(started["drill"]["id"].is_u64(), "{started}");
    let during = lab.spread("10.100.0.1:80".parse()?, 60);
    ensure!(
        during.keys().all(|k| lab.cloud_of(k) != Some("aws")),
        "aws served during its drill: {during:?}"
    );
    let t0 = Instant::now();
    let report = loop {
        let d = a.api_get("/v1/drill")?;
        if d["drill"].is_null() && d["last"].is_object() {
            break d["last"].clone();
        }
        if t0.elapsed() > WAIT {
            bail!("the drill did not end by itself: {d}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let web = find(&report["vips"], "vip", "web")?;
    ensure!(
        web["new_flows"].as_u64() >= Some(60),
        "new flows not measured: {web}"
    );
    for b in web["backends"].as_array().into_iter().flatten() {
        let addr = b["address"].as_str().unwrap_or_default();
        let (predicted, measured) = (
            b["predicted_share"].as_f64().unwrap_or(-1.0),
            b["measured_share"].as_f64().unwrap_or(-1.0),
        );
        let diff = b["difference"].as_f64().unwrap_or(f64::NAN);
        ensure!(
            (measured - predicted - diff).abs() < 1e-9,
            "difference is not measured - predicted: {b}"
        );
        if addr.starts_with("10.20.") {
            ensure!(
                predicted == 0.0 && b["new_flows"] == 0,
                "a drilled backend took new flows: {b}"
            );
        }
    }
    Ok(())
}

pub fn a_drill_matching_nothing_is_refused(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let a = healthy_agent(lab)?;
    let r = a.api("POST", "/v1/drill", Some(r#"{"fail": "cloud=nowhere"}"#))?;
    ensure!(
        r["errors"][0]["path"] == "fail"
            && r["error"].as_str().is_some_and(|e| e.contains("nowhere")),
        "not refused with the field named: {r}"
    );
    ensure!(
        a.api_get("/v1/drill")?["drill"].is_null(),
        "a drill started anyway"
    );
    Ok(())
}
