//! `cargo xtask bench [--quick]`: the benchmarks behind BENCHMARKS.md.
//! Prints one table, writes `target/bench/results.json`, the test frames
//! (`target/bench/frames/`) and SVG plots (`target/bench/*.svg`).

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use aya::{EbpfLoader, programs::Xdp};
use lb_tests::{
    bench::{self, maglev, memory, reaction, svg, throughput},
    fixture::{XDP_PASS, XDP_TX},
    lab::Lab,
    netns::require_root,
    packet::{ACK, SYN},
    procs::Etcd,
};
use serde_json::{Value, json};

struct Row {
    section: &'static str,
    case: String,
    value: String,
}

fn main() -> Result<()> {
    require_root()?;
    let quick = std::env::args().any(|a| a == "--quick");
    let only: Vec<String> = std::env::args()
        .skip_while(|a| a != "--only")
        .skip(1)
        .take(1)
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let mut rows: Vec<Row> = vec![];
    let mut results = serde_json::Map::new();
    results.insert("quick".into(), json!(quick));
    results.insert("machine".into(), machine());

    let mut sections = Sections {
        only: only
            .first()
            .map(|o| o.split(',').map(String::from).collect()),
        failed: vec![],
    };
    let mut per_packet_keys = serde_json::Map::new();
    sections.run(
        "katran-world",
        "katran-world: issue 15's comparison world, repeat = 1 and repeat = N through the shim",
        || {
            let v = katran_world(quick, &mut rows)?;
            if let Value::Object(o) = v {
                per_packet_keys.extend(o);
            }
            Ok(())
        },
    );
    sections.run(
        "per-packet",
        "per-packet cost (BPF_PROG_TEST_RUN, single runs)",
        || {
            let v = per_packet(if quick { 20_000 } else { 100_000 }, &dir, &mut rows)?;
            per_packet_keys.insert("cases".into(), v);
            Ok(())
        },
    );
    if !per_packet_keys.is_empty() {
        results.insert("per_packet".into(), Value::Object(per_packet_keys));
    }
    sections.run(
        "guard",
        "edge guard: hygiene, a 10,000-prefix allow list, rate limits (BPF_PROG_TEST_RUN)",
        || {
            let v = guard_section(
                if quick { 20_000 } else { 100_000 },
                if quick { 1.0 } else { 3.0 },
                &mut rows,
            )?;
            results.insert("guard".into(), v);
            Ok(())
        },
    );
    sections.run(
        "two-cpu",
        "connection table on two CPUs at once: shared vs per-CPU",
        || {
            let (ns, ingress) = bench::bench_namespace()?;
            let figs = bench::two_cpu::measure(if quick { 20_000 } else { 100_000 }, &ns, ingress)?;
            for f in &figs {
                rows.push(Row {
                    section: "two-cpu",
                    case: format!("{}: {}", f.table, f.case),
                    value: format!(
                        "median {} / {} ns (CPU 0 / CPU 1), {:.2} M runs/s together",
                        f.median_ns[0],
                        f.median_ns[1],
                        f.runs_per_sec / 1e6
                    ),
                });
            }
            results.insert("two_cpu".into(), serde_json::to_value(&figs)?);
            Ok(())
        },
    );
    sections.run(
        "throughput",
        "throughput through a veth pair on one core, counted at the peer",
        || {
            let figs = throughput::measure(
                if quick { 300_000 } else { 2_000_000 },
                65_536,
                if quick { 3 } else { 5 },
            )?;
            let floor = figs[0].pps;
            let mut v = vec![];
            for f in &figs {
                rows.push(Row {
                    section: "throughput",
                    case: f.name.clone(),
                    value: format!(
                        "{:.2} Mpps at the peer ({:.0}% of floor); {} of {} processed frames arrived; {}",
                        f.pps / 1e6,
                        100.0 * f.pps / floor,
                        f.arrived,
                        f.processed,
                        f.generator.describe()
                    ),
                });
                v.push(json!({
                    "case": f.name,
                    "pps_at_peer": f.pps,
                    "ratio_to_floor": f.pps / floor,
                    "sent": f.sent,
                    "processed_by_lb": f.processed,
                    "arrived_at_peer": f.arrived,
                    "generator": f.generator.key(),
                }));
            }
            results.insert("throughput".into(), json!(v));
            Ok(())
        },
    );
    sections.run("maglev", "Maglev build time, balance, disruption", || {
        results.insert("maglev".into(), maglev_section(&dir, &mut rows)?);
        Ok(())
    });
    sections.run("reaction", "reaction times on the lab", || {
        let v = reactions(quick, &dir, &mut rows)?;
        results.insert("reaction".into(), v);
        Ok(())
    });
    sections.run(
        "fleet",
        "fleet reaction times (three LB hosts, BIRD, ECMP, BFD)",
        || {
            let f = lb_tests::bench::fleet::measure(if quick { 2 } else { 5 })?;
            for (case, l) in [
                ("LB host lost -> router routes around it", &f.host_loss_ms),
                (
                    "all backends of a VIP down -> withdrawn everywhere",
                    &f.withdrawal_ms,
                ),
                (
                    "backend killed: hosts disagree (own probes)",
                    &f.disagreement_local_ms,
                ),
                (
                    "backend killed: hosts disagree (fleet view)",
                    &f.disagreement_fleet_view_ms,
                ),
            ] {
                rows.push(Row {
                    section: "fleet",
                    case: case.into(),
                    value: format!(
                        "median {:.0} ms, max {:.0} ms ({} runs)",
                        l.median_ms, l.max_ms, l.samples
                    ),
                });
            }
            results.insert("fleet".into(), serde_json::to_value(&f)?);
            Ok(())
        },
    );
    sections.run("memory", "agent and kernel map memory", || {
        let mut v = vec![];
        for (vips, per) in [(10, 100), (100, 1000)] {
            let f = memory::measure(vips, per)?;
            rows.push(Row {
                section: "memory",
                case: format!("{vips} VIPs x {per} backends"),
                value: format!(
                    "agent RSS {:.1} MiB ({:.1} MiB private), maps {:.1} MiB",
                    f.agent_rss_mib, f.agent_anon_mib, f.maps_mib
                ),
            });
            v.push(serde_json::to_value(&f)?);
        }
        results.insert("memory".into(), json!(v));
        Ok(())
    });

    let w = rows.iter().map(|r| r.case.len()).max().unwrap_or(10);
    println!("{:<12} {:<w$} VALUE", "SECTION", "CASE");
    for r in &rows {
        println!("{:<12} {:<w$} {}", r.section, r.case, r.value);
    }
    results.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
    results.insert("failed_sections".into(), json!(sections.failed));
    let path = dir.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&Value::Object(results))?,
    )
    .with_context(|| format!("write {}", path.display()))?;
    println!(
        "results: {} (plots and frames next to it), {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    if !sections.failed.is_empty() {
        let failed = &sections.failed;
        bail!("{} section(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// The sections asked for with `--only` (all when `None`), and the ones
/// that failed: a failure is printed and recorded while the others still
/// run, so one section's problem with the host hides no later figure.
struct Sections {
    only: Option<Vec<String>>,
    failed: Vec<String>,
}

impl Sections {
    /// Runs section `name` if it was asked for, under `heading`, and prints
    /// how long it took.
    fn run(&mut self, name: &str, heading: &str, body: impl FnOnce() -> Result<()>) {
        if self
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == name))
        {
            return;
        }
        eprintln!("==> {heading}");
        let t = Instant::now();
        match body() {
            Ok(()) => eprintln!("    {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!(
                    "    {name} FAILED after {:.0} s: {e:#}",
                    t.elapsed().as_secs_f64()
                );
                self.failed.push(format!("{name}: {e:#}"));
            }
        }
    }
}

