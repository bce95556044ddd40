//! Next hop of an outgoing packet from the kernel FIB and neighbour table
//! (`bpf_fib_lookup`), so nobody configures gateway MACs by hand; a
//! configured MAC is the fallback, and transmit is XDP_TX or a devmap
//! redirect.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    helpers::generated::{bpf_fib_lookup, bpf_jiffies64},
    programs::XdpContext,
};
use lb_common::{
    Reason,
    maps::{CFG_F_GW_MAC, FAMILY_V4},
};

use crate::{
    maps::{FIB_SCRATCH, NEXTHOPS, TX_PORTS},
    stats::count,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;

pub struct NextHop {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub ifindex: u32,
}

/// How long a FIB answer is reused for a backend, in jiffies: at most 1 s
/// (the kernel's HZ is 100 or more). `bpf_fib_lookup` is the costliest step
/// of the hot path; a route or neighbour change reaches the data path
/// within this. Jiffies because the verifier inlines `bpf_jiffies64` into
/// a memory read: a table hit then reads no clock through a helper call.
const NEXTHOP_CACHE_JIFFIES: u64 = 100;

/// A backend's last FIB answer (per CPU, index = backend id).
#[repr(C)]
pub struct CachedHop {
    pub dst: [u32; 4],
    pub ingress: u32,
    pub ifindex: u32,
    pub expires_jiffies: u64,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub _pad: u32,
}

/// Resolves the next hop towards `dst` (network order). `fallback` is the
/// MAC to use when the kernel has no route or neighbour entry: the
/// backend's configured MAC, else the configured gateway (not for L2 DSR,
/// where a gateway would route the VIP-addressed packet back to us).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn resolve<const PROBE: bool>(
    ctx: &XdpContext,
    ingress: u32,
    backend_id: u32,
    family: u8,
    dst: [u32; 4],
    our_mac: [u8; 6],
    fallback: Option<[u8; 6]>,
) -> Result<NextHop, Reason> {
    // SAFETY: bpf_jiffies64 has no preconditions.
    let now = unsafe { bpf_jiffies64() };
    let cached = NEXTHOPS.get_ptr_mut(backend_id);
    if let Some(c) = cached {
        // SAFETY: per-CPU slot of this program run.
        let c = unsafe { &*c };
        if c.expires_jiffies > now && c.ingress == ingress && c.dst == dst {
            count::<PROBE>(Reason::FibOk);
            return Ok(NextHop {
                dmac: c.dmac,
                smac: c.smac,
                ifindex: c.ifindex,
            });
        }
    }
    let p = FIB_SCRATCH.get_ptr_mut(0).ok_or(Reason::DropNoNextHop)?;
    // Clear the request word by word: volatile stores keep LLVM from turning
    // this into a memset call, which BPF cannot make.
    let words = p.cast::<u64>();
    for i in 0..size_of::<FibParams>() / 8 {
        // SAFETY: i indexes the 8 words of this CPU's 64-byte scratch slot,
        // which only this program run uses.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: as above; the slot now holds an empty request.
    let p = unsafe { &mut *p };
    p.ifindex = ingress;
    if family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_4.ipv4_dst = dst[0];
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_4.ipv6_dst = dst;
    }
    // SAFETY: ctx is the program's context and p a stack struct of the size
    // passed.
    let rc = unsafe { bpf_fib_lookup(ctx.ctx.cast(), p, size_of::<FibParams>() as i32, 0) };
    if rc == BPF_FIB_LKUP_RET_SUCCESS {
        count::<PROBE>(Reason::FibOk);
        if let Some(c) = cached {
            // SAFETY: per-CPU slot of this program run.
            let c = unsafe { &mut *c };
            // Through locals: a direct map-to-map copy becomes a memmove
            // call (the compiler cannot rule out overlap).
            let (dmac, smac, ifindex) = (p.dmac, p.smac, p.ifindex);
            c.dst = dst;
            c.ingress = ingress;
            c.ifindex = ifindex;
            c.dmac = dmac;
            c.smac = smac;
            c.expires_jiffies = now + NEXTHOP_CACHE_JIFFIES;
        }
        return Ok(NextHop {
            dmac: p.dmac,
            smac: p.smac,
            ifindex: p.ifindex,
        });
    }
    match fallback {
        Some(mac) => {
            count::<PROBE>(Reason::FibFallbackMac);
            Ok(NextHop {
                dmac: mac,
                smac: our_mac,
                ifindex: ingress,
            })
        }
        None => Err(Reason::DropNoNextHop),
    }
}

/// The configured gateway MAC, if any.
#[inline(always)]
pub fn gateway(cfg: &lb_common::maps::LbConfig) -> Option<[u8; 6]> {
    (cfg.flags & CFG_F_GW_MAC != 0).then_some(cfg.gw_mac)
}

/// Sends the frame to `hop.ifindex`: XDP_TX when it is the receiving
/// interface, otherwise a redirect through the devmap.
#[inline(always)]
pub fn transmit(ingress: u32, hop: &NextHop) -> Result<(u32, Reason), Reason> {
    if hop.ifindex == ingress {
        return Ok((xdp_action::XDP_TX, Reason::FwdTx));
    }
    match TX_PORTS.redirect(hop.ifindex, 0) {
        Ok(action) => Ok((action, Reason::FwdRedirect)),
        Err(_) => Err(Reason::DropRedirect),
    }
}
