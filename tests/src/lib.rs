//! Test harness: network namespaces, packet builders, pcap output.
pub mod demo;
pub mod netns;
