//! One VIP: its service, policy, health check and backends.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use super::{Validator, join, ms, secs};
use crate::core::config::{model::*, raw::*};

impl Validator {
    /// One VIP (a `vips[]` entry, an API request or an etcd value); `None`
    /// if anything in it is wrong.
    pub fn vip(&mut self, path: &str, raw: &RawVip, limits: &Limits) -> Option<Vip> {
        let errors_before = self.errors.len();
        let address = self.ip(&join(path, "address"), &raw.address);
        let port = match &raw.port {
            None => {
                self.err(
                    join(path, "port"),
                    "is required: a port number, or \"all\" for every port",
                );
                0
            }
            Some(RawPort::Number(n)) => {
                self.range(&join(path, "port"), Some(*n), 1, 65535, 1) as u16
            }
            Some(RawPort::Text(t)) if ["all", "any", "*"].contains(&t.as_str()) => 0,
            Some(RawPort::Text(t)) => {
                self.err(
                    join(path, "port"),
                    format!("expected a port number or \"all\", got {t:?}"),
                );
                0
            }
        };
        let protocol = self.choice(&join(path, "protocol"), &raw.protocol, Protocol::default());
        let hash = self.choice(&join(path, "hash"), &raw.hash, HashMode::default());
        let announce = self.choice(
            &join(path, "announce"),
            &raw.announce,
            AnnounceMode::default(),
        );
        let access = self.access(path, raw);
        let forwarding = self.choice(
            &join(path, "forwarding"),
            &raw.forwarding,
            Forwarding::default(),
        );
        let flows_on_backend_down = self.choice(
            &join(path, "flows_on_backend_down"),
            &raw.flows_on_backend_down,
            FlowsOnDown::default(),
        );
        let policy = self.policy(&join(path, "policy"), &raw.policy);
        let health_check = self.health_check(&join(path, "health_check"), &raw.health_check);
        let backends = self.backends(&join(path, "backends"), &raw.backends);
        if backends.len() as u32 > limits.max_backends {
            self.err(
                join(path, "backends"),
                format!(
                    "{} backends exceed limits.max_backends ({})",
                    backends.len(),
                    limits.max_backends
                ),
            );
        }
        // L2 DSR keeps the VIP as the destination address.
        for (i, b) in backends.iter().enumerate() {
            if b.forwarding.unwrap_or(forwarding) == Forwarding::L2Dsr
                && let Some(a) = address
                && a.is_ipv4() != b.address.is_ipv4()
            {
                self.err(
                    format!("{}[{i}].address", join(path, "backends")),
                    "L2 DSR keeps the VIP as destination: the backend must be of the VIP's address family",
                );
            }
        }
        let tenant = match &raw.tenant {
            None => DEFAULT_TENANT.to_string(),
            Some(t) if valid_tenant_name(t) => t.clone(),
            Some(t) => {
                self.err(
                    join(path, "tenant"),
                    format!("must be 1-64 letters, digits, '-' or '_', got {t:?}"),
                );
                String::new()
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let mut vip = Vip::new(address?, port, protocol);
        vip.tenant = tenant;
        if let Some(name) = &raw.name {
            vip.name = name.clone();
        }
        vip.hash = hash;
        vip.forwarding = forwarding;
        vip.flows_on_backend_down = flows_on_backend_down;
        vip.icmp_echo = raw.icmp_echo.unwrap_or(vip.icmp_echo);
        vip.announce = announce;
        vip.access = access;
        vip.policy = policy;
        vip.health_check = health_check;
        vip.backends = backends;
        Some(vip)
    }

    /// `allow`, `deny`, `rate_limit` of a VIP.
    fn access(&mut self, path: &str, raw: &RawVip) -> Access {
        let mut prefixes = |field: &str, list: &[String]| {
            let mut out = vec![];
            for (i, p) in list.iter().enumerate() {
                match p.parse::<crate::core::prefix::Prefix>() {
                    Ok(p) => out.push(p),
                    Err(e) => self.err(format!("{}[{i}]", join(path, field)), e),
                }
            }
            out
        };
        let allow = prefixes("allow", &raw.allow);
        let deny = prefixes("deny", &raw.deny);
        let r = &raw.rate_limit;
        let rl = |v: &mut Self, field: &str, x: Option<i64>| {
            x.map(|_| {
                v.range(
                    &join(path, &format!("rate_limit.{field}")),
                    x,
                    1,
                    1_000_000_000,
                    1,
                ) as u32
            })
        };
        let d = RateLimit::default();
        let rate_limit = RateLimit {
            source_new_flows_per_sec: rl(
                self,
                "source_new_flows_per_sec",
                r.source_new_flows_per_sec,
            ),
            source_packets_per_sec: rl(self, "source_packets_per_sec", r.source_packets_per_sec),
            new_flows_per_sec: rl(self, "new_flows_per_sec", r.new_flows_per_sec),
            burst: self.duration(
                &join(path, "rate_limit.burst"),
                &r.burst,
                Duration::ZERO,
                secs(60),
                d.burst,
            ),
            source_prefix_v4: self.range(
                &join(path, "rate_limit.source_prefix_v4"),
                r.source_prefix_v4,
                1,
                32,
                d.source_prefix_v4 as i64,
            ) as u8,
            source_prefix_v6: self.range(
                &join(path, "rate_limit.source_prefix_v6"),
                r.source_prefix_v6,
                1,
                128,
                d.source_prefix_v6 as i64,
            ) as u8,
        };
        Access {
            allow,
            deny,
            rate_limit,
        }
    }

    pub fn backends(&mut self, path: &str, raw: &[RawBackend]) -> Vec<BackendCfg> {
        let mut seen = BTreeSet::new();
        let mut out = vec![];
        for (i, b) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let address = self.ip(&join(&p, "address"), &b.address);
            if let Some(a) = address
                && !seen.insert(a)
            {
                self.err(
                    join(&p, "address"),
                    format!("{a} is listed twice in this VIP"),
                );
            }
            let port = self.port(&join(&p, "port"), b.port);
            let weight = self.range(
                &join(&p, "weight"),
                b.weight,
                0,
                65535,
                BackendCfg::DEFAULT_WEIGHT as i64,
            ) as u32;
            let state = self.choice(&join(&p, "state"), &b.state, AdminState::default());
            let forwarding = b.forwarding.as_ref().map(|_| {
                self.choice(
                    &join(&p, "forwarding"),
                    &b.forwarding,
                    Forwarding::default(),
                )
            });
            let gue_port = self.port(&join(&p, "gue_port"), b.gue_port);
            let mac = self.mac(&join(&p, "mac"), &b.mac);
            if let Some(address) = address {
                out.push(BackendCfg {
                    address,
                    port,
                    weight,
                    labels: Labels {
                        cloud: b.labels.cloud.clone().unwrap_or_default(),
                        region: b.labels.region.clone().unwrap_or_default(),
                        zone: b.labels.zone.clone().unwrap_or_default(),
                    },
                    state,
                    forwarding,
                    gue_port,
                    mac,
                });
            }
        }
        out
    }

    fn policy(&mut self, path: &str, raw: &RawPolicy) -> Policy {
        let defaults = Policy::default();
        let kind = self.choice(&join(path, "mode"), &raw.mode, PolicyKind::default());
        // The word as written, for the "only applies to" messages.
        let mode_name = match &raw.mode {
            Some(Choice::Unknown(word)) => word.clone(),
            _ => kind.name().to_string(),
        };
        let overprovisioning = self.fraction(
            &join(path, "overprovisioning"),
            raw.overprovisioning,
            1.0,
            10.0,
            PolicyMode::DEFAULT_OVERPROVISIONING,
        );
        let mode = match kind {
            PolicyKind::LocalFirst => PolicyMode::LocalFirst {
                locality: self.choice(&join(path, "locality"), &raw.locality, Locality::default()),
                overprovisioning,
            },
            PolicyKind::ActiveActive => PolicyMode::ActiveActive {
                cloud_weights: self.cloud_weights(&join(path, "cloud_weights"), raw),
                overprovisioning,
            },
            PolicyKind::ActivePassive => PolicyMode::ActivePassive {
                tiers: self.tiers(&join(path, "tiers"), raw),
                min_healthy: self.fraction(
                    &join(path, "min_healthy"),
                    raw.min_healthy,
                    0.0,
                    1.0,
                    PolicyMode::DEFAULT_MIN_HEALTHY,
                ),
                failback_after: self.duration(
                    &join(path, "failback_after"),
                    &raw.failback_after,
                    Duration::ZERO,
                    Duration::from_secs(86400),
                    PolicyMode::DEFAULT_FAILBACK_AFTER,
                ),
            },
        };
        for (field, given, applies_to) in [
            ("locality", raw.locality.is_some(), PolicyKind::LocalFirst),
            (
                "cloud_weights",
                raw.cloud_weights.is_some(),
                PolicyKind::ActiveActive,
            ),
            ("tiers", raw.tiers.is_some(), PolicyKind::ActivePassive),
        ] {
            if given && mode.kind() != applies_to {
                self.err(
                    join(path, field),
                    format!("only applies to {}, not {mode_name}", applies_to.name()),
                );
            }
        }
        Policy {
            mode,
            panic_threshold: self.fraction(
                &join(path, "panic_threshold"),
                raw.panic_threshold,
                0.0,
                1.0,
                defaults.panic_threshold,
            ),
            drain_timeout: self.duration(
                &join(path, "drain_timeout"),
                &raw.drain_timeout,
                Duration::ZERO,
                Duration::from_secs(7 * 86400),
                defaults.drain_timeout,
            ),
        }
    }

    fn cloud_weights(&mut self, path: &str, raw: &RawPolicy) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        match &raw.cloud_weights {
            None => self.err(
                path,
                "is required for active-active (e.g. {aws: 70, gcp: 30})",
            ),
            Some(w) if w.is_empty() => self.err(path, "must name at least one cloud"),
            Some(w) => {
                for (cloud, weight) in w {
                    let weight =
                        self.range(&format!("{path}.{cloud}"), Some(*weight), 0, 1_000_000, 0);
                    out.insert(cloud.clone(), weight as u32);
                }
                if out.values().all(|w| *w == 0) {
                    self.err(path, "at least one cloud needs a weight above 0");
                }
            }
        }
        out
    }

