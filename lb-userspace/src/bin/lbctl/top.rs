//! `lbctl top`: a live full-screen view of every VIP and backend — packets
//! and bits per second, new flows per second, health, and each backend's
//! share of its VIP's new flows beside the share the policy intends —
//! refreshed every interval from the pinned counters and the agent's
//! state, sortable from the keyboard. The rows are computed by [`view`]
//! (pure, tested); the terminal is ratatui's.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::mpsc,
    time::{Duration, Instant},
};

use lb::{
    client::Agent,
    daemon::{
        api::wire::{AgentState, Health},
        state::unix_now,
    },
};
use lb_common::maps::TrafficStats;
use ratatui::{
    Frame,
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Paragraph, Row, Table},
};

use crate::{
    Ctx, Fail, fail,
    join::vip_name,
    stats::{Sample, sample},
    table::percent,
};

/// What the backend rows are ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Pps,
    Bps,
    NewFlows,
    Share,
    Backend,
}

impl SortKey {
    const ALL: [SortKey; 5] = [
        SortKey::Pps,
        SortKey::Bps,
        SortKey::NewFlows,
        SortKey::Share,
        SortKey::Backend,
    ];

    fn title(self) -> &'static str {
        match self {
            SortKey::Pps => "PPS",
            SortKey::Bps => "BPS",
            SortKey::NewFlows => "NEW/S",
            SortKey::Share => "SHARE",
            SortKey::Backend => "BACKEND",
        }
    }

    fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VipLine {
    pub vip: String,
    pub address: String,
    pub pps: f64,
    pub bps: f64,
    pub new_per_sec: f64,
    pub healthy: usize,
    pub backends: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendLine {
    pub vip: String,
    pub backend: IpAddr,
    /// `up`, `DOWN`, or the admin state when not active.
    pub health: String,
    pub pps: f64,
    pub bps: f64,
    pub new_per_sec: f64,
    /// Share of the VIP's new flows in the interval (`None`: it had none).
    pub share: Option<f64>,
    /// What the policy intends (the agent's expected share).
    pub intended: Option<f64>,
}

pub struct View {
    pub vips: Vec<VipLine>,
    pub backends: Vec<BackendLine>,
}

/// The rows between two readings `dt` seconds apart, backends ordered by
/// `key` (largest first unless `reverse`; by name smallest first).
pub fn view(
    state: Option<&AgentState>,
    a: &Sample,
    b: &Sample,
    dt: f64,
    key: SortKey,
    reverse: bool,
) -> View {
    let dt = dt.max(1e-3);
    let moved = |x: &TrafficStats, y: &TrafficStats| {
        (
            y.packets.saturating_sub(x.packets) as f64 / dt,
            8.0 * y.bytes.saturating_sub(x.bytes) as f64 / dt,
            y.new_flows.saturating_sub(x.new_flows) as f64 / dt,
        )
    };
    let vip_state = |id: u32| state.and_then(|s| s.state.vip_by_id(id));
    let vips: Vec<VipLine> = b
        .vips
        .iter()
        .map(|(id, t)| {
            let before = a.vip(*id);
            let (pps, bps, new_per_sec) = moved(&before, t);
            let v = vip_state(*id);
            VipLine {
                vip: vip_name(state, *id, || id.to_string()),
                address: v
                    .map(|v| format!("{}:{}", v.address, v.port))
                    .unwrap_or_default(),
                pps,
                bps,
                new_per_sec,
                healthy: v.map_or(0, |v| v.backends.iter().filter(|b| b.healthy).count()),
                backends: v.map_or(0, |v| v.backends.len()),
            }
        })
        .collect();
    // Each backend's earlier reading, and each VIP's new flows as the sum
    // of its backends' (read together, so the shares add up to 100% even
    // while traffic moves the counters), once per view.
    let earlier: BTreeMap<u32, TrafficStats> =
        a.backends.iter().map(|(id, .., t)| (*id, *t)).collect();
    let before = |id: u32| earlier.get(&id).copied().unwrap_or_default();
    let mut vip_new: BTreeMap<u32, u64> = BTreeMap::new();
    for (id, vip, _, t) in &b.backends {
        *vip_new.entry(*vip).or_default() += t.new_flows.saturating_sub(before(*id).new_flows);
    }
    let mut backends: Vec<BackendLine> = b
        .backends
        .iter()
        .map(|(id, vip, addr, t)| {
            let before = before(*id);
            let (pps, bps, new_per_sec) = moved(&before, t);
            let known = vip_state(*vip).and_then(|v| v.backend_by_id(*id));
            let total = vip_new.get(vip).copied().unwrap_or(0);
            BackendLine {
                vip: vip_name(state, *vip, || vip.to_string()),
                backend: *addr,
                health: known.map_or_else(
                    || "-".into(),
                    |k| match (k.healthy, k.state) {
                        (false, _) => "DOWN".into(),
                        (true, lb::core::config::AdminState::Active) => "up".into(),
                        (true, s) => format!("{s:?}").to_lowercase(),
                    },
                ),
                pps,
                bps,
                new_per_sec,
                share: (total > 0)
                    .then(|| t.new_flows.saturating_sub(before.new_flows) as f64 / total as f64),
                intended: known.map(|k| k.expected_share),
            }
        })
        .collect();
    sort_lines(&mut backends, key, reverse);
    View { vips, backends }
}

/// Orders backend rows by `key`: largest first (by name: smallest
/// first), the other way round with `reverse`.
pub fn sort_lines(rows: &mut [BackendLine], key: SortKey, reverse: bool) {
    rows.sort_by(|x, y| {
        let by = |f: fn(&BackendLine) -> f64| f(y).total_cmp(&f(x));
        let o = match key {
            SortKey::Pps => by(|l| l.pps),
            SortKey::Bps => by(|l| l.bps),
            SortKey::NewFlows => by(|l| l.new_per_sec),
            SortKey::Share => by(|l| l.share.unwrap_or(-1.0)),
            SortKey::Backend => (x.vip.as_str(), x.backend).cmp(&(y.vip.as_str(), y.backend)),
        };
        // Ties keep a stable, readable order.
        o.then_with(|| (x.vip.as_str(), x.backend).cmp(&(y.vip.as_str(), y.backend)))
    });
    if reverse {
        rows.reverse();
    }
}

/// `1.2k`, `3.4M`: rates fit their columns.
fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn share(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| percent(s, 1))
}

