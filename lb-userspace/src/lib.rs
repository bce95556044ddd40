//! lb: the userspace half of the XDP load balancer, in three layers whose
//! dependencies point one way (docs/ARCHITECTURE.md, "Userspace layers"):
//!
//! - [`core`]: configuration, policy, Maglev, the balancer facade over the
//!   `Tables` trait — pure, tested without root;
//! - [`kernel`]: the XDP objects, their map catalog and codec, the loader
//!   that implements `Tables`, the pinned-state reader;
//! - [`daemon`]: the agent `lbd` — its main loop, API, etcd feed, health
//!   checks and metrics.
//!
//! Around them: [`http`], the one JSON-over-HTTP client, [`client`], the
//! typed API client `lbctl` uses, and [`cli`], what both binaries share.

pub mod cli;
pub mod client;
pub mod core;
pub mod daemon;
pub mod http;
pub mod kernel;
pub mod man;
