//! The pure core: the configuration model and its validation, the
//! cross-cloud policy, Maglev, the balancer facade over the [`tables::Tables`]
//! trait, the sources a configuration is merged from, and the event log.
//! Nothing here touches the kernel or spawns a task, so all of it is tested
//! without root.

pub mod access;
pub mod announce;
pub mod balancer;
pub mod config;
pub mod events;
pub mod fleet;
pub mod maglev;
pub mod policy;
pub mod prefix;
pub mod sources;
pub mod tables;
