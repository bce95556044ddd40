//! The systemd service protocol (`Type=notify`, sd_notify(3)): READY once
//! the data path is attached and the API bound, a STATUS line when what
//! it says changes, WATCHDOG from the main loop's own tick (a loop that
//! hangs stops feeding it, and systemd restarts the agent: hitless, as
//! any restart is), STOPPING on the way out. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The agent's side of the protocol.
pub struct Notifier {
    /// Half the watchdog interval systemd asked for (`WATCHDOG_USEC`).
    feed_every: Option<Duration>,
    fed_at: Option<Instant>,
    status: String,
}

impl Notifier {
    pub fn from_env() -> Self {
        Self {
            feed_every: sd_notify::watchdog_enabled().map(|d| d / 2),
            fed_at: None,
            status: String::new(),
        }
    }

    /// The watchdog interval systemd set, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.feed_every.map(|d| d * 2)
    }

    pub fn ready(&mut self, status: String) {
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.status = status;
        if self.feed_every.is_some() {
            send(&[NotifyState::Watchdog]);
            self.fed_at = Some(Instant::now());
        }
    }

    /// Called from the main loop's tick: feeds the watchdog when due and
    /// sends the status line when it changed.
    pub fn tick(&mut self, status: String, now: Instant) {
        if status != self.status {
            send(&[NotifyState::Status(&status)]);
            self.status = status;
        }
        if let Some(every) = self.feed_every
            && self.fed_at.is_none_or(|t| now.duration_since(t) >= every)
        {
            send(&[NotifyState::Watchdog]);
            self.fed_at = Some(now);
        }
    }

    pub fn stopping(&mut self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "NOTIFY_SOCKET: the service manager was not told");
    }
}
