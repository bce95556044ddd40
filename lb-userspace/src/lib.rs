//! lb: the userspace half of the XDP load balancer.
pub mod dataplane;
pub mod decap;
pub mod objects;