struct Screen<'a> {
    health: Option<&'a Health>,
    state: Option<&'a AgentState>,
    view: &'a View,
    key: SortKey,
    reverse: bool,
    interval: Duration,
    error: Option<&'a str>,
}

fn draw(f: &mut Frame, s: &Screen) {
    let [head, vips, backends, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(s.view.vips.len() as u16 + 3),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let agent = match (s.health, s.state) {
        (Some(h), st) => format!(
            "lbd {} on node {} — up {}",
            h.version,
            st.map_or("?", |s| s.state.node.as_str()),
            humantime::format_duration(Duration::from_secs(h.uptime(unix_now()).as_secs()))
        ),
        (None, _) => "agent not answering (counters from the pinned maps only)".into(),
    };
    let order = format!(
        "every {:?}, backends sorted by {}{}",
        s.interval,
        s.key.title(),
        if s.reverse { " (reversed)" } else { "" }
    );
    let mut head_lines = vec![Line::from(agent), Line::from(order)];
    if let Some(e) = s.error {
        head_lines[1] = Line::from(format!("error: {e}"));
    }
    f.render_widget(Paragraph::new(head_lines), head);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let vip_rows = s.view.vips.iter().map(|v| {
        Row::new(vec![
            v.vip.clone(),
            v.address.clone(),
            si(v.pps),
            si(v.bps),
            si(v.new_per_sec),
            format!("{}/{}", v.healthy, v.backends),
        ])
    });
    f.render_widget(
        Table::new(
            vip_rows,
            [
                Constraint::Length(16),
                Constraint::Length(28),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["VIP", "ADDRESS", "PPS", "BPS", "NEW/S", "HEALTHY"]).style(bold))
        .block(Block::bordered().title(" VIPs ")),
        vips,
    );
    let backend_rows = s.view.backends.iter().map(|b| {
        Row::new(vec![
            b.vip.clone(),
            b.backend.to_string(),
            b.health.clone(),
            si(b.pps),
            si(b.bps),
            si(b.new_per_sec),
            share(b.share),
            share(b.intended),
        ])
    });
    let headers = [
        "VIP", "BACKEND", "HEALTH", "PPS", "BPS", "NEW/S", "SHARE", "INTENDED",
    ]
    .map(|h| {
        if h == s.key.title() {
            format!("{h}*")
        } else {
            h.to_string()
        }
    });
    f.render_widget(
        Table::new(
            backend_rows,
            [
                Constraint::Length(16),
                Constraint::Length(28),
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(9),
            ],
        )
        .header(Row::new(headers).style(bold))
        .block(Block::bordered().title(" backends ")),
        backends,
    );
    f.render_widget(
        Paragraph::new(
            "q quit   s next sort   p pps   b bps   n new/s   h share   a backend   r reverse",
        ),
        keys,
    );
}

/// What a key asks for.
enum Action {
    Quit,
    Sort(SortKey),
    NextSort,
    Reverse,
    Nothing,
}

fn action(code: KeyCode, mods: KeyModifiers) -> Action {
    match code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('s') => Action::NextSort,
        KeyCode::Char('p') => Action::Sort(SortKey::Pps),
        KeyCode::Char('b') => Action::Sort(SortKey::Bps),
        KeyCode::Char('n') => Action::Sort(SortKey::NewFlows),
        KeyCode::Char('h') => Action::Sort(SortKey::Share),
        KeyCode::Char('a') => Action::Sort(SortKey::Backend),
        KeyCode::Char('r') => Action::Reverse,
        _ => Action::Nothing,
    }
}

