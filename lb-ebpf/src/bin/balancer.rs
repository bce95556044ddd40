//! The load balancer's XDP program.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use lb_common::{
    Reason,
    wire::{ETH_P_IP, ETH_P_IPV6},
};
use lb_ebpf::packet::ptr_at;
use network_types::eth::EthHdr;

/// Outcome counters, index = `Reason`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

#[xdp]
pub fn lb_balancer(ctx: XdpContext) -> u32 {
    let (action, reason) = try_balance(&ctx);
    count(reason);
    action
}

fn try_balance(ctx: &XdpContext) -> (u32, Reason) {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (xdp_action::XDP_DROP, Reason::DropMalformedL2);
    };
    // SAFETY: ptr_at checked the header is inside the frame.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_IP | ETH_P_IPV6 => (xdp_action::XDP_PASS, Reason::PassNotVip),
        _ => (xdp_action::XDP_PASS, Reason::PassNotIp),
    }
}

#[inline(always)]
fn count(reason: Reason) {
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
