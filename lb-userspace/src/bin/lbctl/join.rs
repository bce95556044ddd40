//! What the maps hold, joined with what the agent knows: VIP names for
//! ids, and ids for names.

use lb::{
    core::config::default_vip_name,
    daemon::api::wire::AgentState,
    kernel::inspect::{Pinned, PinnedVip},
};

use crate::{Fail, fail};

/// The agent's name for VIP `id`, else `fallback`.
pub fn vip_name(state: Option<&AgentState>, id: u32, fallback: impl FnOnce() -> String) -> String {
    state
        .and_then(|s| s.state.vip_by_id(id))
        .map_or_else(fallback, |v| v.name.clone())
}

/// The name the agent gives a VIP configured without one.
pub fn address_name(v: &PinnedVip) -> String {
    default_vip_name(v.address, v.port, v.protocol)
}

/// VIP id by name (from the agent) or by `address:port/proto`.
pub fn resolve_vip(state: Option<&AgentState>, pinned: &Pinned, name: &str) -> Result<u32, Fail> {
    if let Some(v) = state.and_then(|s| s.state.vip_by_name(name)) {
        return Ok(v.id);
    }
    for v in pinned.vips()? {
        if address_name(&v) == name
            || format!("{}:{}/{}", v.address, v.port, v.protocol.name()) == name
            || format!("{}:{}", v.address, v.port) == name
        {
            return Ok(v.id);
        }
    }
    Err(fail(
        4,
        format!("no VIP {name:?} (use the name shown by `lbctl vip list`)"),
    ))
}
