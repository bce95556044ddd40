//! Prometheus text exposition of everything the agent knows: kernel
//! counters (summed over CPUs), health, policy state, table work, events.

use std::fmt::Write as _;

use lb_common::{Reason, maps::TrafficStats};

use std::collections::BTreeMap;

use super::health::{Latency, TrackerKey};
use crate::{
    core::{
        balancer::{BackendState, State, VipState},
        events::EventKind,
    },
    kernel::fill::Fill,
};

/// Everything one scrape shows, gathered by the agent.
pub struct Snapshot<'a> {
    pub state: &'a State,
    pub reasons: &'a [(Reason, u64)],
    /// Per VIP id.
    pub vip_traffic: &'a dyn Fn(u32) -> TrafficStats,
    /// Per backend id.
    pub backend_traffic: &'a dyn Fn(u32) -> TrafficStats,
    pub events: &'a std::collections::BTreeMap<EventKind, u64>,
    /// Configuration reloads by result (`applied`, `needs_restart`, …).
    pub reloads: &'a [(&'a str, u64)],
    /// Extra gauges (name, help, value), e.g. from the etcd feed.
    pub extra: &'a [(&'a str, &'a str, f64)],
    /// Managed VIP addresses and whether each is announced (route control).
    pub announced: &'a [(std::net::IpAddr, bool)],
    /// Guard and hygiene drops per VIP id, by reason.
    pub vip_drops: &'a dyn Fn(u32) -> Vec<(Reason, u64)>,
    /// The bounded tables' entries and capacity, last counted.
    pub fill: &'a [Fill],
    /// How long each backend's health probes took.
    pub probe_latency: &'a BTreeMap<TrackerKey, Latency>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family labelled by VIP: one line per VIP that has a value.
fn per_vip(
    out: &mut String,
    s: &Snapshot<'_>,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&VipState) -> Option<String>,
) {
    header(out, name, kind, help);
    for v in &s.state.vips {
        if let Some(val) = value(v) {
            let _ = writeln!(
                out,
                "{name}{{vip=\"{}\",tenant=\"{}\"}} {val}",
                escape(&v.name),
                escape(&v.tenant)
            );
        }
    }
}

/// A family labelled by VIP and backend: one line per backend of each VIP.
fn per_backend(
    out: &mut String,
    s: &Snapshot<'_>,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&BackendState) -> String,
) {
    header(out, name, kind, help);
    for v in &s.state.vips {
        for b in &v.backends {
            let _ = writeln!(
                out,
                "{name}{{vip=\"{}\",tenant=\"{}\",backend=\"{}\"}} {}",
                escape(&v.name),
                escape(&v.tenant),
                b.address,
                value(b)
            );
        }
    }
}