/// Maglev build time, balance and disruption; the churn and balance when
/// backends fail.
fn maglev_section(dir: &Path, rows: &mut Vec<Row>) -> Result<Value> {
    let rings: &[u32] = &[65_537, 655_373];
    let figs = maglev::measure(&[10, 100, 1000, 5000], rings);
    for f in &figs {
        rows.push(Row {
            section: "maglev",
            case: format!("N={} M={}", f.backends, f.ring_size),
            value: format!(
                "build {:.1} ms, max/min {:.4}, weighted err {:.2}%, moved {:.4} / {:.4} (remove/add), ideal {:.4}",
                f.build_ms,
                f.max_over_min,
                f.worst_weighted_error * 100.0,
                f.moved_on_remove,
                f.moved_on_add,
                f.ideal
            ),
        });
    }
    std::fs::write(dir.join("maglev-disruption.svg"), svg::disruption(&figs))?;
    let churn = maglev::churn(&[100, 1000], &[1, 10], 65_537);
    for c in &churn {
        rows.push(Row {
            section: "maglev",
            case: format!("N={} M={}, {} failed", c.backends, c.ring_size, c.failed),
            value: format!(
                "churn/ideal {:.3} health (remap {:.2} ms), {:.3} planned; max/mean {:.4} health, {:.4} planned",
                c.churn_ratio_health,
                c.remap_ms,
                c.churn_ratio_planned,
                c.balance_health,
                c.balance_planned
            ),
        });
    }
    let fig = |n: usize, m: u32| figs.iter().find(|f| f.backends == n && f.ring_size == m);
    let one = |n: usize| churn.iter().find(|c| c.backends == n && c.failed == 1);
    let worst_balance = |n: usize| {
        churn
            .iter()
            .filter(|c| c.backends == n)
            .map(|c| c.balance_health)
            .fold(0.0, f64::max)
    };
    Ok(json!({
        "build_ms": {
            "n1000_m65537": fig(1000, 65_537).map(|f| f.build_ms),
            "n100_m65537": fig(100, 65_537).map(|f| f.build_ms),
            "n1000_m655373": fig(1000, 655_373).map(|f| f.build_ms),
        },
        "churn_ratio": {
            "health": {"n1000": one(1000).map(|c| c.churn_ratio_health),
                       "n100": one(100).map(|c| c.churn_ratio_health)},
            "planned": {"n1000": one(1000).map(|c| c.churn_ratio_planned),
                        "n100": one(100).map(|c| c.churn_ratio_planned)},
        },
        "balance": {
            "health": {"n100": worst_balance(100), "n1000": worst_balance(1000)},
        },
        "remap_ms": {"n1000": churn.iter().filter(|c| c.backends == 1000).map(|c| c.remap_ms).fold(0.0, f64::max)},
        "figures": figs,
        "churn": churn,
    }))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({"cpu": cpu, "cpus": cpus, "kernel": kernel})
}

