// The balancer program's body, shared by `main.rs` (the balancer) and
// `no_hygiene.rs` (the bench's variant without hygiene); each root holds
// the crate attributes, which an included file cannot.

mod conntrack;
mod encap;
mod forward;
mod guard;
mod icmp;
mod maps;
mod nexthop;
mod stats;
mod steer;
mod vip;

use core::mem::MaybeUninit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    Reason,
    limits::MAP_LAYOUT_VERSION,
    maps::{
        CFG_F_NO_ALL_PORTS_VIPS, CFG_F_NO_CONNTRACK, EXPLAIN_MAGIC, Explain, ExplainMeta, FlowKey,
        PROTO_TCP, PROTO_UDP, VIP_F_GUARDED,
    },
};
use lb_ebpf::{
    packet::len,
    parse::{Ip, TCP_ACK, TCP_SYN, is_icmp, parse_ip, parse_l4},
    verdict::Verdict,
};

use crate::{
    maps::{CONFIG, EXPLAIN},
    stats::count,
    steer::Request,
};

#[xdp]
pub fn lb_balancer(ctx: XdpContext) -> u32 {
    // Read once here: LLVM may otherwise reuse a computed `ctx + 12` address
    // in a later function, and the verifier only allows ctx field loads at
    // constant offsets from the unmodified pointer.
    // SAFETY: `ctx.ctx` is the kernel's xdp_md for this run.
    let ingress = unsafe { core::ptr::read_volatile(&raw const (*ctx.ctx).ingress_ifindex) };
    // The body is compiled twice: for traffic, and for explain probes,
    // which record nothing. A packet pays one test for the difference,
    // here, instead of one per counter.
    if explain_probe(&ctx) {
        return try_balance::<true>(&ctx, ingress).action();
    }
    // Every error is a counted drop: never XDP_ABORTED, never forwarded.
    let v = try_balance::<false>(&ctx, ingress);
    count::<false>(v.reason());
    v.action()
}

/// An `lbctl explain` probe carries `ExplainMeta` in the XDP metadata;
/// everything else has none. For a probe, clears this CPU's explain record
/// and stamps it with the probe's nonce.
#[inline(always)]
fn explain_probe(ctx: &XdpContext) -> bool {
    // SAFETY: ctx.ctx is the kernel's xdp_md for this run; volatile loads
    // keep the field accesses at constant offsets of the context.
    let (meta, data) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.ctx).data_meta) as usize,
            core::ptr::read_volatile(&raw const (*ctx.ctx).data) as usize,
        )
    };
    if meta + size_of::<ExplainMeta>() > data {
        return false;
    }
    // SAFETY: the metadata area [meta, data) holds at least 8 bytes.
    let m = unsafe { core::ptr::read_unaligned(meta as *const ExplainMeta) };
    if m.magic != EXPLAIN_MAGIC {
        return false;
    }
    if let Some(e) = EXPLAIN.get_ptr_mut(0) {
        // Field by field, volatile: a struct assignment becomes a memset
        // call, which BPF cannot make.
        let words = e.cast::<u32>();
        for i in 0..size_of::<Explain>() / 4 {
            // SAFETY: i indexes the 8 words of this CPU's record.
            unsafe { words.add(i).write_volatile(0) };
        }
        // SAFETY: as above.
        unsafe { (*e).nonce = m.nonce };
    }
    true
}

