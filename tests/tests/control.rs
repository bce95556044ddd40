//! `lbctl` and the API against a running `lbd` whose program is attached in
//! a test namespace: every command, its JSON output, its exit codes.

use std::time::Duration;

use anyhow::{Context as _, Result};
use aya::programs::Xdp;
use lb_tests::{
    netns::{Netns, require_root},
    packet::{ACK, ETH_P_IP, Flags, SYN, V4, ethernet, tcp, v4},
    procs::Lbd,
};

const CONFIG: &str = r#"
node: {name: edge-test, cloud: aws, region: r1}
interfaces: [{name: lb0}]
limits: {max_vips: 8, max_backends: 64, ring_size: 1021, conntrack_size: 65536}
vips:
  - name: web
    address: 10.100.0.1
    port: 80
    health_check: {type: none}
    # Failing aws leaves one third of the weight healthy: gcp takes over
    # (no panic: another failure domain still has capacity).
    backends:
      - {address: 10.0.0.11, labels: {cloud: aws, region: r1}}
      - {address: 10.0.0.12, labels: {cloud: aws, region: r1}}
      - {address: 10.0.0.13, labels: {cloud: gcp, region: r2}}
  - name: dns
    address: 10.100.0.2
    port: 53
    protocol: udp
    health_check: {type: none}
    backends:
      - {address: 10.0.0.21}
"#;

fn lab() -> Result<(Netns, Netns)> {
    let lb = Netns::new("ctl-lb")?;
    let peer = Netns::new("ctl-peer")?;
    lb_tests::netns::veth(&lb, "lb0", &peer, "peer0")?;
    // The peer would otherwise send IPv6 router solicitations and MLD
    // reports now and then, which lb0's program counts: the test compares
    // counters and must be the only one moving them.
    peer.exec("sysctl", &["-qw", "net.ipv6.conf.peer0.disable_ipv6=1"])?;
    lb.ip(&["addr", "add", "10.0.0.1/24", "dev", "lb0"])?;
    for n in [11, 12, 13, 21] {
        lb.ip(&[
            "neigh",
            "replace",
            &format!("10.0.0.{n}"),
            "lladdr",
            &format!("02:00:0a:00:00:{n:02x}"),
            "dev",
            "lb0",
            "nud",
            "permanent",
        ])?;
    }
    Ok((lb, peer))
}

/// Sends a frame through the attached (pinned) program, as if it arrived
/// on lb0: real traffic for the connection table and counters.
fn inject(lb: &Netns, pin: &std::path::Path, frame: &[u8]) -> Result<u32> {
    let _in = lb.enter()?;
    let prog = Xdp::from_pin(
        pin.join("prog"),
        aya_obj::programs::XdpAttachType::Interface,
    )?;
    Ok(lb_tests::fixture::run_frame(&prog, lb.ifindex("lb0")?, frame)?.0)
}

