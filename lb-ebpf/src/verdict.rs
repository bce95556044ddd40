//! What an out-of-line BPF function tells its caller, packed into one
//! register. Rust enums (`Result`, enums with data) would appear in the
//! object's BTF as unions the kernel rejects, and a returned struct larger
//! than 8 bytes would become a hidden pointer argument; a `u64` is neither.

use aya_ebpf::bindings::xdp_action;
use lb_common::Reason;

#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Verdict(u64);

const KIND_DONE: u64 = 0;
const KIND_TOO_BIG: u64 = 1;
const KIND_STEER: u64 = 2;
const KIND_CONTINUE: u64 = 3;

impl Verdict {
    /// Finished: return `action`, count `reason`.
    #[inline(always)]
    pub const fn done(action: u32, reason: Reason) -> Self {
        Self((KIND_DONE << 32) | ((reason as u64 & 0xff) << 8) | (action as u64 & 0xff))
    }

    /// A counted drop.
    #[inline(always)]
    pub const fn drop(reason: Reason) -> Self {
        Self::done(xdp_action::XDP_DROP, reason)
    }

    /// The packet would not fit after encapsulation: answer with ICMP
    /// announcing `mtu`.
    #[inline(always)]
    pub const fn too_big(mtu: u16) -> Self {
        Self((KIND_TOO_BIG << 32) | ((mtu as u64) << 16))
    }

    /// An ICMP error to steer to the backend of the flow it quotes.
    #[inline(always)]
    pub const fn steer() -> Self {
        Self(KIND_STEER << 32)
    }

    /// Nothing decided yet: the caller carries on.
    #[inline(always)]
    pub const fn proceed() -> Self {
        Self(KIND_CONTINUE << 32)
    }

    #[inline(always)]
    pub fn from_result(r: Result<(u32, Reason), Reason>) -> Self {
        match r {
            Ok((action, reason)) => Self::done(action, reason),
            Err(reason) => Self::drop(reason),
        }
    }

    #[inline(always)]
    pub const fn is_done(self) -> bool {
        self.0 >> 32 == KIND_DONE
    }
    #[inline(always)]
    pub const fn is_too_big(self) -> bool {
        self.0 >> 32 == KIND_TOO_BIG
    }
    #[inline(always)]
    pub const fn is_steer(self) -> bool {
        self.0 >> 32 == KIND_STEER
    }
    #[inline(always)]
    pub const fn action(self) -> u32 {
        (self.0 & 0xff) as u32
    }
    #[inline(always)]
    pub fn reason(self) -> Reason {
        Reason::from_index(((self.0 >> 8) & 0xff) as u32).unwrap_or(Reason::DropMalformedL3)
    }
    #[inline(always)]
    pub const fn mtu(self) -> u16 {
        (self.0 >> 16) as u16
    }
}
