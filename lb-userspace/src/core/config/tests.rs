//! Configuration parsing: a valid example per policy and a corpus of
//! invalid configurations, each with the exact message it must produce.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use super::*;

const BASE: &str = r#"
node: {name: edge-1, cloud: aws, region: eu-west-1, zone: eu-west-1a}
interfaces: [{name: eth0}]
vips:
  - name: orders
    address: 10.100.0.1
    port: 443
    protocol: tcp
    backends:
      - {address: 10.0.1.5, port: 8443, weight: 100, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.6, port: 8443, weight: 50, labels: {cloud: gcp, region: europe-west1}}
"#;

fn ok(yaml: &str) -> Config {
    match parse(yaml, "test.yaml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

#[test]
fn defaults_are_documented_values() {
    let c = ok(BASE);
    assert_eq!(c.pin_path, PathBuf::from("/sys/fs/bpf/lb"));
    assert_eq!(c.limits.ring_size, 65537);
    assert_eq!(c.limits.max_vips, 128);
    assert_eq!(c.dataplane.mtu, 1500);
    assert_eq!(c.dataplane.gue_port, 6080);
    assert_eq!(c.dataplane.udp_idle_timeout, Duration::from_secs(30));
    assert_eq!(
        c.dataplane.encap_source_v4,
        EncapSource {
            base: Ipv4Addr::new(172, 16, 0, 0),
            hash_bits: 16
        }
    );
    assert_eq!(c.interfaces[0].xdp_mode, XdpModeCfg::Auto);
    let v = &c.vips[0];
    assert_eq!(v.hash, HashMode::FiveTuple);
    assert_eq!(v.forwarding, Forwarding::Ipip);
    assert_eq!(v.flows_on_backend_down, FlowsOnDown::Keep);
    assert!(v.icmp_echo);
    assert_eq!(v.policy.panic_threshold, 0.5);
    assert_eq!(v.policy.drain_timeout, Duration::from_secs(300));
    assert_eq!(
        v.policy.mode,
        PolicyMode::LocalFirst {
            locality: Locality::Region,
            overprovisioning: 1.4
        }
    );
    assert_eq!(v.health_check.probe, Probe::Tcp);
    assert_eq!((v.health_check.rise, v.health_check.fall), (2, 3));
    assert_eq!(v.backends[0].state, AdminState::Active);
}

#[test]
fn json_is_accepted_too() {
    let c = ok(
        r#"{"vips": [{"address": "fd10::1", "port": "all", "protocol": "udp",
        "backends": [{"address": "fd00::5"}]}]}"#,
    );
    assert_eq!(c.vips[0].port, 0);
    assert_eq!(c.vips[0].backends[0].weight, 100);
    assert_eq!(c.vips[0].name, "fd10::1:all/udp");
}

