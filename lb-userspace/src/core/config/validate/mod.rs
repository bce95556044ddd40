//! From what serde read to the model: every value checked, every problem
//! collected with its field path, a default (the model's) wherever a field
//! is absent or wrong so one bad field does not hide the next.

mod vip;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use serde::de::DeserializeOwned;

use super::{FieldError, check, is_prime, model::*, parse_duration, parse_mac, raw::*};

#[derive(Default)]
pub(super) struct Validator {
    pub errors: Vec<FieldError>,
}

pub(super) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "lb".into())
}

/// A whole file.
pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<FieldError>> {
    let mut v = Validator::default();
    let defaults = Config::default();
    let node = v.node(&raw.node);
    let interfaces = v.interfaces(&raw.interfaces);
    let limits = v.limits(&raw.limits);
    let dataplane = v.dataplane(&raw.dataplane);
    let max_concurrent_checks = v.range(
        "health.max_concurrent_checks",
        raw.health.max_concurrent_checks,
        1,
        10_000,
        defaults.health.max_concurrent_checks as i64,
    ) as usize;
    let fleet_view = raw.health.fleet_view.unwrap_or(defaults.health.fleet_view);
    let announce = raw.announce.as_ref().map(|a| v.announce(a));
    let etcd = raw.etcd.as_ref().map(|e| v.etcd(e));
    let log = LogCfg {
        level: v.choice("log.level", &raw.log.level, LogLevel::default()),
        format: v.choice("log.format", &raw.log.format, LogFormat::default()),
    };
    let metrics_listen = v.socket_addr("metrics.listen", &raw.metrics.listen, "127.0.0.1:9478");
    let tcp_listen = v.socket_addr("api.tcp_listen", &raw.api.tcp_listen, "127.0.0.1:9180");
    if tcp_listen.is_some() && raw.api.token_file.is_none() && raw.api.tokens_file.is_none() {
        v.err("api.tokens_file", "is required when api.tcp_listen is set (or api.token_file): the TCP API only serves requests with a bearer token");
    }
    let tls = raw.api.tls.as_ref().map(|t| v.api_tls(t));
    if let Some(addr) = tcp_listen
        && tls.is_none()
        && !addr.ip().is_loopback()
    {
        v.err(
            "api.tls",
            format!("is required when api.tcp_listen ({addr}) is not a loopback address: tokens must not cross the network in clear text"),
        );
    }
    let api = ApiCfg {
        socket: raw
            .api
            .socket
            .as_ref()
            .map_or(defaults.api.socket, PathBuf::from),
        tcp_listen,
        token_file: raw.api.token_file.as_ref().map(PathBuf::from),
        tokens_file: raw.api.tokens_file.as_ref().map(PathBuf::from),
        tls,
    };
    let tenants = v.tenants(&raw.tenants);
    let vips: Vec<Vip> = raw
        .vips
        .iter()
        .enumerate()
        .filter_map(|(i, rv)| v.vip(&format!("vips[{i}]"), rv, &limits))
        .collect();
    // Cross-VIP rules over the VIPs that validated; a VIP that did not
    // already has its error.
    for (i, vip) in vips.iter().enumerate() {
        if vip.tenant != DEFAULT_TENANT && !tenants.contains_key(&vip.tenant) {
            v.err(
                format!("vips[{i}].tenant"),
                format!(
                    "no tenant {:?} in tenants (known: {})",
                    vip.tenant,
                    known_tenants(&tenants)
                ),
            );
        }
    }
    v.errors.extend(check::vips(&vips, &limits, &tenants, |i| {
        format!("vips[{i}]")
    }));
    // A list being replaced is written beside the live one.
    let acl: usize = vips
        .iter()
        .map(|v| v.access.allow.len() + v.access.deny.len())
        .sum();
    if acl as u64 * 2 > limits.max_acl_entries as u64 {
        v.err(
            "limits.max_acl_entries",
            format!(
                "{acl} allow/deny entries need {} (twice, for the moment a list changes), got {}",
                acl * 2,
                limits.max_acl_entries
            ),
        );
    }
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(Config {
        node,
        interfaces,
        pin_path: raw.pin_path.map_or(defaults.pin_path, PathBuf::from),
        state_dir: raw.state_dir.map_or(defaults.state_dir, PathBuf::from),
        allow_no_vips: raw.allow_no_vips.unwrap_or(defaults.allow_no_vips),
        tenants,
        limits,
        dataplane,
        health: HealthGlobal {
            max_concurrent_checks,
            fleet_view,
        },
        metrics_listen,
        api,
        announce,
        etcd,
        log,
        vips,
    })
}

