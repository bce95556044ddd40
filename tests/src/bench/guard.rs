//! What the edge guard costs and how exactly it limits, on the real
//! balancer through BPF_PROG_TEST_RUN, compared within one run:
//!
//! - hygiene: the balancer as shipped against the same program built
//!   without its hygiene checks (`lb-balancer-no-hygiene`), same frames;
//! - a 10,000-prefix allow list (LPM trie) and per-source rate limiting,
//!   against the same VIP unguarded;
//! - the rate limiter's accuracy: one source sending as fast as the CPUs
//!   can run the program, for a few seconds, admitted rate vs configured;
//! - the kernel memory of the access-list and rate-limit maps.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::programs::Xdp;
use lb::{
    core::{
        config::{Limits, RateLimit},
        prefix::Prefix,
        tables::{AclAction, GuardEntry, Tables as _},
    },
    kernel::{dataplane::Dataplane, objects},
};
use lb_common::maps::VIP_F_GUARDED;
use serde::Serialize;

use crate::{
    fixture::{XDP_DROP, XDP_PASS, XDP_TX},
    packet::{ACK, SYN},
};

/// One case on both programs (or worlds): medians and the difference.
#[derive(Clone, Debug, Serialize)]
pub struct Delta {
    pub case: String,
    pub base_ns: u64,
    pub with_ns: u64,
    pub delta_ns: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    pub configured_per_sec: u32,
    pub admitted_per_sec: f64,
    pub error_pct: f64,
    pub attempts: u64,
    pub secs: f64,
    pub cpus: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct GuardFigures {
    /// Without hygiene (base) vs as shipped (with).
    pub hygiene: Vec<Delta>,
    /// Unguarded VIP (base) vs a 10,000-prefix allow list (with).
    pub allow_list_10k: Vec<Delta>,
    /// Unguarded VIP (base) vs the allow list plus per-source packet and
    /// new-flow limits that admit everything (with).
    pub allow_list_and_rate_limits: Vec<Delta>,
    pub rate_limiter: Accuracy,
    /// Kernel memory (bytes_memlock) of the maps, MiB.
    pub acl_10k_mib: f64,
    pub rate_map_mib: f64,
    pub rate_map_entries: u32,
}

fn no_hygiene_object() -> Result<Vec<u8>> {
    let path = std::path::Path::new(objects::BUILD_DIR).join("lb-balancer-no-hygiene");
    std::fs::read(&path).with_context(|| format!("read {}", path.display()))
}

/// The bench world's VIP 0 (IPv4 TCP, 100 backends) guarded by `g` with
/// access list `entries`.
fn guard(dp: &mut Dataplane, g: &GuardEntry, entries: &[(Prefix, AclAction)]) -> Result<()> {
    let vips = super::bench_vips();
    let v = &vips[0];
    let (words, family) = lb::kernel::codec::addr_words(v.addr);
    let key = lb_common::maps::VipKey {
        addr: words,
        port: v.port.to_be(),
        proto: v.proto,
        family,
    };
    dp.set_acl(0, g.acl_gen, entries)?;
    dp.set_guard(0, Some(g))?;
    dp.write_vip(
        &key,
        &lb_common::maps::VipMeta {
            id: 0,
            flags: VIP_F_GUARDED,
            hash_mode: lb_common::maps::HASH_FIVE_TUPLE,
            _pad: 0,
        },
    )?;
    Ok(())
}

/// 9,999 /24s that no bench client is in, and the clients' /16.
fn allow_list_10k() -> Vec<(Prefix, AclAction)> {
    let mut v: Vec<(Prefix, AclAction)> = (0..9_999u32)
        .map(|i| {
            let a = Ipv4Addr::from(0x0a00_0000 | (i << 8));
            (format!("{a}/24").parse().expect("prefix"), AclAction::Allow)
        })
        .collect();
    let clients = super::client(0);
    v.push((
        format!("{}/16", clients).parse().expect("prefix"),
        AclAction::Allow,
    ));
    v
}

fn open_guard() -> GuardEntry {
    GuardEntry {
        allow_list: true,
        acl: true,
        acl_gen: 0,
        rate: RateLimit {
            burst: Duration::ZERO,
            ..RateLimit::default()
        },
    }
}

type Case<'a> = (&'a str, &'a Xdp, &'a Xdp, &'a [Vec<u8>], u32);

/// Interleaved rounds of every case on both programs; medians.
fn compare(cases: &[Case<'_>], ingress: u32, runs: usize) -> Result<Vec<Delta>> {
    const ROUNDS: usize = 5;
    let per = runs / ROUNDS;
    let mut base = vec![vec![]; cases.len()];
    let mut with = vec![vec![]; cases.len()];
    for round in 0..ROUNDS {
        for (i, (_, a, b, frames, expect)) in cases.iter().enumerate() {
            let slice = if frames.len() >= runs {
                &frames[round * per..(round + 1) * per]
            } else {
                frames
            };
            base[i].extend(super::time_runs(a, ingress, slice, per, *expect)?);
            with[i].extend(super::time_runs(b, ingress, slice, per, *expect)?);
        }
    }
    Ok(cases
        .iter()
        .zip(base.into_iter().zip(with))
        .map(|((name, ..), (a, b))| {
            let (a, b) = (super::summarize(a), super::summarize(b));
            Delta {
                case: name.to_string(),
                base_ns: a.median_ns,
                with_ns: b.median_ns,
                delta_ns: b.median_ns as i64 - a.median_ns as i64,
            }
        })
        .collect())
}

/// One source at full speed on every CPU against a per-source packet
/// limit of `rate`/s (no burst) for `secs`: admitted vs configured.
fn accuracy(ingress: u32, rate: u32, secs: f64) -> Result<Accuracy> {
    let mut dp = super::provision(false)?;
    let g = GuardEntry {
        allow_list: false,
        acl: false,
        acl_gen: 0,
        rate: RateLimit {
            source_packets_per_sec: Some(rate),
            burst: Duration::ZERO,
            ..RateLimit::default()
        },
    };
    guard(&mut dp, &g, &[])?;
    let vips = super::bench_vips();
    // One flow of one source: every packet after the first hits the table.
    let frame = super::tcp_frames(&vips[0], ACK, 1).remove(0);
    let prog = &*dp.program_mut()?;
    // Every online CPU (this thread is pinned, so not its affinity).
    let cpus = aya::util::online_cpus().map_or(1, |c| c.len());
    let run = Duration::from_secs_f64(secs);
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cpus)
            .map(|cpu| {
                let frame = &frame;
                s.spawn(move || -> Result<(u64, u64)> {
                    // SAFETY: plain data; affects this thread only.
                    unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
                    }
                    let mut out = vec![0u8; 4096];
                    let (mut tx, mut dropped) = (0, 0);
                    let t0 = Instant::now();
                    while t0.elapsed() < run {
                        let r = crate::fixture::test_run(prog, ingress, frame, &mut out)?;
                        match r.return_value {
                            XDP_TX => tx += 1,
                            XDP_DROP => dropped += 1,
                            other => anyhow::bail!("action {other}"),
                        }
                    }
                    Ok((tx, dropped))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
            })
            .collect()
    });
    let (mut tx, mut attempts) = (0, 0);
    for r in results {
        let (t, d) = r?;
        tx += t;
        attempts += t + d;
    }
    let admitted = tx as f64 / secs;
    Ok(Accuracy {
        configured_per_sec: rate,
        admitted_per_sec: admitted,
        error_pct: 100.0 * (admitted - rate as f64) / rate as f64,
        attempts,
        secs,
        cpus,
    })
}