#[test]
fn every_policy_parses() {
    let c = ok(r#"
vips:
  - {address: 10.1.0.1, port: 80, policy: {mode: local-first, locality: cloud, overprovisioning: 1.2}, backends: []}
  - address: 10.1.0.2
    port: 80
    policy: {mode: active-active, cloud_weights: {aws: 70, gcp: 30}}
    backends: []
  - address: 10.1.0.3
    port: 80
    policy:
      mode: active-passive
      tiers: [{cloud: aws, region: eu-west-1}, {cloud: gcp}]
      min_healthy: 0.5
      failback_after: 45s
      panic_threshold: 0.3
      drain_timeout: 10m
    health_check: {type: http, path: /healthz, expect_status: 204, interval: 500ms, timeout: 200ms, rise: 1, fall: 2}
    backends: []
"#);
    assert_eq!(
        c.vips[0].policy.mode,
        PolicyMode::LocalFirst {
            locality: Locality::Cloud,
            overprovisioning: 1.2
        }
    );
    let PolicyMode::ActiveActive { cloud_weights, .. } = &c.vips[1].policy.mode else {
        panic!()
    };
    assert_eq!(cloud_weights["aws"], 70);
    let PolicyMode::ActivePassive {
        tiers,
        min_healthy,
        failback_after,
    } = &c.vips[2].policy.mode
    else {
        panic!()
    };
    assert_eq!(tiers[0].to_string(), "cloud=aws,region=eu-west-1");
    assert_eq!(
        (*min_healthy, *failback_after),
        (0.5, Duration::from_secs(45))
    );
    assert_eq!(c.vips[2].policy.drain_timeout, Duration::from_secs(600));
    assert_eq!(
        c.vips[2].health_check.probe,
        Probe::Http {
            path: "/healthz".into(),
            expect_status: 204,
            host: None
        }
    );
}

#[test]
fn encap_sources_take_prefixes() {
    let c =
        ok("dataplane: {encap_source_v4: 10.9.0.0/24, encap_source_v6: 'fd00:1::/64'}\nvips: []");
    assert_eq!(
        c.dataplane.encap_source_v4,
        EncapSource {
            base: Ipv4Addr::new(10, 9, 0, 0),
            hash_bits: 8
        }
    );
    assert_eq!(
        c.dataplane.encap_source_v6.hash_bits, 32,
        "at most 32 bits come from the hash"
    );
    let c = ok("dataplane: {encap_source_v4: 192.0.2.7}\nvips: []");
    assert_eq!(
        c.dataplane.encap_source_v4.hash_bits, 0,
        "a bare address is used as is"
    );
}

/// (description, config, one exact error line it must produce).
const INVALID: &[(&str, &str, &str)] = &[
    (
        "negative weight",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1, weight: -1}]}]",
        "vips[0].backends[0].weight: must be 0..=65535, got -1",
    ),
    (
        "weight too large",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1}, {address: 10.0.1.2, weight: 70000}]}]",
        "vips[0].backends[1].weight: must be 0..=65535, got 70000",
    ),
    (
        "missing VIP address",
        "vips: [{port: 80}]",
        "vips[0].address: is required (an IPv4 or IPv6 address)",
    ),
    (
        "bad VIP address",
        "vips: [{address: 10.0.0.300, port: 80}]",
        "vips[0].address: expected an IPv4 or IPv6 address, got \"10.0.0.300\"",
    ),
    (
        "unspecified VIP address",
        "vips: [{address: 0.0.0.0, port: 80}]",
        "vips[0].address: must be a unicast address, got 0.0.0.0",
    ),
    (
        "missing port",
        "vips: [{address: 10.0.0.1}]",
        "vips[0].port: is required: a port number, or \"all\" for every port",
    ),
    (
        "port zero",
        "vips: [{address: 10.0.0.1, port: 0}]",
        "vips[0].port: must be 1..=65535, got 0",
    ),
    (
        "port word",
        "vips: [{address: 10.0.0.1, port: http}]",
        "vips[0].port: expected a port number or \"all\", got \"http\"",
    ),
    (
        "bad protocol",
        "vips: [{address: 10.0.0.1, port: 80, protocol: sctp}]",
        "vips[0].protocol: must be one of tcp, udp, got \"sctp\"",
    ),
    (
        "bad hash mode",
        "vips: [{address: 10.0.0.1, port: 80, hash: round-robin}]",
        "vips[0].hash: must be one of five-tuple, source-ip, source-ip-dest-port, got \"round-robin\"",
    ),
    (
        "bad forwarding",
        "vips: [{address: 10.0.0.1, port: 80, forwarding: nat}]",
        "vips[0].forwarding: must be one of ipip, gue, l2-dsr, got \"nat\"",
    ),
    (
        "bad flows on down",
        "vips: [{address: 10.0.0.1, port: 80, flows_on_backend_down: drop}]",
        "vips[0].flows_on_backend_down: must be one of keep, move, got \"drop\"",
    ),
    (
        "duplicate VIP",
        "vips: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.1, port: 80}]",
        "vips[1].address: 10.0.0.1:80/tcp is already served by VIP \"10.0.0.1:80/tcp\" (vips[0])",
    ),
    (
        "duplicate VIP name",
        "vips: [{name: a, address: 10.0.0.1, port: 80}, {name: a, address: 10.0.0.2, port: 80}]",
        "vips[1].name: \"a\" is used by another VIP",
    ),
    (
        "duplicate backend",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1}, {address: 10.0.1.1}]}]",
        "vips[0].backends[1].address: 10.0.1.1 is listed twice in this VIP",
    ),
    (
        "bad backend state",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1, state: down}]}]",
        "vips[0].backends[0].state: must be one of active, draining, maintenance, got \"down\"",
    ),
    (
        "bad backend MAC",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1, mac: '02:00:00:00:00'}]}]",
        "vips[0].backends[0].mac: expected a MAC address like 02:00:00:00:00:01, got \"02:00:00:00:00\"",
    ),
    (
        "backend port range",
        "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1, port: 70000}]}]",
        "vips[0].backends[0].port: must be 1..=65535, got 70000",
    ),
    (
        "L2 DSR across families",
        "vips: [{address: 10.0.0.1, port: 80, forwarding: l2-dsr, backends: [{address: 'fd00::1'}]}]",
        "vips[0].backends[0].address: L2 DSR keeps the VIP as destination: the backend must be of the VIP's address family",
    ),
    (
        "unknown policy mode",
        "vips: [{address: 10.0.0.1, port: 80, policy: {mode: round-robin}}]",
        "vips[0].policy.mode: must be one of local-first, active-active, active-passive, got \"round-robin\"",
    ),
    (
        "active-active without weights",
        "vips: [{address: 10.0.0.1, port: 80, policy: {mode: active-active}}]",
        "vips[0].policy.cloud_weights: is required for active-active (e.g. {aws: 70, gcp: 30})",
    ),
    (
        "active-active all zero",
        "vips: [{address: 10.0.0.1, port: 80, policy: {mode: active-active, cloud_weights: {aws: 0}}}]",
        "vips[0].policy.cloud_weights: at least one cloud needs a weight above 0",
    ),
    (
        "active-passive without tiers",
        "vips: [{address: 10.0.0.1, port: 80, policy: {mode: active-passive}}]",
        "vips[0].policy.tiers: is required for active-passive (an ordered list of label selectors)",
    ),
    (
        "tier with unknown label",
        "vips: [{address: 10.0.0.1, port: 80, policy: {mode: active-passive, tiers: [{provider: aws}]}}]",
        "vips[0].policy.tiers[0].provider: unknown label: use cloud, region or zone",
    ),
    (
        "tiers on local-first",
        "vips: [{address: 10.0.0.1, port: 80, policy: {tiers: [{cloud: aws}]}}]",
        "vips[0].policy.tiers: only applies to active-passive, not local-first",
    ),
    (
        "announce protocol that is no BIRD name",
        "announce: {protocol: 'lb vips'}\nvips: []",
        "announce.protocol: must be a BIRD name (letters, digits, _; starting with a letter), got \"lb vips\"",
    ),
    (
        "announce drain time past ten minutes",
        "announce: {drain_time: 2h}\nvips: []",
        "announce.drain_time: must be between 0ns and 600s, got 7200s",
    ),
    (
        "unknown announce mode",
        "vips: [{address: 10.0.0.1, port: 80, announce: sometimes}]",
        "vips[0].announce: must be one of when_healthy, always, never, got \"sometimes\"",
    ),
    (
        "panic threshold above 1",
        "vips: [{address: 10.0.0.1, port: 80, policy: {panic_threshold: 1.5}}]",
        "vips[0].policy.panic_threshold: must be between 0 and 1, got 1.5",
    ),
    (
        "overprovisioning below 1",
        "vips: [{address: 10.0.0.1, port: 80, policy: {overprovisioning: 0.5}}]",
        "vips[0].policy.overprovisioning: must be between 1 and 10, got 0.5",
    ),
    (
        "bad duration",
        "vips: [{address: 10.0.0.1, port: 80, policy: {drain_timeout: soon}}]",
        "vips[0].policy.drain_timeout: expected a duration like 500ms, 2s, 1m30s or 1h, got \"soon\"",
    ),
    (
        "health timeout over interval",
        "vips: [{address: 10.0.0.1, port: 80, health_check: {interval: 1s, timeout: 2s}}]",
        "vips[0].health_check.timeout: must not exceed the interval (1s), got 2s",
    ),
    (
        "unknown probe",
        "vips: [{address: 10.0.0.1, port: 80, health_check: {type: icmp}}]",
        "vips[0].health_check.type: must be one of none, tcp, http, https, udp, dns, got \"icmp\"",
    ),
    (
        "http status out of range",
        "vips: [{address: 10.0.0.1, port: 80, health_check: {type: http, expect_status: 42}}]",
        "vips[0].health_check.expect_status: must be 100..=599, got 42",
    ),
    (
        "http path",
        "vips: [{address: 10.0.0.1, port: 80, health_check: {type: http, path: healthz}}]",
        "vips[0].health_check.path: must start with /, got \"healthz\"",
    ),
    (
        "rise zero",
        "vips: [{address: 10.0.0.1, port: 80, health_check: {rise: 0}}]",
        "vips[0].health_check.rise: must be 1..=100, got 0",
    ),
    (
        "ring size not prime",
        "limits: {ring_size: 65536}\nvips: []",
        "limits.ring_size: must be a prime number (Maglev), got 65536; e.g. 65537 or 655373",
    ),
    (
        "ring size too large",
        "limits: {ring_size: 1000003}\nvips: []",
        "limits.ring_size: must be 7..=655373, got 1000003",
    ),
    (
        "max_vips zero",
        "limits: {max_vips: 0}\nvips: []",
        "limits.max_vips: must be 1..=4096, got 0",
    ),
    (
        "too many VIPs",
        "limits: {max_vips: 1}\nvips: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.2, port: 80}]",
        "vips: 2 VIPs exceed limits.max_vips (1)",
    ),
    (
        "mtu too small",
        "dataplane: {mtu: 100}\nvips: []",
        "dataplane.mtu: must be 576..=9216, got 100",
    ),
    (
        "bad encap source",
        "dataplane: {encap_source_v4: 'fd00::/64'}\nvips: []",
        "dataplane.encap_source_v4: expected an address or prefix like 172.16.0.0/16, got \"fd00::/64\"",
    ),
    (
        "bad gateway MAC",
        "dataplane: {gateway_mac: zz:00:00:00:00:01}\nvips: []",
        "dataplane.gateway_mac: expected a MAC address like 02:00:00:00:00:01, got \"zz:00:00:00:00:01\"",
    ),
    (
        "udp timeout too short",
        "dataplane: {udp_idle_timeout: 10ms}\nvips: []",
        "dataplane.udp_idle_timeout: must be between 100ms and 86400s, got 10ms",
    ),
    (
        "a duration too large for any clock",
        "dataplane: {udp_idle_timeout: 1e20}\nvips: []",
        "dataplane.udp_idle_timeout: must be between 100ms and 86400s, got 100000000000000000000 seconds",
    ),
    (
        "a duration text too large",
        "vips: [{address: 10.0.0.1, port: 80, policy: {drain_timeout: 1e300h}}]",
        "vips[0].policy.drain_timeout: \"1e300h\" is too long a duration",
    ),
    (
        "bad xdp mode",
        "interfaces: [{name: eth0, xdp_mode: offload}]\nvips: []",
        "interfaces[0].xdp_mode: must be one of auto, driver, generic, got \"offload\"",
    ),
    (
        "interface name too long",
        "interfaces: [{name: averyveryverylongname}]\nvips: []",
        "interfaces[0].name: must be a Linux interface name (1-15 characters), got \"averyveryverylongname\"",
    ),
    (
        "tcp API without token",
        "api: {tcp_listen: 127.0.0.1:9180}\nvips: []",
        "api.tokens_file: is required when api.tcp_listen is set (or api.token_file): the TCP API only serves requests with a bearer token",
    ),
    (
        "tcp API off loopback without TLS",
        "api: {tcp_listen: 0.0.0.0:9180, tokens_file: /etc/lb/tokens.yaml}\nvips: []",
        "api.tls: is required when api.tcp_listen (0.0.0.0:9180) is not a loopback address: tokens must not cross the network in clear text",
    ),
    (
        "TLS without a key",
        "api: {tcp_listen: 0.0.0.0:9180, tokens_file: /t, tls: {cert_file: /c.pem}}\nvips: []",
        "api.tls.key_file: is required: a PEM file",
    ),
    (
        "a VIP of an unknown tenant",
        "vips: [{address: 10.0.0.1, port: 80, tenant: acme}]",
        "vips[0].tenant: no tenant \"acme\" in tenants (known: default)",
    ),
    (
        "a tenant name that is no label",
        "vips: [{address: 10.0.0.1, port: 80, tenant: \"a b\"}]",
        "vips[0].tenant: must be 1-64 letters, digits, '-' or '_', got \"a b\"",
    ),
    (
        "quotas on the default tenant",
        "tenants: {default: {max_vips: 1}}\nvips: []",
        "tenants.default: the default tenant has no quotas (give those VIPs a tenant of their own)",
    ),
    (
        "a VIP address of another tenant",
        "tenants: {acme: {}}\nvips: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.1, port: 443, tenant: acme}]",
        "vips[1].address: 10.0.0.1 belongs to tenant \"default\" (VIP \"10.0.0.1:80/tcp\"); tenant \"acme\" cannot use it",
    ),
    (
        "a backend of another tenant",
        "tenants: {acme: {}}\nvips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.1.0.1}]}, {address: 10.0.0.2, port: 80, tenant: acme, backends: [{address: 10.1.0.1}]}]",
        "vips[1].backends[0].address: 10.1.0.1 is a backend of tenant \"default\" (VIP \"10.0.0.1:80/tcp\"); tenant \"acme\" cannot use it",
    ),
    (
        "over a tenant's VIP quota",
        "tenants: {acme: {max_vips: 1}}\nvips: [{address: 10.0.0.1, port: 80, tenant: acme}, {address: 10.0.0.1, port: 443, tenant: acme}]",
        "tenants.acme.max_vips: tenant \"acme\" has 2, over its quota of 1",
    ),
    (
        "over a tenant's backend quota",
        "tenants: {acme: {max_backends: 1}}\nvips: [{address: 10.0.0.1, port: 80, tenant: acme, backends: [{address: 10.1.0.1}, {address: 10.1.0.2}]}]",
        "tenants.acme.max_backends: tenant \"acme\" has 2, over its quota of 1",
    ),
    (
        "over a tenant's allow-list quota",
        "tenants: {acme: {max_allow_list: 1}}\nvips: [{address: 10.0.0.1, port: 80, tenant: acme, allow: [10.9.0.0/16, 10.8.0.0/16]}]",
        "tenants.acme.max_allow_list: tenant \"acme\" has 2, over its quota of 1",
    ),
    (
        "a tenant's new-flow quota needs a budget on each VIP",
        "tenants: {acme: {max_new_flows_per_sec: 1000}}\nvips: [{address: 10.0.0.1, port: 80, tenant: acme}]",
        "vips[0].rate_limit.new_flows_per_sec: is required: tenant \"acme\" has a new-flow quota (1000/s over its VIPs)",
    ),
    (
        "over a tenant's new-flow quota",
        "tenants: {acme: {max_new_flows_per_sec: 1000}}\nvips: [{address: 10.0.0.1, port: 80, tenant: acme, rate_limit: {new_flows_per_sec: 800}}, {address: 10.0.0.1, port: 443, tenant: acme, rate_limit: {new_flows_per_sec: 800}}]",
        "tenants.acme.max_new_flows_per_sec: tenant \"acme\" has 1600, over its quota of 1000",
    ),
    (
        "bad metrics address",
        "metrics: {listen: localhost}\nvips: []",
        "metrics.listen: expected address:port like 127.0.0.1:9478, got \"localhost\"",
    ),
];

