//! `cargo xtask demo`: the load balancer on its built-in lab.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{lab::Lab, netns::require_root, procs::Lbd};

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

fn summary(lab: &Lab, counts: &BTreeMap<String, usize>) -> String {
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

pub fn run() -> Result<()> {
    require_root()?;
    let start = Instant::now();
    let total = 8;
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    let partners: SocketAddr = "10.100.0.4:80".parse()?;
    let web6: SocketAddr = "[fd00:100::1]:80".parse()?;

    step(
        1,
        total,
        "building the lab: a client, a router, the LB and six backends in three clouds (network namespaces)",
    );
    let mut lab = Lab::build()?;
    println!("    aws (local): a1 10.20.0.11, a2 10.20.0.12 — same segment as the LB, L2 DSR");
    println!("    gcp:         b1 10.32.1.2,  b2 10.32.2.2  — routed, IPIP");
    println!("    azure:       c1 10.33.1.2,  c2 10.33.2.2  — routed, GUE");
    println!("    every backend runs `lbd decap` (XDP) and a server that answers with its name");

    step(
        2,
        total,
        "starting lbd with examples/lab.yaml (XDP in driver mode on lb0)",
    );
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))
            .context("examples/lab.yaml")?;
    let agent = lab.start_lbd(&config, &[])?;
    agent.wait_for("all backends healthy", Duration::from_secs(15), |s| {
        s["vips"].as_array().is_some_and(|v| {
            v.iter().all(|v| {
                v["backends"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
            })
        })
    })?;
    show(&agent, &["vip", "list"])?;
    show(&agent, &["backend", "list", "--vip", "web"])?;

    step(3, total, "real clients: 100 TCP connections to each VIP");
    println!(
        "    web 10.100.0.1:80 (local-first):    {}",
        summary(&lab, &lab.spread(web, 100))
    );
    println!(
        "    partners 10.100.0.4:80 (aws 70/gcp 30): {}",
        summary(&lab, &lab.spread(partners, 100))
    );
    println!(
        "    web6 [fd00:100::1]:80 (IPv6):       {}",
        summary(&lab, &lab.spread(web6, 100))
    );
    let mut udp: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..40u8 {
        let sock = lab.udp(crate::lab::client_v4(i % 8).into())?;
        sock.send_to(b"query", "10.100.0.2:53")?;
        let mut buf = [0u8; 256];
        let who = match sock.recv_from(&mut buf) {
            Ok((n, _)) => String::from_utf8_lossy(&buf[..n])
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string(),
            Err(_) => "failed".into(),
        };
        *udp.entry(who).or_default() += 1;
    }
    println!(
        "    dns 10.100.0.2:53 (UDP, 40 queries):   {}",
        summary(&lab, &udp)
    );
    show(&agent, &["ring", "show", "--vip", "partners"])?;

    step(
        4,
        total,
        "asking the loaded program where a flow goes (no state is touched)",
    );
    show(
        &agent,
        &[
            "explain",
            "10.10.0.10:40000",
            "10.100.0.4:80",
            "tcp",
            "--syn",
        ],
    )?;

    step(
        5,
        total,
        "failure: killing both aws backends (the local cloud)",
    );
    let t0 = Instant::now();
    lab.kill_server("a1");
    lab.kill_server("a2");
    let moved = loop {
        let c = lab.spread(web, 10);
        if c.keys()
            .all(|k| matches!(lab.cloud_of(k), Some("gcp" | "azure")))
        {
            break t0.elapsed();
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "traffic did not move: {c:?}"
        );
    };
    println!(
        "    health checks took aws out; new connections went to other clouds after {:.2}s",
        moved.as_secs_f64()
    );
    println!("    web now: {}", summary(&lab, &lab.spread(web, 100)));
    show(&agent, &["backend", "list", "--vip", "web"])?;

    step(6, total, "recovery: aws backends back");
    lab.start_server("a1")?;
    lab.start_server("a2")?;
    let t1 = Instant::now();
    let healthy = |s: &serde_json::Value| {
        s["vips"].as_array().is_some_and(|v| {
            v.iter().filter(|v| v["name"] == "web").all(|v| {
                v["backends"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
            })
        })
    };
    agent.wait_for("aws healthy again", Duration::from_secs(10), healthy)?;
    println!(
        "    both aws backends passed 2 checks in a row after {:.2}s",
        t1.elapsed().as_secs_f64()
    );
    println!("    web now: {}", summary(&lab, &lab.spread(web, 100)));

    step(
        7,
        total,
        "what the agent decided, and the data path's counters",
    );
    show(&agent, &["events"])?;
    show(&agent, &["stats", "--interval", "0.5"])?;

    step(8, total, "tearing the lab down");
    drop(agent);
    drop(lab);
    println!(
        "\ndone in {:.0}s. Try it yourself: docs/TESTING.md describes the lab, docs/OPERATIONS.md the agent.",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