pub async fn run(ctx: &Ctx<'_>, interval: f64) -> Result<(), Fail> {
    let interval = Duration::try_from_secs_f64(interval.max(0.1)).map_err(|_| {
        fail(
            2,
            format!("--interval: {interval} is not a number of seconds"),
        )
    })?;
    let pinned = ctx.pinned()?;
    let readings = watch_agent(ctx.agent()?, interval);
    let mut terminal = ratatui::try_init().map_err(|e| fail(1, format!("terminal: {e}")))?;
    let result = async {
        let (mut key, mut reverse) = (SortKey::Pps, false);
        let mut before = sample(&pinned)?;
        let mut t0 = Instant::now();
        let (mut health, mut state, mut error) = (None, None, None);
        // The first view names the agent if it answers soon; a slow one
        // fills in later.
        if let Ok(r) = readings.recv_timeout(Duration::from_secs(2)) {
            r.apply(&mut health, &mut state, &mut error);
        }
        let mut last = View {
            vips: vec![],
            backends: vec![],
        };
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                let after = sample(&pinned)?;
                let dt = t0.elapsed().as_secs_f64();
                if let Some(r) = readings.try_iter().last() {
                    r.apply(&mut health, &mut state, &mut error);
                }
                last = view(state.as_ref(), &before, &after, dt, key, reverse);
                (before, t0) = (after, Instant::now());
                next = Instant::now() + interval;
            }
            let screen = Screen {
                health: health.as_ref(),
                state: state.as_ref(),
                view: &last,
                key,
                reverse,
                interval,
                error: error.as_deref(),
            };
            terminal
                .draw(|f| draw(f, &screen))
                .map_err(|e| fail(1, format!("terminal: {e}")))?;
            let wait = next.saturating_duration_since(Instant::now());
            if !event::poll(wait).map_err(|e| fail(1, format!("terminal: {e}")))? {
                continue;
            }
            let Event::Key(k) = event::read().map_err(|e| fail(1, format!("terminal: {e}")))?
            else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            match action(k.code, k.modifiers) {
                Action::Quit => return Ok(()),
                Action::Sort(k) => key = k,
                Action::NextSort => key = key.next(),
                Action::Reverse => reverse = !reverse,
                Action::Nothing => continue,
            }
            // Re-order what is shown now; the rates stay until the next reading.
            sort_lines(&mut last.backends, key, reverse);
        }
    }
    .await;
    ratatui::restore();
    result
}

