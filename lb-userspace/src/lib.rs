//! lb: the userspace half of the XDP load balancer.
//!
//! A pure core (`config`, `maglev`, `policy`, `balancer` over the `Tables`
//! trait, `health`'s state machine) and thin kernel adapters (`dataplane`,
//! `decap`), so everything but the adapters is tested without root.
pub mod agent;
pub mod api;
pub mod balancer;
pub mod cli_docs;
pub mod client;
pub mod config;
pub mod dataplane;
pub mod decap;
pub mod etcd;
pub mod events;
pub mod health;
pub mod inspect;
pub mod maglev;
pub mod metrics;
pub mod objects;
pub mod policy;
pub mod sources;
pub mod tables;
