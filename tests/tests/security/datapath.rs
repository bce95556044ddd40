//! Who may reach a VIP and how fast, on the real data path: lbd attached
//! to the lab's LB host, real TCP clients in the client namespace, real
//! servers in the backends' namespaces.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    lab::{Lab, Talkers, client_v4},
    packet::{Flags, SYN, V4, tcp},
    procs::Lbd,
};

use crate::{Env, SHOP, addr, client_ip, start_agent};

/// The shop VIP on the two aws backends (L2 DSR), with `access` (YAML
/// fields of the VIP: allow, deny, rate_limit).
pub fn config(access: &str) -> String {
    format!(
        r#"node: {{name: sec-lb, cloud: aws, region: eu-west-1}}
interfaces: [{{name: lb0, xdp_mode: driver}}]
limits: {{max_vips: 8, max_backends: 64, ring_size: 251, conntrack_size: 65536}}
vips:
  - name: shop
    address: 10.100.0.1
    port: 80
{access}
    health_check: {{type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}}
    backends:
      - {{address: 10.20.0.11, forwarding: l2-dsr, labels: {{cloud: aws, region: eu-west-1}}}}
      - {{address: 10.20.0.12, forwarding: l2-dsr, labels: {{cloud: aws, region: eu-west-1}}}}
"#
    )
}

/// Guard drops of the shop VIP by reason, as `lbctl stats` shows them.
pub fn shop_drops(agent: &Lbd, reason: &str) -> Result<u64> {
    let s = agent.lbctl_json(&["stats", "--interval", "0.1"])?;
    Ok(s["vip_drops"]
        .as_array()
        .context("vip_drops")?
        .iter()
        .filter(|d| d["vip"] == "shop" && d["reason"] == reason)
        .map(|d| d["total"].as_u64().unwrap_or(0))
        .sum())
}

/// One new connection from `src` to the shop VIP and one request on it,
/// from a thread already inside the client namespace (`Lab::ask` enters
/// it itself, which a thread without the `Lab` cannot).
fn ask_from(src: IpAddr, within: Duration, msg: &str) -> Result<String> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&std::net::SocketAddr::new(src, 0).into())?;
    s.connect_timeout(&addr(SHOP).into(), within)?;
    let mut t: std::net::TcpStream = s.into();
    t.set_read_timeout(Some(within))?;
    lb_tests::lab::request(&mut t, msg)
}

fn served(lab: &Lab, src: IpAddr) -> bool {
    lab.ask(src, addr(SHOP)).is_ok()
}

pub fn an_allowed_client_is_served_and_a_denied_one_is_not(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    // .10 and .11 allowed by the /31, .11 denied by the longer prefix,
    // .12 on no list.
    let agent = start_agent(
        lab,
        &config("    allow: [10.10.0.10/31]\n    deny: [10.10.0.11/32]"),
        "",
        &[],
    )?;
    let (allowed, denied, unlisted) = (client_ip(0), client_ip(1), client_ip(2));
    ensure!(served(lab, allowed), "{allowed} (allowed) not served");
    ensure!(!served(lab, denied), "{denied} (denied) was served");
    ensure!(
        !served(lab, unlisted),
        "{unlisted} (off the allow list) was served"
    );
    let (d, n) = (
        shop_drops(&agent, "drop_denied")?,
        shop_drops(&agent, "drop_not_allowed")?,
    );
    println!(
        "    allowed served; denied dropped {d} SYNs, unlisted dropped {n} (retransmits included)"
    );
    ensure!(
        d >= 1 && n >= 1,
        "drops not counted on the VIP: denied {d}, not allowed {n}"
    );
    Ok(())
}

