//! The compiled XDP objects, embedded in the binaries at build time.

use aya::include_bytes_aligned;

/// The balancer (`lb_balancer`) and its maps.
pub static BALANCER: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-balancer"));

/// The backend decap program (`lb_decap`) and its maps.
pub static DECAP: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap"));

/// Helper programs: `xdp_pass` for veth peers, `xdp_tx` as the bench floor.
pub static TOOLS: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-tools"));

/// Where the build left the objects: the bench loads variants built only
/// for it from here (`lb-balancer-no-hygiene`), which no binary embeds.
pub const BUILD_DIR: &str = env!("OUT_DIR");
