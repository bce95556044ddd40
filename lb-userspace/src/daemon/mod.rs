//! The daemon `lbd`: the [`agent`] main loop and what it runs around one
//! [`shared::Shared`] state — the HTTP [`api`], the [`etcd`] feed, the
//! [`health`] checks, the [`metrics`] exposition, the route control
//! ([`announce`] through [`bird`]). Modules that need the
//! agent's state take the `Shared` handle; none imports the agent.

pub mod agent;
pub mod announce;
pub mod api;
pub mod audit;
pub mod bird;
pub mod drill;
pub mod etcd;
pub mod fill;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod shared;
pub mod state;

/// A start-up step that failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);
