//! `cargo xtask demo`: the uptime story on the built-in lab. Three LB hosts
//! announce the VIPs by BGP (BIRD) to a router that spreads flows over
//! them by ECMP; six backends in three clouds. Real clients keep long
//! connections open while a backend, a cloud, an LB host and an agent
//! fail or are taken out; each scenario says how many connections it had
//! open, how many broke and how fast traffic moved, and
//! `target/demo/summary.json` keeps the figures.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use serde::Serialize;

use crate::{
    fleet::Fleet,
    kept,
    lab::{Lab, Talkers, lb_host_v4},
    netns::require_root,
    procs::Lbd,
};

const WAIT: Duration = Duration::from_secs(15);
const TALKERS: usize = 120;

/// One row of `target/demo/summary.json`.
#[derive(Serialize)]
struct Outcome {
    scenario: &'static str,
    /// Long-lived connections open through the scenario.
    connections: usize,
    /// Of those, how many broke (only those on a failed backend may).
    broken: usize,
    /// How long the reaction took (see `measured`).
    reaction_ms: u64,
    /// What `reaction_ms` measures.
    measured: &'static str,
}

fn step(n: usize, total: usize, what: &str) {
    println!("\n\x1b[1m[{n}/{total}] {what}\x1b[0m");
}

fn show(agent: &Lbd, args: &[&str]) -> Result<()> {
    let out = agent.lbctl(args)?;
    println!("$ lbctl {}", args.join(" "));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn by_backend(lab: &Lab, counts: &BTreeMap<String, usize>) -> String {
    let mut by_cloud: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, v) in counts {
        *by_cloud
            .entry(lab.cloud_of(k).unwrap_or("failed"))
            .or_default() += v;
    }
    let per_backend: Vec<String> = counts.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let per_cloud: Vec<String> = by_cloud.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{}   (by cloud: {})",
        per_backend.join(" "),
        per_cloud.join(", ")
    )
}

/// Runs `during` while `TALKERS` connections to web keep talking; returns
/// (connections, broken, broken on `failed` backends only).
fn with_talkers(
    f: &mut Fleet,
    failed: &[&str],
    during: impl FnOnce(&mut Fleet) -> Result<Duration>,
) -> Result<(usize, usize, Duration)> {
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    let talkers = Talkers::start_every(&f.lab, web, TALKERS, Duration::from_millis(100))?;
    std::thread::sleep(Duration::from_secs(1));
    let reaction = during(f);
    std::thread::sleep(Duration::from_secs(2));
    let results = talkers.finish();
    let reaction = reaction?;
    let broken = results.iter().filter(|r| r.2.is_some()).count();
    let unexpected: Vec<_> = results
        .iter()
        .filter(|r| r.2.is_some() && !failed.contains(&r.0.as_str()))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "connections broke that were not on a failed backend: {unexpected:?}"
    );
    Ok((results.len(), broken, reaction))
}

/// Keeps a scenario's outcome for the summary and prints it.
fn record(
    outcomes: &mut Vec<Outcome>,
    scenario: &'static str,
    measured: &'static str,
    (connections, broken, reaction): (usize, usize, Duration),
) {
    let o = Outcome {
        scenario,
        connections,
        broken,
        reaction_ms: reaction.as_millis() as u64,
        measured,
    };
    println!(
        "    {} connections open, {} broken; {}: {} ms",
        o.connections, o.broken, o.measured, o.reaction_ms
    );
    outcomes.push(o);
}

/// Waits until every LB host has marked the backends at `addresses` down
/// for web; returns when the last did. New connections then avoid them.
fn until_down_everywhere(f: &Fleet, t0: Instant, addresses: &[&str]) -> Result<Duration> {
    for i in 0..f.hosts() {
        for a in addresses {
            f.agent(i).wait_healthy("web", a, false, WAIT)?;
        }
    }
    let took = t0.elapsed();
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    let c = f.lab.spread(web, 40);
    ensure!(
        c.keys().all(|k| k != "error"),
        "new connections failed after every host marked the backends down: {c:?}"
    );
    Ok(took)
}

/// With `--keep`: says how to reach the running lab, then waits for Ctrl-C
/// (or SIGTERM); the caller then tears everything down as usual.
fn keep_until_interrupted(f: &Fleet) -> Result<()> {
    kept::catch_stop_signals();
    print!(
        "{}",
        kept::describe(&kept::ways_in(f)?, "Ctrl-C tears it down")
    );
    kept::wait_for_stop();
    println!();
    Ok(())
}