pub fn an_allow_list_change_applies_at_once_and_never_drops_a_source_on_both_lists(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let list = |extra: u8| format!("    allow: [10.10.0.10/32, 10.10.0.{extra}/32]");
    let agent = start_agent(lab, &config(&list(12)), "", &[])?;
    // A client on every version of the list connects all along.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let steady = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let ns = lab.client.name().to_string();
        std::thread::spawn(move || -> Result<()> {
            let _in = lb_tests::netns::enter_named(&ns)?;
            while !stop.load(Ordering::Relaxed) {
                match ask_from(client_ip(0), Duration::from_secs(1), "steady") {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };
    let mut flips = 0;
    for round in 0..10u8 {
        let extra = if round % 2 == 0 { 13 } else { 12 };
        let applied = agent.api_get("/v1/state")?["reloads"]["applied"]
            .as_u64()
            .unwrap_or(0);
        agent.write_config(&config(&list(extra)))?;
        agent.hup();
        agent.wait_for("reload", Duration::from_secs(5), |s| {
            s["reloads"]["applied"].as_u64() > Some(applied)
        })?;
        // The new list is live the moment the reload is.
        let (now_in, now_out) = (
            client_ip(extra - 10),
            client_ip(if extra == 13 { 2 } else { 3 }),
        );
        ensure!(
            served(lab, now_in),
            "round {round}: {now_in} not served after joining the list"
        );
        ensure!(
            lab.connect(now_out, 0, addr(SHOP)).is_err(),
            "round {round}: {now_out} still served after leaving the list"
        );
        flips += 1;
    }
    stop.store(true, Ordering::Relaxed);
    steady
        .join()
        .map_err(|_| anyhow::anyhow!("steady client panicked"))??;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "    {flips} list changes; the source on every list: {ok} connections, {failed} failed"
    );
    ensure!(failed == 0 && ok > 50, "{failed} of {} failed", ok + failed);
    Ok(())
}

/// A raw IPv4 socket in the client namespace: TCP segments from any of
/// its addresses, built here, with flags no TCP stack would send.
struct RawTcp {
    fd: i32,
    src: Ipv4Addr,
    dst: std::net::SocketAddrV4,
}

impl RawTcp {
    fn open(lab: &Lab, src: Ipv4Addr, dst: std::net::SocketAddrV4) -> Result<Self> {
        // The socket stays in the namespace it was made in.
        let _in = lab.client.enter()?;
        // SAFETY: plain socket(2); closed on drop.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        Ok(Self { fd, src, dst })
    }

    /// Sends one segment from `sport`; whether the kernel took it.
    fn send(&self, sport: u16, flags: Flags) -> bool {
        let (src, dst) = (self.src, *self.dst.ip());
        let seg = tcp(src.into(), dst.into(), sport, self.dst.port(), flags, b"");
        let pkt = V4::new(src, dst, 6).packet(&seg);
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: pkt and to outlive the call; the lengths are theirs.
        let n = unsafe {
            libc::sendto(
                self.fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        n > 0
    }
}

impl Drop for RawTcp {
    fn drop(&mut self) {
        // SAFETY: our descriptor.
        unsafe { libc::close(self.fd) };
    }
}

/// Sends `count` TCP SYNs from `src` to `dst` over `secs` through a raw
/// socket in the client namespace (source ports cycling below the
/// ephemeral range, so no real socket of the client is hit). Returns how
/// many were sent.
fn syn_flood(
    lab: &Lab,
    src: Ipv4Addr,
    dst: std::net::SocketAddrV4,
    count: usize,
    secs: f64,
) -> Result<usize> {
    let raw = RawTcp::open(lab, src, dst)?;
    let t0 = Instant::now();
    let mut sent = 0;
    for i in 0..count {
        if raw.send(1024 + (i % 30_000) as u16, SYN) {
            sent += 1;
        }
        // Paced: the i-th SYN leaves at i/count of the duration.
        let due = Duration::from_secs_f64(secs * (i + 1) as f64 / count as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(sent)
}

pub fn a_syn_flood_from_one_source_is_held_to_its_budget_while_other_clients_connect(
    env: &mut Env,
) -> Result<()> {
    const RATE: f64 = 100.0;
    const SECS: f64 = 2.0;
    let lab = env.lab()?;
    let agent = start_agent(
        lab,
        &config("    rate_limit: {source_new_flows_per_sec: 100, burst: 100ms}"),
        "",
        &[],
    )?;
    // Established connections of the other clients, talking throughout.
    let talkers = Talkers::start(lab, addr(SHOP), 16)?;
    let before = shop_drops(&agent, "drop_source_flow_limit")?;
    // Other clients open new connections while the flood runs.
    let ns = lab.client.name().to_string();
    let legit = std::thread::spawn(move || -> Result<(usize, usize)> {
        let _in = lb_tests::netns::enter_named(&ns)?;
        let (mut ok, mut failed) = (0, 0);
        for i in 0..300usize {
            let src = client_ip(1 + (i % 7) as u8);
            if ask_from(src, Duration::from_secs(2), "legit").is_ok() {
                ok += 1
            } else {
                failed += 1
            }
            std::thread::sleep(Duration::from_millis(6));
        }
        Ok((ok, failed))
    });
    let std::net::SocketAddr::V4(dst) = addr(SHOP) else {
        unreachable!()
    };
    let sent = syn_flood(lab, client_v4(0), dst, 10_000, SECS)?;
    let (ok, failed) = legit
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    std::thread::sleep(Duration::from_millis(200));
    let dropped = shop_drops(&agent, "drop_source_flow_limit")? - before;
    let broken: Vec<_> = talkers.finish().into_iter().filter_map(|t| t.2).collect();
    let admitted = sent as u64 - dropped;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // Each CPU's bucket: RATE / cpus per second plus a 100 ms burst.
    let budget = RATE * SECS + cpus * (1.0 + 0.1 * RATE / cpus);
    println!(
        "    flood: {sent} SYNs from {} over {SECS} s; {admitted} admitted (budget {budget:.0} at {RATE}/s), {dropped} dropped",
        client_v4(0)
    );
    println!(
        "    other clients: {ok} of {} new connections served ({:.2}%); {} established, {} broken",
        ok + failed,
        100.0 * ok as f64 / (ok + failed) as f64,
        16,
        broken.len()
    );
    ensure!(
        admitted as f64 <= budget * 1.05,
        "{admitted} admitted over a budget of {budget:.0}"
    );
    ensure!(
        admitted as f64 >= 0.4 * RATE * SECS,
        "only {admitted} admitted: the limiter holds back more than its rate"
    );
    ensure!(
        ok as f64 >= 0.99 * (ok + failed) as f64,
        "{failed} of {} failed",
        ok + failed
    );
    ensure!(broken.is_empty(), "broken: {broken:?}");
    Ok(())
}

pub fn impossible_tcp_flags_from_the_wire_are_dropped_and_counted_on_the_vip(
    env: &mut Env,
) -> Result<()> {
    let lab = env.lab()?;
    let agent = start_agent(lab, &config(""), "", &[])?;
    // A forwarded segment would leave a connection-table entry of its
    // flow (other traffic to the VIP may be about: count only ours).
    let src = client_v4(3);
    let forwarded = |a: &Lbd| -> Result<usize> {
        let s = a.lbctl_json(&["conntrack", "list", "--limit", "100000"])?;
        Ok(s.as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["flow"]
                    .as_str()
                    .is_some_and(|f| f.contains(&format!("{src}:200")))
            })
            .count())
    };
    let drops0 = shop_drops(&agent, "drop_bad_tcp_flags")?;
    let std::net::SocketAddr::V4(dst) = addr(SHOP) else {
        unreachable!()
    };
    let raw = RawTcp::open(lab, src, dst)?;
    let kinds = [
        (
            "SYN+FIN",
            Flags {
                syn: true,
                fin: true,
                ..Flags::default()
            },
        ),
        (
            "SYN+RST",
            Flags {
                syn: true,
                rst: true,
                ..Flags::default()
            },
        ),
        ("none", Flags::default()),
    ];
    for (i, (what, f)) in kinds.iter().enumerate() {
        ensure!(
            raw.send(2000 + i as u16, *f),
            "send {what}: {}",
            std::io::Error::last_os_error()
        );
    }
    // A well-formed SYN of the same source as a control: it is forwarded
    // and leaves its entry, so the count below can see one.
    ensure!(
        raw.send(2009, SYN),
        "send SYN: {}",
        std::io::Error::last_os_error()
    );
    drop(raw);
    std::thread::sleep(Duration::from_millis(300));
    let (fwd, drops1) = (
        forwarded(&agent)?,
        shop_drops(&agent, "drop_bad_tcp_flags")?,
    );
    println!(
        "    {} segments with impossible flags ({}): {} counted as drop_bad_tcp_flags; forwarded: {fwd} (the control SYN only)",
        kinds.len(),
        kinds.iter().map(|k| k.0).collect::<Vec<_>>().join(", "),
        drops1 - drops0,
    );
    ensure!(
        drops1 - drops0 == kinds.len() as u64,
        "counted {}",
        drops1 - drops0
    );
    ensure!(
        fwd == 1,
        "{fwd} flows of the source forwarded (want the control's only)"
    );
    Ok(())
}