fn guard_section(runs: usize, accuracy_secs: f64, rows: &mut Vec<Row>) -> Result<Value> {
    throughput::pin_cpu0()?;
    let (ns, ingress) = bench::bench_namespace()?;
    let _inside = ns.enter()?;
    let g = bench::guard::measure(runs, ingress, accuracy_secs)?;
    for (what, list) in [
        ("hygiene", &g.hygiene),
        ("10k allow list", &g.allow_list_10k),
        ("allow list + rate limits", &g.allow_list_and_rate_limits),
    ] {
        for d in list {
            rows.push(Row {
                section: "guard",
                case: format!("{what}: {}", d.case),
                value: format!(
                    "{} ns without, {} ns with ({:+} ns)",
                    d.base_ns, d.with_ns, d.delta_ns
                ),
            });
        }
    }
    let a = &g.rate_limiter;
    rows.push(Row {
        section: "guard",
        case: format!("rate limiter, one source, {} CPUs, {:.0} s", a.cpus, a.secs),
        value: format!(
            "{:.0}/s admitted of {}/s configured ({:+.2}%), {} attempts",
            a.admitted_per_sec, a.configured_per_sec, a.error_pct, a.attempts
        ),
    });
    rows.push(Row {
        section: "guard",
        case: "map memory".into(),
        value: format!(
            "ACL with 10,000 prefixes {:.2} MiB; RATE ({} buckets per CPU) {:.2} MiB",
            g.acl_10k_mib, g.rate_map_entries, g.rate_map_mib
        ),
    });
    Ok(serde_json::to_value(&g)?)
}

