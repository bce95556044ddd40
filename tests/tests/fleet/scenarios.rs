//! The scenarios, named for what they prove.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use lb_tests::{
    fleet::Fleet,
    lab::{Talkers, lb_host_v4},
};

use crate::{Env, WAIT};

const WEB: &str = "10.100.0.1:80";

fn web() -> SocketAddr {
    WEB.parse().expect("literal")
}

/// How many of `talkers`' connections broke, with the first reasons.
fn broken(results: &[(String, usize, Option<String>)]) -> (usize, Vec<String>) {
    let failures: Vec<String> = results.iter().filter_map(|r| r.2.clone()).collect();
    (failures.len(), failures.into_iter().take(5).collect())
}

pub fn losing_an_lb_host_breaks_no_connection_and_reroutes_within_a_second(
    env: &mut Env,
) -> Result<()> {
    let f = env.fleet()?;
    let talkers = Talkers::start_every(&f.lab, web(), 150, Duration::from_millis(100))?;
    std::thread::sleep(Duration::from_secs(1));
    let mut rest = f.all();
    rest.remove(&lb_host_v4(1));
    f.lose(1)?;
    let rerouted = f.wait_nexthops("10.100.0.1".parse()?, &rest, WAIT)?;
    std::thread::sleep(Duration::from_secs(2));
    let results = talkers.finish();
    let (n, why) = broken(&results);
    let messages: usize = results.iter().map(|r| r.1).sum();
    println!(
        "    150 connections, {messages} messages, {n} broken; the router dropped the lost host after {} ms",
        rerouted.as_millis()
    );
    ensure!(n == 0, "{n} connections broke: {why:?}");
    ensure!(
        rerouted < Duration::from_secs(1),
        "rerouted after {rerouted:?}"
    );
    Ok(())
}

fn vip(a: &str) -> Ipv4Addr {
    a.parse().expect("literal")
}

/// Runs `during` while 150 connections talk; returns them all.
fn under_load(
    f: &mut Fleet,
    during: impl FnOnce(&mut Fleet) -> Result<()>,
) -> Result<Vec<(String, usize, Option<String>)>> {
    let talkers = Talkers::start_every(&f.lab, web(), 150, Duration::from_millis(100))?;
    std::thread::sleep(Duration::from_secs(1));
    let outcome = during(f);
    std::thread::sleep(Duration::from_secs(2));
    let results = talkers.finish();
    outcome?;
    Ok(results)
}

fn none_broken(results: &[(String, usize, Option<String>)], what: &str) -> Result<()> {
    let (n, why) = broken(results);
    let messages: usize = results.iter().map(|r| r.1).sum();
    println!(
        "    {what}: {} connections, {messages} messages, {n} broken",
        results.len()
    );
    ensure!(n == 0, "{n} connections broke: {why:?}");
    Ok(())
}

pub fn a_returning_lb_host_takes_flows_back_without_breaking_any(env: &mut Env) -> Result<()> {
    let f = env.fleet()?;
    let mut rest = f.all();
    rest.remove(&lb_host_v4(2));
    let mut back = Duration::ZERO;
    let results = under_load(f, |f| {
        f.lose(2)?;
        f.wait_nexthops(vip("10.100.0.1"), &rest, WAIT)?;
        std::thread::sleep(Duration::from_secs(1));
        let t0 = Instant::now();
        f.bring_back(2)?;
        let all = f.all();
        f.wait_nexthops(vip("10.100.0.1"), &all, WAIT)?;
        back = t0.elapsed();
        Ok(())
    })?;
    none_broken(&results, "host lost, then back")?;
    println!(
        "    re-announced {} ms after its BIRD and lbd started",
        back.as_millis()
    );
    // Flows did move back onto it: its connection table has some.
    let entries = f.agent(2).lbctl_json(&["conntrack", "count"])?;
    ensure!(
        entries["entries"].as_u64() > Some(0),
        "no flow came back: {entries}"
    );
    Ok(())
}

pub fn a_planned_drain_withdraws_first_and_resets_nothing(env: &mut Env) -> Result<()> {
    let f = env.fleet()?;
    let mut rest = f.all();
    rest.remove(&lb_host_v4(0));
    let results = under_load(f, |f| {
        f.agent(0).lbctl_json(&["node", "drain"])?;
        let took = f.wait_nexthops(vip("10.100.0.1"), &rest, WAIT)?;
        println!(
            "    drained: withdrawn from the router after {} ms",
            took.as_millis()
        );
        // The routers have moved the flows: now it may stop.
        f.agent_mut(0).stop()?;
        Ok(())
    })?;
    none_broken(&results, "drain, then stop")
}

pub fn an_agent_stopped_without_a_hold_withdraws_before_it_exits(env: &mut Env) -> Result<()> {
    let f = env.fleet()?;
    let mut rest = f.all();
    rest.remove(&lb_host_v4(1));
    let results = under_load(f, |f| {
        let pid = f.agent(1).pid().unwrap_or(0) as i32;
        // SAFETY: kill(2) on the agent's pid, which this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t0 = Instant::now();
        f.wait_nexthops(vip("10.100.0.1"), &rest, WAIT)?;
        let withdrawn = t0.elapsed();
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        ensure!(alive, "the agent exited before its routes were withdrawn");
        println!(
            "    withdrawn {} ms after SIGTERM, the agent still draining",
            withdrawn.as_millis()
        );
        f.agent_mut(1).stop()?;
        Ok(())
    })?;
    none_broken(&results, "stop without a hold")
}