#[test]
fn invalid_configs_name_the_field_and_the_problem() {
    assert!(INVALID.len() >= 30);
    for (what, yaml, want) in INVALID {
        match parse(yaml, "lb.yaml") {
            Ok(_) => panic!("{what}: accepted, want error {want:?}"),
            Err(e) => {
                let lines: Vec<String> = e.errors.iter().map(|f| f.to_string()).collect();
                assert!(
                    lines.iter().any(|l| l == want),
                    "{what}: errors {lines:?}, want {want:?}"
                );
                assert!(
                    e.to_string().starts_with("lb.yaml: "),
                    "{what}: the file is named"
                );
            }
        }
    }
}

/// Structural errors (unknown fields, wrong types) come from serde, with the
/// path of the offending field.
#[test]
fn structural_errors_have_paths() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown top-level field",
            "vipz: []",
            "unknown field `vipz`",
        ),
        (
            "unknown VIP field",
            "vips: [{address: 10.0.0.1, port: 80, weigth: 3}]",
            "unknown field `weigth`",
        ),
        (
            "wrong type",
            "vips: [{address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1, weight: heavy}]}]",
            "vips[0].backends[0].weight",
        ),
        ("not a list", "vips: {address: 10.0.0.1}", "vips"),
        ("not YAML", "vips: [", ""),
    ];
    for (what, yaml, want) in cases {
        let e = parse(yaml, "lb.yaml").expect_err(what);
        let text = e.to_string();
        assert!(
            text.contains(want),
            "{what}: {text:?} should mention {want:?}"
        );
    }
    let e = parse(
        "vips: [{address: 10.0.0.1, port: 80, weigth: 3}]",
        "lb.yaml",
    )
    .unwrap_err();
    assert_eq!(e.errors[0].path, "vips[0].weigth");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let e = parse(
        "dataplane: {mtu: 1}\nlimits: {max_vips: 0}\nvips: [{address: x, port: 80}]",
        "lb.yaml",
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 3, "{e}");
}

