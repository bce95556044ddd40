//! lb: the userspace half of the XDP load balancer.
pub mod objects;
