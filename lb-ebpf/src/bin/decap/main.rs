//! The backend decap program: removes the balancer's tunnel headers (IPIP,
//! IPv6-in-IPv6, IPv4-in-IPv6, IPv6-in-IPv4, GUE) from packets addressed to
//! this host and passes the inner packet up the stack, so backends need no
//! tunnel drivers. Everything else passes untouched.
//!
//! A backend reachable from the Internet must not be an open tunnel
//! endpoint: a tunnel is unwrapped only when it comes from an LB source
//! prefix (`DECAP_SOURCES`) and its inner packet is for a VIP address this
//! backend serves (`DECAP_VIPS`). Refused tunnels are counted and passed
//! untouched (the stack has no tunnel driver to unwrap them) or dropped.
//!
//! Trace mode (`lbd decap --trace`, read with `lbctl trace`) logs every IP
//! packet's verdict and reason through aya-log. [`TRACE`] is a read-only
//! global the loader sets (0 = off, the default): the verifier sees the
//! constant and removes the traced variant as dead code, so off costs a
//! load and a branch.
#![no_std]
#![no_main]
// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

use core::mem::MaybeUninit;

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use lb_common::{
    Reason,
    limits::{MAX_DECAP_ADDRS, MAX_DECAP_SOURCES, MAX_DECAP_VIPS, REASON_SLOTS},
    maps::{
        DECAP_F_ANY_DST, DECAP_F_ANY_SOURCE, DECAP_F_ANY_VIP, DECAP_F_DROP_REFUSED, DecapAddr,
        DecapConfig, DecapPrefix, FAMILY_V4, FAMILY_V6,
    },
    wire::{ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, UDP_HLEN},
};
use lb_ebpf::{
    l2::pop_front,
    packet::read,
    parse::{Ip, parse_ip},
};

/// Local addresses tunnels are accepted for.
#[map]
static DECAP_ADDRS: HashMap<DecapAddr, u32> = HashMap::with_max_entries(MAX_DECAP_ADDRS, 0);

/// Source prefixes tunnels are accepted from (the LB hosts).
#[map]
static DECAP_SOURCES: LpmTrie<DecapPrefix, u32> = LpmTrie::with_max_entries(MAX_DECAP_SOURCES, 0);

/// VIP addresses an unwrapped packet may be for.
#[map]
static DECAP_VIPS: HashMap<DecapAddr, u32> = HashMap::with_max_entries(MAX_DECAP_VIPS, 0);

/// GUE port and flags (one entry).
#[map]
static DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

/// Outcome counters, index = `Reason`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_SLOTS, 0);

/// The outer header of what was judged, for the trace (family 0: not IP).
struct Seen {
    family: u8,
    proto: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// Non-zero: trace every IP packet (set by the loader, read-only).
#[unsafe(no_mangle)]
static TRACE: Global<u8> = Global::new(0);

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    if TRACE.load() != 0 {
        judge::<true>(&ctx)
    } else {
        judge::<false>(&ctx)
    }
}

/// The verdict on one frame; with `TRACED`, also its trace line.
#[inline(always)]
fn judge<const TRACED: bool>(ctx: &XdpContext) -> u32 {
    let mut seen = Seen {
        family: 0,
        proto: 0,
        src: [0; 4],
        dst: [0; 4],
    };
    let (action, reason) = match try_decap::<TRACED>(ctx, &mut seen) {
        Ok(reason) => (xdp_action::XDP_PASS, reason),
        Err(reason) => (xdp_action::XDP_DROP, reason),
    };
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot; nothing else runs on this CPU meanwhile.
        unsafe { *c += 1 };
    }
    if TRACED {
        trace(ctx, action, reason, &seen);
    }
    action
}

/// One line per IP packet in trace mode: verdict, reason (numbers, named
/// by `lbctl trace`), outer addresses and protocol.
#[inline(always)]
fn trace(ctx: &XdpContext, action: u32, reason: Reason, seen: &Seen) {
    let (action, reason, proto) = (action, reason as u32, seen.proto);
    if seen.family == FAMILY_V4 {
        let (src, dst) = (u32::from_be(seen.src[0]), u32::from_be(seen.dst[0]));
        debug!(
            ctx,
            "action={} reason={} proto={} {:i} -> {:i}", action, reason, proto, src, dst
        );
    } else if seen.family == FAMILY_V6 {
        let (src, dst) = (bytes(&seen.src), bytes(&seen.dst));
        debug!(
            ctx,
            "action={} reason={} proto={} {:i} -> {:i}", action, reason, proto, src, dst
        );
    }
}