/// The largest `bytes_memlock` of the loaded maps named `name`, MiB.
fn map_mib(name: &str) -> Result<f64> {
    let out = std::process::Command::new("bpftool")
        .args(["map", "show", "-j"])
        .output()
        .context("bpftool map show")?;
    let maps: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(maps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == name)
        .filter_map(|m| m["bytes_memlock"].as_f64())
        .fold(0.0, f64::max)
        / (1 << 20) as f64)
}

pub fn measure(runs: usize, ingress: u32, accuracy_secs: f64) -> Result<GuardFigures> {
    let vips = super::bench_vips();
    let flows = runs as u32;
    let syn4 = super::tcp_frames(&vips[0], SYN, flows);
    let ack4 = super::tcp_frames(&vips[0], ACK, flows);
    let syn6 = super::tcp_frames(&vips[1], SYN, flows);
    let pass = super::non_vip_frames();

    // Hygiene: the same world on both builds.
    let mut shipped = super::provision(false)?;
    let mut bare = super::provision_object(&no_hygiene_object()?, false)?;
    let (with_h, without_h) = (&*shipped.program_mut()?, &*bare.program_mut()?);
    let hygiene = compare(
        &[
            ("ipv4 tcp SYN, new flow", without_h, with_h, &syn4, XDP_TX),
            ("ipv4 tcp ACK, table hit", without_h, with_h, &ack4, XDP_TX),
            ("ipv6 tcp SYN, new flow", without_h, with_h, &syn6, XDP_TX),
            (
                "non-VIP packet (XDP_PASS)",
                without_h,
                with_h,
                &pass,
                XDP_PASS,
            ),
        ],
        ingress,
        runs,
    )?;

    // Access lists and rate limits: an unguarded world against guarded ones.
    let mut open = super::provision(false)?;
    let mut listed = super::provision(false)?;
    let list = allow_list_10k();
    guard(&mut listed, &open_guard(), &list)?;
    let mut limited = super::provision(false)?;
    let mut g = open_guard();
    g.rate.source_packets_per_sec = Some(u32::MAX);
    g.rate.source_new_flows_per_sec = Some(u32::MAX);
    g.rate.burst = Duration::from_secs(1);
    guard(&mut limited, &g, &list)?;
    let (o, l, r) = (
        &*open.program_mut()?,
        &*listed.program_mut()?,
        &*limited.program_mut()?,
    );
    let allow_list_10k = compare(
        &[
            ("ipv4 tcp SYN, new flow", o, l, &syn4, XDP_TX),
            ("ipv4 tcp ACK, table hit", o, l, &ack4, XDP_TX),
        ],
        ingress,
        runs,
    )?;
    // Fresh flows for the rate-limited world (the ones above are recorded).
    let later = |flags| -> Vec<Vec<u8>> {
        super::tcp_frames(&vips[0], flags, flows * 2)
            .into_iter()
            .skip(flows as usize)
            .collect()
    };
    let (syn4b, ack4b) = (later(SYN), later(ACK));
    let mut open2 = super::provision(false)?;
    let o2 = &*open2.program_mut()?;
    let allow_list_and_rate_limits = compare(
        &[
            (
                "ipv4 tcp SYN, new flow (new bucket per source)",
                o2,
                r,
                &syn4b,
                XDP_TX,
            ),
            (
                "ipv4 tcp ACK, table hit (bucket hit)",
                o2,
                r,
                &ack4b,
                XDP_TX,
            ),
        ],
        ingress,
        runs,
    )?;
    let rate_limiter = accuracy(ingress, 100_000, accuracy_secs)?;
    Ok(GuardFigures {
        hygiene,
        allow_list_10k,
        allow_list_and_rate_limits,
        rate_limiter,
        acl_10k_mib: map_mib("ACL")?,
        rate_map_mib: map_mib("RATE")?,
        rate_map_entries: Limits::default().rate_sources,
    })
}
