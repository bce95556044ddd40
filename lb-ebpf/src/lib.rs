//! Pieces shared by the XDP programs: bounds-checked packet access, header
//! parsing and L2-preserving head adjustment. The balancer and decap
//! programs (`src/bin/`) keep their own maps and packet path.
#![no_std]

pub mod l2;
pub mod packet;
pub mod parse;
pub mod verdict;