/// Address words (network order) as the 16 bytes aya-log prints as IPv6.
#[inline(always)]
fn bytes(words: &[u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    b
}

#[inline(always)]
fn try_decap<const TRACED: bool>(ctx: &XdpContext, seen: &mut Seen) -> Result<Reason, Reason> {
    let mut ip = MaybeUninit::<Ip>::uninit();
    // Frames we cannot parse are not ours to judge: pass them to the stack.
    let parsed = parse_ip::<false>(ctx, &mut ip);
    if parsed.is_done() {
        return Ok(Reason::DecapPass);
    }
    // SAFETY: parse_ip returned Ok(true), so it wrote `ip`.
    let ip = unsafe { ip.assume_init_ref() };
    if TRACED {
        *seen = Seen {
            family: ip.family,
            proto: ip.proto,
            src: ip.src,
            dst: ip.dst,
        };
    }
    if ip.fragment {
        return Ok(Reason::DecapPass);
    }
    let Some(cfg) = DECAP_CONFIG.get(0) else {
        return Ok(Reason::DecapPass);
    };

    // The outer header's length and the protocol of what follows it.
    let mut outer_len = ip.l4_off - ip.l3_off;
    let inner_proto = match ip.proto {
        IPPROTO_IPIP | IPPROTO_IPV6 => ip.proto,
        IPPROTO_UDP if cfg.gue_port != 0 => {
            let ports = read::<[u8; 4]>(ctx, ip.l4_off).ok_or(Reason::DecapDropMalformed)?;
            if u16::from_ne_bytes([ports[2], ports[3]]) != cfg.gue_port {
                return Ok(Reason::DecapPass);
            }
            outer_len += UDP_HLEN;
            // GUE variant 1: the first nibble of the payload is the IP
            // version of the inner packet.
            match read::<u8>(ctx, ip.l4_off + UDP_HLEN).ok_or(Reason::DecapDropMalformed)? >> 4 {
                4 => IPPROTO_IPIP,
                6 => IPPROTO_IPV6,
                _ => return Err(Reason::DecapDropMalformed),
            }
        }
        _ => return Ok(Reason::DecapPass),
    };
    if cfg.flags & DECAP_F_ANY_DST == 0 {
        let key = DecapAddr {
            addr: ip.dst,
            family: ip.family as u32,
        };
        // SAFETY: only checks presence; the value is not read.
        if unsafe { DECAP_ADDRS.get(&key) }.is_none() {
            return Ok(Reason::DecapPass);
        }
    }
    // A tunnel for this host from here on: refusals are counted as such.
    let refuse = |reason: Reason| {
        if cfg.flags & DECAP_F_DROP_REFUSED != 0 {
            Err(reason)
        } else {
            Ok(reason)
        }
    };
    if cfg.flags & DECAP_F_ANY_SOURCE == 0 {
        let bits = if ip.family == FAMILY_V4 { 32 } else { 128 };
        let key = Key::new(
            32 + bits,
            DecapPrefix {
                family: ip.family as u32,
                addr: ip.src,
            },
        );
        if DECAP_SOURCES.get(&key).is_none() {
            return refuse(Reason::DecapRefusedSource);
        }
    }
    // The inner header must at least be there (the stack validates the rest).
    let inner = ip.l3_off + outer_len;
    let inner_min = if inner_proto == IPPROTO_IPIP { 20 } else { 40 };
    let first = read::<u8>(ctx, inner).ok_or(Reason::DecapDropMalformed)?;
    let version_ok = if inner_proto == IPPROTO_IPIP {
        first >> 4 == 4
    } else {
        first >> 4 == 6
    };
    if !version_ok || read::<[u8; 1]>(ctx, inner + inner_min - 1).is_none() {
        return Err(Reason::DecapDropMalformed);
    }
    if cfg.flags & DECAP_F_ANY_VIP == 0 {
        let key = inner_destination(ctx, inner, inner_proto).ok_or(Reason::DecapDropMalformed)?;
        // SAFETY: only checks presence; the value is not read.
        if unsafe { DECAP_VIPS.get(&key) }.is_none() {
            return refuse(Reason::DecapRefusedInner);
        }
    }
    let ether_type = if inner_proto == IPPROTO_IPIP {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    pop_front(ctx, ip.l3_off, outer_len, ether_type).map_err(|_| Reason::DecapDropMalformed)?;
    Ok(Reason::DecapOk)
}

/// The inner packet's destination, as a `DECAP_VIPS` key.
#[inline(always)]
fn inner_destination(ctx: &XdpContext, inner: usize, inner_proto: u8) -> Option<DecapAddr> {
    let word = |off: usize| read::<[u8; 4]>(ctx, off).map(u32::from_ne_bytes);
    let mut addr = [0u32; 4];
    let family = if inner_proto == IPPROTO_IPIP {
        addr[0] = word(inner + 16)?;
        FAMILY_V4
    } else {
        for (i, w) in addr.iter_mut().enumerate() {
            *w = word(inner + 24 + 4 * i)?;
        }
        FAMILY_V6
    };
    Some(DecapAddr {
        addr,
        family: family as u32,
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