/// The katran-world section: every case's net ns and net / floor, both
/// methods, under the stable keys `per_packet.floor.ns` and
/// `per_packet.<case>.net_ns` (repeat = 1; repeat = N under
/// `per_packet.repeat_n`).
fn katran_world(quick: bool, rows: &mut Vec<Row>) -> Result<Value> {
    throughput::pin_cpu0()?;
    let (ns, ingress) = bench::bench_namespace()?;
    let _inside = ns.enter()?;
    let (runs, calls) = if quick { (20_000, 10) } else { (100_000, 40) };
    if let Some(old) = std::env::var_os("LB_BENCH_AB") {
        // Development A/B: this build against an older balancer object.
        // Colon-separated older objects; this build last.
        let mut objects = std::env::split_paths(&old)
            .map(std::fs::read)
            .collect::<std::io::Result<Vec<_>>>()?;
        objects.push(lb::kernel::objects::BALANCER.to_vec());
        let m = bench::katran_world::ab(runs, ingress, &objects)?;
        for (i, (case, _, _)) in bench::katran_world::CASES.iter().enumerate() {
            let cols: Vec<String> = m.iter().map(|o| format!("{:>6.0}", o[i])).collect();
            eprintln!(
                "    A/B {case:<18} {} ns (this build {:+.0} ns vs the first)",
                cols.join(" "),
                m[m.len() - 1][i] - m[0][i]
            );
        }
    }
    let w = bench::katran_world::measure(runs, calls, 1000, ingress)?;
    let mut out = serde_json::Map::new();
    for (method, m) in [("repeat 1", &w.repeat_1), ("repeat N", &w.repeat_n)] {
        rows.push(Row {
            section: "katran-world",
            case: format!("{method}: floor (trivial XDP_TX)"),
            value: format!("{:.1} ns", m.floor_ns),
        });
        for c in &m.cases {
            let mark = if method == "repeat 1" {
                let bound = match (c.bound_net_ns, c.bound_net_over_floor) {
                    (Some(ns), Some(r)) => format!("; LRU + tunnel alone {ns:.0} ns, {r:.2}"),
                    _ => String::new(),
                };
                format!(
                    " (Katran {:.2}, target <= {:.2}: {}{bound})",
                    c.katran_net_over_floor,
                    c.target_net_over_floor,
                    if c.net_over_floor <= c.target_net_over_floor {
                        "met"
                    } else {
                        "not met"
                    }
                )
            } else {
                String::new()
            };
            rows.push(Row {
                section: "katran-world",
                case: format!("{method}: {}", c.what),
                value: format!(
                    "net {:.1} ns (mean {:.0}), net/floor {:.2}{mark}",
                    c.net_ns, c.net_mean_ns, c.net_over_floor
                ),
            });
        }
    }
    let p = &w.program;
    rows.push(Row {
        section: "katran-world",
        case: "balancer program size".into(),
        value: format!(
            "{} xlated insns, {} B JIT, {} helper call sites, {} BPF-function call sites, {} insns verified",
            p.xlated_insns,
            p.jited_bytes,
            p.helper_call_sites,
            p.bpf_call_sites,
            p.verified_insns.unwrap_or(0)
        ),
    });
    let keyed = |m: &bench::katran_world::MethodFigure| {
        let mut o = serde_json::Map::new();
        o.insert("floor".into(), json!({"ns": m.floor_ns}));
        for c in &m.cases {
            o.insert(
                c.case.into(),
                serde_json::to_value(c).unwrap_or(Value::Null),
            );
        }
        o
    };
    out.extend(keyed(&w.repeat_1));
    let mut n = keyed(&w.repeat_n);
    n.insert("repeat".into(), json!(w.repeat));
    out.insert("repeat_n".into(), Value::Object(n));
    out.insert("program".into(), serde_json::to_value(&w.program)?);
    Ok(Value::Object(out))
}

