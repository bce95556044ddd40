//! Bounds-checked access to packet bytes. Every read or write of the frame
//! goes through `ptr_at`/`ptr_at_mut`, so the verifier sees one pattern of
//! `data + offset + size <= data_end` checks.

use aya_ebpf::programs::XdpContext;

/// A pointer to a `T` at `offset` bytes into the frame, or `None` when the
/// frame is too short. `T` must have alignment 1 (byte arrays and the
/// `network-types` headers), as packet data has no alignment guarantee.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let (start, end) = bounds(ctx);
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Mutable variant of [`ptr_at`].
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Reads a copy of a `T` at `offset`.
#[inline(always)]
pub fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: ptr_at checked that size_of::<T>() bytes at offset are inside
    // the frame; T has alignment 1 by the contract of ptr_at.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { *p })
}

/// Writes a `T` at `offset`; `None` when the frame is too short.
#[inline(always)]
pub fn write<T: Copy>(ctx: &XdpContext, offset: usize, value: T) -> Option<()> {
    // SAFETY: as in `read`.
    ptr_at_mut::<T>(ctx, offset).map(|p| unsafe { *p = value })
}

/// Frame length in bytes.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    let (start, end) = bounds(ctx);
    end - start
}

/// `data` and `data_end` of the frame, read from the context every time.
///
/// The loads are volatile so LLVM cannot hoist them into a caller and pass
/// the 32-bit fields as arguments to an out-of-line function: the callee
/// would then zero-extend them with shifts, and the verifier forbids
/// arithmetic on `pkt_end`. Re-reading is also what correctness needs after
/// `bpf_xdp_adjust_head`/`_tail`.
#[inline(always)]
fn bounds(ctx: &XdpContext) -> (usize, usize) {
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` for this program run.
    unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&raw const (*ctx.ctx).data_end) as usize,
        )
    }
}

/// Writes `words` (each in memory order: network order for addresses) at
/// `offset`, one store per word, without building a byte array on the
/// stack first.
#[inline(always)]
pub fn write_words<const N: usize>(
    ctx: &XdpContext,
    offset: usize,
    words: &[u32; N],
) -> Option<()> {
    let p = ptr_at_mut::<[[u8; 4]; N]>(ctx, offset)?.cast::<u32>();
    for (i, w) in words.iter().enumerate() {
        // SAFETY: ptr_at_mut checked that the 4 * N bytes are inside the
        // frame; the stores are unaligned-safe.
        unsafe { p.add(i).write_unaligned(*w) };
    }
    Some(())
}