/// A segment from 198.51.100.7:`sport` to the VIP 10.100.0.1:80.
fn segment(sport: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let (c, vip) = (v4("198.51.100.7"), v4("10.100.0.1"));
    let seg = tcp(c.into(), vip.into(), sport, 80, flags, payload);
    let ip = V4::new(c, vip, 6).packet(&seg);
    ethernet(
        [2, 0, 0, 0, 0, 1],
        [2, 0xcc, 0, 0, 0, 1],
        None,
        ETH_P_IP,
        &ip,
    )
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn lbctl_inspects_and_steers_a_running_agent() -> Result<()> {
    require_root()?;
    let (lb, _peer) = lab()?;
    let agent = Lbd::start(&lb, CONFIG, &[])?;

    // vip list: names from the agent, digests from the maps.
    let vips = agent.lbctl_json(&["vip", "list"])?;
    let state = agent.api_get("/v1/state")?;
    assert_eq!(vips.as_array().unwrap().len(), 2);
    let web = lb_tests::json::find(&vips, "name", "web")?;
    assert_eq!(
        web["digest"],
        lb_tests::json::find(&state["vips"], "name", "web")?["digest"]
    );
    assert_eq!(web["port"], 80);

    // backend list and ring show agree with the policy: two local aws
    // backends share everything, gcp gets nothing while they are healthy.
    let backends = agent.lbctl_json(&["backend", "list", "--vip", "web"])?;
    let shares: Vec<f64> = backends
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ring_share"].as_f64().unwrap())
        .collect();
    assert_eq!(shares.len(), 3);
    assert!(
        (shares[0] - 0.5).abs() < 0.01 && (shares[1] - 0.5).abs() < 0.01 && shares[2] == 0.0,
        "{shares:?}"
    );
    let ring = agent.lbctl_json(&["ring", "show", "--vip", "web"])?;
    assert_eq!(ring["ring_size"], 1021);
    assert_eq!(ring["digest"], web["digest"]);
    let total: u64 = ring["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slots"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1021);
    for b in ring["backends"].as_array().unwrap() {
        let diff = (b["share"].as_f64().unwrap() - b["expected_share"].as_f64().unwrap()).abs();
        assert!(diff < 0.01, "{b}");
    }
    let human = agent.lbctl(&["ring", "show", "--vip", "web"])?;
    assert!(String::from_utf8_lossy(&human.stdout).contains("EXPECTED"));

    // Traffic through the attached program fills the connection table.
    assert_eq!(agent.lbctl_json(&["conntrack", "count"])?["entries"], 0);
    for sport in 40000..40010 {
        assert_eq!(
            inject(&lb, &agent.pin_path, &segment(sport, SYN, b""))?,
            3,
            "XDP_TX"
        );
    }
    assert_eq!(agent.lbctl_json(&["conntrack", "count"])?["entries"], 10);
    let ct = agent.lbctl_json(&["conntrack", "list", "--vip", "web", "--limit", "5"])?;
    assert_eq!(ct.as_array().unwrap().len(), 5);
    assert!(
        ct[0]["flow"]
            .as_str()
            .unwrap()
            .starts_with("198.51.100.7:400")
    );
    let one_backend = ct[0]["backend"].as_str().unwrap().to_string();
    let filtered = agent.lbctl_json(&["conntrack", "list", "--backend", &one_backend])?;
    assert!(
        filtered
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["backend"] == one_backend.as_str())
    );

    // explain: an established flow comes from the table, a new one from
    // the ring; neither records anything or moves a counter.
    let stats_before = agent.lbctl_json(&["stats", "--interval", "0.1"])?;
    let e = agent.lbctl_json(&["explain", "198.51.100.7:40000", "10.100.0.1:80", "tcp"])?;
    assert_eq!(e["decided_by"], "connection table", "{e}");
    assert_eq!(e["action"], "XDP_TX");
    let pinned_to = e["backend"].as_str().unwrap().to_string();
    let listed = agent.lbctl_json(&["conntrack", "list", "--limit", "100"])?;
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["flow"] == "198.51.100.7:40000 -> 10.100.0.1:80 tcp")
        .unwrap();
    assert_eq!(
        entry["backend"],
        pinned_to.as_str(),
        "explain agrees with the table"
    );
    let e = agent.lbctl_json(&[
        "explain",
        "198.51.100.9:41000",
        "10.100.0.1:80",
        "tcp",
        "--syn",
    ])?;
    assert_eq!(e["decided_by"], "Maglev ring");
    assert!(e["ring_slot"].as_u64().unwrap() < 1021);
    let e = agent.lbctl_json(&["explain", "198.51.100.9:41000", "10.0.0.1:22", "tcp"])?;
    assert_eq!(e["action"], "XDP_PASS");
    assert!(e["backend"].is_null());
    assert_eq!(
        agent.lbctl_json(&["conntrack", "count"])?["entries"],
        10,
        "explain recorded no flow"
    );
    let stats_after = agent.lbctl_json(&["stats", "--interval", "0.1"])?;
    assert_eq!(
        stats_before["reasons"], stats_after["reasons"],
        "explain moved no counter"
    );
    let text = String::from_utf8_lossy(
        &agent
            .lbctl(&["explain", "198.51.100.7:40001", "10.100.0.1:80", "tcp"])?
            .stdout,
    )
    .to_string();
    assert!(text.contains("decided   by the connection table"), "{text}");

    // stats: the injected SYNs, by reason name.
    let reasons = stats_after["reasons"].as_array().unwrap();
    let fwd = reasons
        .iter()
        .find(|r| r["reason"] == "fwd_tx")
        .context("fwd_tx counted")?;
    assert_eq!(fwd["total"], 10);
    let web_stats = lb_tests::json::find(&stats_after["vips"], "vip", "web")?.clone();
    assert_eq!(web_stats["packets"], 10);

    // drain / undrain / maintenance / weight through the API.
    let v = agent.lbctl_json(&["drain", "web", "10.0.0.11"])?;
    assert_eq!(v["backends"][0]["state"], "draining");
    assert_eq!(v["backends"][0]["ring_share"], 0.0);
    // The drained backend's established flows still go to it.
    for sport in 40000..40010 {
        inject(&lb, &agent.pin_path, &segment(sport, ACK, b"x"))?;
    }
    let ct = agent.lbctl_json(&["conntrack", "list", "--backend", "10.0.0.11"])?;
    assert!(
        !ct.as_array().unwrap().is_empty(),
        "established flows of the drained backend stay"
    );
    let v = agent.lbctl_json(&["undrain", "web", "10.0.0.11"])?;
    assert_eq!(v["backends"][0]["state"], "active");
    let v = agent.lbctl_json(&["maintenance", "web", "10.0.0.12"])?;
    assert_eq!(v["backends"][1]["state"], "maintenance");
    let v = agent.lbctl_json(&["undrain", "web", "10.0.0.12"])?;
    assert_eq!(v["backends"][1]["state"], "active");
    let v = agent.lbctl_json(&["weight", "web", "10.0.0.11", "300"])?;
    assert_eq!(v["backends"][0]["weight"], 300);
    assert!((v["backends"][0]["ring_share"].as_f64().unwrap() - 0.75).abs() < 0.01);

    // Errors: exit codes scripts can rely on.
    let out = agent.lbctl(&["weight", "web", "10.0.0.11", "--", "-1"])?;
    assert_eq!(code(&out), 5, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight: must be 0..=65535, got -1"));
    let out = agent.lbctl(&["drain", "nope", "10.0.0.11"])?;
    assert_eq!(code(&out), 4);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no VIP named \"nope\""));
    let out = agent.lbctl(&["drain", "web", "10.9.9.9"])?;
    assert_eq!(code(&out), 4);
    let out = std::process::Command::new(lb_tests::procs::bin("lbctl")?)
        .args([
            "--socket",
            "/nonexistent/lbd.sock",
            "drain",
            "web",
            "10.0.0.11",
        ])
        .output()?;
    assert_eq!(code(&out), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach lbd"));
    let out = std::process::Command::new(lb_tests::procs::bin("lbctl")?)
        .args(["--pin-path", "/sys/fs/bpf/lbt-none", "vip", "list"])
        .output()?;
    assert_eq!(code(&out), 6);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pinned data path"));
    let out = agent.lbctl(&["explain", "198.51.100.7:1", "10.100.0.1:80", "sctp"])?;
    assert_eq!(code(&out), 2);

    // Drill: the preview changes nothing; --apply fails aws for real and
    // the agent reverts it by itself.
    let p = agent.lbctl_json(&["drill", "--fail", "cloud=aws"])?;
    let web_preview = lb_tests::json::find(&p["preview"], "vip", "web")?;
    assert_eq!(
        web_preview["backends"][2]["during"], 1.0,
        "gcp would take everything"
    );
    assert!(agent.api_get("/v1/drill")?["drill"].is_null());
    let out = agent.lbctl(&[
        "drill",
        "--fail",
        "cloud=aws",
        "--apply",
        "--for",
        "2s",
        "--detach",
    ])?;
    lb_tests::procs::succeeded(&out)?;
    let during = agent.lbctl_json(&["backend", "list", "--vip", "web"])?;
    assert_eq!(
        during[2]["ring_share"], 1.0,
        "gcp carries everything during the drill"
    );
    agent.wait_for("the drill to revert", Duration::from_secs(10), |s| {
        s["drill"].is_null()
    })?;
    let after = agent.lbctl_json(&["backend", "list", "--vip", "web"])?;
    assert_eq!(after[2]["ring_share"], 0.0, "reverted");
    let events = agent.lbctl_json(&["events"])?;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("drill 1"))
    );

    // While the agent is down, the maps are still readable.
    let mut agent = agent;
    agent.stop()?;
    let vips = agent.lbctl_json(&["vip", "list"])?;
    assert_eq!(vips.as_array().unwrap().len(), 2);
    assert_eq!(
        vips[0]["name"], "10.100.0.1:80/tcp",
        "names fall back to address:port/proto"
    );
    assert_eq!(agent.lbctl_json(&["conntrack", "count"])?["entries"], 10);
    Ok(())
}

