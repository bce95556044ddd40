//! The connection table under two CPUs at once: the shared LRU table
//! against the per-CPU one, with two generator threads pinned to CPU 0 and
//! CPU 1 running BPF_PROG_TEST_RUN on the same loaded program at the same
//! time — first SYNs of new flows (concurrent inserts), then ACKs of those
//! flows (concurrent hits). Each thread has flows of its own, as RSS would
//! give each CPU its own. Figures: the median per-run cost on each CPU and
//! the runs per second both CPUs completed together.

use std::time::Instant;

use anyhow::{Result, ensure};
use serde::Serialize;

use super::{bench_vips, provision, tcp_frames};
use crate::{
    fixture::XDP_TX,
    netns::Netns,
    packet::{ACK, SYN},
};

#[derive(Clone, Debug, Serialize)]
pub struct TwoCpuFigure {
    pub table: &'static str,
    pub case: &'static str,
    /// Median kernel-measured ns per run, CPU 0 and CPU 1.
    pub median_ns: [u64; 2],
    /// Runs per second over both CPUs (wall clock of the slower thread).
    pub runs_per_sec: f64,
}

pub fn pin_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects only
    // this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        ensure!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0,
            "sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `runs` per thread and case. Needs two CPUs.
pub fn measure(runs: usize, ns: &Netns, ingress: u32) -> Result<Vec<TwoCpuFigure>> {
    // Online CPUs, not this thread's affinity (earlier sections pin to 0).
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    ensure!(
        cpus >= 2,
        "the two-CPU comparison needs two CPUs, this machine has {cpus}"
    );
    let vip = &bench_vips()[0];
    // Thread t's flows: clients t * runs .. (t + 1) * runs.
    let all_syn = tcp_frames(vip, SYN, 2 * runs as u32);
    let all_ack = tcp_frames(vip, ACK, 2 * runs as u32);
    let mut out = vec![];
    for (table, per_cpu) in [("shared LRU", false), ("per-CPU LRU", true)] {
        let mut dp = {
            let _in = ns.enter()?;
            provision(per_cpu)?
        };
        let prog = &*dp.program_mut()?;
        for (case, frames) in [
            ("SYN, new flows (concurrent inserts)", &all_syn),
            ("ACK, established flows (concurrent hits)", &all_ack),
        ] {
            let results: Vec<Result<(Vec<u64>, f64)>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|t| {
                        let mine = &frames[t * runs..(t + 1) * runs];
                        s.spawn(move || -> Result<(Vec<u64>, f64)> {
                            pin_cpu(t)?;
                            let _in = ns.enter()?;
                            let t0 = Instant::now();
                            let ns = super::time_runs(prog, ingress, mine, runs, XDP_TX)?;
                            Ok((ns, t0.elapsed().as_secs_f64()))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
                    })
                    .collect()
            });
            let mut medians = [0u64; 2];
            let mut slowest = 0f64;
            for (t, r) in results.into_iter().enumerate() {
                let (ns, secs) = r?;
                medians[t] = super::summarize(ns).median_ns;
                slowest = slowest.max(secs);
            }
            out.push(TwoCpuFigure {
                table,
                case,
                median_ns: medians,
                runs_per_sec: 2.0 * runs as f64 / slowest,
            });
        }
        // Every ACK hit its own CPU's entry on both tables.
        let hits = lb::core::tables::Tables::reason_counters(&dp)?
            .iter()
            .find(|(r, _)| *r == lb_common::Reason::ConntrackHit)
            .map_or(0, |c| c.1);
        ensure!(
            hits == 2 * runs as u64,
            "{table}: {hits} hits, want {}",
            2 * runs
        );
        let _in = ns.enter()?;
        drop(dp);
    }
    Ok(out)
}