/// Hygiene checks on (the balancer). The bench builds this same program
/// a second time as `lb-balancer-no-hygiene`, without them, to measure what
/// they cost on the same frames in the same run.
const HYGIENE: bool = !same(
    match option_env!("CARGO_BIN_NAME") {
        Some(n) => n.as_bytes(),
        None => b"",
    },
    b"lb-balancer-no-hygiene",
);

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn try_balance<const PROBE: bool>(ctx: &XdpContext, ingress: u32) -> Verdict {
    const PASS: u32 = xdp_action::XDP_PASS;
    let mut ip = MaybeUninit::<Ip>::uninit();
    let parsed = parse_ip::<HYGIENE>(ctx, &mut ip);
    if parsed.is_done() {
        return parsed;
    }
    // SAFETY: parse_ip wrote `ip` unless it returned a final verdict.
    let ip = unsafe { ip.assume_init_ref() };
    if HYGIENE && ip.suspect != 0 {
        return guard::reject_suspect::<PROBE>(ip.family, &ip.dst, ip.suspect);
    }
    // The array slot always exists; a zero layout version means the agent
    // has not written a configuration yet.
    let cfg = match CONFIG.get(0) {
        Some(cfg) if cfg.layout_version == MAP_LAYOUT_VERSION => cfg,
        _ => return Verdict::done(PASS, Reason::PassNotConfigured),
    };
    // Most traffic on an edge host is not for a VIP: one array read says
    // so, before any hash lookup.
    if !vip::may_be_vip(ip.family, &ip.dst) {
        return Verdict::done(PASS, Reason::PassNotVip);
    }

    let mut flow = FlowKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        family: ip.family,
        ..FlowKey::default()
    };
    let all_ports_vips = cfg.flags & CFG_F_NO_ALL_PORTS_VIPS == 0;
    let mut service = None;
    let mut is_syn = false;
    let mut tcp_seq = None;
    // The flow's connection-table entry, looked up before the service: an
    // established flow's entry names its VIP (see `vip::of_entry`).
    let mut found = None;
    let l4 = if ip.proto == PROTO_TCP || ip.proto == PROTO_UDP {
        parse_l4(ctx, ip)
    } else {
        None
    };
    if let Some(l4) = &l4
        && !ip.fragment
        && !ip.ext_unsupported
    {
        flow.sport = l4.sport;
        flow.dport = l4.dport;
        is_syn =
            ip.proto == PROTO_TCP && l4.tcp_flags & TCP_SYN != 0 && l4.tcp_flags & TCP_ACK == 0;
        if ip.proto == PROTO_TCP {
            tcp_seq = Some(l4.seq);
        }
        if !is_syn && cfg.flags & CFG_F_NO_CONNTRACK == 0 {
            let entry = conntrack::find(&flow);
            if let Some(e) = entry {
                service = vip::of_entry(e, &flow);
            }
            found = Some(entry);
        }
        if service.is_none() {
            service = vip::lookup(ip.family, ip.dst, l4.dport, ip.proto, all_ports_vips);
        }
    }

    let icmp_error = service.is_none();
    let vip = match service {
        Some(vip) => {
            if HYGIENE
                && ip.proto == PROTO_TCP
                && let Some(l4) = &l4
                && guard::impossible_tcp_flags(l4.tcp_flags)
            {
                return guard::dropped::<PROBE>(vip.id, Reason::DropBadTcpFlags);
            }
            if vip.flags & VIP_F_GUARDED != 0 {
                let admitted = guard::admit_packet::<PROBE>(vip.id, ip, conntrack::now_ns());
                if admitted.is_done() {
                    return admitted;
                }
            }
            vip
        }
        None => {
            // Not a packet of a service: does it concern a VIP address at all?
            let Some(marker) = vip::marker(ip.family, ip.dst) else {
                return Verdict::done(PASS, Reason::PassNotVip);
            };
            if ip.ext_unsupported {
                return Verdict::drop(Reason::DropIpv6ExtHeaders);
            }
            // No reassembly in XDP: fragments cannot be steered by ports.
            if ip.fragment {
                return Verdict::drop(Reason::DropFragment);
            }
            if !is_icmp(ip) {
                if (ip.proto == PROTO_TCP || ip.proto == PROTO_UDP) && l4.is_none() {
                    return Verdict::drop(Reason::DropMalformedL4);
                }
                return Verdict::done(PASS, Reason::PassVipNoService);
            }
            let v = icmp::handle(ctx, ip, marker.flags, &mut flow);
            if !v.is_steer() {
                return v;
            }
            match vip::lookup(
                flow.family,
                flow.dst,
                flow.dport,
                flow.proto,
                all_ports_vips,
            ) {
                Some(vip) => vip,
                None => return Verdict::done(PASS, Reason::PassIcmpOther),
            }
        }
    };

    // ICMP errors follow their flow's entry but never create one.
    let req = Request {
        syn: is_syn,
        record: !icmp_error,
        seq: if icmp_error { None } else { tcp_seq },
        found: if icmp_error { None } else { found },
    };
    let choice = match steer::choose::<PROBE>(&flow, &vip, cfg, req) {
        Ok(c) => c,
        Err(reason) => return Verdict::drop(reason),
    };
    if !icmp_error {
        stats::count_traffic::<PROBE>(vip.id, choice.backend_id, len(ctx) as u64, choice.new_flow);
    }
    let v = forward::deliver::<PROBE>(ctx, ip, cfg, &choice, ingress);
    if v.is_too_big() {
        // An ICMP error that is still too big is not answered with another.
        if icmp_error {
            return Verdict::drop(Reason::DropMalformedIcmp);
        }
        return icmp::send_too_big(ctx, ip, v.mtu());
    }
    if icmp_error && v.action() != xdp_action::XDP_DROP {
        count::<PROBE>(Reason::IcmpSteered);
    }
    v
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
