//! Which VIP addresses this host announces to its routers, and why. An
//! address is announced while the agent runs with its configuration
//! applied, the node is not drained, and some VIP on the address wants it:
//! `always`, or `when_healthy` with healthy capacity in the policy's view
//! (a healthy backend the policy gives traffic). Withdrawing an address
//! whose backends are all down lets the routers send its clients to a host
//! that can serve them — or nowhere, which clients notice faster than a
//! black hole.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::core::{
    balancer::{State, VipState},
    config::{AnnounceMode, Config},
};

/// One address's announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Route {
    #[schema(value_type = String)]
    pub address: IpAddr,
    pub announce: bool,
    pub reason: String,
}

/// What holds for the whole node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Node {
    /// `lbctl node drain`: withdraw everything, keep forwarding.
    pub drained: bool,
    /// The balancer's shadows describe the maps.
    pub in_sync: bool,
}

fn healthy_capacity(v: &VipState) -> (usize, usize) {
    let serving = v
        .backends
        .iter()
        .filter(|b| b.healthy && b.expected_share > 0.0)
        .count();
    (serving, v.backends.len())
}

/// Every managed address (one with a VIP whose mode is not `never`), in
/// address order.
pub fn routes(state: &State, config: &Config, node: Node) -> Vec<Route> {
    // address → (announce, reasons)
    let mut by_address: BTreeMap<IpAddr, (bool, Vec<String>)> = BTreeMap::new();
    for v in &state.vips {
        let mode = config
            .vips
            .iter()
            .find(|c| c.name == v.name)
            .map_or(AnnounceMode::default(), |c| c.announce);
        let (want, why) = match mode {
            AnnounceMode::Never => continue,
            AnnounceMode::Always => (true, format!("{}: announce always", v.name)),
            AnnounceMode::WhenHealthy => match healthy_capacity(v) {
                (0, n) => (
                    false,
                    format!(
                        "{}: no healthy capacity (0 of {n} backends serving)",
                        v.name
                    ),
                ),
                (k, n) => (true, format!("{}: {k} of {n} backends serving", v.name)),
            },
        };
        let e = by_address.entry(v.address).or_default();
        if want && !e.0 {
            e.1.clear();
        }
        if want || !e.0 {
            e.1.push(why);
        }
        e.0 |= want;
    }
    by_address
        .into_iter()
        .map(|(address, (want, reasons))| {
            let (announce, reason) = if node.drained {
                (false, "node drained (lbctl node drain)".to_string())
            } else if !node.in_sync {
                (
                    false,
                    "tables out of sync after a failed map write".to_string(),
                )
            } else {
                (want, reasons.join("; "))
            };
            Route {
                address,
                announce,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::core::{
        balancer::{Balancer, Health},
        config::parse,
        tables::MemoryTables,
    };

    const CFG: &str = r#"
limits: {max_vips: 8, max_backends: 32, ring_size: 251}
vips:
  - {name: web, address: 10.100.0.1, port: 80, backends: [{address: 10.0.1.1}, {address: 10.0.1.2}]}
  - {name: dns, address: 10.100.0.1, port: 53, protocol: udp, backends: [{address: 10.0.2.1}]}
  - {name: always, address: 10.100.0.2, port: 80, announce: always, backends: [{address: 10.0.3.1}]}
  - {name: hidden, address: 10.100.0.3, port: 80, announce: never, backends: [{address: 10.0.4.1}]}
"#;

    fn balancer() -> Balancer<MemoryTables> {
        let c = parse(CFG, "t").unwrap();
        Balancer::new(MemoryTables::new(c.limits), c, Instant::now()).unwrap()
    }

    fn down(b: &mut Balancer<MemoryTables>, vip: &str, addr: &str) {
        let ident = b.vip_by_name(vip).unwrap();
        b.set_health(
            &ident,
            addr.parse().unwrap(),
            Health::unreachable("refused"),
        );
        b.reconcile(Instant::now()).unwrap();
    }

    fn announced(b: &Balancer<MemoryTables>, node: Node) -> Vec<(String, bool)> {
        routes(&b.state(), b.config(), node)
            .into_iter()
            .map(|r| (r.address.to_string(), r.announce))
            .collect()
    }

    const UP: Node = Node {
        drained: false,
        in_sync: true,
    };

    #[test]
    fn healthy_vips_are_announced_never_is_not_managed() {
        let b = balancer();
        assert_eq!(
            announced(&b, UP),
            [("10.100.0.1".into(), true), ("10.100.0.2".into(), true)]
        );
    }

    #[test]
    fn an_address_is_withdrawn_only_when_no_vip_on_it_can_serve() {
        let mut b = balancer();
        down(&mut b, "dns", "10.0.2.1");
        // web still serves on the same address.
        assert_eq!(announced(&b, UP)[0], ("10.100.0.1".into(), true));
        down(&mut b, "web", "10.0.1.1");
        down(&mut b, "web", "10.0.1.2");
        let r = &routes(&b.state(), b.config(), UP)[0];
        assert!(!r.announce);
        assert!(
            r.reason.contains("web: no healthy capacity") && r.reason.contains("dns:"),
            "{}",
            r.reason
        );
        // `always` stays announced with its backend down.
        down(&mut b, "always", "10.0.3.1");
        assert_eq!(announced(&b, UP)[1], ("10.100.0.2".into(), true));
    }

    #[test]
    fn a_drained_or_unsynced_node_withdraws_everything() {
        let b = balancer();
        for node in [
            Node {
                drained: true,
                in_sync: true,
            },
            Node {
                drained: false,
                in_sync: false,
            },
        ] {
            assert!(announced(&b, node).iter().all(|(_, a)| !a));
        }
    }
}