#[test]
fn backend_lists_parse_alone() {
    let b = parse_backends(
        "[{address: 10.0.1.1, weight: 5, state: draining}]",
        "API request",
    )
    .unwrap();
    assert_eq!(b[0].state, AdminState::Draining);
    let e = parse_backends("[{address: 10.0.1.1, weight: -5}]", "API request").unwrap_err();
    assert_eq!(
        e.to_string(),
        "API request: backends[0].weight: must be 0..=65535, got -5"
    );
}

#[test]
fn durations_and_primes() {
    assert_eq!(
        parse_duration("1500ms").ok(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(parse_duration("2").ok(), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("1.5m").ok(), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("-1s").ok(), None);
    assert_eq!(parse_duration("1m30s").ok(), Some(Duration::from_secs(90)));
    assert_eq!(
        parse_duration("1h 5m").ok(),
        Some(Duration::from_secs(3900))
    );
    assert_eq!(parse_duration("soon").ok(), None);
    for d in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(90),
        Duration::from_secs(86400 + 61),
        Duration::from_micros(100_250),
    ] {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
    }
    assert_eq!(
        parse_duration("1e30h").unwrap_err(),
        "\"1e30h\" is too long a duration"
    );
    assert!(is_prime(65537) && is_prime(655373) && !is_prime(65536) && !is_prime(1));
}

#[test]
fn bracket_depth_ignores_quotes_and_comments_but_not_apostrophes() {
    assert_eq!(flow_nesting("a: [[1], {b: [2]}]"), 3);
    assert_eq!(flow_nesting("a: \"[[[[\" # {{{{\nb: '[[' \n"), 0);
    assert_eq!(flow_nesting("a: 'it''s [' \nb: [1]"), 1);
    assert_eq!(flow_nesting("reason: it's down\nvips: [[[[x]]]]"), 4);
    assert_eq!(flow_nesting("a: \"esc\\\" [\" \nb: {}"), 1);
    let deep = format!("vips: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = parse(&deep, "deep.yaml").unwrap_err();
    assert!(e.to_string().contains("100000 levels deep"), "{e}");
}

#[test]
fn route_control_is_off_unless_configured_and_has_documented_defaults() {
    let c = ok(BASE);
    assert_eq!(c.announce, None);
    assert_eq!(c.vips[0].announce, AnnounceMode::WhenHealthy);
    assert!(!c.health.fleet_view);
    let c = ok(&format!(
        "announce: {{}}\nhealth: {{fleet_view: true}}\n{BASE}"
    ));
    let a = c.announce.expect("announce");
    assert_eq!(a.bird_socket, PathBuf::from("/run/bird/bird.ctl"));
    assert_eq!(a.include_file, PathBuf::from("/var/lib/lb-bird/vips.conf"));
    assert_eq!(
        (a.protocol.as_str(), a.drain_time),
        ("lb_vips", Duration::from_secs(5))
    );
    assert!(c.health.fleet_view);
}
