//! Small helper programs: a pass-through for veth peers (so XDP_TX frames are
//! received, see docs/TESTING.md), an XDP_TX reflector used as the cost
//! floor in benchmarks, a drop sink, a traffic generator for
//! BPF_PROG_TEST_RUN's live-frames mode (as xdp-trafficgen does), the
//! frame-restoring shim of the per-packet benchmark's repeat = N method,
//! and that benchmark's lower bound (the kernel's table and tunnel steps
//! alone).
#![no_std]
#![no_main]

use aya_ebpf::helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_store_bytes};
use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use lb_common::{
    maps::{ConnEntry, FAMILY_V4, FAMILY_V6, FlowKey},
    wire::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, ipv4_header_words, ipv6_header,
    },
};
use lb_ebpf::{
    l2::push_front,
    packet::{len, read, write, write_words},
};

/// Passes every frame. Attached to veth peers of XDP_TX-ing interfaces:
/// veth only delivers XDP_TX/redirected frames to a peer running XDP.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Sends every frame back out unchanged: the floor any XDP forwarder pays.
#[xdp]
pub fn xdp_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Drops every frame: the sink of a throughput benchmark.
#[xdp]
pub fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// What the throughput sink received, per CPU: [IPIP-encapsulated IPv4
/// frames, anything else].
#[map]
static SINK_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// Counts and drops every frame: the throughput benchmark's receiving
/// peer, which counts what reached it rather than what the balancer's
/// return codes claim. An IPv4 frame without options carrying IP-in-IP
/// whose inner header is IPv4 counts as encapsulated.
#[xdp]
pub fn xdp_count(ctx: XdpContext) -> u32 {
    let ipip = read::<[u8; 2]>(&ctx, 12) == Some([0x08, 0x00])
        && read::<u8>(&ctx, 14) == Some(0x45)
        && read::<u8>(&ctx, 23) == Some(4)
        && read::<u8>(&ctx, 34).is_some_and(|v| v >> 4 == 4);
    if let Some(c) = SINK_COUNTS.get_ptr_mut(if ipip { 0 } else { 1 }) {
        // SAFETY: per-CPU slot of this program run.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}

/// Number of distinct flows the generator cycles through (TCP source
/// ports 1024..1024+N of an IPv4 frame without options); 0 or 1 sends the
/// template unchanged.
#[unsafe(no_mangle)]
static GEN_FLOWS: Global<u32> = Global::new(0);

/// Per-CPU position in the flow cycle.
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of the generator's frame template.
pub const GEN_TEMPLATE_LEN: usize = 128;

/// The frame to send (its first `GEN_TEMPLATE_LEN` bytes). Live-frames mode
/// recycles pages and resets only the frame's bounds, not its bytes, and
/// the balancer rewrites the frames it forwards (an encapsulation header
/// lands where the Ethernet header was): each run writes the template
/// again, so every frame sent is the one being measured.
#[map]
static GEN_TEMPLATE: Array<[u8; GEN_TEMPLATE_LEN]> = Array::with_max_entries(1, 0);

/// Transmits its frame out of the interface it runs on (live frames mode
/// turns XDP_TX into a transmit), rotating the source port.
#[xdp]
pub fn xdp_gen(ctx: XdpContext) -> u32 {
    let frame_len = len(&ctx);
    if let Some(t) = GEN_TEMPLATE.get_ptr_mut(0)
        && (1..=GEN_TEMPLATE_LEN).contains(&frame_len)
    {
        // SAFETY: the helper bounds-checks against the frame at run time;
        // `t` is a map value of GEN_TEMPLATE_LEN bytes and
        // frame_len <= GEN_TEMPLATE_LEN.
        unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, t.cast(), frame_len as u32) };
    }
    let flows = GEN_FLOWS.load();
    if flows > 1
        && let Some(seq) = GEN_SEQ.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot of this program run.
        let n = unsafe {
            *seq = (*seq + 1) % flows;
            *seq
        };
        // Ethernet (14) + IPv4 (20): the TCP source port.
        let _ = write(&ctx, 34, ((1024 + n) as u16).to_be_bytes());
    }
    xdp_action::XDP_TX
}

/// The program the shim hands each frame to (slot 0): the balancer being
/// measured, or `xdp_tx` for the method's floor.
#[map]
static SHIM_NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The frame the shim restores before every run (its first bytes).
#[map]
static SHIM_FRAME: Array<[u8; GEN_TEMPLATE_LEN]> = Array::with_max_entries(1, 0);

/// The shim's state, written by the bench before each BPF_PROG_TEST_RUN:
/// [frame length, flows to cycle through (0/1: one hot flow), position in
/// the cycle, 1 if the frame is IPv6].
#[map]
static SHIM_STATE: Array<[u32; 4]> = Array::with_max_entries(1, 0);