fn per_packet(runs: usize, dir: &std::path::Path, rows: &mut Vec<Row>) -> Result<Value> {
    throughput::pin_cpu0()?;
    let (ns, ingress) = bench::bench_namespace()?;
    let _inside = ns.enter()?;
    let vips = bench::bench_vips();
    let flows = runs as u32;
    let syn4 = bench::tcp_frames(&vips[0], SYN, flows);
    let ack4 = bench::tcp_frames(&vips[0], ACK, flows);
    let syn6 = bench::tcp_frames(&vips[1], SYN, flows);
    let udp = bench::udp_frames(&vips[2], flows);
    let gue = bench::tcp_frames(&vips[3], SYN, flows);
    let dsr = bench::tcp_frames(&vips[4], SYN, flows);
    let pass = bench::non_vip_frames();
    bench::write_frames(
        &dir.join("frames"),
        &[
            ("ipv4-syn-new-flow", &syn4),
            ("ipv4-ack-established", &ack4),
            ("ipv6-syn-new-flow", &syn6),
            ("ipv4-udp", &udp),
            ("ipv4-syn-gue", &gue),
            ("ipv4-syn-l2dsr", &dsr),
            ("non-vip", &pass),
        ],
    )?;
    let mut tools = EbpfLoader::new().load(lb::kernel::objects::TOOLS)?;
    let floor: &mut Xdp = tools.program_mut("xdp_tx").context("xdp_tx")?.try_into()?;
    floor.load()?;
    let mut shared_dp = bench::provision(false)?;
    let mut per_cpu_dp = bench::provision(true)?;
    let shared = &*shared_dp.program_mut()?;
    let per_cpu = &*per_cpu_dp.program_mut()?;
    // (name, program, frames, expected action), in an order where each
    // "table hit" case follows the case that recorded its flows.
    let cases: Vec<(&str, &Xdp, &[Vec<u8>], u32)> = vec![
        ("floor: trivial XDP_TX program", &*floor, &syn4, XDP_TX),
        (
            "ipv4 tcp SYN, new flow, 100 backends (IPIP) [shared table]",
            shared,
            &syn4,
            XDP_TX,
        ),
        (
            "ipv4 tcp ACK, established flow (table hit) [shared table]",
            shared,
            &ack4,
            XDP_TX,
        ),
        (
            "ipv6 tcp SYN, new flow (IPv6-in-IPv6) [shared table]",
            shared,
            &syn6,
            XDP_TX,
        ),
        (
            "ipv4 udp, first datagram of each flow [shared table]",
            shared,
            &udp,
            XDP_TX,
        ),
        (
            "ipv4 udp, later datagram (table hit) [shared table]",
            shared,
            &udp,
            XDP_TX,
        ),
        (
            "ipv4 tcp SYN, GUE encapsulation [shared table]",
            shared,
            &gue,
            XDP_TX,
        ),
        ("ipv4 tcp SYN, L2 DSR [shared table]", shared, &dsr, XDP_TX),
        (
            "non-VIP packet (XDP_PASS) [shared table]",
            shared,
            &pass,
            XDP_PASS,
        ),
        (
            "ipv4 tcp SYN, new flow, 100 backends (IPIP) [per-CPU table]",
            per_cpu,
            &syn4,
            XDP_TX,
        ),
        (
            "ipv4 tcp ACK, established flow (table hit) [per-CPU table]",
            per_cpu,
            &ack4,
            XDP_TX,
        ),
    ];
    // Rounds over all cases in turn, so a noisy moment of a shared machine
    // spreads over every case instead of skewing one; each round uses
    // flows of its own, so "new flow" stays new.
    const ROUNDS: usize = 5;
    let per_round = runs / ROUNDS;
    let mut samples: Vec<Vec<u64>> = vec![vec![]; cases.len()];
    for round in 0..ROUNDS {
        for (i, (_, prog, frames, expect)) in cases.iter().enumerate() {
            let slice = if frames.len() >= runs {
                &frames[round * per_round..(round + 1) * per_round]
            } else {
                frames
            };
            samples[i].extend(bench::time_runs(prog, ingress, slice, per_round, *expect)?);
        }
    }
    let names: Vec<&str> = cases.into_iter().map(|c| c.0).collect();
    // The "table hit" cases must have hit the table (else they measured
    // another path): two such cases on the shared table, one per-CPU.
    let hits = |dp: &lb::kernel::dataplane::Dataplane| -> Result<u64> {
        let counters = lb::core::tables::Tables::reason_counters(dp)?;
        Ok(counters
            .iter()
            .find(|(r, _)| *r == lb_common::Reason::ConntrackHit)
            .map_or(0, |c| c.1))
    };
    let done = (per_round * ROUNDS) as u64;
    anyhow::ensure!(
        hits(&shared_dp)? == 2 * done,
        "shared table: {} hits, want {}",
        hits(&shared_dp)?,
        2 * done
    );
    anyhow::ensure!(
        hits(&per_cpu_dp)? == done,
        "per-CPU table: {} hits, want {done}",
        hits(&per_cpu_dp)?
    );
    let mut out = vec![];
    for (name, ns) in names.iter().zip(samples) {
        let c = bench::summarize(ns);
        rows.push(Row {
            section: "per-packet",
            case: name.to_string(),
            value: format!(
                "median {} ns, p90 {} ns ({} runs)",
                c.median_ns, c.p90_ns, c.runs
            ),
        });
        out.push(
            json!({"case": name, "median_ns": c.median_ns, "p90_ns": c.p90_ns, "runs": c.runs}),
        );
    }
    Ok(json!(out))
}

