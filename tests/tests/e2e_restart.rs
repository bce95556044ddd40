//! Scenario 6, hitless agent restart and upgrade: long-lived TCP
//! connections carrying data survive an lbd restart, and an "upgrade"
//! (another binary file, a new program replacing the old one in the pinned
//! link) that also changes weights so the Maglev table moves under them,
//! with zero errors.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_tests::lab::{Lab, Talkers};

#[test]
fn established_flows_survive_restart_and_upgrade() -> Result<()> {
    let lab = Lab::build()?;
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))?;
    let mut agent = lab.start_lbd(&config, &[])?;
    std::thread::sleep(Duration::from_secs(2));
    let web = "10.100.0.1:80".parse()?;
    let partners = "10.100.0.4:80".parse()?;
    let a = Talkers::start(&lab, web, 12)?;
    let b = Talkers::start(&lab, partners, 12)?;
    std::thread::sleep(Duration::from_millis(500));

    // Restart: SIGTERM, then the same binary again.
    agent.stop()?;
    std::thread::sleep(Duration::from_millis(500));
    agent.spawn(&[])?;
    std::thread::sleep(Duration::from_secs(1));

    // Upgrade: another binary file, and a weight change that rewrites the
    // rings: established flows keep their backend through the adopted
    // connection table.
    let upgraded = agent.dir.0.join("lbd-upgraded");
    std::fs::copy(&agent.binary, &upgraded)?;
    agent.stop()?;
    let heavier = config.replace(
        "{address: 10.20.0.12, forwarding: l2-dsr, weight: 300,",
        "{address: 10.20.0.12, forwarding: l2-dsr, weight: 900,",
    );
    ensure!(heavier != config, "the weight edit must apply");
    agent.write_config(&heavier)?;
    agent.binary = upgraded;
    agent.spawn(&[])?;
    std::thread::sleep(Duration::from_secs(1));

    let mut total = 0;
    for (backend, sent, failure) in a.finish().into_iter().chain(b.finish()) {
        ensure!(
            failure.is_none(),
            "a connection to {backend} broke: {failure:?}"
        );
        total += sent;
    }
    println!(
        "24 connections exchanged {total} messages across a restart and an upgrade, no errors"
    );
    let log = agent.log_text();
    ensure!(
        log.matches("adopted=true").count() >= 2,
        "both restarts adopted the pinned state:\n{log}"
    );
    ensure!(
        log.matches("replaced_in_place=true").count() >= 2,
        "the program was replaced inside the pinned link:\n{log}"
    );
    // The new weights took effect for new flows.
    let counts = lab.spread(web, 100);
    ensure!(
        counts.get("a2").copied().unwrap_or(0) > counts.get("a1").copied().unwrap_or(0),
        "weights applied: {counts:?}"
    );
    Ok(())
}