/// The TCP API refuses to start without a proper token and needs it on
/// every request.
#[test]
fn tcp_api_requires_a_token() -> Result<()> {
    require_root()?;
    let (lb, _peer) = lab()?;
    let dir = lb_tests::procs::TempDir::new("token")?;
    let token = dir.0.join("token");
    std::fs::write(&token, "short")?;
    let api =
        |t: &std::path::Path| format!("tcp_listen: 127.0.0.1:9180, token_file: {}", t.display());
    let err = Lbd::start_with(&lb, CONFIG, &[], &api(&token))
        .err()
        .context("lbd must refuse a short token")?;
    assert!(
        format!("{err:#}").contains("at least 16 characters"),
        "{err:#}"
    );
    std::fs::write(&token, "0123456789abcdef0123")?;
    let agent = Lbd::start_with(&lb, CONFIG, &[], &api(&token))?;
    let curl = |hdr: Option<&str>| -> Result<String> {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", lb.name()))
            .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        if let Some(h) = hdr {
            cmd.args(["-H", h]);
        }
        cmd.arg("http://127.0.0.1:9180/v1/state");
        Ok(String::from_utf8_lossy(&cmd.output()?.stdout).into_owned())
    };
    assert_eq!(curl(None)?, "401");
    assert_eq!(curl(Some("Authorization: Bearer wrong"))?, "401");
    assert_eq!(
        curl(Some("Authorization: Bearer 0123456789abcdef0123"))?,
        "200"
    );
    let out = agent.lbctl(&[
        "--api",
        "127.0.0.1:9180",
        "--token-file",
        token.to_str().unwrap(),
        "--output",
        "json",
        "events",
    ])?;
    lb_tests::procs::succeeded(&out)?;
    Ok(())
}