/// With repeat = N the kernel runs the program N times on one buffer,
/// each run seeing what the last one left (an encapsulated frame). The
/// shim undoes that: it moves the frame start back by what the last run
/// prepended (the balancer only ever grows a frame at its head), writes the
/// original bytes again, optionally rotates the TCP source port so every
/// run is another flow, and tail-calls the program under test. The bench
/// runs the same shim in front of `xdp_tx` as this method's floor, so the
/// shim's own cost cancels out.
#[xdp]
pub fn xdp_shim(ctx: XdpContext) -> u32 {
    let (Some(state), Some(frame)) = (SHIM_STATE.get_ptr_mut(0), SHIM_FRAME.get_ptr(0)) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the bench's one CPU runs this program alone meanwhile.
    let state = unsafe { &mut *state };
    let want = state[0] as usize;
    let have = len(&ctx);
    if have > want && have - want <= 256 {
        // SAFETY: shrinking at the head by what the last run added.
        unsafe { bpf_xdp_adjust_head(ctx.ctx, (have - want) as i32) };
    }
    // Masked, not range-checked: LLVM folds `1..=128` into one unsigned
    // compare the verifier cannot follow. The bench's frames are < 128 B.
    let n = (want & (GEN_TEMPLATE_LEN - 1)) as u32;
    if n != 0 {
        // SAFETY: as in xdp_gen; n < GEN_TEMPLATE_LEN.
        unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, frame.cast_mut().cast(), n) };
    }
    if state[1] > 1 {
        state[2] = (state[2] + 1) % state[1];
        let port = ((1024 + state[2]) as u16).to_be_bytes();
        // Ethernet + IPv4 (20) or IPv6 (40): the TCP source port.
        let _ = if state[3] != 0 {
            write(&ctx, 54, port)
        } else {
            write(&ctx, 34, port)
        };
    }
    // SAFETY: a tail call either replaces this program or falls through.
    unsafe { SHIM_NEXT.tail_call(&ctx, 0) };
    xdp_action::XDP_DROP
}

/// The lower bound's connection table: the balancer's key and value in a
/// shared LRU hash, like its table. Small here; the bench raises it to the
/// world's 1,048,576 entries when it loads this object, so nothing else
/// that loads it allocates that much.
#[map]
static BOUND_TABLE: LruHashMap<FlowKey, ConnEntry> = LruHashMap::with_max_entries(64, 0);

/// The flow key of an Ethernet + IPv4 (no options) or IPv6 frame carrying
/// TCP or UDP, read at fixed offsets and checked no further.
#[inline(always)]
fn bound_key(ctx: &XdpContext) -> Option<FlowKey> {
    let word = |off: usize| read::<[u8; 4]>(ctx, off).map(u32::from_ne_bytes);
    let mut key = FlowKey::default();
    let ports = if read::<[u8; 2]>(ctx, 12)? == ETH_P_IP.to_be_bytes() {
        key.family = FAMILY_V4;
        key.proto = read::<u8>(ctx, ETH_HLEN + 9)?;
        key.src[0] = word(ETH_HLEN + 12)?;
        key.dst[0] = word(ETH_HLEN + 16)?;
        ETH_HLEN + 20
    } else {
        key.family = FAMILY_V6;
        key.proto = read::<u8>(ctx, ETH_HLEN + 6)?;
        for i in 0..4 {
            key.src[i] = word(ETH_HLEN + 8 + 4 * i)?;
            key.dst[i] = word(ETH_HLEN + 24 + 4 * i)?;
        }
        ETH_HLEN + 40
    };
    let p = read::<[u8; 4]>(ctx, ports)?;
    key.sport = u16::from_be_bytes([p[0], p[1]]);
    key.dport = u16::from_be_bytes([p[2], p[3]]);
    Some(key)
}

/// Wraps the frame's IP packet in an outer IPv4 or IPv6 header behind a
/// fresh Ethernet header, as the balancer's tunnel step does (fixed
/// addresses, no next-hop lookup), and sends it back out.
#[inline(always)]
fn bound_encap(ctx: &XdpContext, family: u8) -> u32 {
    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    let inner_len = len(ctx).saturating_sub(ETH_HLEN) as u16;
    let ok = if family == FAMILY_V4 {
        let h = ipv4_header_words(
            0,
            inner_len + 20,
            0,
            IPPROTO_IPIP,
            [10, 0, 0, 1],
            [10, 1, 0, 1],
        );
        push_front(ctx, ETH_HLEN, 20, MAC, MAC, ETH_P_IP).is_ok()
            && write_words(ctx, ETH_HLEN, &h).is_some()
    } else {
        let h = ipv6_header([0; 16], [0; 16], inner_len, IPPROTO_IPV6, 0, 0);
        let fixed = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]];
        let addr = [0xfd00u32.to_be(), 0, 0, 1u32.to_be()];
        push_front(ctx, ETH_HLEN, 40, MAC, MAC, ETH_P_IPV6).is_ok()
            && write(ctx, ETH_HLEN, fixed).is_some()
            && write_words(ctx, ETH_HLEN + 8, &addr).is_some()
            && write_words(ctx, ETH_HLEN + 24, &addr).is_some()
    };
    if ok {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// Lower bound of a new flow: what the kernel charges any balancer that
/// records the flow in the world's LRU and tunnels the packet (the insert,
/// `bpf_xdp_adjust_head` and the header writes), with nothing of its own
/// around them: no parsing beyond the key, no service lookup, no ring, no
/// counters. Drops if the insert fails.
#[xdp]
pub fn xdp_bound_new(ctx: XdpContext) -> u32 {
    let Some(key) = bound_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    let entry = ConnEntry {
        backend_id: 1,
        ..ConnEntry::default()
    };
    if BOUND_TABLE.insert(key, entry, 0).is_err() {
        return xdp_action::XDP_DROP;
    }
    bound_encap(&ctx, key.family)
}

/// Lower bound of an established flow: the table lookup, then the same
/// tunnel steps. Drops on a miss, so a bound that did not hit shows up as
/// a wrong action instead of a fast run.
#[xdp]
pub fn xdp_bound_hit(ctx: XdpContext) -> u32 {
    let Some(key) = bound_key(&ctx) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { BOUND_TABLE.get(key) }.is_none() {
        return xdp_action::XDP_DROP;
    }
    bound_encap(&ctx, key.family)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