    fn tiers(&mut self, path: &str, raw: &RawPolicy) -> Vec<Selector> {
        let mut out = vec![];
        match &raw.tiers {
            None => self.err(
                path,
                "is required for active-passive (an ordered list of label selectors)",
            ),
            Some(t) if t.is_empty() => self.err(path, "must have at least one tier"),
            Some(t) => {
                for (i, labels) in t.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let mut s = Selector::default();
                    for (k, v) in labels {
                        match k.as_str() {
                            "cloud" => s.cloud = Some(v.clone()),
                            "region" => s.region = Some(v.clone()),
                            "zone" => s.zone = Some(v.clone()),
                            other => self.err(
                                format!("{p}.{other}"),
                                "unknown label: use cloud, region or zone",
                            ),
                        }
                    }
                    if labels.is_empty() {
                        self.err(&p, "a tier needs at least one of cloud, region, zone");
                    }
                    out.push(s);
                }
            }
        }
        out
    }

    fn health_check(&mut self, path: &str, raw: &RawHealthCheck) -> HealthCheck {
        let d = HealthCheck::default();
        let kind = self.choice(&join(path, "type"), &raw.kind, ProbeKind::default());
        let http_path = raw
            .path
            .clone()
            .unwrap_or_else(|| Probe::DEFAULT_HTTP_PATH.into());
        if !http_path.starts_with('/') {
            self.err(
                join(path, "path"),
                format!("must start with /, got {http_path:?}"),
            );
        }
        let status = |v: &mut Self| {
            v.range(
                &join(path, "expect_status"),
                raw.expect_status,
                100,
                599,
                Probe::DEFAULT_EXPECT_STATUS as i64,
            ) as u16
        };
        let probe = match kind {
            ProbeKind::None => Probe::None,
            ProbeKind::Tcp => Probe::Tcp,
            ProbeKind::Http => Probe::Http {
                path: http_path,
                expect_status: status(self),
                host: raw.host.clone(),
            },
            ProbeKind::Https => Probe::Https {
                path: http_path,
                expect_status: status(self),
                host: raw.host.clone(),
            },
            ProbeKind::Udp => Probe::Udp {
                payload: raw
                    .payload
                    .clone()
                    .unwrap_or_else(|| Probe::DEFAULT_UDP_PAYLOAD.into()),
            },
            ProbeKind::Dns => Probe::Dns {
                query: raw
                    .query
                    .clone()
                    .unwrap_or_else(|| Probe::DEFAULT_DNS_QUERY.into()),
            },
        };
        let mut duration = |field: &str, v, min, max, default| {
            self.duration(&join(path, field), v, min, max, default)
        };
        let interval = duration("interval", &raw.interval, ms(100), secs(3600), d.interval);
        let timeout = duration("timeout", &raw.timeout, ms(10), secs(60), d.timeout);
        if timeout > interval {
            self.err(
                join(path, "timeout"),
                format!("must not exceed the interval ({interval:?}), got {timeout:?}"),
            );
        }
        let initial = self.choice(
            &join(path, "initial_state"),
            &raw.initial_state,
            InitialState::default(),
        );
        HealthCheck {
            probe,
            port: self.port(&join(path, "port"), raw.port),
            interval,
            timeout,
            rise: self.range(&join(path, "rise"), raw.rise, 1, 100, d.rise as i64) as u32,
            fall: self.range(&join(path, "fall"), raw.fall, 1, 100, d.fall as i64) as u32,
            jitter: self.fraction(&join(path, "jitter"), raw.jitter, 0.0, 0.5, d.jitter),
            initially_up: initial == InitialState::Up,
        }
    }
}

/// A tenant name: it becomes a metrics label value and a token field.
pub(in crate::core::config) fn valid_tenant_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