/// The demo; with `keep`, the lab stays up until Ctrl-C before step 9.
pub fn run(keep: bool) -> Result<()> {
    require_root()?;
    let start = Instant::now();
    let total = 9;
    let mut outcomes = vec![];

    step(
        1,
        total,
        "building the lab: a client, a router, three LB hosts and six backends in three clouds",
    );
    let mut f = Fleet::build(3)?;
    // After the fleet: dropped first, while their namespaces still exist.
    let iperf3 = kept::iperf3_servers(&f)?;
    println!("    router: BIRD, BGP from each LB host, BFD (3 x 100 ms), ECMP by the 5-tuple");
    println!("    LB hosts: lb1 10.20.0.2, lb2 10.20.0.3, lb3 10.20.0.4 — each lbd + BIRD");
    println!(
        "    aws (local): a1 10.20.0.11, a2 10.20.0.12 — L2 DSR;  gcp: b1, b2 — IPIP;  azure: c1, c2 — GUE"
    );

    step(
        2,
        total,
        "starting lbd on every LB host with examples/lab.yaml",
    );
    f.start_all(&kept::config()?)?;
    show(f.agent(0), &["node", "status"])?;
    println!(
        "    the router's route to web: {:?}",
        f.nexthops("10.100.0.1".parse()?)?
    );
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    println!(
        "    100 new connections to web: {}",
        by_backend(&f.lab, &f.lab.spread(web, 100))
    );

    step(
        3,
        total,
        "a backend dies (a2): only its own connections break, new ones avoid it",
    );
    let (connections, broken, reaction) = with_talkers(&mut f, &["a2"], |f| {
        let t0 = Instant::now();
        f.lab.kill_server("a2");
        until_down_everywhere(f, t0, &["10.20.0.12"])
    })?;
    record(
        &mut outcomes,
        "backend killed",
        "kill to every LB host steering around it",
        (connections, broken, reaction),
    );
    f.lab.start_server("a2")?;
    f.wait_serving()?;

    step(
        4,
        total,
        "a cloud is lost (aws: a1, a2): traffic fails over to gcp and azure",
    );
    let (connections, broken, reaction) = with_talkers(&mut f, &["a1", "a2"], |f| {
        let t0 = Instant::now();
        f.lab.kill_server("a1");
        f.lab.kill_server("a2");
        until_down_everywhere(f, t0, &["10.20.0.11", "10.20.0.12"])
    })?;
    record(
        &mut outcomes,
        "cloud lost",
        "loss to every LB host failing over",
        (connections, broken, reaction),
    );
    println!(
        "    web now: {}",
        by_backend(&f.lab, &f.lab.spread(web, 60))
    );
    f.lab.start_all_servers()?;
    f.wait_serving()?;

    step(
        5,
        total,
        "an LB host dies (lb2: link cut, lbd and BIRD killed): no connection breaks",
    );
    let (connections, broken, reaction) = with_talkers(&mut f, &[], |f| {
        let mut rest = f.all();
        rest.remove(&lb_host_v4(1));
        f.lose(1)?;
        f.wait_nexthops("10.100.0.1".parse()?, &rest, WAIT)
    })?;
    record(
        &mut outcomes,
        "LB host lost",
        "host lost to the router routing around it (BFD)",
        (connections, broken, reaction),
    );
    ensure!(broken == 0, "connections broke when an LB host was lost");
    f.bring_back(1)?;
    f.wait_serving()?;

    step(
        6,
        total,
        "an LB host is drained for maintenance and returns (lbctl node drain / undrain)",
    );
    let (connections, broken, reaction) = with_talkers(&mut f, &[], |f| {
        let mut rest = f.all();
        rest.remove(&lb_host_v4(2));
        let t0 = Instant::now();
        f.agent(2).lbctl_json(&["node", "drain"])?;
        f.wait_nexthops("10.100.0.1".parse()?, &rest, WAIT)?;
        let withdrawn = t0.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        f.agent(2).lbctl_json(&["node", "undrain"])?;
        f.wait_nexthops("10.100.0.1".parse()?, &f.all(), WAIT)?;
        Ok(withdrawn)
    })?;
    record(
        &mut outcomes,
        "LB host drained and returned",
        "drain to withdrawn from the router",
        (connections, broken, reaction),
    );

    step(
        7,
        total,
        "an agent is restarted (upgrade): the routes stay, the data path keeps forwarding",
    );
    let (connections, broken, reaction) = with_talkers(&mut f, &[], |f| {
        f.agent(0).lbctl_json(&["node", "hold", "--for", "60s"])?;
        let t0 = Instant::now();
        f.agent_mut(0).stop()?;
        f.respawn_agent(0)?;
        Ok(t0.elapsed())
    })?;
    record(
        &mut outcomes,
        "agent restarted",
        "stop to the new agent serving its API",
        (connections, broken, reaction),
    );

    step(
        8,
        total,
        "what the agents decided, and the fleet's view of itself",
    );
    show(f.agent(0), &["events"])?;
    let mut fleet = vec!["fleet".to_string()];
    fleet.extend(f.etcd.lbd_args());
    show(
        f.agent(0),
        &fleet.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&outcomes)?)?;

    if keep {
        keep_until_interrupted(&f)?;
    }
    step(9, total, "tearing the lab down");
    drop(iperf3);
    drop(f);
    println!(
        "\n{:<30} {:>11} {:>7} {:>9}",
        "SCENARIO", "CONNECTIONS", "BROKEN", "REACTION"
    );
    for o in &outcomes {
        println!(
            "{:<30} {:>11} {:>7} {:>7} ms",
            o.scenario, o.connections, o.broken, o.reaction_ms
        );
    }
    println!(
        "\ndone in {:.0}s; figures in {}. docs/TESTING.md describes the lab, docs/OPERATIONS.md the agent.",
        start.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}
