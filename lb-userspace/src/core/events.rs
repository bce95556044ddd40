//! Structured decision events: every backend down/up, tier switch,
//! fail-over, spill-over and panic, with its reason. Logged through
//! `tracing`, counted for Prometheus, and kept (the last few hundred) for
//! the API and `lbctl`.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Events kept for the API and `lbctl events`.
const KEEP: usize = 512;

/// What happened, as counted in `lb_events_total{kind}`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BackendDown,
    BackendUp,
    TierSwitch,
    Failover,
    Failback,
    SpilloverStart,
    SpilloverEnd,
    PanicEnter,
    PanicExit,
    DrainStart,
    DrainTimeout,
    ConfigApplied,
    ConfigRejected,
    /// A reload changed a field that only takes effect on restart.
    ConfigNeedsRestart,
    DrillStart,
    DrillEnd,
    /// A kernel table write failed; the tables were re-read and the last
    /// good state written back.
    TablesResynced,
    /// A VIP address is announced to the routers (BIRD), or withdrawn.
    RouteAnnounce,
    RouteWithdraw,
    /// `lbctl node drain` / `undrain`.
    NodeDrain,
    NodeUndrain,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::BackendDown,
        EventKind::BackendUp,
        EventKind::TierSwitch,
        EventKind::Failover,
        EventKind::Failback,
        EventKind::SpilloverStart,
        EventKind::SpilloverEnd,
        EventKind::PanicEnter,
        EventKind::PanicExit,
        EventKind::DrainStart,
        EventKind::DrainTimeout,
        EventKind::ConfigApplied,
        EventKind::ConfigRejected,
        EventKind::ConfigNeedsRestart,
        EventKind::DrillStart,
        EventKind::DrillEnd,
        EventKind::TablesResynced,
        EventKind::RouteAnnounce,
        EventKind::RouteWithdraw,
        EventKind::NodeDrain,
        EventKind::NodeUndrain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::BackendDown => "backend_down",
            EventKind::BackendUp => "backend_up",
            EventKind::TierSwitch => "tier_switch",
            EventKind::Failover => "failover",
            EventKind::Failback => "failback",
            EventKind::SpilloverStart => "spillover_start",
            EventKind::SpilloverEnd => "spillover_end",
            EventKind::PanicEnter => "panic_enter",
            EventKind::PanicExit => "panic_exit",
            EventKind::DrainStart => "drain_start",
            EventKind::DrainTimeout => "drain_timeout",
            EventKind::ConfigApplied => "config_applied",
            EventKind::ConfigRejected => "config_rejected",
            EventKind::ConfigNeedsRestart => "config_needs_restart",
            EventKind::DrillStart => "drill_start",
            EventKind::DrillEnd => "drill_end",
            EventKind::TablesResynced => "tables_resynced",
            EventKind::RouteAnnounce => "route_announce",
            EventKind::RouteWithdraw => "route_withdraw",
            EventKind::NodeDrain => "node_drain",
            EventKind::NodeUndrain => "node_undrain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub kind: EventKind,
    pub vip: Option<String>,
    pub backend: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    recent: VecDeque<Event>,
    counts: BTreeMap<EventKind, u64>,
}

impl EventLog {
    pub fn record(
        &mut self,
        kind: EventKind,
        vip: Option<&str>,
        backend: Option<&str>,
        reason: impl Into<String>,
    ) {
        let reason = reason.into();
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let loud = matches!(
            kind,
            EventKind::PanicEnter
                | EventKind::Failover
                | EventKind::BackendDown
                | EventKind::ConfigRejected
                | EventKind::ConfigNeedsRestart
                | EventKind::TablesResynced
                | EventKind::RouteWithdraw
        );
        if loud {
            tracing::warn!(event = kind.name(), vip = vip.unwrap_or(""), backend = backend.unwrap_or(""), %reason, "decision");
        } else {
            tracing::info!(event = kind.name(), vip = vip.unwrap_or(""), backend = backend.unwrap_or(""), %reason, "decision");
        }
        *self.counts.entry(kind).or_default() += 1;
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(Event {
            time,
            kind,
            vip: vip.map(str::to_string),
            backend: backend.map(str::to_string),
            reason,
        });
    }

    /// Events recorded so far per kind (Prometheus counters).
    pub fn counts(&self) -> &BTreeMap<EventKind, u64> {
        &self.counts
    }

    /// The most recent events, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Event> {
        self.recent.iter()
    }
}
