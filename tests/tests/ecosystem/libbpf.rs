//! The pins are a public interface: a third-party tool built on libbpf
//! (here through `libbpf-rs`, the C library's own Rust bindings, not aya)
//! opens lb's pinned maps, program and links from bpffs, finds the layout
//! lb documents (`kernel::catalog`), and reads the same counters `lbctl`
//! shows.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result, ensure};
use lb::kernel::{catalog, pins};
use lb_tests::lab::{Lab, lab_config};
use libbpf_rs::{
    Link, MapCore as _, MapFlags, MapHandle, ProgramHandle, ProgramType,
    query::{LinkTypeInfo, ProgInfoIter, ProgInfoQueryOptions},
};

use super::Env;

/// Packets, bytes and new flows of a per-CPU `TrafficStats` slot, summed
/// over the CPUs, read as a C tool would from lb-common's `#[repr(C)]`
/// layout: three native-endian u64.
fn traffic(map: &MapHandle, id: u32) -> Result<[u64; 3]> {
    let per_cpu = map
        .lookup_percpu(&id.to_ne_bytes(), MapFlags::ANY)?
        .context("no such slot")?;
    let mut sum = [0u64; 3];
    for v in per_cpu {
        for (i, s) in sum.iter_mut().enumerate() {
            let word: [u8; 8] = v[i * 8..i * 8 + 8].try_into()?;
            *s += u64::from_ne_bytes(word);
        }
    }
    Ok(sum)
}

pub fn a_libbpf_tool_opens_the_pinned_maps_program_and_links_and_reads_what_lbctl_shows(
    _: &mut Env,
) -> Result<()> {
    let lab = Lab::build()?;
    let config = lab_config()?;
    let limits = lb::core::config::parse(&config, "lab.yaml")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .limits;
    let agent = lab.start_lbd(&config, &[])?;
    for b in ["10.20.0.11", "10.20.0.12"] {
        agent.wait_healthy("web", b, true, Duration::from_secs(20))?;
    }
    let web: SocketAddr = "10.100.0.1:80".parse()?;
    let spread = lab.spread(web, 60);
    ensure!(!spread.contains_key("error"), "{spread:?}");

    // Every pinned map as the catalog describes it.
    let maps = pins::maps_dir(&agent.pin_path);
    let mut handles = BTreeMap::new();
    for spec in catalog::pinned() {
        let m = MapHandle::from_pinned_path(maps.join(spec.name))
            .with_context(|| format!("libbpf opens the pinned map {}", spec.name))?;
        ensure!(
            m.map_type() as u32 == spec.kind as u32
                && m.key_size() == spec.key_size
                && m.value_size() == spec.value_size
                && m.max_entries() == spec.entries(&limits),
            "{}: libbpf sees type {:?}, key {} B, value {} B, {} entries; the catalog says {:?}, {} B, {} B, {}",
            spec.name,
            m.map_type(),
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            spec.kind,
            spec.key_size,
            spec.value_size,
            spec.entries(&limits)
        );
        handles.insert(spec.name, m);
    }

    // The counters lbctl shows, read through libbpf.
    let vips = agent.lbctl_json(&["vip", "list"])?;
    let row = vips
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "web"))
        .context("web in lbctl vip list")?;
    let id = row["id"].as_u64().context("id")? as u32;
    let [packets, bytes, new_flows] = traffic(&handles[catalog::VIP_STATS.name], id)?;
    ensure!(
        row["packets"] == packets && row["bytes"] == bytes,
        "libbpf reads {packets} packets, {bytes} bytes for web; lbctl shows {row}"
    );
    ensure!(
        new_flows >= 60,
        "60 connections, {new_flows} new flows counted"
    );
    let state = agent.api_get("/v1/state")?;
    let web_state = lb_tests::json::find(&state["vips"], "name", "web")?;
    let mut by_backend = 0;
    for b in web_state["backends"].as_array().context("backends")? {
        let [p, ..] = traffic(
            &handles[catalog::BACKEND_STATS.name],
            b["id"].as_u64().context("id")? as u32,
        )?;
        by_backend += p;
    }
    ensure!(
        by_backend == packets,
        "the backends' packets ({by_backend}) add up to the VIP's ({packets})"
    );
    let count = agent.lbctl_json(&["conntrack", "count"])?;
    let entries = handles[catalog::CONNTRACK.name].keys().count();
    ensure!(
        count["entries"] == entries && entries > 0,
        "libbpf walks {entries} connection-table entries; lbctl counts {count}"
    );

    // The program and its link on the LB's interface.
    let prog = ProgramHandle::from_pinned_path(pins::program_pin(&agent.pin_path))
        .context("libbpf opens the pinned program")?;
    ensure!(
        prog.prog_type() == ProgramType::Xdp,
        "{:?}",
        prog.prog_type()
    );
    let info = ProgInfoIter::with_query_opts(ProgInfoQueryOptions::default().include_map_ids(true))
        .find(|p| p.id == prog.id())
        .context("the program among the kernel's")?;
    let stats_id = handles[catalog::VIP_STATS.name].info()?.info.id;
    ensure!(
        info.map_ids.contains(&stats_id),
        "the program uses the pinned VIP_STATS (map ids {:?}, VIP_STATS {stats_id})",
        info.map_ids
    );
    let link = Link::open(pins::link_pin(&agent.pin_path, "lb0"))
        .context("libbpf opens the pinned link")?;
    let l = link.info()?;
    let ifindex = lab.lb.ifindex("lb0")?;
    ensure!(
        l.prog_id == prog.id(),
        "the link runs program {}, not {}",
        l.prog_id,
        prog.id()
    );
    match l.info {
        LinkTypeInfo::Xdp(x) => ensure!(
            x.ifindex == ifindex,
            "link on ifindex {}, lb0 is {ifindex}",
            x.ifindex
        ),
        other => anyhow::bail!("not an XDP link: {other:?}"),
    }
    println!(
        "    libbpf: {} pinned maps as catalogued; web {packets} packets / {new_flows} new flows as lbctl shows; {entries} flows; program {} ({} maps) on lb0",
        handles.len(),
        prog.id(),
        info.map_ids.len()
    );
    Ok(())
}
