//! Small helper programs: a pass-through for veth peers (so XDP_TX frames are
//! received, see docs/TESTING.md) and an XDP_TX reflector used as the cost
//! floor in benchmarks.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