/// The etcd feed's gauges.
pub fn etcd_gauges(
    connected: bool,
    revision: i64,
    rejected_keys: usize,
) -> Vec<(&'static str, &'static str, f64)> {
    vec![
        (
            "lb_etcd_connected",
            "1 while the etcd feed is connected and watching.",
            connected as u8 as f64,
        ),
        (
            "lb_etcd_revision",
            "Last etcd revision applied.",
            revision as f64,
        ),
        (
            "lb_etcd_rejected_keys",
            "etcd keys whose current value was rejected.",
            rejected_keys as f64,
        ),
    ]
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = String::new();
    header(
        &mut o,
        "lb_build_info",
        "gauge",
        "Always 1; the agent's version as a label (join it to spot hosts left on an old build).",
    );
    let _ = writeln!(
        o,
        "lb_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut o,
        "lb_packets_total",
        "counter",
        "Packets the balancer saw, each once, by verdict (pass, drop, forward, answer) and the reason it ended on; the series add up to every packet.",
    );
    for (r, v) in s.reasons {
        if let Some(verdict) = r.verdict() {
            let _ = writeln!(
                o,
                "lb_packets_total{{verdict=\"{}\",reason=\"{}\"}} {v}",
                verdict.name(),
                r.name()
            );
        }
    }
    header(
        &mut o,
        "lb_packets_by_reason_total",
        "counter",
        "Packets by reason: the verdict reasons of lb_packets_total and the steps on the way (conntrack_hit, fib_ok, fwd_encap, ...), so these do not add up to the packets seen.",
    );
    for (r, v) in s.reasons {
        let _ = writeln!(
            o,
            "lb_packets_by_reason_total{{reason=\"{}\"}} {v}",
            r.name()
        );
    }
    header(
        &mut o,
        "lb_vip_drops_total",
        "counter",
        "Packets to the VIP dropped by hygiene, its allow/deny lists or its rate limits, by reason.",
    );
    for v in &s.state.vips {
        for (r, n) in (s.vip_drops)(v.id) {
            let _ = writeln!(
                o,
                "lb_vip_drops_total{{vip=\"{}\",tenant=\"{}\",reason=\"{}\"}} {n}",
                escape(&v.name),
                escape(&v.tenant),
                r.name()
            );
        }
    }
    let traffic = |t: TrafficStats| [t.packets, t.bytes, t.new_flows];
    for (name, field, help) in [
        (
            "lb_vip_packets_total",
            0,
            "Packets forwarded (or answered too-big) for the VIP.",
        ),
        (
            "lb_vip_bytes_total",
            1,
            "Bytes of those packets as received.",
        ),
        (
            "lb_vip_new_flows_total",
            2,
            "Flows the Maglev table chose a backend for.",
        ),
    ] {
        per_vip(&mut o, s, name, "counter", help, |v| {
            Some(traffic((s.vip_traffic)(v.id))[field].to_string())
        });
    }
    for (name, field, help) in [
        (
            "lb_backend_packets_total",
            0,
            "Packets sent to the backend.",
        ),
        ("lb_backend_bytes_total", 1, "Bytes sent to the backend."),
        (
            "lb_backend_new_flows_total",
            2,
            "New flows steered to the backend.",
        ),
    ] {
        per_backend(&mut o, s, name, "counter", help, |b| {
            traffic((s.backend_traffic)(b.id))[field].to_string()
        });
    }
    per_backend(
        &mut o,
        s,
        "lb_backend_healthy",
        "gauge",
        "1 if the backend passes its health checks.",
        |b| (b.healthy as u8).to_string(),
    );
    per_backend(
        &mut o,
        s,
        "lb_backend_share",
        "gauge",
        "Share of the VIP's new flows the backend gets (Maglev table slots).",
        |b| format!("{:.6}", b.ring_share),
    );
    per_vip(
        &mut o,
        s,
        "lb_vip_active_tier",
        "gauge",
        "active-passive: index of the tier taking traffic (-1: none or not active-passive).",
        |v| Some(v.active_tier.map_or(-1, |t| t as i64).to_string()),
    );
    per_vip(
        &mut o,
        s,
        "lb_vip_local_share",
        "gauge",
        "local-first: fraction of traffic kept in the local cloud/region.",
        |v| v.local_share.map(|l| format!("{l:.6}")),
    );
    per_vip(
        &mut o,
        s,
        "lb_vip_panic",
        "gauge",
        "1 while the VIP spreads over all backends because too few are healthy.",
        |v| Some((v.panic as u8).to_string()),
    );
    header(
        &mut o,
        "lb_table_updates_total",
        "counter",
        "Maglev table flips written to the kernel.",
    );
    let _ = writeln!(o, "lb_table_updates_total {}", s.state.work.table_updates);
    header(
        &mut o,
        "lb_table_slots_written_total",
        "counter",
        "Ring slots written (only changed slots are written).",
    );
    let _ = writeln!(
        o,
        "lb_table_slots_written_total {}",
        s.state.work.slots_written
    );
    header(
        &mut o,
        "lb_events_total",
        "counter",
        "Decisions taken (backend up/down, tier switches, fail-over, panic, ...).",
    );
    for k in EventKind::ALL {
        let _ = writeln!(
            o,
            "lb_events_total{{kind=\"{}\"}} {}",
            k.name(),
            s.events.get(k).copied().unwrap_or(0)
        );
    }
    header(
        &mut o,
        "lb_config_reloads_total",
        "counter",
        "Configuration reloads by result.",
    );
    for (result, n) in s.reloads {
        let _ = writeln!(o, "lb_config_reloads_total{{result=\"{result}\"}} {n}");
    }
    for (name, help, value) in s.extra {
        header(&mut o, name, "gauge", help);
        let _ = writeln!(o, "{name} {value}");
    }
    if !s.probe_latency.is_empty() {
        header(
            &mut o,
            "lb_health_probe_duration_seconds",
            "histogram",
            "How long the backend's health probes take (failed ones included: a timeout lands in the top buckets).",
        );
        for v in &s.state.vips {
            for b in &v.backends {
                let Some(l) = s
                    .probe_latency
                    .get(&((v.address, v.port, v.protocol), b.address))
                else {
                    continue;
                };
                let labels = format!(
                    "vip=\"{}\",tenant=\"{}\",backend=\"{}\"",
                    escape(&v.name),
                    escape(&v.tenant),
                    b.address
                );
                for (le, n) in l.cumulative() {
                    let _ = writeln!(
                        o,
                        "lb_health_probe_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    o,
                    "lb_health_probe_duration_seconds_sum{{{labels}}} {}",
                    l.sum_secs()
                );
                let _ = writeln!(
                    o,
                    "lb_health_probe_duration_seconds_count{{{labels}}} {}",
                    l.count()
                );
            }
        }
    }
    if !s.fill.is_empty() {
        header(
            &mut o,
            "lb_map_entries",
            "gauge",
            "Entries in the data path's bounded tables (counted every 10 s).",
        );
        for f in s.fill {
            let _ = writeln!(o, "lb_map_entries{{map=\"{}\"}} {}", f.map, f.entries);
        }
        header(
            &mut o,
            "lb_map_capacity",
            "gauge",
            "Capacity of those tables (the connection table is an LRU: full, it evicts its oldest flows).",
        );
        for f in s.fill {
            let _ = writeln!(o, "lb_map_capacity{{map=\"{}\"}} {}", f.map, f.capacity);
        }
    }
    if !s.announced.is_empty() {
        header(
            &mut o,
            "lb_vip_announced",
            "gauge",
            "1 while this host announces the VIP address to its routers (BIRD).",
        );
        for (address, on) in s.announced {
            let _ = writeln!(o, "lb_vip_announced{{address=\"{address}\"}} {}", *on as u8);
        }
    }
    o
}

/// Gauges of the route control.
pub fn announce_gauges(bird_up: bool, drained: bool) -> Vec<(&'static str, &'static str, f64)> {
    vec![
        (
            "lb_bird_up",
            "1 while BIRD accepts the VIP routes (its control socket answers).",
            bird_up as u8 as f64,
        ),
        (
            "lb_node_drained",
            "1 while the node is drained (every VIP withdrawn on purpose).",
            drained as u8 as f64,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::core::{balancer::Balancer, config, tables::MemoryTables};

    #[test]
    fn exposition_has_every_family_and_escapes_labels() {
        let c = config::parse(
            "limits: {max_vips: 4, max_backends: 8, ring_size: 251}\nvips: [{name: 'a\"b', address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1}]}]",
            "t",
        )
        .unwrap();
        let b = Balancer::new(MemoryTables::new(c.limits), c, Instant::now()).unwrap();
        let state = b.state();
        let reasons: Vec<_> = Reason::ALL.iter().map(|r| (*r, 3)).collect();
        let mut probe = Latency::default();
        probe.observe(std::time::Duration::from_millis(3));
        let vip = &state.vips[0];
        let latency = BTreeMap::from([(
            (
                (vip.address, vip.port, vip.protocol),
                vip.backends[0].address,
            ),
            probe,
        )]);
        let text = render(&Snapshot {
            state: &state,
            reasons: &reasons,
            vip_traffic: &|_| TrafficStats {
                packets: 5,
                bytes: 500,
                new_flows: 1,
            },
            backend_traffic: &|_| TrafficStats {
                packets: 5,
                bytes: 500,
                new_flows: 1,
            },
            events: b.events.counts(),
            reloads: &[("applied", 2), ("rejected", 1)],
            extra: &[],
            announced: &[("10.0.0.1".parse().unwrap(), true)],
            vip_drops: &|_| vec![(Reason::DropDenied, 7)],
            fill: &[Fill {
                map: "CONNTRACK",
                entries: 12,
                capacity: 4096,
            }],
            probe_latency: &latency,
        });
        for needle in [
            "lb_packets_by_reason_total{reason=\"fwd_tx\"} 3",
            "lb_packets_total{verdict=\"forward\",reason=\"fwd_tx\"} 3",
            "lb_packets_total{verdict=\"drop\",reason=\"drop_denied\"} 3",
            concat!(
                "lb_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\"} 1"
            ),
            "lb_vip_packets_total{vip=\"a\\\"b\",tenant=\"default\"} 5",
            "lb_backend_bytes_total{vip=\"a\\\"b\",tenant=\"default\",backend=\"10.0.1.1\"} 500",
            "lb_backend_healthy{vip=\"a\\\"b\",tenant=\"default\",backend=\"10.0.1.1\"} 1",
            "lb_backend_share{vip=\"a\\\"b\",tenant=\"default\",backend=\"10.0.1.1\"} 1.000000",
            "lb_vip_panic{vip=\"a\\\"b\",tenant=\"default\"} 0",
            "lb_vip_drops_total{vip=\"a\\\"b\",tenant=\"default\",reason=\"drop_denied\"} 7",
            "lb_events_total{kind=\"backend_down\"} 0",
            "lb_config_reloads_total{result=\"rejected\"} 1",
            "lb_vip_announced{address=\"10.0.0.1\"} 1",
            "lb_map_entries{map=\"CONNTRACK\"} 12",
            "lb_map_capacity{map=\"CONNTRACK\"} 4096",
            "lb_health_probe_duration_seconds_bucket{vip=\"a\\\"b\",tenant=\"default\",backend=\"10.0.1.1\",le=\"0.005\"} 1",
            "lb_health_probe_duration_seconds_count{vip=\"a\\\"b\",tenant=\"default\",backend=\"10.0.1.1\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
        // Steps are not verdicts: each packet is in lb_packets_total once.
        let verdicts = text
            .lines()
            .filter(|l| l.starts_with("lb_packets_total{"))
            .count();
        assert_eq!(
            verdicts,
            Reason::ALL.iter().filter(|r| r.verdict().is_some()).count()
        );
        // Every sample line belongs to a declared family.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        // A histogram's samples carry its name with a suffix.
        let histograms: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" histogram"))
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| histograms.contains(base))
                .unwrap_or(name);
            assert!(families.contains(&family), "undeclared {name}");
        }
    }
}
