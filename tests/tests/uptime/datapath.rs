//! The data path where the defaults meet real devices and real tunnels.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_tests::{
    netns::{Netns, send_raw},
    packet::{ETH_P_IP, SYN, V4, ethernet, tcp, v4},
    procs::Lbd,
};
use serde_json::Value;

use crate::Env;

/// `xdp_mode` is left at its default (`auto`) on loopback, which has no
/// native XDP: the agent warns and runs in generic mode instead of
/// refusing to start.
pub fn xdp_auto_falls_back_to_generic_where_the_driver_refuses(_: &mut Env) -> Result<()> {
    let ns = Netns::new("auto")?;
    let config = "node: {name: auto}\ninterfaces: [{name: lo}]\nlimits: {max_vips: 4, max_backends: 8, ring_size: 251, conntrack_size: 1024}\nvips:\n  - {name: web, address: 10.100.0.1, port: 80, health_check: {type: none}, backends: [{address: 10.0.1.1}]}\n";
    let a = Lbd::start(&ns, config, &[])?;
    let log = a.log_text();
    ensure!(
        log.contains("falling back to generic"),
        "no fallback warning:\n{log}"
    );
    let link = ns.ip(&["-d", "link", "show", "lo"])?;
    ensure!(
        link.contains("xdpgeneric"),
        "lo has no generic XDP program: {link}"
    );
    ensure!(a.api_get("/v1/health")?["status"] == "ok");
    Ok(())
}

fn counter(status: &Value, name: &str) -> u64 {
    status[0][name].as_u64().unwrap_or(0)
}

/// A backend reachable from outside is no open tunnel endpoint: tunnels
/// from a source outside the LB prefixes, or for an inner destination
/// that is not a VIP, are counted as refused and not unwrapped.
pub fn decap_refuses_tunnels_from_outside_the_lb_prefixes_on_a_live_backend(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let b1 = lab.backend("b1");
    let (dst_mac, src_mac) = (b1.ns.mac("eth0")?, lab.router.mac("r-b1")?);
    let client = v4("198.51.100.77");
    let inner = |dst: &str, port: u16| {
        let d = v4(dst);
        V4::new(client, d, 6).packet(&tcp(client.into(), d.into(), 41000, port, SYN, b""))
    };
    let tunnel = |src: &str, inner: &[u8]| {
        ethernet(
            dst_mac,
            src_mac,
            None,
            ETH_P_IP,
            &V4::new(v4(src), b1.v4, 4).packet(inner),
        )
    };
    let before = lab.decap_status("b1")?;
    send_raw(
        &lab.router,
        "r-b1",
        &[
            tunnel("203.0.113.7", &inner("10.100.0.1", 80)),
            tunnel("172.16.0.9", &inner(&b1.v4.to_string(), 22)),
        ],
    )?;
    let mut after = before.clone();
    for _ in 0..50 {
        after = lab.decap_status("b1")?;
        if counter(&after, "decap_refused_inner") > counter(&before, "decap_refused_inner") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let grew = |name: &str| counter(&after, name) - counter(&before, name);
    ensure!(
        grew("decap_refused_source") == 1 && grew("decap_refused_inner") == 1,
        "refusals not counted: before {before}, after {after}"
    );
    ensure!(
        grew("decap_ok") == 0,
        "a refused tunnel was unwrapped: {after}"
    );
    Ok(())
}
