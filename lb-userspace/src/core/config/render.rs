//! The model back in the file's own words: [`to_file`] gives the
//! document `lbd check --json` prints, which [`super::parse`] reads back
//! to the same [`Config`] (every default spelled out, durations as
//! `1m 30s`, words as the file writes them); [`plan`] gives the lines
//! `lbd check` prints. Both name fields as `lb.yaml` does, never as the
//! Rust types do.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{format_duration, model::*};

/// A closed-set word as the file spells it (`five-tuple`, `l2-dsr`).
fn word<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn text(t: impl ToString) -> Value {
    Value::String(t.to_string())
}

fn duration(d: std::time::Duration) -> Value {
    Value::String(format_duration(d))
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Inserts `key` only when `v` is set: an absent optional field.
fn put<T>(m: &mut Map<String, Value>, key: &str, v: &Option<T>, f: impl Fn(&T) -> Value) {
    if let Some(v) = v {
        m.insert(key.into(), f(v));
    }
}

fn path(p: &std::path::Path) -> Value {
    text(p.display())
}

/// The whole configuration as a file document.
pub fn to_file(c: &Config) -> Value {
    let mut doc = Map::new();
    doc.insert(
        "node".into(),
        json!({"name": c.node.name, "cloud": c.node.cloud, "region": c.node.region, "zone": c.node.zone}),
    );
    doc.insert(
        "interfaces".into(),
        c.interfaces
            .iter()
            .map(|i| json!({"name": i.name, "xdp_mode": word(&i.xdp_mode)}))
            .collect(),
    );
    doc.insert("pin_path".into(), path(&c.pin_path));
    doc.insert("state_dir".into(), path(&c.state_dir));
    doc.insert("allow_no_vips".into(), c.allow_no_vips.into());
    let l = &c.limits;
    doc.insert(
        "limits".into(),
        json!({
            "max_vips": l.max_vips, "max_backends": l.max_backends, "ring_size": l.ring_size,
            "conntrack_size": l.conntrack_size, "conntrack_per_cpu": l.conntrack_per_cpu,
            "max_acl_entries": l.max_acl_entries, "rate_sources": l.rate_sources,
        }),
    );
    let d = &c.dataplane;
    let mut dataplane = Map::new();
    dataplane.insert("hash_seed".into(), d.hash_seed.into());
    dataplane.insert("udp_idle_timeout".into(), duration(d.udp_idle_timeout));
    dataplane.insert(
        "flood_new_flows_per_sec".into(),
        d.flood_new_flows_per_sec.into(),
    );
    dataplane.insert("mtu".into(), d.mtu.into());
    dataplane.insert("gue_port".into(), d.gue_port.into());
    let s4 = &d.encap_source_v4;
    let s6 = &d.encap_source_v6;
    dataplane.insert(
        "encap_source_v4".into(),
        text(format!("{}/{}", s4.base, 32 - s4.hash_bits)),
    );
    dataplane.insert(
        "encap_source_v6".into(),
        text(format!("{}/{}", s6.base, 128 - s6.hash_bits)),
    );
    put(&mut dataplane, "gateway_mac", &d.gateway_mac, |m| {
        text(mac(m))
    });
    doc.insert("dataplane".into(), dataplane.into());
    doc.insert(
        "health".into(),
        json!({"max_concurrent_checks": c.health.max_concurrent_checks, "fleet_view": c.health.fleet_view}),
    );
    let mut metrics = Map::new();
    put(&mut metrics, "listen", &c.metrics_listen, |a| text(a));
    doc.insert("metrics".into(), metrics.into());
    doc.insert("api".into(), api(&c.api));
    put(&mut doc, "announce", &c.announce, |a| {
        json!({
            "bird_socket": path(&a.bird_socket), "include_file": path(&a.include_file),
            "protocol": a.protocol, "drain_time": duration(a.drain_time),
        })
    });
    put(&mut doc, "etcd", &c.etcd, etcd);
    doc.insert(
        "log".into(),
        json!({"level": word(&c.log.level), "format": word(&c.log.format)}),
    );
    doc.insert(
        "tenants".into(),
        c.tenants
            .iter()
            .map(|(name, q)| {
                let mut m = Map::new();
                put(&mut m, "max_vips", &q.max_vips, |n| (*n).into());
                put(&mut m, "max_backends", &q.max_backends, |n| (*n).into());
                put(
                    &mut m,
                    "max_new_flows_per_sec",
                    &q.max_new_flows_per_sec,
                    |n| (*n).into(),
                );
                put(&mut m, "max_allow_list", &q.max_allow_list, |n| (*n).into());
                (name.clone(), Value::Object(m))
            })
            .collect::<Map<_, _>>()
            .into(),
    );
    doc.insert("vips".into(), c.vips.iter().map(vip).collect());
    Value::Object(doc)
}

fn api(a: &ApiCfg) -> Value {
    let mut m = Map::new();
    m.insert("socket".into(), path(&a.socket));
    put(&mut m, "tcp_listen", &a.tcp_listen, |a| text(a));
    put(&mut m, "token_file", &a.token_file, |p| path(p));
    put(&mut m, "tokens_file", &a.tokens_file, |p| path(p));
    put(&mut m, "tls", &a.tls, |t| {
        let mut tls = Map::new();
        tls.insert("cert_file".into(), path(&t.cert_file));
        tls.insert("key_file".into(), path(&t.key_file));
        put(&mut tls, "client_ca_file", &t.client_ca_file, |p| path(p));
        tls.into()
    });
    m.into()
}

fn etcd(e: &EtcdCfg) -> Value {
    let mut m = Map::new();
    m.insert("endpoints".into(), e.endpoints.clone().into());
    m.insert("prefix".into(), e.prefix.clone().into());
    put(&mut m, "ca_file", &e.ca_file, |p| path(p));
    put(&mut m, "cert_file", &e.cert_file, |p| path(p));
    put(&mut m, "key_file", &e.key_file, |p| path(p));
    put(&mut m, "user", &e.user, |u| u.clone().into());
    put(&mut m, "password_file", &e.password_file, |p| path(p));
    m.into()
}

fn vip(v: &Vip) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), v.name.clone().into());
    m.insert("address".into(), text(v.address));
    m.insert(
        "port".into(),
        if v.port == 0 {
            "all".into()
        } else {
            v.port.into()
        },
    );
    m.insert("protocol".into(), word(&v.protocol));
    m.insert("hash".into(), word(&v.hash));
    m.insert("forwarding".into(), word(&v.forwarding));
    m.insert(
        "flows_on_backend_down".into(),
        word(&v.flows_on_backend_down),
    );
    m.insert("icmp_echo".into(), v.icmp_echo.into());
    m.insert("tenant".into(), v.tenant.clone().into());
    m.insert("announce".into(), word(&v.announce));
    m.insert(
        "allow".into(),
        v.access.allow.iter().map(text).collect::<Vec<_>>().into(),
    );
    m.insert(
        "deny".into(),
        v.access.deny.iter().map(text).collect::<Vec<_>>().into(),
    );
    let r = &v.access.rate_limit;
    let mut rate = Map::new();
    put(
        &mut rate,
        "source_new_flows_per_sec",
        &r.source_new_flows_per_sec,
        |n| (*n).into(),
    );
    put(
        &mut rate,
        "source_packets_per_sec",
        &r.source_packets_per_sec,
        |n| (*n).into(),
    );
    put(&mut rate, "new_flows_per_sec", &r.new_flows_per_sec, |n| {
        (*n).into()
    });
    rate.insert("burst".into(), duration(r.burst));
    rate.insert("source_prefix_v4".into(), r.source_prefix_v4.into());
    rate.insert("source_prefix_v6".into(), r.source_prefix_v6.into());
    m.insert("rate_limit".into(), rate.into());
    m.insert("policy".into(), policy(&v.policy));
    m.insert("health_check".into(), health_check(&v.health_check));
    m.insert(
        "backends".into(),
        v.backends.iter().map(backend).collect::<Vec<_>>().into(),
    );
    m.into()
}

