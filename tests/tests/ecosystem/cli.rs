//! `lbctl` as an operator uses it at a terminal: `top` full-screen on a
//! pseudo-terminal (tmux) with live traffic through the lab, a backend
//! failing under it and keys pressed; `status` and `version` naming the
//! agent; `events --follow` and `stats --watch -o json` as streams of one
//! JSON object per line.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    lab::{Lab, lab_config},
    netns::Netns,
    procs::{Lbd, Lines, bin},
    pty::Pty,
};
use serde_json::Value;

use super::{Env, SHOP_ON_LO};

/// The backend table's row for `backend`, as words (the borders dropped).
fn backend_row(screen: &str, backend: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|l| {
        let words: Vec<String> = l
            .replace('│', " ")
            .split_whitespace()
            .map(String::from)
            .collect();
        (words.get(1).map(String::as_str) == Some(backend)).then_some(words)
    })
}

pub fn lbctl_top_on_a_pty_shows_live_rates_health_and_intended_shares_and_sorts_from_the_keyboard(
    _: &mut Env,
) -> Result<()> {
    let mut lab = Lab::build()?;
    let agent = lab.start_lbd(&lab_config()?, &[])?;
    for b in ["10.20.0.11", "10.20.0.12"] {
        agent.wait_healthy("web", b, true, Duration::from_secs(20))?;
    }
    let command = format!(
        "nsenter --net=/var/run/netns/{} {} --socket {} --pin-path {} top --interval 0.5",
        lab.lb.name(),
        bin("lbctl")?.display(),
        agent.socket.display(),
        agent.pin_path.display()
    );
    let pty = Pty::start(&command, 150, 45)?;
    pty.wait_for(
        "the agent's line and the tables",
        Duration::from_secs(10),
        |s| s.contains("lbd ") && s.contains("on node lab-lb") && s.contains("INTENDED"),
    )?;

    // Traffic to `web` (local-first: the two aws backends share it).
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    let end = Instant::now() + Duration::from_secs(15);
    let busy = loop {
        lab.spread(web, 40);
        let s = pty.screen()?;
        let moving = ["10.20.0.11", "10.20.0.12"].iter().all(|b| {
            backend_row(&s, b)
                .is_some_and(|w| w.len() >= 8 && w[2] == "up" && w[3] != "0" && w[7] == "50.0%")
        });
        if moving {
            break s;
        }
        if Instant::now() > end {
            bail!("no live rates for web's backends within 15 s; the screen:\n{s}");
        }
    };
    // Its VIP line: the address and all six backends healthy.
    ensure!(
        busy.lines()
            .any(|l| l.contains("web") && l.contains("10.100.0.1:80") && l.contains("6/6")),
        "{busy}"
    );
    println!("    top under load:\n{}", indent(&busy));

    pty.send("n")?;
    pty.wait_for("sorting by new flows", Duration::from_secs(5), |s| {
        s.contains("sorted by NEW/S") && s.contains("NEW/S*")
    })?;
    pty.send("r")?;
    pty.wait_for("the reversed order", Duration::from_secs(5), |s| {
        s.contains("(reversed)")
    })?;
    pty.send("a")?;
    pty.wait_for("sorting by backend", Duration::from_secs(5), |s| {
        s.contains("sorted by BACKEND")
    })?;

    // A backend fails under it: its row says so.
    lab.kill_server("a2");
    agent.wait_healthy("web", "10.20.0.12", false, Duration::from_secs(30))?;
    pty.wait_for("10.20.0.12 DOWN", Duration::from_secs(5), |s| {
        backend_row(s, "10.20.0.12").is_some_and(|w| w[2] == "DOWN")
            && s.lines()
                .any(|l| l.contains("10.100.0.1:80") && l.contains("5/6"))
    })?;

    // The agent freezes (SIGSTOP: its socket accepts, nothing answers,
    // each call waits out the client's 10 s): the keys and the counters stay
    // live, and q still quits at once.
    let pid = agent.pid().context("agent pid")? as i32;
    // SAFETY: signalling the agent this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let frozen = (|| {
        std::thread::sleep(Duration::from_secs(1));
        pty.send("p")?;
        pty.wait_for(
            "a key handled while the agent is frozen",
            Duration::from_secs(3),
            |s| s.contains("sorted by PPS"),
        )?;
        pty.send("q")?;
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(code) = pty.exit_status()? {
                ensure!(code == 0, "lbctl top exited {code}:\n{}", pty.screen()?);
                return Ok(());
            }
            ensure!(
                Instant::now() < end,
                "lbctl top did not quit on q while the agent was frozen:\n{}",
                pty.screen()?
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    frozen?;
    // The terminal was given back: the full-screen tables are gone.
    let after = pty.screen()?;
    ensure!(
        !after.contains("INTENDED"),
        "the screen was not restored:\n{after}"
    );
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn lbctl_status_version_and_the_json_streams_of_events_follow_and_stats_watch(
    _: &mut Env,
) -> Result<()> {
    let ns = Netns::new("cli")?;
    let agent = Lbd::start(&ns, SHOP_ON_LO, &[])?;
    let version = env!("CARGO_PKG_VERSION");

    let v = agent.lbctl_json(&["version"])?;
    ensure!(v["lbctl"] == version && v["agent"] == version, "{v}");

    let s = agent.lbctl_json(&["status"])?;
    ensure!(s["agent"]["version"] == version, "{s}");
    ensure!(
        s["agent"]["uptime_secs"]
            .as_f64()
            .is_some_and(|u| u < 600.0),
        "{s}"
    );
    let lo = &s["agent"]["interfaces"][0];
    ensure!(
        lo["interface"] == "lo" && (lo["mode"] == "driver" || lo["mode"] == "generic"),
        "{s}"
    );
    ensure!(
        s["conntrack"]["capacity"] == 4096 && s["conntrack"]["entries"] == 0,
        "{s}"
    );
    ensure!(
        s["vips"] == 1 && s["backends"] == 2 && s["healthy_backends"] == 2,
        "{s}"
    );
    ensure!(s["feed"].is_null() && s["announce"].is_null(), "{s}");
    // lo has no native XDP: the agent fell back to generic, which is the
    // one warning.
    let warnings: Vec<&str> = s["warnings"]
        .as_array()
        .context("warnings")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match lo["mode"].as_str() {
        Some("generic") => ensure!(
            warnings == ["lo: generic (skb) XDP, much slower than the driver's"],
            "{s}"
        ),
        _ => ensure!(warnings.is_empty(), "{s}"),
    }
    let text = agent.lbctl(&["status"])?;
    let text = String::from_utf8_lossy(&text.stdout);
    ensure!(
        text.contains(&format!("lbd {version} on node")) && text.contains("data path  lo "),
        "{text}"
    );

    // A stream of events: a drain while it follows arrives as one object.
    let events = Lines::start(agent.lbctl_command(&["-o", "json", "events", "--follow"])?)?;
    // Whatever the agent already had comes first (its start); then the drain.
    std::thread::sleep(Duration::from_millis(700));
    agent.api("POST", "/v1/vips/shop/backends/10.0.1.1/drain", None)?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let e = events.next_json(end.saturating_duration_since(Instant::now()))?;
        ensure!(e.is_object(), "{e}");
        if e["kind"] == "drain_start" {
            ensure!(e["vip"] == "shop" && e["backend"] == "10.0.1.1", "{e}");
            break;
        }
    }
    // Stats every 0.2 s, one object per line, each with its time.
    let stats = Lines::start(agent.lbctl_command(&[
        "-o",
        "json",
        "stats",
        "--watch",
        "--interval",
        "0.2",
    ])?)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let line = stats.next_json(Duration::from_secs(5))?;
        ensure!(line["stats"]["vips"][0]["vip"] == "shop", "{line}");
        ensure!(
            line["interval_secs"]
                .as_f64()
                .is_some_and(|i| (i - 0.2).abs() < 1e-9),
            "{line}"
        );
        times.push(line["time"].as_f64().context("time")?);
    }
    ensure!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    Ok(())
}
