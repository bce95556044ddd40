//! Shared pieces of the XDP programs: bounds-checked packet access and the
//! modules of the balancer's packet path.
#![no_std]

pub mod packet;