fn policy(p: &Policy) -> Value {
    let mut m = Map::new();
    m.insert("mode".into(), word(&p.mode.kind()));
    match &p.mode {
        PolicyMode::LocalFirst {
            locality,
            overprovisioning,
        } => {
            m.insert("locality".into(), word(locality));
            m.insert("overprovisioning".into(), (*overprovisioning).into());
        }
        PolicyMode::ActiveActive {
            cloud_weights,
            overprovisioning,
        } => {
            m.insert("cloud_weights".into(), json!(cloud_weights));
            m.insert("overprovisioning".into(), (*overprovisioning).into());
        }
        PolicyMode::ActivePassive {
            tiers,
            min_healthy,
            failback_after,
        } => {
            let tiers: Vec<Value> = tiers
                .iter()
                .map(|s| {
                    let mut t = Map::new();
                    put(&mut t, "cloud", &s.cloud, |v| v.clone().into());
                    put(&mut t, "region", &s.region, |v| v.clone().into());
                    put(&mut t, "zone", &s.zone, |v| v.clone().into());
                    t.into()
                })
                .collect();
            m.insert("tiers".into(), tiers.into());
            m.insert("min_healthy".into(), (*min_healthy).into());
            m.insert("failback_after".into(), duration(*failback_after));
        }
    }
    m.insert("panic_threshold".into(), p.panic_threshold.into());
    m.insert("drain_timeout".into(), duration(p.drain_timeout));
    m.into()
}

