//! Route control: keeps the VIP addresses this host announces through its
//! BIRD in step with [`crate::core::announce::routes`] — on every table
//! change, node drain and once a second — and withdraws them when the
//! agent stops, unless a restart hold says it comes back at once.
//!
//! What the routers see, case by case:
//! - a restart with a hold (`lbctl node hold`, the package's upgrade):
//!   the include file and so the routes stay; the data path forwards from
//!   the pinned maps meanwhile, the next agent reads the file back;
//! - `systemctl stop` (SIGTERM, no hold): withdraw, keep forwarding for
//!   `announce.drain_time` while the routers move the flows, exit;
//! - `lbctl node drain`: withdraw, keep running;
//! - an agent that dies: the unit's `ExecStopPost=lbd withdraw` (on a
//!   failed exit) clears the file, so a dead or wedged agent (killed by
//!   the watchdog) does not keep attracting traffic on stale tables;
//! - a host that dies: BFD between BIRD and the routers, well under a
//!   second.

use std::{collections::BTreeSet, net::IpAddr, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{bird, shared::Shared, state::unix_now};
use crate::core::{
    announce::{self, Route},
    config::AnnounceCfg,
    events::EventKind,
    tables::Tables,
};

/// What the operator decided for this node; saved across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeControl {
    /// Withdrawn on purpose (`lbctl node drain`), until `undrain`.
    pub drained: bool,
    /// Until then (seconds since the Unix epoch) an exit keeps the routes:
    /// a restart or upgrade follows.
    pub hold_until: Option<f64>,
}

impl NodeControl {
    pub fn holding(&self) -> bool {
        self.hold_until.is_some_and(|t| t > unix_now())
    }
}

/// The route control's state, for `/v1/node`, metrics and `lbctl node`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnnounceStatus {
    /// Every managed address, what it should be and why.
    pub routes: Vec<Route>,
    /// What the include file holds, as BIRD last accepted it.
    #[schema(value_type = Vec<String>)]
    pub announced: BTreeSet<IpAddr>,
    /// BIRD answered the last `configure`.
    pub bird_up: bool,
    pub last_error: Option<String>,
}

/// Starts the route control; returns at once. The first sync reads back
/// what a previous agent left in the include file.
pub fn spawn<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, cfg: AnnounceCfg) {
    *shared.announce.lock().expect("not poisoned") = Some(AnnounceStatus {
        announced: bird::read_announced(&cfg.include_file),
        ..AnnounceStatus::default()
    });
    tokio::spawn(async move {
        loop {
            sync(&shared, &cfg).await;
            tokio::select! {
                _ = shared.route_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Decides, and if that changes what BIRD has, writes and re-configures.
pub async fn sync<T: Tables + Send + 'static>(shared: &Shared<T>, cfg: &AnnounceCfg) {
    let routes = {
        let node = shared.node.lock().expect("not poisoned").clone();
        let b = shared.balancer();
        announce::routes(
            &b.state(),
            b.config(),
            announce::Node {
                drained: node.drained,
                in_sync: b.in_sync(),
            },
        )
    };
    let want: BTreeSet<IpAddr> = routes
        .iter()
        .filter(|r| r.announce)
        .map(|r| r.address)
        .collect();
    let (have, bird_up) = {
        let mut st = shared.announce.lock().expect("not poisoned");
        let st = st.get_or_insert_with(AnnounceStatus::default);
        st.routes = routes.clone();
        (st.announced.clone(), st.bird_up)
    };
    if want == have && bird_up {
        return;
    }
    let result = push(cfg, &want).await;
    let mut events = vec![];
    {
        let mut st = shared.announce.lock().expect("not poisoned");
        let st = st.get_or_insert_with(AnnounceStatus::default);
        match result {
            Ok(()) => {
                for r in &routes {
                    let (kind, changed) = if r.announce {
                        (EventKind::RouteAnnounce, !have.contains(&r.address))
                    } else {
                        (EventKind::RouteWithdraw, have.contains(&r.address))
                    };
                    if changed {
                        events.push((kind, format!("{}: {}", r.address, r.reason)));
                    }
                }
                for gone in have
                    .iter()
                    .filter(|a| !routes.iter().any(|r| r.address == **a))
                {
                    events.push((
                        EventKind::RouteWithdraw,
                        format!("{gone}: no VIP on it any more"),
                    ));
                }
                st.announced = want;
                st.bird_up = true;
                st.last_error = None;
            }
            Err(e) => {
                if st.bird_up || st.last_error.is_none() {
                    tracing::warn!(error = %e, "route control: BIRD did not take the VIP routes; retrying every second");
                }
                st.bird_up = false;
                st.last_error = Some(e.to_string());
            }
        }
    }
    // After the status lock: recording takes the balancer's.
    for (kind, why) in events {
        shared.record(kind, why);
    }
}

async fn push(cfg: &AnnounceCfg, routes: &BTreeSet<IpAddr>) -> Result<(), bird::BirdError> {
    bird::write(&cfg.include_file, &cfg.protocol, routes)?;
    bird::configure(&cfg.bird_socket).await
}

/// On exit: keep the routes under a hold, otherwise withdraw everything
/// and keep forwarding for `drain_time` while the routers move the flows.
pub async fn on_exit<T: Tables + Send + 'static>(shared: &Shared<T>, cfg: &AnnounceCfg) {
    if shared.node.lock().expect("not poisoned").holding() {
        tracing::info!("restart hold: the VIP routes stay announced for the next agent");
        return;
    }
    match push(cfg, &BTreeSet::new()).await {
        Ok(()) => {
            shared.record(
                EventKind::RouteWithdraw,
                format!(
                    "agent stopping: every VIP withdrawn, draining {:?}",
                    cfg.drain_time
                ),
            );
            tokio::time::sleep(cfg.drain_time).await;
        }
        Err(e) => tracing::error!(error = %e, "could not withdraw the VIP routes on exit"),
    }
}

/// `lbd withdraw`: what the unit runs after a failed exit, without an
/// agent — an empty include file, and BIRD told. The file is what counts:
/// a BIRD that is not running reads it when it starts (so this also
/// creates the file BIRD's configuration includes, before BIRD first runs).
/// Returns whether BIRD took it now.
pub async fn withdraw_now(
    cfg: &AnnounceCfg,
) -> Result<Result<(), bird::BirdError>, bird::BirdError> {
    bird::write(&cfg.include_file, &cfg.protocol, &BTreeSet::new())?;
    Ok(bird::configure(&cfg.bird_socket).await)
}
