//! The balancer without its hygiene checks (`HYGIENE` is false for this
//! binary): built only so the bench can time what they cost on the same
//! frames in the same run. Never shipped.
#![no_std]
#![no_main]
// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

include!("program.rs");
