//! aya-log where it earns its place: the backend decap program's trace
//! mode. `lbd decap --trace` on a lab backend, `lbctl trace` there shows
//! why each packet was unwrapped or refused — a balanced connection's
//! tunnel from the LB and a forged tunnel from outside the LB prefixes —
//! and without `--trace` the same traffic leaves no record.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    lab::{Lab, client_v4, lab_config},
    packet::{SYN, ip_packet, tcp},
    procs::{Lines, bin},
};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

use super::Env;

/// `lbctl trace -o json` on backend `name` for `secs`.
fn trace(lab: &Lab, name: &str, secs: u32) -> Result<Lines> {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!(
        "--net=/var/run/netns/{}",
        lab.backend(name).ns.name()
    ))
    .arg(bin("lbctl")?)
    .args([
        "-o",
        "json",
        "trace",
        "--for",
        &format!("{secs}s"),
        "--decap-pin-path",
    ])
    .arg(lab.decap_pin(name));
    Lines::start(cmd)
}

/// An IPIP tunnel to `backend` sent from the client (outside the LB
/// source prefixes) carrying a SYN for `vip`.
fn forged_tunnel(lab: &Lab, backend: IpAddr, vip: SocketAddr) -> Result<()> {
    let _in = lab.client.enter()?;
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4)))?;
    let src = IpAddr::V4(client_v4(0));
    let (_, inner) = ip_packet(
        src,
        vip.ip(),
        6,
        &tcp(src, vip.ip(), 40000, vip.port(), SYN, b""),
    );
    s.send_to(&inner, &SocketAddr::new(backend, 0).into())?;
    Ok(())
}

fn collect(lines: &Lines, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    while Instant::now() < end && !done(&seen) {
        if let Some(l) = lines.next(Duration::from_millis(200))
            && let Ok(v) = serde_json::from_str::<Value>(&l)
        {
            seen.push(v);
        }
    }
    seen
}

pub fn lbd_decap_trace_shows_in_lbctl_trace_why_each_tunnel_was_unwrapped_or_refused(
    _: &mut Env,
) -> Result<()> {
    let lab = Lab::build()?;
    let agent = lab.start_lbd(&lab_config()?, &[])?;
    let b1 = lab.backend("b1").v4;
    agent.wait_healthy("orders", &b1.to_string(), true, Duration::from_secs(20))?;
    let orders: SocketAddr = "10.100.0.3:80".parse()?;
    let unwrapped = |v: &Value| {
        v["reason"] == "decap_ok"
            && v["verdict"] == "pass"
            && v["proto"] == "ipip"
            && v["dst"] == b1.to_string()
    };
    let refused = |v: &Value| {
        v["reason"] == "decap_refused_source"
            && v["verdict"] == "pass"
            && v["src"] == client_v4(0).to_string()
            && v["dst"] == b1.to_string()
    };

    lab.redecap("b1", &["--trace"])?;
    let lines = trace(&lab, "b1", 20)?;
    std::thread::sleep(Duration::from_millis(500));
    // orders is balanced over b1 and b2: enough connections reach b1.
    let spread = lab.spread(orders, 20);
    ensure!(spread.get("b1").is_some_and(|n| *n > 0), "{spread:?}");
    forged_tunnel(&lab, IpAddr::V4(b1), orders)?;
    let seen = collect(&lines, Duration::from_secs(10), |s| {
        s.iter().any(unwrapped) && s.iter().any(refused)
    });
    ensure!(
        seen.iter().any(unwrapped) && seen.iter().any(refused),
        "no decap_ok and decap_refused_source records in {} records: {seen:?}",
        seen.len()
    );
    let ok = seen.iter().find(|v| unwrapped(v)).context("ok")?;
    ensure!(
        ok["iface"] == "eth0"
            && ok["why"]
                .as_str()
                .is_some_and(|w| w.contains("tunnel header removed")),
        "{ok}"
    );
    println!(
        "    {} records, e.g. {} {} {} -> {}, and the forged tunnel's decap_refused_source from {}",
        seen.len(),
        ok["verdict"],
        ok["reason"],
        ok["src"],
        ok["dst"],
        client_v4(0)
    );

    // Without --trace the same traffic leaves nothing to read.
    drop(lines);
    lab.redecap("b1", &[])?;
    let lines = trace(&lab, "b1", 3)?;
    std::thread::sleep(Duration::from_millis(500));
    let spread = lab.spread(orders, 20);
    ensure!(spread.get("b1").is_some_and(|n| *n > 0), "{spread:?}");
    forged_tunnel(&lab, IpAddr::V4(b1), orders)?;
    let quiet = collect(&lines, Duration::from_secs(2), |_| false);
    ensure!(
        quiet.is_empty(),
        "a decap program without --trace wrote {quiet:?}"
    );
    // And it still unwraps: the counters moved.
    let status = lab.decap_status("b1")?;
    ensure!(
        status[0]["decap_ok"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    Ok(())
}