fn probe_kind(p: &Probe) -> ProbeKind {
    match p {
        Probe::None => ProbeKind::None,
        Probe::Tcp => ProbeKind::Tcp,
        Probe::Http { .. } => ProbeKind::Http,
        Probe::Https { .. } => ProbeKind::Https,
        Probe::Udp { .. } => ProbeKind::Udp,
        Probe::Dns { .. } => ProbeKind::Dns,
    }
}

fn health_check(h: &HealthCheck) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), word(&probe_kind(&h.probe)));
    match &h.probe {
        Probe::None | Probe::Tcp => {}
        Probe::Http {
            path,
            expect_status,
            host,
        }
        | Probe::Https {
            path,
            expect_status,
            host,
        } => {
            m.insert("path".into(), path.clone().into());
            m.insert("expect_status".into(), (*expect_status).into());
            put(&mut m, "host", host, |h| h.clone().into());
        }
        Probe::Udp { payload } => {
            m.insert("payload".into(), payload.clone().into());
        }
        Probe::Dns { query } => {
            m.insert("query".into(), query.clone().into());
        }
    }
    put(&mut m, "port", &h.port, |p| (*p).into());
    m.insert("interval".into(), duration(h.interval));
    m.insert("timeout".into(), duration(h.timeout));
    m.insert("rise".into(), h.rise.into());
    m.insert("fall".into(), h.fall.into());
    m.insert("jitter".into(), h.jitter.into());
    let initial = if h.initially_up {
        InitialState::Up
    } else {
        InitialState::Down
    };
    m.insert("initial_state".into(), word(&initial));
    m.into()
}

fn backend(b: &BackendCfg) -> Value {
    let mut m = Map::new();
    m.insert("address".into(), text(b.address));
    put(&mut m, "port", &b.port, |p| (*p).into());
    m.insert("weight".into(), b.weight.into());
    m.insert(
        "labels".into(),
        json!({"cloud": b.labels.cloud, "region": b.labels.region, "zone": b.labels.zone}),
    );
    m.insert("state".into(), word(&b.state));
    put(&mut m, "forwarding", &b.forwarding, word);
    put(&mut m, "gue_port", &b.gue_port, |p| (*p).into());
    put(&mut m, "mac", &b.mac, |x| text(mac(x)));
    m.into()
}

