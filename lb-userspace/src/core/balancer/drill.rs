//! Failover drills: backends a selector matches count as failed, for real
//! (`set_drill`) or only in a preview (`simulate`) that changes nothing.

use std::time::Instant;

use super::{
    ApplyError, Balancer, VipRuntime,
    view::{DrillPreview, DrillShare},
};
use crate::core::{policy, sources::FailSelector, tables::Tables};

impl VipRuntime {
    /// Per configured backend: healthy, and not failed by a drill.
    pub(super) fn healthy(&self, failed: &[&FailSelector]) -> Vec<bool> {
        self.cfg
            .backends
            .iter()
            .map(|b| {
                self.health.get(&b.address).is_none_or(|h| h.up)
                    && !failed.iter().any(|d| d.matches(b.address, &b.labels))
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
                    &rt.healthy(&running),
                    &mut st.clone(),
                    now,
                    &mut vec![],
                );
                let mut ev = vec![];
                let after = policy::decide(
                    &rt.cfg,
                    node,
                    &rt.healthy(&with_fail),
                    &mut st,
                    now,
                    &mut ev,
                );
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
