//! The kernel adapter: the XDP objects and their maps. One [`catalog`] of
//! every map, one [`codec`] between the core's terms and the maps' words,
//! the [`dataplane`] loader that implements the core's `Tables`, the decap
//! program for backends, and [`inspect`], which reads the pinned state for
//! `lbctl` without the agent.

pub mod catalog;
pub mod codec;
pub mod dataplane;
pub mod decap;
mod error;
pub mod fill;
pub mod host;
pub mod inspect;
pub mod objects;
pub mod pins;
mod ring;

pub use error::DataplaneError;
