//! Scenario 7b: a backend list changed through etcd reaches the wire.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use lb_tests::{lab::Lab, procs::Etcd};

#[test]
fn etcd_changes_reach_the_wire() -> Result<()> {
    let lab = Lab::build()?;
    let etcd = Etcd::start(&lab.lb, 23791)?;
    let feed = |backend: &str, fwd: &str| {
        format!(
            r#"{{"name": "feed", "address": "10.100.0.5", "port": 80, "health_check": {{"type": "tcp", "interval": "300ms", "timeout": "200ms"}}, "backends": [{{"address": "{backend}", "forwarding": "{fwd}"}}]}}"#
        )
    };
    etcd.put("/lab/vips/feed", &feed("10.33.1.2", "gue"))?;
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))?;
    let mut etcd_args = etcd.lbd_args();
    etcd_args.extend(["--etcd-prefix".into(), "/lab".into()]);
    let etcd_args: Vec<&str> = etcd_args.iter().map(String::as_str).collect();
    let agent = lab.start_lbd(&config, &etcd_args)?;
    let dst = "10.100.0.5:80".parse()?;
    let wait = |want: &str| -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let c = lab.spread(dst, 10);
            if c.len() == 1 && c.contains_key(want) {
                return Ok(t0.elapsed());
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "still {c:?}, want {want}:\n{}",
                agent.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("c1")?;
    etcd.put("/lab/vips/feed", &feed("10.32.2.2", "ipip"))?;
    let took = wait("b2")?;
    println!("etcd put reached the wire within {took:?}");
    Ok(())
}
