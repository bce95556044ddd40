//! Throughput through a veth pair on one core: a generator program sends
//! frames with BPF_PROG_TEST_RUN in live-frames mode (as xdp-trafficgen
//! does; xdp-trafficgen itself does not load on this kernel) out of `gen0`,
//! or, on a host that refuses live frames, an AF_PACKET socket does;
//! `lb0` runs the balancer (or, for the baseline, a trivial XDP_TX
//! program) in driver mode and sends them back, where `gen0` counts and
//! drops them (`xdp_count`). The figure is frames that arrived at `gen0`
//! per second — correctly encapsulated ones for the balancer, any for the
//! floor — not what the LB side's return codes claim (on real NICs
//! `XDP_TX` counters overstate what reaches the wire); what `lb0`
//! processed is kept beside it. All cases are measured in one run, so the
//! ratio holds whatever the machine's speed.

use std::time::Instant;

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use lb::core::tables::Tables as _;

use super::{BenchVip, bench_vips, provision};
use crate::{
    netns::{Netns, PacketSocket},
    packet::ACK,
};

/// What sends the frames out of `gen0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// BPF_PROG_TEST_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES`: frames built in
    /// the kernel from a template, no socket buffers.
    LiveFrames,
    /// An AF_PACKET socket on `gen0`, `sendmmsg` in batches with the qdisc
    /// bypassed, for hosts that refuse live frames: every frame is a socket
    /// buffer from userspace, so the floor is lower and the ratio is the
    /// figure to read.
    PacketSocket,
}

impl Generator {
    /// Stable name for `results.json`.
    pub fn key(self) -> &'static str {
        match self {
            Generator::LiveFrames => "live_frames",
            Generator::PacketSocket => "packet_socket",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Generator::LiveFrames => "live-frames BPF_PROG_TEST_RUN",
            Generator::PacketSocket => "AF_PACKET sendmmsg (this host refuses live frames)",
        }
    }
}

pub struct Throughput {
    pub name: String,
    pub generator: Generator,
    /// Frames per second that arrived at the peer (see the module doc).
    pub pps: f64,
    pub sent: u64,
    /// Frames the LB side's XDP program processed.
    pub processed: u64,
    /// Frames that arrived at the peer (encapsulated, for the balancer).
    pub arrived: u64,
}

/// The sink's counters: (encapsulated, other) summed over CPUs.
fn arrived(sink: &aya::Ebpf) -> Result<(u64, u64)> {
    let m: aya::maps::PerCpuArray<_, u64> =
        aya::maps::PerCpuArray::try_from(sink.map("SINK_COUNTS").context("SINK_COUNTS")?)?;
    let sum = |i| -> Result<u64> { Ok(m.get(&i, 0)?.iter().sum()) };
    Ok((sum(0)?, sum(1)?))
}

fn xdp_packets(ns: &Netns, iface: &str) -> Result<u64> {
    let out = ns.exec("ethtool", &["-S", iface])?;
    Ok(out
        .lines()
        .filter(|l| l.trim_start().starts_with("rx_queue_") && l.contains("_xdp_packets:"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
        .sum())
}

/// Sends `repeat` frames out of `gen0` in `gen_ns` and returns how many
/// `lb0` processed and how long sending took. Live frames: `gen_prog`
/// rewrites `frames[0]` (its template) into every frame, rotating flows
/// itself where it was loaded to. Packet socket: `frames` in turn.
fn run(
    ns: &Netns,
    gen_ns: &Netns,
    generator: Generator,
    sender: (&Xdp, &[Vec<u8>]),
    gen_ifindex: u32,
    repeat: u32,
) -> Result<(u64, f64)> {
    let (gen_prog, frames) = sender;
    let before = xdp_packets(ns, "lb0")?;
    let inside = gen_ns.enter()?;
    let secs = match generator {
        Generator::LiveFrames => {
            let ctx = crate::fixture::xdp_ctx(frames[0].len(), gen_ifindex);
            let t0 = Instant::now();
            gen_prog.test_run(TestRunOptions {
                data_in: Some(&frames[0]),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::new()
            })?;
            t0.elapsed().as_secs_f64()
        }
        Generator::PacketSocket => {
            let sock = PacketSocket::open(gen_ifindex)?;
            // Straight to the driver: the qdisc would only add its own cost.
            sock.bypass_qdisc()?;
            sock.send(frames, repeat as u64)?
        }
    };
    drop(inside);
    let processed = xdp_packets(ns, "lb0")? - before;
    Ok((processed, secs))
}

/// Which generator this host allows: live frames, unless a short live run
/// fails while the same run without them works (the host refuses live
/// frames; a generator that fails either way is an error).
fn choose_generator(
    gen_ns: &Netns,
    gen_prog: &Xdp,
    gen_ifindex: u32,
    frame: &[u8],
) -> Result<Generator> {
    let _inside = gen_ns.enter()?;
    let ctx = crate::fixture::xdp_ctx(frame.len(), gen_ifindex);
    let live = gen_prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: 64,
        attrs: TestRunAttrs::new().xdp_live_frames(64),
        ..TestRunOptions::new()
    });
    let Err(e) = live else {
        return Ok(Generator::LiveFrames);
    };
    let plain = gen_prog.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        ..TestRunOptions::new()
    });
    match plain {
        Ok(_) => Ok(Generator::PacketSocket),
        Err(_) => Err(anyhow::Error::new(e).context(
            "live-frames BPF_PROG_TEST_RUN (the generator fails without live frames too)",
        )),
    }
}