/// What `lbd check` prints: one line per decision, in the file's words.
pub fn plan(c: &Config) -> Vec<String> {
    let mut out = vec!["configuration OK".to_string()];
    let node_place = place(&c.node.cloud, &c.node.region, &c.node.zone).join(" ");
    out.push(format!(
        "node {}{}; data path pinned under {}; state in {}",
        c.node.name,
        if node_place.is_empty() {
            String::new()
        } else {
            format!(" ({node_place})")
        },
        c.pin_path.display(),
        c.state_dir.display()
    ));
    for i in &c.interfaces {
        out.push(format!(
            "attach XDP to {} (xdp_mode {})",
            i.name,
            word_str(&i.xdp_mode)
        ));
    }
    let l = &c.limits;
    out.push(format!(
        "limits: max_vips {}, max_backends {}, ring_size {}, conntrack_size {} ({})",
        l.max_vips,
        l.max_backends,
        l.ring_size,
        l.conntrack_size,
        if l.conntrack_per_cpu {
            "per CPU"
        } else {
            "shared by all CPUs"
        }
    ));
    out.push(format!(
        "metrics: {}; API socket {}{}",
        c.metrics_listen
            .map_or("off".to_string(), |a| format!("http://{a}/metrics")),
        c.api.socket.display(),
        c.api.tcp_listen.map_or(String::new(), |a| format!(
            ", TCP {}{a}",
            if c.api.tls.is_some() {
                "https://"
            } else {
                "http://"
            }
        ))
    ));
    if let Some(e) = &c.etcd {
        out.push(format!(
            "etcd: {} under {}",
            e.endpoints.join(", "),
            e.prefix
        ));
    }
    if let Some(a) = &c.announce {
        out.push(format!(
            "announce through BIRD at {} (protocols {}4/{}6 in {}), drain_time {}",
            a.bird_socket.display(),
            a.protocol,
            a.protocol,
            a.include_file.display(),
            format_duration(a.drain_time)
        ));
    }
    out.push(format!(
        "log: level {}, format {}",
        c.log.level.name(),
        word_str(&c.log.format)
    ));
    for v in &c.vips {
        let port = if v.port == 0 {
            "all ports".to_string()
        } else {
            format!("port {}", v.port)
        };
        let mode = match &v.policy.mode {
            PolicyMode::LocalFirst { locality, .. } => {
                format!("local-first (locality {})", locality.name())
            }
            PolicyMode::ActiveActive { cloud_weights, .. } if cloud_weights.is_empty() => {
                "active-active".to_string()
            }
            PolicyMode::ActiveActive { cloud_weights, .. } => format!(
                "active-active (cloud_weights {})",
                cloud_weights
                    .iter()
                    .map(|(k, w)| format!("{k}={w}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            PolicyMode::ActivePassive { tiers, .. } => format!(
                "active-passive (tiers {})",
                tiers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" then ")
            ),
        };
        out.push(format!(
            "VIP {} = {} {port} {}, tenant {}: hash {}, forwarding {}, policy {mode}, {} backends",
            v.name,
            v.address,
            v.protocol.name(),
            v.tenant,
            word_str(&v.hash),
            word_str(&v.forwarding),
            v.backends.len()
        ));
        let h = &v.health_check;
        out.push(format!(
            "  health_check {} every {} (timeout {}, rise {}, fall {})",
            word_str(&probe_kind(&h.probe)),
            format_duration(h.interval),
            format_duration(h.timeout),
            h.rise,
            h.fall
        ));
        for b in &v.backends {
            let labels: String = place(&b.labels.cloud, &b.labels.region, &b.labels.zone)
                .iter()
                .map(|l| format!(" {l}"))
                .collect();
            out.push(format!(
                "  backend {} weight {} {}{labels}",
                b.address,
                b.weight,
                word_str(&b.state)
            ));
        }
    }
    out
}

/// `cloud=aws`, `region=…`, `zone=…` for the parts that are set.
fn place(cloud: &str, region: &str, zone: &str) -> Vec<String> {
    [("cloud", cloud), ("region", region), ("zone", zone)]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn word_str<T: Serialize>(t: &T) -> String {
    match word(t) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse;

    /// Every shipped configuration, with every section set at least once.
    const FULL: &str = r#"
node: {name: edge-1, cloud: aws, region: eu-west-1, zone: a}
interfaces: [{name: eth0, xdp_mode: driver}]
pin_path: /sys/fs/bpf/x
state_dir: /var/lib/x
limits: {max_vips: 8, max_backends: 64, ring_size: 251, conntrack_per_cpu: true}
dataplane: {udp_idle_timeout: 1m30s, encap_source_v4: 172.16.0.0/20, encap_source_v6: "fd00::/64", gateway_mac: "02:00:00:00:00:01"}
metrics: {listen: "127.0.0.1:9478"}
api: {tcp_listen: "127.0.0.1:9180", tokens_file: /etc/lb/tokens.yaml, tls: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem}}
announce: {drain_time: 2.5s}
etcd: {endpoints: ["https://10.0.0.5:2379", "https://10.0.0.6:2379"], prefix: /edge, ca_file: /ca.pem, user: lb, password_file: /pw}
log: {level: debug, format: json}
tenants: {shop: {max_vips: 2, max_new_flows_per_sec: 5000}}
vips:
  - name: web
    address: 10.100.0.1
    port: 443
    tenant: shop
    allow: [10.0.0.0/8]
    deny: [10.9.0.0/16]
    rate_limit: {new_flows_per_sec: 1000, burst: 250ms}
    policy: {mode: active-passive, tiers: [{cloud: aws}, {cloud: gcp, region: x}], failback_after: 1m}
    health_check: {type: http, path: /healthz, host: web, interval: 1500ms, timeout: 1s, initial_state: down}
    backends:
      - {address: 10.0.1.1, weight: 50, labels: {cloud: aws}, state: draining}
      - {address: 10.0.1.2, port: 8443, forwarding: gue, gue_port: 6081, labels: {cloud: gcp, region: x}}
  - address: "2001:db8::1"
    port: all
    protocol: udp
    forwarding: l2-dsr
    announce: always
    policy: {mode: active-active, cloud_weights: {aws: 2, gcp: 1}}
    health_check: {type: dns, query: ok.example.}
    backends: [{address: "2001:db8::10", mac: "02:00:00:00:00:10"}]
  - address: 10.100.0.3
    port: 53
    protocol: udp
    health_check: {type: udp, payload: hi}
    backends: [{address: 10.0.3.1}]
"#;

    #[test]
    fn the_file_form_reads_back_to_the_same_configuration() {
        for text in [
            FULL,
            include_str!("../../../../packaging/lb.yaml"),
            include_str!("../../../../examples/lab.yaml"),
        ] {
            let c = parse(text, "t").unwrap();
            let json = serde_json::to_string_pretty(&to_file(&c)).unwrap();
            let back = parse(&json, "check --json").unwrap_or_else(|e| panic!("{e}\n{json}"));
            assert_eq!(back, c, "{json}");
            // And once more: the printed form is a fixed point.
            assert_eq!(to_file(&back), to_file(&c));
        }
    }

    #[test]
    fn durations_and_words_are_written_as_the_file_writes_them() {
        let c = parse(FULL, "t").unwrap();
        let f = to_file(&c);
        assert_eq!(f["dataplane"]["udp_idle_timeout"], "1m 30s");
        assert_eq!(f["vips"][0]["health_check"]["interval"], "1s 500ms");
        assert_eq!(f["vips"][1]["forwarding"], "l2-dsr");
        assert_eq!(f["vips"][1]["port"], "all");
        assert_eq!(f["vips"][0]["policy"]["mode"], "active-passive");
        let plan = plan(&c).join("\n");
        for needle in [
            "VIP web = 10.100.0.1 port 443 tcp, tenant shop: hash five-tuple, forwarding ipip, policy active-passive (tiers cloud=aws then cloud=gcp,region=x), 2 backends",
            "  health_check http every 1s 500ms (timeout 1s, rise 2, fall 3)",
            "  backend 10.0.1.1 weight 50 draining cloud=aws",
            "etcd: https://10.0.0.5:2379, https://10.0.0.6:2379 under /edge",
            "log: level debug, format json",
            "attach XDP to eth0 (xdp_mode driver)",
        ] {
            assert!(plan.contains(needle), "missing {needle:?} in\n{plan}");
        }
        assert!(
            !plan.contains("Some(") && !plan.contains("LocalFirst"),
            "{plan}"
        );
    }
}
