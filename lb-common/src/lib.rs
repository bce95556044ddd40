//! Types shared by the XDP programs (`lb-ebpf`) and userspace (`lb-userspace`).
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of `bool`, `Option`
//! and enums in map values, so the kernel and userspace agree on every byte.
//! Address and port fields hold network byte order exactly as they appear on
//! the wire (Katran and Cilium keep them that way too): the data path copies
//! them from the packet without swapping.
#![no_std]

pub mod csum;
pub mod hash;
pub mod limits;
pub mod maps;
pub mod reason;
pub mod wire;

pub use maps::*;
pub use reason::{Reason, Verdict};