/// Measures the balancer against the XDP_TX floor for a single established
/// flow and for `flows` distinct new flows, `rounds` times each.
pub fn measure(repeat: u32, flows: u32, rounds: usize) -> Result<Vec<Throughput>> {
    crate::netns::require_root()?;
    // One core: the generator's thread, and with it the veth NAPI work it
    // schedules.
    pin_cpu0()?;
    let ns = Netns::new("thr")?;
    let gen_ns = Netns::new("thr-gen")?;
    crate::netns::veth(&ns, "lb0", &gen_ns, "gen0")?;
    // No IPv6 on the pair: frames the kernel sends by itself on a new link
    // (neighbour discovery) would otherwise be counted at the peer.
    for n in [&ns, &gen_ns] {
        n.exec("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
    }
    ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    // The bench frames are addressed to this MAC already.
    super::set_lb_mac(&ns, "lb0")?;
    ns.ip(&["addr", "add", "10.0.0.1/16", "dev", "lb0"])?;
    super::backend_neighbours(&ns, "lb0", false)?;
    let gen_ifindex = gen_ns.ifindex("gen0")?;

    // Generator side: the sender program and a drop sink for returning frames.
    let (mut tools_fixed, mut tools_rotating, mut sink) = {
        let _in = gen_ns.enter()?;
        let fixed = EbpfLoader::new().load(lb::kernel::objects::TOOLS)?;
        let rotating = EbpfLoader::new()
            .override_global("GEN_FLOWS", &flows, true)
            .load(lb::kernel::objects::TOOLS)?;
        let mut sink = EbpfLoader::new().load(lb::kernel::objects::TOOLS)?;
        loaded(&mut sink, "xdp_count")?.attach("gen0", XdpMode::Driver)?;
        (fixed, rotating, sink)
    };
    let _ = &mut sink;
    let vips = bench_vips();
    let vip: &BenchVip = &vips[0];
    let frame = super::tcp_frames(vip, ACK, 1).remove(0);
    let syn = super::tcp_frames(vip, crate::packet::SYN, 1).remove(0);
    set_template(&mut tools_fixed, &frame)?;
    set_template(&mut tools_rotating, &syn)?;
    let gen_fixed = loaded(&mut tools_fixed, "xdp_gen")?;
    let gen_rotating = loaded(&mut tools_rotating, "xdp_gen")?;
    let generator = choose_generator(&gen_ns, gen_fixed, gen_ifindex, &frame)?;
    // Live frames: the template (rotated by the generator for SYNs). Packet
    // socket: the frames themselves, a SYN of each of `flows` flows.
    let fixed_frames = vec![frame.clone()];
    let rotating_frames = match generator {
        Generator::LiveFrames => vec![syn.clone()],
        Generator::PacketSocket => super::tcp_frames(vip, crate::packet::SYN, flows),
    };

    let _in = ns.enter()?;
    let mut floor_obj = EbpfLoader::new().load(lb::kernel::objects::TOOLS)?;
    let floor = loaded(&mut floor_obj, "xdp_tx")?;
    let mut dp = provision(false)?;
    dp.add_tx_port(ns.ifindex("lb0")?)?;
    drop(_in);

    // Rounds of floor / established / new flows in turn, so a slow moment
    // of a shared machine hits every case alike; each figure is the median
    // over rounds.
    use lb_common::Reason::{ConntrackHit, ConntrackMiss, FwdTx};
    let names = [
        "floor: trivial XDP_TX on lb0".to_string(),
        "lb: one established flow (table hit), IPIP".to_string(),
        format!("lb: SYNs of {flows} rotating flows (ring + table insert), IPIP"),
    ];
    // (arrived per second, processed, arrived) per round.
    let mut samples: [Vec<(f64, u64, u64)>; 3] = Default::default();
    // What reached gen0 during `f`: all frames for the floor, the
    // encapsulated ones for the balancer.
    let at_peer = |encapsulated: bool, before: (u64, u64), after: (u64, u64)| {
        if encapsulated {
            after.0 - before.0
        } else {
            (after.0 + after.1) - (before.0 + before.1)
        }
    };
    // One case's frames sent: (processed by lb0, seconds, arrived at gen0).
    let send = |sender: (&Xdp, &[Vec<u8>]), encapsulated: bool| -> Result<(u64, f64, u64)> {
        let s0 = arrived(&sink)?;
        let (processed, secs) = run(&ns, &gen_ns, generator, sender, gen_ifindex, repeat)?;
        Ok((processed, secs, at_peer(encapsulated, s0, arrived(&sink)?)))
    };
    for _ in 0..rounds {
        let link = {
            let _in = ns.enter()?;
            floor.attach("lb0", XdpMode::Driver)?
        };
        let (processed, secs, got) = send((gen_fixed, &fixed_frames), false)?;
        samples[0].push((got as f64 / secs, processed, got));
        floor.detach(link)?;

        let link = {
            let _in = ns.enter()?;
            dp.program_mut()?.attach("lb0", XdpMode::Driver)?
        };
        let before = dp.reason_counters()?;
        let (processed, secs, got) = send((gen_fixed, &fixed_frames), true)?;
        let after = dp.reason_counters()?;
        // A benchmark of another path is worthless: (nearly) every frame
        // must have been forwarded, by the path the case names.
        on_path(&before, &after, processed, &[FwdTx, ConntrackHit])?;
        samples[1].push((got as f64 / secs, processed, got));
        let (processed, secs, got) = send((gen_rotating, &rotating_frames), true)?;
        on_path(
            &after,
            &dp.reason_counters()?,
            processed,
            &[FwdTx, ConntrackMiss],
        )?;
        samples[2].push((got as f64 / secs, processed, got));
        dp.program_mut()?.detach(link)?;
    }
    let out = names
        .into_iter()
        .zip(samples)
        .map(|(name, mut runs)| {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (pps, processed, arrived) = runs[runs.len() / 2];
            Throughput {
                name,
                generator,
                pps,
                sent: repeat as u64,
                processed,
                arrived,
            }
        })
        .collect();
    let _in = ns.enter()?;
    drop(dp);
    drop(floor_obj);
    Ok(out)
}

/// Loads the generator's frame template (see `GEN_TEMPLATE` in tools.rs).
fn set_template(tools: &mut aya::Ebpf, frame: &[u8]) -> Result<()> {
    let mut t = [0u8; 128];
    anyhow::ensure!(
        frame.len() <= t.len(),
        "frame longer than the generator template"
    );
    t[..frame.len()].copy_from_slice(frame);
    let mut map: aya::maps::Array<_, [u8; 128]> =
        aya::maps::Array::try_from(tools.map_mut("GEN_TEMPLATE").context("GEN_TEMPLATE")?)?;
    map.set(0, t, 0)?;
    Ok(())
}

/// Checks that each of `reasons` grew by at least 99% of `processed`.
fn on_path(
    before: &[(lb_common::Reason, u64)],
    after: &[(lb_common::Reason, u64)],
    processed: u64,
    reasons: &[lb_common::Reason],
) -> Result<()> {
    let count =
        |v: &[(lb_common::Reason, u64)], r| v.iter().find(|(x, _)| *x == r).map_or(0, |c| c.1);
    for r in reasons {
        let grew = count(after, *r) - count(before, *r);
        anyhow::ensure!(
            grew * 100 >= processed * 99,
            "{r:?} grew by {grew} for {processed} frames: the benchmark measured another path; reasons now {:?}",
            after.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>()
        );
    }
    Ok(())
}

pub fn pin_cpu0() -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects only
    // this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        anyhow::ensure!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Program `name` of a tools object, loaded into the kernel.
fn loaded<'a>(obj: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let p: &mut Xdp = obj
        .program_mut(name)
        .context(name.to_string())?
        .try_into()?;
    p.load()?;
    Ok(p)
}
