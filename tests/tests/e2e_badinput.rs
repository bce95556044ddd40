//! Scenario 9, bad input on the wire: malformed and truncated frames sent at the LB's
//! interface are counted and dropped or passed, never forwarded, and the
//! agent keeps serving.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_tests::{
    lab::{Lab, client_v4},
    netns::send_raw,
    packet::{ETH_P_IP, ETH_P_IPV6, V4, V6, ethernet, tcp, v4, v6},
};

fn counters(agent: &lb_tests::procs::Lbd) -> Result<std::collections::BTreeMap<String, u64>> {
    let s = agent.lbctl_json(&["stats", "--interval", "0.1"])?;
    Ok(s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["total"].as_u64().unwrap(),
            )
        })
        .collect())
}

#[test]
fn malformed_input_is_counted_and_never_forwarded() -> Result<()> {
    let lab = Lab::build()?;
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))?;
    let agent = lab.start_lbd(&config, &[])?;
    std::thread::sleep(Duration::from_secs(2));
    let lb_mac = lab.lb.mac("lb0")?;
    let src_mac = lab.router.mac("p-lb")?;
    let (client, vip) = (client_v4(0), v4("10.100.0.1"));
    let seg = tcp(
        client.into(),
        vip.into(),
        40000,
        80,
        lb_tests::packet::SYN,
        b"",
    );
    let good = V4::new(client, vip, 6).packet(&seg);
    let n = 7usize;
    let mut frames: Vec<(Vec<u8>, &str)> = vec![];
    for _ in 0..n {
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &good[..10]),
            "drop_malformed_l3",
        ));
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x43;
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &bad_ihl),
            "drop_malformed_l3",
        ));
        let mut long = good.clone();
        long[2..4].copy_from_slice(&1400u16.to_be_bytes());
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &long),
            "drop_malformed_l3",
        ));
        let truncated_tcp = V4::new(client, vip, 6).packet(&seg[..12]);
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &truncated_tcp),
            "drop_malformed_l4",
        ));
        let mut frag = V4::new(client, vip, 6);
        frag.mf = true;
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &frag.packet(&seg)),
            "drop_fragment",
        ));
        let truncated_icmp = V4::new(client, vip, 1).packet(&[8, 0, 0]);
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IP, &truncated_icmp),
            "drop_malformed_icmp",
        ));
        let v6pkt = V6::new(v6("fd10::10"), v6("fd00:100::1"), 6).packet(&[0u8; 20]);
        frames.push((
            ethernet(lb_mac, src_mac, None, ETH_P_IPV6, &v6pkt[..30]),
            "drop_malformed_l3",
        ));
        let mut vlan = ethernet(lb_mac, src_mac, None, 0x8100, &[0, 1]);
        vlan.truncate(15);
        frames.push((vlan, "drop_malformed_l2"));
    }
    let before = counters(&agent)?;
    send_raw(
        &lab.router,
        "p-lb",
        &frames.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let after = counters(&agent)?;
    let delta = |r: &str| after.get(r).copied().unwrap_or(0) - before.get(r).copied().unwrap_or(0);
    let mut want = std::collections::BTreeMap::new();
    for (_, r) in &frames {
        *want.entry(*r).or_insert(0u64) += 1;
    }
    for (r, n) in &want {
        ensure!(delta(r) == *n, "{r}: {} counted, {n} sent", delta(r));
    }
    for r in ["fwd_tx", "fwd_redirect", "fwd_encap", "fwd_l2_dsr"] {
        ensure!(
            delta(r) == 0,
            "{r} moved by {}: malformed input must never be forwarded",
            delta(r)
        );
    }
    println!("malformed frames counted: {want:?}");
    // The agent and the data path keep serving.
    agent.api_get("/v1/state")?;
    let counts = lab.spread("10.100.0.1:80".parse()?, 20);
    ensure!(!counts.contains_key("error"), "{counts:?}");
    Ok(())
}
