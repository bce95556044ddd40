//! Draining, per VIP: a backend set to `draining` takes no new flows at once
//! (the policy gives it weight 0) but keeps its established flows until the
//! VIP's drain timeout; then its slot is released, and the data path
//! re-steers what is left on their next packet. Undraining resets it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::PolicyEvent;
use crate::core::{
    config::{AdminState, BackendCfg},
    events::EventKind,
};

/// Since when each backend drains, and which have timed out.
#[derive(Clone, Debug, Default)]
pub struct Drains {
    started: BTreeMap<IpAddr, Instant>,
    released: BTreeSet<IpAddr>,
}

/// A drain that started or timed out, for the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainEvent {
    pub backend: IpAddr,
    pub event: PolicyEvent,
}

impl Drains {
    /// Brings every backend's drain up to `now`.
    pub fn advance(
        &mut self,
        backends: &[BackendCfg],
        timeout: Duration,
        now: Instant,
    ) -> Vec<DrainEvent> {
        let mut out = vec![];
        for be in backends {
            if be.state != AdminState::Draining {
                self.forget(be.address);
                continue;
            }
            let started = *self.started.entry(be.address).or_insert_with(|| {
                out.push(DrainEvent {
                    backend: be.address,
                    event: PolicyEvent {
                        kind: EventKind::DrainStart,
                        reason: format!("no new flows; established ones may stay {timeout:?}"),
                    },
                });
                now
            });
            if !self.released.contains(&be.address) && drain_expired(started, now, timeout) {
                self.released.insert(be.address);
                out.push(DrainEvent {
                    backend: be.address,
                    event: PolicyEvent {
                        kind: EventKind::DrainTimeout,
                        reason: "drain timeout: remaining flows move to other backends".into(),
                    },
                });
            }
        }
        out
    }

    /// Since when each backend drains.
    pub fn started(&self) -> impl Iterator<Item = (IpAddr, Instant)> + '_ {
        self.started.iter().map(|(a, t)| (*a, *t))
    }

    /// Resumes a drain that started at `since` (before an agent restart):
    /// its timeout keeps counting from then.
    pub fn resume(&mut self, backend: IpAddr, since: Instant) {
        self.started.entry(backend).or_insert(since);
    }

    /// Past its drain timeout: the backend's slot is released.
    pub fn is_released(&self, backend: IpAddr) -> bool {
        self.released.contains(&backend)
    }

    /// The backend no longer drains (undrained, or gone).
    pub fn forget(&mut self, backend: IpAddr) {
        self.started.remove(&backend);
        self.released.remove(&backend);
    }
}

/// How long a draining backend keeps its established flows.
pub fn drain_expired(started: Instant, now: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(started) >= timeout
}