pub fn a_backend_failing_while_an_lb_host_is_lost_breaks_only_its_connections(
    env: &mut Env,
) -> Result<()> {
    let f = env.fleet()?;
    let mut rest = f.all();
    rest.remove(&lb_host_v4(2));
    let results = under_load(f, |f| {
        f.lose(2)?;
        f.lab.kill_server("a1");
        f.wait_nexthops(vip("10.100.0.1"), &rest, WAIT)?;
        Ok(())
    })?;
    let on_a1 = results.iter().filter(|r| r.0 == "a1").count();
    let wrong: Vec<&(String, usize, Option<String>)> = results
        .iter()
        .filter(|r| (r.0 == "a1") != r.2.is_some())
        .collect();
    println!(
        "    {} connections, {on_a1} on the failed backend a1, all of those and only those broke",
        results.len()
    );
    ensure!(
        on_a1 > 0,
        "no connection was on a1: the scenario proves nothing"
    );
    ensure!(
        wrong.is_empty(),
        "connections broke that were not on a1, or a1's survived: {wrong:?}"
    );
    Ok(())
}

pub fn a_vip_without_healthy_backends_is_withdrawn_everywhere_and_returns(
    env: &mut Env,
) -> Result<()> {
    let f = env.fleet()?;
    let shop = vip("10.100.0.5");
    let all = f.all();
    let withdrawn = f.kill_shop_backends()?;
    // web, on the same backends and others, stays announced everywhere.
    ensure!(
        f.nexthops(vip("10.100.0.1"))? == all,
        "web was withdrawn too"
    );
    for i in 0..f.hosts() {
        let node = f.agent(i).api_get("/v1/node")?;
        let why = node["announce"]["routes"].to_string();
        ensure!(
            why.contains("shop: no healthy capacity"),
            "host {i} does not say why: {why}"
        );
    }
    let t1 = Instant::now();
    f.lab.start_server("a1")?;
    f.wait_nexthops(shop, &all, WAIT)?;
    println!(
        "    both backends down: withdrawn from every host after {} ms; announced again {} ms after one came back",
        withdrawn.as_millis(),
        t1.elapsed().as_millis()
    );
    Ok(())
}

pub fn an_agent_restart_with_a_hold_keeps_the_announcement_and_every_connection(
    env: &mut Env,
) -> Result<()> {
    let f = env.fleet()?;
    let all = f.all();
    let watching = Arc::new(AtomicBool::new(true));
    let router = f.lab.router.name().to_string();
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || -> Result<()> {
            while watching.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["-n", &router, "route", "show", "10.100.0.1/32"])
                    .output()?;
                if !String::from_utf8_lossy(&out.stdout).contains("10.20.0.2 ") {
                    bail!("host 1 was withdrawn during its restart");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };
    let results = under_load(f, |f| {
        f.agent(0).lbctl_json(&["node", "hold", "--for", "30s"])?;
        f.agent_mut(0).stop()?;
        f.respawn_agent(0)?;
        Ok(())
    });
    watching.store(false, Ordering::Relaxed);
    let watched = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))?;
    let results = results?;
    watched?;
    ensure!(f.nexthops(vip("10.100.0.1"))? == all);
    none_broken(&results, "restart under a hold")
}

pub fn lbctl_fleet_shows_every_host_announcing_with_equal_digests(env: &mut Env) -> Result<()> {
    let f = env.fleet()?;
    let mut fleet_args = vec!["fleet".to_string()];
    fleet_args.extend(f.etcd.lbd_args());
    let fleet_args: Vec<&str> = fleet_args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let fleet = loop {
        let v = f.agent(0).lbctl_json(&fleet_args)?;
        let agents = v["agents"].as_array().map_or(0, Vec::len);
        let announced_everywhere = v["agents"].as_array().is_some_and(|a| {
            a.iter().all(|a| {
                a["vips"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().all(|x| x["announced"] == true))
            })
        });
        if agents == f.hosts()
            && announced_everywhere
            && v["disagreements"].as_array().is_some_and(Vec::is_empty)
        {
            break v;
        }
        if t0.elapsed() > WAIT {
            bail!("the fleet never agreed: {v}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let digests: BTreeSet<String> = fleet["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["vips"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["name"] == "web")
        .map(|v| v["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(
        digests.len() == 1,
        "web's digests differ across hosts: {digests:?}"
    );
    // A drained host is not a disagreement; the fleet says it is drained.
    f.agent(1).lbctl_json(&["node", "drain"])?;
    let t0 = Instant::now();
    loop {
        let v = f.agent(0).lbctl_json(&fleet_args)?;
        let drained = v["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["drained"] == true));
        if drained {
            ensure!(
                v["disagreements"].as_array().is_some_and(Vec::is_empty),
                "{v}"
            );
            break;
        }
        if t0.elapsed() > WAIT {
            bail!("the drain never showed: {v}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
