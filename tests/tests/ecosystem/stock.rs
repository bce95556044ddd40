//! Debian's stock servers behind the balancer, driven by stock clients:
//! nginx-light answers `curl` and `iperf3 -s` takes an `iperf3 -c` run
//! through each forwarding mode — L2 DSR, IPIP, GUE, IPv6-in-IPv6 and GUE
//! over IPv6 — with the real agent, the real kernel program and the
//! project's decap program on the tunnelled backends.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Result, ensure};
use lb_tests::{
    lab::Lab,
    stock::{self, IPERF3_PORT, Server},
};

use crate::Env;

/// One forwarding mode: a VIP per port with one backend, so the answer
/// names the mode's backend.
struct Mode {
    mode: &'static str,
    vip: &'static str,
    name: &'static str,
    backend: &'static str,
    forwarding: &'static str,
    /// The port nginx listens on (tried with curl) and iperf3's.
    web: u16,
    perf: u16,
}

/// The two IPv6 modes share the backends' one IPv6 VIP address, so the
/// second takes other ports.
const MODES: &[Mode] = &[
    Mode {
        mode: "L2 DSR",
        vip: "10.100.0.1",
        name: "a1",
        backend: "10.20.0.11",
        forwarding: "l2-dsr",
        web: 80,
        perf: IPERF3_PORT,
    },
    Mode {
        mode: "IPIP",
        vip: "10.100.0.3",
        name: "b1",
        backend: "10.32.1.2",
        forwarding: "ipip",
        web: 80,
        perf: IPERF3_PORT,
    },
    Mode {
        mode: "GUE",
        vip: "10.100.0.4",
        name: "c1",
        backend: "10.33.1.2",
        forwarding: "gue",
        web: 80,
        perf: IPERF3_PORT,
    },
    Mode {
        mode: "IPv6-in-IPv6",
        vip: "fd00:100::1",
        name: "b2",
        backend: "fd32:2::2",
        forwarding: "ipip",
        web: 80,
        perf: IPERF3_PORT,
    },
    Mode {
        mode: "GUE over IPv6",
        vip: "fd00:100::1",
        name: "c2",
        backend: "fd33:2::2",
        forwarding: "gue",
        web: 8080,
        perf: IPERF3_PORT + 1,
    },
];

fn config() -> String {
    let mut yaml = String::from(
        "interfaces: [{name: lb0, xdp_mode: driver}]\n\
         limits: {max_vips: 16, max_backends: 64, ring_size: 251, conntrack_size: 65536}\n\
         vips:\n",
    );
    for m in MODES {
        for port in [m.web, m.perf] {
            yaml.push_str(&format!(
                "  - name: {}-{port}\n    address: \"{}\"\n    port: {port}\n    \
                 health_check: {{type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}}\n    \
                 backends: [{{address: \"{}\", forwarding: {}}}]\n",
                m.name, m.vip, m.backend, m.forwarding
            ));
        }
    }
    yaml
}

pub fn curl_and_iperf3_reach_nginx_and_iperf3_s_through_every_forwarding_mode(
    _: &mut Env,
) -> Result<()> {
    let mut lab = Lab::build()?;
    let mut servers = vec![];
    for m in MODES {
        lab.kill_server(m.name);
        let ns = &lab.backend(m.name).ns;
        servers.push(Server::nginx(ns, m.name, m.web)?);
        servers.push(Server::iperf3(ns, m.name, m.perf)?);
    }
    let agent = lab.start_lbd(&config(), &[])?;
    for m in MODES {
        for port in [m.web, m.perf] {
            let vip = format!("{}-{port}", m.name);
            agent.wait_healthy(&vip, m.backend, true, Duration::from_secs(10))?;
        }
    }

    let mut report = vec![];
    for m in MODES {
        let web = SocketAddr::new(m.vip.parse()?, m.web);
        let body = stock::curl(&lab.client, web)?;
        ensure!(
            body == format!("{}\n", m.name),
            "{}: curl {web} answered {body:?}, expected nginx on {}",
            m.mode,
            m.name
        );
        let perf = SocketAddr::new(m.vip.parse()?, m.perf);
        let run = stock::iperf3(&lab.client, perf, 1)?;
        ensure!(
            run.received_bytes > 0 && run.received_bps > 0.0,
            "{}: iperf3 -c {perf} moved nothing: {run:?}",
            m.mode
        );
        report.push(format!(
            "{} {:.0} Mbit/s ({} retransmits)",
            m.mode,
            run.received_bps / 1e6,
            run.retransmits
        ));
    }
    // The tunnelled answers were unwrapped by the decap program, not by a
    // kernel tunnel driver (there is none here).
    for name in ["b1", "c1", "b2", "c2"] {
        let s = lab.decap_status(name)?;
        ensure!(
            s[0]["decap_ok"].as_u64().unwrap_or(0) > 0,
            "{name} decapsulated nothing: {s}"
        );
    }
    println!("    iperf3 through the balancer: {}", report.join(", "));
    drop(agent);
    drop(servers);
    Ok(())
}
