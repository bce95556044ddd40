//! Test harness: network namespaces, packet builders, the fixture runner,
//! the scenario runner and pcap output.
pub mod bench;
pub mod bird;
pub mod demo;
pub mod fixture;
pub mod fleet;
pub mod harness;
pub mod json;
pub mod kept;
pub mod lab;
pub mod netns;
pub mod openapi;
pub mod packet;
pub mod pcap;
pub mod pki;
pub mod procs;
pub mod pty;
pub mod stock;
