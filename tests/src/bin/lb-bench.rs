//! `cargo xtask bench`: the benchmarks behind BENCHMARKS.md. Prints one
//! table and writes `target/bench/results.json`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::{EbpfLoader, programs::Xdp};
use lb_tests::{
    bench::{self, Cost},
    fixture::{XDP_PASS, XDP_TX},
    netns::require_root,
    packet::{ACK, SYN},
};

struct Row {
    section: &'static str,
    name: String,
    cost: Cost,
}

fn main() -> Result<()> {
    require_root()?;
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 5_000 } else { 50_000 };
    let mut rows = vec![];
    per_packet(runs, &mut rows)?;

    println!(
        "{:<14} {:<58} {:>9} {:>9} {:>8}",
        "section", "case", "median", "p90", "runs"
    );
    for r in &rows {
        println!(
            "{:<14} {:<58} {:>6} ns {:>6} ns {:>8}",
            r.section, r.name, r.cost.median_ns, r.cost.p90_ns, r.cost.runs
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let per_packet: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "section": r.section,
                "case": r.name,
                "median_ns": r.cost.median_ns,
                "p90_ns": r.cost.p90_ns,
                "runs": r.cost.runs,
            })
        })
        .collect();
    let json = serde_json::to_string_pretty(&serde_json::json!({ "per_packet": per_packet }))?;
    let path = dir.join("results.json");
    std::fs::write(&path, json).with_context(|| format!("write {}", path.display()))?;
    println!("results written to {}", path.display());
    Ok(())
}

fn per_packet(runs: usize, rows: &mut Vec<Row>) -> Result<()> {
    let (ns, ingress) = bench::bench_namespace()?;
    let _inside = ns.enter()?;
    let vips = bench::bench_vips();
    let flows = runs as u32;

    // The floor: a program that only returns XDP_TX, timed the same way.
    let mut tools = EbpfLoader::new().load(lb::objects::TOOLS)?;
    let floor: &mut Xdp = tools.program_mut("xdp_tx").context("xdp_tx")?.try_into()?;
    floor.load()?;
    let syn4 = bench::tcp4_frames(&vips[0], SYN, flows);
    let c = bench::summarize(bench::time_runs(floor, ingress, &syn4, runs, XDP_TX)?);
    rows.push(Row {
        section: "per-packet",
        name: "floor: trivial XDP_TX program".into(),
        cost: c,
    });

    for per_cpu in [false, true] {
        let table = if per_cpu {
            "per-CPU table"
        } else {
            "shared table"
        };
        let mut dp = bench::provision(per_cpu)?;
        let prog = dp.program_mut()?;
        let mut case = |name: &str, frames: &[Vec<u8>], expect: u32| -> Result<()> {
            let c = bench::summarize(bench::time_runs(prog, ingress, frames, runs, expect)?);
            rows.push(Row {
                section: "per-packet",
                name: format!("{name} [{table}]"),
                cost: c,
            });
            Ok(())
        };
        case("ipv4 tcp SYN, new flow, 100 backends (IPIP)", &syn4, XDP_TX)?;
        // The SYNs above recorded these flows: their ACKs hit the table.
        case(
            "ipv4 tcp ACK, established flow (table hit)",
            &bench::tcp4_frames(&vips[0], ACK, flows),
            XDP_TX,
        )?;
        if per_cpu {
            continue;
        }
        case(
            "ipv6 tcp SYN, new flow (IPv6-in-IPv6)",
            &bench::tcp6_frames(&vips[1], SYN, flows),
            XDP_TX,
        )?;
        let udp = bench::udp4_frames(&vips[2], flows);
        case("ipv4 udp, first datagram of each flow", &udp, XDP_TX)?;
        case("ipv4 udp, later datagram (table hit)", &udp, XDP_TX)?;
        case(
            "ipv4 tcp SYN, GUE encapsulation",
            &bench::tcp4_frames(&vips[3], SYN, flows),
            XDP_TX,
        )?;
        case(
            "ipv4 tcp SYN, L2 DSR",
            &bench::tcp4_frames(&vips[4], SYN, flows),
            XDP_TX,
        )?;
        case(
            "non-VIP packet (XDP_PASS)",
            &bench::non_vip_frames(),
            XDP_PASS,
        )?;
    }
    Ok(())
}
