//! Katran-style fixture runner: each fixture is an input frame, the expected
//! XDP action and the whole expected output frame, run through the real
//! program with BPF_PROG_TEST_RUN and compared byte for byte.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions, TestRunResult, Xdp};
use lb::kernel::codec::addr_words;
use lb_common::{Reason, limits::MAP_LAYOUT_VERSION, maps::LbConfig};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub fn action_name(a: u32) -> &'static str {
    match a {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "XDP_?",
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub input: Vec<u8>,
    pub action: u32,
    /// The whole expected output frame; `None` means "unchanged input".
    pub output: Option<Vec<u8>>,
    /// Outcome counters this packet must add to, once each.
    pub reasons: Vec<Reason>,
    /// (VIP id, backend id, new flow) whose traffic counters it adds to.
    pub traffic: Option<(u32, u32, bool)>,
}

impl Fixture {
    pub fn new(name: impl Into<String>, input: Vec<u8>, action: u32) -> Self {
        Self {
            name: name.into(),
            input,
            action,
            output: None,
            reasons: vec![],
            traffic: None,
        }
    }

    pub fn output(mut self, frame: Vec<u8>) -> Self {
        self.output = Some(frame);
        self
    }

    pub fn reasons(mut self, reasons: &[Reason]) -> Self {
        self.reasons = reasons.to_vec();
        self
    }

    pub fn traffic(mut self, vip: u32, backend: u32, new_flow: bool) -> Self {
        self.traffic = Some((vip, backend, new_flow));
        self
    }
}

/// The runtime knobs a test world starts from: tunnels from 172.16.0.0/16
/// and fd99::/96, MTU 1500, GUE on 6080, no flags.
pub fn test_config(hash_seed: u32) -> LbConfig {
    LbConfig {
        hash_seed,
        flood_new_flows_per_sec: 0,
        udp_idle_ns: 10_000_000_000,
        encap_src_v4: u32::from_ne_bytes([172, 16, 0, 0]),
        encap_src_v6: addr_words("fd99::".parse().expect("literal")).0,
        encap_src_v4_hash_bits: 16,
        encap_src_v6_hash_bits: 32,
        flags: 0,
        mtu: 1500,
        gue_port: 6080u16.to_be(),
        gw_mac: [0; 6],
        _pad: [0; 2],
        layout_version: MAP_LAYOUT_VERSION,
    }
}

/// The `struct xdp_md` context of a BPF_PROG_TEST_RUN: data, data_end,
/// data_meta, ingress_ifindex, rx_queue_index, egress_ifindex. The kernel
/// wants data = 0 and data_end = the frame length; the ifindex makes
/// bpf_fib_lookup and XDP_TX behave as on that interface.
pub fn xdp_ctx(frame_len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// One BPF_PROG_TEST_RUN of `input` as if received on `ingress_ifindex`;
/// the output frame lands in `out`.
pub fn test_run(
    prog: &Xdp,
    ingress_ifindex: u32,
    input: &[u8],
    out: &mut [u8],
) -> Result<TestRunResult> {
    let ctx = xdp_ctx(input.len(), ingress_ifindex);
    prog.test_run(TestRunOptions {
        data_in: Some(input),
        data_out: Some(out),
        ctx_in: Some(&ctx),
        ..TestRunOptions::new()
    })
    .context("BPF_PROG_TEST_RUN")
}

/// Runs one frame through `prog` as if received on `ingress_ifindex`.
/// Returns the action and the output frame.
pub fn run_frame(prog: &Xdp, ingress_ifindex: u32, input: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; input.len() + 512];
    let r = test_run(prog, ingress_ifindex, input, &mut out)?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

/// Where to write per-fixture pcaps (`LB_FIXTURE_PCAP=<dir>`), if asked.
pub fn pcap_dir() -> Option<PathBuf> {
    std::env::var_os("LB_FIXTURE_PCAP").map(PathBuf::from)
}

/// Checks one fixture's result; `Err` holds a human explanation.
pub fn check(f: &Fixture, action: u32, output: &[u8]) -> std::result::Result<(), String> {
    if action == XDP_ABORTED {
        return Err("program returned XDP_ABORTED".into());
    }
    if action != f.action {
        return Err(format!(
            "action {} (want {})",
            action_name(action),
            action_name(f.action)
        ));
    }
    let want = f.output.as_deref().unwrap_or(&f.input);
    if output != want {
        return Err(format!("output differs:\n{}", diff(want, output)));
    }
    Ok(())
}

/// Hex dump of the first differing region.
pub fn diff(want: &[u8], got: &[u8]) -> String {
    let first = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let from = first.saturating_sub(first % 16);
    let to = (from + 64).min(want.len().max(got.len()));
    let hex = |b: &[u8]| {
        b.get(from.min(b.len())..to.min(b.len()))
            .unwrap_or(&[])
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "    lengths want {} got {}; first difference at byte {first}\n    want [{from}..]: {}\n    got  [{from}..]: {}",
        want.len(),
        got.len(),
        hex(want),
        hex(got)
    )
}