/// One reading of the agent: its health (or why there is none) and state.
struct Reading {
    health: Result<Health, String>,
    state: Option<AgentState>,
}

impl Reading {
    /// Into what the screen shows: the health or the error, and the state
    /// (the last one known when this reading has none).
    fn apply(
        self,
        health: &mut Option<Health>,
        state: &mut Option<AgentState>,
        error: &mut Option<String>,
    ) {
        (*health, *error) = self
            .health
            .map_or_else(|e| (None, Some(e)), |h| (Some(h), None));
        if self.state.is_some() {
            *state = self.state;
        }
    }
}

/// Reads the agent every `interval` on a thread of its own, so the keys
/// and the counters stay live while the agent is slow, frozen or gone
/// (each call waits out the client's timeout). The thread ends at the
/// first reading after the receiver is dropped.
fn watch_agent(agent: Agent, interval: Duration) -> mpsc::Receiver<Reading> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Some(rt) = lb::cli::runtime(None) else {
            return;
        };
        loop {
            let reading = rt.block_on(async {
                Reading {
                    health: agent.health().await.map_err(|e| e.to_string()),
                    state: agent.state().await.ok(),
                }
            });
            if tx.send(reading).is_err() {
                return;
            }
            std::thread::sleep(interval);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use lb_common::maps::TrafficStats;

    use super::{SortKey, sort_lines, view};
    use crate::stats::Sample;

    fn t(packets: u64, bytes: u64, new_flows: u64) -> TrafficStats {
        TrafficStats {
            packets,
            bytes,
            new_flows,
        }
    }

    fn sample(vip: TrafficStats, a: TrafficStats, b: TrafficStats) -> Sample {
        Sample {
            vips: vec![(1, vip)],
            drops: vec![],
            backends: vec![
                (10, 1, "10.0.1.1".parse().unwrap(), a),
                (11, 1, "10.0.1.2".parse().unwrap(), b),
            ],
            reasons: vec![],
        }
    }

    #[test]
    fn rates_and_shares_come_from_the_difference_of_two_readings() {
        let a = sample(t(100, 1000, 10), t(60, 600, 6), t(40, 400, 4));
        let b = sample(t(300, 3000, 30), t(110, 1100, 11), t(190, 1900, 19));
        let v = view(None, &a, &b, 2.0, SortKey::Pps, false);
        assert_eq!(v.vips[0].pps, 100.0);
        assert_eq!(v.vips[0].bps, 8000.0);
        assert_eq!(v.vips[0].new_per_sec, 10.0);
        // 10.0.1.2 moved 150 packets, 15 of the VIP's 20 new flows.
        let first = &v.backends[0];
        assert_eq!(first.backend.to_string(), "10.0.1.2");
        assert_eq!(first.pps, 75.0);
        assert_eq!(first.share, Some(0.75));
        assert_eq!(v.backends[1].share, Some(0.25));
        // No agent: health and intended share unknown, said so.
        assert_eq!(first.health, "-");
        assert_eq!(first.intended, None);
    }

    #[test]
    fn sorting_orders_by_the_key_largest_first_and_reverse_flips_it() {
        let a = sample(t(0, 0, 0), t(0, 0, 0), t(0, 0, 0));
        let b = sample(t(30, 300, 3), t(10, 900, 1), t(20, 100, 2));
        let mut v = view(None, &a, &b, 1.0, SortKey::Bps, false);
        let order =
            |v: &[super::BackendLine]| v.iter().map(|l| l.backend.to_string()).collect::<Vec<_>>();
        assert_eq!(order(&v.backends), ["10.0.1.1", "10.0.1.2"]);
        sort_lines(&mut v.backends, SortKey::NewFlows, false);
        assert_eq!(order(&v.backends), ["10.0.1.2", "10.0.1.1"]);
        sort_lines(&mut v.backends, SortKey::NewFlows, true);
        assert_eq!(order(&v.backends), ["10.0.1.1", "10.0.1.2"]);
        sort_lines(&mut v.backends, SortKey::Backend, false);
        assert_eq!(order(&v.backends), ["10.0.1.1", "10.0.1.2"]);
        assert_eq!(SortKey::Backend.next(), SortKey::Pps);
    }
}
