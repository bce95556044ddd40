//! `lbctl explain`: which backend a flow goes to and why, answered by the
//! loaded program itself on a probe that records nothing.

use std::net::{IpAddr, SocketAddr};

use lb::{
    core::config::{Forwarding, Protocol},
    kernel::{
        codec::{self, flow_text},
        host,
        inspect::ExplainRequest,
    },
};
use lb_common::maps::EXPLAIN_PATH_RING;
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    fail,
    join::vip_name,
    table::{self, or_dash, word},
};

#[derive(Serialize)]
struct Explanation {
    flow: String,
    interface: String,
    action: &'static str,
    vip: Option<String>,
    decided_by: &'static str,
    backend: Option<IpAddr>,
    backend_id: Option<u32>,
    forwarding: Option<Forwarding>,
    hash: String,
    ring_slot: Option<u32>,
    ring_half: Option<u32>,
    next_hop_mac: String,
}

pub async fn run(
    ctx: &Ctx<'_>,
    src: SocketAddr,
    dst: SocketAddr,
    proto: &str,
    syn: bool,
    iface: Option<&str>,
) -> Result<(), Fail> {
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(fail(
                2,
                format!("protocol must be tcp or udp, got {other:?}"),
            ));
        }
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(fail(
            2,
            "source and destination must be of the same address family",
        ));
    }
    let pinned = ctx.pinned()?;
    let iface = match iface {
        Some(i) => i.to_string(),
        None => std::fs::read_dir(ctx.cli.pin_path.join("links"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .ok_or_else(|| {
                fail(
                    6,
                    "no attached interface found under the pin path; pass --iface",
                )
            })?,
    };
    let ifindex = host::ifindex(&iface).ok_or_else(|| {
        fail(
            1,
            format!("interface {iface} not found in this network namespace"),
        )
    })?;
    let req = ExplainRequest {
        src,
        dst,
        proto,
        syn,
        ingress_ifindex: ifindex,
    };
    let answer = pinned.explain(&req)?;
    let state = ctx.state().await;
    let action = [
        "XDP_ABORTED",
        "XDP_DROP",
        "XDP_PASS",
        "XDP_TX",
        "XDP_REDIRECT",
    ]
    .get(answer.action as usize)
    .copied()
    .unwrap_or("?");
    let backend = answer.backend().and_then(|id| pinned.backend(id).ok());
    let on_ring = answer.record.path == EXPLAIN_PATH_RING;
    let e = Explanation {
        flow: flow_text(&req.flow_key()),
        interface: iface,
        action,
        vip: (answer.record.path != 0).then(|| {
            let id = answer.record.vip_id;
            vip_name(state.as_ref(), id, || id.to_string())
        }),
        decided_by: answer.path(),
        backend: backend.and_then(|b| codec::words_addr(b.addr, b.family)),
        backend_id: answer.backend(),
        forwarding: backend.and_then(|b| codec::forwarding(b.fwd_mode)),
        hash: format!("{:#010x}", answer.record.hash),
        ring_slot: on_ring.then_some(answer.record.slot),
        ring_half: on_ring.then_some(answer.record.half),
        next_hop_mac: answer
            .output
            .get(..6)
            .map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default(),
    };
    if ctx.output() == Output::Json {
        table::print_json(&e);
        return Ok(());
    }
    lb::outln!("flow      {} (arriving on {})", e.flow, e.interface);
    if e.backend_id.is_none() {
        lb::outln!(
            "decision  {action}: not steered to a backend (not a VIP, or dropped before a choice; see `lbctl stats` reasons)"
        );
        return Ok(());
    }
    lb::outln!("vip       {}", e.vip.as_deref().unwrap_or("?"));
    if on_ring {
        lb::outln!(
            "decided   by the Maglev ring: hash {} -> slot {} of {} (half {})",
            e.hash,
            answer.record.slot,
            pinned.ring_size(),
            answer.record.half
        );
    } else {
        lb::outln!("decided   by the connection table (an established flow keeps its backend)");
    }
    lb::outln!(
        "backend   {} (id {}, {})",
        e.backend.map_or_else(|| "?".into(), |a| a.to_string()),
        answer.record.backend_id,
        or_dash(e.forwarding.map(|f| word(&f)))
    );
    lb::outln!("sent      {action}, next hop {}", e.next_hop_mac);
    Ok(())
}