fn reactions(quick: bool, dir: &std::path::Path, rows: &mut Vec<Row>) -> Result<Value> {
    let mut lab = Lab::build()?;
    let etcd = Etcd::start(&lab.lb, 23792)?;
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))?;
    let mut etcd_args = etcd.lbd_args();
    etcd_args.extend(["--etcd-prefix".into(), "/bench".into()]);
    let etcd_args: Vec<&str> = etcd_args.iter().map(String::as_str).collect();
    let agent = lab.start_lbd(&config, &etcd_args)?;
    agent.wait_for(
        "all backends healthy",
        std::time::Duration::from_secs(15),
        |s| {
            s["vips"].as_array().is_some_and(|v| {
                v.iter().all(|v| {
                    v["backends"]
                        .as_array()
                        .is_some_and(|b| b.iter().all(|b| b["healthy"] == true))
                })
            })
        },
    )?;
    let web = "10.100.0.1:80".parse()?;
    let runs = if quick { 3 } else { 10 };
    // A backend killed, then the local cloud lost; `runs` times each.
    let mut failover = |servers: &[&str], addr| -> Result<Vec<_>> {
        (0..runs)
            .map(|_| reaction::failover(&mut lab, &agent, web, "web", servers, addr))
            .collect()
    };
    let backend_runs = failover(&["a2"], "10.20.0.12")?;
    let cloud_runs = failover(&["a1", "a2"], "10.20.0.11")?;
    std::fs::write(
        dir.join("failover-backend.svg"),
        svg::timeline(
            "A backend killed: who answers new connections",
            &backend_runs[0],
        ),
    )?;
    std::fs::write(
        dir.join("failover-cloud.svg"),
        svg::timeline(
            "The local cloud (aws) lost: who answers new connections",
            &cloud_runs[0],
        ),
    )?;
    let changes = if quick { 10 } else { 50 };
    let api = reaction::api_push(&lab, &agent, changes)?;
    let etcd_l = reaction::etcd_put(&lab, &etcd, "/bench", changes)?;
    let summarize = |name: &str, rs: &[reaction::FailoverRun], rows: &mut Vec<Row>| {
        let detect = reaction::latencies(rs.iter().map(|r| r.detect_ms).collect());
        let rec = reaction::latencies(rs.iter().map(|r| r.recovered_ms).collect());
        rows.push(Row {
            section: "reaction",
            case: name.into(),
            value: format!(
                "marked down median {:.0} ms (max {:.0}); new connections clean after median {:.0} ms (max {:.0}); {} runs",
                detect.median_ms, detect.max_ms, rec.median_ms, rec.max_ms, rs.len()
            ),
        });
        json!({"detect": detect, "recovered": rec, "runs": rs})
    };
    let b = summarize(
        "backend killed (health: tcp every 300 ms, fall 2)",
        &backend_runs,
        rows,
    );
    let c = summarize("local cloud lost (2 backends)", &cloud_runs, rows);
    for (name, l) in [
        ("API push -> on the wire", &api),
        ("etcd put -> on the wire", &etcd_l),
    ] {
        rows.push(Row {
            section: "reaction",
            case: name.into(),
            value: format!(
                "median {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes)",
                l.median_ms, l.p99_ms, l.max_ms, l.samples
            ),
        });
    }
    Ok(
        json!({"backend_killed": b, "cloud_lost": c, "api_push": api, "etcd_put": etcd_l,
              "health_check": {"type": "tcp", "interval_ms": 300, "timeout_ms": 200, "rise": 2, "fall": 2}}),
    )
}
