//! Failover drills: backends a selector matches count as failed, for real
//! (`set_drill`) or only in a preview (`simulate`) that changes nothing.

use std::time::Instant;

use super::{
    ApplyError, Balancer, VipRuntime,
    view::{DrillPreview, DrillShare},
};
use crate::core::{
    policy::{self, Seen},
    sources::FailSelector,
    tables::Tables,
};

impl VipRuntime {
    /// Per configured backend: what the health checks see, with those a
    /// drill fails gone (down, and not answering).
    pub(super) fn seen(&self, failed: &[&FailSelector]) -> Vec<Seen> {
        self.cfg
            .backends
            .iter()
            .map(|b| match self.health.get(&b.address) {
                _ if failed.iter().any(|d| d.matches(b.address, &b.labels)) => Seen {
                    up: false,
                    reachable: false,
                },
                Some(h) => Seen {
                    up: h.up,
                    reachable: h.reachable,
                },
                None => Seen::UP,
            })
            .collect()
    }
}

impl<T: Tables> Balancer<T> {
    /// Starts (Some) or ends (None) a failover drill and applies it.
    pub fn set_drill(
        &mut self,
        drill: Option<FailSelector>,
        now: Instant,
    ) -> Result<(), ApplyError> {
        self.drill = drill;
        self.reconcile(now)
    }

    pub fn drill(&self) -> Option<&FailSelector> {
        self.drill.as_ref()
    }

    /// What each VIP's traffic split would become if `fail` failed, without
    /// changing anything.
    pub fn simulate(&self, fail: &FailSelector, now: Instant) -> Vec<DrillPreview> {
        let node = &self.config.node;
        let running: Vec<&FailSelector> = self.drill.iter().collect();
        let with_fail: Vec<&FailSelector> = running.iter().copied().chain([fail]).collect();
        self.vips
            .values()
            .map(|rt| {
                let mut st = rt.policy.clone();
                let before = policy::decide(
                    &rt.cfg,
                    node,
                    &rt.seen(&running),
                    &mut st.clone(),
                    now,
                    &mut vec![],
                );
                let mut ev = vec![];
                let after =
                    policy::decide(&rt.cfg, node, &rt.seen(&with_fail), &mut st, now, &mut ev);
                DrillPreview {
                    vip: rt.cfg.name.clone(),
                    backends: rt
                        .cfg
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| DrillShare {
                            address: b.address,
                            cloud: b.labels.cloud.clone(),
                            region: b.labels.region.clone(),
                            now: before.shares.get(i).copied().unwrap_or(0.0),
                            during: after.shares.get(i).copied().unwrap_or(0.0),
                        })
                        .collect(),
                    panic: after.panic,
                    events: ev
                        .into_iter()
                        .map(|e| format!("{}: {}", e.kind.name(), e.reason))
                        .collect(),
                }
            })
            .collect()
    }
}
