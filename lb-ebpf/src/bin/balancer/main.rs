//! The load balancer's XDP program: VIP match, backend choice (connection
//! table, then Maglev), encapsulation or L2 DSR, transmit. Everything that
//! is not for a VIP passes to the kernel untouched.
#![no_std]
#![no_main]
// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

include!("program.rs");