fn known_tenants(t: &BTreeMap<String, TenantQuota>) -> String {
    std::iter::once(DEFAULT_TENANT)
        .chain(t.keys().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Validator {
    fn api_tls(&mut self, raw: &RawApiTls) -> ApiTls {
        let mut file = |field: &str, v: &Option<String>| -> PathBuf {
            match v {
                Some(f) if !f.is_empty() => PathBuf::from(f),
                _ => {
                    self.err(
                        format!("api.tls.{field}"),
                        "is required: a PEM file".to_string(),
                    );
                    PathBuf::new()
                }
            }
        };
        ApiTls {
            cert_file: file("cert_file", &raw.cert_file),
            key_file: file("key_file", &raw.key_file),
            client_ca_file: raw.client_ca_file.as_ref().map(PathBuf::from),
        }
    }

    fn tenants(&mut self, raw: &BTreeMap<String, RawTenant>) -> BTreeMap<String, TenantQuota> {
        let mut out = BTreeMap::new();
        for (name, t) in raw {
            let path = format!("tenants.{name}");
            if !vip::valid_tenant_name(name) {
                self.err(
                    &path,
                    "a tenant name must be 1-64 letters, digits, '-' or '_'",
                );
                continue;
            }
            if name == DEFAULT_TENANT {
                self.err(
                    &path,
                    "the default tenant has no quotas (give those VIPs a tenant of their own)",
                );
                continue;
            }
            let mut q = |field: &str, v: Option<i64>| -> Option<u32> {
                v.map(|n| self.range(&join(&path, field), Some(n), 0, u32::MAX as i64, 0) as u32)
            };
            let quota = TenantQuota {
                max_vips: q("max_vips", t.max_vips),
                max_backends: q("max_backends", t.max_backends),
                max_new_flows_per_sec: q("max_new_flows_per_sec", t.max_new_flows_per_sec),
                max_allow_list: q("max_allow_list", t.max_allow_list),
            };
            out.insert(name.clone(), quota);
        }
        out
    }

    fn etcd(&mut self, raw: &RawEtcd) -> EtcdCfg {
        if raw.endpoints.is_empty() {
            self.err(
                "etcd.endpoints",
                "is required: at least one client URL like http://10.0.0.5:2379",
            );
        }
        for (i, e) in raw.endpoints.iter().enumerate() {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                self.err(
                    format!("etcd.endpoints[{i}]"),
                    format!("expected a client URL like http://10.0.0.5:2379 or https://etcd-1:2379, got {e:?}"),
                );
            }
        }
        let prefix = raw
            .prefix
            .clone()
            .unwrap_or_else(|| EtcdCfg::DEFAULT_PREFIX.into());
        if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
            self.err(
                "etcd.prefix",
                format!("must start with / and not end with one, like /lb, got {prefix:?}"),
            );
        }
        for (a, b) in [("cert_file", "key_file"), ("user", "password_file")] {
            let given = |f: &str| match f {
                "cert_file" => raw.cert_file.is_some(),
                "key_file" => raw.key_file.is_some(),
                "user" => raw.user.is_some(),
                _ => raw.password_file.is_some(),
            };
            for (x, y) in [(a, b), (b, a)] {
                if given(x) && !given(y) {
                    self.err(format!("etcd.{y}"), format!("is required with etcd.{x}"));
                }
            }
        }
        let path = |p: &Option<String>| p.as_ref().map(PathBuf::from);
        EtcdCfg {
            endpoints: raw.endpoints.clone(),
            prefix,
            ca_file: path(&raw.ca_file),
            cert_file: path(&raw.cert_file),
            key_file: path(&raw.key_file),
            user: raw.user.clone(),
            password_file: path(&raw.password_file),
        }
    }

    fn announce(&mut self, raw: &RawAnnounce) -> AnnounceCfg {
        let d = AnnounceCfg::default();
        let protocol = raw.protocol.clone().unwrap_or(d.protocol.clone());
        // A BIRD symbol: it becomes `protocol static <name>4`.
        if protocol.is_empty()
            || protocol.len() > 60
            || !protocol.starts_with(|c: char| c.is_ascii_alphabetic())
            || !protocol
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.err(
                "announce.protocol",
                format!("must be a BIRD name (letters, digits, _; starting with a letter), got {protocol:?}"),
            );
        }
        AnnounceCfg {
            bird_socket: raw
                .bird_socket
                .as_ref()
                .map_or(d.bird_socket, PathBuf::from),
            include_file: raw
                .include_file
                .as_ref()
                .map_or(d.include_file, PathBuf::from),
            protocol,
            drain_time: self.duration(
                "announce.drain_time",
                &raw.drain_time,
                Duration::ZERO,
                secs(600),
                d.drain_time,
            ),
        }
    }

    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn range(&mut self, path: &str, v: Option<i64>, lo: i64, hi: i64, default: i64) -> i64 {
        match v {
            None => default,
            Some(x) if x < lo || x > hi => {
                self.err(path, format!("must be {lo}..={hi}, got {x}"));
                default
            }
            Some(x) => x,
        }
    }

    /// An optional port (1..=65535).
    fn port(&mut self, path: &str, v: Option<i64>) -> Option<u16> {
        v.map(|p| self.range(path, Some(p), 1, 65535, 1) as u16)
    }

    pub fn fraction(&mut self, path: &str, v: Option<f64>, lo: f64, hi: f64, default: f64) -> f64 {
        match v {
            None => default,
            Some(x) if !(lo..=hi).contains(&x) || !x.is_finite() => {
                self.err(path, format!("must be between {lo} and {hi}, got {x}"));
                default
            }
            Some(x) => x,
        }
    }

    pub fn duration(
        &mut self,
        path: &str,
        v: &Option<RawDuration>,
        min: Duration,
        max: Duration,
        default: Duration,
    ) -> Duration {
        let d = match v {
            None => return default,
            Some(RawDuration::Seconds(s)) if *s >= 0.0 => match Duration::try_from_secs_f64(*s) {
                Ok(d) => d,
                Err(_) => {
                    self.err(
                        path,
                        format!("must be between {min:?} and {max:?}, got {s} seconds"),
                    );
                    return default;
                }
            },
            Some(RawDuration::Text(t)) => match parse_duration(t) {
                Ok(d) => d,
                Err(e) => {
                    self.err(path, e);
                    return default;
                }
            },
            Some(RawDuration::Seconds(s)) => {
                self.err(
                    path,
                    format!("must be a non-negative number of seconds, got {s}"),
                );
                return default;
            }
        };
        if d < min || d > max {
            self.err(
                path,
                format!("must be between {min:?} and {max:?}, got {d:?}"),
            );
            return default;
        }
        d
    }

    /// A word of `T`'s closed set; an unknown one is reported with the
    /// words `T` accepts.
    pub fn choice<T: Copy + DeserializeOwned>(
        &mut self,
        path: &str,
        v: &Option<Choice<T>>,
        default: T,
    ) -> T {
        match v {
            None => default,
            Some(Choice::Known(t)) => *t,
            Some(Choice::Unknown(word)) => {
                self.err(
                    path,
                    format!(
                        "must be one of {}, got {word:?}",
                        words_of::<T>().join(", ")
                    ),
                );
                default
            }
        }
    }

    pub fn ip(&mut self, path: &str, v: &Option<String>) -> Option<IpAddr> {
        let Some(s) = v else {
            self.err(path, "is required (an IPv4 or IPv6 address)");
            return None;
        };
        match s.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.err(path, format!("must be a unicast address, got {s}"));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("expected an IPv4 or IPv6 address, got {s:?}"));
                None
            }
        }
    }

    pub fn mac(&mut self, path: &str, v: &Option<String>) -> Option<[u8; 6]> {
        let s = v.as_ref()?;
        let m = parse_mac(s);
        if m.is_none() {
            self.err(
                path,
                format!("expected a MAC address like 02:00:00:00:00:01, got {s:?}"),
            );
        }
        m
    }

    fn socket_addr(&mut self, path: &str, v: &Option<String>, example: &str) -> Option<SocketAddr> {
        let s = v.as_ref()?;
        let a = s.parse::<SocketAddr>().ok();
        if a.is_none() {
            self.err(
                path,
                format!("expected address:port like {example}, got {s:?}"),
            );
        }
        a
    }

    fn encap_source<A: FromStr + Copy>(
        &mut self,
        path: &str,
        v: &Option<String>,
        default: EncapSource<A>,
        bits: u8,
        example: &str,
    ) -> EncapSource<A> {
        let Some(s) = v else { return default };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()),
            None => (s.as_str(), Some(bits)),
        };
        match (addr.parse::<A>(), len) {
            // At most the low 32 host bits come from the 32-bit hash;
            // higher host bits keep the base's value.
            (Ok(base), Some(len)) if len <= bits => EncapSource {
                base,
                hash_bits: (bits - len).min(32),
            },
            _ => {
                self.err(
                    path,
                    format!("expected an address or prefix like {example}, got {s:?}"),
                );
                default
            }
        }
    }

    fn node(&mut self, raw: &RawNode) -> Node {
        Node {
            name: raw.name.clone().unwrap_or_else(hostname),
            cloud: raw.cloud.clone().unwrap_or_default(),
            region: raw.region.clone().unwrap_or_default(),
            zone: raw.zone.clone().unwrap_or_default(),
        }
    }

    fn interfaces(&mut self, raw: &[RawInterface]) -> Vec<Interface> {
        let mut names = BTreeSet::new();
        let mut out = vec![];
        for (i, iface) in raw.iter().enumerate() {
            let p = format!("interfaces[{i}]");
            if iface.name.is_empty() || iface.name.len() > 15 || iface.name.contains(['/', ' ']) {
                self.err(
                    join(&p, "name"),
                    format!(
                        "must be a Linux interface name (1-15 characters), got {:?}",
                        iface.name
                    ),
                );
            }
            if !names.insert(iface.name.clone()) {
                self.err(join(&p, "name"), format!("{} is listed twice", iface.name));
            }
            out.push(Interface {
                name: iface.name.clone(),
                xdp_mode: self.choice(
                    &join(&p, "xdp_mode"),
                    &iface.xdp_mode,
                    XdpModeCfg::default(),
                ),
            });
        }
        out
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        use lb_common::limits::{MAX_BACKENDS_LIMIT, MAX_RING_SIZE, MAX_VIPS_LIMIT};
        let d = Limits::default();
        let max_vips = self.range(
            "limits.max_vips",
            raw.max_vips,
            1,
            MAX_VIPS_LIMIT as i64,
            d.max_vips as i64,
        ) as u32;
        let max_backends = self.range(
            "limits.max_backends",
            raw.max_backends,
            1,
            MAX_BACKENDS_LIMIT as i64,
            d.max_backends as i64,
        ) as u32;
        let mut ring_size = self.range(
            "limits.ring_size",
            raw.ring_size,
            7,
            MAX_RING_SIZE as i64,
            d.ring_size as i64,
        ) as u32;
        if raw.ring_size.is_some() && !is_prime(ring_size) {
            self.err(
                "limits.ring_size",
                format!("must be a prime number (Maglev), got {ring_size}; e.g. 65537 or 655373"),
            );
            ring_size = d.ring_size;
        }
        let limits = Limits {
            max_vips,
            max_backends,
            ring_size,
            conntrack_size: self.range(
                "limits.conntrack_size",
                raw.conntrack_size,
                1024,
                1 << 28,
                d.conntrack_size as i64,
            ) as u32,
            conntrack_per_cpu: raw.conntrack_per_cpu.unwrap_or(d.conntrack_per_cpu),
            max_acl_entries: self.range(
                "limits.max_acl_entries",
                raw.max_acl_entries,
                2,
                1 << 22,
                d.max_acl_entries as i64,
            ) as u32,
            rate_sources: self.range(
                "limits.rate_sources",
                raw.rate_sources,
                16,
                1 << 24,
                d.rate_sources as i64,
            ) as u32,
        };
        // The kernel array is indexed with u32: both halves of every VIP's
        // ring must fit.
        if limits.ring_entries() > u32::MAX as u64 / 4 {
            self.err(
                "limits",
                format!(
                    "max_vips × 2 × ring_size = {} slots is more than the 1 Gi a ring array may hold",
                    limits.ring_entries()
                ),
            );
        }
        limits
    }

    fn dataplane(&mut self, raw: &RawDataplane) -> DataplaneCfg {
        let d = DataplaneCfg::default();
        DataplaneCfg {
            hash_seed: self.range(
                "dataplane.hash_seed",
                raw.hash_seed,
                0,
                u32::MAX as i64,
                d.hash_seed as i64,
            ) as u32,
            udp_idle_timeout: self.duration(
                "dataplane.udp_idle_timeout",
                &raw.udp_idle_timeout,
                Duration::from_millis(100),
                Duration::from_secs(86400),
                d.udp_idle_timeout,
            ),
            flood_new_flows_per_sec: self.range(
                "dataplane.flood_new_flows_per_sec",
                raw.flood_new_flows_per_sec,
                0,
                u32::MAX as i64,
                d.flood_new_flows_per_sec as i64,
            ) as u32,
            mtu: self.range("dataplane.mtu", raw.mtu, 576, 9216, d.mtu as i64) as u16,
            gue_port: self.range(
                "dataplane.gue_port",
                raw.gue_port,
                1,
                65535,
                d.gue_port as i64,
            ) as u16,
            encap_source_v4: self.encap_source(
                "dataplane.encap_source_v4",
                &raw.encap_source_v4,
                d.encap_source_v4,
                32,
                "172.16.0.0/16",
            ),
            encap_source_v6: self.encap_source(
                "dataplane.encap_source_v6",
                &raw.encap_source_v6,
                d.encap_source_v6,
                128,
                "fd00:db8::/96",
            ),
            gateway_mac: self.mac("dataplane.gateway_mac", &raw.gateway_mac),
        }
    }
}
